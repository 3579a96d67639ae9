// Package archive reads archived Argo workflows: from argo-server's REST API where one
// runs, or directly from the Postgres archive Argo's workflow-controller writes. Both
// answer for a caller, with that caller's rights.
package archive

import (
	"context"
	"errors"
	"net/http"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Archive lists and gets archived workflows. Errors a client should see are problems
// (see internal/problem): 400 for a bad continue token, 403, 404.
type Archive interface {
	// List is one page of a namespace's archived workflows, the most recently started first.
	// Items are summaries: no status.nodes, no templates.
	List(ctx context.Context, c Caller, q Query) (Page, error)
	// Get is one archived workflow in full.
	Get(ctx context.Context, c Caller, uid string) (*wfv1.Workflow, error)
	// Close releases connections.
	Close()
}

// Caller is who asks.
type Caller struct {
	// Token is the caller's bearer token, forwarded to argo-server.
	Token string
	// Can reports whether the caller may perform verb ("list", "get") on workflows in a
	// namespace; the Postgres backend, which has no notion of users, asks it.
	Can func(ctx context.Context, verb, namespace string) (bool, error)
}

// Query selects archived workflows.
type Query struct {
	// Namespace is required: rights are per namespace.
	Namespace string
	// Labels must all match exactly.
	Labels map[string]string
	// Phases, when not empty, keeps workflows in one of them.
	Phases []string
	// NamePrefix keeps workflows whose name starts with it.
	NamePrefix string
	// Limit is the page size (at least 1).
	Limit int
	// Continue is the token of the previous page, empty for the first.
	Continue string
	// Before, when set, keeps only the workflows after this position in the list's order
	// (started earlier, or in the same second with a smaller uid): a keyset, with which
	// a caller pages by positions of its own, such as a history merged with the live
	// workflows. Continue must then be empty.
	Before *Position
}

// Position is a place in the archive's order: most recently started first, to the second
// (as Argo records startedAt), then by uid, greatest first, compared byte by byte.
type Position struct {
	StartedAt time.Time
	UID       string
}

// First is the position before every workflow: a list Before it starts at the newest.
var First = Position{StartedAt: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}

// Less reports whether p comes before o in the newest-first order.
func (p Position) Less(o Position) bool {
	pt, ot := p.StartedAt.Truncate(time.Second), o.StartedAt.Truncate(time.Second)
	if !pt.Equal(ot) {
		return pt.After(ot)
	}
	return p.UID > o.UID
}

// PositionOf is wf's position in the archive's order.
func PositionOf(wf *wfv1.Workflow) Position {
	return Position{StartedAt: wf.Status.StartedAt.Time.Truncate(time.Second), UID: string(wf.UID)}
}

func (q *Query) checkBefore() error {
	if q.Before != nil && q.Continue != "" {
		return errors.New("archive query: Before and Continue are exclusive")
	}
	return nil
}

// Page is one page of a list.
type Page struct {
	Items []wfv1.Workflow
	// Continue is the token of the next page; empty on the last, and with Query.Before.
	Continue string
	// More reports whether items follow this page (with Query.Before too).
	More bool
}

func forbiddenList(ns string) problem.Problem {
	return problem.Forbidden("you may not list workflows in namespace " + ns)
}

func notFound(uid string) problem.Problem {
	return problem.NotFound("no archived workflow with uid " + uid)
}

// Unconfigured answers every call with 501: no archive is configured.
type Unconfigured struct{}

func (Unconfigured) List(context.Context, Caller, Query) (Page, error) { return Page{}, unconfigured() }
func (Unconfigured) Get(context.Context, Caller, string) (*wfv1.Workflow, error) {
	return nil, unconfigured()
}
func (Unconfigured) Close() {}

func unconfigured() problem.Problem {
	return problem.New(http.StatusNotImplemented, "no workflow archive is configured: set DWP_ARGO_SERVER_URL or DWP_ARCHIVE_DSN")
}
