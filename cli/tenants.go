package cli

import (
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud/tenant"
)

var tenantCols = []column{{"ID", "id"}, {"NAME", "name"}, {"DISPLAY NAME", "display_name"}, {"INTERNAL", "internal"}, {"CREATED", "created_at"}}

var tokenCols = []column{{"ID", "id"}, {"NAME", "name"}, {"ROLE", "role"}, {"TENANT", "tenant_id"}, {"HINT", "hint"}, {"CREATED", "created_at"}, {"REVOKED", "revoked_at"}}

func tenantCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Tenants: customers and the operator's internal tenant"}

	var in tenant.CreateInput
	create := &cobra.Command{Use: "create NAME", Short: "Create a tenant", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			in.Name = args[0]
			return g.one(c.Context(), http.MethodPost, "/v1/tenants", in, tenantCols)
		}}
	create.Flags().StringVar(&in.DisplayName, "display-name", "", "name shown to people")
	create.Flags().BoolVar(&in.Internal, "internal", false, "the operator's own internal tenant")

	var lf listFlags
	var internal string
	list := &cobra.Command{Use: "list", Short: "List tenants", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/tenants", filters(map[string]string{"internal": internal}), lf, tenantCols)
		}}
	lf.add(list)
	list.Flags().StringVar(&internal, "internal", "", "true or false")

	show := &cobra.Command{Use: "show NAME|ID", Short: "Show a tenant", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodGet, "/v1/tenants/"+url.PathEscape(args[0]), nil, tenantCols)
		}}
	cmd.AddCommand(create, list, show)
	return cmd
}

func tokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Bearer tokens: created once, stored hashed, revocable"}

	var in tenant.CreateTokenInput
	var role string
	create := &cobra.Command{Use: "create NAME", Short: "Create a token and print its secret once", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			in.Name = args[0]
			in.Role = roleOf(role)
			cols := append(append([]column{}, tokenCols[:5]...), column{"SECRET (shown once)", "secret"})
			return g.one(c.Context(), http.MethodPost, "/v1/tokens", in, cols)
		}}
	create.Flags().StringVar(&role, "role", "", "operator-admin, operator-viewer, tenant-admin or tenant-member")
	create.Flags().StringVar(&in.Tenant, "tenant", "", "tenant name or id (tenant roles)")
	create.MarkFlagRequired("role")

	var lf listFlags
	var tenantRef, roleFilter string
	var revoked bool
	list := &cobra.Command{Use: "list", Short: "List tokens", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := filters(map[string]string{"tenant": tenantRef, "role": roleFilter})
			if revoked {
				q.Set("revoked", "true")
			}
			return g.list(c.Context(), "/v1/tokens", q, lf, tokenCols)
		}}
	lf.add(list)
	list.Flags().StringVar(&tenantRef, "tenant", "", "tenant name or id")
	list.Flags().StringVar(&roleFilter, "role", "", "only this role")
	list.Flags().BoolVar(&revoked, "revoked", false, "include revoked tokens")

	revoke := &cobra.Command{Use: "revoke ID", Short: "Revoke a token (effective on the next request)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodDelete, "/v1/tokens/"+url.PathEscape(args[0]), nil, tokenCols)
		}}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
