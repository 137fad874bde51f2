package redislog_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
)

// redisBinary is the server the fault tests start their own copies of.
const redisBinary = "/usr/bin/redis-server"

// redisProc is a redis-server of a test's own, on a free port, which the
// test may kill, stop, flush and restart.
type redisProc struct {
	t    *testing.T
	addr string
	port int
	dir  string
	cmd  *exec.Cmd
}

// startRedis starts a redis-server on a free port, with the append-only
// file (fsync always) if aof. It is killed at cleanup.
func startRedis(t *testing.T, aof bool) *redisProc {
	t.Helper()
	if _, err := exec.LookPath(redisBinary); err != nil {
		t.Fatalf("fault tests need %s: %v", redisBinary, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	p := &redisProc{t: t, port: port, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: t.TempDir()}
	p.start(aof)
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			p.kill()
		}
	})
	return p
}

func (p *redisProc) start(aof bool) {
	p.t.Helper()
	appendonly := "no"
	if aof {
		appendonly = "yes"
	}
	p.cmd = exec.Command(redisBinary, "--bind", "127.0.0.1", "--port", strconv.Itoa(p.port),
		"--dir", p.dir, "--save", "", "--appendonly", appendonly, "--appendfsync", "always",
		"--protected-mode", "no", "--logfile", "")
	require.NoError(p.t, p.cmd.Start())
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.addr}, DisableCache: true, DisableRetry: true})
	for i := 0; err != nil && i < 200; i++ {
		time.Sleep(20 * time.Millisecond)
		c, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.addr}, DisableCache: true, DisableRetry: true})
	}
	require.NoError(p.t, err, "redis-server on port %d", p.port)
	defer c.Close()
	require.Eventually(p.t, func() bool {
		return c.Do(context.Background(), c.B().Ping().Build()).Error() == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// kill sends SIGKILL and waits for the process to end.
func (p *redisProc) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// restart kills the server and starts it again on the same port and
// directory: with aof it reloads what it wrote, without it starts empty.
func (p *redisProc) restart(aof bool) {
	p.kill()
	p.start(aof)
}

func (p *redisProc) signal(sig syscall.Signal) {
	require.NoError(p.t, p.cmd.Process.Signal(sig))
}

// do runs one command on the server with a client of its own.
func (p *redisProc) do(args ...string) rueidis.RedisResult {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.addr}, DisableCache: true})
	require.NoError(p.t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args...).Build())
}

func (p *redisProc) String() string { return fmt.Sprintf("redis-server on %s", p.addr) }
