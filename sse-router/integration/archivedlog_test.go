package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
)

// Must show: a finished run's step logs read back as plain text through the router, from
// Argo's artifact repository through argo-server, after the live workflow is gone, for a
// user with rights, and 403 for one without.
func TestArchivedStepLogThroughRouter(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	env.Grant(t, ns, "carol", "view")
	r := startRouter(t, env, func(c *server.Config) { c.ArgoServerURL = env.ArgoServerURL })
	run := env.RunArchivedSteps(t, ns)

	get := func(node, user string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/api/v1/stream/namespaces/"+ns+"/archived-workflows/"+run.UID+"/nodes/"+node+"/log", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+env.Token(t, user))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	for node, want := range run.StepLogs {
		code, ctype, body := get(node, "carol")
		if code != 200 || !strings.HasPrefix(ctype, "text/plain") || body != want {
			t.Errorf("%s as carol: %d %s %q, want the pod's log %q", node, code, ctype, body, want)
		}
		code, ctype, body = get(node, "bob")
		var p struct{ Status int }
		if code != 403 || !strings.HasPrefix(ctype, "application/problem+json") || json.Unmarshal([]byte(body), &p) != nil || p.Status != 403 {
			t.Errorf("%s as bob: %d %s %s", node, code, ctype, body)
		}
		t.Logf("step %s: %d bytes as carol, 403 for bob", node, len(want))
	}
	if code, _, body := get(run.Name+"-0", "carol"); code != 404 {
		t.Errorf("unknown node: %d %s", code, body)
	}
}
