package manifest_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	_ "time/tzdata" // time zones load wherever the tests run

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/dwp-sre/dwp-sre/functions/gitops/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var target = manifest.Target{Namespace: "shop", App: "shop"}

// valid returns parameters that a run of kind accepts, holding only what is required.
func valid(kind manifest.Kind) map[string]string {
	switch kind {
	case manifest.KindAppService:
		return map[string]string{"image": "registry.example/shop:1.2.3"}
	case manifest.KindJob:
		return map[string]string{"name": "migrate", "image": "registry.example/shop:1.2.3"}
	case manifest.KindCronJob:
		return map[string]string{"name": "nightly", "image": "registry.example/shop:1.2.3", "schedule": "0 3 * * *"}
	case manifest.KindVolume:
		return map[string]string{"name": "data", "size": "10Gi"}
	case manifest.KindHelm:
		return map[string]string{"chart": "redis", "repo": "https://charts.example/stable", "version": "1.2.3"}
	}
	return map[string]string{}
}

// with returns valid(kind) with params set on top.
func with(kind manifest.Kind, params map[string]string) map[string]string {
	p := valid(kind)
	maps.Copy(p, params)
	return p
}

func mustParse(t *testing.T, kind manifest.Kind, tg manifest.Target, params map[string]string) manifest.Spec {
	t.Helper()
	s, errs := manifest.Parse(kind, tg, params)
	if errs != nil {
		t.Fatalf("Parse(%s, %v): %v", kind, params, errs)
	}
	return s
}

func mustFiles(t *testing.T, s manifest.Spec) map[string][]byte {
	t.Helper()
	files, err := s.Files()
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	return files
}

