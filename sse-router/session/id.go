package session

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
)

// A multiplexed stream's event ids carry what any router needs to resume the stream:
//
//	m1.<base64url, unpadded, of: header entry…>
//
// header is 18 bytes: the session's 16 random bytes, then 2 zero bytes (reserved). Each
// entry is one subscription's position: uvarint(len(body)) body, then zero bytes up to
// a multiple of 3 bytes, so that every entry's base64 stands alone: a session keeps each
// entry's text and re-encodes one only when its position changes. body is
//
//	flags            bits 0-2: the position's form (none, number, log position, text,
//	                 end); bit 3: carried (the subscription is not in the URL); others 0
//	uvarint len, name
//	carried:         uvarint len, path
//	not carried:     4 bytes, big-endian FNV-1a of the path (a URL whose subscription of
//	                 that name is another stream starts it afresh)
//	position         number: uvarint; log position: uvarint nanos, uvarint rank;
//	                 text: uvarint len, bytes; none, end: nothing
//
// Subscriptions in the URL (which EventSource sends again) are named with their
// positions; those added by POST carry their path too. Ended subscriptions of the URL
// stay, with the end, so that a reconnection does not start them again.

// IDPrefix starts every id of a multiplexed stream (its format's version).
const IDPrefix = "m1."

// MaxIDLen bounds an id a client sends.
const MaxIDLen = 8 << 10

// maxCarried bounds the id's growth by subscriptions added: a POST that would let the
// ids outgrow it is refused.
const maxCarried = MaxIDLen - 1024

const (
	headerLen   = 18
	sessionLen  = 16
	maxEntries  = 256
	maxTextPos  = 128
	flagPosMask = 0x07
	flagCarried = 0x08

	posNone   = 0
	posNumber = 1
	posLog    = 2
	posText   = 3
	posEnd    = 4
)

// Entry is one subscription's place in an id.
type Entry struct {
	Name string
	// Carried: the id carries the subscription's Path (it was added by POST).
	Carried bool
	Path    string
	// PathHash identifies the path of a subscription the id does not carry.
	PathHash uint32
	// Pos is the subscription's position: its topic's last event id ("" for none yet,
	// api.EndID once it ended).
	Pos string
}

// ID is a parsed id of a multiplexed stream.
type ID struct {
	// Session is the session's id, as in its URLs.
	Session string
	Entries []Entry
}

