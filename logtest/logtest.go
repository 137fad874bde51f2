// Package logtest is the conformance suite for implementations of
// fanout.Log. A backend's tests call Run with a way to make fresh backends;
// the suite checks what a session relies on: one gap-free order with
// concurrent appenders on several nodes, dedup of client publish ids,
// trimmed positions reported as gone, the epoch kept across a node restart
// and changed when the backend loses its data, cancellation, no goroutine
// left behind, and, for a log that implements fanout.PositionStore,
// identities' positions shared by every node.
package logtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fanout-go/fanout"
)

// Backend is one store of logs, as a node sees it: a Redis database, a
// JetStream stream, a memory log.
type Backend interface {
	// Open returns a handle on the log of the session named name, as one
	// node would open it. Handles on one backend share their logs; a
	// fresh handle is a restarted node.
	Open(t testing.TB, name string) fanout.Log
}

// Config says how to make backends for the suite.
type Config struct {
	// New returns an empty backend whose logs retain window events and
	// remember at least dedup client publish ids. Whatever it holds is
	// released by t.Cleanup.
	New func(t *testing.T, window, dedup int) Backend
	// Lose makes b lose all its data, as a restart without persistence
	// or FLUSHALL would; nil for a backend that cannot (the check is
	// then reported as skipped).
	Lose func(t *testing.T, b Backend)
	// DedupBeyondWindow is what the backend does with a retry of an id
	// older than its dedup window: true if it still answers the original
	// seq, false if it appends the publish again. The suite checks it.
	DedupBeyondWindow bool
}

// Run runs the suite.
func Run(t *testing.T, cfg Config) {
	opts := goleak.IgnoreCurrent()
	tests := []struct {
		name string
		fn   func(*testing.T, Config)
	}{
		{"ConcurrentAppendersOneOrder", concurrentAppenders},
		{"Dedup", dedupIDs},
		{"TrimmedPositionGone", trimmedGone},
		{"FollowInOrder", followInOrder},
		{"EpochAcrossRestartAndLoss", epochs},
		{"Cancellation", cancellation},
		{"Positions", positions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, cfg) })
	}
	goleak.VerifyNone(t, opts)
}

var nameSeq atomic.Uint64

