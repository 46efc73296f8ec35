package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// app is what every command shares: where each setting came from, the file read, and
// the logger.
type app struct {
	global     globalOptions
	cmd        *cobra.Command // the command being run
	sources    map[*pflag.Flag]source
	configFile string // the file read, "" if none
	log        *slog.Logger
	stdout     io.Writer
	stderr     io.Writer
}

func newRootCommand() *cobra.Command {
	a := &app{stdout: os.Stdout, stderr: os.Stderr, sources: map[*pflag.Flag]source{},
		log: slog.New(slog.DiscardHandler)}
	root := &cobra.Command{
		Use:   "capfilt",
		Short: "Clean web image-text data with a BLIP captioner and filter (CapFilt)",
		Long: `capfilt cleans web image-text data the way BLIP's CapFilt does: a captioner writes a
synthetic caption for every web image, a filter drops every web or synthetic caption that
does not match its image, and the accepted pairs are written to Parquet.

Every setting is a flag, and can also be given in capfilt.yaml or as CAPFILT_<NAME> in the
environment: the command line beats the environment, which beats the file. A list setting
(--input) takes comma-separated values from the environment, as on the command line.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	a.global.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newVersionCommand(a), newConfigCommand(a),
		newModelCommand(a), newCaptionCommand(a), newScoreCommand(a),
		newSubmitCommand(a), newStatusCommand(a), newRetryCommand(a), newWorkerCommand(a), newRunCommand(a),
		newBenchCommand(a), newSampleShardsCommand(a), newEvalCommand(a), newSynthCommand(a), newTrainCommand(a), newDemoCommand(a),
	)
	root.SetFlagErrorFunc(flagError)
	return root
}

// globalOptions are the settings of every command.
type globalOptions struct {
	Config    string
	LogLevel  string
	LogFormat string
	Threads   int
}

func (o *globalOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Config, "config", "", "config file (default: ./capfilt.yaml, then $HOME/.config/capfilt/capfilt.yaml)")
	f.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	f.IntVar(&o.Threads, "threads", 0, "CPU threads per tensor op, matmuls included (0: matmuls on every CPU, other ops on one)")
}

// setup resolves the settings of the command about to run, builds the logger and
// applies the thread count.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	// The log and the progress bar write to stderr from several goroutines (capfilt run's
	// workers, its watcher): one lock keeps their lines whole, whatever the writer is.
	a.stdout, a.stderr = cmd.OutOrStdout(), &lockedWriter{w: cmd.ErrOrStderr()}
	if err := a.load(cmd); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.global.LogLevel)); err != nil {
		return a.bad("log-level", fmt.Sprintf("%q", a.global.LogLevel), "want debug, info, warn or error")
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.global.LogFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return a.bad("log-format", fmt.Sprintf("%q", a.global.LogFormat), "want text or json")
	}
	if a.configFile != "" {
		a.log.Debug("settings read", "file", a.configFile)
	}
	a.warnUnknownEnv(cmd.Root())
	if a.global.Threads < 0 {
		return a.bad("threads", a.global.Threads, "must be 0 (every CPU) or more")
	}
	applyThreads(a.global.Threads)
	return nil
}

// load reads the config file and resolves cmd's settings from every source.
func (a *app) load(cmd *cobra.Command) error {
	a.cmd = cmd
	cf, err := readConfigFile(cmd)
	if err != nil {
		return err
	}
	a.configFile = cf.path
	return a.resolve(cmd, cf)
}

// quiet reports whether nobody asked for log lines below warnings (the progress bar
// of run and submit --wait then stands alone).
func (a *app) quiet() bool { return a.from("log-level").kind == fromDefault }

func (a *app) printf(format string, args ...any) { fmt.Fprintf(a.stdout, format, args...) }

// lockedWriter serialises the writes of several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
