package agents

import (
	"context"
	"errors"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/wire"
)

// Sanitizer sanitizes a released node through its agent: a sanitize
// command fenced by the generation of the allocation being released, done
// when the agent reports it done. A node without an agent (a simulated
// fleet), and a node that served bare metal (its tenant had root: its
// agent's word is not enough), are left to Fallback, the out-of-band
// driver.
type Sanitizer struct {
	Service  *Service
	Fallback sales.Sanitizer
	Poll     time.Duration // how soon to look again (default 10 s)
}

var _ sales.Sanitizer = (*Sanitizer)(nil)

func (z *Sanitizer) hasAgent(ctx context.Context, w sales.Work) (bool, error) {
	if w.Reservation.Shape.Delivery == sales.DeliveryBareMetal {
		return false, nil
	}
	_, err := z.Service.Store.NodeCredential(ctx, w.Allocation.NodeID)
	switch neocloud.ErrorKind(err) {
	case "":
		return true, nil
	case neocloud.KindNotFound:
		return false, nil
	}
	return false, err
}

func generation(w sales.Work) int64 { return w.Allocation.BoundAt.UnixMicro() }

// Begin orders the sanitize.
func (z *Sanitizer) Begin(ctx context.Context, w sales.Work) (time.Time, error) {
	ok, err := z.hasAgent(ctx, w)
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return z.Fallback.Begin(ctx, w)
	}
	c := NodeCommand{Command: wire.Command{ID: neocloud.NewID(PrefixCommand), Kind: "sanitize", Generation: generation(w)},
		NodeID: w.Allocation.NodeID, State: "pending", CreatedBy: "sanitizer " + w.Allocation.ID, CreatedAt: z.Service.now()}
	if err := z.Service.enqueue(ctx, c); err != nil {
		return time.Time{}, err
	}
	poll := z.Poll
	if poll == 0 {
		poll = 10 * time.Second
	}
	return w.Now.Add(poll), nil
}

// Check reports the agent's outcome: done, failed or refused (an error),
// or not yet.
func (z *Sanitizer) Check(ctx context.Context, w sales.Work) (bool, error) {
	ok, err := z.hasAgent(ctx, w)
	if err != nil {
		return false, err
	}
	if !ok {
		return z.Fallback.Check(ctx, w)
	}
	cs, err := z.Service.Store.Commands(ctx, w.Allocation.NodeID, false)
	if err != nil {
		return false, err
	}
	for _, c := range cs { // newest first
		if c.Kind != "sanitize" || c.Generation != generation(w) || c.CreatedBy != "sanitizer "+w.Allocation.ID {
			continue
		}
		switch c.State {
		case "done":
			return true, nil
		case "pending":
			return false, nil
		default:
			return true, errors.New("the agent's sanitize " + c.State + ": " + c.Message)
		}
	}
	return false, errors.New("no sanitize command for this allocation")
}
