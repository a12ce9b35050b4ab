package power

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/billing"
)

// ShedNode is a node's live work and draw as load shedding sees it.
type ShedNode struct {
	NodeID        string  `json:"node_id"`
	ReservationID string  `json:"reservation_id,omitempty"`
	Class         string  `json:"class,omitempty" doc:"internal, spot, on_demand, reserved, lease; empty when idle."`
	GPUs          int     `json:"gpus"`
	GPUDrawW      float64 `json:"gpu_draw_w" doc:"The GPUs' draw now, all together."`
	// CapFloorW is the lowest per-GPU cap the node's work allows (the
	// SKU's floor; committed work: its contract's, 0 = never capped).
	CapFloorW int `json:"cap_floor_w"`
}

// ShedAction caps a node's GPUs or preempts a reservation.
type ShedAction struct {
	Kind          string  `json:"kind" enum:"cap,preempt"`
	Class         string  `json:"class"`
	NodeID        string  `json:"node_id,omitempty"`
	ReservationID string  `json:"reservation_id,omitempty"`
	CapW          int     `json:"cap_w,omitempty" doc:"Per GPU."`
	SavedW        float64 `json:"saved_w" doc:"Facility watts the action sheds."`
	Applied       bool    `json:"applied"`
	Error         string  `json:"error,omitempty"`
}

// ShedPlan is what shedding a site's load takes.
type ShedPlan struct {
	SiteID  string       `json:"site_id"`
	Event   string       `json:"event" enum:"turbine_trip,feed_drop,cap"`
	Name    string       `json:"name,omitempty" doc:"The unit or feed lost."`
	At      time.Time    `json:"at"`
	FirmW   int64        `json:"firm_w" doc:"Firm capacity after the event."`
	LoadW   float64      `json:"load_w" doc:"Facility load before shedding."`
	NeedW   float64      `json:"need_w" doc:"Load beyond firm capacity."`
	SavedW  float64      `json:"saved_w"`
	ShortW  float64      `json:"short_w" doc:"Still beyond firm capacity after every allowed action."`
	Actions []ShedAction `json:"actions"`
}

// IdleGPUW is a GPU's draw with no work: what preempting saves down to.
const IdleGPUW = 70

// ShedOrder is the order classes are shed in.
var ShedOrder = []string{"internal", "spot", "on_demand", "reserved", "lease"}

// PlanShed sheds needW of facility load (pue: facility per IT watt):
// first by per-GPU power caps, class by class (internal, spot, on-demand,
// then committed work only down to its contract's floor), the nodes that
// save most first; then by preempting whole internal, then spot,
// reservations. It stops once the need is met.
func PlanShed(nodes []ShedNode, needW, pue float64) ([]ShedAction, float64) {
	var out []ShedAction
	saved := 0.0
	rank := map[string]int{}
	for i, c := range ShedOrder {
		rank[c] = i
	}
	work := make([]ShedNode, 0, len(nodes))
	for _, n := range nodes {
		if _, ok := rank[n.Class]; ok && n.GPUs > 0 {
			work = append(work, n)
		}
	}
	capSave := func(n ShedNode) float64 {
		if n.CapFloorW <= 0 {
			return 0
		}
		return max(0, n.GPUDrawW-float64(n.CapFloorW*n.GPUs)) * pue
	}
	sort.SliceStable(work, func(i, j int) bool {
		if rank[work[i].Class] != rank[work[j].Class] {
			return rank[work[i].Class] < rank[work[j].Class]
		}
		if a, b := capSave(work[i]), capSave(work[j]); a != b {
			return a > b
		}
		return work[i].NodeID < work[j].NodeID
	})
	capped := map[string]float64{} // node → its draw after the cap
	for _, n := range work {
		if saved >= needW {
			return out, saved
		}
		if s := capSave(n); s > 0 {
			out = append(out, ShedAction{Kind: "cap", Class: n.Class, NodeID: n.NodeID, ReservationID: n.ReservationID, CapW: n.CapFloorW, SavedW: s})
			saved += s
			capped[n.NodeID] = float64(n.CapFloorW * n.GPUs)
		}
	}
	// Preemption: whole reservations of preemptible work, what is left of
	// their draw above idle.
	type rsv struct {
		id, class string
		save      float64
	}
	by := map[string]*rsv{}
	var rs []*rsv
	for _, n := range work {
		if n.Class != "internal" && n.Class != "spot" || n.ReservationID == "" {
			continue
		}
		draw := n.GPUDrawW
		if c, ok := capped[n.NodeID]; ok {
			draw = c
		}
		r := by[n.ReservationID]
		if r == nil {
			r = &rsv{id: n.ReservationID, class: n.Class}
			by[n.ReservationID] = r
			rs = append(rs, r)
		}
		r.save += max(0, draw-float64(IdleGPUW*n.GPUs)) * pue
	}
	sort.SliceStable(rs, func(i, j int) bool {
		if rank[rs[i].class] != rank[rs[j].class] {
			return rank[rs[i].class] < rank[rs[j].class]
		}
		if rs[i].save != rs[j].save {
			return rs[i].save > rs[j].save
		}
		return rs[i].id < rs[j].id
	})
	for _, r := range rs {
		if saved >= needW {
			break
		}
		if r.save > 0 {
			out = append(out, ShedAction{Kind: "preempt", Class: r.class, ReservationID: r.id, SavedW: r.save})
			saved += r.save
		}
	}
	return out, saved
}

