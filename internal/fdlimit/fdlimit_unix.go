//go:build unix

// Package fdlimit raises the open-file limit for programs and tests that
// hold thousands of loopback connections.
package fdlimit

import "syscall"

// Raise makes sure the process may hold n open files, raising the soft
// limit up to the hard one if needed.
func Raise(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur = min(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < n {
		return syscall.EMFILE
	}
	return nil
}
