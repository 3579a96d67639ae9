// Package cors lets the portal's pages on other origins call a service from the browser,
// and refuses what a page of any other origin sends.
//
// A request whose Origin is neither allowed nor the host it was sent to is refused with 403
// before the service sees it: the browser would hide the answer from that page anyway, but
// the service would still act on the request (on a cookie, open upstreams; on a token a
// page somehow holds, write). Requests without an Origin (curl, CloudEvents brokers,
// same-origin GETs) go through untouched.
package cors

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Policy says which origins may call and what they may send.
type Policy struct {
	// Origins are the allowed origins, as browsers send them ("https://portal.example").
	Origins []string
	// Credentials lets the browser send cookies (Access-Control-Allow-Credentials).
	Credentials bool
	// Methods and Headers are what a preflight allows.
	Methods []string
	Headers []string
	// Expose are the response headers a page may read besides the CORS-safelisted ones.
	Expose []string
	// Setting names where the origins are configured, for the refusal's message.
	Setting string
	// Refuse writes a refusal; nil writes the problem as it is.
	Refuse func(http.ResponseWriter, problem.Problem)
}

// Handler wraps next with the policy.
func (p Policy) Handler(next http.Handler) http.Handler {
	allowed := make(map[string]bool, len(p.Origins))
	for _, o := range p.Origins {
		allowed[o] = true
	}
	refuse := p.Refuse
	if refuse == nil {
		refuse = problem.Write
	}
	methods, headers, expose := strings.Join(p.Methods, ", "), strings.Join(p.Headers, ", "), strings.Join(p.Expose, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		ok := origin != "" && allowed[origin]
		if ok {
			h.Set("Access-Control-Allow-Origin", origin)
			if p.Credentials {
				h.Set("Access-Control-Allow-Credentials", "true")
			}
			if expose != "" {
				h.Set("Access-Control-Expose-Headers", expose)
			}
		}
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if origin != "" && !ok && (preflight || !SameOrigin(origin, r)) {
			refuse(w, problem.Forbidden(fmt.Sprintf("origin %q is not allowed (%s)", origin, p.Setting)))
			return
		}
		if preflight {
			h.Set("Access-Control-Allow-Methods", methods)
			h.Set("Access-Control-Allow-Headers", headers)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SameOrigin says whether origin is the host the request was sent to: browsers send an
// Origin with same-origin POSTs and DELETEs too. The scheme is not compared: behind a
// TLS-terminating proxy the service cannot know it, and a foreign page differs by host.
func SameOrigin(origin string, r *http.Request) bool {
	_, host, ok := strings.Cut(origin, "://")
	return ok && host != "" && strings.EqualFold(host, r.Host)
}

// ParseOrigins reads a comma-separated list of origins, each scheme://host[:port] with
// nothing after it (a trailing slash is dropped), as browsers send them. There is no
// wildcard: every origin is named.
func ParseOrigins(v string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSuffix(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		scheme, host, ok := strings.Cut(o, "://")
		if !ok || (scheme != "http" && scheme != "https") || host == "" || strings.ContainsAny(host, "/?#@ ") {
			return nil, fmt.Errorf("origin %q: want scheme://host[:port], as a browser sends it", o)
		}
		out = append(out, o)
	}
	return out, nil
}
