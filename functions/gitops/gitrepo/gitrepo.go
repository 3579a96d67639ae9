// Package gitrepo commits changes to a GitOps repository over HTTP(S) with go-git: clone,
// edit, commit, push, and on a push that lost a race, the same edit again on the newer
// head, so that concurrent writers of different folders all land.
package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Repo is one branch of a remote repository.
type Repo struct {
	URL    string
	Branch string
	// Username and Password authenticate over HTTP (basic auth; a token as password).
	Username, Password string
	// Attempts bounds how often an edit is tried again after losing a push race (default 8).
	Attempts int
}

// Author is who a commit is by: the portal user who asked for the change.
type Author struct{ Name, Email string }

// Result says what an Update did.
type Result struct {
	// Revision is the commit that holds the edit: the new commit, or the branch's head
	// when the edit changed nothing.
	Revision string
	// Changed is false when the edit left the tree as it was (no commit was made).
	Changed bool
}

// ErrConflict means every attempt lost its push race.
var ErrConflict = errors.New("the branch kept moving: every push lost its race")

// Update applies edit to a fresh checkout of the branch's head and commits the result
// with message, unless it changed nothing. edit may be called more than once (once per
// attempt) and must produce the same change from the same tree.
func (r *Repo) Update(ctx context.Context, author Author, message string, edit func(fs billy.Filesystem) error) (Result, error) {
	attempts := r.Attempts
	if attempts <= 0 {
		attempts = 8
	}
	var lastErr error
	for i := range attempts {
		if i > 0 {
			// Racing writers back off at random so that they stop colliding.
			d := time.Duration(50+rand.IntN(100*i)) * time.Millisecond
			select {
			case <-ctx.Done():
				return Result{}, ctx.Err()
			case <-time.After(d):
			}
		}
		res, err := r.try(ctx, author, message, edit)
		if err == nil || !isRejected(err) {
			return res, err
		}
		lastErr = err
	}
	return Result{}, fmt.Errorf("%w (%d attempts): %v", ErrConflict, attempts, lastErr)
}

func (r *Repo) auth() transport.AuthMethod {
	if r.Username == "" && r.Password == "" {
		return nil
	}
	user := r.Username
	if user == "" {
		user = "git" // hosts that take a token as password want some user name
	}
	return &githttp.BasicAuth{Username: user, Password: r.Password}
}

func (r *Repo) branch() plumbing.ReferenceName { return plumbing.NewBranchReferenceName(r.Branch) }

func (r *Repo) try(ctx context.Context, author Author, message string, edit func(fs billy.Filesystem) error) (Result, error) {
	fs := memfs.New()
	repo, err := git.CloneContext(ctx, memory.NewStorage(), fs, &git.CloneOptions{
		URL: r.URL, Auth: r.auth(), ReferenceName: r.branch(), SingleBranch: true, Tags: git.NoTags,
	})
	if err != nil {
		return Result{}, fmt.Errorf("clone %s (branch %s): %w", r.URL, r.Branch, err)
	}
	head, err := repo.Head()
	if err != nil {
		return Result{}, fmt.Errorf("head of %s: %w", r.Branch, err)
	}
	if err := edit(fs); err != nil {
		return Result{}, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return Result{}, err
	}
	// Stage every change, deletions included.
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return Result{}, fmt.Errorf("stage: %w", err)
	}
	when := time.Now()
	commit, err := wt.Commit(message, &git.CommitOptions{
		Author:    &object.Signature{Name: author.Name, Email: author.Email, When: when},
		Committer: &object.Signature{Name: "dwp-sre", Email: "dwp-sre@localhost", When: when},
	})
	if errors.Is(err, git.ErrEmptyCommit) {
		return Result{Revision: head.Hash().String()}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("commit: %w", err)
	}
	spec := config.RefSpec(r.branch() + ":" + r.branch())
	err = repo.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: r.auth()})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return Result{}, fmt.Errorf("push to %s: %w", r.URL, err)
	}
	return Result{Revision: commit.String(), Changed: true}, nil
}

// isRejected says that a push lost a race: the remote branch moved since the clone.
func isRejected(err error) bool {
	if errors.Is(err, git.ErrNonFastForwardUpdate) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "non-fast-forward") || strings.Contains(s, "fetch first") ||
		strings.Contains(s, "failed to update ref") || strings.Contains(s, "cannot lock ref")
}

// Head is the branch's head commit on the remote.
func (r *Repo) Head(ctx context.Context) (string, error) {
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: r.auth()})
	if err != nil {
		return "", fmt.Errorf("list %s: %w", r.URL, err)
	}
	for _, ref := range refs {
		if ref.Name() == r.branch() {
			return ref.Hash().String(), nil
		}
	}
	return "", fmt.Errorf("%s has no branch %s", r.URL, r.Branch)
}

// ErrNotFound means a file is not on the branch.
var ErrNotFound = errors.New("not in the repository")

// ReadFile reads one file at the branch's head.
func (r *Repo) ReadFile(ctx context.Context, name string) ([]byte, error) {
	fs := memfs.New()
	if _, err := git.CloneContext(ctx, memory.NewStorage(), fs, &git.CloneOptions{
		URL: r.URL, Auth: r.auth(), ReferenceName: r.branch(), SingleBranch: true, Tags: git.NoTags, Depth: 1,
	}); err != nil {
		return nil, fmt.Errorf("clone %s (branch %s): %w", r.URL, r.Branch, err)
	}
	b, err := util.ReadFile(fs, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return b, err
}

// Includes says whether the commit rev is ancestor or a descendant of it on the branch:
// whether a checkout of rev holds what ancestor committed (unless later undone).
func (r *Repo) Includes(ctx context.Context, rev, ancestor string) (bool, error) {
	if rev == ancestor {
		return true, nil
	}
	repo, err := git.CloneContext(ctx, memory.NewStorage(), nil, &git.CloneOptions{
		URL: r.URL, Auth: r.auth(), ReferenceName: r.branch(), SingleBranch: true, Tags: git.NoTags, NoCheckout: true,
	})
	if err != nil {
		return false, fmt.Errorf("clone %s (branch %s): %w", r.URL, r.Branch, err)
	}
	a, err := repo.CommitObject(plumbing.NewHash(ancestor))
	if err != nil {
		return false, fmt.Errorf("commit %s: %w", ancestor, err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(rev))
	if err != nil {
		return false, fmt.Errorf("commit %s: %w", rev, err)
	}
	return a.IsAncestor(c)
}
