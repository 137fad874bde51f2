// Command roombench measures many rooms in one server: R rooms × C clients
// each (1,000 × 10 by default), every room its own stream, against fanout's
// Hub, centrifuge with a channel per room and the gorilla chat hub with a
// hub per room. For each server it reports idle memory per empty room and
// per connection, and at each publish rate (events per second per room)
// the server's CPU time per delivery and the delivery latency at p50 and
// p99.
//
//	cd bench && go run ./cmd/roombench              # about 3 minutes
//	go run ./cmd/roombench -rates 1 -peers fanout    # one server, one rate
//
// Like fanbench, each server runs in a process of its own, pinned to core 0
// with GOMAXPROCS=1, and the clients in this process, pinned to core 1
// (when taskset is there). Each payload carries its intended send time, so
// a publisher that falls behind counts as latency.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fanout-go/fanout/bench/internal/load"
	"github.com/fanout-go/fanout/bench/internal/server"
)

func main() {
	var (
		serve = flag.String("serve", "", "internal: run this server and its control endpoint")
		peers = flag.String("peers", "fanout,centrifuge,gorilla", "servers under test")
		rooms = flag.Int("rooms", 1000, "rooms")
		per   = flag.Int("per", 10, "clients per room")
		rates = flag.String("rates", "1,10", "publish rates to measure, events per second per room")
		secs  = flag.Int("secs", 10, "seconds each rate is measured")
		pin   = flag.Bool("pin", true, "pin the server to core 0 and the clients to core 1 with taskset")
	)
	flag.Parse()
	if _, err := server.RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "roombench: file limit:", err)
	}
	if *serve != "" {
		if err := runServer(*serve, *rooms**per+100); err != nil {
			fmt.Fprintln(os.Stderr, "roombench:", err)
			os.Exit(1)
		}
		return
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		*pin = false
	}
	if *pin && os.Getenv("ROOMBENCH_PINNED") == "" {
		cmd := exec.Command("taskset", append([]string{"-c", "1", os.Args[0]}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), "ROOMBENCH_PINNED=1", "GOMAXPROCS=1")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			os.Exit(1)
		}
		return
	}
	var rs []float64
	for _, f := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 {
			fmt.Fprintln(os.Stderr, "roombench: bad rate", f)
			os.Exit(2)
		}
		rs = append(rs, r)
	}
	fmt.Printf("%d rooms × %d clients, %d s per rate, server pinned: %v, %s, %d CPUs\n\n", *rooms, *per, *secs, *pin, runtime.Version(), runtime.NumCPU())
	fmt.Println("| server | rate (events/s per room) | deliveries/s | server CPU per delivery | p50 | p99 | lost |")
	fmt.Println("|---|---|---|---|---|---|---|")
	var mem []string
	for _, p := range strings.Split(*peers, ",") {
		m, err := measure(p, *rooms, *per, rs, time.Duration(*secs)*time.Second, *pin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "roombench:", p+":", err)
			os.Exit(1)
		}
		mem = append(mem, m)
	}
	fmt.Println()
	fmt.Println("| server | RSS per empty room | RSS per idle connection |")
	fmt.Println("|---|---|---|")
	for _, m := range mem {
		fmt.Println(m)
	}
}

// ---- the server process ------------------------------------------------

type stats struct {
	CPU int64  `json:"cpu_ns"`
	RSS uint64 `json:"rss"`
}

