package server

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/cors"
	"github.com/dwp-sre/dwp-sre/internal/envflag"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/sse-router/console"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

// Config is the router's configuration. Every field comes from an environment variable
// (DWP_…) and a flag of the same meaning; a flag given wins over the variable.
type Config struct {
	ListenAddress  string
	Kubeconfig     string
	DefaultCluster string
	KubeQPS        float64
	KubeBurst      int
	CORSOrigins    []string
	// ConsoleAPI is the task function's base URL for the web console (empty: same origin).
	ConsoleAPI  string
	TokenCookie string
	// SessionMaxAge bounds how long a token cookie lives (a JWT's exp bounds it sooner).
	SessionMaxAge time.Duration
	// TrustForwardedProto believes a proxy's X-Forwarded-Proto for the cookie's Secure.
	TrustForwardedProto bool
	Heartbeat           time.Duration
	Retry               time.Duration
	Linger              time.Duration
	QueueSize           int
	// WriteTimeout bounds how long data sent to a client may stay unsent or
	// unacknowledged before the client is dropped as slow.
	WriteTimeout time.Duration
	// SendBuffer, when positive, is each stream socket's kernel send buffer.
	SendBuffer int
	// Writers is the number of goroutines writing taken-over streams (0: 2 per CPU).
	Writers           int
	WatchReplay       int
	LogReplay         int
	WorkflowLogReplay int
	MetricsInterval   time.Duration
	AuthCacheTTL      time.Duration
	// Reviews (TokenReview, SubjectAccessReview) have a client and limits of their own.
	ReviewQPS         int
	ReviewBurst       int
	ReviewMaxWait     time.Duration
	ReviewMaxInFlight int
	// ReauthorizeInterval bounds how long an open stream outlives its user's rights.
	ReauthorizeInterval time.Duration
	// MaxStreamLifetime, when positive, ends streams this old (the client reconnects).
	MaxStreamLifetime  time.Duration
	AppLabel           string
	MaxSubscriptions   int
	ArgoServerURL      string
	ArgoServerCAFile   string
	ArgoServerInsecure bool
	ArgoCDNamespace    string
	// PrometheusURL is the Prometheus whose container usage pod metrics streams start
	// with (the default cluster's; empty: no history).
	PrometheusURL string
	Redis         summarystore.Options
	// SummaryClusterNames maps the router\'s cluster names to the watcher\'s.
	SummaryClusterNames map[string]string
	ShutdownTimeout     time.Duration
	LogLevel            string
	// DebugAddress, when set, serves Go's profiles (loopback only).
	DebugAddress string

	// noHijack keeps every stream on its handler's goroutine (tests of that path).
	noHijack bool
}

