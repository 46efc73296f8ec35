// Command capfilt cleans web image-text data the way BLIP's CapFilt does: a captioner
// writes synthetic captions, a filter drops every caption that does not match its image,
// and the accepted pairs land in Parquet. One binary, one subcommand per task.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	passiveOpenMP()
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the command line and returns the process exit code: 0 on success, 2 for
// bad usage or settings (nothing was done), 1 for a failure while working.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "capfilt:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// usageError marks an error in what the user asked for (flags, settings, paths) as
// opposed to a failure while doing it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}
