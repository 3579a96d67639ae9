package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
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

// ParseConfig reads the family's keys from cfg and checks them.
func ParseConfig(cfg map[string]string) (Config, error) {
	c := Config{
		Kubeconfig:         cfg[EnvKubeconfig],
		ArgoServerURL:      strings.TrimRight(cfg[EnvArgoServerURL], "/"),
		ArgoServerCAFile:   cfg[EnvArgoServerCAFile],
		ArchiveDSN:         cfg[EnvArchiveDSN],
		ArchiveClusterName: or(cfg[EnvArchiveClusterName], DefaultArchiveClusterName),
		ArchiveInstanceID:  cfg[EnvArchiveInstanceID],
		AppLabel:           or(cfg[EnvAppLabel], DefaultAppLabel),
		TaskLabel:          or(cfg[EnvTaskLabel], DefaultTaskLabel),
		ClientCacheTTL:     DefaultClientCacheTTL,
		RunKeyFile:         cfg[EnvRunKeyFile],
	}
	var errs []error
	if v := cfg[EnvClientCacheTTL]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration such as 1m (0 disables the cache)", EnvClientCacheTTL, v))
		}
		c.ClientCacheTTL = d
	}
	for key, label := range map[string]string{EnvAppLabel: c.AppLabel, EnvTaskLabel: c.TaskLabel} {
		if msgs := validation.IsQualifiedName(label); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s=%q is not a label key: %s", key, label, strings.Join(msgs, "; ")))
		}
	}
	if c.AppLabel == c.TaskLabel {
		errs = append(errs, fmt.Errorf("%s and %s must differ", EnvAppLabel, EnvTaskLabel))
	}
	if c.ArgoServerURL != "" {
		u, err := url.Parse(c.ArgoServerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s=%q: want an http(s) URL", EnvArgoServerURL, c.ArgoServerURL))
		}
	}
	return c, errors.Join(errs...)
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
