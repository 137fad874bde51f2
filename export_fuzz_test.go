package fanout

import "net/url"

// ParseResume exposes the parser of the after and epoch query parameters to
// the fuzz tests.
func ParseResume(q url.Values) (resume bool, after uint64, epoch string, err error) {
	p, err := parseResume(q)
	return p.resume, p.after, p.epoch, err
}
