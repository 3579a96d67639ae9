package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// wfLine is a line of a workflow's merged log as a browser got it.
type wfLine struct{ id, pod, line string }

func (l wfLine) String() string { return l.pod + "/" + l.line + "@" + l.id }

// readWFLines reads n log lines from c.
func readWFLines(t *testing.T, c *client, n int) []wfLine {
	t.Helper()
	var got []wfLine
	c.until(t, 60*time.Second, fmt.Sprintf("%d workflow log lines", n), func(ev sse.Event) bool {
		if ev.Type != "log" {
			t.Fatalf("%s event: %s", ev.Type, ev.Data)
		}
		l := decodeLog(t, ev)
		got = append(got, wfLine{id: ev.ID, pod: l.Pod, line: l.Line})
		return len(got) == n
	})
	return got
}

// noMoreLines checks that c gets no more lines for a while (heartbeats aside).
func noMoreLines(t *testing.T, c *client) {
	t.Helper()
	deadline := time.After(2 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatal("stream closed")
			}
			if !ev.IsComment {
				t.Fatalf("unexpected %s event: %s", ev.Type, ev.Data)
			}
		case <-deadline:
			return
		}
	}
}

// workflowPod runs a pod of workflow wf (by Argo's label, as its steps' pods are). It
// keeps running until the test ends: the plane, playing Argo's executor, would otherwise
// complete it about a second after it runs, and its log would stop being followed.
func workflowPod(t *testing.T, env *clustertest.Env, ns, name, wf string) {
	t.Helper()
	cs := env.AdminClientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Labels: map[string]string{"workflows.argoproj.io/workflow": wf},
			Annotations: map[string]string{"dwp.io/keep-running": "true"},
		},
		Spec: corev1.PodSpec{
			NodeName:   env.NodeName,
			Containers: []corev1.Container{{Name: "main", Image: "registry.example/step:1"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodRunning {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s not running: %s", ns, name, p.Status.Phase)
		case <-time.After(200 * time.Millisecond):
		}
	}
	env.WaitPodLogServed(t, ns, name, "main")
}

// Must show: a browser resuming a workflow's log with Last-Event-ID after the shared
// topic is gone (it lingered out), or on another router, gets exactly the lines it
// missed: none lost, none twice.
func TestWorkflowLogResumeOnAFreshTopic(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, func(c *server.Config) { c.Linger = 500 * time.Millisecond })
	tok := env.Tokens["admin"]
	argo, err := argoclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	wf := "resume-" + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A suspended workflow runs until the test ends; its pods are the test's.
	if _, err := argo.ArgoprojV1alpha1().Workflows(ns).Create(ctx, &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: wf},
		Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{
			Name: "main", Suspend: &wfv1.SuspendTemplate{},
		}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a, b := env.PodLog(t, ns, wf+"-a", "main"), env.PodLog(t, ns, wf+"-b", "main")
	var want []string
	add := func(pl *clustertest.PodLog, pod, prefix string, from, n int) {
		for _, l := range appendLines(t, pl, prefix, from, n) {
			want = append(want, pod+"/"+l)
		}
	}
	add(a, wf+"-a", "a", 0, 5)
	add(b, wf+"-b", "b", 0, 5)
	workflowPod(t, env, ns, wf+"-a", wf)
	workflowPod(t, env, ns, wf+"-b", wf)
	path := "namespaces/" + ns + "/workflows/" + wf + "/log"

	c := r.open(t, path, tok, "")
	seen := readWFLines(t, c, len(want))
	c.close()
	// The topic lingers out: no topic of this log is left on the router.
	for deadline := time.Now().Add(30 * time.Second); r.metric(t, `dwp_sse_topics{kind="workflow_log"}`) != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the workflow log topic did not linger out")
		}
	}
	add(b, wf+"-b", "b", 5, 20)
	add(a, wf+"-a", "a", 5, 20)
	add(b, wf+"-b", "b", 25, 3)

	check := func(what string, got []wfLine, from int) {
		t.Helper()
		var texts []string
		for _, l := range got {
			texts = append(texts, l.pod+"/"+l.line)
		}
		if !slices.Equal(texts, want[from:]) {
			t.Fatalf("%s: got %q\nwant exactly the missed lines %q", what, texts, want[from:])
		}
	}
	resumed := r.open(t, path, tok, seen[len(seen)-1].id)
	missed := readWFLines(t, resumed, len(want)-len(seen))
	check("resumed on a fresh topic", missed, len(seen))
	noMoreLines(t, resumed)
	seen = append(seen, missed...)
	resumed.close()
	t.Logf("resumed on a fresh topic after %d lines: %d missed lines, none lost or repeated", len(seen)-len(missed), len(missed))

	// Another router, which never saw this log, resumes it as exactly, with the same ids.
	other := startRouter(t, env, nil)
	mid := len(seen) - 12
	add(a, wf+"-a", "a", 25, 4)
	elsewhere := other.open(t, path, tok, seen[mid].id)
	got := readWFLines(t, elsewhere, len(want)-mid-1)
	check("resumed on another router", got, mid+1)
	noMoreLines(t, elsewhere)
	if fmt.Sprint(got[:len(seen)-mid-1]) != fmt.Sprint(seen[mid+1:]) {
		t.Fatalf("another router's ids differ:\n%v\n%v", got[:len(seen)-mid-1], seen[mid+1:])
	}
	t.Logf("resumed on another router after line %d: %d lines, ids identical", mid+1, len(got))
}
