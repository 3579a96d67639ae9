// Package integration_test runs CD Task Runners end to end on the local control plane:
// the task function's submit and steps, the real watcher binary sending step events,
// Argo's real workflow-controller running the suspend steps, the plane's git server as
// the GitOps repository, and the real Argo CD syncing it (pods run by kwok).
package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	function "github.com/dwp-sre/dwp-sre"
	"github.com/dwp-sre/dwp-sre/functions/gitops"
	"github.com/dwp-sre/dwp-sre/functions/gitops/gitrepo"
	"github.com/dwp-sre/dwp-sre/functions/workflows"
	"github.com/dwp-sre/dwp-sre/internal/eventauth"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sandbox/stacktest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

var applicationsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// fixture is one test's namespace, with the function and a watcher of that namespace.
type fixture struct {
	env   *clustertest.Env
	ns    string
	url   string
	argo  wfclient.Interface
	kube  kubernetes.Interface
	dyn   dynamic.Interface
	repo  *gitrepo.Repo
	start time.Time
}

func setup(t testing.TB) *fixture { return setupWith(t) }

// setupWith starts the watcher with extra environment variables.
func setupWith(t testing.TB, watcherEnv ...string) *fixture {
	t.Helper()
	env := clustertest.Get(t)
	env.WaitArgoCD(t)
	stacktest.Install(t, env)
	ns := env.Namespace(t)
	env.Grant(t, ns, "alice", "edit")
	argo, err := wfclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "run.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("0123456789abcdef", 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The watcher sends as its ServiceAccount, the function's one allowed sender.
	tokenFile, watcher := env.SenderToken(t, ns, "dwp-watcher", "dwp-function-test")
	watcherEnv = append(watcherEnv, "DWP_SINK_TOKEN_FILE="+tokenFile)
	f := function.New()
	ctx := context.Background()
	if err := f.Start(ctx, map[string]string{
		eventauth.EnvAudience: "dwp-function-test", eventauth.EnvSenders: watcher,
		workflows.EnvKubeconfig:   env.Kubeconfig,
		workflows.EnvRunKeyFile:   key,
		gitops.EnvRepo:            env.GitopsRepo,
		gitops.EnvArgoCDNamespace: env.ArgoCDNamespace,
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(f.Handle))
	t.Cleanup(func() { srv.Close(); _ = f.Stop(context.Background()) })
	stacktest.StartWatcher(t, env, append([]string{"K_SINK=" + srv.URL + "/events", "DWP_NAMESPACES=" + ns}, watcherEnv...)...)
	// Applications outlive namespaces: delete this test's (their finalizer deletes what
	// they made) before the namespace goes, or Argo CD keeps syncing into a dead one.
	dynAdmin := env.AdminDynamic(t)
	t.Cleanup(func() {
		_ = dynAdmin.Resource(applicationsGVR).Namespace(env.ArgoCDNamespace).DeleteCollection(context.Background(),
			metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: events.LabelAppNamespace + "=" + ns})
	})
	fx := &fixture{
		env: env, ns: ns, url: srv.URL, argo: argo,
		kube: env.AdminClientset(t), dyn: env.AdminDynamic(t),
		repo: &gitrepo.Repo{URL: env.GitopsRepo, Branch: "main"},
	}
	return fx
}

type answer struct {
	code int
	body []byte
}

func (fx *fixture) call(t testing.TB, method, path, user string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, fx.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+fx.env.Token(t, user))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: b}
}

func (a answer) problem(t testing.TB) problem.Problem {
	t.Helper()
	var p problem.Problem
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatalf("not a problem: %s", a.body)
	}
	return p
}

// submit submits the CD template as user and returns the workflow's name.
func (fx *fixture) submit(t testing.TB, user, template, app string, params ...string) answer {
	t.Helper()
	return fx.call(t, http.MethodPost, "/api/v1/namespaces/"+fx.ns+"/workflows", user, map[string]any{
		"resourceKind": "ClusterWorkflowTemplate", "resourceName": template, "app": app,
		"submitOptions": map[string]any{"parameters": params},
	})
}

