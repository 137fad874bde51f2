package fanout

import "context"

// Shutdown stops the session gracefully, like http.Server.Shutdown: new
// connections get 503 and Publish returns ErrClosed; every connection is
// sent what is pending for it and then closed with 1001 (going away), so
// clients reconnect, to another node if there is one, and resume. It
// returns once every connection's goroutines have ended. If ctx ends first,
// the remaining connections are closed at once and ctx's error is returned.
// The session may not be reused; calling Shutdown again, or concurrently,
// is safe and waits the same way.
//
// http.Server.Shutdown does not close WebSockets (they are hijacked
// connections): call Shutdown once http.Server.Shutdown has returned, and
// let it return before the process exits (examples/mount shows how). A
// hook registered with http.Server.RegisterOnShutdown runs in a goroutine
// that http.Server.Shutdown does not wait for: with it alone, a process
// that exits when http.Server.Shutdown returns drops clients without their
// 1001.
func (s *Session) Shutdown(ctx context.Context) error {
	for _, c := range s.stop() {
		c.requestCloseAfter(CloseGoingAway, "server shutting down", s.head.Load())
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.dropAll()
		<-done
		return ctx.Err()
	}
}

// Close stops the session at once: every connection is dropped without a
// close handshake. It returns once their goroutines have ended. It is safe
// to call more than once, and after Shutdown.
func (s *Session) Close() error {
	s.stop()
	s.dropAll()
	s.wg.Wait()
	return nil
}

// stop marks the session closed and returns the connections open then.
func (s *Session) stop() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.noteStopped()
	}
	s.closed = true
	s.tail.wake() // followers end once they have what was committed
	s.growLocked()
	if s.stopFollow != nil {
		s.stopFollow()
	}
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func (s *Session) dropAll() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := range s.conns {
		c.drop(CloseGoingAway, "server closed")
	}
}
