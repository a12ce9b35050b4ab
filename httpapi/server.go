// Package httpapi is the HTTP transport: /v1 JSON routes with a generated
// OpenAPI 3.1 document, bearer-token authentication, the roles table
// (deny by default), Idempotency-Key handling, one audit record per mutation
// and per denied request, problem+json errors, /healthz, /readyz and
// Prometheus /metrics. It holds no business rules: those live in the domain
// services it calls.
package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/audit"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/finance"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/idempotency"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// MaxBodyBytes caps any request body; routes set lower limits of their own
// (1 MiB unless they take large documents).
const MaxBodyBytes = 64 << 20

// TxRunner runs fn in one write transaction carried by ctx.
type TxRunner interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// Config wires a Server. Every field but Logger and Now is required.
type Config struct {
	Tenants *tenant.Service
	Fleet   *fleet.Service
	Sales   *sales.Service
	Agents  *agents.Service
	Billing *billing.Service
	// Power reports energy and emissions; PowerLoad gives a site's nodes'
	// live work and draw for site power (both optional).
	Power *power.Service
	// Finance reports utilization, revenue, backlog and unit economics.
	Finance   *finance.Service
	PowerLoad func(ctx context.Context, siteID string) (map[string]power.NodeLoad, error)
	// Shedder applies load shedding (optional: no shedding route).
	Shedder     *power.Shedder
	Audit       audit.Store
	Idempotency idempotency.Store
	Tx          TxRunner
	Ping        func(ctx context.Context) error
	Logger      *slog.Logger
	Now         func() time.Time
	Version     string
	// IdempotencyLease bounds how long a request holding an Idempotency-Key
	// blocks retries with that key (idempotency.DefaultLease if zero).
	IdempotencyLease time.Duration
	// RateLimit is the sustained requests per second each token may make
	// (0: no limit); RateBurst the burst above it (default 2 × RateLimit).
	RateLimit float64
	RateBurst int
	// Replicas lists the server processes on the store (optional: no
	// replicas route); Replica is the id of this one.
	Replicas func(ctx context.Context) ([]neocloud.Replica, error)
	Replica  string
	// Metrics are more series for /metrics (the fleet's, this server's).
	Metrics []prometheus.Collector
}

// Server serves the API. Build it with New; it is safe for concurrent use.
type Server struct {
	cfg     Config
	api     huma.API
	mux     *http.ServeMux
	handler http.Handler
	metrics *metrics
	events  hub
	limits  *limiter
}

// New builds the server and registers every route.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdempotencyLease == 0 {
		cfg.IdempotencyLease = idempotency.DefaultLease
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.metrics = newMetrics()
	s.metrics.reg.MustRegister(cfg.Metrics...)

	hc := huma.DefaultConfig("neocloud", cfg.Version)
	hc.Info.Description = "Control plane of a GPU neocloud. Every route but the public ones needs a bearer token; mutating routes accept an Idempotency-Key header."
	hc.OpenAPIPath = "/openapi"
	hc.DocsPath = ""
	hc.SchemasPath = ""
	hc.CreateHooks = nil // no $schema links in bodies
	hc.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer"},
	}
	s.api = humago.New(s.mux, hc)
	s.api.UseMiddleware(s.authorize)

	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))

	s.registerTenants()
	s.registerAudit()
	s.registerFleet()
	s.registerSales()
	if cfg.Agents != nil {
		s.registerAgents()
	}
	if cfg.Billing != nil {
		s.registerBilling()
	}
	if cfg.Power != nil {
		s.registerPower()
	}
	if s.cfg.Finance != nil {
		s.registerFinance()
	}
	if cfg.Replicas != nil {
		s.registerReplicas()
	}
	if cfg.Sales != nil && cfg.Sales.Notify == nil {
		cfg.Sales.Notify = s.events.Wake
	}
	s.limits = newLimiter(cfg.RateLimit, cfg.RateBurst)

	// Outermost first: request id and metrics, recovery, authentication,
	// then the transaction around mutating requests.
	s.handler = s.observe(s.recoverer(s.authenticate(s.rateLimit(s.transact(s.mux)))))
	return s
}

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s.handler }

