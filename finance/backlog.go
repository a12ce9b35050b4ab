package finance

import (
	"math/big"
	"sort"
	"time"
)

// YearAmount is backlog to be recognized in one calendar year.
type YearAmount struct {
	Year   int   `json:"year"`
	Amount Money `json:"amount"`
}

// TopShare is a part of a whole, e.g. the largest customer's share of
// revenue.
type TopShare struct {
	Percent string   `json:"percent"`
	Tenants []string `json:"tenants"`
}

// Backlog is the remaining performance obligations of signed committed
// contracts at an instant.
type Backlog struct {
	SiteID   string       `json:"site_id"`
	SiteName string       `json:"site_name"`
	At       time.Time    `json:"at"`
	Currency string       `json:"currency"`
	Total    Money        `json:"total"`
	ByYear   []YearAmount `json:"by_year"`
	ByTenant []RevenueRow `json:"by_tenant"`
	// TakeOrPayShare: committed (take-or-pay) charges' share of the
	// revenue recognized over the trailing twelve months.
	TakeOrPayShare string `json:"take_or_pay_share"`
	// Top1 and Top5: the largest customers' share of the backlog, and of
	// the trailing twelve months' revenue.
	Top1Backlog TopShare `json:"top1_backlog"`
	Top5Backlog TopShare `json:"top5_backlog"`
	Top1Revenue TopShare `json:"top1_revenue"`
	Top5Revenue TopShare `json:"top5_revenue"`
	// RemainingYears: the backlog-weighted average remaining length of
	// the contracts (years, two places).
	RemainingYears string `json:"weighted_remaining_years"`
}

// ComputeBacklog sums what signed committed charges have still to earn at
// t, by the year it will be earned in, with concentration and the
// take-or-pay share of the trailing year's revenue.
func ComputeBacklog(charges []Charge, t time.Time) Backlog {
	b := Backlog{At: t}
	var total int64
	byYear := map[int]int64{}
	byTenant := map[string]int64{}
	contractEnd := map[string]time.Time{}
	byContract := map[string]int64{}
	for _, c := range charges {
		if !c.Committed() || c.Signed.After(t) {
			continue
		}
		left := c.AmountMicros - c.Earned(t)
		if left == 0 {
			continue
		}
		total += left
		byTenant[c.TenantID] += left
		byContract[c.ContractID] += left
		if c.ServiceEnd.After(contractEnd[c.ContractID]) {
			contractEnd[c.ContractID] = c.ServiceEnd
		}
		for y := max(t.Year(), c.ServiceStart.Year()); y <= c.ServiceEnd.Year(); y++ {
			ys := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
			ye := ys.AddDate(1, 0, 0)
			if ys.Before(t) {
				ys = t
			}
			if v := c.Earned(ye) - c.Earned(ys); v != 0 {
				byYear[y] += v
			}
		}
	}
	b.Total = money(total)
	for y, v := range byYear {
		b.ByYear = append(b.ByYear, YearAmount{y, money(v)})
	}
	sort.Slice(b.ByYear, func(i, j int) bool { return b.ByYear[i].Year < b.ByYear[j].Year })
	b.ByTenant = rankRows(byTenant)
	b.Top1Backlog, b.Top5Backlog = top(b.ByTenant, 1, total), top(b.ByTenant, 5, total)
	// Weighted remaining length.
	var wsum big.Rat
	for id, v := range byContract {
		yrs := new(big.Rat).SetFrac64(int64(contractEnd[id].Sub(t)/time.Second), 365*86400)
		wsum.Add(&wsum, new(big.Rat).Mul(yrs, new(big.Rat).SetInt64(v)))
	}
	b.RemainingYears = "0.00"
	if total > 0 {
		b.RemainingYears = new(big.Rat).Quo(&wsum, new(big.Rat).SetInt64(total)).FloatString(2)
	}
	// The trailing twelve months' revenue.
	from := t.AddDate(-1, 0, 0)
	rev := map[string]int64{}
	var all, committed int64
	for _, c := range charges {
		e := c.Earned(t) - c.Earned(from)
		if e == 0 {
			continue
		}
		rev[c.TenantID] += e
		all += e
		if c.Committed() {
			committed += e
		}
	}
	b.TakeOrPayShare = percent(committed, all)
	rows := rankRows(rev)
	b.Top1Revenue, b.Top5Revenue = top(rows, 1, all), top(rows, 5, all)
	return b
}

// rankRows orders amounts by size, largest first.
func rankRows(m map[string]int64) []RevenueRow {
	var out []RevenueRow
	for k, v := range m {
		out = append(out, RevenueRow{Key: k, Recognized: money(v)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Recognized.Micros != out[j].Recognized.Micros {
			return out[i].Recognized.Micros > out[j].Recognized.Micros
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// top is the n largest rows' share of total.
func top(rows []RevenueRow, n int, total int64) TopShare {
	var s int64
	var who []string
	for i := 0; i < n && i < len(rows); i++ {
		s += rows[i].Recognized.Micros
		who = append(who, rows[i].Key)
	}
	return TopShare{Percent: percent(s, total), Tenants: who}
}
