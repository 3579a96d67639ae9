// Command dwp-function runs the task function outside Knative (for `make run` and tests)
// with the project's runner, which serves it as Knative's func-go runtime does.
package main

import (
	"log/slog"
	"os"

	function "github.com/dwp-sre/dwp-sre"
	"github.com/dwp-sre/dwp-sre/internal/runner"
)

func main() {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err := runner.Run(function.New()); err != nil {
		slog.Error("function failed", "err", err)
		os.Exit(1)
	}
}
