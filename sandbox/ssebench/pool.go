package ssebench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
)

// Pool is the driver's side of the worker processes: it spreads each group of streams
// over them (each below its open-files limit) and sums what they measure.
type Pool struct {
	ctx       context.Context
	exe       string
	args      []string
	perWorker int
	spread    int
	log       *slog.Logger

	mu        sync.Mutex
	workers   []*workerProc
	parts     map[string][]part
	nextFirst int
}

type part struct {
	w     *workerProc
	count int
}

type workerProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	mu   sync.Mutex // one request at a time
	load int        // streams held, guarded by Pool.mu
}

// NewPool makes a pool whose workers run exe with args (the worker entry point); they
// are killed when ctx ends. perWorker bounds the streams of one worker; spread is the
// least number of workers a group is split over, so that parsing uses every core.
func NewPool(ctx context.Context, exe string, args []string, perWorker, spread int, log *slog.Logger) *Pool {
	return &Pool{ctx: ctx, exe: exe, args: args, perWorker: perWorker, spread: max(spread, 1), log: log, parts: map[string][]part{}}
}

func (p *Pool) spawn() (*workerProc, error) {
	cmd := exec.CommandContext(p.ctx, p.exe, p.args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("worker stdin: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	w := &workerProc{cmd: cmd, in: in, out: sc}
	p.workers = append(p.workers, w)
	return w, nil
}

func (w *workerProc) call(req Request) (Reply, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return Reply{}, fmt.Errorf("encode request: %w", err)
	}
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return Reply{}, fmt.Errorf("worker %d: send %s: %w", w.cmd.Process.Pid, req.Op, err)
	}
	if !w.out.Scan() {
		return Reply{}, fmt.Errorf("worker %d: no reply to %s: %w", w.cmd.Process.Pid, req.Op, errOr(w.out.Err(), io.ErrUnexpectedEOF))
	}
	var rep Reply
	if err := json.Unmarshal(w.out.Bytes(), &rep); err != nil {
		return Reply{}, fmt.Errorf("worker reply: %w", err)
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("worker %d: %s: %s", w.cmd.Process.Pid, req.Op, rep.Err)
	}
	return rep, nil
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// place splits count streams over the least loaded workers, starting new ones as needed.
func (p *Pool) place(name string, count int) ([]part, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.parts[name]; dup {
		return nil, 0, fmt.Errorf("group %q is open already", name)
	}
	k := max((count+p.perWorker-1)/p.perWorker, min(p.spread, count))
	share := (count + k - 1) / k
	slices.SortFunc(p.workers, func(a, b *workerProc) int { return a.load - b.load })
	var parts []part
	left := count
	for i := 0; left > 0; i++ {
		var w *workerProc
		if i < len(p.workers) && p.workers[i].load+share <= p.perWorker {
			w = p.workers[i]
		} else {
			var err error
			if w, err = p.spawn(); err != nil {
				return nil, 0, err
			}
		}
		n := min(share, left)
		w.load += n
		left -= n
		parts = append(parts, part{w: w, count: n})
	}
	p.parts[name] = parts
	first := p.nextFirst
	p.nextFirst += count
	return parts, first, nil
}

// Open opens a group of streams spread over the workers and waits until every stream
// has opened or failed once.
func (p *Pool) Open(ctx context.Context, spec GroupSpec) (GroupStats, error) {
	parts, first, err := p.place(spec.Name, spec.Count)
	if err != nil {
		return GroupStats{}, err
	}
	reqs := make([]Request, len(parts))
	offset := 0
	for i, pt := range parts {
		s := spec
		s.Count, s.First = pt.count, first+offset
		offset += pt.count
		reqs[i] = Request{Op: "open", Open: &s}
	}
	return callAll(ctx, parts, reqs)
}

// each sends req for group to every worker holding part of it and merges the stats.
func (p *Pool) each(ctx context.Context, group string, req Request) (GroupStats, error) {
	p.mu.Lock()
	parts := p.parts[group]
	p.mu.Unlock()
	if parts == nil {
		return GroupStats{}, fmt.Errorf("no group %q", group)
	}
	req.Group = group
	reqs := make([]Request, len(parts))
	for i := range reqs {
		reqs[i] = req
	}
	return callAll(ctx, parts, reqs)
}

// callAll sends reqs[i] to parts[i]'s worker, all at once, and merges the answers. The
// workers die with the pool's context, which ends any call ctx would have to abandon.
func callAll(ctx context.Context, parts []part, reqs []Request) (GroupStats, error) {
	if err := ctx.Err(); err != nil {
		return GroupStats{}, err
	}
	results := make([]GroupStats, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, pt := range parts {
		wg.Go(func() {
			rep, err := pt.w.call(reqs[i])
			if rep.Stats != nil {
				results[i] = *rep.Stats
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return mergeStats(results), errors.Join(errs...)
}

// Measure starts counting deliveries of sequence numbers ≥ from afresh, and notes when
// each stream first sees doneSeq (0: not at all).
func (p *Pool) Measure(ctx context.Context, group string, from, doneSeq int64) error {
	_, err := p.each(ctx, group, Request{Op: "measure", MeasureFrom: from, DoneSeq: doneSeq})
	return err
}

// Stats sums the group's statistics; with expectTo ≥ expectFrom > 0 it counts lines lost
// and repeated among those sequence numbers (the group must track them).
func (p *Pool) Stats(ctx context.Context, group string, expectFrom, expectTo int64) (GroupStats, error) {
	return p.each(ctx, group, Request{Op: "stats", ExpectFrom: expectFrom, ExpectTo: expectTo})
}

// Close closes the group's streams.
func (p *Pool) Close(ctx context.Context, group string) error {
	_, err := p.each(ctx, group, Request{Op: "close"})
	p.mu.Lock()
	for _, pt := range p.parts[group] {
		pt.w.load -= pt.count
	}
	delete(p.parts, group)
	p.mu.Unlock()
	return err
}

// Shutdown ends every worker: closing stdin makes a worker close its streams and exit.
func (p *Pool) Shutdown() {
	p.mu.Lock()
	ws := p.workers
	p.workers = nil
	p.mu.Unlock()
	for _, w := range ws {
		_ = w.in.Close()
		if err := w.cmd.Wait(); err != nil && p.ctx.Err() == nil {
			p.log.Warn("worker ended badly", "pid", w.cmd.Process.Pid, "err", err)
		}
	}
}

func mergeStats(all []GroupStats) GroupStats {
	var m GroupStats
	m.Status = map[int]int{}
	for _, s := range all {
		m.Opened += s.Opened
		m.Failed += s.Failed
		for k, v := range s.Status {
			m.Status[k] += v
		}
		if m.FirstError == "" {
			m.FirstError = s.FirstError
		}
		m.OpenTook = max(m.OpenTook, s.OpenTook)
		m.Received += s.Received
		m.Latency.Merge(s.Latency)
		m.ErrorEvents += s.ErrorEvents
		m.Done += s.Done
		m.LastDone = max(m.LastDone, s.LastDone)
		m.Closed += s.Closed
		m.CloseAfter = append(m.CloseAfter, s.CloseAfter...)
		m.Reconnects += s.Reconnects
		m.LastReopen = max(m.LastReopen, s.LastReopen)
		m.Lost += s.Lost
		m.Repeated += s.Repeated
	}
	return m
}
