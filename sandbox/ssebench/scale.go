package ssebench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// ScaleResult is one row of the one-router scale scenario.
type ScaleResult struct {
	Kind             string        `json:"kind"`
	N                int           `json:"n"`
	Opened           int           `json:"opened"`
	Failed           int           `json:"failed"`
	OpenTook         time.Duration `json:"openTook"`
	RSSBase          int64         `json:"rssBase"`
	RSS              int64         `json:"rss"`
	RSSPerStream     float64       `json:"rssPerStream"`
	GoroutinesPer    float64       `json:"goroutinesPerStream"`
	IdleCPUPercent   float64       `json:"idleCPUPercent"`
	CPUPerDelivery   time.Duration `json:"cpuPerDelivery"`
	BurstDeliveries  int64         `json:"burstDeliveries"`
	Upstreams        float64       `json:"upstreams"`
	UpstreamRequests float64       `json:"upstreamRequests"`
	Latency          Percentiles   `json:"latency"`
	Delivered        int64         `json:"delivered"`
	Expected         int64         `json:"expected"`
	// Profile is the router's CPU profile over the burst and the latency events (the
	// largest N of each kind only), in the output folder.
	Profile string `json:"profile,omitempty"`
	Error   string `json:"error,omitempty"`
}

func scaleTable(id, title string) *Table {
	return &Table{ID: id, Title: title, Columns: []string{
		"stream", "N", "opened/failed", "open time", "RSS/stream (≤16 KiB)", "goroutines/stream",
		"idle CPU", "CPU/delivery (≤5 µs)", "upstreams", "upstream requests",
		"latency p50 / p99 (≤150 ms) / max", "delivered",
	}}
}

func (t *Table) addScale(r ScaleResult) {
	if r.Error != "" && r.Opened == 0 {
		t.AddRow(r.Kind, r.N, fmt.Sprintf("%d/%d", r.Opened, r.Failed), "—", "—", "—", "—", "—", "—", "—", "—", "error: "+r.Error)
		return
	}
	lat := fmtLatency(r.Latency)
	if r.Latency.N > 0 {
		lat += check(r.Latency.P99 <= 150*time.Millisecond)
	}
	cpu := "—"
	if r.BurstDeliveries > 0 {
		cpu = fmt.Sprintf("%.2f µs", float64(r.CPUPerDelivery)/float64(time.Microsecond)) + check(r.CPUPerDelivery <= 5*time.Microsecond)
	}
	t.AddRow(r.Kind, r.N, fmt.Sprintf("%d/%d", r.Opened, r.Failed), fmtDur(r.OpenTook),
		fmtKiB(r.RSSPerStream)+check(r.RSSPerStream <= 16<<10), fmt.Sprintf("%.2f", r.GoroutinesPer),
		fmt.Sprintf("%.2f %%", r.IdleCPUPercent), cpu, fmt.Sprintf("%.0f", r.Upstreams), fmt.Sprintf("%.0f", r.UpstreamRequests),
		lat, fmt.Sprintf("%d/%d", r.Delivered, r.Expected))
}

// scale: N streams on one pod log, then on one namespace's pods, one router each time.
func (b *bench) scale(ctx context.Context) (*Table, error) {
	t := scaleTable("scale", "1. One router, N streams on one pod log and on one namespace's pods")
	var results []ScaleResult
	defer func() { t.Data = results }()
	lg, err := b.cl.NewLog(ctx, "scale-log", b.cfg.LineBytes, 0)
	if err != nil {
		return t, err
	}
	watch := &WatchSource{c: b.cl}
	kinds := []struct {
		name string
		src  Source
		path string
	}{
		{"pod log", lg, lg.StreamPath(b.cl.NS, "&tailLines=10")},
		{"pods", watch, watch.StreamPath()},
	}
	for _, k := range kinds {
		for _, n := range b.cfg.ScaleSizes {
			if n > b.cfg.MaxRouterStream {
				t.Note("%s N=%d skipped: above %d streams one router can hold with 20000 open files", k.name, n, b.cfg.MaxRouterStream)
				continue
			}
			if time.Since(b.started) > b.cfg.Budget {
				t.Note("%s N=%d skipped: the run's budget was spent", k.name, n)
				continue
			}
			r := b.scaleOne(ctx, k.name, k.src, k.path, n)
			results = append(results, r)
			t.addScale(r)
			if ctx.Err() != nil {
				return t, ctx.Err()
			}
		}
	}
	t.Note("RSS/stream: router VmRSS with the streams open minus before any opened, over N. Idle CPU: router CPU over %s without events, %% of one core.", b.cfg.IdleWindow)
	t.Note("CPU/delivery: router CPU time while %d events at once reach every stream, over events × streams. Latency: %d events at 1/s, every (event, stream) delivery.", b.cfg.BurstEvents, b.cfg.LatencyEvents)
	for _, r := range results {
		if r.Profile != "" {
			t.Note("%s N=%d: the router's CPU profile over the burst and the latency events is %s (`go tool pprof -top %s`).", r.Kind, r.N, r.Profile, r.Profile)
		}
	}
	t.Note("pods events are annotation patches of one pod (a `modified` event each); pod log events are lines appended to the file kwok serves.")
	return t, nil
}

