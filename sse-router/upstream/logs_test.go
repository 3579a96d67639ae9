package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// seenLine is a log line as a subscriber got it.
type seenLine struct{ id, pod, text string }

func (l seenLine) String() string { return l.pod + "/" + l.text + "@" + l.id }

// collectLines reads n log lines from c, failing on any other event or after timeout.
func collectLines(t *testing.T, c *hub.Client, n int, timeout time.Duration) []seenLine {
	t.Helper()
	var got []seenLine
	deadline := time.Now().Add(timeout)
	for len(got) < n {
		d, ok := c.Next(time.Until(deadline))
		if !ok {
			t.Fatalf("got %d lines of %d (closed: %v %s): last %v", len(got), n, c.Closed(), c.Reason(), got[max(len(got)-3, 0):])
		}
		for _, ev := range d.Msg.Events {
			if ev.Name != api.EventLog {
				t.Fatalf("%s event: %s", ev.Name, ev.Data)
			}
			var p logLinePayload
			data := strings.TrimSuffix(strings.TrimPrefix(string(ev.Data), "data: "), "\n")
			if err := json.Unmarshal([]byte(data), &p); err != nil {
				t.Fatal(err)
			}
			got = append(got, seenLine{id: ev.ID, pod: p.Pod, text: p.Line})
		}
	}
	if len(got) > n {
		t.Fatalf("got %d lines, want %d: %v", len(got), n, got[n:min(n+3, len(got))])
	}
	return got
}

// quiet checks that c gets nothing more for a while.
func quiet(t *testing.T, c *hub.Client) {
	t.Helper()
	if d, ok := c.Next(100 * time.Millisecond); ok {
		t.Fatalf("unexpected %d more events, first %s %s", len(d.Msg.Events), d.Msg.Events[0].Name, d.Msg.Events[0].Data)
	}
}

// wfFixture is a running workflow of two pods whose logs the test writes.
type wfFixture struct {
	logs *fakeLogs
	cs   *logsClientset
	argo *argofake.Clientset
}

func newWFFixture() *wfFixture {
	logs := newFakeLogs()
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "ns"}, Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning}}
	return &wfFixture{
		logs: logs,
		cs:   newLogsClientset(logs, runningWorkflowPod("wf-b", "wf"), runningWorkflowPod("wf-a", "wf")),
		argo: argofake.NewSimpleClientset(wf),
	}
}

// topic starts a workflow log topic on the fixture, until the returned stop.
func (f *wfFixture) topic(t *testing.T, replay int) (*workflowLogTopic, context.CancelFunc) {
	t.Helper()
	topic := newWorkflowLogTopic(f.cs, f.argo, "ns", "wf", "main", workflowLogOptions{
		replay: replay, window: 20 * time.Millisecond, maxWait: time.Second,
		drainIdle: time.Second, backoff: [2]time.Duration{5 * time.Millisecond, 50 * time.Millisecond},
	}, hub.NewMetrics(nil), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); topic.Run(ctx) }()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return topic, stop
}

func subscribe(t *testing.T, topic Topic, j Join) *hub.Client {
	t.Helper()
	c := hub.NewClient(256, nil)
	if err := topic.Subscribe(t.Context(), c.NewSubscription(""), j); err != nil {
		t.Fatal(err)
	}
	return c
}

func resumeAt(id string) Join {
	pos, ok := api.ParseLogPos(id)
	if !ok {
		panic("bad id " + id)
	}
	return Join{Resume: api.Resume{Set: true, Log: pos}}
}

var t0 = time.Unix(1_700_000_000, 0)

