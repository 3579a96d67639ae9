package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// History of a namespace's pod usage, read from Prometheus: the hour before a stream
// starts, so that a chart opens with it and then moves with the live `metrics` events.
const (
	historyRange = time.Hour
	historyStep  = 15 * time.Second
	// historyRateWindow holds several scrapes at any usual interval (the local plane's is
	// 5 s) and two steps.
	historyRateWindow = 30 * time.Second
	// historyTimeout bounds one fetch (both queries): a stream waits for it before its
	// first event, and goes on without history after it.
	historyTimeout = 10 * time.Second
	// historyMaxAge is how long a fetched history is given to joining viewers before the
	// next one fetches again: the gap it leaves before the live usage is at most this.
	historyMaxAge = 30 * time.Second
	// historyFailedAge is how long a failed fetch is remembered, so that a Prometheus that
	// is down is asked (and logged about) once in that time per namespace, not per viewer.
	historyFailedAge = 10 * time.Second
)

// errHistoryClosed is the fetch asked of a namespace whose poller is stopping.
var errHistoryClosed = errors.New("metric history: the namespace's poller stopped")

// usageSample is one moment of one container's usage; either value may be missing (the
// first scrapes of a container have a memory value but no CPU rate yet).
type usageSample struct {
	t           int64 // Unix milliseconds
	cpuMillis   int64
	memoryBytes int64
	hasCPU      bool
	hasMemory   bool
}

// nsHistory is a namespace's usage history: each pod's containers' samples, in time
// order. It is never changed once made, so many streams read it at once.
type nsHistory struct {
	start, end time.Time
	step       time.Duration
	pods       map[string]map[string][]usageSample // pod → container → samples
}

// newNSHistory puts the two queries' series together by pod, container and time. Series
// without a pod or container label (none are asked for) are left out.
func newNSHistory(start, end time.Time, step time.Duration, cpu, memory []promSeries) *nsHistory {
	type key struct{ pod, container string }
	byKey := map[key]map[int64]*usageSample{}
	add := func(series []promSeries, set func(*usageSample, float64) bool) {
		for _, s := range series {
			k := key{s.Metric["pod"], s.Metric["container"]}
			if k.pod == "" || k.container == "" {
				continue
			}
			m := byKey[k]
			if m == nil {
				m = map[int64]*usageSample{}
				byKey[k] = m
			}
			for _, p := range s.Points {
				t := p.T.UnixMilli()
				smp := m[t]
				if smp == nil {
					smp = &usageSample{t: t}
				}
				if set(smp, p.V) {
					m[t] = smp
				}
			}
		}
	}
	add(cpu, func(s *usageSample, cores float64) bool {
		v, ok := wholeUnits(cores * 1000)
		s.cpuMillis, s.hasCPU = v, ok
		return ok || s.hasMemory
	})
	add(memory, func(s *usageSample, bytes float64) bool {
		v, ok := wholeUnits(bytes)
		s.memoryBytes, s.hasMemory = v, ok
		return ok || s.hasCPU
	})
	h := &nsHistory{start: start.UTC(), end: end.UTC(), step: step, pods: map[string]map[string][]usageSample{}}
	for k, m := range byKey {
		if len(m) == 0 {
			continue
		}
		samples := make([]usageSample, 0, len(m))
		for _, s := range m {
			samples = append(samples, *s)
		}
		slices.SortFunc(samples, func(a, b usageSample) int { return cmpInt64(a.t, b.t) })
		if h.pods[k.pod] == nil {
			h.pods[k.pod] = map[string][]usageSample{}
		}
		h.pods[k.pod][k.container] = samples
	}
	return h
}

