// Package clustertest gives integration tests a real local control plane
// (kube-apiserver, controller-manager, scheduler, kwok, Argo's workflow-controller,
// metrics-server, Argo CD and a git server) started once per test binary, or reused when
// DWP_CLUSTER_DIR names the state folder of one already running (as `make test` does).
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { clustertest.Main(m) }
//
// and in a test:
//
//	env := clustertest.Get(t)
//	ns := env.Namespace(t)                 // a fresh namespace, deleted when the test ends
//	cs := env.AdminClientset(t)
//	alice := env.UserConfig(t, "alice")    // a rest.Config authenticated as the test user alice
//	env.WaitArgoCD(t)                      // before using Argo CD (ready a few seconds after the plane)
//	env.GitPush(t, "msg", files)           // commit to main of env.GitopsRepo
package clustertest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
)

// EnvDir is the environment variable naming the state folder of a running control plane to reuse.
const EnvDir = "DWP_CLUSTER_DIR"

// Env is a running control plane as tests see it.
type Env struct {
	controlplane.Info

	// Admin authenticates as a cluster administrator (group system:masters).
	Admin *rest.Config
}

var (
	shared  *Env
	initErr error
)

// Main starts (or attaches to) the control plane, runs the tests and exits.
// When the control plane cannot be had, every test that calls Get fails with the reason.
func Main(m *testing.M) {
	code := func() int {
		stop, err := start()
		if err != nil {
			initErr = err
		}
		if stop != nil {
			defer stop()
		}
		return m.Run()
	}()
	os.Exit(code)
}

// Get returns the shared environment or fails the test.
func Get(t testing.TB) *Env {
	t.Helper()
	if initErr != nil {
		t.Fatalf("local control plane: %v", initErr)
	}
	if shared == nil {
		t.Fatal("clustertest: call clustertest.Main(m) from TestMain")
	}
	return shared
}

func start() (stop func(), err error) {
	if dir := os.Getenv(EnvDir); dir != "" {
		info, err := controlplane.ReadInfo(dir)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", EnvDir, dir, err)
		}
		shared, err = newEnv(info)
		return nil, err
	}
	info, stop, err := launch()
	if err != nil {
		return stop, err
	}
	shared, err = newEnv(info)
	return stop, err
}

// Private starts a control plane of the test's own, stopped when the test ends. Tests that
// disrupt the plane (restarting the API server) use it, so that tests running beside them
// on the shared plane are not disturbed. It takes seconds once the components are built.
func Private(t testing.TB) *Env {
	t.Helper()
	env, _ := Launch(t)
	return env
}

// Launch starts a control plane of the caller's own and returns it with the function
// that stops it (idempotent; also run when t ends): for a caller that starts several in
// turn, such as a benchmark of start-up, and must stop each before the next.
func Launch(t testing.TB) (*Env, func()) {
	t.Helper()
	info, stopPlane, err := launch()
	var once sync.Once
	stop := func() {
		if stopPlane != nil {
			once.Do(stopPlane)
		}
	}
	t.Cleanup(stop)
	if err != nil {
		t.Fatalf("private control plane: %v", err)
	}
	env, err := newEnv(info)
	if err != nil {
		t.Fatal(err)
	}
	return env, stop
}

// buildLauncher builds the launcher once per test binary. Its error is kept with it: a
// failed build fails every later start too, rather than letting them run a binary that
// is missing or stale.
var buildLauncher = func() func(root, launcher string) error {
	var once sync.Once
	var err error
	return func(root, launcher string) error {
		once.Do(func() {
			build := exec.Command("go", "build", "-o", launcher, "./sandbox/cmd/dwp-cluster")
			build.Dir = root
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			err = build.Run()
		})
		return err
	}
}()

