// Package supervisor keeps `make run`'s processes up: the local control plane and the
// services on it. A child that exits by itself is restarted with exponential backoff and
// the restart is said on the console; the whole set stops only when asked, newest first.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Backoff is how long to wait before restarting a child that exited by itself: Initial
// after the first exit, doubled after each further one up to Max, and back to Initial
// once the child has stayed up for ResetAfter.
type Backoff struct {
	Initial, Max, ResetAfter time.Duration
}

// DefaultBackoff brings a killed child back within a second, and does not hammer a child
// that cannot start (a taken port, a broken build) more than every ten seconds.
var DefaultBackoff = Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second, ResetAfter: 30 * time.Second}

// next is the delay after an exit, given the previous delay (0 before any) and how long
// the child ran.
func (b Backoff) next(prev, uptime time.Duration) time.Duration {
	if prev == 0 || uptime >= b.ResetAfter {
		return b.Initial
	}
	return min(2*prev, b.Max)
}

var errStopped = errors.New("stopped")

// Spec describes one child process.
type Spec struct {
	// Name is how the console and the logs call it.
	Name string
	Path string
	Args []string
	// Env is added to the supervisor's own environment.
	Env []string
	// Log receives the child's stdout and stderr (appended; created when missing).
	Log string
}

// Supervisor owns a set of children.
type Supervisor struct {
	out     io.Writer
	backoff Backoff
	grace   time.Duration

	mu       sync.Mutex
	children []*Child
	stopping bool
	wg       sync.WaitGroup
}

// New returns a supervisor that reports restarts to out and gives each child grace after
// SIGINT before SIGKILL when stopping.
func New(out io.Writer, backoff Backoff, grace time.Duration) *Supervisor {
	return &Supervisor{out: out, backoff: backoff, grace: grace}
}

// Child is one supervised process.
type Child struct {
	spec Spec
	s    *Supervisor

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	stopped bool
	wake    chan struct{} // cuts a backoff wait short (Stop)
}

// Start starts a child and keeps it running until Stop. The first start's error is
// returned; later failed starts are reported and retried with backoff.
func (s *Supervisor) Start(spec Spec) (*Child, error) {
	// Held throughout, so that a Stop meanwhile either sees this child or refuses it.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, errStopped
	}
	c := &Child{spec: spec, s: s, wake: make(chan struct{}, 1)}
	if err := c.start(); err != nil {
		return nil, err
	}
	s.children = append(s.children, c)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.keep()
	}()
	return c, nil
}

// start starts the process; the caller must not hold c.mu.
func (c *Child) start() error {
	var out io.Writer = io.Discard
	var logFile *os.File
	if c.spec.Log != "" {
		f, err := os.OpenFile(c.spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("log of %s: %w", c.spec.Name, err)
		}
		out, logFile = f, f
	}
	cmd := exec.Command(c.spec.Path, c.spec.Args...)
	cmd.Env = append(os.Environ(), c.spec.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a Ctrl-C at the terminal reaches the supervisor alone, which
	// then stops the children in order. Pdeathsig: no child outlives a killed supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Started under the lock: a stop either sees this process or prevents it.
	c.mu.Lock()
	err := errStopped
	if !c.stopped {
		err = cmd.Start()
	}
	if err != nil {
		c.mu.Unlock()
		if logFile != nil {
			logFile.Close()
		}
		return fmt.Errorf("start %s: %w", c.spec.Name, err)
	}
	exited := make(chan struct{})
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	go func() {
		// Waiting here, not in keep, so that Stop can wait for the exit too.
		_ = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(exited)
	}()
	return nil
}

// keep waits for the child to exit and starts it again, until Stop.
func (c *Child) keep() {
	var delay time.Duration
	for {
		c.mu.Lock()
		cmd, exited := c.cmd, c.exited
		c.mu.Unlock()
		began := time.Now()
		<-exited
		c.mu.Lock()
		stopped := c.stopped
		c.mu.Unlock()
		if stopped {
			return
		}
		delay = c.s.backoff.next(delay, time.Since(began))
		fmt.Fprintf(c.s.out, "%s exited (%s); restarting in %s\n", c.spec.Name, exitReason(cmd), delay)
		if !c.sleep(delay) {
			return
		}
		for {
			err := c.start()
			if err == nil {
				break
			}
			if errors.Is(err, errStopped) {
				return
			}
			delay = c.s.backoff.next(delay, 0)
			fmt.Fprintf(c.s.out, "%s: %v; retrying in %s\n", c.spec.Name, err, delay)
			if !c.sleep(delay) {
				return
			}
		}
	}
}

// sleep waits d, or less when woken; it reports false once the child is stopped.
func (c *Child) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.wake:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.stopped
}

func exitReason(cmd *exec.Cmd) string {
	if cmd == nil || cmd.ProcessState == nil {
		return "not started"
	}
	return cmd.ProcessState.String()
}

// Name is the child's name.
func (c *Child) Name() string { return c.spec.Name }

// Pid is the running process's id, or 0 when none is running.
func (c *Child) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	select {
	case <-c.exited:
		return 0
	default:
		return c.cmd.Process.Pid
	}
}

// stop ends the process for good.
func (c *Child) stop(ctx context.Context) error {
	c.mu.Lock()
	c.stopped = true
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return terminate(ctx, cmd, exited, c.s.grace)
}

// terminate sends SIGINT to the process, and SIGKILL to its whole group after grace (or
// when ctx ends), and waits for the exit.
func terminate(ctx context.Context, cmd *exec.Cmd, exited chan struct{}, grace time.Duration) error {
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	return fmt.Errorf("%s did not stop within %s: killed", cmd.Path, grace)
}

// Stop stops every child, newest first, each with SIGINT and then SIGKILL after the
// grace, and returns once all have exited. Errors name the children that had to be killed.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	children := s.children
	s.mu.Unlock()
	var errs []error
	for i := len(children) - 1; i >= 0; i-- {
		if err := children[i].stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}
