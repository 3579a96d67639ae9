// Package controlplane runs a real Kubernetes control plane on loopback, built from Go
// modules: embedded etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
// (nodes, pod lifecycle, kubelet logs and metrics), Argo's workflow-controller archiving to
// Postgres, metrics-server behind the aggregation layer, Argo CD's application controller
// and repo-server, and a git server; the launcher itself emulates a volume provisioner and
// an ingress controller.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Ports are the loopback ports the components listen on.
type Ports struct {
	Etcd, EtcdPeer, APIServer, Kubelet, MetricsServer int
	// Git is the git server's (smart HTTP).
	Git int
	// ArgoCDRepoServer and ArgoCDRepoServerMetrics are the repo-server's gRPC and metrics
	// ports; ArgoCDControllerMetrics the application controller's metrics and health.
	ArgoCDRepoServer, ArgoCDRepoServerMetrics, ArgoCDControllerMetrics int
	// ObjectStore is MinIO's S3 API, Argo's artifact repository; ObjectStoreConsole the
	// console MinIO always binds (its browser is off).
	ObjectStore, ObjectStoreConsole int
	// ArgoServer is argo-server's HTTP port (it binds every interface).
	ArgoServer int
	// Prometheus is Prometheus's HTTP port (0: not run, when it is not installed).
	Prometheus int
}

// DefaultPorts are used by `make run` and `make cluster`. Argo CD's are its usual ones
// plus 10000, since make run's services use 8080, 8081 and 8090.
func DefaultPorts() Ports {
	return Ports{
		Etcd: 12379, EtcdPeer: 12380, APIServer: 6443, Kubelet: 10250, MetricsServer: 14443,
		Git: 18080, ArgoCDRepoServer: 18081, ArgoCDRepoServerMetrics: 18084, ArgoCDControllerMetrics: 18082,
		ObjectStore: 19000, ObjectStoreConsole: 19001, ArgoServer: 12746, Prometheus: 19090,
	}
}

func (p *Ports) named() []namedPort {
	return []namedPort{
		{"etcd", &p.Etcd}, {"etcd peer", &p.EtcdPeer}, {"kube-apiserver", &p.APIServer},
		{"kwok kubelet", &p.Kubelet}, {"metrics-server", &p.MetricsServer}, {"git server", &p.Git},
		{"argocd-repo-server", &p.ArgoCDRepoServer}, {"argocd-repo-server metrics", &p.ArgoCDRepoServerMetrics},
		{"argocd-application-controller metrics", &p.ArgoCDControllerMetrics},
		{"object store", &p.ObjectStore}, {"object store console", &p.ObjectStoreConsole},
		{"argo-server", &p.ArgoServer}, {"prometheus", &p.Prometheus},
	}
}

type namedPort struct {
	name string
	port *int
}

// Postgres is where Argo's workflow-controller archives workflows.
type Postgres struct {
	Host     string
	Port     int
	User     string
	Password string
	// Database is created when missing.
	Database string
	// DropOnStop removes the database when the control plane stops (tests).
	DropOnStop bool
}

// Config configures a control plane.
type Config struct {
	Dir         string // state folder, kept across restarts
	BinDir      string // component binaries and gathered manifests
	Repo        string // repository root, where sandbox/modules build the components
	Ports       Ports
	AutoPorts   bool // pick free ports instead of Ports
	Postgres    Postgres
	ClusterName string
	// Build builds missing or outdated components before starting.
	Build bool
	// Out receives progress meant for a person.
	Out    io.Writer
	Logger *slog.Logger
}

const (
	argoNamespace = "argo"
	nodeName      = "kwok-node-0"
	// metricsIP is the made-up endpoint address of metrics-server; the egress proxy maps it
	// to 127.0.0.1 (Kubernetes refuses loopback endpoint addresses). No packet goes there.
	metricsIP   = "10.0.3.200"
	serviceCIDR = "10.0.0.0/24"
	podCIDR     = "10.1.0.1/16"
)

// ControlPlane is a running control plane.
type ControlPlane struct {
	cfg    Config
	info   Info
	infoMu sync.Mutex // info changes once Argo CD is proven
	procs  map[string]*process
	order  []string // start order; stopped in reverse
	// orderMu guards order: Argo CD starts after the plane is ready.
	orderMu sync.Mutex
	proxy   *egressProxy
	git     *gitServer
	redis   *miniredis.Miniredis
	store   *objectStore
	// prometheusBin is Prometheus's binary, "" when it is not installed.
	prometheusBin string
	admin         *rest.Config
	ctl           *http.Server
	mu            sync.Mutex
	// ctx is the plane's own: the in-process controllers and the Argo CD start-up run
	// until Stop cancels it, and bg waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
}

