// Package e2e drives the web console in headless Chromium, as a person would, against the
// whole backend (stacktest: the function, the watcher and the router as their binaries)
// on the local control plane, with Argo's controller, Argo CD and Prometheus. Its test
// writes a screenshot of each page it checks as an artifact (go test -artifacts).
package e2e
