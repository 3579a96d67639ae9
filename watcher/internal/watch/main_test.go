package watch

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The fake clientsets cannot stream a watch-list's initial events; make the
	// informers list, then watch, as they do against API servers without the feature.
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
