// Command dwp-ssebench benchmarks the SSE router (bin/sse-router) with real sockets from
// several worker processes against the local control plane named by DWP_CLUSTER_DIR, and
// writes bench/sse-router.md and bench/sse-router.json. Run it under
// sandbox/scripts/with-cluster.sh (as `make bench` does); -quick runs small sizes.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dwp-sre/dwp-sre/sandbox/ssebench"
)

// workerArg makes the executable a load worker speaking JSON on stdin and stdout.
const workerArg = "worker"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if len(os.Args) > 1 && os.Args[1] == workerArg {
		wlog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := ssebench.RunWorker(ctx, os.Stdin, os.Stdout, wlog); err != nil {
			fmt.Fprintln(os.Stderr, "dwp-ssebench worker:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dwp-ssebench:", err)
		os.Exit(2)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dwp-ssebench:", err)
		os.Exit(1)
	}
	if err := ssebench.Run(ctx, cfg, exe, []string{workerArg}, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "dwp-ssebench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (ssebench.Config, error) {
	fs := flag.NewFlagSet("dwp-ssebench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "small sizes, to check the tool in a minute or two")
	def := ssebench.Default()
	router := fs.String("router", def.RouterBin, "sse-router binary under test")
	out := fs.String("out", def.OutDir, "folder of sse-router.md and sse-router.json")
	scenarios := fs.String("scenarios", strings.Join(ssebench.AllScenarios, ","), "scenarios to run")
	sizes := fs.String("scale-sizes", "", "streams per router in the scale scenario (default 1000,5000,10000,19500)")
	naive := fs.String("naive-sizes", "", "direct API-server streams (default 100,1000)")
	slow := fs.Int("slow-streams", 0, "streams of the slow-client scenario (default 1000)")
	stalled := fs.Int("slow-stalled", 0, "of which never read (default 10)")
	reconnect := fs.Int("reconnect-streams", 0, "streams of the reconnect storm (default 1000)")
	users := fs.Int("users", 0, "distinct users connecting at once (default 1000)")
	viewers := fs.Int("catchup-viewers", 0, "viewers joining a big log (default 2000)")
	catchupMB := fs.Int("catchup-mb", 0, "size of the big log in MiB (default 40)")
	multi := fs.Int("multi-streams", 0, "streams over several routers (default 50000)")
	routers := fs.Int("multi-routers", 0, "routers of the multi-router scenario (default 3)")
	budget := fs.Duration("budget", 0, "scenarios not started within this are skipped (default 25m, quick 10m)")
	rssCap := fs.Int("rss-cap-mb", 0, "a router above this RSS is killed (default 6144)")
	if err := fs.Parse(args); err != nil {
		return ssebench.Config{}, err
	}
	cfg := def
	if *quick {
		cfg = ssebench.Quick()
	}
	cfg.RouterBin, cfg.OutDir = *router, *out
	cfg.ClusterDir = os.Getenv("DWP_CLUSTER_DIR")
	cfg.Scenarios = strings.Split(*scenarios, ",")
	for _, l := range []struct {
		s   string
		dst *[]int
	}{{*sizes, &cfg.ScaleSizes}, {*naive, &cfg.NaiveSizes}} {
		if l.s != "" {
			v, err := ssebench.ParseInts(l.s)
			if err != nil {
				return cfg, err
			}
			*l.dst = v
		}
	}
	for _, o := range []struct {
		v   int
		dst *int
	}{{*slow, &cfg.SlowStreams}, {*stalled, &cfg.SlowStalled}, {*reconnect, &cfg.ReconnectN}, {*users, &cfg.Users},
		{*viewers, &cfg.CatchupViewers}, {*multi, &cfg.MultiStreams}, {*routers, &cfg.MultiRouters}} {
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	if *catchupMB > 0 {
		cfg.CatchupBytes = int64(*catchupMB) << 20
	}
	if *budget > 0 {
		cfg.Budget = *budget
	}
	if *rssCap > 0 {
		cfg.RSSCap = int64(*rssCap) << 20
	}
	return cfg, nil
}
