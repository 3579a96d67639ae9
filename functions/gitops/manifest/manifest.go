package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Kind is the kind of a CD run: what it deploys.
type Kind string

// The kinds of CD runs.
const (
	// KindProject renders a project's Namespace, the ServiceAccount dwp-task-runner bound to
	// the ClusterRole dwp-task-runner, and the RoleBindings of the project's members.
	KindProject Kind = "project"
	// KindAppService renders a Deployment and its Service, an optional Ingress and an
	// optional HorizontalPodAutoscaler.
	KindAppService Kind = "app-service"
	// KindJob renders a Job.
	KindJob Kind = "job"
	// KindCronJob renders a CronJob.
	KindCronJob Kind = "cronjob"
	// KindVolume renders a PersistentVolumeClaim.
	KindVolume Kind = "volume"
	// KindHelm renders a Helm release: the chart, version and values kustomize inflates.
	KindHelm Kind = "helm"
)

// Kinds lists every kind, in a stable order.
func Kinds() []Kind {
	return []Kind{KindProject, KindAppService, KindHelm, KindJob, KindCronJob, KindVolume}
}

// DefaultAppLabel is the label naming the app when Target.AppLabel is empty.
const DefaultAppLabel = "app"

// ManagedByLabel and ManagedBy mark every rendered object as dwp-sre's.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "dwp-sre"
)

// Target is where a run deploys: the app's namespace and name, and the label that names the
// app (DefaultAppLabel when empty).
//
// For KindProject, App is the project, whose namespace the run creates: the Namespace is
// named App and the project's other objects are in it.
type Target struct {
	Namespace string
	App       string
	AppLabel  string
}

// FieldError is a problem with one parameter of a run (or with its target, whose fields are
// reported as "namespace", "app" and "app-label").
type FieldError struct {
	Field  string // the parameter's name
	Detail string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Detail }

// Spec is a validated run: the objects it renders into the app's folder.
type Spec interface {
	Kind() Kind
	// Files are the files this spec owns in the app's folder, file name to YAML. Same spec,
	// same bytes.
	Files() (map[string][]byte, error)
	// Owns says whether an existing file of the folder belongs to this spec, so that the
	// files it no longer renders (ingress.yaml once the ingress is off) are removed.
	Owns(file string) bool
	// Summary is a one-line, human description of the change, for the commit message.
	Summary() string
}

// Parse validates every parameter of a run of kind for t and returns its spec. It reports all
// field errors at once, and none when the spec is returned.
func Parse(kind Kind, t Target, params map[string]string) (Spec, []FieldError) {
	if _, ok := parameters[kind]; !ok {
		return nil, []FieldError{{Field: "kind", Detail: fmt.Sprintf("unknown kind %q", kind)}}
	}
	t, errs := t.validate(kind)
	r := read(kind, params)
	var s Spec
	switch kind {
	case KindProject:
		s = parseProject(t, r)
	case KindAppService:
		s = parseAppService(t, r)
	case KindJob:
		s = parseJob(t, r)
	case KindCronJob:
		s = parseCronJob(t, r)
	case KindVolume:
		s = parseVolume(t, r)
	case KindHelm:
		s = parseHelm(t, r)
	}
	if errs = append(errs, r.sortedErrors()...); len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// validate checks t and returns it with its default app label.
func (t Target) validate(kind Kind) (Target, []FieldError) {
	var errs []FieldError
	if msgs := validation.IsDNS1123Label(t.Namespace); len(msgs) > 0 {
		errs = append(errs, FieldError{"namespace", strings.Join(msgs, "; ")})
	}
	if msgs := validation.IsDNS1123Label(t.App); len(msgs) > 0 {
		errs = append(errs, FieldError{"app", strings.Join(msgs, "; ")})
	} else if kind == KindProject && (t.App == "default" || strings.HasPrefix(t.App, "kube-")) {
		// These namespaces belong to the cluster, not to a project.
		errs = append(errs, FieldError{"app", fmt.Sprintf("%q is reserved for the cluster", t.App)})
	}
	if t.AppLabel == "" {
		t.AppLabel = DefaultAppLabel
	}
	if msgs := validation.IsQualifiedName(t.AppLabel); len(msgs) > 0 {
		errs = append(errs, FieldError{"app-label", strings.Join(msgs, "; ")})
	} else if t.AppLabel == ManagedByLabel {
		errs = append(errs, FieldError{"app-label", "must not be " + ManagedByLabel})
	}
	return t, errs
}

// labels are the labels of every object rendered for t.
func (t Target) labels() map[string]string {
	return map[string]string{t.AppLabel: t.App, ManagedByLabel: ManagedBy}
}

// kustomization is kustomize's kustomization.yaml, reduced to what a folder of plain
// resources needs.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Generators []string `json:"generators,omitempty"`
}

// KustomizationFile is the name of the file Kustomization renders.
const KustomizationFile = "kustomization.yaml"

// Kustomization renders the kustomization.yaml of a folder holding files: sorted, without
// duplicates, and without kustomization.yaml itself; Helm releases (helm-*.yaml) are
// generators, the rest resources.
func Kustomization(files []string) []byte {
	resources := make([]string, 0, len(files))
	var generators []string
	for _, f := range files {
		switch {
		case f == KustomizationFile:
		case strings.HasPrefix(f, helmPrefix):
			generators = append(generators, f)
		default:
			resources = append(resources, f)
		}
	}
	slices.Sort(resources)
	slices.Sort(generators)
	b, err := yaml.Marshal(kustomization{
		APIVersion: "kustomize.config.k8s.io/v1beta1",
		Kind:       "Kustomization",
		Resources:  slices.Compact(resources),
		Generators: slices.Compact(generators),
	})
	if err != nil {
		panic(err) // a struct of strings always marshals
	}
	return b
}

// encode renders objs as YAML documents. Status is dropped: it is the cluster's to write, and
// an empty "status: {}" in every file is noise.
func encode(objs ...any) ([]byte, error) {
	var out bytes.Buffer
	for i, obj := range objs {
		j, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		delete(m, "status")
		if j, err = json.Marshal(m); err != nil {
			return nil, err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(y)
	}
	return out.Bytes(), nil
}
