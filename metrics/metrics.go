// Package metrics exposes what fanout sessions do as Prometheus metrics.
// It is a module of its own, so that the library itself does not depend on
// the Prometheus client.
//
//	reg := prometheus.NewRegistry()
//	m, err := metrics.New(reg)
//	s, err := fanout.NewSession("doc-42", fanout.WithObserver(m))
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// One Metrics serves any number of sessions (give each WithObserver(m)) and
// sums them up: by default no metric has a per-session label, since a
// process may serve many sessions, and each label value is a time series
// Prometheus keeps. To see some sessions apart, WithSessionLabel maps each
// session's name to a value from a small set of your choosing.
//
// The metrics, all prefixed fanout_:
//
//	sessions                           gauge    sessions started and not yet shut down
//	connections                        gauge    open connections
//	connections_opened_total           counter  connections registered
//	connections_closed_total{code}     counter  connections closed, by close code (a code outside the protocol's: "other")
//	events_published_total{origin}     counter  events appended here, origin "server" (Publish) or "client"
//	publish_refusals_total{reason}     counter  client publishes refused: invalid, forbidden, rate_limited, too_large, unavailable
//	publishes_deduplicated_total       counter  client retries answered with their original seq
//	resumes_total{result}              counter  resumes, result "replayed" or "reset" (resumed:false)
//	write_rounds_total                 counter  the pacer's write rounds
//	frames_written_total               counter  frames written to connections
//	deliveries_total                   counter  events written to connections (one per event and connection)
//	written_bytes_total                counter  bytes of those frames
//	publish_to_write_seconds           histogram  per frame with events: from its oldest event's commit to the end of the write (replays to resuming clients excluded)
//	slow_consumer_closes_total         counter  connections closed as slow consumers (4001)
//	heartbeat_timeouts_total           counter  connections closed for not answering heartbeats (4002)
//	hub_sessions_created_total         counter  sessions a hub created on demand
//	hub_sessions_evicted_total         counter  idle sessions a hub evicted
//	log_errors_total{op}               counter  errors of a shared log (op: "append", "follow", or the backend's own)
//	log_gaps_repaired_total            counter  gaps in a shared log's tail, filled by reading
//	log_probe_restarts_total           counter  restarts of a shared log backend's probe
//
// The last two, and the backend's own log errors, come from the log
// backend itself: give it the same Metrics (the Observer field of
// redislog.Options or natslog.Options).
//
// With WithSessionLabel, the metrics about connections, publishes and
// writes (from connections to publish_to_write_seconds, and the two
// kinds of closes after it) carry a "session" label too.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fanout-go/fanout"
)

// Metrics is a fanout.Observer that keeps Prometheus metrics. Its methods
// are safe for concurrent use.
type Metrics struct {
	label func(session string) string // WithSessionLabel; nil: no session label

	sessions                prometheus.Gauge
	connections             *prometheus.GaugeVec
	opened, rounds, frames  *prometheus.CounterVec
	deliveries, bytes       *prometheus.CounterVec
	slow, heartbeatTimeouts *prometheus.CounterVec
	deduplicated            *prometheus.CounterVec
	closed, published       *prometheus.CounterVec
	refused, resumes        *prometheus.CounterVec
	latency                 *prometheus.HistogramVec
	hubCreated, hubEvicted  prometheus.Counter
	logErrors               *prometheus.CounterVec
	logGaps, logProbes      prometheus.Counter

	all  *series // without a session label
	mu   sync.Mutex
	sets sync.Map // with one: label value -> *series
}

// series are the metrics of one session label value, looked up once.
type series struct {
	connections                               prometheus.Gauge
	opened, rounds, frames, deliveries, bytes prometheus.Counter
	slow, heartbeatTimeouts, deduplicated     prometheus.Counter
	server, client                            prometheus.Counter
	replayed, reset                           prometheus.Counter
	refused                                   map[string]prometheus.Counter
	latency                                   prometheus.Observer
	closed                                    *prometheus.CounterVec // curried with the session label
}

var _ fanout.Observer = (*Metrics)(nil)

// An Option configures Metrics.
type Option func(*Metrics)

// WithSessionLabel adds a "session" label to the per-session metrics,
// whose value for a session is fn(its name). fn must map every name into
// a small, fixed set: say the names of a few sessions worth watching, and
// "" for all others, which then count together. Default: no session label.
func WithSessionLabel(fn func(session string) string) Option {
	return func(m *Metrics) { m.label = fn }
}

