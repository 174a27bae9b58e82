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
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat CPU times. It is 100
// on every Linux the bench is meant for.
const clockTicks = 100

// cpuMeter measures CPU use of the bench itself and, when its pid is
// known, of the server over a window: on a shared machine it tells
// whether the bench or the server was the bottleneck.
// The machine's total is measured too: on a shared machine, CPU used by
// neither the bench nor the server explains a noisy run. Softirq time is
// kept apart: it is mostly the kernel's loopback TCP work for the bench
// and the server, which Linux charges to neither process.
type cpuMeter struct {
	pids       []int // the server's instances; their CPU is summed
	t0         time.Time
	self0, sv0 time.Duration
	m0         machineCPU
	mOK        bool
}

// cpuUse is CPU used over a window, in cores (1.0 = one core busy); -1
// when unknown.
type cpuUse struct {
	Bench   float64 `json:"bench"`
	Server  float64 `json:"server"`
	SoftIRQ float64 `json:"softirq"`
	// Machine is all busy time of all cores except softirq.
	Machine float64 `json:"machine"`
}

func startCPU(pids []int) cpuMeter {
	m := cpuMeter{pids: pids, t0: time.Now(), self0: selfCPU()}
	if len(pids) > 0 {
		m.sv0, _ = procsCPU(pids)
	}
	m.m0, m.mOK = readMachineCPU()
	return m
}

func (m cpuMeter) stop() cpuUse {
	wall := time.Since(m.t0).Seconds()
	u := cpuUse{Bench: (selfCPU() - m.self0).Seconds() / wall, Server: -1, SoftIRQ: -1, Machine: -1}
	if len(m.pids) > 0 {
		if sv, err := procsCPU(m.pids); err == nil {
			u.Server = (sv - m.sv0).Seconds() / wall
		}
	}
	if b, ok := readMachineCPU(); ok && m.mOK {
		u.Machine = (b.busy - m.m0.busy).Seconds() / wall
		u.SoftIRQ = (b.softirq - m.m0.softirq).Seconds() / wall
	}
	return u
}

type machineCPU struct{ busy, softirq time.Duration }

// readMachineCPU reads the time all cores spent busy (softirq apart) from
// /proc/stat.
func readMachineCPU() (machineCPU, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return machineCPU{}, false
	}
	var busy, soft int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return machineCPU{}, false
		}
		// Fields: user nice system idle iowait irq softirq steal guest
		// guest_nice. Idle and iowait are not busy; guest time is
		// already counted in user.
		switch {
		case i == 6:
			soft = n
		case i == 3 || i == 4 || i >= 8:
		default:
			busy += n
		}
	}
	tick := time.Second / clockTicks
	return machineCPU{busy: time.Duration(busy) * tick, softirq: time.Duration(soft) * tick}, true
}

// procsCPU is the sum of procCPU over pids.
func procsCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, p := range pids {
		d, err := procCPU(p)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
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
	Connections struct {
		Active int `json:"active"`
	} `json:"connections"`
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

// serverMem is what the idle scenario reads from the server.
type serverMem struct {
	rss         int64 // bytes
	goroutines  int   // 0 when /metrics does not say
	connections int   // active connections per /metrics
}

// serverMemory reads the server's RSS from /proc when pid is known, from
// GET /metrics otherwise, and what else /metrics tells.
func serverMemory(ctx context.Context, base string, pid int) (serverMem, error) {
	var out serverMem
	m, merr := fetchMetrics(ctx, base)
	if merr == nil {
		out = serverMem{rss: m.Memory.RSSBytes, goroutines: m.Runtime.Goroutines, connections: m.Connections.Active}
	}
	if pid > 0 {
		var err error
		out.rss, err = procRSS(pid)
		return out, err
	}
	if merr != nil {
		return out, merr
	}
	if out.rss == 0 {
		return out, errors.New("GET /metrics has no memory.rssBytes; pass -server-pid")
	}
	return out, nil
}
