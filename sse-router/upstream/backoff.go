package upstream

import (
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// newBackoff is how the upstreams retry: from lo, doubling on each failure up to hi, each
// wait stretched by up to half again at random, so that topics failing together (an API
// server restart) do not retry together.
func newBackoff(lo, hi time.Duration) wait.Backoff {
	lo = max(lo, time.Millisecond) // a zero wait would spin
	return wait.Backoff{
		Duration: lo,
		Factor:   2,
		Jitter:   0.5,
		Cap:      max(hi, lo),
		Steps:    math.MaxInt32, // never give up: the cap holds once reached
	}
}