// Start brings every component up and returns once the whole plane is ready. The state
// folder's info.json is written last: its presence means "ready".
func Start(ctx context.Context, cfg Config) (_ *ControlPlane, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "local"
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(cfg.Dir, infoFile))
	_ = os.Remove(filepath.Join(cfg.Dir, failedFile))
	defer func() {
		if err != nil {
			_ = os.WriteFile(filepath.Join(cfg.Dir, failedFile), []byte(err.Error()), 0o644)
		}
	}()
	if cfg.Build {
		if err := EnsureBuilt(ctx, cfg.Repo, cfg.BinDir, cfg.Out); err != nil {
			return nil, err
		}
	}
	begin := time.Now()
	if cfg.AutoPorts {
		if cfg.Ports, err = autoPorts(cfg.Dir); err != nil {
			return nil, err
		}
	}
	// Prometheus is the one component the plane can do without: the router then has no
	// metric history to show.
	promBin := findPrometheus()
	if promBin == "" {
		cfg.Ports.Prometheus = 0
		fmt.Fprintln(cfg.Out, "prometheus is not installed (Debian package prometheus): running without it, so no metric history")
	}
	if !cfg.AutoPorts {
		if err := checkPortsFree(cfg.Ports); err != nil {
			return nil, err
		}
	}
	cp := newControlPlane(cfg)
	cp.prometheusBin = promBin
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	files, err := prepareState(cfg)
	if err != nil {
		return nil, err
	}
	cp.info = files.info
	if cp.store, err = newObjectStore(files.info.ObjectStoreEndpoint, files.storeKeys); err != nil {
		return nil, err
	}
	if cp.admin, err = clientcmd.BuildConfigFromFlags("", files.info.Kubeconfig); err != nil {
		return nil, err
	}
	cp.admin.QPS, cp.admin.Burst = 500, 1000
	if _, err := ensureGitopsRepo(ctx, filepath.Join(cfg.Dir, "git")); err != nil {
		return nil, err
	}
	if cp.git, err = startGitServer(ctx, filepath.Join(cfg.Dir, "git"), cfg.Ports.Git, filepath.Join(cfg.Dir, "logs", "git-server.log")); err != nil {
		return nil, err
	}
	if err := cp.startRedis(); err != nil {
		return nil, err
	}

	dbErr := make(chan error, 1)
	go func() { dbErr <- ensureDatabase(ctx, cfg.Postgres) }()

	cp.proxy = &egressProxy{socket: files.egressSocket, mapped: map[string]bool{metricsIP: true}, logger: cfg.Logger}
	if err := cp.proxy.start(); err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	seeded, err := plantSeed(cfg.BinDir, cfg.Dir)
	if err != nil {
		return nil, err
	}
	cp.define(files)
	if err := cp.defineArgoCD(files.info.Kubeconfig); err != nil {
		return nil, err
	}
	if seeded {
		p := cp.procs["etcd"]
		p.args = append(p.args, "--force-new-cluster")
		defer func() { p.args = p.args[:len(p.args)-1] }()
	}
	fmt.Fprintf(cfg.Out, "starting etcd and kube-apiserver on 127.0.0.1:%d\n", cfg.Ports.APIServer)
	if err := cp.startProcess("etcd"); err != nil {
		return nil, err
	}
	if err := cp.startProcess("kube-apiserver"); err != nil {
		return nil, err
	}
	if err := cp.waitAPIServer(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	phase := func(what string) {
		fmt.Fprintf(cfg.Out, "  %-28s %s\n", what, time.Since(begin).Round(10*time.Millisecond))
	}
	phase("kube-apiserver ready")
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kwok", "metrics-server", "minio"} {
		if err := cp.startProcess(name); err != nil {
			return nil, err
		}
	}
	if _, ok := cp.procs["prometheus"]; ok {
		if err := cp.startProcess("prometheus"); err != nil {
			return nil, err
		}
	}
	cs, err := kubernetes.NewForConfig(cp.admin)
	if err != nil {
		return nil, err
	}
	ap, err := newApplier(cp.admin, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if err := cp.bootstrap(ctx, ap, phase); err != nil {
		return nil, err
	}
	waitEmulators, err := startEmulators(cp.ctx, cs, filepath.Join(cfg.Dir, "volumes"), cfg.Logger)
	if err != nil {
		return nil, err
	}
	cp.bg.Add(1)
	go func() {
		defer cp.bg.Done()
		<-cp.ctx.Done()
		waitEmulators()
	}()
	if err := cp.store.waitReady(ctx, cp.procs["minio"].running, 30*time.Second, cp.procs["minio"].log); err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cp.admin)
	if err != nil {
		return nil, err
	}
	waitExecutor, err := startExecutor(cp.ctx, cs, dyn, cp.store, files.storeKeys, cp.info.LogDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	waitChatter, err := startChatter(cp.ctx, cs, dyn, cp.info.LogDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	cp.bg.Add(1)
	go func() {
		defer cp.bg.Done()
		<-cp.ctx.Done()
		waitExecutor()
		waitChatter()
	}()
	phase("object store ready")
	if err := <-dbErr; err != nil {
		return nil, err
	}
	if err := cp.startProcess("workflow-controller"); err != nil {
		return nil, err
	}
	// argo-server reads the controller's configuration and archive, both there by now.
	if err := cp.startProcess("argo-server"); err != nil {
		return nil, err
	}
	if err := cp.waitArgoServer(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	phase("argo-server ready")
	if _, ok := cp.procs["prometheus"]; ok {
		// Ready in well under a second; one that is not leaves the plane without history
		// rather than failing it.
		if err := cp.waitPrometheus(ctx, 30*time.Second); err != nil {
			fmt.Fprintf(cfg.Out, "running without prometheus, so no metric history: %v\n", err)
			cp.procs["prometheus"].stop()
			cp.info.PrometheusURL = ""
		} else {
			phase("prometheus ready")
		}
	}
	if err := cp.waitReady(ctx, cs, 60*time.Second, phase); err != nil {
		return nil, err
	}
	if err := cp.serveControl(); err != nil {
		return nil, err
	}
	if err := writeInfo(cp.info); err != nil {
		return nil, err
	}
	ready := time.Now()
	fmt.Fprintf(cfg.Out, "control plane ready in %s\n", ready.Sub(begin).Round(10*time.Millisecond))
	cp.bg.Add(1)
	go func() {
		defer cp.bg.Done()
		cp.argoCDUp(ready)
	}()
	return cp, nil
}

func newControlPlane(cfg Config) *ControlPlane {
	cp := &ControlPlane{cfg: cfg, procs: map[string]*process{}}
	cp.ctx, cp.cancel = context.WithCancel(context.Background())
	return cp
}

// Info describes the running plane.
func (cp *ControlPlane) Info() Info {
	cp.infoMu.Lock()
	defer cp.infoMu.Unlock()
	return cp.info
}

// Stop stops every component, newest first, and removes info.json.
func (cp *ControlPlane) Stop() {
	// The launcher's own goroutines first: the Argo CD start-up may still rewrite info.json.
	cp.cancel()
	cp.bg.Wait()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	_ = os.Remove(filepath.Join(cp.cfg.Dir, infoFile))
	if cp.ctl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = cp.ctl.Shutdown(ctx)
		cancel()
	}
	order := cp.started()
	for i := len(order) - 1; i >= 0; i-- {
		cp.procs[order[i]].stop()
	}
	if cp.git != nil {
		cp.git.close()
	}
	if cp.redis != nil {
		cp.redis.Close()
	}
	if cp.proxy != nil {
		cp.proxy.close()
	}
	if cp.cfg.Postgres.DropOnStop {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, cp.cfg.Postgres); err != nil {
			cp.cfg.Logger.Warn("drop archive database", "err", err)
		}
	}
}

