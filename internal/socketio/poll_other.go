//go:build !linux

package socketio

import "errors"

// poller is Linux-only; elsewhere each connection is read by a goroutine
// of its own.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("event-driven reads need Linux") }

func (p *poller) add(*Conn) bool            { return false }
func (p *poller) rearm(*Conn)               {}
func (p *poller) forget(*Conn)              {}
func (p *poller) run(<-chan struct{}) error { return nil }

func (c *Conn) writeNonblocking() bool { return false }

func (c *Conn) initRaw() {}

// rawIO holds the raw read and write state on Linux.
type rawIO struct{}