// A workflow's merged log has the same positions whichever topic reads it: a browser
// resuming on a fresh topic (the first one lingered out, or another replica) gets
// exactly the lines after its position, with the ids it would have had.
func TestWorkflowLogResumesExactlyOnAFreshTopic(t *testing.T) {
	f := newWFFixture()
	// Backlogs longer than a read's batch, interleaved in time: merged by watermark, not
	// by arrival.
	var want []string
	for i := range 1500 {
		at := t0.Add(-10*time.Second + time.Duration(i)*2*time.Millisecond)
		f.logs.add("wf-a", at, fmt.Sprintf("a-old %04d", i))
		f.logs.add("wf-b", at.Add(time.Millisecond), fmt.Sprintf("b-old %04d", i))
		want = append(want, fmt.Sprintf("wf-a/a-old %04d", i), fmt.Sprintf("wf-b/b-old %04d", i))
	}
	// Lines of one instant, in one pod and across pods: by pod name, then order.
	f.logs.add("wf-a", t0.Add(100*time.Millisecond), "a0")
	f.logs.add("wf-b", t0.Add(200*time.Millisecond), "b0")
	f.logs.add("wf-a", t0.Add(200*time.Millisecond), "a1", "a2")
	f.logs.add("wf-b", t0.Add(250*time.Millisecond), "b1")
	f.logs.add("wf-b", t0.Add(300*time.Millisecond), "b2")
	f.logs.add("wf-a", t0.Add(300*time.Millisecond), "a3")
	want = append(want, "wf-a/a0", "wf-a/a1", "wf-a/a2", "wf-b/b0", "wf-b/b1", "wf-a/a3", "wf-b/b2")

	first, stop := f.topic(t, 10000)
	c1 := subscribe(t, first, Join{})
	seen := collectLines(t, c1, len(want), 10*time.Second)
	if got := texts2(seen); !slices.Equal(got, want) {
		t.Fatalf("merged order differs at %d:\n got %v\nwant %v", firstDiff(got, want), got[firstDiff(got, want):][:5], want[firstDiff(got, want):][:5])
	}
	checkGrowing(t, seen)
	stop()

	// While no topic runs, the pods log on, at instants shared across pods again.
	f.logs.add("wf-b", t0.Add(time.Second), "b3")
	f.logs.add("wf-a", t0.Add(time.Second), "a4", "a5")
	f.logs.add("wf-a", t0.Add(1500*time.Millisecond), "a6")
	later := []string{"wf-a/a4", "wf-a/a5", "wf-b/b3", "wf-a/a6"}

	second, _ := f.topic(t, 10000)
	reference := collectLines(t, subscribe(t, second, Join{}), len(want)+len(later), 10*time.Second)
	if got, want := texts2(reference), append(slices.Clone(want), later...); !slices.Equal(got, want) {
		d := firstDiff(got, want)
		t.Fatalf("second topic's lines differ at %d: %v, want %v", d, got[d:min(d+4, len(got))], want[d:min(d+4, len(want))])
	}
	if fmt.Sprint(reference[:len(seen)]) != fmt.Sprint(seen) {
		t.Fatalf("a fresh topic gives other positions:\n%v\n%v", reference[len(seen)-8:len(seen)], seen[len(seen)-8:])
	}
	// Resuming anywhere, on topics started for the purpose: the rest, exactly.
	for _, at := range []int{len(seen) - 1, len(seen) - 5 /* a2: within an instant */, 17} {
		third, stopThird := f.topic(t, 10000)
		c := subscribe(t, third, resumeAt(seen[at].id))
		got := collectLines(t, c, len(reference)-at-1, 10*time.Second)
		if fmt.Sprint(got) != fmt.Sprint(reference[at+1:]) {
			d := firstDiff(texts2(got), texts2(reference[at+1:]))
			if d == len(got) {
				d = 0 // same lines: the ids differ
			}
			t.Fatalf("resumed after %v: line %d is %v, want %v", seen[at], d, got[d], reference[at+1+d])
		}
		quiet(t, c)
		stopThird()
	}
}

