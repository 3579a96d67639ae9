package upstream

import (
	"bytes"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"io"
	"strings"
	"testing"
	"time"
)

func TestLineParserRanksLinesOfOneInstant(t *testing.T) {
	var p lineParser
	in := []string{
		"2026-01-02T03:04:05.000000001Z a",
		"2026-01-02T03:04:05.000000001Z b",
		"2026-01-02T03:04:05.000000002Z c",
		"no timestamp here",
		"2026-01-02T03:04:05.000000002Z",
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	want := []struct {
		pos  api.LogPos
		text string
	}{
		{api.LogPos{Nanos: base + 1, Rank: 0}, "a"},
		{api.LogPos{Nanos: base + 1, Rank: 1}, "b"},
		{api.LogPos{Nanos: base + 2, Rank: 0}, "c"},
		{api.LogPos{Nanos: base + 2, Rank: 1}, "no timestamp here"},
		{api.LogPos{Nanos: base + 2, Rank: 2}, ""},
	}
	for i, raw := range in {
		l := p.parse([]byte(raw + "\n"))
		if l.pos != want[i].pos || l.text != want[i].text {
			t.Fatalf("line %d: %+v, want %+v", i, l, want[i])
		}
	}
}

func TestReadLinesBatchesAndSkips(t *testing.T) {
	body := "2026-01-02T03:04:05.1Z one\n2026-01-02T03:04:05.2Z two\n2026-01-02T03:04:05.3Z three\n2026-01-02T03:04:05.3Z four"
	skip := api.LogPos{Nanos: time.Date(2026, 1, 2, 3, 4, 5, 2e8, time.UTC).UnixNano()}
	var batches [][]logLine
	err := readLines(strings.NewReader(body), &lineParser{}, &skip, func(b []logLine) {
		batches = append(batches, append([]logLine(nil), b...))
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 1 {
		t.Fatalf("%d batches, want the whole readable body in 1", len(batches))
	}
	var texts []string
	for _, l := range batches[0] {
		texts = append(texts, l.text)
	}
	if strings.Join(texts, ",") != "three,four" {
		t.Fatalf("lines %v, want three,four (after the skipped position; an unterminated last line kept at EOF)", texts)
	}
	if batches[0][1].pos.Rank != 1 {
		t.Fatalf("four has rank %d, want 1", batches[0][1].pos.Rank)
	}
}

// slowReader hands out its chunks one Read at a time, like a log follow.
type slowReader struct{ chunks []string }

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	if r.chunks[0] == "" {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

func TestReadLinesFlushesWhatIsAvailable(t *testing.T) {
	r := &slowReader{chunks: []string{
		"2026-01-02T03:04:05.1Z a\n2026-01-02T03:04:05.2Z b\n",
		"2026-01-02T03:04:05.3Z c\n",
	}}
	var sizes []int
	if err := readLines(r, &lineParser{}, nil, func(b []logLine) { sizes = append(sizes, len(b)) }); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 2 || sizes[0] != 2 || sizes[1] != 1 {
		t.Fatalf("batches %v, want [2 1]", sizes)
	}
}

func TestReadLinesTruncatesHugeLines(t *testing.T) {
	huge := "2026-01-02T03:04:05Z " + strings.Repeat("x", 3*maxLineBytes) + "\n2026-01-02T03:04:06Z next\n"
	var lines []logLine
	if err := readLines(strings.NewReader(huge), &lineParser{}, nil, func(b []logLine) { lines = append(lines, b...) }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[1].text != "next" {
		t.Fatalf("got %d lines", len(lines))
	}
	if len(lines[0].text) > maxLineBytes {
		t.Fatalf("line of %d bytes kept", len(lines[0].text))
	}
}

func FuzzReadLines(f *testing.F) {
	f.Add([]byte("2026-01-02T03:04:05.1Z a\n2026-01-02T03:04:05.1Z b\r\nx\n"))
	f.Add([]byte("\n\n\n"))
	f.Add([]byte("2026-01-02T03:04:05Z"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var lines []logLine
		err := readLines(bytes.NewReader(body), &lineParser{}, nil, func(b []logLine) { lines = append(lines, b...) })
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(lines); i++ {
			a, b := lines[i-1].pos, lines[i].pos
			if a.Nanos == b.Nanos && b.Rank != a.Rank+1 {
				t.Fatalf("ranks %d then %d at one instant", a.Rank, b.Rank)
			}
		}
		// Every id parses back to its position.
		for _, l := range lines {
			if l.pos.Nanos < 0 {
				continue
			}
			p, ok := api.ParseLogPos(l.pos.String())
			if !ok || p != l.pos {
				t.Fatalf("id %q does not parse back", l.pos.String())
			}
		}
	})
}

func TestRing(t *testing.T) {
	r := newRing[int](3)
	for i := 1; i <= 3; i++ {
		if _, ev := r.push(i); ev {
			t.Fatal("evicted before full")
		}
	}
	old, ev := r.push(4)
	if !ev || old != 1 {
		t.Fatalf("evicted %d %v, want 1", old, ev)
	}
	var got []int
	for i := 0; i < r.len(); i++ {
		got = append(got, r.at(i))
	}
	if len(got) != 3 || got[0] != 2 || got[2] != 4 {
		t.Fatalf("ring = %v", got)
	}
	if i := r.search(func(v int) bool { return v > 2 }); i != 1 {
		t.Fatalf("search = %d", i)
	}
	if i := r.search(func(v int) bool { return v > 9 }); i != 3 {
		t.Fatalf("search past end = %d", i)
	}
	r.reset()
	if r.len() != 0 {
		t.Fatal("reset kept items")
	}
}
