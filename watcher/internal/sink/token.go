package sink

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// TokenFile is the watcher's identity towards the sink: a ServiceAccount token made for
// the receiver's audience, in a file that something else renews (the kubelet for a
// projected volume, Knative's SinkBinding at /oidc/token, `make run`'s refresher). The
// file is read again whenever it changes, so a rotated token is used from its first
// delivery on. The token is never logged.
type TokenFile struct {
	path string

	mu    sync.Mutex
	token string
	mod   time.Time
	size  int64
}

// NewTokenFile reads path once, so that a wrong path fails at startup.
func NewTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{path: path}
	if _, err := t.Token(); err != nil {
		return nil, err
	}
	return t, nil
}

// Token is the file's current token.
func (t *TokenFile) Token() (string, error) {
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", fmt.Errorf("sink token: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && fi.ModTime().Equal(t.mod) && fi.Size() == t.size {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("sink token: %w", err)
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", fmt.Errorf("sink token: %s is empty", t.path)
	}
	t.token, t.mod, t.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}

// Transport sends every request through base with "Authorization: Bearer <token>".
func (t *TokenFile) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return bearerTransport{tokens: t, base: base}
}

type bearerTransport struct {
	tokens *TokenFile
	base   http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := b.tokens.Token()
	if err != nil {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return b.base.RoundTrip(r)
}
