package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// logServer serves one container's log as the API server does (pods/log with
// timestamps, tailLines, sinceTime and follow), from lines the test appends.
type logServer struct {
	mu    sync.Mutex
	lines []string // "<RFC 3339 timestamp> <text>"
	grew  chan struct{}
	// beforeRead, when set, runs once after a whole-log read has taken its lines and
	// before it answers them: the log grows meanwhile.
	beforeRead func()
}

func newLogServer() *logServer { return &logServer{grew: make(chan struct{})} }

func (l *logServer) append(texts ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, text := range texts {
		ts := time.Unix(1_700_000_000, int64(len(l.lines))*int64(time.Millisecond)).UTC()
		l.lines = append(l.lines, ts.Format(time.RFC3339Nano)+" "+text)
	}
	close(l.grew)
	l.grew = make(chan struct{})
}

func (l *logServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since time.Time
	if s := q.Get("sinceTime"); s != "" {
		since, _ = time.Parse(time.RFC3339, s)
	}
	from := func() int {
		for i, line := range l.lines {
			if ts, err := time.Parse(time.RFC3339Nano, line[:strings.IndexByte(line, ' ')]); err == nil && !ts.Before(since) {
				return i
			}
		}
		return len(l.lines)
	}
	l.mu.Lock()
	start := from()
	if tail := q.Get("tailLines"); tail != "" {
		n, _ := strconv.Atoi(tail)
		start = max(start, len(l.lines)-n)
	}
	lines := append([]string(nil), l.lines[start:]...)
	hook := l.beforeRead
	if q.Get("follow") != "true" && q.Get("tailLines") == "" && q.Get("sinceTime") == "" {
		l.beforeRead = nil
	} else {
		hook = nil
	}
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	w.Header().Set("Content-Type", "text/plain")
	for _, line := range lines {
		fmt.Fprintln(w, line)
	}
	if q.Get("follow") != "true" {
		return
	}
	next := start + len(lines)
	for {
		w.(http.Flusher).Flush()
		l.mu.Lock()
		grew := l.grew
		more := append([]string(nil), l.lines[next:]...)
		l.mu.Unlock()
		for _, line := range more {
			fmt.Fprintln(w, line)
		}
		next += len(more)
		if len(more) > 0 {
			continue
		}
		select {
		case <-grew:
		case <-r.Context().Done():
			return
		}
	}
}

func texts(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %03d", prefix, i)
	}
	return out
}

// A subscriber asking for the whole log, while the followed lines outrun the ring
// during its read of the older ones, still gets every line once, in order.
func TestPodLogCatchUpOutrunByTheFollow(t *testing.T) {
	const ring = 10
	logs := newLogServer()
	logs.append(texts(30, "old")...)
	srv := httptest.NewServer(logs)
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	topic := newPodLogTopic(cs, "ns", "p", "c", ring, hub.NewMetrics(nil), slog.New(slog.DiscardHandler), [2]time.Duration{time.Millisecond, time.Millisecond})
	go topic.Run(t.Context())

	during := texts(25, "during")
	logs.mu.Lock()
	logs.beforeRead = func() {
		// The log grows by more than the ring while the whole log is being read, and
		// the follow publishes it before the read answers.
		logs.append(during...)
		deadline := time.Now().Add(5 * time.Second)
		for {
			topic.mu.Lock()
			caughtUp := topic.newestID() != "" && topic.ring.len() == ring &&
				lineText(t, topic.ring.at(ring-1).ev) == during[len(during)-1]
			topic.mu.Unlock()
			if caughtUp || time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	logs.mu.Unlock()

	c := hub.NewClient(1000, nil)
	if err := topic.Subscribe(t.Context(), c.NewSubscription(""), Join{Spec: api.Spec{Follow: true}}); err != nil {
		t.Fatal(err)
	}
	after := texts(5, "after")
	logs.append(after...)

	want := append(append(texts(30, "old"), during...), after...)
	var got []string
	for len(got) < len(want) {
		d, ok := c.Next(5 * time.Second)
		if !ok {
			t.Fatalf("got %d lines, want %d: %q", len(got), len(want), got)
		}
		for _, ev := range d.Msg.Events {
			if ev.Name != api.EventLog {
				t.Fatalf("%s event: %s", ev.Name, ev.Data)
			}
			got = append(got, lineText(t, ev))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lines\n%q\nwant\n%q", got, want)
	}
}

func lineText(t *testing.T, ev hub.Event) string {
	t.Helper()
	var p logLinePayload
	data := bytes.TrimSuffix(bytes.TrimPrefix(ev.Data, []byte("data: ")), []byte("\n"))
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	return p.Line
}
