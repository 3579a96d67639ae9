package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/util"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/functions/gitops/gitrepo"
	"github.com/dwp-sre/dwp-sre/functions/gitops/manifest"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
)

// The steps this family performs, by template name.
const (
	StepCommit = events.StepTemplatePrefix + "commit"
	StepSync   = events.StepTemplatePrefix + "sync"
	StepDelete = events.StepTemplatePrefix + "delete"
)

// Parameter names the steps read and write.
const (
	// ParamRevision is gitops-commit's output and gitops-sync's input.
	ParamRevision = "revision"
	// ParamTimeout is the run's own bound on the wait for Argo CD (a Go duration).
	ParamTimeout = cdrun.ParamTimeout
)

// step is one waiting node of a CD run, as read from the cluster.
type step struct {
	wf   *wfv1.Workflow
	node wfv1.NodeStatus
	run  cdrun.Run
}

func (s *step) input(name string) string {
	if s.node.Inputs != nil {
		for _, p := range s.node.Inputs.Parameters {
			if p.Name == name && p.Value != nil {
				return p.Value.String()
			}
		}
	}
	return ""
}

// outcome is how a step ends; a zero outcome means it still waits.
type outcome struct {
	phase   wfv1.NodePhase
	message string
	outputs map[string]string
}

func succeeded(msg string, outputs map[string]string) outcome {
	return outcome{phase: wfv1.NodeSucceeded, message: msg, outputs: outputs}
}
func failedWith(format string, args ...any) outcome {
	return outcome{phase: wfv1.NodeFailed, message: fmt.Sprintf(format, args...)}
}

// onStep performs a waiting step. The event only names it: the workflow is read again,
// and a step that no longer waits (done by an earlier copy of the event) is left alone.
func (f *Family) onStep(ctx context.Context, e event.Event) (*event.Event, error) {
	_, s, err := events.DecodeWorkflowStep(e)
	if err != nil {
		return nil, eventrouter.Invalidf("%v", err)
	}
	wf, err := f.argo.ArgoprojV1alpha1().Workflows(s.Namespace).Get(ctx, s.Workflow, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get workflow %s/%s: %w", s.Namespace, s.Workflow, err)
	}
	node, ok := wf.Status.Nodes[s.Node]
	if string(wf.UID) != s.UID || !ok || node.TemplateName != s.Step || node.Type != wfv1.NodeTypeSuspend {
		return nil, nil // another workflow of the same name, or not this node
	}
	if wf.Spec.Shutdown != "" {
		// Stopped: commit nothing more, and end the sync Argo CD may be running for it.
		if node.TemplateName == StepSync {
			return nil, f.terminateSync(ctx, wf)
		}
		return nil, nil
	}
	if node.Phase != wfv1.NodeRunning {
		return nil, nil
	}
	st := &step{wf: wf, node: node}
	var out outcome
	var sealErr error
	if f.key != nil {
		st.run, sealErr = f.key.Open(wf.Namespace, wf.Name, wf.Annotations)
	}
	switch {
	case f.key == nil || f.repo == nil:
		out = failedWith("GitOps CD is off in the task function: it needs %s and %s", EnvRepo, EnvRunKeyFile)
	case sealErr != nil:
		// The workflow's fault, not the event's: the step fails and the event is done.
		out = failedWith("%v: submit CD Task Runners through the task function", sealErr)
	default:
		switch node.TemplateName {
		case StepCommit:
			out, err = f.commit(ctx, st)
		case StepSync:
			out, err = f.sync(ctx, st)
		case StepDelete:
			out, err = f.remove(ctx, st)
		default:
			out = failedWith("the task function has no step %q (it has %s, %s and %s)", node.TemplateName, StepCommit, StepSync, StepDelete)
		}
	}
	if err != nil {
		return nil, err // not the event's fault: answered 5xx, the event comes again
	}
	if out.phase == "" {
		return nil, nil
	}
	f.log.Info("CD step done", "workflow", wf.Namespace+"/"+wf.Name, "step", node.TemplateName, "phase", out.phase, "message", out.message)
	return nil, f.finish(ctx, wf.Namespace, wf.Name, wf.UID, node.ID, out)
}