// A browser resuming from a position the topic's ring no longer holds gets the missing
// lines read again from every pod's log, positioned as the topic positioned them.
func TestWorkflowLogResumeBeyondTheRing(t *testing.T) {
	f := newWFFixture()
	var want []string
	for i := range 300 {
		at := t0.Add(time.Duration(i) * 7 * time.Millisecond)
		f.logs.add("wf-a", at, fmt.Sprintf("a %03d", i))
		f.logs.add("wf-b", at, fmt.Sprintf("b %03d", i)) // each at the same instant as a's
		want = append(want, fmt.Sprintf("wf-a/a %03d", i), fmt.Sprintf("wf-b/b %03d", i))
	}
	topic, _ := f.topic(t, 50)
	all := collectLines(t, subscribe(t, topic, Join{}), len(want), 10*time.Second)
	if got := texts2(all); !slices.Equal(got, want) {
		t.Fatalf("order: %v", got[firstDiff(got, want):][:4])
	}
	fetches := f.logs.fetches.Load()
	for _, at := range []int{0, 101, 480} {
		c := subscribe(t, topic, resumeAt(all[at].id))
		got := collectLines(t, c, len(all)-at-1, 10*time.Second)
		if fmt.Sprint(got) != fmt.Sprint(all[at+1:]) {
			t.Fatalf("resumed after %v: got %v..., want %v...", all[at], got[:2], all[at+1:at+3])
		}
		// Live lines follow, once.
		f.logs.add("wf-a", t0.Add(time.Duration(10+at)*time.Second), fmt.Sprintf("live %d", at))
		live := collectLines(t, c, 1, 5*time.Second)
		if live[0].text != fmt.Sprintf("live %d", at) {
			t.Fatalf("live line %v", live)
		}
		all = append(all, live...)
		quiet(t, c)
	}
	if n := f.logs.fetches.Load() - fetches; n != 6 {
		t.Fatalf("%d reads for three resumes beyond the ring of two pods, want 6", n)
	}
}

func texts2(ls []seenLine) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.pod + "/" + l.text
	}
	return out
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func checkGrowing(t *testing.T, ls []seenLine) {
	t.Helper()
	var prev api.LogPos
	for i, l := range ls {
		p, ok := api.ParseLogPos(l.id)
		if !ok || (i > 0 && !prev.Less(p)) {
			t.Fatalf("id %s after %s", l.id, prev)
		}
		prev = p
	}
}

