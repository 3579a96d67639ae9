package session

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
)

func sampleEntries() []Entry {
	return []Entry{
		{Name: "pods", PathHash: PathHash("namespaces/shop/pods?app=web"), Pos: "123456789"},
		{Name: "log", PathHash: PathHash("namespaces/shop/pods/web-1/log"), Pos: "1767323045123456789.3"},
		{Name: "log2", PathHash: 7, Pos: "1767323045123456789"},
		{Name: "apps", PathHash: 1, Pos: "sdk3j2.17"},
		{Name: "wf", PathHash: 2, Pos: api.EndID},
		{Name: "fresh", PathHash: 3},
		{Name: "added", Carried: true, Path: "clusters/b/namespaces/x/workflows?app=y", Pos: "0"},
	}
}

func TestIDRoundTrip(t *testing.T) {
	sid := newSessionID()
	entries := sampleEntries()
	entries[6].PathHash = PathHash(entries[6].Path)
	for n := 0; n <= len(entries); n++ {
		id := FormatID(sid, entries[:n])
		if !strings.HasPrefix(id, IDPrefix) {
			t.Fatalf("id %q", id)
		}
		got, err := ParseID(id)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		want := &ID{Session: sid, Entries: entries[:n]}
		if n == 0 {
			want.Entries = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q parsed as\n%+v\nwant\n%+v", id, got, want)
		}
	}
	// Compact: a session of a watch and a log is well under 100 bytes.
	if id := FormatID(sid, entries[:2]); len(id) > 100 {
		t.Errorf("id of two subscriptions is %d bytes: %s", len(id), id)
	}
}

func TestParseIDRefuses(t *testing.T) {
	sid := newSessionID()
	good := FormatID(sid, sampleEntries()[:2])
	dup := FormatID(sid, []Entry{{Name: "a"}, {Name: "a"}})
	reserved := FormatID(sid, []Entry{{Name: "session"}})
	for _, bad := range []string{
		"m1.", "m1.AAAA", "x" + good, good[:len(good)-1], good + "A", good + "AAAA", dup, reserved,
		IDPrefix + strings.Repeat("A", MaxIDLen), "42", "", strings.Replace(good, "m1.", "m2.", 1),
	} {
		id, err := ParseID(bad)
		var se *api.SpecError
		if err == nil || !errors.As(err, &se) || se.Field != "Last-Event-ID" {
			t.Errorf("%.60q: %+v %v", bad, id, err)
		}
	}
	// The former "<session>.<seq>" ids start afresh.
	if id, err := ParseID(sid + ".42"); id != nil || err != nil {
		t.Errorf("former id: %v %v", id, err)
	}
}

func FuzzParseMuxID(f *testing.F) {
	sid := newSessionID()
	f.Add(FormatID(sid, sampleEntries()))
	f.Add(FormatID(sid, nil))
	f.Add(sid + ".7")
	f.Add("m1.x.y")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			var se *api.SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error of another type: %v", err)
			}
			return
		}
		if id == nil {
			return
		}
		if len(s) > MaxIDLen || len(id.Entries) > maxEntries {
			t.Fatalf("accepted %d bytes, %d entries", len(s), len(id.Entries))
		}
		for _, e := range id.Entries {
			if ValidName(e.Name) != nil || len(e.Path) > MaxPathLen {
				t.Fatalf("accepted entry %+v", e)
			}
			if e.Pos != "" && e.Pos != api.EndID {
				for _, k := range []api.Kind{api.KindPods, api.KindApps} {
					if _, err := api.ParseResume(k, e.Pos); err != nil {
						t.Fatalf("position %q: %v", e.Pos, err)
					}
				}
			}
		}
		// What was accepted encodes to an id of the same meaning.
		again, err := ParseID(FormatID(id.Session, id.Entries))
		if err != nil || !reflect.DeepEqual(again, id) {
			t.Fatalf("%q: %+v, then %+v (%v)", s, id, again, err)
		}
	})
}

func BenchmarkFrameID(b *testing.B) {
	s := newSession(NewTable(0, 32, Hooks{}), newSessionBytes(), testUser)
	for i := range 8 {
		m := newSub(Want{Req: Request{Name: fmt.Sprint("s", i), Path: "namespaces/x/pods"}}, nil, func() {})
		m.setPos("12345678")
		s.subs = append(s.subs, m)
	}
	var dst []byte
	for i := 0; b.Loop(); i++ {
		s.subs[0].setPos(fmt.Sprint(1767323045123456789 + i))
		dst = s.appendIDLocked(dst[:0])
	}
}
