package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/internal/tlstransport"
)

// validArchiveParam accepts a workflow UID or an Argo node id: letters, digits, '-', '_'
// and '.', at most 253 characters (they end up in argo-server's path).
func validArchiveParam(v string) bool {
	if v == "" || len(v) > 253 {
		return false
	}
	for _, r := range v {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return v != "." && v != ".."
}

// archivedLogRequest names the main container's log of one node of an archived workflow.
type archivedLogRequest struct {
	namespace, uid, node string
}

// parseArchivedLogRequest checks the path parameters of an archived log request, each
// still escaped as it came in the path.
func parseArchivedLogRequest(rawNS, rawUID, rawNode string) (archivedLogRequest, []problem.FieldError) {
	var req archivedLogRequest
	var fields []problem.FieldError
	var err error
	if req.namespace, err = url.PathUnescape(rawNS); err != nil || len(validation.IsDNS1123Label(req.namespace)) > 0 {
		fields = append(fields, problem.FieldError{Field: "namespace", Detail: "must be a namespace name"})
	}
	if req.uid, err = url.PathUnescape(rawUID); err != nil || !validArchiveParam(req.uid) {
		fields = append(fields, problem.FieldError{Field: "uid", Detail: "must be a workflow UID"})
	}
	if req.node, err = url.PathUnescape(rawNode); err != nil || !validArchiveParam(req.node) {
		fields = append(fields, problem.FieldError{Field: "node", Detail: "must be a workflow node id"})
	}
	return req, fields
}

// archivedMainLogs is the artifact Argo archives a step's main log as.
const archivedMainLogs = "main-logs"

// serveArchivedLog proxies the main container's log of one node of an archived workflow
// (Argo's main-logs artifact, in its artifact repository) as text/plain. The caller must be
// allowed to get workflows in the namespace; argo-server reads the workflow and the
// artifact with the caller's own token too, so it decides as well. It reads the archived
// workflow first, so that an unknown workflow, node or log is a 404 rather than
// argo-server's bare 500.
func (s *Server) serveArchivedLog(w http.ResponseWriter, r *http.Request, rawNS, rawUID, rawNode string) {
	req, fields := parseArchivedLogRequest(rawNS, rawUID, rawNode)
	if len(fields) > 0 {
		s.refuse(w, problem.BadRequest("invalid archived log request", fields...))
		return
	}
	if len(r.URL.Query()) > 0 {
		s.refuse(w, problem.BadRequest("invalid archived log request", problem.FieldError{Field: "query", Detail: "this endpoint takes no parameters"}))
		return
	}
	token := authz.TokenFromRequest(r, s.cfg.TokenCookie)
	if _, err := s.reviewers[s.clusters.Default().Name].Check(r.Context(), token, authz.Attributes{
		Verb: "get", Group: "argoproj.io", Resource: "workflows", Namespace: req.namespace,
	}); err != nil {
		s.refuse(w, s.authProblem(err))
		return
	}
	if s.archive == nil {
		s.refuse(w, problem.New(http.StatusNotImplemented, "archived workflow logs are not configured (DWP_ARGO_SERVER_URL)"))
		return
	}
	if p, ok := s.archive.checkNode(r.Context(), token, req); !ok {
		if r.Context().Err() == nil {
			s.refuse(w, p)
		}
		return
	}
	// The uid form reads the archive: it works after the live workflow is gone.
	target := s.archive.base + "/artifact-files/" + url.PathEscape(req.namespace) + "/archived-workflows/" +
		url.PathEscape(req.uid) + "/" + url.PathEscape(req.node) + "/outputs/" + archivedMainLogs
	resp, p, ok := s.archive.get(r.Context(), token, target)
	if !ok {
		if r.Context().Err() == nil {
			s.refuse(w, p)
		}
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "private, no-transform")
	h.Set("X-Content-Type-Options", "nosniff")
	if cl := resp.Header.Get("Content-Length"); cl != "" {
		h.Set("Content-Length", cl)
	}
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, resp.Body); err != nil && !errors.Is(err, r.Context().Err()) {
		s.log.Debug("archived log copy ended", "err", err)
	}
}

// archiveProxy reads archived workflow logs from argo-server.
type archiveProxy struct {
	base   string
	client *http.Client
	log    *slog.Logger
}

func newArchiveProxy(base, caFile string, insecure bool, log *slog.Logger) (*archiveProxy, error) {
	tr, err := tlstransport.New(caFile, insecure)
	if err != nil {
		return nil, fmt.Errorf("argo-server: %w", err)
	}
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &archiveProxy{base: strings.TrimSuffix(base, "/"), client: &http.Client{Transport: tr}, log: log}, nil
}

// get asks argo-server with the caller's token. A refusal is the caller's: the router
// authenticated the token first, so argo-server's 401 (its answer to missing rights) is a
// 403 here.
func (a *archiveProxy) get(ctx context.Context, token, target string) (*http.Response, problem.Problem, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, problem.FromError(err), false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("argo-server unreachable", "err", err)
		}
		return nil, problem.New(http.StatusBadGateway, "argo-server is unreachable"), false
	}
	if resp.StatusCode == http.StatusOK {
		return resp, problem.Problem{}, true
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, problem.NotFound("no such archived workflow"), false
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, problem.Forbidden("argo-server refused access to this archived workflow or its log"), false
	}
	a.log.Warn("argo-server failed", "status", resp.Status, "url", target)
	return nil, problem.Newf(http.StatusBadGateway, "argo-server answered %s", resp.Status), false
}

// checkNode reads the archived workflow and checks that it ran in the namespace asked
// and that the node archived its main log.
func (a *archiveProxy) checkNode(ctx context.Context, token string, req archivedLogRequest) (problem.Problem, bool) {
	resp, p, ok := a.get(ctx, token, a.base+"/api/v1/archived-workflows/"+url.PathEscape(req.uid))
	if !ok {
		return p, false
	}
	defer resp.Body.Close()
	var wf struct {
		Metadata struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Status struct {
			Nodes map[string]struct {
				Outputs *struct {
					Artifacts []struct {
						Name string `json:"name"`
					} `json:"artifacts"`
				} `json:"outputs"`
			} `json:"nodes"`
		} `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&wf); err != nil {
		a.log.Warn("argo-server's archived workflow unreadable", "err", err)
		return problem.New(http.StatusBadGateway, "argo-server's answer was unreadable"), false
	}
	if wf.Metadata.Namespace != req.namespace {
		return problem.NotFound(fmt.Sprintf("no archived workflow %s in namespace %s", req.uid, req.namespace)), false
	}
	node, ok := wf.Status.Nodes[req.node]
	if !ok {
		return problem.NotFound(fmt.Sprintf("archived workflow %s has no node %s", req.uid, req.node)), false
	}
	if node.Outputs != nil {
		for _, art := range node.Outputs.Artifacts {
			if art.Name == archivedMainLogs {
				return problem.Problem{}, true
			}
		}
	}
	return problem.NotFound(fmt.Sprintf("node %s of archived workflow %s archived no log", req.node, req.uid)), false
}
