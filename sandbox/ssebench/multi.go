package ssebench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// MultiResult is the several-routers scenario's outcome.
type MultiResult struct {
	Routers      int           `json:"routers"`
	N            int           `json:"n"`
	Opened       int           `json:"opened"`
	Failed       int           `json:"failed"`
	OpenTook     time.Duration `json:"openTook"`
	RSSPerStream float64       `json:"rssPerStream"`
	Upstreams    float64       `json:"upstreams"`
	Requests     float64       `json:"upstreamRequests"`
	Latency      Percentiles   `json:"latency"`
	Delivered    int64         `json:"delivered"`
	Expected     int64         `json:"expected"`
	FirstError   string        `json:"firstError,omitempty"`
}

// multi: more streams than one router can hold, spread over several router processes,
// all on one pod log: each router should hold one upstream.
func (b *bench) multi(ctx context.Context) (*Table, error) {
	t := &Table{ID: "multi", Title: "7. Streams over several routers on one pod log", Columns: []string{
		"routers", "N", "opened/failed", "open time", "RSS/stream (≤16 KiB)", "upstreams", "upstream requests", "latency p50 / p99 (≤150 ms) / max", "delivered",
	}}
	k := b.cfg.MultiRouters
	per := (b.cfg.MultiStreams + k - 1) / k
	if per > b.cfg.MaxRouterStream {
		k = (b.cfg.MultiStreams + b.cfg.MaxRouterStream - 1) / b.cfg.MaxRouterStream
		per = (b.cfg.MultiStreams + k - 1) / k
		t.Note("%d routers, since one holds at most %d streams", k, b.cfg.MaxRouterStream)
	}
	res := MultiResult{Routers: k, N: b.cfg.MultiStreams}
	defer func() { t.Data = res }()
	lg, err := b.cl.NewLog(ctx, "multi-log", b.cfg.LineBytes, 0)
	if err != nil {
		return t, err
	}
	routers := make([]*Router, 0, k)
	defer func() {
		for _, r := range routers {
			r.Stop()
		}
	}()
	base := make([]Usage, k)
	for i := range k {
		r, err := b.startRouter(ctx)
		if err != nil {
			return t, err
		}
		routers = append(routers, r)
		if base[i], err = r.Usage(); err != nil {
			return t, err
		}
	}
	groups := make([]string, k)
	stats := make([]GroupStats, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	left := b.cfg.MultiStreams
	for i, r := range routers {
		n := min(per, left)
		left -= n
		groups[i] = fmt.Sprintf("multi-%d", i)
		spec := b.routerGroup(groups[i], r, lg.StreamPath(b.cl.NS, "&tailLines=1"), n)
		wg.Go(func() { stats[i], errs[i] = b.pool.Open(ctx, spec) })
	}
	wg.Wait()
	defer func() {
		for _, g := range groups {
			_ = b.pool.Close(context.WithoutCancel(ctx), g)
		}
	}()
	all := mergeStats(stats)
	res.Opened, res.Failed, res.OpenTook, res.FirstError = all.Opened, all.Failed, all.OpenTook, all.FirstError
	if err := errors.Join(errs...); err != nil {
		return t, err
	}
	if res.Opened == 0 {
		return t, fmt.Errorf("no stream opened: %s", res.FirstError)
	}
	sleep(ctx, 2*time.Second)
	var grown int64
	for i, r := range routers {
		u, err := r.Usage()
		if err != nil {
			return t, err
		}
		grown += u.RSS - base[i].RSS
	}
	res.RSSPerStream = float64(grown) / float64(res.Opened)
	lat, err := b.latency(ctx, lg, groups, res.Opened, b.cfg.LatencyEvents, time.Second)
	if err != nil {
		return t, err
	}
	h, got := sumLatency(lat)
	res.Latency, res.Delivered, res.Expected = h.Summary(), got, int64(b.cfg.LatencyEvents)*int64(res.Opened)
	for _, r := range routers {
		m, err := r.Metrics(ctx)
		if err != nil {
			return t, err
		}
		res.Upstreams += m["dwp_sse_upstreams"]
		res.Requests += m["dwp_sse_upstream_requests_total"]
	}
	lat99 := fmtLatency(res.Latency)
	if res.Latency.N > 0 {
		lat99 += check(res.Latency.P99 <= 150*time.Millisecond)
	}
	t.AddRow(k, res.N, fmt.Sprintf("%d/%d", res.Opened, res.Failed), fmtDur(res.OpenTook), fmtKiB(res.RSSPerStream)+check(res.RSSPerStream <= 16<<10),
		fmt.Sprintf("%.0f (expected %d)", res.Upstreams, k), fmt.Sprintf("%.0f", res.Requests), lat99, fmt.Sprintf("%d/%d", res.Delivered, res.Expected))
	if res.FirstError != "" {
		t.Note("first failure: %s", res.FirstError)
	}
	t.Note("%d events at 1/s; latency over every (event, stream) delivery of all routers.", b.cfg.LatencyEvents)
	return t, nil
}
