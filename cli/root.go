// Package cli is the neocloud command: the server and the client verbs, one
// grammar for all of them (ARCHITECTURE.md, "Conventions"). It is the only
// package that wires concrete stores and transports together.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/client"
)

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "error:", describe(err))
		return 1
	}
	return 0
}

func describe(err error) string {
	var e *neocloud.Error
	if errors.As(err, &e) {
		s := e.Message
		if e.Field != "" {
			s = e.Field + ": " + s
		}
		if e.State != "" && !strings.Contains(s, e.State) { // the server's detail may say it already
			s += " (current state: " + e.State + ")"
		}
		return string(e.Kind) + ": " + s
	}
	return err.Error()
}

type globals struct {
	server string
	token  string
	output string
	stdout io.Writer
	stderr io.Writer
	who    *me // the token's answer from /v1/me, once asked
}

func (g *globals) client() (*client.Client, error) {
	if g.server == "" {
		return nil, errors.New("no server: pass --server or set NEOCLOUD_SERVER")
	}
	token := g.token
	if token == "" {
		// Read here, not as the flag's default: help would print it.
		token = os.Getenv("NEOCLOUD_TOKEN")
	}
	return client.New(g.server, token), nil
}

// extra are commands built on this package (the demo runs its server):
// their packages cannot be imported here, so the binary registers them.
var extra []func() *cobra.Command

// Register adds a command to every root built after it (call it from an
// init function of the binary).
func Register(cmd func() *cobra.Command) { extra = append(extra, cmd) }

// NewRoot builds the root command.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "neocloud",
		Short:         "Control plane of a GPU neocloud",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.server, "server", envOr("NEOCLOUD_SERVER", "http://127.0.0.1:8080"), "server URL (NEOCLOUD_SERVER)")
	root.PersistentFlags().StringVar(&g.token, "token", "", "bearer token (default NEOCLOUD_TOKEN)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table, json or csv")
	root.AddCommand(serverCmd(g), tenantCmd(g), tokenCmd(g), auditCmd(g), fleetCmd(g), siteCmd(g), nodeCmd(g), skuCmd(g),
		priceCmd(g), quotaCmd(g), quoteCmd(g), reservationCmd(g), contractCmd(g), eventsCmd(g), internalCmd(g), maintenanceCmd(g), simCmd(g), agentCmd(g), relayCmd(g), healthCmd(g), replicaCmd(g), repairCmd(g), breakFixCmd(g), benchCmd(g), usageCmd(g), invoiceCmd(g), billingCmd(g), creditsCmd(g), emissionsCmd(g), financeCmd(g))
	for _, cmd := range extra {
		root.AddCommand(cmd())
	}
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// listFlags are the pagination flags every list verb takes.
type listFlags struct {
	limit  int
	cursor string
	all    bool
}

func (l *listFlags) add(c *cobra.Command) {
	c.Flags().IntVar(&l.limit, "limit", 100, "items per page (1-1000)")
	c.Flags().StringVar(&l.cursor, "cursor", "", "cursor from a previous page")
	c.Flags().BoolVar(&l.all, "all", false, "fetch every page")
}

// list fetches one page (or all with --all) of path and prints it.
func (g *globals) list(ctx context.Context, path string, q url.Values, lf listFlags, cols []column) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("limit", strconv.Itoa(lf.limit))
	cursor := lf.cursor
	var items []json.RawMessage
	for {
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := c.Do(ctx, http.MethodGet, path, q, nil, &page); err != nil {
			return err
		}
		items = append(items, page.Items...)
		cursor = page.NextCursor
		if cursor == "" || !lf.all {
			break
		}
	}
	if err := g.print(ctx, c, items, false, cols); err != nil {
		return err
	}
	if cursor != "" && !lf.all {
		fmt.Fprintf(g.stderr, "more: --cursor %s (or --all)\n", cursor)
	}
	return nil
}

// one performs a request answering one object and prints it.
func (g *globals) one(ctx context.Context, method, path string, body any, cols []column) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	raw, err := c.Raw(ctx, method, path, nil, body, "")
	if err != nil {
		return err
	}
	return g.print(ctx, c, []json.RawMessage{raw}, true, cols)
}

// print prints API objects in g's output format. A table names the
// tenants whose ids the objects hold; json and csv keep the ids.
func (g *globals) print(ctx context.Context, c *client.Client, raw []json.RawMessage, single bool, cols []column) error {
	var names map[string]string
	if g.output == "table" && slices.ContainsFunc(cols, func(c column) bool { return c.Key == tenantIDKey }) {
		names = g.tenantNames(ctx, c)
	}
	return printNamed(g.stdout, g.output, raw, single, cols, names)
}

// me is who the token is, and the control plane's clock.
type me struct {
	Role     neocloud.Role `json:"role"`
	TenantID string        `json:"tenant_id"`
	Now      time.Time     `json:"now"`
}

// me asks the server who the token is, once a command.
func (g *globals) me(ctx context.Context) (me, error) {
	if g.who != nil {
		return *g.who, nil
	}
	c, err := g.client()
	if err != nil {
		return me{}, err
	}
	var m me
	if err := c.Do(ctx, http.MethodGet, "/v1/me", nil, nil, &m); err != nil {
		return me{}, err
	}
	g.who = &m
	return m, nil
}

// tenantNames maps tenant ids to names: every tenant's for an operator's
// token, its own tenant's for a tenant's (which may not list tenants, and
// is not sent to be refused: a denied read is audited). It is nil when
// they cannot be read; a table then shows the ids.
func (g *globals) tenantNames(ctx context.Context, c *client.Client) map[string]string {
	type named struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	m, err := g.me(ctx)
	if err != nil {
		return nil
	}
	if m.TenantID != "" {
		var t named
		if err := c.Do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(m.TenantID), nil, nil, &t); err != nil {
			return nil
		}
		return map[string]string{t.ID: t.Name}
	}
	if !m.Role.Operator() {
		return nil // an agent's token, say
	}
	names := map[string]string{}
	q := url.Values{"limit": {"1000"}}
	for {
		var page struct {
			Items      []named `json:"items"`
			NextCursor string  `json:"next_cursor"`
		}
		if err := c.Do(ctx, http.MethodGet, "/v1/tenants", q, nil, &page); err != nil {
			return nil
		}
		for _, t := range page.Items {
			names[t.ID] = t.Name
		}
		if page.NextCursor == "" {
			return names
		}
		q.Set("cursor", page.NextCursor)
	}
}

// filters makes list query parameters from flag values, leaving out the
// empty ones: filters have the same names in the CLI and the API.
func filters(kv map[string]string) url.Values {
	q := url.Values{}
	for k, v := range kv {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}
