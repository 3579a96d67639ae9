package events

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Pod is the state of one pod of an app: the data of TypePodChanged and TypePodDeleted,
// and an item of a pods AppSnapshot.
type Pod struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	// Ordering is the key of this state (see Ordering).
	Ordering Ordering `json:"ordering"`
	// ResourceVersion is the pod's resourceVersion as the API server wrote it (for people).
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// Phase is the pod's phase: Pending, Running, Succeeded, Failed or Unknown.
	Phase string `json:"phase"`
	// Ready is the pod's Ready condition.
	Ready bool `json:"ready"`
	// Restarts sums the restarts of the pod's containers (init containers included).
	Restarts int32 `json:"restarts"`
	// Problem is the reason a container cannot run (CrashLoopBackOff, ImagePullBackOff,
	// ...), empty when there is none.
	Problem string `json:"problem,omitempty"`
	// Terminating says the pod is being deleted.
	Terminating bool `json:"terminating,omitempty"`
	// ChangedAt is the latest time recorded in the pod's state (creation, start,
	// condition and container transitions, deletion), so that it depends on the pod
	// alone, not on when it was observed.
	ChangedAt time.Time `json:"changedAt"`
}

// Workflow is the state of one Argo Workflow of an app: the data of TypeWorkflowChanged
// and TypeWorkflowDeleted, and an item of a workflows AppSnapshot.
type Workflow struct {
	Namespace       string   `json:"namespace"`
	App             string   `json:"app"`
	Name            string   `json:"name"`
	UID             string   `json:"uid"`
	Ordering        Ordering `json:"ordering"`
	ResourceVersion string   `json:"resourceVersion,omitempty"`
	// Task is the kind of task the workflow performs (its task label, else its
	// WorkflowTemplate's name), empty when unknown.
	Task string `json:"task,omitempty"`
	// Phase is Argo's phase: empty (not yet seen by the controller), Pending, Running,
	// Succeeded, Failed or Error.
	Phase string `json:"phase"`
	// Message is Argo's status message, at most MaxMessageLen bytes.
	Message    string    `json:"message,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// Snapshot kinds.
const (
	KindPods         = "pods"
	KindWorkflows    = "workflows"
	KindApplications = "applications"
)

// AppSnapshot is the whole state of one kind of objects of one app at a revision.
type AppSnapshot struct {
	// Kind is KindPods, KindWorkflows or KindApplications; only the matching list may be
	// non-empty.
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	// Revision is the ordering key at which the listed objects were the app's live
	// objects of Kind. Items may be newer than it.
	Revision Ordering `json:"revision"`
	// ListedAt is when the round's listing began (the watcher's clock): whatever was
	// stored before it and claims to be newer than Revision is from the future, and the
	// snapshot replaces it (see summarystore). Zero: not known.
	ListedAt  time.Time  `json:"listedAt,omitzero"`
	Pods      []Pod      `json:"pods,omitempty"`
	Workflows []Workflow `json:"workflows,omitempty"`
	// Applications are the Argo CD Applications that deploy the app (normally one).
	Applications []Application `json:"applications,omitempty"`
}

// AppRef names an app.
type AppRef struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
}

// ClusterSnapshot lists the apps that have live objects of one kind at a revision.
type ClusterSnapshot struct {
	Kind     string   `json:"kind"`
	Revision Ordering `json:"revision"`
	// ListedAt is as in AppSnapshot.
	ListedAt time.Time `json:"listedAt,omitzero"`
	Apps     []AppRef  `json:"apps"`
}

// Limits of payload fields.
const (
	MaxMessageLen = 1024
	MaxUIDLen     = 64
	MaxProblemLen = 128
)

// TruncateMessage cuts s to at most MaxMessageLen bytes without splitting a UTF-8
// character, replacing invalid UTF-8.
func TruncateMessage(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxMessageLen {
		return s
	}
	cut := MaxMessageLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

var podPhases = map[string]bool{"Pending": true, "Running": true, "Succeeded": true, "Failed": true, "Unknown": true}

var workflowPhases = map[string]bool{"": true, "Pending": true, "Running": true, "Succeeded": true, "Failed": true, "Error": true}

// fieldErrors collects what is wrong with a payload, by field.
type fieldErrors []string

func (fe *fieldErrors) add(field, format string, args ...any) {
	*fe = append(*fe, field+": "+fmt.Sprintf(format, args...))
}

func (fe fieldErrors) err() error {
	if len(fe) == 0 {
		return nil
	}
	return errors.New(strings.Join(fe, "; "))
}

func (fe *fieldErrors) object(prefix, namespace, app, name, uid string, ord Ordering) {
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		fe.add(prefix+"namespace", "%s", strings.Join(msgs, "; "))
	}
	fe.app(prefix+"app", app)
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		fe.add(prefix+"name", "%s", strings.Join(msgs, "; "))
	}
	fe.uid(prefix+"uid", uid)
	if ord == 0 || ord > MaxOrdering {
		fe.add(prefix+"ordering", "is required, at most 2^53-1")
	}
}

func (fe *fieldErrors) app(field, app string) {
	if app == "" {
		fe.add(field, "is required")
	} else if msgs := validation.IsValidLabelValue(app); len(msgs) > 0 {
		fe.add(field, "must be a label value: %s", strings.Join(msgs, "; "))
	}
}

func (fe *fieldErrors) uid(field, uid string) {
	if uid == "" || len(uid) > MaxUIDLen {
		fe.add(field, "must be 1 to %d characters", MaxUIDLen)
		return
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			fe.add(field, "may hold only ASCII letters, digits and '-'")
			return
		}
	}
}

// Validate checks the pod state.
func (p *Pod) Validate() error { var fe fieldErrors; p.validate(&fe, ""); return fe.err() }

func (p *Pod) validate(fe *fieldErrors, prefix string) {
	fe.object(prefix, p.Namespace, p.App, p.Name, p.UID, p.Ordering)
	if len(p.ResourceVersion) > 64 {
		fe.add(prefix+"resourceVersion", "is longer than 64 characters")
	}
	if !podPhases[p.Phase] {
		fe.add(prefix+"phase", "%q is not Pending, Running, Succeeded, Failed or Unknown", p.Phase)
	}
	if p.Restarts < 0 {
		fe.add(prefix+"restarts", "must not be negative")
	}
	if len(p.Problem) > MaxProblemLen {
		fe.add(prefix+"problem", "is longer than %d characters", MaxProblemLen)
	} else {
		for i := 0; i < len(p.Problem); i++ {
			if c := p.Problem[i]; c < 0x21 || c > 0x7e {
				fe.add(prefix+"problem", "must be printable ASCII without spaces")
				break
			}
		}
	}
	if p.ChangedAt.IsZero() {
		fe.add(prefix+"changedAt", "is required")
	} else if y := p.ChangedAt.UTC().Year(); y < 1970 || y > 9999 {
		fe.add(prefix+"changedAt", "is out of range")
	}
}

// Validate checks the workflow state.
func (w *Workflow) Validate() error { var fe fieldErrors; w.validate(&fe, ""); return fe.err() }

func (w *Workflow) validate(fe *fieldErrors, prefix string) {
	fe.object(prefix, w.Namespace, w.App, w.Name, w.UID, w.Ordering)
	if len(w.ResourceVersion) > 64 {
		fe.add(prefix+"resourceVersion", "is longer than 64 characters")
	}
	if w.Task != "" {
		if msgs := validation.IsValidLabelValue(w.Task); len(msgs) > 0 {
			fe.add(prefix+"task", "must be a label value: %s", strings.Join(msgs, "; "))
		}
	}
	if !workflowPhases[w.Phase] {
		fe.add(prefix+"phase", "%q is not empty, Pending, Running, Succeeded, Failed or Error", w.Phase)
	}
	if len(w.Message) > MaxMessageLen {
		fe.add(prefix+"message", "is longer than %d bytes", MaxMessageLen)
	} else if !utf8.ValidString(w.Message) {
		fe.add(prefix+"message", "is not valid UTF-8")
	}
	if w.CreatedAt.IsZero() {
		fe.add(prefix+"createdAt", "is required")
	}
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"createdAt", w.CreatedAt}, {"startedAt", w.StartedAt}, {"finishedAt", w.FinishedAt}} {
		if y := t.t.UTC().Year(); !t.t.IsZero() && (y < 1970 || y > 9999) {
			fe.add(prefix+t.name, "is out of range")
		}
	}
}

func validKind(k string) bool { return k == KindPods || k == KindWorkflows || k == KindApplications }

// Validate checks the snapshot: its kind, and that every item belongs to its app, once.
func (s *AppSnapshot) Validate() error {
	var fe fieldErrors
	if !validKind(s.Kind) {
		fe.add("kind", "%q is not %s, %s or %s", s.Kind, KindPods, KindWorkflows, KindApplications)
	}
	for _, l := range []struct {
		kind string
		n    int
	}{{KindPods, len(s.Pods)}, {KindWorkflows, len(s.Workflows)}, {KindApplications, len(s.Applications)}} {
		if l.n > 0 && l.kind != s.Kind {
			fe.add(l.kind, "must be empty in a snapshot of %s", s.Kind)
		}
	}
	if msgs := validation.IsDNS1123Label(s.Namespace); len(msgs) > 0 {
		fe.add("namespace", "%s", strings.Join(msgs, "; "))
	}
	fe.app("app", s.App)
	if s.Revision == 0 || s.Revision > MaxOrdering {
		fe.add("revision", "is required, at most 2^53-1")
	}
	uids := map[string]bool{}
	item := func(prefix, ns, app, uid string) {
		if ns != s.Namespace || app != s.App {
			fe.add(prefix, "belongs to %s/%s, not to the snapshot's app %s/%s", ns, app, s.Namespace, s.App)
		}
		if uids[uid] {
			fe.add(prefix+"uid", "%q is listed twice", uid)
		}
		uids[uid] = true
	}
	for i := range s.Pods {
		prefix := fmt.Sprintf("pods[%d].", i)
		s.Pods[i].validate(&fe, prefix)
		item(prefix, s.Pods[i].Namespace, s.Pods[i].App, s.Pods[i].UID)
	}
	for i := range s.Workflows {
		prefix := fmt.Sprintf("workflows[%d].", i)
		s.Workflows[i].validate(&fe, prefix)
		item(prefix, s.Workflows[i].Namespace, s.Workflows[i].App, s.Workflows[i].UID)
	}
	for i := range s.Applications {
		prefix := fmt.Sprintf("applications[%d].", i)
		s.Applications[i].validate(&fe, prefix)
		item(prefix, s.Applications[i].Namespace, s.Applications[i].App, s.Applications[i].UID)
	}
	return fe.err()
}

// Validate checks the snapshot: its kind, and that every app is valid and listed once.
func (s *ClusterSnapshot) Validate() error {
	var fe fieldErrors
	if !validKind(s.Kind) {
		fe.add("kind", "%q is not %s, %s or %s", s.Kind, KindPods, KindWorkflows, KindApplications)
	}
	if s.Revision == 0 || s.Revision > MaxOrdering {
		fe.add("revision", "is required, at most 2^53-1")
	}
	seen := map[AppRef]bool{}
	for i, a := range s.Apps {
		prefix := fmt.Sprintf("apps[%d].", i)
		if msgs := validation.IsDNS1123Label(a.Namespace); len(msgs) > 0 {
			fe.add(prefix+"namespace", "%s", strings.Join(msgs, "; "))
		}
		fe.app(prefix+"app", a.App)
		if seen[a] {
			fe.add(prefix[:len(prefix)-1], "%s/%s is listed twice", a.Namespace, a.App)
		}
		seen[a] = true
	}
	return fe.err()
}
