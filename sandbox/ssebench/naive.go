package ssebench

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// NaiveResult is one row of the naive side: every viewer with its own API-server stream.
type NaiveResult struct {
	Kind      string        `json:"kind"`
	N         int           `json:"n"`
	Opened    int           `json:"opened"`
	Failed    int           `json:"failed"`
	Status    map[int]int   `json:"status"`
	FirstErr  string        `json:"firstError,omitempty"`
	OpenTook  time.Duration `json:"openTook"`
	Latency   Percentiles   `json:"latency"`
	Delivered int64         `json:"delivered"`
	Expected  int64         `json:"expected"`
	Upstreams int           `json:"upstreams"`
}

// naive: N clients each with its own log follow or pods watch on the kube-apiserver, as
// a portal without the router would do, with the same events as the router's side.
func (b *bench) naive(ctx context.Context) (*Table, error) {
	t := &Table{ID: "naive", Title: "2. Naive side: one kube-apiserver stream per viewer (no router)", Columns: []string{
		"stream", "N", "opened/failed", "open time", "apiserver upstreams", "latency p50 / p99 / max", "delivered",
	}}
	var results []NaiveResult
	defer func() { t.Data = results }()
	lg, err := b.cl.NewLog(ctx, "naive-log", b.cfg.LineBytes, 0)
	if err != nil {
		return t, err
	}
	if _, _, err := lg.Emit(ctx, 1); err != nil {
		return t, err
	}
	watch := &WatchSource{c: b.cl}
	u, err := url.Parse(b.cl.Info.Server)
	if err != nil {
		return t, fmt.Errorf("API server URL: %w", err)
	}
	kinds := []struct {
		name string
		src  Source
		path string
	}{
		// tailLines=1: a follow would otherwise first send the whole log.
		{"pod log", lg, "/api/v1/namespaces/" + b.cl.NS + "/pods/" + lg.Pod + "/log?container=main&follow=true&tailLines=1"},
		{"pods", watch, "/api/v1/namespaces/" + b.cl.WatchNS + "/pods?watch=1"},
	}
	for _, k := range kinds {
		for _, n := range b.cfg.NaiveSizes {
			r := NaiveResult{Kind: k.name, N: n}
			name := fmt.Sprintf("naive-%s-%d", strings.ReplaceAll(k.name, " ", "-"), n)
			spec := GroupSpec{
				Name:   name,
				Target: Target{Addr: u.Host, TLS: true, CAFile: b.cl.Info.CAFile, Path: k.path, Tokens: []string{b.cl.AdminToken}, Lines: true},
				Count:  n, OpenTimeout: b.cfg.OpenTimeout, Concurrency: 64,
			}
			st, err := b.pool.Open(ctx, spec)
			r.Opened, r.Failed, r.Status, r.FirstErr, r.OpenTook = st.Opened, st.Failed, st.Status, st.FirstError, st.OpenTook
			if err == nil && st.Opened > 0 {
				var lat []GroupStats
				lat, err = b.latency(ctx, k.src, []string{name}, st.Opened, b.cfg.LatencyEvents, time.Second)
				if err == nil {
					h, got := sumLatency(lat)
					r.Latency, r.Delivered = h.Summary(), got
					r.Expected = int64(b.cfg.LatencyEvents) * int64(st.Opened)
				}
			}
			_ = b.pool.Close(context.WithoutCancel(ctx), name)
			r.Upstreams = r.Opened
			results = append(results, r)
			opened := fmt.Sprintf("%d/%d", r.Opened, r.Failed)
			if r.FirstErr != "" {
				opened += " (" + shorten(r.FirstErr, 60) + ")"
			}
			t.AddRow(k.name, n, opened, fmtDur(r.OpenTook), r.Upstreams, fmtLatency(r.Latency), fmt.Sprintf("%d/%d", r.Delivered, r.Expected))
			if err != nil {
				return t, err
			}
		}
	}
	t.Note("Clients speak HTTP/1.1 over TLS straight to the kube-apiserver with the admin token; each open stream is one apiserver upstream (and, for logs, one kubelet follow).")
	return t, nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
