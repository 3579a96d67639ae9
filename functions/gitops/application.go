package gitops

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// applications is Argo CD's Application resource; the main module does not import Argo CD
// (its Kubernetes libraries are older), so Applications are unstructured.
var applications = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// Argo CD's contract, from its API and documentation.
const (
	// finalizerResources makes deleting an Application delete the objects it created.
	finalizerResources = "resources-finalizer.argocd.argoproj.io"
	// annotationRefresh asks Argo CD to look at the repository now rather than at its next
	// poll ("hard" also drops its cache of rendered manifests).
	annotationRefresh = "argocd.argoproj.io/refresh"
)

// ApplicationName is the Application of an app: namespace and app joined by a dot, which
// neither may hold, so two apps never share one.
func ApplicationName(namespace, app string) string { return namespace + "." + app }

// appFolder is the app's folder in the repository.
func (c *Config) appFolder(namespace, app string) string { return c.Root + "/" + namespace + "/" + app }

// application is the Application that keeps app's folder synced to destNamespace:
// automated sync with prune and self-heal, and the finalizer that deletes its objects
// with it.
func (c *Config) application(namespace, app, destNamespace string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata": map[string]any{
			"name":      ApplicationName(namespace, app),
			"namespace": c.ArgoCDNamespace,
			"labels": map[string]any{
				events.LabelAppNamespace:       namespace,
				events.LabelApp:                app,
				"app.kubernetes.io/managed-by": "dwp-sre",
			},
			"finalizers": []any{finalizerResources},
		},
		"spec": map[string]any{
			"project": c.Project,
			"source": map[string]any{
				"repoURL":        c.Repo,
				"targetRevision": c.Branch,
				"path":           c.appFolder(namespace, app),
			},
			"destination": map[string]any{"server": c.Destination, "namespace": destNamespace},
			"syncPolicy": map[string]any{
				"automated": map[string]any{"prune": true, "selfHeal": true},
			},
		},
	}}
	return u
}

// verdict is what an Application's status says of a revision.
type verdict int

const (
	waiting verdict = iota
	done
	failed
)

// appStatus is the part of an Application's status a run reads.
type appStatus struct {
	Sync, SyncRevision     string
	Health, HealthMessage  string
	OpPhase, OpMessage     string
	OpRevision             string
	Conditions             []string
	Unhealthy              []string // "Kind name: status: message" of resources not Healthy
	Refreshing, Terminated bool
}

func readStatus(u *unstructured.Unstructured) appStatus {
	str := func(fields ...string) string {
		v, _, _ := unstructured.NestedString(u.Object, fields...)
		return v
	}
	s := appStatus{
		Sync:          str("status", "sync", "status"),
		SyncRevision:  str("status", "sync", "revision"),
		Health:        str("status", "health", "status"),
		HealthMessage: str("status", "health", "message"),
		OpPhase:       str("status", "operationState", "phase"),
		OpMessage:     str("status", "operationState", "message"),
		OpRevision:    str("status", "operationState", "syncResult", "revision"),
		Refreshing:    u.GetAnnotations()[annotationRefresh] != "",
	}
	if s.OpRevision == "" {
		s.OpRevision = str("status", "operationState", "operation", "sync", "revision")
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok {
			s.Conditions = append(s.Conditions, fmt.Sprintf("%v: %v", m["type"], m["message"]))
		}
	}
	res, _, _ := unstructured.NestedSlice(u.Object, "status", "resources")
	for _, r := range res {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		h, _ := m["health"].(map[string]any)
		if h == nil || h["status"] == "Healthy" {
			continue
		}
		line := fmt.Sprintf("%v %v: %v", m["kind"], m["name"], h["status"])
		if msg, _ := h["message"].(string); msg != "" {
			line += ": " + msg
		}
		s.Unhealthy = append(s.Unhealthy, line)
	}
	sort.Strings(s.Unhealthy)
	return s
}

// judge says whether Argo CD is done with revision: synced and healthy, failed (its own
// reason), or not yet.
func (s appStatus) judge(revision string) (verdict, string) {
	short := revision
	if len(short) > 12 {
		short = short[:12]
	}
	if s.OpRevision == revision && (s.OpPhase == "Failed" || s.OpPhase == "Error") {
		return failed, fmt.Sprintf("Argo CD's sync of %s failed: %s", short, s.OpMessage)
	}
	if s.Sync != "Synced" || s.SyncRevision != revision {
		return waiting, ""
	}
	switch s.Health {
	case "Healthy":
		return done, fmt.Sprintf("Synced and Healthy at %s", short)
	case "Degraded":
		return failed, fmt.Sprintf("Degraded at %s: %s", short, s.detail())
	}
	return waiting, ""
}

// detail says why an Application is not yet where it should be.
func (s appStatus) detail() string {
	var parts []string
	if s.HealthMessage != "" {
		parts = append(parts, s.HealthMessage)
	}
	parts = append(parts, s.Unhealthy...)
	parts = append(parts, s.Conditions...)
	if s.OpPhase != "" && s.OpPhase != "Succeeded" && s.OpMessage != "" {
		parts = append(parts, "operation "+s.OpPhase+": "+s.OpMessage)
	}
	if len(parts) == 0 {
		return "no reason given"
	}
	return strings.Join(parts, "; ")
}

// summary is the Application's state in a few words, for messages.
func (s appStatus) summary() string {
	rev := s.SyncRevision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return fmt.Sprintf("sync %s at %q, health %s", orUnknown(s.Sync), rev, orUnknown(s.Health))
}

func orUnknown(s string) string {
	if s == "" {
		return "Unknown"
	}
	return s
}
