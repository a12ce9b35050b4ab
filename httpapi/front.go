package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Front serves a listener's HTTP/1.1 connections itself for as long as
// they carry only requests that Fast accepts (agents' heartbeats: every
// node every few seconds), and hands every other connection to Server at
// a request boundary, with the bytes it has read, so that net/http answers
// it as if it had been its own from the start. Either way the request is
// answered by Server.Handler: the front replaces net/http's per-request
// machinery (header maps, chunked writers, a context and a background
// reader per request), not the handler's.
//
// The front answers only requests it fully understands: HTTP/1.1, a body
// sized by one Content-Length (at most fastMaxBody), no Expect, Upgrade or
// Transfer-Encoding, well-formed header lines. Anything else, anywhere on
// a connection, hands the connection over, so net/http keeps the last word
// on what a malformed request gets. Once handed over, a connection is
// net/http's until it closes.
//
// Requests pipelined on a connection that arrive together are handled
// concurrently and answered in order, in one write: a client that shares
// a connection among many agents (a relay, package relay; the heartbeat
// bench) costs a read and a write per batch, not per request. Fast is to accept only
// requests that may be handled so, each as if it had come on a
// connection of its own.
//
// Build a Front with its Server and Fast set, then call Serve once and
// Shutdown once.
type Front struct {
	Server *http.Server
	// Fast reports whether the front answers a request itself, given its
	// method and request target as sent.
	Fast func(method, target string) bool
	// Handler answers the requests the front serves (default:
	// Server.Handler).
	Handler http.Handler
	// IdleTimeout closes a kept connection of the front that sends nothing
	// for this long (0: Server.IdleTimeout, else Server.ReadTimeout, else
	// none).
	IdleTimeout time.Duration

	mu     sync.Mutex
	conns  map[*frontConn]struct{}
	closed bool
	ln     net.Listener
	hand   *handoffListener
	wg     sync.WaitGroup
	base   context.Context
	cancel context.CancelFunc
}

const (
	// fastMaxHeader is the most header bytes the front reads before it
	// hands a request to net/http.
	fastMaxHeader = 16 << 10
	// fastMaxBody is the largest body the front reads itself.
	fastMaxBody = 1 << 20
)

// Serve accepts connections on ln until Shutdown; it returns
// http.ErrServerClosed then.
func (f *Front) Serve(ln net.Listener) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return http.ErrServerClosed
	}
	f.ln = ln
	f.conns = map[*frontConn]struct{}{}
	f.hand = &handoffListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	f.base, f.cancel = context.WithCancel(context.Background())
	f.mu.Unlock()

	served := make(chan error, 1)
	go func() { served <- f.Server.Serve(f.hand) }()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			f.mu.Lock()
			closed := f.closed
			f.mu.Unlock()
			if closed {
				<-served
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || !errors.Is(err, net.ErrClosed) {
				// As net/http does: out of files, say; try again shortly.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			f.hand.close()
			<-served
			return err
		}
		backoff = 0
		fc := &frontConn{f: f, c: c, remote: c.RemoteAddr().String()}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.conns[fc] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go fc.serve()
	}
}

// Shutdown stops accepting, closes idle connections, and waits for the
// requests in flight (the front's and net/http's) until ctx ends.
func (f *Front) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.closed = true
	if f.ln != nil {
		f.ln.Close()
	}
	for fc := range f.conns {
		if fc.idle {
			fc.c.SetReadDeadline(time.Unix(1, 0)) // wakes its read now
		}
	}
	started := f.hand != nil
	f.mu.Unlock()
	if !started {
		return nil
	}
	err := f.Server.Shutdown(ctx)
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		f.mu.Lock()
		for fc := range f.conns {
			fc.c.Close()
		}
		f.mu.Unlock()
		f.cancel()
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// handoffListener is the listener net/http serves: it yields the
// connections the front hands over.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error { l.close(); return nil }
func (l *handoffListener) close()       { l.once.Do(func() { close(l.done) }) }
func (l *handoffListener) Addr() net.Addr {
	return l.addr
}

