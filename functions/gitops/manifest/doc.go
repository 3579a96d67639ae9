// Package manifest turns a CD run's parameters into the Kubernetes objects of an app's GitOps
// folder.
//
// A CD Task Runner run renders objects into the app's folder of a git repository and commits;
// an Argo CD Application syncs that folder, as a kustomization, into the app's namespace. This
// package is the pure part of a run: [Parse] validates the run's parameters (all errors at
// once, named by parameter) and returns a [Spec], whose [Spec.Files] are rendered from the
// typed API structs of k8s.io/api and marshalled with sigs.k8s.io/yaml. Output is
// deterministic, so a run that changes nothing commits nothing.
//
// Parameter values are trimmed of surrounding white space and an empty value means the
// default. Argo submits every parameter of a WorkflowTemplate, defaults included, so a
// parameter that another one makes irrelevant (replicas under autoscaling, ingress-path
// without ingress-host) is still validated but otherwise ignored, never rejected.
//
// No kind renders a Secret, and none should: whatever is in the folder is readable by anyone
// who can read the repository and its history. Secrets reach a namespace by other means
// (an external secret store); the same holds for job arguments.
//
// Jobs are immutable, so a job's object carries Argo CD's Replace=true,Force=true sync
// options: a changed spec deletes and recreates it. It has no ttlSecondsAfterFinished, since
// Argo CD would recreate, and so rerun, a Job that the TTL controller deleted.
//
// The cronjob time-zone parameter is checked with [time.LoadLocation], as the API server
// does; a program that runs without a zoneinfo database should import time/tzdata.
package manifest
