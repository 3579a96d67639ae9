package summarystore

import (
	"time"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// Summarize is the summary of an app made of the given live pods, workflows and Argo CD
// Applications (variadic, as most apps have none and callers that predate them pass
// none), by the rules the store's script applies (tests hold the two equal); ok is false
// when there are none, and the app has no summary. Times are kept to whole seconds, in
// UTC, as stored.
//
// Run state, over the pods: Stopped when none has not completed (phase Succeeded);
// otherwise Degraded or Failed (some ready, or none) when a pod failed or has a container
// that cannot run; otherwise Running when every pod not completed is ready and not
// terminating; otherwise Progressing. CI/CD: the workflow created last (ties: the greatest
// name), its phase shown as Pending until Argo's controller sets one. CD: the Application
// of the least name (then UID), its sync and health shown as Unknown until Argo CD sets
// them.
func Summarize(cluster, namespace, app string, pods []events.Pod, workflows []events.Workflow, applications ...events.Application) (events.AppSummary, bool) {
	if len(pods) == 0 && len(workflows) == 0 && len(applications) == 0 {
		return events.AppSummary{}, false
	}
	s := events.AppSummary{Cluster: cluster, Namespace: namespace, App: app}
	var rev events.Ordering
	var updated time.Time
	later := func(t time.Time) {
		if t = second(t); t.After(updated) {
			updated = t
		}
	}
	succeeded, failing := 0, 0
	for _, p := range pods {
		rev = max(rev, p.Ordering)
		s.Run.Pods++
		s.Run.Restarts += int64(p.Restarts)
		switch {
		case p.Phase == "Succeeded":
			succeeded++
		case p.Phase == "Failed" || p.Problem != "":
			failing++
		}
		if p.Ready && !p.Terminating && p.Phase != "Succeeded" {
			s.Run.Ready++
		}
		later(p.ChangedAt)
	}
	switch active := s.Run.Pods - succeeded; {
	case active == 0:
		s.Run.State = events.RunStopped
	case failing > 0 && s.Run.Ready > 0:
		s.Run.State = events.RunDegraded
	case failing > 0:
		s.Run.State = events.RunFailed
	case s.Run.Ready == active:
		s.Run.State = events.RunRunning
	default:
		s.Run.State = events.RunProgressing
	}
	var newest *events.Workflow
	for i := range workflows {
		w := &workflows[i]
		rev = max(rev, w.Ordering)
		later(w.CreatedAt)
		later(w.StartedAt)
		later(w.FinishedAt)
		if newest == nil || stamp(w.CreatedAt) > stamp(newest.CreatedAt) ||
			stamp(w.CreatedAt) == stamp(newest.CreatedAt) && w.Name > newest.Name {
			newest = w
		}
	}
	if newest != nil {
		phase := newest.Phase
		if phase == "" {
			phase = "Pending"
		}
		s.CICD = &events.CICDStatus{
			Workflow: newest.Name, Phase: phase, Task: newest.Task, Message: newest.Message,
			CreatedAt: second(newest.CreatedAt), StartedAt: second(newest.StartedAt), FinishedAt: second(newest.FinishedAt),
		}
	}
	var shown *events.Application
	for i := range applications {
		a := &applications[i]
		rev = max(rev, a.Ordering)
		later(a.OperationFinishedAt)
		if shown == nil || a.Name < shown.Name || a.Name == shown.Name && a.UID < shown.UID {
			shown = a
		}
	}
	if shown != nil {
		s.CD = &events.CDStatus{Application: shown.Name, Sync: orUnknown(shown.Sync), Health: orUnknown(shown.Health),
			HealthMessage: shown.HealthMessage, Revision: shown.Revision}
		if shown.OperationPhase != "" {
			s.CD.Operation = &events.CDOperation{Phase: shown.OperationPhase, Message: shown.OperationMessage, FinishedAt: second(shown.OperationFinishedAt)}
		}
	}
	s.UpdatedAt = updated
	s.Revision = rev.String()
	return s, true
}

func orUnknown(status string) string {
	if status == "" {
		return "Unknown"
	}
	return status
}

func second(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Second)
}
