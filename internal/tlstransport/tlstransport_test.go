package tlstransport

import (
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewTrust(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ca := writeFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	// The test server's certificate is self-signed: only its CA bundle, or no
	// verification, reaches it.
	tests := []struct {
		name     string
		caFile   string
		insecure bool
		reaches  bool
	}{
		{"system roots", "", false, false},
		{"CA bundle", ca, false, true},
		{"no verification", "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := New(tt.caFile, tt.insecure)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			if tr.TLSClientConfig.MinVersion != tls.VersionTLS12 {
				t.Errorf("minimum TLS version %x", tr.TLSClientConfig.MinVersion)
			}
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			if reached := err == nil; reached != tt.reaches {
				t.Fatalf("reached %v (%v), want %v", reached, err, tt.reaches)
			}
		})
	}
}

func TestNewRefusesBadBundles(t *testing.T) {
	empty := writeFile(t, "empty.pem", []byte("not a certificate\n"))
	for file, want := range map[string]string{
		filepath.Join(t.TempDir(), "absent.pem"): "CA bundle: open ",
		empty:                                    "CA bundle " + empty + ": no certificate in it",
	} {
		if _, err := New(file, false); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to contain %q", file, err, want)
		}
	}
}
