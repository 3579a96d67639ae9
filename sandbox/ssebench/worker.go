package ssebench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Request is one command from the driver to a worker (one JSON line on its stdin).
type Request struct {
	Op string `json:"op"` // open, measure, stats, close
	// Open describes the group to open.
	Open *GroupSpec `json:"open,omitempty"`
	// Group names the group of measure, stats and close.
	Group string `json:"group,omitempty"`
	// MeasureFrom: latencies and counts start at this sequence number (measure).
	MeasureFrom int64 `json:"measureFrom,omitempty"`
	// DoneSeq: each stream notes when it first sees a sequence number ≥ DoneSeq (measure).
	DoneSeq int64 `json:"doneSeq,omitempty"`
	// ExpectFrom, ExpectTo: the sequence numbers every stream should have had (stats,
	// with TrackSeqs), for lost and repeated counts.
	ExpectFrom int64 `json:"expectFrom,omitempty"`
	ExpectTo   int64 `json:"expectTo,omitempty"`
}

// Reply is a worker's answer to one Request.
type Reply struct {
	Err   string      `json:"err,omitempty"`
	Stats *GroupStats `json:"stats,omitempty"`
}

// GroupStats is what a worker knows of one group (summed over workers by the driver).
type GroupStats struct {
	Opened     int           `json:"opened"`
	Failed     int           `json:"failed"`
	Status     map[int]int   `json:"status,omitempty"` // first attempt's HTTP status (0: no response)
	FirstError string        `json:"firstError,omitempty"`
	OpenTook   time.Duration `json:"openTook"`
	// Received counts first deliveries of sequence numbers ≥ MeasureFrom.
	Received    int64 `json:"received"`
	Latency     Hist  `json:"latency"`
	ErrorEvents int64 `json:"errorEvents"`
	Done        int   `json:"done"`
	LastDone    int64 `json:"lastDone,omitempty"`
	// Closed streams (ended by the server) and, per stream, how long after opening.
	Closed     int             `json:"closed"`
	CloseAfter []time.Duration `json:"closeAfter,omitempty"`
	Reconnects int64           `json:"reconnects"`
	LastReopen int64           `json:"lastReopen,omitempty"`
	Lost       int64           `json:"lost"`
	Repeated   int64           `json:"repeated"`
}

type histShard struct {
	mu sync.Mutex
	h  Hist
}

type group struct {
	w         *Worker
	spec      GroupSpec
	tlsConfig *tls.Config
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	clients   []*client
	open      GroupStats // outcome of opening

	measureFrom, doneSeq   atomic.Int64
	received, errorEvents  atomic.Int64
	reconnects, lastReopen atomic.Int64
	hist                   [32]histShard
}

// Worker holds the streams of one load process.
type Worker struct {
	log *slog.Logger

	mu      sync.Mutex
	groups  map[string]*group
	stalled []*client
	poke    chan struct{}
}

// RunWorker serves requests from in until it ends or ctx does, answering on out.
func RunWorker(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	if err := RaiseFileLimit(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &Worker{log: log, groups: map[string]*group{}, poke: make(chan struct{}, 1)}
	var pollers sync.WaitGroup
	pollers.Go(func() { w.pollStalled(ctx) })
	defer func() {
		cancel()
		w.closeAll()
		pollers.Wait()
	}()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var req Request
		var rep Reply
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			rep.Err = fmt.Sprintf("bad request: %v", err)
		} else if err := w.handle(ctx, req, &rep); err != nil {
			rep.Err = err.Error()
		}
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("reply: %w", err)
		}
	}
	return sc.Err()
}

func (w *Worker) handle(ctx context.Context, req Request, rep *Reply) error {
	if req.Op == "open" {
		if req.Open == nil {
			return fmt.Errorf("open without a group")
		}
		st, err := w.open(ctx, *req.Open)
		rep.Stats = st
		return err
	}
	w.mu.Lock()
	g := w.groups[req.Group]
	w.mu.Unlock()
	if g == nil {
		return fmt.Errorf("no group %q", req.Group)
	}
	switch req.Op {
	case "measure":
		g.received.Store(0)
		for i := range g.hist {
			g.hist[i].mu.Lock()
			g.hist[i].h = Hist{}
			g.hist[i].mu.Unlock()
		}
		for _, c := range g.clients {
			c.doneAt.Store(0)
		}
		g.measureFrom.Store(req.MeasureFrom)
		g.doneSeq.Store(req.DoneSeq)
	case "stats":
		rep.Stats = g.stats(req)
	case "close":
		w.mu.Lock()
		delete(w.groups, req.Group)
		w.mu.Unlock()
		g.cancel()
		g.wg.Wait()
	default:
		return fmt.Errorf("unknown op %q", req.Op)
	}
	return nil
}

