package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/tenant"
)

type tenantOut struct{ Body tenant.Tenant }

type tokenOut struct{ Body tenant.Token }

// TokenWithSecret is the answer to creating a token: the only time the
// secret is shown.
type TokenWithSecret struct {
	tenant.Token
	Secret string `json:"secret" doc:"The bearer secret. Shown once; store it now."`
}

// Me describes the caller, and the control plane's clock.
type Me struct {
	TokenID  string        `json:"token_id"`
	Role     neocloud.Role `json:"role"`
	TenantID string        `json:"tenant_id,omitempty"`
	Now      time.Time     `json:"now" doc:"The control plane's clock: the now of its lifecycle, meters and telemetry (a demo runs it faster than real time)."`
}

func (s *Server) registerTenants() {
	register(s, anyRole, huma.Operation{OperationID: "get-me", Method: http.MethodGet, Path: "/v1/me", Summary: "Who am I", Tags: []string{"tokens"}},
		func(ctx context.Context, _ *struct{}) (*struct{ Body Me }, error) {
			p := principal(ctx)
			return &struct{ Body Me }{Me{TokenID: p.TokenID, Role: p.Role, TenantID: p.TenantID, Now: s.cfg.Now().UTC()}}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "create-tenant", Method: http.MethodPost, Path: "/v1/tenants", Summary: "Create a tenant", Tags: []string{"tenants"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct{ Body tenant.CreateInput }) (*tenantOut, error) {
			t, err := s.cfg.Tenants.Create(ctx, in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object, info(ctx).Tenant = t.ID, t.ID
			return &tenantOut{t}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-tenants", Method: http.MethodGet, Path: "/v1/tenants", Summary: "List tenants", Tags: []string{"tenants"}},
		func(ctx context.Context, in *struct {
			PageParams
			Internal string `query:"internal" enum:"true,false," doc:"Only internal (true) or external (false) tenants."`
		}) (*struct{ Body List[tenant.Tenant] }, error) {
			var f tenant.TenantFilter
			if in.Internal != "" {
				b := in.Internal == "true"
				f.Internal = &b
			}
			pg := in.page()
			items, err := s.cfg.Tenants.List(ctx, f, pg)
			if err != nil {
				return nil, err
			}
			return listOf(items, limitOf(pg), func(t tenant.Tenant) string { return t.ID }), nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "get-tenant", Method: http.MethodGet, Path: "/v1/tenants/{tenant}", Summary: "Show a tenant", Tags: []string{"tenants"}},
		func(ctx context.Context, in *struct {
			Tenant string `path:"tenant" doc:"Tenant name or id."`
		}) (*tenantOut, error) {
			t, err := s.cfg.Tenants.Resolve(ctx, principal(ctx), in.Tenant)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &tenantOut{t}, nil
		})

	register(s, opAdminTA, huma.Operation{OperationID: "create-token", Method: http.MethodPost, Path: "/v1/tokens", Summary: "Create a token", Tags: []string{"tokens"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct{ Body tenant.CreateTokenInput }) (*struct{ Body TokenWithSecret }, error) {
			t, secret, err := s.cfg.Tenants.CreateToken(ctx, principal(ctx), in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object, info(ctx).Tenant = t.ID, t.TenantID
			return &struct{ Body TokenWithSecret }{TokenWithSecret{t, secret}}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "list-tokens", Method: http.MethodGet, Path: "/v1/tokens", Summary: "List tokens", Tags: []string{"tokens"}},
		func(ctx context.Context, in *struct {
			PageParams
			Tenant  string `query:"tenant" doc:"Tenant name or id."`
			Role    string `query:"role" doc:"Only tokens of this role."`
			Revoked bool   `query:"revoked" doc:"Include revoked tokens."`
		}) (*struct{ Body List[tenant.Token] }, error) {
			p := principal(ctx)
			f := tenant.TokenFilter{Role: neocloud.Role(in.Role), IncludeRevoked: in.Revoked}
			if in.Tenant != "" {
				t, err := s.cfg.Tenants.Resolve(ctx, p, in.Tenant)
				if err != nil {
					if neocloud.ErrorKind(err) == neocloud.KindNotFound {
						// A filter naming a foreign tenant matches nothing.
						return &struct{ Body List[tenant.Token] }{List[tenant.Token]{Items: []tenant.Token{}}}, nil
					}
					return nil, err
				}
				f.TenantID = t.ID
			}
			pg := in.page()
			items, err := s.cfg.Tenants.Tokens(ctx, p, f, pg)
			if err != nil {
				return nil, err
			}
			return listOf(items, limitOf(pg), func(t tenant.Token) string { return t.ID }), nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "get-token", Method: http.MethodGet, Path: "/v1/tokens/{token}", Summary: "Show a token", Tags: []string{"tokens"}},
		func(ctx context.Context, in *struct {
			Token string `path:"token" doc:"Token id."`
		}) (*tokenOut, error) {
			t, err := s.cfg.Tenants.Token(ctx, principal(ctx), in.Token)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &tokenOut{t}, nil
		})

	register(s, []neocloud.Role{neocloud.RoleOperatorAdmin, neocloud.RoleTenantAdmin, neocloud.RoleTenantMember},
		huma.Operation{OperationID: "revoke-token", Method: http.MethodDelete, Path: "/v1/tokens/{token}", Summary: "Revoke a token",
			Description: "Revocation takes effect on the next request. A tenant-member may revoke only its own token.", Tags: []string{"tokens"}},
		func(ctx context.Context, in *struct {
			Token string `path:"token" doc:"Token id."`
		}) (*tokenOut, error) {
			info(ctx).Object = in.Token
			t, err := s.cfg.Tenants.Revoke(ctx, principal(ctx), in.Token)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			info(ctx).Tenant = t.TenantID
			return &tokenOut{t}, nil
		})
}

// limitOf returns the effective page size of a request.
func limitOf(p neocloud.Page) int {
	if p.Limit == 0 {
		return neocloud.DefaultLimit
	}
	return p.Limit
}
