package controlplane

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// egressProxy is the HTTP CONNECT proxy the API server sends its cluster traffic through
// (kubelets, aggregated APIs). Everything runs on loopback here, while Kubernetes refuses
// loopback endpoint addresses; so the proxy dials 127.0.0.1 on the requested port for
// the made-up addresses it is told to map. It only ever dials loopback: any other
// destination (an address, a host name) is refused, so nothing the API server is asked
// to reach leaves the machine.
type egressProxy struct {
	socket string
	mapped map[string]bool // host addresses sent to 127.0.0.1
	logger *slog.Logger

	ln net.Listener
	wg sync.WaitGroup
}

func (p *egressProxy) start() error {
	_ = os.Remove(p.socket)
	ln, err := net.Listen("unix", p.socket)
	if err != nil {
		return err
	}
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c)
			}()
		}
	}()
	return nil
}

func (p *egressProxy) close() {
	if p.ln != nil {
		p.ln.Close()
	}
}

func (p *egressProxy) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	host, port, err := net.SplitHostPort(req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
		return
	}
	if p.mapped[host] {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		// Nothing outside this machine is part of the local cluster.
		p.logger.Warn("egress refused", "destination", req.Host)
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\n\r\n")
		return
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 5*time.Second)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	_ = c.SetReadDeadline(time.Time{})
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() {
		// Bytes the client sent after CONNECT may already sit in br. This copy ends
		// when either side closes: both connections are closed when serve returns.
		_, _ = io.Copy(up, br)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	if _, err := io.Copy(c, up); err != nil && !errors.Is(err, net.ErrClosed) {
		p.logger.Debug("egress copy", "err", err)
	}
}
