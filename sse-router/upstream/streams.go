// Package stream holds the router's kinds of stream: shared watches (pods, workflows,
// events), pod log follows, merged workflow logs, pod metrics polls, app summaries and
// apps' Argo CD Applications, each a topic many subscribers share, and the parsing of
// stream requests.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// Topic is a shared stream.
type Topic interface {
	// Subscribe attaches s, first delivering what it is owed: a snapshot, the lines asked
	// for, or what it missed since its Last-Event-ID. It may wait (until ctx ends) for the
	// topic's first data.
	Subscribe(ctx context.Context, s *hub.Subscription, j Join) error
	// Unsubscribe detaches s.
	Unsubscribe(s *hub.Subscription)
}

// Join is what a subscriber asks of a topic.
type Join struct {
	Spec   api.Spec
	Resume api.Resume
}

// Errors of Open.
var (
	ErrUnknownCluster = errors.New("unknown cluster")
	// ErrNotConfigured: the router is not configured for this kind of stream.
	ErrNotConfigured = errors.New("stream not configured")
)

// Config tunes the topics. Zero values take the defaults.
type Config struct {
	// Linger is how long a topic outlives its last subscriber (default 30 s).
	Linger time.Duration
	// WatchReplay is how many changes a watch topic keeps for resuming (default 1000).
	WatchReplay int
	// LogReplay is how many lines a pod log topic keeps (default 1000).
	LogReplay int
	// WorkflowLogReplay is how many lines a workflow log topic keeps (default 10000).
	WorkflowLogReplay int
	// MetricsInterval is the PodMetrics poll interval (default 15 s).
	MetricsInterval time.Duration
	// MergeWindow is how long workflow log lines wait to be merged in time order
	// (default 200 ms).
	MergeWindow time.Duration
	// DrainIdle: a finished workflow pod's log follow is closed after this long without a
	// line (default 2 s).
	DrainIdle time.Duration
	// MinBackoff and MaxBackoff bound retries of failed upstreams (200 ms, 10 s).
	MinBackoff, MaxBackoff time.Duration
	// Apps serves app summaries; nil leaves the apps stream unavailable.
	Apps AppsSource
	// ArgoCDNamespace is where Argo CD's Applications live; "" leaves the application
	// stream unavailable.
	ArgoCDNamespace string
	// PrometheusURL is the Prometheus holding the default cluster's container usage
	// (kubelet resource metrics); pod metrics streams of that cluster start with the last
	// hour of it. "" sends none.
	PrometheusURL string

	Metrics *hub.Metrics
	Logger  *slog.Logger
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Linger, 30*time.Second)
	defInt(&c.WatchReplay, 1000)
	defInt(&c.LogReplay, 1000)
	defInt(&c.WorkflowLogReplay, 10000)
	def(&c.MetricsInterval, 15*time.Second)
	def(&c.MergeWindow, 200*time.Millisecond)
	def(&c.DrainIdle, 2*time.Second)
	def(&c.MinBackoff, 200*time.Millisecond)
	def(&c.MaxBackoff, 10*time.Second)
	if c.Metrics == nil {
		c.Metrics = hub.NewMetrics(nil)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Streams opens topics, sharing one per key.
type Streams struct {
	clusters *kube.Clusters
	cfg      Config

	watches  map[api.Kind]*hub.Registry[*watchTopic]
	podLogs  *hub.Registry[*podLogTopic]
	wfLogs   *hub.Registry[*workflowLogTopic]
	pollers  *hub.Registry[*metricsPoller]
	podUsage *hub.Registry[*metricsTopic]
	apps     *hub.Registry[*appsTopic]
	argoApps *hub.Registry[*applicationTopic]
	// prom reads usage history for the streams of cluster promCluster (nil: none).
	prom        *promClient
	promCluster string
	// dynamic reads Applications, by cluster name (none for a cluster without a
	// rest.Config, as in tests with fake clients).
	dynamic map[string]dynamic.Interface
}

// New makes the streams of clusters; topics run under ctx.
func New(ctx context.Context, clusters *kube.Clusters, cfg Config) *Streams {
	cfg.defaults()
	dyn := map[string]dynamic.Interface{}
	for _, name := range clusters.Names() {
		cl, _ := clusters.Get(name)
		if cl.Config == nil {
			continue
		}
		d, err := dynamic.NewForConfig(cl.Config)
		if err != nil {
			cfg.Logger.Warn("no client for Argo CD's Applications", "cluster", name, "err", err)
			continue
		}
		dyn[name] = d
	}
	var prom *promClient
	if cfg.PrometheusURL != "" {
		var err error
		if prom, err = newPromClient(cfg.PrometheusURL, nil); err != nil {
			cfg.Logger.Error("no metric history", "err", err)
		}
	}
	reg := func(kind api.Kind) *hub.Registry[*watchTopic] {
		return hub.NewRegistry[*watchTopic](ctx, string(kind), cfg.Linger, cfg.Metrics)
	}
	return &Streams{
		clusters: clusters,
		cfg:      cfg,
		watches: map[api.Kind]*hub.Registry[*watchTopic]{
			api.KindPods: reg(api.KindPods), api.KindWorkflows: reg(api.KindWorkflows), api.KindWorkflow: reg(api.KindWorkflow), api.KindEvents: reg(api.KindEvents),
		},
		podLogs:  hub.NewRegistry[*podLogTopic](ctx, string(api.KindPodLog), cfg.Linger, cfg.Metrics),
		wfLogs:   hub.NewRegistry[*workflowLogTopic](ctx, string(api.KindWorkflowLog), cfg.Linger, cfg.Metrics),
		pollers:  hub.NewRegistry[*metricsPoller](ctx, string(api.KindPodMetrics), cfg.Linger, cfg.Metrics),
		podUsage: hub.NewRegistry[*metricsTopic](ctx, string(api.KindPodMetrics)+"_app", cfg.Linger, cfg.Metrics),
		apps:     hub.NewRegistry[*appsTopic](ctx, string(api.KindApps), cfg.Linger, cfg.Metrics),
		argoApps: hub.NewRegistry[*applicationTopic](ctx, string(api.KindApplication), cfg.Linger, cfg.Metrics),
		dynamic:  dyn,
		prom:     prom,
		// One Prometheus is configured: the default cluster's.
		promCluster: clusters.Default().Name,
	}
}

// Open returns the topic serving spec (shared with every equal spec) and the function to
// call when done with it.
func (s *Streams) Open(spec api.Spec) (Topic, func(), error) {
	cl, ok := s.clusters.Get(spec.Cluster)
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownCluster, spec.Cluster)
	}
	key := spec.Key(s.clusters.Default().Name)
	ns := spec.Namespace
	cfg := s.cfg
	backoff := [2]time.Duration{cfg.MinBackoff, cfg.MaxBackoff}
	switch spec.Kind {
	case api.KindPods, api.KindWorkflows, api.KindWorkflow, api.KindEvents:
		t, release := s.watches[spec.Kind].Acquire(key, func() *watchTopic {
			loop := &listWatch{
				kind: string(spec.Kind), metrics: cfg.Metrics, log: cfg.Logger,
				labelSelector: spec.Selector, fieldSelector: spec.FieldSelector(),
				minBackoff: cfg.MinBackoff, maxBackoff: cfg.MaxBackoff,
			}
			prepare := stripMeta
			switch spec.Kind {
			case api.KindPods:
				loop.lw = listWatcherFor(cl.Kubernetes.CoreV1().Pods(ns))
			case api.KindEvents:
				loop.lw = listWatcherFor(cl.Kubernetes.CoreV1().Events(ns))
			default:
				if spec.Kind == api.KindWorkflows {
					prepare = stripWorkflowForList
				}
				loop.lw = listWatcherFor(cl.Argo.ArgoprojV1alpha1().Workflows(ns))
			}
			return newWatchTopic(loop, prepare, cfg.WatchReplay)
		})
		return t, release, nil
	case api.KindPodLog:
		if !spec.Follow {
			return &oneShotLog{cs: cl.Kubernetes, ns: ns, pod: spec.Name, container: spec.Container, metrics: cfg.Metrics, log: cfg.Logger}, func() {}, nil
		}
		t, release := s.podLogs.Acquire(key, func() *podLogTopic {
			return newPodLogTopic(cl.Kubernetes, ns, spec.Name, spec.Container, cfg.LogReplay, cfg.Metrics, cfg.Logger, backoff)
		})
		return t, release, nil
	case api.KindWorkflowLog:
		t, release := s.wfLogs.Acquire(key, func() *workflowLogTopic {
			return newWorkflowLogTopic(cl.Kubernetes, cl.Argo, ns, spec.Name, spec.Container, workflowLogOptions{
				replay: cfg.WorkflowLogReplay, window: cfg.MergeWindow, maxWait: max(5*cfg.MergeWindow, time.Second),
				drainIdle: cfg.DrainIdle, backoff: backoff,
			}, cfg.Metrics, cfg.Logger)
		})
		return t, release, nil
	case api.KindPodMetrics:
		sel, err := labels.Parse(spec.Selector)
		if err != nil {
			return nil, nil, fmt.Errorf("selector: %w", err)
		}
		pollerKey := api.Spec{Kind: api.KindPodMetrics, Cluster: spec.Cluster, Namespace: ns}.Key(s.clusters.Default().Name)
		withHistory := s.prom != nil && cl.Name == s.promCluster
		t, release := s.podUsage.Acquire(key, func() *metricsTopic {
			return newMetricsTopic(sel, withHistory, func() (*metricsPoller, func()) {
				return s.pollers.Acquire(pollerKey, func() *metricsPoller {
					var history *historyCache
					if withHistory {
						history = newHistoryCache(s.prom, ns, cfg.Metrics, cfg.Logger)
					}
					return newMetricsPoller(cl.Metrics, ns, cfg.MetricsInterval, history, cfg.Metrics, cfg.Logger)
				})
			})
		})
		return t, release, nil
	case api.KindApps:
		if cfg.Apps == nil {
			return nil, nil, fmt.Errorf("%w: app summaries are not configured", ErrNotConfigured)
		}
		t, release := s.apps.Acquire(key, func() *appsTopic {
			return newAppsTopic(cfg.Apps, cl.Name, ns, cfg.Metrics, cfg.Logger, backoff)
		})
		return t, release, nil
	case api.KindApplication:
		dyn := s.dynamic[cl.Name]
		switch {
		case cfg.ArgoCDNamespace == "":
			return nil, nil, fmt.Errorf("%w: Argo CD's namespace is not configured", ErrNotConfigured)
		case dyn == nil:
			return nil, nil, fmt.Errorf("%w: no client for Argo CD's Applications on cluster %q", ErrNotConfigured, cl.Name)
		}
		t, release := s.argoApps.Acquire(key, func() *applicationTopic {
			return newApplicationTopic(&listWatch{
				kind: string(spec.Kind), metrics: cfg.Metrics, log: cfg.Logger,
				lw:            listWatcherFor(dyn.Resource(ApplicationsResource).Namespace(cfg.ArgoCDNamespace)),
				labelSelector: spec.Selector, fieldSelector: spec.FieldSelector(),
				minBackoff: cfg.MinBackoff, maxBackoff: cfg.MaxBackoff,
			}, spec.ApplicationName())
		})
		return t, release, nil
	}
	return nil, nil, fmt.Errorf("%w: kind %q", ErrNotConfigured, spec.Kind)
}

// Wait waits for every topic to stop, once the context given to New has ended.
func (s *Streams) Wait() {
	for _, r := range s.watches {
		r.Wait()
	}
	s.podLogs.Wait()
	s.wfLogs.Wait()
	s.podUsage.Wait()
	s.pollers.Wait()
	s.apps.Wait()
	s.argoApps.Wait()
}

// stripMeta drops what no portal page shows and costs bytes on every event.
func stripMeta(obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	m.SetManagedFields(nil)
	if a := m.GetAnnotations(); a != nil {
		delete(a, "kubectl.kubernetes.io/last-applied-configuration")
	}
}

// stripWorkflowForList also drops a workflow's node statuses and stored templates, which
// can be megabytes, from workflow lists; the one-workflow stream keeps them.
func stripWorkflowForList(obj runtime.Object) {
	stripMeta(obj)
	if wf, ok := obj.(*wfv1.Workflow); ok {
		wf.Status.Nodes = nil
		wf.Status.CompressedNodes = ""
		wf.Status.StoredTemplates = nil
		wf.Status.StoredWorkflowSpec = nil
		wf.Status.TaskResultsCompletionStatus = nil
	}
}
