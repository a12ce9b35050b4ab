package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
)

// MaxSpecBytes is the body limit of a site spec.
const MaxSpecBytes = 64 << 20

// SiteSummary is a site with counts derived from its nodes.
type SiteSummary struct {
	fleet.Site
	Nodes       int            `json:"nodes" doc:"Nodes not retired."`
	GPUs        int            `json:"gpus" doc:"GPUs of nodes not retired."`
	Spares      int            `json:"spares"`
	Cordoned    int            `json:"cordoned"`
	ByLifecycle map[string]int `json:"by_lifecycle"`
	ByHealth    map[string]int `json:"by_health"`
	Domains     map[string]int `json:"domains" doc:"Domains per topology level."`
}

func (s *Server) siteSummary(st fleet.Site) SiteSummary {
	out := SiteSummary{Site: st, ByLifecycle: map[string]int{}, ByHealth: map[string]int{}, Domains: map[string]int{}}
	seen := make([]map[string]bool, len(st.Levels))
	for i := range seen {
		seen[i] = map[string]bool{}
	}
	s.cfg.Fleet.Snapshot.Each(fleet.NodeFilter{SiteID: st.ID}, func(n *fleet.Node) {
		out.ByLifecycle[string(n.Lifecycle)]++
		if n.Lifecycle == fleet.LifecycleRetired {
			return
		}
		out.ByHealth[string(n.Health)]++
		for i, end := 0, 0; i < len(st.Levels); i++ {
			if j := strings.IndexByte(n.Domain[end:], '/'); j >= 0 && i < len(st.Levels)-1 {
				end += j
			} else {
				end = len(n.Domain)
			}
			seen[i][n.Domain[:end]] = true
			end++
		}
		out.Nodes++
		out.GPUs += len(n.GPUs)
		if n.Spare {
			out.Spares++
		}
		if n.Cordoned {
			out.Cordoned++
		}
	})
	for i, l := range st.Levels {
		out.Domains[l] = len(seen[i])
	}
	return out
}

func boolParam(field, v string) (*bool, error) {
	switch v {
	case "":
		return nil, nil
	case "true":
		b := true
		return &b, nil
	case "false":
		b := false
		return &b, nil
	}
	return nil, neocloud.Invalid(field, "must be true or false")
}

