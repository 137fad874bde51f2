package fanout

// WithInboundRate sets each connection's inbound budget (every client
// message counts), so that tests can reach its limit exactly.
func WithInboundRate(perSecond float64, burst int) Option {
	return func(c *config) { c.inboundRate, c.inboundBurst = perSecond, burst }
}
