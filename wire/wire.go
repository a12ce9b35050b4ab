// Package wire holds the messages between a node agent and the server.
// They change only with Version: an agent sends its version with every
// message, and the server answers what it understands.
//
// History:
//
//	1 (2026-11-27): join with a site join token; heartbeats with a sequence
//	  number, per-GPU telemetry and XID events, per-NIC link state; answers
//	  with the node's assignment (generation, reservation, end, notices)
//	  and commands fenced by generation.
//	2 (2026-11-27): GPU samples carry row-remap state (pending, failed) and
//	  name their throttle reasons from a fixed set; commands burn_in,
//	  reboot and gpu_reset; notices of kind replacement (a node of the
//	  reservation failed and another takes its place).
package wire

import "time"

// Version is the protocol version this build speaks.
const Version = 2

// JoinRequest is an agent's first message: the node it runs on, as the
// hardware reports it. The join token travels as the bearer token.
type JoinRequest struct {
	Version       int       `json:"version"`
	Hostname      string    `json:"hostname" minLength:"1"`
	Serial        string    `json:"serial,omitempty"`
	GPUs          []GPUInfo `json:"gpus,omitempty"`
	AgentVersion  string    `json:"agent_version,omitempty"`
	DriverVersion string    `json:"driver_version,omitempty"`
}

// GPUInfo is one GPU as discovered.
type GPUInfo struct {
	Index     int    `json:"index"`
	UUID      string `json:"uuid"`
	Model     string `json:"model"`
	MemoryMiB int    `json:"memory_mib"`
}

// JoinResponse gives the agent its node and its own credential, shown once.
type JoinResponse struct {
	Version    int    `json:"version"`
	NodeID     string `json:"node_id"`
	Credential string `json:"credential" doc:"The node's own bearer secret (role agent, this node only). Shown once."`
	HeartbeatS int    `json:"heartbeat_s"`
	// NextSeq is the sequence number to report with first (0: 1): past
	// every report of this node the server has seen, so that the agent of
	// a re-imaged node, whose count starts again, is not taken for a
	// replay of its predecessor.
	NextSeq int64 `json:"next_seq,omitempty" doc:"The sequence number to report with first (absent: 1), past every report of this node the server has seen."`
}

// Heartbeat is an agent's periodic report. Seq grows by one per heartbeat
// a node's agent sends; the server applies each (node, seq) once.
type Heartbeat struct {
	Version       int         `json:"version"`
	Seq           int64       `json:"seq" minimum:"1"`
	At            time.Time   `json:"at"`
	GPUs          []GPUSample `json:"gpus"`
	NICs          []NICSample `json:"nics,omitempty"`
	UptimeS       int64       `json:"uptime_s,omitempty"`
	AgentVersion  string      `json:"agent_version,omitempty"`
	DriverVersion string      `json:"driver_version,omitempty"`
	Checks        []Check     `json:"checks,omitempty" doc:"Results of the node's host checks."`
	Results       []Result    `json:"results,omitempty" doc:"Outcomes of commands since the last acknowledged report."`
}

// Result is how a command went: done, failed, or refused by the fence.
type Result struct {
	ID      string `json:"id"`
	State   string `json:"state" enum:"done,failed,refused"`
	Message string `json:"message,omitempty"`
}

// GPUSample is one GPU's telemetry at a heartbeat.
type GPUSample struct {
	Index          int      `json:"index"`
	PowerW         float64  `json:"power_w,omitempty"`
	EnergyJ        uint64   `json:"energy_j,omitempty" doc:"Monotonic energy counter, joules."`
	TempC          float64  `json:"temp_c,omitempty"`
	UtilPct        float64  `json:"util_pct,omitempty"`
	MemUsedMiB     int      `json:"mem_used_mib,omitempty"`
	ECCCorrected   uint64   `json:"ecc_corrected,omitempty"`
	ECCUncorrected uint64   `json:"ecc_uncorrected,omitempty"`
	XIDs           []XID    `json:"xids,omitempty" doc:"XID events since the last heartbeat."`
	Throttle       []string `json:"throttle,omitempty" doc:"Why the clocks are held down now: power_cap, hw_slowdown, sw_thermal, hw_thermal, power_brake."`
	Lost           bool     `json:"lost,omitempty" doc:"The GPU fell off the bus."`
	// Row remapping (A100 and later) replaces a bad HBM row at the next GPU
	// reset; a failed remap means the memory cannot be repaired in place.
	RowRemapPending bool `json:"row_remap_pending,omitempty" doc:"A row remap waits for a GPU reset."`
	RowRemapFailed  bool `json:"row_remap_failed,omitempty" doc:"A row remap failed: the GPU needs repair."`
}

// Throttle reasons, as GPUSample.Throttle names them.
const (
	ThrottlePowerCap   = "power_cap"
	ThrottleHWSlowdown = "hw_slowdown"
	ThrottleSWThermal  = "sw_thermal"
	ThrottleHWThermal  = "hw_thermal"
	ThrottlePowerBrake = "power_brake"
)

// XID is one NVIDIA XID event.
type XID struct {
	Code int       `json:"code"`
	At   time.Time `json:"at"`
}

// NICSample is one NIC's state at a heartbeat.
type NICSample struct {
	Name   string `json:"name"`
	Up     bool   `json:"up" doc:"Link up."`
	Errors uint64 `json:"errors,omitempty"`
}

// Check is the result of one host check.
type Check struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// HeartbeatAnswer acknowledges a heartbeat and tells the agent what its
// node is assigned to.
type HeartbeatAnswer struct {
	Version    int         `json:"version"`
	Acked      int64       `json:"acked" doc:"The highest sequence number applied."`
	Duplicate  bool        `json:"duplicate,omitempty" doc:"This sequence number was applied before; nothing changed."`
	Health     string      `json:"health" doc:"The node's health as the server now sees it."`
	Assignment *Assignment `json:"assignment,omitempty" doc:"What the node serves now; absent when idle."`
	Commands   []Command   `json:"commands,omitempty"`
	PowerCapW  int         `json:"power_cap_w,omitempty" doc:"The node's SKU is power-capped: the agent holds every GPU to this many watts."`
}

// Assignment is the work a node serves, with any notice against it. Its
// generation grows with every new assignment of the node.
type Assignment struct {
	Generation  int64      `json:"generation"`
	Reservation string     `json:"reservation"`
	End         *time.Time `json:"end,omitempty"`
	Notices     []Notice   `json:"notices,omitempty"`
}

// Notice is a deadline the work on a node must meet (preemption,
// maintenance), or news of its reservation it must act on (a replacement:
// re-form the job with the new node).
type Notice struct {
	Kind     string    `json:"kind" enum:"preemption,maintenance,replacement"`
	Deadline time.Time `json:"deadline" doc:"For a replacement: when the failed node left the work."`
	Reason   string    `json:"reason,omitempty"`
}

// Command is an order for the agent. Destructive ones carry the node's
// assignment generation: an agent refuses any older than its own.
// Destructive: drain, sanitize, power_cap, burn_in, reboot, gpu_reset.
type Command struct {
	ID         string `json:"id"`
	Kind       string `json:"kind" enum:"drain,health_check,sanitize,power_cap,burn_in,reboot,gpu_reset"`
	Generation int64  `json:"generation"`
	PowerW     int    `json:"power_w,omitempty" doc:"For power_cap."`
}

// Destructive says whether a command kind changes the node under its work,
// and so must carry the current generation.
func Destructive(kind string) bool {
	switch kind {
	case "drain", "sanitize", "power_cap", "burn_in", "reboot", "gpu_reset":
		return true
	}
	return false
}
