package harness

import (
	"slices"
	"time"
)

// Results is everything one run of the harness measured.
type Results struct {
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed"`
	Mode     string        `json:"mode"` // quick or full
	Command  string        `json:"command"`
	Machine  Machine       `json:"machine"`
	Settings Settings      `json:"settings"`
	Runs     []PeerRun     `json:"runs"`
	Profiles []Profile     `json:"profiles,omitempty"`
}

// Settings are the parameters the figures depend on.
type Settings struct {
	Rounds       int             `json:"rounds"`
	Ns           []int           `json:"ns"`
	Payloads     []int           `json:"payloads"`
	Peers        []string        `json:"peers"`
	StepDur      time.Duration   `json:"step_dur"`
	CommonDur    time.Duration   `json:"common_dur"`
	Factor       float64         `json:"factor"`
	Refine       int             `json:"refine"`
	Common       map[int]float64 `json:"common"` // offered deliveries/s at the common load, per N
	Bounds       map[int]string  `json:"bounds"` // p99 bound per N
	ReplayConns  int             `json:"replay_conns"`
	ReplayEvents int             `json:"replay_events"`
	History      int             `json:"history"`
	WriteTimeout time.Duration   `json:"write_timeout"`
	Pinned       bool            `json:"pinned"`
	ReadGap      time.Duration   `json:"read_gap"`
	Quiet        float64         `json:"quiet"`
	QuietWait    time.Duration   `json:"quiet_wait"`
	Retry        bool            `json:"retry"`
	Warmup       time.Duration   `json:"warmup"`
}

// PeerRun is one server process: one round, one N, one peer.
type PeerRun struct {
	Round       int             `json:"round"`
	N           int             `json:"n"`
	Peer        string          `json:"peer"`
	ConnectTime time.Duration   `json:"connect_time"`
	Idle        *Idle           `json:"idle,omitempty"`
	Payloads    []PayloadResult `json:"payloads"`
	Replay      *Replay         `json:"replay,omitempty"`
	Err         string          `json:"err,omitempty"`
}

// Idle is the cost of an idle connection: growth over the process's
// figures before any client connected, divided by the connections.
type Idle struct {
	Conns             int     `json:"conns"`
	RSSPerConn        float64 `json:"rss_per_conn"` // bytes
	HeapPerConn       float64 `json:"heap_per_conn"`
	StackPerConn      float64 `json:"stack_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
}

// PayloadResult is one payload size on one server process.
type PayloadResult struct {
	Size         int     `json:"size"`
	Common       *Step   `json:"common,omitempty"`
	Steps        []Step  `json:"steps"`
	MaxSustained float64 `json:"max_sustained"` // deliveries/s; 0 if no step passed
	StoppedBy    string  `json:"stopped_by"`    // why the first failing step failed
}

// Step is one open-loop publishing step at a fixed offered load.
type Step struct {
	Offered    float64       `json:"offered"` // deliveries/s: rate × connections
	Rate       float64       `json:"rate"`    // messages/s
	Count      int           `json:"count"`   // messages published
	Conns      int           `json:"conns"`
	Expected   uint64        `json:"expected"` // deliveries due
	Delivered  uint64        `json:"delivered"`
	Lost       uint64        `json:"lost"`
	Dups       uint64        `json:"dups"`
	Dropped    uint64        `json:"dropped"` // connections closed by the server
	Incomplete int           `json:"incomplete"`
	P50        time.Duration `json:"p50"`
	P99        time.Duration `json:"p99"`
	P999       time.Duration `json:"p999"`
	Max        time.Duration `json:"max"`
	// ServerCPU is server CPU time per delivery over the step, from the
	// start of publishing until every delivery arrived.
	ServerCPU   time.Duration `json:"server_cpu_per_delivery"`
	ServerShare float64       `json:"server_cpu_share"` // of one core, over the same window
	ClientShare float64       `json:"client_cpu_share"`
	// OtherCPU is what everything else on the machine used over the
	// step, in cores: noise from outside the benchmark.
	OtherCPU  float64        `json:"other_cpu"`
	QuietWait time.Duration  `json:"quiet_wait"` // waited before the step for the machine to calm down
	Retry     bool           `json:"retry"`      // a second try of a step that failed in noise
	Allocs    float64        `json:"allocs_per_delivery"`
	Lag       time.Duration  `json:"publisher_lag"`
	Aborted   bool           `json:"aborted"`
	Wall      time.Duration  `json:"wall"`
	Pass      bool           `json:"pass"`
	Why       string         `json:"why,omitempty"` // why it failed
	Reasons   map[string]int `json:"close_reasons,omitempty"`
}

// Replay is the reconnect-and-replay figure.
type Replay struct {
	Clients int           `json:"clients"`
	Events  int           `json:"events"`
	Time    time.Duration `json:"time"`
	OK      bool          `json:"ok"`
	Why     string        `json:"why,omitempty"`
}

// Profile is a CPU profile of a server process and the top of its report.
type Profile struct {
	Peer  string `json:"peer"`
	N     int    `json:"n"`
	Size  int    `json:"size"`
	Load  string `json:"load"` // what load it was taken at
	File  string `json:"file"`
	Top   string `json:"top"`
	Error string `json:"error,omitempty"`
}

// stat is a median with its spread over rounds.
type stat struct {
	Med, Min, Max float64
	N             int
}

func summarize(xs []float64) stat {
	if len(xs) == 0 {
		return stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Med: med, Min: s[0], Max: s[len(s)-1], N: len(s)}
}
