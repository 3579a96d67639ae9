package ssebench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Router is one sse-router process under test, configured only through its environment.
type Router struct {
	bin, kubeconfig, addr, logPath string
	debugAddr                      string // Go's profiles
	env                            []string
	rssCap                         int64
	log                            *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopRSS context.CancelFunc
	wg      sync.WaitGroup
	// Killed says why the watchdog killed the router, if it did.
	Killed string
}

// NewRouter describes a router listening on a free loopback port; Start runs it.
func NewRouter(bin, kubeconfig, logDir string, rssCap int64, extraEnv []string, log *slog.Logger) (*Router, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	debugAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return &Router{
		bin: bin, kubeconfig: kubeconfig, addr: addr, debugAddr: debugAddr, rssCap: rssCap, env: extraEnv, log: log,
		logPath: filepath.Join(logDir, "sse-router-"+strings.ReplaceAll(addr, ":", "-")+".log"),
	}, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Addr is host:port of the router.
func (r *Router) Addr() string { return r.addr }

// Start runs the router and waits until it answers /readyz.
func (r *Router) Start(ctx context.Context) error {
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("router log: %w", err)
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := exec.Command(r.bin)
	cmd.Env = append(os.Environ(),
		"DWP_LISTEN_ADDRESS="+r.addr,
		"DWP_KUBECONFIG="+r.kubeconfig,
		"DWP_REDIS_ADDR=",
		"DWP_LOG_LEVEL=warn",
		"DWP_DEBUG_ADDRESS="+r.debugAddr,
	)
	cmd.Env = append(cmd.Env, r.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start router: %w", err)
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	r.wg.Go(func() { _ = cmd.Wait(); close(exited) })
	if err := r.waitReady(ctx, exited); err != nil {
		r.Kill()
		return err
	}
	if r.rssCap > 0 {
		wctx, cancel := context.WithCancel(ctx)
		r.stopRSS = cancel
		r.wg.Go(func() { r.watchRSS(wctx, cmd.Process.Pid, exited) })
	}
	return nil
}

func (r *Router) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("router exited at start; log %s:\n%s", r.logPath, tail(r.logPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("router not ready: %w (log %s)", ctx.Err(), r.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watchRSS kills the router if it grows past the cap: a runaway router would otherwise
// take memory from everything else on the machine.
func (r *Router) watchRSS(ctx context.Context, pid int, exited <-chan struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-exited:
			return
		case <-t.C:
		}
		if rss, err := ProcRSS(pid); err == nil && rss > r.rssCap {
			r.mu.Lock()
			r.Killed = fmt.Sprintf("RSS %d MiB passed the cap of %d MiB", rss>>20, r.rssCap>>20)
			r.mu.Unlock()
			r.log.Warn("router killed", "reason", r.Killed)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
	}
}

// Profile records the router's CPU profile for d into path (Go's pprof format).
func (r *Router) Profile(ctx context.Context, d time.Duration, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.debugAddr, max(1, int(d/time.Second)))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	return f.Close()
}

// KilledReason says why the watchdog killed the router ("" if it did not).
func (r *Router) KilledReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Killed
}

// Pid is the running router's process id.
func (r *Router) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Kill ends the router at once (SIGKILL) and waits for it.
func (r *Router) Kill() {
	r.mu.Lock()
	cmd, exited, stop := r.cmd, r.exited, r.stopRSS
	r.cmd, r.stopRSS = nil, nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
	r.wg.Wait()
}

// Stop ends the router gracefully (SIGTERM), or kills it after a few seconds.
func (r *Router) Stop() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
	}
	r.Kill()
}

// Usage is the process's resident memory and CPU time.
type Usage struct {
	RSS int64
	CPU time.Duration
}

// Usage reads the router's RSS and CPU time from /proc.
func (r *Router) Usage() (Usage, error) {
	pid := r.Pid()
	if pid == 0 {
		return Usage{}, errors.New("router not running")
	}
	rss, err := ProcRSS(pid)
	if err != nil {
		return Usage{}, err
	}
	cpu, err := ProcCPU(pid)
	return Usage{RSS: rss, CPU: cpu}, err
}

// ProcRSS is VmRSS of pid in bytes.
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("process status: %w", err)
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			kb, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS")
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// ProcCPU is utime+stime of pid.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process stat: %w", err)
	}
	// The command name may hold spaces: fields start after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat %q", b)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat times: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// Metrics scrapes the router's /metrics and sums each family over its labels.
func (r *Router) Metrics(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// parseMetrics sums the Prometheus text format's samples by metric name.
func parseMetrics(rd io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		rest := line[len(name):]
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			rest = line[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m[name] += v
	}
	return m, sc.Err()
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