// documents splits a file into its YAML documents.
func documents(t testing.TB, file []byte) [][]byte {
	t.Helper()
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(file)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("reading YAML documents: %v", err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// decode decodes a one-document file strictly into obj, so that a field the API does not know
// fails the test.
func decode(t testing.TB, file []byte, obj any) {
	t.Helper()
	docs := documents(t, file)
	if len(docs) != 1 {
		t.Fatalf("%d documents, want 1:\n%s", len(docs), file)
	}
	if err := yaml.UnmarshalStrict(docs[0], obj); err != nil {
		t.Fatalf("decoding %T: %v\n%s", obj, err, file)
	}
}

// checkMeta checks the name, namespace and labels every object gets.
func checkMeta(t *testing.T, what string, got interface {
	GetName() string
	GetNamespace() string
	GetLabels() map[string]string
}, name, namespace string, tg manifest.Target) {
	t.Helper()
	if got.GetName() != name || got.GetNamespace() != namespace {
		t.Errorf("%s: name %q namespace %q, want %q %q", what, got.GetName(), got.GetNamespace(), name, namespace)
	}
	label := tg.AppLabel
	if label == "" {
		label = manifest.DefaultAppLabel
	}
	want := map[string]string{label: tg.App, manifest.ManagedByLabel: manifest.ManagedBy}
	if !maps.Equal(got.GetLabels(), want) {
		t.Errorf("%s: labels %v, want %v", what, got.GetLabels(), want)
	}
}

func fieldsOf(errs []manifest.FieldError) []string {
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	return fields
}

func TestParseFields(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		kind   manifest.Kind
		params map[string]string
		bad    []string // the fields reported; none when accepted
	}{
		// app-service
		{manifest.KindAppService, map[string]string{}, nil},
		{manifest.KindAppService, map[string]string{"image": "shop"}, nil},
		{manifest.KindAppService, map[string]string{"image": "localhost:5000/team/shop:v1.2.3-rc.1"}, nil},
		{manifest.KindAppService, map[string]string{"image": "shop@sha256:" + strings.Repeat("ab", 32)}, nil},
		{manifest.KindAppService, map[string]string{"image": "shop:1@sha256:" + strings.Repeat("0f", 32)}, nil},
		{manifest.KindAppService, map[string]string{"image": "  shop:1\n"}, nil},
		{manifest.KindAppService, map[string]string{"image": ""}, []string{"image"}},
		{manifest.KindAppService, map[string]string{"image": "UPPER/Case:tag"}, []string{"image"}},
		{manifest.KindAppService, map[string]string{"image": "shop:bad tag"}, []string{"image"}},
		{manifest.KindAppService, map[string]string{"image": "shop@sha256:abc"}, []string{"image"}},
		{manifest.KindAppService, map[string]string{"image": "shop:" + strings.Repeat("t", 129)}, []string{"image"}},
		{manifest.KindAppService, map[string]string{"image": "registry.example/" + long}, []string{"image"}},
		{manifest.KindAppService, map[string]string{"image": "-shop"}, []string{"image"}},
		{manifest.KindAppService, map[string]string{"port": "1"}, nil},
		{manifest.KindAppService, map[string]string{"port": "65535"}, nil},
		{manifest.KindAppService, map[string]string{"port": "0"}, []string{"port"}},
		{manifest.KindAppService, map[string]string{"port": "65536"}, []string{"port"}},
		{manifest.KindAppService, map[string]string{"port": "http"}, []string{"port"}},
		{manifest.KindAppService, map[string]string{"replicas": "0"}, nil},
		{manifest.KindAppService, map[string]string{"replicas": "50"}, nil},
		{manifest.KindAppService, map[string]string{"replicas": "-1"}, []string{"replicas"}},
		{manifest.KindAppService, map[string]string{"replicas": "51"}, []string{"replicas"}},
		{manifest.KindAppService, map[string]string{"replicas": "1.5"}, []string{"replicas"}},
		{manifest.KindAppService, map[string]string{"cpu-request": "250m", "cpu-limit": "1"}, nil},
		{manifest.KindAppService, map[string]string{"cpu-request": "1", "cpu-limit": "1000m"}, nil},
		{manifest.KindAppService, map[string]string{"memory-request": "256Mi", "memory-limit": "1Gi"}, nil},
		{manifest.KindAppService, map[string]string{"memory-limit": "1Gi"}, nil},
		{manifest.KindAppService, map[string]string{"cpu-request": "1", "cpu-limit": "500m"}, []string{"cpu-limit"}},
		{manifest.KindAppService, map[string]string{"memory-request": "1Gi", "memory-limit": "512Mi"}, []string{"memory-limit"}},
		{manifest.KindAppService, map[string]string{"cpu-request": "0"}, []string{"cpu-request"}},
		{manifest.KindAppService, map[string]string{"cpu-limit": "-1"}, []string{"cpu-limit"}},
		{manifest.KindAppService, map[string]string{"memory-request": "lots"}, []string{"memory-request"}},
		{manifest.KindAppService, map[string]string{"memory-limit": "1GB "}, []string{"memory-limit"}},
		{manifest.KindAppService, map[string]string{"ingress-host": "shop.example.com"}, nil},
		{manifest.KindAppService, map[string]string{"ingress-host": "shop.example.com", "ingress-path": "/api/v1"}, nil},
		{manifest.KindAppService, map[string]string{"ingress-host": "Shop.Example.com"}, []string{"ingress-host"}},
		{manifest.KindAppService, map[string]string{"ingress-host": "*.example.com"}, []string{"ingress-host"}},
		{manifest.KindAppService, map[string]string{"ingress-host": "shop_example.com"}, []string{"ingress-host"}},
		{manifest.KindAppService, map[string]string{"ingress-host": long}, []string{"ingress-host"}},
		{manifest.KindAppService, map[string]string{"ingress-host": "shop.example.com", "ingress-path": "api"}, []string{"ingress-path"}},
		{manifest.KindAppService, map[string]string{"ingress-host": "shop.example.com", "ingress-path": "/a//b"}, []string{"ingress-path"}},
		{manifest.KindAppService, map[string]string{"ingress-host": "shop.example.com", "ingress-path": "/a/.."}, []string{"ingress-path"}},
		{manifest.KindAppService, map[string]string{"ingress-host": "shop.example.com", "ingress-path": "/a b"}, []string{"ingress-path"}},
		{manifest.KindAppService, map[string]string{"ingress-path": "api"}, []string{"ingress-path"}}, // validated even without a host
		{manifest.KindAppService, map[string]string{"hpa-max": "5", "cpu-request": "100m"}, nil},
		{manifest.KindAppService, map[string]string{"hpa-min": "2", "hpa-max": "2", "hpa-cpu-target": "100", "cpu-request": "100m"}, nil},
		{manifest.KindAppService, map[string]string{"hpa-min": "1", "hpa-max": "50", "hpa-cpu-target": "1", "cpu-request": "100m"}, nil},
		{manifest.KindAppService, map[string]string{"hpa-min": "3", "hpa-cpu-target": "70"}, nil}, // no hpa-max: no HPA
		{manifest.KindAppService, map[string]string{"hpa-max": "5"}, []string{"cpu-request"}},
		{manifest.KindAppService, map[string]string{"hpa-max": "5", "cpu-request": "none"}, []string{"cpu-request"}},
		{manifest.KindAppService, map[string]string{"hpa-min": "6", "hpa-max": "5", "cpu-request": "100m"}, []string{"hpa-min"}},
		{manifest.KindAppService, map[string]string{"hpa-min": "0", "hpa-max": "5", "cpu-request": "100m"}, []string{"hpa-min"}},
		{manifest.KindAppService, map[string]string{"hpa-max": "51", "cpu-request": "100m"}, []string{"hpa-max"}},
		{manifest.KindAppService, map[string]string{"hpa-max": "0", "cpu-request": "100m"}, []string{"hpa-max"}},
		{manifest.KindAppService, map[string]string{"hpa-max": "5", "hpa-cpu-target": "0", "cpu-request": "100m"}, []string{"hpa-cpu-target"}},
		{manifest.KindAppService, map[string]string{"hpa-max": "5", "hpa-cpu-target": "101", "cpu-request": "100m"}, []string{"hpa-cpu-target"}},
		{manifest.KindAppService, map[string]string{"name": "x"}, []string{"name"}},

		// job
		{manifest.KindJob, map[string]string{}, nil},
		{manifest.KindJob, map[string]string{"name": strings.Repeat("a", 52)}, nil},
		{manifest.KindJob, map[string]string{"name": "a1-b2"}, nil},
		{manifest.KindJob, map[string]string{"name": ""}, []string{"name"}},
		{manifest.KindJob, map[string]string{"name": strings.Repeat("a", 53)}, []string{"name"}},
		{manifest.KindJob, map[string]string{"name": long}, []string{"name"}},
		{manifest.KindJob, map[string]string{"name": "Migrate"}, []string{"name"}},
		{manifest.KindJob, map[string]string{"name": "db.migrate"}, []string{"name"}},
		{manifest.KindJob, map[string]string{"name": "-migrate"}, []string{"name"}},
		{manifest.KindJob, map[string]string{"image": ""}, []string{"image"}},
		{manifest.KindJob, map[string]string{"image": "UPPER/Case:tag"}, []string{"image"}},
		{manifest.KindJob, map[string]string{"args": `["--yes", "a b", ""]`}, nil},
		{manifest.KindJob, map[string]string{"args": `[]`}, nil},
		{manifest.KindJob, map[string]string{"args": `["` + strings.Repeat(`x", "`, 63) + `x"]`}, nil},
		{manifest.KindJob, map[string]string{"args": `["` + strings.Repeat(`x", "`, 64) + `x"]`}, []string{"args"}},
		{manifest.KindJob, map[string]string{"args": `--yes`}, []string{"args"}},
		{manifest.KindJob, map[string]string{"args": `null`}, []string{"args"}},
		{manifest.KindJob, map[string]string{"args": `[1, 2]`}, []string{"args"}},
		{manifest.KindJob, map[string]string{"args": `["a"] ["b"]`}, []string{"args"}},
		{manifest.KindJob, map[string]string{"cpu-request": "2", "cpu-limit": "1"}, []string{"cpu-limit"}},
		{manifest.KindJob, map[string]string{"memory-request": "-1Mi"}, []string{"memory-request"}},
		{manifest.KindJob, map[string]string{"backoff-limit": "10"}, nil},
		{manifest.KindJob, map[string]string{"backoff-limit": "11"}, []string{"backoff-limit"}},
		{manifest.KindJob, map[string]string{"backoff-limit": "-1"}, []string{"backoff-limit"}},
		{manifest.KindJob, map[string]string{"active-deadline-seconds": "1"}, nil},
		{manifest.KindJob, map[string]string{"active-deadline-seconds": "86400"}, nil},
		{manifest.KindJob, map[string]string{"active-deadline-seconds": "0"}, []string{"active-deadline-seconds"}},
		{manifest.KindJob, map[string]string{"active-deadline-seconds": "86401"}, []string{"active-deadline-seconds"}},
		{manifest.KindJob, map[string]string{"replicas": "1"}, []string{"replicas"}},

		// cronjob
		{manifest.KindCronJob, map[string]string{}, nil},
		{manifest.KindCronJob, map[string]string{"schedule": "*/5 * * * *"}, nil},
		{manifest.KindCronJob, map[string]string{"schedule": "0 3 * * MON-FRI"}, nil},
		{manifest.KindCronJob, map[string]string{"schedule": "@hourly"}, nil},
		{manifest.KindCronJob, map[string]string{"schedule": "@every 1h30m"}, nil},
		{manifest.KindCronJob, map[string]string{"schedule": ""}, []string{"schedule"}},
		{manifest.KindCronJob, map[string]string{"schedule": "61 * * * *"}, []string{"schedule"}},
		{manifest.KindCronJob, map[string]string{"schedule": "* * * *"}, []string{"schedule"}},
		{manifest.KindCronJob, map[string]string{"schedule": "0 0 * * * *"}, []string{"schedule"}}, // seconds are not standard
		{manifest.KindCronJob, map[string]string{"schedule": "@yearly-ish"}, []string{"schedule"}},
		{manifest.KindCronJob, map[string]string{"schedule": "TZ=UTC 0 3 * * *"}, []string{"schedule"}},
		{manifest.KindCronJob, map[string]string{"schedule": "CRON_TZ=Europe/London 0 3 * * *"}, []string{"schedule"}},
		{manifest.KindCronJob, map[string]string{"schedule": "TZ="}, []string{"schedule"}},
		{manifest.KindCronJob, map[string]string{"time-zone": "Europe/London"}, nil},
		{manifest.KindCronJob, map[string]string{"time-zone": "UTC"}, nil},
		{manifest.KindCronJob, map[string]string{"time-zone": "Etc/GMT+5"}, nil},
		{manifest.KindCronJob, map[string]string{"time-zone": "Mars/Olympus"}, []string{"time-zone"}},
		{manifest.KindCronJob, map[string]string{"time-zone": "Local"}, []string{"time-zone"}},
		{manifest.KindCronJob, map[string]string{"time-zone": "../etc/passwd"}, []string{"time-zone"}},
		{manifest.KindCronJob, map[string]string{"time-zone": "Europe/London/"}, []string{"time-zone"}},
		{manifest.KindCronJob, map[string]string{"suspend": "true"}, nil},
		{manifest.KindCronJob, map[string]string{"suspend": "false"}, nil},
		{manifest.KindCronJob, map[string]string{"suspend": "yes"}, []string{"suspend"}},
		{manifest.KindCronJob, map[string]string{"suspend": "True"}, []string{"suspend"}},
		{manifest.KindCronJob, map[string]string{"concurrency-policy": "Allow"}, nil},
		{manifest.KindCronJob, map[string]string{"concurrency-policy": "Replace"}, nil},
		{manifest.KindCronJob, map[string]string{"concurrency-policy": "forbid"}, []string{"concurrency-policy"}},
		{manifest.KindCronJob, map[string]string{"name": strings.Repeat("n", 53)}, []string{"name"}},
		{manifest.KindCronJob, map[string]string{"args": `{"a": 1}`}, []string{"args"}},
		{manifest.KindCronJob, map[string]string{"memory-request": "2Gi", "memory-limit": "1Gi"}, []string{"memory-limit"}},
		{manifest.KindCronJob, map[string]string{"backoff-limit": "1"}, []string{"backoff-limit"}},

		// volume
		{manifest.KindVolume, map[string]string{}, nil},
		{manifest.KindVolume, map[string]string{"name": strings.Repeat("v", 63)}, nil},
		{manifest.KindVolume, map[string]string{"name": strings.Repeat("v", 64)}, []string{"name"}},
		{manifest.KindVolume, map[string]string{"name": long}, []string{"name"}},
		{manifest.KindVolume, map[string]string{"name": "Data"}, []string{"name"}},
		{manifest.KindVolume, map[string]string{"name": ""}, []string{"name"}},
		{manifest.KindVolume, map[string]string{"size": "16Ti"}, nil},
		{manifest.KindVolume, map[string]string{"size": "500M"}, nil},
		{manifest.KindVolume, map[string]string{"size": "17Ti"}, []string{"size"}},
		{manifest.KindVolume, map[string]string{"size": "0"}, []string{"size"}},
		{manifest.KindVolume, map[string]string{"size": "-1Gi"}, []string{"size"}},
		{manifest.KindVolume, map[string]string{"size": "ten"}, []string{"size"}},
		{manifest.KindVolume, map[string]string{"size": ""}, []string{"size"}},
		{manifest.KindVolume, map[string]string{"access-mode": "ReadWriteMany"}, nil},
		{manifest.KindVolume, map[string]string{"access-mode": "ReadOnlyMany"}, nil},
		{manifest.KindVolume, map[string]string{"access-mode": "ReadWriteOncePod"}, nil},
		{manifest.KindVolume, map[string]string{"access-mode": "RWO"}, []string{"access-mode"}},
		{manifest.KindVolume, map[string]string{"storage-class": "fast.ssd"}, nil},
		{manifest.KindVolume, map[string]string{"storage-class": "Fast"}, []string{"storage-class"}},
		{manifest.KindVolume, map[string]string{"storage-class": long}, []string{"storage-class"}},

		// project
		{manifest.KindProject, map[string]string{}, nil},
		{manifest.KindProject, map[string]string{"admins": "user:alice", "editors": "group:dev, user:bob ,", "viewers": "group:all staff"}, nil},
		{manifest.KindProject, map[string]string{"admins": "user:alice@example.com,user:alice@example.com"}, nil},
		{manifest.KindProject, map[string]string{"admins": "user:" + strings.Repeat("u", 253)}, nil},
		{manifest.KindProject, map[string]string{"admins": subjects(50)}, nil},
		{manifest.KindProject, map[string]string{"admins": subjects(51)}, []string{"admins"}},
		{manifest.KindProject, map[string]string{"admins": "alice"}, []string{"admins"}},
		{manifest.KindProject, map[string]string{"editors": "serviceaccount:ci"}, []string{"editors"}},
		{manifest.KindProject, map[string]string{"editors": "User:alice"}, []string{"editors"}},
		{manifest.KindProject, map[string]string{"viewers": "user:"}, []string{"viewers"}},
		{manifest.KindProject, map[string]string{"viewers": "user:" + strings.Repeat("u", 254)}, []string{"viewers"}},
		{manifest.KindProject, map[string]string{"viewers": "user:ali\x00ce"}, []string{"viewers"}},
		{manifest.KindProject, map[string]string{"viewers": "user:ali\nce"}, []string{"viewers"}},
		{manifest.KindProject, map[string]string{"viewers": "group:system:authenticated"}, []string{"viewers"}},
		{manifest.KindProject, map[string]string{"image": "shop"}, []string{"image"}},

		// The parameters of the run itself are accepted by every kind.
		{manifest.KindVolume, map[string]string{"kind": "volume", "timeout": "10m"}, nil},
		{manifest.KindProject, map[string]string{"kind": "project", "timeout": "10m"}, nil},
	}
	for _, tt := range tests {
		params := with(tt.kind, tt.params)
		_, errs := manifest.Parse(tt.kind, target, params)
		if got := fieldsOf(errs); !slices.Equal(got, tt.bad) {
			t.Errorf("Parse(%s, %q): fields %q, want %q (%v)", tt.kind, tt.params, got, tt.bad, errs)
		}
		for _, e := range errs {
			if e.Detail == "" || strings.Contains(e.Detail, "\n") {
				t.Errorf("Parse(%s, %q): detail %q is not one line", tt.kind, tt.params, e.Detail)
			}
		}
	}
}

func subjects(n int) string {
	var s []string
	for i := range n {
		s = append(s, "user:u"+strings.Repeat("x", i))
	}
	return strings.Join(s, ",")
}

func TestParseReportsEveryError(t *testing.T) {
	_, errs := manifest.Parse(manifest.KindAppService, manifest.Target{Namespace: "Shop", App: "shop"}, map[string]string{
		"image":       "UPPER/Case:tag",
		"replicas":    "-1",
		"cpu-request": "2",
		"cpu-limit":   "1",
		"colour":      "blue",
	})
	want := []string{"namespace", "image", "replicas", "cpu-limit", "colour"}
	if got := fieldsOf(errs); !slices.Equal(got, want) {
		t.Errorf("fields %q, want %q (%v)", got, want, errs)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		kind manifest.Kind
		t    manifest.Target
		bad  []string
	}{
		{manifest.KindJob, manifest.Target{Namespace: "team-a", App: "shop", AppLabel: "app.kubernetes.io/name"}, nil},
		{manifest.KindJob, manifest.Target{Namespace: "", App: "shop"}, []string{"namespace"}},
		{manifest.KindJob, manifest.Target{Namespace: "team.a", App: "shop"}, []string{"namespace"}},
		{manifest.KindJob, manifest.Target{Namespace: "shop", App: ""}, []string{"app"}},
		{manifest.KindJob, manifest.Target{Namespace: "shop", App: strings.Repeat("a", 300)}, []string{"app"}},
		{manifest.KindJob, manifest.Target{Namespace: "shop", App: strings.Repeat("a", 63)}, nil},
		{manifest.KindJob, manifest.Target{Namespace: "shop", App: "Shop"}, []string{"app"}},
		{manifest.KindJob, manifest.Target{Namespace: "shop", App: "shop", AppLabel: "not a label"}, []string{"app-label"}},
		{manifest.KindJob, manifest.Target{Namespace: "shop", App: "shop", AppLabel: manifest.ManagedByLabel}, []string{"app-label"}},
		{manifest.KindProject, manifest.Target{Namespace: "projects", App: "kube-system"}, []string{"app"}},
		{manifest.KindProject, manifest.Target{Namespace: "projects", App: "default"}, []string{"app"}},
		{manifest.KindJob, manifest.Target{Namespace: "shop", App: "default"}, nil},
	}
	for _, tt := range tests {
		_, errs := manifest.Parse(tt.kind, tt.t, valid(tt.kind))
		if got := fieldsOf(errs); !slices.Equal(got, tt.bad) {
			t.Errorf("Parse(%s, %+v): fields %q, want %q (%v)", tt.kind, tt.t, got, tt.bad, errs)
		}
	}
}

func TestParseUnknownKind(t *testing.T) {
	s, errs := manifest.Parse("daemonset", target, nil)
	if s != nil || len(errs) != 1 || errs[0].Field != "kind" {
		t.Errorf("Parse(daemonset) = %v, %v; want a kind error", s, errs)
	}
}

func TestAppService(t *testing.T) {
	tg := manifest.Target{Namespace: "team-a", App: "shop", AppLabel: "app.kubernetes.io/name"}
	s := mustParse(t, manifest.KindAppService, tg, map[string]string{
		"image": "registry.example/shop:1.2.3", "port": "9090", "replicas": "2",
		"cpu-request": "0.25", "cpu-limit": "1", "memory-request": "128Mi", "memory-limit": "256Mi",
		"ingress-host": "shop.example.com", "ingress-path": "/api",
		"kind": "app-service", "timeout": "5m",
	})
	if s.Kind() != manifest.KindAppService {
		t.Errorf("Kind = %s", s.Kind())
	}
	if got, want := s.Summary(), "app-service shop: image registry.example/shop:1.2.3, 2 replicas, ingress shop.example.com/api"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	files := mustFiles(t, s)
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, []string{"deployment.yaml", "ingress.yaml", "service.yaml"}) {
		t.Fatalf("files %q", got)
	}
	selector := map[string]string{"app.kubernetes.io/name": "shop"}

	var d appsv1.Deployment
	decode(t, files["deployment.yaml"], &d)
	checkMeta(t, "deployment", &d, "shop", "team-a", tg)
	checkMeta(t, "pod template", &d.Spec.Template, "", "", tg)
	if d.APIVersion != "apps/v1" || d.Kind != "Deployment" {
		t.Errorf("deployment type %s %s", d.APIVersion, d.Kind)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	if !maps.Equal(d.Spec.Selector.MatchLabels, selector) {
		t.Errorf("selector %v", d.Spec.Selector.MatchLabels)
	}
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers", n)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Name != "app" || c.Image != "registry.example/shop:1.2.3" {
		t.Errorf("container %q image %q", c.Name, c.Image)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 9090 {
		t.Errorf("ports %+v", c.Ports)
	}
	checkQuantity(t, "cpu request", c.Resources.Requests, corev1.ResourceCPU, "250m")
	checkQuantity(t, "cpu limit", c.Resources.Limits, corev1.ResourceCPU, "1")
	checkQuantity(t, "memory request", c.Resources.Requests, corev1.ResourceMemory, "128Mi")
	checkQuantity(t, "memory limit", c.Resources.Limits, corev1.ResourceMemory, "256Mi")

	var svc corev1.Service
	decode(t, files["service.yaml"], &svc)
	checkMeta(t, "service", &svc, "shop", "team-a", tg)
	if !maps.Equal(svc.Spec.Selector, selector) {
		t.Errorf("service selector %v", svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9090 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("service ports %+v", svc.Spec.Ports)
	}

	var ing networkingv1.Ingress
	decode(t, files["ingress.yaml"], &ing)
	checkMeta(t, "ingress", &ing, "shop", "team-a", tg)
	if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "shop.example.com" || ing.Spec.Rules[0].HTTP == nil {
		t.Fatalf("ingress rules %+v", ing.Spec.Rules)
	}
	p := ing.Spec.Rules[0].HTTP.Paths
	if len(p) != 1 || p[0].Path != "/api" || p[0].PathType == nil || *p[0].PathType != networkingv1.PathTypePrefix ||
		p[0].Backend.Service == nil || p[0].Backend.Service.Name != "shop" || p[0].Backend.Service.Port.Name != "http" {
		t.Errorf("ingress paths %+v", p)
	}
}

func TestAppServiceAutoscaled(t *testing.T) {
	s := mustParse(t, manifest.KindAppService, target, map[string]string{
		// replicas, hpa-min and hpa-cpu-target come with their defaults, as Argo sends them.
		"image": "shop:1", "replicas": "1", "hpa-min": "2", "hpa-max": "6", "hpa-cpu-target": "80",
		"cpu-request": "100m", "ingress-path": "/",
	})
	if got, want := s.Summary(), "app-service shop: image shop:1, 2 to 6 replicas at 80% CPU"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	files := mustFiles(t, s)
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, []string{"deployment.yaml", "hpa.yaml", "service.yaml"}) {
		t.Fatalf("files %q", got)
	}
	var d appsv1.Deployment
	decode(t, files["deployment.yaml"], &d)
	if d.Spec.Replicas != nil {
		t.Errorf("replicas %d under an HPA, want none", *d.Spec.Replicas)
	}
	var hpa autoscalingv2.HorizontalPodAutoscaler
	decode(t, files["hpa.yaml"], &hpa)
	checkMeta(t, "hpa", &hpa, "shop", "shop", target)
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != "shop" {
		t.Errorf("scale target %+v", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 6 {
		t.Errorf("replicas %v..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	m := hpa.Spec.Metrics
	if len(m) != 1 || m[0].Resource == nil || m[0].Resource.Name != corev1.ResourceCPU ||
		m[0].Resource.Target.AverageUtilization == nil || *m[0].Resource.Target.AverageUtilization != 80 {
		t.Errorf("metrics %+v", m)
	}

	// Without autoscaling, the HPA's file is still the app service's, so that it is removed.
	plain := mustParse(t, manifest.KindAppService, target, map[string]string{"image": "shop:1", "replicas": "0"})
	files = mustFiles(t, plain)
	if _, ok := files["hpa.yaml"]; ok {
		t.Error("hpa.yaml rendered without hpa-max")
	}
	d = appsv1.Deployment{}
	decode(t, files["deployment.yaml"], &d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
		t.Errorf("replicas %v, want 0", d.Spec.Replicas)
	}
	if got, want := plain.Summary(), "app-service shop: image shop:1, 0 replicas"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func checkQuantity(t *testing.T, what string, list corev1.ResourceList, name corev1.ResourceName, want string) {
	t.Helper()
	got, ok := list[name]
	if !ok || got.Cmp(resource.MustParse(want)) != 0 {
		t.Errorf("%s = %v, want %s", what, got.String(), want)
	}
}

func TestJob(t *testing.T) {
	s := mustParse(t, manifest.KindJob, target, with(manifest.KindJob, map[string]string{
		"args": `["--to", "latest", "on"]`, "backoff-limit": "3", "active-deadline-seconds": "600", "memory-limit": "1Gi",
	}))
	if got, want := s.Summary(), "job migrate: image registry.example/shop:1.2.3, backoff limit 3"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	files := mustFiles(t, s)
	if len(files) != 1 {
		t.Fatalf("files %q", slices.Sorted(maps.Keys(files)))
	}
	var j batchv1.Job
	decode(t, files["job-migrate.yaml"], &j)
	checkMeta(t, "job", &j, "migrate", "shop", target)
	checkMeta(t, "pod template", &j.Spec.Template, "", "", target)
	if got := j.Annotations["argocd.argoproj.io/sync-options"]; got != "Replace=true,Force=true" {
		t.Errorf("sync options %q", got)
	}
	if j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit != 3 {
		t.Errorf("backoff limit %v", j.Spec.BackoffLimit)
	}
	if j.Spec.ActiveDeadlineSeconds == nil || *j.Spec.ActiveDeadlineSeconds != 600 {
		t.Errorf("active deadline %v", j.Spec.ActiveDeadlineSeconds)
	}
	if j.Spec.TTLSecondsAfterFinished != nil {
		t.Error("a TTL would have Argo CD rerun the job")
	}
	pod := j.Spec.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever || len(pod.Containers) != 1 {
		t.Fatalf("pod %+v", pod)
	}
	if c := pod.Containers[0]; c.Name != "app" || !slices.Equal(c.Args, []string{"--to", "latest", "on"}) || len(c.Ports) != 0 {
		t.Errorf("container %+v", c)
	}
	checkQuantity(t, "memory limit", pod.Containers[0].Resources.Limits, corev1.ResourceMemory, "1Gi")

	// The defaults: no retry, no deadline, no args.
	files = mustFiles(t, mustParse(t, manifest.KindJob, target, valid(manifest.KindJob)))
	j = batchv1.Job{}
	decode(t, files["job-migrate.yaml"], &j)
	if j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit != 0 || j.Spec.ActiveDeadlineSeconds != nil ||
		j.Spec.Template.Spec.Containers[0].Args != nil {
		t.Errorf("defaults: %+v", j.Spec)
	}
}

func TestCronJob(t *testing.T) {
	s := mustParse(t, manifest.KindCronJob, target, with(manifest.KindCronJob, map[string]string{
		"schedule": " 0\t3  * * 1-5 ", "time-zone": "Europe/London", "suspend": "true", "concurrency-policy": "Replace",
		"args": `["report"]`,
	}))
	if got, want := s.Summary(), `cronjob nightly: image registry.example/shop:1.2.3, schedule "0 3 * * 1-5" Europe/London, suspended`; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	files := mustFiles(t, s)
	var cj batchv1.CronJob
	decode(t, files["cronjob-nightly.yaml"], &cj)
	checkMeta(t, "cronjob", &cj, "nightly", "shop", target)
	checkMeta(t, "job template", &cj.Spec.JobTemplate, "", "", target)
	checkMeta(t, "pod template", &cj.Spec.JobTemplate.Spec.Template, "", "", target)
	if cj.Spec.Schedule != "0 3 * * 1-5" {
		t.Errorf("schedule %q", cj.Spec.Schedule)
	}
	if cj.Spec.TimeZone == nil || *cj.Spec.TimeZone != "Europe/London" {
		t.Errorf("time zone %v", cj.Spec.TimeZone)
	}
	if cj.Spec.Suspend == nil || !*cj.Spec.Suspend || cj.Spec.ConcurrencyPolicy != batchv1.ReplaceConcurrent {
		t.Errorf("suspend %v, concurrency %s", cj.Spec.Suspend, cj.Spec.ConcurrencyPolicy)
	}
	if _, ok := cj.Annotations["argocd.argoproj.io/sync-options"]; ok {
		t.Error("a CronJob is mutable: no need to replace it")
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever || len(pod.Containers) != 1 || !slices.Equal(pod.Containers[0].Args, []string{"report"}) {
		t.Errorf("pod %+v", pod)
	}

	files = mustFiles(t, mustParse(t, manifest.KindCronJob, target, valid(manifest.KindCronJob)))
	cj = batchv1.CronJob{}
	decode(t, files["cronjob-nightly.yaml"], &cj)
	if cj.Spec.TimeZone != nil || cj.Spec.Suspend == nil || *cj.Spec.Suspend || cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("defaults: %+v", cj.Spec)
	}
}

func TestVolume(t *testing.T) {
	s := mustParse(t, manifest.KindVolume, target, with(manifest.KindVolume, map[string]string{
		"size": "20Gi", "access-mode": "ReadWriteMany", "storage-class": "nfs",
	}))
	if got, want := s.Summary(), "volume data: 20Gi ReadWriteMany, storage class nfs"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	files := mustFiles(t, s)
	var pvc corev1.PersistentVolumeClaim
	decode(t, files["pvc-data.yaml"], &pvc)
	checkMeta(t, "pvc", &pvc, "data", "shop", target)
	if !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}) {
		t.Errorf("access modes %v", pvc.Spec.AccessModes)
	}
	checkQuantity(t, "size", pvc.Spec.Resources.Requests, corev1.ResourceStorage, "20Gi")
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "nfs" {
		t.Errorf("storage class %v", pvc.Spec.StorageClassName)
	}

	files = mustFiles(t, mustParse(t, manifest.KindVolume, target, valid(manifest.KindVolume)))
	pvc = corev1.PersistentVolumeClaim{}
	decode(t, files["pvc-data.yaml"], &pvc)
	if pvc.Spec.StorageClassName != nil || pvc.Spec.AccessModes[0] != corev1.ReadWriteOnce {
		t.Errorf("defaults: %+v", pvc.Spec)
	}
}

func TestProject(t *testing.T) {
	tg := manifest.Target{Namespace: "projects", App: "shop"}
	s := mustParse(t, manifest.KindProject, tg, map[string]string{
		"admins": "user:alice, group:ops", "viewers": "user:carol,user:bob,user:carol,", "editors": "",
	})
	if got, want := s.Summary(), "project shop: 2 admins, 2 viewers"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	files := mustFiles(t, s)
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, []string{"members.yaml", "namespace.yaml", "task-runner.yaml"}) {
		t.Fatalf("files %q", got)
	}

	var ns corev1.Namespace
	decode(t, files["namespace.yaml"], &ns)
	checkMeta(t, "namespace", &ns, "shop", "", tg)
	if ns.Kind != "Namespace" {
		t.Errorf("kind %q", ns.Kind)
	}

	runner := documents(t, files["task-runner.yaml"])
	if len(runner) != 2 {
		t.Fatalf("task-runner.yaml has %d documents, want 2", len(runner))
	}
	var sa corev1.ServiceAccount
	var rb rbacv1.RoleBinding
	strict(t, runner[0], &sa)
	strict(t, runner[1], &rb)
	checkMeta(t, "service account", &sa, "dwp-task-runner", "shop", tg)
	checkMeta(t, "role binding", &rb, "dwp-task-runner", "shop", tg)
	if rb.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "dwp-task-runner"}) {
		t.Errorf("role ref %+v", rb.RoleRef)
	}
	if !slices.Equal(rb.Subjects, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "dwp-task-runner", Namespace: "shop"}}) {
		t.Errorf("subjects %+v", rb.Subjects)
	}

	members := documents(t, files["members.yaml"])
	if len(members) != 2 {
		t.Fatalf("members.yaml has %d documents, want 2", len(members))
	}
	want := []struct {
		name, role string
		subjects   []rbacv1.Subject
	}{
		{"dwp-admins", "admin", []rbacv1.Subject{
			{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "ops"},
			{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "alice"},
		}},
		{"dwp-viewers", "view", []rbacv1.Subject{
			{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "bob"},
			{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "carol"},
		}},
	}
	for i, w := range want {
		var rb rbacv1.RoleBinding
		strict(t, members[i], &rb)
		checkMeta(t, w.name, &rb, w.name, "shop", tg)
		if rb.RoleRef.Kind != "ClusterRole" || rb.RoleRef.Name != w.role {
			t.Errorf("%s: role ref %+v", w.name, rb.RoleRef)
		}
		if !slices.Equal(rb.Subjects, w.subjects) {
			t.Errorf("%s: subjects %+v, want %+v", w.name, rb.Subjects, w.subjects)
		}
	}

	// Without members there is no members.yaml, and the project still owns it.
	s = mustParse(t, manifest.KindProject, tg, nil)
	files = mustFiles(t, s)
	if _, ok := files["members.yaml"]; ok || !s.Owns("members.yaml") {
		t.Errorf("without members: members.yaml rendered %v, owned %v", ok, s.Owns("members.yaml"))
	}
	if got, want := s.Summary(), "project shop: no members"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func strict(t *testing.T, doc []byte, obj any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("decoding %T: %v\n%s", obj, err, doc)
	}
}

