package integration_test

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkImageBump measures an image bump of an app, submit to Succeeded (Argo CD
// reports the new revision Synced and Healthy), on the real plane: the watcher following
// the app's Application (a step is looked at again the moment Argo CD changes it), side
// by side with the naive way, a step looked at again only at the recheck interval.
func BenchmarkImageBump(b *testing.B) {
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"follow-application", nil},
		{"recheck-every-10s", []string{"DWP_ARGOCD_NAMESPACE=", "DWP_STEP_RECHECK_INTERVAL=10s"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			fx := setupWith(b, c.env...)
			fx.succeeded(b, fx.mustSubmit(b, "dwp-cd-app-service", "bench", "image=registry.example/bench:0"), runTimeout)
			b.ResetTimer()
			var total time.Duration
			for i := range b.N {
				start := time.Now()
				fx.succeeded(b, fx.mustSubmit(b, "dwp-cd-app-service", "bench", fmt.Sprintf("image=registry.example/bench:%d", i+1)), runTimeout)
				total += time.Since(start)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/deploy")
		})
	}
}
