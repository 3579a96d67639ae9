package workflows

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

var historyBase = time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)

// run is a workflow of app shop in team started sec seconds after historyBase (not
// started when sec < 0: created -sec seconds after it).
func run(name string, sec int, uid string) *wfv1.Workflow {
	wf := workflow("team", name, historyBase, wfv1.WorkflowSucceeded, map[string]string{"app": "shop"})
	wf.UID = types.UID(uid)
	if sec >= 0 {
		wf.CreationTimestamp = metav1.NewTime(historyBase.Add(time.Duration(sec) * time.Second).Add(-time.Second))
		wf.Status.StartedAt = metav1.NewTime(historyBase.Add(time.Duration(sec)*time.Second + 300*time.Millisecond))
	} else {
		wf.CreationTimestamp = metav1.NewTime(historyBase.Add(time.Duration(-sec) * time.Second))
		wf.Status.Phase = wfv1.WorkflowPending
		wf.Labels[LabelPhase] = string(wfv1.WorkflowPending)
		delete(wf.Labels, LabelCompleted)
	}
	return wf
}

// memArchive is an archive in memory that lists by position as the real ones do, and
// lets callers list the namespaces their Can allows. It counts its reads.
type memArchive struct {
	items []wfv1.Workflow
	err   error
	reads int
}

func (a *memArchive) List(ctx context.Context, c archive.Caller, q archive.Query) (archive.Page, error) {
	a.reads++
	if a.err != nil {
		return archive.Page{}, a.err
	}
	if ok, err := c.Can(ctx, "list", q.Namespace); err != nil || !ok {
		return archive.Page{}, problem.Forbidden("you may not list workflows in namespace " + q.Namespace)
	}
	if q.Before == nil || q.Continue != "" || q.Limit < 1 {
		return archive.Page{}, fmt.Errorf("the history asked %+v", q)
	}
	var out []wfv1.Workflow
	for _, wf := range a.items {
		p := archive.PositionOf(&wf)
		if wf.Namespace != q.Namespace || !labels.SelectorFromSet(q.Labels).Matches(labels.Set(wf.Labels)) ||
			len(q.Phases) > 0 && !slices.Contains(q.Phases, string(wf.Status.Phase)) || !strings.HasPrefix(wf.Name, q.NamePrefix) ||
			!q.Before.Less(p) {
			continue
		}
		s := Summary(&wf)
		s.ResourceVersion = "" // the archive keeps none
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return archive.PositionOf(&out[i]).Less(archive.PositionOf(&out[j])) })
	page := archive.Page{Items: out}
	if len(out) > q.Limit {
		page.Items, page.More = out[:q.Limit], true
	}
	return page, nil
}

func (a *memArchive) Get(context.Context, archive.Caller, string) (*wfv1.Workflow, error) {
	return nil, errors.New("not used")
}
func (a *memArchive) Close() {}

func allowAll(context.Context, string, string) (bool, error) { return true, nil }

func (a *memArchive) pager() archivePager {
	return func(ctx context.Context, before *archive.Position, limit int) (archive.Page, error) {
		if before == nil {
			before = &archive.First
		}
		return a.List(ctx, archive.Caller{Can: allowAll}, archive.Query{Namespace: "team", Limit: limit, Before: before})
	}
}