func (fx *fixture) mustSubmit(t testing.TB, template, app string, params ...string) string {
	t.Helper()
	a := fx.submit(t, "alice", template, app, params...)
	if a.code != http.StatusCreated {
		t.Fatalf("submit %s: %d %s", template, a.code, a.body)
	}
	var r workflows.SubmitResponse
	if err := json.Unmarshal(a.body, &r); err != nil {
		t.Fatal(err)
	}
	return r.Name
}

// waitDone waits for the workflow to end and returns it.
func (fx *fixture) waitDone(t testing.TB, name string, timeout time.Duration) *wfv1.Workflow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		wf, err := fx.argo.ArgoprojV1alpha1().Workflows(fx.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if wf.Status.Phase.Completed() {
			return wf
		}
		if time.Now().After(deadline) {
			t.Fatalf("workflow %s still %s after %s: %s; nodes: %s", name, wf.Status.Phase, timeout, wf.Status.Message, nodes(wf))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func nodes(wf *wfv1.Workflow) string {
	var parts []string
	for _, n := range wf.Status.Nodes {
		if n.Type == wfv1.NodeTypeSuspend {
			parts = append(parts, fmt.Sprintf("%s=%s(%s)", n.TemplateName, n.Phase, n.Message))
		}
	}
	return strings.Join(parts, ", ")
}

func (fx *fixture) succeeded(t testing.TB, name string, timeout time.Duration) *wfv1.Workflow {
	t.Helper()
	wf := fx.waitDone(t, name, timeout)
	if wf.Status.Phase != wfv1.WorkflowSucceeded {
		t.Fatalf("workflow %s %s: %s; nodes: %s", name, wf.Status.Phase, wf.Status.Message, nodes(wf))
	}
	return wf
}

// stepMessage is the message of the workflow's node of template step.
func stepMessage(wf *wfv1.Workflow, step string) string {
	for _, n := range wf.Status.Nodes {
		if n.TemplateName == step {
			return n.Message
		}
	}
	return ""
}

func (fx *fixture) head(t testing.TB) string {
	t.Helper()
	h, err := fx.repo.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// commits counts the commits of the branch that touch the folder (apps/<ns>/<app>, or
// the whole namespace's when app is empty). Tests run in parallel and share the
// repository: what one test checks is its own folder.
func (fx *fixture) commits(t testing.TB, app string) int {
	t.Helper()
	folder := "apps/" + fx.ns + "/"
	if app != "" {
		folder += app + "/"
	}
	r, err := git.Clone(memory.NewStorage(), nil, &git.CloneOptions{URL: fx.env.GitopsRepo, ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true, NoCheckout: true})
	if err != nil {
		t.Fatal(err)
	}
	iter, err := r.Log(&git.LogOptions{PathFilter: func(p string) bool { return strings.HasPrefix(p, folder) }})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := iter.ForEach(func(*object.Commit) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// revision is the commit a run's commit step made or found.
func revision(t testing.TB, wf *wfv1.Workflow) string {
	t.Helper()
	for _, n := range wf.Status.Nodes {
		if n.TemplateName == gitops.StepCommit && n.Outputs != nil {
			for _, p := range n.Outputs.Parameters {
				if p.Name == gitops.ParamRevision && p.Value != nil {
					return p.Value.String()
				}
			}
		}
	}
	t.Fatalf("workflow %s has no revision output: %s", wf.Name, nodes(wf))
	return ""
}

// commit reads one commit of the GitOps repository and, when path is set, that file at it.
func (fx *fixture) commit(t testing.TB, rev, path string) (*object.Commit, string, bool) {
	t.Helper()
	r, err := git.Clone(memory.NewStorage(), nil, &git.CloneOptions{URL: fx.env.GitopsRepo, ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.CommitObject(plumbing.NewHash(rev))
	if err != nil {
		t.Fatalf("commit %s: %v", rev, err)
	}
	if path == "" {
		return c, "", true
	}
	f, err := c.File(path)
	if err != nil {
		return c, "", false
	}
	s, _ := f.Contents()
	return c, s, true
}

func (fx *fixture) application(t testing.TB, app string) (*unstructured.Unstructured, bool) {
	t.Helper()
	u, err := fx.dyn.Resource(applicationsGVR).Namespace(fx.env.ArgoCDNamespace).Get(context.Background(), gitops.ApplicationName(fx.ns, app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return u, true
}

// eventually polls check until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// grantWorkflowsOnly lets user submit workflows in ns without any right on what they deploy.
func grantWorkflowsOnly(t testing.TB, fx *fixture, user string) {
	t.Helper()
	name := "dwp-test-workflows-only"
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"argoproj.io"},
			Resources: []string{"workflows", "workflowtemplates", "clusterworkflowtemplates"},
			Verbs:     []string{"get", "list", "watch", "create"},
		}},
	}
	if _, err := fx.kube.RbacV1().ClusterRoles().Create(context.Background(), role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	fx.env.Grant(t, fx.ns, user, name)
}

func argoFor(t testing.TB, fx *fixture, user string) wfclient.Interface {
	t.Helper()
	c, err := wfclient.NewForConfig(fx.env.UserConfig(t, user))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// grantNamespaces lets user create and manage namespaces and RBAC (a project's).
func grantNamespaces(t testing.TB, fx *fixture, user string) {
	t.Helper()
	name := "dwp-test-projects-" + fx.ns
	ctx := context.Background()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces", "serviceaccounts"}, Verbs: []string{"create", "update", "get"}},
			{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"rolebindings"}, Verbs: []string{"create", "update", "get"}},
		},
	}
	if _, err := fx.kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	if _, err := fx.kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = fx.kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = fx.kube.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	eventually(t, 30*time.Second, "the namespace right reaches the authorizer", func() error {
		cs, err := kubernetes.NewForConfig(fx.env.UserConfig(t, user))
		if err != nil {
			return err
		}
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Resource: "namespaces"}},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if !r.Status.Allowed {
			return fmt.Errorf("not yet allowed")
		}
		return nil
	})
}

// chartRepository packages a chart of each version with the plane's helm and serves them
// as a chart repository on loopback; it returns the repository's URL.
func chartRepository(t testing.TB, chart string, versions ...string) string {
	t.Helper()
	helm := filepath.Join(repoRoot(), "bin", "helm")
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		dir := filepath.Join(root, v, chart)
		files := map[string]string{
			"Chart.yaml":  fmt.Sprintf("apiVersion: v2\nname: %s\nversion: %s\n", chart, v),
			"values.yaml": "greeting: hello\n",
			"templates/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
  labels:
    chart-version: {{ .Chart.Version | quote }}
data:
  greeting: {{ .Values.greeting | quote }}
`,
		}
		for name, body := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command(helm, "package", dir, "--destination", repo).CombinedOutput(); err != nil {
			t.Fatalf("helm package: %v\n%s", err, out)
		}
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(repo)))
	t.Cleanup(srv.Close)
	if out, err := exec.Command(helm, "repo", "index", repo, "--url", srv.URL).CombinedOutput(); err != nil {
		t.Fatalf("helm repo index: %v\n%s", err, out)
	}
	return srv.URL
}

// stream opens an SSE stream as user and sends each message's data on the channel until
// the test ends.
func (fx *fixture) stream(t testing.TB, url, user string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+fx.env.Token(t, user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream %s: %s %s", url, resp.Status, b)
	}
	out := make(chan string, 256)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				select {
				case out <- data:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// await reads the stream until a message holds every one of want.
func await(t testing.TB, msgs <-chan string, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.After(timeout)
	var last string
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("the stream ended; last message %s", last)
			}
			last = m
			all := true
			for _, w := range want {
				all = all && strings.Contains(m, w)
			}
			if all {
				return
			}
		case <-deadline:
			t.Fatalf("no message with %q within %s; last %s", want, timeout, last)
		}
	}
}
