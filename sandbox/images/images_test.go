package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/yaml"
)

func TestLabels(t *testing.T) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name string
		spec Spec
		want map[string]string
	}{
		{
			name: "every label",
			spec: Spec{
				Name: "ghcr.io/dwp-sre/watcher", Tag: "v1.0.0", Created: created, Description: "the watcher",
				Source: "https://github.com/dwp-sre/dwp-sre", Revision: "0123abcd", Licenses: "Apache-2.0",
			},
			want: map[string]string{
				LabelTitle: "watcher", LabelVersion: "v1.0.0", LabelCreated: "2024-05-06T07:08:09Z",
				LabelDescription: "the watcher", LabelSource: "https://github.com/dwp-sre/dwp-sre",
				LabelRevision: "0123abcd", LabelLicenses: "Apache-2.0",
			},
		},
		{
			name: "what is not known is left out",
			spec: Spec{Name: "ghcr.io/dwp-sre/sse-router", Binary: "router", Tag: "dev"},
			want: map[string]string{LabelTitle: "router", LabelVersion: "dev", LabelCreated: "1970-01-01T00:00:00Z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spec.Created.IsZero() {
				tt.spec.Created = time.Unix(0, 0)
			}
			if got := tt.spec.Labels(); !maps.Equal(got, tt.want) {
				t.Errorf("labels\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestKustomization(t *testing.T) {
	d := func(c byte) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(c), 64)} }
	imgs := []Image{
		{Name: "ghcr.io/dwp-sre/watcher", Tag: "v1", Digest: d('c')},
		{Name: "ghcr.io/dwp-sre/dwp-function", Tag: "v1", Digest: d('a')},
		{Name: "ghcr.io/dwp-sre/sse-router", Tag: "v1", Digest: d('b')},
	}
	want := "# Written by `make images`: the images it built, named by digest.\n" +
		"apiVersion: kustomize.config.k8s.io/v1alpha1\n" +
		"kind: Component\n" +
		"images:\n" +
		"- name: ghcr.io/dwp-sre/dwp-function\n  digest: sha256:" + strings.Repeat("a", 64) + "\n" +
		"- name: ghcr.io/dwp-sre/sse-router\n  digest: sha256:" + strings.Repeat("b", 64) + "\n" +
		"- name: ghcr.io/dwp-sre/watcher\n  digest: sha256:" + strings.Repeat("c", 64) + "\n"
	if got := string(Kustomization(imgs)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if imgs[0].Name != "ghcr.io/dwp-sre/watcher" {
		t.Error("Kustomization sorted its caller's slice")
	}

	// What kustomize reads of it.
	path := filepath.Join(t.TempDir(), "overlays", "images", "kustomization.yaml")
	if err := WriteKustomization(path, imgs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Images     []struct {
			Name   string `json:"name"`
			Digest string `json:"digest"`
		} `json:"images"`
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatal(err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1alpha1" || k.Kind != "Component" || len(k.Images) != 3 ||
		k.Images[2].Name != "ghcr.io/dwp-sre/watcher" || k.Images[2].Digest != d('c').String() {
		t.Errorf("read back as %+v", k)
	}
}

// entries reads a layer's tar: each entry's header and body by name, in order.
func entries(t *testing.T, r io.Reader) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	var hs []*tar.Header
	bodies := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hs, bodies
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hs, bodies[h.Name] = append(hs, h), b
	}
}

// writePEM writes a PEM bundle (its one certificate need not parse: it is only copied).
func writePEM(t *testing.T, dir string) string {
	t.Helper()
	pem := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(pem, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return pem
}

func TestBaseLayer(t *testing.T) {
	dir := t.TempDir()
	pem := writePEM(t, dir)
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 0).UTC()
	for _, tc := range []struct {
		name, ca string
		wantCA   bool
		wantErr  string
	}{
		{name: "without CA certificates"},
		{name: "with CA certificates", ca: pem, wantCA: true},
		{name: "a CA file without a certificate", ca: notPEM, wantErr: "no PEM certificate"},
		{name: "a CA file that is not there", ca: filepath.Join(dir, "absent.pem"), wantErr: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := baseLayer(Spec{Created: created, CACerts: tc.ca})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mt, _ := l.MediaType(); mt != "application/vnd.oci.image.layer.v1.tar+gzip" {
				t.Errorf("media type %s", mt)
			}
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			hs, bodies := entries(t, rc)
			byName := map[string]*tar.Header{}
			for _, h := range hs {
				byName[h.Name] = h
				if !h.ModTime.Equal(created) {
					t.Errorf("%s dated %v, want %v", h.Name, h.ModTime, created)
				}
			}
			if !strings.Contains(string(bodies["etc/passwd"]), "nonroot:x:65532:65532:") ||
				!strings.Contains(string(bodies["etc/group"]), "nonroot:x:65532:") {
				t.Errorf("no nonroot user: passwd %q group %q", bodies["etc/passwd"], bodies["etc/group"])
			}
			if h := byName["tmp/"]; h == nil || h.FileInfo().Mode() != fs.ModeDir|fs.ModeSticky|0o777 {
				t.Errorf("/tmp: %+v", h)
			}
			if h := byName["home/nonroot/"]; h == nil || h.Uid != UID || h.Gid != GID {
				t.Errorf("/home/nonroot: %+v", h)
			}
			if _, ok := byName["usr/local/bin/"]; !ok {
				t.Error("no /usr/local/bin")
			}
			_, gotCA := bodies[strings.TrimPrefix(CACertsPath, "/")]
			if gotCA != tc.wantCA {
				t.Errorf("CA bundle in the layer: %v, want %v", gotCA, tc.wantCA)
			}
		})
	}
}

