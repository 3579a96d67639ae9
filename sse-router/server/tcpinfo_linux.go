package server

import (
	"time"

	"golang.org/x/sys/unix"
)

// peerClosed says whether the client closed its side: no goroutine reads a taken-over
// connection, so the watchdog looks (a peek that never blocks) for the end of its input.
func (c *streamConn) peerClosed() bool {
	if c.raw == nil {
		return false
	}
	var buf [1]byte
	closed := false
	_ = c.raw.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err == unix.ECONNRESET
		return true
	})
	return closed
}

// stuckSince says since when the client has taken none of the data sent to it that it
// has not acknowledged (zero: it keeps up, or nothing is outstanding). A client whose
// receive window is full acknowledges nothing more, whatever the event rate: this is
// what tells a stopped reader from a slow trickle.
func (c *streamConn) stuckSince(now, lastWrite time.Time) time.Time {
	if c.raw == nil || (c.stuck.IsZero() && !lastWrite.After(c.cleanAt)) {
		return time.Time{} // nothing sent since the socket was last seen empty
	}
	var info *unix.TCPInfo
	var err error
	if cerr := c.raw.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil {
		return time.Time{}
	}
	if info.Notsent_bytes == 0 && info.Unacked == 0 {
		c.stuck, c.cleanAt = time.Time{}, lastWrite
		return time.Time{}
	}
	if c.stuck.IsZero() || info.Bytes_acked != c.ackedAt {
		c.ackedAt, c.stuck = info.Bytes_acked, now
	}
	return c.stuck
}
