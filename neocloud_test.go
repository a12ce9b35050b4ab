package neocloud

import (
	"sort"
	"testing"
	"time"
)

func TestNewIDSortsInCreationOrder(t *testing.T) {
	var ids []string
	for i := 0; i < 10000; i++ {
		id := NewID(PrefixTenant)
		if !HasPrefix(id, PrefixTenant) {
			t.Fatalf("NewID = %q: not a well-formed %s id", id, PrefixTenant)
		}
		ids = append(ids, id)
	}
	if !sort.StringsAreSorted(ids) {
		t.Error("ids made in sequence do not sort in that order")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
	later := newIDAt(PrefixTenant, time.Now().Add(time.Hour))
	if later <= ids[len(ids)-1] {
		t.Error("an id an hour later sorts before earlier ones")
	}
}

func TestHasPrefix(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"tnt_01M8DSXJ4F3XFPHXFJPSSMGK49", true},
		{"tok_01M8DSXJ4F3XFPHXFJPSSMGK49", false},
		{"tnt_01M8DSXJ4F3XFPHXFJPSSMGK4", false},
		{"tnt_01M8DSXJ4F3XFPHXFJPSSMGK4U", false}, // U is not Crockford
		{"acme", false},
	} {
		if got := HasPrefix(tc.id, PrefixTenant); got != tc.want {
			t.Errorf("HasPrefix(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestPageNormalize(t *testing.T) {
	p := Page{}
	if err := p.Normalize(); err != nil || p.Limit != DefaultLimit {
		t.Errorf("zero page: %+v %v", p, err)
	}
	for _, bad := range []Page{{Limit: -1}, {Limit: MaxLimit + 1}, {Cursor: "!!"}} {
		if err := bad.Normalize(); ErrorKind(err) != KindInvalid {
			t.Errorf("Normalize(%+v) = %v, want invalid", bad, err)
		}
	}
	c := EncodeCursor("tnt_x")
	if k, err := DecodeCursor(c); err != nil || k != "tnt_x" {
		t.Errorf("cursor round trip: %q %v", k, err)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor("tnt_01M8DSXJ4F3XFPHXFJPSSMGK49"))
	f.Add("!!")
	f.Fuzz(func(t *testing.T, c string) {
		k, err := DecodeCursor(c)
		if err == nil && c != "" && EncodeCursor(k) == "" {
			t.Errorf("DecodeCursor(%q) accepted an empty key", c)
		}
	})
}