// OpenAPI returns the generated document.
func (s *Server) OpenAPI() *huma.OpenAPI { return s.api.OpenAPI() }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Ping(ctx); err != nil {
		writeProblem(w, newProblem(http.StatusServiceUnavailable, "database unavailable"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"status":"ready"}`)
}

// reqInfo is the request-scoped record the layers fill in: the outer ones
// read it to audit and count the request. Handlers set Object and Tenant;
// Denied marks a 404 that hid another tenant's object.
type reqInfo struct {
	ID        string
	Start     time.Time
	Source    string
	Principal neocloud.Principal
	Action    string
	Object    string
	Tenant    string
	Denied    bool
	// JoinSecret is the bearer of an agent's join request: a join token.
	JoinSecret string
}

type infoKey struct{}

func info(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(infoKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// principal returns the authenticated caller of a request.
func principal(ctx context.Context) neocloud.Principal { return info(ctx).Principal }

// observe assigns the request id, counts the request and times it.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The front's requests come with their connection's reqInfo to
		// fill in (used again for its next request) and a writer that
		// keeps the status; others get their own.
		ri, kept := r.Context().Value(infoKey{}).(*reqInfo)
		source := ""
		if kept {
			source = ri.Source // the connection's, once known
		} else {
			ri = &reqInfo{}
			r = r.WithContext(context.WithValue(r.Context(), infoKey{}, ri))
		}
		if source == "" {
			source = r.RemoteAddr
			if host, _, err := net.SplitHostPort(source); err == nil {
				source = host
			}
		}
		*ri = reqInfo{ID: neocloud.NewID(neocloud.PrefixRequest), Start: time.Now(), Source: source}
		fw, front := w.(*frontResponse)
		var sw *statusWriter
		if front {
			fw.set("X-Request-Id", ri.ID)
		} else {
			w.Header().Set("X-Request-Id", ri.ID)
			sw = &statusWriter{ResponseWriter: w, status: 200}
			w = sw
		}
		next.ServeHTTP(w, r)
		code := 0
		if front {
			code = fw.statusCode()
		} else {
			code = sw.status
		}
		s.metrics.observe(ri.Action, r.Method, code, time.Since(ri.Start))
		if code >= 500 {
			s.cfg.Logger.Error("request failed", "request_id", ri.ID, "method", r.Method, "path", r.URL.Path, "status", code)
		}
	})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.cfg.Logger.Error("panic", "request_id", info(r.Context()).ID, "panic", fmt.Sprint(v))
				writeProblem(w, newProblem(http.StatusInternalServerError, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// isAPI reports whether the path is under /v1 (everything there needs a
// token; everything else is public).
func isAPI(path string) bool { return path == "/v1" || strings.HasPrefix(path, "/v1/") }

// isAgent reports whether the path is an agent endpoint, which dedupes on
// node and sequence number instead of Idempotency-Key.
func isAgent(path string) bool { return strings.HasPrefix(path, "/v1/agent/") }

func mutating(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// authenticate resolves the bearer token of /v1 requests; none or a bad one
// answers 401 and is audited.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isAPI(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		ri := info(r.Context())
		secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			secret = ""
		}
		if r.URL.Path == joinPath {
			// A join token is not a token of the roles table: the join
			// handler checks it.
			ri.JoinSecret = strings.TrimSpace(secret)
			next.ServeHTTP(w, r)
			return
		}
		p, err := s.cfg.Tenants.Authenticate(r.Context(), strings.TrimSpace(secret))
		if err != nil {
			prob := problemFor(err)
			if prob.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="neocloud"`)
			}
			ri.Action = r.Method + " " + r.URL.Path
			s.auditAlone(r.Context(), prob.Status)
			writeProblem(w, prob)
			return
		}
		ri.Principal = p
		next.ServeHTTP(w, r)
	})
}