// wholeUnits rounds v to an integer, refusing what is negative or too large to be a
// usage (a float64 holds integers exactly up to 2^53).
func wholeUnits(v float64) (int64, bool) {
	if math.IsNaN(v) || v < 0 || v > 1<<53 {
		return 0, false
	}
	return int64(math.Round(v)), true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// UsagePoint is one moment of a `history` event: a container's usage, a pod's (the sum
// over its containers) or the total (the sum over the pods). A value is absent when
// there is none for that moment.
type UsagePoint struct {
	Time        time.Time `json:"time"`
	CPUMillis   *int64    `json:"cpuMillis,omitempty"`
	MemoryBytes *int64    `json:"memoryBytes,omitempty"`
}

// PodHistory is one pod's usage over time in a `history` event.
type PodHistory struct {
	Name       string             `json:"name"`
	Points     []UsagePoint       `json:"points"`
	Containers []ContainerHistory `json:"containers"`
}

// ContainerHistory is one container's usage over time.
type ContainerHistory struct {
	Name   string       `json:"name"`
	Points []UsagePoint `json:"points"`
}

// historyPayload is the data of a `history` event: the stream's pods as the `metrics`
// events show them (pods with their containers, and the total), over time.
type historyPayload struct {
	Type string `json:"type"`
	// Available is false when no history could be read; Message says so for people.
	Available bool   `json:"available"`
	Message   string `json:"message,omitempty"`
	// Start and End bound the points; Step is their spacing, as a Go duration.
	Start *time.Time   `json:"start,omitempty"`
	End   *time.Time   `json:"end,omitempty"`
	Step  string       `json:"step,omitempty"`
	Pods  []PodHistory `json:"pods"`
	Total []UsagePoint `json:"total"`
}

// historyUnavailable is what a stream gets when its history could not be read: it has
// no id, so a client that reconnects is not taken to have one.
var historyUnavailable = hub.NewMessage(false, hub.NewEvent(api.EventHistory, "", api.Marshal(historyPayload{
	Type: api.EventHistory, Message: "the usage history is unavailable", Pods: []PodHistory{}, Total: []UsagePoint{},
})))

// view is the history of the pods keep accepts (all when keep is nil), with the points
// after `after` and up to `until` (either zero: unbounded). ok is false when no point
// is left.
func (h *nsHistory) view(keep func(pod string) bool, after, until time.Time) (historyPayload, bool) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !after.IsZero() {
		lo = after.UnixMilli()
	}
	if !until.IsZero() {
		hi = until.UnixMilli()
	}
	p := historyPayload{Type: api.EventHistory, Available: true, Step: h.step.String(), Pods: []PodHistory{}, Total: []UsagePoint{}}
	total := map[int64]*UsagePoint{}
	var first, last int64 = math.MaxInt64, math.MinInt64
	for _, pod := range sortedKeys(h.pods) {
		if keep != nil && !keep(pod) {
			continue
		}
		ph := PodHistory{Name: pod, Points: []UsagePoint{}, Containers: []ContainerHistory{}}
		sums := map[int64]*UsagePoint{}
		for _, c := range sortedKeys(h.pods[pod]) {
			ch := ContainerHistory{Name: c, Points: []UsagePoint{}}
			for _, s := range h.pods[pod][c] {
				if s.t <= lo || s.t > hi {
					continue
				}
				first, last = min(first, s.t), max(last, s.t)
				ch.Points = append(ch.Points, s.point())
				addSample(sums, s)
				addSample(total, s)
			}
			if len(ch.Points) > 0 {
				ph.Containers = append(ph.Containers, ch)
			}
		}
		if len(ph.Containers) == 0 {
			continue
		}
		ph.Points = sortedPoints(sums)
		p.Pods = append(p.Pods, ph)
	}
	if len(p.Pods) == 0 {
		return p, false
	}
	p.Total = sortedPoints(total)
	start, end := time.UnixMilli(first).UTC(), time.UnixMilli(last).UTC()
	p.Start, p.End = &start, &end
	return p, true
}

func (s usageSample) point() UsagePoint {
	p := UsagePoint{Time: time.UnixMilli(s.t).UTC()}
	if s.hasCPU {
		v := s.cpuMillis
		p.CPUMillis = &v
	}
	if s.hasMemory {
		v := s.memoryBytes
		p.MemoryBytes = &v
	}
	return p
}

// addSample adds s into the sums by time.
func addSample(sums map[int64]*UsagePoint, s usageSample) {
	p := sums[s.t]
	if p == nil {
		p = &UsagePoint{Time: time.UnixMilli(s.t).UTC()}
		sums[s.t] = p
	}
	if s.hasCPU {
		p.CPUMillis = addTo(p.CPUMillis, s.cpuMillis)
	}
	if s.hasMemory {
		p.MemoryBytes = addTo(p.MemoryBytes, s.memoryBytes)
	}
}

func addTo(sum *int64, v int64) *int64 {
	if sum == nil {
		return &v
	}
	*sum += v
	return sum
}

func sortedPoints(m map[int64]*UsagePoint) []UsagePoint {
	out := make([]UsagePoint, 0, len(m))
	for _, t := range sortedKeys(m) {
		out = append(out, *m[t])
	}
	return out
}

func sortedKeys[K interface{ ~string | ~int64 }, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// historyFetch is one reading of a namespace's history; h and err are set before done
// is closed.
type historyFetch struct {
	done chan struct{}
	at   time.Time // when it finished
	h    *nsHistory
	err  error
}

// historyCache reads a namespace's history for its poller: once when the poller starts,
// then again only for viewers joining once the last reading is historyMaxAge old. One
// reading is in flight at a time, whoever asks; viewers wait for it with their own
// context, the reading runs under the poller's.
type historyCache struct {
	prom    *promClient
	ns      string
	metrics *hub.Metrics
	log     *slog.Logger
	now     func() time.Time
	// timeout, maxAge and failedAge are historyTimeout, historyMaxAge and
	// historyFailedAge.
	timeout, maxAge, failedAge time.Duration

	mu     sync.Mutex
	cur    *historyFetch
	closed bool
	// next hands a reading to run; it never holds more than one, since a new reading is
	// made only once the last has finished.
	next chan *historyFetch
}

func newHistoryCache(prom *promClient, ns string, m *hub.Metrics, log *slog.Logger) *historyCache {
	return &historyCache{
		prom: prom, ns: ns, metrics: m, log: log, now: time.Now,
		timeout: historyTimeout, maxAge: historyMaxAge, failedAge: historyFailedAge,
		next: make(chan *historyFetch, 1),
	}
}

// get is the current reading, or a new one when the last is too old.
func (c *historyCache) get() *historyFetch {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.cur; f != nil {
		select {
		case <-f.done:
			age := c.now().Sub(f.at)
			if (f.err == nil && age < c.maxAge) || (f.err != nil && age < c.failedAge) {
				return f
			}
		default:
			return f
		}
	}
	f := &historyFetch{done: make(chan struct{})}
	if c.closed {
		f.err = errHistoryClosed
		close(f.done)
		return f
	}
	c.cur = f
	c.next <- f
	return f
}

// run reads histories as asked until ctx ends.
func (c *historyCache) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			c.closed = true
			select {
			case f := <-c.next:
				f.err, f.at = errHistoryClosed, c.now()
				close(f.done)
			default:
			}
			c.mu.Unlock()
			return
		case f := <-c.next:
			h, err := c.fetch(ctx)
			c.mu.Lock()
			f.h, f.err, f.at = h, err, c.now()
			close(f.done)
			c.mu.Unlock()
		}
	}
}

