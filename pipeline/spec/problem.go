package spec

import (
	"strconv"
	"strings"
)

// Problem is one setting out of range, named as the command line and capfilt.yaml name
// it, so that the CLI can say where the value came from.
type Problem struct {
	Setting string // e.g. "top-p"
	Value   string // as written: a number, or a quoted string
	Reason  string // e.g. "must be in (0, 1]"
}

func (p Problem) Error() string { return p.Setting + " " + p.Value + ": " + p.Reason }

// Problems is every setting Validate found out of range.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Error()
	}
	return strings.Join(s, "; ")
}

// err is nil when there is no problem, so that Validate can return it as an error.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

func (ps *Problems) add(setting, value, reason string) {
	*ps = append(*ps, Problem{Setting: setting, Value: value, Reason: reason})
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
