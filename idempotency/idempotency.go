// Package idempotency defines stored responses to mutating requests made
// with an Idempotency-Key, and the Store that keeps them. The transport
// claims a key before running a request and records the response in the
// same transaction as the request's effects, so a replay returns the first
// response and has no second effect, even across a crash.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Retention is how long keys are kept, at least.
const Retention = 7 * 24 * time.Hour

// DefaultLease is how long a claim stays in flight before another request
// with the same key may take it over: its first holder has then died or
// given up with nothing committed, since effects and the stored response
// commit together.
const DefaultLease = 30 * time.Second

// Entry is a stored key.
type Entry struct {
	RequestHash string
	Done        bool
	Status      int
	ContentType string
	Body        []byte
}

// Store keeps keys per scope (the caller's tenant, or the operator).
type Store interface {
	// Claim marks (scope, key) in flight for the request with hash h and
	// returns claimed=true, or returns the existing entry. An in-flight entry
	// whose lease ran out is taken over (claimed=true). The claim holds until
	// now+lease.
	Claim(ctx context.Context, scope, key, h string, now time.Time, lease time.Duration) (e Entry, claimed bool, err error)
	// Finish stores the response; call it in the request's transaction.
	Finish(ctx context.Context, scope, key string, status int, contentType string, body []byte) error
	// Release forgets an in-flight key so that the request may be retried.
	Release(ctx context.Context, scope, key string) error
	// Purge forgets keys created before t.
	Purge(ctx context.Context, before time.Time) (int64, error)
}

// Hash identifies a request's content: method, path with query, and body.
func Hash(method, uri string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(uri))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}
