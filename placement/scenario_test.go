package placement

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud/fleet"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata scenarios")

// testFleet builds fleet nodes from generator options.
func testFleet(t testing.TB, o fleet.GenerateOptions) (fleet.Site, []fleet.Node) {
	t.Helper()
	var b bytes.Buffer
	if _, err := fleet.Generate(&b, o); err != nil {
		t.Fatal(err)
	}
	spec, err := fleet.ParseSpec(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	site := fleet.Site{ID: "site_test", Name: spec.Site.Name, Levels: spec.Site.Levels}
	nodes := make([]fleet.Node, len(spec.Nodes))
	for i, ns := range spec.Nodes {
		nodes[i] = fleet.Node{ID: fmt.Sprintf("node_%06d", i), Hostname: ns.Hostname, SiteID: site.ID, Site: site.Name, SKU: ns.SKU,
			Domain: ns.Domain, Spare: ns.Spare, Lifecycle: fleet.LifecycleAvailable, Health: fleet.HealthOK}
	}
	return site, nodes
}

func args(line string) (string, map[string]string) {
	fields := strings.Fields(line)
	m := map[string]string{}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return fields[0], m
}

func atoi(t testing.TB, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

func ints(t testing.TB, s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		out = append(out, atoi(t, f))
	}
	return out
}

// short names a node by its domain path and the hostname's last part.
func (s *Snapshot) short(i int) string {
	h := s.T.nodes[i].host
	return h[strings.LastIndex(h, "-")+1:]
}

func (s *Snapshot) render(res Result) string {
	var b strings.Builder
	if p := res.Plan; p != nil {
		fmt.Fprintf(&b, "plan %d GPUs on %d nodes\n", p.GPUs, len(p.Nodes))
		b.WriteString("  domains used (bound empty, bound free):")
		for _, sc := range p.Score {
			fmt.Fprintf(&b, " %s %d (%d, %d);", sc.Level, sc.Used, sc.BoundEmpty, sc.BoundFree)
		}
		b.WriteString("\n")
		byDom := map[string][]string{}
		var doms []string
		for _, a := range p.Nodes {
			name := s.short(a.index)
			if len(a.GPUs) < s.T.SKU.GPUsPerNode {
				name += fmt.Sprint(a.GPUs)
			}
			if _, ok := byDom[a.Domain]; !ok {
				doms = append(doms, a.Domain)
			}
			byDom[a.Domain] = append(byDom[a.Domain], name)
		}
		for _, d := range doms {
			nodes := byDom[d]
			if len(nodes) > 8 {
				nodes = append(nodes[:3:3], fmt.Sprintf("… %d nodes", len(byDom[d])))
			}
			fmt.Fprintf(&b, "  %s: %s\n", d, strings.Join(nodes, " "))
		}
		return b.String()
	}
	r := res.Refusal
	fmt.Fprintf(&b, "refused: %s\n", r.Message)
	var keys []string
	for k, v := range r.Rejected {
		keys = append(keys, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(keys)
	fmt.Fprintf(&b, "  rejected: %s\n", strings.Join(keys, " "))
	for _, a := range r.Alternatives {
		fmt.Fprintf(&b, "  alternative %s:", a.Constraint)
		for _, sc := range a.Score {
			fmt.Fprintf(&b, " %s %d;", sc.Level, sc.Used)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// runScenario runs one file of commands, each followed by "----" and its
// expected output, separated by blank lines:
//
//	fleet gpus=N levels=a,b fanout=x,y [sku=S] [spares=LEVEL:N]
//	place gpus=N [within=L] [max=L:N] [class=C] [exclude=host,…] [whole=PATH] [commit] [as=NAME]
//	release NAME
//	fail host=HOST
//	replace host=HOST [within=L] [commit]
//	admit id=ID tenant=T (place arguments) start=DAY end=DAY [min=N shrink=L] [maxout=N]
//	earliest tenant=T (place arguments) start=DAY dur=DAYS
//	calfail host=HOST; rechoose id=ID host=HOST; maint id=ID hosts=H,… start= end=
//	rolling id=ID domain=PATH start=DAY dur=DURATION; spares level=L count=N|percent=P
//	preempt tenant=T (place arguments) start=DAY end=DAY
//
// (DAY is a day number from 2027-01-01, or hours with an h suffix)
func runScenario(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var s *Snapshot
	var cal *Calendar
	epoch := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(v string) time.Time {
		if v == "" {
			return epoch
		}
		if h, ok := strings.CutSuffix(v, "h"); ok {
			return epoch.Add(time.Duration(atoi(t, h)) * time.Hour)
		}
		return epoch.AddDate(0, 0, atoi(t, v))
	}
	day := func(tm time.Time) string {
		d := tm.Sub(epoch)
		if d%(24*time.Hour) == 0 {
			return fmt.Sprintf("day %d", d/(24*time.Hour))
		}
		return fmt.Sprintf("hour %d", d/time.Hour)
	}
	request := func(a map[string]string) Request {
		r := Request{Within: a["within"], Class: Class(orDefault(a["class"], "reserved")), Whole: a["whole"]}
		if a["gpus"] != "" {
			r.GPUs = atoi(t, a["gpus"])
		}
		return r
	}
	plans := map[string]*Plan{}
	blocks := strings.Split(strings.TrimSpace(string(data)), "\n\n")
	changed := false
	for _, blk := range blocks {
		cmdLines, want, _ := strings.Cut(blk, "\n----\n")
		cmdLines = strings.TrimSuffix(cmdLines, "\n----")
		var cmd string
		var lines []string
		for _, l := range strings.Split(cmdLines, "\n") {
			if strings.HasPrefix(l, "#") {
				lines = append(lines, l)
				continue
			}
			cmd = l
			lines = append(lines, l)
		}
		name, a := args(cmd)
		var got string
		switch name {
		case "fleet":
			sku, _ := fleet.CatalogSKU(orDefault(a["sku"], "h100-sxm5-80gb"))
			o := fleet.GenerateOptions{Site: "test", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: atoi(t, a["gpus"]),
				Levels: strings.Split(a["levels"], ","), Fanout: ints(t, a["fanout"])}
			if sp := a["spares"]; sp != "" {
				lvl, n, _ := strings.Cut(sp, ":")
				o.SpareLevel, o.Spares = lvl, atoi(t, n)
			}
			site, nodes := testFleet(t, o)
			s = NewSnapshot(Build(site, sku, nodes))
			cal = NewCalendar(Build(site, sku, nodes))
			got = fmt.Sprintf("%d nodes\n", s.T.Nodes())
		case "admit":
			r := request(a)
			res, err := cal.Admit(a["id"], r, a["tenant"], at(a["start"]), at(a["end"]))
			if err != nil {
				got = "error: " + err.Error() + "\n"
				break
			}
			got = cal.scratch.render(res)
			if res.Plan != nil {
				cm, _ := cal.Reservation(a["id"])
				if a["min"] != "" {
					if err := cal.SetElastic(a["id"], atoi(t, a["min"]), a["shrink"]); err != nil {
						t.Fatalf("%s: %v", cmd, err)
					}
				}
				if a["maxout"] != "" {
					cm.MaxOut = atoi(t, a["maxout"])
				}
			}
		case "earliest":
			adm, err := cal.EarliestStart(request(a), a["tenant"], at(a["start"]), at(a["dur"]).Sub(epoch), 1000)
			if err != nil {
				got = "error: " + err.Error() + "\n"
				break
			}
			if adm.Plan != nil {
				got = "earliest start " + day(adm.Start) + "\n" + cal.scratch.render(adm.Result)
			} else {
				got = cal.scratch.render(adm.Result)
			}
			var before time.Time
			if adm.Plan != nil {
				before = adm.Start
			}
			looser, err := cal.LooserStarts(request(a), a["tenant"], at(a["start"]), at(a["dur"]).Sub(epoch), 1000, before)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range looser {
				got += fmt.Sprintf("  looser %s: %s\n", l.Constraint, day(l.Start))
			}
		case "spares":
			ids, err := cal.T.ChooseSpares(a["level"], atoi(t, orDefault(a["count"], "0")), float64(atoi(t, orDefault(a["percent"], "0"))))
			if err != nil {
				got = "error: " + err.Error() + "\n"
				break
			}
			var names []string
			for _, id := range ids {
				i, _ := cal.T.NodeIndex(id)
				names = append(names, cal.T.Domain(i, len(cal.T.Levels)-1)+"/"+cal.scratch.short(i))
			}
			got = fmt.Sprintf("%d spares: %s\n", len(ids), strings.Join(names, " "))
		case "maint":
			touched, err := cal.AddWindow(&Window{ID: a["id"], Start: at(a["start"]), End: at(a["end"]), Nodes: strings.Split(a["hosts"], ",")})
			if err != nil {
				t.Fatal(err)
			}
			got = fmt.Sprintf("window %s touches %v\n", a["id"], touched)
		case "calfail":
			if err := cal.Block(a["host"]); err != nil {
				t.Fatal(err)
			}
			got = "failed " + a["host"] + "\n"
		case "rechoose":
			res, err := cal.Rechoose(a["id"], a["host"])
			if err != nil {
				got = "error: " + err.Error() + "\n"
				break
			}
			got = cal.scratch.render(res)
		case "rolling":
			var hosts []string
			for i := range cal.T.nodes {
				if strings.HasPrefix(cal.T.Domain(i, len(cal.T.Levels)-1)+"/", a["domain"]+"/") {
					hosts = append(hosts, cal.T.nodes[i].host)
				}
			}
			ws, err := cal.Rolling(a["id"], hosts, at(a["start"]), at(a["dur"]).Sub(epoch))
			if err != nil {
				t.Fatal(err)
			}
			worst := map[string]int{}
			for _, w := range ws {
				for id := range cal.rsvs {
					worst[id] = max(worst[id], cal.OutAt(id, w.Start))
				}
			}
			got = fmt.Sprintf("%d windows of %s, first %s, last %s\n", len(ws), a["dur"], day(ws[0].Start), day(ws[len(ws)-1].Start))
			var ids []string
			for id := range worst {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				got += fmt.Sprintf("  %s: at most %d nodes out at once (max_out %d)\n", id, worst[id], cal.rsvs[id].MaxOut)
			}
		case "preempt":
			notice := map[Class]time.Duration{ClassSpot: 2 * time.Minute, ClassInternal: 30 * time.Minute}
			pr, err := cal.PlanPreemption(request(a), a["tenant"], at(a["start"]), at(a["end"]), notice)
			if err != nil {
				got = "error: " + err.Error() + "\n"
				break
			}
			switch {
			case pr.Refusal != "":
				got = "refused: " + pr.Refusal + "\n"
			case len(pr.Victims) == 0:
				got = "fits without preemption\n" + cal.scratch.render(Result{Plan: pr.Plan})
			default:
				for _, v := range pr.Victims {
					got += fmt.Sprintf("%s %s (%s): %d nodes, %.0f GPU-hours, off by %s\n", v.Action, v.Reservation, v.Class, len(v.Nodes), v.GPUHours, v.OffBy.Sub(epoch))
				}
				got += cal.scratch.render(Result{Plan: pr.Plan})
			}
		case "place":
			r := Request{Within: a["within"], Class: Class(orDefault(a["class"], "reserved")), Whole: a["whole"]}
			if a["gpus"] != "" {
				r.GPUs = atoi(t, a["gpus"])
			}
			if a["max"] != "" {
				r.MaxDomains, err = ParseMaxDomains(a["max"])
				if err != nil {
					t.Fatal(err)
				}
			}
			if a["exclude"] != "" {
				r.Exclude = strings.Split(a["exclude"], ",")
			}
			res, err := s.Place(r)
			if err != nil {
				got = "error: " + err.Error() + "\n"
				break
			}
			got = s.render(res)
			if _, ok := a["commit"]; ok && res.Plan != nil {
				s.Commit(res.Plan)
				if a["as"] != "" {
					plans[a["as"]] = res.Plan
				}
			}
		case "release":
			s.Release(plans[strings.Fields(cmd)[1]])
			got = fmt.Sprintf("utilization %.3f\n", s.Utilization())
		case "fail":
			i, ok := s.T.NodeIndex(a["host"])
			if !ok {
				t.Fatalf("no host %s", a["host"])
			}
			s.Block(i, ReasonHealth)
			got = "failed " + s.short(i) + "\n"
		case "replace":
			res, err := s.Replace(a["host"], a["within"])
			if err != nil {
				got = "error: " + err.Error() + "\n"
				break
			}
			got = s.render(res)
			if _, ok := a["commit"]; ok && res.Plan != nil {
				s.Commit(res.Plan)
			}
		default:
			t.Fatalf("%s: unknown command %q", path, cmd)
		}
		if strings.TrimSpace(got) != strings.TrimSpace(want) {
			if !*rewrite {
				t.Errorf("%s: %s\n--- want\n%s\n--- got\n%s", path, cmd, want, got)
			}
			changed = true
		}
		out.WriteString(strings.Join(lines, "\n") + "\n----\n" + strings.TrimSpace(got) + "\n\n")
	}
	if *rewrite && changed {
		os.WriteFile(path, []byte(strings.TrimSpace(out.String())+"\n"), 0o644)
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScenario(t, f) })
	}
}
