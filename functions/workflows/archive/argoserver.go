package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/internal/tlstransport"
)

// ArgoServer reads the archive through argo-server's REST API (ArchivedWorkflowService:
// GET /api/v1/archived-workflows and /api/v1/archived-workflows/{uid}), forwarding the
// caller's bearer token, so argo-server checks the caller's rights as it does for its UI.
type ArgoServer struct {
	base   *url.URL
	client *http.Client
}

// maxArgoResponse bounds a response read from argo-server (a full workflow can be large).
const maxArgoResponse = 64 << 20

// NewArgoServer reads from the argo-server at baseURL; caFile, when not empty, is the PEM
// bundle its certificate is checked against.
func NewArgoServer(baseURL, caFile string) (*ArgoServer, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("argo-server URL %q: want an http(s) URL", baseURL)
	}
	tr, err := tlstransport.New(caFile, false)
	if err != nil {
		return nil, fmt.Errorf("argo-server: %w", err)
	}
	return NewArgoServerWithClient(u, &http.Client{Transport: tr, Timeout: 30 * time.Second}), nil
}

// NewArgoServerWithClient reads from base with client.
func NewArgoServerWithClient(base *url.URL, client *http.Client) *ArgoServer {
	return &ArgoServer{base: base, client: client}
}

// Close implements Archive.
func (a *ArgoServer) Close() { a.client.CloseIdleConnections() }

// List implements Archive. argo-server's continue token is an offset into its own
// newest-first order; it is passed through unchanged. With q.Before, the list is asked for
// by start time instead (see listBefore).
func (a *ArgoServer) List(ctx context.Context, c Caller, q Query) (Page, error) {
	if err := q.checkBefore(); err != nil {
		return Page{}, err
	}
	v, err := listValues(q)
	if err != nil {
		return Page{}, err
	}
	if q.Before != nil {
		return a.listBefore(ctx, c, q, v)
	}
	v.Set("listOptions.limit", fmt.Sprint(max(q.Limit, 1)))
	if q.Continue != "" {
		v.Set("listOptions.continue", q.Continue)
	}
	items, cont, err := a.list(ctx, c, v)
	if err != nil {
		return Page{}, err
	}
	// argo-server sorts each page itself; keep the newest first whatever its version does.
	sort.SliceStable(items, func(i, j int) bool {
		return items[i].Status.StartedAt.After(items[j].Status.StartedAt.Time)
	})
	return Page{Items: items, Continue: cont, More: cont != ""}, nil
}

// listValues are the filters of q as argo-server's query parameters.
func listValues(q Query) (url.Values, error) {
	v := url.Values{}
	v.Set("namespace", q.Namespace)
	if q.NamePrefix != "" {
		v.Set("namePrefix", q.NamePrefix)
	}
	sel := labels.SelectorFromSet(q.Labels)
	if len(q.Phases) > 0 {
		req, err := labels.NewRequirement("workflows.argoproj.io/phase", selection.In, q.Phases)
		if err != nil {
			return nil, problem.BadRequest("the phase filter is invalid", problem.FieldError{Field: "phase", Detail: err.Error()})
		}
		sel = sel.Add(*req)
	}
	if s := sel.String(); s != "" {
		v.Set("listOptions.labelSelector", s)
	}
	return v, nil
}

