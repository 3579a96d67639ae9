package server

import (
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// A browser's EventSource cannot send the Authorization header, so browsers carry the
// user's token in a cookie (Config.TokenCookie). SessionPath turns a bearer token into
// that cookie, and clears it: a portal signs a browser in with one fetch, without script
// ever writing the cookie (it is HttpOnly).
//
// The cookie is set only from the Authorization header, never from a URL or a body:
// a cross-site form can send neither that header nor (without a CORS preflight the
// router refuses for foreign origins) a request that has it, so no other site can plant
// a token of its choosing. SameSite=Strict: the portal's pages, the only ones that need
// it, are same-site with the router (an EventSource is never a top-level navigation, so
// Lax would add nothing a portal uses, only cross-site links opening streams on the
// user's cookie).
const SessionPath = "/api/v1/session"

// cookiePath scopes the cookie to the paths that read it: the streams, the multiplexed
// stream's subscriptions and the archived logs.
const cookiePath = "/api/v1"

// maxCookieBytes bounds the cookie's name and value: browsers keep cookies of up to
// 4096 bytes with their attributes, and drop larger ones silently.
const maxCookieBytes = 3800

// serveSetCookie answers POST SessionPath: the Authorization header's token, once the
// API server accepted it, as the token cookie.
func (s *Server) serveSetCookie(w http.ResponseWriter, r *http.Request) {
	if hasBody(r) {
		s.refuse(w, problem.BadRequest("send no body: the token goes in the Authorization header",
			problem.FieldError{Field: "body", Detail: "must be empty"}))
		return
	}
	token, err := authz.BearerToken(r)
	if err != nil {
		p, _ := problem.As(err)
		s.refuse(w, p)
		return
	}
	c := &http.Cookie{Name: s.cfg.TokenCookie, Value: token}
	if len(c.Name)+len(token) > maxCookieBytes || c.Valid() != nil || strings.ContainsAny(token, ", ") {
		// A value the browser would not keep as sent could not be read back as the token.
		s.refuse(w, problem.BadRequest("this token cannot be carried in a cookie: send it in the Authorization header",
			problem.FieldError{Field: "Authorization", Detail: "too long for a cookie, or holds characters a cookie cannot"}))
		return
	}
	user, err := s.reviewers[s.clusters.Default().Name].Authenticate(r.Context(), token)
	if err != nil {
		s.refuse(w, s.authProblem(err))
		return
	}
	now := time.Now()
	expires := cookieExpiry(token, now, s.cfg.SessionMaxAge)
	maxAge := int(expires.Sub(now) / time.Second)
	if maxAge < 1 {
		s.refuse(w, problem.Unauthorized("the bearer token has expired"))
		return
	}
	c.Path, c.MaxAge, c.Expires = cookiePath, maxAge, now.Add(time.Duration(maxAge)*time.Second)
	c.HttpOnly, c.Secure, c.SameSite = true, s.secure(r), http.SameSiteStrictMode
	http.SetCookie(w, c)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	s.log.Debug("token cookie set", "user", user.Name, "expires", c.Expires)
}

// serveClearCookie answers DELETE SessionPath. It needs no token: one that expired must
// be clearable too, and clearing a cookie reveals nothing.
func (s *Server) serveClearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.TokenCookie, Path: cookiePath, MaxAge: -1, Expires: time.Unix(0, 0),
		HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// cookieExpiry is when the token cookie must expire: at the token's own expiry when it
// is a JWT (its exp claim, read only for this: the API server decided the token is
// valid), and no later than maxAge from now.
func cookieExpiry(token string, now time.Time, maxAge time.Duration) time.Time {
	if maxAge <= 0 {
		maxAge = defaultSessionMaxAge
	}
	expires := now.Add(maxAge)
	if exp := tokenExpiry(token); !exp.IsZero() && exp.Before(expires) {
		expires = exp
	}
	return expires
}

// secure says whether the request reached the router over TLS: directly, or through a
// proxy whose X-Forwarded-Proto the router is configured to trust (any client can send
// the header; only a proxy that sets it may be believed).
func (s *Server) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if !s.cfg.TrustForwardedProto {
		return false
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

// hasBody says whether a request carries a body (reading at most one byte of it).
func hasBody(r *http.Request) bool {
	if r.ContentLength > 0 {
		return true
	}
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	n, _ := io.ReadFull(r.Body, make([]byte, 1))
	return n > 0
}