// launch starts the launcher on free ports with a temporary state folder and waits until
// it is ready.
func launch() (_ controlplane.Info, stop func(), err error) {
	root, err := repoRoot()
	if err != nil {
		return controlplane.Info{}, nil, err
	}
	dir, err := os.MkdirTemp("", "dwp-cluster-")
	if err != nil {
		return controlplane.Info{}, nil, err
	}
	launcher := filepath.Join(root, "bin", "dwp-cluster")
	if buildErr := buildLauncher(root, launcher); buildErr != nil {
		return controlplane.Info{}, nil, fmt.Errorf("build launcher: %w", buildErr)
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	cmd := exec.Command(launcher, "up", "--dir", dir, "--ports", "auto", "--repo", root,
		"--bin", filepath.Join(root, "bin"),
		"--archive-db", "dwp_test_"+hex.EncodeToString(suffix[:]), "--drop-archive-db")
	logf, err := os.Create(filepath.Join(dir, "launcher.log"))
	if err != nil {
		return controlplane.Info{}, nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return controlplane.Info{}, nil, fmt.Errorf("start launcher: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if os.Getenv("DWP_KEEP_CLUSTER_DIR") == "" {
			_ = os.RemoveAll(dir)
		}
	}
	// A cold build of the components takes minutes; once built, start-up is seconds.
	info, err := controlplane.WaitReady(context.Background(), dir, 20*time.Minute)
	if err != nil {
		tail, _ := os.ReadFile(filepath.Join(dir, "launcher.log"))
		return info, stop, fmt.Errorf("%w\nlauncher log:\n%s", err, lastLines(string(tail), 40))
	}
	return info, stop, nil
}

func newEnv(info controlplane.Info) (*Env, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", info.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return &Env{Info: info, Admin: cfg}, nil
}

func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the repository")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AdminClientset is a clientset acting as cluster admin.
func (e *Env) AdminClientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// AdminDynamic is a dynamic client acting as cluster admin.
func (e *Env) AdminDynamic(t testing.TB) dynamic.Interface {
	t.Helper()
	dc, err := dynamic.NewForConfig(e.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return dc
}

// UserConfig is a rest.Config authenticated with the bearer token of a test user
// (see controlplane.TestUsers). A user has no rights until a test grants them.
func (e *Env) UserConfig(t testing.TB, user string) *rest.Config {
	t.Helper()
	tok, ok := e.Tokens[user]
	if !ok {
		t.Fatalf("no test user %q (have %v)", user, controlplane.TestUsers)
	}
	cfg := rest.AnonymousClientConfig(e.Admin)
	cfg.BearerToken = tok
	return cfg
}

// Token is the bearer token of a test user, as the portal would send it.
func (e *Env) Token(t testing.TB, user string) string {
	t.Helper()
	tok, ok := e.Tokens[user]
	if !ok {
		t.Fatalf("no test user %q", user)
	}
	return tok
}

// Namespace creates a namespace named after the test, deleted when the test ends.
// It waits until the namespace's default ServiceAccount exists, so pods can be created at once.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	cs := e.AdminClientset(t)
	name := namespaceName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"dwp.test": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	for {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return name
		}
		if !apierrors.IsNotFound(err) {
			t.Fatalf("default service account: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("namespace %s: default service account never appeared", name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func namespaceName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	base := strings.Trim(b.String(), "-")
	if len(base) > 40 {
		base = base[:40]
	}
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	return strings.Trim(base, "-") + "-" + hex.EncodeToString(suffix[:])
}

// Grant binds a ClusterRole (for example "edit", "view", "admin") to a test user in a namespace.
func (e *Env) Grant(t testing.TB, namespace, user, clusterRole string) {
	t.Helper()
	cs := e.AdminClientset(t)
	// Generous: a role such as view takes one review per rule, and a test beside this one
	// may be restarting the shared API server.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := cs.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-" + clusterRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("grant %s to %s in %s: %v", clusterRole, user, namespace, err)
	}
	// The API server's authorizer learns of the binding through its own watch: wait
	// until it allows one request of every rule, so that the test's next call does.
	role, err := cs.RbacV1().ClusterRoles().Get(ctx, clusterRole, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("grant %s to %s in %s: %v", clusterRole, user, namespace, err)
	}
	for {
		denied := deniedRule(ctx, cs, namespace, user, role.Rules)
		if denied == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("grant %s to %s in %s: still denied %s", clusterRole, user, namespace, denied)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// deniedRule asks the authorizer, for each resource rule, whether user may do its first
// verb on its first resource in namespace, and describes the first request denied.
func deniedRule(ctx context.Context, cs kubernetes.Interface, namespace, user string, rules []rbacv1.PolicyRule) string {
	for _, r := range rules {
		if len(r.Verbs) == 0 || len(r.Resources) == 0 || len(r.APIGroups) == 0 {
			continue
		}
		attrs := &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: r.Verbs[0], Group: r.APIGroups[0], Resource: r.Resources[0]}
		if len(r.ResourceNames) > 0 {
			attrs.Name = r.ResourceNames[0]
		}
		if res, sub, ok := strings.Cut(attrs.Resource, "/"); ok {
			attrs.Resource, attrs.Subresource = res, sub
		}
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: attrs},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Sprintf("%+v (%v)", *attrs, err)
		}
		if !sar.Status.Allowed {
			return fmt.Sprintf("%+v", *attrs)
		}
	}
	return ""
}

var logsGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

// PodLog is the log file kwok serves for one container of a pod, through the kubelet
// endpoint and so through `pods/log` of the API server.
type PodLog struct {
	Path string
	mu   sync.Mutex
}

// PodLog makes kwok serve the given container's log of the named pod from a fresh file.
// Call it before or after the pod exists; append lines with Append.
func (e *Env) PodLog(t testing.TB, namespace, pod, container string) *PodLog {
	t.Helper()
	dir := filepath.Join(e.LogDir, namespace)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, pod+"_"+container+".log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Logs",
		"metadata":   map[string]any{"name": pod, "namespace": namespace},
		"spec": map[string]any{"logs": []any{map[string]any{
			"containers": []any{container},
			"logsFile":   path,
			"follow":     true,
		}}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The plane may have given a workflow pod a log of its own first (it plays Argo's
	// executor): this one replaces it.
	logs := e.AdminDynamic(t).Resource(logsGVR).Namespace(namespace)
	_, err := logs.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = logs.Apply(ctx, pod, obj, metav1.ApplyOptions{FieldManager: "clustertest", Force: true})
	}
	if err != nil {
		t.Fatalf("kwok Logs for %s/%s: %v", namespace, pod, err)
	}
	return &PodLog{Path: path}
}

// Append writes lines to the log in CRI format, stamped now (one nanosecond apart, so
// that resuming by time is exact). It returns the timestamps written.
func (l *PodLog) Append(lines ...string) ([]time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.Path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	now := time.Now().UTC()
	stamps := make([]time.Time, 0, len(lines))
	for i, line := range lines {
		ts := now.Add(time.Duration(i))
		stamps = append(stamps, ts)
		fmt.Fprintf(w, "%s stdout F %s\n", ts.Format(time.RFC3339Nano), line)
	}
	return stamps, w.Flush()
}

// RestartAPIServer stops the kube-apiserver and starts it again with its state kept,
// returning once it answers /readyz. Open watches and log streams break meanwhile: use it
// on a Private plane.
func (e *Env) RestartAPIServer(t testing.TB) {
	t.Helper()
	if err := e.Control(context.Background(), "restart/kube-apiserver"); err != nil {
		t.Fatalf("restart kube-apiserver: %v", err)
	}
}

// Control posts a command to the launcher's control socket.
func (e *Env) Control(ctx context.Context, command string) error {
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.ControlSocket)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://launcher/"+command, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// MarshalJSON keeps tokens out of test logs.
func (e *Env) String() string {
	b, _ := json.Marshal(struct{ Server, Kubeconfig string }{e.Server, e.Kubeconfig})
	return string(b)
}

// WaitArgoCD waits until the plane's Argo CD has been proven to sync (the launcher does so
// after the plane is ready, in about ten seconds) and returns the plane's Info as then
// rewritten. Call it first in tests that need Argo CD; it fails with the tail of the
// application controller's log when Argo CD does not become ready.
func (e *Env) WaitArgoCD(t testing.TB) controlplane.Info {
	t.Helper()
	const timeout = 3 * time.Minute
	deadline := time.Now().Add(timeout)
	for {
		info, err := controlplane.ReadInfo(e.Dir)
		switch {
		case err != nil:
			t.Fatalf("wait for Argo CD: %v", err)
		case info.ArgoCDReady:
			return info
		case info.ArgoCDError != "":
			t.Fatalf("Argo CD cannot sync: %s\n%s", info.ArgoCDError, logTail(info.ArgoCDLog))
		case time.Now().After(deadline):
			t.Fatalf("Argo CD not ready after %s\n%s", timeout, logTail(info.ArgoCDLog))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return path + ", last lines:\n" + lastLines(string(b), 40)
}

// GitPush commits files (path in the repository → content; an empty content deletes the
// file) to the branch main of the plane's GitOps repository with the git CLI, over smart
// HTTP, and returns the new commit. Other tests push to the same repository: a push
// outrun by theirs is made again on top of the new main.
func (e *Env) GitPush(t testing.TB, message string, files map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lastErr error
	for range 10 {
		// Not t.TempDir: GitPush may run in a cleanup.
		work, err := os.MkdirTemp("", "clustertest-git-")
		if err != nil {
			t.Fatal(err)
		}
		rev, err := e.gitPushOnce(ctx, work, message, files)
		os.RemoveAll(work)
		if err == nil {
			return rev
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	t.Fatalf("push to %s: %v", e.GitopsRepo, lastErr)
	return ""
}

func (e *Env) gitPushOnce(ctx context.Context, work, message string, files map[string]string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=clustertest", "GIT_AUTHOR_EMAIL=clustertest@localhost",
			"GIT_COMMITTER_NAME=clustertest", "GIT_COMMITTER_EMAIL=clustertest@localhost")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := git("clone", "--quiet", "--branch", "main", e.GitopsRepo, "."); err != nil {
		return "", err
	}
	for name, content := range files {
		path := filepath.Join(work, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				return "", err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := git("add", "--all"); err != nil {
		return "", err
	}
	if _, err := git("commit", "--quiet", "--allow-empty", "--message", message); err != nil {
		return "", err
	}
	if _, err := git("push", "--quiet", "origin", "main"); err != nil {
		return "", err
	}
	return git("rev-parse", "HEAD")
}

// WaitPodLogServed waits until the API server serves the container's log (kwok picks up a
// Logs object a moment after the pod runs), so that a follow opened afterwards misses nothing.
func (e *Env) WaitPodLogServed(t testing.TB, namespace, pod, container string) {
	t.Helper()
	cs := e.AdminClientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, err := cs.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("log of %s/%s/%s not served: %v", namespace, pod, container, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SenderToken makes the ServiceAccount serviceAccount in namespace (when missing) and a
// token of it for audience (the TokenRequest API, valid for an hour), written to a file
// as a projected token would be. It returns the file and the identity the API server
// gives the token, for the receiver's list of allowed senders.
func (e *Env) SenderToken(t testing.TB, namespace, serviceAccount, audience string) (file, identity string) {
	t.Helper()
	cs := e.AdminClientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: serviceAccount},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create service account %s/%s: %v", namespace, serviceAccount, err)
	}
	hour := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &hour},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of %s/%s: %v", namespace, serviceAccount, err)
	}
	file = filepath.Join(t.TempDir(), serviceAccount+".token")
	if err := os.WriteFile(file, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, "system:serviceaccount:" + namespace + ":" + serviceAccount
}
