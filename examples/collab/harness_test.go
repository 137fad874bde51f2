package main

import (
	"fmt"
	"io"
	"os"
	"testing"
)

// TestHarness serves the browser test's harness (the example behind a
// proxy, and its control server; see startHarness) for the tests of the
// browser client in js/, which start it themselves. It runs only when
// FANOUT_HARNESS is set: it prints one line, "harness <base> <control>",
// and serves until its standard input ends.
func TestHarness(t *testing.T) {
	if os.Getenv("FANOUT_HARNESS") == "" {
		t.Skip("run by the js/ tests (FANOUT_HARNESS=1)")
	}
	base, control := startHarness(t)
	fmt.Printf("harness %s %s\n", base, control)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
