package summarystore

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// world simulates a cluster's pods, workflows and Argo CD Applications of a few apps,
// changing at random with a global revision like etcd's, and records the events a
// watcher would send for it.
type world struct {
	rng  *rand.Rand
	rev  events.Ordering
	now  time.Time
	seq  int
	pods map[string]events.Pod
	wfs  map[string]events.Workflow
	apps map[string]events.Application
	out  []delivery
	// listedAt is the time the rounds say their listing began (zero: not said).
	listedAt time.Time
}

// delivery is one event's effect on the store.
type delivery struct {
	name    string
	deleted bool
	pod     *events.Pod
	wf      *events.Workflow
	appl    *events.Application
	app     *events.AppSnapshot
	cluster *events.ClusterSnapshot
}

func (d delivery) apply(ctx context.Context, s *Store, cluster string) (int, error) {
	switch {
	case d.pod != nil:
		return s.ApplyPod(ctx, cluster, d.deleted, *d.pod)
	case d.wf != nil:
		return s.ApplyWorkflow(ctx, cluster, d.deleted, *d.wf)
	case d.appl != nil:
		return s.ApplyApplication(ctx, cluster, d.deleted, *d.appl)
	case d.app != nil:
		return s.ApplyAppSnapshot(ctx, cluster, *d.app)
	default:
		return s.ApplyClusterSnapshot(ctx, cluster, *d.cluster)
	}
}

var (
	worldNamespaces = []string{"shop", "bank"}
	worldApps       = []string{"web", "api", "db"}
)

func newWorld(seed uint64) *world {
	return &world{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		rev: 100, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		pods: map[string]events.Pod{}, wfs: map[string]events.Workflow{}, apps: map[string]events.Application{},
	}
}

func (w *world) tick() events.Ordering {
	w.rev += events.Ordering(1 + w.rng.IntN(3))
	w.now = w.now.Add(time.Duration(w.rng.IntN(3000)) * time.Millisecond)
	return w.rev
}

func (w *world) uid() string { w.seq++; return fmt.Sprintf("uid-%06d", w.seq) }

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func (w *world) anyPod() (events.Pod, bool) {
	if len(w.pods) == 0 {
		return events.Pod{}, false
	}
	uids := make([]string, 0, len(w.pods))
	for u := range w.pods {
		uids = append(uids, u)
	}
	sort.Strings(uids)
	return w.pods[pick(w.rng, uids)], true
}

func (w *world) anyWorkflow() (events.Workflow, bool) {
	if len(w.wfs) == 0 {
		return events.Workflow{}, false
	}
	uids := make([]string, 0, len(w.wfs))
	for u := range w.wfs {
		uids = append(uids, u)
	}
	sort.Strings(uids)
	return w.wfs[pick(w.rng, uids)], true
}

func (w *world) anyApplication() (events.Application, bool) {
	if len(w.apps) == 0 {
		return events.Application{}, false
	}
	uids := make([]string, 0, len(w.apps))
	for u := range w.apps {
		uids = append(uids, u)
	}
	sort.Strings(uids)
	return w.apps[pick(w.rng, uids)], true
}

func (w *world) emitApplication(a events.Application, deleted bool) {
	w.out = append(w.out, delivery{name: fmt.Sprintf("application %s %s@%d deleted=%v", a.App, a.UID, a.Ordering, deleted), deleted: deleted, appl: &a})
}

func (w *world) emitPod(p events.Pod, deleted bool) {
	w.out = append(w.out, delivery{name: fmt.Sprintf("pod %s %s@%d deleted=%v", p.App, p.UID, p.Ordering, deleted), deleted: deleted, pod: &p})
}

func (w *world) emitWorkflow(x events.Workflow, deleted bool) {
	w.out = append(w.out, delivery{name: fmt.Sprintf("wf %s %s@%d deleted=%v", x.App, x.UID, x.Ordering, deleted), deleted: deleted, wf: &x})
}

