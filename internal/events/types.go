package events

import (
	"errors"
	"fmt"
	"strings"
)

// Event types.
const (
	TypePodChanged      = "io.dwp.pod.changed.v1"
	TypePodDeleted      = "io.dwp.pod.deleted.v1"
	TypeWorkflowChanged = "io.dwp.workflow.changed.v1"
	TypeWorkflowDeleted = "io.dwp.workflow.deleted.v1"

	TypeApplicationChanged = "io.dwp.application.changed.v1"
	TypeApplicationDeleted = "io.dwp.application.deleted.v1"

	TypeAppSnapshot     = "io.dwp.app.snapshot.v1"
	TypeClusterSnapshot = "io.dwp.cluster.snapshot.v1"

	// TypeWorkflowSucceeded says that a workflow of an app has just succeeded (CI → CD).
	TypeWorkflowSucceeded = "io.dwp.workflow.succeeded.v1"

	// TypeWorkflowStep says that a step of a CD run waits for the task function.
	TypeWorkflowStep = "io.dwp.workflow.step.v1"

	// TypeWorkflowFinished is a workflow exit hook's signal to the task function.
	TypeWorkflowFinished = "io.dwp.workflow.finished.v1"
	// TypeWorkflowHistory is the task function's reply to TypeWorkflowFinished.
	TypeWorkflowHistory = "io.dwp.workflow.history.v1"
)

// SummaryTypes are the types that update app summaries.
var SummaryTypes = []string{
	TypePodChanged, TypePodDeleted,
	TypeWorkflowChanged, TypeWorkflowDeleted,
	TypeApplicationChanged, TypeApplicationDeleted,
	TypeAppSnapshot, TypeClusterSnapshot,
}

// ExtensionOrdering is the CloudEvent extension attribute holding the ordering key.
const ExtensionOrdering = "ordering"

// ContentType is the datacontenttype of every event of this package.
const ContentType = "application/json"

const (
	sourcePrefix = "/dwp/clusters/"
	sourceSuffix = "/watcher"
	// MaxClusterNameLen bounds a cluster name.
	MaxClusterNameLen = 63
)

// Source is the source of the events the watcher of a cluster emits.
func Source(cluster string) string { return sourcePrefix + cluster + sourceSuffix }

// ClusterFromSource is the cluster named by a watcher's source.
func ClusterFromSource(source string) (string, error) {
	rest, ok := strings.CutPrefix(source, sourcePrefix)
	cluster, ok2 := strings.CutSuffix(rest, sourceSuffix)
	if !ok || !ok2 {
		return "", fmt.Errorf("source %q is not %s<cluster>%s", source, sourcePrefix, sourceSuffix)
	}
	if err := ValidateClusterName(cluster); err != nil {
		return "", fmt.Errorf("source %q: %w", source, err)
	}
	return cluster, nil
}

// ValidateClusterName checks a cluster name: 1 to 63 ASCII letters, digits, '.', '_' or
// '-'. Cluster names become parts of event sources and Redis keys.
func ValidateClusterName(name string) error {
	if name == "" {
		return errors.New("the cluster name is empty")
	}
	if len(name) > MaxClusterNameLen {
		return fmt.Errorf("the cluster name is longer than %d characters", MaxClusterNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("the cluster name %q may hold only ASCII letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// Subject is the subject of an event about an app.
func Subject(namespace, app string) string { return namespace + "/" + app }
