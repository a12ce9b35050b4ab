// Package tenant owns tenants and the bearer tokens that act for them or for
// the operator: their rules, token secrets and hashing. It holds no SQL and
// no HTTP; storage implements Store.
package tenant

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
)

// Tenant is a customer of the neocloud, or the operator's own internal
// tenant (Internal true) whose work borrows idle capacity.
type Tenant struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name"`
	Internal    bool      `json:"internal"`
	CreatedAt   time.Time `json:"created_at"`
}

// Token is a bearer credential. Its secret is shown once at creation and
// stored only as a SHA-256 hash; Hint is the secret's first characters so a
// person can tell tokens apart. TenantID is empty for operator tokens.
type Token struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Role      neocloud.Role `json:"role"`
	TenantID  string        `json:"tenant_id,omitempty"`
	NodeID    string        `json:"node_id,omitempty" doc:"For an agent credential: the one node it acts for."`
	Hint      string        `json:"hint"`
	CreatedAt time.Time     `json:"created_at"`
	CreatedBy string        `json:"created_by"`
	RevokedAt *time.Time    `json:"revoked_at,omitempty"`
}

// SecretPrefix starts every token secret, so a leaked one is recognizable
// (and secret scanners can find it).
const SecretPrefix = "nct_"

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,62}$`)

// ValidName reports whether s is a valid tenant or token name: lower-case
// letters, digits and dashes, starting with a letter, 2 to 63 characters.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// CreateInput is the input of Service.Create.
type CreateInput struct {
	Name        string `json:"name" doc:"Unique name: lower-case letters, digits and dashes."`
	DisplayName string `json:"display_name,omitempty" doc:"Name shown to people."`
	Internal    bool   `json:"internal,omitempty" doc:"The operator's own internal tenant (lowest priority, reclaimable)."`
}

// Validate checks the input; errors name the field.
func (in CreateInput) Validate() error {
	if !ValidName(in.Name) {
		return neocloud.Invalid("body.name", "must match %s", nameRE)
	}
	if len(in.DisplayName) > 200 {
		return neocloud.Invalid("body.display_name", "must be at most 200 characters")
	}
	return nil
}

// CreateTokenInput is the input of Service.CreateToken.
type CreateTokenInput struct {
	Name   string        `json:"name" doc:"A label for the token."`
	Role   neocloud.Role `json:"role" enum:"operator-admin,operator-viewer,tenant-admin,tenant-member" doc:"Role from the roles table."`
	Tenant string        `json:"tenant,omitempty" doc:"Tenant name or id; required for tenant roles, forbidden for operator roles."`
}

// Validate checks the input; errors name the field.
func (in CreateTokenInput) Validate() error {
	if !ValidName(in.Name) {
		return neocloud.Invalid("body.name", "must match %s", nameRE)
	}
	switch {
	case in.Role == neocloud.RoleAgent:
		return neocloud.Invalid("body.role", "agent credentials are issued when a node joins, not here")
	case !in.Role.Valid():
		return neocloud.Invalid("body.role", "unknown role %q", in.Role)
	case in.Role.Tenant() && in.Tenant == "":
		return neocloud.Invalid("body.tenant", "is required for role %s", in.Role)
	case in.Role.Operator() && in.Tenant != "":
		return neocloud.Invalid("body.tenant", "must be empty for operator role %s", in.Role)
	}
	return nil
}

// TokenFilter selects tokens in a list. Empty fields match everything.
type TokenFilter struct {
	TenantID       string
	Role           neocloud.Role
	IncludeRevoked bool
	OnlyID         string // set for a tenant-member, who sees only its own token
}

// TenantFilter selects tenants in a list.
type TenantFilter struct {
	Internal *bool
}

// Store is what the tenant service needs from storage. Get methods return a
// KindNotFound error when nothing matches; CreateTenant returns KindConflict
// on a duplicate name.
type Store interface {
	CreateTenant(ctx context.Context, t Tenant) error
	Tenant(ctx context.Context, id string) (Tenant, error)
	TenantByName(ctx context.Context, name string) (Tenant, error)
	Tenants(ctx context.Context, f TenantFilter, p neocloud.Page) ([]Tenant, error)

	CreateToken(ctx context.Context, t Token, hash string) error
	Token(ctx context.Context, id string) (Token, error)
	// TokenByHash returns the unrevoked token with that secret hash.
	TokenByHash(ctx context.Context, hash string) (Token, error)
	Tokens(ctx context.Context, f TokenFilter, p neocloud.Page) ([]Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time) error
	// BootstrapToken stores t, an operator-admin token, with its secret's
	// hash, unless one is there already: with ifNoAdmin, any unrevoked
	// operator-admin token; else any token with that hash, revoked or not.
	// Servers starting at once on one database take it in turn. It reports
	// whether it stored t.
	BootstrapToken(ctx context.Context, t Token, hash string, ifNoAdmin bool) (bool, error)
}

// NewSecret returns a fresh token secret: SecretPrefix and 43 base62
// characters (256 bits).
func NewSecret() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("tenant: crypto/rand failed: " + err.Error())
	}
	n := new(big.Int).SetBytes(b[:])
	base := big.NewInt(62)
	var sb strings.Builder
	sb.WriteString(SecretPrefix)
	mod := new(big.Int)
	for i := 0; i < 43; i++ {
		n.DivMod(n, base, mod)
		sb.WriteByte(alphabet[mod.Int64()])
	}
	return sb.String()
}

// HashSecret returns the stored form of a secret: hex SHA-256. Secrets carry
// 256 random bits (or are operator-chosen bootstrap strings), so a fast hash
// is enough; nothing is ever stored that could be replayed.
func HashSecret(secret string) string {
	return hashText(sha256.Sum256([]byte(secret)))
}

// hashText is how a secret's SHA-256 is stored: in hex.
func hashText(sum [sha256.Size]byte) string {
	return hex.EncodeToString(sum[:])
}

// Hint returns the part of a secret that may be shown after creation.
func Hint(secret string) string {
	if len(secret) > 8 {
		return secret[:8] + "…"
	}
	return "…"
}
