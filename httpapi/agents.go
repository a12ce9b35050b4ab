package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	gojson "github.com/goccy/go-json"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/wire"
)

const (
	joinPath      = "/v1/agent/join"
	heartbeatPath = "/v1/agent/heartbeat"
	streamPath    = "/v1/agent/stream"
)

var agentOnly = []neocloud.Role{neocloud.RoleAgent}

// JoinTokenWithSecret is the answer to creating a join token: the only
// time its secret is shown.
type JoinTokenWithSecret struct {
	agents.JoinToken
	Secret string `json:"secret" doc:"The join secret for agents of this site. Shown once."`
}

func (s *Server) registerAgents() {
	av := s.cfg.Agents

	register(s, opAdmin, huma.Operation{OperationID: "create-join-token", Method: http.MethodPost, Path: "/v1/sites/{site}/join-tokens", Summary: "Create a join token for a site's agents",
		Description: "Agents of the site join with it until it expires or reaches its number of uses; each gets its node's own credential.", Tags: []string{"agents"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct {
			Site string `path:"site" doc:"Site name or id."`
			Body struct {
				MaxUses int64 `json:"max_uses" minimum:"1"`
				TTLS    int64 `json:"ttl_s" minimum:"1"`
			}
		}) (*struct{ Body JoinTokenWithSecret }, error) {
			t, secret, err := av.CreateJoinToken(ctx, principal(ctx), agents.JoinTokenInput{Site: in.Site, MaxUses: in.Body.MaxUses, TTLS: in.Body.TTLS})
			if err != nil {
				return nil, err
			}
			info(ctx).Object = t.ID
			return &struct{ Body JoinTokenWithSecret }{JoinTokenWithSecret{t, secret}}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-join-tokens", Method: http.MethodGet, Path: "/v1/sites/{site}/join-tokens", Summary: "List a site's join tokens", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Site string `path:"site"`
		}) (*struct{ Body List[agents.JoinToken] }, error) {
			ts, err := av.JoinTokens(ctx, in.Site)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[agents.JoinToken] }{List[agents.JoinToken]{Items: nonNil(ts)}}, nil
		})

	op := huma.Operation{OperationID: "agent-join", Method: http.MethodPost, Path: joinPath, Summary: "An agent joins",
		Description: "The bearer is a site join token. The node is matched by hostname (and serial, when declared) at the token's site; the answer carries the node's own credential (role agent, for this node only), shown once. A node that joined before must be re-keyed first.",
		Tags:        []string{"agents"}, DefaultStatus: 201, Metadata: map[string]any{"public": true}}
	op.Security = []map[string][]string{{"bearer": {}}}
	op.Errors = []int{400, 401, 409, 422}
	huma.Register(s.api, op, func(ctx context.Context, in *struct{ Body wire.JoinRequest }) (*struct{ Body wire.JoinResponse }, error) {
		out, err := av.Join(ctx, info(ctx).JoinSecret, in.Body)
		if err != nil {
			return nil, problemFor(err)
		}
		info(ctx).Object = out.NodeID
		return &struct{ Body wire.JoinResponse }{out}, nil
	})

	// Heartbeats are served by serveHeartbeat, on the mux directly (the
	// hottest path: no generic decoding, validation or transaction); the
	// operation is added to the OpenAPI document by hand so that it is
	// documented like the others.
	reg := s.api.OpenAPI().Components.Schemas
	s.api.OpenAPI().AddOperation(&huma.Operation{OperationID: "agent-heartbeat", Method: http.MethodPost, Path: heartbeatPath, Summary: "An agent reports",
		Description: "Telemetry and events of the agent's own node. Applied once per sequence number: a replay answers duplicate and changes nothing. No Idempotency-Key, no audit record per heartbeat. Answered after its group commit.\n\nRoles: agent.",
		Tags:        []string{"agents"}, Security: []map[string][]string{{"bearer": {}}},
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/json": {Schema: reg.Schema(reflect.TypeOf(wire.Heartbeat{}), true, "Heartbeat")}}},
		Responses: map[string]*huma.Response{
			"200":     {Description: "Applied (or a duplicate)", Content: map[string]*huma.MediaType{"application/json": {Schema: reg.Schema(reflect.TypeOf(wire.HeartbeatAnswer{}), true, "HeartbeatAnswer")}}},
			"default": {Description: "A problem (problem+json)"},
		}})
	s.mux.HandleFunc("POST "+heartbeatPath, s.serveHeartbeat)

	register(s, agentOnly, huma.Operation{OperationID: "agent-stream", Method: http.MethodGet, Path: streamPath, Summary: "The agent's push stream",
		Description: "Server-Sent Events: the node's assignment (generation, reservation, end, notices) at once and whenever it changes, so that a preemption or maintenance notice reaches the node within a second of being issued; and its pending commands whenever one is queued, so that urgent ones (drain, power cap) need not wait for the next heartbeat.", Tags: []string{"agents"}},
		func(ctx context.Context, _ *struct{}) (*huma.StreamResponse, error) {
			p := principal(ctx)
			if p.NodeID == "" {
				return nil, neocloud.Errorf(neocloud.KindForbidden, "only a node's agent has a stream")
			}
			return &huma.StreamResponse{Body: func(hc huma.Context) { s.streamAssignment(hc, p.NodeID) }}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "get-node-agent", Method: http.MethodGet, Path: "/v1/nodes/{node}/agent", Summary: "A node's last report: health, conditions with their reasons, telemetry",
		Description: "A tenant sees the nodes that serve it now; any other answers 404, as does a node no agent has reported for.", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node string `path:"node" doc:"Node id or hostname."`
		}) (*struct{ Body agents.State }, error) {
			n, err := s.cfg.Fleet.Node(ctx, in.Node)
			if err != nil {
				return nil, err
			}
			if p := principal(ctx); !p.Role.Operator() {
				mine, err := s.cfg.Sales.ServesTenant(ctx, n.ID, p.TenantID)
				if err != nil {
					return nil, err
				}
				if !mine {
					return nil, notFoundDenied(ctx, neocloud.NotFound("node", in.Node))
				}
			}
			st, err := av.Latest(ctx, n.ID)
			if neocloud.ErrorKind(err) == neocloud.KindNotFound {
				return nil, neocloud.Errorf(neocloud.KindNotFound, "no agent has reported for node %s", n.Hostname)
			}
			if err != nil {
				return nil, err
			}
			return &struct{ Body agents.State }{st}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "node-minutes", Method: http.MethodGet, Path: "/v1/nodes/{node}/minutes", Summary: "A node's minute rollups of its agent's reports (kept 7 days)", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node string    `path:"node"`
			From time.Time `query:"from" required:"true"`
			To   time.Time `query:"to" required:"true"`
		}) (*struct{ Body List[agents.Minute] }, error) {
			n, err := s.cfg.Fleet.Node(ctx, in.Node)
			if err != nil {
				return nil, err
			}
			ms, err := av.Store.Minutes(ctx, n.ID, in.From, in.To)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[agents.Minute] }{List[agents.Minute]{Items: nonNil(ms)}}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-incidents", Method: http.MethodGet, Path: "/v1/health/incidents", Summary: "Incidents for operators: domains gone silent at once (the liveness breaker)", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			All bool `query:"all" doc:"Closed ones too."`
		}) (*struct{ Body List[agents.Incident] }, error) {
			incs, err := av.Incidents(ctx, !in.All)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[agents.Incident] }{List[agents.Incident]{Items: nonNil(incs)}}, nil
		})

	for _, bf := range []struct {
		kind, path, summary, desc string
		roles                     []neocloud.Role
	}{
		{sales.BreakFixReport, "report", "Report a node of one's own as broken", "Recorded with its time; an operator confirms it (then the node is replaced and its downtime counts from the report).", opAdminTA},
		{sales.BreakFixReboot, "reboot", "Reboot a node of one's own", "Through its agent, fenced by the allocation's generation.", opAdminTA},
		{sales.BreakFixGPUReset, "gpu-reset", "Reset the GPUs of a node of one's own", "Through its agent, fenced by the allocation's generation; clears the conditions a reset remedies.", opAdminTA},
		{sales.BreakFixReplace, "replace", "Have a node of one's own replaced", "Within the contract's replacements a month: the node leaves the work (to repair) and a replacement within the reservation's constraint is made ready.", opAdminTA},
	} {
		register(s, bf.roles, huma.Operation{OperationID: "node-" + bf.path, Method: http.MethodPost, Path: "/v1/nodes/{node}/" + bf.path, Summary: bf.summary,
			Description: bf.desc + " A node that is not the caller's answers 404.", Tags: []string{"break-fix"}, DefaultStatus: 201},
			func(ctx context.Context, in *struct {
				Node string `path:"node" doc:"Hostname or id of a node serving the caller's reservation."`
				Body sales.BreakFixInput
			}) (*struct{ Body sales.BreakFix }, error) {
				b, err := s.cfg.Sales.NodeBreakFix(ctx, principal(ctx), in.Node, bf.kind, in.Body)
				if err != nil {
					return nil, err
				}
				info(ctx).Object = b.ID
				return &struct{ Body sales.BreakFix }{b}, nil
			})
	}
	register(s, anyHuman, huma.Operation{OperationID: "list-break-fix", Method: http.MethodGet, Path: "/v1/break-fix", Summary: "Break-fix requests, oldest first",
		Description: "Operators see every tenant's (state=open: the reports awaiting them); a tenant's users see their tenant's own.", Tags: []string{"break-fix"}},
		func(ctx context.Context, in *struct {
			PageParams
			State       string `query:"state" enum:"open,confirmed,declined,done," doc:"open: reports awaiting an operator."`
			Kind        string `query:"kind" enum:"report,reboot,gpu_reset,replace,"`
			Node        string `query:"node" doc:"Hostname or id."`
			Reservation string `query:"reservation"`
		}) (*struct{ Body List[sales.BreakFix] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			f := sales.BreakFixFilter{State: in.State, Kind: in.Kind, ReservationID: in.Reservation}
			if in.Node != "" {
				n, err := s.cfg.Fleet.Node(ctx, in.Node)
				if neocloud.ErrorKind(err) == neocloud.KindNotFound {
					return nil, neocloud.Invalid("query.node", "no node %q", in.Node)
				} else if err != nil {
					return nil, err
				}
				f.NodeID = n.ID
			}
			bs, err := s.cfg.Sales.BreakFixes(ctx, principal(ctx), f, pg)
			if err != nil {
				return nil, err
			}
			return listOf(nonNil(bs), limitOf(pg), func(b sales.BreakFix) string { return b.ID }), nil
		})
	register(s, anyHuman, huma.Operation{OperationID: "get-break-fix", Method: http.MethodGet, Path: "/v1/break-fix/{id}", Summary: "Show a break-fix request",
		Description: "Another tenant's answers 404.", Tags: []string{"break-fix"}},
		func(ctx context.Context, in *struct {
			ID string `path:"id"`
		}) (*struct{ Body sales.BreakFix }, error) {
			b, err := s.cfg.Sales.BreakFixRequest(ctx, principal(ctx), in.ID)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body sales.BreakFix }{b}, nil
		})
	register(s, opAdmin, huma.Operation{OperationID: "confirm-report", Method: http.MethodPost, Path: "/v1/break-fix/{id}/confirm", Summary: "Confirm a tenant's report of a node",
		Description: "The node is failed on that evidence: its work is replaced and its repair opened; its downtime counts from the report. The tenant gets a node.report_confirmed event.", Tags: []string{"break-fix"}},
		func(ctx context.Context, in *struct {
			ID string `path:"id"`
		}) (*struct{ Body sales.BreakFix }, error) {
			b, err := s.cfg.Sales.ConfirmReport(ctx, principal(ctx), in.ID)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = b.ID
			return &struct{ Body sales.BreakFix }{b}, nil
		})
	register(s, opAdmin, huma.Operation{OperationID: "decline-report", Method: http.MethodPost, Path: "/v1/break-fix/{id}/decline", Summary: "Decline a tenant's report of a node",
		Description: "No fault was found: the node stays in the work and no downtime counts. The tenant gets a node.report_declined event with the reason.", Tags: []string{"break-fix"}},
		func(ctx context.Context, in *struct {
			ID   string `path:"id"`
			Body sales.DeclineInput
		}) (*struct{ Body sales.BreakFix }, error) {
			b, err := s.cfg.Sales.DeclineReport(ctx, principal(ctx), in.ID, in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = b.ID
			return &struct{ Body sales.BreakFix }{b}, nil
		})

	if bmc, ok := av.OutOfBand.(*agents.SimBMC); ok {
		type bmcState struct {
			Power string `json:"power" enum:"on,off," doc:"What the node's out-of-band controller reports: on, off, or empty when it cannot be reached."`
		}
		register(s, opRead, huma.Operation{OperationID: "get-node-bmc", Method: http.MethodGet, Path: "/v1/nodes/{node}/bmc", Summary: "What a node's (simulated) out-of-band controller reports", Tags: []string{"agents"}},
			func(ctx context.Context, in *struct {
				Node string `path:"node"`
			}) (*struct{ Body bmcState }, error) {
				n, err := s.cfg.Fleet.Node(ctx, in.Node)
				if err != nil {
					return nil, err
				}
				p, err := bmc.Power(ctx, n.ID)
				return &struct{ Body bmcState }{bmcState{p}}, err
			})
		register(s, opAdmin, huma.Operation{OperationID: "set-node-bmc", Method: http.MethodPut, Path: "/v1/nodes/{node}/bmc", Summary: "Set what a node's simulated out-of-band controller reports",
			Description: "This server's out-of-band controllers are simulated: this sets what one reports (a real site reads them over Redfish or IPMI). Powered off is evidence that fails a silent node even behind an open breaker or under bare metal.", Tags: []string{"agents"}},
			func(ctx context.Context, in *struct {
				Node string `path:"node"`
				Body bmcState
			}) (*struct{ Body bmcState }, error) {
				n, err := s.cfg.Fleet.Node(ctx, in.Node)
				if err != nil {
					return nil, err
				}
				if err := bmc.Set(n.ID, in.Body.Power); err != nil {
					return nil, err
				}
				info(ctx).Object = n.ID
				return &struct{ Body bmcState }{in.Body}, nil
			})
	}

	register(s, opAdmin, huma.Operation{OperationID: "repair-done", Method: http.MethodPost, Path: "/v1/nodes/{node}/repair-done", Summary: "A repaired node goes to burn-in, then sanitizing, then service",
		Description: "Clears the node's hardware conditions and starts its burn-in through its agent; a burn-in done starts the sanitize, and a sanitize done (with its record) returns the node to service. A quarantined node needs force.", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node string `path:"node"`
			Body struct {
				Force bool `json:"force,omitempty" doc:"Let a quarantined node back."`
			}
		}) (*struct{ Body agents.RepairTicket }, error) {
			t, err := av.RepairDone(ctx, in.Node, in.Body.Force)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = t.ID
			return &struct{ Body agents.RepairTicket }{av.Located(t)[0]}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "fail-node", Method: http.MethodPost, Path: "/v1/nodes/{node}/fail", Summary: "An operator fails a node: its work is replaced, its repair opened",
		Description: "The operator's word that the node is broken (seen on the floor, or a silent domain the liveness breaker holds, checked by hand) is evidence, as the out-of-band controller's is: the node is failed, the work it serves (bare metal too) moves to replacements within each reservation's constraint, the time counts as the tenants' downtime, and a repair ticket opens. Answers the ticket. A reason is required; a retired node answers 409.", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node string `path:"node" doc:"Node id or hostname."`
			Body struct {
				Reason string `json:"reason" maxLength:"500" doc:"Why: the ticket and the tenants' events carry it."`
			}
		}) (*struct{ Body agents.RepairTicket }, error) {
			t, err := av.FailNode(ctx, in.Node, in.Body.Reason)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = t.NodeID
			return &struct{ Body agents.RepairTicket }{av.Located(t)[0]}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-repairs", Method: http.MethodGet, Path: "/v1/repairs", Summary: "Repair tickets, newest first", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			PageParams
			Node string `query:"node" doc:"One node's (hostname or id)."`
			All  bool   `query:"all" doc:"Closed ones too."`
		}) (*struct{ Body List[agents.RepairTicket] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			open := false
			f := agents.TicketFilter{Closed: &open}
			if in.All {
				f.Closed = nil
			}
			if in.Node != "" {
				n, err := s.cfg.Fleet.Node(ctx, in.Node)
				if err != nil {
					return nil, err
				}
				f.NodeID = n.ID
			}
			ts, err := av.Store.TicketPage(ctx, f, pg)
			if err != nil {
				return nil, err
			}
			return listOf(nonNil(av.Located(ts...)), limitOf(pg), func(t agents.RepairTicket) string { return t.ID }), nil
		})

	register(s, opRead, huma.Operation{OperationID: "node-sanitize-records", Method: http.MethodGet, Path: "/v1/nodes/{node}/sanitize-records", Summary: "A node's sanitize records, newest first", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node string `path:"node"`
		}) (*struct{ Body List[agents.SanitizeRecord] }, error) {
			n, err := s.cfg.Fleet.Node(ctx, in.Node)
			if err != nil {
				return nil, err
			}
			rs, err := av.Store.SanitizeRecords(ctx, n.ID)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[agents.SanitizeRecord] }{List[agents.SanitizeRecord]{Items: nonNil(rs)}}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "node-samples", Method: http.MethodGet, Path: "/v1/nodes/{node}/samples", Summary: "A node's per-report samples (energy counter sum and power) by sequence number (kept 7 days)", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node    string `path:"node"`
			FromSeq int64  `query:"from_seq" minimum:"1" default:"1"`
			ToSeq   int64  `query:"to_seq" minimum:"1" required:"true" doc:"Inclusive; at most 100,000 after from_seq."`
		}) (*struct{ Body List[agents.Sample] }, error) {
			n, err := s.cfg.Fleet.Node(ctx, in.Node)
			if err != nil {
				return nil, err
			}
			if in.ToSeq < in.FromSeq || in.ToSeq-in.FromSeq >= 100_000 {
				return nil, neocloud.Invalid("query.to_seq", "must be from from_seq to from_seq+99,999")
			}
			ss, err := av.Store.Samples(ctx, n.ID, in.FromSeq, in.ToSeq)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[agents.Sample] }{List[agents.Sample]{Items: nonNil(ss)}}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "node-energy", Method: http.MethodGet, Path: "/v1/nodes/{node}/energy", Summary: "A node's GPU energy counter readings at allocation boundaries and hourly", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node string    `path:"node"`
			From time.Time `query:"from" required:"true"`
			To   time.Time `query:"to" required:"true"`
		}) (*struct{ Body List[agents.EnergyReading] }, error) {
			n, err := s.cfg.Fleet.Node(ctx, in.Node)
			if err != nil {
				return nil, err
			}
			rs, err := av.Store.EnergyReadings(ctx, n.ID, in.From, in.To)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[agents.EnergyReading] }{List[agents.EnergyReading]{Items: nonNil(rs)}}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "order-node", Method: http.MethodPost, Path: "/v1/nodes/{node}/commands", Summary: "Order a node's agent",
		Description: "drain, health_check, sanitize or power_cap (watts per GPU), fenced by the node's current assignment generation; the agent gets it with its next report and answers with the outcome. Sanitizing a node that serves work is refused.", Tags: []string{"agents"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct {
			Node string `path:"node"`
			Body agents.CommandInput
		}) (*struct{ Body agents.NodeCommand }, error) {
			c, err := av.Order(ctx, principal(ctx), in.Node, in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = c.ID
			return &struct{ Body agents.NodeCommand }{c}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-node-commands", Method: http.MethodGet, Path: "/v1/nodes/{node}/commands", Summary: "A node's commands and their outcomes", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node string `path:"node"`
		}) (*struct{ Body List[agents.NodeCommand] }, error) {
			n, err := s.cfg.Fleet.Node(ctx, in.Node)
			if err != nil {
				return nil, err
			}
			cs, err := av.Store.Commands(ctx, n.ID, false)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[agents.NodeCommand] }{List[agents.NodeCommand]{Items: nonNil(cs)}}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "rekey-node", Method: http.MethodPost, Path: "/v1/nodes/{node}/rekey", Summary: "Revoke a node's agent credential so that it may join again", Tags: []string{"agents"}},
		func(ctx context.Context, in *struct {
			Node string `path:"node" doc:"Node id or hostname."`
		}) (*struct{ Body fleet.Node }, error) {
			n, err := av.Rekey(ctx, principal(ctx), in.Node)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = n.ID
			return &struct{ Body fleet.Node }{n}, nil
		})
}

