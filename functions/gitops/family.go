// Package gitops is the task function's family of GitOps CD: it performs the steps of CD
// runs. A CD Task Runner is an Argo WorkflowTemplate whose steps are suspend nodes named
// events.StepTemplatePrefix...; the workflow-controller runs them without a pod, the
// watcher says when one waits (io.dwp.workflow.step.v1), and this family does the work
// with the function's own rights and resumes or fails the node through its status, as
// Argo's own node API does:
//
//   - gitops-commit renders the run's objects (functions/gitops/manifest) into the app's
//     folder of the GitOps repository, commits as the submitting user (no commit when
//     nothing changed), ensures the app's Argo CD Application, and outputs the revision;
//   - gitops-sync waits until Argo CD reports that revision Synced and Healthy, and fails
//     with Argo CD's reason (sync error, Degraded, or the state at the timeout);
//   - gitops-delete deletes the Application with the objects it created, then the app's
//     folder.
//
// CI → CD: when a CI run of an app succeeds (io.dwp.workflow.succeeded.v1) and the app's
// last app-service run opted in (auto-deploy=true), the family submits an app-service run
// of the image the CI run pushed, with the app's settings, for the CI run's submitter
// (checked as at a submit).
//
// Only runs sealed by the function at submit (functions/gitops/cdrun) are performed: the
// submit checked the parameters and the user's rights. Every step is idempotent; the
// events arrive at least once and in any order. A stopped workflow's running sync is
// terminated in Argo CD, and a step of a stopped workflow commits nothing.
package gitops

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	wfclientset "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/julienschmidt/httprouter"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/functions/gitops/gitrepo"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/kube"
)

// Family is the gitops family of the function.
type Family struct {
	cfg  Config
	argo wfclientset.Interface
	kube kubernetes.Interface
	dyn  dynamic.Interface
	repo *gitrepo.Repo
	key  cdrun.Key
	log  *slog.Logger
	now  func() time.Time
	// ancestry remembers which revisions hold which ("rev ancestor" → bool).
	ancestry *utilcache.LRUExpireCache
}

// New returns the family, configured by Start.
func New() *Family {
	return &Family{now: time.Now, log: slog.Default(), ancestry: utilcache.NewLRUExpireCache(4096)}
}

// Start reads the configuration and makes the clients; it does no network I/O.
func (f *Family) Start(_ context.Context, cfg map[string]string) error {
	c, err := ParseConfig(cfg)
	if err != nil {
		return err
	}
	rc, err := kube.RESTConfig(c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("%s: %w", EnvKubeconfig, err)
	}
	// Argo CD's finalizer name draws an API server warning on every write: not ours to mend.
	rc.WarningHandler = rest.NoWarnings{}
	if f.argo, err = wfclientset.NewForConfig(rc); err != nil {
		return fmt.Errorf("argo client: %w", err)
	}
	if f.kube, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if f.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	if c.RunKeyFile != "" {
		if f.key, err = cdrun.LoadKey(c.RunKeyFile); err != nil {
			return fmt.Errorf("%s: %w", EnvRunKeyFile, err)
		}
	}
	if c.Repo != "" {
		f.repo = &gitrepo.Repo{URL: c.Repo, Branch: c.Branch, Username: c.Username, Password: c.Password}
	}
	f.cfg = c
	return nil
}

// Stop has nothing to release.
func (f *Family) Stop(context.Context) error { return nil }

// Routes registers nothing: CD runs are submitted through the workflows family.
func (f *Family) Routes(*httprouter.Router) {}

// Events registers the step handler.
func (f *Family) Events(er *eventrouter.Router) {
	er.Handle(events.TypeWorkflowStep, f.onStep)
	er.Handle(events.TypeWorkflowSucceeded, f.onSucceeded)
}
