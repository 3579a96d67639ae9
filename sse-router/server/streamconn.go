package server

import (
	"math/rand/v2"
	"net"
	"syscall"
	"time"
)

// streamConn is a taken-over connection.
type streamConn struct {
	nc  net.Conn
	raw syscall.RawConn // nil when the connection has no file descriptor

	// What the watchdog saw of the socket (only it reads and writes these): the bytes
	// the client had acknowledged, since when that count has not moved while data was
	// outstanding, and the last write after which the socket was seen empty.
	ackedAt uint64
	stuck   time.Time
	cleanAt time.Time
	// ticks counts the watchdog's looks, from a random start so that streams opened
	// together are not looked at for a closed peer on the same tick.
	ticks uint32
}

func newStreamConn(nc net.Conn, sendBuffer int) *streamConn {
	sc := &streamConn{nc: nc, ticks: rand.Uint32()}
	if tc, ok := nc.(*net.TCPConn); ok {
		if sendBuffer > 0 {
			// A small send buffer makes a client that stopped reading show soon as data
			// left unsent, rather than after the kernel has buffered megabytes for it.
			_ = tc.SetWriteBuffer(sendBuffer)
		}
		if raw, err := tc.SyscallConn(); err == nil {
			sc.raw = raw
		}
	}
	return sc
}

// tryWrite writes what the socket takes now, without waiting.
func (c *streamConn) tryWrite(b []byte) (int, error) {
	if c.raw == nil {
		return 0, nil // written aside, under a deadline
	}
	written := 0
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for written < len(b) {
			n, err := syscall.Write(int(fd), b[written:])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return true
			case err != nil:
				werr = err
				return true
			case n == 0:
				return true
			}
			written += n
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return written, err
}

// writeBlocking writes all of b by deadline.
func (c *streamConn) writeBlocking(b []byte, deadline time.Time) error {
	if err := c.nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := c.nc.Write(b)
	if err == nil {
		// A deadline left set would fail the writers' non-blocking writes once past.
		err = c.nc.SetWriteDeadline(time.Time{})
	}
	return err
}

// interrupt ends a blocked write at once.
func (c *streamConn) interrupt() { _ = c.nc.SetWriteDeadline(time.Unix(1, 0)) }
