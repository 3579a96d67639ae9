package watch

import (
	"context"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// The Argo CD Applications of apps live in Argo CD's namespace, not in the apps'; their
// labels (events.LabelAppNamespace, events.LabelApp) say which app each deploys. They
// are a third kind of app object: their changes are sent when what the summary shows of
// them changes, and the full-state rounds list them too.

// applicationFields are the parts of an Application the informer keeps (slimApplication)
// and the state is made of (applicationState).
var applicationFields = [][]string{
	{"status", "sync", "status"},
	{"status", "sync", "revision"},
	{"status", "sync", "revisions"},
	{"status", "health", "status"},
	{"status", "health", "message"},
	{"status", "operationState", "phase"},
	{"status", "operationState", "message"},
	{"status", "operationState", "finishedAt"},
}

// applicationSelector selects the Applications of apps, of the watched namespaces only.
func (w *Watcher) applicationSelector() string {
	if len(w.cfg.Namespaces) == 0 {
		return events.LabelApp + "," + events.LabelAppNamespace
	}
	return events.LabelApp + "," + events.LabelAppNamespace + " in (" + strings.Join(w.cfg.Namespaces, ",") + ")"
}

// applicationApp is the app an Application deploys; ok is false when its labels name
// none, or one outside the watched namespaces.
func (w *Watcher) applicationApp(u *unstructured.Unstructured) (ns, app string, ok bool) {
	ns, app = u.GetLabels()[events.LabelAppNamespace], u.GetLabels()[events.LabelApp]
	if app == "" || len(validation.IsDNS1123Label(ns)) > 0 {
		return "", "", false
	}
	if len(w.cfg.Namespaces) > 0 && !slices.Contains(w.cfg.Namespaces, ns) {
		return "", "", false
	}
	return ns, app, true
}

// slimApplication keeps of an Application its identity, labels and applicationFields:
// its spec and the rest of its status (resources, history) can be large.
func slimApplication(u *unstructured.Unstructured) *unstructured.Unstructured {
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetNamespace(u.GetNamespace())
	out.SetName(u.GetName())
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	out.SetLabels(u.GetLabels())
	for _, path := range applicationFields {
		if v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, path...); ok {
			_ = unstructured.SetNestedField(out.Object, v, path...)
		}
	}
	return out
}

// applicationState is the state of an Application of app. Argo CD writes its statuses;
// one that is not a short word (never seen) is shown as Unknown rather than dropped.
func applicationState(u *unstructured.Unstructured, ns, app string, ord events.Ordering) events.Application {
	str := func(path ...string) string {
		s, _, _ := unstructured.NestedString(u.Object, path...)
		return s
	}
	a := events.Application{
		Namespace: ns, App: app, Name: u.GetName(), UID: string(u.GetUID()),
		Ordering: ord, ResourceVersion: u.GetResourceVersion(),
		Sync:           statusWord(str("status", "sync", "status")),
		Health:         statusWord(str("status", "health", "status")),
		HealthMessage:  events.TruncateMessage(str("status", "health", "message")),
		Revision:       events.TruncateRevision(str("status", "sync", "revision")),
		OperationPhase: statusWord(str("status", "operationState", "phase")),
	}
	if a.Revision == "" {
		// A multi-source Application has a revision per source; the first is its main one.
		if revs, _, _ := unstructured.NestedStringSlice(u.Object, "status", "sync", "revisions"); len(revs) > 0 {
			a.Revision = events.TruncateRevision(revs[0])
		}
	}
	if a.OperationPhase != "" {
		a.OperationMessage = events.TruncateMessage(str("status", "operationState", "message"))
		if t, err := time.Parse(time.RFC3339, str("status", "operationState", "finishedAt")); err == nil && t.Year() >= 1970 && t.Year() <= 9999 {
			a.OperationFinishedAt = t.UTC()
		}
	}
	return a
}

func statusWord(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > events.MaxStatusLen || strings.IndexFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') }) >= 0 {
		return "Unknown"
	}
	return s
}

func (w *Watcher) emitApplication(a events.Application, deleted bool) {
	e, err := events.NewApplicationEvent(w.cfg.Cluster, deleted, a, w.now())
	w.metrics.changes.WithLabelValues(events.KindApplications, changeName(deleted)).Inc()
	w.emit(objectKey("application", a.Namespace, a.App, a.UID), a.Ordering, e, err)
}

// applicationChanged emits an Application's new state unless nothing the summaries show
// changed (Argo CD rewrites status.reconciledAt every few seconds), and its deletion from
// the app it deployed before when its labels changed.
func (w *Watcher) applicationChanged(old, u *unstructured.Unstructured) {
	ns, app, ok := w.applicationApp(u)
	ord := w.order.Of(u.GetResourceVersion())
	var before events.Application
	if old != nil {
		oldNs, oldApp, oldOK := w.applicationApp(old)
		switch {
		case oldOK && (oldNs != ns || oldApp != app):
			w.emitApplication(applicationState(old, oldNs, oldApp, ord), true)
			old = nil
		case oldOK:
			before = applicationState(old, oldNs, oldApp, ord)
		default:
			old = nil
		}
	}
	if !ok {
		return
	}
	s := applicationState(u, ns, app, ord)
	before.ResourceVersion = s.ResourceVersion
	if old != nil && before == s {
		return
	}
	w.emitApplication(s, false)
}

// applicationDeleted emits the deletion of an Application from its app.
func (w *Watcher) applicationDeleted(u *unstructured.Unstructured, final bool) {
	if ns, app, ok := w.applicationApp(u); ok {
		w.emitApplication(applicationState(u, ns, app, w.deletionOrdering(u, final, w.applications)), true)
	}
}

// roundApplications emits the applications part of a full-state round: one list of Argo
// CD's namespace, however many app namespaces are watched. Without the Application
// resource (no Argo CD in the cluster) or the right to list it, it emits nothing and
// does not fail the round: pods and workflows are still summarised.
func (w *Watcher) roundApplications(ctx context.Context) error {
	if w.applicationClient == nil {
		return nil
	}
	apps := map[events.AppRef][]events.Application{}
	rev, listedAt, err := w.listNamespaces(ctx, events.KindApplications, []string{w.argoCDNamespace},
		func(ctx context.Context, _ string, opts metav1.ListOptions) (string, string, error) {
			l, err := w.applicationClient.List(ctx, opts)
			if err != nil {
				return "", "", err
			}
			for i := range l.Items {
				u := &l.Items[i]
				if ns, app, ok := w.applicationApp(u); ok {
					ref := events.AppRef{Namespace: ns, App: app}
					apps[ref] = append(apps[ref], applicationState(u, ns, app, w.order.Of(u.GetResourceVersion())))
				}
			}
			return l.GetResourceVersion(), l.GetContinue(), nil
		}, w.applicationSelector(), func() { clear(apps) })
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		w.log.Warn("Argo CD Applications cannot be listed: the summaries show no CD status", "namespace", w.argoCDNamespace, "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	w.emitSnapshots(events.KindApplications, rev, listedAt, sortedRefs(apps), func(s *events.AppSnapshot) {
		s.Applications = apps[events.AppRef{Namespace: s.Namespace, App: s.App}]
	})
	return nil
}
