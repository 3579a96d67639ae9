package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dwp-sre/dwp-sre/sandbox/browsertest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// page opens, with EventSource as a portal page does, a pod list, a pod log, and one
// multiplexed stream carrying both; it records every event in window.events.
const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>streams</title></head><body><script>
window.events = [];
window.errors = 0;
function record(src, e) {
  window.events.push({src: src, type: e.type, id: e.lastEventId, data: e.data});
}
const pods = new EventSource(%[1]q);
for (const t of ["snapshot", "added", "modified", "deleted", "relist"]) pods.addEventListener(t, e => record("pods", e));
const log = new EventSource(%[2]q);
log.addEventListener("log", e => record("log", e));
const mux = new EventSource(%[3]q);
for (const t of ["session", "p", "l"]) mux.addEventListener(t, e => record("mux", e));
for (const s of [pods, log, mux]) s.onerror = () => { window.errors++; };
</script></body></html>`

type browserEvent struct {
	Src, Type, ID, Data string
}

// Must show: headless Chromium opens EventSource on a pod list and a pod log and
// receives a pod change and appended log lines; the multiplexed stream carries two
// subscriptions at once. The token travels in an HttpOnly cookie, as from a portal login.
func TestBrowserEventSource(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	pl := env.PodLog(t, ns, "web-1", "main")
	appendLines(t, pl, "boot", 0, 2)
	runningPod(t, env, ns, "web-1", "web")

	podsURL := "/api/v1/stream/namespaces/" + ns + "/pods?app=web"
	logURL := "/api/v1/stream/namespaces/" + ns + "/pods/web-1/log?container=main"
	muxURL := "/api/v1/stream/mux?" + url.Values{"subscribe": {
		"p:namespaces/" + ns + "/pods?app=web",
		"l:namespaces/" + ns + "/pods/web-1/log?container=main",
	}}.Encode()

	// The page and the streams share an origin, as behind the portal's ingress.
	target, _ := url.Parse(r.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/portal" {
			http.SetCookie(w, &http.Cookie{Name: "dwp_token", Value: env.Token(t, "alice"), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, page, podsURL, logURL, muxURL)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(site.Close) // runs after the browser's cleanup, once the browser has let go of its streams
	env.Grant(t, ns, "alice", "view")

	bctx := browsertest.New(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(site.URL+"/portal")); err != nil {
		t.Fatal(err)
	}

	events := func() []browserEvent {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.events)`))
		if err != nil {
			t.Fatal(err)
		}
		var evs []browserEvent
		if err := json.Unmarshal([]byte(raw), &evs); err != nil {
			t.Fatal(err)
		}
		return evs
	}
	waitFor := func(what string, ok func([]browserEvent) bool) []browserEvent {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			evs := events()
			if ok(evs) {
				return evs
			}
			if time.Now().After(deadline) {
				t.Fatalf("browser: no %s within 30s; events: %+v", what, evs)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	has := func(evs []browserEvent, src, typ, dataPart string) bool {
		for _, e := range evs {
			if e.Src == src && e.Type == typ && strings.Contains(e.Data, dataPart) {
				return true
			}
		}
		return false
	}

	waitFor("initial state on every stream", func(evs []browserEvent) bool {
		return has(evs, "pods", "snapshot", `"web-1"`) && has(evs, "log", "log", "boot 0001") &&
			has(evs, "mux", "session", `"subscriptions"`) && has(evs, "mux", "p", `"snapshot"`) && has(evs, "mux", "l", "boot 0001")
	})

	label(t, env, ns, "web-1", "release", "v2")
	lines := appendLines(t, pl, "live", 0, 3)
	evs := waitFor("the pod change and the appended lines", func(evs []browserEvent) bool {
		return has(evs, "pods", "modified", `"release":"v2"`) && has(evs, "log", "log", lines[2]) &&
			has(evs, "mux", "p", `"release":"v2"`) && has(evs, "mux", "l", lines[2])
	})
	// Every event carries an id; the log lines arrive in order, once.
	var logLines []string
	for _, e := range evs {
		if e.ID == "" {
			t.Errorf("event without id: %+v", e)
		}
		if e.Src == "log" {
			var l logEvent
			_ = json.Unmarshal([]byte(e.Data), &l)
			logLines = append(logLines, l.Line)
		}
	}
	if want := "[boot 0000 boot 0001 live 0000 live 0001 live 0002]"; fmt.Sprint(logLines) != want {
		t.Errorf("browser log lines %v, want %s", logLines, want)
	}
	ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
	defer cancel()
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.errors`)); err != nil || n != 0 {
		t.Errorf("EventSource errors in the browser: %d (%v)", n, err)
	}
	t.Logf("browser received %d events over 3 EventSources", len(evs))
}
