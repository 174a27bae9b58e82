// Package epoll provides an epoll set whose waits park in Go's own network
// poller, for code that must learn which of many sockets are readable
// without a goroutine parked on each (Linux only; elsewhere it is empty).
//
// Go's runtime offers readiness only to a goroutine blocked in a read. A
// server with thousands of mostly idle sockets, or a load tool reading
// thousands of busy ones, wants one loop that hears about all of them.
// A loop that blocks a thread in epoll_wait pays a thread hand-off on
// every wake-up (the thread must win a scheduler slot back, then wake
// another to run the work). An epoll descriptor is itself pollable, so
// registering it with Go's poller lets the loop park like any reader.
// No library does this small piece, so it is written here.
package epoll
