package fanout

import (
	"runtime"
	"sync"
	"time"
)

// The pacer is the one goroutine per session that sends new events to
// connections, and the one that watches over their writers. It runs while
// the session has connections.
//
// Sending in rounds is what makes fan-out cheap: a write costs about the
// same whether it carries one event or twenty, so the pacer lets events
// that follow each other within the batch window gather, then goes once
// over every connection that is behind and writes it everything pending in
// one frame (direct.go). Under load rounds grow longer by themselves, and
// each write carries more.
//
// Its timer also does per-connection housekeeping without a timer per
// connection: it cuts writes that have run past the write timeout, and it
// retires writers that have been idle for the linger time, so an idle
// connection holds no writer goroutine.

// startPacerLocked starts the pacer when the first connection registers.
// s.mu is held.
func (s *Session) startPacerLocked() {
	if s.pacerStop != nil {
		return
	}
	stop := make(chan struct{})
	s.pacerStop = stop
	s.wg.Add(1) // Shutdown and Close wait for the pacer too
	go s.pace(stop)
}

// stopPacerLocked stops the pacer once the last connection has left.
// s.mu is held.
func (s *Session) stopPacerLocked() {
	if s.pacerStop != nil {
		close(s.pacerStop)
		s.pacerStop = nil
	}
}

// poke tells the pacer that an event was committed.
func (s *Session) poke() {
	select {
	case s.due <- struct{}{}:
	default:
	}
}

func (s *Session) pace(stop <-chan struct{}) {
	defer s.wg.Done()
	every := s.sweepInterval()
	sweep := time.NewTimer(every)
	defer sweep.Stop()
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	defer gather.Stop()
	window := int64(s.cfg.batchWindow)
	last := -window // Session.now of the last round
	for {
		select {
		case <-stop:
			return
		case <-sweep.C:
			s.sweep()
			sweep.Reset(every)
		case <-s.due:
			if wait := last + window - s.now(); wait > 0 {
				gather.Reset(time.Duration(wait))
				select {
				case <-gather.C:
				case <-stop:
					s.poke() // the token is for the next pacer
					return
				}
			}
			select {
			case <-stop: // a stopped pacer writes no more rounds
				s.poke()
				return
			default:
			}
			last = s.now()
			s.writeRound()
		}
	}
}

// writeRound sends every connection that is behind the head what it is
// due (see direct.go). With more than one CPU the list is split between
// goroutines, one per CPU, each going down its part in order.
func (s *Session) writeRound() {
	list := *s.connList.Load()
	parts := min(runtime.GOMAXPROCS(0), len(list)/s.cfg.minPart)
	if parts <= 1 {
		writeDue(s, list, s.head.Load())
		return
	}
	head := s.head.Load()
	var wg sync.WaitGroup
	size := (len(list) + parts - 1) / parts
	for i := 0; i < len(list); i += size {
		part := list[i:min(i+size, len(list))]
		wg.Go(func() { writeDue(s, part, head) })
	}
	wg.Wait()
}

func writeDue(s *Session, list []*Conn, head uint64) {
	r := round{s: s}
	for _, c := range list {
		if c.sent.Load() < head {
			r.send(c)
		}
	}
	r.end()
}

// sweepInterval is how often the pacer looks over the writers: often
// enough that a stuck write is cut within a quarter of the write timeout
// after it, and an idle writer retires within half the linger time after it.
func (s *Session) sweepInterval() time.Duration {
	return max(min(s.cfg.writeTimeout/4, s.cfg.linger/2), time.Millisecond)
}

// sweep cuts writes that have run past the write timeout (the writer then
// drops the connection, recorded as a slow consumer) and retires writers
// idle for the linger time.
func (s *Session) sweep() {
	now := s.now()
	timeout, linger := int64(s.cfg.writeTimeout), int64(s.cfg.linger)
	for _, c := range *s.connList.Load() {
		if !c.active.Load() {
			continue
		}
		if started := c.writeStart.Load(); started != 0 {
			if now-started >= timeout && c.netConn != nil {
				// A deadline in the past fails the write in progress. If
				// that write ended meanwhile, the deadline is lifted again,
				// so that it does not fail the next one.
				_ = c.netConn.SetWriteDeadline(time.Unix(1, 0))
				if c.writeStart.Load() != started {
					_ = c.netConn.SetWriteDeadline(time.Time{})
				}
			}
			continue
		}
		if now-c.lastWrite.Load() >= linger {
			c.retire.Store(true)
			c.signal()
		}
	}
}
