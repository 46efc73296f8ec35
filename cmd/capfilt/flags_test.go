package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every setting has one meaning in every command: a name declared by two commands has
// the same type, default and help, because one options type declares it.
func TestEveryFlagIsDeclaredOnce(t *testing.T) {
	type decl struct {
		typ, def, usage, where string
	}
	seen := map[string]decl{}
	walkCommands(newRootCommand(), func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			d := decl{f.Value.Type(), f.DefValue, f.Usage, c.CommandPath()}
			prev, ok := seen[f.Name]
			if !ok {
				seen[f.Name] = d
				return
			}
			if prev.typ != d.typ || prev.def != d.def || prev.usage != d.usage {
				t.Errorf("--%s is %s %q (%q) in %s but %s %q (%q) in %s", f.Name, prev.typ, prev.def, prev.usage, prev.where,
					d.typ, d.def, d.usage, d.where)
			}
		})
	})
	if len(seen) < 60 {
		t.Fatalf("only %d flags seen: the walk misses commands", len(seen))
	}
}

// exampleWithEverySetting is capfilt.example.yaml with its commented-out settings
// (`# model: ...`) switched on, so that every setting it documents is exercised.
func exampleWithEverySetting(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "capfilt.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	known := knownSettings(newRootCommand())
	commented := regexp.MustCompile(`^# ([a-z0-9-]+): `)
	var lines []string
	on := 0
	for _, line := range strings.Split(string(data), "\n") {
		if m := commented.FindStringSubmatch(line); m != nil {
			if _, ok := known[m[1]]; ok {
				line = strings.TrimPrefix(line, "# ")
				on++
			}
		}
		lines = append(lines, line)
	}
	if on < 5 {
		t.Fatalf("only %d commented settings found in the example", on)
	}
	path := filepath.Join(t.TempDir(), "capfilt.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every command parses its flags and resolves its settings (file, then the command's
// own checks of ranges and types) against the example file, as it is and with every
// documented setting on: `batch-size: auto` suits caption as it suits worker.
func TestExampleConfigResolvesForEveryCommand(t *testing.T) {
	for _, file := range []string{filepath.Join("..", "..", "capfilt.example.yaml"), exampleWithEverySetting(t)} {
		var paths [][]string
		walkCommands(newRootCommand(), func(c *cobra.Command) {
			if c.Runnable() {
				paths = append(paths, strings.Fields(c.CommandPath())[1:])
			}
		})
		if len(paths) < 15 {
			t.Fatalf("only %d commands", len(paths))
		}
		for _, path := range paths {
			root := newRootCommand()
			cmd, _, err := root.Find(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags([]string{"--config", file}); err != nil {
				t.Fatalf("%v: parse flags: %v", path, err)
			}
			if err := root.PersistentPreRunE(cmd, nil); err != nil {
				t.Errorf("%s with %s: %v", cmd.CommandPath(), filepath.Base(file), err)
				continue
			}
			if cmd.PreRunE != nil {
				if err := cmd.PreRunE(cmd, nil); err != nil {
					t.Errorf("%s with %s: %v", cmd.CommandPath(), filepath.Base(file), err)
				}
			}
		}
	}
}
