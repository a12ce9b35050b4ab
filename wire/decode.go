package wire

import (
	"strconv"
	"sync/atomic"
	"time"
)

// DecodeHeartbeat decodes the common shape of a heartbeat, as agents write
// it, in a fraction of the time a reflective decoder takes (the server
// reads one from every node every few seconds). It reports false, leaving
// hb to be discarded, for anything else it meets: escapes in strings,
// nulls but for lists, unknown or repeated keys, numbers out of range or
// of the wrong kind, syntax errors. The caller then decodes b by
// encoding/json's rules, whose answer (a value, or the error to report)
// stands. When it reports true,
// hb is what encoding/json.Unmarshal makes of b (FuzzDecodeHeartbeat).
// b must be valid UTF-8.
func DecodeHeartbeat(b []byte, hb *Heartbeat) bool {
	d := decoder{b: b}
	ok := d.object(func(key []byte) (bit uint16, ok bool) {
		switch string(key) {
		case "version":
			bit, ok = 1<<0, d.int(&hb.Version)
		case "seq":
			bit, ok = 1<<1, d.int64(&hb.Seq)
		case "at":
			bit, ok = 1<<2, d.time(&hb.At)
		case "gpus":
			bit, ok = 1<<3, list(&d, &hb.GPUs, d.gpu)
		case "nics":
			bit, ok = 1<<4, list(&d, &hb.NICs, d.nic)
		case "uptime_s":
			bit, ok = 1<<5, d.int64(&hb.UptimeS)
		case "agent_version":
			bit, ok = 1<<6, d.str(&hb.AgentVersion)
		case "driver_version":
			bit, ok = 1<<7, d.str(&hb.DriverVersion)
		case "checks":
			bit, ok = 1<<8, list(&d, &hb.Checks, d.check)
		case "results":
			bit, ok = 1<<9, list(&d, &hb.Results, d.result)
		}
		return bit, ok
	})
	return ok && d.end()
}

// list reads an array into *s (nil until then), or null (leaving it nil),
// as encoding/json does.
func list[T any](d *decoder, s *[]T, elem func(*T) bool) bool {
	if d.null() {
		return true
	}
	ok := d.array(func() bool {
		var zero T
		if *s == nil {
			*s = make([]T, 0, 8) // a node's GPUs or NICs, mostly
		}
		*s = append(*s, zero)
		return elem(&(*s)[len(*s)-1])
	})
	if ok && *s == nil {
		*s = []T{}
	}
	return ok
}

// null reads a null, if that is what comes next.
func (d *decoder) null() bool {
	if d.ws() && len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		if d.delim() {
			return true
		}
		d.i -= 4
	}
	return false
}

func (d *decoder) gpu(g *GPUSample) bool {
	return d.object(func(key []byte) (bit uint16, ok bool) {
		switch string(key) {
		case "index":
			bit, ok = 1<<0, d.int(&g.Index)
		case "power_w":
			bit, ok = 1<<1, d.float(&g.PowerW)
		case "energy_j":
			bit, ok = 1<<2, d.uint64(&g.EnergyJ)
		case "temp_c":
			bit, ok = 1<<3, d.float(&g.TempC)
		case "util_pct":
			bit, ok = 1<<4, d.float(&g.UtilPct)
		case "mem_used_mib":
			bit, ok = 1<<5, d.int(&g.MemUsedMiB)
		case "ecc_corrected":
			bit, ok = 1<<6, d.uint64(&g.ECCCorrected)
		case "ecc_uncorrected":
			bit, ok = 1<<7, d.uint64(&g.ECCUncorrected)
		case "xids":
			bit, ok = 1<<8, list(d, &g.XIDs, func(x *XID) bool {
				return d.object(func(key []byte) (bit uint16, ok bool) {
					switch string(key) {
					case "code":
						bit, ok = 1, d.int(&x.Code)
					case "at":
						bit, ok = 2, d.time(&x.At)
					}
					return bit, ok
				})
			})
		case "throttle":
			bit, ok = 1<<9, list(d, &g.Throttle, d.str)
		case "lost":
			bit, ok = 1<<10, d.bool(&g.Lost)
		case "row_remap_pending":
			bit, ok = 1<<11, d.bool(&g.RowRemapPending)
		case "row_remap_failed":
			bit, ok = 1<<12, d.bool(&g.RowRemapFailed)
		}
		return bit, ok
	})
}

