package controlplane

import (
	"net"
	"strconv"
	"testing"
	"time"
)

func TestRestartDelay(t *testing.T) {
	p := &process{}
	for i, step := range []struct {
		uptime, want time.Duration
	}{
		{time.Hour, firstRestartDelay},       // killed after a long run: at once
		{time.Second, 2 * firstRestartDelay}, // exits again soon: twice as long
		{time.Second, 4 * firstRestartDelay}, // and again
		{stableAfter, firstRestartDelay},     // stayed up: back to the first delay
		{0, 2 * firstRestartDelay},           // a crash loop begins again
	} {
		if got := p.nextDelay(step.uptime); got != step.want {
			t.Errorf("exit %d after %s: delay %s, want %s", i, step.uptime, got, step.want)
		}
	}
	p.delay = maxRestartDelay
	if got := p.nextDelay(0); got != maxRestartDelay {
		t.Errorf("a crash loop waits %s, want at most %s", got, maxRestartDelay)
	}
}

func TestAutoPortsAreKeptWhileFree(t *testing.T) {
	dir := t.TempDir()
	first, err := autoPorts(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := autoPorts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Fatalf("a plane started again on its state moved: %+v, then %+v", first, again)
	}
	// One of them taken by another process: new ports, all free.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(first.APIServer))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	moved, err := autoPorts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if moved.APIServer == first.APIServer || checkPortsFree(moved) != nil {
		t.Fatalf("with its API server port taken, the plane got %+v (was %+v)", moved, first)
	}
}