func TestMergeHistory(t *testing.T) {
	type scenario struct {
		name     string
		live     []*wfv1.Workflow
		archived []*wfv1.Workflow
		noArch   bool
		// want is the history's names, newest first.
		want string
		// maxReads bounds the archive reads of one page.
		maxReads int
	}
	var both, bothLive []*wfv1.Workflow
	for i := range 30 {
		both = append(both, run(fmt.Sprintf("b%02d", i), i, fmt.Sprintf("u%02d", i)))
		bothLive = append(bothLive, run(fmt.Sprintf("b%02d", i), i, fmt.Sprintf("u%02d", i)))
	}
	var wantBoth []string
	for i := 29; i >= 0; i-- {
		wantBoth = append(wantBoth, fmt.Sprintf("b%02d", i))
	}
	scenarios := []scenario{
		{name: "live alone, no archive", noArch: true,
			live: []*wfv1.Workflow{run("l1", 1, "a"), run("l3", 3, "b"), run("l2", 2, "c"), run("pending", -5, "d")},
			want: "pending,l3,l2,l1", maxReads: 0},
		{name: "archive alone",
			archived: []*wfv1.Workflow{run("a1", 1, "a"), run("a3", 3, "b"), run("a2", 2, "c")},
			want:     "a3,a2,a1", maxReads: 2},
		{name: "nothing", want: "", maxReads: 1},
		{name: "interleaved, overlapping, ties by uid",
			live: []*wfv1.Workflow{run("l10", 10, "k"), run("both8", 8, "m"), run("l8", 8, "p"), run("pending", -12, "z"), run("l1", 1, "q")},
			archived: []*wfv1.Workflow{run("both8", 8, "m"), run("a9", 9, "x"), run("a8", 8, "n"), run("a8b", 8, "a"),
				run("a0", 0, "r"), run("a1", 1, "c")},
			want: "pending,l10,a9,l8,a8,both8,a8b,l1,a1,a0", maxReads: 2},
		{name: "every run in both", live: bothLive, archived: both, want: strings.Join(wantBoth, ","), maxReads: 2},
	}
	for _, sc := range scenarios {
		var live []wfv1.Workflow
		for _, wf := range sc.live {
			live = append(live, Summary(wf))
		}
		sortHistory(live)
		isLive := map[string]bool{}
		for _, wf := range sc.live {
			isLive[wf.Name] = true
		}
		arch := &memArchive{}
		for _, wf := range sc.archived {
			arch.items = append(arch.items, *wf)
		}
		var fetch archivePager
		if !sc.noArch {
			fetch = arch.pager()
		}
		for _, limit := range []int{1, 2, 3, 4, 50} {
			t.Run(fmt.Sprintf("%s, limit %d", sc.name, limit), func(t *testing.T) {
				var got []string
				var after *archive.Position
				for pages := 0; ; pages++ {
					if pages > 40 {
						t.Fatalf("no end after %v", got)
					}
					arch.reads = 0
					items, next, err := mergeHistory(context.Background(), live, after, limit, fetch)
					if err != nil {
						t.Fatal(err)
					}
					if len(items) > limit || arch.reads > sc.maxReads {
						t.Fatalf("%d items (limit %d), %d archive reads (at most %d)", len(items), limit, arch.reads, sc.maxReads)
					}
					for _, wf := range items {
						got = append(got, wf.Name)
						persisted := wf.Labels[LabelArchivingStatus] == ArchivingStatusPersisted
						if persisted == isLive[wf.Name] || wf.Status.Nodes != nil {
							t.Fatalf("%s: live %v, labelled persisted %v, nodes %v", wf.Name, isLive[wf.Name], persisted, wf.Status.Nodes != nil)
						}
					}
					if next == nil {
						break
					}
					if len(items) == 0 {
						t.Fatal("a continue after an empty page")
					}
					after = next
				}
				if strings.Join(got, ",") != sc.want {
					t.Fatalf("got  %v\nwant %s", got, sc.want)
				}
			})
		}
	}

	t.Run("archive failure", func(t *testing.T) {
		arch := &memArchive{err: problem.New(http.StatusServiceUnavailable, "down")}
		_, _, err := mergeHistory(context.Background(), nil, nil, 5, arch.pager())
		if p, ok := problem.As(err); !ok || p.Status != http.StatusServiceUnavailable {
			t.Fatalf("%v", err)
		}
	})
	t.Run("archive out of order", func(t *testing.T) {
		bad := func(context.Context, *archive.Position, int) (archive.Page, error) {
			return archive.Page{Items: []wfv1.Workflow{*run("old", 1, "a"), *run("new", 5, "b")}}, nil
		}
		if _, _, err := mergeHistory(context.Background(), nil, nil, 5, bad); err == nil {
			t.Fatal("accepted")
		}
	})
}

func historyCluster(t testing.TB) (*fakeCluster, *memArchive) {
	var objs []runtime.Object
	for _, wf := range []*wfv1.Workflow{run("live-3", 3, "c"), run("both-2", 2, "b"), run("other-4", 4, "d"), run("pending", -9, "p")} {
		if strings.HasPrefix(wf.Name, "other") {
			wf.Labels["app"] = "web"
		}
		objs = append(objs, wf)
	}
	fc := newFakeCluster(t, map[string][]string{"alice": {"team"}}, objs...)
	arch := &memArchive{}
	for _, wf := range []*wfv1.Workflow{run("both-2", 2, "b"), run("arch-1", 1, "a"), run("arch-5", 5, "e")} {
		arch.items = append(arch.items, *wf)
	}
	failed := run("arch-failed", 0, "f")
	failed.Status.Phase, failed.Labels[LabelPhase] = wfv1.WorkflowFailed, string(wfv1.WorkflowFailed)
	arch.items = append(arch.items, *failed)
	return fc, arch
}