// listBefore is the page of q after q.Before. argo-server (v3.7) takes a start time bound
// as a field selector, "spec.startedAt<T" meaning startedAt <= T and "spec.startedAt>T"
// startedAt >= T (whole seconds, RFC 3339), and orders by start time alone, so workflows
// started in the same second come in no set order and may straddle its pages. Hence each
// round asks for the newest workflows up to a bound, keeps those of every second but the
// oldest it saw, which are complete, and reads that oldest second whole with a second
// request. The first round drops what is not after the position; from the second round
// on every workflow counts, so at most two rounds are needed.
func (a *ArgoServer) listBefore(ctx context.Context, c Caller, q Query, filters url.Values) (Page, error) {
	limit := max(q.Limit, 1)
	pos := *q.Before
	bound := pos.StartedAt.Truncate(time.Second).UTC()
	var out []wfv1.Workflow
	seen := map[string]bool{}
	keep := func(items []wfv1.Workflow) {
		for _, wf := range items {
			if p := PositionOf(&wf); pos.Less(p) && !seen[p.UID] {
				seen[p.UID] = true
				out = append(out, wf)
			}
		}
	}
	exhausted := false
	for round := 0; len(out) <= limit && !exhausted; round++ {
		if round == 3 {
			return Page{}, fmt.Errorf("argo-server archive: no progress after %d rounds of start-time paging", round)
		}
		v := cloneValues(filters)
		v.Set("listOptions.fieldSelector", "spec.startedAt<"+bound.Format(time.RFC3339))
		v.Set("listOptions.limit", fmt.Sprint(limit+1))
		items, cont, err := a.list(ctx, c, v)
		if err != nil {
			return Page{}, err
		}
		if cont == "" {
			keep(items)
			exhausted = true
			break
		}
		oldest := bound
		for i := range items {
			if t := items[i].Status.StartedAt.Time.Truncate(time.Second); t.Before(oldest) {
				oldest = t
			}
		}
		var newer []wfv1.Workflow
		for _, wf := range items {
			if wf.Status.StartedAt.Time.Truncate(time.Second).After(oldest) {
				newer = append(newer, wf)
			}
		}
		keep(newer)
		// The whole oldest second (limit 0 is "all" to argo-server).
		v = cloneValues(filters)
		at := oldest.UTC().Format(time.RFC3339)
		v.Set("listOptions.fieldSelector", "spec.startedAt>"+at+",spec.startedAt<"+at)
		v.Set("listOptions.limit", "0")
		same, _, err := a.list(ctx, c, v)
		if err != nil {
			return Page{}, err
		}
		keep(same)
		if oldest.Unix() <= 0 {
			exhausted = true
		}
		bound = oldest.Add(-time.Second)
	}
	sort.Slice(out, func(i, j int) bool { return PositionOf(&out[i]).Less(PositionOf(&out[j])) })
	page := Page{Items: out}
	if len(out) > limit {
		page.Items, page.More = out[:limit], true
	}
	return page, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// list is one call of argo-server's archived list, as summaries.
func (a *ArgoServer) list(ctx context.Context, c Caller, v url.Values) ([]wfv1.Workflow, string, error) {
	var list struct {
		Metadata struct {
			Continue string `json:"continue"`
		} `json:"metadata"`
		Items []wfv1.Workflow `json:"items"`
	}
	if err := a.get(ctx, c, "/api/v1/archived-workflows", v, &list); err != nil {
		return nil, "", err
	}
	for i := range list.Items {
		wf := &list.Items[i]
		wf.Kind, wf.APIVersion = "Workflow", "argoproj.io/v1alpha1"
		// Argo's list is already without nodes; make sure of it whatever it sends.
		wf.Status.Nodes, wf.Status.StoredTemplates, wf.Status.StoredWorkflowSpec = nil, nil, nil
		wf.Spec.Templates = nil
		wf.ManagedFields = nil
	}
	return list.Items, list.Metadata.Continue, nil
}

// Get implements Archive.
func (a *ArgoServer) Get(ctx context.Context, c Caller, uid string) (*wfv1.Workflow, error) {
	var wf wfv1.Workflow
	if err := a.get(ctx, c, "/api/v1/archived-workflows/"+url.PathEscape(uid), nil, &wf); err != nil {
		return nil, err
	}
	if wf.UID == "" {
		return nil, notFound(uid)
	}
	wf.Kind, wf.APIVersion = "Workflow", "argoproj.io/v1alpha1"
	return &wf, nil
}

// argoError is grpc-gateway's error body.
type argoError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (a *ArgoServer) get(ctx context.Context, c Caller, path string, query url.Values, into any) error {
	u := *a.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("argo-server request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		slog.ErrorContext(ctx, "argo-server unreachable", "err", err)
		return problem.New(http.StatusBadGateway, "argo-server is unreachable")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxArgoResponse+1))
	if err != nil {
		return problem.New(http.StatusBadGateway, "argo-server's answer was cut off")
	}
	if len(body) > maxArgoResponse {
		return problem.New(http.StatusBadGateway, "argo-server's answer is too large")
	}
	if resp.StatusCode != http.StatusOK {
		return argoProblem(resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return problem.New(http.StatusBadGateway, "argo-server's answer is not the expected JSON")
	}
	return nil
}

// argoProblem keeps argo-server's verdict on the caller (401, 403, 404, 400...) and turns
// its own failures into 502.
func argoProblem(status int, body []byte) problem.Problem {
	var ae argoError
	_ = json.Unmarshal(body, &ae)
	msg := ae.Message
	if msg == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 300 {
			msg = msg[:300]
		}
	}
	switch {
	case status == http.StatusUnauthorized:
		return problem.Unauthorized("argo-server did not accept the bearer token: " + msg)
	case status >= 400 && status < 500:
		return problem.New(status, "argo-server: "+msg)
	case status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		return problem.New(status, "argo-server: "+msg)
	default:
		return problem.New(http.StatusBadGateway, fmt.Sprintf("argo-server answered %d: %s", status, msg))
	}
}