// finish ends a node as Argo's own node API does: its phase, message and supplied
// outputs in the workflow's status, which the controller then acts on. Only a node still
// running is changed, so a late copy of the event cannot undo anything.
func (f *Family) finish(ctx context.Context, ns, name string, uid types.UID, nodeID string, out outcome) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wf, err := f.argo.ArgoprojV1alpha1().Workflows(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("get workflow %s/%s: %w", ns, name, err)
		}
		n, ok := wf.Status.Nodes[nodeID]
		if wf.UID != uid || !ok || n.Phase != wfv1.NodeRunning || wf.Spec.Shutdown != "" {
			return nil
		}
		n.Phase, n.Message, n.FinishedAt = out.phase, out.message, metav1.NewTime(f.now())
		if len(out.outputs) > 0 {
			if n.Outputs == nil {
				n.Outputs = &wfv1.Outputs{}
			}
			for k, v := range out.outputs {
				n.Outputs.Parameters = append(n.Outputs.Parameters, wfv1.Parameter{
					Name: k, Value: wfv1.AnyStringPtr(v), ValueFrom: &wfv1.ValueFrom{Supplied: &wfv1.SuppliedValueFrom{}},
				})
			}
		}
		wf.Status.Nodes[nodeID] = n
		_, err = f.argo.ArgoprojV1alpha1().Workflows(ns).Update(ctx, wf, metav1.UpdateOptions{})
		return err
	})
}

// commit renders the run into the app's folder, commits, and ensures the Application.
func (f *Family) commit(ctx context.Context, st *step) (outcome, error) {
	run, ns := st.run, st.wf.Namespace
	if run.Kind == cdrun.KindAppDelete {
		return failedWith("an %s run has no %s step", run.Kind, StepCommit), nil
	}
	spec, errs := manifest.Parse(manifest.Kind(run.Kind), manifest.Target{Namespace: ns, App: run.App, AppLabel: f.cfg.AppLabel}, run.Params)
	if len(errs) > 0 {
		return failedWith("the run's parameters are invalid: %v", errors.Join(fieldErrors(errs)...)), nil
	}
	files, err := spec.Files()
	if err != nil {
		return failedWith("render: %v", err), nil
	}
	folder := f.cfg.appFolder(ns, run.App)
	msg := fmt.Sprintf("%s\n\nRun: %s/%s\nSubmitted-by: %s\n", spec.Summary(), ns, st.wf.Name, run.User)
	if run.Kind == string(manifest.KindAppService) {
		settings, err := json.MarshalIndent(run.Params, "", "  ")
		if err != nil {
			return outcome{}, fmt.Errorf("encode the app's settings: %w", err)
		}
		files[ParamsFile] = append(settings, '\n')
	}
	res, err := f.repo.Update(ctx, author(run.User), msg, func(fsys billy.Filesystem) error {
		return writeFolder(fsys, folder, files, spec.Owns)
	})
	if err != nil {
		if errors.Is(err, gitrepo.ErrConflict) || ctx.Err() != nil {
			return outcome{}, err
		}
		return outcome{}, fmt.Errorf("commit to %s: %w", f.cfg.Repo, err)
	}
	dest := ns
	if run.Kind == string(manifest.KindProject) {
		dest = run.App
	}
	if err := f.ensureApplication(ctx, ns, run.App, dest); err != nil {
		return outcome{}, err
	}
	what := "committed " + short(res.Revision)
	if !res.Changed {
		what = "nothing to commit: " + folder + " is already so at " + short(res.Revision)
	}
	return succeeded(fmt.Sprintf("%s: %s", what, spec.Summary()), map[string]string{ParamRevision: res.Revision}), nil
}

func fieldErrors(errs []manifest.FieldError) []error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// author is a portal user as a commit author; Kubernetes user names need not be emails.
func author(user string) gitrepo.Author {
	email := user
	if !strings.Contains(user, "@") {
		email = strings.NewReplacer(":", ".", " ", ".").Replace(user) + "@dwp.invalid"
	}
	return gitrepo.Author{Name: user, Email: email}
}

// writeFolder writes files into folder, removes the files the spec owns but no longer
// renders, and writes the folder's kustomization.yaml listing every file in it.
func writeFolder(fsys billy.Filesystem, folder string, files map[string][]byte, owns func(string) bool) error {
	if err := fsys.MkdirAll(folder, 0o755); err != nil {
		return err
	}
	old, err := fsys.ReadDir(folder)
	if err != nil {
		return err
	}
	for _, fi := range old {
		if _, keep := files[fi.Name()]; !keep && !fi.IsDir() && owns(fi.Name()) {
			if err := fsys.Remove(path.Join(folder, fi.Name())); err != nil {
				return err
			}
		}
	}
	for name, b := range files {
		if err := util.WriteFile(fsys, path.Join(folder, name), b, 0o644); err != nil {
			return err
		}
	}
	now, err := fsys.ReadDir(folder)
	if err != nil {
		return err
	}
	var names []string
	for _, fi := range now {
		if !fi.IsDir() && strings.HasSuffix(fi.Name(), ".yaml") {
			names = append(names, fi.Name())
		}
	}
	return util.WriteFile(fsys, path.Join(folder, manifest.KustomizationFile), manifest.Kustomization(names), 0o644)
}