// LatencyBuckets are the upper bounds, in seconds, of
// fanout_publish_to_write_seconds: from half a millisecond, well under the
// default 5 ms batch window, to 10 s, the default write timeout.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// refusalCodes are the codes of client publish refusals (PROTOCOL.md).
var refusalCodes = []string{"invalid", "forbidden", "rate_limited", "too_large", "unavailable"}

// New returns Metrics registered with reg.
func New(reg prometheus.Registerer, opts ...Option) (*Metrics, error) {
	m := &Metrics{}
	for _, o := range opts {
		o(m)
	}
	var per []string // the per-session metrics' own labels come after these
	if m.label != nil {
		per = []string{"session"}
	}
	with := func(names ...string) []string { return append(append([]string(nil), per...), names...) }
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "fanout", Name: name, Help: help}, labels)
	}
	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "fanout", Name: "sessions", Help: "Sessions started and not yet shut down."})
	m.connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "fanout", Name: "connections", Help: "Open connections."}, with())
	m.opened = counter("connections_opened_total", "Connections registered.", with())
	m.closed = counter("connections_closed_total", "Connections closed, by WebSocket close code (other: a code outside the protocol's).", with("code"))
	m.published = counter("events_published_total", "Events appended through this process, by origin (server: Publish; client: a client's publish).", with("origin"))
	m.refused = counter("publish_refusals_total", "Client publishes refused and not appended, by reason (the error code sent).", with("reason"))
	m.deduplicated = counter("publishes_deduplicated_total", "Client publishes answered with the seq of an earlier one with the same id.", with())
	m.resumes = counter("resumes_total", "Resumes, by result: replayed, or reset (resumed:false).", with("result"))
	m.rounds = counter("write_rounds_total", "Write rounds of the sessions' pacers.", with())
	m.frames = counter("frames_written_total", "Frames written to connections.", with())
	m.deliveries = counter("deliveries_total", "Events written to connections, one per event and connection.", with())
	m.bytes = counter("written_bytes_total", "Bytes of the frames written to connections.", with())
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "fanout", Name: "publish_to_write_seconds",
		Help:    "For each frame written with events (but replays to resuming clients): time from the commit of its oldest event to the end of the write.",
		Buckets: LatencyBuckets,
	}, with())
	m.slow = counter("slow_consumer_closes_total", "Connections closed as slow consumers (4001).", with())
	m.heartbeatTimeouts = counter("heartbeat_timeouts_total", "Connections closed for not answering heartbeats in time (4002).", with())
	m.hubCreated = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fanout", Name: "hub_sessions_created_total", Help: "Sessions a hub created on demand."})
	m.hubEvicted = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fanout", Name: "hub_sessions_evicted_total", Help: "Idle sessions a hub evicted."})
	m.logErrors = counter("log_errors_total", "Errors of shared logs, by operation.", []string{"op"})
	m.logGaps = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fanout", Name: "log_gaps_repaired_total", Help: "Gaps found in a shared log's tail and filled by reading."})
	m.logProbes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fanout", Name: "log_probe_restarts_total", Help: "Restarts of a shared log backend's probe."})

	for _, c := range []prometheus.Collector{
		m.sessions, m.connections, m.opened, m.closed, m.published, m.refused, m.deduplicated,
		m.resumes, m.rounds, m.frames, m.deliveries, m.bytes, m.latency, m.slow,
		m.heartbeatTimeouts, m.hubCreated, m.hubEvicted, m.logErrors, m.logGaps, m.logProbes,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, op := range []string{"append", "follow"} {
		m.logErrors.WithLabelValues(op) // shown at 0 from the start, so rate() sees the first error
	}
	if m.label == nil {
		m.all = m.newSeries()
	}
	return m, nil
}

// newSeries looks up the series of one label value (none without
// WithSessionLabel), creating them at 0.
func (m *Metrics) newSeries(value ...string) *series {
	s := &series{
		connections:       m.connections.WithLabelValues(value...),
		opened:            m.opened.WithLabelValues(value...),
		rounds:            m.rounds.WithLabelValues(value...),
		frames:            m.frames.WithLabelValues(value...),
		deliveries:        m.deliveries.WithLabelValues(value...),
		bytes:             m.bytes.WithLabelValues(value...),
		slow:              m.slow.WithLabelValues(value...),
		heartbeatTimeouts: m.heartbeatTimeouts.WithLabelValues(value...),
		deduplicated:      m.deduplicated.WithLabelValues(value...),
		server:            m.published.WithLabelValues(append(value, "server")...),
		client:            m.published.WithLabelValues(append(value, "client")...),
		replayed:          m.resumes.WithLabelValues(append(value, "replayed")...),
		reset:             m.resumes.WithLabelValues(append(value, "reset")...),
		latency:           m.latency.WithLabelValues(value...),
		refused:           make(map[string]prometheus.Counter, len(refusalCodes)),
		closed:            m.closed,
	}
	for _, code := range refusalCodes {
		s.refused[code] = m.refused.WithLabelValues(append(value, code)...)
	}
	if len(value) > 0 {
		s.closed = m.closed.MustCurryWith(prometheus.Labels{"session": value[0]})
	}
	return s
}

