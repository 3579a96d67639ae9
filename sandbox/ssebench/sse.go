package ssebench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Event is one dispatched Server-Sent Event (or, in line mode, one line).
type Event struct {
	Name string
	ID   string
	Data []byte // valid only during the callback
}

// maxDataBytes bounds the data kept of one event: the bench only needs the marker, and a
// cap keeps a hostile or huge stream from growing the client without bound.
const maxDataBytes = 64 << 10

// Parser is an incremental SSE parser fed with arbitrary slices of the body, so that it
// can sit directly behind a chunked-transfer decoder without a second buffer. It follows
// the WHATWG event-stream rules: LF, CR or CRLF end a line; "field: value" with one
// optional space; comments start with ':'; a blank line dispatches when data is non-empty.
type Parser struct {
	// Lines makes every line an event of its own (for kube-apiserver's log and watch
	// bodies, which are line-delimited, not SSE).
	Lines bool

	line   []byte // a line split across Feed calls
	lastCR bool   // the previous byte was a CR: a following LF belongs to it
	name   string
	data   []byte
	hasDat bool
	// LastID is the last event ID seen, as a browser keeps it for Last-Event-ID.
	LastID string
}

// Reset forgets a half-read line and event, as a reconnecting browser does; LastID stays.
func (p *Parser) Reset() {
	p.line, p.lastCR, p.name, p.data, p.hasDat = p.line[:0], false, "", p.data[:0], false
}

// Feed parses p and calls emit for every complete event.
func (p *Parser) Feed(b []byte, emit func(Event)) {
	for len(b) > 0 {
		if p.lastCR {
			p.lastCR = false
			if b[0] == '\n' {
				b = b[1:]
				continue
			}
		}
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			p.appendLine(b)
			return
		}
		var line []byte
		if len(p.line) > 0 {
			p.appendLine(b[:i])
			line = p.line
		} else {
			line = b[:i]
		}
		p.lastCR = b[i] == '\r'
		b = b[i+1:]
		p.handle(line, emit)
		p.line = p.line[:0]
	}
}

func (p *Parser) appendLine(b []byte) {
	if room := maxDataBytes - len(p.line); room > 0 {
		p.line = append(p.line, b[:min(len(b), room)]...)
	}
}

func (p *Parser) handle(line []byte, emit func(Event)) {
	if p.Lines {
		if len(line) > 0 {
			emit(Event{Data: line})
		}
		return
	}
	if len(line) == 0 {
		if p.hasDat {
			data := p.data
			if n := len(data); n > 0 && data[n-1] == '\n' {
				data = data[:n-1]
			}
			emit(Event{Name: p.name, ID: p.LastID, Data: data})
		}
		p.name, p.data, p.hasDat = "", p.data[:0], false
		return
	}
	if line[0] == ':' {
		return // a comment (heartbeat)
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		p.name = string(value)
	case "data":
		p.hasDat = true
		if room := maxDataBytes - len(p.data); room > 0 {
			p.data = append(p.data, value[:min(len(value), room)]...)
			p.data = append(p.data, '\n')
		}
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.LastID = string(value)
		}
	}
}

// Response is the head of an HTTP/1.1 response, as far as the bench needs it.
type Response struct {
	Status  int
	Chunked bool
}

// ReadResponseHead reads a status line and headers from br.
func ReadResponseHead(br *bufio.Reader) (Response, error) {
	var r Response
	first := true
	for {
		line, err := readLine(br)
		if err != nil {
			return r, fmt.Errorf("response head: %w", err)
		}
		if first {
			first = false
			// "HTTP/1.1 200 OK"
			f := bytes.Fields(line)
			if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/")) {
				return r, fmt.Errorf("not an HTTP status line: %q", line)
			}
			if r.Status, err = strconv.Atoi(string(f[1])); err != nil {
				return r, fmt.Errorf("status %q: %w", f[1], err)
			}
			continue
		}
		if len(line) == 0 {
			return r, nil
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")) &&
			bytes.Contains(bytes.ToLower(v), []byte("chunked")) {
			r.Chunked = true
		}
	}
}

// readLine reads one CRLF- or LF-terminated line; lines longer than the buffer are an
// error (heads and chunk sizes are short).
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// errBadChunk is a malformed chunk header.
var errBadChunk = errors.New("malformed chunk")

// PumpBody feeds the body in br to the parser until the body or the connection ends. It
// hands the parser slices of br's own buffer (Peek/Discard) so that a connection costs
// one small buffer. A chunked body is decoded on the way.
func PumpBody(br *bufio.Reader, chunked bool, feed func([]byte)) error {
	if !chunked {
		for {
			if _, err := br.Peek(1); err != nil {
				return err
			}
			b, _ := br.Peek(br.Buffered())
			feed(b)
			_, _ = br.Discard(len(b))
		}
	}
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 62)
		if err != nil {
			return fmt.Errorf("%w: %q", errBadChunk, line)
		}
		if size == 0 {
			return io.EOF
		}
		for size > 0 {
			if _, err := br.Peek(1); err != nil {
				return err
			}
			n := min(uint64(br.Buffered()), size)
			b, _ := br.Peek(int(n))
			feed(b)
			_, _ = br.Discard(int(n))
			size -= n
		}
		if _, err := readLine(br); err != nil { // the CRLF after the chunk
			return err
		}
	}
}

// marker is what every payload the bench sends carries: "dwpbench:<seq>:<unix nanos>;".
const markerPrefix = "dwpbench:"

// Marker formats the marker of event seq sent at nanos.
func Marker(seq, nanos int64) string {
	return markerPrefix + strconv.FormatInt(seq, 10) + ":" + strconv.FormatInt(nanos, 10) + ";"
}

// ParseMarker finds the first marker in data.
func ParseMarker(data []byte) (seq, nanos int64, ok bool) {
	i := bytes.Index(data, []byte(markerPrefix))
	if i < 0 {
		return 0, 0, false
	}
	rest := data[i+len(markerPrefix):]
	seq, rest, ok = leadingInt(rest, ':')
	if !ok {
		return 0, 0, false
	}
	nanos, _, ok = leadingInt(rest, ';')
	return seq, nanos, ok
}

func leadingInt(b []byte, end byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 19; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	if i == 0 || i >= len(b) || b[i] != end {
		return 0, nil, false
	}
	return n, b[i+1:], true
}