// serveHeartbeat answers POST /v1/agent/heartbeat, the hottest path (every
// node every 10 s), without the generic machinery: one JSON decode, the
// agents service (which group-commits), one JSON encode.
func (s *Server) serveHeartbeat(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ri := info(ctx)
	ri.Action = "agent-heartbeat" // as the operation is named: metrics, audit
	p := ri.Principal
	if p.Role != neocloud.RoleAgent || p.NodeID == "" {
		s.auditAlone(ctx, http.StatusForbidden)
		writeProblem(w, newProblem(http.StatusForbidden, fmt.Sprintf("role %s may not agent-heartbeat", p.Role)))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeProblem(w, newProblem(http.StatusRequestEntityTooLarge, "request body is too large"))
		return
	}
	if !utf8.Valid(body) {
		writeProblem(w, newProblem(http.StatusBadRequest, "body: not valid UTF-8", &huma.ErrorDetail{Location: "body", Message: "not valid UTF-8"}))
		return
	}
	// The shape agents write is read by hand (wire.DecodeHeartbeat); any
	// other by go-json, which decodes the same JSON as encoding/json (for
	// valid UTF-8: FuzzHeartbeatDecode) in a third of the time.
	sc := heartbeatScratch.Get().(*hbScratch)
	defer heartbeatScratch.Put(sc)
	hb := &sc.hb
	*hb = wire.Heartbeat{}
	if !wire.DecodeHeartbeat(body, hb) {
		*hb = wire.Heartbeat{}
		if err := gojson.Unmarshal(body, hb); err != nil {
			writeProblem(w, newProblem(http.StatusBadRequest, "body: "+err.Error(), &huma.ErrorDetail{Location: "body", Message: err.Error()}))
			return
		}
	}
	ans, err := s.cfg.Agents.Heartbeat(ctx, p, *hb)
	if err != nil {
		pr := problemFor(err)
		if pr.Status == http.StatusInternalServerError && ctx.Err() == nil {
			s.cfg.Logger.Error("handler failed", "request_id", ri.ID, "op", ri.Action, "node", p.NodeID, "err", err)
		}
		writeProblem(w, pr)
		return
	}
	// The answer is written by hand too (wire.AppendHeartbeatAnswer), but
	// for commands and strings to escape.
	b, ok := wire.AppendHeartbeatAnswer(sc.out[:0], ans)
	if !ok {
		if b, err = gojson.Marshal(ans); err != nil {
			writeProblem(w, problemFor(err))
			return
		}
	}
	w.Header()["Content-Type"] = jsonType
	b = append(b, '\n')
	w.Write(b)
	sc.out = b[:0]
}