// give hands c to net/http, or closes it if net/http has stopped.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// prefixConn is a connection whose first reads return what the front read
// from it already.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close a connection after answering a bad
// request (so that the client reads the answer before the reset).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// frontConn is one connection the front serves.
type frontConn struct {
	f      *Front
	c      net.Conn
	remote string
	idle   bool   // waiting for a request; guarded by f.mu
	served int    // requests read
	buf    []byte // read so far; buf[start:] is not yet consumed
	start  int
	grow   bool // the last read filled buf: the client sends more at once
	out    []byte
	// xs are the exchanges of the requests answered together (the first,
	// and those pipelined behind it that were read with it), used again
	// for the next: as in net/http, a handler is not to keep a request or
	// its writer past its return.
	xs []*frontExchange
	// work hands exchanges to the connection's helpers, goroutines that
	// serve all but the first of pipelined requests and are kept for the
	// next (a new goroutine's stack grows, by copying, on every request);
	// helpers is how many there are.
	work    chan *frontExchange
	helpers int
	batch   sync.WaitGroup
	// date is the Date header of answers, formatted once a second.
	date    []byte
	dateSec int64
}

// frontExchange is a request the front answers and its answer. base is a
// request with only the front's context, which carries info.
type frontExchange struct {
	base     http.Request
	req      frontRequest
	w        frontResponse
	body     frontBody
	info     reqInfo
	panicked any // what the handler panicked with, if it did
}

const (
	// maxPipeline is the most pipelined requests the front answers at
	// once on a connection.
	maxPipeline = 64
	// maxFrontBuf is the most a connection's read buffer grows to for
	// clients that send many requests at once (it starts at 4 KiB).
	maxFrontBuf = 64 << 10
)

// errHandOff ends the front's service of a connection: net/http takes it.
var errHandOff = errors.New("hand off")

func (fc *frontConn) serve() {
	f := fc.f
	handed := false
	defer func() {
		f.mu.Lock()
		delete(f.conns, fc)
		f.mu.Unlock()
		if !handed {
			fc.c.Close()
		}
		f.wg.Done()
	}()
	defer func() {
		if fc.work != nil {
			close(fc.work) // the helpers end
		}
		// Handlers' panics are caught where they run (see serveSome);
		// this is the front's own, which end the connection alone.
		if v := recover(); v != nil {
			fc.logf("http: panic serving %s: %v", fc.remote, v)
		}
	}()
	fc.buf = make([]byte, 0, 4096)
	for {
		err := fc.serveSome()
		if errors.Is(err, errHandOff) {
			handed = true
			pending := bytes.Clone(fc.buf[fc.start:])
			fc.c.SetDeadline(time.Time{})
			f.hand.give(&prefixConn{Conn: fc.c, pending: pending})
			return
		}
		if err != nil {
			return
		}
	}
}

// handler answers the front's requests.
func (f *Front) handler() http.Handler {
	if f.Handler != nil {
		return f.Handler
	}
	return f.Server.Handler
}

