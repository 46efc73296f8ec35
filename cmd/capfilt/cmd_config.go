package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/pipeline"
)

func newConfigCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "config [COMMAND...]",
		Short: "Print every setting with its effective value and where it comes from",
		Long: `Print the settings of a command (e.g. capfilt config run, capfilt config model generate),
or of every command, each with its effective value and its source: flag, env
(CAPFILT_<NAME>), file (capfilt.yaml or --config) or default. Values are parsed as the
command would parse them, so a bad one is an error here too. A list prints as a list;
NATS credentials in a URL print redacted.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			flags, err := configFlags(cmd, args)
			if err != nil {
				return err
			}
			cf, err := readConfigFile(cmd)
			if err != nil {
				return err
			}
			names := make([]string, 0, len(flags))
			for n := range flags {
				names = append(names, n)
			}
			sort.Strings(names)
			if a.configFile != "" {
				a.printf("# file: %s\n", a.configFile)
			}
			for _, n := range names {
				f := flags[n]
				src, ok := a.sources[f]
				if !ok { // a flag of another command: resolve it as that command would
					if src, err = resolveFlag(f, cf); err != nil {
						return &usageError{err: err}
					}
				}
				a.printf("%-24s %-28s # %s\n", n+":", showValue(f), src.kind)
			}
			return nil
		},
	}
}

// configFlags are the settings to show: those of the command args name, or (none named)
// of every command, global ones from config's own flags.
func configFlags(cmd *cobra.Command, args []string) (map[string]*pflag.Flag, error) {
	out := map[string]*pflag.Flag{}
	if len(args) == 0 {
		for name, f := range knownSettings(cmd.Root()) {
			if own := cmd.Flags().Lookup(name); own != nil {
				f = own
			}
			out[name] = f
		}
		return out, nil
	}
	target, rest, err := cmd.Root().Find(args)
	if err != nil || len(rest) > 0 || target == cmd.Root() {
		return nil, usagef("config: no command %q", strings.Join(args, " "))
	}
	add := func(f *pflag.Flag) {
		if isSetting(f) {
			out[f.Name] = f
		}
	}
	target.LocalFlags().VisitAll(add)
	cmd.Flags().VisitAll(func(f *pflag.Flag) { // the global settings, resolved for config
		if cmd.Root().PersistentFlags().Lookup(f.Name) == f {
			add(f)
		}
	})
	return out, nil
}

// showValue prints a value as capfilt.yaml would hold it: a list as a list, NATS
// credentials redacted.
func showValue(f *pflag.Flag) string {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		b, _ := json.Marshal(sv.GetSlice())
		if string(b) == "null" {
			return "[]"
		}
		return string(b)
	}
	v := f.Value.String()
	if f.Name == "nats" {
		v = pipeline.RedactURL(v)
	}
	return quoteIfNeeded(v)
}

func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == ' ' || r == '#' || r == ':' {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
