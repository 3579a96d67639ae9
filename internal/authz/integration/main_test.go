package integration

import (
	"testing"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }
