package fanout

import "context"

// Health is a session's state as a readiness check reports it (see
// package health for the HTTP handlers).
type Health struct {
	// Ready is true while the session accepts connections: it is not shut
	// down and, on a shared log, it has read the log's epoch and head.
	Ready bool `json:"ready"`
	// ShuttingDown is true once Shutdown or Close has begun.
	ShuttingDown bool `json:"shutting_down"`
	Sessions     int  `json:"sessions"` // 1 for a session; a hub reports how many it serves
	Connections  int  `json:"connections"`
	// Log is the shared log's state, nil without WithLog.
	Log *LogHealth `json:"log,omitempty"`
}

// LogHealth is the state of a session's shared log, probed by asking it
// for its head.
type LogHealth struct {
	Reachable bool   `json:"reachable"`       // the log answered within the check's context
	Error     string `json:"error,omitempty"` // why it did not
	Head      uint64 `json:"head"`            // the log's head, when reachable
	Window    uint64 `json:"window"`          // the head of the session's own window
	// Lag is how many events the log has committed that this session has
	// not yet received from its tail: Head - Window, when reachable.
	Lag uint64 `json:"lag"`
}

// Health reports the session's state. On a shared log it asks the log for
// its head, within ctx: give it a short deadline.
func (s *Session) Health(ctx context.Context) Health {
	s.mu.RLock()
	h := Health{
		Ready:        !s.closed && (s.shared == nil || s.ready),
		ShuttingDown: s.closed,
		Sessions:     1,
		Connections:  len(s.conns),
	}
	epoch, window := s.epoch, s.window.head
	s.mu.RUnlock()
	if s.shared == nil {
		return h
	}
	lh := &LogHealth{Window: window}
	h.Log = lh
	logEpoch, head, err := s.shared.Head(ctx)
	switch {
	case err != nil:
		lh.Error = err.Error()
	default:
		lh.Reachable, lh.Head, lh.Lag = true, head, head
		if logEpoch == epoch { // otherwise the window is not on the log's epoch yet
			lh.Lag = head - min(head, window)
		}
	}
	return h
}
