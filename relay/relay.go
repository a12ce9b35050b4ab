// Package relay stands between a rack's (or a scalable unit's) agents and
// the server. Agents report to a relay as they would to the server; the
// relay sends their heartbeats on a few connections it keeps open to the
// server, many requests at once (HTTP/1.1 pipelining), which the server
// handles together and answers in one write. Everything else (joins, push
// streams, the rest of the API) passes through as a reverse proxy.
//
// The relay is an http.Handler; cli serves it behind httpapi.Front, as the
// server's heartbeats are served (Fast says which requests).
//
// A relay keeps nothing. A heartbeat is answered with the server's own
// answer or not at all (502), so a relay that stops loses no acknowledged
// report: its agents keep theirs spooled and send them again, and the
// server applies a report once per sequence number. A relay's agents going
// silent together is what the server's circuit breaker takes for its own
// blindness, not for nodes failing.
package relay

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// HeartbeatPath is the one request a relay pipelines.
const HeartbeatPath = "/v1/agent/heartbeat"

const (
	// maxBatch is how many heartbeats one write to the server carries at
	// most (what the server takes from one read).
	maxBatch = 64
	// maxBody is the largest heartbeat, and the largest answer, relayed
	// (the server's front reads no larger a body itself).
	maxBody = 1 << 20
)

// Options configure a relay.
type Options struct {
	// Server is the server's base URL (http://host:port).
	Server string
	// Conns is how many connections carry heartbeats to the server
	// (default 4).
	Conns int
	// Timeout bounds a batch: dialing, writing it and reading its answers
	// (default 30 s).
	Timeout time.Duration
	// Log receives the relay's own errors (default: discarded).
	Log *slog.Logger
}

// Relay is an http.Handler serving a rack's agents.
type Relay struct {
	addr    string // the server's host:port
	host    string // its Host header
	timeout time.Duration
	log     *slog.Logger
	proxy   *httputil.ReverseProxy
	lines   []*line
	next    atomic.Uint64
	metrics http.Handler
	stats   struct {
		dials, batches, heartbeats, largest atomic.Int64
		unanswered, tooLarge                atomic.Int64
		proxied, proxyFailed, outOfReach    atomic.Int64
	}
}

// Stats count a relay's work since it started.
type Stats struct {
	Dials      int64 // connections to the server opened for heartbeats
	Batches    int64 // writes of heartbeats to the server
	Heartbeats int64 // heartbeats answered by the server
	Largest    int64 // the most heartbeats in one batch
	Unanswered int64 // heartbeats answered 502 by the relay
}

// New returns a relay to the server; Close stops it.
func New(o Options) (*Relay, error) {
	u, err := url.Parse(o.Server)
	if err != nil {
		return nil, fmt.Errorf("relay: server %q: %w", o.Server, err)
	}
	if u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("relay: server %q: want http://host:port", o.Server)
	}
	if o.Conns < 0 || o.Timeout < 0 {
		return nil, fmt.Errorf("relay: conns %d, timeout %v: want positive ones (or 0 for the defaults)", o.Conns, o.Timeout)
	}
	r := &Relay{addr: u.Host, host: u.Host, timeout: cmp.Or(o.Timeout, 30*time.Second), log: o.Log}
	if u.Port() == "" {
		r.addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		FlushInterval: -1, // push streams flush each event
		ErrorLog:      slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			r.stats.proxyFailed.Add(1)
			r.log.Debug("relay: proxy", "path", req.URL.Path, "err", err)
			problem(w, http.StatusBadGateway, "urn:neocloud:problem:unavailable", "the server did not answer the relay")
		},
	}
	for range cmp.Or(o.Conns, 4) {
		l := &line{r: r, wake: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
		r.lines = append(r.lines, l)
		go l.run()
	}
	r.metrics = r.metricsHandler()
	return r, nil
}

// Close stops the relay's connections to the server; heartbeats waiting
// for them are answered 502.
func (r *Relay) Close() {
	for _, l := range r.lines {
		close(l.done)
	}
	for _, l := range r.lines {
		<-l.stopped
	}
}

// Stats returns the relay's counts so far.
func (r *Relay) Stats() Stats {
	return Stats{Dials: r.stats.dials.Load(), Batches: r.stats.batches.Load(), Heartbeats: r.stats.heartbeats.Load(), Largest: r.stats.largest.Load(),
		Unanswered: r.stats.unanswered.Load()}
}

