package ssebench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Table is one scenario's result: the cells the markdown shows, and the raw numbers
// (Data) the JSON keeps for tooling.
type Table struct {
	ID      string     `json:"id"`
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	Notes   []string   `json:"notes,omitempty"`
	Data    any        `json:"data,omitempty"`
}

// AddRow appends a row; cells are formatted with fmt's %v.
func (t *Table) AddRow(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	t.Rows = append(t.Rows, row)
}

// Note appends a line shown under the table.
func (t *Table) Note(format string, args ...any) {
	t.Notes = append(t.Notes, fmt.Sprintf(format, args...))
}

// Report is everything one run measured.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	Host     Host          `json:"host"`
	Config   Config        `json:"config"`
	Tables   []*Table      `json:"tables"`
}

// Host describes the machine, since every number depends on it.
type Host struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
	Router    string `json:"router"`
}

func newHost(router string) Host {
	return Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Router: router}
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# SSE router benchmark\n\n")
	fmt.Fprintf(&b, "Run %s, %s, %d CPUs, router `%s`. Targets: RSS/stream ≤ 16 KiB, CPU/delivery ≤ 5 µs, p99 ≤ 150 ms, stalled client closed ≤ 10 s.\n",
		r.Started.UTC().Format(time.RFC3339), r.Duration.Round(time.Second), r.Host.CPUs, r.Host.Router)
	for _, t := range r.Tables {
		b.WriteString("\n")
		b.WriteString(t.Markdown())
	}
	return b.String()
}

// Markdown renders one table with its title and notes.
func (t *Table) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", t.Title)
	row := func(cells []string) {
		b.WriteString("|")
		for i := range t.Columns {
			c := ""
			if i < len(cells) {
				c = strings.ReplaceAll(cells[i], "|", `\|`)
			}
			fmt.Fprintf(&b, " %s |", c)
		}
		b.WriteString("\n")
	}
	row(t.Columns)
	b.WriteString("|")
	for range t.Columns {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		row(r)
	}
	if len(t.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range t.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// Write saves the report as <dir>/sse-router.md and .json and prints the markdown.
func (r *Report) Write(dir string, stdout io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report folder: %w", err)
	}
	md := r.Markdown()
	if err := os.WriteFile(filepath.Join(dir, "sse-router.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write markdown: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sse-router.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	_, err = io.WriteString(stdout, md)
	return err
}

// fmtDur prints a duration with three significant digits in a fitting unit.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// check marks a value against its target: ✓ within, ✗ beyond.
func check(ok bool) string {
	if ok {
		return " ✓"
	}
	return " ✗"
}

func fmtKiB(bytes float64) string { return fmt.Sprintf("%.1f KiB", bytes/1024) }

func fmtLatency(p Percentiles) string {
	if p.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s / %s", fmtDur(p.P50), fmtDur(p.P99), fmtDur(p.Max))
}
