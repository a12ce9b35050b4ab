package agents

import (
	"context"
	"hash/fnv"
	"sort"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/wire"
)

// ActiveChecks is the policy for health checks the control plane starts on
// idle nodes (deeper than the host checks in every report: the agent's
// burn-in-like GPU and fabric tests). They run only on available, healthy,
// idle nodes, and give way to real work: an agent whose node is assigned
// while a check runs stops it.
type ActiveChecks struct {
	Every    time.Duration // how often each idle node is checked (default 24 h; negative: never)
	PerSweep int           // how many checks one sweep may start (default 50), so that they spread out
}

func (a ActiveChecks) withDefaults() ActiveChecks {
	if a.Every == 0 {
		a.Every = 24 * time.Hour
	}
	if a.PerSweep <= 0 {
		a.PerSweep = 50
	}
	return a
}

// checkPrefix marks the health checks the control plane started itself.
const checkPrefix = "active check"

// startChecks orders health checks on idle nodes that are due, the most
// overdue first. A node's first check after a start falls at a point of the
// period that depends on the node, so that a restart does not check the
// whole fleet at once.
func (s *Service) startChecks(ctx context.Context, nodes []string, silent map[string]time.Duration) (int, error) {
	pol := s.Checks.withDefaults()
	if pol.Every < 0 {
		return 0, nil
	}
	now := s.now()
	type due struct {
		id   string
		next time.Time
	}
	var dues []due
	rs := make([]*nodeRecord, len(nodes))
	for i, id := range nodes {
		rs[i] = s.record(id)
	}
	s.assignMu.Lock()
	for i, id := range nodes {
		last, ok := rs[i].lastCheck, !rs[i].lastCheck.IsZero()
		if !ok {
			h := fnv.New64a()
			h.Write([]byte(id))
			last = s.Started.Add(-time.Duration(h.Sum64() % uint64(pol.Every)))
		}
		if next := last.Add(pol.Every); !next.After(now) {
			dues = append(dues, due{id, next})
		}
	}
	s.assignMu.Unlock()
	sort.Slice(dues, func(i, j int) bool {
		return dues[i].next.Before(dues[j].next) || dues[i].next.Equal(dues[j].next) && dues[i].id < dues[j].id
	})
	started := 0
	for _, d := range dues {
		if started >= pol.PerSweep {
			break
		}
		if _, quiet := silent[d.id]; quiet {
			continue
		}
		n, ok := s.Fleet.Snapshot.Node(d.id)
		if !ok || n.Lifecycle != fleet.LifecycleAvailable || n.Cordoned || n.Health != fleet.HealthOK {
			continue
		}
		a, err := s.AssignmentOf(ctx, d.id)
		if err != nil {
			return started, err
		}
		if a != nil {
			continue // busy: real work comes first
		}
		if cs, err := s.PendingCommands(ctx, d.id); err != nil {
			return started, err
		} else if len(cs) > 0 {
			continue
		}
		gen, err := s.generation(ctx, d.id)
		if err != nil {
			return started, err
		}
		c := NodeCommand{Command: wire.Command{ID: neocloud.NewID(PrefixCommand), Kind: "health_check", Generation: gen},
			NodeID: d.id, State: "pending", CreatedBy: checkPrefix, CreatedAt: now}
		if err := s.Tx.InTx(ctx, func(ctx context.Context) error { return s.enqueue(ctx, c) }); err != nil {
			return started, err
		}
		r := s.record(d.id)
		s.assignMu.Lock()
		r.lastCheck = now
		s.assignMu.Unlock()
		started++
	}
	return started, nil
}
