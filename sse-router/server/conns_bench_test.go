package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// BenchmarkConnsFanout measures the writers: one message to N streams on real loopback
// sockets, each read by a client that counts events. One op is one message to all N.
func BenchmarkConnsFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			s, _ := startServer(b, testConfig(), newFakeCluster())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			var fan hub.Fanout
			var readers sync.WaitGroup
			got := make(chan int, n)
			for range n {
				cc, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				sc, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				c := hub.NewClient(1<<20, s.metrics) // the loop outruns the writers: measure, never drop
				cw := &clientWriter{s: s, c: c, f: &plainFramer{}, conn: newStreamConn(sc, 0)}
				cw.lastWrite.Store(time.Now().UnixNano())
				s.conns.add(cw)
				fan.Add(c.NewSubscription(""))
				readers.Go(func() {
					defer cc.Close()
					r := bufio.NewReader(cc)
					events := 0
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							got <- events
							return
						}
						if strings.HasPrefix(line, "event: end") {
							got <- events
							_, _ = io.Copy(io.Discard, r)
							return
						}
						if strings.HasPrefix(line, "event:") {
							events++
						}
					}
				})
			}
			msg := hub.NewMessage(false, hub.NewEvent("modified", "1", []byte(`{"type":"modified","object":{"metadata":{"name":"web-7d9c6b5f4-x2x8q","namespace":"shop"}}}`)))
			b.ResetTimer()
			for b.Loop() {
				fan.Broadcast(msg)
			}
			fan.Broadcast(hub.NewMessage(true, hub.NewEvent("end", "end", []byte(`{"type":"end"}`))))
			for range n {
				if e := <-got; e < b.N {
					b.Fatalf("a client got %d events of %d", e, b.N)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Shutdown(ctx)
			readers.Wait()
		})
	}
}
