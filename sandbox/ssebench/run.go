package ssebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// bench is one run: the plane, the worker pool and the report being filled.
type bench struct {
	cfg     Config
	cl      *Cluster
	pool    *Pool
	log     *slog.Logger
	tmp     string
	report  *Report
	started time.Time
}

// Run runs the configured scenarios and writes the report. workerArgs are the arguments
// that make the executable exe a worker (RunWorker on its stdin and stdout).
func Run(ctx context.Context, cfg Config, exe string, workerArgs []string, stdout io.Writer, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := RaiseFileLimit(); err != nil {
		return err
	}
	if err := ensureRouter(ctx, cfg.RouterBin, log); err != nil {
		return err
	}
	cl, err := ConnectCluster(cfg.ClusterDir)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "dwp-ssebench-")
	if err != nil {
		return fmt.Errorf("temporary folder: %w", err)
	}
	failed := false
	defer func() {
		if failed {
			log.Warn("router logs kept", "dir", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := cl.Setup(ctx); err != nil {
		return fmt.Errorf("set up the plane: %w", err)
	}
	defer func() {
		// The run's context may be over: the clean-up has its own.
		tctx, tcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer tcancel()
		cl.Teardown(tctx)
	}()
	pool := NewPool(ctx, exe, workerArgs, cfg.PerWorker, 2, log)
	defer pool.Shutdown()

	b := &bench{cfg: cfg, cl: cl, pool: pool, log: log, tmp: tmp, started: time.Now(),
		report: &Report{Started: time.Now(), Host: newHost(cfg.RouterBin), Config: cfg}}
	scenarios := map[string]func(context.Context) (*Table, error){
		"scale": b.scale, "naive": b.naive, "slow": b.slow, "reconnect": b.reconnect,
		"users": b.users, "catchup": b.catchup, "multi": b.multi,
	}
	var skipped *Table
	for _, id := range AllScenarios {
		if !cfg.Has(id) {
			continue
		}
		if time.Since(b.started) > cfg.Budget {
			if skipped == nil {
				skipped = &Table{ID: "skipped", Title: "Skipped", Columns: []string{"scenario", "why"}}
			}
			skipped.AddRow(id, fmt.Sprintf("the run's budget of %s was spent", cfg.Budget))
			continue
		}
		log.Info("scenario", "id", id)
		start := time.Now()
		t, err := scenarios[id](ctx)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return err
		}
		if t == nil {
			t = &Table{ID: id, Title: id, Columns: []string{"result"}}
		}
		if err != nil {
			failed = true
			log.Error("scenario failed", "id", id, "err", err)
			t.Note("FAILED: %v", err)
		}
		t.Note("scenario took %s", time.Since(start).Round(time.Second))
		b.report.Tables = append(b.report.Tables, t)
		// Save as we go, so that an interrupted run leaves what it measured.
		b.report.Duration = time.Since(b.started)
		if err := b.report.Write(cfg.OutDir, io.Discard); err != nil {
			return err
		}
	}
	if skipped != nil {
		b.report.Tables = append(b.report.Tables, skipped)
	}
	b.report.Duration = time.Since(b.started)
	return b.report.Write(cfg.OutDir, stdout)
}

// ensureRouter builds the router into bin/ when the default binary is missing (as after
// a fresh clone: `make bench` does not build).
func ensureRouter(ctx context.Context, bin string, log *slog.Logger) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	} else if bin != Default().RouterBin {
		return fmt.Errorf("router binary: %w", err)
	}
	log.Info("building the router", "into", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Dir(bin)+"/", "./sse-router")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build the router: %w", err)
	}
	return nil
}

// startRouter runs a fresh router process with the bench's settings.
func (b *bench) startRouter(ctx context.Context, env ...string) (*Router, error) {
	r, err := NewRouter(b.cfg.RouterBin, b.cl.Info.Kubeconfig, b.tmp, b.cfg.RSSCap, env, b.log)
	if err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// routerGroup is a group of streams to a router with the viewer's token.
func (b *bench) routerGroup(name string, r *Router, path string, n int) GroupSpec {
	return GroupSpec{
		Name: name, Target: Target{Addr: r.Addr(), Path: path, Tokens: []string{b.cl.Token}},
		Count: n, OpenTimeout: b.cfg.OpenTimeout, Concurrency: 256,
	}
}

// waitReceived polls the groups until together they have want first deliveries, or
// timeout passes; it returns the merged stats per group.
func (b *bench) waitReceived(ctx context.Context, groups []string, want int64, timeout time.Duration) ([]GroupStats, error) {
	deadline := time.Now().Add(timeout)
	for {
		all := make([]GroupStats, len(groups))
		var got int64
		for i, g := range groups {
			st, err := b.pool.Stats(ctx, g, 0, 0)
			if err != nil {
				return nil, err
			}
			all[i] = st
			got += st.Received
		}
		if got >= want || time.Now().After(deadline) {
			return all, nil
		}
		sleep(ctx, 200*time.Millisecond)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// latency emits events at one per interval and returns each group's delivery latencies.
// Streams that are not open (failed) are not expected to deliver.
func (b *bench) latency(ctx context.Context, src Source, groups []string, opened int, events int, interval time.Duration) ([]GroupStats, error) {
	from := src.Next()
	for _, g := range groups {
		if err := b.pool.Measure(ctx, g, from, 0); err != nil {
			return nil, err
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range events {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-tick.C:
			}
		}
		if _, _, err := src.Emit(ctx, 1); err != nil {
			return nil, err
		}
	}
	return b.waitReceived(ctx, groups, int64(events)*int64(opened), 10*time.Second)
}

// burstCPU emits events at once and returns the router CPU time spent per delivery
// until every open stream had all of them.
func (b *bench) burstCPU(ctx context.Context, r *Router, src Source, group string, opened int, events int) (time.Duration, int64, error) {
	from := src.Next()
	if err := b.pool.Measure(ctx, group, from, 0); err != nil {
		return 0, 0, err
	}
	u0, err := r.Usage()
	if err != nil {
		return 0, 0, err
	}
	if _, _, err := src.Emit(ctx, events); err != nil {
		return 0, 0, err
	}
	want := int64(events) * int64(opened)
	st, err := b.waitReceived(ctx, []string{group}, want, 60*time.Second)
	if err != nil {
		return 0, 0, err
	}
	u1, err := r.Usage()
	if err != nil {
		return 0, 0, err
	}
	got := st[0].Received
	if got == 0 {
		return 0, 0, nil
	}
	return (u1.CPU - u0.CPU) / time.Duration(got), got, nil
}

func sumLatency(st []GroupStats) (Hist, int64) {
	var h Hist
	var n int64
	for _, s := range st {
		h.Merge(s.Latency)
		n += s.Received
	}
	return h, n
}
