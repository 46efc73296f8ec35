package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/capfilt/capfilt/pipeline/spec"
)

// Every setting is a flag, declared once by the options type of its group (options_*.go)
// and bound to a typed field. A setting not given on the command line is read from the
// environment (CAPFILT_<NAME>) or, failing that, from capfilt.yaml, and parsed by the
// flag's own parser, so a value means the same from every source and a bad one is an
// error naming where it came from. Flags marked per-invocation (an output file, --json)
// say what one call does: they are not read from the environment or the file.

// sourceKind is where a setting's value came from.
type sourceKind int

const (
	fromDefault sourceKind = iota
	fromFile
	fromEnv
	fromFlag
)

func (k sourceKind) String() string {
	return [...]string{"default", "file", "env", "flag"}[k]
}

// source names where one setting's value came from, for errors and `capfilt config`.
type source struct {
	kind  sourceKind
	where string // "--top-p", "CAPFILT_TOP_P" or the file's path
}

func (s source) String() string {
	if s.kind == fromDefault {
		return "default"
	}
	return "from " + s.where
}

// perInvocationKey marks flags that are not settings.
const perInvocationKey = "capfilt/per-invocation"

// perInvocation marks flags of f that only say what this call does.
func perInvocation(f *pflag.FlagSet, names ...string) {
	for _, n := range names {
		if err := f.SetAnnotation(n, perInvocationKey, []string{"true"}); err != nil {
			panic(err) // a typo in a flag name: caught by every test that builds the tree
		}
	}
}

func isSetting(f *pflag.Flag) bool {
	_, per := f.Annotations[perInvocationKey]
	return !per && f.Name != "help" && f.Name != "config"
}

// envName is a setting's environment variable.
func envName(setting string) string {
	return "CAPFILT_" + strings.ToUpper(strings.ReplaceAll(setting, "-", "_"))
}

// configFile is capfilt.yaml as read: each top-level key's node.
type configFile struct {
	path   string
	values map[string]*yaml.Node
}

// readConfigFile reads the file named by --config/CAPFILT_CONFIG, or the first of
// ./capfilt.yaml and $HOME/.config/capfilt/capfilt.yaml that exists. A named file must
// exist; a key that is no setting of any command is an error, so a typo never goes
// unnoticed.
func readConfigFile(cmd *cobra.Command) (*configFile, error) {
	path := ""
	if f := cmd.Flags().Lookup("config"); f != nil && f.Changed {
		path = f.Value.String()
	} else if env := os.Getenv("CAPFILT_CONFIG"); env != "" {
		path = env
	} else {
		candidates := []string{"capfilt.yaml"}
		if home, err := os.UserHomeDir(); err == nil {
			candidates = append(candidates, filepath.Join(home, ".config", "capfilt", "capfilt.yaml"))
		}
		for _, c := range candidates {
			if _, err := os.Stat(c); err == nil {
				path = c
				break
			}
		}
		if path == "" {
			return &configFile{}, nil
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, usagef("config file %s: %v", path, err)
	}
	cf := &configFile{path: path, values: map[string]*yaml.Node{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, usagef("config file %s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return cf, nil // an empty file
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, usagef("config file %s: want settings as `name: value` lines", path)
	}
	known := knownSettings(cmd.Root())
	var unknown []string
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i].Value, top.Content[i+1]
		if _, ok := known[k]; !ok {
			unknown = append(unknown, k)
			continue
		}
		if _, dup := cf.values[k]; dup {
			return nil, usagef("config file %s line %d: %s is set twice", path, top.Content[i].Line, k)
		}
		cf.values[k] = v
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, usagef("config file %s: unknown setting(s) %s (see capfilt.example.yaml)", path, strings.Join(unknown, ", "))
	}
	return cf, nil
}

// knownSettings collects the settings of every command: the names a config file and the
// environment may use.
func knownSettings(root *cobra.Command) map[string]*pflag.Flag {
	out := map[string]*pflag.Flag{}
	walkCommands(root, func(c *cobra.Command) {
		add := func(f *pflag.Flag) {
			if _, ok := out[f.Name]; !ok && isSetting(f) {
				out[f.Name] = f
			}
		}
		c.PersistentFlags().VisitAll(add)
		c.LocalFlags().VisitAll(add)
	})
	return out
}

// walkCommands calls fn on c and every command below it, but cobra's own.
func walkCommands(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		if sub.Name() != "completion" && sub.Name() != "help" {
			walkCommands(sub, fn)
		}
	}
}

// resolve gives every setting of cmd its value: the command line's, else the
// environment's, else the file's, else the flag's default. It records each one's source.
func (a *app) resolve(cmd *cobra.Command, cf *configFile) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		src, err := resolveFlag(f, cf)
		a.sources[f] = src
		if err != nil {
			errs = append(errs, err)
		}
	})
	if len(errs) > 0 {
		return &usageError{err: errors.Join(errs...)}
	}
	return nil
}

