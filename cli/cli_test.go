package cli_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/fleet"
)

// run runs the CLI in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, url, token string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(append([]string{"--server", url, "--token", token}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func startServer(t *testing.T) *cli.Running {
	t.Helper()
	r, err := cli.StartServer(context.Background(), cli.ServerOptions{
		Listen: "127.0.0.1:0", DataDir: filepath.Join(t.TempDir(), "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if !strings.HasPrefix(r.Token, "nct_") {
		t.Fatalf("first start printed no operator-admin token: %q", r.Token)
	}
	return r
}

func TestCLITenantsTokensAudit(t *testing.T) {
	srv := startServer(t)
	op := srv.Token

	out, errOut, code := run(t, srv.URL, op, "tenant", "create", "acme", "--display-name", "Acme AI")
	if code != 0 || !strings.Contains(out, "acme") || !strings.Contains(out, "Acme AI") {
		t.Fatalf("tenant create: %d %q %q", code, out, errOut)
	}
	// A duplicate is refused with the field and exit 1.
	_, errOut, code = run(t, srv.URL, op, "tenant", "create", "acme")
	if code != 1 || !strings.Contains(errOut, "body.name") || !strings.Contains(errOut, "conflict") {
		t.Errorf("duplicate tenant: exit %d, stderr %q", code, errOut)
	}
	// json prints exactly the API's objects.
	out, _, _ = run(t, srv.URL, op, "tenant", "list", "-o", "json")
	var tenants []map[string]any
	if err := json.Unmarshal([]byte(out), &tenants); err != nil || len(tenants) != 1 || tenants[0]["name"] != "acme" {
		t.Errorf("tenant list -o json = %q (%v)", out, err)
	}
	out, _, _ = run(t, srv.URL, op, "tenant", "show", "acme", "-o", "json")
	var one map[string]any
	if err := json.Unmarshal([]byte(out), &one); err != nil || one["id"] != tenants[0]["id"] {
		t.Errorf("tenant show -o json = %q", out)
	}

	out, _, code = run(t, srv.URL, op, "token", "create", "acme-admin", "--role", "tenant-admin", "--tenant", "acme", "-o", "json")
	var tok map[string]any
	if err := json.Unmarshal([]byte(out), &tok); code != 0 || err != nil || !strings.HasPrefix(tok["secret"].(string), "nct_") {
		t.Fatalf("token create: %d %q", code, out)
	}
	secret := tok["secret"].(string)
	// The tenant-admin sees its tenant and its tokens, never the list of tenants.
	if out, _, code := run(t, srv.URL, secret, "tenant", "show", "acme"); code != 0 || !strings.Contains(out, "acme") {
		t.Errorf("tenant-admin tenant show: %d %q", code, out)
	}
	if _, errOut, code := run(t, srv.URL, secret, "tenant", "list"); code != 1 || !strings.Contains(errOut, "forbidden") {
		t.Errorf("tenant-admin tenant list: %d %q, want forbidden", code, errOut)
	}
	out, _, _ = run(t, srv.URL, op, "token", "list", "--tenant", "acme", "-o", "csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 2 || rows[0][0] != "id" || rows[1][0] != tok["id"] {
		t.Errorf("token list -o csv = %q (%v)", out, err)
	}
	// A table names the tenant, to an operator and to the tenant, whose
	// token is not sent to list tenants (a denied read would be audited);
	// csv keeps the id.
	tenantID := tenants[0]["id"].(string)
	if rows[1][3] != tenantID {
		t.Errorf("token list -o csv: tenant_id %q, want %q", rows[1][3], tenantID)
	}
	denied := func() string {
		out, _, _ := run(t, srv.URL, op, "audit", "list", "--result", "denied", "-o", "json")
		return out
	}
	before := denied()
	for _, token := range []string{op, secret} {
		out, _, _ = run(t, srv.URL, token, "token", "list", "--tenant", "acme")
		if lines := strings.Split(out, "\n"); len(lines) < 2 || !slices.Contains(strings.Fields(lines[1]), "acme") || strings.Contains(out, tenantID) {
			t.Errorf("token list names no tenant: %q", out)
		}
	}
	if after := denied(); after != before {
		t.Errorf("naming a table's tenants was refused: %s", after)
	}
	if _, errOut, code := run(t, srv.URL, op, "token", "revoke", tok["id"].(string)); code != 0 {
		t.Errorf("token revoke: %d %q", code, errOut)
	}
	if _, errOut, code := run(t, srv.URL, secret, "tenant", "show", "acme"); code != 1 || !strings.Contains(errOut, "unauthenticated") {
		t.Errorf("revoked token: %d %q, want unauthenticated", code, errOut)
	}

	out, _, code = run(t, srv.URL, op, "audit", "list", "--action", "create-tenant")
	if code != 0 || !strings.Contains(out, "create-tenant") || !strings.Contains(out, "ok") || !strings.Contains(out, "failed") {
		t.Errorf("audit list: %d %q", code, out)
	}
	out, errOut, code = run(t, srv.URL, op, "audit", "verify")
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := run(t, srv.URL, op, "audit", "list", "--since", "yesterday"); code != 1 || !strings.Contains(errOut, "RFC 3339") {
		t.Errorf("bad --since: %d %q", code, errOut)
	}
}

func TestBootstrapTokenIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	const secret = "operator-chosen-secret-0001"
	for i := 0; i < 2; i++ {
		r, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DataDir: dir, Bootstrap: secret,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if r.Token != "" {
			t.Errorf("start %d printed a generated token although a bootstrap token was given", i)
		}
		out, errOut, code := run(t, r.URL, secret, "token", "list", "-o", "json")
		var toks []map[string]any
		json.Unmarshal([]byte(out), &toks)
		if code != 0 || len(toks) != 1 {
			t.Errorf("start %d: %d tokens (%q %q), want exactly the bootstrap one", i, len(toks), out, errOut)
		}
		r.Close()
	}
	if _, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Bootstrap: "short"}); err == nil {
		t.Error("a 5-character bootstrap token was accepted")
	}
}

