package events

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Application is the state of the Argo CD Application of an app, as the app summary
// shows it: the data of TypeApplicationChanged and TypeApplicationDeleted, and an item of
// an applications AppSnapshot. The Application lives in Argo CD's namespace; Namespace
// and App are those of the app it deploys (its labels LabelAppNamespace and LabelApp).
type Application struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	// Name is the Application's name (the task function names it <namespace>.<app>).
	Name            string   `json:"name"`
	UID             string   `json:"uid"`
	Ordering        Ordering `json:"ordering"`
	ResourceVersion string   `json:"resourceVersion,omitempty"`
	// Sync is Argo CD's sync status (Synced, OutOfSync, Unknown), empty before its
	// first comparison.
	Sync string `json:"sync,omitempty"`
	// Health is Argo CD's health status (Healthy, Progressing, Degraded, Suspended,
	// Missing, Unknown), HealthMessage its message, at most MaxMessageLen bytes.
	Health        string `json:"health,omitempty"`
	HealthMessage string `json:"healthMessage,omitempty"`
	// Revision is the revision Argo CD last compared with (a commit, a chart version).
	Revision string `json:"revision,omitempty"`
	// OperationPhase, OperationMessage and OperationFinishedAt describe the last (or
	// running) operation, a sync: Running, Terminating, Succeeded, Failed or Error.
	OperationPhase      string    `json:"operationPhase,omitempty"`
	OperationMessage    string    `json:"operationMessage,omitempty"`
	OperationFinishedAt time.Time `json:"operationFinishedAt,omitzero"`
}

// Limits of an Application's fields. Status words are Argo CD's; they are not checked
// against a list, so that a status a newer Argo CD adds still reaches the summaries.
const (
	MaxStatusLen   = 32
	MaxRevisionLen = 128
)

// Validate checks the Application's state.
func (a *Application) Validate() error { var fe fieldErrors; a.validate(&fe, ""); return fe.err() }

func (a *Application) validate(fe *fieldErrors, prefix string) {
	fe.object(prefix, a.Namespace, a.App, a.Name, a.UID, a.Ordering)
	if len(a.ResourceVersion) > 64 {
		fe.add(prefix+"resourceVersion", "is longer than 64 characters")
	}
	for _, f := range []struct{ name, v string }{{"sync", a.Sync}, {"health", a.Health}, {"operationPhase", a.OperationPhase}} {
		if len(f.v) > MaxStatusLen || !letters(f.v) {
			fe.add(prefix+f.name, "must be at most %d ASCII letters", MaxStatusLen)
		}
	}
	if len(a.Revision) > MaxRevisionLen || !printable(a.Revision) {
		fe.add(prefix+"revision", "must be at most %d printable ASCII characters without spaces", MaxRevisionLen)
	}
	for _, f := range []struct{ name, v string }{{"healthMessage", a.HealthMessage}, {"operationMessage", a.OperationMessage}} {
		if len(f.v) > MaxMessageLen {
			fe.add(prefix+f.name, "is longer than %d bytes", MaxMessageLen)
		} else if !utf8.ValidString(f.v) {
			fe.add(prefix+f.name, "is not valid UTF-8")
		}
	}
	if a.OperationPhase == "" && (a.OperationMessage != "" || !a.OperationFinishedAt.IsZero()) {
		fe.add(prefix+"operationPhase", "is required with an operation's message or finishedAt")
	}
	if y := a.OperationFinishedAt.UTC().Year(); !a.OperationFinishedAt.IsZero() && (y < 1970 || y > 9999) {
		fe.add(prefix+"operationFinishedAt", "is out of range")
	}
}

func letters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// TruncateRevision cuts a revision to MaxRevisionLen; one that is not printable ASCII
// without spaces is dropped (never the case for Git commits or chart versions).
func TruncateRevision(s string) string {
	if !printable(s) {
		return ""
	}
	return s[:min(len(s), MaxRevisionLen)]
}

// NewApplicationEvent is the event saying that the Application of an app changed (or,
// with deleted, is gone or no longer deploys that app) in cluster.
func NewApplicationEvent(cluster string, deleted bool, a Application, now time.Time) (event.Event, error) {
	if err := a.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("application %s (%s/%s): %w", a.Name, a.Namespace, a.App, err)
	}
	typ, id := TypeApplicationChanged, "application."+a.UID+"."+a.Ordering.String()
	if deleted {
		typ, id = TypeApplicationDeleted, id+".deleted"
	}
	return newEvent(cluster, typ, id, Subject(a.Namespace, a.App), a.Ordering, a, now)
}

// DecodeApplication reads a TypeApplicationChanged or TypeApplicationDeleted event.
func DecodeApplication(e event.Event) (cluster string, deleted bool, a Application, err error) {
	if cluster, err = envelope(e, TypeApplicationChanged, TypeApplicationDeleted); err != nil {
		return "", false, Application{}, err
	}
	if err = decodeData(e, &a); err != nil {
		return "", false, Application{}, err
	}
	if err = a.Validate(); err != nil {
		return "", false, Application{}, fmt.Errorf("invalid data: %w", err)
	}
	if err = subjectAndOrdering(e, Subject(a.Namespace, a.App), a.Ordering); err != nil {
		return "", false, Application{}, err
	}
	return cluster, e.Type() == TypeApplicationDeleted, a, nil
}

// CDStatus is an app's Argo CD Application in its summary.
type CDStatus struct {
	// Application is the Application's name (in Argo CD's namespace).
	Application string `json:"application"`
	// Sync and Health are Argo CD's statuses, Unknown until it has looked.
	Sync          string `json:"sync"`
	Health        string `json:"health"`
	HealthMessage string `json:"healthMessage,omitempty"`
	// Revision is the revision Argo CD last compared with.
	Revision string `json:"revision,omitempty"`
	// Operation is the last (or running) sync; nil when there was none.
	Operation *CDOperation `json:"operation,omitempty"`
}

// CDOperation is the last operation of an Application.
type CDOperation struct {
	Phase      string    `json:"phase"`
	Message    string    `json:"message,omitempty"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}
