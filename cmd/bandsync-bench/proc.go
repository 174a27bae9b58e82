package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat CPU times. It is 100
// on every Linux the bench is meant for.
const clockTicks = 100

// cpuMeter measures CPU use of the bench itself and, when its pid is
// known, of the server over a window: on a shared machine it tells
// whether the bench or the server was the bottleneck.
type cpuMeter struct {
	pid        int
	t0         time.Time
	self0, sv0 time.Duration
}

func startCPU(pid int) cpuMeter {
	m := cpuMeter{pid: pid, t0: time.Now(), self0: selfCPU()}
	if pid > 0 {
		m.sv0, _ = procCPU(pid)
	}
	return m
}

// stop returns the bench's and the server's CPU use as a fraction of one
// core; the server's is -1 when unknown.
func (m cpuMeter) stop() (bench, server float64) {
	wall := time.Since(m.t0).Seconds()
	bench = (selfCPU() - m.self0).Seconds() / wall
	server = -1
	if m.pid > 0 {
		if sv, err := procCPU(m.pid); err == nil {
			server = (sv - m.sv0).Seconds() / wall
		}
	}
	return bench, server
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU reads utime+stime of a process from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces; fields are counted after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	// Fields 14 and 15 of stat (utime, stime) are 12 and 13 after ')'.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procRSS reads VmRSS of a process, in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// serverMetrics is the part of GET /metrics the bench reads.
type serverMetrics struct {
	Memory struct {
		RSSBytes int64 `json:"rssBytes"`
	} `json:"memory"`
	Runtime struct {
		Goroutines int `json:"goroutines"`
	} `json:"runtime"`
}

func fetchMetrics(ctx context.Context, base string) (serverMetrics, error) {
	var m serverMetrics
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/metrics", nil)
	if err != nil {
		return m, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// serverMemory is the server's RSS (from /proc when pid is known, from
// /metrics otherwise) and its goroutine count when /metrics reports one.
func serverMemory(ctx context.Context, base string, pid int) (rss int64, goroutines int, err error) {
	m, merr := fetchMetrics(ctx, base)
	if merr == nil {
		rss, goroutines = m.Memory.RSSBytes, m.Runtime.Goroutines
	}
	if pid > 0 {
		rss, err = procRSS(pid)
		return rss, goroutines, err
	}
	if merr != nil {
		return 0, 0, merr
	}
	if rss == 0 {
		return 0, goroutines, errors.New("GET /metrics has no memory.rssBytes; pass -server-pid")
	}
	return rss, goroutines, nil
}
