package pricing

import (
	"testing"
	"time"
)

func TestRate(t *testing.T) {
	p := Price{Class: "reserved", ListMicros: 2_500_000,
		TermDiscounts: []Tier{{Min: 30 * 86400, Percent: 10}, {Min: 365 * 86400, Percent: 25}},
		VolumeTiers:   []Tier{{Min: 1024, Percent: 12}}}
	for _, c := range []struct {
		name string
		gpus int
		d    time.Duration
		want Micros
	}{
		{"no discount", 8, 7 * 24 * time.Hour, 2_500_000},
		{"one month", 8, 30 * 24 * time.Hour, 2_250_000},
		{"volume beats term", 2048, 30 * 24 * time.Hour, 2_200_000},
		{"one year beats volume", 2048, 365 * 24 * time.Hour, 1_875_000},
		{"open-ended gets volume only", 1024, 0, 2_200_000},
	} {
		if got := p.Rate(c.gpus, c.d, 0); got != c.want {
			t.Errorf("%s: rate %d, want %d", c.name, got, c.want)
		}
	}
	spot := Price{Class: "spot", SpotFloor: 800_000, SpotCeiling: 2_000_000}
	for _, c := range []struct {
		u    float64
		want Micros
	}{{0, 800_000}, {0.5, 1_100_000}, {1, 2_000_000}, {1.5, 2_000_000}, {-1, 800_000}} {
		if got := spot.Rate(8, 0, c.u); got != c.want {
			t.Errorf("spot at %v: %d, want %d", c.u, got, c.want)
		}
	}
}

func TestTotal(t *testing.T) {
	// 200,000 GPUs for three years at $2.05: the intermediate overflows int64.
	got, err := Total(2_050_000, 200_000, 3*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := Micros(2_050_000) * 200_000 * 3 * 365 * 24; got != want {
		t.Fatalf("total %d, want %d", got, want)
	}
	// Half up, once: 1 µ/GPU-hour for 1,800 s is half a micro.
	if got, _ := Total(1, 1, 1800*time.Second); got != 1 {
		t.Fatalf("half a micro rounds to %d, want 1", got)
	}
	if got, _ := Total(1, 1, 1799*time.Second); got != 0 {
		t.Fatalf("just under half a micro rounds to %d, want 0", got)
	}
	if _, err := Total(9e18, 1000, 1000*time.Hour); err == nil {
		t.Fatal("an overflowing total was accepted")
	}
}

func TestMicros(t *testing.T) {
	for in, want := range map[string]Micros{"2.05": 2_050_000, "0.000001": 1, "3": 3_000_000, ".5": 500_000, "-1.25": -1_250_000} {
		got, err := ParseMicros("rate", in)
		if err != nil || got != want {
			t.Errorf("ParseMicros(%q) = %d, %v; want %d", in, got, err, want)
		}
		if back, _ := ParseMicros("rate", FormatMicros(got)); back != got {
			t.Errorf("FormatMicros(%d) = %q does not read back", got, FormatMicros(got))
		}
	}
	for _, bad := range []string{"", "1.0000001", "abc", "1.2.3", "--1", "+1", "."} {
		if _, err := ParseMicros("rate", bad); err == nil {
			t.Errorf("ParseMicros(%q) accepted", bad)
		}
	}
	if got := FormatMicros(2_050_000); got != "2.05" {
		t.Errorf("FormatMicros = %q", got)
	}
}

func FuzzParseMicros(f *testing.F) {
	for _, s := range []string{"2.05", "0", "-3.5", "1e5", "99999999999.999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseMicros("rate", s)
		if err != nil {
			return
		}
		if back, err := ParseMicros("rate", FormatMicros(v)); err != nil || back != v {
			t.Fatalf("%q → %d → %q → %d, %v", s, v, FormatMicros(v), back, err)
		}
	})
}
