package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// fakeArgoServer speaks the JSON of argo-server's ArchivedWorkflowService (grpc-gateway):
// lists as WorkflowList with an offset as continue token, errors as {"code","message"}
// with the HTTP status of the gRPC code. Its users are tokens allowed in namespaces.
type fakeArgoServer struct {
	items  []wfv1.Workflow // newest first
	rights map[string][]string
	last   url.Values
	calls  int
}

func (s *fakeArgoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(status, code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg})
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s.rights[token] == nil {
		fail(http.StatusUnauthorized, 16, "token not valid")
		return
	}
	can := func(ns string) bool {
		for _, n := range s.rights[token] {
			if n == ns {
				return true
			}
		}
		return false
	}
	q := r.URL.Query()
	s.last = q
	switch {
	case r.URL.Path == "/argo/api/v1/archived-workflows":
		ns := q.Get("namespace")
		if !can(ns) {
			fail(http.StatusForbidden, 7, `Permission denied, you are not allowed to list workflows in namespace "`+ns+`"`)
			return
		}
		sel, err := labels.Parse(q.Get("listOptions.labelSelector"))
		if err != nil {
			fail(http.StatusBadRequest, 3, err.Error())
			return
		}
		offset, _ := strconv.Atoi(q.Get("listOptions.continue"))
		limit, _ := strconv.Atoi(q.Get("listOptions.limit"))
		// Start time bounds as argo-server v3.7 reads them: both inclusive, whole seconds.
		var minStarted, maxStarted time.Time
		for _, fs := range strings.Split(q.Get("listOptions.fieldSelector"), ",") {
			var err error
			switch {
			case fs == "":
			case strings.HasPrefix(fs, "spec.startedAt>"):
				minStarted, err = time.Parse(time.RFC3339, strings.TrimPrefix(fs, "spec.startedAt>"))
			case strings.HasPrefix(fs, "spec.startedAt<"):
				maxStarted, err = time.Parse(time.RFC3339, strings.TrimPrefix(fs, "spec.startedAt<"))
			default:
				err = fmt.Errorf("unsupported requirement %s", fs)
			}
			if err != nil {
				fail(http.StatusBadRequest, 3, err.Error())
				return
			}
		}
		var matched []wfv1.Workflow
		for _, wf := range s.items {
			started := wf.Status.StartedAt.Time
			if wf.Namespace == ns && sel.Matches(labels.Set(wf.Labels)) && strings.HasPrefix(wf.Name, q.Get("namePrefix")) &&
				(minStarted.IsZero() || !started.Before(minStarted)) && (maxStarted.IsZero() || !started.After(maxStarted)) {
				wf.Status.Nodes = nil
				matched = append(matched, wf)
			}
		}
		// Ordered by start time alone, as Argo's archive query is: workflows started in the
		// same second come in an order that changes from call to call.
		s.calls++
		tie := func(uid types.UID) uint32 {
			h := fnv.New32a()
			fmt.Fprintf(h, "%s/%d", uid, s.calls)
			return h.Sum32()
		}
		sort.SliceStable(matched, func(i, j int) bool {
			a, b := matched[i].Status.StartedAt.Time, matched[j].Status.StartedAt.Time
			if !a.Equal(b) {
				return a.After(b)
			}
			return tie(matched[i].UID) < tie(matched[j].UID)
		})
		list := map[string]any{"metadata": map[string]any{}}
		end := len(matched)
		if limit > 0 && offset+limit < len(matched) {
			end = offset + limit
			list["metadata"] = map[string]any{"continue": strconv.Itoa(end)}
		}
		if offset > len(matched) {
			offset = len(matched)
		}
		list["items"] = matched[offset:end]
		_ = json.NewEncoder(w).Encode(list)
	case strings.HasPrefix(r.URL.Path, "/argo/api/v1/archived-workflows/"):
		uid := strings.TrimPrefix(r.URL.Path, "/argo/api/v1/archived-workflows/")
		for _, wf := range s.items {
			if string(wf.UID) == uid {
				if !can(wf.Namespace) {
					fail(http.StatusForbidden, 7, "permission denied")
					return
				}
				_ = json.NewEncoder(w).Encode(wf)
				return
			}
		}
		fail(http.StatusNotFound, 5, "not found")
	case strings.HasPrefix(r.URL.Path, "/argo/broken/"):
		w.WriteHeader(http.StatusInternalServerError)
	default:
		fail(http.StatusNotFound, 5, "Not Found")
	}
}

