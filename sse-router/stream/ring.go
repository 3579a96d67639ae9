package stream

// ring keeps the last cap items pushed, oldest first.
type ring[T any] struct {
	buf   []T
	start int // index of the oldest item
	n     int
}

func newRing[T any](capacity int) *ring[T] {
	if capacity < 1 {
		capacity = 1
	}
	return &ring[T]{buf: make([]T, capacity)}
}

// push adds v, returning the item it evicted, if any.
func (r *ring[T]) push(v T) (evicted T, ok bool) {
	if r.n == len(r.buf) {
		evicted, ok = r.buf[r.start], true
		r.buf[r.start] = v
		r.start = (r.start + 1) % len(r.buf)
		return evicted, ok
	}
	r.buf[(r.start+r.n)%len(r.buf)] = v
	r.n++
	return evicted, false
}

func (r *ring[T]) len() int { return r.n }

// at returns the i-th oldest item.
func (r *ring[T]) at(i int) T { return r.buf[(r.start+i)%len(r.buf)] }

func (r *ring[T]) full() bool { return r.n == len(r.buf) }

func (r *ring[T]) reset() {
	clear(r.buf)
	r.start, r.n = 0, 0
}

// search returns the index of the first item for which after is true, given that after
// is false then true along the ring (len when none).
func (r *ring[T]) search(after func(T) bool) int {
	lo, hi := 0, r.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if !after(r.at(m)) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
