package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"
)

func newConfigCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print every setting with its effective value and where it comes from",
		Long: `Print every setting capfilt knows, its effective value, and its source: flag, env
(CAPFILT_<NAME>), file (capfilt.yaml or --config) or default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			known := knownSettings(cmd.Root())
			names := make([]string, 0, len(known))
			for n := range known {
				names = append(names, n)
			}
			sort.Strings(names)
			if a.configFile != "" {
				a.printf("# file: %s\n", a.configFile)
			}
			for _, n := range names {
				f := known[n]
				val := a.v.GetString(n)
				if cmd.Flags().Lookup(n) == nil && !a.v.IsSet(n) {
					val = f.DefValue // a flag of another command, not set anywhere
				}
				a.printf("%-24s %-28s # %s\n", n+":", quoteIfNeeded(val), a.source(cmd, n))
			}
			return nil
		},
	}
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
