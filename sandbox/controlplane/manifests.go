package controlplane

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// A manifestSource names files inside a pinned Go module; the module proxy serves them
// with checksums, so the CRDs applied are exactly the released ones.
type manifestSource struct {
	module, version string
	globs           []string
}

// Versions pinned here must match the modules that build the components (a test checks).
const (
	argoWorkflowsVersion = "v3.7.9"
	kwokVersion          = "v0.8.0"
)

// crdSources are applied first and waited for until Established.
var crdSources = []manifestSource{
	{"github.com/argoproj/argo-workflows/v3", argoWorkflowsVersion, []string{"manifests/base/crds/full/argoproj.io_*.yaml"}},
	{"github.com/argoproj/argo-cd/v2", argoCDVersion, []string{"manifests/crds/application-crd.yaml", "manifests/crds/appproject-crd.yaml", "manifests/crds/applicationset-crd.yaml"}},
	{"knative.dev/operator", "v0.42.2", []string{
		"cmd/operator/kodata/knative-serving/1.15.2/1-serving-crds.yaml",
		"cmd/operator/kodata/knative-eventing/1.15.0/1-eventing-crds.yaml",
	}},
	{"sigs.k8s.io/kwok", kwokVersion, []string{"kustomize/crd/bases/*.yaml"}},
}

// kwokSources configure kwok: node and pod lifecycles, kubelet resource metrics and
// usage from pod annotations.
var kwokSources = []manifestSource{
	{"sigs.k8s.io/kwok", kwokVersion, []string{
		"kustomize/stage/node/fast/node-initialize.yaml",
		"kustomize/stage/pod/fast/pod-ready.yaml",
		"kustomize/stage/pod/fast/pod-complete.yaml",
		"kustomize/stage/pod/fast/pod-delete.yaml",
		"kustomize/metrics/resource/metrics-resource.yaml",
		"kustomize/metrics/usage/usage-from-annotation.yaml",
	}},
}

//go:embed manifests/*.yaml
var ownManifests embed.FS

// manifestSets are written as one JSON array each into binDir/manifests.
var manifestSets = map[string][]manifestSource{"crds": crdSources, "kwok": kwokSources}

func manifestPath(binDir, set string) string {
	return filepath.Join(binDir, "manifests", set+".json")
}

func ensureManifests(ctx context.Context, repo, binDir string, out io.Writer) error {
	if err := os.MkdirAll(filepath.Join(binDir, "manifests"), 0o755); err != nil {
		return err
	}
	for set, sources := range manifestSets {
		stamp := fmt.Sprint(sources)
		stampFile := filepath.Join(binDir, ".stamp-manifests-"+set)
		if upToDate(stampFile, stamp, binDir, []string{filepath.Join("manifests", set+".json")}) {
			continue
		}
		fmt.Fprintf(out, "gathering %s manifests from their modules\n", set)
		objs, err := gatherManifests(ctx, sources)
		if err != nil {
			return fmt.Errorf("%s manifests: %w", set, err)
		}
		b, err := json.Marshal(objs)
		if err != nil {
			return err
		}
		if err := os.WriteFile(manifestPath(binDir, set), b, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(stampFile, []byte(stamp), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func gatherManifests(ctx context.Context, sources []manifestSource) ([]map[string]any, error) {
	var objs []map[string]any
	for _, src := range sources {
		dir, err := moduleDir(ctx, src.module, src.version)
		if err != nil {
			return nil, err
		}
		for _, g := range src.globs {
			files, err := filepath.Glob(filepath.Join(dir, g))
			if err != nil {
				return nil, err
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("%s@%s has no %s", src.module, src.version, g)
			}
			sort.Strings(files)
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, err
				}
				docs, err := decodeYAMLDocuments(b)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", f, err)
				}
				objs = append(objs, docs...)
			}
		}
	}
	return objs, nil
}

// moduleDir downloads a module (verified against go.sum's database) and returns where it is.
func moduleDir(ctx context.Context, module, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(stdout.Bytes(), &info); jerr != nil && err == nil {
		err = jerr
	}
	if info.Error != "" {
		err = errors.New(info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w %s", module, version, err, strings.TrimSpace(stderr.String()))
	}
	return info.Dir, nil
}

// decodeYAMLDocuments splits a multi-document YAML (or JSON) file into objects, skipping empty documents.
func decodeYAMLDocuments(b []byte) ([]map[string]any, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 64<<10)
	var objs []map[string]any
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(obj) == 0 {
			continue
		}
		if obj["kind"] == nil || obj["apiVersion"] == nil {
			return nil, fmt.Errorf("document without kind or apiVersion")
		}
		objs = append(objs, obj)
	}
}

func readManifestSet(binDir, set string) ([]map[string]any, error) {
	b, err := os.ReadFile(manifestPath(binDir, set))
	if err != nil {
		return nil, fmt.Errorf("manifests not gathered (run the build first): %w", err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(b, &objs); err != nil {
		return nil, fmt.Errorf("%s manifests: %w", set, err)
	}
	return objs, nil
}

// readOwnManifests returns the manifests this package ships, templated with vars.
func readOwnManifests(vars map[string]string) ([]map[string]any, error) {
	entries, err := ownManifests.ReadDir("manifests")
	if err != nil {
		return nil, err
	}
	var objs []map[string]any
	for _, e := range entries {
		b, err := ownManifests.ReadFile("manifests/" + e.Name())
		if err != nil {
			return nil, err
		}
		s := string(b)
		for k, v := range vars {
			s = strings.ReplaceAll(s, "${"+k+"}", v)
		}
		docs, err := decodeYAMLDocuments([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		objs = append(objs, docs...)
	}
	return objs, nil
}
