// Package neocloud holds the shared vocabulary of the control plane: typed
// identifiers, the error kinds every layer speaks, roles and the principal
// making a request. It owns no storage and no transport; every other package
// depends on it and it depends on none of them.
package neocloud

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

// ID prefixes, one per kind of object, so an id in a log line says what it is.
const (
	PrefixTenant  = "tnt_"
	PrefixToken   = "tok_"
	PrefixAudit   = "aud_"
	PrefixRequest = "req_"
)

// crockford is the Crockford base32 alphabet used by ULIDs.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns prefix followed by a ULID: 48 bits of milliseconds since the
// epoch and 80 random bits, so ids sort by creation time and cannot be guessed.
// It is safe for concurrent use.
func NewID(prefix string) string {
	return newIDAt(prefix, time.Now())
}

// Monotonic state: within one millisecond, ids count up from a random start,
// so ids made by one process sort in the order they were made.
var (
	idMu     sync.Mutex
	idLastMS uint64
	idLastHi uint16
	idLastLo uint64
)

func newIDAt(prefix string, t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	idMu.Lock()
	if ms == idLastMS && idLastLo != ^uint64(0) {
		idLastLo++
	} else {
		var r [10]byte
		if _, err := rand.Read(r[:]); err != nil {
			panic("neocloud: crypto/rand failed: " + err.Error())
		}
		idLastMS = max(ms, idLastMS)
		idLastHi = binary.BigEndian.Uint16(r[0:2])
		idLastLo = binary.BigEndian.Uint64(r[2:10]) >> 1 // leave room to count up
	}
	binary.BigEndian.PutUint64(b[0:8], idLastMS<<16|uint64(idLastHi))
	binary.BigEndian.PutUint64(b[8:16], idLastLo)
	idMu.Unlock()
	// Encode 128 bits as 26 base32 characters (the first carries 3 bits).
	var out [26]byte
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return prefix + string(out[:])
}

// HasPrefix reports whether id is well formed for the given prefix: the prefix
// followed by 26 Crockford base32 characters.
func HasPrefix(id, prefix string) bool {
	if !strings.HasPrefix(id, prefix) || len(id) != len(prefix)+26 {
		return false
	}
	for _, c := range id[len(prefix):] {
		if !strings.ContainsRune(crockford, c) {
			return false
		}
	}
	return true
}

// Role is what a token may do; the table in ARCHITECTURE.md maps roles to
// actions and httpapi enforces it, deny by default.
type Role string

const (
	RoleOperatorAdmin  Role = "operator-admin"
	RoleOperatorViewer Role = "operator-viewer"
	RoleTenantAdmin    Role = "tenant-admin"
	RoleTenantMember   Role = "tenant-member"
	RoleAgent          Role = "agent"
)

// Roles lists every role in the order of the roles table.
var Roles = []Role{RoleOperatorAdmin, RoleOperatorViewer, RoleTenantAdmin, RoleTenantMember, RoleAgent}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}

// Operator reports whether r belongs to the operator (not to any tenant).
func (r Role) Operator() bool { return r == RoleOperatorAdmin || r == RoleOperatorViewer }

// Tenant reports whether r is a tenant role, bound to one tenant.
func (r Role) Tenant() bool { return r == RoleTenantAdmin || r == RoleTenantMember }

// Principal is the authenticated caller of a request. TenantID is empty for
// operator tokens. The zero value is no principal at all.
type Principal struct {
	TokenID  string
	Role     Role
	TenantID string
	NodeID   string // an agent's node: the only one it may act for
}

// SeesTenant reports whether p may see objects owned by tenant: operators see
// every tenant, tenant roles only their own. Callers answer NotFound (never
// Forbidden) when this is false, so a foreign id looks like a missing one.
func (p Principal) SeesTenant(tenant string) bool {
	if p.Role.Operator() {
		return true
	}
	return p.Role.Tenant() && p.TenantID != "" && p.TenantID == tenant
}
