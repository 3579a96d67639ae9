package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	function "github.com/dwp-sre/dwp-sre"
)

// The Triggers must deliver every type the function handles, and never its replies.
func TestTriggersMatchTheFunctionsEventTypes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "triggers", "eventing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range decode(t, b) {
		if u.GetKind() != "Trigger" {
			continue
		}
		typ, _, _ := unstructured.NestedString(u.Object, "spec", "filter", "attributes", "type")
		if typ == "" {
			t.Errorf("trigger %s has no exact type filter: it would match replies too", u.GetName())
		}
		got = append(got, typ)
	}
	want, replies := function.EventTypes()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("trigger types %v, want the types the function handles, %v", got, want)
	}
	if len(replies) == 0 {
		t.Fatal("the function names no reply types: the check below would prove nothing")
	}
	for _, r := range replies {
		if slices.Contains(got, r) {
			t.Fatalf("a trigger matches the reply type %s: the broker would loop it back", r)
		}
	}
}
