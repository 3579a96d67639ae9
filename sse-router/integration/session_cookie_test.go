package integration

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// Must show: a browser turns a user's token into the router's cookie, opens a stream with
// the cookie alone (as EventSource does) and gets data; once the cookie is cleared the
// stream is refused. A bad token sets nothing; a JWT's cookie expires with it.
func TestSessionCookie(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, func(c *server.Config) { c.SessionMaxAge = 2 * time.Hour })
	runningPod(t, env, ns, "web-1", "web")
	env.Grant(t, ns, "alice", "view")

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar}
	base, _ := url.Parse(r.URL + "/api/v1/stream/")
	signIn := func(authorization string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, r.URL+server.SessionPath, nil)
		req.Header.Set("Authorization", authorization)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("POST %s: %d %s %s", server.SessionPath, resp.StatusCode, redact(resp.Header.Get("Set-Cookie")), body)
		return resp
	}

	// A token the API server does not accept sets nothing.
	if resp := signIn("Bearer not-a-token"); resp.StatusCode != http.StatusUnauthorized ||
		resp.Header.Get("Content-Type") != problem.ContentType || len(resp.Cookies()) > 0 {
		t.Fatalf("bad token: %d %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}

	resp := signIn("Bearer " + env.Token(t, "alice"))
	if resp.StatusCode != http.StatusNoContent || len(resp.Cookies()) != 1 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	c := resp.Cookies()[0]
	if c.Name != "dwp_token" || c.Path != "/api/v1" || !c.HttpOnly || c.Secure || c.SameSite != http.SameSiteStrictMode ||
		c.MaxAge < 2*3600-5 || c.MaxAge > 2*3600 {
		t.Fatalf("cookie %s", redact(resp.Header.Get("Set-Cookie")))
	}
	if len(jar.Cookies(base)) != 1 {
		t.Fatalf("the browser holds %d cookies for the streams", len(jar.Cookies(base)))
	}

	// The stream, with the cookie alone.
	stream := r.URL + "/api/v1/stream/namespaces/" + ns + "/pods?app=web"
	open := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, stream, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp = open()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream with the cookie: %d %s", resp.StatusCode, body)
	}
	pods := streamOf(t, resp)
	pods.until(t, 30*time.Second, "the snapshot with web-1", func(ev sse.Event) bool {
		return ev.Type == "snapshot" && strings.Contains(ev.Data, `"name":"web-1"`)
	})

	// Signing out clears the cookie: the next stream is refused, as EventSource's
	// reconnection would be.
	req, _ := http.NewRequest(http.MethodDelete, r.URL+server.SessionPath, nil)
	out, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if out.StatusCode != http.StatusNoContent || len(out.Cookies()) != 1 || out.Cookies()[0].MaxAge >= 0 || len(jar.Cookies(base)) != 0 {
		t.Fatalf("sign-out: %d %v, the browser still holds %d cookies", out.StatusCode, out.Header.Values("Set-Cookie"), len(jar.Cookies(base)))
	}
	resp = open()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != problem.ContentType {
		t.Fatalf("stream after sign-out: %d %s", resp.StatusCode, body)
	}

	// A ServiceAccount's token is a JWT: the cookie expires no later than it does.
	sa := env.PodReaderTokens(t, ns, 1)[0]
	exp := jwtExpiry(t, sa)
	resp = signIn("Bearer " + sa)
	if resp.StatusCode != http.StatusNoContent || len(resp.Cookies()) != 1 {
		t.Fatalf("sign-in with a ServiceAccount token: %d", resp.StatusCode)
	}
	c = resp.Cookies()[0]
	if left := time.Until(exp); c.MaxAge < 1 || time.Duration(c.MaxAge)*time.Second > left+time.Second || c.Expires.After(exp) {
		t.Fatalf("the cookie (Max-Age %d, Expires %s) outlives the token (%s left, exp %s)", c.MaxAge, c.Expires, left, exp)
	}
	if c.MaxAge >= 2*3600-5 {
		t.Fatalf("Max-Age %d is the configured maximum, not the token's expiry", c.MaxAge)
	}
	resp = open()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream with the ServiceAccount's cookie: %d %s", resp.StatusCode, body)
	}
	streamOf(t, resp).until(t, 30*time.Second, "the snapshot", func(ev sse.Event) bool { return ev.Type == "snapshot" })
}

// streamOf reads the events of an open stream response until the test ends.
func streamOf(t *testing.T, resp *http.Response) *client {
	t.Helper()
	c := &client{resp: resp, reader: sse.NewReader(resp.Body), events: make(chan sse.Event, 1000), cancel: func() {}}
	go func() {
		defer close(c.events)
		for {
			ev, err := c.reader.Next()
			if err != nil {
				return
			}
			c.events <- ev
		}
	}()
	t.Cleanup(c.close)
	return c
}

// jwtExpiry reads a JWT's exp claim (the test's own reading, to compare with the router's).
func jwtExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(b, &claims); err != nil || claims.Exp == 0 {
		t.Fatalf("no exp claim: %v", err)
	}
	return time.Unix(claims.Exp, 0)
}

// redact hides a Set-Cookie's value (a token) in the test's log.
func redact(setCookie string) string {
	name, rest, ok := strings.Cut(setCookie, "=")
	if !ok {
		return setCookie
	}
	_, attrs, _ := strings.Cut(rest, ";")
	return name + "=…;" + attrs
}
