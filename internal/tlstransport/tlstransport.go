// Package tlstransport makes HTTP transports for services whose TLS certificate may be
// signed by a private CA (argo-server's, for one): a CA bundle file replaces the system
// roots, and verification can be turned off for self-signed certificates.
package tlstransport

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
)

// New is a clone of http.DefaultTransport requiring TLS 1.2 or later. caFile, when not
// empty, is the PEM bundle the server's certificate is checked against instead of the
// system roots; insecureSkipVerify does not check it at all.
func New(caFile string, insecureSkipVerify bool) (*http.Transport, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecureSkipVerify} //nolint:gosec // opt-in for self-signed certificates
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s: no certificate in it", caFile)
		}
		cfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return tr, nil
}
