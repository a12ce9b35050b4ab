// Package audit owns the audit trail: one record per mutation and per denied
// request, append-only and hash-chained so that any change to a stored record
// is detectable. It defines the record, its hash and verification; storage
// keeps the chain (and refuses UPDATE and DELETE in the schema).
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
)

// Result words of a record.
const (
	ResultOK     = "ok"     // the request succeeded (2xx)
	ResultDenied = "denied" // 401, 403, or a foreign object answered 404
	ResultFailed = "failed" // any other 4xx or 5xx
)

// Record is one audit entry. Seq numbers the chain from 1 without gaps;
// Hash covers PrevHash and every other field, so flipping any byte of a
// stored record (or removing one) breaks verification. Tenant is the tenant
// whose object was touched (so a tenant-admin sees operator actions on its
// objects); ActorTenant is the tenant of the caller, if any. No field ever
// holds a secret.
type Record struct {
	Seq         int64     `json:"seq"`
	ID          string    `json:"id"`
	At          time.Time `json:"at"`
	Actor       string    `json:"actor" doc:"Token id of the caller, or anonymous."`
	ActorRole   string    `json:"actor_role"`
	ActorTenant string    `json:"actor_tenant,omitempty"`
	Tenant      string    `json:"tenant,omitempty" doc:"Tenant whose object was touched."`
	Action      string    `json:"action" doc:"Operation id, e.g. create-tenant."`
	Object      string    `json:"object,omitempty"`
	Status      int       `json:"status" doc:"HTTP status of the answer."`
	Result      string    `json:"result" enum:"ok,denied,failed"`
	RequestID   string    `json:"request_id"`
	Source      string    `json:"source" doc:"Source address of the request."`
	PrevHash    string    `json:"prev_hash"`
	Hash        string    `json:"hash"`
}

// ComputeHash returns the hash of r chained to r.PrevHash. Times enter at
// microsecond precision, which both stores keep exactly.
func (r Record) ComputeHash() string {
	var b strings.Builder
	for _, f := range []string{
		r.PrevHash, strconv.FormatInt(r.Seq, 10), r.ID, strconv.FormatInt(r.At.UnixMicro(), 10),
		r.Actor, r.ActorRole, r.ActorTenant, r.Tenant, r.Action, r.Object,
		strconv.Itoa(r.Status), r.Result, r.RequestID, r.Source,
	} {
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte(':')
		b.WriteString(f)
		b.WriteByte(';')
	}
	h := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(h[:])
}

// ResultFor returns the result word for an HTTP status; denied says whether
// a 404 hid another tenant's object.
func ResultFor(status int, denied bool) string {
	switch {
	case status == 401 || status == 403 || denied:
		return ResultDenied
	case status >= 200 && status < 400:
		return ResultOK
	}
	return ResultFailed
}

// Filter selects records. Tenant, when set, keeps the records touching that
// tenant or made by it; a tenant-admin's reads always carry it.
type Filter struct {
	Tenant string
	Actor  string
	Action string
	Result string
	Since  time.Time // inclusive
	Until  time.Time // exclusive
}

// Store keeps the chain. Append assigns Seq, PrevHash and Hash atomically
// with the caller's transaction, if any. Scan visits all records in Seq
// order and stops at the first error fn returns.
type Store interface {
	AppendAudit(ctx context.Context, r Record) (Record, error)
	Audit(ctx context.Context, f Filter, p neocloud.Page) ([]Record, error)
	ScanAudit(ctx context.Context, fn func(Record) error) error
}

// Verification is the outcome of verifying the chain.
type Verification struct {
	OK          bool   `json:"ok"`
	Records     int64  `json:"records" doc:"Records checked."`
	FirstBadSeq int64  `json:"first_bad_seq,omitempty" doc:"First record whose hash or link does not match."`
	Reason      string `json:"reason,omitempty"`
	HeadHash    string `json:"head_hash,omitempty" doc:"Hash of the last record: publish it to detect truncation later."`
}

// Verify walks the whole chain and reports the first broken link.
func Verify(ctx context.Context, s Store) (Verification, error) {
	var v Verification
	prev := ""
	var want int64 = 1
	stop := errStop{}
	err := s.ScanAudit(ctx, func(r Record) error {
		v.Records++
		switch {
		case r.Seq != want:
			v.FirstBadSeq, v.Reason = want, "record missing: sequence jumps to "+strconv.FormatInt(r.Seq, 10)
		case r.PrevHash != prev:
			v.FirstBadSeq, v.Reason = r.Seq, "prev_hash does not match the previous record"
		case r.ComputeHash() != r.Hash:
			v.FirstBadSeq, v.Reason = r.Seq, "hash does not match the record's contents"
		default:
			prev, want = r.Hash, want+1
			return nil
		}
		return stop
	})
	if err != nil && err != stop {
		return Verification{}, err
	}
	v.OK = v.FirstBadSeq == 0
	v.HeadHash = prev
	return v, nil
}

type errStop struct{}

func (errStop) Error() string { return "stop" }
