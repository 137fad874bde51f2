package fanout

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A Hub's sessions share its pacers, at most one per CPU, instead of each
// running its own goroutine and timers (Session.pace). A session is given
// one pacer when it is created and keeps it, so its rounds are still
// written by one goroutine at a time, in order, and the write path's rules
// (outbox) hold as they are: a shared pacer is, for each of its sessions,
// exactly that session's pacer.
//
// A shared pacer does what Session.pace does, for all of its sessions:
// a round as soon as a session's batch window allows after an event was
// committed, presence gathered for presenceInterval, and a sweep of idle
// writers every sweep interval while the session has connections. One timer
// serves the earliest of these deadlines.

// pacer is one shared pacer.
type pacer struct {
	born time.Time
	wake chan struct{} // cap 1: something was queued
	stop chan struct{}
	done chan struct{}

	mu        sync.Mutex
	due       []*Session            // events committed since the pacer last looked
	presence  []*Session            // presence noted
	active    map[*Session]struct{} // sessions with connections: swept
	activated bool                  // a session was added to active since the last sweep
	sweepAt   int64                 // when the next session is due a sweep; 0: none; read under mu

	// Owned by the pacer's goroutine.
	later     []*Session // sessions waiting for their batch window
	laterPres []*Session // sessions gathering presence
}

// pacerState is what a shared pacer keeps per session. queued is set by
// whoever queues the session; the rest belongs to the pacer's goroutine.
type pacerState struct {
	queued     atomic.Bool // in pacer.due
	presQueued bool        // in pacer.presence or laterPres; guarded by pacer.mu
	last       int64       // pacer clock of the last round
	roundAt    int64       // with a round waiting: when it is due
	presenceAt int64       // with presence gathering: when it is sent
	nextSweep  int64       // when the session's writers are next swept
}

// defaultPacers is how many pacers a Hub runs: one per CPU.
func defaultPacers() int { return max(runtime.GOMAXPROCS(0), 1) }

func newPacer() *pacer {
	p := &pacer{
		born:   time.Now(),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		active: make(map[*Session]struct{}),
	}
	go p.run()
	return p
}

// now is the pacer's clock, in nanoseconds since it started.
func (p *pacer) now() int64 { return int64(time.Since(p.born)) + 1 }

func (p *pacer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// notify queues s for a round: an event was committed.
func (p *pacer) notify(s *Session) {
	if s.ps.queued.Swap(true) {
		return
	}
	p.mu.Lock()
	p.due = append(p.due, s)
	p.mu.Unlock()
	p.poke()
}

// notifyPresence queues s for a presence flush. s.mu is held.
func (p *pacer) notifyPresence(s *Session) {
	p.mu.Lock()
	queued := s.ps.presQueued
	if !queued {
		s.ps.presQueued = true
		p.presence = append(p.presence, s)
	}
	p.mu.Unlock()
	if !queued {
		p.poke()
	}
}

// activate and deactivate add and remove s from the swept sessions, when
// its first connection registers and its last leaves. s.mu is held.
func (p *pacer) activate(s *Session) {
	p.mu.Lock()
	p.active[s] = struct{}{}
	p.activated = true
	p.mu.Unlock()
	p.poke()
}

func (p *pacer) deactivate(s *Session) {
	p.mu.Lock()
	delete(p.active, s)
	p.mu.Unlock()
}

// close stops the pacer and waits for it.
func (p *pacer) close() {
	close(p.stop)
	<-p.done
}

func (p *pacer) run() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var swept []*Session
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
		case <-timer.C:
		}
		p.mu.Lock()
		due, pres := p.due, p.presence
		p.due, p.presence = nil, nil
		p.mu.Unlock()

		now := p.now()
		for _, s := range due {
			s.ps.queued.Store(false) // a commit from now on queues it again
			if s.ps.roundAt != 0 {
				continue // already waiting for its window
			}
			s.ps.roundAt = max(s.ps.last+int64(s.cfg.batchWindow), now)
			p.later = append(p.later, s)
		}
		for _, s := range pres {
			s.ps.presenceAt = now + int64(presenceInterval)
			p.laterPres = append(p.laterPres, s)
		}

		next := int64(0) // the earliest deadline still ahead; 0: none
		soon := func(at int64) {
			if next == 0 || at < next {
				next = at
			}
		}
		kept := p.later[:0]
		for _, s := range p.later {
			if now = p.now(); s.ps.roundAt > now {
				kept = append(kept, s)
				soon(s.ps.roundAt)
				continue
			}
			s.ps.roundAt, s.ps.last = 0, now
			s.writeRound()
		}
		clear(p.later[len(kept):])
		p.later = kept

		keptPres := p.laterPres[:0]
		for _, s := range p.laterPres {
			if s.ps.presenceAt > p.now() {
				keptPres = append(keptPres, s)
				soon(s.ps.presenceAt)
				continue
			}
			p.mu.Lock()
			s.ps.presQueued = false // presence noted from now on queues it again
			p.mu.Unlock()
			s.flushPresence()
		}
		clear(p.laterPres[len(keptPres):])
		p.laterPres = keptPres

		// Sweeps: the active sessions are looked over only when one is due
		// or one was added.
		p.mu.Lock()
		if now = p.now(); p.activated || now >= p.sweepAt {
			p.activated = false
			swept = swept[:0]
			for s := range p.active {
				swept = append(swept, s)
			}
		}
		p.mu.Unlock()
		if len(swept) > 0 {
			p.sweepAt = 0
			for _, s := range swept {
				if s.ps.nextSweep == 0 {
					s.ps.nextSweep = now + int64(s.sweepInterval())
				} else if s.ps.nextSweep <= now {
					s.sweep()
					s.ps.nextSweep = now + int64(s.sweepInterval())
				}
				if p.sweepAt == 0 || s.ps.nextSweep < p.sweepAt {
					p.sweepAt = s.ps.nextSweep
				}
			}
			clear(swept)
			swept = swept[:0]
		}
		if p.sweepAt != 0 {
			soon(p.sweepAt)
		}

		if next != 0 {
			timer.Reset(time.Duration(max(next-p.now(), 0)))
		}
	}
}
