package fleet

import (
	"sort"
	"strings"
	"sync"

	"github.com/neocloud/neocloud"
)

// Snapshot is the in-memory fleet that fast reads use. The store is the
// truth: the snapshot is loaded from it at start and updated after each
// commit. It is safe for concurrent use; readers get copies.
type Snapshot struct {
	mu     sync.RWMutex
	sites  map[string]*Site // by id
	byName map[string]*Site
	nodes  []*Node // sorted by id
	byID   map[string]*Node
	byHost map[string]*Node
	gen    uint64 // bumped by every change
}

// Gen returns a number that changes whenever the snapshot does, so that
// structures derived from it (placement topologies) know to rebuild.
func (s *Snapshot) Gen() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// NewSnapshot returns an empty snapshot.
func NewSnapshot() *Snapshot {
	return &Snapshot{sites: map[string]*Site{}, byName: map[string]*Site{}, byID: map[string]*Node{}, byHost: map[string]*Node{}}
}

// Load replaces the snapshot's contents.
func (s *Snapshot) Load(sites []Site, nodes []Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.sites, s.byName = map[string]*Site{}, map[string]*Site{}
	s.byID, s.byHost = make(map[string]*Node, len(nodes)), make(map[string]*Node, len(nodes))
	s.nodes = s.nodes[:0]
	for i := range sites {
		st := sites[i]
		s.sites[st.ID], s.byName[st.Name] = &st, &st
	}
	for i := range nodes {
		n := nodes[i]
		s.nodes = append(s.nodes, &n)
		s.byID[n.ID], s.byHost[n.Hostname] = &n, &n
	}
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].ID < s.nodes[j].ID })
}

// PutSite adds or replaces a site; a site updated before the one held is
// ignored, so late reads never undo newer writes.
func (s *Snapshot) PutSite(st Site) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.sites[st.ID]; ok {
		if st.UpdatedAt.Before(old.UpdatedAt) {
			return
		}
		delete(s.byName, old.Name)
	}
	s.gen++
	s.sites[st.ID], s.byName[st.Name] = &st, &st
}

// VersionSum returns how many nodes the snapshot holds and the sum of
// their versions (Store.NodeVersionSum's, for what it holds).
func (s *Snapshot) VersionSum() (count, sum int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, n := range s.nodes {
		sum += n.Version
	}
	return int64(len(s.nodes)), sum
}

// Versions returns every node's version, by id.
func (s *Snapshot) Versions() map[string]int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int64, len(s.nodes))
	for _, n := range s.nodes {
		out[n.ID] = n.Version
	}
	return out
}

// PutNodes adds or replaces nodes; a node older (by Version) than the one
// held is ignored, so late updates never undo newer ones.
func (s *Snapshot) PutNodes(nodes []Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	added := false
	for i := range nodes {
		n := nodes[i]
		if old, ok := s.byID[n.ID]; ok {
			if old.Version > n.Version {
				continue
			}
			if old.Hostname != n.Hostname {
				delete(s.byHost, old.Hostname)
			}
			*old = n
			s.byHost[n.Hostname] = old
			continue
		}
		p := &n
		s.nodes = append(s.nodes, p)
		s.byID[n.ID], s.byHost[n.Hostname] = p, p
		added = true
	}
	if added && !sort.SliceIsSorted(s.nodes, func(i, j int) bool { return s.nodes[i].ID < s.nodes[j].ID }) {
		sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].ID < s.nodes[j].ID })
	}
}

// Site returns a site by id or name.
func (s *Snapshot) Site(ref string) (Site, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.sites[ref]
	if !ok {
		st, ok = s.byName[ref]
	}
	if !ok {
		return Site{}, false
	}
	return *st, true
}

