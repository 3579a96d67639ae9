package supervisor

import (
	"context"
	"encoding/json"
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
// the fake bin folder): dwp-cluster, kubectl or one of the services.
const fakeEnv = "SUPERVISOR_TEST_FAKES"

func init() {
	if os.Getenv(fakeEnv) == "" {
		return
	}
	switch filepath.Base(os.Args[0]) {
	case "dwp-cluster":
		os.Exit(fakePlane(os.Args[1:]))
	case "kubectl":
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	case "dwp-function", "watcher", "sse-router":
		os.Exit(fakeService())
	}
}

// fakePlane plays `dwp-cluster up --dir D`: it writes D/info.json naming the fake API
// server (FAKE_API), with a kubeconfig of its own per start when D/move exists (a plane
// that comes back elsewhere), and removes it on SIGINT.
func fakePlane(args []string) int {
	dir := ""
	for i, a := range args {
		if a == "--dir" && i+1 < len(args) {
			dir = args[i+1]
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 1
	}
	starts := 1
	if b, err := os.ReadFile(filepath.Join(dir, "starts")); err == nil {
		starts, _ = strconv.Atoi(string(b))
		starts++
	}
	_ = os.WriteFile(filepath.Join(dir, "starts"), []byte(strconv.Itoa(starts)), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	kc := filepath.Join(dir, "admin.kubeconfig")
	if _, err := os.Stat(filepath.Join(dir, "move")); err == nil {
		kc = filepath.Join(dir, fmt.Sprintf("admin-%d.kubeconfig", starts))
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["dwp-local"] = &clientcmdapi.Cluster{Server: os.Getenv("FAKE_API"), InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "admin-token"}
	cfg.Contexts["dwp-local"] = &clientcmdapi.Context{Cluster: "dwp-local", AuthInfo: "admin"}
	cfg.CurrentContext = "dwp-local"
	if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT)
	b, _ := json.Marshal(controlplane.Info{
		Dir: dir, Server: os.Getenv("FAKE_API"), Kubeconfig: kc,
		Tokens:          map[string]string{"admin": "admin-token", "alice": "alice-token"},
		ArgoCDNamespace: "argocd", GitopsRepo: "http://127.0.0.1:1/gitops.git",
		ArgoServerURL: "http://127.0.0.1:2", ClusterName: "local",
		PrometheusURL: "http://127.0.0.1:3",
	})
	if err := os.WriteFile(filepath.Join(dir, "info.json"), b, 0o600); err != nil {
		return 1
	}
	fmt.Printf("control plane ready in %d.00s\n", starts)
	<-sig
	_ = os.Remove(filepath.Join(dir, "info.json"))
	return 0
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
	for _, name := range []string{"dwp-cluster", "kubectl", "dwp-function", "watcher", "sse-router"} {
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
	api, tokens := fakeAPIServer(t)
	t.Setenv(fakeEnv, "1")
	t.Setenv("FAKE_API", api.URL)
	state := t.TempDir()
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Root: t.TempDir(), BinDir: fakeBin(t), StateDir: state,
			Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second, ResetAfter: time.Minute},
			Grace:   5 * time.Second, ReadyTimeout: 30 * time.Second, ServicesReadyTimeout: time.Millisecond,
			Out: out,
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
	for _, want := range []string{"control plane ready in 1.00s", "Authorization: Bearer alice-token"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
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
	services := []string{"function", "watcher", "sse-router"}
	before := map[string][]string{}
	for _, s := range services {
		before[s] = serviceStarts(t, state, s)
	}

	killPlane := func() {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(clusterDir, "pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(string(b))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("plane back in place: services carry on", func(t *testing.T) {
		killPlane()
		took := waitFor(t, 5*time.Second, "plane ready again", func() bool {
			return strings.Contains(out.String(), "control plane ready again (control plane ready in 2.00s)")
		})
		t.Logf("plane ready again %s after SIGKILL", took.Round(time.Millisecond))
		if !strings.Contains(out.String(), "dwp-cluster exited (signal: killed); restarting in 100ms") {
			t.Errorf("restart not said:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
		for _, s := range services {
			if got := serviceStarts(t, state, s); len(got) != len(before[s]) {
				t.Errorf("%s restarted: %v → %v", s, before[s], got)
			}
		}
	})
	t.Run("plane back elsewhere: services restarted with it", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(clusterDir, "move"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		killPlane()
		waitFor(t, 10*time.Second, "services restarted", func() bool {
			for _, s := range services {
				if len(serviceStarts(t, state, s)) != len(before[s])+1 {
					return false
				}
			}
			return true
		})
		moved := "DWP_KUBECONFIG=" + filepath.Join(clusterDir, "admin-3.kubeconfig")
		for _, s := range services {
			b, _ := os.ReadFile(filepath.Join(state, "logs", s+".log"))
			if !strings.Contains(string(b), moved+"\n") {
				t.Errorf("%s not given %s", s, moved)
			}
		}
		if strings.Contains(out.String(), "function exited") {
			t.Errorf("a deliberate restart was reported as a crash:\n%s", out)
		}
		if tokens.Load() < 2 {
			t.Error("no new watcher token from the moved plane")
		}
	})

	var pids []int
	for _, s := range services {
		starts := serviceStarts(t, state, s)
		pid, _ := strconv.Atoi(starts[len(starts)-1])
		pids = append(pids, pid)
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
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still runs after Run returned", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(clusterDir, "info.json")); !os.IsNotExist(err) {
		t.Errorf("the plane did not stop cleanly (info.json: %v)", err)
	}
}
