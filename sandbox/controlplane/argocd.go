package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

const (
	argoCDNamespace = "argocd"
	// probeApp is the Application the launcher syncs once to prove Argo CD works.
	probeApp = "sandbox-probe"
	// argoCDWait is how long the launcher tries to prove that Argo CD can sync.
	argoCDWait = 4 * time.Minute
)

var applicationGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// startRedis starts the in-process Redis Argo CD caches in, one per plane. miniredis
// keeps its own clock, which stands still unless advanced: without the ticker no key
// would expire, and Argo CD would never see a new commit.
func (cp *ControlPlane) startRedis() error {
	cp.redis = miniredis.NewMiniRedis()
	if err := cp.redis.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("redis for Argo CD: %w", err)
	}
	cp.bg.Add(1)
	go func() {
		defer cp.bg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-cp.ctx.Done():
				return
			case <-tick.C:
				cp.redis.FastForward(time.Second)
			}
		}
	}()
	return nil
}

// argoCDEnv makes the folders Argo CD keeps its state in and returns its environment.
func (cp *ControlPlane) argoCDEnv(kubeconfig string) ([]string, error) {
	base := filepath.Join(cp.cfg.Dir, "argocd")
	dirs := map[string]string{
		"HOME":                 filepath.Join(base, "home"),
		"TMPDIR":               filepath.Join(base, "tmp"),
		"ARGOCD_TLS_DATA_PATH": filepath.Join(base, "tls"),
		"ARGOCD_SSH_DATA_PATH": filepath.Join(base, "ssh"),
		"ARGOCD_GNUPGHOME":     filepath.Join(base, "gnupg"),
	}
	env := []string{
		"KUBECONFIG=" + kubeconfig,
		// https://kubernetes.default.svc (every Application's destination) is the
		// kubeconfig's API server.
		"ARGOCD_FAKE_IN_CLUSTER=true",
		// The controller's resync and the repo-server's revision cache; the default 3 min
		// would make commits appear minutes late.
		"ARGOCD_RECONCILIATION_TIMEOUT=10s",
		// Else the repo-server exits on a missing /app/config/gpg/keys.
		"ARGOCD_GPG_ENABLED=false",
		// The default socket in /tmp would clash between planes.
		"ARGOCD_ASK_PASS_SOCK=" + filepath.Join(base, "askpass.sock"),
		// The repo-server runs the helm and kustomize built beside it, as in its image.
		"PATH=" + cp.cfg.BinDir + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
	for k, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		env = append(env, k+"="+d)
	}
	return env, nil
}

// argoCDSecretKey is argocd-secret's server.secretkey, made once per state folder.
func argoCDSecretKey(dir string) (string, error) {
	path := filepath.Join(dir, "argocd", "server.secretkey")
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	key := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return key, os.WriteFile(path, []byte(key), 0o600)
}

// defineArgoCD sets up the command lines of Argo CD's repo-server and application
// controller.
func (cp *ControlPlane) defineArgoCD(kubeconfig string) error {
	env, err := cp.argoCDEnv(kubeconfig)
	if err != nil {
		return err
	}
	c := cp.cfg
	logs := filepath.Join(c.Dir, "logs")
	redis := cp.redis.Addr()
	repo := newProcess(c.Logger, logs, c.BinDir, "argocd-repo-server", []string{
		"--address=127.0.0.1",
		"--port=" + strconv.Itoa(c.Ports.ArgoCDRepoServer),
		"--metrics-address=127.0.0.1",
		"--metrics-port=" + strconv.Itoa(c.Ports.ArgoCDRepoServerMetrics),
		"--disable-tls",
		"--redis=" + redis,
	}, env...)
	ctrl := newProcess(c.Logger, logs, c.BinDir, "argocd-application-controller", []string{
		"--namespace=" + argoCDNamespace,
		"--repo-server=127.0.0.1:" + strconv.Itoa(c.Ports.ArgoCDRepoServer),
		"--repo-server-plaintext",
		"--redis=" + redis,
		// Binds 0.0.0.0 (hard-coded upstream); only the port can be chosen.
		"--metrics-port=" + strconv.Itoa(c.Ports.ArgoCDControllerMetrics),
	}, env...)
	// Both keep nothing worth a long drain.
	repo.grace, ctrl.grace = 3*time.Second, 3*time.Second
	cp.procs[repo.name], cp.procs[ctrl.name] = repo, ctrl
	return nil
}

