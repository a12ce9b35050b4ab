package fleet

import (
	"bytes"
	"strings"
	"testing"

	"github.com/neocloud/neocloud"
)

const goodSpec = `site:
  name: lab-1
  region: eu-west
  timezone: Europe/Paris
  levels: [hall, rack]
  hierarchies:
    power: [feed, busway]
nodes:
  - {hostname: n1, serial: S1, sku: h100-sxm5-80gb, domain: h1/r1, power: f1/b1}
  - {hostname: n2, serial: S2, sku: h100-sxm5-80gb, domain: h1/r1, power: f1/b1, spare: true}
`

func TestParseSpecGood(t *testing.T) {
	s, err := ParseSpec([]byte(goodSpec))
	if err != nil {
		t.Fatal(err)
	}
	if s.Site.Name != "lab-1" || len(s.Nodes) != 2 || !s.Nodes[1].Spare || s.Nodes[0].Hierarchies["power"] != "f1/b1" {
		t.Errorf("parsed %+v", s)
	}
	// JSON is accepted too.
	js := `{"site":{"name":"lab-2","levels":["rack"]},"nodes":[{"hostname":"j1","serial":"J1","sku":"h200-sxm-141gb","domain":"r1"}]}`
	if _, err := ParseSpec([]byte(js)); err != nil {
		t.Errorf("JSON spec: %v", err)
	}
}

// TestParseSpecFaults: each kind of fault names its line, column and field.
func TestParseSpecFaults(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(goodSpec, old, new, 1) }
	for _, tc := range []struct {
		name, spec, field string
	}{
		{"not yaml", "site: [", "spec:1:1"},
		{"unknown top field", goodSpec + "extra: 1\n", "spec:11:1 .extra"},
		{"bad site name", replace("name: lab-1", "name: Lab_1"), "spec:2:9 site.name"},
		{"bad timezone", replace("Europe/Paris", "Mars/Olympus"), "spec:4:13 site.timezone"},
		{"no levels", replace("  levels: [hall, rack]\n", ""), "spec:2:3 site.levels"},
		{"unknown sku", replace("sku: h100-sxm5-80gb, domain: h1/r1, power: f1/b1}", "sku: a100, domain: h1/r1, power: f1/b1}"), "spec:9:37 nodes[0].sku"},
		{"domain depth", replace("domain: h1/r1, power: f1/b1}", "domain: h1, power: f1/b1}"), "spec:9:61 nodes[0].domain"},
		{"missing hierarchy", replace(", power: f1/b1}", "}"), "spec:9:5 nodes[0].power"},
		{"duplicate hostname", replace("hostname: n2", "hostname: n1"), "spec:10:16 nodes[1].hostname"},
		{"duplicate serial", replace("serial: S2", "serial: S1"), "spec:10:28 nodes[1].serial"},
		{"unknown node field", replace("spare: true", "colour: red"), "spec:10:82 nodes[1].colour"},
		{"spare not bool", replace("spare: true", "spare: maybe"), "spec:10:89 nodes[1].spare"},
		{"bad hostname", replace("hostname: n1", "hostname: N_1"), "spec:9:16 nodes[0].hostname"},
		{"missing serial", replace("serial: S1, ", ""), "spec:9:5 nodes[0].serial"},
		{"cap above the GPU's limit", goodSpec + "skus:\n  - {name: h100-capped, gpu_model: x, gpus_per_node: 8, gpu_memory_mib: 1, node_max_power_w: 10200, gpu_max_power_w: 700, power_cap_w: 800}\n", "spec:1:1 skus[0].power_cap_w"},
		{"no such power domain", replace("    power: [feed, busway]\n", "    power: [feed, busway]\n  power:\n    domains: [{path: f1/b2, capacity_kw: 40}]\n"), "spec:2:3 site.power.domains[0].path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.spec))
			var ne *neocloud.Error
			if err == nil {
				t.Fatal("accepted")
			}
			ne, _ = err.(*neocloud.Error)
			if ne == nil || ne.Kind != neocloud.KindInvalid {
				t.Fatalf("err = %v, want invalid", err)
			}
			if ne.Field != tc.field {
				t.Errorf("field = %q, want %q (%s)", ne.Field, tc.field, ne.Message)
			}
		})
	}
}

func TestGenerateIsDeterministicAndParses(t *testing.T) {
	sku, _ := CatalogSKU("h100-sxm5-80gb")
	o := ColossusOptions(sku, 4096*2)
	o.SpareLevel, o.Spares = "su", 1
	var a, b bytes.Buffer
	n, err := Generate(&a, o)
	if err != nil {
		t.Fatal(err)
	}
	Generate(&b, o)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same options gave different specs")
	}
	s, err := ParseSpec(a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1024 || len(s.Nodes) != 1024 {
		t.Fatalf("%d nodes, want 1024", len(s.Nodes))
	}
	// Colossus shape: 8 nodes per rack, 32 per su, 512 (4,096 GPUs) per pod.
	count := func(level int) int {
		seen := map[string]bool{}
		for _, n := range s.Nodes {
			seen[strings.Join(strings.Split(n.Domain, "/")[:level+1], "/")] = true
		}
		return len(seen)
	}
	if got := []int{count(0), count(1), count(2), count(3)}; got[1] != 2 || got[2] != 32 || got[3] != 128 {
		t.Errorf("halls, pods, sus, racks = %v; want [1 2 32 128]", got)
	}
	spares := 0
	for _, n := range s.Nodes {
		if n.Spare {
			spares++
		}
	}
	if spares != 32 {
		t.Errorf("%d spares, want one per su (32)", spares)
	}
	if s.Site.Hierarchies["power"] == nil || s.Nodes[0].Hierarchies["power"] == "" {
		t.Error("no power hierarchy generated")
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(goodSpec))
	f.Add([]byte(`{"site":{"name":"x1","levels":["rack"]},"nodes":[{}]}`))
	f.Add([]byte("nodes: 5"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpec(b)
		if err == nil && s == nil {
			t.Error("nil spec without error")
		}
		if err != nil && neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Errorf("error of kind %s: %v", neocloud.ErrorKind(err), err)
		}
	})
}
