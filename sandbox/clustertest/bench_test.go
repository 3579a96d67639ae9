package clustertest_test

import (
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// BenchmarkStartToReady measures a built control plane from launch to ready (all
// components up, CRDs established, node Ready, metrics API available); the target is 15 s.
func BenchmarkStartToReady(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		_, stop := clustertest.Launch(b)
		total += time.Since(start)
		// Stopped before the next one starts: planes piled up would slow each other.
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/ready")
	b.ReportMetric(15/(total.Seconds()/float64(b.N)), "x-under-15s-target")
}

// BenchmarkAPIServerRestart measures a restart of the API server with its state kept,
// until /readyz answers again.
func BenchmarkAPIServerRestart(b *testing.B) {
	env := clustertest.Private(b)
	b.ResetTimer()
	for b.Loop() {
		env.RestartAPIServer(b)
	}
}
