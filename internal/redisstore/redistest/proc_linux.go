package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL the server when the test binary
// dies (a go test -timeout, a ^C): a test topology is six or five
// processes, and on a shared machine they must not outlive their test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