// authorize is the huma middleware that applies the roles table: a role not
// listed for the operation answers 403. It also names the action.
func (s *Server) authorize(ctx huma.Context, next func(huma.Context)) {
	ri := info(ctx.Context())
	op := ctx.Operation()
	ri.Action = op.OperationID
	if public, _ := op.Metadata["public"].(bool); public {
		next(ctx)
		return
	}
	roles, _ := op.Metadata["roles"].([]neocloud.Role)
	for _, r := range roles {
		if r == ri.Principal.Role {
			next(ctx)
			return
		}
	}
	huma.WriteErr(s.api, ctx, http.StatusForbidden, fmt.Sprintf("role %s may not %s", ri.Principal.Role, op.OperationID))
}

var errRollback = errors.New("rollback")

// transact runs every mutating /v1 request in one write transaction and
// answers only after it commits: the request's effects, its audit record and
// its idempotency record commit together or not at all. A 4xx or 5xx answer
// rolls the effects back (bad input changes nothing) and is audited on its
// own. Reads are audited only when denied.
func (s *Server) transact(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ri := info(ctx)
		if !isAPI(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == heartbeatPath && r.Method == http.MethodPost {
			// Heartbeats are group-committed by the agents service and
			// answered after their commit; they dedupe on their sequence
			// number and write no audit record each. The route is known:
			// the mux (where it is registered too) is not asked.
			s.serveHeartbeat(w, r)
			return
		}
		if !mutating(r.Method) && (r.URL.Path == streamPath || r.URL.Path == "/v1/events" && strings.Contains(r.Header.Get("Accept"), "text/event-stream")) {
			next.ServeHTTP(w, r) // a stream is never buffered
			return
		}
		if !mutating(r.Method) {
			rec := &recorder{header: http.Header{}}
			next.ServeHTTP(rec, r)
			if rec.status == 403 || (rec.status == 404 && ri.Denied) {
				s.auditAlone(ctx, rec.status)
			}
			rec.flush(w, false)
			return
		}

		// 1. Claim the idempotency key, or answer from it.
		key := r.Header.Get("Idempotency-Key")
		scope := ri.Principal.TenantID
		if scope == "" {
			scope = "operator"
		}
		if key != "" && !isAgent(r.URL.Path) {
			if len(key) > 255 || strings.ContainsFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
				writeProblem(w, newProblem(422, "header.Idempotency-Key: must be 1 to 255 visible ASCII characters",
					&huma.ErrorDetail{Location: "header.Idempotency-Key", Message: "must be 1 to 255 visible ASCII characters"}))
				return
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
			if err != nil {
				writeProblem(w, newProblem(http.StatusRequestEntityTooLarge, "request body is too large"))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			e, claimed, err := s.cfg.Idempotency.Claim(ctx, scope, key, idempotency.Hash(r.Method, r.URL.RequestURI(), body), s.cfg.Now(), s.cfg.IdempotencyLease)
			if err != nil {
				writeProblem(w, problemFor(err))
				return
			}
			if !claimed {
				switch {
				case e.RequestHash != idempotency.Hash(r.Method, r.URL.RequestURI(), body):
					p := newProblem(422, "this Idempotency-Key was used with a different request",
						&huma.ErrorDetail{Location: "header.Idempotency-Key", Message: "already used with a different method, path or body"})
					p.Type = ProblemIdempotencyMismatch
					writeProblem(w, p)
				case e.Done:
					w.Header().Set("Content-Type", e.ContentType)
					w.Header().Set("Idempotent-Replayed", "true")
					w.WriteHeader(e.Status)
					w.Write(e.Body)
				default:
					p := newProblem(409, "a request with this Idempotency-Key is still in flight")
					p.Type = ProblemIdempotencyInFlight
					p.CurrentState = "in_flight"
					writeProblem(w, p)
				}
				return
			}
		} else {
			key = ""
		}

		// 2. Run the request inside the transaction; commit only on success.
		rec := &recorder{header: http.Header{}}
		err := s.cfg.Tx.InTx(ctx, func(ctx context.Context) error {
			serveSafely(rec, r.WithContext(ctx), next, s.cfg.Logger)
			if rec.status >= 400 {
				return errRollback
			}
			if key != "" {
				if err := s.cfg.Idempotency.Finish(ctx, scope, key, rec.status, rec.header.Get("Content-Type"), rec.buf.Bytes()); err != nil {
					return err
				}
			}
			return s.appendAudit(ctx, rec.status)
		})

		// 3. On failure, audit the attempt and settle the key on their own.
		if err != nil {
			if !errors.Is(err, errRollback) {
				s.cfg.Logger.Error("commit failed", "request_id", ri.ID, "err", err)
				rec = &recorder{header: http.Header{}}
				writeProblem(rec, problemFor(err))
			}
			s.cfg.Tx.InTx(context.WithoutCancel(ctx), func(ctx context.Context) error {
				if key != "" {
					if rec.status >= 500 {
						s.cfg.Idempotency.Release(ctx, scope, key)
					} else {
						s.cfg.Idempotency.Finish(ctx, scope, key, rec.status, rec.header.Get("Content-Type"), rec.buf.Bytes())
					}
				}
				return s.appendAudit(ctx, rec.status)
			})
		}
		rec.flush(w, false)
	})
}

