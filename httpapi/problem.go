package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
)

// Problem is an RFC 9457 problem+json body. Errors name the fields at fault
// ("body.name", "query.limit", "header.Idempotency-Key"); CurrentState names
// the state behind a 409.
type Problem struct {
	Type         string              `json:"type" doc:"URI of the problem type."`
	Title        string              `json:"title"`
	Status       int                 `json:"status"`
	Detail       string              `json:"detail,omitempty"`
	CurrentState string              `json:"current_state,omitempty" doc:"The object's current state, for conflicts."`
	Errors       []*huma.ErrorDetail `json:"errors,omitempty"`
}

func (p *Problem) Error() string { return p.Detail }

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// ContentType implements huma.ContentTypeFilter.
func (p *Problem) ContentType(string) string { return "application/problem+json" }

// Problem types beyond the status-derived ones.
const (
	ProblemIdempotencyMismatch = "urn:neocloud:problem:idempotency-key-mismatch"
	ProblemIdempotencyInFlight = "urn:neocloud:problem:idempotency-key-in-flight"
	ProblemRateLimited         = "urn:neocloud:problem:rate-limited"
	ProblemNoCapacity          = "urn:neocloud:problem:no-capacity"
)

// problemType returns the type URI for a status.
func problemType(status int) string {
	switch status {
	case 400:
		return "urn:neocloud:problem:malformed"
	case 401:
		return "urn:neocloud:problem:unauthenticated"
	case 403:
		return "urn:neocloud:problem:forbidden"
	case 404:
		return "urn:neocloud:problem:not-found"
	case 409:
		return "urn:neocloud:problem:conflict"
	case 413:
		return "urn:neocloud:problem:too-large"
	case 415:
		return "urn:neocloud:problem:unsupported-media-type"
	case 422:
		return "urn:neocloud:problem:invalid"
	case 429:
		return "urn:neocloud:problem:rate-limited"
	case 503:
		return "urn:neocloud:problem:unavailable"
	}
	if status >= 500 {
		return "urn:neocloud:problem:internal"
	}
	return "about:blank"
}

func newProblem(status int, detail string, details ...*huma.ErrorDetail) *Problem {
	return &Problem{Type: problemType(status), Title: http.StatusText(status), Status: status, Detail: detail, Errors: details}
}

func init() {
	// Every error huma writes itself (validation, parse, size) becomes our
	// Problem, so all errors share one shape.
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		p := newProblem(status, msg)
		for _, e := range errs {
			if e == nil {
				continue
			}
			var d huma.ErrorDetailer
			if errors.As(e, &d) {
				p.Errors = append(p.Errors, namedField(d.ErrorDetail()))
			} else {
				p.Errors = append(p.Errors, &huma.ErrorDetail{Message: e.Error()})
			}
		}
		if status == 422 && len(p.Errors) > 0 && msg == "validation failed" {
			p.Detail = "validation failed: " + p.Errors[0].Location + ": " + p.Errors[0].Message
		}
		return p
	}
}

// namedField moves the name of a missing required property into the
// location, so that the error names the field ("body.name", not "body").
func namedField(d *huma.ErrorDetail) *huma.ErrorDetail {
	const pre, post = "expected required property ", " to be present"
	if name, ok := strings.CutPrefix(d.Message, pre); ok && strings.HasSuffix(name, post) {
		d.Location += "." + strings.TrimSuffix(name, post)
		d.Message = "is required"
	}
	return d
}

// statusOf maps an error kind to its HTTP status: the one place that does.
func statusOf(k neocloud.Kind) int {
	switch k {
	case neocloud.KindInvalid:
		return http.StatusUnprocessableEntity
	case neocloud.KindMalformed:
		return http.StatusBadRequest
	case neocloud.KindNotFound:
		return http.StatusNotFound
	case neocloud.KindConflict, neocloud.KindNoCapacity:
		return http.StatusConflict
	case neocloud.KindUnauthenticated:
		return http.StatusUnauthorized
	case neocloud.KindForbidden:
		return http.StatusForbidden
	case neocloud.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case neocloud.KindUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// problemFor converts any error into a Problem. Internal errors keep their
// detail out of the answer (it goes to the log instead).
func problemFor(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var ne *neocloud.Error
	if !errors.As(err, &ne) {
		return newProblem(http.StatusInternalServerError, "internal error")
	}
	status := statusOf(ne.Kind)
	if status == http.StatusInternalServerError {
		return newProblem(status, "internal error")
	}
	p = newProblem(status, ne.Message)
	if ne.Field != "" {
		p.Detail = ne.Field + ": " + ne.Message
		p.Errors = []*huma.ErrorDetail{{Location: ne.Field, Message: ne.Message}}
	}
	if len(ne.Details) > 0 {
		p.Errors = p.Errors[:0]
		for _, d := range ne.Details {
			p.Errors = append(p.Errors, &huma.ErrorDetail{Location: d.Field, Message: d.Message})
		}
	}
	if ne.State != "" {
		p.CurrentState = ne.State
		if !strings.Contains(p.Detail, ne.State) {
			p.Detail += " (current state: " + ne.State + ")"
		}
	}
	if ne.Kind == neocloud.KindNoCapacity {
		p.Type = ProblemNoCapacity
	}
	if ne.Kind == neocloud.KindUnavailable {
		p.Detail = "service unavailable, retry"
	}
	return p
}

// writeProblem writes p outside huma (middleware answers).
func writeProblem(w http.ResponseWriter, p *Problem) {
	b, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	w.Write(b)
}