func resolveFlag(f *pflag.Flag, cf *configFile) (source, error) {
	switch {
	case f.Changed:
		return source{fromFlag, "--" + f.Name}, nil
	case !isSetting(f):
		return source{}, nil
	}
	if raw, ok := os.LookupEnv(envName(f.Name)); ok && raw != "" {
		src := source{fromEnv, envName(f.Name)}
		return src, setFlag(f, src, raw, nil)
	}
	node, ok := cf.values[f.Name]
	if !ok || node.Tag == "!!null" {
		return source{}, nil
	}
	src := source{fromFile, cf.path}
	switch node.Kind {
	case yaml.ScalarNode:
		return src, setFlag(f, src, yamlScalar(node), nil)
	case yaml.SequenceNode:
		items := make([]string, len(node.Content))
		for i, n := range node.Content {
			if n.Kind != yaml.ScalarNode {
				return src, fmt.Errorf("%s (%s line %d): want a list of values", f.Name, src, n.Line)
			}
			items[i] = yamlScalar(n)
		}
		return src, setFlag(f, src, "", items)
	}
	return src, fmt.Errorf("%s (%s line %d): want a value, not a mapping", f.Name, src, node.Line)
}

// yamlScalar is a scalar as written, but YAML's own NaN and infinities.
func yamlScalar(n *yaml.Node) string {
	if n.Tag == "!!float" {
		switch strings.ToLower(n.Value) {
		case ".nan":
			return "NaN"
		case ".inf", "+.inf":
			return "+Inf"
		case "-.inf":
			return "-Inf"
		}
	}
	return n.Value
}

// setFlag gives a flag the value raw (or the list items, from a YAML list). A list flag
// takes a comma-separated value from the environment as the command line does.
func setFlag(f *pflag.Flag, src source, raw string, items []string) error {
	sv, isList := f.Value.(pflag.SliceValue)
	var err error
	switch {
	case isList && items == nil:
		err = sv.Replace(splitList(raw))
	case isList:
		err = sv.Replace(items)
	case items != nil:
		return fmt.Errorf("%s (%s): want one value, not a list", f.Name, src)
	default:
		err = f.Value.Set(raw)
	}
	if err != nil {
		shown := strconv.Quote(raw)
		if items != nil {
			shown = strconv.Quote(strings.Join(items, ","))
		}
		return fmt.Errorf("%s %s (%s): %s", f.Name, shown, src, parseProblem(f, err))
	}
	return nil
}

// splitList splits at commas outside braces, so a pattern's brace list ({a,b}) stays whole.
func splitList(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '{':
			depth++
		case '}':
			depth = max(depth-1, 0)
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	out = append(out, strings.TrimSpace(s[start:]))
	kept := out[:0]
	for _, p := range out {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return kept
}

// parseProblem says in words why a flag's parser refused a value.
func parseProblem(f *pflag.Flag, err error) string {
	switch f.Value.Type() {
	case "float64":
		return "not a number"
	case "int", "int64", "uint64":
		return "not a whole number"
	case "bool":
		return "not true or false"
	case "duration":
		return "not a duration (e.g. 30s, 2m, 1h)"
	}
	return err.Error()
}

// flagError turns the command line's parse errors into the same form as the others.
func flagError(_ *cobra.Command, err error) error {
	var ive *pflag.InvalidValueError
	if errors.As(err, &ive) {
		f := ive.GetFlag()
		return usagef("%s %q (from --%s): %s", f.Name, ive.GetValue(), f.Name, parseProblem(f, errors.Unwrap(err)))
	}
	return &usageError{err: err}
}

// from says where the current command's setting name came from.
func (a *app) from(name string) source {
	if a.cmd != nil {
		if f := a.cmd.Flags().Lookup(name); f != nil {
			return a.sources[f]
		}
	}
	return source{}
}

// bad is the error for a setting whose value is out of range: `top-p 2 (from --top-p):
// must be in (0, 1]`. value is shown as given (quote strings yourself).
func (a *app) bad(name string, value any, reason string) error {
	return usagef("%s %v (%s): %s", name, value, a.from(name), reason)
}

// badSettings names the source of each setting a spec type's Validate refused.
func (a *app) badSettings(err error) error {
	if err == nil {
		return nil
	}
	var ps spec.Problems
	if !errors.As(err, &ps) {
		return usagef("%v", err)
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = fmt.Sprintf("%s %s (%s): %s", p.Setting, p.Value, a.from(p.Setting), p.Reason)
	}
	return usagef("%s", strings.Join(lines, "; "))
}

// warnUnknownEnv warns of CAPFILT_* variables that name no setting, with the closest one.
func (a *app) warnUnknownEnv(root *cobra.Command) {
	known := knownSettings(root)
	byEnv := map[string]string{}
	for name := range known {
		byEnv[envName(name)] = name
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "CAPFILT_") || k == "CAPFILT_CONFIG" || k == testMainEnv {
			continue
		}
		if _, ok := byEnv[k]; ok {
			continue
		}
		best, bestD := "", 1<<30
		for env, name := range byEnv {
			if d := editDistance(k, env); d < bestD || (d == bestD && name < best) {
				best, bestD = name, d
			}
		}
		a.log.Warn("environment variable names no setting; ignored", "variable", k, "closest", envName(best))
	}
}

// testMainEnv lets a test binary act as capfilt (see TestMain); it is no setting.
const testMainEnv = "CAPFILT_MAIN"

// editDistance is Levenshtein's distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// positiveDuration checks a duration setting.
func (a *app) positiveDuration(name string, d time.Duration) error {
	if d <= 0 {
		return a.bad(name, d, "must be > 0")
	}
	return nil
}

func quote(s string) string { return strconv.Quote(s) }
