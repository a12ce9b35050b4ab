package fleet

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // sites name IANA time zones; do not depend on the host's

	"gopkg.in/yaml.v3"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/pricing"
)

// Spec is a parsed, validated site spec: the desired fleet of one site.
type Spec struct {
	Site  SiteSpec
	SKUs  []SKU
	Nodes []NodeSpec
}

// SiteSpec is the site part of a spec.
type SiteSpec struct {
	Name        string
	Region      string
	Timezone    string
	Levels      []string
	Hierarchies map[string][]string
	Power       *Power
	Policy      *SitePolicy
	Economics   *Economics
}

// NodeSpec is one node as a spec declares it.
type NodeSpec struct {
	Hostname    string
	Serial      string
	SKU         string
	Domain      string
	Hierarchies map[string]string
	Spare       bool
	GPUUUIDs    []string
}

// MaxSpecIssues bounds how many faults one parse reports.
const MaxSpecIssues = 50

var (
	hostRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
	segmentRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	levelRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,30}$`)
	serialRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	uuidRE    = regexp.MustCompile(`^GPU-[0-9a-fA-F-]{8,64}$`)
	siteRE    = regexp.MustCompile(`^[a-z][a-z0-9-]{1,62}$`)
)

// parser collects faults with their line and column.
type parser struct {
	issues []neocloud.FieldError
}

func (p *parser) fault(n *yaml.Node, field, format string, args ...any) {
	if len(p.issues) >= MaxSpecIssues {
		return
	}
	loc := "spec"
	if n != nil {
		loc = fmt.Sprintf("spec:%d:%d", n.Line, n.Column)
	}
	p.issues = append(p.issues, neocloud.FieldError{Field: loc + " " + field, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) err() error {
	if len(p.issues) == 0 {
		return nil
	}
	msg := p.issues[0].Message
	if len(p.issues) > 1 {
		msg += fmt.Sprintf(" (and %d more faults)", len(p.issues)-1)
	}
	return &neocloud.Error{Kind: neocloud.KindInvalid, Field: p.issues[0].Field, Message: msg, Details: p.issues}
}

// mapping walks a YAML mapping, calling fn for each key; keys fn does not
// know are faults.
func (p *parser) mapping(n *yaml.Node, field string, fn func(key string, k, v *yaml.Node) bool) {
	if n.Kind != yaml.MappingNode {
		p.fault(n, field, "must be a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			p.fault(k, field+"."+k.Value, "is given twice")
			continue
		}
		seen[k.Value] = true
		if !fn(k.Value, k, v) {
			p.fault(k, field+"."+k.Value, "unknown field")
		}
	}
}

func (p *parser) str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.fault(n, field, "must be a string")
		return ""
	}
	return n.Value
}

func (p *parser) boolean(n *yaml.Node, field string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		p.fault(n, field, "must be true or false")
	}
	return b
}

func (p *parser) strings(n *yaml.Node, field string) []string {
	if n.Kind != yaml.SequenceNode {
		p.fault(n, field, "must be a list of strings")
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		out = append(out, p.str(c, fmt.Sprintf("%s[%d]", field, i)))
	}
	return out
}

// decodeStrict decodes n into v, rejecting unknown fields, and records a
// fault at n on failure.
func (p *parser) decodeStrict(n *yaml.Node, field string, v any) {
	b, err := yaml.Marshal(n)
	if err == nil {
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		err = dec.Decode(v)
	}
	if err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n  ")
		p.fault(n, field, "%s", msg)
	}
}

// ParseSpec parses a site spec (YAML, or JSON, which is YAML) and validates
// it against the built-in SKU catalog and the SKUs it declares. Every fault
// names its line, column and field; up to MaxSpecIssues are reported.
func ParseSpec(data []byte) (*Spec, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		fmt.Sscanf(msg, "line %d:", &line)
		return nil, &neocloud.Error{Kind: neocloud.KindInvalid, Field: fmt.Sprintf("spec:%d:1", line), Message: "not YAML or JSON: " + msg}
	}
	if len(doc.Content) == 0 {
		return nil, neocloud.Invalid("spec", "is empty")
	}
	p := &parser{}
	spec := &Spec{}
	root := doc.Content[0]
	var siteNode, nodesNode *yaml.Node
	p.mapping(root, "", func(key string, k, v *yaml.Node) bool {
		switch key {
		case "site":
			siteNode = v
		case "skus":
			p.decodeStrict(v, "skus", &spec.SKUs)
		case "nodes":
			nodesNode = v
		default:
			return false
		}
		return true
	})
	if siteNode == nil {
		p.fault(root, "site", "is required")
	} else {
		p.site(siteNode, &spec.Site)
	}
	skus := map[string]SKU{}
	for _, s := range Catalog {
		skus[s.Name] = s
	}
	for i, s := range spec.SKUs {
		field := fmt.Sprintf("skus[%d]", i)
		switch {
		case !siteRE.MatchString(s.Name):
			p.fault(root, field+".name", "must be lower-case letters, digits and dashes")
		case s.GPUsPerNode < 1 || s.GPUsPerNode > 64:
			p.fault(root, field+".gpus_per_node", "must be between 1 and 64")
		case s.NodeMaxPowerW <= 0:
			p.fault(root, field+".node_max_power_w", "must be positive (watts, whole node)")
		case s.TurnaroundS < 0:
			p.fault(root, field+".turnaround_s", "must not be negative")
		case s.PowerCapW != 0 && (s.PowerCapW < 100 || s.GPUMaxPowerW > 0 && s.PowerCapW > s.GPUMaxPowerW):
			p.fault(root, field+".power_cap_w", "must be at least 100 W and at most the GPU's limit (gpu_max_power_w)")
		}
		skus[s.Name] = s
	}
	if nodesNode != nil {
		p.nodes(nodesNode, spec, skus)
	}
	if pw := spec.Site.Power; pw != nil && len(pw.Domains) > 0 {
		// A domain limit names a power domain some node is in.
		have := map[string]bool{}
		for _, n := range spec.Nodes {
			path := n.Hierarchies["power"]
			for i := 0; i < len(path); i++ {
				if path[i] == '/' {
					have[path[:i]] = true
				}
			}
			have[path] = true
		}
		for i, d := range pw.Domains {
			if d.Path != "" && !have[d.Path] {
				p.fault(siteNode, fmt.Sprintf("site.power.domains[%d].path", i), "no node is in power domain %q", d.Path)
			}
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return spec, nil
}

func (p *parser) site(n *yaml.Node, s *SiteSpec) {
	var nameNode *yaml.Node
	p.mapping(n, "site", func(key string, k, v *yaml.Node) bool {
		switch key {
		case "name":
			nameNode = v
			s.Name = p.str(v, "site.name")
		case "region":
			s.Region = p.str(v, "site.region")
		case "timezone":
			s.Timezone = p.str(v, "site.timezone")
			if _, err := time.LoadLocation(s.Timezone); err != nil || s.Timezone == "" {
				p.fault(v, "site.timezone", "unknown IANA time zone %q", s.Timezone)
			}
		case "levels":
			s.Levels = p.strings(v, "site.levels")
			p.levels(v, "site.levels", s.Levels)
		case "hierarchies":
			s.Hierarchies = map[string][]string{}
			p.mapping(v, "site.hierarchies", func(name string, k, hv *yaml.Node) bool {
				if !levelRE.MatchString(name) || name == "domain" || name == "hostname" {
					p.fault(k, "site.hierarchies."+name, "must be a lower-case name other than a node field")
				}
				s.Hierarchies[name] = p.strings(hv, "site.hierarchies."+name)
				p.levels(hv, "site.hierarchies."+name, s.Hierarchies[name])
				return true
			})
		case "policy":
			s.Policy = &SitePolicy{}
			p.decodeStrict(v, "site.policy", s.Policy)
			if s.Policy.SpotNoticeS < 0 || s.Policy.InternalNoticeS < 0 {
				p.fault(v, "site.policy", "notices must not be negative")
			}
		case "economics":
			s.Economics = &Economics{}
			p.decodeStrict(v, "site.economics", s.Economics)
			e := s.Economics
			for _, m := range []struct{ field, v string }{{"capex_per_node", e.CapexPerNode}, {"facility_capex_per_mw", e.FacilityCapexPerMW},
				{"opex_per_mw_month", e.OpexPerMWMonth}, {"transfer_price_per_gpu_hour", e.TransferPricePerGPUHour}} {
				if m.v == "" && m.field != "capex_per_node" {
					continue
				}
				if x, err := pricing.ParseMicros("site.economics."+m.field, m.v); err != nil || x < 0 {
					p.fault(v, "site.economics."+m.field, "must be an amount in currency units such as 350000")
				}
			}
			if !(e.NodeLifeYears > 0 && e.NodeLifeYears <= 30) {
				p.fault(v, "site.economics.node_life_years", "must be between 0 and 30 years")
			}
			if e.FacilityCapexPerMW != "" && !(e.FacilityLifeYears > 0 && e.FacilityLifeYears <= 60) {
				p.fault(v, "site.economics.facility_life_years", "must be between 0 and 60 years where facility capex is given")
			}
		case "power":
			s.Power = &Power{}
			p.decodeStrict(v, "site.power", s.Power)
			if s.Power.PUE != 0 && s.Power.PUE < 1 {
				p.fault(v, "site.power.pue", "must be at least 1")
			}
			if e := s.Power.EnergyPrice; e != "" {
				if m, err := pricing.ParseMicros("site.power.energy_price_per_kwh", e); err != nil || m < 0 {
					p.fault(v, "site.power.energy_price_per_kwh", "must be an amount per kWh such as 0.085")
				}
			}
			for _, f := range s.Power.Faults() {
				p.fault(v, f.Field, "%s", f.Message)
			}
		default:
			return false
		}
		return true
	})
	if nameNode == nil {
		p.fault(n, "site.name", "is required")
	} else if !siteRE.MatchString(s.Name) {
		p.fault(nameNode, "site.name", "must be lower-case letters, digits and dashes, starting with a letter")
	}
	if len(s.Levels) == 0 {
		p.fault(n, "site.levels", "is required: the topology levels from the top, e.g. [hall, pod, su, rack]")
	}
	if s.Timezone == "" {
		s.Timezone = "UTC"
	}
}

func (p *parser) levels(n *yaml.Node, field string, levels []string) {
	seen := map[string]bool{}
	for i, l := range levels {
		if !levelRE.MatchString(l) {
			p.fault(n.Content[i], fmt.Sprintf("%s[%d]", field, i), "level names are lower-case words")
		}
		if seen[l] {
			p.fault(n.Content[i], fmt.Sprintf("%s[%d]", field, i), "level %q is given twice", l)
		}
		seen[l] = true
	}
	if len(levels) == 0 {
		p.fault(n, field, "needs at least one level")
	}
}

func (p *parser) nodes(n *yaml.Node, spec *Spec, skus map[string]SKU) {
	if n.Kind != yaml.SequenceNode {
		p.fault(n, "nodes", "must be a list")
		return
	}
	hosts := make(map[string]int, len(n.Content))
	serials := make(map[string]int, len(n.Content))
	uuids := map[string]int{}
	spec.Nodes = make([]NodeSpec, 0, len(n.Content))
	levels := len(spec.Site.Levels)
	for i, nn := range n.Content {
		field := fmt.Sprintf("nodes[%d]", i)
		var ns NodeSpec
		var hostN, serialN, skuN, domainN *yaml.Node
		p.mapping(nn, field, func(key string, k, v *yaml.Node) bool {
			switch key {
			case "hostname":
				hostN, ns.Hostname = v, p.str(v, field+".hostname")
			case "serial":
				serialN, ns.Serial = v, p.str(v, field+".serial")
			case "sku":
				skuN, ns.SKU = v, p.str(v, field+".sku")
			case "domain":
				domainN, ns.Domain = v, p.str(v, field+".domain")
			case "spare":
				ns.Spare = p.boolean(v, field+".spare")
			case "gpus":
				ns.GPUUUIDs = p.strings(v, field+".gpus")
				for j, u := range ns.GPUUUIDs {
					if !uuidRE.MatchString(u) {
						p.fault(v.Content[j], fmt.Sprintf("%s.gpus[%d]", field, j), "GPU UUIDs look like GPU-xxxxxxxx-…")
					} else if prev, dup := uuids[u]; dup {
						p.fault(v.Content[j], fmt.Sprintf("%s.gpus[%d]", field, j), "GPU %s is also on nodes[%d]", u, prev)
					}
					uuids[u] = i
				}
			default:
				levels, ok := spec.Site.Hierarchies[key]
				if !ok {
					return false
				}
				path := p.str(v, field+"."+key)
				if ns.Hierarchies == nil {
					ns.Hierarchies = map[string]string{}
				}
				ns.Hierarchies[key] = path
				p.path(v, field+"."+key, path, len(levels))
			}
			return true
		})
		p.unique(nn, hostN, field+".hostname", ns.Hostname, hostRE, "must be a lower-case DNS name", hosts, i)
		p.unique(nn, serialN, field+".serial", ns.Serial, serialRE, "must be letters, digits and _.:-", serials, i)
		if skuN == nil {
			p.fault(nn, field+".sku", "is required")
		} else if sku, ok := skus[ns.SKU]; !ok {
			p.fault(skuN, field+".sku", "unknown SKU %q (known: %s)", ns.SKU, strings.Join(skuNames(skus), ", "))
		} else if len(ns.GPUUUIDs) > 0 && len(ns.GPUUUIDs) != sku.GPUsPerNode {
			p.fault(nn, field+".gpus", "SKU %s has %d GPUs per node, the spec lists %d", sku.Name, sku.GPUsPerNode, len(ns.GPUUUIDs))
		}
		if domainN == nil {
			p.fault(nn, field+".domain", "is required: one name per level (%s), joined by /", strings.Join(spec.Site.Levels, ", "))
		} else {
			p.path(domainN, field+".domain", ns.Domain, levels)
		}
		for h := range spec.Site.Hierarchies {
			if _, ok := ns.Hierarchies[h]; !ok {
				p.fault(nn, field+"."+h, "is required: the site declares hierarchy %s", h)
			}
		}
		spec.Nodes = append(spec.Nodes, ns)
		if len(p.issues) >= MaxSpecIssues {
			return
		}
	}
}

// unique checks a required field of node i (value v at node vn, nil when
// absent from mapping n) against its format and the values of earlier
// nodes in seen.
func (p *parser) unique(n, vn *yaml.Node, field, v string, re *regexp.Regexp, format string, seen map[string]int, i int) {
	switch {
	case vn == nil:
		p.fault(n, field, "is required")
	case !re.MatchString(v):
		p.fault(vn, field, "%s", format)
	default:
		if prev, dup := seen[v]; dup {
			p.fault(vn, field, "%s is also on nodes[%d]", v, prev)
		}
		seen[v] = i
	}
}

// path checks a "/"-joined path with one segment per level.
func (p *parser) path(n *yaml.Node, field, path string, levels int) {
	segs := strings.Split(path, "/")
	if levels > 0 && len(segs) != levels {
		p.fault(n, field, "%q has %d parts, the hierarchy has %d levels", path, len(segs), levels)
		return
	}
	for _, s := range segs {
		if !segmentRE.MatchString(s) {
			p.fault(n, field, "%q: each part must be letters, digits and _.-", path)
			return
		}
	}
}

func skuNames(m map[string]SKU) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SKU returns the SKU a spec's node names: the spec's own or the catalog's.
func (s *Spec) SKU(name string) (SKU, bool) {
	for _, k := range s.SKUs {
		if k.Name == name {
			return k, true
		}
	}
	return CatalogSKU(name)
}
