package workflows

import (
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Resource kinds a workflow can be submitted from.
const (
	KindWorkflowTemplate        = "WorkflowTemplate"
	KindClusterWorkflowTemplate = "ClusterWorkflowTemplate"
)

// SubmitRequest is the body of a submit: Argo's SubmitWorkflow request (resourceKind,
// resourceName, submitOptions) plus the app the workflow belongs to and its task type.
type SubmitRequest struct {
	// ResourceKind is WorkflowTemplate (default) or ClusterWorkflowTemplate.
	ResourceKind string `json:"resourceKind,omitempty"`
	// ResourceName names the template.
	ResourceName string `json:"resourceName"`
	// App is the app the workflow belongs to, recorded as the app label.
	App string `json:"app"`
	// TaskType is the kind of task (build, deploy, ...), recorded as the task label;
	// it defaults to the template's name.
	TaskType      string        `json:"taskType,omitempty"`
	SubmitOptions SubmitOptions `json:"submitOptions,omitempty"`
}

// SubmitOptions are the options of Argo's submitOptions this function supports.
type SubmitOptions struct {
	// Name is the workflow's exact name; GenerateName its name prefix (default "<template>-").
	Name         string `json:"name,omitempty"`
	GenerateName string `json:"generateName,omitempty"`
	// EntryPoint overrides the template's entrypoint; it must name one of its templates.
	EntryPoint string `json:"entryPoint,omitempty"`
	// Parameters are "name=value" strings; each name must be declared by the template.
	Parameters []string `json:"parameters,omitempty"`
	// Labels are extra labels, "key=value" separated by commas, as in Argo.
	Labels         string `json:"labels,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
}

// SubmitResponse answers a submit.
type SubmitResponse struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	Phase     string `json:"phase"`
}

// maxSubmitBody bounds a submit's body.
const maxSubmitBody = 256 << 10

// requireJSON refuses a body that does not say it is JSON (415): a form or text body is
// not a mistyped submit, and a browser can send those across origins without asking.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	if ct == "" {
		ct = "none"
	}
	return problem.Newf(http.StatusUnsupportedMediaType, "the body must be JSON (Content-Type: application/json), not %s", ct)
}

// validateNamespace checks a namespace path parameter.
func validateNamespace(ns string) *problem.FieldError {
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return &problem.FieldError{Field: "namespace", Detail: strings.Join(msgs, "; ")}
	}
	return nil
}

// validateName checks a workflow name path parameter.
func validateName(field, name string) *problem.FieldError {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return &problem.FieldError{Field: field, Detail: strings.Join(msgs, "; ")}
	}
	return nil
}

// maxGeneratedNameLen is how long a name may be before the API server's random suffix.
const maxGeneratedNameLen = validation.DNS1123SubdomainMaxLength - 5

// submitParams are the validated parameters of a submit.
type submitParams struct {
	kind, template, app, taskType  string
	name, generateName, entryPoint string
	serviceAccount                 string
	params                         []kv
	labels                         map[string]string
}

type kv struct{ name, value string }

// validate checks what can be checked without the template, reporting every invalid
// field at once.
func (req *SubmitRequest) validate(ns string, cfg *Config) (submitParams, error) {
	var errs []problem.FieldError
	add := func(field, detail string) { errs = append(errs, problem.FieldError{Field: field, Detail: detail}) }
	if fe := validateNamespace(ns); fe != nil {
		errs = append(errs, *fe)
	}
	p := submitParams{kind: req.ResourceKind, template: req.ResourceName, app: req.App, taskType: req.TaskType}
	switch p.kind {
	case "":
		p.kind = KindWorkflowTemplate
	case KindWorkflowTemplate, KindClusterWorkflowTemplate:
	default:
		add("resourceKind", fmt.Sprintf("must be %s or %s", KindWorkflowTemplate, KindClusterWorkflowTemplate))
	}
	if p.template == "" {
		add("resourceName", "is required: the name of the template to run")
	} else if fe := validateName("resourceName", p.template); fe != nil {
		errs = append(errs, *fe)
	}
	if p.app == "" {
		add("app", "is required: the app the workflow belongs to")
	} else if msgs := validation.IsValidLabelValue(p.app); len(msgs) > 0 {
		add("app", "must be a valid label value: "+strings.Join(msgs, "; "))
	}
	if p.taskType == "" {
		p.taskType = p.template
	}
	if msgs := validation.IsValidLabelValue(p.taskType); len(msgs) > 0 {
		add("taskType", "must be a valid label value: "+strings.Join(msgs, "; "))
	}

	o := req.SubmitOptions
	p.name, p.generateName, p.entryPoint, p.serviceAccount = o.Name, o.GenerateName, o.EntryPoint, o.ServiceAccount
	switch {
	case p.name != "" && p.generateName != "":
		add("submitOptions.generateName", "give either name or generateName, not both")
	case p.name != "":
		if fe := validateName("submitOptions.name", p.name); fe != nil {
			errs = append(errs, *fe)
		}
	case p.generateName != "":
		if len(p.generateName) > maxGeneratedNameLen {
			add("submitOptions.generateName", fmt.Sprintf("must be no more than %d characters", maxGeneratedNameLen))
		} else if msgs := validation.IsDNS1123Subdomain(p.generateName + "x"); len(msgs) > 0 {
			add("submitOptions.generateName", "must be the start of a valid name: "+strings.Join(msgs, "; "))
		}
	default:
		p.generateName = p.template + "-"
		if len(p.generateName) > maxGeneratedNameLen {
			p.generateName = p.generateName[:maxGeneratedNameLen]
		}
	}
	if p.entryPoint != "" && !templateName.MatchString(p.entryPoint) {
		add("submitOptions.entryPoint", "is not a template name (letters, digits, '-' and '_', at most 128)")
	}
	if p.serviceAccount != "" {
		if fe := validateName("submitOptions.serviceAccount", p.serviceAccount); fe != nil {
			errs = append(errs, *fe)
		}
	}
	seen := map[string]bool{}
	for i, s := range o.Parameters {
		field := fmt.Sprintf("submitOptions.parameters[%d]", i)
		name, value, ok := strings.Cut(s, "=")
		switch {
		case !ok || name == "":
			add(field, `must be "name=value"`)
		case !parameterName.MatchString(name):
			add(field, fmt.Sprintf("%q is not a parameter name", name))
		case seen[name]:
			add(field, fmt.Sprintf("parameter %q is given twice", name))
		default:
			seen[name] = true
			p.params = append(p.params, kv{name, value})
		}
	}
	p.labels = map[string]string{}
	if o.Labels != "" {
		for i, pair := range strings.Split(o.Labels, ",") {
			field := fmt.Sprintf("submitOptions.labels[%d]", i)
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				add(field, `must be "key=value"`)
				continue
			}
			if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
				add(field, fmt.Sprintf("%q is not a label key: %s", k, strings.Join(msgs, "; ")))
				continue
			}
			if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
				add(field, fmt.Sprintf("%q is not a label value: %s", v, strings.Join(msgs, "; ")))
				continue
			}
			if reservedLabel(k, cfg) {
				add(field, fmt.Sprintf("label %q is set by the function itself", k))
				continue
			}
			if _, dup := p.labels[k]; dup {
				add(field, fmt.Sprintf("label %q is given twice", k))
				continue
			}
			p.labels[k] = v
		}
	}
	if len(errs) > 0 {
		return p, problem.BadRequest("the submit request is invalid", errs...)
	}
	return p, nil
}

var (
	// Argo template and parameter names: letters, digits, '-' and '_' (parameters also '.').
	templateName  = regexp.MustCompile(`^[a-zA-Z0-9][-a-zA-Z0-9_]{0,127}$`)
	parameterName = regexp.MustCompile(`^[a-zA-Z0-9_][-a-zA-Z0-9_.]{0,127}$`)
)

func reservedLabel(key string, cfg *Config) bool {
	return key == cfg.AppLabel || key == cfg.TaskLabel || strings.HasPrefix(key, "workflows.argoproj.io/")
}

// checkAgainst checks the parameters and entrypoint against the template's spec: every
// parameter must be declared, every required one given, enum values respected.
func (p *submitParams) checkAgainst(spec *wfv1.WorkflowSpec) error {
	declared := map[string]wfv1.Parameter{}
	var names []string
	for _, dp := range spec.Arguments.Parameters {
		declared[dp.Name] = dp
		names = append(names, dp.Name)
	}
	sort.Strings(names)
	var errs []problem.FieldError
	given := map[string]bool{}
	for i, kv := range p.params {
		field := fmt.Sprintf("submitOptions.parameters[%d]", i)
		dp, ok := declared[kv.name]
		if !ok {
			detail := fmt.Sprintf("unknown parameter %q: the template declares none", kv.name)
			if len(names) > 0 {
				detail = fmt.Sprintf("unknown parameter %q: the template declares %s", kv.name, strings.Join(names, ", "))
			}
			errs = append(errs, problem.FieldError{Field: field, Detail: detail})
			continue
		}
		given[kv.name] = true
		if len(dp.Enum) > 0 && !slices.Contains(dp.Enum, wfv1.AnyString(kv.value)) {
			allowed := make([]string, len(dp.Enum))
			for j, e := range dp.Enum {
				allowed[j] = string(e)
			}
			errs = append(errs, problem.FieldError{Field: field, Detail: fmt.Sprintf("parameter %q must be one of %s", kv.name, strings.Join(allowed, ", "))})
		}
	}
	for _, name := range names {
		dp := declared[name]
		if !given[name] && dp.Value == nil && dp.Default == nil && dp.ValueFrom == nil {
			errs = append(errs, problem.FieldError{Field: "submitOptions.parameters", Detail: fmt.Sprintf("parameter %q is required by the template", name)})
		}
	}
	if p.entryPoint != "" && !slices.ContainsFunc(spec.Templates, func(t wfv1.Template) bool { return t.Name == p.entryPoint }) {
		errs = append(errs, problem.FieldError{Field: "submitOptions.entryPoint", Detail: fmt.Sprintf("the template has no template named %q", p.entryPoint)})
	}
	if len(errs) > 0 {
		return problem.BadRequest("the submit request does not fit the template", errs...)
	}
	return nil
}

// workflow builds the Workflow a submit creates.
func (p *submitParams) workflow(ns, username string, cfg *Config) *wfv1.Workflow {
	r := Run{
		Namespace: ns, Template: p.template, ClusterScope: p.kind == KindClusterWorkflowTemplate,
		App: p.app, Task: p.taskType, User: username, Labels: p.labels,
		Name: p.name, GenerateName: p.generateName, EntryPoint: p.entryPoint, ServiceAccount: p.serviceAccount,
	}
	for _, kv := range p.params {
		r.Params = append(r.Params, Param{kv.name, kv.value})
	}
	return r.Workflow(cfg)
}

// Run is a workflow to create from a template on a user's behalf.
type Run struct {
	Namespace, Template string
	ClusterScope        bool
	App, Task           string
	// User is who the run is for, recorded as AnnotationSubmittedBy and LabelCreator.
	User               string
	Labels             map[string]string // extra labels
	Name, GenerateName string
	EntryPoint         string
	ServiceAccount     string
	Params             []Param
}

// Param is one parameter of a Run.
type Param struct{ Name, Value string }

// Workflow is the Workflow of r: a reference to the template (so the controller runs the
// template as it is when the workflow starts), the parameters, and the labels that make
// it findable in the app's history.
func (r Run) Workflow(cfg *Config) *wfv1.Workflow {
	labels := map[string]string{}
	for k, v := range r.Labels {
		labels[k] = v
	}
	labels[cfg.AppLabel] = r.App
	labels[cfg.TaskLabel] = r.Task
	ref := &wfv1.WorkflowTemplateRef{Name: r.Template}
	if r.ClusterScope {
		ref.ClusterScope = true
		labels[LabelClusterWorkflowTemplate] = r.Template
	} else {
		labels[LabelWorkflowTemplate] = r.Template
	}
	if creator := labelSafe(r.User); creator != "" {
		labels[LabelCreator] = creator
	}
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{
			Name:         r.Name,
			GenerateName: r.GenerateName,
			Namespace:    r.Namespace,
			Labels:       labels,
			Annotations:  map[string]string{AnnotationSubmittedBy: r.User},
		},
		Spec: wfv1.WorkflowSpec{
			WorkflowTemplateRef: ref,
			Entrypoint:          r.EntryPoint,
			ServiceAccountName:  r.ServiceAccount,
		},
	}
	for _, p := range r.Params {
		wf.Spec.Arguments.Parameters = append(wf.Spec.Arguments.Parameters, wfv1.Parameter{Name: p.Name, Value: wfv1.AnyStringPtr(p.Value)})
	}
	return wf
}

var notLabelSafe = regexp.MustCompile(`[^-_.a-zA-Z0-9]`)

// labelSafe turns a user name into a label value as Argo's creator label does: other
// characters become '-', the end is kept when too long, and the value starts and ends
// with a letter or digit.
func labelSafe(s string) string {
	v := notLabelSafe.ReplaceAllString(s, "-")
	if len(v) > validation.LabelValueMaxLength {
		v = v[len(v)-validation.LabelValueMaxLength:]
	}
	return strings.TrimFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
}
