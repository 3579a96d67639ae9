package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// process is one supervised component. It is restarted when it exits by itself, and
// killed with the launcher (Pdeathsig), so no component outlives a crashed launcher.
type process struct {
	name string
	bin  string
	args []string
	env  []string
	log  string // file that receives stdout and stderr
	// grace is how long a stop waits after SIGTERM before SIGKILL.
	grace time.Duration

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // set while a deliberate stop or restart is in progress
	logger  *slog.Logger
	// delay is the last wait before a restart (0 before any).
	delay time.Duration
}

// Restart delays: a component that had been up a while is started again at once (a
// killed API server must be back within seconds); one that keeps exiting soon after
// it starts waits twice as long each time, up to maxRestartDelay.
const (
	firstRestartDelay = 50 * time.Millisecond
	maxRestartDelay   = 10 * time.Second
	stableAfter       = 30 * time.Second
)

// nextDelay is the wait before restarting a process that ran for uptime.
func (p *process) nextDelay(uptime time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.delay == 0 || uptime >= stableAfter {
		p.delay = firstRestartDelay
	} else {
		p.delay = min(2*p.delay, maxRestartDelay)
	}
	return p.delay
}

func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

func (p *process) startLocked() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	started := time.Now()
	exited := make(chan struct{})
	p.cmd, p.exited, p.stopped = cmd, exited, false
	go func() {
		err := cmd.Wait()
		f.Close()
		close(exited)
		p.mu.Lock()
		again := !p.stopped && p.cmd == cmd
		p.mu.Unlock()
		if again {
			delay := p.nextDelay(time.Since(started))
			p.logger.Warn("component exited; restarting", "component", p.name, "err", err, "log", p.log, "after", delay)
			time.Sleep(delay)
			p.mu.Lock()
			if !p.stopped && p.cmd == cmd {
				if err := p.startLocked(); err != nil {
					p.logger.Error("restart failed", "component", p.name, "err", err)
				}
			}
			p.mu.Unlock()
		}
	}()
	return nil
}

// stop sends SIGTERM and waits up to the process's grace period, then SIGKILL.
func (p *process) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.stopped = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(p.grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

func (p *process) restart() error {
	p.stop()
	return p.start()
}

func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func newProcess(logger *slog.Logger, logDir, binDir, name string, args []string, env ...string) *process {
	return &process{
		name:   name,
		bin:    filepath.Join(binDir, name),
		args:   args,
		env:    env,
		log:    filepath.Join(logDir, name+".log"),
		grace:  10 * time.Second,
		logger: logger,
	}
}

// waitFor polls check until it returns nil or ctx ends, returning check's last error.
func waitFor(ctx context.Context, every time.Duration, check func(context.Context) error) error {
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(every):
		}
	}
}
