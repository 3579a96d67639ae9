package ssebench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ReconnectResult is the reconnect storm's outcome.
type ReconnectResult struct {
	N             int           `json:"n"`
	Opened        int           `json:"opened"`
	Restart       time.Duration `json:"restart"`       // kill to ready again
	AllReopened   time.Duration `json:"allReopened"`   // kill to the last stream reopened
	Recovered     int           `json:"recovered"`     // streams that got a line appended after the restart
	Recovery      time.Duration `json:"recovery"`      // kill to the last of those
	NewRequests   float64       `json:"newRequests"`   // upstream requests of the new process
	Upstreams     float64       `json:"upstreams"`     // upstreams open afterwards
	LinesAppended int64         `json:"linesAppended"` // during the run, per stream
	LostTotal     int64         `json:"lost"`
	RepeatedTotal int64         `json:"repeated"`
	ErrorEvents   int64         `json:"errorEvents"`
	Reconnects    int64         `json:"reconnects"`
}

// reconnect: streams on one log; the router is killed and started again on the same
// address; clients come back with Last-Event-ID while lines keep being appended.
func (b *bench) reconnect(ctx context.Context) (*Table, error) {
	t := &Table{ID: "reconnect", Title: "4. Reconnect storm: router killed (SIGKILL) and restarted under N streams of one pod log", Columns: []string{
		"N", "restart", "all reconnected", "recovered / time (new line seen)", "new upstream requests", "upstreams after",
		"lines appended", "lost", "repeated", "error events",
	}}
	lg, err := b.cl.NewLog(ctx, "reconnect-log", b.cfg.LineBytes, 0)
	if err != nil {
		return t, err
	}
	r, err := b.startRouter(ctx)
	if err != nil {
		return t, err
	}
	defer r.Stop()
	spec := b.routerGroup("reconnect", r, lg.StreamPath(b.cl.NS, "&tailLines=1"), b.cfg.ReconnectN)
	spec.Reconnect, spec.TrackSeqs = true, true
	st, err := b.pool.Open(ctx, spec)
	defer func() { _ = b.pool.Close(context.WithoutCancel(ctx), "reconnect") }()
	if err != nil {
		return t, err
	}
	res := ReconnectResult{N: b.cfg.ReconnectN, Opened: st.Opened}
	defer func() { t.Data = res }()

	// Lines keep coming at 10/s through the whole storm, as a busy container's would.
	first := lg.Next()
	ectx, stopEmit := context.WithCancel(ctx)
	var emitErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ectx.Done():
				return
			case <-tick.C:
			}
			if _, _, err := lg.Emit(ectx, 1); err != nil {
				emitErr = err
				return
			}
		}
	})
	defer func() { stopEmit(); wg.Wait() }()
	sleep(ctx, 2*time.Second)

	kill := time.Now()
	r.Kill()
	if err := r.Start(ctx); err != nil {
		return t, fmt.Errorf("restart router: %w", err)
	}
	res.Restart = time.Since(kill)
	if err := b.pool.Measure(ctx, "reconnect", 1<<62, lg.Next()); err != nil {
		return t, err
	}
	deadline := time.Now().Add(60 * time.Second)
	var ss GroupStats
	for {
		if ss, err = b.pool.Stats(ctx, "reconnect", 0, 0); err != nil {
			return t, err
		}
		if ss.Done >= st.Opened || time.Now().After(deadline) {
			break
		}
		sleep(ctx, 200*time.Millisecond)
	}
	res.Recovered = ss.Done
	if ss.LastDone > 0 {
		res.Recovery = time.Duration(ss.LastDone - kill.UnixNano())
	}
	if ss.LastReopen > 0 {
		res.AllReopened = time.Duration(ss.LastReopen - kill.UnixNano())
	}
	sleep(ctx, 2*time.Second)
	stopEmit()
	wg.Wait()
	if emitErr != nil {
		return t, emitErr
	}
	last := lg.Next() - 1
	sleep(ctx, 2*time.Second) // the last lines reach everyone
	ss, err = b.pool.Stats(ctx, "reconnect", first, last)
	if err != nil {
		return t, err
	}
	res.LinesAppended = last - first + 1
	res.LostTotal, res.RepeatedTotal, res.ErrorEvents, res.Reconnects = ss.Lost, ss.Repeated, ss.ErrorEvents, ss.Reconnects
	if m, err := r.Metrics(ctx); err == nil {
		res.NewRequests, res.Upstreams = m["dwp_sse_upstream_requests_total"], m["dwp_sse_upstreams"]
	}
	t.AddRow(fmt.Sprintf("%d (%d opened)", res.N, res.Opened), fmtDur(res.Restart), fmtDur(res.AllReopened),
		fmt.Sprintf("%d / %s", res.Recovered, fmtDur(res.Recovery)), fmt.Sprintf("%.0f", res.NewRequests), fmt.Sprintf("%.0f", res.Upstreams),
		fmt.Sprintf("%d × %d streams", res.LinesAppended, res.Opened), res.LostTotal, res.RepeatedTotal, res.ErrorEvents)
	t.Note("Clients wait 0.2–1 s (random) after a break, then reconnect with Last-Event-ID of their last event, like EventSource. Lines are appended at 10/s throughout; lost and repeated are summed over all streams, over the lines appended from 2 s before the kill to the end.")
	t.Note("Times are from the kill. 'Recovered': streams that received a line appended after the new router was ready.")
	return t, nil
}
