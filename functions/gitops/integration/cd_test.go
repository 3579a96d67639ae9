package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dwp-sre/dwp-sre/functions/gitops"
	"github.com/dwp-sre/dwp-sre/sandbox/stacktest"
)

const runTimeout = 3 * time.Minute

// An app service deploys, bumps its image, and a run that changes nothing commits nothing.
func TestAppServiceDeploy(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()

	start := time.Now()
	name := fx.mustSubmit(t, "dwp-cd-app-service", "shop", "image=registry.example/shop:1.0.0", "replicas=2", "cpu-request=100m", "memory-limit=128Mi")
	wf := fx.succeeded(t, name, runTimeout)
	t.Logf("dwp-cd-app-service submit → Succeeded: %s", time.Since(start).Round(10*time.Millisecond))

	rev := revision(t, wf)
	if n := fx.commits(t, "shop"); n != 1 {
		t.Fatalf("%d commits in the app's folder, want 1", n)
	}
	c, kust, ok := fx.commit(t, rev, "apps/"+fx.ns+"/shop/kustomization.yaml")
	if !ok || !strings.Contains(kust, "deployment.yaml") || !strings.Contains(kust, "service.yaml") {
		t.Fatalf("kustomization.yaml = %q, %v", kust, ok)
	}
	if c.Author.Name != "alice" || !strings.Contains(c.Message, "Submitted-by: alice") || !strings.Contains(c.Message, name) {
		t.Fatalf("commit by %q: %q", c.Author.Name, c.Message)
	}
	if msg := stepMessage(wf, gitops.StepSync); !strings.Contains(msg, "Synced and Healthy") {
		t.Fatalf("sync step message %q", msg)
	}
	eventually(t, 30*time.Second, "2 ready pods", func() error {
		d, err := fx.kube.AppsV1().Deployments(fx.ns).Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != 2 || d.Spec.Template.Spec.Containers[0].Image != "registry.example/shop:1.0.0" {
			return fmt.Errorf("ready %d, image %s", d.Status.ReadyReplicas, d.Spec.Template.Spec.Containers[0].Image)
		}
		return nil
	})

	// The same run again: Succeeded, no commit.
	again := fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-app-service", "shop", "image=registry.example/shop:1.0.0", "replicas=2", "cpu-request=100m", "memory-limit=128Mi"), runTimeout)
	if n := fx.commits(t, "shop"); n != 1 {
		t.Fatalf("an identical run committed: %d commits in the app's folder", n)
	}
	if ok, err := fx.repo.Includes(ctx, revision(t, again), rev); err != nil || !ok {
		t.Fatalf("the identical run's revision %s does not hold the first run's %s (%v)", revision(t, again), rev, err)
	}
	if msg := stepMessage(again, gitops.StepCommit); !strings.Contains(msg, "nothing to commit") {
		t.Fatalf("identical run's commit step: %q", msg)
	}

	// An image bump reaches Synced and Healthy on the new revision.
	start = time.Now()
	bump := fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-app-service", "shop", "image=registry.example/shop:1.1.0", "replicas=2", "cpu-request=100m", "memory-limit=128Mi"), runTimeout)
	t.Logf("image bump submit → Succeeded: %s", time.Since(start).Round(10*time.Millisecond))
	if newRev := revision(t, bump); newRev == rev || fx.commits(t, "shop") != 2 {
		t.Fatalf("the image bump made no commit of its own (%s)", newRev)
	}
	app, _ := fx.application(t, "shop")
	if got, _, _ := unstructured.NestedString(app.Object, "status", "health", "status"); got != "Healthy" {
		t.Fatalf("Application health %s", got)
	}
	if !strings.Contains(stepMessage(bump, gitops.StepSync), "Synced and Healthy") {
		t.Fatalf("sync step %q", stepMessage(bump, gitops.StepSync))
	}
	d, err := fx.kube.AppsV1().Deployments(fx.ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil || d.Spec.Template.Spec.Containers[0].Image != "registry.example/shop:1.1.0" {
		t.Fatalf("deployment image after the bump: %v %v", d.Spec.Template.Spec.Containers, err)
	}

	// The runs are in the app's history.
	a := fx.call(t, http.MethodGet, "/api/v1/namespaces/"+fx.ns+"/workflows?app=shop", "alice", nil)
	if a.code != http.StatusOK || strings.Count(string(a.body), `"dwp-cd-app-service-`) < 3 {
		t.Fatalf("history: %d %s", a.code, a.body)
	}
}

// Bad input is refused before anything is written.
func TestInvalidRunsCommitNothing(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	long := strings.Repeat("a", 300)
	tests := []struct {
		name, template, app string
		params              []string
		field               string
	}{
		{"invalid cron", "dwp-cd-cronjob", "reports", []string{"name=nightly", "image=r/x:1", "schedule=61 * * * *"}, "submitOptions.parameters.schedule"},
		{"negative replicas", "dwp-cd-app-service", "shop", []string{"image=r/x:1", "replicas=-1"}, "submitOptions.parameters.replicas"},
		{"300-character name", "dwp-cd-volume", "shop", []string{"name=" + long, "size=1Gi"}, "submitOptions.parameters.name"},
		{"malformed image", "dwp-cd-app-service", "shop", []string{"image=UPPER/Case:tag"}, "submitOptions.parameters.image"},
		{"limit below request", "dwp-cd-job", "shop", []string{"name=migrate", "image=r/x:1", "cpu-request=2", "cpu-limit=1"}, "submitOptions.parameters.cpu-limit"},
		{"timeout not a duration", "dwp-cd-volume", "shop", []string{"name=data", "size=1Gi", "timeout=soon"}, "submitOptions.parameters.timeout"},
		{"delete of an app name no Application has", "dwp-app-delete", "Shop_1", nil, "app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := fx.submit(t, "alice", tt.template, tt.app, tt.params...)
			if a.code != http.StatusBadRequest {
				t.Fatalf("%d %s", a.code, a.body)
			}
			p := a.problem(t)
			found := false
			for _, fe := range p.Errors {
				found = found || fe.Field == tt.field
			}
			if !found {
				t.Fatalf("no field error for %s: %s", tt.field, a.body)
			}
		})
	}
	list, err := fx.argo.ArgoprojV1alpha1().Workflows(fx.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("refused runs made %d workflows (%v)", len(list.Items), err)
	}
	if n := fx.commits(t, ""); n != 0 {
		t.Fatalf("refused runs committed %d times", n)
	}
}

