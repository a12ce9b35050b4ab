package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// echo answers what it was asked and who served it: "front" when the
// request has no net/http server in its context, else "plain" (the two
// words are as long, so that answers compare byte for byte otherwise).
type echo struct {
	Via    string   `json:"via"`
	Method string   `json:"method"`
	Path   string   `json:"path"`
	Query  string   `json:"query,omitempty"`
	Body   string   `json:"body"`
	Auth   string   `json:"auth,omitempty"`
	Tags   []string `json:"tags,omitempty"` // X-Tag fields, in order
	Host   string   `json:"host"`
	Length int64    `json:"length"`
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	via := "front"
	if r.Context().Value(http.ServerContextKey) != nil {
		via = "plain"
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	switch r.URL.Path {
	case "/fast/empty":
		w.WriteHeader(http.StatusNoContent)
		return
	case "/fast/denied":
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("WWW-Authenticate", `Bearer realm="neocloud"`)
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"status":401}`)
		return
	case "/fast/plain":
		io.WriteString(w, "<html>hello</html>")
		return
	case "/fast/abort":
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "req_1")
	json.NewEncoder(w).Encode(echo{Via: via, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(b),
		Auth: r.Header.Get("Authorization"), Tags: r.Header["X-Tag"], Host: r.Host, Length: r.ContentLength})
}

func fastPrefix(method, target string) bool {
	return method == http.MethodPost && strings.HasPrefix(target, "/fast")
}

// startFront serves echoHandler through a Front on a loopback port.
func startFront(t *testing.T) (*Front, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Front{Server: &http.Server{Handler: http.HandlerFunc(echoHandler), ReadHeaderTimeout: 10 * time.Second}, Fast: fastPrefix}
	served := make(chan error, 1)
	go func() { served <- f.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return f, ln.Addr().String()
}

// startPlain serves echoHandler with net/http alone: what the front must
// answer alike.
func startPlain(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(echoHandler)}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

func post(path, body string, extra ...string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: nc\r\nAuthorization: Bearer s3cret\r\n%sContent-Length: %d\r\n\r\n%s", path, strings.Join(extra, ""), len(body), body)
}

// answer is a response as compared: the Date header is left out.
type answer struct {
	Status int
	Header http.Header
	Body   string
	Closed bool // the connection closed after it
	Dated  bool // it had a Date header
}

// exchanger is what exchange needs of a test (testing.T or rapid.T).
type exchanger interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

// exchange writes raw to a new connection (in chunks of at most chunk
// bytes, if set) and reads n answers.
func exchange(t exchanger, addr, raw string, n, chunk int) []answer {
	t.Helper()
	return exchangeCut(t, addr, raw, n, chunk, 0)
}

// exchangeCut is exchange with raw's last tail bytes written at once.
func exchangeCut(t exchanger, addr, raw string, n, chunk, tail int) []answer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		b := []byte(raw)
		for len(b) > 0 {
			k := len(b)
			if chunk > 0 && k > tail {
				k = min(k-tail, chunk)
			}
			if _, err := c.Write(b[:k]); err != nil {
				return
			}
			b = b[k:]
		}
	}()
	br := bufio.NewReader(c)
	var out []answer
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if resp.StatusCode == http.StatusContinue {
			i--
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		a := answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Dated: resp.Header.Get("Date") != ""}
		resp.Header.Del("Date")
		if resp.Close {
			// The server said it closes: it must have.
			_, err := br.ReadByte()
			a.Closed = err == io.EOF
		}
		out = append(out, a)
	}
	return out
}

// via reads who served an echoed answer.
func via(t *testing.T, a answer) string {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(a.Body), &e); err != nil {
		t.Fatalf("not an echo: %q", a.Body)
	}
	return e.Via
}

func TestFrontAnswersAsNetHTTP(t *testing.T) {
	_, front := startFront(t)
	plain := startPlain(t)
	for _, tc := range []struct {
		name string
		req  string
	}{
		{"json", post("/fast/x", `{"seq":1}`)},
		{"query", post("/fast/x?a=1&b=%20", `{}`)},
		{"escaped path", post("/fast/%7Ex", `{}`)},
		{"no body", post("/fast/x", ``)},
		{"no content", post("/fast/empty", `{}`)},
		{"problem", post("/fast/denied", `{}`)},
		{"sniffed type", post("/fast/plain", `{}`)},
		{"close", post("/fast/x", `{}`, "Connection: close\r\n")},
		{"unknown headers", post("/fast/x", `{}`, "X-Custom: a\r\nx-custom: b\r\nAccept:  */* \r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := exchange(t, plain, tc.req, 1, 0)
			got := exchange(t, front, tc.req, 1, 7)
			want[0].Body = strings.Replace(want[0].Body, `"via":"plain"`, `"via":"front"`, 1)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("answer (-net/http +front):\n%s", diff)
			}
			if want[0].Status == 200 && strings.HasPrefix(got[0].Body, "{") && via(t, got[0]) != "front" {
				t.Errorf("served by %s, not the front", via(t, got[0]))
			}
		})
	}
}

func TestFrontHandsOver(t *testing.T) {
	_, front := startFront(t)
	plain := startPlain(t)
	for _, tc := range []struct {
		name string
		reqs []string
		via  []string
	}{
		{"fast, then another", []string{post("/fast/a", "1"), "GET /other HTTP/1.1\r\nHost: nc\r\n\r\n", post("/fast/b", "2")}, []string{"front", "plain", "plain"}},
		{"another first", []string{"GET /other HTTP/1.1\r\nHost: nc\r\n\r\n", post("/fast/b", "2")}, []string{"plain", "plain"}},
		{"chunked", []string{post("/fast/a", "1"), "POST /fast/c HTTP/1.1\r\nHost: nc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"}, []string{"front", "plain"}},
		{"expect", []string{"POST /fast/e HTTP/1.1\r\nHost: nc\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"}, []string{"plain"}},
		{"HTTP/1.0", []string{"POST /fast/a HTTP/1.0\r\nHost: nc\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n1"}, []string{"plain"}},
		{"same length twice", []string{"POST /fast/a HTTP/1.1\r\nHost: nc\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n1"}, []string{"plain"}},
		{"no length", []string{"POST /fast/a HTTP/1.1\r\nHost: nc\r\n\r\n"}, []string{"plain"}},
		{"large body", []string{post("/fast/big", strings.Repeat("x", fastMaxBody+1))}, []string{"plain"}},
		{"large header", []string{post("/fast/a", "1", "X-Pad: "+strings.Repeat("p", fastMaxHeader)+"\r\n")}, []string{"plain"}},
		{"other method", []string{"PUT /fast/a HTTP/1.1\r\nHost: nc\r\nContent-Length: 1\r\n\r\n1"}, []string{"plain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := strings.Join(tc.reqs, "")
			want := exchange(t, plain, raw, len(tc.reqs), 0)
			for _, chunk := range []int{0, 1, 100} {
				got := exchange(t, front, raw, len(tc.reqs), chunk)
				var vias []string
				for i := range got {
					vias = append(vias, via(t, got[i]))
					got[i].Body = strings.Replace(got[i].Body, `"via":"front"`, `"via":"plain"`, 1)
				}
				if diff := cmp.Diff(tc.via, vias); diff != "" {
					t.Errorf("chunks of %d: served by (-want +got):\n%s", chunk, diff)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("chunks of %d: answers (-net/http +front):\n%s", chunk, diff)
				}
			}
		})
	}
}

// A malformed request the front would otherwise serve gets net/http's
// answer to it.
func TestFrontLeavesBadRequestsToNetHTTP(t *testing.T) {
	_, front := startFront(t)
	plain := startPlain(t)
	for _, raw := range []string{
		"POST /fast/a HTTP/1.1\r\nHost: nc\r\nContent-Length: 1\r\nBad Name: x\r\n\r\n1",
		"POST /fast/a HTTP/1.1\r\nHost: nc\r\nContent-Length: 1\r\nX-Folded: a\r\n b\r\n\r\n1",
		"POST /fast/a HTTP/1.1\r\nContent-Length: 1\r\n\r\n1",
		"POST /fast/a HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 1\r\n\r\n1",
		"POST /fast/a HTTP/1.1\r\nHost: nc\r\nContent-Length: -1\r\n\r\n",
		"POST /fast/a HTTP/1.1\r\nHost: nc\r\nContent-Length: 1\r\nX-Ctl: a\x01b\r\n\r\n1",
		"POST /fast/a HTTP/1.1\r\nHost: nc\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n1",
	} {
		// The head goes in pieces, its end and the body at once: net/http
		// answers a bad head and closes, and a body arriving after that
		// would reset the connection before the answer is read.
		tail := len(raw) - strings.Index(raw, "\r\n\r\n")
		want := exchangeCut(t, plain, raw, 1, 0, 0)
		got := exchangeCut(t, front, raw, 1, 3, tail)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q (-net/http +front):\n%s", raw, diff)
		}
	}
}

// Any mix of requests, pipelined and cut anywhere, is answered in order
// and each as it would be alone.
func TestFrontPipelines(t *testing.T) {
	_, front := startFront(t)
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 8).Draw(t, "n")
		var raw strings.Builder
		var want []echo
		handed := false
		for i := 0; i < n; i++ {
			// Bodies up to a few KiB, so that requests straddle the
			// front's read buffer.
			body := strings.Repeat(rapid.StringMatching(`[a-z{}":0-9]{0,40}`).Draw(t, "body"), rapid.IntRange(1, 100).Draw(t, "repeat"))
			switch rapid.IntRange(0, 3).Draw(t, "kind") {
			case 0, 1:
				// What one request sends is not seen by the next, which
				// the front answers with the same structures: an
				// Authorization header or none, the same host or another.
				auth := rapid.SampledFrom([]string{"", "Bearer s3cret", "Bearer other"}).Draw(t, "auth")
				host := rapid.SampledFrom([]string{"nc", "nc2"}).Draw(t, "host")
				fmt.Fprintf(&raw, "POST /fast/%d HTTP/1.1\r\nHost: %s\r\n", i, host)
				if auth != "" {
					fmt.Fprintf(&raw, "Authorization: %s\r\n", auth)
				}
				// A field given more than once keeps every value, in order.
				tags := rapid.SliceOfN(rapid.SampledFrom([]string{"a", "b", "c"}), 0, 3).Draw(t, "tags")
				for _, tag := range tags {
					fmt.Fprintf(&raw, "X-Tag: %s\r\n", tag)
				}
				if len(tags) == 0 {
					tags = nil
				}
				fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n%s", len(body), body)
				want = append(want, echo{Via: map[bool]string{false: "front", true: "plain"}[handed], Method: "POST", Path: fmt.Sprintf("/fast/%d", i), Body: body, Auth: auth, Tags: tags, Host: host, Length: int64(len(body))})
			case 2:
				fmt.Fprintf(&raw, "PUT /slow/%d HTTP/1.1\r\nHost: nc\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
				handed = true
				want = append(want, echo{Via: "plain", Method: "PUT", Path: fmt.Sprintf("/slow/%d", i), Body: body, Host: "nc", Length: int64(len(body))})
			case 3:
				fmt.Fprintf(&raw, "POST /fast/%d HTTP/1.1\r\nHost: nc\r\nTransfer-Encoding: chunked\r\n\r\n", i)
				if body != "" {
					fmt.Fprintf(&raw, "%x\r\n%s\r\n", len(body), body)
				}
				raw.WriteString("0\r\n\r\n")
				handed = true
				want = append(want, echo{Via: "plain", Method: "POST", Path: fmt.Sprintf("/fast/%d", i), Body: body, Host: "nc", Length: -1})
			}
		}
		chunk := rapid.IntRange(1, 6000).Draw(t, "chunk")
		got := exchange(t, front, raw.String(), n, chunk)
		for i, a := range got {
			var e echo
			if err := json.Unmarshal([]byte(a.Body), &e); err != nil || a.Status != 200 {
				t.Fatalf("answer %d: %d %q", i, a.Status, a.Body)
			}
			if diff := cmp.Diff(want[i], e); diff != "" {
				t.Fatalf("answer %d (-want +got):\n%s", i, diff)
			}
		}
	})
}

