package ssebench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestWorkerAgainstSSEServer runs a worker on pipes against a local SSE server (chunked,
// as Go's HTTP/1.1 server streams), the way the driver does across processes.
func TestWorkerAgainstSSEServer(t *testing.T) {
	var mu sync.Mutex
	var subs []chan string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		// Subscribed before the headers go out: a stream the worker counts as open must
		// receive what the test sends next.
		ch := make(chan string, 16)
		mu.Lock()
		subs = append(subs, ch)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case ev := <-ch:
				_, _ = io.WriteString(w, ev)
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer srv.Close()

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunWorker(ctx, inR, outW, slog.New(slog.DiscardHandler)) }()
	replies := bufio.NewScanner(outR)
	call := func(req Request) Reply {
		t.Helper()
		b, _ := json.Marshal(req)
		if _, err := inW.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		if !replies.Scan() {
			t.Fatalf("no reply: %v", replies.Err())
		}
		var rep Reply
		if err := json.Unmarshal(replies.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	addr := srv.Listener.Addr().String()
	const n = 20
	rep := call(Request{Op: "open", Open: &GroupSpec{Name: "g", Target: Target{Addr: addr, Path: "/s", Tokens: []string{"tok"}},
		Count: n, OpenTimeout: 5 * time.Second, Concurrency: 4, TrackSeqs: true}})
	if rep.Err != "" || rep.Stats.Opened != n {
		t.Fatalf("open: %+v", rep)
	}
	rep = call(Request{Op: "open", Open: &GroupSpec{Name: "bad", Target: Target{Addr: addr, Path: "/s", Tokens: []string{"wrong"}},
		Count: 2, OpenTimeout: 5 * time.Second, Concurrency: 2}})
	if rep.Stats.Failed != 2 || rep.Stats.Status[401] != 2 {
		t.Fatalf("open with a bad token: %+v", rep.Stats)
	}
	if rep := call(Request{Op: "measure", Group: "g", MeasureFrom: 1}); rep.Err != "" {
		t.Fatal(rep.Err)
	}
	mu.Lock()
	if len(subs) != n {
		t.Fatalf("%d streams subscribed, want %d", len(subs), n)
	}
	for _, ch := range subs {
		for seq := range int64(4) {
			ch <- fmt.Sprintf("event: log\nid: %d\ndata: {\"line\":%q}\n\n", seq, Marker(seq, time.Now().UnixNano()))
		}
		ch <- fmt.Sprintf("data: %s\n\n", Marker(2, time.Now().UnixNano())) // a repeat
	}
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := call(Request{Op: "stats", Group: "g", ExpectFrom: 0, ExpectTo: 4}).Stats
		if st.Received == 3*n {
			if st.Latency.N != 3*n || st.Lost != n || st.Repeated != n {
				t.Errorf("stats %+v: want %d latencies, %d lost (seq 4), %d repeated", st, 3*n, n, n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d", st.Received, 3*n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rep := call(Request{Op: "close", Group: "g"}); rep.Err != "" {
		t.Fatal(rep.Err)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
