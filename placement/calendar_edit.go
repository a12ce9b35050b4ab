package placement

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// MaxEnd returns the latest end a held reservation could be extended to on
// the same nodes and GPUs: the first later committed work on any of them
// (a turnaround earlier when it is another tenant's) or maintenance, or
// Forever when nothing follows.
func (c *Calendar) MaxEnd(id string) (time.Time, error) {
	cm, ok := c.rsvs[id]
	if !ok {
		return time.Time{}, fmt.Errorf("no reservation %q", id)
	}
	limit := unix(Forever)
	tid := c.tenantNumber(cm.Tenant, false)
	turnaround := int64(c.Turnaround / time.Second)
	for j, i := range cm.idx {
		for x := range c.byNode[i] {
			en := &c.byNode[i][x]
			if en.rsv == cm || en.mask&cm.masks[j] == 0 || en.end <= cm.s {
				continue
			}
			if !en.maintenance() && !en.committed {
				continue // spot and internal work is reclaimed, never in the way
			}
			g := int64(0)
			if !en.maintenance() && en.tenant != tid {
				g = turnaround
			}
			if en.start >= cm.s {
				limit = min(limit, en.start-g)
			}
		}
	}
	if limit >= unix(Forever) {
		return Forever, nil
	}
	return time.Unix(limit, 0).UTC(), nil
}

// SetEnd moves a held reservation's end (extended, or cut short when it is
// cancelled or ends early). It checks nothing: see MaxEnd.
func (c *Calendar) SetEnd(id string, end time.Time) error {
	cm, ok := c.rsvs[id]
	if !ok {
		return fmt.Errorf("no reservation %q", id)
	}
	c.Drop(id)
	cp := *cm
	cp.End = end
	return c.Hold(&cp)
}

// Rename gives a held reservation a new id, keeping its nodes: a quote's
// hold becomes the reservation made from it. The new class applies.
func (c *Calendar) Rename(old, id string, class Class) error {
	cm, ok := c.rsvs[old]
	if !ok {
		return fmt.Errorf("no reservation %q", old)
	}
	c.Drop(old)
	cp := *cm
	cp.ID, cp.Class = id, class
	cp.Request.Class = class
	return c.Hold(&cp)
}

// BusyGPUs counts the GPUs held by any work at instant t.
func (c *Calendar) BusyGPUs(t time.Time) int {
	at := unix(t)
	n := 0
	g := c.T.SKU.GPUsPerNode
	count := func(r *Reservation) {
		for j := range r.idx {
			if r.masks[j] == c.scratch.full {
				n += g
			} else {
				n += popcount(r.masks[j])
			}
		}
	}
	c.committedByTime.each(at, at+1, count)
	c.preemptibleByTime.each(at, at+1, count)
	return n
}

// UsableGPUs counts the GPUs of nodes that may take work (spares included).
func (c *Calendar) UsableGPUs() int { return c.scratch.usableGPUs }

func popcount(m uint64) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}

// Displaced returns the spot and internal reservations a held committed
// reservation overlaps on its GPUs (a turnaround apart when they are
// another tenant's): the work it preempts. Ids ascend.
func (c *Calendar) Displaced(id string) []string {
	cm, ok := c.rsvs[id]
	if !ok || !cm.committed() {
		return nil
	}
	turnaround := int64(c.Turnaround / time.Second)
	seen := map[string]bool{}
	var out []string
	for j, i := range cm.idx {
		for x := range c.byNode[i] {
			en := &c.byNode[i][x]
			if en.maintenance() || en.committed || en.rsv == cm || en.mask&cm.masks[j] == 0 {
				continue
			}
			g := int64(0)
			if en.rsv.Tenant != cm.Tenant {
				g = turnaround
			}
			if en.start < cm.e+g && en.end+g > cm.s && !seen[en.rsv.ID] {
				seen[en.rsv.ID] = true
				out = append(out, en.rsv.ID)
			}
		}
	}
	sort.Strings(out)
	return out
}

// DomainNodes returns the non-spare nodes of the domain at path ("" for the
// whole site) in topology order, and the level the domain is at (−1 for the
// site).
func (t *Topology) DomainNodes(path string) ([]string, int, error) {
	lo, hi, level := int32(0), int32(len(t.nodes)), -1
	if path != "" {
		level = strings.Count(path, "/")
		if level >= len(t.Levels) {
			return nil, 0, fmt.Errorf("no domain %q", path)
		}
		found := false
		for _, d := range t.dom[level] {
			if d.path == path {
				lo, hi, found = d.lo, d.hi, true
			}
		}
		if !found {
			return nil, 0, fmt.Errorf("no domain %q", path)
		}
	}
	var out []string
	for i := lo; i < hi; i++ {
		if !t.nodes[i].spare {
			out = append(out, t.nodes[i].id)
		}
	}
	return out, level, nil
}

// Conflicts returns the committed reservations and maintenance windows that
// overlap [start, end) on any of the nodes (a turnaround apart when the
// work is another tenant's). Ids ascend.
func (c *Calendar) Conflicts(nodes []string, tenant string, start, end time.Time) ([]string, error) {
	idx, err := c.index(nodes)
	if err != nil {
		return nil, err
	}
	s, e := unix(start), unix(end)
	turnaround := int64(c.Turnaround / time.Second)
	seen := map[string]bool{}
	var out []string
	for _, i := range idx {
		for x := range c.byNode[i] {
			en := &c.byNode[i][x]
			var id string
			g := int64(0)
			switch {
			case en.maintenance():
				for _, w := range c.windows {
					for _, wi := range w.idx {
						if wi == i && unix(w.Start) == en.start && unix(w.End) == en.end {
							id = w.ID
						}
					}
				}
			case !en.committed:
				continue
			default:
				id = en.rsv.ID
				if en.rsv.Tenant != tenant {
					g = turnaround
				}
			}
			if en.start < e+g && en.end+g > s && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// DropWindow removes a maintenance window (cancelled, or done).
func (c *Calendar) DropWindow(id string) {
	w, ok := c.windows[id]
	if !ok {
		return
	}
	s, e := unix(w.Start), unix(w.End)
	for _, i := range w.idx {
		c.remove(i, func(en entry) bool { return en.maintenance() && en.start == s && en.end == e })
	}
	delete(c.windows, id)
}

// Window returns a maintenance window on the calendar.
func (c *Calendar) Window(id string) (*Window, bool) {
	w, ok := c.windows[id]
	return w, ok
}

// HoldersDuring returns the ids of the reservations holding a node at any
// time in [start, end).
func (c *Calendar) HoldersDuring(node string, start, end time.Time) []string {
	i, ok := c.T.NodeIndex(node)
	if !ok {
		return nil
	}
	s, e := unix(start), unix(end)
	var out []string
	for x := range c.byNode[i] {
		en := &c.byNode[i][x]
		if !en.maintenance() && en.start < e && en.end > s {
			out = append(out, en.rsv.ID)
		}
	}
	return out
}
