package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary is also the children: with helperEnv set it plays one of these.
const helperEnv = "SUPERVISOR_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

// helper is a child process: "serve" runs until SIGINT and then appends its name to
// $STOP_LOG; "stubborn" ignores SIGINT; "crash" exits 3 at once.
func helper(mode string) int {
	switch mode {
	case "crash":
		return 3
	case "stubborn":
		signal.Ignore(syscall.SIGINT)
		markReady()
		time.Sleep(time.Hour)
		return 0
	case "serve":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT)
		markReady()
		<-sig
		f, err := os.OpenFile(os.Getenv("STOP_LOG"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return 1
		}
		fmt.Fprintln(f, os.Getenv("NAME"))
		f.Close()
		return 0
	}
	return 2
}

// markReady says the helper's signal handling is in place: a file named by its pid.
func markReady() {
	_ = os.WriteFile(filepath.Join(os.Getenv("READY_DIR"), strconv.Itoa(os.Getpid())), nil, 0o644)
}

// waitReady waits until the child's current process has marked itself ready.
func waitReady(t *testing.T, c *Child) int {
	t.Helper()
	var pid int
	waitFor(t, 10*time.Second, c.Name()+" ready", func() bool {
		pid = c.Pid()
		_, err := os.Stat(filepath.Join(envValue(c.spec.Env, "READY_DIR"), strconv.Itoa(pid)))
		return pid != 0 && err == nil
	})
	return pid
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// syncBuffer is the console the supervisor writes to, read by the test meanwhile.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func helperSpec(t *testing.T, name, mode, stopLog string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{
		Name: name,
		Path: exe,
		Env:  []string{helperEnv + "=" + mode, "NAME=" + name, "STOP_LOG=" + stopLog, "READY_DIR=" + t.TempDir()},
		Log:  filepath.Join(t.TempDir(), name+".log"),
	}
}

// alive reports whether pid is a running process (not a zombie: every child here is
// waited for by the supervisor, so a dead one is gone).
func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestBackoffNext(t *testing.T) {
	b := Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second, ResetAfter: 30 * time.Second}
	for _, tc := range []struct {
		name         string
		prev, uptime time.Duration
		want         time.Duration
	}{
		{"first exit", 0, time.Second, 500 * time.Millisecond},
		{"second quick exit doubles", 500 * time.Millisecond, time.Second, time.Second},
		{"keeps doubling", 4 * time.Second, 0, 8 * time.Second},
		{"capped", 8 * time.Second, 0, 10 * time.Second},
		{"stays capped", 10 * time.Second, 0, 10 * time.Second},
		{"reset after a long run", 10 * time.Second, 30 * time.Second, 500 * time.Millisecond},
		{"not reset just before", 10 * time.Second, 29 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.next(tc.prev, tc.uptime); got != tc.want {
				t.Errorf("next(%s, %s) = %s, want %s", tc.prev, tc.uptime, got, tc.want)
			}
		})
	}
}

// A SIGKILLed child is reported and back within 5 s, its siblings untouched; Stop then
// ends every child, newest first.
func TestKilledChildIsRestartedAndStopEndsAll(t *testing.T) {
	stopLog := filepath.Join(t.TempDir(), "stopped")
	out := &syncBuffer{}
	s := New(out, DefaultBackoff, 5*time.Second)
	names := []string{"plane", "function", "watcher", "router"}
	children := map[string]*Child{}
	for _, name := range names {
		c, err := s.Start(helperSpec(t, name, "serve", stopLog))
		if err != nil {
			t.Fatal(err)
		}
		children[name] = c
	}
	for _, name := range names {
		t.Run("kill -9 "+name, func(t *testing.T) {
			c := children[name]
			old := c.Pid()
			others := map[string]int{}
			for _, n := range names {
				if n != name {
					others[n] = children[n].Pid()
				}
			}
			if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			took := waitFor(t, 5*time.Second, name+" back", func() bool {
				pid := c.Pid()
				return pid != 0 && pid != old && alive(pid)
			})
			t.Logf("%s back %s after SIGKILL", name, took.Round(time.Millisecond))
			want := name + " exited (signal: killed); restarting in 500ms"
			if !strings.Contains(out.String(), want) {
				t.Errorf("console %q lacks %q", out.String(), want)
			}
			for n, pid := range others {
				if children[n].Pid() != pid {
					t.Errorf("%s was restarted too (pid %d → %d)", n, pid, children[n].Pid())
				}
			}
		})
	}
	pids := map[string]int{}
	for _, name := range names {
		pids[name] = waitReady(t, children[name])
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still runs after Stop", name, pid)
		}
	}
	b, err := os.ReadFile(stopLog)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(string(b)), []string{"router", "watcher", "function", "plane"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("stopped in order %v, want %v", got, want)
	}
	if _, err := s.Start(helperSpec(t, "late", "serve", stopLog)); !errors.Is(err, errStopped) {
		t.Errorf("Start after Stop: %v, want refused", err)
	}
}

// A child that keeps crashing is retried with growing delays up to the cap.
func TestCrashingChildBacksOff(t *testing.T) {
	out := &syncBuffer{}
	b := Backoff{Initial: 20 * time.Millisecond, Max: 80 * time.Millisecond, ResetAfter: time.Minute}
	s := New(out, b, time.Second)
	if _, err := s.Start(helperSpec(t, "crasher", "crash", "")); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`crasher exited \(exit status 3\); restarting in (\S+)`)
	waitFor(t, 5*time.Second, "five restarts", func() bool {
		return len(re.FindAllString(out.String(), -1)) >= 5
	})
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var delays []string
	for _, m := range re.FindAllStringSubmatch(out.String(), 5) {
		delays = append(delays, m[1])
	}
	if got, want := strings.Join(delays, " "), "20ms 40ms 80ms 80ms 80ms"; got != want {
		t.Errorf("delays %s, want %s", got, want)
	}
}

func TestStopKillsChildThatIgnoresSIGINT(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     string
		grace    time.Duration
		wantKill bool
	}{
		{"exits on SIGINT", "serve", 5 * time.Second, false},
		{"ignores SIGINT", "stubborn", 300 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(&syncBuffer{}, DefaultBackoff, tc.grace)
			c, err := s.Start(helperSpec(t, "child", tc.mode, filepath.Join(t.TempDir(), "stopped")))
			if err != nil {
				t.Fatal(err)
			}
			pid := waitReady(t, c)
			start := time.Now()
			err = s.Stop(context.Background())
			took := time.Since(start)
			if (err != nil) != tc.wantKill {
				t.Errorf("Stop: %v, want killed %v", err, tc.wantKill)
			}
			if tc.wantKill && took < tc.grace {
				t.Errorf("killed after %s, before the grace", took)
			}
			if alive(pid) {
				t.Errorf("pid %d still runs", pid)
			}
		})
	}
}
