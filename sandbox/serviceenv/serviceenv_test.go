package serviceenv

import (
	"slices"
	"strings"
	"testing"

	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
)

func TestStackEnv(t *testing.T) {
	plane := controlplane.Info{
		Kubeconfig: "/k", ArgoServerURL: "http://127.0.0.1:2746", ArchiveDSN: "postgres://a", ClusterName: "local",
		GitopsRepo: "http://127.0.0.1:1/gitops.git", ArgoCDNamespace: "argocd",
	}
	base := Stack{
		Plane: plane, Function: "127.0.0.1:8080", Watcher: "127.0.0.1:8081", Router: "127.0.0.1:8090",
		Redis: "127.0.0.1:6379", RunKeyFile: "/run.key", SinkTokenFile: "/token", Sender: "system:serviceaccount:dwp-system:dwp-watcher",
	}
	withExtras := base
	withExtras.RedisPrefix, withExtras.Cluster = "e2e:", "e2e-1"
	withExtras.Plane.PrometheusURL = "http://127.0.0.1:9090"

	cases := []struct {
		name       string
		env        []string
		want, lack []string
	}{
		{"function", base.FunctionEnv(),
			[]string{"LISTEN_ADDRESS=127.0.0.1:8080", "DWP_CLUSTER_NAME=default", "DWP_ARCHIVE_CLUSTER_NAME=local",
				"DWP_EVENTS_AUDIENCE=dwp-function", "DWP_EVENT_SENDERS=system:serviceaccount:dwp-system:dwp-watcher",
				"DWP_CORS_ORIGINS=http://127.0.0.1:8090", "DWP_RUN_KEY_FILE=/run.key", "DWP_REDIS_ADDR=127.0.0.1:6379"},
			[]string{"DWP_REDIS_PREFIX"}},
		{"watcher", base.WatcherEnv(),
			[]string{"K_SINK=http://127.0.0.1:8080/events", "DWP_SINK_TOKEN_FILE=/token", "DWP_LISTEN_ADDRESS=127.0.0.1:8081",
				"DWP_CLUSTER_NAME=default"},
			nil},
		{"router", base.RouterEnv(),
			[]string{"DWP_LISTEN_ADDRESS=127.0.0.1:8090", "DWP_SUMMARY_CLUSTER_NAMES=dwp-local=default",
				"DWP_CONSOLE_API_URL=http://127.0.0.1:8080"},
			[]string{"DWP_PROMETHEUS_URL"}},
		{"function of a named stack", withExtras.FunctionEnv(),
			[]string{"DWP_CLUSTER_NAME=e2e-1", "DWP_REDIS_PREFIX=e2e:"}, nil},
		{"watcher of a named stack", withExtras.WatcherEnv(),
			[]string{"DWP_CLUSTER_NAME=e2e-1", "DWP_REDIS_PREFIX=e2e:"}, nil},
		{"router of a named stack", withExtras.RouterEnv(),
			[]string{"DWP_SUMMARY_CLUSTER_NAMES=dwp-local=e2e-1", "DWP_REDIS_PREFIX=e2e:", "DWP_PROMETHEUS_URL=http://127.0.0.1:9090"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !slices.Contains(tc.env, w) {
					t.Errorf("lacks %s: %v", w, tc.env)
				}
			}
			names := map[string]bool{}
			for _, kv := range tc.env {
				name, _, _ := strings.Cut(kv, "=")
				if names[name] {
					t.Errorf("%s set twice: %v", name, tc.env)
				}
				names[name] = true
			}
			for _, l := range tc.lack {
				if names[l] {
					t.Errorf("sets %s: %v", l, tc.env)
				}
			}
		})
	}
}