func TestDeterministic(t *testing.T) {
	params := map[manifest.Kind]map[string]string{
		manifest.KindAppService: {"image": "shop:1", "cpu-request": "100m", "memory-limit": "1Gi", "ingress-host": "a.example", "hpa-max": "3"},
		manifest.KindJob:        with(manifest.KindJob, map[string]string{"args": `["a","b"]`, "cpu-limit": "2", "memory-request": "1Mi"}),
		manifest.KindCronJob:    with(manifest.KindCronJob, map[string]string{"time-zone": "UTC"}),
		manifest.KindVolume:     valid(manifest.KindVolume),
		manifest.KindProject:    {"admins": "user:b,group:a,user:a", "editors": "group:x", "viewers": "user:z"},
		manifest.KindHelm:       with(manifest.KindHelm, map[string]string{"values": `{"b": 1, "a": {"z": true, "y": [1, 2]}}`}),
	}
	for kind, p := range params {
		first := mustFiles(t, mustParse(t, kind, target, p))
		for range 20 {
			again := mustFiles(t, mustParse(t, kind, target, maps.Clone(p)))
			if !maps.EqualFunc(first, again, bytes.Equal) {
				t.Fatalf("%s: files differ between runs", kind)
			}
		}
	}

	// The same members in another order make the same file.
	a := mustFiles(t, mustParse(t, manifest.KindProject, target, map[string]string{"admins": "user:b,group:a,user:a"}))
	b := mustFiles(t, mustParse(t, manifest.KindProject, target, map[string]string{"admins": "user:a, user:b, group:a, user:a"}))
	if !maps.EqualFunc(a, b, bytes.Equal) {
		t.Error("members.yaml depends on the order of the members")
	}
}

