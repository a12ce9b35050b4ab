package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
)

// Role sets used by the roles table (ARCHITECTURE.md, "Roles").
var (
	opAdmin      = []neocloud.Role{neocloud.RoleOperatorAdmin}
	opRead       = []neocloud.Role{neocloud.RoleOperatorAdmin, neocloud.RoleOperatorViewer}
	opAdminTA    = []neocloud.Role{neocloud.RoleOperatorAdmin, neocloud.RoleTenantAdmin}
	opReadTA     = []neocloud.Role{neocloud.RoleOperatorAdmin, neocloud.RoleOperatorViewer, neocloud.RoleTenantAdmin}
	opReadTenant = []neocloud.Role{neocloud.RoleOperatorAdmin, neocloud.RoleOperatorViewer, neocloud.RoleTenantAdmin, neocloud.RoleTenantMember}
	anyRole      = neocloud.Roles
)

// register adds an operation that only the given roles may call. Handler
// errors (neocloud kinds) become problem+json here.
func register[I, O any](s *Server, roles []neocloud.Role, op huma.Operation, h func(context.Context, *I) (*O, error)) {
	op.Metadata = map[string]any{"roles": roles}
	op.Security = []map[string][]string{{"bearer": {}}}
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	op.Description = strings.TrimSpace(op.Description + "\n\nRoles: " + strings.Join(names, ", ") + ".")
	if op.Method != http.MethodGet {
		op.Parameters = append(op.Parameters, &huma.Param{
			Name: "Idempotency-Key", In: "header", Schema: &huma.Schema{Type: "string", MaxLength: ptr(255)},
			Description: "Makes the request safe to retry: a replay returns the first response with no second effect.",
		})
	}
	op.Errors = append(op.Errors, 400, 401, 403, 404, 409, 422)
	huma.Register(s.api, op, func(ctx context.Context, in *I) (*O, error) {
		out, err := h(ctx, in)
		if err != nil {
			if neocloud.ErrorKind(err) == neocloud.KindInternal {
				s.cfg.Logger.Error("handler failed", "request_id", info(ctx).ID, "op", op.OperationID, "err", err)
			}
			return nil, problemFor(err)
		}
		return out, nil
	})
}

func ptr[T any](v T) *T { return &v }

// PageParams are the pagination query parameters of every list.
type PageParams struct {
	Limit  int    `query:"limit" minimum:"0" maximum:"1000" doc:"Items per page (default 100)."`
	Cursor string `query:"cursor" doc:"Opaque cursor from next_cursor of the previous page."`
}

func (p PageParams) page() neocloud.Page { return neocloud.Page{Cursor: p.Cursor, Limit: p.Limit} }

// List is the body of every list answer.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty" doc:"Pass as cursor to get the next page; absent on the last page."`
}

// listOf builds a page answer; key gives the sort key of an item.
func listOf[T any](items []T, limit int, key func(T) string) *struct{ Body List[T] } {
	out := &struct{ Body List[T] }{Body: List[T]{Items: items}}
	if limit > 0 && len(items) == limit {
		out.Body.NextCursor = neocloud.EncodeCursor(key(items[len(items)-1]))
	}
	return out
}

// pageSorted answers one page of a list already sorted by key, held in
// memory: the items after the cursor, at most pg.Limit of them.
func pageSorted[T any](all []T, pg neocloud.Page, key func(T) string) *struct{ Body List[T] } {
	after := pg.After()
	items := []T{}
	for _, x := range all {
		if key(x) > after && len(items) < pg.Limit {
			items = append(items, x)
		}
	}
	return listOf(items, pg.Limit, key)
}

// notFoundDenied marks the request as denied when err hides a foreign
// object, so that it is audited; it returns err unchanged.
func notFoundDenied(ctx context.Context, err error) error {
	if neocloud.ErrorKind(err) == neocloud.KindNotFound && principal(ctx).Role.Tenant() {
		info(ctx).Denied = true
	}
	return err
}
