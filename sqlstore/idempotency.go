package sqlstore

import (
	"context"
	"time"

	"github.com/neocloud/neocloud/idempotency"
)

// Idempotency is the idempotency.Store view of a DB.
type Idempotency struct{ db *DB }

// Idempotency returns the idempotency key store.
func (db *DB) Idempotency() idempotency.Store { return Idempotency{db} }

func (s Idempotency) Claim(ctx context.Context, scope, key, h string, now time.Time, lease time.Duration) (idempotency.Entry, bool, error) {
	db := s.db
	var e idempotency.Entry
	claimed := false
	err := db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at, locked_until)
			VALUES (?, ?, ?, 'in_flight', ?, ?) ON CONFLICT (scope, key) DO NOTHING`,
			scope, key, h, micros(now), micros(now.Add(lease)))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			claimed = true
			e = idempotency.Entry{RequestHash: h}
			return nil
		}
		var state, body string
		var locked int64
		if err := db.queryRow(ctx, `SELECT request_hash, state, status, content_type, body, locked_until FROM idempotency_keys WHERE scope = ? AND key = ?`, scope, key).
			Scan(&e.RequestHash, &state, &e.Status, &e.ContentType, &body, &locked); err != nil {
			return db.translate(err)
		}
		e.Done = state == "done"
		e.Body = []byte(body)
		if !e.Done && e.RequestHash == h && locked < micros(now) {
			res, err := db.exec(ctx, `UPDATE idempotency_keys SET locked_until = ? WHERE scope = ? AND key = ? AND state = 'in_flight' AND locked_until = ?`,
				micros(now.Add(lease)), scope, key, locked)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			claimed = n == 1
		}
		return nil
	})
	return e, claimed, err
}

func (s Idempotency) Finish(ctx context.Context, scope, key string, status int, contentType string, body []byte) error {
	return s.db.write(ctx, func(ctx context.Context) error {
		_, err := s.db.exec(ctx, `UPDATE idempotency_keys SET state = 'done', status = ?, content_type = ?, body = ? WHERE scope = ? AND key = ?`,
			status, contentType, string(body), scope, key)
		return err
	})
}

func (s Idempotency) Release(ctx context.Context, scope, key string) error {
	return s.db.write(ctx, func(ctx context.Context) error {
		_, err := s.db.exec(ctx, `DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND state = 'in_flight'`, scope, key)
		return err
	})
}

func (s Idempotency) Purge(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.db.write(ctx, func(ctx context.Context) error {
		res, err := s.db.exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < ?`, micros(before))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}
