package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/functions/summaries"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sandbox/stacktest"
)

// TestNamespaceDiscovery: pods run in two namespaces of the local plane, the watcher keeps
// their summaries, and the summaries family (its own credentials: the plane's admin)
// answers GET /api/v1/namespaces. Alice, granted view in one namespace, sees it with its
// app, and never the other, where she has no rights; carol, granted nothing, sees
// neither; when alice's grant goes, so does the namespace, within the access cache's TTL.
func TestNamespaceDiscovery(t *testing.T) {
	env := clustertest.Get(t)
	mine := env.Namespace(t)
	theirs := env.Namespace(t)
	cluster := "ns-" + mine[len(mine)-6:]
	env.Grant(t, mine, "alice", "view")
	makePod(t, env, mine, "web-1", "web")
	makePod(t, env, theirs, "vault-1", "vault")

	redisSrv := redistest.Start(t)
	fn := startFamily(t, env, redisSrv.Addr, cluster)
	stacktest.StartWatcher(t, env, "K_SINK="+fn+"/events", "DWP_CLUSTER_NAME="+cluster, "DWP_NAMESPACES="+mine+","+theirs)

	// Every page as the user, following continue tokens across the whole cluster.
	listAll := func(user string) map[string][]string {
		t.Helper()
		seen := map[string][]string{}
		cont := ""
		for page := 0; ; page++ {
			q := url.Values{"limit": {"3"}}
			if cont != "" {
				q.Set("continue", cont)
			}
			req, _ := http.NewRequest(http.MethodGet, fn+"/api/v1/namespaces?"+q.Encode(), nil)
			req.Header.Set("Authorization", "Bearer "+env.Token(t, user))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var l summaries.NamespaceList
			err = json.NewDecoder(resp.Body).Decode(&l)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				// The watcher's first round has not reached Redis yet.
				time.Sleep(200 * time.Millisecond)
				return nil
			}
			if resp.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("page %d as %s: %d %v", page, user, resp.StatusCode, err)
			}
			if len(l.Items) > 3 {
				t.Fatalf("page %d as %s: %d items, limit 3", page, user, len(l.Items))
			}
			for _, it := range l.Items {
				if _, dup := seen[it.Name]; dup {
					t.Fatalf("%s listed twice to %s", it.Name, user)
				}
				seen[it.Name] = it.Apps
			}
			if l.Continue == "" {
				return seen
			}
			cont = l.Continue
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		seen := listAll("alice")
		if _, ok := seen[theirs]; ok {
			t.Fatalf("alice sees %s, where she has no rights: %v", theirs, seen)
		}
		if slices.Equal(seen[mine], []string{"web"}) {
			t.Logf("alice sees %v", seen)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice does not see %s with its app web: %v", mine, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	carol := listAll("carol")
	for _, ns := range []string{mine, theirs} {
		if _, ok := carol[ns]; ok {
			t.Errorf("carol, granted nothing, sees %s", ns)
		}
	}

	// The grant goes: so does the namespace, once the cached answer expires.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.AdminClientset(t).RbacV1().RoleBindings(mine).Delete(ctx, "alice-view", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		seen := listAll("alice")
		if _, ok := seen[mine]; !ok && seen != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice still sees %s after her grant was deleted", mine)
		}
	}
}

// startFamily serves the summaries family (its routes and /events) with the plane's
// admin credentials as the function's own, and an access cache of 2 s.
func startFamily(t *testing.T, env *clustertest.Env, addr, cluster string) string {
	t.Helper()
	f := summaries.New()
	if err := f.Start(context.Background(), map[string]string{
		"DWP_KUBECONFIG": env.Kubeconfig, "DWP_REDIS_ADDR": addr, "DWP_CLUSTER_NAME": cluster,
		summaries.EnvAccessCacheTTL: "2s",
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	r := httprouter.New()
	f.Routes(r)
	er := eventrouter.New()
	f.Events(er)
	r.Handler(http.MethodPost, "/events", er)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// makePod creates a pod of app on the plane's node (kwok runs it).
func makePod(t *testing.T, env *clustertest.Env, ns, name, app string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := env.AdminClientset(t).CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeName:   env.NodeName,
			Containers: []corev1.Container{{Name: "main", Image: fmt.Sprintf("registry.example/%s:1", app)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}
