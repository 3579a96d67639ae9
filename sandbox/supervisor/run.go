package supervisor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
	"github.com/dwp-sre/dwp-sre/sandbox/serviceenv"
)

// Config is where `make run`'s pieces live.
type Config struct {
	// Root is the repository (deploy/ is read from there); relative paths below are
	// relative to it.
	Root string
	// BinDir holds the plane's components, kubectl and the services' binaries.
	BinDir string
	// StateDir holds the plane's state (cluster/), the services' logs (logs/), the run
	// key and the watcher's token.
	StateDir string
	Backoff  Backoff
	// Grace is how long a child may take to stop after SIGINT.
	Grace time.Duration
	// ReadyTimeout bounds the plane's first start (a cold build takes many minutes).
	ReadyTimeout time.Duration
	// ServicesReadyTimeout bounds the wait for the function's readiness before the
	// banner (10 s when 0).
	ServicesReadyTimeout time.Duration
	// Seed seeds the demo (past CI and CD runs) when the cluster has not been seeded yet.
	Seed bool
	// Addrs are where the services listen and where Redis answers (DefaultAddrs when
	// zero).
	Addrs Addrs
	// Plane configures the local control plane, which runs in this process (a launcher
	// of its own would be one more process whose death took the whole plane down); Run
	// sets its folders, build, output and logger.
	Plane controlplane.Config
	// StartPlane starts the plane: controlplane.Start when nil.
	StartPlane func(context.Context, controlplane.Config) (Plane, error)
	// Out is the console.
	Out io.Writer
}

// Plane is the running control plane, as Run uses it.
type Plane interface {
	Info() controlplane.Info
	Stop()
}

func startPlane(ctx context.Context, cfg controlplane.Config) (Plane, error) {
	cp, err := controlplane.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return cp, nil
}

// Addrs are the services' host:port addresses.
type Addrs struct {
	Function, Watcher, Router, Redis string
}

// DefaultAddrs are the addresses the README's examples and the console use.
var DefaultAddrs = Addrs{
	Function: "127.0.0.1:8080", Watcher: "127.0.0.1:8081", Router: "127.0.0.1:8090", Redis: "127.0.0.1:6379",
}

const (
	// The watcher sends events as its own ServiceAccount, with a token for the function's
	// audience (serviceenv.EventsAudience); the function accepts events from that identity
	// alone.
	watcherNS       = "dwp-system"
	watcherSA       = "dwp-watcher"
	tokenLifetime   = 2 * time.Hour
	tokenRenewEvery = time.Hour
)

type runner struct {
	cfg        Config
	sup        *Supervisor
	clusterDir string
	logDir     string
	tokenFile  string
	runKey     string
}

// Run starts the control plane and the services, keeps them up, and stops them when ctx
// ends. It returns an error only when the first start fails.
func Run(ctx context.Context, cfg Config) error {
	for _, p := range []*string{&cfg.BinDir, &cfg.StateDir} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(cfg.Root, *p)
		}
	}
	r := &runner{
		cfg:        cfg,
		sup:        New(cfg.Out, cfg.Backoff, cfg.Grace),
		clusterDir: filepath.Join(cfg.StateDir, "cluster"),
		logDir:     filepath.Join(cfg.StateDir, "logs"),
		tokenFile:  filepath.Join(cfg.StateDir, "watcher.token"),
		runKey:     filepath.Join(cfg.StateDir, "run.key"),
	}
	if r.cfg.Addrs == (Addrs{}) {
		r.cfg.Addrs = DefaultAddrs
	}
	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return err
	}
	planeLog, err := os.OpenFile(r.planeLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer planeLog.Close()
	var plane Plane
	defer func() {
		fmt.Fprintln(cfg.Out, "\nstopping")
		// The stop must finish even though ctx has ended: a fresh context. The services
		// first, then the plane they run on.
		stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := r.sup.Stop(stopCtx); err != nil {
			fmt.Fprintln(cfg.Out, err)
		}
		if plane != nil {
			plane.Stop()
		}
	}()
	plane, err = r.startPlane(ctx, planeLog)
	if ctx.Err() != nil {
		return nil // stopped while starting: not a failure
	}
	if err != nil {
		return err
	}
	info := plane.Info()
	if err := r.setUp(ctx, info); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := r.startServices(info); err != nil {
		return err
	}
	wait := cfg.ServicesReadyTimeout
	if wait == 0 {
		wait = 10 * time.Second
	}
	r.waitFunctionReady(ctx, wait)
	r.printBanner(info)

	// Owned goroutines: token renewal and the demo's seed stop with ctx.
	bg, cancelBG := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	defer func() {
		cancelBG()
		<-done
		<-done
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		r.renewToken(bg, info)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		if cfg.Seed {
			r.seed(bg, info)
		}
	}()

	<-ctx.Done()
	return nil
}

