package logtest

import (
	"testing"

	"github.com/fanout-go/fanout"
)

// positions checks a log that keeps identities' positions
// (fanout.PositionStore): every node sees what any node saved, a restarted
// node too; within an epoch the highest seq is kept; a position of another
// epoch replaces it. A log that does not implement it is reported as
// skipped.
func positions(t *testing.T, cfg Config) {
	b := cfg.New(t, 100, 100)
	n := name(t)
	a, ok := b.Open(t, n).(fanout.PositionStore)
	if !ok {
		t.Skip("the log does not implement fanout.PositionStore")
	}
	ctx := ctxFor(t)
	if _, _, found, err := a.LoadPosition(ctx, "ann"); err != nil || found {
		t.Fatalf("an identity never saved: found %v, err %v", found, err)
	}
	for _, s := range []struct {
		epoch string
		seq   uint64
	}{{"e1", 5}, {"e1", 3}} { // a lower seq of the same epoch keeps the higher
		if err := a.SavePosition(ctx, "ann", s.epoch, s.seq); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		user  string
		epoch string
		seq   uint64
		found bool
	}{
		{"highest of the epoch, on another node", "ann", "e1", 5, true},
		{"another identity", "bob", "", 0, false},
	} {
		other := b.Open(t, n).(fanout.PositionStore) // another node, or this one restarted
		epoch, seq, found, err := other.LoadPosition(ctx, tc.user)
		if err != nil || found != tc.found || epoch != tc.epoch || seq != tc.seq {
			t.Fatalf("%s: got %q %d %v %v, want %q %d %v", tc.name, epoch, seq, found, err, tc.epoch, tc.seq, tc.found)
		}
	}
	if err := a.SavePosition(ctx, "ann", "e2", 1); err != nil {
		t.Fatal(err)
	}
	if epoch, seq, _, err := b.Open(t, n).(fanout.PositionStore).LoadPosition(ctx, "ann"); err != nil || epoch != "e2" || seq != 1 {
		t.Fatalf("a position of a new epoch: got %q %d %v, want e2 1", epoch, seq, err)
	}
}
