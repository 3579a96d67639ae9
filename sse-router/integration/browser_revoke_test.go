package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sandbox/browsertest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
)

// revokePage opens the same stream twice: "portal" closes its EventSource on a final
// error event, as the README asks; "naive" ignores it and lets EventSource reconnect.
const revokePage = `<!doctype html>
<html><head><meta charset="utf-8"><title>revoke</title></head><body><script>
window.state = {portal: {errors: [], opens: 0}, naive: {errors: [], opens: 0}};
window.sources = {};
for (const name of ["portal", "naive"]) {
  const es = new EventSource(%[1]q);
  window.sources[name] = es;
  es.onopen = () => { window.state[name].opens++; };
  es.addEventListener("error", e => {
    if (!e.data) return; // a connection error, not the router's event
    const p = JSON.parse(e.data);
    window.state[name].errors.push(p);
    if (name === "portal" && !p.retrying && (p.code === "forbidden" || p.code === "unauthenticated")) es.close();
  });
}
</script></body></html>`

// Must show: a browser's EventSource stops after its rights are revoked, whether the
// portal closes it on the final error event or not (the blind reconnect is refused with
// 403, on which EventSource gives up).
func TestBrowserEventSourceStopsWhenRevoked(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, func(c *server.Config) { c.ReauthorizeInterval = 3 * time.Second })
	env.Grant(t, ns, "carol", "view")

	target, _ := url.Parse(r.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/portal" {
			http.SetCookie(w, &http.Cookie{Name: "dwp_token", Value: env.Token(t, "carol"), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, revokePage, "/api/v1/stream/namespaces/"+ns+"/pods")
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(site.Close) // runs after the browser's cleanup, once the browser has let go of its streams

	bctx := browsertest.New(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(site.URL+"/portal")); err != nil {
		t.Fatal(err)
	}
	eval := func(js string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitJS := func(what, js string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for eval(js) != "true" {
			if time.Now().After(deadline) {
				t.Fatalf("browser: no %s within %s: %s", what, within, eval(`JSON.stringify(window.state)`))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitJS("open streams", `String(state.portal.opens === 1 && state.naive.opens === 1)`, 20*time.Second)
	refusedBefore := r.metric(t, `dwp_sse_refused_total{status="403"}`)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.AdminClientset(t).RbacV1().RoleBindings(ns).Delete(ctx, "carol-view", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	// CLOSED is 2: EventSource will not reconnect by itself any more.
	waitJS("the portal's EventSource closed on the 403 event",
		`String(sources.portal.readyState === 2 && state.portal.errors.some(p => p.status === 403 && p.code === "forbidden"))`, 10*time.Second)
	t.Logf("the portal's EventSource closed %s after the deletion", time.Since(deleted).Round(time.Millisecond))
	waitJS("the naive EventSource given up after its reconnect was refused",
		`String(sources.naive.readyState === 2 && state.naive.errors.some(p => p.status === 403))`, 15*time.Second)
	t.Logf("the naive EventSource gave up %s after the deletion", time.Since(deleted).Round(time.Millisecond))
	// It tried once more, was refused, and stays closed: no reconnection loop.
	time.Sleep(3 * time.Second)
	if refused := r.metric(t, `dwp_sse_refused_total{status="403"}`) - refusedBefore; refused != 1 {
		t.Errorf("%v reconnections refused, want the naive one's single attempt", refused)
	}
	if got := eval(`String(state.portal.opens) + "," + String(state.naive.opens)`); got != "1,1" {
		t.Errorf("opens %s, want 1,1", got)
	}
}
