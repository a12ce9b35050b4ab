package audit

import (
	"context"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
)

// memStore is an in-memory chain for testing Verify.
type memStore struct{ recs []Record }

func (m *memStore) AppendAudit(_ context.Context, r Record) (Record, error) {
	r.Seq = int64(len(m.recs) + 1)
	if len(m.recs) > 0 {
		r.PrevHash = m.recs[len(m.recs)-1].Hash
	}
	r.Hash = r.ComputeHash()
	m.recs = append(m.recs, r)
	return r, nil
}

func (m *memStore) Audit(context.Context, Filter, neocloud.Page) ([]Record, error) {
	return m.recs, nil
}

func (m *memStore) ScanAudit(_ context.Context, fn func(Record) error) error {
	for _, r := range m.recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func chain(t *testing.T, n int) *memStore {
	m := &memStore{}
	for i := 0; i < n; i++ {
		m.AppendAudit(context.Background(), Record{ID: neocloud.NewID(neocloud.PrefixAudit), At: time.Unix(int64(i), 0),
			Actor: "tok_a", Action: "create-tenant", Status: 201, Result: ResultOK})
	}
	return m
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		tamper  func(m *memStore)
		wantBad int64
	}{
		{"intact", func(*memStore) {}, 0},
		{"field changed", func(m *memStore) { m.recs[2].Object = "x" }, 3},
		{"record removed", func(m *memStore) { m.recs = append(m.recs[:1], m.recs[2:]...) }, 2},
		{"record reordered", func(m *memStore) { m.recs[1], m.recs[2] = m.recs[2], m.recs[1] }, 2},
		{"rehashed but unlinked", func(m *memStore) { m.recs[3].Actor = "tok_b"; m.recs[3].Hash = m.recs[3].ComputeHash() }, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := chain(t, 5)
			tc.tamper(m)
			v, err := Verify(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if v.OK != (tc.wantBad == 0) || v.FirstBadSeq != tc.wantBad {
				t.Errorf("Verify = %+v, want first bad seq %d", v, tc.wantBad)
			}
		})
	}
}

func TestResultFor(t *testing.T) {
	for _, tc := range []struct {
		status int
		denied bool
		want   string
	}{{200, false, ResultOK}, {201, false, ResultOK}, {401, false, ResultDenied}, {403, false, ResultDenied},
		{404, true, ResultDenied}, {404, false, ResultFailed}, {422, false, ResultFailed}, {503, false, ResultFailed}} {
		if got := ResultFor(tc.status, tc.denied); got != tc.want {
			t.Errorf("ResultFor(%d, %v) = %s, want %s", tc.status, tc.denied, got, tc.want)
		}
	}
}
