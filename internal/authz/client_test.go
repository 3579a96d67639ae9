package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/client-go/rest"
)

// TestNewReviewerForConfig: the reviewer's client ignores the limits of the config it was
// given (a QPS of 1 would make these reviews take many seconds), leaves that config as it
// was, and sends real TokenReviews.
func TestNewReviewerForConfig(t *testing.T) {
	var reviews atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/apis/authentication.k8s.io/v1/tokenreviews") {
			t.Errorf("unexpected %s %s %s", req.Method, req.URL.Path, req.Header.Get("Content-Type"))
			http.Error(w, "unexpected", http.StatusNotFound)
			return
		}
		reviews.Add(1)
		var tr authnv1.TokenReview
		if err := json.NewDecoder(req.Body).Decode(&tr); err != nil {
			t.Errorf("decode: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tr.APIVersion, tr.Kind = "authentication.k8s.io/v1", "TokenReview"
		tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "user-" + tr.Spec.Token}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&tr)
	}))
	defer srv.Close()

	if _, err := NewReviewerForConfig(nil, Options{}); err == nil {
		t.Fatal("a nil config was accepted")
	}
	// JSON, so that this small server can read it (the default is protobuf).
	cfg := &rest.Config{Host: srv.URL, QPS: 1, Burst: 1, ContentConfig: rest.ContentConfig{ContentType: "application/json"}}
	r, err := NewReviewerForConfig(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS != 1 || cfg.Burst != 1 || cfg.Proxy != nil {
		t.Fatalf("the given config was changed: %+v", cfg)
	}
	const n = 50
	began := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tok := fmt.Sprint(i)
			if u, err := r.Authenticate(context.Background(), tok); err != nil || u.Name != "user-"+tok {
				t.Errorf("token %s: %+v, %v", tok, u, err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("%d reviews took %s: the config's QPS still applies", n, took)
	}
	if got := reviews.Load(); got != n {
		t.Fatalf("server saw %d reviews, want %d", got, n)
	}
}
