package controlplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// argoModule is the module argo-server is built from: the version sandbox/modules/argo
// builds the workflow-controller of (a test checks they agree).
const argoModule = "github.com/argoproj/argo-workflows/v3"

// ensureArgoServer builds argo-server (Argo's `argo` command) into binDir/argo. Its module
// does not build as published: cmd/argo embeds ui/dist/app, the UI's build output, which
// the module leaves out. Argo's own Makefile builds without the UI by creating that folder
// with an empty index.html; the same is done here, in a writable copy of the module made
// for the build and removed after it, so nothing of Argo's is kept in this repository.
// The stamp is that of sandbox/modules/argo (its go.mod pins the version).
func ensureArgoServer(ctx context.Context, repo, binDir string, out io.Writer) error {
	const what = "argo-server (" + argoModule + "@" + argoWorkflowsVersion + ", without its UI)"
	stamp, err := treeStamp(filepath.Join(repo, "sandbox/modules/argo"), "argo-server "+argoWorkflowsVersion)
	if err != nil {
		return fmt.Errorf("argo-server: %w", err)
	}
	stampFile := filepath.Join(binDir, ".stamp-argo-server")
	if upToDate(stampFile, stamp, binDir, []string{"argo"}) {
		return nil
	}
	fmt.Fprintf(out, "building %s; a first build takes minutes\n", what)
	src, err := moduleDir(ctx, argoModule, argoWorkflowsVersion)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "argo-server-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// CopyFS makes the files writable (0666 plus the source's execute bits), unlike the
	// module cache's.
	if err := os.CopyFS(work, os.DirFS(src)); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	ui := filepath.Join(work, "ui", "dist", "app")
	if err := os.MkdirAll(ui, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ui, "index.html"), nil, 0o644); err != nil {
		return err
	}
	bin, err := filepath.Abs(filepath.Join(binDir, "argo"))
	if err != nil {
		return err
	}
	// -trimpath keeps the build cache's keys free of the temporary folder's name, so that a
	// rebuild is warm.
	env := []string{"CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false"}
	if err := runWithProgress(ctx, work, env, out, "argo-server", "go", "build", "-trimpath", "-o", bin, "./cmd/argo"); err != nil {
		return fmt.Errorf("build argo-server: %w", err)
	}
	return os.WriteFile(stampFile, []byte(stamp), 0o644)
}

// argoServerArgs runs argo-server with client authentication: every request acts with the
// caller's own bearer token (as the function and the router do), argo-server's own
// credentials serve only its configuration and the archive. argo-server has no flag for
// its address: it listens on ":<port>", every interface (server/apiserver/argoserver.go).
func argoServerArgs(kubeconfig string, port int) []string {
	return []string{
		"server",
		"--kubeconfig=" + kubeconfig,
		"--auth-mode=client",
		"--secure=false",
		"--port=" + strconv.Itoa(port),
		"--loglevel=info",
	}
}

// waitArgoServer waits until argo-server answers its version to the admin.
func (cp *ControlPlane) waitArgoServer(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	err := waitFor(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if !cp.procs["argo-server"].running() {
			return fmt.Errorf("argo-server is not running")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.info.ArgoServerURL+"/api/v1/version", nil)
		req.Header.Set("Authorization", "Bearer "+cp.info.Tokens["admin"])
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/api/v1/version: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("argo-server not ready (see %s): %w", cp.procs["argo-server"].log, err)
	}
	return nil
}