// logf logs to the server's ErrorLog, as net/http does.
func (fc *frontConn) logf(format string, args ...any) {
	if l := fc.f.Server.ErrorLog; l != nil {
		l.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// exchange returns the connection's i'th exchange.
func (fc *frontConn) exchange(i int) *frontExchange {
	for len(fc.xs) <= i {
		x := &frontExchange{}
		x.base = *(&http.Request{}).WithContext(context.WithValue(fc.f.base, infoKey{}, &x.info))
		x.w.header = http.Header{}
		fc.xs = append(fc.xs, x)
	}
	return fc.xs[i]
}

// serveSome reads a request, and those pipelined behind it that have
// arrived with it, and answers them: concurrently, since each may wait
// for a commit, and in order, in one write. It returns errHandOff when
// net/http is to answer the next request instead, and another error when
// the connection is to close.
//
// Answering pipelined requests together means that each is handled
// before the answers of those ahead of it are written, as if they had
// come on connections of their own: the front serves only requests
// whose handlers allow that (agents' heartbeats, each applied once per
// sequence number).
func (fc *frontConn) serveSome() error {
	f := fc.f
	// 1. Wait for a request (the front's shutdown wakes an idle wait). As
	// in net/http, a new connection has ReadHeaderTimeout to send its
	// first request, a kept one IdleTimeout (or ReadTimeout) for the next.
	hdrTimeout := cmp.Or(f.Server.ReadHeaderTimeout, f.Server.ReadTimeout)
	if fc.start == len(fc.buf) {
		fc.buf, fc.start = fc.buf[:0], 0
		wait := hdrTimeout
		if fc.served > 0 {
			wait = cmp.Or(f.IdleTimeout, f.Server.IdleTimeout, f.Server.ReadTimeout)
		}
		var dl time.Time
		if wait > 0 {
			dl = time.Now().Add(wait)
		}
		fc.c.SetReadDeadline(dl)
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return http.ErrServerClosed
		}
		fc.idle = true
		f.mu.Unlock()
		err := fc.fill()
		f.mu.Lock()
		fc.idle = false
		closed := f.closed
		f.mu.Unlock()
		if err != nil {
			return err
		}
		if closed {
			return http.ErrServerClosed // as net/http closes an idle one
		}
	}

	// 2. The first request's head, within ReadHeaderTimeout. Each phase
	// sets its deadline before its first read: one that has all it needs
	// buffered already reads nothing.
	deadline := func(d time.Duration) {
		var t time.Time
		if d > 0 {
			t = time.Now().Add(d)
		}
		fc.c.SetReadDeadline(t)
	}
	var end int
	for set := false; ; set = true {
		if i := bytes.Index(fc.buf[fc.start:], []byte("\r\n\r\n")); i >= 0 {
			if i+4 > fastMaxHeader {
				return errHandOff
			}
			end = fc.start + i + 4
			break
		}
		if len(fc.buf)-fc.start > fastMaxHeader {
			return errHandOff
		}
		if !set {
			deadline(hdrTimeout)
		}
		if err := fc.fill(); err != nil {
			return err
		}
	}
	x := fc.exchange(0)
	req, ok := fc.parse(x, fc.buf[fc.start:end])
	if !ok {
		return errHandOff
	}
	fc.served++

	// 3. Its body, within ReadTimeout. fill may move what is buffered to
	// the front of buf: offsets are kept from fc.start.
	head, n := end-fc.start, int(req.ContentLength)
	for set := false; len(fc.buf)-fc.start < head+n; set = true {
		if !set {
			deadline(f.Server.ReadTimeout)
		}
		if err := fc.fill(); err != nil {
			return err
		}
	}
	end = fc.start + head
	// The body is read from the connection's buffer (not read again until
	// every handler has returned): as in net/http, it is not to be read
	// after the handler returns.
	x.body.reset(fc.buf[end : end+n])
	fc.start = end + n

	// 4. The requests behind it that have arrived whole, up to one that
	// closes the connection or one the front leaves to net/http (which
	// the next call finds first).
	k := 1
	for ; k < maxPipeline && !req.Close; k++ {
		rest := fc.buf[fc.start:]
		i := bytes.Index(rest, []byte("\r\n\r\n"))
		if i < 0 || i+4 > fastMaxHeader {
			break
		}
		x := fc.exchange(k)
		if req, ok = fc.parse(x, rest[:i+4]); !ok || len(rest) < i+4+int(req.ContentLength) {
			break
		}
		fc.served++
		body := fc.start + i + 4
		fc.start = body + int(req.ContentLength)
		x.body.reset(fc.buf[body:fc.start])
	}

	// 5. Answer them.
	xs := fc.xs[:k]
	if k == 1 {
		xs[0].serve(f.handler())
	} else {
		fc.serveAll(xs)
	}
	now := time.Now()
	if sec := now.Unix(); sec != fc.dateSec {
		fc.dateSec, fc.date = sec, now.UTC().AppendFormat(fc.date[:0], http.TimeFormat)
	}
	out := fc.out[:0]
	var last error
	for _, x := range xs {
		if x.panicked != nil {
			// A handler that panics past its own recovery
			// (http.ErrAbortHandler) ends the connection without its
			// answer, as in net/http; the answers before it go first.
			if x.panicked != http.ErrAbortHandler {
				fc.logf("http: panic serving %s: %v", fc.remote, x.panicked)
			}
			last = io.EOF
			break
		}
		out = x.w.writeTo(out, fc.date, x.req.r.Close)
		if x.req.r.Close || x.w.header.Get("Connection") == "close" {
			last = io.EOF
			break
		}
	}
	for _, x := range xs {
		x.body.reset(nil)
		x.panicked = nil
	}
	fc.out = out
	if len(out) > 0 {
		if t := f.Server.WriteTimeout; t > 0 {
			fc.c.SetWriteDeadline(now.Add(t))
		}
		if _, err := fc.c.Write(out); err != nil {
			return err
		}
	}
	return last
}

// serveAll serves xs concurrently: the first on this goroutine, the
// others on the connection's helpers.
func (fc *frontConn) serveAll(xs []*frontExchange) {
	h := fc.f.handler()
	if fc.work == nil {
		fc.work = make(chan *frontExchange, maxPipeline)
	}
	for ; fc.helpers < len(xs)-1; fc.helpers++ {
		go func() {
			for x := range fc.work {
				x.serve(h)
				fc.batch.Done()
			}
		}()
	}
	fc.batch.Add(len(xs) - 1)
	for _, x := range xs[1:] {
		fc.work <- x
	}
	xs[0].serve(h)
	fc.batch.Wait()
}

// serve runs h for x's request into x's writer, and keeps what it panics
// with.
func (x *frontExchange) serve(h http.Handler) {
	defer func() { x.panicked = recover() }()
	w := &x.w
	clear(w.header)
	w.status, w.body, w.vals = 0, w.body[:0], w.vals[:0]
	x.req.r.Body = &x.body
	h.ServeHTTP(w, &x.req.r)
}

// fill reads more of the connection into buf, growing it for a client
// whose last read filled it.
func (fc *frontConn) fill() error {
	if fc.grow && cap(fc.buf) < maxFrontBuf {
		b := make([]byte, len(fc.buf)-fc.start, 2*cap(fc.buf))
		copy(b, fc.buf[fc.start:])
		fc.buf, fc.start = b, 0
	}
	if len(fc.buf) == cap(fc.buf) {
		if fc.start > 0 {
			n := copy(fc.buf, fc.buf[fc.start:])
			fc.buf, fc.start = fc.buf[:n], 0
		}
		if len(fc.buf) == cap(fc.buf) {
			fc.buf = append(fc.buf, 0)[:len(fc.buf)]
		}
	}
	n, err := fc.c.Read(fc.buf[len(fc.buf):cap(fc.buf)])
	fc.buf = fc.buf[:len(fc.buf)+n]
	fc.grow = len(fc.buf) == cap(fc.buf)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// knownHeaders are the canonical names of the headers agents send, so
// that parsing them allocates no key.
var knownHeaders = map[string]string{}

func init() {
	for _, k := range []string{"Accept", "Accept-Encoding", "Authorization", "Connection", "Content-Length", "Content-Type", "Host", "User-Agent", "Idempotency-Key", "X-Request-Id"} {
		knownHeaders[k] = k
	}
}

// parse reads a request head (request line and header lines, ending in an
// empty line) into a request without a body. ok is false unless the front
// is to answer it itself.
func (fc *frontConn) parse(x *frontExchange, head []byte) (req *http.Request, ok bool) {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || string(proto) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return nil, false
	}
	m := http.MethodPost // agents' method, not allocated again
	if string(method) != m {
		m = string(method)
	}
	if uri := x.req.target(target); !fc.f.Fast(m, uri) {
		return nil, false
	}
	hdr := x.req.r.Header
	clear(hdr)
	if hdr == nil {
		hdr = http.Header{}
	}
	x.req.r = x.base
	x.req.vals = x.req.vals[:0]
	req = &x.req.r
	req.Method, req.Proto, req.ProtoMajor, req.ProtoMinor, req.Header, req.RemoteAddr, req.ContentLength = m, "HTTP/1.1", 1, 1, hdr, fc.remote, -1
	req.RequestURI = x.req.uri
	if bytes.ContainsAny(target, "?%#") || !utf8.Valid(target) {
		u, err := url.ParseRequestURI(req.RequestURI)
		if err != nil {
			return nil, false
		}
		req.URL = u
	} else {
		x.req.url = url.URL{Path: req.RequestURI}
		req.URL = &x.req.url
	}
	hosts := 0
	for len(rest) > 2 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, found := bytes.Cut(l, []byte(":"))
		if !found || !validName(name) {
			return nil, false // no name, or a folded line: net/http decides
		}
		value = bytes.Trim(value, " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return nil, false
			}
		}
		key, known := knownHeaders[string(name)]
		if !known {
			key = http.CanonicalHeaderKey(string(name))
		}
		switch key {
		case "Host":
			hosts++
			req.Host = x.req.host(value)
			continue
		case "Content-Length":
			if req.ContentLength >= 0 {
				return nil, false
			}
			n, err := strconv.ParseUint(string(value), 10, 63)
			if err != nil || n > fastMaxBody || len(value) == 0 || value[0] == '+' {
				return nil, false
			}
			req.ContentLength = int64(n)
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer", "Te":
			return nil, false
		case "Connection":
			for _, t := range bytes.Split(value, []byte(",")) {
				if bytes.EqualFold(bytes.TrimSpace(t), []byte("close")) {
					req.Close = true
				}
			}
		}
		var v string
		if known {
			v = x.req.value(key, value)
		} else {
			v = string(value)
		}
		if vs, ok := req.Header[key]; ok {
			req.Header[key] = append(vs, v)
		} else {
			i := len(x.req.vals)
			x.req.vals = append(x.req.vals, v)
			req.Header[key] = x.req.vals[i : i+1 : i+1]
		}
	}
	if hosts != 1 || req.ContentLength < 0 {
		return nil, false
	}
	return req, true
}

