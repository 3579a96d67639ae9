// Package integration holds the SSE router's tests against the local control plane
// (test/clustertest): real API server, kwok pods and logs, Argo's controller,
// metrics-server, Redis and headless Chromium. It has no code of its own.
package integration
