package harness

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs     int    `json:"cpus"`      // online CPUs (nproc of the whole machine)
	CPUModel string `json:"cpu_model"` // from /proc/cpuinfo
	Go       string `json:"go"`
	Kernel   string `json:"kernel"`
	LoadAvg  string `json:"loadavg"` // at the start, from /proc/loadavg
}

// DetectMachine reads the machine's description from /proc.
func DetectMachine() Machine {
	m := Machine{Go: runtime.Version(), CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n := 0
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "processor":
				n++
			case "model name":
				if m.CPUModel == "" {
					m.CPUModel = strings.TrimSpace(v)
				}
			}
		}
		if n > 0 {
			m.CPUs = n // not the affinity mask of this pinned process
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// machineBusy is the CPU time all CPUs spent on anything but idling, from
// /proc/stat (in scheduler ticks, so to 10 ms), or 0 if unknown.
func machineBusy() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	return ticks * int64(10*time.Millisecond) // USER_HZ is 100 on Linux
}
