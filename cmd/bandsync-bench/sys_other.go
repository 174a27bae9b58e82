//go:build !unix

package main

import "time"

// fileLimit has no descriptor limit to raise or read here; the cap that
// matters is then -max-conns.
func fileLimit() int { return 1 << 20 }

// selfCPU is not read here: the bench's CPU column shows 0.
func selfCPU() time.Duration { return 0 }
