//go:build !unix

package fanout_test

// raiseFileLimit has nothing to raise where open files are not limited by
// RLIMIT_NOFILE.
func raiseFileLimit(uint64) error { return nil }
