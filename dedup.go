package fanout

// dedupKey names one client publish: ids are chosen by clients, so they are
// only unique per identity.
type dedupKey struct {
	user, id string
}

// dedup remembers the seq of the last window client publishes, oldest
// forgotten first, so memory stays bounded whatever clients send. Callers
// hold the session lock.
type dedup struct {
	seqs  map[dedupKey]uint64
	order []dedupKey // ring of keys in insertion order
	next  int
}

func newDedup(window int) dedup {
	return dedup{seqs: make(map[dedupKey]uint64, min(window, 1024)), order: make([]dedupKey, window)}
}

func (d *dedup) lookup(k dedupKey) (uint64, bool) {
	seq, ok := d.seqs[k]
	return seq, ok
}

func (d *dedup) remember(k dedupKey, seq uint64) {
	if old := d.order[d.next]; old != (dedupKey{}) {
		delete(d.seqs, old)
	}
	d.order[d.next] = k
	d.next = (d.next + 1) % len(d.order)
	d.seqs[k] = seq
}
