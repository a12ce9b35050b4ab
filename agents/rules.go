package agents

import (
	"fmt"
	"time"

	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/wire"
)

// Action is the rung of the remediation ladder a condition calls for.
type Action string

const (
	ActionNone    Action = ""
	ActionWatch   Action = "watch"   // keep an eye on it; trend
	ActionReset   Action = "reset"   // reset the GPU when it is idle
	ActionReboot  Action = "reboot"  // reboot the node
	ActionReimage Action = "reimage" // reinstall the node
	ActionRepair  Action = "repair"  // out of service until repaired
)

// ladder orders the actions, least drastic first.
var ladder = map[Action]int{ActionNone: 0, ActionWatch: 1, ActionReset: 2, ActionReboot: 3, ActionReimage: 4, ActionRepair: 5}

// Condition is one finding from a heartbeat, with its effect on the node.
type Condition struct {
	GPU    int          `json:"gpu" doc:"GPU index, or -1 for the node."`
	Kind   string       `json:"kind" doc:"xid, ecc, thermal, throttle, lost, link, check, active_check."`
	Code   int          `json:"code,omitempty"`
	Health fleet.Health `json:"health"`
	Action Action       `json:"action"`
	Reason string       `json:"reason"`
	At     time.Time    `json:"at,omitempty" doc:"When the report that raised it was received."`
}

// Rule is what an XID means for a node.
type Rule struct {
	Health fleet.Health
	Action Action
	What   string
}

// XIDRules maps NVIDIA XID codes to conditions: the one place that does.
// Codes not listed (application errors such as 13, 31, 43, caused by the
// tenant's own programs) change nothing.
var XIDRules = map[int]Rule{
	48:  {fleet.HealthFailed, ActionRepair, "double-bit ECC error"},
	63:  {fleet.HealthOK, ActionWatch, "ECC page retirement or row remap recorded"},
	64:  {fleet.HealthDegraded, ActionReset, "ECC page retirement or row remap failed"},
	74:  {fleet.HealthDegraded, ActionReset, "NVLink error"},
	79:  {fleet.HealthFailed, ActionRepair, "GPU has fallen off the bus"},
	92:  {fleet.HealthOK, ActionWatch, "high single-bit ECC error rate"},
	94:  {fleet.HealthDegraded, ActionReset, "contained ECC error"},
	95:  {fleet.HealthFailed, ActionRepair, "uncontained ECC error"},
	119: {fleet.HealthDegraded, ActionReboot, "GSP RPC timeout"},
	120: {fleet.HealthDegraded, ActionReboot, "GSP error"},
}

// ThermalLimitC is the temperature above which a GPU is degraded.
const ThermalLimitC = 87.0

// Evaluate turns a heartbeat into conditions: XIDs by the rule table,
// uncorrectable ECC counts, heat, a GPU off the bus, NICs down, and failed
// host checks.
func Evaluate(hb wire.Heartbeat) []Condition {
	var out []Condition
	for _, g := range hb.GPUs {
		for _, x := range g.XIDs {
			r, ok := XIDRules[x.Code]
			if !ok {
				continue
			}
			out = append(out, Condition{GPU: g.Index, Kind: "xid", Code: x.Code, Health: r.Health, Action: r.Action, Reason: fmt.Sprintf("gpu %d: XID %d %s", g.Index, x.Code, r.What)})
		}
		if g.Lost {
			out = append(out, Condition{GPU: g.Index, Kind: "lost", Health: fleet.HealthFailed, Action: ActionRepair, Reason: fmt.Sprintf("gpu %d: not visible to the driver", g.Index)})
		}
		if g.RowRemapFailed {
			out = append(out, Condition{GPU: g.Index, Kind: "ecc", Health: fleet.HealthFailed, Action: ActionRepair, Reason: fmt.Sprintf("gpu %d: HBM row remap failed", g.Index)})
		} else if g.RowRemapPending {
			out = append(out, Condition{GPU: g.Index, Kind: "ecc", Health: fleet.HealthDegraded, Action: ActionReset, Reason: fmt.Sprintf("gpu %d: HBM row remap pending a GPU reset", g.Index)})
		}
		for _, t := range g.Throttle {
			if t == wire.ThrottleHWSlowdown || t == wire.ThrottlePowerBrake {
				out = append(out, Condition{GPU: g.Index, Kind: "throttle", Health: fleet.HealthOK, Action: ActionWatch, Reason: fmt.Sprintf("gpu %d: clocks held down (%s)", g.Index, t)})
			}
		}
		if g.ECCUncorrected > 0 {
			out = append(out, Condition{GPU: g.Index, Kind: "ecc", Health: fleet.HealthDegraded, Action: ActionReset, Reason: fmt.Sprintf("gpu %d: %d uncorrected ECC errors", g.Index, g.ECCUncorrected)})
		}
		if g.TempC > ThermalLimitC {
			out = append(out, Condition{GPU: g.Index, Kind: "thermal", Health: fleet.HealthDegraded, Action: ActionWatch, Reason: fmt.Sprintf("gpu %d: %.0f °C, over %.0f °C", g.Index, g.TempC, ThermalLimitC)})
		}
	}
	for _, n := range hb.NICs {
		if !n.Up {
			out = append(out, Condition{GPU: -1, Kind: "link", Health: fleet.HealthDegraded, Action: ActionWatch, Reason: "nic " + n.Name + ": link down"})
		}
	}
	for _, c := range hb.Checks {
		if !c.OK {
			out = append(out, Condition{GPU: -1, Kind: "check", Health: fleet.HealthDegraded, Action: ActionWatch, Reason: "check " + c.Name + ": " + c.Message})
		}
	}
	return out
}

// healthRank orders health, best first.
var healthRank = map[fleet.Health]int{fleet.HealthOK: 0, fleet.HealthDegraded: 1, fleet.HealthUnreachable: 2, fleet.HealthFailed: 3}

// Worst is the node's health and action from its conditions: the worst of
// each (ok and no action without any).
func Worst(cs []Condition) (fleet.Health, Action) {
	h, a := fleet.HealthOK, ActionNone
	for _, c := range cs {
		if healthRank[c.Health] > healthRank[h] {
			h = c.Health
		}
		if ladder[c.Action] > ladder[a] {
			a = c.Action
		}
	}
	return h, a
}

// Sticky returns the conditions that outlast the report that raised them:
// hardware faults calling for a reset or worse, until the node is
// remediated.
func Sticky(cs []Condition) []Condition {
	var out []Condition
	for _, c := range cs {
		if (c.Kind == "xid" || c.Kind == "lost" || c.Kind == "ecc" || c.Kind == "active_check") && ladder[c.Action] >= ladder[ActionReset] {
			out = append(out, c)
		}
	}
	return out
}
