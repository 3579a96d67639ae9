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
	// history reads the namespace's usage history (nil: none is configured).
	history *historyCache

	mu    sync.Mutex
	views map[*metricsTopic]struct{}
	last  *metricsv1beta1.PodMetricsList
	at    time.Time
	err   error
}

func newMetricsPoller(mc metricsclient.Interface, ns string, interval time.Duration, history *historyCache, m *hub.Metrics, log *slog.Logger) *metricsPoller {
	return &metricsPoller{mc: mc, ns: ns, interval: interval, history: history, metrics: m, log: log, views: map[*metricsTopic]struct{}{}}
}

// Run polls until ctx ends.
func (p *metricsPoller) Run(ctx context.Context) {
	closed := p.metrics.UpstreamOpen(string(api.KindPodMetrics), "poll")
	defer closed()
	if p.history != nil {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.history.run(ctx)
		}()
		defer wg.Wait()
		// Read at once, beside the first poll, for the viewers that started the poller.
		p.history.get()
	}
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
	// withHistory: joining viewers are sent the namespace's usage history first, cut to
	// the selector's pods.
	withHistory bool
	// attached is closed once Run has the namespace's poller (poller).
	attached chan struct{}
	poller   *metricsPoller

	audience
	latest   *hub.Message
	latestAt time.Time // the latest usage's poll
	content  []byte    // the latest payload without its time, to skip repeats
	// polled is closed once the first poll's outcome is in; pods are the pods of the
	// latest usage, whose history a selective stream shows.
	polled chan struct{}
	pods   podSet
	// The latest history message for new viewers, with what it was made of.
	histMsg   *hub.Message
	histFetch *historyFetch
	histPods  string
	histUntil time.Time
}

func newMetricsTopic(selector labels.Selector, withHistory bool, acquire func() (*metricsPoller, func())) *metricsTopic {
	return &metricsTopic{
		acquire: acquire, selector: selector, withHistory: withHistory,
		attached: make(chan struct{}), polled: make(chan struct{}),
	}
}

// Run shares its namespace's poller until ctx ends.
func (t *metricsTopic) Run(ctx context.Context) {
	p, release := t.acquire()
	defer release()
	t.poller = p
	close(t.attached)
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
		t.polledLocked()
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
	content := api.Marshal(c)

	t.mu.Lock()
	defer t.mu.Unlock()
	t.polledLocked()
	t.failure = nil
	if t.latest != nil && bytes.Equal(content, t.content) {
		return
	}
	t.pods = t.pods[:0:0]
	for _, u := range c.Pods {
		t.pods = append(t.pods, u.Name)
	}
	id := strconv.FormatInt(at.UnixNano(), 10)
	t.content, t.latestAt = content, at
	t.latest = hub.NewMessage(false, hub.NewEvent(api.EventMetrics, id, api.Marshal(metricsPayload{
		Type: api.EventMetrics, Time: at.UTC().Format(time.RFC3339Nano), metricsContent: c,
	})))
	t.fan.Broadcast(t.latest)
}

// polledLocked records that the first poll's outcome is in.
func (t *metricsTopic) polledLocked() {
	select {
	case <-t.polled:
	default:
		close(t.polled)
	}
}

// Subscribe implements Topic: the usage history the subscriber lacks (when history is
// configured), the latest state (unless the subscriber has it), then changes.
func (t *metricsTopic) Subscribe(ctx context.Context, s *hub.Subscription, j Join) error {
	fetch, err := t.awaitHistory(ctx, j.Resume)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if fetch != nil {
		if hist := t.historyLocked(fetch, j.Resume); hist != nil && !s.Deliver(hist) {
			return nil
		}
	}
	var msg *hub.Message
	if t.latest != nil && !(j.Resume.Set && j.Resume.ID == t.latest.LastID()) {
		msg = t.latest
	}
	t.joinLocked(s, msg)
	return nil
}