// of returns the series a session counts in.
func (m *Metrics) of(session string) *series {
	if m.all != nil {
		return m.all
	}
	v := m.label(session)
	if s, ok := m.sets.Load(v); ok {
		return s.(*series)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sets.Load(v); ok {
		return s.(*series)
	}
	s := m.newSeries(v)
	m.sets.Store(v, s)
	return s
}

// closeCode is the label of a close code: the protocol's codes by number,
// others (a client may close with any code) as "other", so that clients
// cannot make series without bound.
func closeCode(c fanout.CloseCode) string {
	switch c {
	case fanout.CloseNormal, fanout.CloseGoingAway, fanout.CloseAbnormal, fanout.ClosePolicy,
		fanout.CloseTooBig, fanout.CloseInternalError, fanout.CloseProtocolError,
		fanout.CloseSlowConsumer, fanout.CloseHeartbeatTimeout:
		return strconv.Itoa(int(c))
	}
	return "other"
}

// SessionStarted implements fanout.Observer.
func (m *Metrics) SessionStarted(string) { m.sessions.Inc() }

// SessionStopped implements fanout.Observer.
func (m *Metrics) SessionStopped(string) { m.sessions.Dec() }

// ConnOpened implements fanout.Observer.
func (m *Metrics) ConnOpened(session string) {
	s := m.of(session)
	s.connections.Inc()
	s.opened.Inc()
}

// ConnClosed implements fanout.Observer.
func (m *Metrics) ConnClosed(session string, code fanout.CloseCode) {
	s := m.of(session)
	s.connections.Dec()
	s.closed.WithLabelValues(closeCode(code)).Inc()
}

// Published implements fanout.Observer.
func (m *Metrics) Published(session string, origin fanout.Origin) {
	if origin == fanout.OriginClient {
		m.of(session).client.Inc()
	} else {
		m.of(session).server.Inc()
	}
}

// Refused implements fanout.Observer.
func (m *Metrics) Refused(session, code string) {
	if c, ok := m.of(session).refused[code]; ok {
		c.Inc()
	}
}

// Deduplicated implements fanout.Observer.
func (m *Metrics) Deduplicated(session string) { m.of(session).deduplicated.Inc() }

// Resumed implements fanout.Observer.
func (m *Metrics) Resumed(session string, replayed bool) {
	if replayed {
		m.of(session).replayed.Inc()
	} else {
		m.of(session).reset.Inc()
	}
}

// WriteRound implements fanout.Observer.
func (m *Metrics) WriteRound(session string) { m.of(session).rounds.Inc() }

// Wrote implements fanout.Observer.
func (m *Metrics) Wrote(session string, events, bytes int, latency time.Duration) {
	s := m.of(session)
	s.frames.Inc()
	s.bytes.Add(float64(bytes))
	if events > 0 {
		s.deliveries.Add(float64(events))
	}
	if latency >= 0 {
		s.latency.Observe(latency.Seconds())
	}
}

// SlowConsumer implements fanout.Observer.
func (m *Metrics) SlowConsumer(session string) { m.of(session).slow.Inc() }

// HeartbeatTimeout implements fanout.Observer.
func (m *Metrics) HeartbeatTimeout(session string) { m.of(session).heartbeatTimeouts.Inc() }

// HubSessionCreated implements fanout.Observer.
func (m *Metrics) HubSessionCreated(string) { m.hubCreated.Inc() }

// HubSessionEvicted implements fanout.Observer.
func (m *Metrics) HubSessionEvicted(string) { m.hubEvicted.Inc() }

// LogError implements fanout.Observer.
func (m *Metrics) LogError(_, op string, _ error) { m.logErrors.WithLabelValues(op).Inc() }

// LogGapRepaired implements fanout.Observer.
func (m *Metrics) LogGapRepaired(string) { m.logGaps.Inc() }

// LogProbeRestarted implements fanout.Observer.
func (m *Metrics) LogProbeRestarted(string) { m.logProbes.Inc() }
