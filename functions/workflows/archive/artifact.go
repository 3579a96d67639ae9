package archive

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// ArtifactReader is an archive that can also read an archived node's output artifacts
// (such as Argo's main-logs, a step's archived log) from the artifact repository.
type ArtifactReader interface {
	// OpenArtifact opens an output artifact of a node of the archived workflow uid, which
	// ran in namespace. The caller closes it.
	OpenArtifact(ctx context.Context, c Caller, namespace, uid, node, artifact string) (io.ReadCloser, error)
}

// OpenArtifact implements ArtifactReader with argo-server's artifact endpoint, in its
// archived-workflow form, which works after the live workflow is gone. argo-server reads
// the workflow and the repository's credentials with the caller's token; it refuses a
// caller without rights with 401 (an authenticated caller, by then) and fails with a bare
// 500 for everything else.
func (a *ArgoServer) OpenArtifact(ctx context.Context, c Caller, namespace, uid, node, artifact string) (io.ReadCloser, error) {
	// The caller has checked each part: none holds a '/' or is a dot segment.
	u := a.base.JoinPath("artifact-files", namespace, "archived-workflows", uid, node, "outputs", artifact)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := a.client.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		slog.ErrorContext(ctx, "argo-server unreachable", "err", err)
		return nil, problem.New(http.StatusBadGateway, "argo-server is unreachable")
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, problem.Forbidden("argo-server refused to read this artifact for the caller")
	case http.StatusNotFound:
		return nil, problem.NotFound("argo-server has no such artifact")
	}
	slog.WarnContext(ctx, "argo-server could not serve an artifact", "status", resp.Status, "uid", uid, "node", node, "artifact", artifact)
	return nil, problem.Newf(http.StatusBadGateway, "argo-server could not read the artifact (it answered %s)", resp.Status)
}
