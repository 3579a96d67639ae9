//go:build !linux

package server

import "time"

// stuckSince is known on Linux only; elsewhere a stopped reader is found once the
// socket is full and what is left stays unsent past the write timeout.
func (c *streamConn) stuckSince(now, lastWrite time.Time) time.Time { return time.Time{} }

// peerClosed is found by a failed write elsewhere (the next event or heartbeat).
func (c *streamConn) peerClosed() bool { return false }
