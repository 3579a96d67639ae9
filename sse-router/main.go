// Command sse-router serves the portal's live streams (Server-Sent Events): one upstream
// watch, log follow or metrics poll per resource, shared by every browser watching it.
// Configuration: DWP_* environment variables, mirrored by flags (sse-router -h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sse-router:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := server.LoadConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	clusters, err := kube.Load(kube.Options{
		Kubeconfig: cfg.Kubeconfig, Default: cfg.DefaultCluster,
		QPS: float32(cfg.KubeQPS), Burst: cfg.KubeBurst, UserAgent: "dwp-sse-router",
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	deps := server.Deps{Clusters: clusters, Logger: log}
	if cfg.Redis.Addr != "" {
		rdb := cfg.Redis.Client()
		defer rdb.Close()
		deps.Apps = upstream.NewSummaryApps(rdb, cfg.Redis.Prefix, cfg.SummaryClusterNames)
	}
	err = server.Run(ctx, cfg, deps)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("some streams did not close in time")
		return nil
	}
	return err
}