// validName reports whether b is a header field name (an RFC 9110 token).
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// frontRequest is a request the front serves, with the strings of the
// last: agents send the same target, host and header values again and
// again, and a string equal to the last one's is not allocated again.
type frontRequest struct {
	r    http.Request
	url  url.URL
	last map[string]string // a known header's last value, by name
	uri  string
	hst  string
	// vals backs the header's value slices: a field's first value is a
	// one-long slice of it, capped so that a second goes elsewhere (else
	// each field would allocate a slice of its own).
	vals []string
}

func (q *frontRequest) target(b []byte) string {
	if string(b) != q.uri {
		q.uri = string(b)
	}
	return q.uri
}

func (q *frontRequest) host(b []byte) string {
	if string(b) != q.hst {
		q.hst = string(b)
	}
	return q.hst
}

func (q *frontRequest) value(key string, b []byte) string {
	if v, ok := q.last[key]; ok && v == string(b) {
		return v
	}
	if q.last == nil {
		q.last = map[string]string{}
	}
	v := string(b)
	q.last[key] = v
	return v
}

// frontBody is a request's body, read from the connection's buffer.
type frontBody struct {
	b []byte
	r bytes.Reader
}

func (b *frontBody) reset(p []byte) { b.b = p; b.r.Reset(p) }

