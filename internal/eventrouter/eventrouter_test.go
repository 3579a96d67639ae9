package eventrouter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/eventauth"
)

const (
	typeEcho   = "io.dwp.test.echo.v1"
	typeStrict = "io.dwp.test.strict.v1"
	typeBroken = "io.dwp.test.broken.v1"
	typeReply  = "io.dwp.test.echoed.v1"
)

func testRouter() *Router {
	r := New()
	r.Handle(typeEcho, func(_ context.Context, e event.Event) (*event.Event, error) {
		reply := event.New()
		reply.SetID("reply-" + e.ID())
		reply.SetType(typeReply)
		reply.SetSource("/test")
		if !json.Valid(e.Data()) {
			return nil, Invalidf("data is not JSON")
		}
		if err := reply.SetData(event.ApplicationJSON, json.RawMessage(e.Data())); err != nil {
			return nil, err
		}
		return &reply, nil
	})
	r.Handle(typeStrict, func(context.Context, event.Event) (*event.Event, error) {
		return nil, Invalidf("n must be positive")
	})
	r.Handle(typeBroken, func(context.Context, event.Event) (*event.Event, error) {
		return nil, errors.New("redis is down")
	})
	return r
}

func binaryHeader(ceType string) http.Header {
	return http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/test"}, "Ce-Type": {ceType},
		"Content-Type": {"application/json"},
	}
}

func TestServeHTTP(t *testing.T) {
	structured := func(ceType string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":"2","source":"/test","type":%q,"datacontenttype":"application/json","data":{"n":1}}`, ceType)
	}
	tests := []struct {
		name       string
		method     string
		header     http.Header
		body       string
		wantStatus int
		wantReply  bool   // a reply event of typeReply carrying the data
		wantDetail string // in the problem's body
	}{
		{"binary with a reply", http.MethodPost, binaryHeader(typeEcho), `{"n":1}`, http.StatusAccepted, true, ""},
		{"structured with a reply", http.MethodPost, http.Header{"Content-Type": {"application/cloudevents+json"}}, structured(typeEcho), http.StatusAccepted, true, ""},
		{"unknown type", http.MethodPost, binaryHeader("io.dwp.test.unknown.v1"), `{}`, http.StatusBadRequest, false, "unknown event type"},
		{"invalid for its handler", http.MethodPost, binaryHeader(typeStrict), `{}`, http.StatusBadRequest, false, "n must be positive"},
		{"handler failure is retried", http.MethodPost, binaryHeader(typeBroken), `{}`, http.StatusInternalServerError, false, "redis is down"},
		{"no CloudEvent headers", http.MethodPost, http.Header{"Content-Type": {"application/json"}}, `{}`, http.StatusBadRequest, false, "not a CloudEvent"},
		{"structured, not JSON", http.MethodPost, http.Header{"Content-Type": {"application/cloudevents+json"}}, `{"specversion":`, http.StatusBadRequest, false, "malformed CloudEvent"},
		{"batch", http.MethodPost, http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, `[]`, http.StatusBadRequest, false, "batches"},
		{"missing id", http.MethodPost, http.Header{"Ce-Specversion": {"1.0"}, "Ce-Source": {"/test"}, "Ce-Type": {typeEcho}}, `{}`, http.StatusBadRequest, false, "id"},
		{"unknown spec version", http.MethodPost, http.Header{"Ce-Specversion": {"9.9"}, "Ce-Id": {"1"}, "Ce-Source": {"/test"}, "Ce-Type": {typeEcho}}, `{}`, http.StatusBadRequest, false, "unsupported CloudEvents spec version"},
		{"too large", http.MethodPost, binaryHeader(typeEcho), `"` + strings.Repeat("x", MaxEventBytes) + `"`, http.StatusRequestEntityTooLarge, false, "larger than"},
		{"GET", http.MethodGet, binaryHeader(typeEcho), ``, http.StatusMethodNotAllowed, false, "POST"},
	}
	r := testRouter()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/events", strings.NewReader(tc.body))
			req.Header = tc.header
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantStatus >= 400 {
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("content type %q, want a problem", ct)
				}
				if !strings.Contains(rec.Body.String(), tc.wantDetail) {
					t.Errorf("body %s, want it to mention %q", rec.Body, tc.wantDetail)
				}
				return
			}
			if !tc.wantReply {
				return
			}
			if got := rec.Header().Get("Ce-Type"); got != typeReply {
				t.Fatalf("reply type %q, want %q (headers %v)", got, typeReply, rec.Header())
			}
			if got := rec.Body.String(); got != `{"n":1}` {
				t.Fatalf("reply data %s", got)
			}
		})
	}
}

