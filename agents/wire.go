package agents

import (
	"context"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/sales"
)

// Connect joins the agents service and selling both ways: what a node
// serves reaches its agent (and changes to it wake the agent's stream);
// a failed node's work is replaced; break-fix commands reach the agent;
// a replaced node opens its repair.
func Connect(ag *Service, sv *sales.Service) {
	ag.Assignment = sv.NodeAssignment
	ag.Generation = sv.NodeGeneration
	ag.BareMetal = sv.BareMetal
	ag.OnFailed = func(ctx context.Context, nodeID, why string, evidence bool) error {
		_, err := sv.NodeFailed(ctx, nodeID, why, evidence)
		return err
	}
	sv.NodesChanged = ag.NodesChanged
	sv.OrderNode = func(ctx context.Context, p neocloud.Principal, nodeID, kind string) (string, error) {
		c, err := ag.Order(ctx, p, nodeID, CommandInput{Kind: kind})
		return c.ID, err
	}
	sv.OnReplaced = func(ctx context.Context, nodeID, why string) error {
		_, err := ag.OpenRepair(ctx, nodeID, why)
		return err
	}
}
