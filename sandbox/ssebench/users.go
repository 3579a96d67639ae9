package ssebench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// UsersResult is the distinct-users scenario's outcome.
type UsersResult struct {
	Users       int           `json:"users"`
	TokensTook  time.Duration `json:"tokensTook"`
	Opened      int           `json:"opened"`
	Refused     int           `json:"refused"`
	Status      map[int]int   `json:"status"`
	FirstError  string        `json:"firstError,omitempty"`
	AllOpenTook time.Duration `json:"allOpenTook"`
	Requests    float64       `json:"upstreamRequests"`
	Upstreams   float64       `json:"upstreams"`
}

// users: many distinct users (one ServiceAccount token each) open a stream at once, so
// each needs its own TokenReview and SubjectAccessReview.
func (b *bench) users(ctx context.Context) (*Table, error) {
	t := &Table{ID: "users", Title: "5. Distinct users connecting at once (one ServiceAccount token each)", Columns: []string{
		"users", "opened", "refused (status: count)", "time to all open", "upstreams", "upstream requests",
	}}
	res := UsersResult{Users: b.cfg.Users}
	defer func() { t.Data = res }()
	start := time.Now()
	tokens, err := b.cl.ServiceAccountTokens(ctx, b.cfg.Users)
	if err != nil {
		return t, err
	}
	res.TokensTook = time.Since(start)
	lg, err := b.cl.NewLog(ctx, "users-log", b.cfg.LineBytes, 0)
	if err != nil {
		return t, err
	}
	r, err := b.startRouter(ctx)
	if err != nil {
		return t, err
	}
	defer r.Stop()
	spec := b.routerGroup("users", r, lg.StreamPath(b.cl.NS, "&tailLines=1"), b.cfg.Users)
	spec.Tokens, spec.Concurrency = tokens, b.cfg.Users
	st, err := b.pool.Open(ctx, spec)
	defer func() { _ = b.pool.Close(context.WithoutCancel(ctx), "users") }()
	if err != nil {
		return t, err
	}
	res.Opened, res.Refused, res.Status, res.FirstError, res.AllOpenTook = st.Opened, st.Failed, st.Status, st.FirstError, st.OpenTook
	if m, err := r.Metrics(ctx); err == nil {
		res.Requests, res.Upstreams = m["dwp_sse_upstream_requests_total"], m["dwp_sse_upstreams"]
	}
	var refused []string
	for _, code := range slices.Sorted(maps.Keys(res.Status)) {
		if code != 200 {
			refused = append(refused, fmt.Sprintf("%d: %d", code, res.Status[code]))
		}
	}
	ref := fmt.Sprint(res.Refused)
	if len(refused) > 0 {
		ref += " (" + strings.Join(refused, ", ") + ")"
	}
	t.AddRow(res.Users, res.Opened, ref, fmtDur(res.AllOpenTook), fmt.Sprintf("%.0f", res.Upstreams), fmt.Sprintf("%.0f", res.Requests))
	t.Note("All streams are dialled at once; 'time to all open' runs until the last response head (status 0 = no response within %s). Users are ServiceAccounts of the bench namespace, granted view through the group system:serviceaccounts:<ns>; making their %d tokens took %s.", b.cfg.OpenTimeout, res.Users, fmtDur(res.TokensTook))
	if res.FirstError != "" {
		t.Note("first failure: %s", res.FirstError)
	}
	return t, nil
}
