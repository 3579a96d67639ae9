package sink

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The token file is read again when it changes (a rotation), and its token is sent.
func TestTokenFileRotation(t *testing.T) {
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token")
	if _, err := NewTokenFile(path); err == nil {
		t.Fatal("a missing token file was accepted")
	}
	if err := os.WriteFile(path, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: tf.Transport(nil)}
	send := func() string {
		t.Helper()
		resp, err := c.Post(srv.URL, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return <-got
	}
	if h := send(); h != "Bearer first" {
		t.Fatalf("sent %q", h)
	}
	// As the kubelet does: a new file swapped in (a different size and time).
	next := path + ".new"
	if err := os.WriteFile(next, []byte("second-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(next, later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	if h := send(); h != "Bearer second-token" {
		t.Fatalf("after rotation sent %q", h)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Post(srv.URL, "text/plain", nil); err == nil {
		t.Fatal("sent with an empty token file")
	}
}
