package integration

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// record is what a client saw of one event: its type, id and data.
type record struct{ typ, id, data string }

func (r record) String() string { return r.typ + "@" + r.id }

// collect reads events until stop returns true for one (included), returning them all.
func collect(t *testing.T, c *client, timeout time.Duration, what string, stop func(sse.Event) bool) []record {
	t.Helper()
	var out []record
	c.until(t, timeout, what, func(ev sse.Event) bool {
		out = append(out, record{ev.Type, ev.ID, ev.Data})
		return stop(ev)
	})
	return out
}

func after(rs []record, id string) []record {
	for i, r := range rs {
		if r.id == id {
			return rs[i+1:]
		}
	}
	return nil
}

func noRepeats(t *testing.T, what string, rs []record) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rs {
		key := r.id + "|" + r.data
		if seen[key] {
			t.Fatalf("%s: %s delivered twice", what, r)
		}
		seen[key] = true
	}
}

// Must show: a client reconnecting with Last-Event-ID gets exactly the lines and changes
// it missed, none twice. A client that stays connected throughout is the reference.
func TestResumeWithLastEventID(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	tok := env.Tokens["admin"]
	pl := env.PodLog(t, ns, "web-1", "main")
	appendLines(t, pl, "old", 0, 3)
	runningPod(t, env, ns, "web-1", "web")
	marker := func(c *client, v string) []record {
		return collect(t, c, 30*time.Second, "marker "+v, func(ev sse.Event) bool {
			return strings.Contains(ev.Data, `"marker":"`+v+`"`)
		})
	}

	t.Run("pods", func(t *testing.T) {
		path := "namespaces/" + ns + "/pods?app=web"
		ref := r.open(t, path, tok, "")
		c := r.open(t, path, tok, "")
		label(t, env, ns, "web-1", "marker", "m1")
		seenRef := marker(ref, "m1")
		seen := marker(c, "m1")
		last := seen[len(seen)-1].id
		c.close()

		// Changes while away: labels, and a new pod with its status changes.
		label(t, env, ns, "web-1", "away", "1")
		label(t, env, ns, "web-1", "away", "2")
		runningPod(t, env, ns, "web-2", "web")
		label(t, env, ns, "web-1", "marker", "m2")
		seenRef = append(seenRef, marker(ref, "m2")...)

		c2 := r.open(t, path, tok, last)
		got := marker(c2, "m2")
		want := after(seenRef, last)
		if len(want) < 4 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after reconnecting from %s got\n%v\nwant exactly what was missed\n%v", last, got, want)
		}
		noRepeats(t, "pods", append(seen, got...))
		if got[0].typ == "snapshot" || got[0].typ == "relist" {
			t.Fatalf("resumed with a full %s instead of the missed changes", got[0].typ)
		}
	})

	t.Run("pod log", func(t *testing.T) {
		path := "namespaces/" + ns + "/pods/web-1/log?container=main"
		c := r.open(t, path, tok, "")
		appendLines(t, pl, "seen", 0, 5)
		seen := collect(t, c, 30*time.Second, "seen lines", func(ev sse.Event) bool {
			return ev.Type == "log" && decodeLog(t, ev).Line == "seen 0004"
		})
		last := seen[len(seen)-1].id
		c.close()
		missed := appendLines(t, pl, "missed", 0, 20)
		c2 := r.open(t, path, tok, last)
		later := appendLines(t, pl, "later", 0, 2)
		var got []string
		var recs []record
		c2.until(t, 30*time.Second, "the missed and later lines", func(ev sse.Event) bool {
			recs = append(recs, record{ev.Type, ev.ID, ev.Data})
			got = append(got, decodeLog(t, ev).Line)
			return len(got) >= len(missed)+len(later)
		})
		if want := append(slices.Clone(missed), later...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %q\nwant %q", got, want)
		}
		noRepeats(t, "pod log", append(seen, recs...))
	})

	t.Run("multiplexed", func(t *testing.T) {
		q := url.Values{"subscribe": {"pods:namespaces/" + ns + "/pods?app=web", "log:namespaces/" + ns + "/pods/web-1/log?container=main"}}
		path := "mux?" + q.Encode()
		c := r.open(t, path, tok, "")
		if ev := c.next(t, 10*time.Second); ev.Type != "session" {
			t.Fatalf("first event %+v", ev)
		}
		label(t, env, ns, "web-1", "marker", "x1")
		appendLines(t, pl, "mux-seen", 0, 2)
		var seenPods, seenLog bool
		seen := collect(t, c, 30*time.Second, "both subscriptions", func(ev sse.Event) bool {
			seenPods = seenPods || (ev.Type == "pods" && strings.Contains(ev.Data, `"marker":"x1"`))
			seenLog = seenLog || (ev.Type == "log" && strings.Contains(ev.Data, "mux-seen 0001"))
			return seenPods && seenLog
		})
		last := seen[len(seen)-1].id
		c.close()
		missed := appendLines(t, pl, "mux-missed", 0, 3)
		label(t, env, ns, "web-1", "marker", "x2")

		c2 := r.open(t, path, tok, last)
		if ev := c2.next(t, 10*time.Second); ev.Type != "session" || !strings.Contains(ev.Data, `"resumed":true`) {
			t.Fatalf("reconnect: %+v", ev)
		}
		var lines []string
		var podMarks []string
		var recs []record
		c2.until(t, 30*time.Second, "the missed events of both subscriptions", func(ev sse.Event) bool {
			recs = append(recs, record{ev.Type, ev.ID, ev.Data})
			switch ev.Type {
			case "log":
				lines = append(lines, decodeLog(t, ev).Line)
			case "pods":
				if strings.Contains(ev.Data, `"snapshot"`) || strings.Contains(ev.Data, `"relist"`) {
					t.Fatalf("pods subscription restarted from a snapshot: %.200s", ev.Data)
				}
				if strings.Contains(ev.Data, `"marker":"x1"`) {
					podMarks = append(podMarks, "x1")
				}
				if strings.Contains(ev.Data, `"marker":"x2"`) {
					podMarks = append(podMarks, "x2")
				}
			}
			return len(lines) >= len(missed) && slices.Contains(podMarks, "x2")
		})
		if fmt.Sprint(lines) != fmt.Sprint(missed) {
			t.Fatalf("log lines after reconnecting %q, want %q", lines, missed)
		}
		if slices.Contains(podMarks, "x1") {
			t.Fatal("the change seen before disconnecting came again")
		}
		noRepeats(t, "mux", recs)
	})
}

