package manifest

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/Masterminds/semver/v3"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// A Helm release lives in the app's folder as a kustomize HelmChartInflationGenerator: the
// chart's repository, name and version and the release's values are all in git, and Argo
// CD renders the chart when it builds the folder (kustomize --enable-helm, set in argocd-cm
// as kustomize.buildOptions). Upgrading the chart or changing values is a commit like any.

// Bounds of a Helm release's parameters.
const (
	maxReleaseName = 53 // Helm's own limit
	maxValuesBytes = 64 << 10
)

// helmPrefix starts the file of each release: the kustomization lists them as generators.
const helmPrefix = "helm-"

type helmRelease struct {
	target  Target
	repo    string
	chart   string
	version string
	release string
	values  map[string]any
}

func parseHelm(t Target, r *reader) *helmRelease {
	h := &helmRelease{target: t, chart: r.dnsLabel("chart", validation.DNS1123LabelMaxLength)}
	if repo := r.get("repo"); repo != "" {
		u, err := url.Parse(repo)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "oci"):
			r.fail("repo", "must be an https, http or oci URL of a chart repository")
		case u.User != nil:
			r.fail("repo", "must not hold credentials: they would be committed to git")
		case len(repo) > 2048:
			r.fail("repo", "must be at most 2048 characters")
		default:
			h.repo = repo
		}
	}
	if v := r.get("version"); v != "" {
		if _, err := semver.StrictNewVersion(strings.TrimPrefix(v, "v")); err != nil {
			r.fail("version", "must be an exact chart version (semantic version, e.g. 1.2.3)")
		} else {
			h.version = v
		}
	}
	h.release = t.App
	if rel := r.get("release"); rel != "" {
		h.release = rel
	}
	if msgs := validation.IsDNS1123Label(h.release); len(msgs) > 0 || len(h.release) > maxReleaseName {
		r.fail("release", fmt.Sprintf("must be a DNS-1123 label of at most %d characters", maxReleaseName))
	}
	if v := r.get("values"); v != "" {
		if len(v) > maxValuesBytes {
			r.fail("values", fmt.Sprintf("must be at most %d bytes", maxValuesBytes))
		} else if err := yaml.Unmarshal([]byte(v), &h.values); err != nil {
			r.fail("values", "must be a YAML or JSON object: "+err.Error())
		}
	}
	return h
}

func (h *helmRelease) file() string { return helmPrefix + h.release + ".yaml" }

func (h *helmRelease) Kind() Kind { return KindHelm }

func (h *helmRelease) Owns(file string) bool { return file == h.file() }

func (h *helmRelease) Summary() string {
	return fmt.Sprintf("helm release %s: chart %s %s from %s", h.release, h.chart, h.version, h.repo)
}

// helmGenerator is kustomize's HelmChartInflationGenerator configuration.
type helmGenerator struct {
	APIVersion   string         `json:"apiVersion"`
	Kind         string         `json:"kind"`
	Metadata     map[string]any `json:"metadata"`
	Name         string         `json:"name"`
	Repo         string         `json:"repo"`
	Version      string         `json:"version"`
	ReleaseName  string         `json:"releaseName"`
	Namespace    string         `json:"namespace"`
	IncludeCRDs  bool           `json:"includeCRDs"`
	ValuesInline map[string]any `json:"valuesInline,omitempty"`
	// AdditionalValuesFiles would read files of the checkout; values are inline only.
}

func (h *helmRelease) Files() (map[string][]byte, error) {
	b, err := yaml.Marshal(helmGenerator{
		APIVersion: "builtin", Kind: "HelmChartInflationGenerator",
		Metadata: map[string]any{"name": h.release},
		Name:     h.chart, Repo: h.repo, Version: h.version,
		ReleaseName: h.release, Namespace: h.target.Namespace, IncludeCRDs: true,
		ValuesInline: h.values,
	})
	if err != nil {
		return nil, err
	}
	return map[string][]byte{h.file(): b}, nil
}
