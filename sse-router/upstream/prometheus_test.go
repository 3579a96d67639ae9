package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The queries are fixed templates around the namespace, quoted as a PromQL string
// literal whatever it holds.
func TestPromQueries(t *testing.T) {
	if got, want := cpuQuery("shop", 30*time.Second), `sum by (pod, container) (rate(container_cpu_usage_seconds_total{namespace="shop",container!="",container!="POD"}[30s]))`; got != want {
		t.Errorf("cpu query\n got %s\nwant %s", got, want)
	}
	if got, want := memoryQuery("shop"), `sum by (pod, container) (container_memory_working_set_bytes{namespace="shop",container!="",container!="POD"})`; got != want {
		t.Errorf("memory query\n got %s\nwant %s", got, want)
	}
	for _, ns := range []string{
		"shop",
		`a"}) or vector(1) #`,
		`back\slash`,
		"new\nline",
		"tab\tand\x00nul",
		"ünïcödé",
		"\xff\xfe not UTF-8",
	} {
		for _, q := range []string{cpuQuery(ns, 30*time.Second), memoryQuery(ns)} {
			// Everything between the brace and the closing one is one double-quoted
			// literal (PromQL takes Go's escapes) that reads as the namespace.
			lit := between(t, q, "{namespace=", `,container!="",container!="POD"}`)
			got, err := strconv.Unquote(lit)
			if err != nil || !strings.HasPrefix(lit, `"`) {
				t.Errorf("namespace %q: %s is not one string literal: %v", ns, lit, err)
				continue
			}
			if got != ns {
				t.Errorf("namespace %q: the literal %s reads %q", ns, lit, got)
			}
			if strings.ContainsAny(lit, "\n\x00") {
				t.Errorf("namespace %q: control characters are not escaped in %s", ns, lit)
			}
		}
	}
}

// between is what q holds between the first prefix and the last suffix.
func between(t *testing.T, q, prefix, suffix string) string {
	t.Helper()
	i := strings.Index(q, prefix)
	j := strings.LastIndex(q, suffix)
	if i < 0 || j < i+len(prefix) {
		t.Fatalf("%q has no %s…%s", q, prefix, suffix)
	}
	return q[i+len(prefix) : j]
}

func TestParsePrometheusURL(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"http://127.0.0.1:9090", "http://127.0.0.1:9090", true},
		{"https://prom.example/prometheus/", "https://prom.example/prometheus", true},
		{"ftp://prom.example", "", false},
		{"prom.example:9090", "", false},
		{"http://", "", false},
		{"http://prom.example/?query=up", "", false},
		{"http://prom.example/#x", "", false},
		{"http://prom.example/?", "", false},
	} {
		u, err := ParsePrometheusURL(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%q: err %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && u.String() != tt.want {
			t.Errorf("%q: %s, want %s", tt.in, u, tt.want)
		}
	}
}

