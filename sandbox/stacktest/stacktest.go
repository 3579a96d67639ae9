// Package stacktest runs dwp-sre as `make run` does, for end-to-end tests: the task
// function, the watcher and the SSE router, each its real binary, configured by its
// environment, on a test's local control plane, with the Task Runners and the Argo CD
// project installed. Each Stack has Redis keys and a cluster name of its own, so stacks
// of several tests share one Redis and one plane without seeing each other's summaries.
package stacktest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sandbox/serviceenv"
)

// Options tune a Stack.
type Options struct {
	// Namespaces the watcher watches (empty: all).
	Namespaces []string
	// Function, Watcher and Router are extra NAME=value settings of each service.
	Function, Watcher, Router []string
}

// Stack is the three services running.
type Stack struct {
	// FunctionURL and RouterURL are the services' base URLs (http on loopback).
	FunctionURL, RouterURL string
	// Cluster is the name the function and the watcher give the plane in summaries.
	Cluster string
	procs   []*proc
}

// Start runs the services for t, stopped when t ends. It needs Argo CD to sync (CD runs
// deploy through it): it waits for that.
func Start(t testing.TB, env *clustertest.Env, opts Options) *Stack {
	t.Helper()
	env.WaitArgoCD(t)
	bins := build(t, env)
	dir := t.TempDir()
	suffix := randomSuffix()
	st := &Stack{Cluster: "e2e-" + suffix}
	prefix := "dwp-e2e-" + suffix + ":"

	key := filepath.Join(dir, "run.key")
	if err := os.WriteFile(key, []byte(randomSuffix()+randomSuffix()+randomSuffix()+randomSuffix()), 0o600); err != nil {
		t.Fatal(err)
	}
	// The watcher sends as its ServiceAccount in a namespace of the stack's own.
	senderNS := env.Namespace(t)
	tokenFile, sender := env.SenderToken(t, senderNS, "dwp-watcher", serviceenv.EventsAudience)

	stack := serviceenv.Stack{
		Plane: env.Info, Function: freeAddr(t), Watcher: freeAddr(t), Router: freeAddr(t),
		Redis: "127.0.0.1:6379", RedisPrefix: prefix, Cluster: st.Cluster,
		RunKeyFile: key, SinkTokenFile: tokenFile, Sender: sender,
	}
	st.FunctionURL, st.RouterURL = "http://"+stack.Function, "http://"+stack.Router

	st.start(t, "function", bins["dwp-function"], dir, append(stack.FunctionEnv(), opts.Function...))
	waitHTTP(t, st.FunctionURL+"/health/readiness", 30*time.Second)

	// The watcher of a test: its namespaces only, no leader election, CD steps looked at
	// again every 2 s.
	w := startService(t, "watcher", bins["watcher"], dir, stack.Watcher, nil, append(append(stack.WatcherEnv(),
		"DWP_NAMESPACES="+strings.Join(opts.Namespaces, ","), "DWP_LEADER_ELECT=false", "DWP_STEP_RECHECK_INTERVAL=2s",
	), opts.Watcher...))
	st.procs = append(st.procs, w.proc)

	r := startService(t, "sse-router", bins["sse-router"], dir, stack.Router, nil, append(stack.RouterEnv(), opts.Router...))
	st.procs = append(st.procs, r.proc)
	return st
}

// Service is one service's binary running alone (StartWatcher, StartRouter) or as part
// of a Stack.
type Service struct {
	// Addr is where it listens (host:port): the router its API, the watcher /readyz and
	// /metrics.
	Addr string
	proc *proc
}

// StartWatcher runs the watcher binary alone for t (for tests that serve the function
// their own way) and returns once it is ready. settings are NAME=value, K_SINK at least;
// they override watcherDefaults.
func StartWatcher(t testing.TB, env *clustertest.Env, settings ...string) *Service {
	t.Helper()
	return startService(t, "watcher", build(t, env)["watcher"], t.TempDir(), freeAddr(t), watcherDefaults(env), settings)
}

// StartRouter runs the router binary alone for t and returns once it is ready; settings
// override routerDefaults.
func StartRouter(t testing.TB, env *clustertest.Env, settings ...string) *Service {
	t.Helper()
	return startService(t, "sse-router", build(t, env)["sse-router"], t.TempDir(), freeAddr(t), routerDefaults(env), settings)
}

// watcherDefaults: the plane's kubeconfig, Argo CD namespace and cluster name, all
// namespaces, no leader election, a step recheck every 2 s and a resync every minute.
func watcherDefaults(env *clustertest.Env) []string {
	return []string{"DWP_KUBECONFIG=" + env.Kubeconfig, "DWP_LEADER_ELECT=false",
		"DWP_ARGOCD_NAMESPACE=" + env.ArgoCDNamespace, "DWP_CLUSTER_NAME=" + env.ClusterName,
		"DWP_STEP_RECHECK_INTERVAL=2s", "DWP_RESYNC_INTERVAL=1m"}
}

// routerDefaults: the plane's kubeconfig, argo-server and Argo CD namespace.
func routerDefaults(env *clustertest.Env) []string {
	return []string{"DWP_KUBECONFIG=" + env.Kubeconfig, "DWP_ARGO_SERVER_URL=" + env.ArgoServerURL,
		"DWP_ARGOCD_NAMESPACE=" + env.ArgoCDNamespace}
}

