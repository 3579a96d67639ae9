package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// Must show: a burst of 1,000 distinct users connecting at once is all served. Each user
// is a ServiceAccount of its own, so every stream needs its own TokenReview and access
// reviews; a burst waits its turn on the reviews' client rather than being refused.
func TestThousandUsersConnectAtOnce(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	const users = 1000
	tokens := env.PodReaderTokens(t, ns, users)
	r := startRouter(t, env, nil)

	url := r.URL + "/api/v1/stream/namespaces/" + ns + "/pods"
	statuses := make([]int, users)
	errs := make([]error, users)
	start := time.Now()
	var wg sync.WaitGroup
	for i, tok := range tokens {
		wg.Go(func() { statuses[i], errs[i] = openFirstEvent(t, url, tok) })
	}
	wg.Wait()
	took := time.Since(start)
	byStatus := map[int]int{}
	for i, st := range statuses {
		if errs[i] != nil {
			t.Errorf("user-%d: %v", i, errs[i])
		}
		byStatus[st]++
	}
	t.Logf("%d distinct users connecting at once: %v (status: streams) in %s", users, byStatus, took.Round(time.Millisecond))
	if byStatus[http.StatusOK] != users {
		t.Fatalf("served %d of %d users: %v", byStatus[http.StatusOK], users, byStatus)
	}
	if got := r.metric(t, `dwp_sse_upstreams{kind="pods"}`); got != 1 {
		t.Fatalf("pods upstreams = %v, want the 1 shared by every user", got)
	}
}

// openFirstEvent opens a stream as the holder of token and waits for its first event.
// The stream stays open until the test ends.
func openFirstEvent(t *testing.T, url, token string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return resp.StatusCode, fmt.Errorf("no first event: %w", err)
		}
		if strings.HasPrefix(line, "event: snapshot") {
			return resp.StatusCode, nil
		}
	}
}
