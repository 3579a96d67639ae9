package main

import (
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

var sentRE = regexp.MustCompile(`(?m)^dwp_watcher_events_sent_total\{[^}]*\} (\d+)`)

// metricsOf reads whether a watcher leads and how many events it sent.
func metricsOf(p *watcherProc) (leading bool, sent int) {
	_, m := p.get("/metrics")
	for _, g := range sentRE.FindAllStringSubmatch(m, -1) {
		n, _ := strconv.Atoi(g[1])
		sent += n
	}
	return regexp.MustCompile(`(?m)^dwp_watcher_leader 1$`).MatchString(m), sent
}

// Two replicas: one leads and emits, the other stands by and sends nothing; when the
// leader stops, the other takes over.
func TestOneReplicaEmits(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	redisSrv := redistest.Start(t)
	fn := startFunction(t, map[string]string{"DWP_KUBECONFIG": env.Kubeconfig, "DWP_REDIS_ADDR": redisSrv.Addr, "DWP_CLUSTER_NAME": "leader-test"})
	watcherEnv := []string{
		"K_SINK=" + fn.URL + "/events", "DWP_KUBECONFIG=" + env.Kubeconfig, "DWP_CLUSTER_NAME=leader-test",
		"DWP_NAMESPACES=" + ns, "DWP_RESYNC_INTERVAL=1s", "DWP_LEASE_NAMESPACE=" + ns,
		"DWP_LEASE_DURATION=4s", "DWP_LEASE_RENEW_DEADLINE=3s", "DWP_LEASE_RETRY_PERIOD=500ms",
	}
	bin := watcherBinary(t)
	a, b := startWatcher(t, bin, watcherEnv), startWatcher(t, bin, watcherEnv)
	var leader, standby *watcherProc
	deadline := time.Now().Add(30 * time.Second)
	for leader == nil {
		if time.Now().After(deadline) {
			t.Fatal("no replica leads")
		}
		la, sa := metricsOf(a)
		lb, sb := metricsOf(b)
		switch {
		case la && lb:
			t.Fatal("both replicas lead")
		case la && sa > 0:
			leader, standby = a, b
		case lb && sb > 0:
			leader, standby = b, a
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // a few rounds
	if l, sent := metricsOf(standby); l || sent != 0 {
		t.Fatalf("the standby replica leads=%v and sent %d events", l, sent)
	}
	if code, _ := standby.get("/readyz"); code != 200 {
		t.Errorf("a standby replica is not ready: %d", code)
	}
	leader.stop(syscall.SIGTERM) // releases the lease
	start := time.Now()
	for {
		if l, sent := metricsOf(standby); l && sent > 0 {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatal("the standby replica did not take over")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the standby took over and emitted %s after the leader stopped", time.Since(start).Round(time.Millisecond))
}
