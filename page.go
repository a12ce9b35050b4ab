package neocloud

import (
	"encoding/base64"
)

// Page asks for one page of a list: items after the cursor, at most Limit.
// Every list in the API, CLI and console pages this way.
type Page struct {
	Cursor string
	Limit  int
}

// Page limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Normalize clamps Limit into [1, MaxLimit] (0 means DefaultLimit) and
// checks the cursor. The error names the field at fault.
func (p *Page) Normalize() error {
	if p.Limit < 0 || p.Limit > MaxLimit {
		return Invalid("query.limit", "must be between 1 and %d", MaxLimit)
	}
	if p.Limit == 0 {
		p.Limit = DefaultLimit
	}
	if p.Cursor != "" {
		if _, err := DecodeCursor(p.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// After returns the sort key the cursor points past ("" for the first page).
func (p Page) After() string {
	k, _ := DecodeCursor(p.Cursor)
	return k
}

// EncodeCursor makes an opaque cursor from the sort key of the last item.
func EncodeCursor(key string) string {
	if key == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

// DecodeCursor is the inverse of EncodeCursor.
func DecodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		return "", Invalid("query.cursor", "is not a cursor this server issued")
	}
	return string(b), nil
}
