package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const twoContexts = `apiVersion: v1
kind: Config
clusters:
- name: east
  cluster: {server: "https://east.example:6443"}
- name: west
  cluster: {server: "https://west.example:6443"}
users:
- name: router
  user: {token: secret}
contexts:
- name: prod-east
  context: {cluster: east, user: router}
- name: prod-west
  context: {cluster: west, user: router}
current-context: prod-west
`

func writeKubeconfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// expectError fails t unless err contains want, or is nil when want is empty; it reports
// whether an error was wanted, so that the case ends there.
func expectError(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
	return true
}

func TestLoad(t *testing.T) {
	path := writeKubeconfig(t, twoContexts)
	noCurrent := writeKubeconfig(t, strings.Replace(twoContexts, "current-context: prod-west", "", 1))

	tests := []struct {
		name        string
		opts        Options
		wantDefault string
		wantServer  string
		wantErr     string
	}{
		{"current context is the default", Options{Kubeconfig: path}, "prod-west", "https://west.example:6443", ""},
		{"explicit default", Options{Kubeconfig: path, Default: "prod-east"}, "prod-east", "https://east.example:6443", ""},
		{"unknown default", Options{Kubeconfig: path, Default: "nope"}, "", "", `default cluster "nope" is not among [prod-east prod-west]`},
		{"no current context", Options{Kubeconfig: noCurrent}, "", "", "no default cluster"},
		{"missing file", Options{Kubeconfig: filepath.Join(t.TempDir(), "absent")}, "", "", "read kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := Load(tt.opts)
			if expectError(t, err, tt.wantErr) {
				return
			}
			if got := cs.Default().Name; got != tt.wantDefault {
				t.Fatalf("default = %q, want %q", got, tt.wantDefault)
			}
			if got := cs.Default().Config.Host; got != tt.wantServer {
				t.Fatalf("server = %q, want %q", got, tt.wantServer)
			}
			if got := strings.Join(cs.Names(), ","); got != "prod-east,prod-west" {
				t.Fatalf("names = %s", got)
			}
			if c, ok := cs.Get(""); !ok || c.Name != tt.wantDefault {
				t.Fatalf("Get(\"\") = %v, %v", c, ok)
			}
			if c, ok := cs.Get("prod-east"); !ok || c.Kubernetes == nil || c.Argo == nil || c.Metrics == nil {
				t.Fatalf("Get(prod-east) = %+v, %v", c, ok)
			}
			if _, ok := cs.Get("prod-north"); ok {
				t.Fatal("unknown cluster found")
			}
		})
	}
}

func TestLoadOptionsApplyToEveryCluster(t *testing.T) {
	cs, err := Load(Options{Kubeconfig: writeKubeconfig(t, twoContexts), QPS: 42, Burst: 84, UserAgent: "dwp-test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range cs.Names() {
		c, _ := cs.Get(n)
		if c.Config.QPS != 42 || c.Config.Burst != 84 || c.Config.UserAgent != "dwp-test" {
			t.Fatalf("%s: qps=%v burst=%v ua=%q", n, c.Config.QPS, c.Config.Burst, c.Config.UserAgent)
		}
	}
}

func TestLoadInClusterOutsideACluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := Load(Options{})
	if err == nil || !strings.Contains(err.Error(), "not running in a cluster") {
		t.Fatalf("err = %v", err)
	}
}

func TestRESTConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	absent := filepath.Join(t.TempDir(), "absent")
	tests := []struct {
		name       string
		kubeconfig string
		wantServer string
		wantErr    string
	}{
		{"current context", writeKubeconfig(t, twoContexts), "https://west.example:6443", ""},
		{"missing file", absent, "", "kubeconfig " + absent},
		{"in-cluster outside a cluster", "", "", "not running in a cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := RESTConfig(tt.kubeconfig)
			if expectError(t, err, tt.wantErr) {
				return
			}
			if cfg.Host != tt.wantServer || cfg.BearerToken != "secret" {
				t.Fatalf("host = %q, token = %q", cfg.Host, cfg.BearerToken)
			}
		})
	}
}
