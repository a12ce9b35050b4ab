package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/tenant"
)

var _ tenant.Store = (*DB)(nil)

func (db *DB) CreateTenant(ctx context.Context, t tenant.Tenant) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO tenants (id, name, display_name, internal, created_at) VALUES (?, ?, ?, ?, ?)`,
			t.ID, t.Name, t.DisplayName, t.Internal, micros(t.CreatedAt))
		if neocloud.ErrorKind(err) == neocloud.KindConflict {
			return &neocloud.Error{Kind: neocloud.KindConflict, Field: "body.name", State: "exists", Message: "a tenant named " + t.Name + " already exists"}
		}
		return err
	})
}

const tenantCols = `id, name, display_name, internal, created_at`

func scanTenant(row interface{ Scan(...any) error }) (tenant.Tenant, error) {
	var t tenant.Tenant
	var at int64
	err := row.Scan(&t.ID, &t.Name, &t.DisplayName, &t.Internal, &at)
	t.CreatedAt = fromMicros(at)
	return t, err
}

func (db *DB) tenantWhere(ctx context.Context, where string, arg any, ref string) (tenant.Tenant, error) {
	t, err := scanTenant(db.queryRow(ctx, `SELECT `+tenantCols+` FROM tenants WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return tenant.Tenant{}, neocloud.NotFound("tenant", ref)
	}
	return t, db.translate(err)
}

func (db *DB) Tenant(ctx context.Context, id string) (tenant.Tenant, error) {
	return db.tenantWhere(ctx, "id = ?", id, id)
}

func (db *DB) TenantByName(ctx context.Context, name string) (tenant.Tenant, error) {
	return db.tenantWhere(ctx, "name = ?", name, name)
}

func (db *DB) Tenants(ctx context.Context, f tenant.TenantFilter, p neocloud.Page) ([]tenant.Tenant, error) {
	q := `SELECT ` + tenantCols + ` FROM tenants WHERE id > ?`
	args := []any{p.After()}
	if f.Internal != nil {
		q += ` AND internal = ?`
		args = append(args, *f.Internal)
	}
	q += ` ORDER BY id LIMIT ?`
	return collect(db, ctx, scanTenant, q, append(args, p.Limit)...)
}

const tokenCols = `id, name, role, COALESCE(tenant_id, ''), COALESCE(node_id, ''), hint, created_at, created_by, revoked_at`

func scanToken(row interface{ Scan(...any) error }) (tenant.Token, error) {
	var t tenant.Token
	var at int64
	var revoked sql.NullInt64
	err := row.Scan(&t.ID, &t.Name, &t.Role, &t.TenantID, &t.NodeID, &t.Hint, &at, &t.CreatedBy, &revoked)
	t.CreatedAt = fromMicros(at)
	if revoked.Valid {
		r := fromMicros(revoked.Int64)
		t.RevokedAt = &r
	}
	return t, err
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (db *DB) CreateToken(ctx context.Context, t tenant.Token, hash string) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO tokens (id, name, role, tenant_id, node_id, hash, hint, created_at, created_by, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Name, string(t.Role), nullString(t.TenantID), nullString(t.NodeID), hash, t.Hint, micros(t.CreatedAt), t.CreatedBy, nullMicros(t.RevokedAt))
		return err
	})
}

func (db *DB) Token(ctx context.Context, id string) (tenant.Token, error) {
	t, err := scanToken(db.queryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return tenant.Token{}, neocloud.NotFound("token", id)
	}
	return t, db.translate(err)
}

func (db *DB) TokenByHash(ctx context.Context, hash string) (tenant.Token, error) {
	t, err := scanToken(db.queryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = ? AND revoked_at IS NULL`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return tenant.Token{}, neocloud.NotFound("token", "")
	}
	return t, db.translate(err)
}

func (db *DB) Tokens(ctx context.Context, f tenant.TokenFilter, p neocloud.Page) ([]tenant.Token, error) {
	q := `SELECT ` + tokenCols + ` FROM tokens WHERE id > ?`
	args := []any{p.After()}
	if f.TenantID != "" {
		q += ` AND tenant_id = ?`
		args = append(args, f.TenantID)
	}
	if f.Role != "" {
		q += ` AND role = ?`
		args = append(args, string(f.Role))
	}
	if f.OnlyID != "" {
		q += ` AND id = ?`
		args = append(args, f.OnlyID)
	}
	if !f.IncludeRevoked {
		q += ` AND revoked_at IS NULL`
	}
	q += ` ORDER BY id LIMIT ?`
	return collect(db, ctx, scanToken, q, append(args, p.Limit)...)
}

func (db *DB) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, micros(at), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return neocloud.Conflict("revoked", "token %s is already revoked", id)
		}
		return nil
	})
}

func (db *DB) BootstrapToken(ctx context.Context, t tenant.Token, hash string, ifNoAdmin bool) (bool, error) {
	stored := false
	err := db.write(ctx, func(ctx context.Context) error {
		// The check and the insert together, one server at a time.
		if err := db.advisoryLock(ctx, 7311002, "bootstrap"); err != nil {
			return fmt.Errorf("sqlstore: bootstrap lock: %w", err)
		}
		q, args := `SELECT COUNT(*) FROM tokens WHERE hash = ?`, []any{hash}
		if ifNoAdmin {
			q, args = `SELECT COUNT(*) FROM tokens WHERE role = 'operator-admin' AND revoked_at IS NULL`, nil
		}
		var n int
		if err := db.queryRow(ctx, q, args...).Scan(&n); err != nil {
			return db.translate(err)
		}
		if n > 0 {
			return nil
		}
		stored = true
		return db.CreateToken(ctx, t, hash)
	})
	return stored && err == nil, err
}
