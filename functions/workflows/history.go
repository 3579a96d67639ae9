package workflows

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/julienschmidt/httprouter"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
	"github.com/dwp-sre/dwp-sre/internal/httpjson"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// The history is one list of an app's runs, live and archived, most recently started
// first. The live workflows matching the filters are read whole (in chunks, kept as
// summaries) and sorted; the archive is read by position (archive.Query.Before) from
// where the page starts; the two are merged, a run in both being taken from the cluster.
// The continue token is the position of the page's last run, so runs that start or are
// archived meanwhile shift no page already seen, and one archived and deleted from the
// cluster between two pages is still found, at the same place.

// LabelArchivingStatus is Argo's label of a workflow's archiving. Argo's own merged list
// sets it to ArchivingStatusPersisted on runs read from the archive; so does the history,
// on runs that are no longer in the cluster (get them at /api/v1/archived-workflows/{uid}).
const (
	LabelArchivingStatus     = "workflows.argoproj.io/workflow-archiving-status"
	ArchivingStatusPersisted = "Persisted"
)

const (
	// liveChunk is the page size of the live list: workflows are read whole (the start
	// time is in the status), so chunks are smaller than a metadata list's.
	liveChunk = 100
	// maxArchiveFetch bounds one archive read of the merge.
	maxArchiveFetch = 1000
	// maxArchiveRounds bounds the archive reads of one page. Each read asks for what the
	// page still needs plus one for every live run it may meet again, so two suffice
	// unless thousands of runs are both live and archived.
	maxArchiveRounds = 16
)

// historyPosition is where a run is in the history: its start, or its creation while it
// has not started, to the second; then its uid.
func historyPosition(wf *wfv1.Workflow) archive.Position {
	t := wf.Status.StartedAt.Time
	if t.IsZero() {
		t = wf.CreationTimestamp.Time
	}
	return archive.Position{StartedAt: t.Truncate(time.Second).UTC(), UID: string(wf.UID)}
}

// historyCursor is the decoded continue token of the history.
type historyCursor struct {
	StartedAt time.Time `json:"t"`
	UID       string    `json:"u"`
	// Filter is a hash of the filters, so that a token is not used with other filters.
	Filter string `json:"f"`
}

