package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// fakeProm answers range queries of namespace ns like Prometheus: for each pod and
// container, a CPU rate and a working set at 15 s steps from base.
type fakeProm struct {
	t     *testing.T
	ns    string
	base  time.Time
	steps int
	// fail, when set, is the status every query gets; hang makes queries wait for the
	// request's end.
	fail  atomic.Int32
	hang  atomic.Bool
	asked atomic.Int32
	srv   *httptest.Server
	// stop ends hanging queries when the test ends.
	stop chan struct{}
}

// fakeContainers are the pods' containers with their CPU (cores) and memory (bytes).
var fakeContainers = []struct {
	pod, container string
	cores          float64
	bytes          int64
}{
	{"web-1", "app", 0.12, 96 << 20},
	{"web-1", "proxy", 0.0305, 10 << 20},
	{"web-2", "app", 0.5, 300 << 20},
	{"db-1", "db", 1, 1 << 30},
}

func newFakeProm(t *testing.T, ns string, base time.Time, steps int) *fakeProm {
	f := &fakeProm{t: t, ns: ns, base: base, steps: steps, stop: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { close(f.stop) }) // first: cleanups run last-in first-out
	return f
}

func (f *fakeProm) serve(w http.ResponseWriter, r *http.Request) {
	f.asked.Add(1)
	if f.hang.Load() {
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
		return
	}
	if s := f.fail.Load(); s != 0 {
		w.WriteHeader(int(s))
		fmt.Fprint(w, `{"status":"error","errorType":"internal","error":"no"}`)
		return
	}
	q := r.PostFormValue("query")
	var value func(cores float64, bytes int64) string
	switch q {
	case cpuQuery(f.ns, historyRateWindow):
		value = func(c float64, _ int64) string { return strconv.FormatFloat(c, 'f', -1, 64) }
	case memoryQuery(f.ns):
		value = func(_ float64, b int64) string { return strconv.FormatInt(b, 10) }
	default:
		f.t.Errorf("unexpected query %q", q)
		http.Error(w, "unexpected query", http.StatusBadRequest)
		return
	}
	var res []string
	for _, c := range fakeContainers {
		var vals []string
		for i := range f.steps {
			ts := f.base.Add(time.Duration(i) * historyStep)
			vals = append(vals, fmt.Sprintf(`[%s,%q]`, promTime(ts), value(c.cores, c.bytes)))
		}
		res = append(res, fmt.Sprintf(`{"metric":{"pod":%q,"container":%q},"values":[%s]}`, c.pod, c.container, strings.Join(vals, ",")))
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[%s]}}`, strings.Join(res, ","))
}

// historyTopic is a metrics topic of ns with history from prom, attached to a poller
// that the test drives by calling update.
func historyTopic(t *testing.T, selector string, prom *fakeProm, now time.Time) (*metricsTopic, *historyCache) {
	t.Helper()
	sel, err := labels.Parse(selector)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := newPromClient(prom.srv.URL, prom.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	cache := newHistoryCache(pc, prom.ns, hub.NewMetrics(nil), slog.New(slog.DiscardHandler))
	cache.now = func() time.Time { return now }
	cache.timeout = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cache.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	topic := newMetricsTopic(sel, true, nil)
	topic.poller = &metricsPoller{history: cache}
	close(topic.attached)
	return topic, cache
}

// podMetrics is a poll's answer: each pod's containers as fakeContainers has them.
func podMetrics() *metricsv1beta1.PodMetricsList {
	list := &metricsv1beta1.PodMetricsList{}
	index := map[string]int{}
	for _, c := range fakeContainers {
		i, ok := index[c.pod]
		if !ok {
			i = len(list.Items)
			index[c.pod] = i
			app := strings.Split(c.pod, "-")[0]
			list.Items = append(list.Items, metricsv1beta1.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: c.pod, Labels: map[string]string{"app": app}}})
		}
		list.Items[i].Containers = append(list.Items[i].Containers, metricsv1beta1.ContainerMetrics{Name: c.container, Usage: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(c.cores*1000), resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(c.bytes, resource.BinarySI),
		}})
	}
	return list
}

func historyOf(t *testing.T, e hub.Event) historyPayload {
	t.Helper()
	if e.Name != api.EventHistory {
		t.Fatalf("event %s, want history", e.Name)
	}
	var p historyPayload
	if err := json.Unmarshal(e.Data[len("data: "):], &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func joinMetrics(t *testing.T, topic *metricsTopic, r api.Resume) *hub.Client {
	t.Helper()
	c := hub.NewClient(10, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := topic.Subscribe(ctx, c.NewSubscription(""), Join{Resume: r}); err != nil {
		t.Fatal(err)
	}
	return c
}

// A new viewer gets the history of its pods, shaped as the live usage (pods with their
// containers, and the total), then the live usage; later viewers share the same reading.
func TestMetricsHistoryThenLive(t *testing.T) {
	base := time.Unix(1767225600, 0).UTC()
	const steps = 5
	now := base.Add(steps * historyStep)
	prom := newFakeProm(t, "shop", base, steps)
	topic, _ := historyTopic(t, "app=web", prom, now)
	polled := now.Add(-time.Second) // the poll came before the reading's end: history stops there
	topic.update(podMetrics(), polled, nil)

	c := joinMetrics(t, topic, api.Resume{})
	m := recv(t, c)
	p := historyOf(t, m.Events[0])
	if !p.Available || p.Step != "15s" || len(p.Pods) != 2 || p.Pods[0].Name != "web-1" || p.Pods[1].Name != "web-2" {
		t.Fatalf("history %+v: want web-1 and web-2 (not db-1)", p)
	}
	web1 := p.Pods[0]
	if len(web1.Containers) != 2 || web1.Containers[0].Name != "app" || web1.Containers[1].Name != "proxy" {
		t.Fatalf("web-1's containers %+v", web1.Containers)
	}
	app := web1.Containers[0].Points
	if len(app) != steps || !app[0].Time.Equal(base) || *app[0].CPUMillis != 120 || *app[0].MemoryBytes != 96<<20 {
		t.Fatalf("web-1/app points %+v", app)
	}
	if pt := web1.Points[2]; *pt.CPUMillis != 120+31 || *pt.MemoryBytes != 106<<20 {
		t.Errorf("web-1's sum %+v, want 151m and 106Mi", pt)
	}
	if pt := p.Total[steps-1]; *pt.CPUMillis != 151+500 || *pt.MemoryBytes != 406<<20 || !pt.Time.Equal(base.Add((steps-1)*historyStep)) {
		t.Errorf("total %+v", pt)
	}
	if !p.Start.Equal(base) || !p.End.Equal(base.Add((steps-1)*historyStep)) {
		t.Errorf("bounds %v…%v", p.Start, p.End)
	}
	if m.LastID() != strconv.FormatInt(p.End.UnixNano(), 10) {
		t.Errorf("history id %s, want its end %d", m.LastID(), p.End.UnixNano())
	}
	if live := recv(t, c); live.Events[0].Name != api.EventMetrics {
		t.Fatalf("then %v, want metrics", eventNames(live))
	}

	// A second viewer gets the same encoded history, from the same reading.
	c2 := joinMetrics(t, topic, api.Resume{})
	if m2 := recv(t, c2); m2 != m {
		t.Errorf("the second viewer's history was made again")
	}
	recv(t, c2)
	if n := prom.asked.Load(); n != 2 {
		t.Errorf("prometheus asked %d times, want 2 (one reading: CPU and memory)", n)
	}

	// The whole namespace's stream has every pod.
	all, _ := historyTopic(t, "", prom, now)
	all.update(podMetrics(), polled, nil)
	if p := historyOf(t, recv(t, joinMetrics(t, all, api.Resume{})).Events[0]); len(p.Pods) != 3 {
		t.Errorf("namespace history has %d pods, want 3", len(p.Pods))
	}
}

// A resuming viewer is sent only the points after its id, and nothing when it has them
// all or its id is no time.
func TestMetricsHistoryResume(t *testing.T) {
	base := time.Unix(1767225600, 0).UTC()
	const steps = 8
	now := base.Add(steps * historyStep)
	prom := newFakeProm(t, "shop", base, steps)
	topic, _ := historyTopic(t, "app=web", prom, now)
	polled := base.Add(steps * historyStep)
	topic.update(podMetrics(), polled, nil)
	latest := strconv.FormatInt(polled.UnixNano(), 10)

	for _, tt := range []struct {
		name   string
		resume api.Resume
		points int // history points per container; -1: no history event
		live   bool
	}{
		{"from an older point", api.Resume{Set: true, ID: "x", RV: uint64(base.Add(5 * historyStep).UnixNano()), HasRV: true}, 2, true},
		{"from before the hour", api.Resume{Set: true, ID: "x", RV: 1, HasRV: true}, steps, true},
		{"from the latest usage", api.Resume{Set: true, ID: latest, RV: uint64(polled.UnixNano()), HasRV: true}, -1, false},
		{"from the history's end", api.Resume{Set: true, ID: "x", RV: uint64(base.Add((steps - 1) * historyStep).UnixNano()), HasRV: true}, -1, true},
		{"from an id that is no time", api.Resume{Set: true, ID: "abc"}, -1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := joinMetrics(t, topic, tt.resume)
			if tt.points >= 0 {
				p := historyOf(t, recv(t, c).Events[0])
				if got := len(p.Pods[0].Containers[0].Points); got != tt.points {
					t.Errorf("%d points, want %d", got, tt.points)
				}
			}
			if tt.live {
				if m := recv(t, c); m.Events[0].Name != api.EventMetrics {
					t.Fatalf("got %v, want the live usage", eventNames(m))
				}
			}
			noMessage(t, c)
		})
	}
}

// A Prometheus that fails or does not answer leaves the stream with its live usage and an
// event saying the history is unavailable; the failure is remembered for a while, so
// that viewers do not each ask again.
func TestMetricsHistoryUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*fakeProm)
	}{
		{"error", func(f *fakeProm) { f.fail.Store(http.StatusInternalServerError) }},
		{"timeout", func(f *fakeProm) { f.hang.Store(true) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := time.Unix(1767225600, 0).UTC()
			prom := newFakeProm(t, "shop", base, 3)
			tt.set(prom)
			topic, cache := historyTopic(t, "", prom, base.Add(time.Minute))
			topic.update(podMetrics(), base.Add(time.Minute), nil)
			begin := time.Now()
			c := joinMetrics(t, topic, api.Resume{})
			if waited := time.Since(begin); waited > 2*cache.timeout {
				t.Errorf("the stream waited %s for the history (timeout %s)", waited, cache.timeout)
			}
			m := recv(t, c)
			p := historyOf(t, m.Events[0])
			if p.Available || p.Message == "" || m.Events[0].ID != "" {
				t.Errorf("history %+v (id %q): want unavailable, with a message and no id", p, m.Events[0].ID)
			}
			if live := recv(t, c); live.Events[0].Name != api.EventMetrics {
				t.Fatalf("then %v, want metrics", eventNames(live))
			}
			asked := prom.asked.Load()
			recv(t, joinMetrics(t, topic, api.Resume{}))
			if prom.asked.Load() != asked {
				t.Errorf("a failed reading was tried again at once")
			}
			// A resuming viewer is not told again.
			r := joinMetrics(t, topic, api.Resume{Set: true, ID: "1", RV: 1, HasRV: true})
			if m := recv(t, r); m.Events[0].Name != api.EventMetrics {
				t.Errorf("resuming viewer got %v", eventNames(m))
			}
		})
	}
}

// An old reading is read again for a new viewer.
func TestMetricsHistoryExpires(t *testing.T) {
	base := time.Unix(1767225600, 0).UTC()
	prom := newFakeProm(t, "shop", base, 3)
	topic, cache := historyTopic(t, "", prom, base.Add(time.Minute))
	var now atomic.Int64
	now.Store(base.Add(time.Minute).UnixNano())
	cache.now = func() time.Time { return time.Unix(0, now.Load()) }
	topic.update(podMetrics(), base.Add(time.Minute), nil)
	recv(t, joinMetrics(t, topic, api.Resume{}))
	now.Add(int64(historyMaxAge - time.Second))
	recv(t, joinMetrics(t, topic, api.Resume{}))
	if n := prom.asked.Load(); n != 2 {
		t.Fatalf("asked %d times within the reading's age, want 2", n)
	}
	now.Add(int64(2 * time.Second))
	recv(t, joinMetrics(t, topic, api.Resume{}))
	if n := prom.asked.Load(); n != 4 {
		t.Fatalf("asked %d times after the reading aged, want 4", n)
	}
}

// A viewer joining before the first poll waits for it: the history stops at the poll,
// so that the live usage sent next is not older than the history's last point.
func TestMetricsHistoryWaitsForTheFirstPoll(t *testing.T) {
	base := time.Unix(1767225600, 0).UTC()
	const steps = 6
	prom := newFakeProm(t, "shop", base, steps)
	topic, _ := historyTopic(t, "", prom, base.Add(steps*historyStep))
	joined := make(chan *hub.Client, 1)
	go func() {
		c := hub.NewClient(10, nil)
		if err := topic.Subscribe(context.Background(), c.NewSubscription(""), Join{}); err != nil {
			t.Error(err)
		}
		joined <- c
	}()
	select {
	case <-joined:
		t.Fatal("joined before the first poll")
	case <-time.After(100 * time.Millisecond):
	}
	polled := base.Add(2*historyStep + time.Second)
	topic.update(podMetrics(), polled, nil)
	c := <-joined
	p := historyOf(t, recv(t, c).Events[0])
	if got := len(p.Total); got != 3 || p.End.After(polled) {
		t.Errorf("history of %d points up to %v, want 3 up to the poll at %v", got, p.End, polled)
	}
	if m := recv(t, c); m.Events[0].Name != api.EventMetrics {
		t.Fatalf("then %v, want metrics", eventNames(m))
	}
}
