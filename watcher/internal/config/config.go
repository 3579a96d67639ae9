// Package config reads the watcher's configuration from environment variables (DWP_…,
// and Knative's K_SINK and K_CE_OVERRIDES) and from flags of the same meaning; a flag
// given wins over its variable.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/envflag"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
)

// Config is the watcher's configuration.
type Config struct {
	// Sink is where events are sent (Knative's K_SINK: a Broker's ingress, or the function).
	Sink string
	// TokenFile holds the token sent with every event (empty: none), re-read when it changes.
	TokenFile string
	// Overrides are extension attributes set on every event (K_CE_OVERRIDES).
	Overrides map[string]string
	// Kubeconfig is the cluster to watch; empty means in-cluster.
	Kubeconfig string
	// Cluster names the cluster in the events' source.
	Cluster string
	// AppLabel is the label naming the app of a pod or workflow.
	AppLabel string
	// TaskLabel is the label naming the kind of task a workflow performs.
	TaskLabel string
	// Namespaces are watched; empty means every namespace.
	Namespaces []string
	// Resync is the interval of full-state rounds.
	Resync time.Duration
	// ListPageSize bounds the objects of one list request of a round.
	ListPageSize int
	// StepRecheck is how often the CD steps waiting for the task function are sent again.
	StepRecheck time.Duration
	// ArgoCDNamespace is where Argo CD's Applications are (empty: not watched).
	ArgoCDNamespace string
	// ListenAddress serves /healthz, /readyz and /metrics.
	ListenAddress string
	// Redis holds the summaries (Addr empty: not checked); every RebuildCheck the watcher
	// asks whether it lost them, and runs a full-state round at once when so.
	Redis        summarystore.Options
	RebuildCheck time.Duration

	LeaderElect        bool
	LeaseNamespace     string
	LeaseName          string
	LeaseDuration      time.Duration
	LeaseRenewDeadline time.Duration
	LeaseRetryPeriod   time.Duration

	// SendWorkers send events concurrently; SendTimeout bounds one delivery; retries of a
	// failed event back off exponentially up to RetryMaxDelay.
	SendWorkers   int
	SendTimeout   time.Duration
	RetryMaxDelay time.Duration
	// ShutdownTimeout bounds the delivery of what is pending when the watcher stops.
	ShutdownTimeout time.Duration
	LogLevel        string
}

func labelKey(env, fl, def, help string, field func(*Config) *string) envflag.Setting[Config] {
	return envflag.Func(env, fl, def, help, func(c *Config, v string) error {
		if msgs := validation.IsQualifiedName(v); len(msgs) > 0 {
			return fmt.Errorf("not a label key: %s", strings.Join(msgs, "; "))
		}
		*field(c) = v
		return nil
	})
}

// optionalNamespace is a setting holding a namespace name or nothing.
func optionalNamespace(env, fl, def, help string, field func(*Config) *string) envflag.Setting[Config] {
	return envflag.Func(env, fl, def, help, func(c *Config, v string) error {
		if v != "" {
			if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
				return fmt.Errorf("%s", strings.Join(msgs, "; "))
			}
		}
		*field(c) = v
		return nil
	})
}

