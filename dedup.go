package fanout

// dedupKey names one client publish: ids are chosen by clients, so they are
// only unique per identity.
type dedupKey struct {
	user, id string
}

// dedup remembers the seq of the last window client publishes, oldest
// forgotten first, so memory stays bounded whatever clients send. Its table
// and ring grow with use, up to the window: a session nobody publishes to
// holds neither. Callers hold the session lock.
type dedup struct {
	seqs   map[dedupKey]uint64
	order  []dedupKey // ring of keys in insertion order; grows until len == window
	next   int        // where the next key goes once the ring is full
	window int
}

func newDedup(window int) dedup { return dedup{window: window} }

func (d *dedup) lookup(k dedupKey) (uint64, bool) {
	seq, ok := d.seqs[k] // a nil map finds nothing
	return seq, ok
}

func (d *dedup) remember(k dedupKey, seq uint64) {
	if d.seqs == nil {
		d.seqs = make(map[dedupKey]uint64)
	}
	if len(d.order) < d.window {
		if len(d.order) == cap(d.order) {
			grown := make([]dedupKey, len(d.order), min(max(2*cap(d.order), 4), d.window))
			copy(grown, d.order)
			d.order = grown
		}
		d.order = append(d.order, k)
		d.seqs[k] = seq
		return
	}
	if old := d.order[d.next]; old != (dedupKey{}) {
		delete(d.seqs, old)
	}
	d.order[d.next] = k
	d.next = (d.next + 1) % d.window
	d.seqs[k] = seq
}
