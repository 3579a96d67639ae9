package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Browsers never see the router's addresses: a stable code and message instead, the
// detail in the log.
func TestErrorPayloadHidesAddresses(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6443}, Err: errors.New("connect: connection refused")}
	pods := schema.GroupResource{Resource: "pods"}
	tests := []struct {
		name     string
		err      error
		code     string
		status   int
		contains string
	}{
		{"dial", fmt.Errorf(`Get "https://127.0.0.1:6443/api/v1/pods?watch=1": %w`, dial), CodeUpstreamUnavailable, 0, "could not be reached"},
		{"kubelet behind a 500", apierrors.NewInternalError(errors.New(`Get "https://10.0.0.5:10250/containerLogs/shop/web-1/main": dial tcp 10.0.0.5:10250: i/o timeout`)), CodeUpstreamUnavailable, 500, "unavailable"},
		{"aggregated API down", apierrors.NewServiceUnavailable("error trying to reach service: dial tcp [fd00::12]:443: connect: no route to host"), CodeUpstreamUnavailable, 503, "unavailable"},
		{"router's own rights", apierrors.NewForbidden(pods, "", errors.New(`User "system:serviceaccount:dwp-system:dwp-sse-router" cannot list`)), CodeUpstreamRefused, 403, "refused the router"},
		{"not found", apierrors.NewNotFound(pods, "web-1"), CodeNotFound, 404, `pods "web-1" not found`},
		{"bad request with an address", apierrors.NewBadRequest(`container "main" in pod "web-1" is waiting: Get https://kubelet.internal:10250/x: 10.1.2.3:10250 refused`), CodeInvalid, 400, `container "main" in pod "web-1" is waiting`},
		{"router's words", &PublicError{Code: CodeGap, Message: "the first lines are no longer kept"}, CodeGap, 0, "the first lines are no longer kept"},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), CodeUpstreamUnavailable, 429, "unavailable"},
		{"conflict", apierrors.NewConflict(pods, "web-1", errors.New("x")), CodeUpstreamError, 409, "409 Conflict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ErrorPayloadOf(tt.err, true)
			b, _ := json.Marshal(p)
			wire := string(b)
			for _, leak := range []string{"127.0.0.1", "6443", "10.0.0.5", "10250", "fd00", "kubelet.internal", "10.1.2.3", "dial", "serviceaccount", "https://"} {
				if strings.Contains(wire, leak) {
					t.Errorf("event shows %q: %s", leak, wire)
				}
			}
			if p.Type != EventError || p.Code != tt.code || p.Status != tt.status || !strings.Contains(p.Message, tt.contains) {
				t.Errorf("payload %+v, want code %s status %d message containing %q", p, tt.code, tt.status, tt.contains)
			}
			if tt.code != CodeGap && !strings.HasSuffix(p.Message, "; retrying") {
				t.Errorf("retrying not said: %q", p.Message)
			}
		})
	}
	if p := ErrorPayloadOf(dial, false); strings.Contains(p.Message, "retrying") || p.Retrying {
		t.Errorf("final error says retrying: %+v", p)
	}
}

func FuzzScrub(f *testing.F) {
	f.Add(`dial tcp 127.0.0.1:6443: connect: connection refused`)
	f.Add(`Get "https://[::1]:10250/containerLogs": EOF`)
	f.Fuzz(func(t *testing.T, msg string) {
		out := scrub(msg)
		if addressLike.MatchString(out) && !strings.Contains(msg, "…") {
			t.Fatalf("scrub(%q) = %q still holds an address", msg, out)
		}
	})
}