// Restart stops one component and starts it again with its state kept. For the API
// server it returns once /readyz answers.
func (cp *ControlPlane) Restart(ctx context.Context, name string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	p, ok := cp.procs[name]
	if !ok {
		return fmt.Errorf("no component %q", name)
	}
	if err := p.restart(); err != nil {
		return err
	}
	if name == "kube-apiserver" {
		return cp.waitAPIServer(ctx, 60*time.Second)
	}
	return nil
}

func (cp *ControlPlane) startProcess(name string) error {
	p := cp.procs[name]
	if err := p.start(); err != nil {
		return err
	}
	cp.orderMu.Lock()
	cp.order = append(cp.order, name)
	cp.orderMu.Unlock()
	return nil
}

// started lists the components started so far, in start order.
func (cp *ControlPlane) started() []string {
	cp.orderMu.Lock()
	defer cp.orderMu.Unlock()
	return slices.Clone(cp.order)
}

type stateFiles struct {
	info                                      Info
	pki                                       string
	serving, frontProxyCA, frontProxyClient   *keyPair
	ca                                        *keyPair
	saKey, tokens, egressConfig, egressSocket string
	storeKeys                                 objectStoreKeys
	// prometheusConfig is Prometheus's configuration file, "" when it is not run.
	prometheusConfig string
}

