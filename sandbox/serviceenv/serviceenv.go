// Package serviceenv is the environment that configures the task function, the watcher
// and the SSE router on the local control plane. `make run` (sandbox/supervisor) and the
// end-to-end tests (sandbox/stacktest) both build it here, so that a setting added for
// one is there for the other.
package serviceenv

import (
	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
)

// EventsAudience is the audience of the watcher's token for the function: the function
// accepts events sent with it, from Sender alone.
const EventsAudience = "dwp-function"

// Stack is where the three services run and what they share.
type Stack struct {
	Plane controlplane.Info
	// Function, Watcher and Router are the services' listen addresses (host:port).
	Function, Watcher, Router string
	// Redis is Redis's address; RedisPrefix, when set, keeps this stack's keys apart
	// from another's in the same Redis.
	Redis, RedisPrefix string
	// Cluster is the name the function and the watcher give the plane in events and
	// summaries ("default" when empty, as both default to).
	Cluster string
	// RunKeyFile holds the key that seals CD runs.
	RunKeyFile string
	// SinkTokenFile holds the watcher's token for EventsAudience, and Sender is the
	// identity it authenticates as.
	SinkTokenFile, Sender string
}

func (s Stack) cluster() string {
	if s.Cluster == "" {
		return "default"
	}
	return s.Cluster
}

func (s Stack) redis() []string {
	env := []string{"DWP_REDIS_ADDR=" + s.Redis}
	if s.RedisPrefix != "" {
		env = append(env, "DWP_REDIS_PREFIX="+s.RedisPrefix)
	}
	return env
}

// FunctionEnv configures the function. The archive is read through argo-server, as the
// caller; the Postgres DSN is there for when argo-server is not configured. The console,
// served by the router, calls the function cross-origin.
func (s Stack) FunctionEnv() []string {
	p := s.Plane
	return append([]string{
		"LISTEN_ADDRESS=" + s.Function, "DWP_KUBECONFIG=" + p.Kubeconfig,
		"DWP_ARGO_SERVER_URL=" + p.ArgoServerURL, "DWP_ARCHIVE_DSN=" + p.ArchiveDSN,
		"DWP_ARCHIVE_CLUSTER_NAME=" + p.ClusterName, "DWP_CLUSTER_NAME=" + s.cluster(),
		"DWP_GITOPS_REPO=" + p.GitopsRepo, "DWP_ARGOCD_NAMESPACE=" + p.ArgoCDNamespace,
		"DWP_RUN_KEY_FILE=" + s.RunKeyFile,
		"DWP_EVENTS_AUDIENCE=" + EventsAudience, "DWP_EVENT_SENDERS=" + s.Sender,
		"DWP_CORS_ORIGINS=http://" + s.Router,
	}, s.redis()...)
}

// WatcherEnv configures the watcher, sending to the function.
func (s Stack) WatcherEnv() []string {
	p := s.Plane
	return append([]string{
		"DWP_LISTEN_ADDRESS=" + s.Watcher, "DWP_KUBECONFIG=" + p.Kubeconfig,
		"K_SINK=http://" + s.Function + "/events", "DWP_SINK_TOKEN_FILE=" + s.SinkTokenFile,
		"DWP_ARGOCD_NAMESPACE=" + p.ArgoCDNamespace, "DWP_CLUSTER_NAME=" + s.cluster(),
		"DWP_RESYNC_INTERVAL=1m",
	}, s.redis()...)
}

// RouterEnv configures the router: the summaries' cluster under the kubeconfig's context
// name (dwp-local), the function's API for its console, and Prometheus for metric history
// when the plane runs it.
func (s Stack) RouterEnv() []string {
	p := s.Plane
	env := []string{
		"DWP_LISTEN_ADDRESS=" + s.Router, "DWP_KUBECONFIG=" + p.Kubeconfig,
		"DWP_ARGO_SERVER_URL=" + p.ArgoServerURL, "DWP_ARGOCD_NAMESPACE=" + p.ArgoCDNamespace,
		"DWP_SUMMARY_CLUSTER_NAMES=dwp-local=" + s.cluster(), "DWP_CONSOLE_API_URL=http://" + s.Function,
	}
	if p.PrometheusURL != "" {
		env = append(env, "DWP_PROMETHEUS_URL="+p.PrometheusURL)
	}
	return append(env, s.redis()...)
}
