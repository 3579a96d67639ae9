package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// promClient asks a Prometheus for range queries (its HTTP API, /api/v1/query_range).
// Queries are built here from fixed templates and a namespace the caller was authorised
// for; nothing a browser sends reaches them.
type promClient struct {
	base *url.URL
	http *http.Client
}

// maxPromResponse bounds what one range query may return: an hour of two series per
// container of a large namespace is a few megabytes.
const maxPromResponse = 64 << 20

// newPromClient is a client of the Prometheus at rawURL (its base: queries go to
// <base>/api/v1/query_range).
func newPromClient(rawURL string, hc *http.Client) (*promClient, error) {
	u, err := ParsePrometheusURL(rawURL)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{}
	}
	return &promClient{base: u, http: hc}, nil
}

// ParsePrometheusURL checks a Prometheus base URL: http or https, a host, and nothing
// that would change what the router asks (a query or a fragment).
func ParsePrometheusURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("prometheus URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("prometheus URL %q: want http or https", rawURL)
	case u.Host == "":
		return nil, fmt.Errorf("prometheus URL %q: no host", rawURL)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("prometheus URL %q: no query or fragment, please", rawURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// promString quotes s as a PromQL string literal. PromQL's double-quoted strings take
// Go's escapes, so strconv.Quote's output is one; a namespace (a DNS-1123 label) never
// needs them, but the query must not depend on that.
func promString(s string) string { return strconv.Quote(s) }

// Range queries of one namespace's usage, by pod and container: CPU as a rate in cores
// (kubelet's counter starts when first scraped, so only its rate means anything) and
// memory as the working set in bytes, what metrics.k8s.io reports. The kubelet's
// resource metrics name containers only; cAdvisor's, where Prometheus scrapes those
// instead, also have whole pods (no container) and their sandboxes ("POD"), which are
// left out.
func cpuQuery(ns string, window time.Duration) string {
	return fmt.Sprintf(`sum by (pod, container) (rate(container_cpu_usage_seconds_total{%s}[%s]))`, containerSelector(ns), promDuration(window))
}

func memoryQuery(ns string) string {
	return fmt.Sprintf(`sum by (pod, container) (container_memory_working_set_bytes{%s})`, containerSelector(ns))
}

func containerSelector(ns string) string {
	return `namespace=` + promString(ns) + `,container!="",container!="POD"`
}

// promDuration writes d in PromQL's duration syntax, in whole seconds.
func promDuration(d time.Duration) string {
	return strconv.FormatInt(int64(max(d, time.Second)/time.Second), 10) + "s"
}

// promSeries is one series of a matrix result.
type promSeries struct {
	Metric map[string]string
	Points []promPoint
}

// promPoint is one sample; Prometheus gives times in milliseconds.
type promPoint struct {
	T time.Time
	V float64
}

// PromError is an answer of Prometheus that is not a result.
type PromError struct {
	Status    int    // the HTTP status
	ErrorType string // Prometheus's errorType (bad_data, timeout, …)
	Message   string
}

func (e *PromError) Error() string {
	if e.ErrorType == "" && e.Message == "" {
		return fmt.Sprintf("prometheus answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("prometheus answered %d: %s: %s", e.Status, e.ErrorType, e.Message)
}

// queryRange runs one range query.
func (c *promClient) queryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]promSeries, error) {
	u := *c.base
	u.Path += "/api/v1/query_range"
	form := url.Values{
		"query": {query},
		"start": {promTime(start)},
		"end":   {promTime(end)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	// POST keeps long queries out of URLs and access logs; Prometheus takes both.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus query_range: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPromResponse+1))
	if err != nil {
		return nil, fmt.Errorf("prometheus query_range: read: %w", err)
	}
	if len(body) > maxPromResponse {
		return nil, fmt.Errorf("prometheus query_range: answer larger than %d bytes", maxPromResponse)
	}
	series, err := parseRangeResponse(resp.StatusCode, body)
	if err != nil {
		return nil, fmt.Errorf("prometheus query_range: %w", err)
	}
	return series, nil
}

// promTime writes t as Prometheus's API takes it: Unix seconds, to the millisecond.
func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// rangeResponse is the API's envelope around a matrix result.
type rangeResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string    `json:"metric"`
			Values [][2]json.RawMessage `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

// Bounds of a sample's time: Prometheus's own (its timestamps are int64 milliseconds),
// well inside what time.Time holds.
const (
	minPromSeconds = -9.2e15
	maxPromSeconds = 9.2e15
)

// parseRangeResponse reads an answer of /api/v1/query_range: a matrix, or Prometheus's
// error. Samples that are not finite numbers (NaN, ±Inf, which Prometheus writes as
// strings) are left out; anything malformed fails the whole answer.
func parseRangeResponse(status int, body []byte) ([]promSeries, error) {
	var r rangeResponse
	err := json.Unmarshal(body, &r)
	if status/100 != 2 || (err == nil && r.Status != "success") {
		pe := &PromError{Status: status}
		if err == nil {
			pe.ErrorType, pe.Message = r.ErrorType, r.Error
			if pe.ErrorType == "" && pe.Message == "" && r.Status != "" {
				pe.Message = "status " + strconv.Quote(r.Status)
			}
		}
		return nil, pe
	}
	if err != nil {
		return nil, fmt.Errorf("not a Prometheus answer: %w", err)
	}
	if r.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("result type %q, want matrix", r.Data.ResultType)
	}
	out := make([]promSeries, 0, len(r.Data.Result))
	for i, res := range r.Data.Result {
		s := promSeries{Metric: res.Metric, Points: make([]promPoint, 0, len(res.Values))}
		for j, v := range res.Values {
			p, ok, err := parseSample(v)
			if err != nil {
				return nil, fmt.Errorf("series %d, sample %d: %w", i, j, err)
			}
			if ok {
				s.Points = append(s.Points, p)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// parseSample reads one [<unix seconds>, "<value>"] pair; ok is false for a value that
// is not a finite number.
func parseSample(v [2]json.RawMessage) (_ promPoint, ok bool, _ error) {
	var secs float64
	if err := json.Unmarshal(v[0], &secs); err != nil {
		return promPoint{}, false, fmt.Errorf("time: %w", err)
	}
	if math.IsNaN(secs) || secs < minPromSeconds || secs > maxPromSeconds {
		return promPoint{}, false, errors.New("time out of range")
	}
	var raw string
	if err := json.Unmarshal(v[1], &raw); err != nil {
		return promPoint{}, false, fmt.Errorf("value: %w", err)
	}
	val, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		var ne *strconv.NumError
		if !errors.As(err, &ne) || ne.Err != strconv.ErrRange {
			return promPoint{}, false, fmt.Errorf("value %q: not a number", raw)
		}
		// Out of float64's range: as infinite as Prometheus's own +Inf.
	}
	if math.IsNaN(val) || math.IsInf(val, 0) || err != nil {
		return promPoint{}, false, nil
	}
	return promPoint{T: time.UnixMilli(int64(math.Round(secs * 1000))).UTC(), V: val}, true, nil
}
