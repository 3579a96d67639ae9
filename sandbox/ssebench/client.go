package ssebench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Target says where a group of streams connects and how.
type Target struct {
	Addr   string `json:"addr"` // host:port
	TLS    bool   `json:"tls,omitempty"`
	CAFile string `json:"caFile,omitempty"`
	Path   string `json:"path"`
	// Tokens are bearer tokens; connection i uses Tokens[i%len(Tokens)].
	Tokens []string `json:"tokens"`
	// Lines: the body is line-delimited (kube-apiserver's log and watch), not SSE.
	Lines bool `json:"lines,omitempty"`
}

// GroupSpec is a set of identical streams a worker opens.
type GroupSpec struct {
	Name string `json:"name"`
	Target
	Count int `json:"count"`
	// First is the index of the group's first connection across all workers (for tokens
	// and local addresses).
	First int `json:"first"`
	// Stall: read the response head, then never read again.
	Stall  bool `json:"stall,omitempty"`
	RcvBuf int  `json:"rcvBuf,omitempty"`
	// Reconnect like a browser's EventSource, sending Last-Event-ID.
	Reconnect bool `json:"reconnect,omitempty"`
	// TrackSeqs keeps every sequence number received, for lost/repeated counts.
	TrackSeqs bool `json:"trackSeqs,omitempty"`
	// DoneSeq: each stream notes when it first sees a sequence number ≥ DoneSeq, from
	// the start (for catch-ups, which may end before any later request).
	DoneSeq     int64         `json:"doneSeq,omitempty"`
	OpenTimeout time.Duration `json:"openTimeout"`
	Concurrency int           `json:"concurrency"`
}

// readBufSize is each connection's read buffer: small, since the bench models many
// cheap browsers and the events are short.
const readBufSize = 4 << 10

// client is one stream of a group, owned by its goroutine.
type client struct {
	g        *group
	idx      int
	parser   Parser
	lastSeq  int64 // read and written by the owning goroutine only
	openedAt atomic.Int64
	doneAt   atomic.Int64
	closedAt atomic.Int64

	mu   sync.Mutex
	seqs []int64 // with TrackSeqs

	local, remote netip.AddrPort // of the current connection, for stalled streams
}

// localIP spreads connections over 127.0.0.2–127.0.0.254 so that each source address
// has its own ephemeral port range: one address alone would run out near 28k streams.
func localIP(i int) net.IP { return net.IPv4(127, 0, 0, byte(2+i%253)) }

// dialer makes the socket small before connect(), where the receive window is fixed.
func (c *client) dialer() *net.Dialer {
	rcv := c.g.spec.RcvBuf
	return &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: localIP(c.g.spec.First + c.idx)},
		Timeout:   c.g.spec.OpenTimeout,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if rcv > 0 {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcv)
				}
				if serr == nil {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
				}
			})
			return errors.Join(err, serr)
		},
	}
}

// open dials, sends the GET and reads the response head. It returns the connection and
// a reader positioned at the body.
func (c *client) open(ctx context.Context, lastID string) (net.Conn, *bufio.Reader, Response, error) {
	s := &c.g.spec
	ctx, cancel := context.WithTimeout(ctx, s.OpenTimeout)
	defer cancel()
	nc, err := c.dialer().DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return nil, nil, Response{}, fmt.Errorf("dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()
	if la, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		c.local = la.AddrPort()
	}
	if ra, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = ra.AddrPort()
	}
	if s.TLS {
		tc := tls.Client(nc, c.g.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, nil, Response{}, fmt.Errorf("tls: %w", err)
		}
		nc = tc
	}
	var req strings.Builder
	accept := "text/event-stream"
	if s.Lines {
		accept = "*/*" // the API server refuses text/event-stream with 406
	}
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: %s\r\n", s.Path, s.Addr, accept)
	if len(s.Tokens) > 0 {
		fmt.Fprintf(&req, "Authorization: Bearer %s\r\n", s.Tokens[(s.First+c.idx)%len(s.Tokens)])
	}
	if lastID != "" {
		fmt.Fprintf(&req, "Last-Event-ID: %s\r\n", lastID)
	}
	req.WriteString("\r\n")
	if _, err := nc.Write([]byte(req.String())); err != nil {
		nc.Close()
		return nil, nil, Response{}, fmt.Errorf("send request: %w", err)
	}
	br := bufio.NewReaderSize(nc, readBufSize)
	resp, err := ReadResponseHead(br)
	if err != nil {
		nc.Close()
		return nil, nil, resp, err
	}
	if resp.Status != 200 {
		nc.Close()
		return nil, nil, resp, fmt.Errorf("status %d", resp.Status)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, nil, resp, fmt.Errorf("clear deadline: %w", err)
	}
	return nc, br, resp, nil
}

