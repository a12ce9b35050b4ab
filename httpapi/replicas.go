package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
)

func (s *Server) registerReplicas() {
	register(s, opRead, huma.Operation{OperationID: "list-replicas", Method: http.MethodGet, Path: "/v1/replicas", Summary: "The control plane's server processes on this database: which are up and which holds each lease",
		Description: "Every replica records itself every 5 s; one not heard for 15 s is silent. The lifecycle lease's holder steps reservations (binds, provisions, releases, sanitizes); the liveness lease's judges which nodes are failed. Stopped and silent replicas stay listed for 7 days.", Tags: []string{"replicas"}},
		func(ctx context.Context, _ *struct{}) (*struct{ Body List[neocloud.Replica] }, error) {
			rs, err := s.cfg.Replicas(ctx)
			if err != nil {
				return nil, err
			}
			for i := range rs {
				rs[i].This = rs[i].ID == s.cfg.Replica
			}
			return &struct{ Body List[neocloud.Replica] }{List[neocloud.Replica]{Items: nonNil(rs)}}, nil
		})
}
