package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
)

// Must show: many browsers opening the whole of a log longer than the router keeps share
// one read of its older lines: one extra upstream request, and each browser gets every
// line once, in order, then the live ones.
func TestWholeLogJoinersShareOneRead(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	// Keeps the last 1,000 lines of a log. The joiners read in this process, on a busy
	// box: they are given time, since dropping a slow one is not what is tested here.
	r := startRouter(t, env, func(c *server.Config) { c.WriteTimeout = time.Minute })
	tok := env.Tokens["admin"]
	const (
		joiners = 200
		lines   = 20000 // about 2.6 MB
	)
	pl := env.PodLog(t, ns, "big-1", "main")
	pad := strings.Repeat("x", 100)
	var want []string
	for from := 0; from < lines; from += 5000 {
		want = append(want, appendLines(t, pl, "old "+pad, from, 5000)...)
	}
	runningPod(t, env, ns, "big-1", "web")
	env.WaitPodLogServed(t, ns, "big-1", "main")
	path := "namespaces/" + ns + "/pods/big-1/log?container=main"

	// A viewer of the last lines starts the shared follow; its ring holds them.
	warm := r.open(t, path+"&tailLines=10", tok, "")
	readLogLines(t, warm, 10)
	fetch := `dwp_sse_upstream_requests_total{kind="pod_log",verb="fetch"}`
	before := r.metric(t, fetch)

	clients := make([]*client, joiners)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { clients[i] = r.open(t, path, tok, "") })
	}
	wg.Wait()
	want = append(want, appendLines(t, pl, "live", 0, 3)...)

	errs := make(chan error, joiners)
	start := time.Now()
	for _, c := range clients {
		wg.Go(func() { errs <- checkLines(c, want, 120*time.Second) })
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d joiners of %d failed; slow clients dropped: %v; fetches: %v", failed, joiners,
			r.metric(t, "dwp_sse_slow_clients_dropped_total"), r.metric(t, fetch)-before)
	}
	// Nothing comes twice.
	time.Sleep(time.Second)
	for i, c := range clients {
		for len(c.events) > 0 {
			if ev := <-c.events; !ev.IsComment {
				t.Fatalf("joiner %d: one more %s event: %.200s", i, ev.Type, ev.Data)
			}
		}
	}
	reads := r.metric(t, fetch) - before
	t.Logf("%d joiners of a %d-line log got every line once within %s; upstream reads of it: %v; slow clients dropped: %v",
		joiners, len(want), time.Since(start).Round(time.Millisecond), reads, r.metric(t, "dwp_sse_slow_clients_dropped_total"))
	if reads != 1 {
		t.Fatalf("%d joiners made %v upstream reads of the log, want 1", joiners, reads)
	}
}

// readLogLines reads n log lines from c.
func readLogLines(t *testing.T, c *client, n int) {
	t.Helper()
	if err := checkLines(c, nil, 30*time.Second, n); err != nil {
		t.Fatal(err)
	}
}

// checkLines reads len(want) log lines (or n, unchecked, when want is nil) from c,
// reporting the first that is not the one wanted.
func checkLines(c *client, want []string, timeout time.Duration, n ...int) error {
	count := len(want)
	if want == nil {
		count = n[0]
	}
	deadline := time.After(timeout)
	for i := 0; i < count; {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return fmt.Errorf("stream closed after %d lines of %d", i, count)
			}
			if ev.IsComment {
				continue
			}
			if ev.Type != "log" {
				return fmt.Errorf("%s event after %d lines: %s", ev.Type, i, ev.Data)
			}
			// The line is the payload's last field: cheaper than decoding it.
			_, line, _ := strings.Cut(ev.Data, `"line":"`)
			line = strings.TrimSuffix(line, `"}`)
			if want != nil && line != want[i] {
				return fmt.Errorf("line %d is %q, want %q", i, line, want[i])
			}
			i++
		case <-deadline:
			return fmt.Errorf("%d lines of %d within %s", i, count, timeout)
		}
	}
	return nil
}
