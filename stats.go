package fanout

// Stats is a point-in-time view of a session. Counters count since
// NewSession.
type Stats struct {
	Connections        int    // open connections
	Epoch              string // this incarnation of the history
	Head               uint64 // seq of the newest event, 0 before the first
	Oldest             uint64 // oldest seq still retained for replay, 0 if none
	Published          uint64 // events appended (server and client publishes)
	Delivered          uint64 // event messages written to connections
	Deduplicated       uint64 // client publishes answered with the seq of an earlier one with the same id
	SlowConsumerCloses uint64 // connections closed with 4001
	ResumesReplayed    uint64 // resumes that were served (resumed:true)
	ResumesReset       uint64 // resumes that could not be served (resumed:false)
}

// Stats returns the session's current figures.
func (s *Session) Stats() Stats {
	s.mu.RLock()
	st := Stats{
		Connections: len(s.conns),
		Epoch:       s.epoch,
		Head:        s.window.head,
		Oldest:      s.window.oldest(),
	}
	s.mu.RUnlock()
	st.Published = s.published.Load()
	st.Delivered = s.delivered.Load()
	st.Deduplicated = s.deduped.Load()
	st.SlowConsumerCloses = s.slowCloses.Load()
	st.ResumesReplayed = s.resumed.Load()
	st.ResumesReset = s.resets.Load()
	return st
}