func encodeHistoryCursor(p archive.Position, filter string) string {
	b, _ := json.Marshal(historyCursor{StartedAt: p.StartedAt.UTC(), UID: p.UID, Filter: filter})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeHistoryCursor reads a continue token of the history listed with filter.
func decodeHistoryCursor(s, filter string) (archive.Position, error) {
	var c historyCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if y := c.StartedAt.UTC().Year(); err != nil || !validUID(c.UID) || c.StartedAt.IsZero() || y < 1 || y > 9999 || c.StartedAt.Nanosecond() != 0 {
		return archive.Position{}, problem.BadRequest("the continue token is invalid", problem.FieldError{Field: "continue", Detail: "is not a token this history returned"})
	}
	if c.Filter != filter {
		return archive.Position{}, problem.BadRequest("the continue token belongs to other filters", problem.FieldError{Field: "continue", Detail: "use it with the filters of the history that returned it"})
	}
	return archive.Position{StartedAt: c.StartedAt.UTC(), UID: c.UID}, nil
}

func historyFilter(ns, selector, namePrefix string) string {
	h := sha256.Sum256([]byte("history\x00" + ns + "\x00" + selector + "\x00" + namePrefix))
	return hex.EncodeToString(h[:8])
}

func (f *Family) history(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	if err := pathErrors(ps, "namespace"); err != nil {
		return err
	}
	lq, err := parseListQuery(r.URL.Query(), "namePrefix")
	if err != nil {
		return err
	}
	ns := ps.ByName("namespace")
	sel, err := lq.selector(&f.cfg)
	if err != nil {
		return err
	}
	filter := historyFilter(ns, sel.String(), lq.namePrefix)
	var after *archive.Position
	if lq.cont != "" {
		p, err := decodeHistoryCursor(lq.cont, filter)
		if err != nil {
			return err
		}
		after = &p
	}
	live, err := liveHistory(ctx, c.Clients, ns, sel, lq.namePrefix)
	if err != nil {
		return err
	}
	var fetch archivePager
	if _, none := f.archive.(archive.Unconfigured); !none {
		ac, labelFilter := f.archiveCaller(c), lq.labelFilter(&f.cfg)
		fetch = func(ctx context.Context, before *archive.Position, limit int) (archive.Page, error) {
			if before == nil {
				// By position from the first page on: argo-server's own pages may split
				// the runs of one second in any order.
				before = &archive.First
			}
			return f.archive.List(ctx, ac, archive.Query{
				Namespace: ns, Labels: labelFilter, Phases: lq.phases, NamePrefix: lq.namePrefix,
				Limit: limit, Before: before,
			})
		}
	}
	items, next, err := mergeHistory(ctx, live, after, lq.limit, fetch)
	if err != nil {
		return err
	}
	out := WorkflowList{Items: items}
	if next != nil {
		out.Metadata.Continue = encodeHistoryCursor(*next, filter)
	}
	return httpjson.Write(w, http.StatusOK, out)
}

// liveHistory is the workflows of ns matching sel and the name prefix, as summaries, in
// history order.
func liveHistory(ctx context.Context, c *Clients, ns string, sel labels.Selector, namePrefix string) ([]wfv1.Workflow, error) {
	var out []wfv1.Workflow
	opts := metav1.ListOptions{LabelSelector: sel.String(), Limit: liveChunk}
	for {
		l, err := c.Argo.ArgoprojV1alpha1().Workflows(ns).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list workflows: %w", err)
		}
		for i := range l.Items {
			if strings.HasPrefix(l.Items[i].Name, namePrefix) {
				out = append(out, Summary(&l.Items[i]))
			}
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	sortHistory(out)
	return out, nil
}

func sortHistory(wfs []wfv1.Workflow) {
	sort.Slice(wfs, func(i, j int) bool { return historyPosition(&wfs[i]).Less(historyPosition(&wfs[j])) })
}

// archivePager reads archived runs after a position (nil: from the newest), at most limit.
type archivePager func(ctx context.Context, before *archive.Position, limit int) (archive.Page, error)

// mergeHistory is the page of at most limit runs after the position after (nil: from the
// newest) of the live runs (in history order) and the archived ones fetch reads (nil: no
// archive), and the position the next page starts after (nil on the last page). A run
// both live and archived is taken from the cluster.
func mergeHistory(ctx context.Context, live []wfv1.Workflow, after *archive.Position, limit int, fetch archivePager) ([]wfv1.Workflow, *archive.Position, error) {
	isLive := make(map[string]bool, len(live))
	for i := range live {
		isLive[string(live[i].UID)] = true
	}
	// liveAfter is the index of the first live run after p (all of them for nil).
	liveAfter := func(p *archive.Position) int {
		if p == nil {
			return 0
		}
		return sort.Search(len(live), func(i int) bool { return p.Less(historyPosition(&live[i])) })
	}
	rest := live[liveAfter(after):]

	var (
		out      []wfv1.Workflow
		archived []wfv1.Workflow // read, archived only, not yet taken
		readTo   = after         // the archive has been read down to here
		done     = fetch == nil  // the archive has nothing more
		rounds   int
	)
	for len(out) < limit {
		if len(archived) == 0 && !done {
			if rounds == maxArchiveRounds {
				return nil, nil, problem.New(http.StatusServiceUnavailable, "the history could not be merged: too many runs are both in the cluster and in the archive")
			}
			rounds++
			// Every live run after readTo may come again from the archive.
			n := min(limit-len(out)+len(live)-liveAfter(readTo), maxArchiveFetch)
			page, err := fetch(ctx, readTo, n)
			if err != nil {
				return nil, nil, err
			}
			for i := range page.Items {
				wf := &page.Items[i]
				p := historyPosition(wf)
				if readTo != nil && !readTo.Less(p) {
					return nil, nil, fmt.Errorf("the archive answered out of order: %s at %s after %s", wf.UID, p.StartedAt, readTo.StartedAt)
				}
				readTo = &p
				if !isLive[string(wf.UID)] {
					archived = append(archived, persisted(wf))
				}
			}
			done = !page.More || len(page.Items) == 0
			continue
		}
		switch {
		case len(rest) == 0 && len(archived) == 0:
			return out, nil, nil
		case len(archived) == 0 || len(rest) > 0 && historyPosition(&rest[0]).Less(historyPosition(&archived[0])):
			out, rest = append(out, rest[0]), rest[1:]
		default:
			out, archived = append(out, archived[0]), archived[1:]
		}
	}
	if len(rest) == 0 && len(archived) == 0 && done {
		return out, nil, nil
	}
	next := historyPosition(&out[len(out)-1])
	return out, &next, nil
}

// persisted is an archived run as the history shows it: a summary labelled as Argo labels
// runs read from its archive.
func persisted(wf *wfv1.Workflow) wfv1.Workflow {
	s := Summary(wf)
	l := make(map[string]string, len(s.Labels)+1)
	for k, v := range s.Labels {
		l[k] = v
	}
	l[LabelArchivingStatus] = ArchivingStatusPersisted
	s.Labels = l
	return s
}
