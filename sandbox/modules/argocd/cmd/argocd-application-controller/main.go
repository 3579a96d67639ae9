// Command argocd-application-controller is Argo CD's application controller, built from the
// pinned upstream module for the local control plane.
package main

import (
	"os"

	"github.com/argoproj/argo-cd/v2/cmd/argocd-application-controller/commands"
	"github.com/argoproj/argo-cd/v2/cmd/util"
)

func main() {
	// Upstream's multi-call binary does the same for its servers: GOMAXPROCS from the
	// cgroup quota, logged.
	util.SetAutoMaxProcs(false)
	if err := commands.NewCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
