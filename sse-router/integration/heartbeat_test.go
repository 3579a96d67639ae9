package integration

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
)

// rawStream opens a stream over a bare TCP connection, as `curl -N` does, and returns a
// reader positioned at the body (the headers are checked and skipped).
func rawStream(t *testing.T, r *router, path, token string) (*bufio.Reader, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET /api/v1/stream/" + path + " HTTP/1.1\r\nHost: router\r\nAccept: text/event-stream\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return bufio.NewReader(resp.Body), conn
}

// waitHeartbeat reads the idle stream until a heartbeat comment, returning when it came.
func waitHeartbeat(t *testing.T, body *bufio.Reader, conn net.Conn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(within))
	for {
		line, err := body.ReadString('\n')
		if err != nil {
			t.Fatalf("no heartbeat within %s: %v", within, err)
		}
		if strings.HasPrefix(line, ":") {
			return time.Since(start)
		}
	}
}

// Must show: `curl -N` shows a heartbeat within 15 s on an idle stream.
func TestHeartbeatOnIdleStream(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	tok := env.Tokens["admin"]

	t.Run("configured 1s", func(t *testing.T) {
		r := startRouter(t, env, func(c *server.Config) { c.Heartbeat = time.Second })
		body, conn := rawStream(t, r, "namespaces/"+ns+"/pods", tok)
		for range 3 {
			if d := waitHeartbeat(t, body, conn, 2*time.Second); d > 1500*time.Millisecond {
				t.Fatalf("heartbeat after %s, want about 1s", d)
			}
		}
	})
	t.Run("default 15s", func(t *testing.T) {
		cfg, err := server.LoadConfig(nil, func(string) string { return "" }, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := startRouter(t, env, func(c *server.Config) { c.Heartbeat = cfg.Heartbeat })
		body, conn := rawStream(t, r, "namespaces/"+ns+"/events", tok)
		d := waitHeartbeat(t, body, conn, 15*time.Second+500*time.Millisecond)
		t.Logf("default heartbeat after %s", d.Round(10*time.Millisecond))
	})
}
