package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSoakShort is the soak run CI can afford: a few hundred clients for
// 15 s, still with hundreds of faults, every check of the full run, and
// the restart into a new epoch.
func TestSoakShort(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Clients = 200
	cfg.Duration = 15 * time.Second
	cfg.Rate = 40
	cfg.KillEvery = 15 * time.Millisecond
	cfg.HandlerStalls = 50 * time.Millisecond
	var log strings.Builder
	res, err := Run(t.Context(), cfg, &log)
	require.NoError(t, err)
	var out strings.Builder
	res.WriteText(&out)
	t.Log("\n" + log.String() + out.String())

	require.Empty(t, res.Failures)
	assert.True(t, res.OK())
	assert.Equal(t, cfg.Clients, res.ClientsAtHead)
	assert.Zero(t, res.Loss+res.Dups+res.Reorder+res.Corrupt)
	assert.Greater(t, res.Head, uint64(0))
	assert.Equal(t, res.Head, res.ServerPublished+res.ClientPublished)
	assert.Greater(t, res.ClientPublished, uint64(0), "clients published too")
	f := res.Faults
	assert.Greater(t, f.ServerTCPKills+f.ClientTCPKills+f.HostGoingAway+f.HostSlowClose+f.AcksLost, uint64(200), "hundreds of connections killed")
	assert.Greater(t, res.ResumesReplayed, uint64(100), "killed clients came back and resumed")
	assert.Equal(t, cfg.Clients, res.Restart.ClientsReset)
	assert.Zero(t, res.Restart.SilentGaps)
}
