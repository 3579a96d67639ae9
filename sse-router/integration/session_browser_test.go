package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dwp-sre/dwp-sre/sandbox/browsertest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
)

// signInAndStream runs in a page of the router's origin: it signs in with the token
// (POST /api/v1/session), opens an EventSource with the cookie alone, waits for its
// snapshot, signs out (DELETE), and opens the stream again. It resolves to what it saw.
const signInAndStream = `(async (token, stream) => {
  const out = {};
  const signIn = await fetch(%q, {method: "POST", headers: {Authorization: "Bearer " + token}});
  out.signIn = signIn.status;
  out.cookieVisible = document.cookie.includes("dwp_token");
  out.snapshot = await new Promise(resolve => {
    const es = new EventSource(stream);
    const timer = setTimeout(() => { es.close(); resolve("timeout"); }, 20000);
    es.addEventListener("snapshot", e => { clearTimeout(timer); es.close(); resolve(e.data); });
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) { clearTimeout(timer); resolve("refused"); } };
  });
  const signOut = await fetch(%q, {method: "DELETE"});
  out.signOut = signOut.status;
  out.afterSignOut = await new Promise(resolve => {
    const es = new EventSource(stream);
    const timer = setTimeout(() => { es.close(); resolve("timeout"); }, 20000);
    es.addEventListener("snapshot", () => { clearTimeout(timer); es.close(); resolve("snapshot"); });
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) { clearTimeout(timer); resolve("refused"); } };
  });
  const refused = await fetch(stream);
  out.afterSignOutStatus = refused.status;
  return JSON.stringify(out);
})(%q, %q)`

// Must show, in headless Chromium: a page of the portal's origin turns the user's token
// into the cookie with one fetch (script cannot read it: HttpOnly), an EventSource with
// nothing but the cookie gets the stream, and after signing out EventSource is refused
// and gives up.
func TestSessionCookieInBrowser(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	runningPod(t, env, ns, "web-1", "web")
	env.Grant(t, ns, "alice", "view")

	bctx := browsertest.New(t)
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	// A page of the router under the cookie's path: script there would see the cookie
	// were it not HttpOnly.
	if err := chromedp.Do(ctx, chromedp.Navigate(r.URL+"/api/v1/openapi.json")); err != nil {
		t.Fatal(err)
	}
	stream := "/api/v1/stream/namespaces/" + ns + "/pods?app=web"
	script := fmt.Sprintf(signInAndStream, server.SessionPath, server.SessionPath, env.Token(t, "alice"), stream)
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		SignIn             int    `json:"signIn"`
		CookieVisible      bool   `json:"cookieVisible"`
		Snapshot           string `json:"snapshot"`
		SignOut            int    `json:"signOut"`
		AfterSignOut       string `json:"afterSignOut"`
		AfterSignOutStatus int    `json:"afterSignOutStatus"`
	}
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	t.Logf("browser: sign-in %d, cookie visible to script %v, stream %.80s…, sign-out %d, then %s (%d)",
		got.SignIn, got.CookieVisible, got.Snapshot, got.SignOut, got.AfterSignOut, got.AfterSignOutStatus)
	if got.SignIn != 204 || got.CookieVisible {
		t.Errorf("sign-in: %d, cookie visible to script: %v", got.SignIn, got.CookieVisible)
	}
	if !strings.Contains(got.Snapshot, `"name":"web-1"`) {
		t.Errorf("EventSource with the cookie: %s", got.Snapshot)
	}
	if got.SignOut != 204 || got.AfterSignOut != "refused" || got.AfterSignOutStatus != 401 {
		t.Errorf("after sign-out: %d, EventSource %s, fetch %d", got.SignOut, got.AfterSignOut, got.AfterSignOutStatus)
	}
}
