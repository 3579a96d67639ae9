// Package integration holds the authz package's tests against the local control plane
// (sandbox/clustertest): a real API server answering TokenReviews and SubjectAccessReviews.
// It has no code of its own.
package integration
