// Package client is the Go client of the /v1 API used by the CLI and by
// tests. It maps problem+json answers back to neocloud errors and sends
// every mutating request with an Idempotency-Key, retrying with the same key
// when the server is unreachable or busy, so a retry never doubles an effect.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
)

// Client talks to one server. The zero value is not usable; set BaseURL.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
	// Retries is how many times a request is retried (a mutating one with
	// the same Idempotency-Key) after a network error, a 503 or a 409 for a
	// key still in flight. New sets 3.
	Retries int
}

// New returns a client for baseURL with token.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Timeout: 5 * time.Minute}, Retries: 3}
}

// Problem is a problem+json answer as the client sees it.
type Problem struct {
	Type         string `json:"type"`
	Title        string `json:"title"`
	Status       int    `json:"status"`
	Detail       string `json:"detail"`
	CurrentState string `json:"current_state"`
	Errors       []struct {
		Location string `json:"location"`
		Message  string `json:"message"`
	} `json:"errors"`
}

// kindOf maps a status back to an error kind (the inverse of the server's map).
func kindOf(status int) neocloud.Kind {
	switch status {
	case 400:
		return neocloud.KindMalformed
	case 401:
		return neocloud.KindUnauthenticated
	case 403:
		return neocloud.KindForbidden
	case 404:
		return neocloud.KindNotFound
	case 409:
		return neocloud.KindConflict
	case 413:
		return neocloud.KindTooLarge
	case 422:
		return neocloud.KindInvalid
	case 503:
		return neocloud.KindUnavailable
	}
	return neocloud.KindInternal
}

// NewKey returns a fresh Idempotency-Key.
func NewKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Do sends a request and decodes a 2xx JSON answer into out (if non-nil).
// body may be nil, a []byte sent as is, or a value marshaled to JSON.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	raw, err := c.Raw(ctx, method, path, query, body, "")
	if err != nil {
		return err
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// Raw sends a request and returns the body of a 2xx answer. key is the
// Idempotency-Key to use for a mutating request ("" picks a fresh one).
func (c *Client) Raw(ctx context.Context, method, path string, query url.Values, body any, key string) ([]byte, error) {
	var payload []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		payload = b
	default:
		var err error
		if payload, err = json.Marshal(b); err != nil {
			return nil, err
		}
	}
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	mutating := method != http.MethodGet && method != http.MethodHead
	if mutating && key == "" {
		key = NewKey()
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		if c.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		if mutating {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := c.HTTP.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode >= 200 && resp.StatusCode < 300:
				return b, nil
			default:
				perr := problemError(resp.StatusCode, b)
				if resp.StatusCode == http.StatusTooManyRequests {
					// Rate limited: wait as told (at most 10 s), then retry.
					wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
					if attempt < c.retries() && ctx.Err() == nil {
						time.Sleep(min(10*time.Second, time.Duration(max(1, wait))*time.Second))
						continue
					}
					return nil, perr
				}
				if resp.StatusCode != http.StatusServiceUnavailable && !(resp.StatusCode == 409 && strings.Contains(string(b), "in-flight")) {
					return nil, perr
				}
				err = perr
			}
		}
		lastErr = err
		if attempt >= c.retries() || ctx.Err() != nil {
			return nil, lastErr
		}
		time.Sleep(time.Duration(200*(attempt+1)) * time.Millisecond)
	}
}

func (c *Client) retries() int {
	if c.Retries < 0 {
		return 0
	}
	return c.Retries
}

func problemError(status int, b []byte) error {
	var p Problem
	if json.Unmarshal(b, &p) != nil || p.Status == 0 {
		return &neocloud.Error{Kind: kindOf(status), Message: fmt.Sprintf("HTTP %d: %s", status, strings.TrimSpace(string(b)))}
	}
	e := &neocloud.Error{Kind: kindOf(status), Message: p.Detail, State: p.CurrentState}
	if p.Type == "urn:neocloud:problem:no-capacity" {
		e.Kind = neocloud.KindNoCapacity
	}
	if e.Message == "" {
		e.Message = p.Title
	}
	if len(p.Errors) > 0 {
		e.Field = p.Errors[0].Location
		e.Message = p.Errors[0].Message
		for _, d := range p.Errors[1:] {
			e.Message += "; " + d.Location + ": " + d.Message
		}
	}
	return e
}

// StatusOf returns the HTTP status an error from this client stood for, or 0.
func StatusOf(err error) int {
	var e *neocloud.Error
	if !errors.As(err, &e) {
		return 0
	}
	for _, s := range []int{400, 401, 403, 404, 409, 413, 422, 503} {
		if kindOf(s) == e.Kind {
			return s
		}
	}
	return 500
}

// Stream follows a Server-Sent Events answer of path (GET), calling fn for
// each event with its id, type and data, until ctx ends, fn errs or the
// server closes the stream. lastID resumes after that event.
func (c *Client) Stream(ctx context.Context, path string, query url.Values, lastID string, fn func(id, event string, data []byte) error) error {
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	hc := *c.HTTP
	hc.Timeout = 0 // a stream lasts
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return problemError(resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var id, event string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != nil {
				if err := fn(id, event, data); err != nil {
					return err
				}
			}
			id, event, data = "", "", nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:]...)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