// helloSpec builds testdata/hello, a tiny program, into out.
func helloSpec(t *testing.T, out string) Spec {
	t.Helper()
	return Spec{
		Name: "registry.example/dwp/hello", Tag: "t1", Dir: ".", Package: "./testdata/hello",
		Created: time.Unix(1700000000, 0), Source: "https://example/src", Revision: "abc123",
		Out: out,
	}
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// Building the same spec twice, in different places, gives the same digest and the same
// tarball; what goes into the image changes the digest.
func TestBuildIsReproducible(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := helloSpec(t, filepath.Join(dir, "a", "hello.tar"))
	first, err := Build(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	again := base
	again.Out = filepath.Join(dir, "b", "hello.tar")
	second, err := Build(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if first.Digest != second.Digest {
		t.Fatalf("built twice: %s, then %s", first.Digest, second.Digest)
	}
	if sum(t, first.Path) != sum(t, second.Path) {
		t.Error("the same image gave two different tarballs")
	}
	if first.Digest.Algorithm != "sha256" || len(first.Digest.Hex) != 64 {
		t.Errorf("digest %s", first.Digest)
	}

	changes := map[string]func(*Spec){
		"created":  func(s *Spec) { s.Created = s.Created.Add(time.Second) },
		"revision": func(s *Spec) { s.Revision = "def456" },
		"ca":       func(s *Spec) { s.CACerts = writePEM(t, dir) },
		// Another architecture compiles another binary.
		"arch": func(s *Spec) {
			if s.Architecture() == "arm64" {
				s.Arch = "amd64"
			} else {
				s.Arch = "arm64"
			}
		},
	}
	for what, change := range changes {
		s := base
		s.Out = filepath.Join(dir, what, "hello.tar")
		change(&s)
		img, err := Build(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if img.Digest == first.Digest {
			t.Errorf("another %s, the same digest %s", what, img.Digest)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	ok := helloSpec(t, filepath.Join(dir, "hello.tar"))
	for _, tc := range []struct {
		name    string
		change  func(*Spec)
		wantErr string
	}{
		{"no tag", func(s *Spec) { s.Tag = "" }, "no tag"},
		{"a bad tag", func(s *Spec) { s.Tag = "-v1" }, "not a tag"},
		{"a bad name", func(s *Spec) { s.Name = "Registry.example/UPPER" }, "image reference"},
		{"no package", func(s *Spec) { s.Package = "" }, "no Go package"},
		{"no output", func(s *Spec) { s.Out = "" }, "no output file"},
		{"a binary name with a slash", func(s *Spec) { s.Binary = "a/b" }, "not a file name"},
		{"a package that does not build", func(s *Spec) { s.Package = "./testdata/absent" }, "go build ./testdata/absent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.change(&s)
			_, err := Build(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tc.wantErr)
			}
			if _, err := os.Stat(s.Out); s.Out != "" && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s written anyway", s.Out)
			}
		})
	}
}

// The configuration the image is run by.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	s := helloSpec(t, filepath.Join(dir, "hello.tar"))
	if err := compile(context.Background(), s, filepath.Join(dir, "hello")); err != nil {
		t.Fatal(err)
	}
	img, err := assemble(s, filepath.Join(dir, "hello"), dir)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	want := v1.Config{
		User: "65532:65532", Entrypoint: []string{"/usr/local/bin/hello"}, WorkingDir: "/",
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}, Labels: s.Labels(),
	}
	if !reflect.DeepEqual(cf.Config, want) {
		t.Errorf("config\n got %+v\nwant %+v", cf.Config, want)
	}
	if cf.OS != "linux" || cf.Architecture != s.Architecture() || !cf.Created.Equal(s.Created) {
		t.Errorf("os %s, architecture %s, created %v", cf.OS, cf.Architecture, cf.Created)
	}
	if len(cf.History) != 2 || len(cf.RootFS.DiffIDs) != 2 {
		t.Errorf("history %d, layers %d; want 2 each", len(cf.History), len(cf.RootFS.DiffIDs))
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
		t.Errorf("manifest %s, config %s", m.MediaType, m.Config.MediaType)
	}
	if !maps.Equal(m.Annotations, s.Labels()) {
		t.Errorf("manifest annotations %v", m.Annotations)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hs, bodies := entries(t, rc)
	if len(hs) != 1 || hs[0].Name != "usr/local/bin/hello" || hs[0].Mode != 0o755 || hs[0].Uid != 0 ||
		!bytes.HasPrefix(bodies["usr/local/bin/hello"], []byte("\x7fELF")) {
		t.Errorf("binary layer: %+v", hs)
	}
}
