//go:build linux && netfault && !chaos

package netfault

// long is false: the CI-sized scenarios (make test runs them with
// -tags netfault in its e2e stage).
const long = false
