package ssebench

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// SlowResult is one rate of the slow-client scenario.
type SlowResult struct {
	Rate         int             `json:"ratePerSecond"`
	Streams      int             `json:"streams"`
	Stalled      int             `json:"stalled"`
	Closed       int             `json:"closed"`
	CloseAfter   []time.Duration `json:"closeAfter"`
	Window       time.Duration   `json:"window"`
	Before       Percentiles     `json:"othersBefore"`
	During       Percentiles     `json:"othersDuring"`
	Delivered    int64           `json:"delivered"`
	Expected     int64           `json:"expected"`
	SlowDropped  float64         `json:"slowDropped"`
	OthersClosed int             `json:"othersClosed"`
}

// slow: among many readers, a few stop reading after the response head; how soon does
// the router let go of them, and do the others notice?
func (b *bench) slow(ctx context.Context) (*Table, error) {
	t := &Table{ID: "slow", Title: "3. Slow clients: stalled streams among readers of one pod log", Columns: []string{
		"events/s", "streams", "stalled", "closed by router", "time to close p50 / max (≤10 s)",
		"others p99 before", "others p50 / p99 / max during", "others delivered", "others cut",
	}}
	var results []SlowResult
	defer func() { t.Data = results }()
	lg, err := b.cl.NewLog(ctx, "slow-log", b.cfg.LineBytes, 0)
	if err != nil {
		return t, err
	}
	r, err := b.startRouter(ctx)
	if err != nil {
		return t, err
	}
	defer r.Stop()
	path := lg.StreamPath(b.cl.NS, "&tailLines=1")
	readers := b.cfg.SlowStreams - b.cfg.SlowStalled
	st, err := b.pool.Open(ctx, b.routerGroup("slow-readers", r, path, readers))
	defer func() { _ = b.pool.Close(context.WithoutCancel(ctx), "slow-readers") }()
	if err != nil {
		return t, err
	}
	if st.Opened == 0 {
		return t, fmt.Errorf("no reader opened: %s", st.FirstError)
	}
	before, err := b.latency(ctx, lg, []string{"slow-readers"}, st.Opened, min(b.cfg.LatencyEvents, 5), time.Second)
	if err != nil {
		return t, err
	}
	hb, _ := sumLatency(before)
	for _, rate := range []int{1, 100} {
		res := SlowResult{Rate: rate, Streams: b.cfg.SlowStreams, Stalled: b.cfg.SlowStalled, Window: b.cfg.SlowWindow, Before: hb.Summary()}
		name := fmt.Sprintf("slow-stalled-%d", rate)
		spec := b.routerGroup(name, r, path, b.cfg.SlowStalled)
		// The smallest buffers the kernel allows: the router's writes back up at once.
		spec.Stall, spec.RcvBuf = true, 1024
		if _, err := b.pool.Open(ctx, spec); err != nil {
			return t, err
		}
		events := int(b.cfg.SlowWindow.Seconds()) * rate
		during, err := b.latency(ctx, lg, []string{"slow-readers"}, st.Opened, events, time.Second/time.Duration(rate))
		if err != nil {
			return t, err
		}
		hd, got := sumLatency(during)
		res.During, res.Delivered, res.Expected = hd.Summary(), got, int64(events)*int64(st.Opened)
		ss, err := b.pool.Stats(ctx, name, 0, 0)
		if err != nil {
			return t, err
		}
		res.Closed, res.CloseAfter = ss.Closed, ss.CloseAfter
		if err := b.pool.Close(ctx, name); err != nil {
			return t, err
		}
		rs, err := b.pool.Stats(ctx, "slow-readers", 0, 0)
		if err != nil {
			return t, err
		}
		res.OthersClosed = rs.Closed
		if m, err := r.Metrics(ctx); err == nil {
			res.SlowDropped = m["dwp_sse_slow_clients_dropped_total"]
		}
		results = append(results, res)
		closeTimes := "—"
		if len(res.CloseAfter) > 0 {
			slices.Sort(res.CloseAfter)
			p50, mx := res.CloseAfter[len(res.CloseAfter)/2], res.CloseAfter[len(res.CloseAfter)-1]
			closeTimes = fmtDur(p50) + " / " + fmtDur(mx) + check(mx <= 10*time.Second && res.Closed == res.Stalled)
		}
		t.AddRow(rate, res.Streams, res.Stalled, fmt.Sprintf("%d/%d in %s", res.Closed, res.Stalled, fmtDur(res.Window)), closeTimes,
			fmtDur(res.Before.P99), fmtLatency(res.During), fmt.Sprintf("%d/%d", res.Delivered, res.Expected), res.OthersClosed)
	}
	t.Note("Stalled clients read the response head and nothing more, with SO_RCVBUF 1 KiB. A stream counts as closed when the router's end of the socket leaves ESTABLISHED (seen in /proc/net/tcp) or ours is reset; time is from the head to that.")
	t.Note("At 1 event/s the backlog grows by one short event a second, so a router that only drops clients whose queue fills or whose write times out may keep them for minutes; '—' means none closed within the window.")
	return t, nil
}
