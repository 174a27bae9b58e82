//go:build !linux

package redistest

import "os/exec"

// dieWithParent has no portable equivalent outside Linux; Cleanup stops
// the servers when the test ends normally.
func dieWithParent(*exec.Cmd) {}
