package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"github.com/dwp-sre/dwp-sre/functions/workflows"
)

var (
	workflowTemplatesGVR        = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflowtemplates"}
	clusterWorkflowTemplatesGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "clusterworkflowtemplates"}
)

// applyTemplates applies the (Cluster)WorkflowTemplates of a YAML file: WorkflowTemplates
// into ns, ClusterWorkflowTemplates renamed by rename (nil: as they are, and left on the
// plane, as the Task Runners a real cluster has; otherwise deleted at the end).
func applyTemplates(t *testing.T, fx *fixture, file, ns string, rename func(string) string) (names []string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dyn := fx.env.AdminDynamic(t)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		opts := metav1.ApplyOptions{FieldManager: "catalogue-test", Force: true}
		switch u.GetKind() {
		case "WorkflowTemplate":
			u.SetNamespace(ns)
			_, err = dyn.Resource(workflowTemplatesGVR).Namespace(ns).Apply(ctx, u.GetName(), &u, opts)
		case "ClusterWorkflowTemplate":
			if rename != nil {
				u.SetName(rename(u.GetName()))
				name := u.GetName()
				t.Cleanup(func() {
					_ = dyn.Resource(clusterWorkflowTemplatesGVR).Delete(context.Background(), name, metav1.DeleteOptions{})
				})
			}
			_, err = dyn.Resource(clusterWorkflowTemplatesGVR).Apply(ctx, u.GetName(), &u, opts)
		default:
			continue
		}
		if err != nil {
			t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		names = append(names, u.GetKind()+"/"+u.GetName())
	}
	return names
}

// mayListClusterTemplates asks the API server whether user may list ClusterWorkflowTemplates.
func mayListClusterTemplates(t *testing.T, fx *fixture, user string) bool {
	t.Helper()
	cs, err := kubernetes.NewForConfig(fx.env.UserConfig(t, user))
	if err != nil {
		t.Fatal(err)
	}
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: "list", Group: "argoproj.io", Resource: "clusterworkflowtemplates"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

// grantClusterTemplateReading lets user read ClusterWorkflowTemplates, as deploy/task-runner's
// dwp-task-runner-reader does for everyone signed in.
func grantClusterTemplateReading(t *testing.T, fx *fixture, user string) {
	t.Helper()
	ctx := context.Background()
	cs := fx.env.AdminClientset(t)
	name := "catalogue-test-" + fx.ns
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"clusterworkflowtemplates"}, Verbs: []string{"get", "list"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	waitUntil(t, 10*time.Second, user+" may list ClusterWorkflowTemplates", func() (bool, string) {
		return mayListClusterTemplates(t, fx, user), "not yet"
	})
}

func (fx *fixture) catalogue(t *testing.T, user, query string) []workflows.TaskRunner {
	t.Helper()
	var all []workflows.TaskRunner
	path := "/api/v1/namespaces/" + fx.ns + "/workflow-templates?" + query
	cont := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("no end")
		}
		p := path
		if cont != "" {
			p += "&continue=" + cont
		}
		a := fx.call(t, http.MethodGet, p, user, "")
		if a.code != http.StatusOK {
			t.Fatalf("GET %s as %s: %d %s", p, user, a.code, a.body)
		}
		var l workflows.TaskRunnerList
		if err := json.Unmarshal(a.body, &l); err != nil {
			t.Fatal(err)
		}
		all = append(all, l.Items...)
		if cont = l.Metadata.Continue; cont == "" {
			return all
		}
	}
}

func keys(items []workflows.TaskRunner) []string {
	out := make([]string, len(items))
	for i, tr := range items {
		out[i] = tr.Kind + "/" + tr.Name
	}
	return out
}

func find(t *testing.T, items []workflows.TaskRunner, kind, name string) workflows.TaskRunner {
	t.Helper()
	for _, tr := range items {
		if tr.Kind == kind && tr.Name == name {
			return tr
		}
	}
	t.Fatalf("%s %s not in the catalogue %v", kind, name, keys(items))
	return workflows.TaskRunner{}
}

