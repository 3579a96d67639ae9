package upstream

import (
	"bytes"
	"context"
	"fmt"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// metricsPoller lists the PodMetrics of one namespace at an interval (metrics-server
// refreshes them every 15 s or so), once for all the apps watched in that namespace.
type metricsPoller struct {
	mc       metricsclient.Interface
	ns       string
	interval time.Duration
	metrics  *hub.Metrics
	log      *slog.Logger

	mu    sync.Mutex
	views map[*metricsTopic]struct{}
	last  *metricsv1beta1.PodMetricsList
	at    time.Time
	err   error
}

func newMetricsPoller(mc metricsclient.Interface, ns string, interval time.Duration, m *hub.Metrics, log *slog.Logger) *metricsPoller {
	return &metricsPoller{mc: mc, ns: ns, interval: interval, metrics: m, log: log, views: map[*metricsTopic]struct{}{}}
}

// Run polls until ctx ends.
func (p *metricsPoller) Run(ctx context.Context) {
	closed := p.metrics.UpstreamOpen(string(api.KindPodMetrics), "poll")
	defer closed()
	// Non-sliding: one poll every interval, however long a poll takes. A failed poll is
	// retried at the next: metrics-server has nothing newer before then anyway.
	wait.NonSlidingUntilWithContext(ctx, p.poll, p.interval)
}

// poll lists the namespace's PodMetrics and hands them, or the failure, to every view.
func (p *metricsPoller) poll(ctx context.Context) {
	p.metrics.Request(string(api.KindPodMetrics), "list")
	list, err := p.mc.MetricsV1beta1().PodMetricses(p.ns).List(ctx, metav1.ListOptions{})
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		p.metrics.Error(string(api.KindPodMetrics))
		p.log.Warn("pod metrics poll failed", "namespace", p.ns, "err", err)
		err = fmt.Errorf("pod metrics: %w", err)
	}
	now := time.Now()
	p.mu.Lock()
	if err == nil {
		p.last, p.at = list, now
	}
	p.err = err
	views := make([]*metricsTopic, 0, len(p.views))
	for v := range p.views {
		views = append(views, v)
	}
	p.mu.Unlock()
	for _, v := range views {
		v.update(list, now, err)
	}
}

func (p *metricsPoller) attach(v *metricsTopic) {
	p.mu.Lock()
	p.views[v] = struct{}{}
	last, at, err := p.last, p.at, p.err
	p.mu.Unlock()
	if last != nil || err != nil {
		v.update(last, at, err)
	}
}

func (p *metricsPoller) detach(v *metricsTopic) {
	p.mu.Lock()
	delete(p.views, v)
	p.mu.Unlock()
}

// metricsTopic is the metrics of one app (a label selector) in one namespace, cut from
// its namespace's shared poll. Subscribers get the latest state at once, then every
// change; a poll that changes nothing for the app sends nothing.
type metricsTopic struct {
	acquire  func() (*metricsPoller, func())
	selector labels.Selector

	audience
	latest  *hub.Message
	content []byte // the latest payload without its time, to skip repeats
}

func newMetricsTopic(selector labels.Selector, acquire func() (*metricsPoller, func())) *metricsTopic {
	return &metricsTopic{acquire: acquire, selector: selector}
}

// Run shares its namespace's poller until ctx ends.
func (t *metricsTopic) Run(ctx context.Context) {
	p, release := t.acquire()
	defer release()
	p.attach(t)
	<-ctx.Done()
	p.detach(t)
}

// PodUsage is one pod's usage in a `metrics` event.
type PodUsage struct {
	Name        string           `json:"name"`
	Timestamp   time.Time        `json:"timestamp"`
	Window      string           `json:"window"`
	CPUMillis   int64            `json:"cpuMillis"`
	MemoryBytes int64            `json:"memoryBytes"`
	Containers  []ContainerUsage `json:"containers"`
}

// ContainerUsage is one container's usage.
type ContainerUsage struct {
	Name        string `json:"name"`
	CPUMillis   int64  `json:"cpuMillis"`
	MemoryBytes int64  `json:"memoryBytes"`
}

// Usage is the sum over an app's pods.
type Usage struct {
	CPUMillis   int64 `json:"cpuMillis"`
	MemoryBytes int64 `json:"memoryBytes"`
}

type metricsContent struct {
	Pods  []PodUsage `json:"pods"`
	Total Usage      `json:"total"`
}

type metricsPayload struct {
	Type string `json:"type"`
	Time string `json:"time"`
	metricsContent
}

func (t *metricsTopic) update(list *metricsv1beta1.PodMetricsList, at time.Time, err error) {
	if err != nil {
		t.mu.Lock()
		id := ""
		if t.latest != nil {
			id = t.latest.LastID()
		}
		t.failLocked(hub.NewMessage(false, errorEvent(id, err, true)))
		t.mu.Unlock()
		return
	}
	c := metricsContent{Pods: []PodUsage{}}
	for _, pm := range list.Items {
		if !t.selector.Matches(labels.Set(pm.Labels)) {
			continue
		}
		u := PodUsage{Name: pm.Name, Timestamp: pm.Timestamp.UTC(), Window: pm.Window.Duration.String(), Containers: []ContainerUsage{}}
		for _, cm := range pm.Containers {
			cu := ContainerUsage{Name: cm.Name, CPUMillis: cm.Usage.Cpu().MilliValue(), MemoryBytes: cm.Usage.Memory().Value()}
			u.CPUMillis += cu.CPUMillis
			u.MemoryBytes += cu.MemoryBytes
			u.Containers = append(u.Containers, cu)
		}
		c.Total.CPUMillis += u.CPUMillis
		c.Total.MemoryBytes += u.MemoryBytes
		c.Pods = append(c.Pods, u)
	}
	slices.SortFunc(c.Pods, func(a, b PodUsage) int { return strings.Compare(a.Name, b.Name) })
	content := mustJSON(c)

	t.mu.Lock()
	defer t.mu.Unlock()
	t.failure = nil
	if t.latest != nil && bytes.Equal(content, t.content) {
		return
	}
	id := strconv.FormatInt(at.UnixNano(), 10)
	t.content = content
	t.latest = hub.NewMessage(false, hub.NewEvent(api.EventMetrics, id, mustJSON(metricsPayload{
		Type: api.EventMetrics, Time: at.UTC().Format(time.RFC3339Nano), metricsContent: c,
	})))
	t.fan.Broadcast(t.latest)
}

// Subscribe implements Topic: the latest state (unless the subscriber has it), then
// changes.
func (t *metricsTopic) Subscribe(_ context.Context, s *hub.Subscription, j Join) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var msg *hub.Message
	if t.latest != nil && !(j.Resume.Set && j.Resume.ID == t.latest.LastID()) {
		msg = t.latest
	}
	t.joinLocked(s, msg)
	return nil
}
