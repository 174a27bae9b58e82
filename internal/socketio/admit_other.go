//go:build !unix

package socketio

// defaultMaxConnections: no descriptor limit to stay under here.
func defaultMaxConnections() int { return -1 }
