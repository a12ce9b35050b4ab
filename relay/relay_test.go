package relay

import (
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