var settings = []envflag.Setting[Config]{
	envflag.Func("K_SINK", "sink", "", "URL events are sent to (required; set by a Knative SinkBinding)", func(c *Config, v string) error {
		if v == "" {
			c.Sink = ""
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("not an http(s) URL: %q", v)
		}
		c.Sink = v
		return nil
	}),
	envflag.String("DWP_SINK_TOKEN_FILE", "sink-token-file", "", "file holding the ServiceAccount token sent as \"Authorization: Bearer\" with every event, made for the receiver's audience; re-read when it changes (a projected token, or /oidc/token from a Knative SinkBinding); empty: none", func(c *Config) *string { return &c.TokenFile }),
	envflag.Func("K_CE_OVERRIDES", "ce-overrides", "", `extension attributes set on every event, as Knative writes them: {"extensions":{"name":"value"}}`, func(c *Config, v string) error {
		c.Overrides = nil
		if v == "" {
			return nil
		}
		var o struct {
			Extensions map[string]string `json:"extensions"`
		}
		if err := json.Unmarshal([]byte(v), &o); err != nil {
			return fmt.Errorf(`not {"extensions":{"name":"value"}}: %v`, err)
		}
		for name := range o.Extensions {
			if !extensionName(name) {
				return fmt.Errorf("extension name %q: lowercase letters and digits only", name)
			}
		}
		c.Overrides = o.Extensions
		return nil
	}),
	envflag.String("DWP_KUBECONFIG", "kubeconfig", "", "kubeconfig of the cluster to watch (empty: in-cluster credentials)", func(c *Config) *string { return &c.Kubeconfig }),
	envflag.Func("DWP_CLUSTER_NAME", "cluster-name", "default", "name of the watched cluster in the events' source; the function's DWP_CLUSTER_NAME must match", func(c *Config, v string) error {
		if err := events.ValidateClusterName(v); err != nil {
			return err
		}
		c.Cluster = v
		return nil
	}),
	labelKey("DWP_APP_LABEL", "app-label", "app", "label naming the app of a pod or workflow", func(c *Config) *string { return &c.AppLabel }),
	labelKey("DWP_TASK_LABEL", "task-label", "dwp.io/task", "label naming the kind of task of a workflow", func(c *Config) *string { return &c.TaskLabel }),
	envflag.Func("DWP_NAMESPACES", "namespaces", "", "comma-separated namespaces to watch (empty: all)", func(c *Config, v string) error {
		c.Namespaces = nil
		seen := map[string]bool{}
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns == "" || seen[ns] {
				continue
			}
			if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
				return fmt.Errorf("namespace %q: %s", ns, strings.Join(msgs, "; "))
			}
			seen[ns] = true
			c.Namespaces = append(c.Namespaces, ns)
		}
		sort.Strings(c.Namespaces)
		return nil
	}),
	envflag.PositiveDuration("DWP_RESYNC_INTERVAL", "resync-interval", "5m", "interval of full-state rounds (every app's state re-sent)", func(c *Config) *time.Duration { return &c.Resync }),
	envflag.PositiveDuration("DWP_STEP_RECHECK_INTERVAL", "step-recheck-interval", "10s", "how often CD steps waiting for the task function are sent again", func(c *Config) *time.Duration { return &c.StepRecheck }),
	optionalNamespace("DWP_ARGOCD_NAMESPACE", "argocd-namespace", "argocd", "namespace of Argo CD's Applications: their sync and health go into the summaries, and a CD run's waiting steps are looked at again when they change (empty: not followed)", func(c *Config) *string { return &c.ArgoCDNamespace }),
	envflag.Int("DWP_LIST_PAGE_SIZE", "list-page-size", "500", "objects per list request of a full-state round", 1, func(c *Config) *int { return &c.ListPageSize }),
	envflag.String("DWP_REDIS_ADDR", "redis-addr", "", "Redis of the summaries, checked every DWP_REBUILD_CHECK_INTERVAL: when it lost them, a full-state round is run at once (empty: not checked; the resync interval rebuilds them)", func(c *Config) *string { return &c.Redis.Addr }),
	envflag.Int("DWP_REDIS_DB", "redis-db", "0", "Redis database of the summaries", 0, func(c *Config) *int { return &c.Redis.DB }),
	envflag.String("DWP_REDIS_PREFIX", "redis-prefix", summarystore.DefaultRedisPrefix, "key prefix of the summaries (the function's)", func(c *Config) *string { return &c.Redis.Prefix }),
	envflag.String("DWP_REDIS_USERNAME", "redis-username", "", "Redis user name", func(c *Config) *string { return &c.Redis.Username }),
	envflag.String("DWP_REDIS_PASSWORD", "redis-password", "", "Redis password", func(c *Config) *string { return &c.Redis.Password }),
	envflag.PositiveDuration("DWP_REBUILD_CHECK_INTERVAL", "rebuild-check-interval", "1s", "how often the watcher asks Redis whether the summaries were lost", func(c *Config) *time.Duration { return &c.RebuildCheck }),
	envflag.String("DWP_LISTEN_ADDRESS", "listen-address", "[::]:8080", "address serving /healthz, /readyz and /metrics", func(c *Config) *string { return &c.ListenAddress }),
	envflag.Bool("DWP_LEADER_ELECT", "leader-elect", "true", "take a Lease so that one replica emits at a time", func(c *Config) *bool { return &c.LeaderElect }),
	optionalNamespace("DWP_LEASE_NAMESPACE", "lease-namespace", "", "namespace of the Lease (empty: POD_NAMESPACE, else default)", func(c *Config) *string { return &c.LeaseNamespace }),
	envflag.Func("DWP_LEASE_NAME", "lease-name", "dwp-watcher", "name of the Lease", func(c *Config, v string) error {
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			return fmt.Errorf("%s", strings.Join(msgs, "; "))
		}
		c.LeaseName = v
		return nil
	}),
	envflag.PositiveDuration("DWP_LEASE_DURATION", "lease-duration", "15s", "how long a leader's Lease holds without renewal", func(c *Config) *time.Duration { return &c.LeaseDuration }),
	envflag.PositiveDuration("DWP_LEASE_RENEW_DEADLINE", "lease-renew-deadline", "10s", "how long the leader tries to renew before giving up", func(c *Config) *time.Duration { return &c.LeaseRenewDeadline }),
	envflag.PositiveDuration("DWP_LEASE_RETRY_PERIOD", "lease-retry-period", "2s", "interval of Lease acquisition and renewal attempts", func(c *Config) *time.Duration { return &c.LeaseRetryPeriod }),
	envflag.Int("DWP_SEND_WORKERS", "send-workers", "4", "events sent concurrently", 1, func(c *Config) *int { return &c.SendWorkers }),
	envflag.PositiveDuration("DWP_SEND_TIMEOUT", "send-timeout", "10s", "time limit of one delivery", func(c *Config) *time.Duration { return &c.SendTimeout }),
	envflag.PositiveDuration("DWP_RETRY_MAX_DELAY", "retry-max-delay", "30s", "longest wait between deliveries of an event that failed", func(c *Config) *time.Duration { return &c.RetryMaxDelay }),
	envflag.PositiveDuration("DWP_SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", "how long pending events are still sent on shutdown", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	envflag.LogLevel("DWP_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
}

func extensionName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Load reads the configuration from the environment (getenv) and then args (flags). It
// fails, naming the variable, on any invalid value and when K_SINK is not set.
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c, err := envflag.Load("watcher", settings, args, getenv, usage)
	if err != nil {
		return Config{}, err
	}
	if c.Sink == "" {
		return Config{}, errors.New("K_SINK is not set: give the URL events are sent to (a Broker's ingress, or the function's /events), or --sink")
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = getenv("POD_NAMESPACE")
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = "default"
	}
	if c.LeaseRenewDeadline >= c.LeaseDuration {
		return Config{}, fmt.Errorf("DWP_LEASE_RENEW_DEADLINE (%s) must be shorter than DWP_LEASE_DURATION (%s)", c.LeaseRenewDeadline, c.LeaseDuration)
	}
	if c.LeaseRetryPeriod >= c.LeaseRenewDeadline {
		return Config{}, fmt.Errorf("DWP_LEASE_RETRY_PERIOD (%s) must be shorter than DWP_LEASE_RENEW_DEADLINE (%s)", c.LeaseRetryPeriod, c.LeaseRenewDeadline)
	}
	if c.AppLabel == c.TaskLabel {
		return Config{}, errors.New("DWP_APP_LABEL and DWP_TASK_LABEL must differ")
	}
	if c.Redis.Addr != "" {
		if _, err := summarystore.ParseOptions(map[string]string{summarystore.EnvRedisPrefix: c.Redis.Prefix}); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

// Variables lists the environment variables with their defaults and meaning.
func Variables() [][3]string { return envflag.Variables(settings) }
