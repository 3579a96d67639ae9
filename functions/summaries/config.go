package summaries

import (
	"time"

	"github.com/dwp-sre/dwp-sre/internal/envflag"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
)

// Configuration keys read from the function's cfg (the ./cfg file merged with the
// environment), besides the Redis ones of summarystore (DWP_REDIS_ADDR, DWP_REDIS_DB,
// DWP_REDIS_PREFIX, DWP_REDIS_USERNAME, DWP_REDIS_PASSWORD).
const (
	// EnvClusterName names the cluster whose summaries the app list API serves: the
	// watcher's DWP_CLUSTER_NAME. Events of every cluster are kept, each apart.
	EnvClusterName = "DWP_CLUSTER_NAME"
	// EnvKubeconfig gives the API server that decides what each caller may see; empty
	// means in-cluster. The app lists ask it with the caller's token; the namespace list
	// uses its credentials (list namespaces, create tokenreviews and subjectaccessreviews)
	// to list the namespaces and review the caller's access to each.
	EnvKubeconfig = "DWP_KUBECONFIG"
	// EnvAccessCacheTTL is how long an access decision for one token and namespace is reused.
	EnvAccessCacheTTL = "DWP_ACCESS_CACHE_TTL"
)

// Defaults of the configuration.
const (
	DefaultClusterName    = "default"
	DefaultAccessCacheTTL = 10 * time.Second
)

// Config is the summaries family's configuration.
type Config struct {
	Redis          summarystore.Options
	Cluster        string
	Kubeconfig     string
	AccessCacheTTL time.Duration
}

// settings are the family's variables.
var settings = append(summarystore.Settings(func(c *Config) *summarystore.Options { return &c.Redis }),
	envflag.Func(EnvClusterName, "cluster-name", DefaultClusterName, "the watcher's DWP_CLUSTER_NAME, whose summaries the app list serves", func(c *Config, v string) error {
		c.Cluster = v
		return events.ValidateClusterName(v)
	}),
	envflag.String(EnvKubeconfig, "kubeconfig", "", "API server deciding what each caller may see (empty: in-cluster)", func(c *Config) *string { return &c.Kubeconfig }),
	envflag.Duration(EnvAccessCacheTTL, "access-cache-ttl", DefaultAccessCacheTTL.String(), "how long an access decision is reused (0: not at all)", func(c *Config) *time.Duration { return &c.AccessCacheTTL }),
)

// ParseConfig reads the family's keys from cfg and checks them.
func ParseConfig(cfg map[string]string) (Config, error) { return envflag.FromMap(settings, cfg) }