// Whole-log joiners of a log longer than the ring share one read of it, streamed in a
// few large messages that are the same for all of them, and then go on with the live
// lines: every line once, in order.
func TestPodLogCatchUpIsShared(t *testing.T) {
	const joiners = 50
	logs := newFakeLogs()
	var want []string
	for i := range 20000 {
		text := fmt.Sprintf("old %05d %s", i, strings.Repeat("x", 40))
		logs.add("p", t0.Add(time.Duration(i)*time.Millisecond), text)
		want = append(want, "/"+text)
	}
	cs := newLogsClientset(logs, runningWorkflowPod("p", ""))
	topic := newPodLogTopic(cs, "ns", "p", "main", 100, hub.NewMetrics(nil), slog.New(slog.DiscardHandler), [2]time.Duration{time.Millisecond, 10 * time.Millisecond})
	go topic.Run(t.Context())
	<-topic.ready

	logs.mu.Lock()
	logs.gate = make(chan struct{})
	logs.mu.Unlock()
	clients := make([]*hub.Client, joiners)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = hub.NewClient(256, nil)
		wg.Go(func() {
			if err := topic.Subscribe(t.Context(), clients[i].NewSubscription(""), Join{Spec: api.Spec{Follow: true}}); err != nil {
				t.Error(err)
			}
		})
	}
	// Every joiner waits on the one read before it answers.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		topic.mu.Lock()
		members := 0
		for _, c := range topic.catchUps {
			c.mu.Lock()
			members += len(c.members)
			c.mu.Unlock()
		}
		topic.mu.Unlock()
		if members == joiners {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d joiners waiting on reads", members)
		}
	}
	close(logs.gate)
	wg.Wait()
	logs.add("p", t0.Add(time.Hour), "live 1", "live 2")
	want = append(want, "/live 1", "/live 2")

	if n := logs.wholeReads.Load(); n != 1 {
		t.Fatalf("%d reads of the whole log for %d joiners, want 1", n, joiners)
	}
	var (
		first []*hub.Message
		data  []string
	)
	for i, c := range clients {
		var msgs []*hub.Message
		n := 0
		for n < len(want) {
			d, ok := c.Next(5 * time.Second)
			if !ok {
				t.Fatalf("joiner %d: %d lines of %d (%s)", i, n, len(want), c.Reason())
			}
			msgs = append(msgs, d.Msg)
			for _, ev := range d.Msg.Events {
				if i == 0 {
					if got := "/" + lineText(t, ev); got != want[n] {
						t.Fatalf("line %d is %q, want %q", n, got, want[n])
					}
					data = append(data, string(ev.Data))
				} else if string(ev.Data) != data[n] {
					t.Fatalf("joiner %d: line %d is %s, want %s", i, n, ev.Data, data[n])
				}
				n++
			}
		}
		if n != len(want) {
			t.Fatalf("joiner %d: %d lines, want %d", i, n, len(want))
		}
		if i == 0 {
			quiet(t, c)
			first = msgs
			if len(msgs) > 20 {
				t.Errorf("the catch-up came as %d messages", len(msgs))
			}
			continue
		}
		// The old lines are the same messages for everyone.
		for j := range len(first) - 2 {
			if msgs[j] != first[j] {
				t.Fatalf("joiner %d's message %d is not shared", i, j)
			}
		}
	}

	// A joiner after the read gets its lines again, kept, and the ring's since.
	logs.add("p", t0.Add(2*time.Hour), "live 3")
	want = append(want, "/live 3")
	late := subscribe(t, topic, Join{Spec: api.Spec{Follow: true}})
	got := collectLines(t, late, len(want), 5*time.Second)
	for i, l := range got {
		if "/"+l.text != want[i] {
			t.Fatalf("late joiner: line %d is %q, want %q", i, l.text, want[i])
		}
	}
	if n := logs.wholeReads.Load(); n != 1 {
		t.Fatalf("%d reads of the whole log after a late joiner, want 1", n)
	}
	t.Logf("%d joiners, then a late one: %d whole-log read, %d catch-up messages each", joiners, logs.wholeReads.Load(), len(first)-2)
}

// A log read without follow comes in chunks as it is read, the end with the last ones.
func TestOneShotLogStreamsChunks(t *testing.T) {
	logs := newFakeLogs()
	const n = 20000
	for i := range n {
		logs.add("p", t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("line %05d %s", i, strings.Repeat("y", 60)))
	}
	o := &oneShotLog{cs: newLogsClientset(logs), ns: "ns", pod: "p", container: "main", metrics: hub.NewMetrics(nil), log: slog.New(slog.DiscardHandler)}
	c := hub.NewClient(256, nil)
	if err := o.Subscribe(t.Context(), c.NewSubscription(""), Join{}); err != nil {
		t.Fatal(err)
	}
	var lines, msgs int
	for {
		d, ok := c.Next(time.Second)
		if !ok {
			t.Fatalf("no end after %d lines", lines)
		}
		msgs++
		for _, ev := range d.Msg.Events {
			if ev.Name == api.EventLog {
				if want := fmt.Sprintf("line %05d ", lines); !strings.HasPrefix(lineText(t, ev), want) {
					t.Fatalf("line %d: %s", lines, ev.Data)
				}
				lines++
			}
		}
		if d.Msg.End {
			break
		}
	}
	if lines != n || msgs < 2 || msgs > 20 {
		t.Fatalf("%d lines in %d messages", lines, msgs)
	}
}
