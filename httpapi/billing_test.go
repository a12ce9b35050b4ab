package httpapi_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

// Bad billing input answers problem+json naming the field and changes
// nothing; exports come in the asked format; another tenant's invoice is
// missing.
func TestBillingBadInputAndExports(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		op, a, b := e.secrets["operator-admin"], e.secrets["a/tenant-admin"], e.secrets["b/tenant-member"]
		before := e.state()
		for _, c := range []struct {
			method, path, secret string
			body                 any
			status               int
			field                string
		}{
			{"POST", "/v1/billing/periods", op, map[string]any{"period": "2999-01"}, 422, "body.period"},
			{"POST", "/v1/billing/periods", op, map[string]any{"period": "2027-Q1"}, 422, "body.period"},
			{"POST", "/v1/billing/periods", op, map[string]any{"period": "January"}, 422, "body.period"},
			{"GET", "/v1/usage?period=2027-13", a, nil, 422, "query.period"},
			{"GET", "/v1/usage?period=2027-01&by=week", a, nil, 422, "query.by"},
			{"GET", "/v1/usage?period=2027-01&tenant=tenant-b", a, nil, 404, ""},
			{"GET", "/v1/invoices?period=2027", a, nil, 422, "query.period"},
			{"GET", "/v1/invoices/" + e.invoices["a"].ID + "/export?format=xml", a, nil, 422, "query.format"},
			{"POST", "/v1/invoices/" + e.invoices["a"].ID + "/credit-notes", op, map[string]any{"amount": "5000", "reason": "x"}, 422, "body.amount"},
			{"POST", "/v1/invoices/" + e.invoices["a"].ID + "/credit-notes", op, map[string]any{"amount": "1.1234567", "reason": "x"}, 422, "body.amount"},
			{"POST", "/v1/invoices/" + e.invoices["a"].ID + "/credit-notes", op, map[string]any{"amount": "1"}, 422, "body.reason"},
			{"PUT", "/v1/tenants/tenant-a/billing", op, map[string]any{"tax_rate_percent": "abc"}, 422, "body.tax_rate_percent"},
			{"PUT", "/v1/tenants/tenant-a/billing", op, map[string]any{"tax_rate_percent": "101"}, 422, "body.tax_rate_percent"},
			{"PUT", "/v1/billing/seller", op, map[string]any{"name": "", "invoice_prefix": "INV-", "credit_prefix": "CN-", "payment_terms_days": 30, "close_after_s": 0}, 422, "body.name"},
			{"PUT", "/v1/billing/seller", op, map[string]any{"name": "x", "invoice_prefix": "A-", "credit_prefix": "A-", "payment_terms_days": 30, "close_after_s": 0}, 422, "body.credit_prefix"},
			{"GET", "/v1/invoices/" + e.invoices["a"].ID, b, nil, 404, ""},
			{"GET", "/v1/invoices/" + e.invoices["a"].Number + "/export?format=pdf", b, nil, 404, ""},
		} {
			r := e.do(c.method, c.path, c.secret, c.body)
			if r.status != c.status || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.body), c.field) {
				t.Errorf("%s %s %v: %d %s", c.method, c.path, c.body, r.status, r.body)
			}
		}
		if after := e.state(); after != before {
			t.Fatalf("bad input changed state:\n%s\n%s", before, after)
		}
		for format, ct := range map[string]string{"pdf": "application/pdf", "csv": "text/csv; charset=utf-8", "json": "application/json"} {
			r := e.do("GET", "/v1/invoices/"+e.invoices["a"].Number+"/export?format="+format, a, nil)
			if r.status != 200 || r.header.Get("Content-Type") != ct || !strings.Contains(r.header.Get("Content-Disposition"), e.invoices["a"].Number) {
				t.Errorf("export %s: %d %q %q", format, r.status, r.header.Get("Content-Type"), r.header.Get("Content-Disposition"))
			}
			if format == "pdf" && !bytes.HasPrefix(r.body, []byte("%PDF-")) {
				t.Errorf("not a PDF: %.20q", r.body)
			}
			if format == "csv" && !strings.Contains(string(r.body), "1000000000") {
				t.Errorf("CSV: %s", r.body)
			}
		}
		// A month that ended closes once.
		if r := e.do("POST", "/v1/billing/periods", op, map[string]any{"period": "2001-01"}); r.status != 201 {
			t.Fatalf("close: %d %s", r.status, r.body)
		}
		if r := e.do("POST", "/v1/billing/periods", op, map[string]any{"period": "2001-01"}); r.status != 409 || !strings.Contains(string(r.body), "closed") {
			t.Fatalf("close again: %d %s", r.status, r.body)
		}
	})
}