// A request whose client has already gone must be answered and must not hold back the
// next one: each request is handled in its own goroutine, nothing is paired across
// requests (as the SDK's receive handler does, which blocks here for good).
func TestGoneClientDoesNotStallOthers(t *testing.T) {
	r := New()
	r.Handle(typeEcho, func(ctx context.Context, e event.Event) (*event.Event, error) {
		return nil, ctx.Err()
	})
	serve := func(ctx context.Context) <-chan int {
		done := make(chan int, 1)
		go func() {
			req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/events", strings.NewReader(`{}`))
			req.Header = binaryHeader(typeEcho)
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			done <- rec.Code
		}()
		return done
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for i, ctx := range []context.Context{gone, context.Background(), gone, context.Background()} {
		select {
		case code := <-serve(ctx):
			if want := http.StatusAccepted; ctx == context.Background() && code != want {
				t.Fatalf("request %d: status %d, want %d", i, code, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d not answered", i)
		}
	}
}

// The router answers an event sent by the SDK's own client, reply included.
func TestSDKClientRoundTrip(t *testing.T) {
	srv := httptest.NewServer(testRouter())
	defer srv.Close()
	c, err := cloudevents.NewClientHTTP()
	if err != nil {
		t.Fatal(err)
	}
	for _, structured := range []bool{false, true} {
		e := event.New()
		e.SetID("sdk")
		e.SetType(typeEcho)
		e.SetSource("/test")
		_ = e.SetData(event.ApplicationJSON, map[string]int{"n": 3})
		ctx := cloudevents.ContextWithTarget(context.Background(), srv.URL)
		if structured {
			ctx = cloudevents.WithEncodingStructured(ctx)
		}
		reply, res := c.Request(ctx, e)
		if !cloudevents.IsACK(res) {
			t.Fatalf("structured=%v: %v", structured, res)
		}
		if reply == nil || reply.Type() != typeReply || string(reply.Data()) != `{"n":3}` {
			t.Fatalf("structured=%v: reply %v", structured, reply)
		}
	}
}

// FuzzServeHTTP: any request is answered (never a panic) with 202 or a problem, and a
// 5xx only when a handler failed; behind the sender check (as the function serves
// /events), only the allowed sender's token reaches a handler, anything else is a 401 or
// 403.
func FuzzServeHTTP(f *testing.F) {
	f.Add("Bearer "+allowedToken, "application/json", "1.0", typeEcho, `{"n":1}`)
	f.Add("Bearer "+allowedToken, "application/cloudevents+json", "", "", `{"specversion":"1.0","id":"1","source":"/s","type":"io.dwp.test.echo.v1"}`)
	f.Add("Bearer "+allowedToken, "application/cloudevents-batch+json", "", "", `[{}]`)
	f.Add("Bearer "+allowedToken, "text/plain", "0.3", typeBroken, "x")
	f.Add("Bearer "+allowedToken, "application/json", "9.9", typeEcho, `{}`)
	f.Add("", "application/json", "1.0", typeEcho, `{"n":1}`)
	f.Add("Bearer "+otherToken, "application/json", "1.0", typeEcho, `{"n":1}`)
	f.Add("Bearer forged", "application/json", "1.0", typeEcho, `{"n":1}`)
	f.Add("Basic "+allowedToken, "application/json", "1.0", typeEcho, `{"n":1}`)
	var reached atomic.Bool
	r := testRouter()
	r.Handle("io.dwp.test.reached.v1", func(context.Context, event.Event) (*event.Event, error) {
		reached.Store(true)
		return nil, nil
	})
	guard := eventauth.NewGuard(fuzzTokens{}, eventauth.Config{Audience: "test", Senders: []string{"sender"}})
	h := guard.Wrap(r)
	f.Fuzz(func(t *testing.T, authorization, contentType, specVersion, ceType, body string) {
		req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if authorization != "" {
			req.Header["Authorization"] = []string{authorization}
		}
		if specVersion != "" {
			req.Header.Set("Ce-Specversion", specVersion)
			req.Header.Set("Ce-Id", "1")
			req.Header.Set("Ce-Source", "/fuzz")
			req.Header.Set("Ce-Type", ceType)
		}
		reached.Store(false)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		scheme, token, _ := strings.Cut(authorization, " ")
		allowed := strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) == allowedToken
		switch {
		case !allowed && rec.Code != http.StatusUnauthorized && rec.Code != http.StatusForbidden:
			t.Fatalf("%q: status %d, want 401 or 403: %s", authorization, rec.Code, rec.Body)
		case !allowed && reached.Load():
			t.Fatalf("%q reached a handler", authorization)
		case rec.Code == http.StatusAccepted:
		case rec.Code >= 400 && rec.Code < 500:
		case rec.Code == http.StatusInternalServerError && strings.Contains(rec.Body.String(), "redis is down"):
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}

const (
	allowedToken = "sender-token"
	otherToken   = "other-token"
)

// fuzzTokens accepts allowedToken (the allowed sender) and otherToken (someone else).
type fuzzTokens struct{}

func (fuzzTokens) Authenticate(_ context.Context, token string) (authz.User, error) {
	switch token {
	case allowedToken:
		return authz.User{Name: "sender"}, nil
	case otherToken:
		return authz.User{Name: "other"}, nil
	}
	return authz.User{}, authz.ErrUnauthenticated
}