// A range query is a POST to <base>/api/v1/query_range with the query, its bounds in Unix
// seconds and its step; the matrix comes back as series of points.
func TestQueryRange(t *testing.T) {
	type asked struct {
		method, path, query, start, end, step string
	}
	got := make(chan asked, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		got <- asked{r.Method, r.URL.Path, r.PostForm.Get("query"), r.PostForm.Get("start"), r.PostForm.Get("end"), r.PostForm.Get("step")}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"success","data":{"resultType":"matrix","result":[
			{"metric":{"pod":"web-1","container":"app"},"values":[[1767225600,"0.12"],[1767225615.5,"0.125"]]}]}}`)
	}))
	defer srv.Close()
	c, err := newPromClient(srv.URL+"/prom/", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1767222000, 0)
	end := time.Unix(1767225600, 250e6)
	series, err := c.queryRange(context.Background(), cpuQuery("shop", 30*time.Second), start, end, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := <-got
	want := asked{http.MethodPost, "/prom/api/v1/query_range", cpuQuery("shop", 30*time.Second), "1767222000.000", "1767225600.250", "15"}
	if a != want {
		t.Errorf("asked %+v\nwant  %+v", a, want)
	}
	if len(series) != 1 || series[0].Metric["pod"] != "web-1" || len(series[0].Points) != 2 {
		t.Fatalf("series %+v", series)
	}
	if p := series[0].Points[1]; !p.T.Equal(time.UnixMilli(1767225615500)) || p.V != 0.125 {
		t.Errorf("second point %+v", p)
	}
}

func TestParseRangeResponse(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		points []int // points per series
		err    string
	}{
		{name: "matrix", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a"},"values":[[1,"1"],[2,"2"]]},{"metric":{},"values":[]}]}}`, points: []int{2, 0}},
		{name: "empty", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[]}}`, points: []int{}},
		{name: "not finite values are left out", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"NaN"],[2,"+Inf"],[3,"-Inf"],[4,"1e400"],[5,"7"]]}]}}`, points: []int{1}},
		{name: "warnings are fine", status: 200, body: `{"status":"success","warnings":["w"],"data":{"resultType":"matrix","result":[]}}`, points: []int{}},
		{name: "error answer", status: 400, body: `{"status":"error","errorType":"bad_data","error":"parse error"}`, err: "prometheus answered 400: bad_data: parse error"},
		{name: "error status in a 200", status: 200, body: `{"status":"error","errorType":"timeout","error":"query timed out"}`, err: "timeout: query timed out"},
		{name: "not JSON", status: 503, body: `<html>Service Unavailable</html>`, err: "prometheus answered 503 Service Unavailable"},
		{name: "not JSON in a 200", status: 200, body: `<html>`, err: "not a Prometheus answer"},
		{name: "vector", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[]}}`, err: `result type "vector"`},
		{name: "value not a string", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,1]]}]}}`, err: "value"},
		{name: "value not a number", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"one"]]}]}}`, err: "not a number"},
		{name: "time not a number", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[["1","1"]]}]}}`, err: "time"},
		{name: "time out of range", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1e300,"1"]]}]}}`, err: "time out of range"},
		{name: "short sample", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1]]}]}}`, err: "value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			series, err := parseRangeResponse(tt.status, []byte(tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, s := range series {
				got = append(got, len(s.Points))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.points) {
				t.Errorf("points per series %v, want %v", got, tt.points)
			}
		})
	}
	var pe *PromError
	if _, err := parseRangeResponse(502, []byte(`{}`)); !errors.As(err, &pe) || pe.Status != 502 {
		t.Errorf("a 502 gives %v, want a PromError", err)
	}
}

// Whatever Prometheus (or what answers in its place) sends, the parser returns series
// of finite points or an error, and what it returns makes a history view and a payload.
func FuzzParseRangeResponse(f *testing.F) {
	for _, seed := range []string{
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a","container":"c"},"values":[[1767225600,"0.12"],[1767225615,"NaN"]]}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a","container":"c"},"values":[[1,"1e308"],[1.001,"-5"]]},{"metric":{"pod":"a","container":"c"},"values":[[1,"3"]]}]}}`,
		`{"status":"error","errorType":"bad_data","error":"x"}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"values":[[-1e15,"1"]]}]}}`,
		`[]`, `null`, ``,
	} {
		f.Add(200, []byte(seed))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		series, err := parseRangeResponse(status, body)
		if err != nil {
			if series != nil {
				t.Fatalf("series %v with error %v", series, err)
			}
			return
		}
		if status/100 != 2 {
			t.Fatalf("status %d parsed as a result", status)
		}
		for _, s := range series {
			for _, p := range s.Points {
				if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
					t.Fatalf("point %+v is not finite", p)
				}
			}
		}
		h := newNSHistory(time.Unix(0, 0), time.Unix(3600, 0), 15*time.Second, series, series)
		p, ok := h.view(nil, time.Time{}, time.Time{})
		if _, err := json.Marshal(p); err != nil {
			t.Fatalf("payload does not encode: %v", err)
		}
		if ok && (p.Start == nil || p.End == nil || p.End.Before(*p.Start)) {
			t.Fatalf("bounds %v…%v", p.Start, p.End)
		}
	})
}
