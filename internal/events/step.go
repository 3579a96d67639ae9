package events

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// StepTemplatePrefix starts the name of every suspend template whose work the task
// function performs (GitOps commits, waits for Argo CD, deletions). kwok runs no
// containers, and a real cluster need not either: the workflow-controller itself runs a
// suspend node, and the function resumes or fails it through the node's status.
const StepTemplatePrefix = "gitops-"

// WorkflowStep says that a step of a workflow waits for the task function: the data of
// TypeWorkflowStep. It names the node only; the function reads the workflow itself, so a
// stale or repeated event can do no harm.
type WorkflowStep struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	// Workflow and UID name the workflow.
	Workflow string `json:"workflow"`
	UID      string `json:"uid"`
	// Node is the waiting node's id, Step its template's name (StepTemplatePrefix...).
	Node string `json:"node"`
	Step string `json:"step"`
	// Ordering is the workflow's ordering key when the watcher saw the node waiting.
	Ordering Ordering `json:"ordering"`
}

// Argo node ids are the workflow's name and a number, or the name alone for the root.
var nodeID = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(-[0-9]{1,20})?$`)

// Validate checks the step.
func (s *WorkflowStep) Validate() error {
	var fe fieldErrors
	fe.object("", s.Namespace, s.App, s.Workflow, s.UID, s.Ordering)
	if len(s.Node) > 300 || !nodeID.MatchString(s.Node) {
		fe.add("node", "is not an Argo node id")
	}
	if len(s.Step) <= len(StepTemplatePrefix) || len(s.Step) > 128 || s.Step[:len(StepTemplatePrefix)] != StepTemplatePrefix {
		fe.add("step", "must be a template name starting with %q", StepTemplatePrefix)
	}
	return fe.err()
}

// NewWorkflowStepEvent is the event saying that a step waits for the task function. Each
// one has its own id: the watcher sends it again while the step waits (a recheck is a new
// request, not a duplicate), so seq must differ between sends.
func NewWorkflowStepEvent(cluster string, s WorkflowStep, seq uint64, now time.Time) (event.Event, error) {
	if err := s.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("step %s/%s %s: %w", s.Namespace, s.Workflow, s.Node, err)
	}
	id := "step." + s.UID + "." + s.Node + "." + s.Ordering.String() + "." + strconv.FormatUint(seq, 10)
	return newEvent(cluster, TypeWorkflowStep, id, Subject(s.Namespace, s.App), s.Ordering, s, now)
}

// DecodeWorkflowStep reads a TypeWorkflowStep event.
func DecodeWorkflowStep(e event.Event) (cluster string, s WorkflowStep, err error) {
	if cluster, err = envelope(e, TypeWorkflowStep); err != nil {
		return "", WorkflowStep{}, err
	}
	if err = decodeData(e, &s); err != nil {
		return "", WorkflowStep{}, err
	}
	if err = s.Validate(); err != nil {
		return "", WorkflowStep{}, fmt.Errorf("invalid data: %w", err)
	}
	if err = subjectAndOrdering(e, Subject(s.Namespace, s.App), s.Ordering); err != nil {
		return "", WorkflowStep{}, err
	}
	return cluster, s, nil
}

// Labels of an Argo CD Application that tie it to the app it deploys: the task function
// sets them, the watcher follows the Application's changes by them.
const (
	LabelAppNamespace = "dwp.io/app-namespace"
	LabelApp          = "dwp.io/app"
)
