package neocloud

import (
	"errors"
	"fmt"
)

// Kind classifies an error. httpapi maps each kind to one HTTP status in one
// place and the client maps the status back.
type Kind string

const (
	KindInvalid         Kind = "invalid"         // input breaks a schema or rule; 422
	KindMalformed       Kind = "malformed"       // body cannot be parsed; 400
	KindNotFound        Kind = "not_found"       // missing, or another tenant's; 404
	KindConflict        Kind = "conflict"        // state conflict; 409
	KindUnauthenticated Kind = "unauthenticated" // 401
	KindForbidden       Kind = "forbidden"       // 403
	KindNoCapacity      Kind = "no_capacity"     // 409 with reasons
	KindTooLarge        Kind = "too_large"       // 413
	KindUnavailable     Kind = "unavailable"     // 503
	KindInternal        Kind = "internal"        // 500
)

// Error is the error every package returns for conditions a caller may act
// on. Field names the input at fault (e.g. "body.name" or "spec:12:3 nodes");
// State names the current state in a conflict.
type Error struct {
	Kind    Kind
	Field   string
	State   string
	Message string
	Err     error
	// Details lists every fault when there are several (a document with many
	// bad fields); Field and Message then describe the first.
	Details []FieldError
}

// FieldError is one fault of an input: where and what.
type FieldError struct {
	Field   string
	Message string
}

func (e *Error) Error() string {
	s := e.Message
	if e.Field != "" {
		s = e.Field + ": " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind k with a formatted message.
func Errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a KindInvalid error naming field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFound returns a KindNotFound error for an object of the given kind.
func NotFound(what, id string) *Error {
	return &Error{Kind: KindNotFound, Message: fmt.Sprintf("%s %q not found", what, id)}
}

// Conflict returns a KindConflict error naming the current state.
func Conflict(state, format string, args ...any) *Error {
	return &Error{Kind: KindConflict, State: state, Message: fmt.Sprintf(format, args...)}
}

// ErrorKind returns the kind of err: the Kind of the first *Error in its
// chain, KindInternal for any other non-nil error, "" for nil.
func ErrorKind(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}
