package images

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/dwp-sre/dwp-sre/internal/envflag"
)

// Target is one of the project's services made into an image.
type Target struct {
	// Binary names the image (under the registry) and its executable.
	Binary string
	// Package is the main package, relative to the module's root.
	Package string
	// Description is the image's org.opencontainers.image.description.
	Description string
}

// Targets are the images `make images` builds, sorted by name.
var Targets = []Target{
	{Binary: "dwp-function", Package: "./cmd/dwp-function", Description: "DWP task function: Argo Workflows, GitOps CD runs and app summaries (Knative Service)"},
	{Binary: "sse-router", Package: "./sse-router", Description: "DWP SSE router: shared live streams of pods, logs, workflows, metrics and apps, and the web console"},
	{Binary: "watcher", Package: "./watcher", Description: "DWP watcher: Pods, Workflows and Argo CD Applications as CloudEvents"},
}

// Config is what dwp-images is asked to build.
type Config struct {
	// Repo is the Go module's root.
	Repo string
	// Out is the folder of the tarballs, <binary>.tar each.
	Out string
	// Registry prefixes every image's name (ghcr.io/dwp-sre).
	Registry string
	// Version tags the images; Revision is the source's commit.
	Version, Revision string
	// Source and Licenses fill the OCI labels of the same names (empty: left out).
	Source, Licenses string
	// Created is the images' created time (SOURCE_DATE_EPOCH).
	Created time.Time
	// Arch is the GOARCH (empty: this machine's).
	Arch string
	// CACerts is the PEM bundle put into the images (empty: none).
	CACerts string
	// Kustomization is the kustomize component naming the images by digest (empty: not written).
	Kustomization string
}

var settings = []envflag.Setting[Config]{
	envflag.String("DWP_IMAGES_REPO", "repo", ".", "the Go module's root", func(c *Config) *string { return &c.Repo }),
	envflag.String("DWP_IMAGES_OUT", "out", ".state/images", "folder the OCI image layout tarballs are written to (<name>.tar)", func(c *Config) *string { return &c.Out }),
	envflag.Func("DWP_IMAGES_REGISTRY", "registry", "ghcr.io/dwp-sre", "registry and path prefix of the images' names", func(c *Config, v string) error {
		v = strings.TrimSuffix(v, "/")
		if _, err := name.NewRepository(v+"/x", name.StrictValidation); err != nil {
			return err
		}
		c.Registry = v
		return nil
	}),
	envflag.Func("DWP_IMAGES_VERSION", "version", "dev", "the images' tag and org.opencontainers.image.version (make: git describe --always --dirty)", func(c *Config, v string) error {
		if err := checkTag(v); err != nil {
			return err
		}
		c.Version = v
		return nil
	}),
	envflag.String("DWP_IMAGES_REVISION", "revision", "", "the source's commit, org.opencontainers.image.revision (make: git rev-parse HEAD; empty: left out)", func(c *Config) *string { return &c.Revision }),
	envflag.String("DWP_IMAGES_SOURCE", "source", "https://github.com/dwp-sre/dwp-sre", "org.opencontainers.image.source", func(c *Config) *string { return &c.Source }),
	envflag.String("DWP_IMAGES_LICENSES", "licenses", "", "org.opencontainers.image.licenses, an SPDX expression (empty: left out)", func(c *Config) *string { return &c.Licenses }),
	envflag.Func("SOURCE_DATE_EPOCH", "source-date-epoch", "0", "the images' created time and their files' times, in seconds since 1970 (reproducible-builds.org)", func(c *Config, v string) error {
		t, err := ParseEpoch(v)
		if err != nil {
			return err
		}
		c.Created = t
		return nil
	}),
	envflag.String("DWP_IMAGES_ARCH", "arch", "", "GOARCH of the images (empty: this machine's)", func(c *Config) *string { return &c.Arch }),
	envflag.String("DWP_IMAGES_CA_CERTS", "ca-certs", "", "PEM bundle of CA certificates put at "+CACertsPath+" (empty: none)", func(c *Config) *string { return &c.CACerts }),
	envflag.String("DWP_IMAGES_KUSTOMIZATION", "kustomization", "deploy/overlays/production/images/kustomization.yaml", "kustomize component naming the images by digest (empty: not written)", func(c *Config) *string { return &c.Kustomization }),
}

// maxEpoch is the last second of year 9999: RFC 3339, which the created time is written
// in, has four-digit years.
const maxEpoch = 253402300799

// ParseEpoch reads SOURCE_DATE_EPOCH: whole seconds since 1970, in UTC.
func ParseEpoch(v string) (time.Time, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > maxEpoch {
		return time.Time{}, fmt.Errorf("not a number of seconds from 0 to %d: %q", maxEpoch, v)
	}
	return time.Unix(n, 0).UTC(), nil
}

// Load reads the configuration from the environment (getenv) and then args (flags).
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	return envflag.Load("dwp-images", settings, args, getenv, usage)
}

// Specs are the targets' specs under this configuration.
func (c Config) Specs() []Spec {
	specs := make([]Spec, 0, len(Targets))
	for _, t := range Targets {
		specs = append(specs, Spec{
			Name: c.Registry + "/" + t.Binary, Tag: c.Version,
			Dir: c.Repo, Package: t.Package, Binary: t.Binary, Arch: c.Arch,
			Created: c.Created, Description: t.Description,
			Source: c.Source, Revision: c.Revision, Licenses: c.Licenses,
			CACerts: c.CACerts,
			Out:     filepath.Join(c.Out, t.Binary+".tar"),
		})
	}
	return specs
}
