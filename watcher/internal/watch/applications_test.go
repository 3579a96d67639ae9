package watch

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
	"github.com/dwp-sre/dwp-sre/watcher/internal/state"
)

const argoCDNamespace = "argocd"

// startApps is start with Argo CD Applications followed in argoCDNamespace, for the apps
// of namespaces (empty: all). setup runs before the watcher starts.
func startApps(t *testing.T, resync time.Duration, namespaces []string, setup func(*dynamicfake.FakeDynamicClient)) (*fixture, *dynamicfake.FakeDynamicClient) {
	t.Helper()
	fx := &fixture{kube: kubefake.NewClientset(), argo: argofake.NewSimpleClientset(), rec: &recorder{}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{ApplicationsResource: "ApplicationList"})
	revs := &revisions{rev: 1}
	revs.install(&fx.kube.Fake, fx.kube.Tracker())
	revs.install(&fx.argo.Fake, fx.argo.Tracker())
	revs.install(&dyn.Fake, dyn.Tracker())
	if setup != nil {
		setup(dyn)
	}
	fx.w = New(Config{Cluster: "c1", AppLabel: "app", TaskLabel: "dwp.io/task", Namespaces: namespaces, Resync: resync},
		fx.kube, fx.argo, fx.rec, NewMetrics(prometheus.NewRegistry()), quiet())
	fx.w.WatchApplications(dyn, argoCDNamespace)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fx.w.Run(ctx) }()
	var once sync.Once
	fx.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(fx.stop)
	waitFor(t, "synced", fx.w.Synced)
	return fx, dyn
}

// newApplication is an Application of ns/app, as the task function makes it.
func newApplication(ns, app string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"project": "dwp", "source": map[string]any{"repoURL": "http://git/gitops.git", "path": ns + "/" + app}},
	}}
	u.SetAPIVersion("argoproj.io/v1alpha1")
	u.SetKind("Application")
	u.SetNamespace(argoCDNamespace)
	u.SetName(ns + "." + app)
	u.SetUID(types.UID("uid-app-" + ns + "-" + app))
	u.SetLabels(map[string]string{events.LabelAppNamespace: ns, events.LabelApp: app})
	return u
}

func setStatus(u *unstructured.Unstructured, sync, health, phase string, finished time.Time) {
	_ = unstructured.SetNestedField(u.Object, sync, "status", "sync", "status")
	_ = unstructured.SetNestedField(u.Object, "0123456789abcdef0123456789abcdef01234567", "status", "sync", "revision")
	_ = unstructured.SetNestedField(u.Object, health, "status", "health", "status")
	_ = unstructured.SetNestedField(u.Object, time.Now().UTC().Format(time.RFC3339), "status", "reconciledAt")
	if phase != "" {
		_ = unstructured.SetNestedField(u.Object, phase, "status", "operationState", "phase")
		_ = unstructured.SetNestedField(u.Object, "sync "+phase, "status", "operationState", "message")
		if !finished.IsZero() {
			_ = unstructured.SetNestedField(u.Object, finished.Format(time.RFC3339), "status", "operationState", "finishedAt")
		}
	}
}

func (r *recorder) applications(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, e := range r.all() {
		if e.Type() != events.TypeApplicationChanged && e.Type() != events.TypeApplicationDeleted {
			continue
		}
		_, deleted, a, err := events.DecodeApplication(e)
		if err != nil {
			t.Fatalf("emitted an invalid event: %v", err)
		}
		s := fmt.Sprintf("%s %s/%s sync=%s health=%s op=%s", changeName(deleted), a.Namespace, a.App, a.Sync, a.Health, a.OperationPhase)
		out = append(out, s)
	}
	return out
}