// prepareState makes (or reuses) certificates, keys, tokens and kubeconfigs.
func prepareState(cfg Config) (stateFiles, error) {
	var f stateFiles
	f.pki = filepath.Join(cfg.Dir, "pki")
	for _, d := range []string{f.pki, filepath.Join(cfg.Dir, "logs"), filepath.Join(cfg.Dir, "pods"), filepath.Join(cfg.Dir, "kubeconfig")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return f, err
		}
	}
	var err error
	if f.ca, err = loadOrCreateCA(f.pki, "ca"); err != nil {
		return f, err
	}
	if f.serving, err = f.ca.issue(f.pki, "serving", certSpec{
		commonName: "kube-apiserver",
		ips:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)},
		dns:        []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return f, err
	}
	if f.frontProxyCA, err = loadOrCreateCA(f.pki, "front-proxy-ca"); err != nil {
		return f, err
	}
	if f.frontProxyClient, err = f.frontProxyCA.issue(f.pki, "front-proxy-client", certSpec{
		commonName: "front-proxy-client", usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return f, err
	}
	f.saKey = filepath.Join(f.pki, "service-account.key")
	if err := ensureServiceAccountKey(f.saKey); err != nil {
		return f, err
	}
	tokens, err := ensureTokens(filepath.Join(f.pki, "tokens.csv"))
	if err != nil {
		return f, err
	}
	f.tokens = filepath.Join(f.pki, "tokens.csv")
	if f.storeKeys, err = ensureObjectStoreKeys(filepath.Join(f.pki, "objectstore.json")); err != nil {
		return f, err
	}
	f.egressSocket = filepath.Join(cfg.Dir, "egress.sock")
	f.egressConfig = filepath.Join(f.pki, "egress-selector.yaml")
	egress := fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, f.egressSocket)
	if err := os.WriteFile(f.egressConfig, []byte(egress), 0o644); err != nil {
		return f, err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(cfg.Ports.APIServer)
	f.info = Info{
		Dir:             cfg.Dir,
		Server:          server,
		Kubeconfig:      filepath.Join(cfg.Dir, "kubeconfig", "admin.kubeconfig"),
		UserKubeconfigs: map[string]string{},
		Tokens:          tokens,
		CAFile:          f.ca.CertFile,
		ArgoNamespace:   argoNamespace,
		ArchiveDSN:      cfg.Postgres.dsn(cfg.Postgres.Database),
		ClusterName:     cfg.ClusterName,
		LogDir:          filepath.Join(cfg.Dir, "pods"),
		ControlSocket:   filepath.Join(cfg.Dir, "control.sock"),
		NodeName:        nodeName,
		GitURL:          "http://127.0.0.1:" + strconv.Itoa(cfg.Ports.Git),
		ArgoCDNamespace: argoCDNamespace,
		ArgoCDLog:       filepath.Join(cfg.Dir, "logs", "argocd-application-controller.log"),

		ArgoServerURL:       "http://127.0.0.1:" + strconv.Itoa(cfg.Ports.ArgoServer),
		ObjectStoreEndpoint: "127.0.0.1:" + strconv.Itoa(cfg.Ports.ObjectStore),
		ArtifactBucket:      artifactBucket,
	}
	f.info.GitopsRepo = f.info.GitURL + "/" + gitopsRepo
	if cfg.Ports.Prometheus != 0 {
		if f.prometheusConfig, err = writePrometheusConfig(cfg.Dir, cfg.Ports.Kubelet); err != nil {
			return f, err
		}
		f.info.PrometheusURL = "http://127.0.0.1:" + strconv.Itoa(cfg.Ports.Prometheus)
	}
	if err := writeKubeconfig(f.info.Kubeconfig, server, f.ca.CertFile, "admin", tokens["admin"]); err != nil {
		return f, err
	}
	for _, u := range TestUsers {
		path := filepath.Join(cfg.Dir, "kubeconfig", u+".kubeconfig")
		if err := writeKubeconfig(path, server, f.ca.CertFile, u, tokens[u]); err != nil {
			return f, err
		}
		f.info.UserKubeconfigs[u] = path
	}
	return f, nil
}

