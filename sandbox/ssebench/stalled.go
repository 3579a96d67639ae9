package ssebench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"
)

// A stalled client never reads, so it cannot see the server's FIN: the FIN waits behind
// the unread data in a zero window. Instead the worker watches the kernel's table of TCP
// sockets: once the router closes its end, that socket leaves ESTABLISHED (FIN_WAIT1, or
// gone after a reset), and our end leaves it too when a RST arrives.

func (w *Worker) watchStalled(c *client) {
	w.mu.Lock()
	w.stalled = append(w.stalled, c)
	w.mu.Unlock()
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

const tcpEstablished = "01"

func (w *Worker) pollStalled(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.poke:
		}
		w.mu.Lock()
		open := w.stalled[:0]
		for _, c := range w.stalled {
			if c.closedAt.Load() == 0 && c.g.spec.Stall {
				open = append(open, c)
			}
		}
		w.stalled = open
		pending := append([]*client(nil), open...)
		w.mu.Unlock()
		if len(pending) == 0 {
			continue
		}
		states, err := tcpStates()
		if err != nil {
			w.log.Warn("read socket table", "err", err)
			continue
		}
		now := time.Now().UnixNano()
		for _, c := range pending {
			ours, okOurs := states[sockKey(c.local, c.remote)]
			theirs, okTheirs := states[sockKey(c.remote, c.local)]
			if !okOurs || ours != tcpEstablished || !okTheirs || theirs != tcpEstablished {
				c.closedAt.CompareAndSwap(0, now)
			}
		}
	}
}

// sockKey is how /proc/net/tcp writes a socket's two ends: the IPv4 address as a
// little-endian hex word (on the little-endian machines this runs on) and the port.
func sockKey(local, remote netip.AddrPort) string {
	return hexEnd(local) + " " + hexEnd(remote)
}

func hexEnd(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
}

// tcpStates maps "local remote" to the state of every IPv4 TCP socket.
func tcpStates() (map[string]string, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, fmt.Errorf("socket table: %w", err)
	}
	m := make(map[string]string, bytes.Count(b, []byte("\n")))
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 4 {
			continue
		}
		m[string(f[1])+" "+string(f[2])] = string(f[3])
	}
	return m, sc.Err()
}