// A user who may run workflows but not deploy gets 403, and nothing is committed.
func TestDeployNeedsTheRightToDeploy(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	grantWorkflowsOnly(t, fx, "bob")
	a := fx.submit(t, "bob", "dwp-cd-app-service", "shop", "image=r/shop:1")
	if a.code != http.StatusForbidden || !strings.Contains(a.problem(t).Detail, "deployments.apps") {
		t.Fatalf("%d %s", a.code, a.body)
	}
	// A workflow made past the function (bob may create workflows) is failed at its first
	// step: it carries no sealed run.
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "forged-", Namespace: fx.ns, Labels: map[string]string{"app": "shop"},
			Annotations: map[string]string{"dwp.io/cd-run": `{"kind":"app-service","app":"shop","user":"alice","params":{"image":"evil/x:1"}}`, "dwp.io/cd-seal": "00"}},
		Spec: wfv1.WorkflowSpec{WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: "dwp-cd-app-service", ClusterScope: true},
			Arguments: wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "image", Value: wfv1.AnyStringPtr("evil/x:1")}}}},
	}
	bobArgo := argoFor(t, fx, "bob")
	created, err := bobArgo.ArgoprojV1alpha1().Workflows(fx.ns).Create(context.Background(), wf, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := fx.waitDone(t, created.Name, runTimeout)
	if done.Status.Phase != wfv1.WorkflowFailed || !strings.Contains(stepMessage(done, gitops.StepCommit), "sealed") {
		t.Fatalf("forged run: %s, %q", done.Status.Phase, stepMessage(done, gitops.StepCommit))
	}
	if n := fx.commits(t, ""); n != 0 {
		t.Fatalf("refused runs committed %d times", n)
	}
	if _, ok := fx.application(t, "shop"); ok {
		t.Fatal("a refused run made an Application")
	}
}

