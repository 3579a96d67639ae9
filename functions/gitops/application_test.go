package gitops

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func app(status map[string]any, annotations map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	u.SetAnnotations(annotations)
	return u
}

func TestJudge(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	synced := map[string]any{"status": "Synced", "revision": rev}
	tests := []struct {
		name     string
		status   map[string]any
		want     verdict
		contains string
	}{
		{"not yet seen", map[string]any{"sync": map[string]any{"status": "Synced", "revision": "old"}, "health": map[string]any{"status": "Healthy"}}, waiting, ""},
		{"synced and healthy", map[string]any{"sync": synced, "health": map[string]any{"status": "Healthy"}}, done, "Synced and Healthy at 0123456789ab"},
		{"synced, progressing", map[string]any{"sync": synced, "health": map[string]any{"status": "Progressing"}}, waiting, ""},
		{"out of sync", map[string]any{"sync": map[string]any{"status": "OutOfSync", "revision": rev}, "health": map[string]any{"status": "Healthy"}}, waiting, ""},
		{"degraded", map[string]any{"sync": synced, "health": map[string]any{"status": "Degraded"},
			"resources": []any{
				map[string]any{"kind": "Deployment", "name": "shop", "health": map[string]any{"status": "Degraded", "message": "Deployment \"shop\" exceeded its progress deadline"}},
				map[string]any{"kind": "Service", "name": "shop", "health": map[string]any{"status": "Healthy"}},
			}}, failed, `Degraded at 0123456789ab: Deployment shop: Degraded: Deployment "shop" exceeded its progress deadline`},
		{"sync failed", map[string]any{"sync": map[string]any{"status": "OutOfSync", "revision": rev},
			"operationState": map[string]any{"phase": "Failed", "message": "one or more objects failed to apply", "syncResult": map[string]any{"revision": rev}}},
			failed, "sync of 0123456789ab failed: one or more objects failed to apply"},
		{"an older sync failed", map[string]any{"sync": synced, "health": map[string]any{"status": "Progressing"},
			"operationState": map[string]any{"phase": "Failed", "message": "old", "syncResult": map[string]any{"revision": "old"}}}, waiting, ""},
		{"sync error before the result", map[string]any{
			"operationState": map[string]any{"phase": "Error", "message": "boom", "operation": map[string]any{"sync": map[string]any{"revision": rev}}}},
			failed, "failed: boom"},
		{"no status", nil, waiting, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, msg := readStatus(app(tt.status, nil)).judge(rev)
			if v != tt.want || !strings.Contains(msg, tt.contains) {
				t.Fatalf("judge = %v %q, want %v containing %q", v, msg, tt.want, tt.contains)
			}
		})
	}
}

func TestDetailAndSummary(t *testing.T) {
	s := readStatus(app(map[string]any{
		"sync":       map[string]any{"status": "OutOfSync", "revision": "abc"},
		"conditions": []any{map[string]any{"type": "ComparisonError", "message": "repo not found"}},
		"resources":  []any{map[string]any{"kind": "Deployment", "name": "big", "health": map[string]any{"status": "Progressing", "message": "Waiting for rollout"}}},
	}, map[string]string{annotationRefresh: "hard"}))
	if !s.Refreshing {
		t.Error("the refresh annotation was not seen")
	}
	if d := s.detail(); d != "Deployment big: Progressing: Waiting for rollout; ComparisonError: repo not found" {
		t.Errorf("detail = %q", d)
	}
	if got := s.summary(); got != `sync OutOfSync at "abc", health Unknown` {
		t.Errorf("summary = %q", got)
	}
	if d := (appStatus{}).detail(); d != "no reason given" {
		t.Errorf("empty detail = %q", d)
	}
}

func TestApplication(t *testing.T) {
	c := Config{ArgoCDNamespace: "argocd", Project: "dwp", Repo: "http://git/gitops.git", Branch: "main", Root: "apps", Destination: "https://kubernetes.default.svc"}
	u := c.application("demo", "shop", "demo")
	if u.GetName() != "demo.shop" || u.GetNamespace() != "argocd" || u.GetFinalizers()[0] != finalizerResources {
		t.Fatalf("metadata: %v", u.Object["metadata"])
	}
	path, _, _ := unstructured.NestedString(u.Object, "spec", "source", "path")
	prune, _, _ := unstructured.NestedBool(u.Object, "spec", "syncPolicy", "automated", "prune")
	heal, _, _ := unstructured.NestedBool(u.Object, "spec", "syncPolicy", "automated", "selfHeal")
	if path != "apps/demo/shop" || !prune || !heal {
		t.Fatalf("spec: path %q prune %v selfHeal %v", path, prune, heal)
	}
}