// Fast reports whether a request is one the relay pipelines (for
// httpapi.Front, which then serves it without net/http's per-request
// machinery).
func Fast(method, target string) bool { return method == http.MethodPost && target == HeartbeatPath }

func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != HeartbeatPath {
		if req.URL.Path == MetricsPath {
			r.metrics.ServeHTTP(w, req)
			return
		}
		r.stats.proxied.Add(1)
		r.proxy.ServeHTTP(w, req)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil {
		w.Header().Set("Connection", "close")
		problem(w, http.StatusBadRequest, "urn:neocloud:problem:malformed", "the request body was cut short")
		return
	}
	if len(body) > maxBody {
		r.stats.tooLarge.Add(1)
		w.Header().Set("Connection", "close")
		problem(w, http.StatusRequestEntityTooLarge, "urn:neocloud:problem:too-large", fmt.Sprintf("a heartbeat is at most %d bytes", maxBody))
		return
	}
	x := &exchange{raw: r.encode(req, body), done: make(chan struct{})}
	l := r.lines[r.next.Add(1)%uint64(len(r.lines))]
	if !l.put(x) {
		r.stats.unanswered.Add(1)
		problem(w, http.StatusBadGateway, "urn:neocloud:problem:unavailable", "the relay is stopping")
		return
	}
	select {
	case <-x.done:
	case <-req.Context().Done():
		return // the agent is gone; its report is sent all the same
	}
	if x.err != nil {
		r.stats.unanswered.Add(1)
		r.log.Debug("relay: heartbeat", "err", x.err)
		problem(w, http.StatusBadGateway, "urn:neocloud:problem:unavailable", "the server did not answer the relay")
		return
	}
	h := w.Header()
	for k, vs := range x.header {
		if !hopByHop[k] && k != "Content-Length" {
			h[k] = vs
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(x.body)))
	w.WriteHeader(x.status)
	w.Write(x.body)
}

// hopByHop are the headers of one connection (RFC 9110, section 7.6.1),
// not forwarded.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// encode writes req as the server gets it: its end-to-end headers, the
// relay's Host, the agent's address in X-Forwarded-For, the body.
func (r *Relay) encode(req *http.Request, body []byte) []byte {
	b := make([]byte, 0, 256+len(body))
	b = append(b, "POST "...)
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.host...)
	b = append(b, "\r\n"...)
	for k, vs := range req.Header {
		if hopByHop[k] || k == "Host" || k == "Content-Length" || k == "Expect" || k == "X-Forwarded-For" {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		b = append(b, "X-Forwarded-For: "...)
		for _, prior := range req.Header.Values("X-Forwarded-For") {
			b = append(b, prior...)
			b = append(b, ", "...)
		}
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// problem answers an error of the relay's own as the server answers its
// errors (application/problem+json).
func problem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":%q,"title":%q,"status":%d,"detail":%q}`+"\n", typ, http.StatusText(status), status, detail)
}

// exchange is one heartbeat through the relay: the request as sent, and
// the server's answer (or err) once done is closed.
type exchange struct {
	raw    []byte
	tries  int
	done   chan struct{}
	status int
	header http.Header
	body   []byte
	err    error
}

func (x *exchange) finish(err error) {
	x.err = err
	close(x.done)
}

// line is one connection to the server and the heartbeats waiting for it.
// Its goroutine sends whatever has queued as one batch, reads the
// answers, and sends the next: the more heartbeats arrive meanwhile, the
// larger the next batch.
type line struct {
	r       *Relay
	mu      sync.Mutex
	queue   []*exchange
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	c       net.Conn
	br      *bufio.Reader
	buf     []byte
	// After a new connection fails, batches are failed at once until
	// retryAt (a wait doubling from minBackoff to maxBackoff), rather than
	// dialing the server for each.
	retryAt time.Time
	backoff time.Duration
}

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

var errUnreachable = errors.New("the server is out of reach (waiting before the next try)")

// put queues x; false when the relay is stopping.
func (l *line) put(x *exchange) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, x)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