var ownSettings = []envflag.Setting[Config]{
	envflag.String("DWP_LISTEN_ADDRESS", "listen-address", "127.0.0.1:8090", "address to serve HTTP on", func(c *Config) *string { return &c.ListenAddress }),
	envflag.String("DWP_KUBECONFIG", "kubeconfig", "", "kubeconfig whose contexts are the clusters (empty: in-cluster credentials, cluster \"in-cluster\")", func(c *Config) *string { return &c.Kubeconfig }),
	envflag.String("DWP_DEFAULT_CLUSTER", "default-cluster", "", "cluster of streams that name none (empty: the kubeconfig's current context)", func(c *Config) *string { return &c.DefaultCluster }),
	envflag.Func("DWP_KUBE_QPS", "kube-qps", "50", "requests per second to each API server", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 32)
		if err != nil || f <= 0 {
			return fmt.Errorf("not a positive number: %q", v)
		}
		c.KubeQPS = f
		return nil
	}),
	envflag.Int("DWP_KUBE_BURST", "kube-burst", "100", "request burst to each API server", 1, func(c *Config) *int { return &c.KubeBurst }),
	envflag.Func("DWP_CORS_ORIGINS", "cors-origins", "", "comma-separated portal origins allowed to open streams from a browser (e.g. https://portal.example)", func(c *Config, v string) error {
		o, err := cors.ParseOrigins(v)
		c.CORSOrigins = o
		return err
	}),
	envflag.Func("DWP_CONSOLE_API_URL", "console-api-url", "", "the task function's base URL the web console at "+console.Path+"/ calls (empty: the console's own origin, an ingress routing /api/v1 to the function); the function must allow the router's origin in its DWP_CORS_ORIGINS", func(c *Config, v string) error {
		u, err := console.ParseAPI(v)
		c.ConsoleAPI = u
		return err
	}),
	envflag.String("DWP_TOKEN_COOKIE", "token-cookie", "dwp_token", "cookie carrying the bearer token for browsers' EventSource", func(c *Config) *string { return &c.TokenCookie }),
	envflag.PositiveDuration("DWP_SESSION_MAX_AGE", "session-max-age", defaultSessionMaxAge.String(), "longest life of the token cookie set by POST "+SessionPath+" (a JWT's exp ends it sooner)", func(c *Config) *time.Duration { return &c.SessionMaxAge }),
	envflag.Bool("DWP_TRUST_FORWARDED_PROTO", "trust-forwarded-proto", "false", "believe X-Forwarded-Proto: https (set only behind a TLS-terminating proxy that sets it) and mark the token cookie Secure", func(c *Config) *bool { return &c.TrustForwardedProto }),
	envflag.Duration("DWP_HEARTBEAT_INTERVAL", "heartbeat-interval", "15s", "idle time after which a heartbeat comment is sent", func(c *Config) *time.Duration { return &c.Heartbeat }),
	envflag.Duration("DWP_RETRY", "retry", "3s", "reconnection delay advised to browsers (retry:)", func(c *Config) *time.Duration { return &c.Retry }),
	envflag.Duration("DWP_LINGER", "linger", "30s", "how long an upstream (and a multiplexed session) outlives its last viewer", func(c *Config) *time.Duration { return &c.Linger }),
	envflag.Int("DWP_QUEUE_SIZE", "queue-size", "256", "messages queued per client before it is dropped as slow", 1, func(c *Config) *int { return &c.QueueSize }),
	envflag.Duration("DWP_WRITE_TIMEOUT", "write-timeout", "5s", "a client whose data stays unsent (or unacknowledged) this long is dropped as slow", func(c *Config) *time.Duration { return &c.WriteTimeout }),
	envflag.Int("DWP_SEND_BUFFER", "send-buffer", "0", "kernel send buffer of each stream socket in bytes (0: the system's default, which absorbs bursts; a stalled client is found by what it leaves unacknowledged either way)", 0, func(c *Config) *int { return &c.SendBuffer }),
	envflag.Int("DWP_WRITERS", "writers", "0", "goroutines writing streams (0: two per CPU)", 0, func(c *Config) *int { return &c.Writers }),
	envflag.Int("DWP_WATCH_REPLAY", "watch-replay", "1000", "changes kept per watch for Last-Event-ID resume", 1, func(c *Config) *int { return &c.WatchReplay }),
	envflag.Int("DWP_LOG_REPLAY", "log-replay", "1000", "lines kept per pod log (late joiners, resume)", 1, func(c *Config) *int { return &c.LogReplay }),
	envflag.Int("DWP_WORKFLOW_LOG_REPLAY", "workflow-log-replay", "10000", "lines kept per workflow log", 1, func(c *Config) *int { return &c.WorkflowLogReplay }),
	envflag.Duration("DWP_METRICS_INTERVAL", "metrics-interval", "15s", "PodMetrics poll interval per namespace", func(c *Config) *time.Duration { return &c.MetricsInterval }),
	envflag.Duration("DWP_AUTH_CACHE_TTL", "auth-cache-ttl", "10s", "how long TokenReview and SubjectAccessReview answers are reused", func(c *Config) *time.Duration { return &c.AuthCacheTTL }),
	envflag.Int("DWP_REVIEW_QPS", "review-qps", "200", "TokenReviews and SubjectAccessReviews per second, on a client of their own", 1, func(c *Config) *int { return &c.ReviewQPS }),
	envflag.Int("DWP_REVIEW_BURST", "review-burst", "400", "burst of reviews", 1, func(c *Config) *int { return &c.ReviewBurst }),
	envflag.Duration("DWP_REVIEW_MAX_WAIT", "review-max-wait", "20s", "how long a review waits its turn in a burst before the stream is refused (503, Retry-After)", func(c *Config) *time.Duration { return &c.ReviewMaxWait }),
	envflag.Int("DWP_REVIEW_MAX_IN_FLIGHT", "review-max-in-flight", "64", "review requests awaiting an answer at once", 1, func(c *Config) *int { return &c.ReviewMaxInFlight }),
	envflag.PositiveDuration("DWP_REAUTHORIZE_INTERVAL", "reauthorize-interval", "30s", "open streams are checked again (token, rights) at this interval; a revoked one ends with a 403 error event (must exceed DWP_AUTH_CACHE_TTL)", func(c *Config) *time.Duration { return &c.ReauthorizeInterval }),
	envflag.Duration("DWP_MAX_STREAM_LIFETIME", "max-stream-lifetime", "0s", "streams older than this are closed with a reconnect event, so that clients reconnect and are checked afresh (0: no limit)", func(c *Config) *time.Duration { return &c.MaxStreamLifetime }),
	envflag.String("DWP_APP_LABEL", "app-label", "app", "label naming the app of a pod or workflow", func(c *Config) *string { return &c.AppLabel }),
	envflag.Int("DWP_MUX_MAX_SUBSCRIPTIONS", "mux-max-subscriptions", "32", "subscriptions per multiplexed stream", 1, func(c *Config) *int { return &c.MaxSubscriptions }),
	envflag.String("DWP_ARGO_SERVER_URL", "argo-server-url", "", "argo-server base URL for archived workflow logs (empty: unavailable)", func(c *Config) *string { return &c.ArgoServerURL }),
	envflag.String("DWP_ARGO_SERVER_CA_FILE", "argo-server-ca-file", "", "CA bundle for argo-server's TLS certificate", func(c *Config) *string { return &c.ArgoServerCAFile }),
	envflag.Bool("DWP_ARGO_SERVER_INSECURE_SKIP_VERIFY", "argo-server-insecure-skip-verify", "false", "do not verify argo-server's TLS certificate", func(c *Config) *bool { return &c.ArgoServerInsecure }),
	envflag.Func("DWP_ARGOCD_NAMESPACE", "argocd-namespace", "argocd", "namespace of Argo CD's Applications, read for the application stream (empty: no application stream)", func(c *Config, v string) error {
		if v != "" {
			if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
				return fmt.Errorf("not a namespace %q: %s", v, strings.Join(errs, "; "))
			}
		}
		c.ArgoCDNamespace = v
		return nil
	}),
	envflag.Func("DWP_PROMETHEUS_URL", "prometheus-url", "", "Prometheus holding the default cluster's kubelet resource metrics: pod metrics streams start with the last hour of usage from it (empty: no history)", func(c *Config, v string) error {
		if v != "" {
			if _, err := upstream.ParsePrometheusURL(v); err != nil {
				return err
			}
		}
		c.PrometheusURL = v
		return nil
	}),
	envflag.Func("DWP_SUMMARY_CLUSTER_NAMES", "summary-cluster-names", "", "comma-separated <cluster>=<watcher cluster name> where a kubeconfig context is not named as its watcher's DWP_CLUSTER_NAME", func(c *Config, v string) error {
		c.SummaryClusterNames = map[string]string{}
		for _, pair := range strings.Split(v, ",") {
			if pair = strings.TrimSpace(pair); pair == "" {
				continue
			}
			k, val, ok := strings.Cut(pair, "=")
			if !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(val) == "" {
				return fmt.Errorf("want <cluster>=<name> pairs: %q", pair)
			}
			c.SummaryClusterNames[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		return nil
	}),
	envflag.Duration("DWP_SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", "how long a graceful shutdown waits for streams to close", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	envflag.LogLevel("DWP_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
	envflag.Func("DWP_DEBUG_ADDRESS", "debug-address", "", "loopback address serving Go's profiles at /debug/pprof/ (empty: off)", func(c *Config, v string) error {
		if err := checkDebugAddress(v); err != nil {
			return err
		}
		c.DebugAddress = v
		return nil
	}),
}

// defaultSessionMaxAge is DWP_SESSION_MAX_AGE's default: a working day.
const defaultSessionMaxAge = 8 * time.Hour

// LoadConfig reads the configuration from the environment (getenv) and then args (flags).
// settings are the router's own and the summaries' Redis (as the function and the watcher
// read it; an empty DWP_REDIS_ADDR turns the apps stream off).
var settings = append(ownSettings, summarystore.Settings(func(c *Config) *summarystore.Options { return &c.Redis })...)

// DefaultConfig is the configuration with every setting at its default.
func DefaultConfig() Config {
	c, err := envflag.Load("sse-router", settings, nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		panic(fmt.Sprintf("the router's defaults are invalid: %v", err)) // a programming error, caught by every test
	}
	return c
}

func LoadConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	return envflag.Load("sse-router", settings, args, getenv, usage)
}

// Variables lists the environment variables with their defaults (for documentation).
func Variables() [][3]string { return envflag.Variables(settings) }
