package controlplane

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestContainerOutputIsTheLogWithoutCRIFields(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p_main.log")
	cri := "2026-01-02T03:04:05.000000001Z stdout F + make build\n" +
		"2026-01-02T03:04:05.000000002Z stderr P half \n" +
		"2026-01-02T03:04:05.000000003Z stderr F a line\n" +
		"2026-01-02T03:04:05.000000004Z stdout F \n" +
		"2026-01-02T03:04:05.000000005Z stdout F two  spaces kept\n"
	if err := os.WriteFile(file, []byte(cri), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := containerOutput(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := "+ make build\nhalf a line\n\ntwo  spaces kept\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, err := containerOutput(filepath.Join(t.TempDir(), "none.log")); err != nil || len(got) != 0 {
		t.Fatalf("a missing log: %q %v", got, err)
	}
}

func TestStepOutputShowsTheTemplatesCommand(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "wf-build-1", Annotations: map[string]string{annotNodeName: "wf[0].build"}}}
	c := corev1.Container{
		Name: "main", Image: "registry.example/build:1",
		Command: []string{"/var/run/argo/argoexec", "emissary", "--loglevel", "info", "--", "make"},
		Args:    []string{"build"},
	}
	got := strings.Join(stepOutput(pod, c), "\n")
	for _, want := range []string{"wf[0].build", "registry.example/build:1", "+ make build"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "argoexec") {
		t.Errorf("%q shows Argo's executor", got)
	}
}

func TestTemplateLogsKey(t *testing.T) {
	var tmpl stepTemplate
	raw := `{"name":"build","archiveLocation":{"archiveLogs":true,"s3":{"endpoint":"127.0.0.1:9000","bucket":"b","key":"wf/wf-build-1"}}}`
	if err := json.Unmarshal([]byte(raw), &tmpl); err != nil {
		t.Fatal(err)
	}
	if bucket, key := tmpl.logsKey("main"); bucket != "b" || key != "wf/wf-build-1/main.log" {
		t.Fatalf("got %q %q", bucket, key)
	}
	for _, raw := range []string{
		`{"name":"build"}`,
		`{"archiveLocation":{"archiveLogs":false,"s3":{"key":"k"}}}`,
		`{"archiveLocation":{"s3":{"key":"k"}}}`,
		`{"archiveLocation":{"archiveLogs":true}}`,
	} {
		var t2 stepTemplate
		if err := json.Unmarshal([]byte(raw), &t2); err != nil {
			t.Fatal(err)
		}
		if _, key := t2.logsKey("main"); key != "" {
			t.Errorf("%s: archives at %q", raw, key)
		}
	}
}

func TestLogFilesReadsKwokLogs(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"logs": []any{
		map[string]any{"containers": []any{"main"}, "logsFile": "/x/p_main.log"},
		map[string]any{"containers": []any{"a", "b"}, "logsFile": "/x/p_ab.log"},
	}}}}
	got := logFiles(obj)
	if len(got) != 3 || got["main"] != "/x/p_main.log" || got["b"] != "/x/p_ab.log" {
		t.Fatalf("%v", got)
	}
}
