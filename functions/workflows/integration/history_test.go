package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	function "github.com/dwp-sre/dwp-sre"
	"github.com/dwp-sre/dwp-sre/functions/workflows"
	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
)

// history pages through the app's history with limit, and returns it with the number of
// pages.
func (fx *fixture) history(t *testing.T, user, query string, limit int) ([]wfv1.Workflow, int) {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q.Set("limit", fmt.Sprint(limit))
	var all []wfv1.Workflow
	for pages := 1; ; pages++ {
		if pages > 100 {
			t.Fatal("no end")
		}
		l := fx.list(t, user, "/api/v1/namespaces/"+fx.ns+"/workflow-history?"+q.Encode())
		if len(l.Items) > limit {
			t.Fatalf("%d items, limit %d", len(l.Items), limit)
		}
		all = append(all, l.Items...)
		if l.Metadata.Continue == "" {
			return all, pages
		}
		q.Set("continue", l.Metadata.Continue)
	}
}

func position(wf *wfv1.Workflow) archive.Position {
	t := wf.Status.StartedAt.Time
	if t.IsZero() {
		t = wf.CreationTimestamp.Time
	}
	return archive.Position{StartedAt: t.Truncate(time.Second), UID: string(wf.UID)}
}

// Must show: one history pages across live and archived runs without gaps or duplicates.
func TestHistoryAcrossLiveAndArchived(t *testing.T) {
	fx := setup(t)
	ctx := context.Background()
	// "quick" runs stay in the cluster once archived; "build" runs are deleted 3 s after
	// they end (setup's ttlStrategy); "long" runs keep running.
	quick := &wfv1.WorkflowTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "quick"},
		Spec: wfv1.WorkflowSpec{
			Entrypoint: "main",
			Templates:  []wfv1.Template{{Name: "main", Container: &corev1.Container{Image: "busybox", Command: []string{"true"}}}},
		},
	}
	if _, err := fx.admin.ArgoprojV1alpha1().WorkflowTemplates(fx.ns).Create(ctx, quick, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	submitted := map[string]string{} // uid → how it ends up
	for range 3 {
		sub := fx.submit(t, "alice", `{"resourceName":"build","app":"hist"}`)
		submitted[sub.UID] = "archived only (ttl)"
	}
	var quickRuns []workflows.SubmitResponse
	for range 5 {
		sub := fx.submit(t, "alice", `{"resourceName":"quick","app":"hist"}`)
		submitted[sub.UID] = "both"
		quickRuns = append(quickRuns, sub)
	}
	long := fx.submit(t, "alice", `{"resourceName":"long","app":"hist"}`)
	submitted[long.UID] = "live only"
	// Another app's run is not in this history.
	other := fx.submit(t, "alice", `{"resourceName":"quick","app":"other"}`)

	archivedPath := "/api/v1/archived-workflows?namespace=" + fx.ns + "&app=hist&limit=50"
	waitUntil(t, 120*time.Second, "8 runs archived, the ttl ones deleted", func() (bool, string) {
		archived := fx.list(t, "alice", archivedPath)
		live, err := fx.admin.ArgoprojV1alpha1().Workflows(fx.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=hist"})
		if err != nil {
			return false, err.Error()
		}
		return len(archived.Items) == 8 && len(live.Items) == 6, fmt.Sprintf("%d archived, %d live", len(archived.Items), len(live.Items))
	})
	// Two of the quick runs are deleted from the cluster: in the archive alone now.
	for _, sub := range quickRuns[:2] {
		if err := fx.admin.ArgoprojV1alpha1().Workflows(fx.ns).Delete(ctx, sub.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		submitted[sub.UID] = "archived only (deleted)"
	}
	waitUntil(t, 30*time.Second, "deleted runs gone", func() (bool, string) {
		for _, sub := range quickRuns[:2] {
			if _, err := fx.admin.ArgoprojV1alpha1().Workflows(fx.ns).Get(ctx, sub.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, sub.Name + " still there"
			}
		}
		return true, ""
	})
	t.Logf("9 runs: 5 archived only, 3 both live and archived, 1 running (after %s)", time.Since(start).Round(100*time.Millisecond))

	check := func(t *testing.T, fx *fixture) []string {
		var order []string
		for _, limit := range []int{1, 2, 3, 50} {
			items, pages := fx.history(t, "alice", "app=hist", limit)
			var uids []string
			for i := range items {
				wf := &items[i]
				uids = append(uids, string(wf.UID))
				how, ok := submitted[string(wf.UID)]
				if !ok {
					t.Fatalf("limit %d: %s (%s) is not one of the app's runs", limit, wf.Name, wf.UID)
				}
				persisted := wf.Labels[workflows.LabelArchivingStatus] == workflows.ArchivingStatusPersisted
				if persisted != strings.HasPrefix(how, "archived only") {
					t.Fatalf("limit %d: %s is %s, but labelled %q", limit, wf.Name, how, wf.Labels[workflows.LabelArchivingStatus])
				}
				// A run both live and archived comes from the cluster (it has a resourceVersion).
				if (wf.ResourceVersion != "") == persisted || wf.Status.Nodes != nil {
					t.Fatalf("limit %d: %s (%s) resourceVersion %q, nodes %d", limit, wf.Name, how, wf.ResourceVersion, len(wf.Status.Nodes))
				}
				if i > 0 && !position(&items[i-1]).Less(position(wf)) {
					t.Fatalf("limit %d: %s before %s is out of order", limit, items[i-1].Name, wf.Name)
				}
			}
			if len(uids) != len(submitted) || len(slices.Compact(slices.Sorted(slices.Values(uids)))) != len(submitted) {
				t.Fatalf("limit %d: %d runs (%d distinct), want %d", limit, len(uids), len(slices.Compact(slices.Sorted(slices.Values(uids)))), len(submitted))
			}
			if order == nil {
				order = uids
			} else if !slices.Equal(order, uids) {
				t.Fatalf("limit %d: another order %v, want %v", limit, uids, order)
			}
			t.Logf("limit %d: %d runs in %d pages", limit, len(uids), pages)
		}
		return order
	}
	order := check(t, fx)

	succeeded, _ := fx.history(t, "alice", "app=hist&phase=Succeeded", 2)
	running, _ := fx.history(t, "alice", "app=hist&phase=Running", 2)
	if len(succeeded) != 8 || len(running) != 1 || running[0].Name != long.Name {
		t.Fatalf("phase filters: %d succeeded, %d running", len(succeeded), len(running))
	}
	prefix, _ := fx.history(t, "alice", "app=hist&namePrefix=build-", 1)
	if len(prefix) != 3 {
		t.Fatalf("namePrefix=build-: %d runs", len(prefix))
	}
	others, _ := fx.history(t, "alice", "app=other", 1)
	if len(others) != 1 || string(others[0].UID) != other.UID {
		t.Fatalf("app other: %+v", others)
	}

	path := "/api/v1/namespaces/" + fx.ns + "/workflow-history"
	first := fx.list(t, "alice", path+"?app=hist&limit=2")
	for _, c := range []struct {
		name, path, user string
		code             int
	}{
		{"bob may not list the namespace's workflows", path + "?app=hist", "bob", 403},
		{"a token of other filters", path + "?app=other&continue=" + first.Metadata.Continue, "alice", 400},
		{"a forged token", path + "?app=hist&continue=eyJ0IjoiMjAyNi0wMS0wMVQwMDowMDowMFoiLCJ1IjoieCIsImYiOiJ4In0", "alice", 400},
		{"an unknown parameter", path + "?app=hist&projection=full", "alice", 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			if a := fx.call(t, http.MethodGet, c.path, c.user, ""); a.code != c.code || a.problem(t).Status != c.code {
				t.Fatalf("%d, want %d: %s", a.code, c.code, a.body)
			}
		})
	}

	// The same history through argo-server's archive API, where the plane runs one.
	t.Run("argo-server", func(t *testing.T) {
		if fx.env.ArgoServerURL == "" {
			t.Skip("the plane runs no argo-server")
		}
		f := function.New()
		if err := f.Start(ctx, map[string]string{
			workflows.EnvKubeconfig:    fx.env.Kubeconfig,
			workflows.EnvArgoServerURL: fx.env.ArgoServerURL,
		}); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(f.Handle))
		t.Cleanup(func() {
			srv.Close()
			_ = f.Stop(context.Background())
		})
		viaArgo := *fx
		viaArgo.url = srv.URL
		if got := check(t, &viaArgo); !slices.Equal(got, order) {
			t.Fatalf("through argo-server %v, through Postgres %v", got, order)
		}
	})
}
