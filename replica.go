package neocloud

import "time"

// PrefixReplica begins a replica's id.
const PrefixReplica = "srv_"

// Replica is one server process of the control plane. Several may share a
// PostgreSQL database; each records itself in the store when it starts,
// every ReplicaEvery while it runs, and when it stops; one replica at a
// time leads each loop of background work (Leads).
type Replica struct {
	ID        string     `json:"id"`
	Host      string     `json:"host" doc:"The machine's hostname."`
	Addr      string     `json:"addr" doc:"The address it listens on."`
	PID       int64      `json:"pid"`
	Version   string     `json:"version"`
	StartedAt time.Time  `json:"started_at"`
	SeenAt    time.Time  `json:"seen_at" doc:"When it last recorded itself."`
	StoppedAt *time.Time `json:"stopped_at,omitempty" doc:"When it stopped, when it stopped cleanly."`
	// Leads is the background work it leads now, one replica at a time
	// (each holding a lease in the store): "lifecycle" (it steps the
	// reservations' lifecycle) and "liveness" (it judges which nodes are
	// failed). The one server on SQLite leads both.
	Leads []string `json:"leads" doc:"The background work it leads now: lifecycle (it steps reservations), liveness (it judges nodes)."`
	State string   `json:"state" enum:"up,silent,stopped" doc:"up; silent: not heard for 3 intervals (stopped without a word, or cut off from the database); stopped."`
	// This is the replica that answered.
	This bool `json:"this" doc:"The replica that answered."`
}

// ReplicaEvery is how often a running replica records itself.
const ReplicaEvery = 5 * time.Second

// StateAt returns the replica's state as of now: up, silent (not recorded
// for three intervals) or stopped.
func (r Replica) StateAt(now time.Time) string {
	switch {
	case r.StoppedAt != nil:
		return "stopped"
	case now.Sub(r.SeenAt) > 3*ReplicaEvery:
		return "silent"
	}
	return "up"
}
