package workflows

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/julienschmidt/httprouter"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/pager"

	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/internal/httpjson"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// The Task Runner catalogue is what a portal draws its "run" forms from: the
// (Cluster)WorkflowTemplates a caller may submit in a namespace, with their parameters.
// What the caller may not use is left out, as submit would refuse it:
//   - nothing at all (403) without the right to create workflows in the namespace;
//   - the namespace's WorkflowTemplates are listed with the caller's token (403 when the
//     caller may not list them);
//   - ClusterWorkflowTemplates too, and they are left out when the caller may not list
//     them (submit reads the template with the caller's token);
//   - CD Task Runners while the function has no run key (submit answers 501).
// The list is small (templates are written by people), so it is read whole, in chunks,
// sorted (the namespace's templates, then the cluster's, each by name) and paged by the
// position of a page's last item.

// Annotations Argo's UI shows for workflows and templates.
const (
	AnnotationTitle       = "workflows.argoproj.io/title"
	AnnotationDescription = "workflows.argoproj.io/description"
)

// templateChunk is the page size of template lists: whole templates can be large.
const templateChunk = 100

// TaskRunner is a template the caller may submit. Kind and Name are what a submit takes
// as resourceKind and resourceName.
type TaskRunner struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Namespace is a WorkflowTemplate's; a ClusterWorkflowTemplate has none.
	Namespace   string `json:"namespace,omitempty"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// CDKind is the CD Task Runner's type (cdrun.AnnotationTemplateKind); empty for other
	// templates (CI, plain workflows).
	CDKind     string                `json:"cdKind,omitempty"`
	Entrypoint string                `json:"entrypoint,omitempty"`
	Parameters []TaskRunnerParameter `json:"parameters"`
}

// TaskRunnerParameter is one of spec.arguments.parameters.
type TaskRunnerParameter struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Default is the template's value (or default); nil when it has none.
	Default *string  `json:"default,omitempty"`
	Enum    []string `json:"enum,omitempty"`
	// Required: a submit must give it (no value, default or valueFrom).
	Required bool `json:"required"`
}

// TaskRunnerList is a page of the catalogue.
type TaskRunnerList struct {
	Items    []TaskRunner `json:"items"`
	Metadata ListMeta     `json:"metadata"`
}

// taskRunner is the catalogue entry of a template.
func taskRunner(kind string, meta *metav1.ObjectMeta, spec *wfv1.WorkflowSpec) TaskRunner {
	tr := TaskRunner{
		Kind: kind, Name: meta.Name,
		Title:       meta.Annotations[AnnotationTitle],
		Description: meta.Annotations[AnnotationDescription],
		CDKind:      meta.Annotations[cdrun.AnnotationTemplateKind],
		Entrypoint:  spec.Entrypoint,
		Parameters:  make([]TaskRunnerParameter, 0, len(spec.Arguments.Parameters)),
	}
	if kind == KindWorkflowTemplate {
		tr.Namespace = meta.Namespace
	}
	for _, p := range spec.Arguments.Parameters {
		tp := TaskRunnerParameter{Name: p.Name, Required: p.Value == nil && p.Default == nil && p.ValueFrom == nil}
		if p.Description != nil {
			tp.Description = p.Description.String()
		}
		// A workflow's argument takes its value, else its default (Argo's order).
		if v := p.Value; v != nil {
			s := v.String()
			tp.Default = &s
		} else if v := p.Default; v != nil {
			s := v.String()
			tp.Default = &s
		}
		for _, e := range p.Enum {
			tp.Enum = append(tp.Enum, string(e))
		}
		tr.Parameters = append(tr.Parameters, tp)
	}
	return tr
}

// kindRank orders the catalogue: the namespace's own templates first.
func kindRank(kind string) int {
	if kind == KindClusterWorkflowTemplate {
		return 1
	}
	return 0
}

// catalogueBefore reports whether a comes before b in the catalogue.
func catalogueBefore(aKind, aName, bKind, bName string) bool {
	if ra, rb := kindRank(aKind), kindRank(bKind); ra != rb {
		return ra < rb
	}
	return aName < bName
}

// catalogueQuery is a validated catalogue query.
type catalogueQuery struct {
	kind  string // empty: both
	limit int
	cont  string
}

// parseKind reads the kind parameter: empty when absent.
func parseKind(q url.Values) (string, *problem.FieldError) {
	vs, ok := q["kind"]
	if !ok {
		return "", nil
	}
	if len(vs) != 1 || (vs[0] != KindWorkflowTemplate && vs[0] != KindClusterWorkflowTemplate) {
		return "", &problem.FieldError{Field: "kind", Detail: fmt.Sprintf("must be %s or %s, once", KindWorkflowTemplate, KindClusterWorkflowTemplate)}
	}
	return vs[0], nil
}

func unknownParams(q url.Values, known ...string) []problem.FieldError {
	var errs []problem.FieldError
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			errs = append(errs, problem.FieldError{Field: k, Detail: "unknown query parameter; known: " + strings.Join(known, ", ")})
		}
	}
	return errs
}

// parseCatalogueQuery reads the query of the catalogue list; unknown parameters are
// rejected, so that a misspelt one is not mistaken for an empty catalogue.
func parseCatalogueQuery(q url.Values) (catalogueQuery, error) {
	cq := catalogueQuery{limit: DefaultLimit}
	errs := unknownParams(q, "kind", "limit", "continue")
	kind, fe := parseKind(q)
	if fe != nil {
		errs = append(errs, *fe)
	}
	cq.kind = kind
	if vs, ok := q["limit"]; ok {
		n, err := -1, error(nil)
		if len(vs) == 1 {
			n, err = strconv.Atoi(vs[0])
		}
		if err != nil || n < 1 || n > MaxLimit {
			errs = append(errs, problem.FieldError{Field: "limit", Detail: fmt.Sprintf("must be a whole number from 1 to %d, once", MaxLimit)})
		}
		cq.limit = n
	}
	if vs, ok := q["continue"]; ok {
		if len(vs) != 1 || len(vs[0]) > maxContinueLen || vs[0] == "" {
			errs = append(errs, problem.FieldError{Field: "continue", Detail: "must be one continue token this list returned"})
		} else {
			cq.cont = vs[0]
		}
	}
	if len(errs) > 0 {
		return cq, problem.BadRequest("the query is invalid", errs...)
	}
	return cq, nil
}

// catalogueCursor is the decoded continue token of the catalogue: the last item's place.
type catalogueCursor struct {
	Kind   string `json:"k"`
	Name   string `json:"n"`
	Filter string `json:"f"`
}

func catalogueFilter(ns, kind string) string {
	h := sha256.Sum256([]byte("catalogue\x00" + ns + "\x00" + kind))
	return hex.EncodeToString(h[:8])
}

func encodeCatalogueCursor(c catalogueCursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCatalogueCursor(s, filter string) (catalogueCursor, error) {
	var c catalogueCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || (c.Kind != KindWorkflowTemplate && c.Kind != KindClusterWorkflowTemplate) || validateName("name", c.Name) != nil {
		return c, problem.BadRequest("the continue token is invalid", problem.FieldError{Field: "continue", Detail: "is not a token this list returned"})
	}
	if c.Filter != filter {
		return c, problem.BadRequest("the continue token belongs to other filters", problem.FieldError{Field: "continue", Detail: "use it with the filters of the list that returned it"})
	}
	return c, nil
}

// maySubmit refuses a caller who may not create workflows in ns: no template can be run
// there by them.
func maySubmit(ctx context.Context, c *caller, ns string) error {
	ok, err := c.Can(ctx, "create", ns)
	if err != nil {
		return err
	}
	if !ok {
		return problem.Forbidden(fmt.Sprintf("you may not create workflows in namespace %s, so no template can be run there", ns))
	}
	return nil
}

// usable reports whether the function can run tr: CD Task Runners need the run key.
func (f *Family) usable(tr *TaskRunner) bool { return tr.CDKind == "" || f.runKey != nil }

func (f *Family) listTemplates(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	if err := pathErrors(ps, "namespace"); err != nil {
		return err
	}
	cq, err := parseCatalogueQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ns := ps.ByName("namespace")
	filter := catalogueFilter(ns, cq.kind)
	var after *catalogueCursor
	if cq.cont != "" {
		cur, err := decodeCatalogueCursor(cq.cont, filter)
		if err != nil {
			return err
		}
		after = &cur
	}
	if err := maySubmit(ctx, c, ns); err != nil {
		return err
	}
	all, err := f.catalogue(ctx, c, ns, cq.kind)
	if err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool { return catalogueBefore(all[i].Kind, all[i].Name, all[j].Kind, all[j].Name) })
	start := 0
	if after != nil {
		start = sort.Search(len(all), func(i int) bool { return catalogueBefore(after.Kind, after.Name, all[i].Kind, all[i].Name) })
	}
	end := min(start+cq.limit, len(all))
	out := TaskRunnerList{Items: all[start:end]}
	if end < len(all) {
		last := all[end-1]
		out.Metadata.Continue = encodeCatalogueCursor(catalogueCursor{Kind: last.Kind, Name: last.Name, Filter: filter})
	}
	return httpjson.Write(w, http.StatusOK, out)
}

// catalogue is every template of kind (empty: both) that the caller may read and the
// function can run, unsorted.
func (f *Family) catalogue(ctx context.Context, c *caller, ns, kind string) ([]TaskRunner, error) {
	var all []TaskRunner
	add := func(tr TaskRunner) {
		if f.usable(&tr) {
			all = append(all, tr)
		}
	}
	opts := metav1.ListOptions{Limit: templateChunk}
	if kind != KindClusterWorkflowTemplate {
		p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return c.Argo.ArgoprojV1alpha1().WorkflowTemplates(ns).List(ctx, opts)
		})
		if err := p.EachListItem(ctx, opts, func(obj runtime.Object) error {
			t := obj.(*wfv1.WorkflowTemplate)
			add(taskRunner(KindWorkflowTemplate, &t.ObjectMeta, &t.Spec))
			return nil
		}); err != nil {
			return nil, fmt.Errorf("list WorkflowTemplates: %w", err)
		}
	}
	if kind != KindWorkflowTemplate {
		p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return c.Argo.ArgoprojV1alpha1().ClusterWorkflowTemplates().List(ctx, opts)
		})
		err := p.EachListItem(ctx, opts, func(obj runtime.Object) error {
			t := obj.(*wfv1.ClusterWorkflowTemplate)
			add(taskRunner(KindClusterWorkflowTemplate, &t.ObjectMeta, &t.Spec))
			return nil
		})
		switch {
		case apierrors.IsForbidden(err) && kind == "":
			// Submit reads the template as the caller: one they cannot read, they cannot run.
			slog.DebugContext(ctx, "caller may not list ClusterWorkflowTemplates; the catalogue has the namespace's alone", "namespace", ns)
		case err != nil:
			return nil, fmt.Errorf("list ClusterWorkflowTemplates: %w", err)
		}
	}
	return all, nil
}

func (f *Family) getTemplate(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	if err := pathErrors(ps, "namespace", "name"); err != nil {
		return err
	}
	q := r.URL.Query()
	errs := unknownParams(q, "kind")
	kind, fe := parseKind(q)
	if fe != nil {
		errs = append(errs, *fe)
	}
	if len(errs) > 0 {
		return problem.BadRequest("the query is invalid", errs...)
	}
	if kind == "" {
		// As in a submit's resourceKind.
		kind = KindWorkflowTemplate
	}
	ns, name := ps.ByName("namespace"), ps.ByName("name")
	if err := maySubmit(ctx, c, ns); err != nil {
		return err
	}
	var tr TaskRunner
	if kind == KindClusterWorkflowTemplate {
		t, err := c.Argo.ArgoprojV1alpha1().ClusterWorkflowTemplates().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return templateError(err, kind, "", name)
		}
		tr = taskRunner(kind, &t.ObjectMeta, &t.Spec)
	} else {
		t, err := c.Argo.ArgoprojV1alpha1().WorkflowTemplates(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return templateError(err, kind, ns, name)
		}
		tr = taskRunner(kind, &t.ObjectMeta, &t.Spec)
	}
	if !f.usable(&tr) {
		return problem.Newf(http.StatusNotImplemented, "the template is a CD Task Runner (%s), and CD runs are off: the function has no run key (%s)", tr.CDKind, EnvRunKeyFile)
	}
	return httpjson.Write(w, http.StatusOK, tr)
}