// ensureApplication creates or updates the app's Application (server-side apply: only
// the fields the function sets are its own), asking Argo CD to look at the repository now.
func (f *Family) ensureApplication(ctx context.Context, ns, app, dest string) error {
	u := f.cfg.application(ns, app, dest)
	u.SetAnnotations(map[string]string{annotationRefresh: "hard"})
	_, err := f.dyn.Resource(applications).Namespace(f.cfg.ArgoCDNamespace).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply Application %s/%s: %w", f.cfg.ArgoCDNamespace, u.GetName(), err)
	}
	return nil
}

const fieldManager = "dwp-task-function"

// sync waits until Argo CD reports the step's revision Synced and Healthy.
func (f *Family) sync(ctx context.Context, st *step) (outcome, error) {
	revision := st.input(ParamRevision)
	if revision == "" {
		return failedWith("the step has no %q input: the template must pass %s's output", ParamRevision, StepCommit), nil
	}
	name := ApplicationName(st.wf.Namespace, st.run.App)
	apps := f.dyn.Resource(applications).Namespace(f.cfg.ArgoCDNamespace)
	u, err := apps.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return failedWith("Application %s/%s is gone", f.cfg.ArgoCDNamespace, name), nil
	}
	if err != nil {
		return outcome{}, fmt.Errorf("get Application %s: %w", name, err)
	}
	s := readStatus(u)
	// Argo CD follows the branch: once others commit too, it reports a later revision,
	// which holds this run's commit all the same.
	at := revision
	if s.SyncRevision != "" && s.SyncRevision != revision {
		// Not knowing (the repository unreachable, history rewritten) is waiting: the
		// step's timeout still ends it.
		ok, err := f.includes(ctx, s.SyncRevision, revision)
		if err != nil {
			f.log.Warn("cannot tell whether Argo CD's revision holds the run's commit", "workflow", st.wf.Namespace+"/"+st.wf.Name, "err", err)
		}
		if ok {
			at = s.SyncRevision
		}
	}
	v, msg := s.judge(at)
	switch v {
	case done:
		return succeeded(msg, nil), nil
	case failed:
		return outcome{phase: wfv1.NodeFailed, message: msg}, nil
	}
	timeout, err := f.timeout(st.run)
	if err != nil {
		return failedWith("%v", err), nil
	}
	if started := st.node.StartedAt.Time; !started.IsZero() && f.now().Sub(started) > timeout {
		return failedWith("timeout: Argo CD did not report %s Synced and Healthy within %s (%s): %s", short(revision), timeout, s.summary(), s.detail()), nil
	}
	if s.SyncRevision != at && !s.Refreshing {
		// Argo CD has not seen the commit yet: ask it to look now rather than at its next poll.
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"hard"}}}`, annotationRefresh)
		if _, err := apps.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return outcome{}, fmt.Errorf("refresh Application %s: %w", name, err)
		}
	}
	return outcome{}, nil
}

// includes says whether rev holds ancestor, remembering answers (they never change).
func (f *Family) includes(ctx context.Context, rev, ancestor string) (bool, error) {
	key := rev + " " + ancestor
	if v, ok := f.ancestry.Get(key); ok {
		return v.(bool), nil
	}
	ok, err := f.repo.Includes(ctx, rev, ancestor)
	if err != nil {
		return false, fmt.Errorf("is %s in %s: %w", short(ancestor), short(rev), err)
	}
	f.ancestry.Add(key, ok, time.Hour)
	return ok, nil
}

func (f *Family) timeout(run cdrun.Run) (time.Duration, error) {
	v := run.Params[ParamTimeout]
	if v == "" {
		return f.cfg.Timeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("parameter %s=%q: want a positive duration such as 5m", ParamTimeout, v)
	}
	return d, nil
}

// terminateSync ends the sync operation Argo CD runs for a stopped run, as
// `argocd app terminate-op` does: operationState.phase Terminating, written with the
// Application's resourceVersion. Argo CD's controller may still write the phase it holds
// over it, so the event is answered 5xx (and sent again) until the operation has ended.
// Only an operation of this run is ended: one that started before the run ended, at a
// revision holding the run's commit; a stopped run that committed nothing has none.
func (f *Family) terminateSync(ctx context.Context, wf *wfv1.Workflow) error {
	if f.key == nil {
		return nil
	}
	run, err := f.key.Open(wf.Namespace, wf.Name, wf.Annotations)
	if err != nil {
		return nil
	}
	committed := outputRevision(wf)
	if committed == "" {
		return nil
	}
	name := ApplicationName(wf.Namespace, run.App)
	apps := f.dyn.Resource(applications).Namespace(f.cfg.ArgoCDNamespace)
	var ended bool
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := apps.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			ended = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("get Application %s: %w", name, err)
		}
		s := readStatus(u)
		if s.OpPhase != "Running" && s.OpPhase != "Terminating" {
			ended = true
			return nil
		}
		end := wf.Status.FinishedAt.Time
		if end.IsZero() {
			end = f.now()
		}
		started, _, _ := unstructured.NestedString(u.Object, "status", "operationState", "startedAt")
		if t, err := time.Parse(time.RFC3339, started); err == nil && t.After(end) {
			ended = true // a later sync: not this run's
			return nil
		}
		if ok, err := f.includes(ctx, s.OpRevision, committed); err != nil || !ok {
			ended = true // not this run's commit, or not knowable: leave it alone
			return nil
		}
		if s.OpPhase == "Terminating" {
			return nil
		}
		if err := unstructured.SetNestedField(u.Object, "Terminating", "status", "operationState", "phase"); err != nil {
			return err
		}
		if _, err := apps.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			return err
		}
		f.log.Info("terminating Argo CD's sync of a stopped run", "workflow", wf.Namespace+"/"+wf.Name, "application", name)
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("terminate the sync of Application %s: %w", name, err)
	}
	if !ended {
		return fmt.Errorf("Argo CD is still ending the sync of Application %s for stopped run %s: it is looked at again", name, wf.Name)
	}
	return nil
}

// outputRevision is the revision a run's commit step output, "" when it made none.
func outputRevision(wf *wfv1.Workflow) string {
	for _, n := range wf.Status.Nodes {
		if n.TemplateName == StepCommit && n.Phase == wfv1.NodeSucceeded && n.Outputs != nil {
			for _, p := range n.Outputs.Parameters {
				if p.Name == ParamRevision && p.Value != nil {
					return p.Value.String()
				}
			}
		}
	}
	return ""
}

// remove deletes the app's Application (Argo CD deletes the objects it created first,
// by its finalizer), then the app's folder.
func (f *Family) remove(ctx context.Context, st *step) (outcome, error) {
	ns, app := st.wf.Namespace, st.run.App
	name := ApplicationName(ns, app)
	apps := f.dyn.Resource(applications).Namespace(f.cfg.ArgoCDNamespace)
	u, err := apps.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return outcome{}, fmt.Errorf("get Application %s: %w", name, err)
	default:
		if u.GetDeletionTimestamp() == nil {
			if !hasFinalizer(u.GetFinalizers()) {
				patch := fmt.Appendf(nil, `{"metadata":{"finalizers":[%q]}}`, finalizerResources)
				if _, err := apps.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
					return outcome{}, fmt.Errorf("add the resources finalizer to %s: %w", name, err)
				}
			}
			if err := apps.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return outcome{}, fmt.Errorf("delete Application %s: %w", name, err)
			}
			return outcome{}, nil
		}
		timeout, err := f.timeout(st.run)
		if err != nil {
			return failedWith("%v", err), nil
		}
		if started := st.node.StartedAt.Time; !started.IsZero() && f.now().Sub(started) > timeout {
			return failedWith("timeout: Argo CD did not finish deleting Application %s within %s: %s", name, timeout, readStatus(u).detail()), nil
		}
		return outcome{}, nil
	}
	folder := f.cfg.appFolder(ns, app)
	msg := fmt.Sprintf("delete %s/%s\n\nRun: %s/%s\nSubmitted-by: %s\n", ns, app, ns, st.wf.Name, st.run.User)
	res, err := f.repo.Update(ctx, author(st.run.User), msg, func(fsys billy.Filesystem) error {
		if err := util.RemoveAll(fsys, folder); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return outcome{}, fmt.Errorf("remove %s from %s: %w", folder, f.cfg.Repo, err)
	}
	return succeeded(fmt.Sprintf("deleted Application %s, the objects it created, and %s (at %s)", name, folder, short(res.Revision)), nil), nil
}

func hasFinalizer(fs []string) bool {
	for _, f := range fs {
		if f == finalizerResources {
			return true
		}
	}
	return false
}
