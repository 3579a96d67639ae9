package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// keyPair is a certificate and its key, on disk as PEM.
type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertFile and KeyFile are the PEM files.
	CertFile, KeyFile string
}

type certSpec struct {
	commonName string
	orgs       []string
	ips        []net.IP
	dns        []string
	usages     []x509.ExtKeyUsage
}

// loadOrCreateCA returns the CA stored under dir/name.{crt,key}, creating it on first use.
func loadOrCreateCA(dir, name string) (*keyPair, error) {
	return loadOrMake(dir, name, nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	})
}

// issue returns the certificate stored under dir/name.{crt,key}, issuing it from ca on first use.
func (ca *keyPair) issue(dir, name string, spec certSpec) (*keyPair, error) {
	return loadOrMake(dir, name, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: spec.commonName, Organization: spec.orgs},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: spec.usages,
		IPAddresses: spec.ips,
		DNSNames:    spec.dns,
	})
}

// loadOrMake returns the key pair stored under dir/name.{crt,key}; on first use it makes
// one from tmpl, valid for ten years, signed by parent (nil: self-signed), and stores it.
func loadOrMake(dir, name string, parent *keyPair, tmpl *x509.Certificate) (*keyPair, error) {
	kp := &keyPair{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	if ok, err := kp.load(); err != nil || ok {
		return kp, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().AddDate(10, 0, 0)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", name, err)
	}
	return kp, kp.store(der, key)
}

func (kp *keyPair) load() (bool, error) {
	certPEM, err := os.ReadFile(kp.CertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	keyPEM, err := os.ReadFile(kp.KeyFile)
	if err != nil {
		return false, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return false, fmt.Errorf("%s: not PEM", kp.CertFile)
	}
	if kp.cert, err = x509.ParseCertificate(cb.Bytes); err != nil {
		return false, fmt.Errorf("%s: %w", kp.CertFile, err)
	}
	if kp.key, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
		return false, fmt.Errorf("%s: %w", kp.KeyFile, err)
	}
	return true, nil
}

func (kp *keyPair) store(der []byte, key *ecdsa.PrivateKey) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	kp.cert, kp.key = cert, key
	if err := os.WriteFile(kp.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(kp.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// ensureServiceAccountKey writes the RSA key the API server signs service-account tokens with.
func ensureServiceAccountKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}