func (l *line) run() {
	defer close(l.stopped)
	for {
		select {
		case <-l.wake:
		case <-l.done:
			l.mu.Lock()
			l.closed = true
			q := l.queue
			l.queue = nil
			l.mu.Unlock()
			for _, x := range q {
				x.finish(errors.New("relay stopped"))
			}
			l.hangUp()
			return
		}
		for {
			l.mu.Lock()
			n := min(len(l.queue), maxBatch)
			batch := make([]*exchange, n)
			copy(batch, l.queue)
			l.queue = l.queue[n:]
			if len(l.queue) == 0 {
				l.queue = nil
			}
			l.mu.Unlock()
			if n == 0 {
				break
			}
			l.send(batch)
		}
	}
}

// send writes a batch and reads its answers, in order. A connection kept
// from an earlier batch may have been closed by the server meanwhile (an
// idle timeout): when it gives no answer at all, the batch goes once more
// on a new one. Heartbeats are applied once per sequence number, so one
// sent twice is acknowledged twice and stored once.
func (l *line) send(batch []*exchange) {
	for len(batch) > 0 {
		fresh := l.c == nil
		if fresh {
			if time.Now().Before(l.retryAt) {
				fail(batch, errUnreachable)
				return
			}
			c, err := net.DialTimeout("tcp", l.r.addr, l.r.timeout)
			if err != nil {
				l.unreachable()
				fail(batch, err)
				return
			}
			l.r.stats.dials.Add(1)
			l.c, l.br = c, bufio.NewReaderSize(c, 64<<10)
		}
		l.c.SetDeadline(time.Now().Add(l.r.timeout))
		b := l.buf[:0]
		for _, x := range batch {
			x.tries++
			b = append(b, x.raw...)
		}
		l.buf = b
		l.r.stats.batches.Add(1)
		for n := int64(len(batch)); ; {
			if m := l.r.stats.largest.Load(); m >= n || l.r.stats.largest.CompareAndSwap(m, n) {
				break
			}
		}
		if _, err := l.c.Write(b); err != nil {
			l.hangUp()
			if fresh {
				l.unreachable()
				fail(batch, err)
				return
			}
			continue // a kept connection gone stale: once more on a new one
		}
		answered, err := l.read(batch)
		if answered == 0 && err != nil {
			if !fresh {
				continue // likewise
			}
			l.unreachable()
		} else if l.backoff > 0 {
			l.backoff = 0
			l.r.stats.outOfReach.Add(-1)
			l.r.log.Info("relay: the server answers again")
		}
		batch = batch[answered:]
		if err != nil {
			fail(batch, err)
			return
		}
		// The server closed the connection after an answer: the rest
		// were not read; they go on a new connection, once.
		var again []*exchange
		for _, x := range batch {
			if x.tries < 2 {
				again = append(again, x)
			} else {
				x.finish(errors.New("the server closed the connection twice before answering"))
			}
		}
		batch = again
	}
}

// read reads the batch's answers until one closes the connection or
// fails; it returns how many were answered.
func (l *line) read(batch []*exchange) (int, error) {
	for i, x := range batch {
		resp, err := http.ReadResponse(l.br, nil)
		if err != nil {
			l.hangUp()
			return i, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err == nil {
			err = resp.Body.Close() // reads what is left of a larger one
		}
		if err != nil {
			l.hangUp()
			return i, err
		}
		l.r.stats.heartbeats.Add(1)
		if len(body) > maxBody {
			x.finish(fmt.Errorf("the server's answer is larger than %d bytes", maxBody))
		} else {
			x.status, x.header, x.body = resp.StatusCode, resp.Header, body
			x.finish(nil)
		}
		if resp.Close {
			l.hangUp()
			return i + 1, nil
		}
	}
	return len(batch), nil
}

// unreachable notes that a new connection failed (logged once, not per
// heartbeat: a rack's agents report thousands a minute).
func (l *line) unreachable() {
	if l.backoff == 0 {
		l.r.stats.outOfReach.Add(1)
		l.r.log.Warn("relay: the server is out of reach; heartbeats are answered 502 until it answers again", "server", l.r.addr)
	}
	l.backoff = min(max(2*l.backoff, minBackoff), maxBackoff)
	l.retryAt = time.Now().Add(l.backoff)
}

func (l *line) hangUp() {
	if l.c != nil {
		l.c.Close()
		l.c, l.br = nil, nil
	}
}

func fail(batch []*exchange, err error) {
	for _, x := range batch {
		x.finish(err)
	}
}
