package watch

import (
	"os"
	"testing"
	"time"
)

// fixedClock is the summary stores' clock in tests that compare keyspaces: what is
// stored does not depend on when each event was applied.
func fixedClock() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

func TestMain(m *testing.M) {
	// The fake clientsets cannot stream a watch-list's initial events; make the
	// informers list, then watch, as they do against API servers without the feature.
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
