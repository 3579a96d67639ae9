package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/util"
)

// serve makes a bare repository with one commit on main and serves it over smart HTTP
// with git's own http-backend, pushes allowed.
func serve(t *testing.T) (url, dir string) {
	t.Helper()
	root := t.TempDir()
	dir = filepath.Join(root, "gitops.git")
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "--bare", "--initial-branch=main", dir)
	git("-C", dir, "config", "http.receivepack", "true")
	work := filepath.Join(root, "work")
	git("clone", "-q", dir, work)
	if err := os.WriteFile(filepath.Join(work, "README.md"), []byte("GitOps\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("-C", work, "add", ".")
	git("-C", work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "initial")
	git("-C", work, "push", "-q", "origin", "HEAD:main")
	exec := git("--exec-path")
	srv := httptest.NewServer(&cgi.Handler{
		Path: filepath.Join(exec, "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	})
	t.Cleanup(srv.Close)
	return srv.URL + "/gitops.git", dir
}

func log(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "log", "--format=%an|%s", "main").CombinedOutput()
	if err != nil {
		t.Fatalf("git log: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func show(t *testing.T, dir, path string) (string, bool) {
	out, err := exec.Command("git", "-C", dir, "show", "main:"+path).CombinedOutput()
	return string(out), err == nil
}

func write(files map[string]string) func(billy.Filesystem) error {
	return func(fs billy.Filesystem) error {
		for name, body := range files {
			if body == "" {
				if err := util.RemoveAll(fs, name); err != nil {
					return err
				}
				continue
			}
			if err := util.WriteFile(fs, name, []byte(body), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestUpdate(t *testing.T) {
	url, dir := serve(t)
	r := &Repo{URL: url, Branch: "main"}
	ctx := context.Background()
	alice := Author{Name: "alice", Email: "alice@example.com"}

	res, err := r.Update(ctx, alice, "deploy shop", write(map[string]string{"apps/demo/shop/a.yaml": "a: 1\n"}))
	if err != nil || !res.Changed || len(res.Revision) != 40 {
		t.Fatalf("first update = %+v, %v", res, err)
	}
	if got := log(t, dir); got[0] != "alice|deploy shop" || len(got) != 2 {
		t.Fatalf("log = %q", got)
	}
	if body, ok := show(t, dir, "apps/demo/shop/a.yaml"); !ok || body != "a: 1\n" {
		t.Fatalf("file = %q, %v", body, ok)
	}

	again, err := r.Update(ctx, alice, "deploy shop again", write(map[string]string{"apps/demo/shop/a.yaml": "a: 1\n"}))
	if err != nil || again.Changed || again.Revision != res.Revision {
		t.Fatalf("unchanged update = %+v, %v (want no commit, revision %s)", again, err, res.Revision)
	}
	if got := log(t, dir); len(got) != 2 {
		t.Fatalf("an unchanged render committed: %q", got)
	}

	del, err := r.Update(ctx, Author{Name: "bob", Email: "bob@x"}, "delete shop", write(map[string]string{"apps/demo/shop": ""}))
	if err != nil || !del.Changed {
		t.Fatalf("delete = %+v, %v", del, err)
	}
	if _, ok := show(t, dir, "apps/demo/shop/a.yaml"); ok {
		t.Fatal("the deleted folder is still in the branch")
	}
	if _, err := r.ReadFile(ctx, "apps/demo/shop/a.yaml"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadFile of a deleted file = %v, want ErrNotFound", err)
	}
	if b, err := r.ReadFile(ctx, "README.md"); err != nil || string(b) != "GitOps\n" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	for _, tt := range []struct {
		rev, ancestor string
		want          bool
	}{{del.Revision, res.Revision, true}, {res.Revision, del.Revision, false}, {res.Revision, res.Revision, true}} {
		if got, err := r.Includes(ctx, tt.rev, tt.ancestor); err != nil || got != tt.want {
			t.Errorf("Includes(%s, %s) = %v, %v; want %v", tt.rev[:7], tt.ancestor[:7], got, err, tt.want)
		}
	}
	if head, err := r.Head(ctx); err != nil || head != del.Revision {
		t.Fatalf("Head = %s, %v; want %s", head, err, del.Revision)
	}
}

// Concurrent writers of different folders all land: a push that loses its race is
// redone on the newer head.
func TestConcurrentUpdatesAllLand(t *testing.T) {
	url, dir := serve(t)
	const writers = 6
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &Repo{URL: url, Branch: "main", Attempts: 20}
			path := fmt.Sprintf("apps/demo/app%d/a.yaml", i)
			if _, err := r.Update(context.Background(), Author{Name: "u", Email: "u@x"}, path, write(map[string]string{path: "x: 1\n"})); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range writers {
		if _, ok := show(t, dir, fmt.Sprintf("apps/demo/app%d/a.yaml", i)); !ok {
			t.Errorf("app%d's commit is missing", i)
		}
	}
	if got := log(t, dir); len(got) != writers+1 {
		t.Errorf("%d commits, want %d: %q", len(got), writers+1, got)
	}
}

func TestUpdateErrors(t *testing.T) {
	url, _ := serve(t)
	ctx := context.Background()
	if _, err := (&Repo{URL: url, Branch: "nope"}).Update(ctx, Author{Name: "a", Email: "a@x"}, "m", write(nil)); err == nil {
		t.Error("a missing branch was accepted")
	}
	boom := fmt.Errorf("render failed")
	if _, err := (&Repo{URL: url, Branch: "main"}).Update(ctx, Author{Name: "a", Email: "a@x"}, "m", func(billy.Filesystem) error { return boom }); err != boom {
		t.Errorf("edit error = %v, want it returned as is", err)
	}
}
