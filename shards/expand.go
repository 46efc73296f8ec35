package shards

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// maxExpandedNames bounds what one pattern may expand to, so a typo such as
// {0..999999999} fails fast instead of allocating gigabytes of names.
const maxExpandedNames = 1_000_000

// Expand turns a shard pattern into the URLs it names, in order and without duplicates.
//
// Brace ranges ({00000..09999}, zero-padded to the width written) and brace lists ({a,b})
// expand textually, without asking the store: a shard missing from a range is a missing
// object when its job opens it, as it would be for a list of names. Glob characters (*, ?
// and [...], matching within one path element as in path.Match) expand by listing the
// store under the literal part before the first glob character; a glob that matches
// nothing is an error.
func Expand(ctx context.Context, store Store, pattern string) ([]URL, error) {
	names, err := expandBraces(pattern)
	if err != nil {
		return nil, fmt.Errorf("expand %q: %w", pattern, err)
	}
	var out []URL
	seen := make(map[URL]bool)
	add := func(u URL) {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, name := range names {
		u, err := ParseURL(name)
		if err != nil {
			return nil, fmt.Errorf("expand %q: %w", pattern, err)
		}
		if !hasGlob(u.Path) && !hasGlob(u.Bucket) {
			add(u)
			continue
		}
		matches, err := glob(ctx, store, u)
		if err != nil {
			return nil, fmt.Errorf("expand %q: %w", pattern, err)
		}
		for _, m := range matches {
			add(m)
		}
	}
	return out, nil
}

func hasGlob(s string) bool { return strings.ContainsAny(s, "*?[") }

func glob(ctx context.Context, store Store, pattern URL) ([]URL, error) {
	if hasGlob(pattern.Bucket) {
		return nil, fmt.Errorf("glob %s: bucket names cannot be globbed", pattern)
	}
	if _, err := path.Match(pattern.Path, ""); err != nil {
		return nil, fmt.Errorf("glob %s: %w", pattern, err)
	}
	prefix := pattern
	prefix.Path = pattern.Path[:strings.IndexAny(pattern.Path, "*?[")]
	objects, err := store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []URL
	for _, o := range objects {
		if ok, _ := path.Match(pattern.Path, o.URL.Path); ok {
			out = append(out, o.URL)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("glob %s: no objects match", pattern)
	}
	return out, nil
}

// expandBraces expands every {a..b} range and {x,y} list in s, left to right, into the
// cartesian product of the alternatives. Braces do not nest.
func expandBraces(s string) ([]string, error) {
	open := strings.IndexByte(s, '{')
	if open < 0 {
		if strings.IndexByte(s, '}') >= 0 {
			return nil, fmt.Errorf("unbalanced '}' in %q", s)
		}
		return []string{s}, nil
	}
	if strings.IndexByte(s[:open], '}') >= 0 {
		return nil, fmt.Errorf("unbalanced '}' in %q", s)
	}
	end := strings.IndexByte(s[open:], '}')
	if end < 0 {
		return nil, fmt.Errorf("unbalanced '{' in %q", s)
	}
	end += open
	body := s[open+1 : end]
	if strings.IndexByte(body, '{') >= 0 {
		return nil, fmt.Errorf("nested braces in %q are not supported", s)
	}
	alts, err := braceAlternatives(body)
	if err != nil {
		return nil, err
	}
	rest, err := expandBraces(s[end+1:])
	if err != nil {
		return nil, err
	}
	if len(alts)*len(rest) > maxExpandedNames {
		return nil, fmt.Errorf("pattern expands to more than %d names", maxExpandedNames)
	}
	out := make([]string, 0, len(alts)*len(rest))
	for _, a := range alts {
		for _, r := range rest {
			out = append(out, s[:open]+a+r)
		}
	}
	return out, nil
}

// braceAlternatives expands the inside of one pair of braces.
func braceAlternatives(body string) ([]string, error) {
	if lo, hi, ok := strings.Cut(body, ".."); ok {
		return numericRange(lo, hi)
	}
	alts := strings.Split(body, ",")
	if len(alts) < 2 {
		return nil, fmt.Errorf("brace {%s} is neither a range {a..b} nor a list {x,y}", body)
	}
	return alts, nil
}

// numericRange expands lo..hi inclusive. When either end is written with a leading zero
// every number is padded with zeros to the wider end's width, as webdataset's
// brace expansion does ({00000..09999} gives 00000 ... 09999).
func numericRange(lo, hi string) ([]string, error) {
	a, errA := strconv.ParseUint(lo, 10, 63)
	b, errB := strconv.ParseUint(hi, 10, 63)
	if errA != nil || errB != nil {
		return nil, fmt.Errorf("brace range {%s..%s}: ends must be non-negative integers", lo, hi)
	}
	if a > b {
		return nil, fmt.Errorf("brace range {%s..%s}: start is after end", lo, hi)
	}
	if b-a >= maxExpandedNames {
		return nil, fmt.Errorf("brace range {%s..%s}: more than %d names", lo, hi, maxExpandedNames)
	}
	width := 0
	if (len(lo) > 1 && lo[0] == '0') || (len(hi) > 1 && hi[0] == '0') {
		width = max(len(lo), len(hi))
	}
	out := make([]string, 0, b-a+1)
	for n := a; n <= b; n++ {
		out = append(out, fmt.Sprintf("%0*d", width, n))
	}
	return out, nil
}
