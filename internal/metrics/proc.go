package metrics

import (
	"runtime"
	"time"
)

// procStats is one reading of the process's resource use.
type procStats struct {
	cpu        time.Duration // user + system CPU time since process start
	rss        uint64
	heapAlloc  uint64
	heapInuse  uint64
	heapSys    uint64
	sys        uint64
	numGC      uint32
	pauseTotal time.Duration
	goroutines int
}

// readProc reads the real process. ReadMemStats stops the world, but only for
// microseconds and only once per interval or /metrics request, never on the
// message path.
func readProc() procStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return procStats{
		cpu:        processCPU(),
		rss:        residentBytes(),
		heapAlloc:  ms.HeapAlloc,
		heapInuse:  ms.HeapInuse,
		heapSys:    ms.HeapSys,
		sys:        ms.Sys,
		numGC:      ms.NumGC,
		pauseTotal: time.Duration(ms.PauseTotalNs),
		goroutines: runtime.NumGoroutine(),
	}
}