// A handler that aborts gets no answer: the pipelined requests before it
// are answered, then the connection closes; the next is served.
func TestFrontClosesOnAbortAndServesOn(t *testing.T) {
	_, front := startFront(t)
	for _, tc := range []struct {
		raw     string
		answers []string
	}{
		{post("/fast/abort", "1"), nil},
		{post("/fast/a", "1") + post("/fast/b", "2") + post("/fast/abort", "3") + post("/fast/c", "4"), []string{"/fast/a", "/fast/b"}},
	} {
		c, err := net.Dial("tcp", front)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, tc.raw)
		br := bufio.NewReader(c)
		for _, want := range tc.answers {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("answer to %s: %v", want, err)
			}
			var e echo
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Path != want {
				t.Fatalf("answer to %s: %+v, %v", want, e, err)
			}
			resp.Body.Close()
		}
		if b, err := io.ReadAll(br); err != nil || len(b) != 0 {
			t.Fatalf("after %d answers and an aborted handler: %q, %v; want a closed connection and no more answers", len(tc.answers), b, err)
		}
	}
	if got := exchange(t, front, post("/fast/x", "ok"), 1, 0); via(t, got[0]) != "front" {
		t.Errorf("next connection served by %s", via(t, got[0]))
	}
}

func TestFrontShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	})
	f := &Front{Server: &http.Server{Handler: h}, Fast: fastPrefix}
	served := make(chan error, 1)
	go func() { served <- f.Serve(ln) }()
	addr := ln.Addr().String()

	// An idle kept connection, one handed to net/http, and one in flight.
	idle, _ := net.Dial("tcp", addr)
	defer idle.Close()
	idleBR := bufio.NewReader(idle)
	io.WriteString(idle, post("/fast/x", "1"))
	resp, err := http.ReadResponse(idleBR, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("idle's first answer: %v %v", resp, err)
	}
	io.ReadAll(resp.Body)
	busy, _ := net.Dial("tcp", addr)
	defer busy.Close()
	io.WriteString(busy, post("/fast/slow", "1"))
	<-entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- f.Shutdown(ctx)
	}()
	// The idle connection closes; the request in flight is answered.
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idleBR.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after shutdown: %v, want EOF", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "done" {
		t.Errorf("in-flight answer %q", b)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("still accepting after shutdown")
	}
}