// ensureTokens keeps the static tokens across restarts so kubeconfigs stay valid.
func ensureTokens(path string) (map[string]string, error) {
	tokens := map[string]string{}
	if b, err := os.ReadFile(path); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			parts := strings.SplitN(line, ",", 3)
			if len(parts) >= 2 {
				tokens[parts[1]] = parts[0]
			}
		}
	}
	var b strings.Builder
	users := append([]string{"admin"}, TestUsers...)
	for _, u := range users {
		if tokens[u] == "" {
			var raw [24]byte
			if _, err := rand.Read(raw[:]); err != nil {
				return nil, err
			}
			tokens[u] = hex.EncodeToString(raw[:])
		}
		groups := userGroups[u]
		if u == "admin" {
			groups = []string{"system:masters"}
		}
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", tokens[u], u, u, strings.Join(groups, ","))
	}
	return tokens, os.WriteFile(path, []byte(b.String()), 0o600)
}

func writeKubeconfig(path, server, caFile, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["dwp-local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["dwp-local"] = &clientcmdapi.Context{Cluster: "dwp-local", AuthInfo: user}
	cfg.CurrentContext = "dwp-local"
	return clientcmd.WriteToFile(*cfg, path)
}

// define sets up every component's command line.
func (cp *ControlPlane) define(f stateFiles) {
	c := cp.cfg
	logs := filepath.Join(c.Dir, "logs")
	kc := f.info.Kubeconfig
	add := func(name string, args []string, env ...string) {
		cp.procs[name] = newProcess(c.Logger, logs, c.BinDir, name, args, env...)
	}
	add("etcd", []string{
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-url=http://127.0.0.1:" + strconv.Itoa(c.Ports.Etcd),
		"--listen-peer-url=http://127.0.0.1:" + strconv.Itoa(c.Ports.EtcdPeer),
	})
	add("kube-apiserver", []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(c.Ports.Etcd),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.Ports.APIServer),
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(f.pki, "apiserver"),
		"--tls-cert-file=" + f.serving.CertFile,
		"--tls-private-key-file=" + f.serving.KeyFile,
		"--client-ca-file=" + f.ca.CertFile,
		"--token-auth-file=" + f.tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f.saKey,
		"--service-account-signing-key-file=" + f.saKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--egress-selector-config-file=" + f.egressConfig,
		"--requestheader-client-ca-file=" + f.frontProxyCA.CertFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + f.frontProxyClient.CertFile,
		"--proxy-client-key-file=" + f.frontProxyClient.KeyFile,
		"--enable-aggregator-routing=true",
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--profiling=false",
	})
	// The API server drains watches for many seconds on SIGTERM; a local plane has no
	// clients worth that wait, and a restart should look like a quick crash.
	cp.procs["kube-apiserver"].grace = 2 * time.Second
	add("kube-controller-manager", []string{
		"--kubeconfig=" + kc,
		"--service-account-private-key-file=" + f.saKey,
		"--root-ca-file=" + f.ca.CertFile,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*,-nodeipam,-nodelifecycle",
	})
	add("kube-scheduler", []string{"--kubeconfig=" + kc, "--leader-elect=false", "--secure-port=0"})
	kubelet := strconv.Itoa(c.Ports.Kubelet)
	add("kwok", []string{
		"--kubeconfig=" + kc,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--cidr=" + podCIDR,
		"--node-ip=127.0.0.1",
		"--node-port=" + kubelet,
		"--server-address=127.0.0.1:" + kubelet,
		"--tls-cert-file=" + f.serving.CertFile,
		"--tls-private-key-file=" + f.serving.KeyFile,
		"--enable-crds=Stage,Logs,ClusterLogs,Metric,ClusterResourceUsage,ResourceUsage",
	})
	add("metrics-server", []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--secure-port=" + strconv.Itoa(c.Ports.MetricsServer),
		"--bind-address=127.0.0.1",
		"--cert-dir=" + filepath.Join(f.pki, "metrics-server"),
		"--kubelet-insecure-tls",
		"--kubelet-use-node-status-port",
		"--kubelet-preferred-address-types=InternalIP",
		"--metric-resolution=15s",
	})
	add("workflow-controller", []string{
		"--kubeconfig=" + kc,
		"--namespace=" + argoNamespace,
		"--qps=100", "--burst=200",
	},
		"LEADER_ELECTION_DISABLE=true",
		"LEADER_ELECTION_IDENTITY=dwp-local",
		// Poll workflows often: kwok completes pods in about a second.
		"DEFAULT_REQUEUE_TIME=1s",
	)
	add("minio", objectStoreArgs(objectStoreDir(c.Dir), c.Ports), objectStoreEnv(f.storeKeys)...)
	// ARGO_NAMESPACE is the controller's: argo-server reads its ConfigMap, the archive's
	// settings and the Postgres Secret there.
	// KUBECONFIG too: with --auth-mode=client argo-server makes each caller's client from
	// the default loading rules (the API server's address and CA), not from --kubeconfig.
	add("argo-server", argoServerArgs(kc, c.Ports.ArgoServer), "ARGO_NAMESPACE="+argoNamespace, "KUBECONFIG="+kc)
	cp.procs["argo-server"].bin = filepath.Join(c.BinDir, "argo")
	if f.prometheusConfig != "" {
		add("prometheus", prometheusArgs(f.prometheusConfig, filepath.Join(prometheusDir(c.Dir), "data"), c.Ports.Prometheus))
		cp.procs["prometheus"].bin = cp.prometheusBin
	}
}

