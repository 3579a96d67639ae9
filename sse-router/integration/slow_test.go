package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// stalledStream opens a stream on a connection with a tiny receive buffer and never
// reads it after the headers: a browser tab that froze.
func stalledStream(t *testing.T, r *router, path, token string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET /api/v1/stream/" + path + " HTTP/1.1\r\nHost: router\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 16), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stalled stream: %v %v", resp, err)
	}
	return conn
}

// Must show: a client that stops reading is dropped while the others' delivery is
// unaffected.
func TestStoppedReaderIsDropped(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, func(c *server.Config) { c.QueueSize, c.WriteTimeout = 16, time.Second })
	tok := env.Tokens["admin"]
	pl := env.PodLog(t, ns, "web-1", "main")
	runningPod(t, env, ns, "web-1", "web")
	path := "namespaces/" + ns + "/pods/web-1/log?container=main"

	good := make([]*client, 3)
	for i := range good {
		good[i] = r.open(t, path, tok, "")
	}
	stalled := stalledStream(t, r, path, tok)

	// About 8 MB of log: more than the stalled connection's socket buffers hold.
	const batches, perBatch = 40, 100
	pad := strings.Repeat("x", 2000)
	start := time.Now()
	for b := range batches {
		lines := make([]string, perBatch)
		for i := range lines {
			lines[i] = pad
		}
		lines[perBatch-1] = "end of batch " + string(rune('A'+b%26)) + pad[:10]
		if _, err := pl.Append(lines...); err != nil {
			t.Fatal(err)
		}
	}
	lastLine := "end of batch " + string(rune('A'+(batches-1)%26)) + pad[:10]
	for i, c := range good {
		n := 0
		var last string
		c.until(t, 60*time.Second, "every line", func(ev sse.Event) bool {
			if ev.Type != "log" {
				t.Fatalf("client %d got %s: %s", i, ev.Type, ev.Data)
			}
			n++
			last = decodeLog(t, ev).Line
			return n == batches*perBatch
		})
		if last != lastLine {
			t.Fatalf("client %d: last line %q, want %q", i, last, lastLine)
		}
	}
	took := time.Since(start)
	t.Logf("3 readers got %d lines (%d MB each) in %s beside a stalled one", batches*perBatch, batches*perBatch*2000>>20, took.Round(time.Millisecond))

	deadline := time.Now().Add(30 * time.Second)
	for r.metric(t, "dwp_sse_slow_clients_dropped_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled client was not dropped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := r.metric(t, "dwp_sse_slow_clients_dropped_total"); got != 1 {
		t.Fatalf("slow clients dropped = %v, want 1 (only the stalled one)", got)
	}
	if got := r.metric(t, `dwp_sse_clients{kind="pod_log"}`); got != 3 {
		t.Fatalf("open clients = %v, want the 3 readers", got)
	}
	// The router closed the stalled connection: reading it now ends.
	_ = stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, stalled); err != nil {
		t.Fatalf("stalled connection not closed by the router: %v", err)
	}
	// And the readers still get new lines at once.
	appendLines(t, pl, "after", 0, 1)
	for _, c := range good {
		c.until(t, 10*time.Second, "a new line", func(ev sse.Event) bool { return decodeLog(t, ev).Line == "after 0000" })
	}
}

// Must show: a reader that stops reading is dropped within 10 s even when its stream is
// quiet (one line a second), by what it leaves unacknowledged rather than by how much
// is queued for it. It stops with its receive window full, as a frozen tab does once it
// has been sent more than its socket buffer holds.
func TestStoppedReaderDroppedAtOneEventPerSecond(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, func(c *server.Config) { c.WriteTimeout = 5 * time.Second }) // the default
	tok := env.Tokens["admin"]
	pl := env.PodLog(t, ns, "web-1", "main")
	runningPod(t, env, ns, "web-1", "web")
	// Enough backlog to fill a small receive window: 200 lines of 300 bytes.
	pad := strings.Repeat("y", 300)
	backlog := make([]string, 200)
	for i := range backlog {
		backlog[i] = pad
	}
	if _, err := pl.Append(backlog...); err != nil {
		t.Fatal(err)
	}
	env.WaitPodLogServed(t, ns, "web-1", "main")
	good := r.open(t, "namespaces/"+ns+"/pods/web-1/log?container=main&tailLines=0", tok, "")
	stalled := stalledStream(t, r, "namespaces/"+ns+"/pods/web-1/log?container=main&tailLines=200", tok)
	stoppedAt := time.Now()

	closed := make(chan time.Duration, 1)
	go func() {
		// Nothing is read until the router closes the connection: then the backlog
		// drains and the read ends.
		time.Sleep(12 * time.Second)
		_ = stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.Copy(io.Discard, stalled)
		closed <- 0
	}()
	// One line a second while the stalled one is left alone.
	ticking := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-ticking:
				return
			case <-time.After(time.Second):
			}
			if _, err := pl.Append(fmt.Sprintf("tick %04d", i)); err != nil {
				t.Logf("append: %v", err)
			}
		}
	}()
	var dropped time.Duration
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r.metric(t, "dwp_sse_slow_clients_dropped_total") >= 1 {
			dropped = time.Since(stoppedAt)
			break
		}
	}
	close(ticking)
	if dropped == 0 {
		t.Fatal("the stopped reader was not dropped within 30 s")
	}
	t.Logf("stopped reader dropped %s after it stopped reading, at 1 line/s", dropped.Round(100*time.Millisecond))
	if dropped > 10*time.Second {
		t.Fatalf("dropped after %s, want ≤ 10 s", dropped)
	}
	// The reader kept getting the lines meanwhile.
	good.until(t, 30*time.Second, "a tick", func(ev sse.Event) bool {
		return ev.Type == "log" && strings.HasPrefix(decodeLog(t, ev).Line, "tick ")
	})
	select {
	case <-closed:
	case <-time.After(60 * time.Second):
		t.Fatal("the stalled connection was not closed")
	}
	if got := r.metric(t, `dwp_sse_clients{kind="pod_log"}`); got != 1 {
		t.Fatalf("open clients = %v, want the reader only", got)
	}
}
