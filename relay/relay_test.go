package relay

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestNewRefuses: a server URL the relay cannot forward to, or sizes out of
// range, are refused, naming what is wrong.
func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Server: "https://nc.example:8443"}, "want http://host:port"},
		{Options{Server: "http://"}, "want http://host:port"},
		{Options{Server: "http://nc:8080/api"}, "want http://host:port"},
		{Options{Server: "http://nc:8080", Conns: -1}, "conns -1"},
		{Options{Server: "http://nc:8080", Timeout: -1}, "timeout -1"},
	} {
		r, err := New(tc.o)
		if err == nil {
			r.Close()
			t.Errorf("%+v: accepted", tc.o)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want it to say %q", tc.o, err, tc.want)
		}
	}
	r, err := New(Options{Server: "http://nc"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.addr != "nc:80" || len(r.lines) != 4 {
		t.Errorf("defaults: dial %q on %d lines, want nc:80 on 4", r.addr, len(r.lines))
	}
}

// TestRelayForwards: a heartbeat reaches the server with its end-to-end
// headers, the relay's hop-by-hop ones dropped and the agent's address
// added to X-Forwarded-For; the server's status and headers come back; an
// answer too large to relay is refused without losing the connection, and
// a heartbeat too large is refused without reaching the server.
func TestRelayForwards(t *testing.T) {
	seen := make(chan http.Header, 8)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- r.Header.Clone()
		if r.Header.Get("Authorization") == "Bearer big" {
			w.Write(make([]byte, maxBody+1))
			return
		}
		w.Header().Set("X-Answer", "yes")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "%s %s", r.URL.RequestURI(), body)
	}))
	defer upstream.Close()
	r, err := New(Options{Server: upstream.URL, Conns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	front := httptest.NewServer(r)
	defer front.Close()
	post := func(token string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, front.URL+HeartbeatPath+"?x=1", strings.NewReader(`{"seq":1}`))
		req.Header.Set("Authorization", "Bearer "+token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := post("small", map[string]string{"X-Forwarded-For": "10.0.0.9", "Proxy-Authorization": "Basic eDp5", "X-Trace": "t1"})
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Answer") != "yes" || body != HeartbeatPath+`?x=1 {"seq":1}` {
		t.Errorf("answer %d %v %q", resp.StatusCode, resp.Header, body)
	}
	h := <-seen
	if h.Get("Authorization") != "Bearer small" || h.Get("X-Trace") != "t1" || h.Get("Proxy-Authorization") != "" || h.Get("X-Forwarded-For") != "10.0.0.9, 127.0.0.1" {
		t.Errorf("the server got %v", h)
	}
	if resp, body := post("big", nil); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "urn:neocloud:problem:unavailable") {
		t.Errorf("a too large answer: %d %s", resp.StatusCode, body)
	}
	<-seen
	if resp, _ := post("small", nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("after a too large answer: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, front.URL+HeartbeatPath, strings.NewReader(strings.Repeat(" ", maxBody+1)))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a heartbeat over %d bytes: %v %v", maxBody, resp, err)
	} else {
		resp.Body.Close()
	}
	if st := r.Stats(); st.Dials != 1 || st.Heartbeats != 3 || st.Unanswered != 1 {
		t.Errorf("stats %+v, want 3 heartbeats on one connection, one of them unanswered", st)
	}
	mr, err := http.Get(front.URL + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer mr.Body.Close()
	b, _ := io.ReadAll(mr.Body)
	// The server saw the last small heartbeat, not the one too large.
	if !strings.Contains(string(b), "\nneocloud_relay_heartbeats_too_large_total 1\n") || len(seen) != 1 {
		t.Errorf("the relay's metrics (%d heartbeats seen by the server unread) say:\n%s", len(seen), b)
	}
}