func runServer(name string, conns int) error {
	var s roomServer
	var err error
	switch name {
	case "fanout":
		s, err = newFanoutRooms(conns)
	case "centrifuge":
		s, err = newCentrifugeRooms()
	case "gorilla":
		s, err = newGorillaRooms()
	default:
		err = fmt.Errorf("unknown server %q", name)
	}
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", s)
	mux.HandleFunc("/ctl/open", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("rooms"))
		s.Open(n)
	})
	mux.HandleFunc("/ctl/stats", func(w http.ResponseWriter, r *http.Request) {
		var ru syscall.Rusage // before the collection, which is not the load's
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		runtime.GC()
		_ = json.NewEncoder(w).Encode(stats{CPU: ru.Utime.Nano() + ru.Stime.Nano(), RSS: rss()})
	})
	mux.HandleFunc("/ctl/run", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rooms, _ := strconv.Atoi(q.Get("rooms"))
		rate, _ := strconv.ParseFloat(q.Get("rate"), 64)
		d, _ := time.ParseDuration(q.Get("for"))
		fmt.Fprintln(w, publish(s, rooms, rate, d))
	})
	fmt.Println(ln.Addr().String())
	go func() { // the parent closes stdin to stop the server
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = ln.Close()
	}()
	err = (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	s.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// publish sends rate events per second to each of rooms rooms, in turn,
// for d: event i is due at start + i/(rate × rooms) and carries that time.
func publish(s roomServer, rooms int, rate float64, d time.Duration) int {
	every := time.Duration(float64(time.Second) / (rate * float64(rooms)))
	start := time.Now()
	n := int(d / every)
	pad := strings.Repeat("x", 64)
	for i := range n {
		due := start.Add(time.Duration(i) * every)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		b := fmt.Appendf(nil, `{"bt":%d,"p":"`, due.UnixNano())
		b = append(b, pad[:max(64-len(b)-2, 1)]...)
		b = append(b, `"}`...)
		_ = s.Publish(i%rooms, b)
	}
	return n
}

func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// ---- the load process --------------------------------------------------

// measure runs one server through the idle figures and every rate; it
// prints a row per rate and returns the memory row.
func measure(name string, rooms, per int, rates []float64, d time.Duration, pin bool) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	args := []string{"-serve", name, "-rooms", strconv.Itoa(rooms), "-per", strconv.Itoa(per)}
	cmd := exec.Command(self, args...)
	if pin {
		cmd = exec.Command("taskset", append([]string{"-c", "0", self}, args...)...)
	}
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return "", err
	}
	addr := strings.TrimSpace(line)
	ctl := func(path string, v any) error {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if v == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			return err
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}

	var base, opened, idle stats
	if err := ctl("/ctl/stats", &base); err != nil {
		return "", err
	}
	if err := ctl(fmt.Sprintf("/ctl/open?rooms=%d", rooms), nil); err != nil {
		return "", err
	}
	if err := ctl("/ctl/stats", &opened); err != nil {
		return "", err
	}
	rec := &recorder{}
	var wg sync.WaitGroup
	ready := make(chan error, rooms*per)
	clients := make([]net.Conn, 0, rooms*per)
	var mu sync.Mutex
	sem := make(chan struct{}, 64)
	for i := range rooms * per {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialRoom(addr, name, i%rooms, rec, ready)
			<-sem
			if err != nil {
				ready <- err
				return
			}
			mu.Lock()
			clients = append(clients, c)
			mu.Unlock()
		}()
	}
	for range rooms * per {
		if err := <-ready; err != nil {
			return "", err
		}
	}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
		wg.Wait()
	}()
	time.Sleep(3 * time.Second) // longer than fanout's 2 s writer linger
	if err := ctl("/ctl/stats", &idle); err != nil {
		return "", err
	}

	for _, rate := range rates {
		// A warm-up second, then the measured run.
		if err := ctl(fmt.Sprintf("/ctl/run?rooms=%d&rate=%g&for=1s", rooms, rate), nil); err != nil {
			return "", err
		}
		time.Sleep(200 * time.Millisecond)
		var before, after stats
		if err := ctl("/ctl/stats", &before); err != nil {
			return "", err
		}
		rec.start(time.Now())
		var published int
		if err := ctl(fmt.Sprintf("/ctl/run?rooms=%d&rate=%g&for=%s", rooms, rate, d), &published); err != nil {
			return "", err
		}
		want := uint64(published * per)
		deadline := time.Now().Add(10 * time.Second)
		for rec.count.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if err := ctl("/ctl/stats", &after); err != nil {
			return "", err
		}
		got := rec.count.Load()
		h := rec.stop()
		cpu := float64(after.CPU-before.CPU) / float64(max(got, 1))
		fmt.Printf("| %s | %g | %.0f | %.2f µs | %.1f ms | %.1f ms | %d |\n", name, rate,
			float64(got)/d.Seconds(), cpu/1e3,
			float64(h.Quantile(0.5))/1e6, float64(h.Quantile(0.99))/1e6, int64(want)-int64(got))
	}
	emptyRoom := "—"
	if name != "centrifuge" {
		emptyRoom = fmt.Sprintf("%.1f KiB", float64(int64(opened.RSS)-int64(base.RSS))/float64(rooms)/1024)
	}
	return fmt.Sprintf("| %s | %s | %.1f KiB |", name, emptyRoom,
		float64(int64(idle.RSS)-int64(opened.RSS))/float64(rooms*per)/1024), nil
}

