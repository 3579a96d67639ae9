// Command argocd-repo-server is Argo CD's repository server (it renders manifests from git
// with helm and kustomize), built from the pinned upstream module for the local control plane.
package main

import (
	"os"

	"github.com/argoproj/argo-cd/v2/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v2/cmd/util"
)

func main() {
	util.SetAutoMaxProcs(false)
	if err := commands.NewCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
