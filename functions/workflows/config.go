package workflows

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/envflag"
)

// Configuration keys read from the function's cfg (the ./cfg file merged with the environment).
const (
	// EnvKubeconfig names the kubeconfig giving the API server's address and CA; empty means
	// in-cluster. Its credentials act only for CloudEvents; HTTP requests use the caller's token.
	EnvKubeconfig = "DWP_KUBECONFIG"
	// EnvArgoServerURL is argo-server's base URL; when set, archived workflows are read
	// through its REST API with the caller's token.
	EnvArgoServerURL = "DWP_ARGO_SERVER_URL"
	// EnvArgoServerCAFile is a PEM bundle to trust for argo-server (empty: the system roots).
	EnvArgoServerCAFile = "DWP_ARGO_SERVER_CA_FILE"
	// EnvArchiveDSN is the Postgres connection string of the archive Argo's controller
	// writes; used when EnvArgoServerURL is empty.
	EnvArchiveDSN = "DWP_ARCHIVE_DSN"
	// EnvArchiveClusterName and EnvArchiveInstanceID select this cluster's rows in a shared
	// archive: the controller's persistence.clusterName and instanceID.
	EnvArchiveClusterName = "DWP_ARCHIVE_CLUSTER_NAME"
	EnvArchiveInstanceID  = "DWP_ARCHIVE_INSTANCE_ID"
	// EnvAppLabel is the label naming the app a workflow (or pod) belongs to.
	EnvAppLabel = "DWP_APP_LABEL"
	// EnvTaskLabel is the label naming the kind of task a workflow performs.
	EnvTaskLabel = "DWP_TASK_LABEL"
	// EnvRunKeyFile is the file holding the key that seals CD runs (at least 32 bytes; the
	// same for every replica). Without it, CD Task Runners cannot be submitted.
	EnvRunKeyFile = "DWP_RUN_KEY_FILE"
	// EnvClientCacheTTL is how long the API clients made for one bearer token are reused.
	EnvClientCacheTTL = "DWP_CLIENT_CACHE_TTL"
)

// Config is the workflows family's configuration.
type Config struct {
	Kubeconfig         string
	ArgoServerURL      string
	ArgoServerCAFile   string
	ArchiveDSN         string
	ArchiveClusterName string
	ArchiveInstanceID  string
	AppLabel           string
	TaskLabel          string
	ClientCacheTTL     time.Duration
	RunKeyFile         string
}

// Defaults of the configuration.
const (
	DefaultAppLabel           = "app"
	DefaultTaskLabel          = "dwp.io/task"
	DefaultArchiveClusterName = "default" // Argo's own default persistence.clusterName
	DefaultClientCacheTTL     = time.Minute
)

// labelKey sets a label key, checked as one.
func labelKey(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if msgs := validation.IsQualifiedName(v); len(msgs) > 0 {
			return fmt.Errorf("%q is not a label key: %s", v, strings.Join(msgs, "; "))
		}
		*field(c) = v
		return nil
	}
}

// settings are the family's variables.
var settings = []envflag.Setting[Config]{
	envflag.String(EnvKubeconfig, "kubeconfig", "", "API server address and CA (empty: in-cluster)", func(c *Config) *string { return &c.Kubeconfig }),
	envflag.Func(EnvArgoServerURL, "argo-server-url", "", "argo-server's base URL, for the archive (empty: the Postgres archive)", func(c *Config, v string) error {
		v = strings.TrimRight(v, "/")
		if v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%q: want an http(s) URL", v)
			}
		}
		c.ArgoServerURL = v
		return nil
	}),
	envflag.String(EnvArgoServerCAFile, "argo-server-ca-file", "", "CA bundle for argo-server", func(c *Config) *string { return &c.ArgoServerCAFile }),
	envflag.String(EnvArchiveDSN, "archive-dsn", "", "Postgres of Argo's archive", func(c *Config) *string { return &c.ArchiveDSN }),
	envflag.String(EnvArchiveClusterName, "archive-cluster-name", DefaultArchiveClusterName, "the controller's persistence.clusterName", func(c *Config) *string { return &c.ArchiveClusterName }),
	envflag.String(EnvArchiveInstanceID, "archive-instance-id", "", "the controller's instanceID", func(c *Config) *string { return &c.ArchiveInstanceID }),
	envflag.Func(EnvAppLabel, "app-label", DefaultAppLabel, "label naming a workflow's app", labelKey(func(c *Config) *string { return &c.AppLabel })),
	envflag.Func(EnvTaskLabel, "task-label", DefaultTaskLabel, "label naming a workflow's kind of task", labelKey(func(c *Config) *string { return &c.TaskLabel })),
	envflag.String(EnvRunKeyFile, "run-key-file", "", "key sealing CD runs", func(c *Config) *string { return &c.RunKeyFile }),
	envflag.Duration(EnvClientCacheTTL, "client-cache-ttl", DefaultClientCacheTTL.String(), "how long one token's API clients are reused (0: not at all)", func(c *Config) *time.Duration { return &c.ClientCacheTTL }),
}

// ParseConfig reads the family's keys from cfg and checks them.
func ParseConfig(cfg map[string]string) (Config, error) {
	c, err := envflag.FromMap(settings, cfg)
	if err != nil {
		return c, err
	}
	if c.AppLabel == c.TaskLabel {
		return c, fmt.Errorf("%s and %s must differ", EnvAppLabel, EnvTaskLabel)
	}
	return c, nil
}
