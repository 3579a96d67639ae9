package service

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

type captured struct{ e event.Event }

func (c *captured) Send(_ context.Context, e event.Event) protocol.Result {
	c.e = e
	return protocol.ResultACK
}

func TestOverridesAreSetOnEveryEvent(t *testing.T) {
	c := &captured{}
	o := overrides{c, map[string]string{"team": "sre"}}
	e := event.New()
	e.SetID("1")
	o.Send(context.Background(), e)
	if v := c.e.Extensions()["team"]; v != "sre" {
		t.Errorf("extension team = %v", v)
	}
	if _, ok := e.Extensions()["team"]; ok {
		t.Error("the queued event was modified")
	}
}

func TestHealthEndpoints(t *testing.T) {
	s := &Service{reg: prometheus.NewRegistry()}
	h := s.mux()
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if get("/healthz") != 200 || get("/readyz") != 200 || get("/metrics") != 200 {
		t.Error("a standby replica should be healthy and ready")
	}
	s.leading.Store(true)
	if get("/readyz") != http.StatusServiceUnavailable {
		t.Error("a leader without synced informers should not be ready")
	}
}