// argoCDUp runs once the plane is ready: it starts Argo CD, warms the API server's
// OpenAPI document (the controller's first cluster-cache sync waits on it: 8 s warm,
// 44 s cold), then proves that Argo CD can sync from gitops.git and records the result
// in info.json. The plane's readiness never waits for it.
func (cp *ControlPlane) argoCDUp(ready time.Time) {
	ctx, cancel := context.WithTimeout(cp.ctx, argoCDWait)
	defer cancel()
	err := cp.argoCDStart(ctx)
	if cp.ctx.Err() != nil {
		return // stopping: info.json is being removed
	}
	took := time.Since(ready).Round(100 * time.Millisecond)
	cp.infoMu.Lock()
	if err != nil {
		cp.info.ArgoCDError = err.Error()
	} else {
		cp.info.ArgoCDReady = true
	}
	info := cp.info
	cp.infoMu.Unlock()
	if err != nil {
		fmt.Fprintf(cp.cfg.Out, "argo cd cannot sync: %v (see %s)\n", err, info.ArgoCDLog)
	} else {
		fmt.Fprintf(cp.cfg.Out, "argo cd can sync in %s (after the plane was ready)\n", took)
	}
	if werr := writeInfo(info); werr != nil {
		cp.cfg.Logger.Error("rewrite info.json", "err", werr)
	}
}

func (cp *ControlPlane) argoCDStart(ctx context.Context) error {
	for _, name := range []string{"argocd-repo-server", "argocd-application-controller"} {
		if err := cp.startProcess(name); err != nil {
			return err
		}
	}
	if err := cp.warmOpenAPI(ctx); err != nil {
		return fmt.Errorf("warm /openapi/v2: %w", err)
	}
	cfg := rest.CopyConfig(cp.admin)
	// The API server warns that Argo CD's finalizer name has no path; that is upstream's.
	cfg.WarningHandler = rest.NoWarnings{}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return cp.probeArgoCD(ctx, dyn)
}

// warmOpenAPI fetches the API server's OpenAPI v2 document once: the server builds it
// lazily, in seconds on a cold server, and Argo CD's first cluster-cache sync reads it.
func (cp *ControlPlane) warmOpenAPI(ctx context.Context) error {
	rt, err := rest.TransportFor(cp.admin)
	if err != nil {
		return err
	}
	began := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.info.Server+"/openapi/v2", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	cp.cfg.Logger.Debug("warmed /openapi/v2", "bytes", n, "took", time.Since(began))
	return nil
}

// probeArgoCD syncs a ConfigMap from gitops.git with an Application until it is Synced
// and Healthy, then deletes the Application with its resources.
func (cp *ControlPlane) probeArgoCD(ctx context.Context, dyn dynamic.Interface) error {
	apps := dyn.Resource(applicationGVR).Namespace(argoCDNamespace)
	cms := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(argoCDNamespace)
	// A probe left by a launcher that died mid-way is still being deleted, or is reused.
	if err := waitFor(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		app, err := apps.Get(ctx, probeApp, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if app.GetDeletionTimestamp() != nil {
			return errors.New("the previous probe is being deleted")
		}
		return nil
	}); err != nil {
		return err
	}
	app := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata": map[string]any{
			"name":       probeApp,
			"namespace":  argoCDNamespace,
			"finalizers": []any{"resources-finalizer.argocd.argoproj.io"},
		},
		"spec": map[string]any{
			"project": "default",
			"source": map[string]any{
				"repoURL":        cp.info.GitopsRepo,
				"targetRevision": "main",
				"path":           probePath,
			},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": argoCDNamespace},
			"syncPolicy": map[string]any{
				"automated": map[string]any{"prune": true, "selfHeal": true},
				"retry":     map[string]any{"limit": int64(10), "backoff": map[string]any{"duration": "1s", "factor": int64(2), "maxDuration": "10s"}},
			},
		},
	}}
	if _, err := apps.Apply(ctx, probeApp, app, metav1.ApplyOptions{FieldManager: "dwp-cluster", Force: true}); err != nil {
		return fmt.Errorf("create the probe Application: %w", err)
	}
	if err := waitFor(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		got, err := apps.Get(ctx, probeApp, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return syncedAndHealthy(got)
	}); err != nil {
		return fmt.Errorf("probe Application: %w", err)
	}
	if err := apps.Delete(ctx, probeApp, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the probe Application: %w", err)
	}
	// Gone only once Argo CD has deleted what it made: the finalizer waits for that.
	return waitFor(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		for _, ri := range []dynamic.ResourceInterface{apps, cms} {
			_, err := ri.Get(ctx, probeApp, metav1.GetOptions{})
			if err == nil {
				return errors.New("the probe Application or its ConfigMap still exists")
			}
			if !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	})
}

// syncedAndHealthy says why an Application is not (yet) Synced and Healthy.
func syncedAndHealthy(app *unstructured.Unstructured) error {
	sync, _, _ := unstructured.NestedString(app.Object, "status", "sync", "status")
	health, _, _ := unstructured.NestedString(app.Object, "status", "health", "status")
	if sync == "Synced" && health == "Healthy" {
		return nil
	}
	msg := fmt.Sprintf("sync %q, health %q", sync, health)
	if conds, _, _ := unstructured.NestedSlice(app.Object, "status", "conditions"); len(conds) > 0 {
		msg += fmt.Sprintf(", conditions %v", conds)
	}
	if op, _, _ := unstructured.NestedString(app.Object, "status", "operationState", "message"); op != "" {
		msg += ", operation: " + op
	}
	return errors.New(msg)
}