// A connection that sends nothing is closed after ReadHeaderTimeout, as
// net/http closes it; a kept one waits for its next request.
func TestFrontSilentConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Front{Server: &http.Server{Handler: http.HandlerFunc(echoHandler), ReadHeaderTimeout: 200 * time.Millisecond}, Fast: fastPrefix}
	go f.Serve(ln)
	defer f.Shutdown(context.Background())
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("a silent connection: %v, want EOF", err)
	}
	kept, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	br := bufio.NewReader(kept)
	for i := range 2 {
		io.WriteString(kept, post("/fast/x", "1"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
		time.Sleep(400 * time.Millisecond) // longer than the header timeout, idle
	}
}

// Requests that straddle the front's read buffer (4 KiB), pipelined and
// cut anywhere, are read whole.
func TestFrontStraddlesItsBuffer(t *testing.T) {
	_, front := startFront(t)
	bodies := []string{"1", strings.Repeat("y", 3000), strings.Repeat("z", 5000), "2", strings.Repeat("w", 4000)}
	var raw strings.Builder
	for i, b := range bodies {
		raw.WriteString(post(fmt.Sprintf("/fast/%d", i), b))
	}
	for _, chunk := range []int{0, 1000, 4096, 4097} {
		got := exchange(t, front, raw.String(), len(bodies), chunk)
		for i, a := range got {
			var e echo
			if err := json.Unmarshal([]byte(a.Body), &e); err != nil || e.Via != "front" || e.Body != bodies[i] {
				t.Errorf("chunks of %d, answer %d: %d %.80q", chunk, i, a.Status, a.Body)
			}
		}
	}
}

// A kept connection that stops in the middle of a request is closed after
// ReadHeaderTimeout (in its head) or ReadTimeout (in its body), as net/http
// closes it, not after the longer IdleTimeout of a wait between requests.
func TestFrontStalledRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Front{Server: &http.Server{Handler: http.HandlerFunc(echoHandler), ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond},
		Fast: fastPrefix, IdleTimeout: time.Minute}
	go f.Serve(ln)
	defer f.Shutdown(context.Background())
	for _, stall := range []string{
		"POST /fast/x HTTP/1.1\r\nHost: nc\r\n",
		"POST /fast/x HTTP/1.1\r\nHost: nc\r\nContent-Length: 10\r\n\r\n123",
	} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		io.WriteString(c, post("/fast/x", "1"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		io.WriteString(c, stall)
		c.SetReadDeadline(time.Now().Add(20 * time.Second)) // well short of IdleTimeout
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("stalled in %q: %v, want EOF", stall, err)
		}
	}
}

// Pipelined requests that arrive together are handled together (each may
// wait on the others, as heartbeats wait for one group commit), and
// answered in order.
func TestFrontAnswersPipelinedTogether(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	var entered sync.WaitGroup
	entered.Add(n)
	all := make(chan struct{})
	go func() { entered.Wait(); close(all) }()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Done()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			http.Error(w, "handled alone", http.StatusGatewayTimeout)
			return
		}
		// The later requests finish first.
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/fast/"))
		time.Sleep(time.Duration(n-i) * 10 * time.Millisecond)
		io.WriteString(w, r.URL.Path)
	})
	f := &Front{Server: &http.Server{Handler: h}, Fast: fastPrefix}
	go f.Serve(ln)
	defer f.Shutdown(context.Background())
	var raw strings.Builder
	for i := range n {
		raw.WriteString(post(fmt.Sprintf("/fast/%d", i), "x"))
	}
	got := exchange(t, ln.Addr().String(), raw.String(), n, 0)
	for i, a := range got {
		if want := fmt.Sprintf("/fast/%d", i); a.Status != 200 || a.Body != want {
			t.Errorf("answer %d: %d %q, want %q", i, a.Status, a.Body, want)
		}
	}
}