// recorder counts deliveries and their latency within a measured run.
type recorder struct {
	from  atomic.Int64 // intended send times from here on count; 0: none
	count atomic.Uint64
	mu    sync.Mutex
	hist  load.Hist
}

func (r *recorder) start(t time.Time) {
	r.mu.Lock()
	r.hist = load.Hist{}
	r.mu.Unlock()
	r.count.Store(0)
	r.from.Store(t.UnixNano())
}

func (r *recorder) stop() *load.Hist {
	r.from.Store(0)
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hist
	return &h
}

// note records the payloads in a text message.
func (r *recorder) note(msg []byte, now int64) {
	from := r.from.Load()
	for {
		i := strings.Index(string(msg), `"bt":`)
		if i < 0 {
			return
		}
		msg = msg[i+5:]
		var bt int64
		j := 0
		for j < len(msg) && msg[j] >= '0' && msg[j] <= '9' {
			bt = bt*10 + int64(msg[j]-'0')
			j++
		}
		if from != 0 && bt >= from {
			r.count.Add(1)
			r.mu.Lock()
			r.hist.Record(time.Duration(now - bt))
			r.mu.Unlock()
		}
	}
}

// dialRoom opens a client of room for server name and reads it in a
// goroutine of its own; ready gets nil once it receives (or error).
func dialRoom(addr, name string, room int, rec *recorder, ready chan<- error) (net.Conn, error) {
	path, hello := "/r/"+roomName(room)+"/ws", [][]byte(nil)
	if name == "centrifuge" {
		path = "/connection/websocket"
		hello = [][]byte{[]byte(`{"id":1,"connect":{}}`), fmt.Appendf(nil, `{"id":2,"subscribe":{"channel":%q}}`, roomName(room))}
	}
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		_ = c.Close()
		return nil, fmt.Errorf("handshake: %v %v", err, resp)
	}
	var wmu sync.Mutex
	send := func(op byte, p []byte) {
		f := []byte{0x80 | op}
		switch n := len(p); {
		case n < 126:
			f = append(f, 0x80|byte(n))
		default:
			f = append(f, 0x80|126, byte(n>>8), byte(n))
		}
		f = append(f, 0, 0, 0, 0) // a zero mask: the payload goes as is
		f = append(f, p...)
		wmu.Lock()
		_, _ = c.Write(f)
		wmu.Unlock()
	}
	for _, m := range hello {
		send(1, m)
	}
	if name == "gorilla" {
		ready <- nil
	}
	go func() {
		signalled := name == "gorilla"
		for {
			op, p, err := readFrame(br)
			if err != nil {
				if !signalled {
					ready <- err
				}
				return
			}
			switch op {
			case 9:
				send(10, p)
			case 1:
				now := time.Now().UnixNano()
				if !signalled && (name == "fanout" || strings.Contains(string(p), `"id":2`)) {
					signalled = true
					ready <- nil
				}
				if s := string(p); s == "{}" || strings.Contains(s, `{"type":"ping"}`) {
					if name == "fanout" {
						send(1, []byte(`{"type":"pong"}`))
					} else {
						send(1, []byte(`{}`))
					}
				}
				rec.note(p, now)
			}
		}
	}()
	return c, nil
}

// readFrame reads one unmasked server frame; fragments are returned as
// they come (the servers here send whole messages).
func readFrame(br *bufio.Reader) (op byte, p []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(b[0])<<8 | uint64(b[1])
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = 0
		for _, x := range b {
			n = n<<8 | uint64(x)
		}
	}
	p = make([]byte, n)
	_, err = io.ReadFull(br, p)
	return h[0] & 0x0f, p, err
}