func (b *frontBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *frontBody) Close() error               { return nil }

// take returns what is unread of the body, and reads it: a handler that
// parses it at once need not copy it. The bytes are the connection's, the
// handler's only until it returns.
func (b *frontBody) take() []byte {
	p := b.b[len(b.b)-b.r.Len():]
	b.r.Reset(nil)
	return p
}

// frontResponse is the response writer of the front's requests: the
// answer is buffered and written at once, with its Content-Length.
type frontResponse struct {
	header http.Header
	status int
	body   []byte
	// vals backs the values set by set, as frontRequest.vals does the
	// request's.
	vals []string
}

func (w *frontResponse) Header() http.Header { return w.header }

// set sets a header field to v, as Header().Set does, without a slice of
// its own (the server's middleware sets one on every answer).
func (w *frontResponse) set(key, v string) {
	i := len(w.vals)
	w.vals = append(w.vals, v)
	w.header[key] = w.vals[i : i+1 : i+1]
}

// statusCode is the status written so far (200 when none: what a handler
// that writes nothing answers).
func (w *frontResponse) statusCode() int { return cmp.Or(w.status, http.StatusOK) }

func (w *frontResponse) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
}

func (w *frontResponse) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, b...)
	return len(b), nil
}

// writeTo writes the status line, the header (sorted by name, as net/http
// writes it) and the body. date is the Date header's value.
func (w *frontResponse) writeTo(out []byte, date []byte, close bool) []byte {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.header
	delete(h, "Content-Length")
	delete(h, "Transfer-Encoding")
	if _, ok := h["Content-Type"]; !ok && len(w.body) > 0 {
		h["Content-Type"] = []string{http.DetectContentType(w.body)}
	}
	if close {
		h["Connection"] = []string{"close"}
	}
	if w.status == http.StatusNoContent || w.status == http.StatusNotModified {
		w.body = nil
	}
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(w.status)...)
	out = append(out, "\r\n"...)
	var keys [16]string
	ks := keys[:0]
	for k := range h {
		ks = append(ks, k)
	}
	if _, ok := h["Date"]; !ok {
		ks = append(ks, "Date")
	}
	if w.status != http.StatusNoContent && w.status != http.StatusNotModified {
		ks = append(ks, "Content-Length")
	}
	slices.Sort(ks)
	for _, k := range ks {
		switch vs, ok := h[k]; {
		case ok:
			for _, v := range vs {
				out = appendField(out, k, v)
			}
		case k == "Date":
			out = appendField(out, k, string(date))
		default: // Content-Length
			out = append(out, "Content-Length: "...)
			out = strconv.AppendInt(out, int64(len(w.body)), 10)
			out = append(out, "\r\n"...)
		}
	}
	out = append(out, "\r\n"...)
	return append(out, w.body...)
}

// appendField appends a header line; line breaks in v become spaces, as
// net/http writes them.
func appendField(out []byte, k, v string) []byte {
	out = append(out, k...)
	out = append(out, ": "...)
	i := len(out)
	out = append(out, strings.TrimSpace(v)...)
	for ; i < len(out); i++ {
		if out[i] == '\r' || out[i] == '\n' {
			out[i] = ' '
		}
	}
	return append(out, "\r\n"...)
}

// FastPath reports whether the front answers a request itself: agents'
// heartbeats (each applied once per sequence number, whatever else is in
// flight, so that pipelined ones may be handled together).
func FastPath(method, target string) bool {
	return method == http.MethodPost && target == heartbeatPath
}
