package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// TestUsers are the users the API server authenticates by static token, besides the admin.
// They have no rights until RBAC grants them some. Their groups are in userGroups.
var TestUsers = []string{"alice", "bob", "carol"}

var userGroups = map[string][]string{
	"alice": {"dwp:developers"},
	"bob":   {"dwp:developers"},
	"carol": {"dwp:viewers"},
}

// Info describes a running control plane; the launcher writes it to info.json in its
// state folder once every component is ready, and rewrites it (atomically) once Argo CD
// is known to sync.
type Info struct {
	// Dir is the state folder.
	Dir string `json:"dir"`
	// Server is the API server's URL (https on loopback).
	Server string `json:"server"`
	// Kubeconfig is the admin kubeconfig.
	Kubeconfig string `json:"kubeconfig"`
	// UserKubeconfigs maps each test user to a kubeconfig of their own.
	UserKubeconfigs map[string]string `json:"userKubeconfigs"`
	// Tokens maps each test user (and "admin") to their bearer token.
	Tokens map[string]string `json:"tokens"`
	// CAFile is the API server's serving CA bundle.
	CAFile string `json:"caFile"`
	// ArgoNamespace is where Argo's workflow-controller runs and keeps its ConfigMap.
	ArgoNamespace string `json:"argoNamespace"`
	// ArchiveDSN is the Postgres connection string of Argo's workflow archive.
	ArchiveDSN string `json:"archiveDSN"`
	// InstanceID is the cluster name Argo records with each archived workflow.
	ClusterName string `json:"clusterName"`
	// LogDir is where pod log files served by kwok live.
	LogDir string `json:"logDir"`
	// ControlSocket is the launcher's Unix socket (POST /restart/<component>).
	ControlSocket string `json:"controlSocket"`
	// NodeName is the kwok node pods are scheduled on.
	NodeName string `json:"nodeName"`
	// GitURL is the git server's base URL (smart HTTP on loopback, no authentication).
	GitURL string `json:"gitURL"`
	// GitopsRepo is the URL of the GitOps repository (branch main), which takes pushes.
	GitopsRepo string `json:"gitopsRepo"`
	// ArgoCDNamespace is where Argo CD's configuration and Applications live.
	ArgoCDNamespace string `json:"argoCDNamespace"`
	// ArgoCDReady is set, and info.json rewritten, once Argo CD has synced a probe
	// Application from GitopsRepo; the plane is ready before that.
	ArgoCDReady bool `json:"argoCDReady"`
	// ArgoCDError says why Argo CD could not be proven to sync, when it could not.
	ArgoCDError string `json:"argoCDError,omitempty"`
	// ArgoCDLog is the application controller's log file.
	ArgoCDLog string `json:"argoCDLog"`
	// ArgoServerURL is argo-server's base URL (plain HTTP; it authenticates each request
	// with the caller's bearer token).
	ArgoServerURL string `json:"argoServerURL"`
	// ObjectStoreEndpoint is the S3 endpoint (host:port, plain HTTP) of Argo's artifact
	// repository, and ArtifactBucket its bucket.
	ObjectStoreEndpoint string `json:"objectStoreEndpoint"`
	ArtifactBucket      string `json:"artifactBucket"`
	// PrometheusURL is Prometheus's base URL (plain HTTP, no authentication), which
	// scrapes kwok's kubelet resource metrics every 5 s; empty when Prometheus is not
	// installed.
	PrometheusURL string `json:"prometheusURL"`
}

const infoFile = "info.json"

// ReadInfo reads the Info of the control plane whose state is in dir; it fails
// when none is running there.
func ReadInfo(dir string) (Info, error) {
	var info Info
	b, err := os.ReadFile(filepath.Join(dir, infoFile))
	if err != nil {
		return info, fmt.Errorf("control plane not ready in %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("read %s: %w", infoFile, err)
	}
	return info, nil
}

// WaitReady waits until the launcher using dir reports ready.
func WaitReady(ctx context.Context, dir string, timeout time.Duration) (Info, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		info, err := ReadInfo(dir)
		if err == nil {
			return info, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return info, err
		}
		if b, ferr := os.ReadFile(filepath.Join(dir, failedFile)); ferr == nil {
			return info, fmt.Errorf("control plane failed: %s", b)
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("control plane in %s not ready after %s", dir, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

const failedFile = "failed"

func writeInfo(info Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(info.Dir, infoFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(info.Dir, infoFile))
}

// Reset deletes a stopped control plane's state folder.
func Reset(dir string) error {
	if _, err := ReadInfo(dir); err == nil {
		return fmt.Errorf("a control plane is running with state in %s: stop it first", dir)
	}
	return os.RemoveAll(dir)
}
