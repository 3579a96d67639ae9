package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// prometheusBinary is Debian's Prometheus (package prometheus), which services.sh
// installs; it is the one component not built from Go modules here.
const prometheusBinary = "prometheus"

// prometheusScrapeInterval is how often kwok's resource metrics are scraped: often enough
// that a 30 s rate() window always holds several samples.
const prometheusScrapeInterval = 5 * time.Second

// findPrometheus is the Prometheus binary on PATH, or "" when it is not installed: the
// plane runs without it (no metric history), saying so once.
func findPrometheus() string {
	path, err := exec.LookPath(prometheusBinary)
	if err != nil {
		return ""
	}
	return path
}

func prometheusDir(stateDir string) string { return filepath.Join(stateDir, "prometheus") }

// prometheusConfig scrapes the kubelet resource metrics kwok serves for the plane's node
// (the path metrics-server reads, given by the node's resource-metrics-path annotation),
// over kwok's self-signed HTTPS. It is written each start: with --ports auto the kubelet
// port changes from run to run.
func prometheusConfig(kubeletPort int) string {
	return fmt.Sprintf(`# Written by the local control plane at each start; edits are lost.
global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: kwok-resource-metrics
    scheme: https
    tls_config:
      insecure_skip_verify: true
    metrics_path: /metrics/nodes/%[2]s/metrics/resource
    static_configs:
      - targets: ['127.0.0.1:%[3]d']
`, prometheusScrapeInterval, nodeName, kubeletPort)
}

// writePrometheusConfig writes the configuration and makes the data folder, both in the
// state folder, returning the configuration's path.
func writePrometheusConfig(stateDir string, kubeletPort int) (string, error) {
	dir := prometheusDir(stateDir)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(prometheusConfig(kubeletPort)), 0o644); err != nil {
		return "", fmt.Errorf("prometheus configuration: %w", err)
	}
	return path, nil
}

// prometheusArgs serves on loopback only. Six hours of data is plenty for an hour of
// history and keeps a long-lived state folder small.
func prometheusArgs(configFile, dataDir string, port int) []string {
	return []string{
		"--config.file=" + configFile,
		"--storage.tsdb.path=" + dataDir,
		"--storage.tsdb.retention.time=6h",
		"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
		"--log.level=warn",
	}
}

// waitPrometheus waits until Prometheus answers /-/ready.
func (cp *ControlPlane) waitPrometheus(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	p := cp.procs["prometheus"]
	err := waitFor(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if !p.running() {
			return errors.New("prometheus is not running")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.info.PrometheusURL+"/-/ready", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prometheus not ready (see %s): %w", p.log, err)
	}
	return nil
}
