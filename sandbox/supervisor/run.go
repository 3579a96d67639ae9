package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
)

// Config is where `make run`'s pieces live.
type Config struct {
	// Root is the repository (deploy/ is read from there); relative paths below are
	// relative to it.
	Root string
	// BinDir holds dwp-cluster, kubectl and the services' binaries.
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
	// ClusterArgs are added to `dwp-cluster up` (e.g. --ports auto, --archive-db).
	ClusterArgs []string
	// Out is the console.
	Out io.Writer
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
	// audience; the function accepts events from that identity alone.
	eventsAudience  = "dwp-function"
	watcherNS       = "dwp-system"
	watcherSA       = "dwp-watcher"
	tokenLifetime   = 2 * time.Hour
	tokenRenewEvery = time.Hour
)

// fingerprint is what the services are configured from: when a restarted plane reports
// another, they are restarted with it.
func fingerprint(p controlplane.Info) string {
	return strings.Join([]string{p.Server, p.Kubeconfig, p.CAFile, p.ArchiveDSN, p.ArgoServerURL,
		p.GitopsRepo, p.ArgoCDNamespace, p.PrometheusURL}, "\n")
}

type runner struct {
	cfg        Config
	sup        *Supervisor
	clusterDir string
	logDir     string
	tokenFile  string
	runKey     string
	// planeStarts receives the plane's restart count at every restart.
	planeStarts chan int
	services    []*Child
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
		cfg:         cfg,
		sup:         New(cfg.Out, cfg.Backoff, cfg.Grace),
		clusterDir:  filepath.Join(cfg.StateDir, "cluster"),
		logDir:      filepath.Join(cfg.StateDir, "logs"),
		tokenFile:   filepath.Join(cfg.StateDir, "watcher.token"),
		runKey:      filepath.Join(cfg.StateDir, "run.key"),
		planeStarts: make(chan int, 1),
	}
	if r.cfg.Addrs == (Addrs{}) {
		r.cfg.Addrs = DefaultAddrs
	}
	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(cfg.Out, "\nstopping")
		// The stop must finish even though ctx has ended: a fresh context.
		stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := r.sup.Stop(stopCtx); err != nil {
			fmt.Fprintln(cfg.Out, err)
		}
	}()
	info, err := r.startPlane(ctx)
	if ctx.Err() != nil {
		return nil // stopped while starting: not a failure
	}
	if err != nil {
		return err
	}
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

	current := fingerprint(info)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.planeStarts:
			next, err := r.waitPlane(ctx, 5*time.Minute)
			if err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(cfg.Out, "control plane not ready again: %v (see %s)\n", err, r.planeLog())
				}
				continue
			}
			fmt.Fprintf(cfg.Out, "control plane ready again (%s)\n", readyLine(r.planeLog()))
			// The state folder keeps tokens and certificates, and `dwp-cluster up` its
			// default ports: the services normally carry on. When the plane comes back
			// different, they start over with it.
			if f := fingerprint(next); f != current {
				current = f
				fmt.Fprintln(cfg.Out, "the control plane's addresses changed; restarting the services")
				if err := r.setUp(ctx, next); err != nil {
					fmt.Fprintf(cfg.Out, "set-up after the plane's restart: %v\n", err)
				}
				r.restartServices(ctx, next)
			}
		}
	}
}

func (r *runner) planeLog() string { return filepath.Join(r.logDir, "cluster.log") }

