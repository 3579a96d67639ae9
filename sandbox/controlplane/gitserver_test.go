package controlplane

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGitopsRepoIsMadeOnceAndServedWithPushes(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "git")
	repo, err := ensureGitopsRepo(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	first, err := gitOutput(ctx, "", nil, "--git-dir="+repo, "rev-parse", "refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	if head, _ := gitOutput(ctx, "", nil, "--git-dir="+repo, "symbolic-ref", "HEAD"); head != "refs/heads/main" {
		t.Fatalf("HEAD is %q, want refs/heads/main", head)
	}
	if _, err := ensureGitopsRepo(ctx, root); err != nil {
		t.Fatal(err)
	}
	if again, _ := gitOutput(ctx, "", nil, "--git-dir="+repo, "rev-parse", "refs/heads/main"); again != first {
		t.Fatalf("a second start changed main from %s to %s", first, again)
	}

	srv, err := startGitServer(ctx, root, 0, filepath.Join(t.TempDir(), "git-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	if host, _, _ := net.SplitHostPort(strings.TrimPrefix(srv.url, "http://")); host != "127.0.0.1" {
		t.Fatalf("git server on %s, want loopback", srv.url)
	}
	url := srv.url + "/" + gitopsRepo
	work := filepath.Join(t.TempDir(), "work")
	env := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@localhost", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@localhost"}
	steps := []struct {
		dir  string
		args []string
	}{
		{"", []string{"clone", "--quiet", url, work}},
		{work, []string{"add", "app.yaml"}},
		{work, []string{"commit", "--quiet", "-m", "an app"}},
		{work, []string{"push", "--quiet", "origin", "main"}},
	}
	for i, s := range steps {
		if i == 1 {
			if _, err := os.Stat(filepath.Join(work, probePath, "configmap.yaml")); err != nil {
				t.Fatalf("the clone lacks the probe's manifest: %v", err)
			}
			if err := os.WriteFile(filepath.Join(work, "app.yaml"), []byte("kind: ConfigMap\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := gitOutput(ctx, s.dir, env, s.args...); err != nil {
			t.Fatal(err)
		}
	}
	pushed, err := gitOutput(ctx, work, nil, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	served, err := gitOutput(ctx, "", nil, "ls-remote", url, "refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(served, pushed) {
		t.Fatalf("after the push the server has main at %q, want %s", served, pushed)
	}
	if _, err := gitOutput(ctx, "", nil, "ls-remote", srv.url+"/nothing.git"); err == nil {
		t.Fatal("a missing repository was served")
	}
}
