// Command watcher turns the cluster's pods and Argo Workflows of apps into CloudEvents
// sent to K_SINK (internal/events), from which the task function keeps the app list's
// summaries. Configuration: environment variables (see internal/config), flags of the
// same meaning.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dwp-sre/dwp-sre/watcher/internal/config"
	"github.com/dwp-sre/dwp-sre/watcher/internal/service"
)

func main() {
	cfg, err := config.Load(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "watcher:", err)
		os.Exit(2)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := service.Run(ctx, cfg, log); err != nil {
		log.Error("watcher failed", "err", err)
		os.Exit(1)
	}
}