// step makes one random change and records its events.
func (w *world) step() {
	if w.rng.IntN(100) < 20 {
		w.applicationStep()
		return
	}
	switch r := w.rng.IntN(100); {
	case r < 14: // a pod is created
		ord := w.tick()
		p := events.Pod{Namespace: pick(w.rng, worldNamespaces), App: pick(w.rng, worldApps), Name: fmt.Sprintf("pod-%d", w.seq+1),
			UID: w.uid(), Ordering: ord, Phase: "Pending", ChangedAt: w.now}
		w.pods[p.UID] = p
		w.emitPod(p, false)
	case r < 40: // a pod changes
		p, ok := w.anyPod()
		if !ok {
			return
		}
		p.Ordering = w.tick()
		p.ChangedAt = w.now
		switch w.rng.IntN(7) {
		case 0:
			p.Phase, p.Ready = "Running", true
		case 1:
			p.Ready = false
		case 2:
			p.Restarts++
		case 3:
			p.Problem = pick(w.rng, []string{"", "CrashLoopBackOff", "ImagePullBackOff"})
		case 4:
			p.Terminating = true
		case 5:
			p.Phase, p.Ready = pick(w.rng, []string{"Succeeded", "Failed", "Unknown"}), false
		case 6:
			p.Phase, p.Ready, p.Problem = "Running", true, ""
		}
		w.pods[p.UID] = p
		w.emitPod(p, false)
	case r < 50: // a pod is deleted
		p, ok := w.anyPod()
		if !ok {
			return
		}
		p.Ordering = w.tick()
		delete(w.pods, p.UID)
		w.emitPod(p, true)
	case r < 54: // a pod moves to another app (its app label changed)
		p, ok := w.anyPod()
		if !ok {
			return
		}
		old := p
		old.Ordering = w.tick()
		p.Ordering = old.Ordering
		p.App = pick(w.rng, worldApps)
		if p.App == old.App {
			return
		}
		w.pods[p.UID] = p
		w.emitPod(old, true)
		w.emitPod(p, false)
	case r < 66: // a workflow is submitted
		ord := w.tick()
		x := events.Workflow{Namespace: pick(w.rng, worldNamespaces), App: pick(w.rng, worldApps), Name: fmt.Sprintf("build-%d", w.seq+1),
			UID: w.uid(), Ordering: ord, Task: pick(w.rng, []string{"", "build", "deploy"}), CreatedAt: w.now}
		w.wfs[x.UID] = x
		w.emitWorkflow(x, false)
	case r < 88: // a workflow progresses
		x, ok := w.anyWorkflow()
		if !ok {
			return
		}
		x.Ordering = w.tick()
		switch x.Phase {
		case "":
			x.Phase = "Pending"
		case "Pending":
			x.Phase, x.StartedAt = "Running", w.now
		case "Running":
			x.Phase, x.FinishedAt = pick(w.rng, []string{"Succeeded", "Failed", "Error"}), w.now
			x.Message = pick(w.rng, []string{"", `child "b" failed: exit code 1`, "ünïcødé / \\ \u2028 \x01"})
		default:
			return
		}
		w.wfs[x.UID] = x
		w.emitWorkflow(x, false)
	case r < 95: // a workflow is deleted (or garbage-collected)
		x, ok := w.anyWorkflow()
		if !ok {
			return
		}
		x.Ordering = w.tick()
		delete(w.wfs, x.UID)
		w.emitWorkflow(x, true)
	default:
		w.snapshotRound()
	}
}

// applicationStep changes the Argo CD Applications as the task function and Argo CD do.
func (w *world) applicationStep() {
	switch r := w.rng.IntN(100); {
	case r < 20: // the task function creates an app's Application (rarely a second one)
		ns, app := pick(w.rng, worldNamespaces), pick(w.rng, worldApps)
		name := ns + "." + app
		if w.rng.IntN(5) == 0 {
			name = fmt.Sprintf("extra-%d", w.seq+1)
		}
		a := events.Application{Namespace: ns, App: app, Name: name, UID: w.uid(), Ordering: w.tick()}
		w.apps[a.UID] = a
		w.emitApplication(a, false)
	case r < 75: // Argo CD changes its status
		a, ok := w.anyApplication()
		if !ok {
			return
		}
		a.Ordering = w.tick()
		switch w.rng.IntN(5) {
		case 0:
			a.Sync = pick(w.rng, []string{"Synced", "OutOfSync", "Unknown"})
		case 1:
			a.Health = pick(w.rng, []string{"Healthy", "Progressing", "Degraded", "Missing"})
			a.HealthMessage = pick(w.rng, []string{"", "Back-off pulling image \"x\"", "ünïcødé / \\ \u2028 \x01"})
		case 2:
			a.Revision = fmt.Sprintf("%040x", w.rng.Uint64())
		case 3:
			a.OperationPhase, a.OperationMessage, a.OperationFinishedAt = "Running", "", time.Time{}
		case 4:
			a.OperationPhase, a.OperationFinishedAt = pick(w.rng, []string{"Succeeded", "Failed", "Error"}), w.now
			a.OperationMessage = pick(w.rng, []string{"", "successfully synced (all tasks run)", "one or more objects failed to apply"})
		}
		w.apps[a.UID] = a
		w.emitApplication(a, false)
	case r < 85: // its labels change: it deploys another app
		a, ok := w.anyApplication()
		if !ok {
			return
		}
		old := a
		old.Ordering = w.tick()
		a.Ordering = old.Ordering
		a.App = pick(w.rng, worldApps)
		if a.App == old.App {
			return
		}
		w.apps[a.UID] = a
		w.emitApplication(old, true)
		w.emitApplication(a, false)
	default: // it is deleted
		a, ok := w.anyApplication()
		if !ok {
			return
		}
		a.Ordering = w.tick()
		delete(w.apps, a.UID)
		w.emitApplication(a, true)
	}
}

