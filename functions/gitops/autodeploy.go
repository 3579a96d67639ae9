package gitops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/cloudevents/sdk-go/v2/event"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/functions/gitops/gitrepo"
	"github.com/dwp-sre/dwp-sre/functions/gitops/manifest"
	"github.com/dwp-sre/dwp-sre/functions/workflows"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
)

// ParamsFile keeps an app-service run's parameters in the app's folder (beside, not in,
// its kustomization): the app's settings, which CI → CD deploys a new image with.
const ParamsFile = "app-service.params.json"

// AnnotationTriggeredBy names the CI workflow an automatic CD run deploys the image of.
const AnnotationTriggeredBy = "dwp.io/triggered-by"

// onSucceeded deploys what a CI run built, when the app opted in.
func (f *Family) onSucceeded(ctx context.Context, e event.Event) (*event.Event, error) {
	_, w, err := events.DecodeWorkflowSucceeded(e)
	if err != nil {
		return nil, eventrouter.Invalidf("%v", err)
	}
	if f.key == nil || f.repo == nil {
		return nil, nil // CD is off
	}
	ci, err := f.argo.ArgoprojV1alpha1().Workflows(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get workflow %s/%s: %w", w.Namespace, w.Name, err)
	}
	if string(ci.UID) != w.UID || ci.Status.Phase != wfv1.WorkflowSucceeded || !f.isCI(ci) {
		return nil, nil
	}
	log := f.log.With("ci", ci.Namespace+"/"+ci.Name)
	app, user := ci.Labels[f.cfg.AppLabel], ci.Annotations[workflows.AnnotationSubmittedBy]
	image := parameter(ci, "image")
	if app == "" || user == "" || image == "" {
		log.Info("CI → CD: the run names no app, submitter or image; nothing to deploy")
		return nil, nil
	}
	b, err := f.repo.ReadFile(ctx, path.Join(f.cfg.appFolder(ci.Namespace, app), ParamsFile))
	if errors.Is(err, gitrepo.ErrNotFound) {
		return nil, nil // never deployed as an app service: nothing opted in
	}
	if err != nil {
		return nil, fmt.Errorf("read the app's settings: %w", err)
	}
	var params map[string]string
	if err := json.Unmarshal(b, &params); err != nil {
		log.Warn("CI → CD: the app's settings in the repository are not JSON", "err", err)
		return nil, nil
	}
	if params[manifest.AutoDeploy] != "true" {
		return nil, nil
	}
	params["image"] = image
	target := manifest.Target{Namespace: ci.Namespace, App: app, AppLabel: f.cfg.AppLabel}
	spec, errs := manifest.Parse(manifest.KindAppService, target, params)
	if len(errs) > 0 {
		log.Warn("CI → CD: not deployed, the run would be invalid", "errors", fmt.Sprint(errs))
		return nil, nil
	}
	resources, err := manifest.Resources(spec)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	denied, err := cdrun.Denied(ctx, cdrun.Rights(string(manifest.KindAppService), ci.Namespace, app, resources), f.reviewFor(user))
	if err != nil {
		return nil, err
	}
	if len(denied) > 0 {
		log.Warn("CI → CD: not deployed, the CI run's submitter may not deploy", "user", user, "missing", cdrun.Missing(denied))
		return nil, nil
	}
	// One CD run per CI run, whatever number of times the event comes.
	sum := sha256.Sum256([]byte(ci.UID))
	name := f.cfg.AppServiceTemplate + "-ci-" + hex.EncodeToString(sum[:])[:10]
	annotations, err := f.key.Annotations(ci.Namespace, name, cdrun.Run{Kind: string(manifest.KindAppService), App: app, User: user, Params: params})
	if err != nil {
		return nil, err
	}
	run := workflows.Run{
		Namespace: ci.Namespace, Template: f.cfg.AppServiceTemplate, ClusterScope: true,
		App: app, Task: f.cfg.AppServiceTemplate, User: user, Name: name,
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		run.Params = append(run.Params, workflows.Param{Name: k, Value: params[k]})
	}
	wf := run.Workflow(&workflows.Config{AppLabel: f.cfg.AppLabel, TaskLabel: f.cfg.TaskLabel})
	for k, v := range annotations {
		wf.Annotations[k] = v
	}
	wf.Annotations[AnnotationTriggeredBy] = ci.Name
	_, err = f.argo.ArgoprojV1alpha1().Workflows(ci.Namespace).Create(ctx, wf, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("submit the CD run: %w", err)
	}
	log.Info("CI → CD: submitted", "workflow", name, "image", image, "user", user)
	return nil, nil
}

func (f *Family) isCI(wf *wfv1.Workflow) bool {
	return wf.Labels[workflows.LabelClusterWorkflowTemplate] == f.cfg.CITemplate || wf.Labels[workflows.LabelWorkflowTemplate] == f.cfg.CITemplate
}

func parameter(wf *wfv1.Workflow, name string) string {
	for _, p := range wf.Spec.Arguments.Parameters {
		if p.Name == name && p.Value != nil {
			return p.Value.String()
		}
	}
	return ""
}

// reviewFor answers access checks for user (a SubjectAccessReview by the function).
func (f *Family) reviewFor(user string) cdrun.Review {
	return func(ctx context.Context, a authorizationv1.ResourceAttributes) (bool, error) {
		r, err := f.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &a},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return r.Status.Allowed, nil
	}
}