// Sites returns every site, by name.
func (s *Snapshot) Sites() []Site {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Site, 0, len(s.sites))
	for _, st := range s.sites {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Node returns a node by id or hostname.
func (s *Snapshot) Node(ref string) (Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.find(ref)
	if n == nil {
		return Node{}, false
	}
	return copyNode(n), true
}

// find returns a node by id or hostname (nil: none); s.mu is held.
func (s *Snapshot) find(ref string) *Node {
	if n, ok := s.byID[ref]; ok {
		return n
	}
	return s.byHost[ref]
}

// NodeHealth returns a node's SKU, health and reasons (by id or
// hostname) without copying the rest of it: for the heartbeat path.
func (s *Snapshot) NodeHealth(ref string) (sku string, h Health, reasons []string, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.find(ref)
	if n == nil {
		return "", "", nil, false
	}
	if len(n.HealthReasons) > 0 {
		reasons = append([]string(nil), n.HealthReasons...)
	}
	return n.SKU, n.Health, reasons, true
}

func copyNode(n *Node) Node {
	c := *n
	c.GPUs = append([]GPU(nil), n.GPUs...)
	c.HealthReasons = append([]string(nil), n.HealthReasons...)
	return c
}

// NodeFilter selects nodes. Empty fields match all. Domain matches a path
// prefix at a segment boundary ("h1/p03" matches "h1/p03/su12/r2").
type NodeFilter struct {
	SiteID    string
	Domain    string
	SKU       string
	Lifecycle Lifecycle
	Health    Health
	Cordoned  *bool
	Spare     *bool
}

func (f NodeFilter) match(n *Node) bool {
	switch {
	case f.SiteID != "" && n.SiteID != f.SiteID,
		f.SKU != "" && n.SKU != f.SKU,
		f.Lifecycle != "" && n.Lifecycle != f.Lifecycle,
		f.Health != "" && n.Health != f.Health,
		f.Cordoned != nil && n.Cordoned != *f.Cordoned,
		f.Spare != nil && n.Spare != *f.Spare:
		return false
	case f.Domain != "":
		return n.Domain == f.Domain || strings.HasPrefix(n.Domain, f.Domain+"/")
	}
	return true
}

// Nodes returns one page of matching nodes in id order.
func (s *Snapshot) Nodes(f NodeFilter, p neocloud.Page) []Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	after := p.After()
	i := sort.Search(len(s.nodes), func(i int) bool { return s.nodes[i].ID > after })
	out := make([]Node, 0, min(p.Limit, 1024))
	for ; i < len(s.nodes) && len(out) < p.Limit; i++ {
		if f.match(s.nodes[i]) {
			out = append(out, copyNode(s.nodes[i]))
		}
	}
	return out
}

// Count returns how many nodes match f.
func (s *Snapshot) Count(f NodeFilter) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, x := range s.nodes {
		if f.match(x) {
			n++
		}
	}
	return n
}

// Each calls fn for every node matching f, in id order, under the read
// lock: fn must not keep n or call back into the snapshot.
func (s *Snapshot) Each(f NodeFilter, fn func(n *Node)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, x := range s.nodes {
		if f.match(x) {
			fn(x)
		}
	}
}

// DomainCount is one topology domain with node counts.
type DomainCount struct {
	Path      string `json:"path"`
	Level     string `json:"level"`
	Nodes     int    `json:"nodes" doc:"Nodes not retired."`
	GPUs      int    `json:"gpus" doc:"GPUs of nodes not retired."`
	Available int    `json:"available" doc:"Nodes available, not cordoned, health ok."`
	Spares    int    `json:"spares"`
}

// Domains returns the domains of one level of a site's topology (derived
// from node paths), sorted by path, with counts over nodes not retired.
func (s *Snapshot) Domains(site Site, level string) ([]DomainCount, error) {
	depth := -1
	for i, l := range site.Levels {
		if l == level {
			depth = i
		}
	}
	if depth < 0 {
		return nil, neocloud.Invalid("query.level", "site %s has levels %s", site.Name, strings.Join(site.Levels, ", "))
	}
	byPath := map[string]*DomainCount{}
	s.Each(NodeFilter{SiteID: site.ID}, func(n *Node) {
		if n.Lifecycle == LifecycleRetired {
			return
		}
		segs := strings.SplitN(n.Domain, "/", depth+2)
		path := strings.Join(segs[:min(depth+1, len(segs))], "/")
		d, ok := byPath[path]
		if !ok {
			d = &DomainCount{Path: path, Level: level}
			byPath[path] = d
		}
		d.Nodes++
		d.GPUs += len(n.GPUs)
		if n.Spare {
			d.Spares++
		}
		if n.Lifecycle == LifecycleAvailable && !n.Cordoned && n.Health == HealthOK {
			d.Available++
		}
	})
	out := make([]DomainCount, 0, len(byPath))
	for _, d := range byPath {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
