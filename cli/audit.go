package cli

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud/audit"
)

var auditCols = []column{{"SEQ", "seq"}, {"AT", "at"}, {"ACTOR", "actor"}, {"ROLE", "actor_role"}, {"TENANT", "tenant"},
	{"ACTION", "action"}, {"OBJECT", "object"}, {"STATUS", "status"}, {"RESULT", "result"}, {"SOURCE", "source"}, {"REQUEST", "request_id"}}

func auditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The append-only, hash-chained audit trail"}

	var lf listFlags
	var f struct{ tenant, actor, action, result, since, until string }
	list := &cobra.Command{Use: "list", Short: "List audit records, newest first", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := filters(map[string]string{"tenant": f.tenant, "actor": f.actor, "action": f.action, "result": f.result})
			for k, v := range map[string]string{"since": f.since, "until": f.until} {
				if v == "" {
					continue
				}
				t, err := ParseInstant(v)
				if err != nil {
					return fmt.Errorf("--%s: %w", k, err)
				}
				q.Set(k, t.Format("2006-01-02T15:04:05.999999Z"))
			}
			return g.list(c.Context(), "/v1/audit", q, lf, auditCols)
		}}
	lf.add(list)
	list.Flags().StringVar(&f.tenant, "tenant", "", "tenant id")
	list.Flags().StringVar(&f.actor, "actor", "", "token id of the caller")
	list.Flags().StringVar(&f.action, "action", "", "operation id, e.g. create-tenant")
	list.Flags().StringVar(&f.result, "result", "", "ok, denied or failed")
	list.Flags().StringVar(&f.since, "since", "", "RFC 3339 instant, inclusive")
	list.Flags().StringVar(&f.until, "until", "", "RFC 3339 instant, exclusive")

	verify := &cobra.Command{Use: "verify", Short: "Verify the hash chain; exits non-zero if it is broken", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var v audit.Verification
			if err := cl.Do(c.Context(), http.MethodGet, "/v1/audit/verify", nil, nil, &v); err != nil {
				return err
			}
			if g.output == "json" {
				printJSON(g.stdout, v)
			} else if v.OK {
				fmt.Fprintf(g.stdout, "ok: %d records, head %s\n", v.Records, v.HeadHash)
			}
			if !v.OK {
				return fmt.Errorf("audit chain broken at seq %d: %s", v.FirstBadSeq, v.Reason)
			}
			return nil
		}}
	cmd.AddCommand(list, verify)
	return cmd
}
