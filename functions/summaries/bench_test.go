package summaries

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/redis/go-redis/v9"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// roundTrips counts the requests a client sends to Redis: each command, and each
// pipeline, is one round trip.
type roundTrips struct{ n atomic.Int64 }

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}

func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(1); return next(ctx, cmds) }
}

// BenchmarkSummaryPath measures the summary path of the function: a binary-mode
// CloudEvent through the function's event handler (HTTP decoding, validation, one Lua
// script) into Redis, and reports events per second and Redis round trips per event.
// Every event is a new state of its object (a newer ordering key), so every one rewrites
// the app's summary; the app's whole state is read back by the script each time, so big
// apps cost more.
func BenchmarkSummaryPath(b *testing.B) {
	for _, bc := range []struct {
		name       string
		apps, pods int
		workflows  bool
		parallel   bool
	}{
		{name: "pods/apps=50/pods=4", apps: 50, pods: 4},
		{name: "pods/apps=1/pods=200", apps: 1, pods: 200},
		{name: "workflows/apps=50/workflows=20", apps: 50, pods: 20, workflows: true},
		{name: "pods/apps=50/pods=4/parallel", apps: 50, pods: 4, parallel: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			fx := newFixture(b, 9, nil, nil)
			rt := &roundTrips{}
			fx.fam.rdb.AddHook(rt)
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				app := fmt.Sprintf("app-%d", i%bc.apps)
				obj := fmt.Sprintf("u%d-%d", i%bc.apps, (i/bc.apps)%bc.pods)
				ord := events.Ordering(1000 + i)
				var e event.Event
				var err error
				if bc.workflows {
					phase := []string{"Pending", "Running", "Succeeded"}[i%3]
					e, err = events.NewWorkflowEvent("c1", false, events.Workflow{Namespace: "bench", App: app, Name: "wf-" + obj, UID: obj,
						Ordering: ord, Phase: phase, Task: "build", Message: "step 3/5", CreatedAt: t0.Add(time.Duration(i%bc.pods) * time.Minute)}, t0)
				} else {
					e, err = events.NewPodEvent("c1", false, events.Pod{Namespace: "bench", App: app, Name: "pod-" + obj, UID: obj,
						Ordering: ord, Phase: "Running", Ready: i%2 == 0, Restarts: int32(i % 7), ChangedAt: t0.Add(time.Duration(i) * time.Second)}, t0)
				}
				if err != nil {
					b.Fatal(err)
				}
				reqs[i] = eventRequest(b, e)
			}
			var failed atomic.Int64
			serve := func(req *http.Request) {
				rec := httptest.NewRecorder()
				fx.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusAccepted {
					failed.Add(1)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if bc.parallel {
				var next atomic.Int64
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						serve(reqs[next.Add(1)-1])
					}
				})
			} else {
				for i := 0; i < b.N; i++ {
					serve(reqs[i])
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d events not accepted", n, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(rt.n.Load())/float64(b.N), "redis-roundtrips/event")
			if info, err := fx.db.Info(context.Background(), "commandstats").Result(); err == nil && testing.Verbose() {
				b.Log(info)
			}
		})
	}
}
