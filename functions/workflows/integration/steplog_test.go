package integration_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	function "github.com/dwp-sre/dwp-sre"
	"github.com/dwp-sre/dwp-sre/functions/workflows"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// Must show: a finished run's step logs read back as plain text through the function, from
// Argo's artifact repository through argo-server, after the live workflow is gone, for a
// user with rights, and 403 for one without.
func TestArchivedStepLogThroughFunction(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	env.Grant(t, ns, "carol", "view")
	f := function.New()
	if err := f.Start(context.Background(), map[string]string{
		workflows.EnvKubeconfig:    env.Kubeconfig,
		workflows.EnvArgoServerURL: env.ArgoServerURL,
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(f.Handle))
	t.Cleanup(func() {
		srv.Close()
		_ = f.Stop(context.Background())
	})
	fx := &fixture{env: env, ns: ns, url: srv.URL}
	run := env.RunArchivedSteps(t, ns)

	path := func(node string) string {
		return "/api/v1/namespaces/" + ns + "/archived-workflows/" + run.UID + "/nodes/" + node + "/log"
	}
	for node, want := range run.StepLogs {
		a := fx.call(t, http.MethodGet, path(node), "carol", "")
		if a.code != http.StatusOK || !strings.HasPrefix(a.hdr.Get("Content-Type"), "text/plain") || string(a.body) != want {
			t.Errorf("%s as carol: %d %s %q, want the pod's log %q", node, a.code, a.hdr.Get("Content-Type"), a.body, want)
		}
		if a := fx.call(t, http.MethodGet, path(node), "bob", ""); a.code != http.StatusForbidden || a.problem(t).Status != http.StatusForbidden {
			t.Errorf("%s as bob: %d %s", node, a.code, a.body)
		}
		t.Logf("step %s: %d bytes as carol, 403 for bob", node, len(want))
	}
	if a := fx.call(t, http.MethodGet, path(run.Name+"-0"), "carol", ""); a.code != http.StatusNotFound {
		t.Errorf("unknown node: %d %s", a.code, a.body)
	}
	if a := fx.call(t, http.MethodGet, "/api/v1/namespaces/"+ns+"/archived-workflows/"+run.UID+"/nodes/x/log", "", ""); a.code != http.StatusUnauthorized {
		t.Errorf("no token: %d %s", a.code, a.body)
	}
}
