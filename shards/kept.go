package shards

import (
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// KeptColumns are one row's cells of input Parquet columns carried to the cleaned output
// with their Arrow types (ParquetColumns.Keep): LAION's similarity, punsafe, pwatermark,
// img2dataset's sha256 and exif, ... The zero value holds none.
type KeptColumns struct {
	fields []arrow.Field
	cells  []arrow.Array // one row each, sliced from the input's record batch
}

// Len is how many columns are kept.
func (k KeptColumns) Len() int { return len(k.fields) }

// Names are the kept columns' names, in input order.
func (k KeptColumns) Names() []string {
	names := make([]string, len(k.fields))
	for i, f := range k.fields {
		names[i] = f.Name
	}
	return names
}

// Values gives each kept cell as a value encoding/json writes (numbers, strings, base64
// bytes, nested lists and objects, nil for null).
func (k KeptColumns) Values() map[string]any {
	if len(k.fields) == 0 {
		return nil
	}
	out := make(map[string]any, len(k.fields))
	for i, f := range k.fields {
		out[f.Name] = k.cells[i].GetOneForMarshal(0)
	}
	return out
}

// sameFields reports whether two rows keep the same columns with the same types.
func (k KeptColumns) sameFields(fields []arrow.Field) bool {
	if len(k.fields) != len(fields) {
		return false
	}
	for i, f := range fields {
		if k.fields[i].Name != f.Name || !arrow.TypeEqual(k.fields[i].Type, f.Type) {
			return false
		}
	}
	return true
}

// keptAt slices row i out of the kept columns of a record batch.
func keptAt(fields []arrow.Field, cols []arrow.Array, i int) KeptColumns {
	if len(fields) == 0 {
		return KeptColumns{}
	}
	cells := make([]arrow.Array, len(cols))
	for c, col := range cols {
		cells[c] = array.NewSlice(col, int64(i), int64(i+1))
	}
	return KeptColumns{fields: fields, cells: cells}
}

// keptColumnBatch joins the kept cells of a batch of rows into one column per field.
func keptColumnBatch(fields []arrow.Field, rows []KeptColumns) ([]arrow.Array, error) {
	out := make([]arrow.Array, len(fields))
	parts := make([]arrow.Array, len(rows))
	for c, f := range fields {
		for r, row := range rows {
			parts[r] = row.cells[c]
		}
		col, err := array.Concatenate(parts, memory.DefaultAllocator)
		if err != nil {
			return nil, fmt.Errorf("kept column %q: %w", f.Name, err)
		}
		out[c] = col
	}
	return out, nil
}

// planKept chooses the input columns to carry: the names asked for, or with "*" every
// column the cleaned schema does not already hold. used are the columns read as the
// sample's image, caption, URL and key. Names are compared as DuckDB and Spark compare
// them, without case, so that the output never holds two columns they cannot tell apart.
func planKept(sc *arrow.Schema, keep []string, used []string) ([]arrow.Field, error) {
	if len(keep) == 0 {
		return nil, nil
	}
	reserved := map[string]bool{}
	for _, f := range CleanedSchema(CleanedOptions{WithRejected: true}).Fields() {
		reserved[strings.ToLower(f.Name)] = true
	}
	all := len(keep) == 1 && keep[0] == "*"
	var out []arrow.Field
	if all {
		for _, f := range sc.Fields() {
			if !reserved[strings.ToLower(f.Name)] && !containsFold(used, f.Name) {
				out = append(out, f)
			}
		}
		return out, nil
	}
	seen := map[string]bool{}
	for _, name := range keep {
		switch idx := sc.FieldIndices(name); {
		case name == "*":
			return nil, fmt.Errorf("keep columns: \"*\" keeps every column and goes alone, not in a list")
		case seen[strings.ToLower(name)]:
			return nil, fmt.Errorf("keep columns: %q is named twice", name)
		case len(idx) != 1:
			return nil, fmt.Errorf("keep columns: no column %q; the columns are %s", name, strings.Join(fieldNames(sc), ", "))
		case reserved[strings.ToLower(name)]:
			return nil, fmt.Errorf("keep columns: %q would clash with the cleaned output's own column of that name", name)
		case len(used) > 0 && strings.EqualFold(name, used[0]):
			return nil, fmt.Errorf("keep columns: %q is the image column, which the output holds as image", name)
		default:
			seen[strings.ToLower(name)] = true
		}
	}
	for _, f := range sc.Fields() { // in input order
		if seen[strings.ToLower(f.Name)] {
			out = append(out, f)
		}
	}
	return out, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if x != "" && strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func fieldNames(sc *arrow.Schema) []string {
	var names []string
	for _, f := range sc.Fields() {
		names = append(names, f.Name)
	}
	return names
}
