package controlplane

import (
	"os"
	"os/exec"
	"testing"

	"sigs.k8s.io/yaml"
)

// The generated scrape configuration reads kwok's resource metrics for the plane's node
// on the run's kubelet port, and is one Prometheus accepts.
func TestPrometheusConfig(t *testing.T) {
	dir := t.TempDir()
	path, err := writePrometheusConfig(dir, 43210)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global struct {
			ScrapeInterval string `json:"scrape_interval"`
		} `json:"global"`
		ScrapeConfigs []struct {
			Scheme      string `json:"scheme"`
			MetricsPath string `json:"metrics_path"`
			TLSConfig   struct {
				InsecureSkipVerify bool `json:"insecure_skip_verify"`
			} `json:"tls_config"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("not YAML: %v", err)
	}
	if cfg.Global.ScrapeInterval != "5s" {
		t.Errorf("scrape_interval %q, want 5s", cfg.Global.ScrapeInterval)
	}
	if len(cfg.ScrapeConfigs) != 1 {
		t.Fatalf("%d scrape configs, want 1", len(cfg.ScrapeConfigs))
	}
	sc := cfg.ScrapeConfigs[0]
	if sc.Scheme != "https" || !sc.TLSConfig.InsecureSkipVerify {
		t.Errorf("scheme %q, insecure_skip_verify %v: want https without verification (kwok's certificate is the plane's own)", sc.Scheme, sc.TLSConfig.InsecureSkipVerify)
	}
	if want := "/metrics/nodes/" + nodeName + "/metrics/resource"; sc.MetricsPath != want {
		t.Errorf("metrics_path %q, want %q", sc.MetricsPath, want)
	}
	if len(sc.StaticConfigs) != 1 || len(sc.StaticConfigs[0].Targets) != 1 || sc.StaticConfigs[0].Targets[0] != "127.0.0.1:43210" {
		t.Errorf("targets %+v, want 127.0.0.1:43210", sc.StaticConfigs)
	}
	if _, err := os.Stat(prometheusDir(dir) + "/data"); err != nil {
		t.Errorf("no data folder: %v", err)
	}
	// promtool comes with Debian's prometheus package.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not installed; Prometheus's own check skipped")
		return
	}
	if out, err := exec.Command(promtool, "check", "config", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}
