package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// jwt is a token shaped as a JWT whose payload is claims; the fake cluster accepts it
// as user "<user>.<payload>.sig" when user is tok-<name>.
func jwt(user, claims string) string {
	return user + "." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".sig"
}

func postSession(t *testing.T, client *http.Client, url string, header map[string]string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+SessionPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func tokenCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != "dwp_token" {
		t.Fatalf("cookies %v, want dwp_token alone", resp.Header.Values("Set-Cookie"))
	}
	return cs[0]
}

func TestTokenCookieSet(t *testing.T) {
	_, ts := startServer(t, testConfig(), newFakeCluster())
	now := time.Now()
	soon := now.Add(10 * time.Minute).Unix()
	tests := []struct {
		name   string
		token  string
		maxAge [2]int // bounds of Max-Age in seconds
		expMax time.Time
	}{
		{"opaque token: the configured maximum", "tok-alice", [2]int{8*3600 - 2, 8 * 3600}, now.Add(8*time.Hour + time.Second)},
		{"JWT: its exp", jwt("tok-alice", fmt.Sprintf(`{"sub":"alice","exp":%d}`, soon)), [2]int{597, 600}, time.Unix(soon, 0)},
		{"JWT beyond the maximum", jwt("tok-alice", fmt.Sprintf(`{"exp":%d}`, now.Add(48*time.Hour).Unix())), [2]int{8*3600 - 2, 8 * 3600}, now.Add(8*time.Hour + time.Second)},
		{"JWT without exp", jwt("tok-alice", `{"sub":"alice"}`), [2]int{8*3600 - 2, 8 * 3600}, now.Add(8*time.Hour + time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := postSession(t, http.DefaultClient, ts.URL, map[string]string{"Authorization": "Bearer " + tt.token}, "")
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d", resp.StatusCode)
			}
			c := tokenCookie(t, resp)
			if c.Value != tt.token || c.Path != "/api/v1" || !c.HttpOnly || c.Secure || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("cookie %s", resp.Header.Get("Set-Cookie"))
			}
			if c.MaxAge < tt.maxAge[0] || c.MaxAge > tt.maxAge[1] {
				t.Errorf("Max-Age %d, want %d to %d", c.MaxAge, tt.maxAge[0], tt.maxAge[1])
			}
			if c.Expires.IsZero() || c.Expires.After(tt.expMax) {
				t.Errorf("Expires %s, want at most %s", c.Expires, tt.expMax)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
		})
	}
}

func TestTokenCookieRefused(t *testing.T) {
	_, ts := startServer(t, testConfig(), newFakeCluster())
	past := time.Now().Add(-time.Minute).Unix()
	tests := []struct {
		name   string
		header map[string]string
		body   string
		status int
	}{
		{"no token", nil, "", http.StatusUnauthorized},
		{"only the cookie", map[string]string{"Cookie": "dwp_token=tok-alice"}, "", http.StatusUnauthorized},
		{"not a bearer token", map[string]string{"Authorization": "Basic YWxpY2U6eA=="}, "", http.StatusUnauthorized},
		{"rejected token", map[string]string{"Authorization": "Bearer nobody"}, "", http.StatusUnauthorized},
		{"expired JWT", map[string]string{"Authorization": "Bearer " + jwt("tok-alice", fmt.Sprintf(`{"exp":%d}`, past))}, "", http.StatusUnauthorized},
		{"a body (a form)", map[string]string{"Authorization": "Bearer tok-alice", "Content-Type": "application/x-www-form-urlencoded"}, "token=tok-alice", http.StatusBadRequest},
		{"a token a cookie cannot hold", map[string]string{"Authorization": `Bearer tok-a"b`}, "", http.StatusBadRequest},
		{"a token with a comma", map[string]string{"Authorization": "Bearer tok-a,b"}, "", http.StatusBadRequest},
		{"a token too long for a cookie", map[string]string{"Authorization": "Bearer tok-" + strings.Repeat("a", 4000)}, "", http.StatusBadRequest},
		{"a foreign origin", map[string]string{"Authorization": "Bearer tok-alice", "Origin": "https://elsewhere.example"}, "", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := postSession(t, http.DefaultClient, ts.URL, tt.header, tt.body)
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != problem.ContentType {
				t.Errorf("status %d %s, want %d problem", resp.StatusCode, resp.Header.Get("Content-Type"), tt.status)
			}
			if sc := resp.Header.Values("Set-Cookie"); len(sc) > 0 {
				t.Errorf("a refused request set %v", sc)
			}
		})
	}
	// Other methods are not served.
	req, _ := http.NewRequest(http.MethodGet, ts.URL+SessionPath, nil)
	req.Header.Set("Authorization", "Bearer tok-alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || len(resp.Cookies()) > 0 {
		t.Errorf("GET: %d %v", resp.StatusCode, resp.Cookies())
	}
}

