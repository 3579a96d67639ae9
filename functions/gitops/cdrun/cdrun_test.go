package cdrun

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k := Key(strings.Repeat("k", MinKeyLen))
	run := Run{Kind: "app-service", App: "shop", User: "alice", Params: map[string]string{"image": "r/shop:1"}}
	ann, err := k.Annotations("demo", "dwp-cd-app-service-abcde", run)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Open("demo", "dwp-cd-app-service-abcde", ann)
	if err != nil || !reflect.DeepEqual(got, run) {
		t.Fatalf("Open = %+v, %v; want %+v", got, err, run)
	}

	forged := map[string]string{AnnotationRun: strings.Replace(ann[AnnotationRun], "alice", "admin", 1), AnnotationSeal: ann[AnnotationSeal]}
	tests := []struct {
		name, ns, wf string
		ann          map[string]string
		key          Key
	}{
		{"no annotations", "demo", "dwp-cd-app-service-abcde", nil, k},
		{"edited run", "demo", "dwp-cd-app-service-abcde", forged, k},
		{"copied to another workflow", "demo", "other", ann, k},
		{"copied to another namespace", "prod", "dwp-cd-app-service-abcde", ann, k},
		{"another key", "demo", "dwp-cd-app-service-abcde", ann, Key(strings.Repeat("x", MinKeyLen))},
		{"seal only", "demo", "dwp-cd-app-service-abcde", map[string]string{AnnotationSeal: ann[AnnotationSeal]}, k},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.key.Open(tt.ns, tt.wf, tt.ann); !errors.Is(err, ErrNotSealed) {
				t.Fatalf("Open = %v, want ErrNotSealed", err)
			}
		})
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good"), filepath.Join(dir, "short")
	os.WriteFile(good, []byte(strings.Repeat("a", MinKeyLen)+"\n"), 0o600)
	os.WriteFile(short, []byte("abc"), 0o600)
	if k, err := LoadKey(good); err != nil || len(k) != MinKeyLen {
		t.Errorf("LoadKey(good) = %d bytes, %v", len(k), err)
	}
	for _, p := range []string{short, filepath.Join(dir, "missing")} {
		if _, err := LoadKey(p); err == nil {
			t.Errorf("LoadKey(%s) accepted", p)
		}
	}
}
