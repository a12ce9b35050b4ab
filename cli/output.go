package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/neocloud/neocloud/pricing"
)

// column is one column of a table or CSV: a header and the JSON key whose
// value it shows (dots reach into nested objects).
type column struct {
	Header string
	Key    string
}

// printItems prints raw API objects: json prints them exactly as the API
// answered (one object, or the items array of a list); table and csv show
// the given columns.
func printItems(w io.Writer, format string, raw []json.RawMessage, single bool, cols []column) error {
	return printNamed(w, format, raw, single, cols, nil)
}

// tenantIDKey is the key of the columns that a table shows by tenant name.
const tenantIDKey = "tenant_id"

// printNamed is printItems whose table shows, in a tenant_id column, the
// tenant's name from names where it has one.
func printNamed(w io.Writer, format string, raw []json.RawMessage, single bool, cols []column, names map[string]string) error {
	switch format {
	case "json":
		var out []byte
		if single && len(raw) == 1 {
			var buf bytes.Buffer
			if err := json.Indent(&buf, raw[0], "", "  "); err != nil {
				return err
			}
			out = buf.Bytes()
		} else {
			if raw == nil {
				raw = []json.RawMessage{}
			}
			var err error
			if out, err = json.MarshalIndent(raw, "", "  "); err != nil {
				return err
			}
		}
		_, err := fmt.Fprintln(w, string(out))
		return err
	case "csv":
		cw := csv.NewWriter(w)
		hdr := make([]string, len(cols))
		for i, c := range cols {
			hdr[i] = c.Key
		}
		cw.Write(hdr)
		for _, r := range raw {
			cw.Write(cells(r, cols, false))
		}
		cw.Flush()
		return cw.Error()
	case "table", "":
		// A table is for people: money in micro-units reads as money
		// (1365388.80, not 1365388800000); csv and json keep the micros.
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		hdr := make([]string, len(cols))
		for i, c := range cols {
			hdr[i] = c.Header
			if isMicros(c) {
				hdr[i] = strings.TrimSuffix(c.Header, " µ")
			}
		}
		fmt.Fprintln(tw, strings.Join(hdr, "\t"))
		for _, r := range raw {
			row := cells(r, cols, true)
			for i, c := range cols {
				if n, err := strconv.ParseInt(row[i], 10, 64); err == nil && isMicros(c) {
					row[i] = pricing.FormatMicros(pricing.Micros(n))
				}
				if name, ok := names[row[i]]; ok && c.Key == tenantIDKey {
					row[i] = name
				}
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q (want table, json or csv)", format)
}

// isMicros says whether a column holds money in micro-units.
func isMicros(c column) bool { return strings.HasSuffix(c.Key, "_micros") }

// cells are a row's values of cols; for a table (people reading), a list
// of strings reads as the strings, separated by "; " (csv keeps its JSON).
func cells(r json.RawMessage, cols []column, table bool) []string {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(r))
	d.UseNumber() // micros past 2^53 stay exact
	d.Decode(&m)
	out := make([]string, len(cols))
	for i, c := range cols {
		var v any = m
		for _, k := range strings.Split(c.Key, ".") {
			mm, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = mm[k]
		}
		out[i] = cellString(v)
		if l, ok := v.([]any); ok && table {
			if ss, ok := strs(l); ok {
				out[i] = strings.Join(ss, "; ")
			}
		}
	}
	return out
}

// strs returns a JSON list's strings, if that is all it holds.
func strs(l []any) ([]string, bool) {
	out := make([]string, len(l))
	for i, v := range l {
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}

func cellString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil && strings.Contains(x, "T") {
			return t.UTC().Format("2006-01-02T15:04:05Z")
		}
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}
