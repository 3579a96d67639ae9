package ssebench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is one run's settings; Default and Quick give the two standard sets.
type Config struct {
	RouterBin  string `json:"routerBin"`
	ClusterDir string `json:"-"`
	OutDir     string `json:"outDir"`
	// Scenarios to run, by id (scale, naive, slow, reconnect, users, catchup, multi).
	Scenarios []string `json:"scenarios"`

	ScaleSizes      []int         `json:"scaleSizes"`      // streams on one pod log / one pods watch
	MaxRouterStream int           `json:"maxRouterStream"` // streams one router can hold (its open-files limit)
	LatencyEvents   int           `json:"latencyEvents"`   // events at 1/s for latency
	BurstEvents     int           `json:"burstEvents"`     // events of the CPU-per-delivery burst
	IdleWindow      time.Duration `json:"idleWindow"`
	NaiveSizes      []int         `json:"naiveSizes"`
	SlowStreams     int           `json:"slowStreams"`
	SlowStalled     int           `json:"slowStalled"`
	SlowWindow      time.Duration `json:"slowWindow"` // how long each rate runs with stalled clients
	ReconnectN      int           `json:"reconnectStreams"`
	Users           int           `json:"users"`
	CatchupViewers  int           `json:"catchupViewers"`
	CatchupBytes    int64         `json:"catchupBytes"`
	CatchupTimeout  time.Duration `json:"catchupTimeout"`
	MultiStreams    int           `json:"multiStreams"`
	MultiRouters    int           `json:"multiRouters"`

	LineBytes   int           `json:"lineBytes"` // length of each log line sent
	PerWorker   int           `json:"perWorker"` // streams per worker process
	OpenTimeout time.Duration `json:"openTimeout"`
	RSSCap      int64         `json:"rssCap"` // a router above this RSS is killed
	// Budget ends the run early (scenarios not started are reported as skipped).
	Budget time.Duration `json:"budget"`
}

// AllScenarios in the order they run.
var AllScenarios = []string{"scale", "naive", "slow", "reconnect", "users", "catchup", "multi"}

// Default is the full run: the sizes `make bench` measures.
func Default() Config {
	return Config{
		RouterBin:       "bin/sse-router",
		OutDir:          "bench",
		Scenarios:       AllScenarios,
		ScaleSizes:      []int{1000, 5000, 10000, 19500},
		MaxRouterStream: 19500,
		LatencyEvents:   10,
		BurstEvents:     20,
		IdleWindow:      10 * time.Second,
		NaiveSizes:      []int{100, 1000},
		SlowStreams:     1000,
		SlowStalled:     10,
		SlowWindow:      20 * time.Second,
		ReconnectN:      1000,
		Users:           1000,
		CatchupViewers:  2000,
		CatchupBytes:    40 << 20,
		CatchupTimeout:  3 * time.Minute,
		MultiStreams:    50000,
		MultiRouters:    3,
		LineBytes:       120,
		PerWorker:       9000,
		OpenTimeout:     90 * time.Second,
		RSSCap:          6 << 30,
		Budget:          25 * time.Minute,
	}
}

// Quick is a small run for checking the tool itself (a minute or two).
func Quick() Config {
	c := Default()
	c.ScaleSizes = []int{200, 1000}
	c.LatencyEvents = 4
	c.BurstEvents = 10
	c.IdleWindow = 3 * time.Second
	c.NaiveSizes = []int{20, 100}
	c.SlowStreams = 100
	c.SlowStalled = 3
	c.SlowWindow = 12 * time.Second
	c.ReconnectN = 100
	c.Users = 50
	c.CatchupViewers = 50
	c.CatchupBytes = 2 << 20
	c.CatchupTimeout = time.Minute
	c.MultiStreams = 1500
	c.Budget = 10 * time.Minute
	return c
}

// Has says whether scenario id is to run.
func (c *Config) Has(id string) bool { return slices.Contains(c.Scenarios, id) }

// Validate checks the settings before anything starts.
func (c *Config) Validate() error {
	for _, s := range c.Scenarios {
		if !slices.Contains(AllScenarios, s) {
			return fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(AllScenarios, ", "))
		}
	}
	switch {
	case c.ClusterDir == "":
		return fmt.Errorf("no control plane: set DWP_CLUSTER_DIR (run under sandbox/scripts/with-cluster.sh)")
	case c.PerWorker < 1 || c.PerWorker > 19000:
		return fmt.Errorf("streams per worker %d: want 1–19000 (the open-files limit is 20000)", c.PerWorker)
	case c.MultiRouters < 1:
		return fmt.Errorf("multi-router scenario needs at least one router")
	case c.SlowStalled >= c.SlowStreams:
		return fmt.Errorf("stalled streams %d must be fewer than all %d", c.SlowStalled, c.SlowStreams)
	}
	return nil
}

// ParseInts parses a comma-separated list of positive integers (a flag's value).
func ParseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("not a positive integer: %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}
