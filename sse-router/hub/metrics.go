package hub

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the router's Prometheus metrics.
type Metrics struct {
	// Clients counts open browser streams, by stream kind ("mux" for multiplexed).
	Clients *prometheus.GaugeVec
	// Subscriptions counts subscriptions attached to topics, by topic kind.
	Subscriptions *prometheus.GaugeVec
	// Topics counts shared topics alive (including lingering ones), by kind.
	Topics *prometheus.GaugeVec
	// Upstreams counts upstream streams open right now (watches, log follows, pollers,
	// Redis subscriptions), by kind.
	Upstreams *prometheus.GaugeVec
	// UpstreamRequests counts upstream requests made, by kind and verb (list, watch,
	// follow, fetch, poll, subscribe).
	UpstreamRequests *prometheus.CounterVec
	// UpstreamErrors counts failed upstream requests and broken streams, by kind.
	UpstreamErrors *prometheus.CounterVec
	// EventsOut counts events written to clients.
	EventsOut prometheus.Counter
	// BytesOut counts bytes written to clients.
	BytesOut prometheus.Counter
	// SlowClientsDropped counts clients dropped because they fell behind.
	SlowClientsDropped prometheus.Counter
	// Refusals counts streams refused before they started, by HTTP status.
	Refusals *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwp_sse_clients", Help: "Open client streams, by stream kind.",
		}, []string{"kind"}),
		Subscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwp_sse_subscriptions", Help: "Subscriptions attached to shared topics, by kind.",
		}, []string{"kind"}),
		Topics: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwp_sse_topics", Help: "Shared topics alive (including those lingering after their last subscriber), by kind.",
		}, []string{"kind"}),
		Upstreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwp_sse_upstreams", Help: "Upstream streams open (watches, log follows, metrics pollers, Redis subscriptions), by kind.",
		}, []string{"kind"}),
		UpstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dwp_sse_upstream_requests_total", Help: "Upstream requests made, by kind and verb.",
		}, []string{"kind", "verb"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dwp_sse_upstream_errors_total", Help: "Failed upstream requests and broken upstream streams, by kind.",
		}, []string{"kind"}),
		EventsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dwp_sse_events_out_total", Help: "Events written to clients.",
		}),
		BytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dwp_sse_bytes_out_total", Help: "Bytes written to clients.",
		}),
		SlowClientsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dwp_sse_slow_clients_dropped_total", Help: "Clients dropped because they did not keep up.",
		}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dwp_sse_refused_total", Help: "Streams refused before they started, by HTTP status.",
		}, []string{"status"}),
	}
	if reg != nil {
		reg.MustRegister(m.Clients, m.Subscriptions, m.Topics, m.Upstreams, m.UpstreamRequests,
			m.UpstreamErrors, m.EventsOut, m.BytesOut, m.SlowClientsDropped, m.Refusals)
	}
	return m
}

// UpstreamOpen records an upstream stream of kind opened by verb; call the returned
// function when it closes.
func (m *Metrics) UpstreamOpen(kind, verb string) (closed func()) {
	m.UpstreamRequests.WithLabelValues(kind, verb).Inc()
	g := m.Upstreams.WithLabelValues(kind)
	g.Inc()
	var once sync.Once
	return func() { once.Do(g.Dec) }
}

// Request records a one-off upstream request (a list, a fetch, a poll).
func (m *Metrics) Request(kind, verb string) {
	m.UpstreamRequests.WithLabelValues(kind, verb).Inc()
}

// Error records a failed upstream request or a broken upstream stream.
func (m *Metrics) Error(kind string) {
	m.UpstreamErrors.WithLabelValues(kind).Inc()
}
