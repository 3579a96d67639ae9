package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		name, event, id, data, want string
	}{
		{"plain", "log", "17", `{"a":1}`, "event: log\nid: 17\ndata: {\"a\":1}\n\n"},
		{"unnamed", "", "1", "x", "id: 1\ndata: x\n\n"},
		{"multi-line", "m", "2", "a\nb\r\nc\rd", "event: m\nid: 2\ndata: a\ndata: b\ndata: c\ndata: d\n\n"},
		{"empty data", "e", "3", "", "event: e\nid: 3\ndata: \n\n"},
		{"newline in id is dropped", "e", "4\n5", "x", "event: e\nid: 45\ndata: x\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendEvent(nil, tt.event, tt.id, AppendData(nil, []byte(tt.data))))
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReaderFollowsTheBrowserAlgorithm(t *testing.T) {
	in := ": hello\n\n" +
		"retry: 2500\n\n" +
		"event: added\nid: 10\ndata: one\ndata: two\n\n" +
		"data: no type\n\n" +
		"id: 11\r\ndata: crlf\r\n\r\n" +
		"id\n\n" + // an empty id resets the last event ID, but dispatches nothing
		"data:nospace\n\n" +
		"retry: x1\n\n" + // ignored
		"event: unterminated\ndata: lost"
	r := NewReader(strings.NewReader(in))
	want := []Event{
		{Comment: "hello", IsComment: true},
		{Type: "added", ID: "10", Data: "one\ntwo", Retry: 2500 * time.Millisecond},
		{Type: "message", ID: "10", Data: "no type", Retry: 2500 * time.Millisecond},
		{Type: "message", ID: "11", Data: "crlf", Retry: 2500 * time.Millisecond},
		{Type: "message", ID: "", Data: "nospace", Retry: 2500 * time.Millisecond},
	}
	for i, w := range want {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got != w {
			t.Fatalf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
}

func TestRetryAndComment(t *testing.T) {
	if got := string(AppendRetry(nil, 3*time.Second)); got != "retry: 3000\n\n" {
		t.Fatalf("retry = %q", got)
	}
	if got := string(AppendComment(nil, "ping\nx")); got != ": pingx\n\n" {
		t.Fatalf("comment = %q", got)
	}
	if got := string(AppendComment(nil, "")); got != ":\n\n" {
		t.Fatalf("empty comment = %q", got)
	}
}

// FuzzRoundTrip: whatever the payload, a browser reads back the same data (line breaks
// normalised to LF), the same event name and id (minus characters a field cannot carry).
func FuzzRoundTrip(f *testing.F) {
	f.Add("log", "123", "hello")
	f.Add("", "", "a\r\nb\rc\n")
	f.Add("x\ny", "1\x002", "\n\n")
	f.Fuzz(func(t *testing.T, event, id, data string) {
		wire := AppendEvent(nil, event, id, AppendData(nil, []byte(data)))
		got, err := NewReader(bytes.NewReader(wire)).Next()
		if err != nil {
			t.Fatalf("read back %q: %v", wire, err)
		}
		clean := func(s string) string { return strings.NewReplacer("\r", "", "\n", "", "\x00", "").Replace(s) }
		wantType := clean(event)
		if wantType == "" {
			wantType = "message"
		}
		wantData := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(data)
		if got.Type != wantType || got.ID != clean(id) || got.Data != wantData {
			t.Fatalf("got %+v from %q", got, wire)
		}
	})
}

// FuzzReader: arbitrary input never panics and always ends.
func FuzzReader(f *testing.F) {
	f.Add([]byte("event: a\ndata: b\n\n"))
	f.Add([]byte("\r\r\n:\nretry: 99999999999999999999\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		for range len(in) + 1 {
			if _, err := r.Next(); err != nil {
				return
			}
		}
		t.Fatal("reader did not end")
	})
}
