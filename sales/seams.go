package sales

import (
	"context"
	"errors"
	"hash/fnv"
	"time"
)

// Work is one step of bringing an allocation up or down, handed to a seam.
type Work struct {
	Op          string // provision, attach, detach, sanitize
	Allocation  Allocation
	Reservation Reservation
	Attempt     int // 1 for the first try
	Now         time.Time
}

// Stage is the shape of every seam: Begin starts the work and says when to
// look again; Check, called then, says whether it finished and how. A real
// driver starts work elsewhere and reports; a simulated one decides both at
// once. Neither may block for long.
type Stage interface {
	Begin(ctx context.Context, w Work) (until time.Time, err error)
	Check(ctx context.Context, w Work) (done bool, err error)
}

// Provisioner prepares a node for a reservation: image, keys and the
// tenant's cluster join (Op "provision").
type Provisioner interface{ Stage }

// NetworkAttacher puts a node into the reservation's isolation domain
// (InfiniBand partition key, VRF/VXLAN, NVLink partition) with Op "attach",
// and takes it out with Op "detach".
type NetworkAttacher interface{ Stage }

// Sanitizer wipes and verifies a node before it serves anyone else (Op
// "sanitize").
type Sanitizer interface{ Stage }

// SimStage is a simulated seam: each step takes Duration (plus up to Jitter,
// fixed per allocation and attempt) and fails with probability FailRate,
// decided by a hash of Seed, the allocation, the step and the attempt, so a
// run replays exactly. FailFirst fails every first attempt (tests).
type SimStage struct {
	Duration  time.Duration
	Jitter    time.Duration
	FailRate  float64
	FailFirst bool
	Seed      uint64
}

func (s *SimStage) draw(w Work, salt string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(s.Seed >> (8 * i))
	}
	h.Write(b[:])
	h.Write([]byte(w.Allocation.ID + "/" + w.Op + "/" + salt))
	h.Write([]byte{byte(w.Attempt)})
	return h.Sum64()
}

// Begin returns when the step will be over.
func (s *SimStage) Begin(_ context.Context, w Work) (time.Time, error) {
	d := s.Duration
	if s.Jitter > 0 {
		d += time.Duration(s.draw(w, "jitter") % uint64(s.Jitter))
	}
	return w.Now.Add(d), nil
}

// ErrSimulated is the failure a simulated seam reports.
var ErrSimulated = errors.New("simulated failure")

// Check reports the step done, failed with the configured probability.
func (s *SimStage) Check(_ context.Context, w Work) (bool, error) {
	if s.FailFirst && w.Attempt == 1 {
		return true, ErrSimulated
	}
	if s.FailRate > 0 && float64(s.draw(w, "fail")%1_000_000)/1_000_000 < s.FailRate {
		return true, ErrSimulated
	}
	return true, nil
}
