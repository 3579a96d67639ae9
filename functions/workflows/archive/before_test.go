package archive

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/apimachinery/pkg/types"
)

// tiedWorkflows are archived workflows of app "tie" in ns, many started in the same
// second, with uids whose order is not their names' order; and one of another app.
func tiedWorkflows(ns string) []*wfv1.Workflow {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// Seconds after base of each workflow: runs of ties, and single ones between.
	seconds := []int{0, 0, 0, 0, 0, 0, 0, 5, 9, 9, 9, 9, 9, 10, 30, 30, 30, 30, 30, 30, 30, 30, 31}
	var out []*wfv1.Workflow
	for i, s := range seconds {
		wf := archived(ns, fmt.Sprintf("tie-%02d", i), base.Add(time.Duration(s)*time.Second), wfv1.WorkflowSucceeded, map[string]string{"app": "tie"})
		h := fnv.New64a()
		fmt.Fprint(h, i)
		wf.UID = types.UID(fmt.Sprintf("%016x-%02d", h.Sum64(), i))
		out = append(out, wf)
	}
	out = append(out, archived(ns, "other-0", base.Add(9*time.Second), wfv1.WorkflowSucceeded, map[string]string{"app": "other"}))
	return out
}

// wantOrder is the names of the app "tie" workflows in the archive's order.
func wantOrder(wfs []*wfv1.Workflow) []string {
	var tie []*wfv1.Workflow
	for _, wf := range wfs {
		if wf.Labels["app"] == "tie" {
			tie = append(tie, wf)
		}
	}
	slices.SortFunc(tie, func(a, b *wfv1.Workflow) int {
		if PositionOf(a).Less(PositionOf(b)) {
			return -1
		}
		return 1
	})
	names := make([]string, len(tie))
	for i, wf := range tie {
		names[i] = wf.Name
	}
	return names
}

// checkPagingByPosition pages through the app's archive by positions, as the merged
// history does, from the start (First) and from within, with several page sizes.
func checkPagingByPosition(t *testing.T, a Archive, c Caller, ns string, want []string, positions map[string]Position) {
	ctx := context.Background()
	for _, limit := range []int{1, 2, 3, 7, 8, 50} {
		for _, from := range []string{"", want[3], want[10], want[len(want)-1]} {
			t.Run(fmt.Sprintf("limit %d from %q", limit, from), func(t *testing.T) {
				q := Query{Namespace: ns, Labels: map[string]string{"app": "tie"}, Limit: limit, Before: &First}
				expect := want
				if from != "" {
					p := positions[from]
					q.Before = &p
					expect = want[slices.Index(want, from)+1:]
				}
				var got []string
				for pages := 0; ; pages++ {
					if pages > len(want)+1 {
						t.Fatalf("no end after %v", got)
					}
					page, err := a.List(ctx, c, q)
					if err != nil {
						t.Fatal(err)
					}
					if len(page.Items) > limit {
						t.Fatalf("%d items, limit %d", len(page.Items), limit)
					}
					if page.Continue != "" {
						t.Fatalf("a continue token with a position: %q", page.Continue)
					}
					for _, wf := range page.Items {
						got = append(got, wf.Name)
					}
					if !page.More {
						break
					}
					if len(page.Items) == 0 {
						t.Fatal("more follows an empty page")
					}
					p := PositionOf(&page.Items[len(page.Items)-1])
					q.Before, q.Continue = &p, ""
				}
				if strings.Join(got, ",") != strings.Join(expect, ",") {
					t.Fatalf("got  %v\nwant %v", got, expect)
				}
			})
		}
	}
	_, err := a.List(ctx, c, Query{Namespace: ns, Limit: 1, Continue: "1", Before: &Position{StartedAt: time.Now(), UID: "x"}})
	if err == nil {
		t.Fatal("Before and Continue both taken")
	}
}

func positionsOf(wfs []*wfv1.Workflow) map[string]Position {
	m := map[string]Position{}
	for _, wf := range wfs {
		m[wf.Name] = PositionOf(wf)
	}
	return m
}

func TestArgoServerBefore(t *testing.T) {
	wfs := tiedWorkflows("team")
	fake := &fakeArgoServer{rights: map[string][]string{"alice": {"team"}}}
	for _, wf := range wfs {
		fake.items = append(fake.items, *wf)
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	a, err := NewArgoServer(srv.URL+"/argo", "")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	checkPagingByPosition(t, a, Caller{Token: "alice"}, "team", wantOrder(wfs), positionsOf(wfs))
}

func TestPositionLess(t *testing.T) {
	at := func(sec int, nsec int, uid string) Position {
		return Position{StartedAt: time.Date(2026, 1, 1, 0, 0, sec, nsec, time.UTC), UID: uid}
	}
	cases := []struct {
		a, b Position
		want bool
	}{
		{at(2, 0, "a"), at(1, 0, "z"), true},
		{at(1, 0, "z"), at(2, 0, "a"), false},
		{at(1, 0, "b"), at(1, 0, "a"), true},
		{at(1, 0, "a"), at(1, 0, "b"), false},
		{at(1, 0, "a"), at(1, 0, "a"), false},
		// Whole seconds, as Argo records them.
		{at(1, 900, "a"), at(1, 0, "b"), false},
		// Bytes, not a locale: '-' (0x2d) before digits and letters.
		{at(1, 0, "a0"), at(1, 0, "a-"), true},
		{at(1, 0, "b"), at(1, 0, "B"), true},
	}
	for _, c := range cases {
		if got := c.a.Less(c.b); got != c.want {
			t.Errorf("%v < %v: %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