func (d *decoder) nic(n *NICSample) bool {
	return d.object(func(key []byte) (bit uint16, ok bool) {
		switch string(key) {
		case "name":
			bit, ok = 1, d.str(&n.Name)
		case "up":
			bit, ok = 2, d.bool(&n.Up)
		case "errors":
			bit, ok = 4, d.uint64(&n.Errors)
		}
		return bit, ok
	})
}

func (d *decoder) check(c *Check) bool {
	return d.object(func(key []byte) (bit uint16, ok bool) {
		switch string(key) {
		case "name":
			bit, ok = 1, d.str(&c.Name)
		case "ok":
			bit, ok = 2, d.bool(&c.OK)
		case "message":
			bit, ok = 4, d.str(&c.Message)
		}
		return bit, ok
	})
}

func (d *decoder) result(r *Result) bool {
	return d.object(func(key []byte) (bit uint16, ok bool) {
		switch string(key) {
		case "id":
			bit, ok = 1, d.str(&r.ID)
		case "state":
			bit, ok = 2, d.str(&r.State)
		case "message":
			bit, ok = 4, d.str(&r.Message)
		}
		return bit, ok
	})
}

// decoder scans JSON for DecodeHeartbeat; every method reports false for
// what it leaves to encoding/json.
type decoder struct {
	b []byte
	i int
}

// ws skips white space and reports whether input remains.
func (d *decoder) ws() bool {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return true
		}
	}
	return false
}

// end reports whether only white space remains.
func (d *decoder) end() bool { return !d.ws() }

// object reads an object, calling field for each key with the decoder at
// its value. field returns the key's bit (0 for a key it does not know) and
// whether its value was read; a key met twice is left to encoding/json.
func (d *decoder) object(field func(key []byte) (bit uint16, ok bool)) bool {
	var seen uint16
	if !d.ws() || d.b[d.i] != '{' {
		return false
	}
	d.i++
	if !d.ws() {
		return false
	}
	if d.b[d.i] == '}' {
		d.i++
		return true
	}
	for {
		key, ok := d.raw()
		if !ok || !d.ws() || d.b[d.i] != ':' {
			return false
		}
		d.i++
		bit, ok := field(key)
		if !ok || bit == 0 || seen&bit != 0 || !d.ws() {
			return false
		}
		seen |= bit
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return true
		default:
			return false
		}
	}
}

// array reads an array, calling elem for each element.
func (d *decoder) array(elem func() bool) bool {
	if !d.ws() || d.b[d.i] != '[' {
		return false
	}
	d.i++
	if !d.ws() {
		return false
	}
	if d.b[d.i] == ']' {
		d.i++
		return true
	}
	for {
		if !elem() || !d.ws() {
			return false
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return true
		default:
			return false
		}
	}
}