func param(t *testing.T, tr workflows.TaskRunner, name string) workflows.TaskRunnerParameter {
	t.Helper()
	for _, p := range tr.Parameters {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("%s has no parameter %s: %+v", tr.Name, name, tr.Parameters)
	return workflows.TaskRunnerParameter{}
}

func describe(p workflows.TaskRunnerParameter) string {
	d := "none"
	if p.Default != nil {
		d = fmt.Sprintf("%q", *p.Default)
	}
	return fmt.Sprintf("required=%v default=%s enum=%v", p.Required, d, p.Enum)
}

// Must show: the catalogue lists the demo's and Argo's example templates with their
// parameters, and hides those the user may not use.
func TestCatalogueListsTaskRunners(t *testing.T) {
	// Text, as an operator writes it: the key file is read with surrounding space trimmed.
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(t.TempDir(), "run-key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	fx := setup(t, map[string]string{workflows.EnvRunKeyFile: keyFile})
	env := fx.env
	env.Grant(t, fx.ns, "carol", "view")

	// On the plane: the demo's WorkflowTemplate, the Task Runners of deploy/task-runner (as a
	// real cluster has them), and templates in the shape of Argo's examples.
	deploy := filepath.Join("..", "..", "..", "deploy")
	demo := applyTemplates(t, fx, filepath.Join(deploy, "demo", "demo.yaml"), fx.ns, nil)
	runners := applyTemplates(t, fx, filepath.Join(deploy, "task-runner", "ci.yaml"), fx.ns, nil)
	runners = append(runners, applyTemplates(t, fx, filepath.Join(deploy, "task-runner", "cd.yaml"), fx.ns, nil)...)
	exampleCluster := "example-cluster-hello-" + fx.ns
	examples := applyTemplates(t, fx, filepath.Join("testdata", "argo-example-templates.yaml"), fx.ns, func(name string) string { return name + "-" + fx.ns })
	if !slices.Equal(demo, []string{"WorkflowTemplate/ci"}) || len(runners) != 8 || len(examples) != 3 {
		t.Fatalf("applied %v %v %v", demo, runners, examples)
	}
	namespaced := []string{"WorkflowTemplate/build", "WorkflowTemplate/ci", "WorkflowTemplate/example-print-message", "WorkflowTemplate/example-release-gate", "WorkflowTemplate/long"}

	// alice may submit in her namespace; ClusterWorkflowTemplates are hers once she may read them.
	if mayListClusterTemplates(t, fx, "alice") {
		t.Log("every user may read ClusterWorkflowTemplates on this plane (deploy/task-runner's reader binding): the hiding of unreadable ones is not observable here")
	} else {
		got := keys(fx.catalogue(t, "alice", ""))
		if !slices.Equal(got, namespaced) {
			t.Fatalf("alice, who may not read ClusterWorkflowTemplates, sees %v, want %v", got, namespaced)
		}
		t.Logf("without the right to read ClusterWorkflowTemplates alice sees the namespace's %d templates alone", len(got))
		grantClusterTemplateReading(t, fx, "alice")
	}
	all := fx.catalogue(t, "alice", "limit=500")
	got := keys(all)
	if !slices.Equal(got[:len(namespaced)], namespaced) {
		t.Fatalf("the namespace's templates first: %v", got)
	}
	for _, want := range append(runners, "ClusterWorkflowTemplate/"+exampleCluster) {
		if !slices.Contains(got, want) {
			t.Fatalf("%s missing from %v", want, got)
		}
	}
	cluster := got[len(namespaced):]
	if !slices.IsSorted(cluster) || !strings.HasPrefix(cluster[0], "ClusterWorkflowTemplate/") {
		t.Fatalf("then the cluster's, by name: %v", cluster)
	}
	// Page by page, the same list.
	for _, limit := range []string{"1", "3"} {
		if paged := keys(fx.catalogue(t, "alice", "limit="+limit)); !slices.Equal(paged, got) {
			t.Fatalf("limit %s: %v, want %v", limit, paged, got)
		}
	}
	t.Logf("alice's catalogue in %s: %d templates (%d of the namespace)", fx.ns, len(got), len(namespaced))

	// The parameters, as the templates declare them.
	checks := []struct {
		kind, name, param, want string
	}{
		{"WorkflowTemplate", "ci", "revision", `required=false default="main" enum=[]`},
		{"WorkflowTemplate", "example-print-message", "message", `required=true default=none enum=[]`},
		{"WorkflowTemplate", "example-release-gate", "approve", `required=false default="NO" enum=[YES NO]`},
		{"WorkflowTemplate", "example-release-gate", "stage", `required=false default="pre-production" enum=[pre-production production]`},
		{"ClusterWorkflowTemplate", exampleCluster, "greeting", `required=false default="hello world" enum=[]`},
		{"ClusterWorkflowTemplate", "dwp-ci", "repo", `required=true default=none enum=[]`},
		{"ClusterWorkflowTemplate", "dwp-cd-app-service", "image", `required=true default=none enum=[]`},
		{"ClusterWorkflowTemplate", "dwp-cd-app-service", "auto-deploy", `required=false default="false" enum=[true false]`},
		{"ClusterWorkflowTemplate", "dwp-cd-volume", "storage-class", `required=false default="" enum=[]`},
	}
	for _, c := range checks {
		tr := find(t, all, c.kind, c.name)
		if got := describe(param(t, tr, c.param)); got != c.want {
			t.Errorf("%s %s parameter %s: %s, want %s", c.kind, c.name, c.param, got, c.want)
		}
	}
	gate := find(t, all, "WorkflowTemplate", "example-release-gate")
	if gate.Namespace != fx.ns || gate.Description != "Deploys to pre-production, then to production once approved." || gate.CDKind != "" {
		t.Errorf("example-release-gate: %+v", gate)
	}
	if p := param(t, gate, "approve"); p.Description != "YES to go on to production." {
		t.Errorf("approve: %+v", p)
	}
	if m := find(t, all, "WorkflowTemplate", "example-print-message"); m.Title != "Print a message" || m.Entrypoint != "print-message" {
		t.Errorf("example-print-message: %+v", m)
	}
	if app := find(t, all, "ClusterWorkflowTemplate", "dwp-cd-app-service"); app.CDKind != "app-service" || app.Namespace != "" || !strings.Contains(app.Description, "Deploy an app service") {
		t.Errorf("dwp-cd-app-service: %+v", app)
	}
	if ci := find(t, all, "ClusterWorkflowTemplate", "dwp-ci"); ci.CDKind != "" || param(t, ci, "repo").Description != "git URL of the app's source" {
		t.Errorf("dwp-ci: %+v", ci)
	}
	if only := keys(fx.catalogue(t, "alice", "kind=WorkflowTemplate")); !slices.Equal(only, namespaced) {
		t.Errorf("kind=WorkflowTemplate: %v", only)
	}

	// One by name, of either kind.
	base := "/api/v1/namespaces/" + fx.ns + "/workflow-templates/"
	var one workflows.TaskRunner
	a := fx.call(t, http.MethodGet, base+"dwp-cd-volume?kind=ClusterWorkflowTemplate", "alice", "")
	if a.code != http.StatusOK || json.Unmarshal(a.body, &one) != nil || one.CDKind != "volume" || !param(t, one, "name").Required {
		t.Fatalf("dwp-cd-volume: %d %s", a.code, a.body)
	}
	a = fx.call(t, http.MethodGet, base+"ci", "alice", "")
	if a.code != http.StatusOK || json.Unmarshal(a.body, &one) != nil || one.Kind != "WorkflowTemplate" || one.Namespace != fx.ns {
		t.Fatalf("ci: %d %s", a.code, a.body)
	}

	// What the catalogue says is what a submit takes.
	sub := fx.submit(t, "alice", fmt.Sprintf(`{"resourceKind":%q,"resourceName":%q,"app":"shop","submitOptions":{"parameters":["message=hi"]}}`,
		"WorkflowTemplate", "example-print-message"))
	t.Logf("submitted %s from the catalogue's entry", sub.Name)

	// Those who may not submit in the namespace see nothing.
	refusals := []struct {
		name, path, user string
		code             int
	}{
		{"carol (view) lists", "/api/v1/namespaces/" + fx.ns + "/workflow-templates", "carol", 403},
		{"carol (view) gets", base + "ci", "carol", 403},
		{"bob (no rights) lists", "/api/v1/namespaces/" + fx.ns + "/workflow-templates", "bob", 403},
		{"bob gets a cluster template", base + "dwp-ci?kind=ClusterWorkflowTemplate", "bob", 403},
		{"no token", "/api/v1/namespaces/" + fx.ns + "/workflow-templates", "", 401},
		{"unknown template", base + "absent", "alice", 404},
		{"unknown cluster template", base + "absent?kind=ClusterWorkflowTemplate", "alice", 404},
		{"a namespace's template asked as the cluster's", base + "ci?kind=ClusterWorkflowTemplate", "alice", 404},
		{"bad kind", base + "ci?kind=Workflow", "alice", 400},
		{"bad name", base + "Not_A_Name", "alice", 400},
		{"bad continue", "/api/v1/namespaces/" + fx.ns + "/workflow-templates?continue=xyz", "alice", 400},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			a := fx.call(t, http.MethodGet, c.path, c.user, "")
			if a.code != c.code || a.problem(t).Status != c.code {
				t.Fatalf("%d, want %d: %s", a.code, c.code, a.body)
			}
		})
	}
}
