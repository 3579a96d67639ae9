// Command dwp-run is `make run`: the local control plane and every dwp-sre service on it,
// kept up (a component that exits is restarted) until Ctrl-C or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
	"github.com/dwp-sre/dwp-sre/sandbox/supervisor"
)

func main() {
	root := flag.String("repo", ".", "repository root")
	bin := flag.String("bin", "bin", "folder of the binaries (relative to -repo)")
	state := flag.String("state", ".state", "state folder: the plane's state, logs, keys (relative to -repo)")
	grace := flag.Duration("grace", 15*time.Second, "how long a component may take to stop after SIGINT")
	seed := flag.Bool("seed", true, "submit the demo's past CI and CD runs on the cluster's first start")
	ports := flag.String("ports", "default", `"default" (the addresses the README shows) or "auto" (free ports for the plane and the services, to run beside another)`)
	redis := flag.String("redis", supervisor.DefaultAddrs.Redis, "Redis address of the services")
	archiveDB := flag.String("archive-db", "dwp_argo", "Postgres database of the plane's workflow archive")
	dropDB := flag.Bool("drop-archive-db", false, "drop the archive database when the plane stops")
	flag.Parse()

	abs, err := filepath.Abs(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dwp-run:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := supervisor.Config{
		Root: abs, BinDir: *bin, StateDir: *state,
		Backoff: supervisor.DefaultBackoff, Grace: *grace, ReadyTimeout: 40 * time.Minute,
		Seed: *seed, Out: os.Stdout, Addrs: supervisor.DefaultAddrs,
		Plane: controlplane.Config{Ports: controlplane.DefaultPorts(), Postgres: controlplane.PostgresFromEnv(*archiveDB)},
	}
	cfg.Plane.Postgres.DropOnStop = *dropDB
	switch *ports {
	case "default":
	case "auto":
		if cfg.Addrs, err = supervisor.FreeAddrs(); err != nil {
			fmt.Fprintln(os.Stderr, "dwp-run:", err)
			os.Exit(1)
		}
		cfg.Plane.AutoPorts = true
	default:
		fmt.Fprintf(os.Stderr, "dwp-run: -ports is %q, not default or auto\n", *ports)
		os.Exit(2)
	}
	cfg.Addrs.Redis = *redis
	if err := supervisor.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "dwp-run:", err)
		os.Exit(1)
	}
}