// A log resumes exactly even when its topic is gone (nobody watched it for longer than
// the linger): the router reads the missed lines by time, from the second before, and
// skips those it had sent.
func TestLogResumeAfterTheTopicIsGone(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	// A ring of 3 lines cannot hold the 7 missed ones: they are read by time.
	r := startRouter(t, env, func(c *server.Config) { c.Linger, c.LogReplay = 100*time.Millisecond, 3 })
	tok := env.Tokens["admin"]
	pl := env.PodLog(t, ns, "web-1", "main")
	runningPod(t, env, ns, "web-1", "web")
	path := "namespaces/" + ns + "/pods/web-1/log?container=main"

	// Written before the topic starts: its ring keeps the last 3; the whole log asked
	// for is read once more.
	first := appendLines(t, pl, "first", 0, 5)
	env.WaitPodLogServed(t, ns, "web-1", "main")
	c := r.open(t, path, tok, "")
	var seen []string
	var lastID string
	c.until(t, 30*time.Second, "the first lines", func(ev sse.Event) bool {
		lastID = ev.ID
		seen = append(seen, decodeLog(t, ev).Line)
		return len(seen) == len(first)
	})
	if fmt.Sprint(seen) != fmt.Sprint(first) {
		t.Fatalf("whole log %q, want %q", seen, first)
	}
	c.close()
	deadline := time.Now().Add(10 * time.Second)
	for r.metric(t, `dwp_sse_topics{kind="pod_log"}`) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the log topic outlived its linger")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Written in the same second as the lines already sent, 1 ns apart.
	missed := appendLines(t, pl, "missed", 0, 7)
	c2 := r.open(t, path, tok, lastID)
	var got []string
	c2.until(t, 30*time.Second, "the missed lines", func(ev sse.Event) bool {
		got = append(got, decodeLog(t, ev).Line)
		return len(got) >= len(missed)
	})
	if fmt.Sprint(got) != fmt.Sprint(missed) {
		t.Fatalf("got %q, want exactly %q", got, missed)
	}
	// Two ring fills (one per topic), the whole log for the first client and the read
	// by time.
	if n := r.metric(t, `dwp_sse_upstream_requests_total{kind="pod_log",verb="fetch"}`); n != 4 {
		t.Fatalf("log fetches = %v, want 4", n)
	}
	later := appendLines(t, pl, "later", 0, 1)
	if l := decodeLog(t, c2.next(t, 30*time.Second)).Line; l != later[0] {
		t.Fatalf("then %q, want %q", l, later[0])
	}
}