// run opens the stream (reporting the first outcome on opened) and reads it until ctx
// ends, reconnecting when the group asks to.
func (c *client) run(ctx context.Context, sem chan struct{}, opened chan<- openOutcome) {
	c.lastSeq = -1
	first := true
	for ctx.Err() == nil {
		if first {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				opened <- openOutcome{err: ctx.Err()}
				return
			}
		}
		nc, br, resp, err := c.open(ctx, c.parser.LastID)
		if first {
			<-sem
			opened <- openOutcome{status: resp.Status, err: err}
			first = false
		}
		if err != nil {
			if !c.g.spec.Reconnect {
				c.closedAt.Store(time.Now().UnixNano())
				return
			}
			sleep(ctx, retryDelay())
			continue
		}
		now := time.Now().UnixNano()
		if c.openedAt.Swap(now) != 0 {
			c.g.reconnects.Add(1)
			c.g.lastReopen.Store(now)
		}
		c.read(ctx, nc, br, resp)
		if ctx.Err() != nil || !c.g.spec.Reconnect {
			if ctx.Err() == nil {
				c.closedAt.Store(time.Now().UnixNano())
			}
			return
		}
		sleep(ctx, retryDelay())
	}
}

// retryDelay is what a browser does after a broken stream: wait about a second, spread
// so that a thousand clients do not come back in the same millisecond.
func retryDelay() time.Duration { return 200*time.Millisecond + rand.N(800*time.Millisecond) }

func (c *client) read(ctx context.Context, nc net.Conn, br *bufio.Reader, resp Response) {
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	defer nc.Close()
	if c.g.spec.Stall {
		// Never read again: the router's writes pile up in the small socket buffers
		// until it gives up on this client; the worker's poller sees when it does.
		c.g.w.watchStalled(c)
		<-ctx.Done()
		return
	}
	c.parser.Lines = c.g.spec.Lines
	c.parser.Reset()
	_ = PumpBody(br, resp.Chunked, func(b []byte) { c.parser.Feed(b, c.event) })
}

func (c *client) event(ev Event) {
	if ev.Name == "error" {
		c.g.errorEvents.Add(1)
	}
	seq, sent, ok := ParseMarker(ev.Data)
	if !ok {
		return
	}
	now := time.Now()
	g := c.g
	if g.spec.TrackSeqs {
		c.mu.Lock()
		c.seqs = append(c.seqs, seq)
		c.mu.Unlock()
	}
	if seq <= c.lastSeq {
		return // an older object state (a status update) or a repeated line
	}
	c.lastSeq = seq
	if done := g.doneSeq.Load(); done > 0 && seq >= done && c.doneAt.Load() == 0 {
		c.doneAt.Store(now.UnixNano())
	}
	if seq < g.measureFrom.Load() {
		return
	}
	g.received.Add(1)
	sh := &g.hist[c.idx%len(g.hist)]
	sh.mu.Lock()
	sh.h.Add(now.Sub(time.Unix(0, sent)))
	sh.mu.Unlock()
}

type openOutcome struct {
	status int
	err    error
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func loadTLS(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	// HTTP/1.1 only: the hand-written client speaks nothing else.
	return &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(64)}, nil
}