// name is a session name no other run uses.
func name(t *testing.T) string {
	return fmt.Sprintf("logtest-%d-%d", time.Now().UnixNano(), nameSeq.Add(1))
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func appendOK(t *testing.T, l fanout.Log, from, id string, data []byte) fanout.Appended {
	t.Helper()
	a, err := l.Append(ctxFor(t), from, id, data)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func readOK(t *testing.T, l fanout.Log, epoch string, after uint64, limit int) []fanout.Record {
	t.Helper()
	recs, err := l.Read(ctxFor(t), epoch, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// readAll reads every record after `after`.
func readAll(t *testing.T, l fanout.Log, epoch string, after uint64) []fanout.Record {
	t.Helper()
	var out []fanout.Record
	for {
		recs := readOK(t, l, epoch, after, 100)
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
}

// Appenders on several nodes at once get one gap-free sequence, each
// event exactly once.
func concurrentAppenders(t *testing.T, cfg Config) {
	const nodes, each = 4, 50
	b := cfg.New(t, 1000, 1000)
	n := name(t)
	var wg sync.WaitGroup
	errs := make(chan error, nodes*each)
	for node := range nodes {
		l := b.Open(t, n)
		wg.Go(func() {
			for i := range each {
				data := fmt.Appendf(nil, `{"node":%d,"i":%d}`, node, i)
				id := ""
				if i%2 == 0 {
					id = fmt.Sprintf("n%d-%d", node, i)
				}
				if _, err := l.Append(ctxFor(t), "user", id, data); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l := b.Open(t, n)
	epoch, head := must2(t, l)
	if head != nodes*each {
		t.Fatalf("head %d after %d appends", head, nodes*each)
	}
	seen := map[string]bool{}
	for i, r := range readAll(t, l, epoch, 0) {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i+1, r.Seq)
		}
		if seen[string(r.Data)] {
			t.Fatalf("%s appended twice", r.Data)
		}
		seen[string(r.Data)] = true
	}
	if len(seen) != nodes*each {
		t.Fatalf("read %d records, want %d", len(seen), nodes*each)
	}
}

func must2(t *testing.T, l fanout.Log) (string, uint64) {
	t.Helper()
	epoch, head, err := l.Head(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	return epoch, head
}

// A retried client publish gets its original seq back and is not appended
// twice; ids are per identity; beyond the dedup window the backend does
// what its Config says.
func dedupIDs(t *testing.T, cfg Config) {
	const window = 10
	b := cfg.New(t, 1000, window)
	n := name(t)
	a, c := b.Open(t, n), b.Open(t, n)
	first := appendOK(t, a, "alice", "p1", []byte(`{"v":1}`))
	if first.Duplicate {
		t.Fatal("a first publish reported as a duplicate")
	}
	for _, tc := range []struct {
		name string
		l    fanout.Log
		from string
		dup  bool
	}{
		{"retry on the same node", a, "alice", true},
		{"retry on another node", c, "alice", true},
		{"same id, another identity", c, "bob", false},
	} {
		got := appendOK(t, tc.l, tc.from, "p1", []byte(`{"v":2}`))
		if got.Duplicate != tc.dup || tc.dup && got.Seq != first.Seq {
			t.Fatalf("%s: got %+v, first %+v", tc.name, got, first)
		}
	}
	for i := range 3 * window {
		appendOK(t, a, "carol", fmt.Sprintf("x%d", i), []byte(`{}`))
	}
	late := appendOK(t, c, "alice", "p1", []byte(`{"v":3}`))
	if late.Duplicate != cfg.DedupBeyondWindow || late.Duplicate && late.Seq != first.Seq {
		t.Fatalf("retry beyond the dedup window: got %+v, first %+v, documented duplicate=%v", late, first, cfg.DedupBeyondWindow)
	}
}

// A position whose events were trimmed, or from another epoch, is gone;
// one inside the window is not.
func trimmedGone(t *testing.T, cfg Config) {
	const window = 20
	b := cfg.New(t, window, 100)
	l := b.Open(t, name(t))
	for range 3 * window {
		appendOK(t, l, "", "", []byte(`{}`))
	}
	epoch, head := must2(t, l)
	if _, err := l.Read(ctxFor(t), epoch, 0, 10); !errors.Is(err, fanout.ErrGone) {
		t.Fatalf("read from a trimmed position: %v, want ErrGone", err)
	}
	if err := l.Follow(ctxFor(t), epoch, 1, func([]fanout.Record) error { return nil }); !errors.Is(err, fanout.ErrGone) {
		t.Fatalf("follow from a trimmed position: %v, want ErrGone", err)
	}
	if _, err := l.Read(ctxFor(t), epoch+"x", head, 10); !errors.Is(err, fanout.ErrGone) {
		t.Fatalf("read in another epoch: %v, want ErrGone", err)
	}
	recs := readOK(t, l, epoch, head-window/2, 100)
	if len(recs) != window/2 || recs[0].Seq != head-window/2+1 {
		t.Fatalf("read inside the window: %d records from %v", len(recs), recs)
	}
}

// Follow delivers, in order and once, what several nodes append while it
// runs, and ends with ctx.
func followInOrder(t *testing.T, cfg Config) {
	const total = 200
	b := cfg.New(t, 1000, 1000)
	n := name(t)
	l := b.Open(t, n)
	appendOK(t, l, "", "", []byte(`{"before":true}`))
	epoch, head := must2(t, l)
	ctx, cancel := context.WithCancel(ctxFor(t))
	got := make(chan fanout.Record, total)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, epoch, head, func(recs []fanout.Record) error {
			for _, r := range recs {
				got <- r
			}
			return nil
		})
	}()
	var wg sync.WaitGroup
	for node := range 2 {
		w := b.Open(t, n)
		wg.Go(func() {
			for i := range total / 2 {
				if _, err := w.Append(ctxFor(t), "", "", fmt.Appendf(nil, `{"n":%d,"i":%d}`, node, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range total {
		select {
		case r := <-got:
			if r.Seq != head+uint64(i)+1 {
				t.Fatalf("followed seq %d, want %d", r.Seq, head+uint64(i)+1)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("followed %d of %d", i, total)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v, want context.Canceled", err)
	}
	// fn's error ends Follow and is returned.
	stop := errors.New("stop")
	if err := l.Follow(ctxFor(t), epoch, head, func([]fanout.Record) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("follow ended with %v, want fn's error", err)
	}
}

// A restarted node sees the same epoch and head; a backend that lost its
// data has a new epoch, and positions in the old one are gone.
func epochs(t *testing.T, cfg Config) {
	b := cfg.New(t, 100, 100)
	n := name(t)
	l := b.Open(t, n)
	for range 5 {
		appendOK(t, l, "", "", []byte(`{}`))
	}
	epoch, head := must2(t, l)
	e2, h2 := must2(t, b.Open(t, n))
	if e2 != epoch || h2 != head {
		t.Fatalf("after a node restart: epoch %q head %d, want %q %d", e2, h2, epoch, head)
	}
	if cfg.Lose == nil {
		t.Skip("this backend cannot lose its data")
	}
	cfg.Lose(t, b)
	l3 := b.Open(t, n)
	a := appendOK(t, l3, "", "", []byte(`{}`))
	if a.Epoch == epoch {
		t.Fatalf("after data loss the epoch is still %q", epoch)
	}
	if _, err := l3.Read(ctxFor(t), epoch, head, 10); !errors.Is(err, fanout.ErrGone) {
		t.Fatalf("read in the lost epoch: %v, want ErrGone", err)
	}
	if err := l3.Follow(ctxFor(t), epoch, head, func([]fanout.Record) error { return nil }); !errors.Is(err, fanout.ErrGone) {
		t.Fatalf("follow in the lost epoch: %v, want ErrGone", err)
	}
}

// Every call returns promptly with ctx's error once ctx is done.
func cancellation(t *testing.T, cfg Config) {
	b := cfg.New(t, 100, 100)
	l := b.Open(t, name(t))
	appendOK(t, l, "", "", []byte(`{}`))
	epoch, head := must2(t, l)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, "", "", []byte(`{}`)); !errors.Is(err, context.Canceled) {
		t.Errorf("append: %v", err)
	}
	if _, _, err := l.Head(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("head: %v", err)
	}
	if _, err := l.Read(ctx, epoch, 0, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("read: %v", err)
	}
	if err := l.Follow(ctx, epoch, head, func([]fanout.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("follow: %v", err)
	}
	// A follow waiting for events ends when its ctx does.
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Follow(ctx, epoch, head, func([]fanout.Record) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting follow: %v", err)
	}
}
