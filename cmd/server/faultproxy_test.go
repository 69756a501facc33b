package main

import (
	"bytes"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// faultProxy forwards TCP connections to PostgreSQL and breaks them on
// purpose: it refuses new connections, cuts the open ones, or holds one
// query, or the database's answer to it, in flight.
type faultProxy struct {
	target string
	ln     net.Listener

	mu         sync.Mutex
	forwarding bool
	links      map[*link]struct{}
	rule       *holdRule // the next hold to apply, if any
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	closed         chan struct{}
	closeOnce      sync.Once
	holdAnswers    atomic.Bool // set, after rule and awaited, once a holdAnswer rule matched
	rule           *holdRule
	awaited        int // ReadyForQuery messages still to come before the answer is complete
}

func (l *link) close() {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.client.Close()
		l.server.Close()
	})
}

// holdKind says what a hold keeps back.
type holdKind int

const (
	holdQuery  holdKind = iota // the query never reaches the database
	holdAnswer                 // the query runs; its answer never reaches the service
)

func (k holdKind) String() string { return [...]string{"query", "answer"}[k] }

// The protocol messages that end a pipeline of extended-protocol messages:
// the client's Sync, and the ReadyForQuery the server sends once it has run
// (and, outside a transaction block, committed) what came before the Sync.
var (
	syncMessage  = []byte{'S', 0, 0, 0, 4}
	readyMessage = []byte{'Z', 0, 0, 0, 5}
)

// holdRule holds the first client message containing pattern.
type holdRule struct {
	pattern []byte
	kind    holdKind
	held    chan struct{} // closed once something is held
	once    sync.Once
}

func (r *holdRule) signal() { r.once.Do(func() { close(r.held) }) }

// newFaultProxy listens on a random local port in front of the database
// dbURL names; forwarding says whether it forwards from the start.
func newFaultProxy(t *testing.T, dbURL string, forwarding bool) *faultProxy {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Fatalf("TEST_DATABASE_URL: the fault tests proxy TCP; got a Unix socket %s", cfg.Host)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{
		target:     net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
		ln:         ln,
		forwarding: forwarding,
		links:      map[*link]struct{}{},
	}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

// url rewrites dbURL to go through the proxy. TLS is turned off: the proxy
// reads the protocol to find the query to hold.
func (p *faultProxy) url(t *testing.T, dbURL string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(p.ln.Addr().String())
	if !strings.HasPrefix(dbURL, "postgres://") && !strings.HasPrefix(dbURL, "postgresql://") {
		return dbURL + " host=" + host + " port=" + port + " sslmode=disable" // later keywords win
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String()
}

func (p *faultProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *faultProxy) serve(client net.Conn) {
	p.mu.Lock()
	forwarding := p.forwarding
	p.mu.Unlock()
	if !forwarding {
		client.Close() // refused: the service sees the connection end at once
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	l := &link{client: client, server: server, closed: make(chan struct{})}
	p.mu.Lock()
	if !p.forwarding { // cut while dialing
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	go p.pump(l, client, server, true)
	go p.pump(l, server, client, false)
}

// pump copies src to dst until either side ends, applying the hold rule.
func (p *faultProxy) pump(l *link, src, dst net.Conn, toServer bool) {
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	var window []byte // the end of the last read and this one, so a pattern split over two reads is found
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if toServer {
				window = append(window[max(0, len(window)-256):], chunk...)
				if r := p.take(window); r != nil {
					if r.kind == holdQuery {
						r.signal()
						<-l.closed
						return
					}
					l.rule = r
					l.awaited = bytes.Count(chunk, syncMessage)
					l.holdAnswers.Store(true)
				}
			} else if l.holdAnswers.Load() {
				if l.awaited -= bytes.Count(chunk, readyMessage); l.awaited <= 0 {
					l.rule.signal() // the whole answer is here: the query ran and committed
					<-l.closed
					return
				}
			}
			if _, err := dst.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// take returns the hold rule and clears it if window matches it.
func (p *faultProxy) take(window []byte) *holdRule {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rule == nil || !bytes.Contains(window, p.rule.pattern) {
		return nil
	}
	r := p.rule
	p.rule = nil
	return r
}

// hold arranges for the next query whose bytes contain pattern (such as a
// token id, which travels as a query parameter) to be held as kind says.
// The returned channel is closed once it is: for holdAnswer, once the
// database has answered all the client sent with it, up to its last Sync.
func (p *faultProxy) hold(pattern string, kind holdKind) <-chan struct{} {
	r := &holdRule{pattern: []byte(pattern), kind: kind, held: make(chan struct{})}
	p.mu.Lock()
	p.rule = r
	p.mu.Unlock()
	return r.held
}

// cut closes every open connection and refuses new ones until resume. It
// returns how many connections it cut.
func (p *faultProxy) cut() int {
	p.mu.Lock()
	p.forwarding = false
	links := p.links
	p.links = map[*link]struct{}{}
	p.mu.Unlock()
	for l := range links {
		l.close()
	}
	return len(links)
}

// resume forwards new connections again.
func (p *faultProxy) resume() {
	p.mu.Lock()
	p.forwarding = true
	p.mu.Unlock()
}
