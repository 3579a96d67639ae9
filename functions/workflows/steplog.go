package workflows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// mainLogsArtifact is the output artifact Argo archives a step's main container log as
// (the artifact repository's archiveLogs).
const mainLogsArtifact = "main-logs"

// stepLogPath is an archived step log's address.
type stepLogPath struct {
	namespace, uid, node string
}

// parseStepLogPath checks the path of an archived step log.
func parseStepLogPath(namespace, uid, node string) (stepLogPath, error) {
	var errs []problem.FieldError
	if fe := validateNamespace(namespace); fe != nil {
		errs = append(errs, *fe)
	}
	if !validUID(uid) {
		errs = append(errs, problem.FieldError{Field: "uid", Detail: "must be a workflow's uid (letters, digits and '-', at most 128)"})
	}
	if !validNodeID(node) {
		errs = append(errs, problem.FieldError{Field: "node", Detail: "must be a workflow node's id (letters, digits, '-', '_' and '.', at most 253)"})
	}
	if len(errs) > 0 {
		return stepLogPath{}, problem.BadRequest("the path is invalid", errs...)
	}
	return stepLogPath{namespace: namespace, uid: uid, node: node}, nil
}

// validNodeID accepts an Argo node id (the workflow's name and a hash) and nothing that
// could change argo-server's path: no '/', no dot segment, nothing to escape.
func validNodeID(s string) bool {
	if s == "" || len(s) > 253 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// getArchivedStepLog answers the main container's log of one step (node) of an archived
// workflow, as Argo archived it in its artifact repository, as text/plain. The archived
// workflow is read first with the caller's rights (403, 404), then the node's main-logs
// artifact through argo-server, again as the caller.
func (f *Family) getArchivedStepLog(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	p, err := parseStepLogPath(ps.ByName("namespace"), ps.ByName("uid"), ps.ByName("node"))
	if err != nil {
		return err
	}
	if len(r.URL.Query()) > 0 {
		return problem.BadRequest("the query is invalid", problem.FieldError{Field: "query", Detail: "this endpoint takes no parameters"})
	}
	if _, ok := f.archive.(archive.Unconfigured); ok {
		_, err := f.archive.Get(ctx, f.archiveCaller(c), p.uid) // its 501
		return err
	}
	artifacts, ok := f.archive.(archive.ArtifactReader)
	if !ok {
		return problem.Newf(http.StatusNotImplemented, "archived step logs are read through argo-server (%s): the Postgres archive holds workflows, not their logs", EnvArgoServerURL)
	}
	wf, err := f.archive.Get(ctx, f.archiveCaller(c), p.uid)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return problem.New(http.StatusGatewayTimeout, "the archive did not answer in time")
		}
		return err
	}
	if wf.Namespace != p.namespace {
		return problem.NotFound(fmt.Sprintf("no archived workflow %s in namespace %s", p.uid, p.namespace))
	}
	node, ok := wf.Status.Nodes[p.node]
	if !ok {
		return problem.NotFound(fmt.Sprintf("archived workflow %s has no node %s", p.uid, p.node))
	}
	if node.Outputs == nil || node.Outputs.GetArtifactByName(mainLogsArtifact) == nil {
		return problem.NotFound(fmt.Sprintf("node %s of archived workflow %s archived no log", p.node, p.uid))
	}
	body, err := artifacts.OpenArtifact(ctx, f.archiveCaller(c), p.namespace, p.uid, p.node, mainLogsArtifact)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return problem.New(http.StatusGatewayTimeout, "argo-server did not answer in time")
		}
		return err
	}
	defer body.Close()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "private, no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	// Once the status is sent a failure can only cut the body short.
	_, _ = io.Copy(w, body)
	return nil
}
