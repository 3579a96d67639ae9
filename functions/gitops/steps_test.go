package gitops

import (
	"sort"
	"strings"
	"testing"

	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"
)

func TestWriteFolder(t *testing.T) {
	fs := memfs.New()
	for name, body := range map[string]string{
		"apps/demo/shop/ingress.yaml":    "old ingress",
		"apps/demo/shop/job-x.yaml":      "a job of another run",
		"apps/demo/shop/deployment.yaml": "old",
	} {
		if err := util.WriteFile(fs, name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	owns := func(f string) bool { return f == "deployment.yaml" || f == "ingress.yaml" || f == "service.yaml" }
	files := map[string][]byte{"deployment.yaml": []byte("new"), "service.yaml": []byte("svc")}
	if err := writeFolder(fs, "apps/demo/shop", files, owns); err != nil {
		t.Fatal(err)
	}
	entries, _ := fs.ReadDir("apps/demo/shop")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "deployment.yaml job-x.yaml kustomization.yaml service.yaml" {
		t.Fatalf("folder holds %v: the ingress must go, the other run's job must stay", names)
	}
	k, _ := util.ReadFile(fs, "apps/demo/shop/kustomization.yaml")
	if !strings.Contains(string(k), "- deployment.yaml\n- job-x.yaml\n- service.yaml\n") {
		t.Fatalf("kustomization.yaml:\n%s", k)
	}
	if d, _ := util.ReadFile(fs, "apps/demo/shop/deployment.yaml"); string(d) != "new" {
		t.Fatalf("deployment.yaml = %q", d)
	}
}

func TestAuthor(t *testing.T) {
	for user, email := range map[string]string{
		"alice":                          "alice@dwp.invalid",
		"alice@example.com":              "alice@example.com",
		"system:serviceaccount:ci:robot": "system.serviceaccount.ci.robot@dwp.invalid",
	} {
		if a := author(user); a.Name != user || a.Email != email {
			t.Errorf("author(%q) = %+v, want email %s", user, a, email)
		}
	}
}

func TestParseConfig(t *testing.T) {
	good := map[string]string{EnvRepo: "http://127.0.0.1:1/gitops.git", EnvTimeout: "2m", EnvRoot: "clusters/apps"}
	c, err := ParseConfig(good)
	if err != nil || c.Branch != "main" || c.Root != "clusters/apps" || c.Project != "dwp" || c.Timeout.Minutes() != 2 {
		t.Fatalf("ParseConfig = %+v, %v", c, err)
	}
	for name, cfg := range map[string]map[string]string{
		"credentials in the URL": {EnvRepo: "https://user:pw@git.example/x.git"},
		"ssh URL":                {EnvRepo: "git@git.example:x.git"},
		"bad timeout":            {EnvTimeout: "-1s"},
		"bad root":               {EnvRoot: "../etc"},
		"bad namespace":          {EnvArgoCDNamespace: "Argo CD"},
		"missing password file":  {EnvPasswordFile: "/nonexistent"},
	} {
		if _, err := ParseConfig(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
