package api

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// EndID is the id of a stream's `end` event. A browser that reconnects anyway sends it
// back as Last-Event-ID and is answered 204 No Content, which stops EventSource from
// reconnecting.
const EndID = "end"

// LogPos is a log line's position: its timestamp in Unix nanoseconds and, for lines with
// the same timestamp, its rank among them (0 for the first). Its id form is "<nanos>"
// or "<nanos>.<rank>".
type LogPos struct {
	Nanos int64
	Rank  int32
}

func (p LogPos) String() string {
	s := strconv.FormatInt(p.Nanos, 10)
	if p.Rank > 0 {
		s += "." + strconv.FormatInt(int64(p.Rank), 10)
	}
	return s
}

func (p LogPos) Less(q LogPos) bool {
	return p.Nanos < q.Nanos || (p.Nanos == q.Nanos && p.Rank < q.Rank)
}

// before is the last position before p.
func (p LogPos) Before() LogPos {
	if p.Rank > 0 {
		return LogPos{Nanos: p.Nanos, Rank: p.Rank - 1}
	}
	return LogPos{Nanos: p.Nanos - 1, Rank: math.MaxInt32}
}

func (p LogPos) Time() time.Time { return time.Unix(0, p.Nanos).UTC() }

// Resume is a parsed Last-Event-ID.
type Resume struct {
	// Set is false when the client sent none.
	Set bool
	// ID is the id as sent.
	ID string
	// Ended: the client saw the stream's end.
	Ended bool
	// RV is a watch position (a resourceVersion), when it is a number.
	RV    uint64
	HasRV bool
	// log is a log position.
	Log LogPos
}

// ParseResume parses a Last-Event-ID for a stream of kind. Watch ids are resourceVersions:
// one that is not a number is accepted but cannot be resumed from (a snapshot is sent).
// Log ids must be log positions. Metrics and app summaries resume with their latest state.
func ParseResume(kind Kind, id string) (Resume, error) {
	if id == "" {
		return Resume{}, nil
	}
	if len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Resume{}, badParam("Last-Event-ID", "not an id this router sent")
	}
	r := Resume{Set: true, ID: id}
	if id == EndID {
		r.Ended = true
		return r, nil
	}
	switch kind {
	case KindPodLog, KindWorkflowLog:
		p, ok := ParseLogPos(id)
		if !ok {
			return Resume{}, badParam("Last-Event-ID", "not a log position (<unix nanos>[.<rank>])")
		}
		r.Log = p
	default:
		if n, err := strconv.ParseUint(id, 10, 64); err == nil {
			r.RV, r.HasRV = n, true
		}
	}
	return r, nil
}

// ParseLogPos parses a log position id.
func ParseLogPos(id string) (LogPos, bool) {
	ns, Rank, hasRank := strings.Cut(id, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || n < 0 || !allDigits(ns) {
		return LogPos{}, false
	}
	p := LogPos{Nanos: n}
	if hasRank {
		k, err := strconv.ParseInt(Rank, 10, 32)
		if err != nil || k < 1 || !allDigits(Rank) {
			return LogPos{}, false
		}
		p.Rank = int32(k)
	}
	return p, true
}

// allDigits reports whether s is a decimal number in canonical form (no sign, no
// leading zero), so that every position has exactly one id.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != "" && (s == "0" || s[0] != '0')
}
