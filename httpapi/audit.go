package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/audit"
)

func parseInstant(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, neocloud.Invalid(field, "must be an RFC 3339 instant, e.g. 2027-01-04T00:00:00Z")
	}
	return t.UTC(), nil
}

func (s *Server) registerAudit() {
	register(s, opReadTA, huma.Operation{OperationID: "list-audit", Method: http.MethodGet, Path: "/v1/audit", Summary: "List audit records, newest first",
		Description: "Operators read every record; a tenant-admin reads its own tenant's records, including operator actions on its objects.", Tags: []string{"audit"}},
		func(ctx context.Context, in *struct {
			PageParams
			Tenant string `query:"tenant" doc:"Tenant id (operators only; tenant-admins always see their own)."`
			Actor  string `query:"actor" doc:"Token id of the caller."`
			Action string `query:"action" doc:"Operation id, e.g. create-tenant."`
			Result string `query:"result" enum:"ok,denied,failed," doc:"ok, denied or failed."`
			Since  string `query:"since" doc:"RFC 3339 instant, inclusive."`
			Until  string `query:"until" doc:"RFC 3339 instant, exclusive."`
		}) (*struct{ Body List[audit.Record] }, error) {
			p := principal(ctx)
			f := audit.Filter{Tenant: in.Tenant, Actor: in.Actor, Action: in.Action, Result: in.Result}
			var err error
			if f.Since, err = parseInstant("query.since", in.Since); err != nil {
				return nil, err
			}
			if f.Until, err = parseInstant("query.until", in.Until); err != nil {
				return nil, err
			}
			if p.Role.Tenant() {
				if in.Tenant != "" && in.Tenant != p.TenantID {
					return &struct{ Body List[audit.Record] }{List[audit.Record]{Items: []audit.Record{}}}, nil
				}
				f.Tenant = p.TenantID
			}
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			items, err := s.cfg.Audit.Audit(ctx, f, pg)
			if err != nil {
				return nil, err
			}
			return listOf(items, pg.Limit, func(r audit.Record) string { return strconv.FormatInt(r.Seq, 10) }), nil
		})

	register(s, opRead, huma.Operation{OperationID: "verify-audit", Method: http.MethodGet, Path: "/v1/audit/verify", Summary: "Verify the audit hash chain",
		Description: "Recomputes every record's hash and link; reports the first record that does not match.", Tags: []string{"audit"}},
		func(ctx context.Context, _ *struct{}) (*struct{ Body audit.Verification }, error) {
			v, err := audit.Verify(ctx, s.cfg.Audit)
			if err != nil {
				return nil, err
			}
			return &struct{ Body audit.Verification }{v}, nil
		})
}
