package billing

import (
	"context"
	"time"

	"github.com/neocloud/neocloud"
)

// CommitmentSchedule is every month's take-or-pay charge of a committed
// contract over its whole term, as invoices bill them (each with its
// charge key, service period and amount).
func CommitmentSchedule(c ContractWork) []Line {
	forever := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	return commitments(RateInput{Start: forever, End: forever}, c)
}

// ContractWorks returns every tenant's invoiced contracts, committed ones
// with their reservations.
func (s *Service) ContractWorks(ctx context.Context) ([]ContractWork, error) {
	return s.contractWork(ctx, "")
}

// FinalInvoices returns every finalized invoice and credit note.
func (s *Service) FinalInvoices(ctx context.Context) ([]Invoice, error) {
	var out []Invoice
	pg := neocloud.Page{Limit: neocloud.MaxLimit}
	for {
		invs, err := s.Store.Invoices(ctx, InvoiceFilter{}, pg)
		if err != nil {
			return nil, err
		}
		out = append(out, invs...)
		if len(invs) < pg.Limit {
			return out, nil
		}
		pg.Cursor = neocloud.EncodeCursor(invs[len(invs)-1].Number)
	}
}

// OpenDrafts returns every tenant's draft invoices of the months not yet
// closed from the month before from's to to's: what has been earned
// there (and credited for the month before) and not yet invoiced.
func (s *Service) OpenDrafts(ctx context.Context, from, to time.Time) ([]Invoice, error) {
	ps, err := s.Store.Periods(ctx)
	if err != nil {
		return nil, err
	}
	open := closedThrough(ps)
	ts, err := s.allTenants(ctx)
	if err != nil {
		return nil, err
	}
	op := neocloud.Principal{TokenID: "finance", Role: neocloud.RoleOperatorViewer}
	var out []Invoice
	// The open months from the one before from's (a draft credits the
	// month before it) to to's.
	start := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	if start.Before(open) {
		start = open
	}
	for m := start; m.Before(to); m = m.AddDate(0, 1, 0) {
		for _, t := range ts {
			invs, err := s.Draft(ctx, op, t.ID, MonthOf(m))
			if err != nil {
				return nil, err
			}
			out = append(out, invs...)
		}
	}
	return out, nil
}
