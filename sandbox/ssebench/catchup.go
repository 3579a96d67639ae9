package ssebench

import (
	"context"
	"fmt"
	"time"
)

// CatchupResult is the big-log scenario's outcome.
type CatchupResult struct {
	Viewers   int           `json:"viewers"`
	LogBytes  int64         `json:"logBytes"`
	LogLines  int64         `json:"logLines"`
	Opened    int           `json:"opened"`
	Failed    int           `json:"failed"`
	Complete  int           `json:"complete"`
	AllTook   time.Duration `json:"allTook"`
	RSSBase   int64         `json:"rssBase"`
	RSSPeak   int64         `json:"rssPeak"`
	Requests  float64       `json:"upstreamRequests"`
	Errors    int64         `json:"errorEvents"`
	Killed    string        `json:"killed,omitempty"`
	TimedOut  bool          `json:"timedOut"`
	FirstErr  string        `json:"firstError,omitempty"`
	LineBytes int           `json:"lineBytes"`
}

// catchupLineBytes: the big log's lines are longer than the live ones, as build and
// application logs are.
const catchupLineBytes = 400

// catchup: many viewers open the whole of a big log at once; each must get every line.
func (b *bench) catchup(ctx context.Context) (*Table, error) {
	t := &Table{ID: "catchup", Title: "6. Viewers joining a big log at once (whole log, no tailLines)", Columns: []string{
		"viewers", "log", "opened/failed", "got the whole log", "time until all had it", "router RSS growth (peak)", "upstream requests", "error events",
	}}
	res := CatchupResult{Viewers: b.cfg.CatchupViewers, LogBytes: b.cfg.CatchupBytes, LineBytes: catchupLineBytes}
	defer func() { t.Data = res }()
	lg, err := b.cl.NewLog(ctx, "big-log", catchupLineBytes, b.cfg.CatchupBytes)
	if err != nil {
		return t, err
	}
	res.LogLines = lg.Next()
	r, err := b.startRouter(ctx)
	if err != nil {
		return t, err
	}
	defer r.Stop()
	u0, err := r.Usage()
	if err != nil {
		return t, err
	}
	res.RSSBase, res.RSSPeak = u0.RSS, u0.RSS
	m0, err := r.Metrics(ctx)
	if err != nil {
		return t, err
	}
	spec := b.routerGroup("catchup", r, lg.StreamPath(b.cl.NS, ""), b.cfg.CatchupViewers)
	spec.Concurrency = b.cfg.CatchupViewers
	spec.DoneSeq = lg.Next() - 1 // the log's last line

	// Memory is sampled while the viewers join: the peak is what matters.
	sctx, stopSampling := context.WithCancel(ctx)
	peak := make(chan int64, 1)
	go func() {
		p := u0.RSS
		defer func() { peak <- p }()
		for sctx.Err() == nil {
			if u, err := r.Usage(); err == nil {
				p = max(p, u.RSS)
			}
			sleep(sctx, 100*time.Millisecond)
		}
	}()
	defer func() {
		stopSampling()
		res.RSSPeak = max(res.RSSPeak, <-peak)
		t.AddRow(res.Viewers, fmt.Sprintf("%.1f MiB, %d lines", float64(res.LogBytes)/(1<<20), res.LogLines),
			fmt.Sprintf("%d/%d", res.Opened, res.Failed), fmt.Sprintf("%d/%d", res.Complete, res.Opened), allTook(res),
			fmt.Sprintf("%.0f MiB", float64(res.RSSPeak-res.RSSBase)/(1<<20)), fmt.Sprintf("%.0f", res.Requests), res.Errors)
		if res.Killed != "" {
			t.Note("router killed by the bench: %s", res.Killed)
		}
	}()

	start := time.Now()
	st, err := b.pool.Open(ctx, spec)
	defer func() { _ = b.pool.Close(context.WithoutCancel(ctx), "catchup") }()
	res.Opened, res.Failed, res.FirstErr = st.Opened, st.Failed, st.FirstError
	if err != nil {
		return t, err
	}
	deadline := start.Add(b.cfg.CatchupTimeout)
	for {
		ss, err := b.pool.Stats(ctx, "catchup", 0, 0)
		if err != nil {
			return t, err
		}
		res.Complete, res.Errors = ss.Done, ss.ErrorEvents
		if ss.LastDone > 0 {
			res.AllTook = time.Duration(ss.LastDone - start.UnixNano())
		}
		if k := r.KilledReason(); k != "" {
			res.Killed = k
			break
		}
		if ss.Done >= st.Opened {
			break
		}
		if time.Now().After(deadline) {
			res.TimedOut = true
			break
		}
		sleep(ctx, 250*time.Millisecond)
	}
	if m, err := r.Metrics(ctx); err == nil {
		res.Requests = m["dwp_sse_upstream_requests_total"] - m0["dwp_sse_upstream_requests_total"]
	}
	t.Note("The log is written before the router starts (%d-byte lines); each viewer opens .../log?container=main with no tailLines and is done when the log's last line arrives. Router RSS is sampled every 100 ms; a router above %d MiB is killed.", catchupLineBytes, b.cfg.RSSCap>>20)
	return t, nil
}

func allTook(r CatchupResult) string {
	if r.TimedOut || r.Complete < r.Opened {
		return fmt.Sprintf("not all within %s", fmtDur(r.AllTook))
	}
	return fmtDur(r.AllTook)
}
