//go:build linux && chaos

package netfault

// long: the scenarios at full length (make chaos).
const long = true
