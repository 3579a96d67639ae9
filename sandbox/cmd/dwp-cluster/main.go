// Command dwp-cluster runs the local Kubernetes control plane used by `make run`,
// `make cluster`, the tests and the benchmarks.
//
//	dwp-cluster up     [flags]   build what is missing, start, print what to use, run until SIGINT/SIGTERM
//	dwp-cluster build  [flags]   only build the components
//	dwp-cluster reset  [flags]   delete the state folder (the plane must be stopped)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dwp-cluster up|build|reset [flags]")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet("dwp-cluster "+cmd, flag.ExitOnError)
	dir := fs.String("dir", envOr("DWP_CLUSTER_DIR", ".state/cluster"), "state folder")
	bin := fs.String("bin", envOr("DWP_CLUSTER_BIN", "bin"), "folder for the component binaries")
	repo := fs.String("repo", ".", "repository root (its sandbox/modules build the components)")
	ports := fs.String("ports", "default", `"default" (API server on 6443) or "auto" (free ports)`)
	archiveDB := fs.String("archive-db", "dwp_argo", "Postgres database of Argo's workflow archive")
	dropDB := fs.Bool("drop-archive-db", false, "drop the archive database on stop")
	pg := controlplane.PostgresFromEnv("")
	fs.StringVar(&pg.Host, "pg-host", pg.Host, "Postgres host")
	fs.IntVar(&pg.Port, "pg-port", pg.Port, "Postgres port")
	fs.StringVar(&pg.User, "pg-user", pg.User, "Postgres user")
	fs.StringVar(&pg.Password, "pg-password", pg.Password, "Postgres password")
	_ = fs.Parse(args)
	pg.Database, pg.DropOnStop = *archiveDB, *dropDB

	level := slog.LevelInfo
	if os.Getenv("DWP_CLUSTER_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	binDir, _ := filepath.Abs(*bin)
	repoDir, _ := filepath.Abs(*repo)
	cfg := controlplane.Config{
		Dir: *dir, BinDir: binDir, Repo: repoDir, Build: true,
		Ports: controlplane.DefaultPorts(), AutoPorts: *ports == "auto",
		Postgres: pg,
		Out:      os.Stdout, Logger: logger,
	}
	var err error
	switch cmd {
	case "up":
		err = up(ctx, cfg)
	case "build":
		err = controlplane.EnsureBuilt(ctx, repoDir, binDir, os.Stdout)
	case "reset":
		err = controlplane.Reset(*dir)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "dwp-cluster:", err)
		os.Exit(1)
	}
}

func up(ctx context.Context, cfg controlplane.Config) error {
	cp, err := controlplane.Start(ctx, cfg)
	if err != nil {
		return err
	}
	info := cp.Info()
	fmt.Printf("\nkube-apiserver: %s\nexport KUBECONFIG=%s\n  try: %s --kubeconfig %s get nodes\ntest users: %v (kubeconfigs in %s)\n"+
		"gitops repository: %s (Argo CD in namespace %s, ready a few seconds after the plane)\nlogs: %s\n\n",
		info.Server, info.Kubeconfig, filepath.Join(cfg.BinDir, "kubectl"), info.Kubeconfig,
		controlplane.TestUsers, filepath.Dir(info.Kubeconfig), info.GitopsRepo, info.ArgoCDNamespace,
		filepath.Join(info.Dir, "logs"))
	<-ctx.Done()
	fmt.Println("stopping the control plane")
	cp.Stop()
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
