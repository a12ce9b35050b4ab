package agents

import "context"

// CheckFence runs the leader's fence in a transaction of its own.
func (s *Service) CheckFence(ctx context.Context) error {
	return s.Tx.InTx(ctx, s.fenced)
}
