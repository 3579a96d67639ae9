package runner

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestListenAddress(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"default", nil, "[::]:8080"},
		{"listen address", map[string]string{"LISTEN_ADDRESS": "127.0.0.1:9000", "PORT": "1"}, "127.0.0.1:9000"},
		{"legacy address", map[string]string{"ADDRESS": "127.0.0.1:9001", "PORT": "1"}, "127.0.0.1:9001"},
		{"legacy port", map[string]string{"PORT": "9002"}, "[::]:9002"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ListenAddress(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Fatalf("%q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	file := "# comment\nDWP_A=from-file\n\nDWP_B = spaced \nDWP_C=keep=equals\n"
	if err := os.WriteFile(filepath.Join(dir, "cfg"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Config(dir, []string{"DWP_A=from-env", "OTHER=1", "=ignored"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"DWP_A": "from-env", "DWP_B": "spaced", "DWP_C": "keep=equals", "OTHER": "1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}

	if got, err := Config(t.TempDir(), []string{"X=1"}); err != nil || got["X"] != "1" {
		t.Fatalf("without a cfg file: %v %v", got, err)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "cfg"), []byte("no equals sign\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Config(bad, nil); err == nil {
		t.Fatal("a line without = was accepted")
	}
}

// fn records what the runner does with it.
type fn struct {
	mu       sync.Mutex
	cfg      map[string]string
	ready    bool
	startErr error
	release  chan struct{} // Start blocks until closed
	calls    []string
	stopCtx  bool // Stop's context was live
}

func (f *fn) record(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }

func (f *fn) Handle(w http.ResponseWriter, r *http.Request) {
	f.record("handle")
	_, _ = io.WriteString(w, "handled "+r.URL.Path)
}

func (f *fn) Start(ctx context.Context, cfg map[string]string) error {
	if f.release != nil {
		<-f.release
	}
	f.mu.Lock()
	f.cfg = cfg
	f.mu.Unlock()
	f.record("start")
	return f.startErr
}

func (f *fn) Stop(ctx context.Context) error {
	f.mu.Lock()
	f.stopCtx = ctx.Err() == nil
	f.mu.Unlock()
	f.record("stop")
	return nil
}

func (f *fn) Ready(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready, nil
}

func (f *fn) Alive(context.Context) (bool, error) { return true, nil }

func serve(t *testing.T, f Handler, cfg map[string]string) (base string, cancel context.CancelFunc, done chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- New(f).Serve(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + ln.Addr().String(), cancel, done
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeLifecycle(t *testing.T) {
	f := &fn{release: make(chan struct{})}
	base, cancel, done := serve(t, f, map[string]string{"DWP_X": "1"})

	// Before Start returns: probes and requests are answered, with 503.
	if code, _ := get(t, base+ReadinessPath); code != http.StatusServiceUnavailable {
		t.Fatalf("readiness before start: %d", code)
	}
	if code, body := get(t, base+LivenessPath); code != http.StatusOK || body != "ALIVE" {
		t.Fatalf("liveness: %d %q", code, body)
	}
	if code, _ := get(t, base+"/api"); code != http.StatusServiceUnavailable {
		t.Fatalf("request before start: %d", code)
	}

	close(f.release)
	eventually(t, "started", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.cfg != nil })
	// Started but not Ready: still 503.
	if code, _ := get(t, base+ReadinessPath); code != http.StatusServiceUnavailable {
		t.Fatalf("readiness while not ready: %d", code)
	}
	f.mu.Lock()
	f.ready = true
	f.mu.Unlock()
	if code, body := get(t, base+ReadinessPath); code != http.StatusOK || body != "READY" {
		t.Fatalf("readiness: %d %q", code, body)
	}
	if code, body := get(t, base+"/api/v1/x"); code != http.StatusOK || body != "handled /api/v1/x" {
		t.Fatalf("handle: %d %q", code, body)
	}
	if f.cfg["DWP_X"] != "1" {
		t.Fatalf("cfg %v", f.cfg)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	done <- nil // for the cleanup
	f.mu.Lock()
	defer f.mu.Unlock()
	if last := f.calls[len(f.calls)-1]; last != "stop" {
		t.Fatalf("calls %v: stop is not last", f.calls)
	}
	if !f.stopCtx {
		t.Fatal("Stop got a context that was already done")
	}
}

func TestServeStartError(t *testing.T) {
	f := &fn{startErr: errors.New("no kubeconfig")}
	_, _, done := serve(t, f, nil)
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, f.startErr) {
			t.Fatalf("serve returned %v", err)
		}
		done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("a failed Start did not end Serve")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls[len(f.calls)-1] != "stop" {
		t.Fatalf("calls %v", f.calls)
	}
}

// plain implements only Handle: it is ready as soon as it is served.
type plain struct{}

func (plain) Handle(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

func TestServeHandleOnly(t *testing.T) {
	base, _, _ := serve(t, plain{}, nil)
	eventually(t, "ready", func() bool { code, _ := get(t, base+ReadinessPath); return code == http.StatusOK })
	if code, _ := get(t, base+"/"); code != http.StatusNoContent {
		t.Fatalf("handle: %d", code)
	}
}

func TestServerTimeouts(t *testing.T) {
	s := New(plain{}).Server()
	if s.ReadTimeout != 30*time.Second || s.WriteTimeout != 30*time.Second || s.IdleTimeout != 30*time.Second || s.ReadHeaderTimeout != 2*time.Second {
		t.Fatalf("timeouts %v %v %v %v", s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.ReadHeaderTimeout)
	}
}