func (b *bench) scaleOne(ctx context.Context, kind string, src Source, path string, n int) (res ScaleResult) {
	res = ScaleResult{Kind: kind, N: n}
	b.log.Info("scale", "kind", kind, "n", n)
	fail := func(err error) ScaleResult {
		res.Error = err.Error()
		b.log.Warn("scale run failed", "kind", kind, "n", n, "err", err)
		return res
	}
	r, err := b.startRouter(ctx)
	if err != nil {
		return fail(err)
	}
	defer r.Stop()
	m0, err := r.Metrics(ctx)
	if err != nil {
		return fail(err)
	}
	u0, err := r.Usage()
	if err != nil {
		return fail(err)
	}
	res.RSSBase = u0.RSS
	name := fmt.Sprintf("scale-%s-%d", kind, n)
	st, err := b.pool.Open(ctx, b.routerGroup(name, r, path, n))
	defer func() { _ = b.pool.Close(context.WithoutCancel(ctx), name) }()
	res.Opened, res.Failed, res.OpenTook = st.Opened, st.Failed, st.OpenTook
	if err != nil {
		return fail(err)
	}
	if st.Opened == 0 {
		return fail(fmt.Errorf("no stream opened: %s", st.FirstError))
	}
	// Let the catch-up writes and the runtime settle before measuring memory.
	sleep(ctx, 2*time.Second)
	u1, err := r.Usage()
	if err != nil {
		return fail(err)
	}
	m1, err := r.Metrics(ctx)
	if err != nil {
		return fail(err)
	}
	res.RSS = u1.RSS
	res.RSSPerStream = float64(u1.RSS-u0.RSS) / float64(st.Opened)
	res.GoroutinesPer = (m1["go_goroutines"] - m0["go_goroutines"]) / float64(st.Opened)

	c0, _ := r.Usage()
	sleep(ctx, b.cfg.IdleWindow)
	c1, err := r.Usage()
	if err != nil {
		return fail(err)
	}
	res.IdleCPUPercent = 100 * float64(c1.CPU-c0.CPU) / float64(b.cfg.IdleWindow)

	if n == slices.Max(b.cfg.ScaleSizes) {
		stopProfile := b.profile(ctx, r, name, &res.Profile)
		defer stopProfile()
	}
	res.CPUPerDelivery, res.BurstDeliveries, err = b.burstCPU(ctx, r, src, name, st.Opened, b.cfg.BurstEvents)
	if err != nil {
		return fail(err)
	}
	lat, err := b.latency(ctx, src, []string{name}, st.Opened, b.cfg.LatencyEvents, time.Second)
	if err != nil {
		return fail(err)
	}
	h, got := sumLatency(lat)
	res.Latency, res.Delivered, res.Expected = h.Summary(), got, int64(b.cfg.LatencyEvents)*int64(st.Opened)
	m2, err := r.Metrics(ctx)
	if err != nil {
		return fail(err)
	}
	res.Upstreams, res.UpstreamRequests = m2["dwp_sse_upstreams"], m2["dwp_sse_upstream_requests_total"]
	if k := r.KilledReason(); k != "" {
		res.Error = "router killed: " + k
	}
	return res
}

// profileWindow covers the CPU-per-delivery burst and the latency events after it.
const profileWindow = 15 * time.Second

// profile records r's CPU profile for profileWindow into the output folder, naming the
// file in *name once written; wait (deferred by the caller) waits for it.
func (b *bench) profile(ctx context.Context, r *Router, run string, name *string) (wait func()) {
	if err := os.MkdirAll(b.cfg.OutDir, 0o755); err != nil {
		b.log.Warn("no profile", "run", run, "err", err)
		return func() {}
	}
	file := "profile-" + run + ".pprof"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Profile(ctx, profileWindow, filepath.Join(b.cfg.OutDir, file)); err != nil {
			b.log.Warn("no profile", "run", run, "err", err)
			return
		}
		*name = file
	}()
	return wg.Wait
}