// Secrets in the environment (the bearer token, a join token, the
// database URL's password) are used, and help, which lists flags with their
// defaults, does not print them.
func TestSecretsFromEnvironmentStayOutOfHelp(t *testing.T) {
	srv := startServer(t)
	const joinSecret, dbPassword = "njt_join-secret-in-env", "db-password-in-env"
	t.Setenv("NEOCLOUD_TOKEN", srv.Token)
	t.Setenv("NEOCLOUD_JOIN_TOKEN", joinSecret)
	t.Setenv("NEOCLOUD_DATABASE_URL", "postgres://neocloud:"+dbPassword+"@127.0.0.1:1/neocloud")
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"--server", srv.URL, "tenant", "list"}, &out, &errb); code != 0 {
		t.Fatalf("tenant list with the token from the environment: %d %q", code, errb.String())
	}
	for _, c := range []struct {
		args []string
		flag string
	}{{[]string{"--help"}, "--token"}, {[]string{"tenant", "list", "--help"}, "--token"},
		{[]string{"agent", "--help"}, "--join-token"}, {[]string{"server", "--help"}, "--database-url"}} {
		out.Reset()
		cli.Main(c.args, &out, &out)
		if !strings.Contains(out.String(), c.flag) {
			t.Fatalf("%v printed no %s flag: %q", c.args, c.flag, out.String())
		}
		for _, secret := range []string{srv.Token, joinSecret, dbPassword} {
			if strings.Contains(out.String(), secret) {
				t.Errorf("%v printed a secret from the environment: %q", c.args, secret)
			}
		}
	}
}

// mustRun runs the CLI against url with token, failing the test on a
// non-zero exit; it returns standard output.
func mustRun(t *testing.T, url, token string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, url, token, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	return out
}

// applySite applies, through the CLI, a generated Colossus-shaped site of
// H100 nodes laid out by fanout (halls' pods, sus, racks, nodes).
func applySite(t *testing.T, url, token string, fanout ...int) fleet.SKU {
	t.Helper()
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	nodes := 1
	for _, f := range fanout {
		nodes *= f
	}
	var spec bytes.Buffer
	o := fleet.ColossusOptions(sku, nodes*sku.GPUsPerNode)
	o.Fanout = fanout
	if _, err := fleet.Generate(&spec, o); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(path, spec.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, url, token, "fleet", "apply", "-f", path)
	return sku
}