func (r *runner) planeLog() string { return filepath.Join(r.logDir, "cluster.log") }

// startPlane starts the control plane and returns once it is ready. Its log gets all
// it says; the console what a person should know, such as a component that exited and
// was started again.
func (r *runner) startPlane(ctx context.Context, log io.Writer) (Plane, error) {
	fmt.Fprintf(r.cfg.Out, "starting the local control plane (state in %s, log %s)\n", r.rel(r.clusterDir), r.rel(r.planeLog()))
	c := r.cfg.Plane
	c.Dir, c.BinDir, c.Repo, c.Build, c.Out = r.clusterDir, r.cfg.BinDir, r.cfg.Root, true, log
	c.Logger = slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(log, nil),
		slog.NewTextHandler(r.cfg.Out, &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: withoutTime}),
	))
	start := r.cfg.StartPlane
	if start == nil {
		start = startPlane
	}
	startCtx := ctx
	if r.cfg.ReadyTimeout > 0 {
		var cancel context.CancelFunc
		startCtx, cancel = context.WithTimeout(ctx, r.cfg.ReadyTimeout)
		defer cancel()
	}
	begin := time.Now()
	p, err := start(startCtx, c)
	if err != nil {
		return nil, fmt.Errorf("the control plane failed: %w\n%s", err, tail(r.planeLog(), 30))
	}
	fmt.Fprintf(r.cfg.Out, "control plane ready in %s\n", time.Since(begin).Round(10*time.Millisecond))
	return p, nil
}