func (cp *ControlPlane) waitAPIServer(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rt, err := rest.TransportFor(cp.admin)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: rt, Timeout: 2 * time.Second}
	err = waitFor(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if !cp.procs["kube-apiserver"].running() {
			return errors.New("kube-apiserver is not running")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.info.Server+"/readyz", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver not ready (see %s): %w", filepath.Join(cp.cfg.Dir, "logs", "kube-apiserver.log"), err)
	}
	return nil
}

func freePorts() (Ports, error) {
	var p Ports
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	// Every listener stays open until all are chosen, so that no port is picked twice.
	for _, np := range p.named() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Ports{}, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, l)
		*np.port = l.Addr().(*net.TCPAddr).Port
	}
	return p, nil
}

// portsFile keeps the free ports a plane was given, so that the plane started again on
// the same state answers where it did: its clients (kubeconfigs, services) carry on.
const portsFile = "ports.json"

// autoPorts returns the ports the plane of dir had, while they are all still free, or
// new free ones, which it remembers.
func autoPorts(dir string) (Ports, error) {
	file := filepath.Join(dir, portsFile)
	if b, err := os.ReadFile(file); err == nil {
		var p Ports
		if json.Unmarshal(b, &p) == nil && p.APIServer != 0 && checkPortsFree(p) == nil {
			return p, nil
		}
	}
	p, err := freePorts()
	if err != nil {
		return p, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return p, err
	}
	return p, os.WriteFile(file, b, 0o644)
}

func checkPortsFree(p Ports) error {
	for _, np := range p.named() {
		if *np.port == 0 { // a component that is not run
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(*np.port))
		if err != nil {
			return fmt.Errorf("port %d for %s is taken (is another control plane running? stop it, or choose other ports): %w", *np.port, np.name, err)
		}
		l.Close()
	}
	return nil
}

// serveControl answers POST /restart/<component> and GET /status on a Unix socket.
func (cp *ControlPlane) serveControl() error {
	_ = os.Remove(cp.info.ControlSocket)
	ln, err := net.Listen("unix", cp.info.ControlSocket)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /restart/{component}", func(w http.ResponseWriter, r *http.Request) {
		if err := cp.Restart(r.Context(), r.PathValue("component")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "restarted\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		for _, name := range cp.started() {
			state := "running"
			if !cp.procs[name].running() {
				state = "stopped"
			}
			fmt.Fprintf(w, "%s %s\n", name, state)
		}
	})
	cp.ctl = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = cp.ctl.Serve(ln) }()
	return nil
}
