package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"K_SINK": "http://broker/ns/default", "POD_NAMESPACE": "dwp"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.AppLabel != "app" || c.TaskLabel != "dwp.io/task" || c.Cluster != "default" || c.Resync != 5*time.Minute ||
		c.LeaseNamespace != "dwp" || c.LeaseName != "dwp-watcher" || !c.LeaderElect || len(c.Namespaces) != 0 || c.ListenAddress != "[::]:8080" {
		t.Errorf("defaults: %+v", c)
	}
	c, _ = Load(nil, env(map[string]string{"K_SINK": "http://x"}), io.Discard)
	if c.LeaseNamespace != "default" {
		t.Errorf("lease namespace without POD_NAMESPACE: %q", c.LeaseNamespace)
	}
}

func TestLoadValues(t *testing.T) {
	c, err := Load([]string{"--resync-interval=10s", "--namespaces", "b, a,b"}, env(map[string]string{
		"K_SINK": "https://sink", "K_CE_OVERRIDES": `{"extensions":{"team":"sre"}}`, "DWP_NAMESPACES": "ignored",
		"DWP_LEASE_NAMESPACE": "ops", "DWP_CLUSTER_NAME": "prod-eu",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Resync != 10*time.Second || strings.Join(c.Namespaces, ",") != "a,b" || c.Overrides["team"] != "sre" || c.LeaseNamespace != "ops" || c.Cluster != "prod-eu" {
		t.Errorf("%+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{}, nil, "K_SINK is not set"},
		{map[string]string{"K_SINK": "ftp://x"}, nil, "K_SINK"},
		{map[string]string{"K_SINK": "http://x", "DWP_NAMESPACES": "a,B"}, nil, "DWP_NAMESPACES"},
		{map[string]string{"K_SINK": "http://x", "DWP_RESYNC_INTERVAL": "0s"}, nil, "DWP_RESYNC_INTERVAL"},
		{map[string]string{"K_SINK": "http://x", "DWP_APP_LABEL": "bad label"}, nil, "DWP_APP_LABEL"},
		{map[string]string{"K_SINK": "http://x", "DWP_CLUSTER_NAME": "a/b"}, nil, "DWP_CLUSTER_NAME"},
		{map[string]string{"K_SINK": "http://x", "K_CE_OVERRIDES": `{"extensions":{"Bad-Name":"x"}}`}, nil, "K_CE_OVERRIDES"},
		{map[string]string{"K_SINK": "http://x", "DWP_LEASE_DURATION": "5s"}, nil, "shorter than DWP_LEASE_DURATION"},
		{map[string]string{"K_SINK": "http://x", "DWP_TASK_LABEL": "app"}, nil, "must differ"},
	} {
		_, err := Load(tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want an error mentioning %q", tc.env, tc.args, err, tc.want)
		}
	}
}
