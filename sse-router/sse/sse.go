// Package sse encodes the wire format of Server-Sent Events (the WHATWG HTML
// "server-sent events" section): fields `event:`, `id:`, `data:`, `retry:`, comments, and
// the blank line that dispatches an event.
package sse

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// AppendData appends payload as `data:` lines. A payload with line breaks (LF, CRLF or CR)
// becomes several `data:` lines, which the browser joins again with LF.
func AppendData(dst, payload []byte) []byte {
	for {
		i := bytes.IndexAny(payload, "\r\n")
		dst = append(dst, "data: "...)
		if i < 0 {
			dst = append(dst, payload...)
			return append(dst, '\n')
		}
		dst = append(dst, payload[:i]...)
		dst = append(dst, '\n')
		if payload[i] == '\r' && i+1 < len(payload) && payload[i+1] == '\n' {
			i++
		}
		payload = payload[i+1:]
	}
}

// AppendField appends one `name: value` line; line breaks and NUL in value are dropped,
// since they would end the field early (and an id with NUL is ignored by browsers).
func AppendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	for i := 0; i < len(value); i++ {
		// Byte by byte: other bytes, even invalid UTF-8, pass as they are.
		if c := value[i]; c != '\r' && c != '\n' && c != 0 {
			dst = append(dst, c)
		}
	}
	return append(dst, '\n')
}

// AppendEvent appends a complete event: its name (omitted when empty, which browsers
// dispatch as "message"), its id, the already encoded data lines (see AppendData), and the
// blank line that dispatches it.
func AppendEvent(dst []byte, event, id string, dataLines []byte) []byte {
	if event != "" {
		dst = AppendField(dst, "event", event)
	}
	dst = AppendField(dst, "id", id)
	dst = append(dst, dataLines...)
	return append(dst, '\n')
}

// AppendRetry appends a `retry:` field telling the browser how long to wait before
// reconnecting. It stands alone (a blank line follows), so it dispatches nothing.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, d.Milliseconds(), 10)
	return append(dst, "\n\n"...)
}

// AppendComment appends a comment line, which browsers ignore; it keeps proxies and load
// balancers from closing an idle stream.
func AppendComment(dst []byte, text string) []byte {
	dst = append(dst, ':')
	if text != "" {
		dst = append(dst, ' ')
		dst = append(dst, strings.NewReplacer("\r", "", "\n", "").Replace(text)...)
	}
	return append(dst, "\n\n"...)
}
