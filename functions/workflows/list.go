package workflows

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/pager"

	"golang.org/x/sync/errgroup"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// The API server lists in key (name) order and has no sort, so a newest-first history is
// made in two steps: list only the metadata of the matching workflows (names and creation
// times, in chunks, never status.nodes), sort it, and then fetch just the page's workflows.
// The continue token is the position after the page's last item, so new workflows do not
// shift the pages already seen.

const (
	metadataChunk = 500
	// fetchParallel bounds the concurrent GETs of a page, and with them the memory of
	// workflows decoded at once.
	fetchParallel = 8
)

type ref struct {
	name    string
	created time.Time
}

// newerFirst orders by creation time to the second, newest first, then by name,
// greatest first: the order in which an app's summary picks its newest workflow
// (summarystore.Summarize), so that the history's first entry is the summary's workflow
// even when two were created in the same second.
func newerFirst(a, b ref) bool {
	ac, bc := a.created.Truncate(time.Second), b.created.Truncate(time.Second)
	if !ac.Equal(bc) {
		return ac.After(bc)
	}
	return a.name > b.name
}

// cursor is the decoded continue token of a live list.
type cursor struct {
	Created time.Time `json:"t"`
	Name    string    `json:"n"`
	// Filter is a hash of the filters, so a token is not used with other filters.
	Filter string `json:"f"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, filter string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Name == "" {
		return c, problem.BadRequest("the continue token is invalid", problem.FieldError{Field: "continue", Detail: "is not a token this list returned"})
	}
	if c.Filter != filter {
		return c, problem.BadRequest("the continue token belongs to other filters", problem.FieldError{Field: "continue", Detail: "use it with the filters of the list that returned it"})
	}
	return c, nil
}

func filterHash(ns, selector string) string {
	h := sha256.Sum256([]byte(ns + "\x00" + selector))
	return hex.EncodeToString(h[:8])
}

// listWorkflows is one page of the workflows of ns matching lq, newest first.
func listWorkflows(ctx context.Context, c *Clients, ns string, lq listQuery, cfg *Config) (*WorkflowList, error) {
	sel, err := lq.selector(cfg)
	if err != nil {
		return nil, err
	}
	filter := filterHash(ns, sel.String())
	var after *cursor
	if lq.cont != "" {
		cur, err := decodeCursor(lq.cont, filter)
		if err != nil {
			return nil, err
		}
		after = &cur
	}

	var refs []ref
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return c.Meta.Resource(workflowsGVR).Namespace(ns).List(ctx, opts)
	})
	if err := p.EachListItem(ctx, metav1.ListOptions{LabelSelector: sel.String(), Limit: metadataChunk}, func(obj runtime.Object) error {
		m := obj.(*metav1.PartialObjectMetadata)
		refs = append(refs, ref{name: m.Name, created: m.CreationTimestamp.Time})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list workflows: %w", err)
	}
	sort.Slice(refs, func(i, j int) bool { return newerFirst(refs[i], refs[j]) })

	start := 0
	if after != nil {
		pos := ref{name: after.Name, created: after.Created}
		start = sort.Search(len(refs), func(i int) bool { return newerFirst(pos, refs[i]) })
	}
	end := min(start+lq.limit, len(refs))
	page := refs[start:end]

	items, err := fetchWorkflows(ctx, c, ns, page, lq.projection)
	if err != nil {
		return nil, err
	}
	out := &WorkflowList{Items: items}
	if end < len(refs) && len(page) > 0 {
		last := page[len(page)-1]
		out.Metadata.Continue = encodeCursor(cursor{Created: last.created, Name: last.name, Filter: filter})
	}
	return out, nil
}

// fetchWorkflows gets the workflows of page in order, projected; those deleted meanwhile
// are left out.
func fetchWorkflows(ctx context.Context, c *Clients, ns string, page []ref, projection string) ([]wfv1.Workflow, error) {
	results := make([]*wfv1.Workflow, len(page))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchParallel)
	for i, r := range page {
		g.Go(func() error {
			wf, err := c.Argo.ArgoprojV1alpha1().Workflows(ns).Get(gctx, r.name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return fmt.Errorf("get workflow %s: %w", r.name, err)
			default:
				p := project(wf, projection)
				results[i] = &p
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	items := make([]wfv1.Workflow, 0, len(page))
	for _, wf := range results {
		if wf != nil {
			items = append(items, *wf)
		}
	}
	return items, nil
}
