package workflows

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Paging bounds.
const (
	DefaultLimit = 50
	MaxLimit     = 500
	// maxContinueLen bounds a continue token (ours are ~100 bytes, argo-server's offsets shorter).
	maxContinueLen = 4096
)

// listQuery is a validated history query.
type listQuery struct {
	app, taskType, template, clusterTemplate string
	namePrefix                               string
	phases                                   []string
	limit                                    int
	cont                                     string
	projection                               string
}

var phases = []string{string(wfv1.WorkflowPending), string(wfv1.WorkflowRunning), string(wfv1.WorkflowSucceeded), string(wfv1.WorkflowFailed), string(wfv1.WorkflowError)}

// parseListQuery reads and checks the query of a list. Unknown parameters are rejected,
// so that a misspelt filter is not mistaken for an empty history. extra names the
// parameters this list takes beyond the common ones (projection, namespace, namePrefix).
func parseListQuery(q url.Values, extra ...string) (listQuery, error) {
	lq := listQuery{limit: DefaultLimit, projection: ProjectionSummary}
	var errs []problem.FieldError
	add := func(field, detail string) { errs = append(errs, problem.FieldError{Field: field, Detail: detail}) }
	known := []string{"app", "taskType", "template", "clusterTemplate", "phase", "limit", "continue"}
	known = append(known, extra...)
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := q[k]
		if !slices.Contains(known, k) {
			add(k, "unknown query parameter; known: "+strings.Join(known, ", "))
			continue
		}
		if k != "phase" && len(vs) > 1 {
			add(k, "is given more than once")
			continue
		}
		v := vs[0]
		switch k {
		case "app", "taskType", "template", "clusterTemplate":
			if v == "" {
				add(k, "must not be empty when given")
			} else if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
				add(k, "must be a valid label value: "+strings.Join(msgs, "; "))
			}
			switch k {
			case "app":
				lq.app = v
			case "taskType":
				lq.taskType = v
			case "template":
				lq.template = v
			case "clusterTemplate":
				lq.clusterTemplate = v
			}
		case "namePrefix":
			if len(v) > validation.DNS1123SubdomainMaxLength || strings.Trim(v, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
				add(k, "must be the start of a workflow name (lower-case letters, digits, '-' and '.')")
			}
			lq.namePrefix = v
		case "phase":
			for _, v := range vs {
				for _, ph := range strings.Split(v, ",") {
					if !slices.Contains(phases, ph) {
						add(k, fmt.Sprintf("%q is not a phase; phases: %s", ph, strings.Join(phases, ", ")))
						continue
					}
					if !slices.Contains(lq.phases, ph) {
						lq.phases = append(lq.phases, ph)
					}
				}
			}
			sort.Strings(lq.phases)
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxLimit {
				add(k, fmt.Sprintf("must be a whole number from 1 to %d", MaxLimit))
			}
			lq.limit = n
		case "continue":
			if len(v) > maxContinueLen {
				add(k, "is too long to be a continue token")
			}
			lq.cont = v
		case "projection":
			if v != ProjectionSummary && v != ProjectionFull {
				add(k, fmt.Sprintf("must be %s or %s", ProjectionSummary, ProjectionFull))
			}
			lq.projection = v
		}
	}
	if len(errs) > 0 {
		return lq, problem.BadRequest("the query is invalid", errs...)
	}
	return lq, nil
}

// labelFilter is the label equality filter of the query, for the archive too.
func (lq *listQuery) labelFilter(cfg *Config) map[string]string {
	m := map[string]string{}
	if lq.app != "" {
		m[cfg.AppLabel] = lq.app
	}
	if lq.taskType != "" {
		m[cfg.TaskLabel] = lq.taskType
	}
	if lq.template != "" {
		m[LabelWorkflowTemplate] = lq.template
	}
	if lq.clusterTemplate != "" {
		m[LabelClusterWorkflowTemplate] = lq.clusterTemplate
	}
	return m
}

// selector is the query as a Kubernetes label selector: every filter is a label (Argo
// keeps the phase in one).
func (lq *listQuery) selector(cfg *Config) (labels.Selector, error) {
	sel := labels.SelectorFromSet(lq.labelFilter(cfg))
	if len(lq.phases) > 0 {
		req, err := labels.NewRequirement(LabelPhase, selection.In, lq.phases)
		if err != nil {
			return nil, problem.BadRequest("the phase filter is invalid", problem.FieldError{Field: "phase", Detail: err.Error()})
		}
		sel = sel.Add(*req)
	}
	return sel, nil
}