func TestHistoryRoute(t *testing.T) {
	fc, arch := historyCluster(t)
	h := newRouter(newTestFamily(fc, arch))
	const path = "/api/v1/namespaces/team/workflow-history"
	page := func(t *testing.T, h http.Handler, q url.Values) (WorkflowList, response) {
		t.Helper()
		r := do(t, h, http.MethodGet, path+"?"+q.Encode(), "alice", "")
		var l WorkflowList
		if r.code == http.StatusOK {
			if err := json.Unmarshal([]byte(r.body), &l); err != nil {
				t.Fatal(err)
			}
		}
		return l, r
	}
	all := func(t *testing.T, h http.Handler, q url.Values) []string {
		t.Helper()
		var got []string
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("no end")
			}
			l, r := page(t, h, q)
			if r.code != http.StatusOK {
				t.Fatalf("%d %s", r.code, r.body)
			}
			for _, wf := range l.Items {
				name := wf.Name
				if wf.Labels[LabelArchivingStatus] == ArchivingStatusPersisted {
					name += "(archived)"
				}
				got = append(got, name)
			}
			if l.Metadata.Continue == "" {
				return got
			}
			q.Set("continue", l.Metadata.Continue)
		}
	}
	cases := []struct {
		query string
		want  string
	}{
		{"app=shop", "pending,arch-5(archived),live-3,both-2,arch-1(archived),arch-failed(archived)"},
		{"", "pending,arch-5(archived),other-4,live-3,both-2,arch-1(archived),arch-failed(archived)"},
		{"app=shop&phase=Succeeded", "arch-5(archived),live-3,both-2,arch-1(archived)"},
		{"app=shop&phase=Failed,Pending", "pending,arch-failed(archived)"},
		{"namePrefix=arch-", "arch-5(archived),arch-1(archived),arch-failed(archived)"},
		{"app=web", "other-4"},
		{"app=none", ""},
	}
	t.Run("an empty history is an empty array", func(t *testing.T) {
		r := do(t, h, http.MethodGet, path+"?app=none", "alice", "")
		if r.code != http.StatusOK || !strings.Contains(r.body, `"items":[]`) {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})
	for _, c := range cases {
		for _, limit := range []string{"1", "2", "50"} {
			t.Run(c.query+" limit "+limit, func(t *testing.T) {
				q, _ := url.ParseQuery(c.query)
				q.Set("limit", limit)
				if got := strings.Join(all(t, h, q), ","); got != c.want {
					t.Fatalf("got  %s\nwant %s", got, c.want)
				}
			})
		}
	}

	t.Run("no archive: the live runs alone", func(t *testing.T) {
		live := newRouter(newTestFamily(fc, nil))
		if got := strings.Join(all(t, live, url.Values{"app": {"shop"}, "limit": {"2"}}), ","); got != "pending,live-3,both-2" {
			t.Fatal(got)
		}
	})

	first, _ := page(t, h, url.Values{"app": {"shop"}, "limit": {"1"}})
	if first.Metadata.Continue == "" {
		t.Fatal("no continue token")
	}
	arch.err = problem.New(http.StatusServiceUnavailable, "the workflow archive is unavailable")
	down := do(t, h, http.MethodGet, path, "alice", "")
	arch.err = nil
	forged := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	refusals := []struct {
		name, path, user string
		code             int
		field            string
	}{
		{"no rights in the namespace", "/api/v1/namespaces/other/workflow-history", "alice", 403, ""},
		{"no token", path, "", 401, ""},
		{"bad namespace", "/api/v1/namespaces/Team/workflow-history", "alice", 400, "namespace"},
		{"unknown parameter", path + "?projection=full", "alice", 400, "projection"},
		{"bad phase", path + "?phase=Done", "alice", 400, "phase"},
		{"bad limit", path + "?limit=501", "alice", 400, "limit"},
		{"bad name prefix", path + "?namePrefix=A", "alice", 400, "namePrefix"},
		{"garbage token", path + "?continue=garbage!", "alice", 400, "continue"},
		{"token of other filters", path + "?app=web&continue=" + first.Metadata.Continue, "alice", 400, "continue"},
		{"token without uid", path + "?app=shop&continue=" + forged(map[string]any{"t": "2026-01-01T00:00:00Z", "f": historyFilter("team", "app=shop", "")}), "alice", 400, "continue"},
		{"token without time", path + "?app=shop&continue=" + forged(map[string]any{"u": "x", "f": historyFilter("team", "app=shop", "")}), "alice", 400, "continue"},
		{"token of the live list", path + "?continue=" + encodeCursor(cursor{Created: historyBase, Name: "x", Filter: filterHash("team", "")}), "alice", 400, "continue"},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, h, http.MethodGet, c.path, c.user, "")
			if r.code != c.code {
				t.Fatalf("%d, want %d: %s", r.code, c.code, r.body)
			}
			p := decodeProblem(t, r)
			if c.field != "" && !hasField(p, c.field, "") {
				t.Fatalf("no field error for %s: %+v", c.field, p)
			}
		})
	}
	t.Run("archive down", func(t *testing.T) {
		if down.code != http.StatusServiceUnavailable {
			t.Fatalf("%d %s", down.code, down.body)
		}
	})
}

