package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
)

// fakeEnv, when set, makes the test binary play the program it is named after (a link in
// the fake bin folder): kubectl or one of the services.
const fakeEnv = "SUPERVISOR_TEST_FAKES"

func init() {
	if os.Getenv(fakeEnv) == "" {
		return
	}
	switch filepath.Base(os.Args[0]) {
	case "kubectl":
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	case "dwp-function", "watcher", "sse-router":
		os.Exit(fakeService())
	}
}

// fakePlane plays the control plane: its info names the fake API server, with a
// kubeconfig written into the plane's folder.
type fakePlane struct {
	info controlplane.Info
	// stopped receives, when the plane is stopped, the services' pids still alive then.
	stopped  chan []int
	services func() []int
}

func (p *fakePlane) Info() controlplane.Info { return p.info }

func (p *fakePlane) Stop() {
	var alive []int
	for _, pid := range p.services() {
		if syscall.Kill(pid, 0) == nil {
			alive = append(alive, pid)
		}
	}
	p.stopped <- alive
}

func startFakePlane(api string, plane *fakePlane) func(context.Context, controlplane.Config) (Plane, error) {
	return func(_ context.Context, c controlplane.Config) (Plane, error) {
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			return nil, err
		}
		kc := filepath.Join(c.Dir, "admin.kubeconfig")
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["dwp-local"] = &clientcmdapi.Cluster{Server: api, InsecureSkipTLSVerify: true}
		cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "admin-token"}
		cfg.Contexts["dwp-local"] = &clientcmdapi.Context{Cluster: "dwp-local", AuthInfo: "admin"}
		cfg.CurrentContext = "dwp-local"
		if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
			return nil, err
		}
		fmt.Fprintln(c.Out, "fake plane: building nothing")
		// What the plane says when one of its components exits by itself.
		c.Logger.Warn("component exited; restarting", "component", "etcd", "after", "50ms")
		c.Logger.Info("only for the log")
		plane.info = controlplane.Info{
			Dir: c.Dir, Server: api, Kubeconfig: kc,
			Tokens:          map[string]string{"admin": "admin-token", "alice": "alice-token"},
			ArgoCDNamespace: "argocd", GitopsRepo: "http://127.0.0.1:1/gitops.git",
			ArgoServerURL: "http://127.0.0.1:2", ClusterName: "local",
			PrometheusURL: "http://127.0.0.1:3",
		}
		return plane, nil
	}
}

// fakeService prints its pid and the settings it was given, and runs until SIGINT.
func fakeService() int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT)
	fmt.Printf("started pid=%d\n", os.Getpid())
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DWP_") || strings.HasPrefix(kv, "K_SINK") || strings.HasPrefix(kv, "LISTEN_") {
			fmt.Println(kv)
		}
	}
	<-sig
	return 0
}

// fakeAPIServer answers what the set-up asks of the API server: the watcher's namespace,
// ServiceAccount and tokens.
func fakeAPIServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var tokens atomic.Int32
	// TLS: client-go sends a bearer token over https only.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer admin-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/serviceaccounts/"+watcherSA+"/token"):
			n := tokens.Add(1)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","status":{"token":"watcher-token-%d","expirationTimestamp":"2030-01-01T00:00:00Z"}}`, n)
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces":
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":%q}}`, watcherNS)
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/"+watcherNS+"/serviceaccounts":
			// Made already: the set-up runs on every start of the plane.
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists","code":409}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &tokens
}