// ShedInput is a power event at a site.
type ShedInput struct {
	Event string  `json:"event" enum:"turbine_trip,feed_drop,cap" doc:"A generation unit tripped, a grid feed dropped, or an operator's emergency cap."`
	Name  string  `json:"name,omitempty" doc:"The unit (turbine_trip) or feed (feed_drop)."`
	CapMW float64 `json:"cap_mw,omitempty" doc:"For cap: the site's limit in MW."`
}

// Shedder applies a plan: caps through the nodes' agents, preemption
// through selling, and records it.
type Shedder struct {
	Nodes   func(ctx context.Context, siteID string) ([]ShedNode, error)
	Cap     func(ctx context.Context, nodeID string, watts int) error
	Preempt func(ctx context.Context, reservationID string) error
	Record  func(ctx context.Context, plan ShedPlan) error
}

// Shed answers a power event: the firm capacity after it, the site's
// facility load now, and, beyond capacity, the plan (PlanShed) applied
// and recorded. Committed nodes are capped only as their contracts allow
// and never preempted; what cannot be shed is reported short.
func (s *Service) Shed(ctx context.Context, siteRef string, in ShedInput, sh Shedder) (ShedPlan, error) {
	site, err := s.site(siteRef)
	if err != nil {
		return ShedPlan{}, err
	}
	if site.Power == nil {
		return ShedPlan{}, neocloud.Conflict("unmodelled", "site %s declares no power model", site.Name)
	}
	m := NewModel(site.Power)
	firm := m.FirmW()
	switch in.Event {
	case "turbine_trip":
		i := -1
		for k, u := range m.Units {
			if u.Name == in.Name {
				i = k
			}
		}
		if i < 0 {
			return ShedPlan{}, neocloud.Invalid("body.name", "site %s has no generation unit %q", site.Name, in.Name)
		}
		m.Units = append(m.Units[:i:i], m.Units[i+1:]...)
		firm = m.FirmW()
	case "feed_drop":
		i := -1
		for k, f := range m.Feeds {
			if f.Name == in.Name {
				i = k
			}
		}
		if i < 0 {
			return ShedPlan{}, neocloud.Invalid("body.name", "site %s has no feed %q", site.Name, in.Name)
		}
		m.Feeds = append(m.Feeds[:i:i], m.Feeds[i+1:]...)
		firm = m.FirmW()
	case "cap":
		if !(in.CapMW > 0) {
			return ShedPlan{}, neocloud.Invalid("body.cap_mw", "an emergency cap needs the site's limit in MW")
		}
		firm = min(firm, mw(in.CapMW))
	default:
		return ShedPlan{}, neocloud.Invalid("body.event", "must be turbine_trip, feed_drop or cap, not %q", in.Event)
	}
	nodes, err := sh.Nodes(ctx, site.ID)
	if err != nil {
		return ShedPlan{}, err
	}
	now := s.now()
	pue, _ := m.PUE(now).Float64()
	load := float64(m.SharedITW) * pue
	for _, n := range nodes {
		load += n.GPUDrawW / billing.DefaultGPUShare * pue // a node's draw from its GPUs' (their documented share of it)
	}
	plan := ShedPlan{SiteID: site.ID, Event: in.Event, Name: in.Name, At: now, FirmW: firm, LoadW: load, NeedW: max(0, load-float64(firm))}
	if plan.NeedW > 0 {
		plan.Actions, plan.SavedW = PlanShed(nodes, plan.NeedW, pue)
		plan.ShortW = max(0, plan.NeedW-plan.SavedW)
		for i := range plan.Actions {
			a := &plan.Actions[i]
			var err error
			switch a.Kind {
			case "cap":
				err = sh.Cap(ctx, a.NodeID, a.CapW)
			case "preempt":
				err = sh.Preempt(ctx, a.ReservationID)
			}
			a.Applied = err == nil
			if err != nil {
				a.Error = err.Error()
			}
		}
	}
	if sh.Record != nil {
		if err := sh.Record(ctx, plan); err != nil {
			return plan, err
		}
	}
	if s.Logger != nil && plan.NeedW > 0 {
		s.Logger.Warn("power: load shed", "site", site.Name, "event", in.Event, "name", in.Name, "need_w", int64(plan.NeedW), "saved_w", int64(plan.SavedW),
			"short_w", int64(plan.ShortW), "actions", len(plan.Actions))
	}
	return plan, nil
}

// String summarizes a plan.
func (p ShedPlan) String() string {
	return fmt.Sprintf("%s %s: firm %d W, load %.0f W, need %.0f W, saved %.0f W in %d actions, short %.0f W", p.Event, p.Name, p.FirmW, p.LoadW, p.NeedW, p.SavedW, len(p.Actions), p.ShortW)
}
