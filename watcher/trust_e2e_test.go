package main

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// TestForgedStateAndLostRedisHeal (issue 9, parts 2 and 3), on the local control plane
// with the watcher binary, the real function and a private Redis:
//   - an allowed sender posts a forged io.dwp.pod.deleted.v1 with the greatest ordering
//     key for a real pod, and a pod of a made-up app with the same key: both take effect,
//     and the first round listed after them undoes them (the summaries equal the
//     cluster's);
//   - the summaries' keys are deleted: the app list answers 503 "rebuilding" (never an
//     empty list) and is right again within 5 s.
func TestForgedStateAndLostRedisHeal(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	kube := env.AdminClientset(t)
	argo, err := wfclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster := "trust-" + ns[len(ns)-6:]
	redisSrv := redistest.Start(t)
	store := summarystore.New(redisSrv.Client(t, 0), "dwp:")
	fn := startFunction(t, map[string]string{
		"DWP_KUBECONFIG": env.Kubeconfig, "DWP_REDIS_ADDR": redisSrv.Addr, "DWP_CLUSTER_NAME": cluster,
	})
	const resync = 3 * time.Second
	bin := watcherBinary(t)
	watcherEnv := func(resync time.Duration) []string {
		return []string{
			"K_SINK=" + fn.URL + "/events", "DWP_KUBECONFIG=" + env.Kubeconfig, "DWP_CLUSTER_NAME=" + cluster,
			"DWP_NAMESPACES=" + ns, "DWP_RESYNC_INTERVAL=" + resync.String(), "DWP_LEADER_ELECT=false",
			"DWP_REDIS_ADDR=" + redisSrv.Addr, "DWP_REBUILD_CHECK_INTERVAL=1s",
		}
	}
	w := startWatcher(t, bin, watcherEnv(resync))
	o := startOracle(t, ctx, kube, argo, cluster, ns)
	for name, n := range map[string]int32{"web": 2, "api": 1} {
		if _, err := kube.AppsV1().Deployments(ns).Create(ctx, deployment(name, n), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	submit(t, argo, ns, "web", "build")
	waitStable(t, o, 2*time.Second, 90*time.Second)
	waitConverged(t, "before forging", o, store, cluster, ns, 10*time.Second)

	// Forged, with the token of the one allowed sender.
	tokenFile, _ := env.SenderToken(t, "default", "dwp-watcher", testAudience)
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods of web: %v %v", len(pods.Items), err)
	}
	p := pods.Items[0]
	now := time.Now()
	live := events.Pod{Namespace: ns, App: "web", Name: p.Name, UID: string(p.UID), Ordering: events.MaxOrdering, Phase: "Running", ChangedAt: now}
	fake := events.Pod{Namespace: ns, App: "fake", Name: "fake-0", UID: "00000000-0000-0000-0000-00000000fake", Ordering: events.MaxOrdering, Phase: "Running", Ready: true, ChangedAt: now}
	forged := time.Now()
	for _, f := range []struct {
		deleted bool
		pod     events.Pod
	}{{true, live}, {false, fake}} {
		e, err := events.NewPodEvent(cluster, f.deleted, f.pod, now)
		if err != nil {
			t.Fatal(err)
		}
		if code, body := postEvent(t, fn.URL, strings.TrimSpace(string(token)), e); code/100 != 2 {
			t.Fatalf("forged %s: %d %s (an allowed sender's event should be taken)", e.Type(), code, body)
		}
	}
	sums, err := store.Summaries(ctx, cluster, ns)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]int{}
	for _, s := range sums[ns] {
		shown[s.App] = s.Run.Pods
	}
	if shown["web"] != 1 || shown["fake"] != 1 {
		t.Fatalf("the forged events did not take effect (pods by app %v): the test shows nothing", shown)
	}
	took := waitConverged(t, "after forging", o, store, cluster, ns, resync+summarystore.ClockSkew+5*time.Second)
	// The round that undid them: the first whose listing began a clock skew after them.
	// The recorder appends an event after the function has applied it, so the store can
	// show the round a moment before the record does.
	firstRound := func() time.Time {
		var first time.Time
		for _, ev := range fn.recorded() {
			if ev.header.Get("Ce-Type") != events.TypeClusterSnapshot {
				continue
			}
			var c events.ClusterSnapshot
			if json.Unmarshal(ev.body, &c) == nil && c.Kind == events.KindPods && c.ListedAt.After(forged.Add(summarystore.ClockSkew)) {
				if first.IsZero() || c.ListedAt.Before(first) {
					first = c.ListedAt
				}
			}
		}
		return first
	}
	first := firstRound()
	for deadline := time.Now().Add(2 * time.Second); first.IsZero() && time.Now().Before(deadline); first = firstRound() {
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("forged state undone %s after it was posted, by the round listed %s after it (resync %s, clock skew allowed %s)",
		took.Round(time.Millisecond), first.Sub(forged).Round(time.Millisecond), resync, summarystore.ClockSkew)
	// One round: undone before the next round after the first one that could undo it.
	if first.IsZero() || took > first.Sub(forged)+resync-500*time.Millisecond {
		t.Errorf("the forged state outlived the round listed %s after it", first.Sub(forged).Round(time.Millisecond))
	}

	// Redis loses the summaries, with a watcher whose next resync is far off: only its
	// check of the marker can bring them back in time.
	w.stop(syscall.SIGTERM)
	startWatcher(t, bin, watcherEnv(time.Hour))
	time.Sleep(4 * time.Second) // its first round applied, the grace after it over
	waitConverged(t, "with the second watcher", o, store, cluster, ns, 10*time.Second)
	appsPath := fn.URL + "/api/v1/namespaces/" + ns + "/apps"
	keys, err := store.Keys(ctx, cluster)
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	rdb := redisSrv.Client(t, 0)
	// At any point of the watcher's 1 s check: the time measured is not always the best case.
	time.Sleep(rand.N(time.Second))
	lost := time.Now()
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	rebuilding, wrong := 0, 0
	var healed time.Duration
	for healed == 0 {
		if time.Since(lost) > 10*time.Second {
			t.Fatalf("the app list is not right 10 s after the loss (%d rebuilding answers, %d wrong)", rebuilding, wrong)
		}
		code, body, retry := getWithToken(t, appsPath, env.Token(t, "admin"))
		switch {
		case code == http.StatusServiceUnavailable && strings.Contains(body, "rebuilding") && retry != "":
			rebuilding++
		case code == http.StatusOK:
			var list struct {
				Items []events.AppSummary `json:"items"`
			}
			_ = json.Unmarshal([]byte(body), &list)
			got := map[string]string{}
			for _, s := range list.Items {
				got[s.App] = summaryKey(&s)
			}
			if equalMaps(got, o.expected()) {
				healed = time.Since(lost)
				continue
			}
			wrong++
			if len(list.Items) == 0 {
				t.Errorf("an empty list %s after the loss: %s", time.Since(lost).Round(time.Millisecond), body)
			}
		default:
			t.Fatalf("app list while rebuilding: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("Redis lost the summaries: the app list was right again after %s; meanwhile %d answers said rebuilding, %d were not yet right",
		healed.Round(time.Millisecond), rebuilding, wrong)
	if healed > 5*time.Second {
		t.Errorf("healed after %s, want within 5 s", healed)
	}
	if rebuilding == 0 {
		t.Error("no answer said rebuilding")
	}
	if wrong > 0 {
		t.Errorf("%d answers were a wrong list rather than rebuilding", wrong)
	}
}

// postEvent sends e to the function's /events in binary mode with a bearer token.
func postEvent(t *testing.T, base, token string, e event.Event) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&e), req); err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func getWithToken(t *testing.T, url, token string) (code int, body, retryAfter string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// withoutStamps leaves out of a keyspace dump the times at which the store wrote entries
// and floors (t:<ns>/<app>, ft): they are when the events were applied, not what they
// said, and differ between two replays of the same events.
func withoutStamps(dump map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range dump {
		if !strings.Contains(k, "}:t:") && !strings.HasSuffix(k, "}:ft") {
			out[k] = v
		}
	}
	return out
}
