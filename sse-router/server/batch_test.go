package server

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// A plain stream's backlog is written in rounds: small messages gathered up to
// batchLimit, a large one alone and never copied, in order, with nothing lost.
func TestNextBatchesSmallAndSharesLarge(t *testing.T) {
	msg := func(i, size int) *hub.Message {
		return hub.NewMessage(false, hub.NewEvent("log", fmt.Sprint(i), []byte(strings.Repeat("x", size))))
	}
	tests := []struct {
		name  string
		sizes []int
		// rounds says, per round, how many messages it writes and whether it is shared.
		rounds []struct {
			n      int
			shared bool
		}
	}{
		{"one small", []int{10}, []struct {
			n      int
			shared bool
		}{{1, true}}},
		{"smalls in one round", []int{10, 10, 10}, []struct {
			n      int
			shared bool
		}{{3, false}}},
		{"large alone, then the rest", []int{batchLimit + 1, 10, 10}, []struct {
			n      int
			shared bool
		}{{1, true}, {2, false}}},
		{"smalls, then a large, then smalls", []int{10, 10, 3 * batchLimit, 10}, []struct {
			n      int
			shared bool
		}{{2, false}, {1, true}, {1, true}}},
		{"smalls up to the limit", []int{batchLimit/2 - 64, batchLimit/2 - 64, batchLimit/2 - 64}, []struct {
			n      int
			shared bool
		}{{2, false}, {1, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := hub.NewClient(64, hub.NewMetrics(prometheus.NewRegistry()))
			sub := c.NewSubscription("")
			var msgs []*hub.Message
			var want bytes.Buffer
			for i, size := range tt.sizes {
				m := msg(i, size)
				msgs = append(msgs, m)
				want.Write(m.Wire)
				if !sub.Deliver(m) {
					t.Fatal("delivery refused")
				}
			}
			cw := &clientWriter{c: c, f: &plainFramer{}}
			var got bytes.Buffer
			var queue []hub.Delivery
			next := 0
			for r, round := range tt.rounds {
				buf, events, done, shared := cw.next(nil, &queue)
				if events != round.n || shared != round.shared || done {
					t.Fatalf("round %d: %d events, shared %v, done %v; want %d, shared %v", r, events, shared, done, round.n, round.shared)
				}
				if shared && unsafe.SliceData(buf) != unsafe.SliceData(msgs[next].Wire) {
					t.Fatalf("round %d: a shared message was copied", r)
				}
				next += events
				got.Write(buf)
			}
			if len(cw.carry) != 0 {
				t.Fatalf("%d deliveries left after the rounds", len(cw.carry))
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatal("the rounds did not write the messages in order")
			}
			if id := cw.f.lastEventID(); id != fmt.Sprint(len(tt.sizes)-1) {
				t.Fatalf("last id %q", id)
			}
		})
	}
}
