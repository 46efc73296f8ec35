package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/pipeline"
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
			cf, err := readConfigFile(cmd)
			if err != nil {
				return err
			}
			for _, n := range names {
				f := cmd.Flags().Lookup(n)
				src := a.sources[f]
				if f == nil {
					f = known[n] // a setting of another command: resolve it here
					if src, err = resolveFlag(f, cf); err != nil {
						return &usageError{err: err}
					}
				}
				v := f.Value.String()
				if n == "nats" {
					v = pipeline.RedactURL(v) // as error lines and logs show it
				}
				a.printf("%-24s %-28s # %s\n", n+":", quoteIfNeeded(v), src.kind)
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
