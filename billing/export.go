package billing

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
)

// Export formats.
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
	FormatPDF  = "pdf"
)

// Export renders an invoice or credit note as JSON, CSV or PDF, with the
// content type to serve it under.
func Export(inv Invoice, format string) ([]byte, string, error) {
	switch format {
	case FormatJSON, "":
		b, err := json.MarshalIndent(inv, "", "  ")
		return append(b, '\n'), "application/json", err
	case FormatCSV:
		b, err := CSV(inv)
		return b, "text/csv; charset=utf-8", err
	case FormatPDF:
		b, err := PDF(inv)
		return b, "application/pdf", err
	}
	return nil, "", fmt.Errorf("format %q: want json, csv or pdf", format)
}

// CSV writes one row per line, then the subtotal, tax and total rows: the
// same columns for invoices and credit notes.
func CSV(inv Invoice) ([]byte, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"number", "kind", "tenant", "period", "currency", "line", "line_kind", "description", "contract_id", "reservation_id",
		"service_start", "service_end", "quantity", "unit", "unit_price", "energy_source", "amount_micros", "amount"})
	row := func(n, kind, desc, contract, rsv, start, end, qty, unit, price, src string, micros int64) {
		w.Write([]string{inv.Number, inv.Kind, inv.TenantName, inv.Period, inv.Currency, n, kind, desc, contract, rsv, start, end, qty, unit, price, src,
			strconv.FormatInt(micros, 10), money(micros)})
	}
	for _, l := range inv.Lines {
		price := l.UnitPrice
		if price == "" {
			var ps []string
			for _, p := range l.Rates {
				ps = append(ps, p.Quantity+"@"+p.Rate)
			}
			price = strings.Join(ps, " ")
		}
		row(strconv.Itoa(l.N), l.Kind, l.Description, l.ContractID, l.ReservationID, stamp(l.ServiceStart), stamp(l.ServiceEnd), l.Quantity, l.Unit, price, l.EnergySource, l.AmountMicros)
	}
	row("", "subtotal", "Subtotal", "", "", "", "", "", "", "", "", inv.SubtotalMicros)
	row("", "tax", "Tax at "+inv.TaxRate+"%", "", "", "", "", "", "", "", "", inv.TaxMicros)
	row("", "total", "Total", "", "", "", "", "", "", "", "", inv.TotalMicros)
	w.Flush()
	return b.Bytes(), w.Error()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// PDF renders an invoice a finance team would accept: seller and buyer,