func TestArgoServer(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fake := &fakeArgoServer{rights: map[string][]string{"alice": {"team"}, "bob": {"other"}}}
	for i := 4; i >= 0; i-- {
		fake.items = append(fake.items, *archived("team", "shop-"+strconv.Itoa(i), base.Add(time.Duration(i)*time.Minute), wfv1.WorkflowSucceeded, map[string]string{"app": "shop"}))
	}
	fake.items = append(fake.items, *archived("team", "web-0", base, wfv1.WorkflowFailed, map[string]string{"app": "web"}))
	srv := httptest.NewServer(fake)
	defer srv.Close()
	a, err := NewArgoServer(srv.URL+"/argo/", "")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	alice := Caller{Token: "alice"}

	t.Run("pages", func(t *testing.T) {
		var got []string
		q := Query{Namespace: "team", Labels: map[string]string{"app": "shop"}, Limit: 2}
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("no end")
			}
			page, err := a.List(ctx, alice, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, wf := range page.Items {
				if wf.Status.Nodes != nil || wf.Kind != "Workflow" {
					t.Fatalf("%+v", wf)
				}
				got = append(got, wf.Name)
			}
			if page.Continue == "" {
				break
			}
			q.Continue = page.Continue
		}
		if strings.Join(got, ",") != "shop-4,shop-3,shop-2,shop-1,shop-0" {
			t.Fatalf("%v", got)
		}
	})

	t.Run("query forwarded", func(t *testing.T) {
		page, err := a.List(ctx, alice, Query{Namespace: "team", Phases: []string{"Failed", "Error"}, NamePrefix: "web", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 1 || page.Items[0].Name != "web-0" {
			t.Fatalf("%+v", page.Items)
		}
		if sel := fake.last.Get("listOptions.labelSelector"); sel != "workflows.argoproj.io/phase in (Error,Failed)" {
			t.Fatalf("selector %q", sel)
		}
		if fake.last.Get("namePrefix") != "web" || fake.last.Get("listOptions.limit") != "10" {
			t.Fatalf("query %v", fake.last)
		}
	})

	t.Run("get", func(t *testing.T) {
		wf, err := a.Get(ctx, alice, "uid-team-shop-1")
		if err != nil || wf.Name != "shop-1" || wf.Status.Nodes == nil {
			t.Fatalf("%+v %v", wf, err)
		}
	})

	errs := []struct {
		name   string
		call   func() error
		status int
	}{
		{"forbidden list", func() error {
			_, err := a.List(ctx, Caller{Token: "bob"}, Query{Namespace: "team", Limit: 1})
			return err
		}, 403},
		{"forbidden get", func() error { _, err := a.Get(ctx, Caller{Token: "bob"}, "uid-team-shop-1"); return err }, 403},
		{"bad token", func() error {
			_, err := a.List(ctx, Caller{Token: "eve"}, Query{Namespace: "team", Limit: 1})
			return err
		}, 401},
		{"unknown uid", func() error { _, err := a.Get(ctx, alice, "nope"); return err }, 404},
	}
	for _, e := range errs {
		t.Run(e.name, func(t *testing.T) {
			pr, ok := problem.As(e.call())
			if !ok || pr.Status != e.status {
				t.Fatalf("%+v, want %d", pr, e.status)
			}
		})
	}

	t.Run("argo-server failing or gone", func(t *testing.T) {
		u, _ := url.Parse(srv.URL + "/argo/broken")
		broken := NewArgoServerWithClient(u, srv.Client())
		_, err := broken.Get(ctx, alice, "x")
		if pr, ok := problem.As(err); !ok || pr.Status != http.StatusBadGateway {
			t.Fatalf("%v", err)
		}
		gone, _ := NewArgoServer("http://127.0.0.1:1", "")
		_, err = gone.List(ctx, alice, Query{Namespace: "team", Limit: 1})
		if pr, ok := problem.As(err); !ok || pr.Status != http.StatusBadGateway {
			t.Fatalf("%v", err)
		}
	})

	for _, bad := range []string{"", "argo:2746", "ftp://x"} {
		if _, err := NewArgoServer(bad, ""); err == nil {
			t.Errorf("URL %q accepted", bad)
		}
	}
}
