package ssebench

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

type gotEvent struct{ Name, ID, Data string }

func parseAll(p *Parser, chunks ...[]byte) []gotEvent {
	var out []gotEvent
	for _, c := range chunks {
		p.Feed(c, func(e Event) { out = append(out, gotEvent{e.Name, e.ID, string(e.Data)}) })
	}
	return out
}

func TestParser(t *testing.T) {
	in := "retry: 3000\n\n" +
		": heartbeat\n\n" +
		"event: snapshot\nid: 7\ndata: {\"a\":1}\n\n" +
		"event: log\r\nid: 8\r\ndata: one\r\ndata:two\r\n\r\n" +
		"data: three\rid: 9\r\r" +
		"event: nodata\n\n" +
		"data\n\n" +
		"id: 10\x00x\ndata: keeps 9\n\n" +
		"data: unterminated"
	want := []gotEvent{
		{"snapshot", "7", `{"a":1}`},
		{"log", "8", "one\ntwo"},
		{"", "9", "three"},
		{"", "9", ""},
		{"", "9", "keeps 9"},
	}
	var p Parser
	if got := parseAll(&p, []byte(in)); !reflect.DeepEqual(got, want) {
		t.Errorf("whole input:\n got %q\nwant %q", got, want)
	}
	// Every split point, including inside a CRLF, gives the same events.
	for i := range len(in) {
		var p Parser
		if got := parseAll(&p, []byte(in[:i]), []byte(in[i:])); !reflect.DeepEqual(got, want) {
			t.Fatalf("split at %d:\n got %q\nwant %q", i, got, want)
		}
	}
}

func TestParserLines(t *testing.T) {
	p := Parser{Lines: true}
	got := parseAll(&p, []byte("a\nb\r\n\nc"), []byte("d\n"))
	want := []gotEvent{{Data: "a"}, {Data: "b"}, {Data: "cd"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParserCapsData(t *testing.T) {
	var p Parser
	big := strings.Repeat("x", 3*maxDataBytes)
	got := parseAll(&p, []byte("data: "+big+"\n\n"))
	if len(got) != 1 || len(got[0].Data) > maxDataBytes {
		t.Fatalf("want one event of at most %d bytes, got %d events", maxDataBytes, len(got))
	}
}

func TestMarker(t *testing.T) {
	data := []byte(`{"type":"log","line":"` + Marker(42, 1700000000123456789) + ` xxxx"}`)
	seq, nanos, ok := ParseMarker(data)
	if !ok || seq != 42 || nanos != 1700000000123456789 {
		t.Fatalf("ParseMarker = %d, %d, %v", seq, nanos, ok)
	}
	for _, bad := range []string{"", "dwpbench:", "dwpbench:1:", "dwpbench:1:2", "dwpbench::2;", "dwpbench:x:2;"} {
		if _, _, ok := ParseMarker([]byte(bad)); ok {
			t.Errorf("ParseMarker(%q) accepted", bad)
		}
	}
}

func TestResponseAndChunkedBody(t *testing.T) {
	body := "event: log\nid: 1\ndata: hello\n\n"
	var chunked strings.Builder
	chunked.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	for _, part := range []string{body[:5], body[5:17], body[17:]} {
		chunked.WriteString(strings.ToUpper(strconvHex(len(part))) + ";ext=1\r\n" + part + "\r\n")
	}
	chunked.WriteString("0\r\n\r\n")
	br := bufio.NewReaderSize(strings.NewReader(chunked.String()), 80)
	resp, err := ReadResponseHead(br)
	if err != nil || resp.Status != 200 || !resp.Chunked {
		t.Fatalf("head = %+v, %v", resp, err)
	}
	var p Parser
	var got []gotEvent
	err = PumpBody(br, true, func(b []byte) {
		p.Feed(b, func(e Event) { got = append(got, gotEvent{e.Name, e.ID, string(e.Data)}) })
	})
	if !errors.Is(err, io.EOF) {
		t.Fatalf("PumpBody = %v, want EOF", err)
	}
	if want := []gotEvent{{"log", "1", "hello"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	br = bufio.NewReader(strings.NewReader("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
	if resp, err := ReadResponseHead(br); err != nil || resp.Status != 403 || resp.Chunked {
		t.Errorf("403 head = %+v, %v", resp, err)
	}
	br = bufio.NewReader(strings.NewReader("SSH-2.0-x\r\n\r\n"))
	if _, err := ReadResponseHead(br); err == nil {
		t.Error("a non-HTTP status line was accepted")
	}
}

func strconvHex(n int) string {
	const digits = "0123456789abcdef"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 16 {
		b = append([]byte{digits[n%16]}, b...)
	}
	return string(b)
}

// FuzzParser checks that any input, split anywhere, parses to the same events, and that
// the parser neither panics nor keeps more data than its cap.
func FuzzParser(f *testing.F) {
	f.Add([]byte("event: log\nid: 1\ndata: x\n\n"), uint16(3))
	f.Add([]byte("data: a\r\ndata: b\r\r\n\n:c\n\nid\ndata\n\n"), uint16(9))
	f.Add([]byte("\r\n\r\r\n\n\r"), uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		for _, lines := range []bool{false, true} {
			whole := Parser{Lines: lines}
			want := parseAll(&whole, in)
			at := int(split) % (len(in) + 1)
			parts := Parser{Lines: lines}
			got := parseAll(&parts, in[:at], in[at:])
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("lines=%v split at %d: got %q, want %q", lines, at, got, want)
			}
			for _, e := range got {
				if len(e.Data) > maxDataBytes {
					t.Fatalf("event data of %d bytes passes the cap", len(e.Data))
				}
				if !lines && bytes.ContainsAny([]byte(e.ID), "\r\n\x00") {
					t.Fatalf("id %q holds a line break or NUL", e.ID)
				}
			}
		}
	})
}