func TestOwns(t *testing.T) {
	specs := map[manifest.Kind]manifest.Spec{}
	for _, kind := range manifest.Kinds() {
		specs[kind] = mustParse(t, kind, target, valid(kind))
	}
	tests := []struct {
		kind manifest.Kind
		file string
		want bool
	}{
		{manifest.KindAppService, "deployment.yaml", true},
		{manifest.KindAppService, "service.yaml", true},
		{manifest.KindAppService, "ingress.yaml", true},
		{manifest.KindAppService, "hpa.yaml", true},
		{manifest.KindAppService, "job-migrate.yaml", false},
		{manifest.KindAppService, "kustomization.yaml", false},
		{manifest.KindJob, "job-migrate.yaml", true},
		{manifest.KindJob, "job-other.yaml", false},
		{manifest.KindJob, "cronjob-migrate.yaml", false},
		{manifest.KindCronJob, "cronjob-nightly.yaml", true},
		{manifest.KindCronJob, "job-nightly.yaml", false},
		{manifest.KindVolume, "pvc-data.yaml", true},
		{manifest.KindVolume, "pvc-other.yaml", false},
		{manifest.KindProject, "namespace.yaml", true},
		{manifest.KindProject, "task-runner.yaml", true},
		{manifest.KindProject, "members.yaml", true},
		{manifest.KindProject, "deployment.yaml", false},
	}
	for _, tt := range tests {
		if got := specs[tt.kind].Owns(tt.file); got != tt.want {
			t.Errorf("%s.Owns(%q) = %v, want %v", tt.kind, tt.file, got, tt.want)
		}
	}
	// A spec owns every file it renders.
	for kind, s := range specs {
		for file := range mustFiles(t, s) {
			if !s.Owns(file) {
				t.Errorf("%s renders %s but does not own it", kind, file)
			}
		}
	}
}

