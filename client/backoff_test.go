package client

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBackoffDelay(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	tests := []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{0, 0, 50 * time.Millisecond},
		{0, 0.5, 75 * time.Millisecond},
		{1, 0, 100 * time.Millisecond},
		{2, 0.999999, 400 * time.Millisecond},
		{3, 0, 400 * time.Millisecond},
		{4, 0, 500 * time.Millisecond}, // capped at max
		{1000, 0, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		got := b.delay(tt.attempt, tt.r)
		assert.InDelta(t, float64(tt.want), float64(got), float64(time.Millisecond), "attempt %d r %v", tt.attempt, tt.r)
	}
	for attempt := range 40 {
		d := b.delay(attempt, 0.999)
		assert.LessOrEqual(t, d, time.Second)
		assert.Greater(t, d, time.Duration(0))
	}
}