func (s *Server) registerFleet() {
	register(s, opAdmin, huma.Operation{OperationID: "apply-fleet", Method: http.MethodPost, Path: "/v1/fleet/apply", Summary: "Apply a site spec",
		Description: "Takes a site spec (YAML or JSON, up to 64 MiB) and makes the site match it: adds nodes (available, health ok), updates changed ones, retires nodes it no longer lists (refused with the reason for nodes in use). Faults name line:column and the field. Applying the same spec again changes nothing.",
		Tags:        []string{"fleet"}, MaxBodyBytes: MaxSpecBytes},
		func(ctx context.Context, in *struct {
			RawBody []byte `contentType:"application/yaml"`
		}) (*struct{ Body fleet.ApplyResult }, error) {
			if len(in.RawBody) == 0 {
				return nil, neocloud.Invalid("body", "a site spec is required")
			}
			spec, err := fleet.ParseSpec(in.RawBody)
			if err != nil {
				return nil, err
			}
			res, err := s.cfg.Fleet.Apply(ctx, spec)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = res.SiteID
			return &struct{ Body fleet.ApplyResult }{res}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-sites", Method: http.MethodGet, Path: "/v1/sites", Summary: "List sites", Tags: []string{"fleet"}},
		func(ctx context.Context, in *struct{ PageParams }) (*struct{ Body List[SiteSummary] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			out := pageSorted(s.cfg.Fleet.Snapshot.Sites(), pg, func(st fleet.Site) string { return st.Name })
			items := make([]SiteSummary, len(out.Body.Items))
			for i, st := range out.Body.Items {
				items[i] = s.siteSummary(st)
			}
			return &struct{ Body List[SiteSummary] }{List[SiteSummary]{Items: items, NextCursor: out.Body.NextCursor}}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "get-site", Method: http.MethodGet, Path: "/v1/sites/{site}", Summary: "Show a site", Tags: []string{"fleet"}},
		func(ctx context.Context, in *struct {
			Site string `path:"site" doc:"Site name or id."`
		}) (*struct{ Body SiteSummary }, error) {
			st, err := s.cfg.Fleet.Site(ctx, in.Site)
			if err != nil {
				return nil, err
			}
			return &struct{ Body SiteSummary }{s.siteSummary(st)}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-domains", Method: http.MethodGet, Path: "/v1/sites/{site}/domains", Summary: "List a site's topology domains",
		Description: "The domains of one topology level (derived from node paths) with node, GPU, available and spare counts.", Tags: []string{"fleet"}},
		func(ctx context.Context, in *struct {
			PageParams
			Site  string `path:"site" doc:"Site name or id."`
			Level string `query:"level" required:"true" doc:"Topology level, e.g. pod."`
		}) (*struct{ Body List[fleet.DomainCount] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			st, err := s.cfg.Fleet.Site(ctx, in.Site)
			if err != nil {
				return nil, err
			}
			all, err := s.cfg.Fleet.Snapshot.Domains(st, in.Level)
			if err != nil {
				return nil, err
			}
			return pageSorted(all, pg, func(d fleet.DomainCount) string { return d.Path }), nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-nodes", Method: http.MethodGet, Path: "/v1/nodes", Summary: "List nodes",
		Description: "Served from the in-memory fleet. Filters combine; domain matches a topology path prefix (h1/p03 matches every node below pod p03 of hall h1).", Tags: []string{"fleet"}},
		func(ctx context.Context, in *struct {
			PageParams
			Site      string `query:"site" doc:"Site name or id."`
			Domain    string `query:"domain" doc:"Topology path prefix, e.g. h1/p03."`
			SKU       string `query:"sku"`
			Lifecycle string `query:"lifecycle" enum:"provisioning,burn_in,available,maintenance,repair,sanitizing,retired,"`
			Health    string `query:"health" enum:"ok,degraded,unreachable,failed,"`
			Cordoned  string `query:"cordoned" enum:"true,false," doc:"true or false."`
			Spare     string `query:"spare" enum:"true,false," doc:"true or false."`
		}) (*struct{ Body List[fleet.Node] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			f := fleet.NodeFilter{Domain: in.Domain, SKU: in.SKU, Lifecycle: fleet.Lifecycle(in.Lifecycle), Health: fleet.Health(in.Health)}
			if in.Site != "" {
				st, err := s.cfg.Fleet.Site(ctx, in.Site)
				if neocloud.ErrorKind(err) == neocloud.KindNotFound {
					return &struct{ Body List[fleet.Node] }{List[fleet.Node]{Items: []fleet.Node{}}}, nil
				} else if err != nil {
					return nil, err
				}
				f.SiteID = st.ID
			}
			var err error
			if f.Cordoned, err = boolParam("query.cordoned", in.Cordoned); err != nil {
				return nil, err
			}
			if f.Spare, err = boolParam("query.spare", in.Spare); err != nil {
				return nil, err
			}
			items := s.cfg.Fleet.Snapshot.Nodes(f, pg)
			return listOf(items, pg.Limit, func(n fleet.Node) string { return n.ID }), nil
		})

	register(s, opRead, huma.Operation{OperationID: "get-node", Method: http.MethodGet, Path: "/v1/nodes/{node}", Summary: "Show a node", Tags: []string{"fleet"}},
		func(ctx context.Context, in *struct {
			Node string `path:"node" doc:"Node id or hostname."`
		}) (*struct{ Body fleet.Node }, error) {
			n, err := s.cfg.Fleet.Node(ctx, in.Node)
			if err != nil {
				return nil, err
			}
			return &struct{ Body fleet.Node }{n}, nil
		})

	for _, a := range []struct {
		action fleet.Action
		doc    string
	}{
		{fleet.ActionCordon, "No new work is placed on the node; running work stays."},
		{fleet.ActionUncordon, "Placement may use the node again."},
		{fleet.ActionDrain, "Cordon the node and move it to maintenance once its work has ended."},
		{fleet.ActionMaintenance, "Move an idle node to maintenance (409 if in use: drain it)."},
		{fleet.ActionAvailable, "Return a node to service (from maintenance, burn-in, sanitizing or provisioning)."},
		{fleet.ActionRetire, "Retire the node for good (409 while in use)."},
	} {
		register(s, opAdmin, huma.Operation{OperationID: string(a.action) + "-node", Method: http.MethodPost, Path: "/v1/nodes/{node}/" + string(a.action),
			Summary: "Node: " + string(a.action), Description: a.doc + " An illegal lifecycle move answers 409 naming the current state.", Tags: []string{"fleet"}},
			func(ctx context.Context, in *struct {
				Node string `path:"node" doc:"Node id or hostname."`
			}) (*struct{ Body fleet.Node }, error) {
				n, err := s.cfg.Fleet.Act(ctx, in.Node, a.action)
				if err != nil {
					return nil, err
				}
				info(ctx).Object = n.ID
				return &struct{ Body fleet.Node }{n}, nil
			})
	}

	register(s, opReadTenant, huma.Operation{OperationID: "list-skus", Method: http.MethodGet, Path: "/v1/skus", Summary: "List SKUs", Tags: []string{"fleet"}},
		func(ctx context.Context, in *struct{ PageParams }) (*struct{ Body List[fleet.SKU] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			skus, err := s.cfg.Fleet.Store.SKUs(ctx)
			if err != nil {
				return nil, err
			}
			return pageSorted(skus, pg, func(k fleet.SKU) string { return k.Name }), nil
		})
}
