// Package integration holds the summaries' tests on the local control plane
// (sandbox/clustertest): the watcher binary, the summaries family behind /events, Redis
// and the SSE router's apps stream, end to end. It has no code of its own.
package integration
