package events

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Ordering is an ordering key: of two states of one object, the one with the greater key
// is newer. It is the object's resourceVersion when that is a decimal integer, otherwise
// a clock reading of the watcher (see the package documentation). Zero is no key. Keys
// are at most MaxOrdering.
type Ordering uint64

// MaxOrdering is the greatest ordering key, 2^53-1: keys are exact as IEEE doubles (the
// numbers of JavaScript and of Redis's Lua). An etcd revision would need 9·10^15 writes
// to reach it; the watcher's fallback clock counts microseconds, which reaches it in 2255.
const MaxOrdering Ordering = 1<<53 - 1

// ParseOrdering reads a decimal ordering key (such as an etcd-backed resourceVersion).
// It fails on anything else, on zero and above MaxOrdering.
func ParseOrdering(s string) (Ordering, error) {
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("ordering key %q is not a decimal integer of 1 to 20 digits", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("ordering key %q is not a decimal integer", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ordering key %q: %w", s, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("ordering key %q: zero is not a key", s)
	}
	if n > uint64(MaxOrdering) {
		return 0, fmt.Errorf("ordering key %q is greater than 2^53-1", s)
	}
	return Ordering(n), nil
}

// String is the key in decimal.
func (o Ordering) String() string { return strconv.FormatUint(uint64(o), 10) }

// Key is the key as 20 decimal digits, so that comparing keys as strings compares them
// as numbers.
func (o Ordering) Key() string { return fmt.Sprintf("%020d", uint64(o)) }

// MarshalJSON writes the key as a JSON string: it may exceed the integers a JSON number
// carries exactly in JavaScript.
func (o Ordering) MarshalJSON() ([]byte, error) { return []byte(`"` + o.String() + `"`), nil }

// UnmarshalJSON reads a key written by MarshalJSON.
func (o *Ordering) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("ordering key: want a string of decimal digits: %w", err)
	}
	v, err := ParseOrdering(s)
	if err != nil {
		return err
	}
	*o = v
	return nil
}
