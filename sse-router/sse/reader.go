package sse

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"time"
)

// Event is what a browser dispatches, plus what it keeps between events. Comment is set
// (and the rest empty) for a comment line, which browsers ignore but which shows that the
// stream is alive.
type Event struct {
	Type      string // "message" when the event names none
	ID        string // the last event ID after this event
	Data      string
	Retry     time.Duration // the reconnection time in effect, zero if never set
	Comment   string
	IsComment bool
}

// Reader parses an event stream as a browser's EventSource does. It is the client the
// project's tests (and Go consumers of the router) use.
type Reader struct {
	br     *bufio.Reader
	lastID string
	retry  time.Duration
	// MaxLine bounds one line (default 4 MiB).
	MaxLine int
}

// NewReader reads events from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10), MaxLine: 4 << 20}
}

// ErrLineTooLong is returned for a line longer than MaxLine.
var ErrLineTooLong = bufioErr("sse: line too long")

type bufioErr string

func (e bufioErr) Error() string { return string(e) }

// Next returns the next dispatched event or comment. At the end of the stream it returns
// io.EOF; an event not terminated by a blank line is discarded, as browsers do.
func (r *Reader) Next() (Event, error) {
	var (
		data      bytes.Buffer
		eventType string
		haveData  bool
	)
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if !haveData {
				eventType = ""
				continue
			}
			d := data.Bytes()
			d = bytes.TrimSuffix(d, []byte("\n"))
			if eventType == "" {
				eventType = "message"
			}
			return Event{Type: eventType, ID: r.lastID, Data: string(d), Retry: r.retry}, nil
		}
		if line[0] == ':' {
			c := strings.TrimPrefix(string(line[1:]), " ")
			return Event{Comment: c, IsComment: true, ID: r.lastID, Retry: r.retry}, nil
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(name) {
		case "event":
			eventType = string(value)
		case "data":
			data.Write(value)
			data.WriteByte('\n')
			haveData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.lastID = string(value)
			}
		case "retry":
			if ms, err := strconv.ParseUint(string(value), 10, 63); err == nil && isDigits(value) {
				r.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// LastEventID is what a browser would send as Last-Event-ID when reconnecting.
func (r *Reader) LastEventID() string { return r.lastID }

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// readLine returns one line without its terminator (LF, CRLF or CR).
func (r *Reader) readLine() ([]byte, error) {
	var line []byte
	for {
		b, err := r.br.ReadByte()
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				// An unterminated last line is dropped with the event it belongs to.
				return nil, io.EOF
			}
			return nil, err
		}
		switch b {
		case '\n':
			return line, nil
		case '\r':
			if next, err := r.br.Peek(1); err == nil && next[0] == '\n' {
				_, _ = r.br.ReadByte()
			}
			return line, nil
		}
		if len(line) >= r.MaxLine {
			return nil, ErrLineTooLong
		}
		line = append(line, b)
	}
}
