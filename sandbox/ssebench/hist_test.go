package ssebench

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBucketsRoundTrip(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 1<<40 + 12345} {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucket of %d (%d) below the previous value's (%d)", v, b, prev)
		}
		prev = b
		hi := bucketHigh(b)
		if hi < v || float64(hi-v) > float64(v)/64+1 {
			t.Errorf("value %d: bucket %d high %d, want ≥ value and within 1/64", v, b, hi)
		}
		if bucketOf(hi) != b {
			t.Errorf("value %d: high %d of bucket %d lies in bucket %d", v, hi, b, bucketOf(hi))
		}
	}
}

func TestQuantilesMatchExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h, a, b Hist
	var exact []int64
	for i := range 100000 {
		us := int64(r.ExpFloat64() * 20000) // a long tail, as latencies have
		exact = append(exact, us)
		h.Add(time.Duration(us) * time.Microsecond)
		// Merging two halves gives the same histogram as adding all.
		if i%2 == 0 {
			a.Add(time.Duration(us) * time.Microsecond)
		} else {
			b.Add(time.Duration(us) * time.Microsecond)
		}
	}
	slices.Sort(exact)
	a.Merge(b)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := exact[int(q*float64(len(exact))+0.999999)-1]
		got := h.Quantile(q).Microseconds()
		if got < want || float64(got-want) > float64(want)/64+1 {
			t.Errorf("q%.3f = %d µs, exact %d µs", q, got, want)
		}
		if m := a.Quantile(q); m != h.Quantile(q) {
			t.Errorf("q%.3f of merged halves = %s, of all = %s", q, m, h.Quantile(q))
		}
	}
	if s := h.Summary(); s.Max != time.Duration(exact[len(exact)-1])*time.Microsecond || s.N != 100000 {
		t.Errorf("summary %+v", s)
	}
}

func TestQuantileEdges(t *testing.T) {
	var h Hist
	if h.Quantile(0.99) != 0 {
		t.Error("empty histogram has a quantile")
	}
	h.Add(-time.Second) // a clock step: counted as zero, not dropped
	h.Add(3 * time.Millisecond)
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("p50 = %s, want 0", got)
	}
	if got := h.Quantile(1); got != 3*time.Millisecond {
		t.Errorf("p100 = %s, want 3ms", got)
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := &Table{Title: "1. Scale", Columns: []string{"stream", "N", "p99"}}
	tb.AddRow("pod log", 1000, "12.0 ms"+check(true))
	tb.AddRow("a|b", 5, fmtLatency(Percentiles{}))
	tb.Note("router %s", "v1")
	want := "## 1. Scale\n\n" +
		"| stream | N | p99 |\n" +
		"| --- | --- | --- |\n" +
		"| pod log | 1000 | 12.0 ms ✓ |\n" +
		"| a\\|b | 5 | — |\n" +
		"\n- router v1\n"
	if got := tb.Markdown(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	r := Report{Tables: []*Table{tb}}
	if md := r.Markdown(); !strings.Contains(md, want) || !strings.HasPrefix(md, "# SSE router benchmark") {
		t.Errorf("report markdown:\n%s", md)
	}
}

func TestFormatting(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 250 * time.Microsecond: "250 µs", 12300 * time.Microsecond: "12.3 ms", 2500 * time.Millisecond: "2.50 s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%s) = %q, want %q", d, got, want)
		}
	}
	p := Percentiles{N: 3, P50: time.Millisecond, P99: 2 * time.Millisecond, Max: 3 * time.Millisecond}
	if got := fmtLatency(p); got != "1.0 ms / 2.0 ms / 3.0 ms" {
		t.Errorf("fmtLatency = %q", got)
	}
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP go_goroutines x
go_goroutines 42
dwp_sse_upstreams{kind="pod_log"} 1
dwp_sse_upstreams{kind="pods",verb="a b"} 2
dwp_sse_upstream_requests_total{kind="pod_log",verb="fetch"} 3e0
`
	m, err := parseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 42 || m["dwp_sse_upstreams"] != 3 || m["dwp_sse_upstream_requests_total"] != 3 {
		t.Errorf("parsed %v", m)
	}
}