// startService runs a watcher or router binary listening on addr, with the defaults and
// then settings (exec keeps the last of a repeated name: settings win), and waits for its
// /readyz.
func startService(t testing.TB, name, bin, dir, addr string, defaults, settings []string) *Service {
	t.Helper()
	sv := &Service{Addr: addr}
	env := append(append([]string{"DWP_LISTEN_ADDRESS=" + addr}, defaults...), settings...)
	sv.proc = &proc{name: name, bin: bin, log: filepath.Join(dir, name+".log"), env: env}
	run(t, sv.proc)
	waitHTTP(t, "http://"+addr+"/readyz", 30*time.Second)
	return sv
}

// URL is the service's base URL.
func (sv *Service) URL() string { return "http://" + sv.Addr }

// Metric reads one sample of the service's /metrics, e.g.
// `dwp_watcher_changes_total{change="changed",kind="applications"}` (0 when absent).
func (sv *Service) Metric(t testing.TB, sample string) float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(sv.URL() + "/metrics")
	if err != nil {
		t.Fatalf("watcher /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("watcher /metrics: %d %v %s", resp.StatusCode, err, body)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// proc is one service's process.
type proc struct {
	name, bin string
	env       []string
	cmd       *exec.Cmd
	log       string
	done      chan struct{}
}

func (st *Stack) start(t testing.TB, name, bin, dir string, env []string) {
	t.Helper()
	p := &proc{name: name, bin: bin, env: env, log: filepath.Join(dir, name+".log")}
	run(t, p)
	st.procs = append(st.procs, p)
}

// Restart kills the service (SIGKILL, as a crash) and starts it again as it was, on the
// same address, returning once it serves again.
func (st *Stack) Restart(t testing.TB, name string) {
	t.Helper()
	for _, p := range st.procs {
		if p.name != name {
			continue
		}
		_ = p.cmd.Process.Kill()
		<-p.done
		run(t, p)
		switch name {
		case "function":
			waitHTTP(t, st.FunctionURL+"/health/readiness", 30*time.Second)
		case "sse-router":
			waitHTTP(t, st.RouterURL+"/readyz", 30*time.Second)
		}
		return
	}
	t.Fatalf("no service %q in the stack", name)
}

// run starts p's process, appending to its log, stopped when t ends.
func run(t testing.TB, p *proc) {
	t.Helper()
	p.done = make(chan struct{})
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(p.bin)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// The services die with the test binary, whatever ends it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", p.name, err)
	}
	cmd, done := p.cmd, p.done
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() && cmd == p.cmd {
			t.Logf("%s log (last 40 lines):\n%s", p.name, LogTail(p.log, 40))
		}
	})
}

// Logs maps each service to its log file.
func (st *Stack) Logs() map[string]string {
	m := map[string]string{}
	for _, p := range st.procs {
		m[p.name] = p.log
	}
	return m
}

// LogTail is the last n lines of a log file.
func LogTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// build builds the three binaries once per test process, and installs the Task Runners.
func build(t testing.TB, env *clustertest.Env) map[string]string {
	t.Helper()
	Install(t, env)
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "dwp-stack-")
		if binaries.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binaries.dir+"/", "./cmd/dwp-function", "./watcher", "./sse-router")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build the services: %v\n%s", err, out)
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return map[string]string{
		"dwp-function": filepath.Join(binaries.dir, "dwp-function"),
		"watcher":      filepath.Join(binaries.dir, "watcher"),
		"sse-router":   filepath.Join(binaries.dir, "sse-router"),
	}
}

var installed struct {
	once sync.Once
	err  error
}

// Install puts what every run of the services needs on the plane, once per test process:
// the Task Runners (CI and CD templates, their RBAC) and the Argo CD project of the apps,
// limited to the plane's GitOps repository (as `make run` does).
func Install(t testing.TB, env *clustertest.Env) {
	t.Helper()
	dyn := env.AdminDynamic(t)
	installed.once.Do(func() { installed.err = install(dyn, env) })
	if installed.err != nil {
		t.Fatal(installed.err)
	}
}

func install(dyn dynamic.Interface, env *clustertest.Env) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resources := map[string]schema.GroupVersionResource{
		"ClusterWorkflowTemplate": {Group: "argoproj.io", Version: "v1alpha1", Resource: "clusterworkflowtemplates"},
		"ClusterRole":             {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		"ClusterRoleBinding":      {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	}
	for _, file := range []string{"ci.yaml", "cd.yaml", "rbac.yaml"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "task-runner", file))
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			gvr, ok := resources[u.GetKind()]
			if !ok {
				continue
			}
			if _, err := dyn.Resource(gvr).Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "stacktest", Force: true}); err != nil {
				return fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err)
			}
		}
	}
	project := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
		"metadata": map[string]any{"name": "dwp", "namespace": env.ArgoCDNamespace},
		"spec": map[string]any{
			"sourceRepos":              []any{env.GitopsRepo},
			"destinations":             []any{map[string]any{"server": "https://kubernetes.default.svc", "namespace": "*"}},
			"clusterResourceWhitelist": []any{map[string]any{"group": "", "kind": "Namespace"}},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "appprojects"}
	if _, err := dyn.Resource(gvr).Namespace(env.ArgoCDNamespace).Apply(ctx, "dwp", project, metav1.ApplyOptions{FieldManager: "stacktest", Force: true}); err != nil {
		return fmt.Errorf("apply the AppProject: %w", err)
	}
	return nil
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %s (last: %v)", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