func TestKustomization(t *testing.T) {
	got := string(manifest.Kustomization([]string{"service.yaml", "deployment.yaml", "kustomization.yaml", "service.yaml", "job-a.yaml"}))
	want := `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- deployment.yaml
- job-a.yaml
- service.yaml
`
	if got != want {
		t.Errorf("Kustomization:\n%s\nwant:\n%s", got, want)
	}
	if got, want := string(manifest.Kustomization(nil)), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n"; got != want {
		t.Errorf("Kustomization(nil) = %q, want %q", got, want)
	}
}

func TestParameters(t *testing.T) {
	for _, kind := range manifest.Kinds() {
		ps := manifest.Parameters(kind)
		if len(ps) == 0 {
			t.Errorf("%s: no parameters", kind)
		}
		seen := map[string]bool{}
		for _, p := range ps {
			if seen[p.Name] || manifest.CommonParameters[p.Name] {
				t.Errorf("%s: parameter %q twice", kind, p.Name)
			}
			seen[p.Name] = true
			if p.Description == "" {
				t.Errorf("%s: %s has no description", kind, p.Name)
			}
			if p.Required && p.Default != "" {
				t.Errorf("%s: %s is required and has a default", kind, p.Name)
			}
			if p.Enum != nil && !slices.Contains(p.Enum, p.Default) {
				t.Errorf("%s: %s's default %q is not in its enum", kind, p.Name, p.Default)
			}
		}
		// Every default is valid: sending every parameter with its default changes nothing.
		params := valid(kind)
		for _, p := range ps {
			if _, ok := params[p.Name]; !ok {
				params[p.Name] = p.Default
			}
		}
		a := mustFiles(t, mustParse(t, kind, target, params))
		b := mustFiles(t, mustParse(t, kind, target, valid(kind)))
		if !maps.EqualFunc(a, b, bytes.Equal) {
			t.Errorf("%s: explicit defaults render differently", kind)
		}
	}
	if manifest.Parameters("daemonset") != nil {
		t.Error("parameters of an unknown kind")
	}
	// The table is the package's own.
	ps := manifest.Parameters(manifest.KindVolume)
	ps[2].Enum[0] = "changed"
	ps[0].Name = "changed"
	if again := manifest.Parameters(manifest.KindVolume); again[2].Enum[0] == "changed" || again[0].Name == "changed" {
		t.Error("Parameters returns the package's table")
	}
}