// number and dates, period, currency, every line, tax and totals, in the
// Go fonts embedded in the file.
func PDF(inv Invoice) ([]byte, error) {
	p := fpdf.New("P", "mm", "A4", "")
	p.SetCompression(true)
	p.AddUTF8FontFromBytes("go", "", goregular.TTF)
	p.AddUTF8FontFromBytes("go", "B", gobold.TTF)
	p.SetTitle(title(inv)+" "+inv.Number, true)
	p.SetAuthor(inv.Seller.Name, true)
	p.SetCreationDate(inv.IssuedAt)
	p.SetModificationDate(inv.IssuedAt)
	p.SetMargins(15, 15, 15)
	p.SetAutoPageBreak(true, 18)
	p.SetFooterFunc(func() {
		p.SetY(-12)
		p.SetFont("go", "", 7)
		p.CellFormat(0, 4, fmt.Sprintf("%s %s · page %d", title(inv), inv.Number, p.PageNo()), "", 0, "C", false, 0, "")
	})
	p.AddPage()

	p.SetFont("go", "B", 16)
	p.CellFormat(100, 8, inv.Seller.Name, "", 0, "L", false, 0, "")
	p.CellFormat(0, 8, title(inv), "", 1, "R", false, 0, "")
	p.SetFont("go", "", 9)
	y := p.GetY()
	p.MultiCell(95, 4.5, party(inv.Seller), "", "L", false)
	p.SetXY(110, y)
	meta := []string{"Number: " + inv.Number, "Issued: " + inv.IssuedAt.Format("2006-01-02"), "Due: " + inv.DueAt.Format("2006-01-02"),
		"Period: " + inv.Period + " (" + inv.PeriodStart.Format("2006-01-02") + " to " + inv.PeriodEnd.Add(-time.Second).Format("2006-01-02") + ", UTC)",
		"Currency: " + inv.Currency}
	if inv.RefersToNumber != "" {
		meta = append(meta, "Credits invoice: "+inv.RefersToNumber)
	}
	p.MultiCell(85, 4.5, strings.Join(meta, "\n"), "", "R", false)
	p.Ln(4)
	p.SetFont("go", "B", 10)
	p.CellFormat(0, 5, "Bill to", "", 1, "L", false, 0, "")
	p.SetFont("go", "", 9)
	p.MultiCell(0, 4.5, party(inv.Buyer)+"\nTenant: "+inv.TenantName+" ("+inv.TenantID+")", "", "L", false)
	if inv.Reason != "" {
		p.Ln(2)
		p.MultiCell(0, 4.5, "Reason: "+inv.Reason, "", "L", false)
	}
	p.Ln(4)

	// Lines.
	widths := []float64{8, 92, 24, 24, 32}
	head := []string{"#", "Description", "Quantity", "Unit price", "Amount"}
	p.SetFont("go", "B", 8.5)
	p.SetFillColor(235, 238, 242)
	for i, h := range head {
		align := "R"
		if i == 1 {
			align = "L"
		}
		p.CellFormat(widths[i], 6, h, "B", 0, align, true, 0, "")
	}
	p.Ln(-1)
	p.SetFont("go", "", 8)
	for _, l := range inv.Lines {
		desc := l.Description
		if !l.ServiceStart.IsZero() {
			desc += "\n" + l.ServiceStart.Format("2006-01-02 15:04") + " – " + l.ServiceEnd.Format("2006-01-02 15:04") + " UTC"
		}
		if l.ReservationID != "" {
			desc += " · " + l.ReservationID
		}
		price := l.UnitPrice
		if price == "" && len(l.Rates) > 0 {
			price = "several"
			var rs []string
			for _, r := range l.Rates {
				rs = append(rs, r.Quantity+" GPU-h at "+r.Rate)
			}
			desc += "\nRates: " + strings.Join(rs, "; ")
		}
		lines := p.SplitText(desc, widths[1]-2)
		h := 4.2 * float64(len(lines))
		if p.GetY()+h > 270 {
			p.AddPage()
		}
		x, y := p.GetXY()
		p.CellFormat(widths[0], 4.2, strconv.Itoa(l.N), "", 0, "R", false, 0, "")
		p.MultiCell(widths[1], 4.2, desc, "", "L", false)
		next := p.GetY()
		p.SetXY(x+widths[0]+widths[1], y)
		p.CellFormat(widths[2], 4.2, l.Quantity+" "+shortUnit(l.Unit), "", 0, "R", false, 0, "")
		p.CellFormat(widths[3], 4.2, price, "", 0, "R", false, 0, "")
		p.CellFormat(widths[4], 4.2, l.Amount, "", 0, "R", false, 0, "")
		p.SetXY(x, next+1)
		p.Line(x, next+0.5, x+sum(widths), next+0.5)
	}
	p.Ln(3)
	total := func(label, v string, bold bool) {
		style := ""
		if bold {
			style = "B"
		}
		p.SetFont("go", style, 9.5)
		p.CellFormat(sum(widths)-40, 6, label, "", 0, "R", false, 0, "")
		p.CellFormat(40, 6, v+" "+inv.Currency, "", 1, "R", false, 0, "")
	}
	total("Subtotal", inv.Subtotal, false)
	total("Tax ("+inv.TaxRate+"%)", inv.Tax, false)
	total("Total", inv.Total, true)
	p.Ln(4)
	p.SetFont("go", "", 7.5)
	p.MultiCell(0, 3.8, "Amounts are in "+inv.Currency+". GPU-hours are metered per second from the moment capacity is ready until it is released; "+
		"each line's amount is rounded once to a millionth of a unit, half to even, and tax once on the subtotal. "+
		"Energy lines say whether node energy was metered at the node's input or estimated from GPU energy.", "", "L", false)
	var b bytes.Buffer
	if err := p.Output(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func title(inv Invoice) string {
	if inv.Kind == "credit_note" {
		return "Credit note"
	}
	return "Invoice"
}

func party(p Party) string {
	s := p.Name
	if p.Address != "" {
		s += "\n" + p.Address
	}
	if p.TaxID != "" {
		s += "\nTax id: " + p.TaxID
	}
	return s
}

func shortUnit(u string) string {
	switch u {
	case "GPU-hour":
		return "GPU-h"
	case "amount":
		return ""
	}
	return u
}

func sum(xs []float64) float64 {
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t
}