// A run that cannot become healthy ends Failed with Argo CD's reason; stopping a run
// cancels it; an app-delete removes the Application, its objects and its folder.
func TestFailStopAndDelete(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()

	// kwok's node has 1 TiB: the pod stays Pending and Argo CD says Progressing.
	wf := fx.waitDone(t, fx.mustSubmit(t, "dwp-cd-app-service", "big", "image=r/big:1", "memory-request=2Ti", "timeout=20s"), runTimeout)
	msg := stepMessage(wf, gitops.StepSync)
	if wf.Status.Phase != wfv1.WorkflowFailed || !strings.Contains(msg, "timeout") || !strings.Contains(msg, "Deployment big") {
		t.Fatalf("unhealthy run: %s, sync step %q", wf.Status.Phase, msg)
	}

	// Stop while it waits for Argo CD: the run ends, and nothing more is committed.
	name := fx.mustSubmit(t, "dwp-cd-app-service", "big", "image=r/big:2", "memory-request=2Ti", "timeout=5m")
	eventually(t, 60*time.Second, "the sync step waits", func() error {
		wf, err := fx.argo.ArgoprojV1alpha1().Workflows(fx.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, n := range wf.Status.Nodes {
			if n.TemplateName == gitops.StepSync && n.Phase == wfv1.NodeRunning {
				return nil
			}
		}
		return fmt.Errorf("nodes: %s", nodes(wf))
	})
	commits := fx.commits(t, "big")
	a := fx.call(t, http.MethodPut, "/api/v1/namespaces/"+fx.ns+"/workflows/"+name+"/stop", "alice", map[string]any{})
	if a.code != http.StatusOK {
		t.Fatalf("stop: %d %s", a.code, a.body)
	}
	stopped := fx.waitDone(t, name, 30*time.Second)
	if stopped.Status.Phase == wfv1.WorkflowSucceeded {
		t.Fatalf("a stopped run succeeded")
	}
	time.Sleep(3 * time.Second) // a late step event must not commit either
	if n := fx.commits(t, "big"); n != commits {
		t.Fatalf("a stopped run committed: %d commits, %d before the stop", n, commits)
	}

	// Delete the app: Application, Deployment, Service and folder go.
	fx.succeeded(t, fx.mustSubmit(t, "dwp-app-delete", "big"), runTimeout)
	if _, ok := fx.application(t, "big"); ok {
		t.Fatal("the Application is still there")
	}
	eventually(t, 30*time.Second, "the app's objects are gone", func() error {
		if _, err := fx.kube.AppsV1().Deployments(fx.ns).Get(ctx, "big", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment: %v", err)
		}
		if _, err := fx.kube.CoreV1().Services(fx.ns).Get(ctx, "big", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("service: %v", err)
		}
		return nil
	})
	if _, _, ok := fx.commit(t, fx.head(t), "apps/"+fx.ns+"/big/kustomization.yaml"); ok {
		t.Fatal("the app's folder is still in the repository")
	}
}

// Job, CronJob and Volume runs reach Succeeded with their objects live and changed.
func TestJobCronJobVolume(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()

	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-job", "batch", "name=migrate", "image=r/migrate:1", "cpu-request=100m"), runTimeout)
	eventually(t, 60*time.Second, "the job completes", func() error {
		j, err := fx.kube.BatchV1().Jobs(fx.ns).Get(ctx, "migrate", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if j.Status.Succeeded < 1 {
			return fmt.Errorf("succeeded %d", j.Status.Succeeded)
		}
		return nil
	})

	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-cronjob", "batch", "name=nightly", "image=r/report:1", "schedule=0 2 * * *"), runTimeout)
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-cronjob", "batch", "name=nightly", "image=r/report:1", "schedule=30 3 * * 1-5", "suspend=true"), runTimeout)
	cj, err := fx.kube.BatchV1().CronJobs(fx.ns).Get(ctx, "nightly", metav1.GetOptions{})
	if err != nil || cj.Spec.Schedule != "30 3 * * 1-5" || cj.Spec.Suspend == nil || !*cj.Spec.Suspend {
		t.Fatalf("cronjob after the change: %+v %v", cj.Spec, err)
	}
	// The job run's files stay: every kind owns its own files in the app's folder.
	if _, err := fx.kube.BatchV1().Jobs(fx.ns).Get(ctx, "migrate", metav1.GetOptions{}); err != nil {
		t.Fatalf("the job went when the cronjob changed: %v", err)
	}

	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-volume", "batch", "name=data", "size=1Gi"), runTimeout)
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-volume", "batch", "name=data", "size=2Gi"), runTimeout)
	eventually(t, 30*time.Second, "the volume is resized", func() error {
		pvc, err := fx.kube.CoreV1().PersistentVolumeClaims(fx.ns).Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return err
		}
		got := pvc.Status.Capacity[corev1.ResourceStorage]
		if pvc.Status.Phase != corev1.ClaimBound || got.Cmp(resource.MustParse("2Gi")) != 0 {
			return fmt.Errorf("%s, capacity %s", pvc.Status.Phase, got.String())
		}
		return nil
	})
}

// A project run makes the project's namespace with its members' rights.
func TestProject(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	project := "p-" + fx.ns
	if len(project) > 63 {
		project = project[:63]
	}
	project = strings.TrimRight(project, "-")
	// Creating a namespace is a cluster right: alice has none, so the admin-like user is granted it.
	a := fx.submit(t, "alice", "dwp-cd-project", project, "editors=user:bob")
	if a.code != http.StatusForbidden {
		t.Fatalf("alice may not create namespaces, yet: %d %s", a.code, a.body)
	}
	grantNamespaces(t, fx, "alice")
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-project", project, "editors=user:bob", "viewers=group:dwp:viewers"), runTimeout)
	t.Cleanup(func() {
		// Deleting the Application (with its finalizer) deletes the project's namespace.
		_ = fx.dyn.Resource(applicationsGVR).Namespace(fx.env.ArgoCDNamespace).Delete(context.Background(), gitops.ApplicationName(fx.ns, project), metav1.DeleteOptions{})
	})
	if _, err := fx.kube.CoreV1().Namespaces().Get(ctx, project, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	rb, err := fx.kube.RbacV1().RoleBindings(project).Get(ctx, "dwp-editors", metav1.GetOptions{})
	if err != nil || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "bob" || rb.RoleRef.Name != "edit" {
		t.Fatalf("editors: %+v %v", rb, err)
	}
	if _, err := fx.kube.CoreV1().ServiceAccounts(project).Get(ctx, "dwp-task-runner", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

// CI → CD: a CI run of an app that opted in deploys the image it pushed, without anyone
// submitting the deploy.
func TestCISuccessDeploys(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	// CI runs as the project's Task Runner (a dwp-cd-project run makes it).
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "dwp-task-runner"}}
	if _, err := fx.kube.CoreV1().ServiceAccounts(fx.ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The app opts in with its first deploy.
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-app-service", "web", "image=registry.example/web:1", "replicas=2", "auto-deploy=true"), runTimeout)

	start := time.Now()
	ci := fx.mustSubmit(t, "dwp-ci", "web", "repo=https://git.example/web.git", "image=registry.example/web:2")
	fx.succeeded(t, ci, runTimeout)
	var cd string
	eventually(t, 60*time.Second, "a CD run of the CI run's image", func() error {
		list, err := fx.argo.ArgoprojV1alpha1().Workflows(fx.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		for _, wf := range list.Items {
			if wf.Annotations[gitops.AnnotationTriggeredBy] == ci {
				cd = wf.Name
				return nil
			}
		}
		return fmt.Errorf("none among %d workflows", len(list.Items))
	})
	fx.succeeded(t, cd, runTimeout)
	eventually(t, 30*time.Second, "the new image live", func() error {
		d, err := fx.kube.AppsV1().Deployments(fx.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/web:2" || d.Status.ReadyReplicas != 2 || d.Status.UpdatedReplicas != 2 {
			return fmt.Errorf("image %s, %d ready, %d updated", img, d.Status.ReadyReplicas, d.Status.UpdatedReplicas)
		}
		return nil
	})
	t.Logf("CI submit → new image live through CI → CD: %s", time.Since(start).Round(10*time.Millisecond))
	wf, err := fx.argo.ArgoprojV1alpha1().Workflows(fx.ns).Get(ctx, cd, metav1.GetOptions{})
	if err != nil || wf.Annotations["dwp.io/submitted-by"] != "alice" {
		t.Fatalf("the CD run is not alice's: %v %v", wf.Annotations, err)
	}

	// An app that did not opt in is not deployed by its CI runs.
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-app-service", "api", "image=registry.example/api:1"), runTimeout)
	ci2 := fx.mustSubmit(t, "dwp-ci", "api", "repo=https://git.example/api.git", "image=registry.example/api:2")
	fx.succeeded(t, ci2, runTimeout)
	time.Sleep(3 * time.Second)
	list, err := fx.argo.ArgoprojV1alpha1().Workflows(fx.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
	if err != nil {
		t.Fatal(err)
	}
	for _, wf := range list.Items {
		if wf.Annotations[gitops.AnnotationTriggeredBy] != "" {
			t.Fatalf("CI deployed an app that did not opt in: %s", wf.Name)
		}
	}
}

// A Helm release installs, changes values and upgrades its chart, the chart served by a
// chart repository of the test's own.
func TestHelmRelease(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	repo := chartRepository(t, "greeter", "0.1.0", "0.2.0")

	settings := func(want, version string) func() error {
		return func() error {
			cm, err := fx.kube.CoreV1().ConfigMaps(fx.ns).Get(ctx, "greeter-settings", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cm.Data["greeting"] != want || cm.Labels["chart-version"] != version {
				return fmt.Errorf("greeting %q, chart %q", cm.Data["greeting"], cm.Labels["chart-version"])
			}
			return nil
		}
	}
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-helm", "greeter", "chart=greeter", "repo="+repo, "version=0.1.0", "values=greeting: hi"), runTimeout)
	eventually(t, 10*time.Second, "installed with its values", settings("hi", "0.1.0"))
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-helm", "greeter", "chart=greeter", "repo="+repo, "version=0.1.0", "values={\"greeting\": \"hey\"}"), runTimeout)
	eventually(t, 10*time.Second, "new values applied", settings("hey", "0.1.0"))
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-helm", "greeter", "chart=greeter", "repo="+repo, "version=0.2.0", "values={\"greeting\": \"hey\"}"), runTimeout)
	eventually(t, 10*time.Second, "chart upgraded", settings("hey", "0.2.0"))

	a := fx.submit(t, "alice", "dwp-cd-helm", "greeter", "chart=greeter", "repo="+repo, "version=latest")
	if a.code != http.StatusBadRequest || !strings.Contains(string(a.body), "submitOptions.parameters.version") {
		t.Fatalf("a chart version range was accepted: %d %s", a.code, a.body)
	}
}

// Stopping a run whose sync Argo CD is still running terminates that sync.
func TestStopTerminatesTheSync(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	fx.succeeded(t, fx.mustSubmit(t, "dwp-cd-app-service", "slow", "image=r/slow:1"), runTimeout)
	// A PreSync hook that never completes (its pod cannot be scheduled) holds Argo CD's
	// sync operation Running. The app's next run lists it in the folder's kustomization.
	fx.env.GitPush(t, "a hook that never completes", map[string]string{"apps/" + fx.ns + "/slow/hook.yaml": `apiVersion: batch/v1
kind: Job
metadata:
  name: slow-presync
  annotations:
    argocd.argoproj.io/hook: PreSync
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: wait
        image: r/wait:1
        resources:
          requests: {memory: 2Ti}
`})
	name := fx.mustSubmit(t, "dwp-cd-app-service", "slow", "image=r/slow:2")
	opPhase := func() string {
		app, ok := fx.application(t, "slow")
		if !ok {
			return ""
		}
		p, _, _ := unstructured.NestedString(app.Object, "status", "operationState", "phase")
		return p
	}
	eventually(t, 60*time.Second, "Argo CD's sync runs, held by the hook", func() error {
		wf, err := fx.argo.ArgoprojV1alpha1().Workflows(fx.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p := opPhase(); p != "Running" || !strings.Contains(nodes(wf), gitops.StepSync+"=Running") {
			return fmt.Errorf("operation %q, nodes %s", p, nodes(wf))
		}
		return nil
	})
	if a := fx.call(t, http.MethodPut, "/api/v1/namespaces/"+fx.ns+"/workflows/"+name+"/stop", "alice", map[string]any{}); a.code != http.StatusOK {
		t.Fatalf("stop: %d %s", a.code, a.body)
	}
	eventually(t, 30*time.Second, "the sync terminated", func() error {
		app, _ := fx.application(t, "slow")
		msg, _, _ := unstructured.NestedString(app.Object, "status", "operationState", "message")
		if p := opPhase(); p == "Running" || p == "Terminating" || !strings.Contains(strings.ToLower(msg), "terminat") {
			return fmt.Errorf("operation %q: %q", p, msg)
		}
		return nil
	})
	if wf := fx.waitDone(t, name, 30*time.Second); wf.Status.Phase == wfv1.WorkflowSucceeded {
		t.Fatal("a stopped run succeeded")
	}
}

// A deploy streams like a build: its workflow's status, and the app's Application.
func TestRunStreams(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	router := stacktest.StartRouter(t, fx.env).URL()
	app := fx.stream(t, router+"/api/v1/stream/namespaces/"+fx.ns+"/apps/feed/application", "alice")
	await(t, app, 30*time.Second, `"application":null`)
	name := fx.mustSubmit(t, "dwp-cd-app-service", "feed", "image=registry.example/feed:1")
	status := fx.stream(t, router+"/api/v1/stream/namespaces/"+fx.ns+"/workflows/"+name, "alice")
	await(t, status, runTimeout, `"phase":"Succeeded"`, name)
	await(t, app, 30*time.Second, `"name":"`+fx.ns+`.feed"`, `"health":{"status":"Healthy"`)
}
