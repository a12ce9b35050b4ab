package billing

import (
	"bytes"
	"encoding/csv"
	"io"
	"strings"
	"testing"

	"github.com/ledongthuc/pdf"

	"github.com/neocloud/neocloud/placement"
)

func goldenInvoice(t *testing.T) Invoice {
	s := newScenario("2027-01")
	end := at("2027-02-08T12:00:00Z")
	s.contract("ctr_res", placement.ClassReserved, 2_500_000, at("2027-01-25T12:00:00Z"), &end, "monthly_in_advance",
		rsv("rsv_r", 16, at("2027-01-25T12:00:00Z"), &end))
	invs := s.rate(t)
	invs[0].Number = "INV-000042"
	return invs[0]
}

// The PDF carries seller, buyer, number, period, every line, tax and the
// totals as text (in its embedded fonts).
func TestPDFTextHasTheTotals(t *testing.T) {
	inv := goldenInvoice(t)
	b, ct, err := Export(inv, FormatPDF)
	if err != nil || ct != "application/pdf" || !bytes.HasPrefix(b, []byte("%PDF-")) {
		t.Fatalf("export: %v %q %q", err, ct, b[:min(8, len(b))])
	}
	if !bytes.Contains(b, []byte("/FontFile2")) {
		t.Fatal("the font is not embedded")
	}
	r, err := pdf.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := r.GetPlainText()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(tr)
	text := string(raw)
	for _, want := range []string{"Invoice", "INV-000042", "Colossus Compute LLC", "Acme AI, Inc.", "2027-01", "USD",
		inv.Subtotal, inv.Tax, inv.Total, inv.Lines[0].Amount, inv.Lines[1].Amount, "Tax (10%)"} {
		if !strings.Contains(text, want) {
			t.Errorf("the PDF's text lacks %q:\n%s", want, text)
		}
	}
}

// The CSV has one row per line, then subtotal, tax and total, in
// micro-units that add up.
func TestCSVRowsAddUp(t *testing.T) {
	inv := goldenInvoice(t)
	b, _, err := Export(inv, FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(inv.Lines)+3 {
		t.Fatalf("%d rows for %d lines", len(rows), len(inv.Lines))
	}
	last := rows[len(rows)-1]
	if last[6] != "total" || last[17] != inv.Total || rows[1][16] != "6240000000" {
		t.Fatalf("rows: %q", rows)
	}
	if _, _, err := Export(inv, "xml"); err == nil {
		t.Fatal("an unknown format exported")
	}
}
