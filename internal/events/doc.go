// Package events is dwp-sre's CloudEvent contract: the event types, their source and
// subject, the ordering key, and the payloads, shared by the watcher (which emits them),
// the task function (which keeps the app summaries in Redis from them) and the SSE router
// (which streams the summaries' changes). No other package defines a CloudEvent type.
//
// # Envelope
//
// Every event is a CloudEvent 1.0, sent in HTTP binary mode with datacontenttype
// application/json:
//
//   - type: reverse-DNS and versioned, io.dwp.<kind>.<change>.v<N>. A change that breaks
//     a payload gets a new version; both versions are handled while producers move over.
//   - source: /dwp/clusters/<cluster>/watcher (Source). The cluster name scopes everything
//     the event says: two clusters never overwrite each other's summaries.
//   - subject: <namespace>/<app> (Subject), the app the event is about; a cluster snapshot
//     has none.
//   - id: stable for one change (the same change re-sent has the same id), so a broker or
//     consumer may drop duplicates by id; correctness never depends on it.
//   - extension ordering: the event's ordering key (see below), also in the data.
//
// # Ordering
//
// A Knative Broker delivers at least once and in any order, so every payload carries the
// whole state of one object (never a delta) with an ordering key: of two states of the
// same object (same UID), the one with the greater key is newer. The key is the object's
// resourceVersion read as a decimal integer. Kubernetes documents resourceVersion as
// opaque; every API server backed by etcd uses etcd's revision, a decimal integer that
// grows with every write in the cluster. When a resourceVersion is not a decimal integer,
// the watcher falls back to its own clock (Unix nanoseconds, strictly increasing within
// one process), which orders exactly within one leader and only as well as the clocks
// agree across leader changes. Clock keys are far greater than etcd revisions, so moving
// from revisions to the clock keeps the order.
//
// # Types
//
// io.dwp.pod.changed.v1 (TypePodChanged), data Pod: a pod of an app was created or its
// state changed. Pods are those carrying the app label (default "app"), except Argo
// workflow pods (label workflows.argoproj.io/workflow), which belong to CI/CD, not to
// the app's run status.
//
// io.dwp.pod.deleted.v1 (TypePodDeleted), data Pod: the pod is gone (or left the app: its
// app label changed). The data is its last known state; the ordering key is the
// deletion's, so that a late "changed" of the same pod cannot bring it back.
//
// io.dwp.workflow.changed.v1 (TypeWorkflowChanged), data Workflow: an Argo Workflow of an
// app (same app label) was created or changed phase, times or message.
//
// io.dwp.workflow.deleted.v1 (TypeWorkflowDeleted), data Workflow: the workflow is gone
// from the cluster (deleted, or garbage-collected after archiving).
//
// io.dwp.application.changed.v1 (TypeApplicationChanged), data Application: the Argo CD
// Application of an app (in Argo CD's namespace, labelled LabelAppNamespace and LabelApp)
// was created or changed what the summary shows: sync, health, revision, last operation.
// Argo CD rewrites other status fields every few seconds; those send nothing.
//
// io.dwp.application.deleted.v1 (TypeApplicationDeleted), data Application: the
// Application is gone, or no longer deploys that app (its labels changed).
//
// io.dwp.app.snapshot.v1 (TypeAppSnapshot), data AppSnapshot: the full state of one kind
// (pods, workflows or applications) of one app at a revision: every live object of that
// kind. Objects of the app not listed and older than the revision are gone. listedAt says
// when the listing began: every change the cluster made before then has a key at or below
// the revision, so a state stored before listedAt with a greater key cannot come from the
// cluster (it was forged), and the snapshot replaces it, whatever its key. Snapshots are
// authoritative: forged or orphaned state does not outlive one round.
//
// io.dwp.cluster.snapshot.v1 (TypeClusterSnapshot), data ClusterSnapshot: the apps that
// have live objects of one kind at a revision. Apps not listed have none left of that
// kind up to the revision (or stored before listedAt, as above). The watcher sends a snapshot round (one cluster snapshot and
// one app snapshot per listed app, all at the same revision) when it starts leading and
// then at its resync interval, so that summaries converge after any loss, a restart of
// Redis or of the watcher.
//
// io.dwp.workflow.succeeded.v1 (TypeWorkflowSucceeded), data Workflow: a workflow of an
// app has just become Succeeded; the task function deploys what a CI run built when the
// app opted in (CI → CD). Sent once per workflow (its id says which), at least once.
//
// io.dwp.workflow.step.v1 (TypeWorkflowStep), data WorkflowStep: a node of a workflow of
// an app, a suspend template named StepTemplatePrefix..., is running: it waits for the
// task function to do its work (commit to the GitOps repository, wait for Argo CD, delete)
// and resume or fail it. The watcher sends it when the node starts waiting, when the
// workflow is stopped while it waits, when the app's Argo CD Application changes, and
// again at an interval while it waits; the function reads the workflow and acts only on
// what it finds there, so any number of copies in any order do the work once.
//
// io.dwp.workflow.finished.v1 (TypeWorkflowFinished) and io.dwp.workflow.history.v1
// (TypeWorkflowHistory) belong to the task function's workflows family: a workflow's exit
// hook signal, and the history entry the function replies with.
//
// # Summaries
//
// The task function keeps one AppSummary per app in Redis and publishes every change of
// one as a SummaryChange (JSON) on the channel SummaryChannel(prefix).
package events
