package ssebench

import (
	"math/bits"
	"sort"
	"time"
)

// subBuckets per power of two: values are kept within 1/64 (≈1.6 %) of their true size,
// so that millions of deliveries cost a few kilobytes to ship between processes.
const subBits = 6

// Hist is a log-linear histogram of durations in microseconds. The zero value is empty.
// It is not safe for concurrent use.
type Hist struct {
	Counts map[int]int64 `json:"counts,omitempty"`
	N      int64         `json:"n"`
	Max    int64         `json:"max"` // exact, µs
	Sum    int64         `json:"sum"` // µs
}

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	exp := bits.Len64(uint64(v)) - subBits // ≥ 1
	return exp<<subBits | int(v>>(exp-1))&(1<<subBits-1)
}

// bucketHigh is the largest value in bucket b, reported for percentiles so that they
// never understate.
func bucketHigh(b int) int64 {
	if b < 1<<subBits {
		return int64(b)
	}
	exp := b >> subBits
	mant := int64(b&(1<<subBits-1)) | 1<<subBits
	return (mant+1)<<(exp-1) - 1
}

// Add records one duration (negative ones, from clock steps, count as zero).
func (h *Hist) Add(d time.Duration) {
	us := max(d.Microseconds(), 0)
	if h.Counts == nil {
		h.Counts = map[int]int64{}
	}
	h.Counts[bucketOf(us)]++
	h.N++
	h.Sum += us
	h.Max = max(h.Max, us)
}

// Merge adds o's samples to h.
func (h *Hist) Merge(o Hist) {
	if h.Counts == nil {
		h.Counts = map[int]int64{}
	}
	for b, c := range o.Counts {
		h.Counts[b] += c
	}
	h.N += o.N
	h.Sum += o.Sum
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the q-quantile (0 < q ≤ 1): the smallest bucket bound with at least
// q·N samples at or below it, capped by the exact maximum.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	keys := make([]int, 0, len(h.Counts))
	for b := range h.Counts {
		keys = append(keys, b)
	}
	sort.Ints(keys)
	rank := int64(q*float64(h.N) + 0.999999)
	rank = min(max(rank, 1), h.N)
	var seen int64
	for _, b := range keys {
		seen += h.Counts[b]
		if seen >= rank {
			return time.Duration(min(bucketHigh(b), h.Max)) * time.Microsecond
		}
	}
	return time.Duration(h.Max) * time.Microsecond
}

// Percentiles are the summary the tables show.
type Percentiles struct {
	N   int64         `json:"n"`
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// Summary is p50, p99 and max of h.
func (h *Hist) Summary() Percentiles {
	return Percentiles{N: h.N, P50: h.Quantile(0.50), P99: h.Quantile(0.99), Max: time.Duration(h.Max) * time.Microsecond}
}