func TestApplicationChangesAreEmitted(t *testing.T) {
	fx, dyn := startApps(t, time.Hour, []string{"shop"}, nil)
	ctx := context.Background()
	apps := dyn.Resource(ApplicationsResource).Namespace(argoCDNamespace)
	u, err := apps.Create(ctx, newApplication("shop", "web"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Of a namespace not watched: nothing.
	if _, err := apps.Create(ctx, newApplication("bank", "core"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "created", func() bool { return len(fx.rec.applications(t)) == 1 })

	setStatus(u, "OutOfSync", "Missing", "Running", time.Time{})
	if u, err = apps.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Argo CD rewrites reconciledAt: nothing the summary shows changed.
	_ = unstructured.SetNestedField(u.Object, "2030-01-01T00:00:00Z", "status", "reconciledAt")
	if u, err = apps.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	setStatus(u, "Synced", "Healthy", "Succeeded", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if u, err = apps.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Relabelled: it now deploys shop/api.
	u.SetLabels(map[string]string{events.LabelAppNamespace: "shop", events.LabelApp: "api"})
	if u, err = apps.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := apps.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"changed shop/web sync= health= op=",
		"changed shop/web sync=OutOfSync health=Missing op=Running",
		"changed shop/web sync=Synced health=Healthy op=Succeeded",
		"deleted shop/web sync=Synced health=Healthy op=Succeeded",
		"changed shop/api sync=Synced health=Healthy op=Succeeded",
		"deleted shop/api sync=Synced health=Healthy op=Succeeded",
	}
	waitFor(t, "deleted", func() bool { return len(fx.rec.applications(t)) >= len(want) })
	time.Sleep(50 * time.Millisecond) // nothing more comes
	if got := fx.rec.applications(t); !slices.Equal(got, want) {
		t.Errorf("events\n %q\nwant\n %q", got, want)
	}
	var ords []events.Ordering
	for _, e := range fx.rec.all() {
		if _, _, a, err := events.DecodeApplication(e); err == nil {
			ords = append(ords, a.Ordering)
		}
	}
	if !(ords[2] < ords[3] && ords[3] == ords[4] && ords[4] < ords[5]) { // the move's two events share its key
		t.Errorf("ordering keys %v", ords)
	}
}

// A round lists the Applications of the watched namespaces' apps, in Argo CD's namespace.
func TestRoundListsApplications(t *testing.T) {
	fx, _ := startApps(t, time.Hour, []string{"shop"}, func(dyn *dynamicfake.FakeDynamicClient) {
		apps := dyn.Resource(ApplicationsResource).Namespace(argoCDNamespace)
		web := newApplication("shop", "web")
		setStatus(web, "Synced", "Degraded", "Failed", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		for _, u := range []*unstructured.Unstructured{web, newApplication("bank", "core")} {
			if _, err := apps.Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})
	var snaps []events.AppSnapshot
	var cluster *events.ClusterSnapshot
	for _, e := range fx.rec.all() {
		switch e.Type() {
		case events.TypeAppSnapshot:
			_, s, err := events.DecodeAppSnapshot(e)
			if err != nil {
				t.Fatal(err)
			}
			if s.Kind == events.KindApplications {
				snaps = append(snaps, s)
			}
		case events.TypeClusterSnapshot:
			_, s, err := events.DecodeClusterSnapshot(e)
			if err != nil {
				t.Fatal(err)
			}
			if s.Kind == events.KindApplications {
				cluster = &s
			}
		}
	}
	if len(snaps) != 1 || snaps[0].App != "web" || len(snaps[0].Applications) != 1 || snaps[0].Applications[0].Health != "Degraded" ||
		snaps[0].Revision < snaps[0].Applications[0].Ordering {
		t.Fatalf("app snapshots %+v", snaps)
	}
	if cluster == nil || len(cluster.Apps) != 1 || cluster.Revision != snaps[0].Revision {
		t.Fatalf("cluster snapshot %+v", cluster)
	}
}

// Without Argo CD (no Application resource), or without the right to list it, rounds
// still summarise pods and workflows, and succeed.
func TestRoundWithoutApplications(t *testing.T) {
	for name, fail := range map[string]error{
		"no resource": apierrors.NewNotFound(ApplicationsResource.GroupResource(), ""),
		"forbidden":   apierrors.NewForbidden(ApplicationsResource.GroupResource(), "", fmt.Errorf("no RBAC")),
	} {
		t.Run(name, func(t *testing.T) {
			fx, _ := startApps(t, time.Hour, nil, func(dyn *dynamicfake.FakeDynamicClient) {
				dyn.PrependReactor("list", "applications", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, fail })
			})
			if _, err := fx.kube.CoreV1().Pods("shop").Create(context.Background(), newPod("web-1", "web", true, nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "pod", func() bool { return fx.rec.count(events.TypePodChanged) == 1 })
			if err := fx.w.Round(context.Background()); err != nil {
				t.Fatalf("Round: %v", err)
			}
			kinds := map[string]int{}
			for _, e := range fx.rec.all() {
				if e.Type() == events.TypeClusterSnapshot {
					_, s, _ := events.DecodeClusterSnapshot(e)
					kinds[s.Kind]++
				}
			}
			if kinds[events.KindPods] != 2 || kinds[events.KindWorkflows] != 2 || kinds[events.KindApplications] != 0 {
				t.Errorf("cluster snapshots by kind %v", kinds)
			}
		})
	}
}

func TestApplicationState(t *testing.T) {
	u := newApplication("shop", "web")
	u.SetResourceVersion("77")
	_ = unstructured.SetNestedStringSlice(u.Object, []string{"abc123", "def456"}, "status", "sync", "revisions")
	_ = unstructured.SetNestedField(u.Object, "Synced", "status", "sync", "status")
	_ = unstructured.SetNestedField(u.Object, "Degraded: 2/3", "status", "health", "status") // not a word
	_ = unstructured.SetNestedField(u.Object, "Back-off \xff", "status", "health", "message")
	_ = unstructured.SetNestedField(u.Object, "Succeeded", "status", "operationState", "phase")
	_ = unstructured.SetNestedField(u.Object, "2026-03-01T13:00:00+01:00", "status", "operationState", "finishedAt")
	_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"kind": "Deployment", "name": "web"}}, "status", "resources")
	_ = unstructured.SetNestedField(u.Object, "2026-03-01T12:00:05Z", "status", "reconciledAt")

	slim := slimApplication(u)
	if _, ok := slim.Object["spec"]; ok {
		t.Error("slim kept the spec")
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(slim.Object, "status", "resources"); ok {
		t.Error("slim kept the resources")
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(slim.Object, "status", "reconciledAt"); ok {
		t.Error("slim kept reconciledAt")
	}
	for _, obj := range []*unstructured.Unstructured{u, slim} {
		s := applicationState(obj, "shop", "web", 77)
		want := events.Application{Namespace: "shop", App: "web", Name: "shop.web", UID: "uid-app-shop-web", Ordering: 77, ResourceVersion: "77",
			Sync: "Synced", Health: "Unknown", HealthMessage: "Back-off \uFFFD", Revision: "abc123",
			OperationPhase: "Succeeded", OperationFinishedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
		if s != want {
			t.Errorf("state\n %+v\nwant\n %+v", s, want)
		}
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
	}
	// An operation state without a phase is no operation.
	_ = unstructured.SetNestedField(u.Object, "", "status", "operationState", "phase")
	_ = unstructured.SetNestedField(u.Object, "odd", "status", "operationState", "message")
	if s := applicationState(u, "shop", "web", 78); s.OperationPhase != "" || s.OperationMessage != "" || !s.OperationFinishedAt.IsZero() || s.Validate() != nil {
		t.Errorf("operation without a phase: %+v", s)
	}
}

// The events of a random history of Applications (with pods beside), applied to the
// store in order or shuffled and tripled, give the same keyspace, and the summaries of
// the final state.
func TestApplicationEventsMakeExactSummaries(t *testing.T) {
	fx, dyn := startApps(t, 150*time.Millisecond, nil, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	appNames := []string{"web", "api", "db"}
	apps := dyn.Resource(ApplicationsResource).Namespace(argoCDNamespace)
	pods := fx.kube.CoreV1().Pods("shop")
	for i := range 120 {
		l, _ := apps.List(ctx, metav1.ListOptions{})
		switch r := rng.IntN(10); {
		case r < 2:
			u := newApplication("shop", appNames[rng.IntN(3)])
			u.SetName(fmt.Sprintf("a%d", i))
			u.SetUID(types.UID(fmt.Sprintf("uid-a%d", i)))
			_, _ = apps.Create(ctx, u, metav1.CreateOptions{})
		case r < 7 && len(l.Items) > 0:
			u := l.Items[rng.IntN(len(l.Items))]
			switch rng.IntN(4) {
			case 0:
				setStatus(&u, []string{"Synced", "OutOfSync"}[rng.IntN(2)], []string{"Healthy", "Progressing", "Degraded"}[rng.IntN(3)], "", time.Time{})
			case 1:
				setStatus(&u, "Synced", "Healthy", []string{"Running", "Succeeded", "Failed"}[rng.IntN(3)], t0.Add(time.Duration(i)*time.Second))
			case 2:
				_ = unstructured.SetNestedField(u.Object, fmt.Sprint(i), "status", "reconciledAt")
			case 3:
				u.SetLabels(map[string]string{events.LabelAppNamespace: "shop", events.LabelApp: appNames[rng.IntN(3)]})
			}
			_, _ = apps.Update(ctx, &u, metav1.UpdateOptions{})
		case r < 8 && len(l.Items) > 0:
			_ = apps.Delete(ctx, l.Items[rng.IntN(len(l.Items))].GetName(), metav1.DeleteOptions{})
		case r < 9:
			_, _ = pods.Create(ctx, newPod(fmt.Sprintf("p%d", i), appNames[rng.IntN(3)], true, nil), metav1.CreateOptions{})
		}
		if i%10 == 0 {
			time.Sleep(40 * time.Millisecond) // let rounds interleave with changes
		}
	}
	n := fx.rec.count(events.TypeClusterSnapshot)
	waitFor(t, "two more rounds", func() bool { return fx.rec.count(events.TypeClusterSnapshot) >= n+6 })
	fx.stop()
	recorded := fx.rec.all()

	srv := redistest.Start(t)
	inOrder, shuffled := srv.Client(t, 1), srv.Client(t, 2)
	apply(t, summarystore.New(inOrder, "w:").WithClock(fixedClock), recorded)
	tripled := slices.Concat(recorded, recorded, recorded)
	rng.Shuffle(len(tripled), func(i, j int) { tripled[i], tripled[j] = tripled[j], tripled[i] })
	apply(t, summarystore.New(shuffled, "w:").WithClock(fixedClock), tripled)
	if a, b := redistest.Dump(ctx, t, inOrder, ""), redistest.Dump(ctx, t, shuffled, ""); len(a) == 0 || !maps.Equal(a, b) {
		t.Errorf("keyspaces differ:\nin order %v\nshuffled %v", a, b)
	}

	// Expected: the summaries of the final state; the revision aside, since changes that
	// show nothing new (reconciledAt) are not sent.
	applsByApp := map[string][]events.Application{}
	l, _ := apps.List(ctx, metav1.ListOptions{})
	for i := range l.Items {
		u := &l.Items[i]
		a := applicationState(u, "shop", u.GetLabels()[events.LabelApp], mustOrd(t, u.GetResourceVersion()))
		applsByApp[a.App] = append(applsByApp[a.App], a)
	}
	podsByApp := map[string][]events.Pod{}
	pl, _ := pods.List(ctx, metav1.ListOptions{})
	for i := range pl.Items {
		p := &pl.Items[i]
		podsByApp[p.Labels["app"]] = append(podsByApp[p.Labels["app"]], state.Pod(p, p.Labels["app"], mustOrd(t, p.ResourceVersion)))
	}
	show := func(s events.AppSummary) string {
		b, _ := json.Marshal(struct {
			Run events.RunStatus
			CD  *events.CDStatus
		}{s.Run, s.CD})
		return string(b)
	}
	want := map[string]string{}
	withCD := 0
	for _, app := range appNames {
		if s, ok := summarystore.Summarize("c1", "shop", app, podsByApp[app], nil, applsByApp[app]...); ok {
			want[app] = show(s)
			if s.CD != nil {
				withCD++
			}
		}
	}
	got := map[string]string{}
	all, err := summarystore.New(inOrder, "w:").Summaries(ctx, "c1", "shop")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all["shop"] {
		got[s.App] = show(s)
	}
	if !maps.Equal(got, want) || withCD == 0 {
		t.Errorf("summaries (%d with cd)\n got  %v\n want %v", withCD, got, want)
	}
}
