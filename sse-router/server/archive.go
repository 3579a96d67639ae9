package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

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

// serveArchivedLog proxies the main container's log of one node of an archived workflow
// from argo-server's artifact endpoint, as text/plain. argo-server decides, with the
// user's own token, whether the user may read it.
func (s *Server) serveArchivedLog(w http.ResponseWriter, r *http.Request, rawUID, rawNode string) {
	uid, err1 := url.PathUnescape(rawUID)
	node, err2 := url.PathUnescape(rawNode)
	var fields []problem.FieldError
	if err1 != nil || !validArchiveParam(uid) {
		fields = append(fields, problem.FieldError{Field: "uid", Detail: "must be a workflow UID"})
	}
	if err2 != nil || !validArchiveParam(node) {
		fields = append(fields, problem.FieldError{Field: "node", Detail: "must be a workflow node id"})
	}
	if len(fields) > 0 {
		s.refuse(w, problem.BadRequest("invalid archived log request", fields...))
		return
	}
	if len(r.URL.Query()) > 0 {
		s.refuse(w, problem.BadRequest("invalid archived log request", problem.FieldError{Field: "query", Detail: "this endpoint takes no parameters"}))
		return
	}
	token := authz.TokenFromRequest(r, s.cfg.TokenCookie)
	if _, err := s.reviewers[s.clusters.Default().Name].Authenticate(r.Context(), token); err != nil {
		s.refuse(w, s.authProblem(err))
		return
	}
	if s.archive == nil {
		s.refuse(w, problem.New(http.StatusNotImplemented, "archived workflow logs are not configured (DWP_ARGO_SERVER_URL)"))
		return
	}
	target := s.archive.base + "/artifacts-by-uid/" + url.PathEscape(uid) + "/" + url.PathEscape(node) + "/main-logs"
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target, nil)
	if err != nil {
		s.refuse(w, problem.FromError(err))
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.archive.client.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		s.log.Warn("argo-server unreachable", "err", err)
		s.refuse(w, problem.New(http.StatusBadGateway, "argo-server is unreachable"))
		return
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		s.refuse(w, problem.NotFound(fmt.Sprintf("no archived log for node %s of workflow %s", node, uid)))
		return
	case http.StatusUnauthorized, http.StatusForbidden:
		s.refuse(w, problem.New(resp.StatusCode, "argo-server refused access to this log"))
		return
	default:
		s.refuse(w, problem.Newf(http.StatusBadGateway, "argo-server answered %s", resp.Status))
		return
	}
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
}

func newArchiveProxy(base, caFile string, insecure bool) (*archiveProxy, error) {
	tr, err := tlstransport.New(caFile, insecure)
	if err != nil {
		return nil, fmt.Errorf("argo-server: %w", err)
	}
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &archiveProxy{base: strings.TrimSuffix(base, "/"), client: &http.Client{Transport: tr}}, nil
}