// open starts the group's streams and waits until each has opened or failed once.
func (w *Worker) open(ctx context.Context, spec GroupSpec) (*GroupStats, error) {
	g := &group{w: w, spec: spec}
	if spec.TLS {
		cfg, err := loadTLS(spec.CAFile)
		if err != nil {
			return nil, err
		}
		host, _, err := net.SplitHostPort(spec.Addr)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", spec.Addr, err)
		}
		cfg.ServerName = host
		g.tlsConfig = cfg
	}
	g.measureFrom.Store(1 << 62)
	g.doneSeq.Store(spec.DoneSeq)
	w.mu.Lock()
	if _, dup := w.groups[spec.Name]; dup {
		w.mu.Unlock()
		return nil, fmt.Errorf("group %q is open already", spec.Name)
	}
	w.groups[spec.Name] = g
	w.mu.Unlock()

	// The group outlives this request: its streams stay open until "close".
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopWithWorker := context.AfterFunc(ctx, cancel)
	g.cancel = func() { stopWithWorker(); cancel() }
	sem := make(chan struct{}, max(spec.Concurrency, 1))
	outcomes := make(chan openOutcome, spec.Count)
	start := time.Now()
	for i := range spec.Count {
		c := &client{g: g, idx: i}
		g.clients = append(g.clients, c)
		g.wg.Go(func() { c.run(gctx, sem, outcomes) })
	}
	st := GroupStats{Status: map[int]int{}}
	for range spec.Count {
		o := <-outcomes
		st.Status[o.status]++
		if o.err != nil {
			st.Failed++
			if st.FirstError == "" {
				st.FirstError = o.err.Error()
			}
		} else {
			st.Opened++
		}
	}
	st.OpenTook = time.Since(start)
	g.open = st
	return &st, nil
}

func (g *group) stats(req Request) *GroupStats {
	st := g.open
	st.Status = g.open.Status
	st.Received = g.received.Load()
	st.ErrorEvents = g.errorEvents.Load()
	st.Reconnects = g.reconnects.Load()
	st.LastReopen = g.lastReopen.Load()
	for i := range g.hist {
		g.hist[i].mu.Lock()
		st.Latency.Merge(g.hist[i].h)
		g.hist[i].mu.Unlock()
	}
	for _, c := range g.clients {
		if d := c.doneAt.Load(); d != 0 {
			st.Done++
			st.LastDone = max(st.LastDone, d)
		}
		if cl := c.closedAt.Load(); cl != 0 {
			st.Closed++
			if op := c.openedAt.Load(); op != 0 {
				st.CloseAfter = append(st.CloseAfter, time.Duration(cl-op))
			}
		}
		if req.ExpectTo >= req.ExpectFrom && req.ExpectTo > 0 {
			lost, rep := c.lostRepeated(req.ExpectFrom, req.ExpectTo)
			st.Lost += lost
			st.Repeated += rep
		}
	}
	return &st
}

// lostRepeated counts, among [from, to], the sequence numbers the stream never got and
// the deliveries beyond the first of each.
func (c *client) lostRepeated(from, to int64) (lost, repeated int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[int64]int, to-from+1)
	for _, s := range c.seqs {
		if s >= from && s <= to {
			seen[s]++
		}
	}
	for _, n := range seen {
		repeated += int64(n - 1)
	}
	return (to - from + 1) - int64(len(seen)), repeated
}

func (w *Worker) closeAll() {
	w.mu.Lock()
	gs := w.groups
	w.groups = map[string]*group{}
	w.mu.Unlock()
	for _, g := range gs {
		g.cancel()
		g.wg.Wait()
	}
}

// RaiseFileLimit lifts the soft open-files limit to the hard one: every stream is a
// socket, and the default soft limit is far below what a worker or the router needs.
func RaiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("setrlimit: %w", err)
		}
	}
	return nil
}
