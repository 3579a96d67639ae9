package controlplane

import (
	"bufio"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The pinned manifest versions must be the versions the components are built from.
func TestPinnedVersionsMatchComponentModules(t *testing.T) {
	cases := []struct{ gomod, module, version string }{
		{"../modules/argo/go.mod", "github.com/argoproj/argo-workflows/v3", argoWorkflowsVersion},
		{"../modules/kube/go.mod", "sigs.k8s.io/kwok", kwokVersion},
		{"../modules/kube/go.mod", "k8s.io/kubernetes", kubeVersion},
		{"../modules/argocd/go.mod", "github.com/argoproj/argo-cd/v2", argoCDVersion},
		{"../modules/argocd/go.mod", "helm.sh/helm/v3", helmVersion},
		{"../modules/argocd/go.mod", "sigs.k8s.io/kustomize/kustomize/v5", kustomizeVersion},
	}
	for _, tc := range cases {
		b, err := os.ReadFile(tc.gomod)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(tc.module) + `\s+(v\S+)`)
		m := re.FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s does not require %s", tc.gomod, tc.module)
		}
		if string(m[1]) != tc.version {
			t.Errorf("%s requires %s %s, manifests pinned at %s", tc.gomod, tc.module, m[1], tc.version)
		}
	}
}

func TestCertificatesAreIssuedOnceAndVerify(t *testing.T) {
	dir := t.TempDir()
	ca, err := loadOrCreateCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.issue(dir, "serving", certSpec{commonName: "s", ips: []net.IP{net.IPv4(127, 0, 0, 1)}, usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	if _, err := srv.cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("serving cert does not verify against its CA: %v", err)
	}
	if err := srv.cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	again, err := ca.issue(dir, "serving", certSpec{commonName: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.cert.Equal(srv.cert) {
		t.Fatal("a second start issued a new certificate; it must reuse the stored one")
	}
}

func TestTokensAreStableAndListEveryUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.csv")
	first, err := ensureTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := ensureTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range append([]string{"admin"}, TestUsers...) {
		if first[u] == "" || first[u] != second[u] {
			t.Errorf("token of %s: %q then %q", u, first[u], second[u])
		}
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `,admin,admin,"system:masters"`) {
		t.Errorf("admin is not in system:masters:\n%s", b)
	}
}

func TestDecodeYAMLDocuments(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{"two documents and an empty one", "apiVersion: v1\nkind: A\n---\n---\napiVersion: v1\nkind: B\n", 2, false},
		{"comment only", "# nothing\n", 0, false},
		{"no kind", "apiVersion: v1\nmetadata: {}\n", 0, true},
		{"broken", "kind: [\n", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeYAMLDocuments([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if len(got) != tc.want {
				t.Fatalf("%d documents, want %d", len(got), tc.want)
			}
		})
	}
}

func TestOwnManifestsAreTemplatedCompletely(t *testing.T) {
	vars := map[string]string{}
	for _, k := range []string{"NODE_NAME", "ARGO_NAMESPACE", "CLUSTER_NAME", "PG_HOST", "PG_PORT", "PG_USER", "PG_PASSWORD", "ARCHIVE_DB", "METRICS_IP", "METRICS_PORT",
		"ARGOCD_NAMESPACE", "ARGOCD_SECRET_KEY", "STORAGE_CLASS", "VOLUME_PROVISIONER", "INGRESS_CLASS", "INGRESS_CONTROLLER",
		"S3_ENDPOINT", "S3_BUCKET", "S3_REGION", "ARTIFACT_SECRET"} {
		vars[k] = "x1"
	}
	objs, err := readOwnManifests(vars)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < 5 {
		t.Fatalf("%d objects", len(objs))
	}
	for _, o := range objs {
		if strings.Contains(toString(o), "${") {
			t.Errorf("unreplaced variable in %v", o["kind"])
		}
	}
}

func toString(v any) string {
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				b.WriteString(k + " ")
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			b.WriteString(x + " ")
		}
	}
	walk(v)
	return b.String()
}

func TestEgressProxyMapsMadeUpAddressesToLoopbackOnly(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	port := backend.Addr().(*net.TCPAddr).Port
	p := &egressProxy{socket: filepath.Join(t.TempDir(), "e.sock"), mapped: map[string]bool{"10.9.9.9": true}, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	defer p.close()
	connect := func(target string) (net.Conn, *bufio.Reader, int) {
		c, err := net.Dial("unix", p.socket)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, br, resp.StatusCode
	}
	c, br, code := connect(net.JoinHostPort("10.9.9.9", itoa(port)))
	if code != 200 {
		t.Fatalf("mapped address: status %d", code)
	}
	io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo through the proxy: %q %v", line, err)
	}
	c.Close()
	for _, target := range []string{
		"192.0.2.1:443",                    // an address off the machine
		"[2001:db8::1]:443",                // the same in IPv6
		"example.com:443",                  // a name, which could resolve anywhere
		"localhost:" + itoa(port),          // a name, even this one: the proxy dials addresses only
		"10.9.9.10:" + itoa(port),          // an unmapped address of the cluster's ranges
		"0.0.0.0:" + itoa(port),            // unspecified, not loopback
		"[::ffff:192.0.2.1]:" + itoa(port), // IPv4-mapped, off the machine
	} {
		if _, _, code := connect(target); code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", target, code)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestTakenPortIsNamed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	ports, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPortsFree(ports); err != nil {
		t.Fatalf("free ports reported taken: %v", err)
	}
	ports.APIServer = taken
	err = checkPortsFree(ports)
	if err == nil || !strings.Contains(err.Error(), "port "+strconv.Itoa(taken)+" for kube-apiserver is taken") {
		t.Fatalf("want an error naming the taken API server port, got %v", err)
	}
}