// snapshotRound records a full-state round at the current revision, as the watcher
// sends when it starts and at its resync interval.
func (w *world) snapshotRound() {
	rev := w.rev
	podApps := map[events.AppRef][]events.Pod{}
	for _, p := range w.pods {
		ref := events.AppRef{Namespace: p.Namespace, App: p.App}
		podApps[ref] = append(podApps[ref], p)
	}
	wfApps := map[events.AppRef][]events.Workflow{}
	for _, x := range w.wfs {
		ref := events.AppRef{Namespace: x.Namespace, App: x.App}
		wfApps[ref] = append(wfApps[ref], x)
	}
	at := w.listedAt
	podSnap := events.ClusterSnapshot{Kind: events.KindPods, Revision: rev, ListedAt: at, Apps: []events.AppRef{}}
	for ref, pods := range podApps {
		podSnap.Apps = append(podSnap.Apps, ref)
		s := events.AppSnapshot{Kind: events.KindPods, Namespace: ref.Namespace, App: ref.App, Revision: rev, ListedAt: at, Pods: pods}
		w.out = append(w.out, delivery{name: fmt.Sprintf("snapshot pods %v@%d", ref, rev), app: &s})
	}
	wfSnap := events.ClusterSnapshot{Kind: events.KindWorkflows, Revision: rev, ListedAt: at, Apps: []events.AppRef{}}
	for ref, wfs := range wfApps {
		wfSnap.Apps = append(wfSnap.Apps, ref)
		s := events.AppSnapshot{Kind: events.KindWorkflows, Namespace: ref.Namespace, App: ref.App, Revision: rev, ListedAt: at, Workflows: wfs}
		w.out = append(w.out, delivery{name: fmt.Sprintf("snapshot workflows %v@%d", ref, rev), app: &s})
	}
	applApps := map[events.AppRef][]events.Application{}
	for _, a := range w.apps {
		ref := events.AppRef{Namespace: a.Namespace, App: a.App}
		applApps[ref] = append(applApps[ref], a)
	}
	applSnap := events.ClusterSnapshot{Kind: events.KindApplications, Revision: rev, ListedAt: at, Apps: []events.AppRef{}}
	for ref, apps := range applApps {
		applSnap.Apps = append(applSnap.Apps, ref)
		s := events.AppSnapshot{Kind: events.KindApplications, Namespace: ref.Namespace, App: ref.App, Revision: rev, ListedAt: at, Applications: apps}
		w.out = append(w.out, delivery{name: fmt.Sprintf("snapshot applications %v@%d", ref, rev), app: &s})
	}
	w.out = append(w.out, delivery{name: fmt.Sprintf("cluster pods@%d", rev), cluster: &podSnap},
		delivery{name: fmt.Sprintf("cluster workflows@%d", rev), cluster: &wfSnap},
		delivery{name: fmt.Sprintf("cluster applications@%d", rev), cluster: &applSnap})
}

