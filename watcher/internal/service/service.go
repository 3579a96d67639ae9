// Package service runs the watcher: it serves /healthz, /readyz and /metrics, takes part
// in the leader election (a Lease), and while it leads, watches the cluster and delivers
// the events. Only the leader emits; a replica that loses the lease stops emitting at
// once and campaigns again, and a new leader starts with a full-state round.
package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/watcher/internal/config"
	"github.com/dwp-sre/dwp-sre/watcher/internal/sink"
	"github.com/dwp-sre/dwp-sre/watcher/internal/watch"
)

// Run runs the watcher until ctx ends.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	rc, err := kube.RESTConfig(cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("DWP_KUBECONFIG: %w", err)
	}
	rc.UserAgent = "dwp-watcher"
	kubeClient, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	argo, err := argoclient.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("argo client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	opts := []cehttp.Option{cehttp.WithTarget(cfg.Sink)}
	if cfg.TokenFile != "" {
		tf, err := sink.NewTokenFile(cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("DWP_SINK_TOKEN_FILE: %w", err)
		}
		opts = append(opts, cehttp.WithRoundTripper(tf.Transport(nil)))
	} else {
		log.Warn("no DWP_SINK_TOKEN_FILE: events are sent without a token, and a receiver that checks senders refuses them")
	}
	client, err := cloudevents.NewClientHTTP(opts...)
	if err != nil {
		return fmt.Errorf("cloudevents client for %s: %w", cfg.Sink, err)
	}
	s := &Service{cfg: cfg, log: log, kube: kubeClient, argo: argo, dyn: dyn, sender: overrides{client, cfg.Overrides}, reg: prometheus.NewRegistry()}
	return s.Run(ctx)
}

// overrides sets K_CE_OVERRIDES' extensions on every event.
type overrides struct {
	sink.Sender
	ext map[string]string
}

func (o overrides) Send(ctx context.Context, e event.Event) protocol.Result {
	if len(o.ext) > 0 {
		e = e.Clone()
		for k, v := range o.ext {
			e.SetExtension(k, v)
		}
	}
	return o.Sender.Send(ctx, e)
}

// Service is the watcher's process.
type Service struct {
	cfg    config.Config
	log    *slog.Logger
	kube   kubernetes.Interface
	argo   argoclient.Interface
	dyn    dynamic.Interface
	sender sink.Sender
	reg    *prometheus.Registry

	leading  atomic.Bool
	watching atomic.Pointer[watch.Watcher]
	elector  atomic.Pointer[leaderelection.LeaderElector]
}

// Run serves the health and metrics endpoints and leads or stands by until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	leader := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dwp_watcher_leader", Help: "1 while this replica leads (emits events)."})
	s.reg.MustRegister(leader)
	sinkMetrics := sink.NewMetrics(s.reg)
	watchMetrics := watch.NewMetrics(s.reg)

	ln, err := net.Listen("tcp", s.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.ListenAddress, err)
	}
	srv := &http.Server{Handler: s.mux(), ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.log.Info("watcher serving health and metrics", "address", ln.Addr().String(), "sink", s.cfg.Sink, "cluster", s.cfg.Cluster)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	lead := func(ctx context.Context) error {
		leader.Set(1)
		s.leading.Store(true)
		defer func() { s.leading.Store(false); leader.Set(0); s.watching.Store(nil) }()
		sk := sink.New(s.sender, sinkMetrics, sink.Options{
			Workers: s.cfg.SendWorkers, Timeout: s.cfg.SendTimeout, RetryMaxDelay: s.cfg.RetryMaxDelay,
			DrainTimeout: s.cfg.ShutdownTimeout, Log: s.log,
		})
		wc := watch.Config{
			Cluster: s.cfg.Cluster, AppLabel: s.cfg.AppLabel, TaskLabel: s.cfg.TaskLabel,
			Namespaces: s.cfg.Namespaces, Resync: s.cfg.Resync, PageSize: s.cfg.ListPageSize,
			StepRecheck: s.cfg.StepRecheck, RebuildCheck: s.cfg.RebuildCheck,
		}
		if s.cfg.Redis.Addr != "" {
			rdb := s.cfg.Redis.Client()
			defer rdb.Close()
			store := summarystore.New(rdb, s.cfg.Redis.Prefix)
			wc.Rebuilding = func(ctx context.Context) (bool, error) { return store.Rebuilding(ctx, s.cfg.Cluster) }
		}
		w := watch.New(wc, s.kube, s.argo, sk, watchMetrics, s.log)
		if s.dyn != nil && s.cfg.ArgoCDNamespace != "" {
			w.WatchApplications(s.dyn, s.cfg.ArgoCDNamespace)
		}
		s.watching.Store(w)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); sk.Run(ctx) }()
		err := w.Run(ctx)
		if err != nil {
			s.log.Error("watching failed", "err", err)
		}
		<-ctx.Done()
		wg.Wait()
		return err
	}

	done := make(chan error, 1)
	go func() {
		if !s.cfg.LeaderElect {
			done <- lead(ctx)
			return
		}
		done <- s.campaign(ctx, lead)
	}()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case err := <-done:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// campaign takes part in the election until ctx ends, leading with lead whenever it holds
// the lease. After losing the lease it waits until lead has returned (so that two
// pipelines never run at once) and campaigns again.
func (s *Service) campaign(ctx context.Context, lead func(context.Context) error) error {
	id, err := identity()
	if err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: s.cfg.LeaseNamespace, Name: s.cfg.LeaseName},
		Client:     s.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	// pipeline is held while lead runs: OnStartedLeading runs in a goroutine of the
	// elector's, which may outlive its Run; the next term's lead waits for it.
	var pipeline sync.Mutex
	defer func() { pipeline.Lock(); pipeline.Unlock() }()
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: "dwp-watcher", ReleaseOnCancel: true,
			LeaseDuration: s.cfg.LeaseDuration, RenewDeadline: s.cfg.LeaseRenewDeadline, RetryPeriod: s.cfg.LeaseRetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					pipeline.Lock()
					defer pipeline.Unlock()
					if ctx.Err() != nil {
						return
					}
					s.log.Info("leading: emitting events", "identity", id, "lease", s.cfg.LeaseNamespace+"/"+s.cfg.LeaseName)
					_ = lead(ctx)
				},
				OnStoppedLeading: func() { s.log.Info("not leading", "identity", id) },
				OnNewLeader: func(leader string) {
					if leader != id {
						s.log.Info("standing by", "leader", leader)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		s.elector.Store(le)
		le.Run(ctx)
	}
	return nil
}

func identity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("hostname: %w", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return host + "_" + hex.EncodeToString(b[:]), nil
}

// Ready: a standby replica is ready (it waits as it should); a leader once its informers
// have synced and its first full-state round is queued.
func (s *Service) Ready() error {
	if !s.leading.Load() {
		return nil
	}
	if w := s.watching.Load(); w == nil || !w.Synced() {
		return errors.New("leading, informers not yet synced")
	}
	return nil
}

// Healthy fails when this replica believes it leads but its lease has expired for longer
// than it should (its renewals are stuck).
func (s *Service) Healthy() error {
	if le := s.elector.Load(); le != nil {
		return le.Check(s.cfg.LeaseDuration)
	}
	return nil
}

func (s *Service) mux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	return mux
}
