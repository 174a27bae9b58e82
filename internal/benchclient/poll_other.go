//go:build !linux

package benchclient

import "errors"

// Elsewhere than Linux every connection reads on its own goroutine.

func (c *Conn) startPolled() bool { return false }

func writeFD(int, []byte) error { return errors.New("benchclient: raw descriptors are Linux only") }

func shutdownFD(int) error { return nil }
