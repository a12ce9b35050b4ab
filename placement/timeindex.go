package placement

import "sort"

// timeIndex finds the reservations overlapping a time range without
// visiting the others: reservations sorted by start, in blocks that know
// their latest end, so a block wholly before the range is skipped at once.
type timeIndex struct {
	items    []*Reservation // by start, then id
	blockMax []int64        // per block: the latest end in it
}

const indexBlock = 64

func (x *timeIndex) less(a, b *Reservation) bool {
	return a.s < b.s || a.s == b.s && a.ID < b.ID
}

func (x *timeIndex) add(r *Reservation) {
	j := sort.Search(len(x.items), func(j int) bool { return x.less(r, x.items[j]) })
	x.items = append(x.items, nil)
	copy(x.items[j+1:], x.items[j:])
	x.items[j] = r
	x.reblock(j / indexBlock)
}

func (x *timeIndex) remove(r *Reservation) {
	for j, y := range x.items {
		if y == r {
			x.items = append(x.items[:j], x.items[j+1:]...)
			x.reblock(j / indexBlock)
			return
		}
	}
}

// reblock recomputes the latest ends of blocks from b on (items shifted).
func (x *timeIndex) reblock(b int) {
	n := (len(x.items) + indexBlock - 1) / indexBlock
	x.blockMax = x.blockMax[:min(len(x.blockMax), n)]
	for len(x.blockMax) < n {
		x.blockMax = append(x.blockMax, 0)
	}
	for ; b < n; b++ {
		m := int64(-1 << 62)
		for _, r := range x.items[b*indexBlock : min(len(x.items), (b+1)*indexBlock)] {
			m = max(m, r.e)
		}
		x.blockMax[b] = m
	}
}

// each calls fn for every reservation with start < e and end > s, in
// index order.
func (x *timeIndex) each(s, e int64, fn func(*Reservation)) {
	for b, m := range x.blockMax {
		lo := b * indexBlock
		if x.items[lo].s >= e {
			return
		}
		if m <= s {
			continue
		}
		for _, r := range x.items[lo:min(len(x.items), lo+indexBlock)] {
			if r.s >= e {
				return
			}
			if r.e > s {
				fn(r)
			}
		}
	}
}
