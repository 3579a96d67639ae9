package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParseChatter(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want string // chatterSpec.String(), "" when nothing is asked for
	}{
		{"none", nil, ""},
		{"lines", map[string]string{annotLogEvery: "2s"}, "2s/0s/access"},
		{"worker lines", map[string]string{annotLogEvery: "500ms", annotLogStyle: "worker"}, "500ms/0s/worker"},
		{"crash only", map[string]string{annotCrashAfter: "20s"}, "0s/20s/access"},
		{"both", map[string]string{annotLogEvery: "1s", annotCrashAfter: "1m"}, "1s/1m0s/access"},
		{"not a duration", map[string]string{annotLogEvery: "often"}, ""},
		{"too fast", map[string]string{annotLogEvery: "1ms"}, ""},
		{"negative crash", map[string]string{annotCrashAfter: "-1s"}, ""},
		{"unknown style", map[string]string{annotLogEvery: "1s", annotLogStyle: "poetry"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := parseChatter(tc.ann)
			got := ""
			if ok {
				got = s.String()
			}
			if got != tc.want {
				t.Errorf("parseChatter(%v) = %q, want %q", tc.ann, got, tc.want)
			}
		})
	}
}

// logfmt reads key=value fields (values may be quoted).
func logfmt(line string) map[string]string {
	out := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`)
			if end < 0 {
				break
			}
			v, line = rest[1:1+end], rest[2+end:]
		} else {
			v, line, _ = strings.Cut(rest, " ")
		}
		out[k] = v
	}
	return out
}

func TestAccessLinesArePlausible(t *testing.T) {
	w := newLineWriter("access", "web-1", rand.New(rand.NewPCG(1, 2)))
	statuses := map[string]int{}
	for range 2000 {
		line := w.line(time.Now())
		f := logfmt(line)
		if m := f["method"]; m != "GET" && m != "POST" {
			t.Fatalf("method %q in %q", m, line)
		}
		if !strings.HasPrefix(f["path"], "/") || strings.Contains(f["path"], "%") {
			t.Fatalf("path %q in %q", f["path"], line)
		}
		status, err := strconv.Atoi(f["status"])
		if err != nil {
			t.Fatalf("status in %q: %v", line, err)
		}
		statuses[f["status"]]++
		wantLevel := map[bool]string{true: "error", false: "info"}[status >= 500]
		if status >= 400 && status < 500 {
			wantLevel = "warn"
		}
		if f["level"] != wantLevel {
			t.Fatalf("level %q for status %d in %q", f["level"], status, line)
		}
		lat, err := time.ParseDuration(f["latency"])
		if err != nil || lat < time.Millisecond || lat > 200*time.Millisecond {
			t.Fatalf("latency %q (%v) in %q", f["latency"], err, line)
		}
	}
	// Mostly successes, some errors: a log worth filtering.
	if statuses["200"] < 1500 || statuses["500"] == 0 || statuses["404"] == 0 {
		t.Errorf("status mix %v", statuses)
	}
}

func TestLinesAreDeterminedByTheSeed(t *testing.T) {
	for _, style := range []string{"access", "worker"} {
		t.Run(style, func(t *testing.T) {
			a := newLineWriter(style, "p", rand.New(rand.NewPCG(7, 1)))
			b := newLineWriter(style, "p", rand.New(rand.NewPCG(7, 1)))
			c := newLineWriter(style, "p", rand.New(rand.NewPCG(8, 1)))
			same, differ := true, false
			for range 50 {
				la, lb, lc := a.line(time.Time{}), b.line(time.Time{}), c.line(time.Time{})
				same = same && la == lb
				differ = differ || la != lc
				if f := logfmt(la); f["level"] == "" || f["msg"] == "" && style == "worker" {
					t.Fatalf("fields missing in %q", la)
				}
			}
			if !same || !differ {
				t.Errorf("same seed gives the same lines: %v; another seed others: %v", same, differ)
			}
			if len(a.startup(time.Time{})) == 0 || len(a.crash(time.Time{})) == 0 {
				t.Error("no start-up or crash lines")
			}
		})
	}
}

// What appendCRI writes is what kwok serves and the executor reads back.
func TestAppendCRIRoundTrips(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p_main.log")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := appendCRI(file, now, []string{"one", `level=info msg="two words"`}); err != nil {
		t.Fatal(err)
	}
	if err := appendCRI(file, now.Add(time.Second), []string{"three"}); err != nil {
		t.Fatal(err)
	}
	got, err := containerOutput(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := "one\nlevel=info msg=\"two words\"\nthree\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	b, _ := os.ReadFile(file)
	if first := strings.SplitN(string(b), "\n", 2)[0]; first != "2026-01-02T03:04:05Z stdout F one" {
		t.Errorf("first line %q", first)
	}
	if err := appendCRI(filepath.Join(t.TempDir(), "missing.log"), now, []string{"x"}); err == nil {
		t.Error("a missing file was written (it would be no pod's log)")
	}
}

// The controller on fake clients: an annotated running pod gets a Logs object and lines;
// with crash-after it goes to CrashLoopBackOff and back; once deleted, its log goes too.
func TestChatterWritesCrashesAndForgets(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "payments-1", UID: "u1", Annotations: map[string]string{
			annotLogEvery: "100ms", annotCrashAfter: "300ms",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.1.0.9",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}},
		},
	}
	quiet := pod.DeepCopy()
	quiet.Name, quiet.UID, quiet.Annotations = "quiet", "u2", nil
	cs := fake.NewClientset(pod, quiet)
	scheme := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{kwokLogsGVR: "LogsList"})
	logDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	c := &chatter{cs: cs, dyn: dyn, logDir: logDir, logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		crashBackOff: 300 * time.Millisecond, ctx: ctx, workers: map[string]*chatterWorker{}}
	wait, err := startChatterWith(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wait() }()

	file := filepath.Join(logDir, "demo", "payments-1_app.log")
	eventually(t, "lines in the pod's log", func() error {
		out, err := containerOutput(file)
		if n := strings.Count(string(out), "method="); err != nil || n < 2 {
			return fmt.Errorf("%d request lines (%v)", n, err)
		}
		return nil
	})
	logs, err := dyn.Resource(kwokLogsGVR).Namespace("demo").Get(ctx, "payments-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := logFiles(logs); got["app"] != file {
		t.Errorf("Logs object names %v, want app → %s", got, file)
	}
	if _, err := dyn.Resource(kwokLogsGVR).Namespace("demo").Get(ctx, "quiet", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a pod without the annotation got a log: %v", err)
	}
	eventually(t, "CrashLoopBackOff", func() error {
		p, err := cs.CoreV1().Pods("demo").Get(ctx, "payments-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := p.Status.ContainerStatuses[0]
		if s.State.Waiting == nil || s.State.Waiting.Reason != "CrashLoopBackOff" || s.RestartCount != 1 || s.Ready || podReady(p) {
			return fmt.Errorf("status %+v", s)
		}
		if term := s.LastTerminationState.Terminated; term == nil || term.ExitCode != 1 {
			return fmt.Errorf("last state %+v", s.LastTerminationState)
		}
		return nil
	})
	if out, _ := containerOutput(file); !strings.Contains(string(out), "level=fatal") {
		t.Error("no fatal line before the crash")
	}
	eventually(t, "running again", func() error {
		p, err := cs.CoreV1().Pods("demo").Get(ctx, "payments-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s := p.Status.ContainerStatuses[0]; s.State.Running == nil || !s.Ready || !podReady(p) {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})

	if err := cs.CoreV1().Pods("demo").Delete(ctx, "payments-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "log removed with the pod", func() error {
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			return fmt.Errorf("file: %v", err)
		}
		if _, err := dyn.Resource(kwokLogsGVR).Namespace("demo").Get(ctx, "payments-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Logs object: %v", err)
		}
		return nil
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
