package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// A component module is a Go module under sandbox/modules/ that builds some of the control plane's
// programs. Each is its own module because their Kubernetes dependencies differ.
type componentModule struct {
	dir      string   // relative to the repository root
	packages []string // what to build
	outputs  []string // binary names go build writes
	ldflags  string
	env      []string // added to the build's environment
}

// kubeVersion is what the API server reports; it must match sandbox/modules/kube/go.mod.
const kubeVersion = "v1.37.2"

var componentModules = []componentModule{
	{
		dir: "sandbox/modules/kube",
		packages: []string{
			"./cmd/etcd",
			"k8s.io/kubernetes/cmd/kube-apiserver",
			"k8s.io/kubernetes/cmd/kube-controller-manager",
			"k8s.io/kubernetes/cmd/kube-scheduler",
			"k8s.io/kubernetes/cmd/kubectl",
			"sigs.k8s.io/kwok/cmd/kwok",
		},
		outputs: []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"},
		ldflags: "-X k8s.io/component-base/version.gitVersion=" + kubeVersion +
			" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" +
			" -X k8s.io/component-base/version.gitTreeState=clean",
	},
	{
		dir:      "sandbox/modules/argo",
		packages: []string{"github.com/argoproj/argo-workflows/v3/cmd/workflow-controller"},
		outputs:  []string{"workflow-controller"},
	},
	{
		dir:      "sandbox/modules/metrics",
		packages: []string{"sigs.k8s.io/metrics-server/cmd/metrics-server"},
		outputs:  []string{"metrics-server"},
	},
	{
		// Argo CD's two servers, and the helm and kustomize its repo-server runs: the
		// versions its own image ships.
		dir: "sandbox/modules/argocd",
		packages: []string{
			"./cmd/argocd-application-controller",
			"./cmd/argocd-repo-server",
			"helm.sh/helm/v3/cmd/helm",
			"sigs.k8s.io/kustomize/kustomize/v5",
		},
		outputs: []string{"argocd-application-controller", "argocd-repo-server", "helm", "kustomize"},
		// Without the version stamps Argo CD reports v99.99.99 and, worse, takes kustomize
		// for a v99 and helm for an unknown version.
		ldflags: "-X github.com/argoproj/argo-cd/v2/common.version=" + strings.TrimPrefix(argoCDVersion, "v") +
			" -X helm.sh/helm/v3/internal/version.version=" + helmVersion +
			" -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/" + kustomizeVersion,
	},
	{
		// Argo's artifact repository. MinIO because it is an S3 server that builds from its
		// Go module alone and needs no client tool (buckets are made through its S3 API);
		// it is AGPLv3, which is fine for a sandbox tool built from source here and never
		// shipped with the project.
		dir:      "sandbox/modules/minio",
		packages: []string{"github.com/minio/minio"},
		outputs:  []string{"minio"},
		env:      []string{"CGO_ENABLED=0"},
	},
}

// The Argo CD built (its CRDs are applied too), and the tools its 2.14 repo-server image
// ships; they must match sandbox/modules/argocd/go.mod (a test checks).
const (
	argoCDVersion    = "v2.14.21"
	helmVersion      = "v3.16.3"
	kustomizeVersion = "v5.4.3"
)

// EnsureBuilt builds the control plane's programs into binDir and gathers the manifests
// it applies, doing nothing for the parts whose inputs have not changed since the last
// build. Progress goes to out: a cold build takes several minutes.
func EnsureBuilt(ctx context.Context, repo, binDir string, out io.Writer) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	for _, m := range componentModules {
		if err := m.ensure(ctx, repo, binDir, out); err != nil {
			return err
		}
	}
	if err := ensureArgoServer(ctx, repo, binDir, out); err != nil {
		return err
	}
	if err := ensureManifests(ctx, repo, binDir, out); err != nil {
		return err
	}
	return ensureSeed(ctx, binDir, out)
}

func (m componentModule) ensure(ctx context.Context, repo, binDir string, out io.Writer) error {
	modDir := filepath.Join(repo, m.dir)
	extra := m.ldflags
	if len(m.env) > 0 {
		extra += " " + strings.Join(m.env, " ")
	}
	stamp, err := treeStamp(modDir, extra)
	if err != nil {
		return fmt.Errorf("%s: %w", m.dir, err)
	}
	stampFile := filepath.Join(binDir, ".stamp-"+filepath.Base(m.dir))
	if upToDate(stampFile, stamp, binDir, m.outputs) {
		return nil
	}
	fmt.Fprintf(out, "building %s (%s); a first build takes minutes\n", strings.Join(m.outputs, ", "), m.dir)
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	if m.ldflags != "" {
		args = append(args, "-ldflags", m.ldflags)
	}
	args = append(args, m.packages...)
	if err := runWithProgress(ctx, modDir, m.env, out, m.dir, "go", args...); err != nil {
		return fmt.Errorf("build %s: %w", m.dir, err)
	}
	return os.WriteFile(stampFile, []byte(stamp), 0o644)
}

func upToDate(stampFile, stamp, binDir string, outputs []string) bool {
	old, err := os.ReadFile(stampFile)
	if err != nil || string(old) != stamp {
		return false
	}
	for _, o := range outputs {
		if _, err := os.Stat(filepath.Join(binDir, o)); err != nil {
			return false
		}
	}
	return true
}

// treeStamp hashes what a module's build depends on: its go.mod, go.sum and sources, the
// Go version and the link flags. The module cache is content-addressed, so that is all.
func treeStamp(dir string, extra string) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version(), extra)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if name := d.Name(); name == "go.mod" || name == "go.sum" || strings.HasSuffix(name, ".go") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", strings.TrimPrefix(f, dir), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// runWithProgress runs a command, telling out every 30 s that it is still going.
func runWithProgress(ctx context.Context, dir string, env []string, out io.Writer, what string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr bytes.Buffer
	cmd.Stdout = out
	cmd.Stderr = io.MultiWriter(&stderr, out)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
			}
			fmt.Fprintf(out, "built %s in %s\n", what, time.Since(start).Round(time.Second))
			return nil
		case <-tick.C:
			fmt.Fprintf(out, "  still building %s (%s)\n", what, time.Since(start).Round(time.Second))
		}
	}
}