// Find returns the entry of the subscription named name.
func (id *ID) Find(name string) (Entry, bool) {
	if id == nil {
		return Entry{}, false
	}
	for _, e := range id.Entries {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

func (id *ID) sessionBytes() [sessionLen]byte {
	b, _ := decodeSessionID(id.Session)
	return b
}

// PathHash is the hash ids hold of a subscription's path.
func PathHash(path string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(path))
	return h.Sum32()
}

func newSessionBytes() [sessionLen]byte {
	var b [sessionLen]byte
	_, _ = rand.Read(b[:])
	return b
}

// encodeHeader is the id's header text for a session.
func encodeHeader(session [sessionLen]byte) string {
	var b [headerLen]byte
	copy(b[:], session[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// encodeEntry is an entry's text.
func encodeEntry(e Entry) string {
	body := make([]byte, 0, 16+len(e.Name)+len(e.Path)+len(e.Pos))
	flags := byte(0)
	if e.Carried {
		flags |= flagCarried
	}
	var pos []byte
	switch {
	case e.Pos == "":
		flags |= posNone
	case e.Pos == api.EndID:
		flags |= posEnd
	case isNumber(e.Pos):
		n, _ := strconv.ParseUint(e.Pos, 10, 64)
		flags |= posNumber
		pos = binary.AppendUvarint(pos, n)
	default:
		if p, ok := api.ParseLogPos(e.Pos); ok && p.String() == e.Pos {
			flags |= posLog
			pos = binary.AppendUvarint(pos, uint64(p.Nanos))
			pos = binary.AppendUvarint(pos, uint64(p.Rank))
		} else {
			flags |= posText
			pos = binary.AppendUvarint(pos, uint64(len(e.Pos)))
			pos = append(pos, e.Pos...)
		}
	}
	body = append(body, flags)
	body = binary.AppendUvarint(body, uint64(len(e.Name)))
	body = append(body, e.Name...)
	if e.Carried {
		body = binary.AppendUvarint(body, uint64(len(e.Path)))
		body = append(body, e.Path...)
	} else {
		body = binary.BigEndian.AppendUint32(body, e.PathHash)
	}
	body = append(body, pos...)
	chunk := binary.AppendUvarint(make([]byte, 0, len(body)+12), uint64(len(body)))
	chunk = append(chunk, body...)
	for len(chunk)%3 != 0 {
		chunk = append(chunk, 0)
	}
	return base64.RawURLEncoding.EncodeToString(chunk)
}

// isNumber: s is a decimal uint64 in canonical form.
func isNumber(s string) bool {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// FormatID is the id of a session's subscriptions at their positions.
func FormatID(session string, entries []Entry) string {
	b, ok := decodeSessionID(session)
	if !ok {
		return ""
	}
	var sb strings.Builder
	sb.WriteString(IDPrefix)
	sb.WriteString(encodeHeader(b))
	for _, e := range entries {
		sb.WriteString(encodeEntry(e))
	}
	return sb.String()
}

func decodeSessionID(s string) ([sessionLen]byte, bool) {
	var b [sessionLen]byte
	if len(s) != sessionIDLen {
		return b, false
	}
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s))
	return b, err == nil && n == sessionLen
}

// sessionIDLen is the length of a session's id in URLs: 16 bytes, base64url.
const sessionIDLen = 22

func badID(detail string) error {
	return &api.SpecError{Field: "Last-Event-ID", Detail: detail}
}

// ParseID parses the Last-Event-ID of a multiplexed stream. It returns nil and no error
// for an id of the former format ("<session>.<seq>", known only to the process that
// wrote it): the stream starts afresh.
func ParseID(id string) (*ID, error) {
	if len(id) > MaxIDLen {
		return nil, badID("too long")
	}
	rest, ok := strings.CutPrefix(id, IDPrefix)
	if !ok {
		if isLegacyID(id) {
			return nil, nil
		}
		return nil, badID("not an id of a multiplexed stream")
	}
	if len(rest)%4 != 0 {
		return nil, badID("not an id of a multiplexed stream")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil || len(raw) < headerLen || raw[16] != 0 || raw[17] != 0 {
		return nil, badID("not an id of a multiplexed stream")
	}
	out := &ID{Session: base64.RawURLEncoding.EncodeToString(raw[:sessionLen])}
	raw = raw[headerLen:]
	for len(raw) > 0 {
		if len(out.Entries) == maxEntries {
			return nil, badID("too many subscriptions")
		}
		e, n, err := decodeEntry(raw)
		if err != nil {
			return nil, err
		}
		if _, dup := out.Find(e.Name); dup {
			return nil, badID("a subscription twice")
		}
		out.Entries = append(out.Entries, e)
		raw = raw[n:]
	}
	return out, nil
}

// decodeEntry decodes the entry raw starts with, returning its length with padding.
func decodeEntry(raw []byte) (Entry, int, error) {
	bad := badID("a subscription's position is malformed")
	bl, n := binary.Uvarint(raw)
	if n <= 0 || bl > uint64(len(raw)-n) || bl == 0 {
		return Entry{}, 0, bad
	}
	body := raw[n : n+int(bl)]
	total := n + int(bl)
	for total%3 != 0 {
		if total >= len(raw) || raw[total] != 0 {
			return Entry{}, 0, bad
		}
		total++
	}
	flags := body[0]
	body = body[1:]
	if flags&^(flagPosMask|flagCarried) != 0 {
		return Entry{}, 0, bad
	}
	var e Entry
	var ok bool
	var name []byte
	if name, body, ok = readBytes(body, 64); !ok {
		return Entry{}, 0, bad
	}
	e.Name = string(name)
	if ValidName(e.Name) != nil {
		return Entry{}, 0, badID("a subscription's name is invalid")
	}
	if flags&flagCarried != 0 {
		var path []byte
		if path, body, ok = readBytes(body, MaxPathLen); !ok {
			return Entry{}, 0, bad
		}
		e.Carried, e.Path = true, string(path)
		e.PathHash = PathHash(e.Path)
	} else {
		if len(body) < 4 {
			return Entry{}, 0, bad
		}
		e.PathHash = binary.BigEndian.Uint32(body)
		body = body[4:]
	}
	switch flags & flagPosMask {
	case posNone:
	case posEnd:
		e.Pos = api.EndID
	case posNumber:
		v, n := binary.Uvarint(body)
		if n <= 0 {
			return Entry{}, 0, bad
		}
		e.Pos, body = strconv.FormatUint(v, 10), body[n:]
	case posLog:
		nanos, n := binary.Uvarint(body)
		if n <= 0 || nanos > 1<<63-1 {
			return Entry{}, 0, bad
		}
		body = body[n:]
		rank, n := binary.Uvarint(body)
		if n <= 0 || rank > 1<<31-1 {
			return Entry{}, 0, bad
		}
		body = body[n:]
		e.Pos = api.LogPos{Nanos: int64(nanos), Rank: int32(rank)}.String()
	case posText:
		var pos []byte
		if pos, body, ok = readBytes(body, maxTextPos); !ok || len(pos) == 0 ||
			strings.ContainsFunc(string(pos), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return Entry{}, 0, bad
		}
		e.Pos = string(pos)
	default:
		return Entry{}, 0, bad
	}
	if len(body) != 0 {
		return Entry{}, 0, bad
	}
	return e, total, nil
}

func readBytes(b []byte, max int) (v, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(max) || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

// isLegacyID: "<22 base64url characters>.<decimal>", the ids routers wrote before.
func isLegacyID(id string) bool {
	s, seq, ok := strings.Cut(id, ".")
	if !ok || len(s) != sessionIDLen || seq == "" || len(seq) > 20 {
		return false
	}
	if _, ok := decodeSessionID(s); !ok {
		return false
	}
	return strings.Trim(seq, "0123456789") == ""
}

func encodeSessionID(b [sessionLen]byte) string { return base64.RawURLEncoding.EncodeToString(b[:]) }

func newSessionID() string {
	b := newSessionBytes()
	return base64.RawURLEncoding.EncodeToString(b[:])
}
