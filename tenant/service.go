package tenant

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
	"unicode"

	"github.com/neocloud/neocloud"
)

// Service applies the rules for tenants and tokens on top of a Store. Role
// checks for whole routes happen in the transport; Service enforces the
// object-level rules: which tenant a principal may see, which roles it may
// grant. A foreign object answers NotFound, exactly like a missing one.
type Service struct {
	Store Store
	Now   func() time.Time

	// SharedTTL bounds how long a cached agent credential is trusted: 0
	// when this server is the store's only writer (SQLite); with other
	// servers on the same database, a revocation through one of them takes
	// effect here within it.
	SharedTTL time.Duration

	// agents caches node agents' credentials, the one kind of token that
	// calls every few seconds; see Authenticate.
	agentMu sync.Mutex
	agents  map[[sha256.Size]byte]cachedAgent // by the secret's SHA-256
	revoked map[string]bool                   // token ids revoked here: never cached again
}

type cachedAgent struct {
	p  neocloud.Principal
	at time.Time
}

// NewService returns a Service with the wall clock.
func NewService(s Store) *Service { return &Service{Store: s, Now: time.Now} }

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

// Create creates a tenant.
func (s *Service) Create(ctx context.Context, in CreateInput) (Tenant, error) {
	if err := in.Validate(); err != nil {
		return Tenant{}, err
	}
	t := Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: in.Name, DisplayName: in.DisplayName, Internal: in.Internal, CreatedAt: s.now()}
	if t.DisplayName == "" {
		t.DisplayName = t.Name
	}
	if err := s.Store.CreateTenant(ctx, t); err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// Resolve finds a tenant by id or name, as p may see it.
func (s *Service) Resolve(ctx context.Context, p neocloud.Principal, ref string) (Tenant, error) {
	var (
		t   Tenant
		err error
	)
	if neocloud.HasPrefix(ref, neocloud.PrefixTenant) {
		t, err = s.Store.Tenant(ctx, ref)
	} else {
		t, err = s.Store.TenantByName(ctx, ref)
	}
	if err != nil {
		return Tenant{}, err
	}
	if !p.SeesTenant(t.ID) {
		return Tenant{}, neocloud.NotFound("tenant", ref)
	}
	return t, nil
}

// List lists tenants; only operators may list (the transport enforces it).
func (s *Service) List(ctx context.Context, f TenantFilter, pg neocloud.Page) ([]Tenant, error) {
	if err := pg.Normalize(); err != nil {
		return nil, err
	}
	return s.Store.Tenants(ctx, f, pg)
}

// CreateToken creates a token and returns it with its secret, which is never
// shown again. Operator-admins grant any non-agent role; tenant-admins grant
// tenant roles of their own tenant only.
func (s *Service) CreateToken(ctx context.Context, p neocloud.Principal, in CreateTokenInput) (Token, string, error) {
	if p.Role.Tenant() && in.Tenant == "" && in.Role.Tenant() {
		in.Tenant = p.TenantID // a tenant-admin grants within its own tenant
	}
	if err := in.Validate(); err != nil {
		return Token{}, "", err
	}
	if p.Role == neocloud.RoleTenantAdmin && !in.Role.Tenant() {
		return Token{}, "", &neocloud.Error{Kind: neocloud.KindForbidden, Field: "body.role", Message: "a tenant-admin may grant only tenant roles"}
	}
	var tenantID string
	if in.Tenant != "" {
		t, err := s.Resolve(ctx, p, in.Tenant)
		if err != nil {
			if neocloud.ErrorKind(err) == neocloud.KindNotFound {
				return Token{}, "", neocloud.Invalid("body.tenant", "no tenant %q", in.Tenant)
			}
			return Token{}, "", err
		}
		tenantID = t.ID
	}
	secret := NewSecret()
	tok := Token{ID: neocloud.NewID(neocloud.PrefixToken), Name: in.Name, Role: in.Role, TenantID: tenantID,
		Hint: Hint(secret), CreatedAt: s.now(), CreatedBy: p.TokenID}
	if err := s.Store.CreateToken(ctx, tok, HashSecret(secret)); err != nil {
		return Token{}, "", err
	}
	return tok, secret, nil
}

// scope narrows a token filter to what p may see.
func scope(p neocloud.Principal, f TokenFilter) TokenFilter {
	switch p.Role {
	case neocloud.RoleTenantAdmin:
		f.TenantID = p.TenantID
	case neocloud.RoleTenantMember:
		f.TenantID = p.TenantID
		f.OnlyID = p.TokenID
	}
	return f
}

// Tokens lists the tokens p may see.
func (s *Service) Tokens(ctx context.Context, p neocloud.Principal, f TokenFilter, pg neocloud.Page) ([]Token, error) {
	if err := pg.Normalize(); err != nil {
		return nil, err
	}
	if f.Role != "" && !f.Role.Valid() {
		return nil, neocloud.Invalid("query.role", "unknown role %q", f.Role)
	}
	return s.Store.Tokens(ctx, scope(p, f), pg)
}

// Token returns one token p may see.
func (s *Service) Token(ctx context.Context, p neocloud.Principal, id string) (Token, error) {
	t, err := s.Store.Token(ctx, id)
	if err != nil {
		return Token{}, err
	}
	if !visible(p, t) {
		return Token{}, neocloud.NotFound("token", id)
	}
	return t, nil
}

