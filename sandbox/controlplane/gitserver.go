package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// gitopsRepo is the bare repository Argo CD deploys from and the product's task function
// pushes to.
const gitopsRepo = "gitops.git"

// probePath is the folder of gitops.git that the launcher's Argo CD probe syncs.
const probePath = ".sandbox/probe"

// gitServer serves the bare repositories under root over git's smart HTTP protocol,
// through git-http-backend run as CGI, on loopback only. Pushes are accepted by the
// repositories that enable http.receivepack (gitops.git does): there is no
// authentication, which is why it never listens beyond 127.0.0.1.
type gitServer struct {
	root string
	srv  *http.Server
	url  string
	log  io.Closer
}

// startGitServer serves root on 127.0.0.1:port (0: any free port); git-http-backend's
// messages go to logFile.
func startGitServer(ctx context.Context, root string, port int, logFile string) (*gitServer, error) {
	execPath, err := gitOutput(ctx, "", nil, "--exec-path")
	if err != nil {
		return nil, fmt.Errorf("git server needs git: %w", err)
	}
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return nil, fmt.Errorf("git server: %w", err)
	}
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("git server: %w", err)
	}
	h := &cgi.Handler{
		Path: backend,
		Root: "/",
		Dir:  root,
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			// Keep the user's and the system's git configuration out of what is served.
			"GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + root,
		},
		Stderr: logf,
	}
	g := &gitServer{
		root: root,
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		url:  "http://" + ln.Addr().String(),
		log:  logf,
	}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
}

func (g *gitServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = g.srv.Shutdown(ctx)
	g.log.Close()
}

// ensureGitopsRepo creates the bare repository gitops.git with branch main and a first
// commit (a README and the probe's ConfigMap) unless it exists, and lets it take pushes.
// It is built in a temporary folder and renamed into place, so a crash leaves no half repo.
func ensureGitopsRepo(ctx context.Context, root string) (string, error) {
	repo := filepath.Join(root, gitopsRepo)
	if _, err := os.Stat(repo); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return "", err
		}
		tmp, err := os.MkdirTemp(root, ".new-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		if err := initRepo(ctx, filepath.Join(tmp, "repo.git"), filepath.Join(tmp, "tree")); err != nil {
			return "", fmt.Errorf("create %s: %w", gitopsRepo, err)
		}
		if err := os.Rename(filepath.Join(tmp, "repo.git"), repo); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	// Set on every start, so that a repository made before this setting existed takes
	// pushes too.
	if _, err := gitOutput(ctx, repo, nil, "config", "http.receivepack", "true"); err != nil {
		return "", err
	}
	return repo, nil
}

func initRepo(ctx context.Context, bare, tree string) error {
	files := map[string]string{
		"README.md": "# gitops\n\nThe GitOps repository of the local control plane: Argo CD deploys from it, and\n" +
			"dwp-sre's task function pushes to it. `" + probePath + "` holds the ConfigMap the launcher\n" +
			"syncs once at start to prove that Argo CD works.\n",
		probePath + "/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sandbox-probe\n  namespace: " +
			argoCDNamespace + "\ndata:\n  purpose: proves that Argo CD can sync from gitops.git\n",
	}
	for name, content := range files {
		p := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if _, err := gitOutput(ctx, "", nil, "init", "--quiet", "--bare", "--initial-branch=main", bare); err != nil {
		return err
	}
	// A throwaway index: the bare repository keeps none.
	env := []string{
		"GIT_DIR=" + bare, "GIT_WORK_TREE=" + tree, "GIT_INDEX_FILE=" + filepath.Join(filepath.Dir(tree), "index"),
		"GIT_AUTHOR_NAME=dwp-cluster", "GIT_AUTHOR_EMAIL=dwp-cluster@localhost",
		"GIT_COMMITTER_NAME=dwp-cluster", "GIT_COMMITTER_EMAIL=dwp-cluster@localhost",
	}
	if _, err := gitOutput(ctx, tree, env, "add", "--all"); err != nil {
		return err
	}
	_, err := gitOutput(ctx, tree, env, "commit", "--quiet", "--message", "Initial commit")
	return err
}

// gitOutput runs git, without the user's or the system's configuration, and returns its
// trimmed standard output.
func gitOutput(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
