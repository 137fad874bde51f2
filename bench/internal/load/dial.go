package load

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Channel is the channel centrifuge clients subscribe to.
const Channel = "bench"

// path is where a client of kind connects.
func path(kind Kind, r *Resume) string {
	if kind == Fanout && r != nil {
		return fmt.Sprintf("/ws?after=%d&epoch=%s", r.Offset, url.QueryEscape(r.Epoch))
	}
	return "/ws"
}

// hello is what a client of kind sends once the WebSocket is open.
func hello(kind Kind, r *Resume) [][]byte {
	if kind != Centrifuge {
		return nil
	}
	sub := fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, Channel)
	if r != nil {
		sub = fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q,"recover":true,"offset":%d,"epoch":%q}}`, Channel, r.Offset, r.Epoch)
	}
	return [][]byte{[]byte(`{"id":1,"connect":{}}`), []byte(sub)}
}

// Dial opens n connections, parallel at a time, and registers them with the
// pool. With r set they ask to resume after r. Each connection is tried up
// to three times; the first error that persisted is returned, with the
// number of connections that could not be opened.
func (p *Pool) Dial(n, parallel int, r *Resume) error {
	var (
		mu     sync.Mutex
		failed int
		first  error
		wg     sync.WaitGroup
		work   = make(chan struct{}, n)
	)
	for range n {
		work <- struct{}{}
	}
	close(work)
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				var err error
				for try := range 3 {
					if err = p.dialOne(r); err == nil {
						break
					}
					time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
				}
				if err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		return fmt.Errorf("%d of %d connections failed: %w", failed, n, first)
	}
	return nil
}

var errNotUpgraded = errors.New("websocket upgrade refused")

// dialOne opens one connection: the handshake through the standard
// library, then the socket is taken over by the pool's epoll loop.
func (p *Pool) dialOne(r *Resume) error {
	nc, err := net.DialTimeout("tcp", p.addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Close() }() // the pool keeps a duplicate
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		path(p.kind, r), p.addr, base64.StdEncoding.EncodeToString(key[:]))
	if _, err := nc.Write([]byte(req)); err != nil {
		return err
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("%w: %s", errNotUpgraded, resp.Status)
	}
	leftover, _ := br.Peek(br.Buffered())
	leftover = append([]byte(nil), leftover...)
	var out []byte
	for _, m := range hello(p.kind, r) {
		out = appendClientFrame(out, 0x1, m)
	}
	if len(out) > 0 {
		if _, err := nc.Write(out); err != nil {
			return err
		}
	}
	rc, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) { fd, dupErr = dupCloexec(s) }); err != nil {
		return err
	}
	if dupErr != nil {
		return dupErr
	}
	return p.register(fd, leftover)
}