// startPlane starts dwp-cluster and waits until it is ready.
func (r *runner) startPlane(ctx context.Context) (controlplane.Info, error) {
	fmt.Fprintf(r.cfg.Out, "starting the local control plane (state in %s, log %s)\n", r.rel(r.clusterDir), r.rel(r.planeLog()))
	_, err := r.sup.Start(Spec{
		Name: "dwp-cluster",
		Path: filepath.Join(r.cfg.BinDir, "dwp-cluster"),
		Args: append([]string{"up", "--dir", r.clusterDir, "--bin", r.cfg.BinDir, "--repo", r.cfg.Root}, r.cfg.ClusterArgs...),
		Log:  r.planeLog(),
		// A killed plane leaves its info.json behind: gone, it would pass for ready.
		BeforeStart: func() error {
			for _, f := range []string{"info.json", "failed"} {
				if err := os.Remove(filepath.Join(r.clusterDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		},
		OnStart: func(restarts int) {
			if restarts > 0 {
				select {
				case r.planeStarts <- restarts:
				default:
				}
			}
		},
	})
	if err != nil {
		return controlplane.Info{}, err
	}
	info, err := r.waitPlane(ctx, r.cfg.ReadyTimeout)
	if err != nil {
		return info, fmt.Errorf("the control plane failed: %w\n%s", err, tail(r.planeLog(), 30))
	}
	fmt.Fprintln(r.cfg.Out, readyLine(r.planeLog()))
	return info, nil
}

// waitPlane waits for info.json, or for the plane's own report of a failed start.
func (r *runner) waitPlane(ctx context.Context, timeout time.Duration) (controlplane.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		info, err := controlplane.ReadInfo(r.clusterDir)
		if err == nil {
			return info, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return info, err
		}
		if b, ferr := os.ReadFile(filepath.Join(r.clusterDir, "failed")); ferr == nil {
			return info, errors.New(strings.TrimSpace(string(b)))
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("not ready: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readyLine is the plane's "control plane ready in …" line from its log.
func readyLine(log string) string {
	f, err := os.Open(log)
	if err != nil {
		return "control plane ready"
	}
	defer f.Close()
	line := "control plane ready"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "ready in") {
			line = sc.Text()
		}
	}
	return line
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
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{eventsAudience}, ExpirationSeconds: &seconds},
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
		// Re-read: a restarted plane may have moved.
		if next, err := controlplane.ReadInfo(r.clusterDir); err == nil {
			info = next
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
	kc := "DWP_KUBECONFIG=" + info.Kubeconfig
	a := r.cfg.Addrs
	router := []string{kc, "DWP_LISTEN_ADDRESS=" + a.Router, "DWP_REDIS_ADDR=" + a.Redis,
		"DWP_ARGO_SERVER_URL=" + info.ArgoServerURL,
		// The kubeconfig's context is dwp-local; the watcher names the cluster "default".
		"DWP_SUMMARY_CLUSTER_NAMES=dwp-local=default",
		// The console the router serves calls the function's API.
		"DWP_CONSOLE_API_URL=http://" + a.Function}
	if info.PrometheusURL != "" {
		router = append(router, "DWP_PROMETHEUS_URL="+info.PrometheusURL)
	}
	return []Spec{
		{
			Name: "function", Path: bin("dwp-function"), Log: log("function"),
			// The archive is read through argo-server (which also serves archived step
			// logs from the plane's object store), as the caller; the Postgres DSN is
			// there for when it is unset.
			Env: []string{kc, "LISTEN_ADDRESS=" + a.Function,
				"DWP_ARGO_SERVER_URL=" + info.ArgoServerURL, "DWP_ARCHIVE_DSN=" + info.ArchiveDSN,
				"DWP_ARCHIVE_CLUSTER_NAME=" + info.ClusterName, "DWP_REDIS_ADDR=" + a.Redis,
				"DWP_GITOPS_REPO=" + info.GitopsRepo, "DWP_RUN_KEY_FILE=" + r.runKey,
				"DWP_ARGOCD_NAMESPACE=" + info.ArgoCDNamespace, "DWP_EVENTS_AUDIENCE=" + eventsAudience,
				"DWP_EVENT_SENDERS=system:serviceaccount:" + watcherNS + ":" + watcherSA,
				// The console, served by the router, calls the function cross-origin.
				"DWP_CORS_ORIGINS=http://" + a.Router},
		},
		{
			Name: "watcher", Path: bin("watcher"), Log: log("watcher"),
			Env: []string{kc, "K_SINK=http://" + a.Function + "/events", "DWP_SINK_TOKEN_FILE=" + r.tokenFile,
				"DWP_LISTEN_ADDRESS=" + a.Watcher, "DWP_REDIS_ADDR=" + a.Redis, "DWP_RESYNC_INTERVAL=1m"},
		},
		{Name: "sse-router", Path: bin("sse-router"), Log: log("sse-router"), Env: router},
	}
}

func (r *runner) startServices(info controlplane.Info) error {
	for _, spec := range r.serviceSpecs(info) {
		c, err := r.sup.Start(spec)
		if err != nil {
			return err
		}
		r.services = append(r.services, c)
	}
	return nil
}

// restartServices restarts each service with the plane's new settings.
func (r *runner) restartServices(ctx context.Context, info controlplane.Info) {
	for i, spec := range r.serviceSpecs(info) {
		c := r.services[i]
		c.SetEnv(spec.Env)
		if err := c.Restart(ctx); err != nil {
			fmt.Fprintf(r.cfg.Out, "restart %s: %v\n", c.Name(), err)
		}
	}
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