// forged records n events no cluster produced, as anyone able to send events could post
// them, with ordering keys from the future (up to MaxOrdering): objects of a made-up app,
// and, unless fakeOnly, deletions and changes of live objects and snapshots that find
// everything gone. They are not the world's: it does not change.
func (w *world) forged(n int, fakeOnly bool) []delivery {
	future := func() events.Ordering {
		if w.rng.IntN(2) == 0 {
			return events.MaxOrdering
		}
		return w.rev + events.Ordering(1+w.rng.IntN(1000))
	}
	var out []delivery
	for range n {
		r := w.rng.IntN(7)
		if fakeOnly {
			r = 4
		}
		switch r {
		case 0, 1: // a live pod deleted or changed
			p, ok := w.anyPod()
			if !ok {
				continue
			}
			p.Ordering, p.Phase, p.Ready = future(), "Failed", false
			out = append(out, delivery{name: fmt.Sprintf("forged pod %s@%d", p.UID, p.Ordering), deleted: r == 0, pod: &p})
		case 2: // a live workflow deleted or renamed
			x, ok := w.anyWorkflow()
			if !ok {
				continue
			}
			x.Ordering, x.Name = future(), "forged"
			out = append(out, delivery{name: fmt.Sprintf("forged wf %s@%d", x.UID, x.Ordering), deleted: w.rng.IntN(2) == 0, wf: &x})
		case 3: // a live Application's status
			a, ok := w.anyApplication()
			if !ok {
				continue
			}
			a.Ordering, a.Health = future(), "Degraded"
			out = append(out, delivery{name: fmt.Sprintf("forged application %s@%d", a.UID, a.Ordering), deleted: w.rng.IntN(2) == 0, appl: &a})
		case 4: // a pod of a made-up app, in a real app's namespace
			p := events.Pod{Namespace: pick(w.rng, worldNamespaces), App: "fake", Name: "fake", UID: w.uid(), Ordering: future(), Phase: "Running", Ready: true, ChangedAt: w.now}
			out = append(out, delivery{name: fmt.Sprintf("forged fake pod %s@%d", p.UID, p.Ordering), pod: &p})
		case 5: // every app of a kind found gone, at a revision from the future
			c := events.ClusterSnapshot{Kind: pick(w.rng, []string{events.KindPods, events.KindWorkflows, events.KindApplications}), Revision: future(), Apps: []events.AppRef{}}
			out = append(out, delivery{name: fmt.Sprintf("forged cluster %s@%d", c.Kind, c.Revision), cluster: &c})
		case 6: // one app found without pods, at a revision from the future
			s := events.AppSnapshot{Kind: events.KindPods, Namespace: pick(w.rng, worldNamespaces), App: pick(w.rng, worldApps), Revision: future()}
			out = append(out, delivery{name: fmt.Sprintf("forged app snapshot %s/%s@%d", s.Namespace, s.App, s.Revision), app: &s})
		}
	}
	return out
}

// expected is the summaries the world's live objects make, as JSON by "ns/app".
func (w *world) expected(t testing.TB, cluster string) map[string]string {
	t.Helper()
	pods := map[events.AppRef][]events.Pod{}
	wfs := map[events.AppRef][]events.Workflow{}
	refs := map[events.AppRef]bool{}
	for _, p := range w.pods {
		ref := events.AppRef{Namespace: p.Namespace, App: p.App}
		pods[ref] = append(pods[ref], p)
		refs[ref] = true
	}
	for _, x := range w.wfs {
		ref := events.AppRef{Namespace: x.Namespace, App: x.App}
		wfs[ref] = append(wfs[ref], x)
		refs[ref] = true
	}
	apps := map[events.AppRef][]events.Application{}
	for _, a := range w.apps {
		ref := events.AppRef{Namespace: a.Namespace, App: a.App}
		apps[ref] = append(apps[ref], a)
		refs[ref] = true
	}
	out := map[string]string{}
	for ref := range refs {
		s, ok := Summarize(cluster, ref.Namespace, ref.App, pods[ref], wfs[ref], apps[ref]...)
		if !ok {
			t.Fatalf("no summary for %v", ref)
		}
		out[ref.Namespace+"/"+ref.App] = mustJSON(t, s)
	}
	return out
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stored is the store's summaries, re-encoded, by "ns/app".
func stored(ctx context.Context, t testing.TB, s *Store, cluster string) map[string]string {
	t.Helper()
	all, err := s.Summaries(ctx, cluster, worldNamespaces...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for ns, list := range all {
		for _, sum := range list {
			if sum.Namespace != ns {
				t.Errorf("summary of %s/%s stored under %s", sum.Namespace, sum.App, ns)
			}
			out[ns+"/"+sum.App] = mustJSON(t, sum)
		}
	}
	return out
}
