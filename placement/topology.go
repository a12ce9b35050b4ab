// Package placement decides which nodes and GPUs serve a request. It is a
// pure library: a snapshot and a request in, a plan or a reasoned refusal
// out. It does no I/O, reads no clock and uses no randomness of its own.
//
// A Topology is the static tree of one site and SKU, built once per fleet
// generation and shared read-only. A Snapshot holds the free capacity of that
// tree for one planning cycle, indexed by domain; planning reads it, Commit
// and Release change it. A Calendar holds reservations over time (per GPU,
// with the SKU's turnaround between tenants, maintenance windows and spares)
// and answers admission, earliest start, re-choosing and preemption by
// preparing a snapshot for the window asked about and planning on it.
package placement

import (
	"sort"
	"strings"

	"github.com/neocloud/neocloud/fleet"
)

// Reason says why a node cannot serve a request.
type Reason string

const (
	ReasonLifecycle Reason = "lifecycle" // not available
	ReasonHealth    Reason = "health"    // not ok
	ReasonCordoned  Reason = "cordoned"
	ReasonSKU       Reason = "sku"      // another SKU
	ReasonCapacity  Reason = "capacity" // its GPUs are in use
	ReasonSpare     Reason = "spare"    // held back for replacements
	ReasonExcluded  Reason = "excluded" // the request excludes it
	ReasonTopology  Reason = "topology" // free, but no placement meeting the constraint uses it
)

type domain struct {
	path   string
	parent int32   // index at the level above; -1 at the top
	lo, hi int32   // node index range [lo, hi)
	kids   []int32 // indexes at the level below (empty at the last level)
}

type node struct {
	id, host string
	anc      []int32 // domain index at each level
	spare    bool
	blocked  Reason // static reason it cannot be used, or ""
}

// Topology is the tree of one site's nodes of one SKU. Nodes are ordered by
// domain path, so every domain holds a contiguous range of them.
type Topology struct {
	Site      string
	SKU       fleet.SKU
	Levels    []string
	dom       [][]domain
	nodes     []node
	byID      map[string]int32
	capSorted [][]int32 // per level: node counts of its domains, descending
	levelOff  []int32   // per level: where its domains start in a flat counter array
	flat      []int32   // per node, L entries: its domain at each level, in flat counter indexes
	spare     []bool    // per node: a spare
	otherSKU  int       // nodes of the site with another SKU
}

// Build makes the topology of a site for one SKU from fleet nodes. Nodes of
// other SKUs and retired nodes are left out (counted for explanations).
func Build(site fleet.Site, sku fleet.SKU, nodes []fleet.Node) *Topology {
	t := &Topology{Site: site.Name, SKU: sku, Levels: site.Levels, byID: map[string]int32{}}
	var mine []fleet.Node
	for _, n := range nodes {
		switch {
		case n.SiteID != site.ID && n.Site != site.Name, n.Lifecycle == fleet.LifecycleRetired:
		case n.SKU != sku.Name:
			t.otherSKU++
		default:
			mine = append(mine, n)
		}
	}
	sort.Slice(mine, func(i, j int) bool {
		if mine[i].Domain != mine[j].Domain {
			return mine[i].Domain < mine[j].Domain
		}
		return mine[i].Hostname < mine[j].Hostname
	})
	L := len(site.Levels)
	t.dom = make([][]domain, L)
	index := make([]map[string]int32, L)
	for l := range index {
		index[l] = map[string]int32{}
	}
	// All ancestor lists share one array, in node order: the counters a
	// node's change touches are found without chasing pointers.
	ancAll := make([]int32, len(mine)*L)
	for i, n := range mine {
		segs := strings.Split(n.Domain, "/")
		tn := node{id: n.ID, host: n.Hostname, anc: ancAll[i*L : (i+1)*L : (i+1)*L], spare: n.Spare}
		switch {
		case n.Lifecycle != fleet.LifecycleAvailable:
			tn.blocked = ReasonLifecycle
		case n.Health != fleet.HealthOK:
			tn.blocked = ReasonHealth
		case n.Cordoned:
			tn.blocked = ReasonCordoned
		}
		for l := 0; l < L; l++ {
			path := strings.Join(segs[:min(l+1, len(segs))], "/")
			d, ok := index[l][path]
			if !ok {
				parent := int32(-1)
				if l > 0 {
					parent = tn.anc[l-1]
				}
				d = int32(len(t.dom[l]))
				t.dom[l] = append(t.dom[l], domain{path: path, parent: parent, lo: int32(i)})
				index[l][path] = d
				if l > 0 {
					t.dom[l-1][parent].kids = append(t.dom[l-1][parent].kids, d)
				}
			}
			t.dom[l][d].hi = int32(i + 1)
			tn.anc[l] = d
		}
		t.byID[n.ID] = int32(len(t.nodes))
		t.byID[n.Hostname] = int32(len(t.nodes))
		t.nodes = append(t.nodes, tn)
	}
	// Flat counter indexes: level l's domains follow those of the levels
	// above in one array, so a node's counters are L plain increments.
	t.levelOff = make([]int32, L+1)
	for l := 0; l < L; l++ {
		t.levelOff[l+1] = t.levelOff[l] + int32(len(t.dom[l]))
	}
	t.flat = make([]int32, len(t.nodes)*L)
	t.spare = make([]bool, len(t.nodes))
	for i := range t.nodes {
		for l, a := range t.nodes[i].anc {
			t.flat[i*L+l] = t.levelOff[l] + a
		}
		t.spare[i] = t.nodes[i].spare
	}
	t.capSorted = make([][]int32, L)
	for l := range t.dom {
		for _, d := range t.dom[l] {
			t.capSorted[l] = append(t.capSorted[l], d.hi-d.lo)
		}
		sort.Slice(t.capSorted[l], func(i, j int) bool { return t.capSorted[l][i] > t.capSorted[l][j] })
	}
	return t
}