// serveSafely runs next, turning a panic into a 500 so that the enclosing
// transaction always ends.
func serveSafely(rec *recorder, r *http.Request, next http.Handler, log *slog.Logger) {
	defer func() {
		if v := recover(); v != nil {
			log.Error("panic", "request_id", info(r.Context()).ID, "panic", fmt.Sprint(v))
			*rec = recorder{header: http.Header{}}
			writeProblem(rec, newProblem(http.StatusInternalServerError, "internal error"))
		}
	}()
	next.ServeHTTP(rec, r)
}

// appendAudit appends the request's audit record in ctx's transaction.
func (s *Server) appendAudit(ctx context.Context, status int) error {
	ri := info(ctx)
	p := ri.Principal
	actor, role := p.TokenID, string(p.Role)
	if actor == "" {
		actor, role = "anonymous", ""
	}
	t := ri.Tenant
	if t == "" {
		t = p.TenantID
	}
	_, err := s.cfg.Audit.AppendAudit(ctx, audit.Record{
		ID: neocloud.NewID(neocloud.PrefixAudit), At: s.cfg.Now(),
		Actor: actor, ActorRole: role, ActorTenant: p.TenantID, Tenant: t,
		Action: ri.Action, Object: ri.Object, Status: status, Result: audit.ResultFor(status, ri.Denied),
		RequestID: ri.ID, Source: ri.Source,
	})
	return err
}

// auditAlone appends an audit record in a transaction of its own.
func (s *Server) auditAlone(ctx context.Context, status int) {
	ctx = context.WithoutCancel(ctx)
	if err := s.cfg.Tx.InTx(ctx, func(ctx context.Context) error { return s.appendAudit(ctx, status) }); err != nil {
		s.cfg.Logger.Error("audit append failed", "request_id", info(ctx).ID, "err", err)
	}
}

// recorder buffers a response until the transaction commits.
type recorder struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.buf.Write(b)
}

func (r *recorder) flush(w http.ResponseWriter, _ bool) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status == 0 {
		r.status = 200
	}
	w.WriteHeader(r.status)
	w.Write(r.buf.Bytes())
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Flush passes flushes through, so streams (Server-Sent Events) reach the
// client as they are written.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