// fetch runs the two range queries of the last historyRange.
func (c *historyCache) fetch(ctx context.Context) (*nsHistory, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	end := c.now()
	start := end.Add(-historyRange)
	kind := string(api.KindPodMetrics)
	c.metrics.Request(kind, "history")
	cpu, err := c.prom.queryRange(ctx, cpuQuery(c.ns, historyRateWindow), start, end, historyStep)
	if err == nil {
		var mem []promSeries
		if mem, err = c.prom.queryRange(ctx, memoryQuery(c.ns), start, end, historyStep); err == nil {
			return newNSHistory(start, end, historyStep, cpu, mem), nil
		}
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil, err // the poller is stopping: nothing to report
	}
	c.metrics.Error(kind)
	c.log.Warn("metric history unavailable; streams go on with live usage only", "namespace", c.ns, "err", err)
	return nil, fmt.Errorf("metric history of namespace %q: %w", c.ns, err)
}

// historyID is the id of a `history` event: the time of its last point, as the live
// events' ids are their polls' times (Unix nanoseconds). A client resuming with it is
// sent only what came after.
func historyID(end time.Time) string { return strconv.FormatInt(end.UnixNano(), 10) }

// podSet is a sorted list of pod names, for one stream's view of the history.
type podSet []string

func (s podSet) has(pod string) bool {
	_, ok := slices.BinarySearch(s, pod)
	return ok
}

func (s podSet) key() string { return strings.Join(s, "\x00") }

// awaitHistory waits for the history a joining subscriber is owed: the namespace's
// current reading, and the first poll. It is nil when the stream has no history, or
// when the subscriber resumes from an id that is no time (it has a history, and cannot
// say up to when).
func (t *metricsTopic) awaitHistory(ctx context.Context, r api.Resume) (*historyFetch, error) {
	if !t.withHistory || (r.Set && !r.HasRV) {
		return nil, nil
	}
	select {
	case <-t.attached:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if t.poller.history == nil {
		return nil, nil
	}
	f := t.poller.history.get()
	// The reading ends within its timeout; so does the wait for the first poll.
	deadline := time.NewTimer(t.poller.history.timeout)
	defer deadline.Stop()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// The first poll says which pods an app's stream shows, and where the history must
	// end: the live usage sent after it must not be older than its last point.
	select {
	case <-t.polled:
	case <-deadline.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return f, nil
}

// historyLocked is the `history` message for a subscriber: the stream's pods' points
// after its resume position (all of them for a new one), up to the latest usage it is
// sent next, so that its points go forward in time. New subscribers share one encoding
// until the reading, the pods or the latest usage change. It is nil when the subscriber
// is owed nothing.
func (t *metricsTopic) historyLocked(f *historyFetch, r api.Resume) *hub.Message {
	fresh := !r.Set
	if f.err != nil {
		if fresh {
			return historyUnavailable
		}
		return nil
	}
	var keep func(string) bool
	pods := ""
	if !t.selector.Empty() {
		select {
		case <-t.polled:
		default:
			// Which pods the selector matches is not known yet.
			if fresh {
				return historyUnavailable
			}
			return nil
		}
		keep, pods = t.pods.has, t.pods.key()
	}
	var until time.Time
	if t.latest != nil {
		until = t.latestAt
	}
	if fresh && t.histMsg != nil && t.histFetch == f && t.histPods == pods && t.histUntil.Equal(until) {
		return t.histMsg
	}
	var after time.Time
	if !fresh {
		if r.RV > math.MaxInt64 {
			return nil
		}
		after = time.Unix(0, int64(r.RV))
	}
	p, ok := f.h.view(keep, after, until)
	end := f.h.end
	switch {
	case ok:
		end = *p.End
	case !fresh:
		return nil
	case !until.IsZero() && until.Before(end):
		end = until
	}
	msg := hub.NewMessage(false, hub.NewEvent(api.EventHistory, historyID(end), api.Marshal(p)))
	if fresh {
		t.histMsg, t.histFetch, t.histPods, t.histUntil = msg, f, pods, until
	}
	return msg
}