// Secure is set over TLS, and behind a proxy only when its X-Forwarded-Proto is trusted.
func TestTokenCookieSecure(t *testing.T) {
	f := newFakeCluster()
	s, plain := startServer(t, testConfig(), f)
	tlsServer := httptest.NewTLSServer(s.Handler())
	t.Cleanup(tlsServer.Close)
	cfg := testConfig()
	cfg.TrustForwardedProto = true
	_, trusting := startServer(t, cfg, f)

	tests := []struct {
		name   string
		client *http.Client
		url    string
		proto  string
		secure bool
	}{
		{"plain HTTP", http.DefaultClient, plain.URL, "", false},
		{"TLS", tlsServer.Client(), tlsServer.URL, "", true},
		{"X-Forwarded-Proto not trusted", http.DefaultClient, plain.URL, "https", false},
		{"X-Forwarded-Proto trusted", http.DefaultClient, trusting.URL, "https", true},
		{"trusted proxy saying http", http.DefaultClient, trusting.URL, "http", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Authorization": "Bearer tok-alice"}
			if tt.proto != "" {
				h["X-Forwarded-Proto"] = tt.proto
			}
			resp := postSession(t, tt.client, tt.url, h, "")
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if c := tokenCookie(t, resp); c.Secure != tt.secure {
				t.Errorf("Secure %v, want %v: %s", c.Secure, tt.secure, resp.Header.Get("Set-Cookie"))
			}
			req, _ := http.NewRequest(http.MethodDelete, tt.url+SessionPath, nil)
			if tt.proto != "" {
				req.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if c := tokenCookie(t, resp); c.Secure != tt.secure {
				t.Errorf("clearing: Secure %v, want %v", c.Secure, tt.secure)
			}
		})
	}
}

// A browser (a cookie jar) signs in, opens a stream with the cookie alone, signs out,
// and is refused.
func TestTokenCookieOpensStreams(t *testing.T) {
	f := newFakeCluster()
	f.allow("alice", "shop", "list pods", "watch pods")
	_, ts := startServer(t, testConfig(), f)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar}
	stream := ts.URL + "/api/v1/stream/namespaces/shop/pods"
	get := func() *http.Response {
		t.Helper()
		resp, err := browser.Get(stream)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("before sign-in: %d", resp.StatusCode)
	}
	if resp := postSession(t, browser, ts.URL, map[string]string{"Authorization": "Bearer tok-alice"}, ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	resp := get()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream with the cookie: %d", resp.StatusCode)
	}
	if ev := readEvents(resp.Body).next(t, false); ev.Type != "snapshot" {
		t.Fatalf("first event %q", ev.Type)
	}
	req, _ := http.NewRequest(http.MethodDelete, ts.URL+SessionPath, nil)
	out, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if c := tokenCookie(t, out); out.StatusCode != http.StatusNoContent || c.MaxAge >= 0 || c.Value != "" || c.Path != "/api/v1" || !c.HttpOnly {
		t.Fatalf("sign-out: %d %s", out.StatusCode, out.Header.Get("Set-Cookie"))
	}
	if resp := get(); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after sign-out: %d", resp.StatusCode)
	}
}

func FuzzTokenExpiry(f *testing.F) {
	f.Add(jwt("h", `{"exp":1767225600}`))
	f.Add(jwt("h", `{"exp":1.7e9}`))
	f.Add(jwt("h", `{"exp":"1767225600"}`))
	f.Add(jwt("h", `{"exp":-1}`))
	f.Add(jwt("h", `{"exp":1e300}`))
	f.Add("a.b.c")
	f.Add("tok-alice")
	f.Add("..")
	now := time.Unix(1767225600, 0)
	f.Fuzz(func(t *testing.T, token string) {
		exp := tokenExpiry(token)
		if !exp.IsZero() && (exp.Unix() <= 0 || exp.Unix() > 1<<40) {
			t.Fatalf("expiry %v out of range", exp)
		}
		got := cookieExpiry(token, now, time.Hour)
		if got.After(now.Add(time.Hour)) || (!exp.IsZero() && got.After(exp)) {
			t.Fatalf("cookie expires %v: after the maximum or the token's %v", got, exp)
		}
	})
}

// Whatever the request, a cookie is set only for an accepted token, holding it exactly,
// and never outliving it.
func FuzzSetTokenCookie(f *testing.F) {
	s, _ := startServer(f, testConfig(), newFakeCluster())
	h := s.Handler()
	f.Add("Bearer tok-alice", []byte(nil))
	f.Add("Bearer "+jwt("tok-alice", `{"exp":4102444800}`), []byte(nil))
	f.Add("Bearer "+jwt("tok-alice", `{"exp":1}`), []byte(nil))
	f.Add("bearer  tok-bob ", []byte(nil))
	f.Add("Bearer tok-a;b", []byte(nil))
	f.Add("Bearer tok-alice", []byte("token=x"))
	f.Add("Basic x", []byte(nil))
	f.Fuzz(func(t *testing.T, auth string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, SessionPath, bytes.NewReader(body))
		req.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		resp := w.Result()
		cookies := resp.Cookies()
		if resp.StatusCode != http.StatusNoContent {
			if len(resp.Header.Values("Set-Cookie")) > 0 || resp.Header.Get("Content-Type") != problem.ContentType {
				t.Fatalf("%d with cookies %v, type %q", resp.StatusCode, resp.Header.Values("Set-Cookie"), resp.Header.Get("Content-Type"))
			}
			return
		}
		scheme, token, _ := strings.Cut(auth, " ")
		token = strings.TrimSpace(token)
		if len(body) > 0 || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(token, "tok-") {
			t.Fatalf("set a cookie for %q with a %d-byte body", auth, len(body))
		}
		if len(cookies) != 1 || cookies[0].Value != token || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
			t.Fatalf("cookies %v for token %q", resp.Header.Values("Set-Cookie"), token)
		}
		limit := time.Now().Add(defaultSessionMaxAge + time.Second) // testConfig sets no maximum
		if exp := tokenExpiry(token); !exp.IsZero() && exp.Before(limit) {
			limit = exp
		}
		if cookies[0].Expires.After(limit) || time.Duration(cookies[0].MaxAge)*time.Second > time.Until(limit)+time.Second {
			t.Fatalf("cookie %s outlives %v", resp.Header.Get("Set-Cookie"), limit)
		}
	})
}
