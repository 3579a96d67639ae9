// Command dwp-images is `make images`: the OCI images of the task function, the watcher and
// the SSE router, built without a container engine (package sandbox/images). Settings:
// flags, or the DWP_IMAGES_* variables and SOURCE_DATE_EPOCH (dwp-images -h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/dwp-sre/dwp-sre/sandbox/images"
)

func main() {
	cfg, err := images.Load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dwp-images:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := images.Run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dwp-images:", err)
		os.Exit(1)
	}
}