func fakeBin(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, name := range []string{"kubectl", "dwp-function", "watcher", "sse-router"} {
		if err := os.Symlink(exe, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

var startedRE = regexp.MustCompile(`started pid=(\d+)`)

// serviceStarts lists the pids a fake service's log recorded, one per start.
func serviceStarts(t *testing.T, state, name string) []string {
	b, _ := os.ReadFile(filepath.Join(state, "logs", name+".log"))
	var pids []string
	for _, m := range startedRE.FindAllStringSubmatch(string(b), -1) {
		pids = append(pids, m[1])
	}
	return pids
}

func TestRunKeepsPlaneAndServicesUp(t *testing.T) {
	api, _ := fakeAPIServer(t)
	t.Setenv(fakeEnv, "1")
	state := t.TempDir()
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	services := []string{"function", "watcher", "sse-router"}
	servicePids := func() []int {
		var pids []int
		for _, s := range services {
			for _, p := range serviceStarts(t, state, s) {
				pid, _ := strconv.Atoi(p)
				pids = append(pids, pid)
			}
		}
		return pids
	}
	plane := &fakePlane{stopped: make(chan []int, 1), services: servicePids}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Root: t.TempDir(), BinDir: fakeBin(t), StateDir: state,
			Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second, ResetAfter: time.Minute},
			Grace:   5 * time.Second, ReadyTimeout: 30 * time.Second, ServicesReadyTimeout: time.Millisecond,
			StartPlane: startFakePlane(api.URL, plane),
			Out:        out,
		})
	}()
	console := "Console: http://127.0.0.1:8090/console/ — sign in with alice's token: alice-token"
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s", out)
		}
	}()
	waitFor(t, 30*time.Second, "the banner", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		return strings.Contains(out.String(), console)
	})
	for _, want := range []string{"control plane ready in ", "Authorization: Bearer alice-token",
		`level=WARN msg="component exited; restarting" component=etcd after=50ms`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	for _, quiet := range []string{"only for the log", "building nothing"} {
		if strings.Contains(out.String(), quiet) {
			t.Errorf("the console shows %q, meant for the plane's log:\n%s", quiet, out)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(state, "logs", "cluster.log")); !strings.Contains(string(b), "only for the log") || !strings.Contains(string(b), "building nothing") {
		t.Errorf("the plane's log lacks what it said:\n%s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "watcher.token")); string(b) != "watcher-token-1" {
		t.Errorf("watcher token %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "run.key")); !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(b) {
		t.Errorf("run key %q", b)
	}
	clusterDir := filepath.Join(state, "cluster")
	for _, tc := range []struct{ service, env string }{
		{"function", "DWP_CORS_ORIGINS=http://127.0.0.1:8090"},
		{"function", "DWP_KUBECONFIG=" + filepath.Join(clusterDir, "admin.kubeconfig")},
		{"function", "DWP_RUN_KEY_FILE=" + filepath.Join(state, "run.key")},
		{"watcher", "DWP_SINK_TOKEN_FILE=" + filepath.Join(state, "watcher.token")},
		{"sse-router", "DWP_CONSOLE_API_URL=http://127.0.0.1:8080"},
		{"sse-router", "DWP_PROMETHEUS_URL=http://127.0.0.1:3"},
	} {
		waitFor(t, 5*time.Second, tc.service+" given "+tc.env, func() bool {
			b, _ := os.ReadFile(filepath.Join(state, "logs", tc.service+".log"))
			return strings.Contains(string(b), tc.env+"\n")
		})
	}

	pids := servicePids()
	if len(pids) != len(services) {
		t.Fatalf("service starts %v, want one each", pids)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	select {
	case alive := <-plane.stopped:
		if len(alive) > 0 {
			t.Errorf("the plane was stopped while services %v still ran on it", alive)
		}
	default:
		t.Error("the plane was not stopped")
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still runs after Run returned", pid)
		}
	}
}

// A plane that cannot start ends Run with its reason and the end of its log.
func TestRunReportsAPlaneThatFailsToStart(t *testing.T) {
	err := Run(context.Background(), Config{
		Root: t.TempDir(), BinDir: t.TempDir(), StateDir: t.TempDir(), Grace: time.Second,
		StartPlane: func(_ context.Context, c controlplane.Config) (Plane, error) {
			fmt.Fprintln(c.Out, "kube-apiserver: port 6443 in use")
			return nil, errors.New("kube-apiserver not ready")
		},
		Out: io.Discard,
	})
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver not ready") || !strings.Contains(err.Error(), "port 6443 in use") {
		t.Fatalf("Run: %v, want the plane's error and its log", err)
	}
}
