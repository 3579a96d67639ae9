package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/dwp-sre/dwp-sre/functions/summaries"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sandbox/stacktest"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

var applications = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// lag is what the app list promises: a change of Argo CD's status shows within it.
const lag = 2 * time.Second

// TestCDStatusFollowsArgoCD runs the watcher binary against the local control plane,
// sending to the summaries family on a private Redis, with the SSE router's apps stream
// on that Redis; it creates an app's Application and writes its status as Argo CD
// would through a sync (the plane's own Argo CD plays no part: the Application lives in
// a namespace of the test's, which Argo CD does not reconcile, so the statuses written
// are the test's alone). Each status must be in Redis and on the stream within 2 s of
// its write; a write that changes nothing shown (reconciledAt) sends nothing; Redis
// emptied is rebuilt by the next full-state round; the Application's deletion removes
// the app.
func TestCDStatusFollowsArgoCD(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)   // the app's
	cdNS := env.Namespace(t) // stands for Argo CD's
	cluster := "cd-" + ns[len(ns)-6:]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	redisSrv := redistest.Start(t)
	rdb := redisSrv.Client(t, 0)
	store := summarystore.New(rdb, "dwp:")
	sink := startSummaries(t, env, redisSrv.Addr, cluster)
	router := startRouter(t, ctx, env, rdb, cluster)

	inRedis := &follower{}
	subscribed := make(chan struct{})
	go func() {
		_ = store.Watch(ctx, cluster, ns, func() { close(subscribed) }, func(c events.SummaryChange) error {
			if c.App == "web" {
				inRedis.add(c.Summary)
			}
			return nil
		})
	}()
	<-subscribed
	onStream := followStream(t, ctx, router+"/api/v1/stream/namespaces/"+ns+"/apps", env.Tokens["admin"], "web")

	w := stacktest.StartWatcher(t, env, "K_SINK="+sink+"/events", "DWP_CLUSTER_NAME="+cluster,
		"DWP_NAMESPACES="+ns, "DWP_ARGOCD_NAMESPACE="+cdNS, "DWP_RESYNC_INTERVAL=3s", "DWP_LOG_LEVEL=debug")

	apps := env.AdminDynamic(t).Resource(applications).Namespace(cdNS)
	var redisLag, streamLag []time.Duration
	measure := func(what string, write func() error, want func(*events.CDStatus) bool) {
		t.Helper()
		at := time.Now()
		if err := write(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		r := inRedis.wait(t, "Redis: "+what, at, want)
		s := onStream.wait(t, "stream: "+what, at, want)
		redisLag, streamLag = append(redisLag, r.Sub(at)), append(streamLag, s.Sub(at))
		if r.Sub(at) > lag || s.Sub(at) > lag {
			t.Errorf("%s: in Redis after %s, on the stream after %s; want both within %s", what, r.Sub(at), s.Sub(at), lag)
		}
	}

	// The task function creates the Application; Argo CD has not looked at it yet.
	app := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": ns + ".web", "labels": map[string]any{events.LabelAppNamespace: ns, events.LabelApp: "web"}},
		"spec": map[string]any{
			"project":     "default",
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": ns},
			"source":      map[string]any{"repoURL": env.GitopsRepo, "path": ns + "/web", "targetRevision": "main"},
		},
	}}
	measure("created", func() error {
		var err error
		app, err = apps.Create(ctx, app, metav1.CreateOptions{})
		return err
	}, status("Unknown", "Unknown", "", ""))

	// Argo CD's statuses through three syncs of new commits, the last one failing.
	st := argoCD{apps: apps, name: app.GetName()}
	for round := range 3 {
		rev := fmt.Sprintf("%040x", round+1)
		health := "Healthy"
		if round == 0 {
			health = "Missing"
		}
		measure(fmt.Sprintf("sync %d: compared", round), st.write(ctx, func(s *argoStatus) {
			s.sync, s.revision, s.health = "OutOfSync", rev, health
		}), status("OutOfSync", health, rev, st.opPhase))
		measure(fmt.Sprintf("sync %d: started", round), st.write(ctx, func(s *argoStatus) {
			s.opPhase, s.opMessage, s.opStarted, s.opFinished = "Running", "waiting for completion of hook and 1 more resources", time.Now(), time.Time{}
		}), status("OutOfSync", health, rev, "Running"))
		if round == 2 {
			measure("sync 2: failed", st.write(ctx, func(s *argoStatus) {
				s.opPhase, s.opMessage, s.opFinished = "Failed", "one or more objects failed to apply, reason: Deployment.apps \"web\" is invalid", time.Now()
				s.health, s.healthMessage = "Degraded", "Deployment \"web\" exceeded its progress deadline"
			}), status("OutOfSync", "Degraded", rev, "Failed"))
			break
		}
		measure(fmt.Sprintf("sync %d: applied", round), st.write(ctx, func(s *argoStatus) {
			s.opPhase, s.opMessage, s.opFinished = "Succeeded", "successfully synced (all tasks run)", time.Now()
			s.sync, s.health = "Synced", "Progressing"
		}), status("Synced", "Progressing", rev, "Succeeded"))
		measure(fmt.Sprintf("sync %d: healthy", round), st.write(ctx, func(s *argoStatus) { s.health = "Healthy" }),
			status("Synced", "Healthy", rev, "Succeeded"))

		// Argo CD rewrites reconciledAt every few seconds: nothing is sent.
		before := w.Metric(t, `dwp_watcher_changes_total{change="changed",kind="applications"}`)
		if before == 0 {
			t.Fatal("the watcher counts no Application changes")
		}
		if err := st.write(ctx, func(s *argoStatus) { s.reconciledAt = time.Now() })(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if after := w.Metric(t, `dwp_watcher_changes_total{change="changed",kind="applications"}`); after != before {
			t.Errorf("a rewrite of reconciledAt alone sent %v changes", after-before)
		}
	}
	got, _, err := store.Summary(ctx, cluster, ns, "web")
	if err != nil || got.CD == nil || got.CD.Application != ns+".web" || got.CD.Operation == nil ||
		!strings.Contains(got.CD.Operation.Message, "failed to apply") || got.CD.Operation.FinishedAt.IsZero() ||
		!strings.Contains(got.CD.HealthMessage, "progress deadline") || got.Run.State != events.RunStopped {
		t.Errorf("summary after the failed sync: %+v %v", got, err)
	}
	t.Logf("status write → Redis:  %s", spread(redisLag))
	t.Logf("status write → stream: %s", spread(streamLag))

	// Redis loses everything: the next full-state round (every 3 s) lists the
	// Applications again.
	flushed := time.Now()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for {
		s, ok, err := store.Summary(ctx, cluster, ns, "web")
		if err == nil && ok && status("OutOfSync", "Degraded", fmt.Sprintf("%040x", 3), "Failed")(s.CD) {
			t.Logf("after FLUSHALL the cd block was back in %s (resync interval 3s)", time.Since(flushed).Round(time.Millisecond))
			break
		}
		if time.Since(flushed) > 15*time.Second {
			t.Fatalf("after FLUSHALL: no cd block after 15 s: %+v %v", s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The Application is deleted: the app, which has nothing else, is gone.
	deleted := time.Now()
	if err := apps.Delete(ctx, app.GetName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r := inRedis.wait(t, "Redis: deleted", deleted, nil)
	s := onStream.wait(t, "stream: deleted", deleted, nil)
	t.Logf("deletion: gone from Redis after %s, from the stream after %s", r.Sub(deleted).Round(time.Millisecond), s.Sub(deleted).Round(time.Millisecond))
	if r.Sub(deleted) > lag || s.Sub(deleted) > lag {
		t.Errorf("deletion took longer than %s", lag)
	}
}

// status matches a cd block with these statuses, revision and last operation's phase.
func status(sync, health, revision, opPhase string) func(*events.CDStatus) bool {
	return func(cd *events.CDStatus) bool {
		if cd == nil || cd.Sync != sync || cd.Health != health || cd.Revision != revision {
			return false
		}
		if cd.Operation == nil {
			return opPhase == ""
		}
		return cd.Operation.Phase == opPhase
	}
}

// argoStatus is what Argo CD writes of an Application's status, in part.
type argoStatus struct {
	sync, revision, health, healthMessage string
	opPhase, opMessage                    string
	opStarted, opFinished, reconciledAt   time.Time
}

// argoCD writes an Application's status as Argo CD's controller does: the whole object
// (the CRD has no status subresource).
type argoCD struct {
	apps dynamic.ResourceInterface
	name string
	argoStatus
}

func (a *argoCD) write(ctx context.Context, change func(*argoStatus)) func() error {
	return func() error {
		change(&a.argoStatus)
		u, err := a.apps.Get(ctx, a.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := map[string]any{
			"sync":         map[string]any{"status": a.sync, "revision": a.revision, "comparedTo": map[string]any{"source": u.Object["spec"].(map[string]any)["source"], "destination": u.Object["spec"].(map[string]any)["destination"]}},
			"health":       map[string]any{"status": a.health},
			"reconciledAt": a.reconciledAt.UTC().Format(time.RFC3339),
			"sourceType":   "Directory",
		}
		if a.healthMessage != "" {
			s["health"].(map[string]any)["message"] = a.healthMessage
		}
		if a.opPhase != "" {
			op := map[string]any{
				"operation": map[string]any{"sync": map[string]any{"revision": a.revision}},
				"phase":     a.opPhase, "message": a.opMessage, "startedAt": a.opStarted.UTC().Format(time.RFC3339),
			}
			if !a.opFinished.IsZero() {
				op["finishedAt"] = a.opFinished.UTC().Format(time.RFC3339)
			}
			s["operationState"] = op
		}
		u.Object["status"] = s
		_, err = a.apps.Update(ctx, u, metav1.UpdateOptions{})
		return err
	}
}

func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("%d writes: min %s, median %s, p90 %s, max %s", len(s), r(s[0]), r(s[len(s)/2]), r(s[len(s)*9/10]), r(s[len(s)-1]))
}

// follower records each summary of one app a source shows, with when it showed it.
type follower struct {
	mu   sync.Mutex
	seen []seen
}

type seen struct {
	at  time.Time
	sum *events.AppSummary // nil: the app is gone
}

func (f *follower) add(s *events.AppSummary) {
	f.mu.Lock()
	f.seen = append(f.seen, seen{time.Now(), s})
	f.mu.Unlock()
}

// wait returns when the source first showed, at or after since, a summary whose cd
// block matches want (want nil: no summary at all), or fails after 10 s.
func (f *follower) wait(t *testing.T, what string, since time.Time, want func(*events.CDStatus) bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		var last seen
		for _, s := range f.seen {
			if s.at.Before(since) {
				continue
			}
			last = s
			if (want == nil && s.sum == nil) || (want != nil && s.sum != nil && want(s.sum.CD)) {
				f.mu.Unlock()
				return s.at
			}
		}
		f.mu.Unlock()
		if time.Now().After(deadline) {
			b, _ := json.Marshal(last.sum)
			t.Fatalf("%s: not shown within 10 s; last seen %s", what, b)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startSummaries serves the summaries family's /events on Redis at addr.
func startSummaries(t *testing.T, env *clustertest.Env, addr, cluster string) string {
	t.Helper()
	f := summaries.New()
	if err := f.Start(context.Background(), map[string]string{
		"DWP_KUBECONFIG": env.Kubeconfig, "DWP_REDIS_ADDR": addr, "DWP_CLUSTER_NAME": cluster,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	r := httprouter.New()
	er := eventrouter.New()
	f.Events(er)
	r.Handler(http.MethodPost, "/events", er)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// startRouter serves an SSE router whose apps stream reads rdb, and returns its URL.
func startRouter(t *testing.T, ctx context.Context, env *clustertest.Env, rdb *redis.Client, cluster string) string {
	t.Helper()
	clusters, err := kube.Load(kube.Options{Kubeconfig: env.Kubeconfig, QPS: 100, Burst: 200})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Heartbeat: 15 * time.Second, Retry: time.Second, Linger: 10 * time.Second, QueueSize: 256,
		WriteTimeout: 5 * time.Second, WatchReplay: 1000, LogReplay: 1000, WorkflowLogReplay: 10000,
		MetricsInterval: 5 * time.Second, AuthCacheTTL: 2 * time.Second, AppLabel: "app",
		TokenCookie: "dwp_token", MaxSubscriptions: 8, ShutdownTimeout: 5 * time.Second,
	}
	apps := upstream.NewSummaryApps(rdb, "dwp:", map[string]string{clusters.Default().Name: cluster})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(cfg, server.Deps{Clusters: clusters, Apps: apps, Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx, ln); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return "http://" + ln.Addr().String()
}

// followStream reads an apps stream as a browser would, recording app's summaries.
func followStream(t *testing.T, ctx context.Context, url, token, app string) *follower {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("open %s: %d %s", url, resp.StatusCode, b)
	}
	t.Cleanup(func() { resp.Body.Close() })
	f := &follower{}
	type item struct {
		Type    string             `json:"type"`
		App     string             `json:"app"`
		Summary *events.AppSummary `json:"summary"`
	}
	go func() {
		r := sse.NewReader(resp.Body)
		for {
			ev, err := r.Next()
			if err != nil {
				return
			}
			var items []item
			switch ev.Type {
			case api.EventSnapshot, api.EventRelist:
				var l struct{ Items []item }
				_ = json.Unmarshal([]byte(ev.Data), &l)
				items = l.Items
			case api.EventApp, api.EventDeleted:
				var it item
				_ = json.Unmarshal([]byte(ev.Data), &it)
				items = []item{it}
			}
			for _, it := range items {
				if it.App == app {
					f.add(it.Summary)
				}
			}
		}
	}()
	return f
}
