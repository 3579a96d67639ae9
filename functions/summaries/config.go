package summaries

import (
	"errors"
	"fmt"
	"time"

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
	// EnvKubeconfig gives the API server (address and CA) that decides what each caller may
	// see; empty means in-cluster. Its credentials are never used: callers' tokens are.
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

// ParseConfig reads the family's keys from cfg and checks them.
func ParseConfig(cfg map[string]string) (Config, error) {
	var errs []error
	ro, err := summarystore.ParseOptions(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	c := Config{Redis: ro, Cluster: cfg[EnvClusterName], Kubeconfig: cfg[EnvKubeconfig], AccessCacheTTL: DefaultAccessCacheTTL}
	if c.Cluster == "" {
		c.Cluster = DefaultClusterName
	}
	if err := events.ValidateClusterName(c.Cluster); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvClusterName, err))
	}
	if v := cfg[EnvAccessCacheTTL]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration such as 10s (0 disables the cache)", EnvAccessCacheTTL, v))
		}
		c.AccessCacheTTL = d
	}
	return c, errors.Join(errs...)
}
