package workflows

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.AppLabel != "app" || c.TaskLabel != "dwp.io/task" || c.ArchiveClusterName != "default" || c.ClientCacheTTL != time.Minute {
		t.Fatalf("defaults %+v", c)
	}
	c, err = ParseConfig(map[string]string{
		EnvAppLabel: "example.com/app", EnvTaskLabel: "task", EnvArgoServerURL: "https://argo:2746/",
		EnvClientCacheTTL: "0", EnvArchiveClusterName: "local",
	})
	if err != nil || c.AppLabel != "example.com/app" || c.ArgoServerURL != "https://argo:2746" || c.ClientCacheTTL != 0 || c.ArchiveClusterName != "local" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []map[string]string{
		{EnvAppLabel: "not a label"},
		{EnvTaskLabel: "app"},
		{EnvArgoServerURL: "argo:2746"},
		{EnvClientCacheTTL: "soon"},
		{EnvClientCacheTTL: "-1s"},
	} {
		if _, err := ParseConfig(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestStartNeedsNoNetwork(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	// An API server that does not exist: Start must not contact it.
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: service-token}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := New()
	err := f.Start(context.Background(), map[string]string{EnvKubeconfig: kc, EnvArchiveDSN: "postgres://u:p@127.0.0.1:1/db"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop(context.Background())
	// The clients of a caller carry the caller's token, not the kubeconfig's.
	c, err := f.callers.get("user-token")
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "user-token" {
		t.Fatalf("token %q", c.token)
	}

	if err := New().Start(context.Background(), map[string]string{EnvKubeconfig: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), EnvKubeconfig) {
		t.Fatalf("a missing kubeconfig: %v, want an error naming %s", err, EnvKubeconfig)
	}
	err = New().Start(context.Background(), map[string]string{EnvKubeconfig: kc, EnvArchiveDSN: "::not a dsn password=secret"})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad DSN: %v", err)
	}
}

func TestTokenClientsDropBaseCredentials(t *testing.T) {
	base := &rest.Config{Host: "https://api:6443", BearerToken: "service", BearerTokenFile: "/var/run/token", Username: "admin", Password: "pw",
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte("ca"), CertData: []byte("cert"), KeyData: []byte("key")}}
	got := tokenConfig(base, "user")
	if got.BearerTokenFile != "" || got.Host != base.Host || string(got.CAData) != "ca" || got.CertData != nil || got.KeyData != nil || got.Username != "" || got.Password != "" || got.BearerToken != "user" {
		t.Fatalf("config %+v", got)
	}
	base.CAData = nil
	if _, err := tokenClients(base)("user"); err != nil {
		t.Fatal(err)
	}
}

func TestCallersCache(t *testing.T) {
	made := 0
	cs := newCallers(func(token string) (*Clients, error) {
		made++
		if token == "broken" {
			return nil, errors.New("no")
		}
		return &Clients{}, nil
	}, time.Minute)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cs.now = func() time.Time { return now }
	cs.max = 3

	a1, _ := cs.get("a")
	a2, _ := cs.get("a")
	if a1 != a2 || made != 1 {
		t.Fatalf("not reused: made %d", made)
	}
	if _, err := cs.get("broken"); err == nil {
		t.Fatal("error lost")
	}
	for i := range 10 {
		if _, err := cs.get(fmt.Sprint("t", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.len(); n > 3 {
		t.Fatalf("cache grew to %d", n)
	}
	now = now.Add(2 * time.Minute)
	a3, _ := cs.get("a")
	if a3 == a1 {
		t.Fatal("expired entry reused")
	}

	uncached := newCallers(func(string) (*Clients, error) { return &Clients{}, nil }, 0)
	x, _ := uncached.get("x")
	y, _ := uncached.get("x")
	if x == y || uncached.len() != 0 {
		t.Fatal("TTL 0 still caches")
	}
}

func TestCallerUsernameAndCan(t *testing.T) {
	fc := newFakeCluster(t, map[string][]string{"alice": {"team"}})
	c, err := fc.clientsFor("alice")
	if err != nil {
		t.Fatal(err)
	}
	cl := newCaller("alice", c)
	name, err := cl.Username(context.Background())
	if err != nil || name != "user:alice@example.com" {
		t.Fatalf("%q %v", name, err)
	}
	for ns, want := range map[string]bool{"team": true, "other": false} {
		ok, err := cl.Can(context.Background(), "list", ns)
		if err != nil || ok != want {
			t.Fatalf("%s: %v %v", ns, ok, err)
		}
	}
	reviews := 0
	for _, a := range c.Kube.(*kubefake.Clientset).Actions() {
		if a.GetResource().Resource == "selfsubjectaccessreviews" {
			reviews++
		}
	}
	_, _ = cl.Can(context.Background(), "list", "team")
	_, _ = cl.Username(context.Background())
	after := 0
	for _, a := range c.Kube.(*kubefake.Clientset).Actions() {
		if a.GetResource().Resource == "selfsubjectaccessreviews" || a.GetResource().Resource == "selfsubjectreviews" {
			after++
		}
	}
	if reviews != 2 || after != 3 {
		t.Fatalf("reviews %d then %d: decisions are not remembered", reviews, after)
	}
}
