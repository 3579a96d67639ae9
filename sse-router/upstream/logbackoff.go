package upstream

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// logRetry paces the retries of one log upstream: an exponential backoff between the
// configured bounds, with jitter so that the follows broken together (an API server
// restart) do not come back together. A success resets it.
type logRetry struct {
	bounds [2]time.Duration
	b      wait.Backoff
}

// retryJitter spreads each short wait over [d, 1.5 d], as newBackoff does the others.
const retryJitter = 0.5

func newLogRetry(bounds [2]time.Duration) *logRetry {
	r := &logRetry{bounds: bounds}
	r.reset()
	return r
}

// reset starts the backoff over from the shortest wait.
func (r *logRetry) reset() {
	r.b = newBackoff(r.bounds[0], r.bounds[1])
}

// backoff waits the next, longer, step; false when ctx ended meanwhile.
func (r *logRetry) backoff(ctx context.Context) bool { return pause(ctx, r.b.Step()) }

// short waits the shortest step without lengthening the next ones: for an upstream that
// answers but has nothing yet (a container still starting, a stream cleanly ended).
func (r *logRetry) short(ctx context.Context) bool {
	return pause(ctx, wait.Jitter(r.bounds[0], retryJitter))
}

// pause waits d or until ctx ends, reporting whether it waited all of d.
func pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
