//go:build unix

package socketio

import "syscall"

// fdReserve is the descriptors kept back from WebSocket clients: the
// listener, /health and /metrics requests, Redis, logs and the process's
// own files must still open when the clients have taken the rest.
const fdReserve = 256

// defaultMaxConnections is the file-descriptor limit less fdReserve, or
// no cap (-1) when the limit is unknown or too small to share.
func defaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur <= 2*fdReserve || rl.Cur > 1<<30 {
		return -1
	}
	return int(rl.Cur) - fdReserve
}