func visible(p neocloud.Principal, t Token) bool {
	switch p.Role {
	case neocloud.RoleOperatorAdmin, neocloud.RoleOperatorViewer:
		return true
	case neocloud.RoleTenantAdmin:
		return t.TenantID != "" && t.TenantID == p.TenantID
	case neocloud.RoleTenantMember:
		return t.ID == p.TokenID
	}
	return false
}

// Revoke revokes a token p may see; it takes effect on the next request.
// Revoking a revoked token is a conflict naming its state.
func (s *Service) Revoke(ctx context.Context, p neocloud.Principal, id string) (Token, error) {
	t, err := s.Token(ctx, p, id)
	if err != nil {
		return Token{}, err
	}
	if t.RevokedAt != nil {
		return Token{}, neocloud.Conflict("revoked", "token %s is already revoked", id)
	}
	now := s.now()
	s.agentMu.Lock()
	if s.revoked == nil {
		s.revoked = map[string]bool{}
	}
	s.revoked[id] = true
	for h, c := range s.agents {
		if c.p.TokenID == id {
			delete(s.agents, h)
		}
	}
	s.agentMu.Unlock()
	if err := s.Store.RevokeToken(ctx, id, now); err != nil {
		return Token{}, err
	}
	t.RevokedAt = &now
	return t, nil
}

// Authenticate returns the principal for a bearer secret, or an
// Unauthenticated error. It reads the store on every call, so a revocation
// takes effect on the next request. Node agents' credentials are cached in
// memory: a revocation through this server drops them at once, one through
// another server within SharedTTL.
func (s *Service) Authenticate(ctx context.Context, secret string) (neocloud.Principal, error) {
	if secret == "" {
		return neocloud.Principal{}, neocloud.Errorf(neocloud.KindUnauthenticated, "a bearer token is required")
	}
	var buf [128]byte // secrets are shorter: hashed without a copy on the heap
	sum := sha256.Sum256(append(buf[:0], secret...))
	now := time.Now()
	s.agentMu.Lock()
	c, ok := s.agents[sum]
	s.agentMu.Unlock()
	if ok && (s.SharedTTL == 0 || now.Sub(c.at) < s.SharedTTL) {
		return c.p, nil
	}
	t, err := s.Store.TokenByHash(ctx, hashText(sum))
	if err != nil {
		if neocloud.ErrorKind(err) == neocloud.KindNotFound {
			return neocloud.Principal{}, neocloud.Errorf(neocloud.KindUnauthenticated, "the token is unknown or revoked")
		}
		return neocloud.Principal{}, err
	}
	p := neocloud.Principal{TokenID: t.ID, Role: t.Role, TenantID: t.TenantID, NodeID: t.NodeID}
	if p.Role == neocloud.RoleAgent {
		s.agentMu.Lock()
		if !s.revoked[t.ID] {
			if s.agents == nil {
				s.agents = map[[sha256.Size]byte]cachedAgent{}
			}
			s.agents[sum] = cachedAgent{p, now}
		}
		s.agentMu.Unlock()
	}
	return p, nil
}

// ValidBootstrapSecret reports whether s may be used as a bootstrap token:
// at least 16 printable ASCII characters, no spaces.
func ValidBootstrapSecret(s string) bool {
	if len(s) < 16 {
		return false
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			return false
		}
	}
	return true
}

// Bootstrap makes sure an operator-admin can sign in, and reports how.
// With a bootstrap secret it stores that secret's hash unless already
// stored (restarting with the same value is a no-op); a secret whose token
// was revoked stays revoked. Without one it creates an operator-admin
// token only when none exists, and returns its secret to print once.
// Several servers may start at once on one database: one of them stores
// the token.
func (s *Service) Bootstrap(ctx context.Context, bootstrapSecret string) (Bootstrapped, error) {
	if bootstrapSecret != "" {
		if !ValidBootstrapSecret(bootstrapSecret) {
			return Bootstrapped{}, neocloud.Invalid("NEOCLOUD_BOOTSTRAP_TOKEN", "must be at least 16 printable characters without spaces")
		}
		h := HashSecret(bootstrapSecret)
		tok := Token{ID: neocloud.NewID(neocloud.PrefixToken), Name: "bootstrap", Role: neocloud.RoleOperatorAdmin,
			Hint: Hint(bootstrapSecret), CreatedAt: s.now(), CreatedBy: "bootstrap"}
		if _, err := s.Store.BootstrapToken(ctx, tok, h, false); err != nil {
			return Bootstrapped{}, err
		}
		_, err := s.Store.TokenByHash(ctx, h)
		if neocloud.ErrorKind(err) == neocloud.KindNotFound {
			return Bootstrapped{Revoked: true}, nil
		}
		return Bootstrapped{}, err
	}
	secret := NewSecret()
	tok := Token{ID: neocloud.NewID(neocloud.PrefixToken), Name: "bootstrap", Role: neocloud.RoleOperatorAdmin,
		Hint: Hint(secret), CreatedAt: s.now(), CreatedBy: "bootstrap"}
	stored, err := s.Store.BootstrapToken(ctx, tok, HashSecret(secret), true)
	if err != nil || !stored {
		return Bootstrapped{}, err
	}
	return Bootstrapped{Secret: secret}, nil
}

// Bootstrapped is what Bootstrap did.
type Bootstrapped struct {
	// Secret is a new operator-admin token's secret, to print once ("":
	// none was made).
	Secret string
	// Revoked: the bootstrap secret given names a revoked token, which
	// signs nothing in.
	Revoked bool
}