// raw reads a string without escapes or control characters and returns
// its contents.
func (d *decoder) raw() ([]byte, bool) {
	if !d.ws() || d.b[d.i] != '"' {
		return nil, false
	}
	start := d.i + 1
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			return d.b[start:j], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (d *decoder) str(s *string) bool {
	b, ok := d.raw()
	if ok {
		*s = intern(b)
	}
	return ok
}

// interned holds strings met before, by a hash of their bytes, one to a
// slot: what agents send as strings is mostly the same few values on
// every node and at every heartbeat (NIC names, versions, throttle
// reasons), and one found here is not allocated again.
var interned [1024]atomic.Pointer[string]

// intern returns b as a string, from interned when it is there. The slot
// is b's FNV-1a hash: the same on every run, so that which strings share
// one is known (TestDecodeInterns); two that do take turns, allocated
// each time, and still read back as themselves.
func intern(b []byte) string {
	if len(b) == 0 || len(b) > 64 {
		return string(b)
	}
	h := uint32(2166136261)
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	slot := &interned[h%uint32(len(interned))]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}

func (d *decoder) time(t *time.Time) bool {
	if !d.ws() {
		return false
	}
	start := d.i
	if _, ok := d.raw(); !ok {
		return false
	}
	// The same method encoding/json calls, on the same literal.
	return t.UnmarshalJSON(d.b[start:d.i]) == nil
}

func (d *decoder) bool(v *bool) bool {
	if !d.ws() {
		return false
	}
	rest := d.b[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*v = true
		d.i += 4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*v = false
		d.i += 5
	default:
		return false
	}
	return d.delim()
}

// delim reports whether what follows a literal may end it.
func (d *decoder) delim() bool {
	if d.i == len(d.b) {
		return true
	}
	switch d.b[d.i] {
	case ' ', '\t', '\n', '\r', ',', '}', ']':
		return true
	}
	return false
}

// integer reads an integer literal: an optional minus, then 0 or digits
// not starting with 0; a fraction or exponent is left to encoding/json.
func (d *decoder) integer() ([]byte, bool) {
	if !d.ws() {
		return nil, false
	}
	start := d.i
	if d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	n := d.i - digits
	if n == 0 || n > 1 && d.b[digits] == '0' || !d.delim() {
		return nil, false
	}
	return d.b[start:d.i], true
}

func (d *decoder) int64(v *int64) bool {
	lit, ok := d.integer()
	if !ok {
		return false
	}
	neg := lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) > 18 { // might not fit: strconv decides
		n, err := strconv.ParseInt(string(d.b[d.i-len(lit)-b2i(neg):d.i]), 10, 64)
		*v = n
		return err == nil
	}
	var n int64
	for _, c := range lit {
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	*v = n
	return true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (d *decoder) int(v *int) bool {
	var n int64
	ok := d.int64(&n)
	*v = int(n)
	return ok && int64(*v) == n
}

func (d *decoder) uint64(v *uint64) bool {
	lit, ok := d.integer()
	if !ok || lit[0] == '-' {
		return false
	}
	if len(lit) > 19 { // might not fit: strconv decides
		n, err := strconv.ParseUint(string(lit), 10, 64)
		*v = n
		return err == nil
	}
	var n uint64
	for _, c := range lit {
		n = n*10 + uint64(c-'0')
	}
	*v = n
	return true
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float reads a JSON number as encoding/json does for a float64.
func (d *decoder) float(v *float64) bool {
	if !d.ws() {
		return false
	}
	start := d.i
	neg := d.b[d.i] == '-'
	if neg {
		d.i++
	}
	// mant collects the digits while they are few enough to be exact.
	var mant uint64
	ndigits, nfrac := 0, 0
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		mant = mant*10 + uint64(d.b[d.i]-'0')
		ndigits++
		d.i++
	}
	if n := d.i - digits; n == 0 || n > 1 && d.b[digits] == '0' {
		return false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		frac := d.i
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			mant = mant*10 + uint64(d.b[d.i]-'0')
			ndigits++
			d.i++
		}
		if d.i == frac {
			return false
		}
		nfrac = d.i - frac
	}
	// Few digits and no exponent: an exact mantissa divided by an exact
	// power of ten is correctly rounded, as strconv would round it.
	if ndigits <= 15 && nfrac < len(pow10) && d.delim() {
		f := float64(mant) / pow10[nfrac]
		if neg {
			f = -f
		}
		*v = f
		return true
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		exp := d.i
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
		}
		if d.i == exp {
			return false
		}
	}
	if !d.delim() {
		return false
	}
	f, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
	*v = f
	return err == nil
}
