//go:build unix

package main

import "syscall"

// raiseFileLimit makes sure the process may hold n open files, raising the
// soft limit up to the hard one if needed.
func raiseFileLimit(n uint64) error {
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
