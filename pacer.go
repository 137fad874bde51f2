package fanout

import "time"

// The pacer is the one goroutine per session that sends new events to
// connections, in rounds (Session.writeRound), and retires their idle writers. It
// runs while the session has connections. A Hub's sessions share the hub's
// pacers instead (see pacer). Under load rounds grow longer by
// themselves, and each write carries more.

// startPacerLocked starts the pacer when the first connection registers.
// s.mu is held.
func (s *Session) startPacerLocked() {
	if s.pacer != nil { // a Hub's shared pacer
		s.pacer.activate(s)
		return
	}
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
	if s.pacer != nil {
		s.pacer.deactivate(s)
		return
	}
	if s.pacerStop != nil {
		close(s.pacerStop)
		s.pacerStop = nil
	}
}

// wakePacer tells the pacer, and the followers, that an event was
// committed.
func (s *Session) wakePacer() {
	s.tail.wake()
	if s.pacer != nil {
		s.pacer.notify(s)
		return
	}
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
	presence := time.NewTimer(time.Hour)
	presence.Stop()
	defer presence.Stop()
	window := int64(s.cfg.batchWindow)
	last := -window // Session.now of the last round
	for {
		select {
		case <-stop:
			return
		case <-s.presenceDue:
			presence.Reset(presenceInterval)
		case <-presence.C:
			s.flushPresence()
		case <-sweep.C:
			s.sweep()
			sweep.Reset(every)
		case <-s.due:
			if wait := last + window - s.now(); wait > 0 {
				gather.Reset(time.Duration(wait))
				select {
				case <-gather.C:
				case <-stop:
					s.wakePacer() // the token is for the next pacer
					return
				}
			}
			select {
			case <-stop: // a stopped pacer writes no more rounds
				s.wakePacer()
				return
			default:
			}
			last = s.now()
			s.writeRound()
		}
	}
}

// sweepInterval is how often the pacer looks over the writers: often
// enough that an idle writer retires within half the linger time after
// it.
func (s *Session) sweepInterval() time.Duration {
	return max(s.cfg.linger/2, time.Millisecond)
}

// sweep retires writers idle for the linger time, so that an idle
// connection holds no writer goroutine. It touches no socket: a write's
// timeout is its own writer's business.
func (s *Session) sweep() {
	now, linger := s.now(), int64(s.cfg.linger)
	for _, c := range *s.connList.Load() {
		if c.flags.has(flagActive) && now-c.lastWrite.Load() >= linger {
			c.flags.set(flagRetire)
			c.wakeWriter()
		}
	}
}