// withoutTime leaves the time out of console lines (the log keeps it).
func withoutTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (r *runner) rel(path string) string {
	if rel, err := filepath.Rel(r.cfg.Root, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

// setUp applies what the services and the demo need: the demo namespace, the Task
// Runners, the AppProject of the apps' Argo CD Applications, the watcher's identity and
// token, and the key that seals CD runs.
func (r *runner) setUp(ctx context.Context, info controlplane.Info) error {
	for _, dir := range []string{"deploy/demo", "deploy/task-runner"} {
		if err := r.kubectl(ctx, info, nil, "apply", "-k", filepath.Join(r.cfg.Root, dir)); err != nil {
			return err
		}
	}
	// Limited to the plane's GitOps repository.
	project := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: dwp, namespace: %s}
spec:
  sourceRepos: [%q]
  destinations: [{server: "https://kubernetes.default.svc", namespace: "*"}]
  clusterResourceWhitelist: [{group: "", kind: Namespace}]
`, info.ArgoCDNamespace, info.GitopsRepo)
	if err := r.kubectl(ctx, info, strings.NewReader(project), "apply", "-f", "-"); err != nil {
		return err
	}
	cs, err := adminClient(info)
	if err != nil {
		return err
	}
	if err := ensureWatcherIdentity(ctx, cs); err != nil {
		return err
	}
	if err := writeToken(ctx, cs, r.tokenFile); err != nil {
		return err
	}
	return ensureRunKey(r.runKey)
}

func (r *runner) kubectl(ctx context.Context, info controlplane.Info, stdin io.Reader, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(r.cfg.BinDir, "kubectl"), append([]string{"--kubeconfig", info.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

func adminClient(info controlplane.Info) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", info.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	return kubernetes.NewForConfig(rc)
}

func ensureWatcherIdentity(ctx context.Context, cs kubernetes.Interface) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: watcherNS}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", watcherNS, err)
	}
	_, err = cs.CoreV1().ServiceAccounts(watcherNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: watcherSA}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("service account %s/%s: %w", watcherNS, watcherSA, err)
	}
	return nil
}

// writeToken asks the TokenRequest API for a token of the watcher's ServiceAccount for the
// function's audience, and replaces the file the watcher re-reads, atomically.
func writeToken(ctx context.Context, cs kubernetes.Interface, path string) error {
	seconds := int64(tokenLifetime / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(watcherNS).CreateToken(ctx, watcherSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{serviceenv.EventsAudience}, ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for %s/%s: %w", watcherNS, watcherSA, err)
	}
	return writeFileAtomic(path, []byte(tr.Status.Token))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ensureRunKey makes the key that seals CD runs once; it is kept with the state, so runs
// survive a restart.
func ensureRunKey(path string) error {
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return nil
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(hex.EncodeToString(raw[:])))
}

// renewToken renews the watcher's token every hour (it lives two).
func (r *runner) renewToken(ctx context.Context, info controlplane.Info) {
	t := time.NewTicker(tokenRenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cs, err := adminClient(info)
		if err == nil {
			err = writeToken(ctx, cs, r.tokenFile)
		}
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(r.cfg.Out, "renewing the watcher's token: %v\n", err)
		}
	}
}

// serviceSpecs are the three services, configured from the plane.
func (r *runner) serviceSpecs(info controlplane.Info) []Spec {
	bin := func(name string) string { return filepath.Join(r.cfg.BinDir, name) }
	log := func(name string) string { return filepath.Join(r.logDir, name+".log") }
	a := r.cfg.Addrs
	stack := serviceenv.Stack{
		Plane: info, Function: a.Function, Watcher: a.Watcher, Router: a.Router, Redis: a.Redis,
		RunKeyFile: r.runKey, SinkTokenFile: r.tokenFile, Sender: "system:serviceaccount:" + watcherNS + ":" + watcherSA,
	}
	return []Spec{
		{Name: "function", Path: bin("dwp-function"), Log: log("function"), Env: stack.FunctionEnv()},
		{Name: "watcher", Path: bin("watcher"), Log: log("watcher"), Env: stack.WatcherEnv()},
		{Name: "sse-router", Path: bin("sse-router"), Log: log("sse-router"), Env: stack.RouterEnv()},
	}
}

func (r *runner) startServices(info controlplane.Info) error {
	for _, spec := range r.serviceSpecs(info) {
		if _, err := r.sup.Start(spec); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) waitFunctionReady(ctx context.Context, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.cfg.Addrs.Function+"/health/readiness", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *runner) printBanner(info controlplane.Info) {
	alice := info.Tokens["alice"]
	logs := r.rel(r.logDir)
	kc := r.rel(info.Kubeconfig)
	fmt.Fprintf(r.cfg.Out, `
dwp-sre is running on the local control plane (%[1]s).
  task function   http://%[2]s/api/v1/openapi.json     (log: %[3]s/function.log)
  watcher         http://%[4]s/metrics                  (log: %[3]s/watcher.log)
  SSE router      http://%[5]s/metrics                  (log: %[3]s/sse-router.log)
  kubectl         %[6]s --kubeconfig %[7]s get pods -A

Try, as the demo user alice:
  curl -H "Authorization: Bearer %[8]s" http://%[2]s/api/v1/namespaces/demo/apps
  curl -N -H "Authorization: Bearer %[8]s" http://%[5]s/api/v1/stream/namespaces/demo/pods

Deploy an app service through GitOps (commit to %[9]s, synced by Argo CD; Argo CD
can sync some seconds after the plane is ready), then follow its Argo CD Application:
  curl -H "Authorization: Bearer %[8]s" -H 'Content-Type: application/json' \
    -d '{"resourceKind":"ClusterWorkflowTemplate","resourceName":"dwp-cd-app-service","app":"shop","submitOptions":{"parameters":["image=registry.example/shop:1.0.0","replicas=2"]}}' \
    http://%[2]s/api/v1/namespaces/demo/workflows
  curl -N -H "Authorization: Bearer %[8]s" http://%[5]s/api/v1/stream/namespaces/demo/apps/shop/application

Console: http://%[5]s/console/ — sign in with alice's token: %[8]s

A component that exits is restarted (said here); Ctrl-C stops everything.
`, info.Server, r.cfg.Addrs.Function, logs, r.cfg.Addrs.Watcher, r.cfg.Addrs.Router, r.rel(filepath.Join(r.cfg.BinDir, "kubectl")), kc,
		alice, info.GitopsRepo)
}

// FreeAddrs returns DefaultAddrs with free loopback ports for the services (Redis's is
// kept), for a run beside another.
func FreeAddrs() (Addrs, error) {
	a := DefaultAddrs
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for _, p := range []*string{&a.Function, &a.Watcher, &a.Router} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return a, fmt.Errorf("a free port: %w", err)
		}
		lns = append(lns, l)
		*p = l.Addr().String()
	}
	return a, nil
}
