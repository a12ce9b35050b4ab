package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// limiter is a token bucket per bearer token: rate requests per second
// sustained, burst at once. Buckets idle for a minute are forgotten.
type limiter struct {
	rate  float64
	burst float64
	mu    sync.Mutex
	b     map[string]*bucket
	swept time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = int(math.Ceil(2 * rate))
	}
	return &limiter{rate: rate, burst: float64(burst), b: map[string]*bucket{}}
}

// allow takes one token for key at now, or says how long until one is free.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.b {
			if now.Sub(b.at) > time.Minute {
				delete(l.b, k)
			}
		}
		l.swept = now
	}
	b, ok := l.b[key]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.b[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// rateLimit answers 429 with Retry-After (whole seconds, at least 1) when a
// token exceeds its rate; the refusal is audited.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := info(r.Context())
		if s.limits == nil || !isAPI(r.URL.Path) || ri.Principal.TokenID == "" {
			next.ServeHTTP(w, r)
			return
		}
		ok, wait := s.limits.allow(ri.Principal.TokenID, time.Now())
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
		ri.Action = r.Method + " " + r.URL.Path
		s.auditAlone(r.Context(), http.StatusTooManyRequests)
		p := newProblem(http.StatusTooManyRequests, fmt.Sprintf("token %s exceeds %g requests per second; retry after %d s", ri.Principal.TokenID, s.limits.rate, max(1, secs)))
		p.Type = ProblemRateLimited
		writeProblem(w, p)
	})
}