func TestHistoryCursorRoundTrip(t *testing.T) {
	p := archive.Position{StartedAt: historyBase.Add(time.Second), UID: "0b7f-aa"}
	tok := encodeHistoryCursor(p, "f1")
	got, err := decodeHistoryCursor(tok, "f1")
	if err != nil || got != p {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := decodeHistoryCursor(tok, "f2"); err == nil {
		t.Fatal("a token of other filters taken")
	}
}

func FuzzHistoryQuery(f *testing.F) {
	for _, q := range []string{
		"", "app=shop", "app=shop&phase=Running,Failed&limit=2", "namePrefix=arch-&limit=1", "phase=Nope", "limit=-1",
		"continue=eyJ0IjoiMjAyNi0wMi0wMVQxMDowMDowMloiLCJ1IjoiYiIsImYiOiIifQ", "continue=%ff%fe", "projection=full", "a;b=c",
	} {
		f.Add(q)
	}
	fc, arch := historyCluster(f)
	h := newRouter(newTestFamily(fc, arch))
	f.Fuzz(func(t *testing.T, rawQuery string) {
		rec := rawGet(h, "/api/v1/namespaces/team/workflow-history", rawQuery, "alice")
		if rec.Code >= 500 {
			t.Fatalf("?%s: %d %s", rawQuery, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusOK {
			var l WorkflowList
			if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(l.Items); i++ {
				if !historyPosition(&l.Items[i-1]).Less(historyPosition(&l.Items[i])) {
					t.Fatalf("out of order: %s before %s", l.Items[i-1].Name, l.Items[i].Name)
				}
			}
		}
	})
}

// FuzzHistoryCursor: a token is either refused as a 400 or a whole-second position that
// reads back as it was made.
func FuzzHistoryCursor(f *testing.F) {
	f.Add(encodeHistoryCursor(archive.Position{StartedAt: historyBase, UID: "u-1"}, "f"), "f")
	f.Add("", "")
	f.Add("e30", "")
	f.Add("eyJ0IjoiMjAyNi0wMi0wMVQxMDowMDowMC41WiIsInUiOiJ1IiwiZiI6IiJ9", "")
	f.Fuzz(func(t *testing.T, token, filter string) {
		p, err := decodeHistoryCursor(token, filter)
		if err != nil {
			if pr, ok := problem.As(err); !ok || pr.Status != http.StatusBadRequest {
				t.Fatalf("%q: %v", token, err)
			}
			return
		}
		if !validUID(p.UID) || p.StartedAt.Nanosecond() != 0 {
			t.Fatalf("%q: %+v", token, p)
		}
		again, err := decodeHistoryCursor(encodeHistoryCursor(p, filter), filter)
		if err != nil || !again.StartedAt.Equal(p.StartedAt) || again.UID != p.UID {
			t.Fatalf("%+v → %+v %v", p, again, err)
		}
	})
}
