package stream

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

// logPos is a log line's position: its timestamp in Unix nanoseconds and, for lines with
// the same timestamp, its rank among them (0 for the first). Its id form is "<nanos>"
// or "<nanos>.<rank>".
type logPos struct {
	nanos int64
	rank  int32
}

func (p logPos) String() string {
	s := strconv.FormatInt(p.nanos, 10)
	if p.rank > 0 {
		s += "." + strconv.FormatInt(int64(p.rank), 10)
	}
	return s
}

func (p logPos) less(q logPos) bool {
	return p.nanos < q.nanos || (p.nanos == q.nanos && p.rank < q.rank)
}

// before is the last position before p.
func (p logPos) before() logPos {
	if p.rank > 0 {
		return logPos{nanos: p.nanos, rank: p.rank - 1}
	}
	return logPos{nanos: p.nanos - 1, rank: math.MaxInt32}
}

func (p logPos) time() time.Time { return time.Unix(0, p.nanos).UTC() }

// Resume is a parsed Last-Event-ID.
type Resume struct {
	// Set is false when the client sent none.
	Set bool
	// ID is the id as sent.
	ID string
	// Ended: the client saw the stream's end.
	Ended bool
	// rv is a watch position (a resourceVersion), when it is a number.
	rv    uint64
	hasRV bool
	// log is a log position.
	log logPos
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
		p, ok := parseLogPos(id)
		if !ok {
			return Resume{}, badParam("Last-Event-ID", "not a log position (<unix nanos>[.<rank>])")
		}
		r.log = p
	default:
		if n, err := strconv.ParseUint(id, 10, 64); err == nil {
			r.rv, r.hasRV = n, true
		}
	}
	return r, nil
}

func parseLogPos(id string) (logPos, bool) {
	ns, rank, hasRank := strings.Cut(id, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || n < 0 || !allDigits(ns) {
		return logPos{}, false
	}
	p := logPos{nanos: n}
	if hasRank {
		k, err := strconv.ParseInt(rank, 10, 32)
		if err != nil || k < 1 || !allDigits(rank) {
			return logPos{}, false
		}
		p.rank = int32(k)
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
