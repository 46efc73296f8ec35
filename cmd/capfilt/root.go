package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// app is what every command shares: the resolved settings and the logger.
//
// Every flag is also a setting with the same name: in capfilt.yaml (`batch-size: 16`),
// in the environment (CAPFILT_BATCH_SIZE=16) and on the command line (--batch-size 16),
// each overriding the one before.
type app struct {
	v          *viper.Viper
	log        *slog.Logger
	configFile string // the file read, "" if none
	stdout     io.Writer
	stderr     io.Writer
}

func newRootCommand() *cobra.Command {
	a := &app{v: viper.New(), stdout: os.Stdout, stderr: os.Stderr}
	root := &cobra.Command{
		Use:   "capfilt",
		Short: "Clean web image-text data with a BLIP captioner and filter (CapFilt)",
		Long: `capfilt cleans web image-text data the way BLIP's CapFilt does: a captioner writes a
synthetic caption for every web image, a filter drops every web or synthetic caption that
does not match its image, and the accepted pairs are written to Parquet.

Every flag is also a setting: in capfilt.yaml, as CAPFILT_<NAME> in the environment, or on
the command line, each overriding the one before.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	pf := root.PersistentFlags()
	pf.String("config", "", "config file (default: ./capfilt.yaml, then $HOME/.config/capfilt/capfilt.yaml)")
	pf.String("log-level", "info", "log level: debug, info, warn or error")
	pf.String("log-format", "text", "log format: text or json")
	pf.Int("threads", 0, "CPU threads per tensor op, matmuls included (0: matmuls on every CPU, other ops on one)")
	root.AddCommand(newVersionCommand(a), newConfigCommand(a), newModelCommand(a), newCaptionCommand(a), newScoreCommand(a))
	root.AddCommand(newSynthCommand(a))
	addPipelineCommands(a, root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	return root
}

// setup resolves the settings for the command about to run and builds the logger.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	a.stdout, a.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
	v := a.v
	v.SetEnvPrefix("CAPFILT")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	var bindErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err := v.BindPFlag(f.Name, f); err != nil && bindErr == nil {
			bindErr = err
		}
	})
	if bindErr != nil {
		return bindErr
	}
	if err := a.readConfig(cmd); err != nil {
		return err
	}
	level, err := parseLevel(v.GetString("log-level"))
	if err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := v.GetString("log-format"); f {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return usagef("log-format %q: want text or json", f)
	}
	if a.configFile != "" {
		a.log.Debug("settings read", "file", a.configFile)
	}
	return applyThreads(v.GetInt("threads"))
}

// readConfig reads the config file named by --config/CAPFILT_CONFIG, or the first of
// ./capfilt.yaml and $HOME/.config/capfilt/capfilt.yaml that exists. A named file must
// exist; a key no command knows is an error, so a typo never goes unnoticed.
func (a *app) readConfig(cmd *cobra.Command) error {
	path := a.v.GetString("config")
	if path == "" {
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
			return nil
		}
	}
	a.v.SetConfigFile(path)
	a.v.SetConfigType("yaml")
	if err := a.v.ReadInConfig(); err != nil {
		var notFound *os.PathError
		if errors.As(err, &notFound) {
			return usagef("config file %s: %v", path, notFound.Err)
		}
		return usagef("config file %s: %v", path, err)
	}
	a.configFile = path
	known := knownSettings(cmd.Root())
	var unknown []string
	for _, k := range a.v.AllKeys() {
		if a.v.InConfig(k) {
			if _, ok := known[k]; !ok {
				unknown = append(unknown, k)
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return usagef("config file %s: unknown setting(s) %s (see capfilt.example.yaml)", path, strings.Join(unknown, ", "))
	}
	return nil
}

// knownSettings collects every flag of every command: the names a config file may use.
func knownSettings(root *cobra.Command) map[string]*pflag.Flag {
	out := map[string]*pflag.Flag{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		add := func(f *pflag.Flag) {
			if _, ok := out[f.Name]; !ok {
				out[f.Name] = f
			}
		}
		c.PersistentFlags().VisitAll(add)
		c.Flags().VisitAll(add)
		for _, sub := range c.Commands() {
			if sub.Name() != "completion" && sub.Name() != "help" {
				walk(sub)
			}
		}
	}
	walk(root)
	delete(out, "help")
	delete(out, "config")
	return out
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, usagef("log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// source says where a setting's value comes from: flag, env, file or default.
func (a *app) source(cmd *cobra.Command, name string) string {
	if f := cmd.Flags().Lookup(name); f != nil && f.Changed {
		return "flag"
	}
	if _, ok := os.LookupEnv("CAPFILT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); ok {
		return "env"
	}
	if a.v.InConfig(name) {
		return "file"
	}
	return "default"
}

func (a *app) printf(format string, args ...any) { fmt.Fprintf(a.stdout, format, args...) }
