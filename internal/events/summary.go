package events

import "time"

// Run states of an app, from its pods (workflow pods excluded):
const (
	// RunRunning: every pod that has not completed is ready.
	RunRunning = "Running"
	// RunProgressing: some pods are starting, not ready, or terminating; none failing.
	RunProgressing = "Progressing"
	// RunDegraded: some pods fail (phase Failed, or a container that cannot run), others are ready.
	RunDegraded = "Degraded"
	// RunFailed: pods fail and none is ready.
	RunFailed = "Failed"
	// RunStopped: no pod, or only completed ones.
	RunStopped = "Stopped"
)

// AppSummary is what the app list shows of one app: its run status, its last CI/CD run
// and its Argo CD Application's state. It is a function of the app's live pods,
// workflows and Applications alone.
type AppSummary struct {
	Cluster   string    `json:"cluster"`
	Namespace string    `json:"namespace"`
	App       string    `json:"app"`
	Run       RunStatus `json:"run"`
	// CICD is the newest workflow of the app (by creation time, then name); nil when the
	// app has none in the cluster.
	CICD *CICDStatus `json:"cicd,omitempty"`
	// CD is the app's Argo CD Application; nil when it has none.
	CD *CDStatus `json:"cd,omitempty"`
	// UpdatedAt is the latest time recorded in the state of the app's live pods,
	// workflows and Applications (see Pod.ChangedAt).
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// Revision is the greatest ordering key among the app's live objects.
	Revision string `json:"revision"`
}

// RunStatus sums up an app's pods.
type RunStatus struct {
	State    string `json:"state"`
	Pods     int    `json:"pods"`
	Ready    int    `json:"ready"`
	Restarts int64  `json:"restarts"`
}

// CICDStatus is an app's newest workflow.
type CICDStatus struct {
	Workflow   string    `json:"workflow"`
	Phase      string    `json:"phase"`
	Task       string    `json:"task,omitempty"`
	Message    string    `json:"message,omitempty"`
	CreatedAt  time.Time `json:"createdAt,omitzero"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// SummaryChange is the message published on SummaryChannel when an app's summary
// changes. Summary is null when the app is gone (it has no live pod, workflow or
// Application left).
type SummaryChange struct {
	Cluster   string      `json:"cluster"`
	Namespace string      `json:"namespace"`
	App       string      `json:"app"`
	Summary   *AppSummary `json:"summary"`
}

// SummaryChannel is the Redis channel on which the summaries kept under the key prefix
// are published, e.g. "dwp:summaries" for the prefix "dwp:".
func SummaryChannel(prefix string) string { return prefix + "summaries" }