// TestGolden keeps the rendered files of one run of each kind in testdata, so that a change
// of output shows in review. go test -update rewrites them.
func TestGolden(t *testing.T) {
	runs := map[manifest.Kind]map[string]string{
		manifest.KindAppService: {
			"image": "registry.example/shop:1.2.3", "port": "8080", "cpu-request": "250m", "memory-request": "256Mi",
			"cpu-limit": "1", "memory-limit": "512Mi", "ingress-host": "shop.example.com", "hpa-max": "5",
		},
		manifest.KindJob:     with(manifest.KindJob, map[string]string{"args": `["migrate", "--to", "latest"]`, "active-deadline-seconds": "600"}),
		manifest.KindCronJob: with(manifest.KindCronJob, map[string]string{"time-zone": "Europe/London", "args": `["report"]`}),
		manifest.KindVolume:  with(manifest.KindVolume, map[string]string{"storage-class": "fast"}),
		manifest.KindProject: {"admins": "user:alice,group:ops", "viewers": "group:everyone"},
		manifest.KindHelm:    with(manifest.KindHelm, map[string]string{"release": "cache", "values": "replica:\n  replicaCount: 2\nauth: {enabled: false}"}),
	}
	for kind, params := range runs {
		files := mustFiles(t, mustParse(t, kind, target, params))
		files["kustomization.yaml"] = manifest.Kustomization(slices.Collect(maps.Keys(files)))
		dir := filepath.Join("testdata", string(kind))
		if *update {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if len(entries) != len(files) {
			t.Errorf("%s: %d golden files, %d rendered", kind, len(entries), len(files))
		}
		for name, b := range files {
			want, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Errorf("%s: %v", kind, err)
				continue
			}
			if !bytes.Equal(b, want) {
				t.Errorf("%s/%s differs from testdata:\n%s\nwant:\n%s", kind, name, b, want)
			}
		}
	}
}
