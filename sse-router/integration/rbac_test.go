package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// Must show: a user without RBAC in the namespace gets 403 on each stream (a problem,
// before the stream starts); a user with it gets the stream.
func TestRBACOnEveryStream(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	pl := env.PodLog(t, ns, "web-1", "main")
	appendLines(t, pl, "x", 0, 1)
	runningPod(t, env, ns, "web-1", "web")

	mux := "mux?" + url.Values{"subscribe": {"p:namespaces/" + ns + "/pods", "l:namespaces/" + ns + "/pods/web-1/log?container=main"}}.Encode()
	streams := []string{
		"namespaces/" + ns + "/pods?app=web",
		"namespaces/" + ns + "/pods/web-1/log?container=main",
		"namespaces/" + ns + "/workflows?app=web",
		"namespaces/" + ns + "/workflows/build-1",
		"namespaces/" + ns + "/workflows/build-1/log",
		"namespaces/" + ns + "/events?kind=Pod&name=web-1",
		"namespaces/" + ns + "/metrics/pods?app=web",
		"namespaces/" + ns + "/apps",
		"namespaces/" + ns + "/apps/web/application",
		mux,
	}
	carol := env.Token(t, "carol")
	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, r.URL+"/api/v1/stream/"+path, nil)
		req.AddCookie(&http.Cookie{Name: "dwp_token", Value: carol})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, s := range streams {
		resp := get(s)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var p problem.Problem
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != problem.ContentType ||
			json.Unmarshal(body, &p) != nil || !strings.Contains(p.Detail, `user "carol" may not`) {
			t.Errorf("%s without RBAC: %d %s %s", s, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}

	env.Grant(t, ns, "carol", "view")
	for _, s := range streams {
		deadline := time.Now().Add(15 * time.Second) // refusals are remembered for a moment
		for {
			resp := get(s)
			if resp.StatusCode == http.StatusOK {
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
					t.Errorf("%s: content type %q", s, ct)
				}
				buf := make([]byte, 64)
				n, _ := resp.Body.Read(buf)
				if !strings.HasPrefix(string(buf[:n]), "retry: ") {
					t.Errorf("%s: stream starts with %q", s, buf[:n])
				}
				resp.Body.Close()
				break
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || time.Now().After(deadline) {
				t.Errorf("%s with view: %d", s, resp.StatusCode)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}