// Nodes returns how many nodes the topology holds.
func (t *Topology) Nodes() int { return len(t.nodes) }

// NodeIndex returns a node's index by id or hostname.
func (t *Topology) NodeIndex(ref string) (int, bool) {
	i, ok := t.byID[ref]
	return int(i), ok
}

// NodeID returns the id of node i.
func (t *Topology) NodeID(i int) string { return t.nodes[i].id }

// Domain returns the path of node i's domain at level l.
func (t *Topology) Domain(i, l int) string { return t.dom[l][t.nodes[i].anc[l]].path }

// level returns the index of a level name, or -1.
func (t *Topology) level(name string) int {
	for i, l := range t.Levels {
		if l == name {
			return i
		}
	}
	return -1
}

// cover returns how many of the largest values it takes to reach k, or -1.
// It counts instead of sorting: values are node counts of domains, small.
func cover(vals []int32, k int) int {
	var mx int32
	sum := 0
	for _, v := range vals {
		if v > mx {
			mx = v
		}
		if v > 0 {
			sum += int(v)
		}
	}
	switch {
	case sum < k || k <= 0:
		if k <= 0 {
			return 0
		}
		return -1
	case int(mx) >= k:
		return 1
	}
	var buf [1025]int32
	cnt := buf[:]
	if int(mx) >= len(buf) {
		cnt = make([]int32, mx+1)
	}
	for _, v := range vals {
		if v > 0 {
			cnt[v]++
		}
	}
	n, got := 0, 0
	for v := int(mx); v > 0; v-- {
		c := int(cnt[v])
		if c == 0 {
			continue
		}
		if need := (k - got + v - 1) / v; need <= c {
			return n + need
		}
		n += c
		got += c * v
	}
	return -1
}

// emptyBound is the fewest domains of level l that k nodes need on an empty
// fleet.
func (t *Topology) emptyBound(l, k int) int {
	sum := 0
	for i, c := range t.capSorted[l] {
		sum += int(c)
		if sum >= k {
			return i + 1
		}
	}
	return -1
}

// sumUp fills the counts of every level above the last from the last's:
// per level, each domain's count is the sum of its children's.
func (t *Topology) sumUp(counts [][]int32) {
	L := len(t.Levels)
	for l := L - 2; l >= 0; l-- {
		off := t.levelOff[l]
		clear(counts[l])
		for x, d := range t.dom[l+1] {
			if n := counts[l+1][x]; n != 0 {
				counts[l][t.flat[int(d.lo)*L+l]-off] += n
			}
		}
	}
}

// cuts splits the nodes into up to n ranges [cuts[k], cuts[k+1]) for
// workers that write per node, per domain of level (and of every level
// below) and per 64-node word: each cut is the start of a domain of level
// and a multiple of 64. Ranges may be empty where no such start lies near
// an even share. A level below 0 (the whole site) is not cut.
func (t *Topology) cuts(n, level int) []int {
	out := []int{0}
	if level < 0 {
		n = 1
	}
	for k := 1; k < n; k++ {
		doms := t.dom[level]
		want := k * len(t.nodes) / n
		at := sort.Search(len(doms), func(x int) bool { return int(doms[x].lo) >= want })
		cut := len(t.nodes)
		for ; at < len(doms); at++ {
			if doms[at].lo%64 == 0 {
				cut = int(doms[at].lo)
				break
			}
		}
		out = append(out, max(cut, out[len(out)-1]))
	}
	return append(out, len(t.nodes))
}
