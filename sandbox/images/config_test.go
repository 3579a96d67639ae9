package images

import (
	"io"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestLoad(t *testing.T) {
	defaults := Config{
		Repo: ".", Out: ".state/images", Registry: "ghcr.io/dwp-sre", Version: "dev",
		Source: "https://github.com/dwp-sre/dwp-sre", Created: time.Unix(0, 0).UTC(),
		Kustomization: "deploy/overlays/production/images/kustomization.yaml",
	}
	with := func(f func(*Config)) Config { c := defaults; f(&c); return c }
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    Config
		wantErr string
	}{
		{name: "defaults", want: defaults},
		{
			name: "environment",
			env: map[string]string{
				"DWP_IMAGES_VERSION": "v1.2.0-3-gabcdef0-dirty", "DWP_IMAGES_REVISION": "abcdef0",
				"SOURCE_DATE_EPOCH": "1700000000", "DWP_IMAGES_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt",
				"DWP_IMAGES_REGISTRY": "registry.example:5000/team/", "DWP_IMAGES_KUSTOMIZATION": "",
			},
			want: with(func(c *Config) {
				c.Version, c.Revision = "v1.2.0-3-gabcdef0-dirty", "abcdef0"
				c.Created = time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
				c.CACerts, c.Registry = "/etc/ssl/certs/ca-certificates.crt", "registry.example:5000/team"
			}),
		},
		{
			name: "a flag wins over its variable",
			env:  map[string]string{"DWP_IMAGES_VERSION": "from-env", "DWP_IMAGES_OUT": "env-out"},
			args: []string{"-version", "from-flag", "-arch", "arm64", "-licenses", "Apache-2.0", "-kustomization", ""},
			want: with(func(c *Config) {
				c.Version, c.Out, c.Arch, c.Licenses, c.Kustomization = "from-flag", "env-out", "arm64", "Apache-2.0", ""
			}),
		},
		{name: "a tag with a space", env: map[string]string{"DWP_IMAGES_VERSION": "v1 beta"}, wantErr: "DWP_IMAGES_VERSION"},
		{name: "a tag starting with a dot", args: []string{"-version", ".v1"}, wantErr: "not a tag"},
		{name: "a tag too long", args: []string{"-version", strings.Repeat("a", 129)}, wantErr: "not a tag"},
		{name: "a negative epoch", env: map[string]string{"SOURCE_DATE_EPOCH": "-1"}, wantErr: "SOURCE_DATE_EPOCH"},
		{name: "a fractional epoch", env: map[string]string{"SOURCE_DATE_EPOCH": "1.5"}, wantErr: "SOURCE_DATE_EPOCH"},
		{name: "an upper-case registry path", env: map[string]string{"DWP_IMAGES_REGISTRY": "ghcr.io/DWP"}, wantErr: "DWP_IMAGES_REGISTRY"},
		{name: "an argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSpecs(t *testing.T) {
	c := Config{
		Repo: "/src", Out: "out", Registry: "ghcr.io/dwp-sre", Version: "v1", Revision: "abc",
		Source: "https://example/src", Licenses: "MIT", Created: time.Unix(5, 0).UTC(), Arch: "arm64", CACerts: "ca.pem",
	}
	specs := c.Specs()
	want := []struct{ name, pkg, out string }{
		{"ghcr.io/dwp-sre/dwp-function", "./cmd/dwp-function", filepath.Join("out", "dwp-function.tar")},
		{"ghcr.io/dwp-sre/sse-router", "./sse-router", filepath.Join("out", "sse-router.tar")},
		{"ghcr.io/dwp-sre/watcher", "./watcher", filepath.Join("out", "watcher.tar")},
	}
	if len(specs) != len(want) {
		t.Fatalf("%d specs, want %d", len(specs), len(want))
	}
	for i, s := range specs {
		w := want[i]
		if s.Name != w.name || s.Package != w.pkg || s.Out != w.out {
			t.Errorf("spec %d: %s %s %s, want %s %s %s", i, s.Name, s.Package, s.Out, w.name, w.pkg, w.out)
		}
		if s.Tag != "v1" || s.Dir != "/src" || s.Revision != "abc" || s.Source != c.Source || s.Licenses != "MIT" ||
			!s.Created.Equal(c.Created) || s.Architecture() != "arm64" || s.CACerts != "ca.pem" || s.Description == "" {
			t.Errorf("spec %d does not carry the configuration: %+v", i, s)
		}
		if s.Entrypoint() != "/usr/local/bin/"+filepath.Base(w.name) {
			t.Errorf("spec %d: entrypoint %s", i, s.Entrypoint())
		}
		if err := s.validate(); err != nil {
			t.Errorf("spec %d: %v", i, err)
		}
	}
}

func FuzzParseEpoch(f *testing.F) {
	for _, s := range []string{"0", "1700000000", "253402300799", "253402300800", "-1", "1e9", " 1", "+5", "", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseEpoch(s)
		if err != nil {
			return
		}
		n, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil || n < 0 || n > maxEpoch {
			t.Fatalf("%q accepted as %v", s, got)
		}
		if got.Unix() != n || got.Location() != time.UTC {
			t.Fatalf("%q read as %v", s, got)
		}
		// The created label is RFC 3339 and must read back as the same instant.
		back, err := time.Parse(time.RFC3339, got.Format(time.RFC3339))
		if err != nil || !back.Equal(got) {
			t.Fatalf("%q: created %s does not read back (%v)", s, got.Format(time.RFC3339), err)
		}
	})
}

func FuzzLoadVersion(f *testing.F) {
	for _, s := range []string{"dev", "v1.2.3", "e762b95-dirty", "v1 beta", ".x", "_x", "a:b", "a/b", strings.Repeat("a", 128)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := Load([]string{"-version", v}, func(string) string { return "" }, io.Discard)
		if err != nil {
			return
		}
		// Every version taken must make every image's reference.
		for _, s := range c.Specs() {
			ref, err := s.Ref()
			if err != nil {
				t.Fatalf("version %q taken, but %s: %v", v, s.Name, err)
			}
			if ref.TagStr() != v {
				t.Fatalf("version %q became tag %q", v, ref.TagStr())
			}
			if _, err := name.ParseReference(ref.Name(), name.StrictValidation); err != nil {
				t.Fatalf("%s does not parse back: %v", ref.Name(), err)
			}
		}
	})
}