// jsonType is the Content-Type of heartbeat answers, set without a slice
// of its own each time (it is only read).
var jsonType = []string{"application/json"}

// hbScratch is a heartbeat request's decoded report and encoded answer,
// used again by later requests: the report is copied to the agents
// service (the lists it refers to are not used again), and the answer
// written (copied) before its buffer goes back.
type hbScratch struct {
	hb  wire.Heartbeat
	out []byte
}

var heartbeatScratch = sync.Pool{New: func() any { return &hbScratch{out: make([]byte, 0, 256)} }}

// readBody reads a request's body, at most MaxBodyBytes: as the front
// read it, or in one allocation when its length is declared and small.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if b, ok := r.Body.(*frontBody); ok { // at most fastMaxBody
		return b.take(), nil
	}
	if n := r.ContentLength; n >= 0 && n <= 1<<20 {
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
}

// streamAssignment sends a node's assignment when it changes: it looks
// again after every commit that wrote events (and every second, for other
// servers' commits), until the agent hangs up or the server stops.
func (s *Server) streamAssignment(hc huma.Context, nodeID string) {
	ctx := hc.Context()
	av := s.cfg.Agents
	w, flush := startStream(hc, "neocloud agent stream")
	// A change committed here wakes the stream at once; one made through
	// another server is read at the next poll.
	poll := time.NewTicker(agents.SharedPoll)
	defer poll.Stop()
	last, lastCmds := "-", "null"
	for n := 0; ; n++ {
		wake := av.NextChange(nodeID)
		a, err := av.AssignmentOf(ctx, nodeID)
		if err != nil {
			return
		}
		b, _ := json.Marshal(a)
		if string(b) != last {
			last = string(b)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: assignment\ndata: %s\n\n", n, b); err != nil {
				return
			}
			flush()
		}
		// Urgent commands go out at once too (the agent runs each once).
		cmds, err := av.PendingCommands(ctx, nodeID)
		if err != nil {
			return
		}
		if b, _ := json.Marshal(cmds); string(b) != lastCmds {
			lastCmds = string(b)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: commands\ndata: %s\n\n", n, b); err != nil {
				return
			}
			flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.events.closed():
			return
		case <-wake:
		case <-poll.C:
		}
	}
}
