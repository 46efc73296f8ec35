package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/trainer"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The deployment files at the top of the repository drive this CLI: these tests hold
// docker-compose.yml and .env.example to the flags the cobra tree declares today, so a
// renamed or removed setting fails here instead of being ignored in a container.

const repoRoot = "../.."

// composeFile is the part of docker-compose.yml the checks read. Command lines must be
// lists (exec form), so that what a test parses is exactly what the container runs.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       map[string]any    `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Profiles    []string          `yaml:"profiles"`
}

// runsCapfilt: a service built from this repository's Dockerfile whose entrypoint is capfilt.
func (s composeService) runsCapfilt() bool { return s.Build != nil && len(s.Entrypoint) == 0 }

// loadCompose reads docker-compose.yml with every ${VAR} substituted as Compose does, from
// the values of .env.example.
func loadCompose(t *testing.T) (composeFile, map[string]string) {
	t.Helper()
	env := loadEnvExample(t)
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	sub := func(where, s string) string {
		out, err := interpolate(s, env)
		if err != nil {
			t.Fatalf("docker-compose.yml: %s: %v", where, err)
		}
		return out
	}
	for name, s := range f.Services {
		s.Image = sub(name+": image", s.Image)
		for i := range s.Command {
			s.Command[i] = sub(name+": command", s.Command[i])
		}
		for k, v := range s.Environment {
			s.Environment[k] = sub(name+": environment "+k, v)
		}
		for i := range s.Volumes {
			s.Volumes[i] = sub(name+": volumes", s.Volumes[i])
		}
		f.Services[name] = s
	}
	if len(f.Services) == 0 {
		t.Fatal("docker-compose.yml defines no service")
	}
	return f, env
}

// loadEnvExample reads .env.example: KEY=VALUE lines, # comments.
func loadEnvExample(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(k) {
			t.Fatalf(".env.example:%d: want KEY=VALUE, got %q", i+1, line)
		}
		if _, dup := env[k]; dup {
			t.Fatalf(".env.example:%d: %s set twice", i+1, k)
		}
		env[k] = v
	}
	return env
}

var composeVar = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))`)

// interpolate substitutes Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err},
// ${VAR?err} and $VAR from env; $$ stands for $.
func interpolate(s string, env map[string]string) (string, error) {
	var firstErr error
	parts := strings.Split(s, "$$")
	for i, p := range parts {
		parts[i] = composeVar.ReplaceAllStringFunc(p, func(m string) string {
			g := composeVar.FindStringSubmatch(m)
			name, op, arg := g[1], g[2], g[3]
			if name == "" {
				name = g[4]
			}
			v, set := env[name]
			switch {
			case op == ":-" && v == "", op == "-" && !set:
				return arg
			case op == ":?" && v == "", op == "?" && !set:
				if firstErr == nil {
					firstErr = fmt.Errorf("${%s} is required (%s) and .env.example does not set it", name, arg)
				}
				return ""
			case !set && firstErr == nil:
				firstErr = fmt.Errorf("${%s} has no default and .env.example does not set it", name)
			}
			return v
		})
	}
	return strings.Join(parts, "$"), firstErr
}

// composeReferences lists the variables docker-compose.yml reads.
func composeReferences(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]bool{}
	for _, m := range composeVar.FindAllStringSubmatch(strings.ReplaceAll(string(data), "$$", ""), -1) {
		refs[m[1]+m[4]] = true
	}
	return refs
}

// findCommand resolves a capfilt command line to its command and parses its flags with
// the command's own flag set, as Execute would.
func findCommand(root *cobra.Command, args []string) (*cobra.Command, error) {
	cmd, rest, err := root.Find(args)
	if err != nil {
		return nil, err
	}
	if cmd == root {
		return nil, fmt.Errorf("names no subcommand")
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, err
	}
	if cmd.HasAvailableSubCommands() {
		return nil, fmt.Errorf("capfilt %s is a group of commands and %v names none of them", cmd.Name(), cmd.Flags().Args())
	}
	if !cmd.Runnable() {
		return nil, fmt.Errorf("capfilt %s does not run anything", cmd.CommandPath())
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return nil, err
	}
	return cmd, nil
}

// settingName is the flag CAPFILT_<NAME> sets: lower case, '_' as '-' (root.go's rule).
func settingName(env string) (string, bool) {
	rest, ok := strings.CutPrefix(env, "CAPFILT_")
	return strings.ReplaceAll(strings.ToLower(rest), "_", "-"), ok
}

// Variables a capfilt container may carry besides its settings: the AWS SDK's chain and
// NVIDIA's container runtime, and torchrun's rendezvous for the trainer.
func isKnownForeignVariable(name string) bool {
	switch name {
	case "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT":
		return true
	}
	return strings.HasPrefix(name, "AWS_") || strings.HasPrefix(name, "NVIDIA_")
}

func TestComposeCommandLinesAndSettingsAreCapfiltsOwn(t *testing.T) {
	f, _ := loadCompose(t)
	names := make([]string, 0, len(f.Services))
	for n := range f.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	checked := 0
	for _, name := range names {
		s := f.Services[name]
		t.Run(name, func(t *testing.T) {
			if !s.runsCapfilt() {
				for k := range s.Environment {
					if _, ok := settingName(k); ok {
						t.Errorf("%s is not a capfilt container but sets %s", name, k)
					}
				}
				return
			}
			if len(s.Command) == 0 {
				t.Fatalf("runs capfilt without a command line")
			}
			root := newRootCommand()
			cmd, err := findCommand(root, s.Command)
			if err != nil {
				t.Fatalf("capfilt %s: %v", strings.Join(s.Command, " "), err)
			}
			checked++
			// A training data source is a kind and a place; a bare pattern is refused at start.
			if fl := cmd.Flags().Lookup("data"); fl != nil && fl.Changed {
				vals, _ := cmd.Flags().GetStringSlice("data")
				for _, v := range vals {
					if _, err := trainer.ParseDataSource(v); err != nil {
						t.Errorf("capfilt %s: --data: %v", strings.Join(s.Command, " "), err)
					}
				}
			}
			for k, v := range s.Environment {
				setting, ok := settingName(k)
				if !ok {
					if !isKnownForeignVariable(k) {
						t.Errorf("%s=%s is neither a CAPFILT_ setting nor a variable the container's libraries read (a typo?)", k, v)
					}
					continue
				}
				fl := cmd.Flags().Lookup(setting)
				if fl == nil {
					t.Errorf("%s: `%s` has no setting %q, so the container would ignore it", k, cmd.CommandPath(), setting)
					continue
				}
				if err := fl.Value.Set(v); err != nil {
					t.Errorf("%s=%q: not a value of --%s (%s): %v", k, v, setting, fl.Value.Type(), err)
				}
			}
		})
	}
	if checked == 0 {
		t.Fatal("no capfilt service was checked")
	}
}

// The services the issue names are there, and the worker reserves a GPU the way Compose
// and Swarm both read.
func TestComposeHasTheFleetServices(t *testing.T) {
	f, _ := loadCompose(t)
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Services map[string]struct {
			Deploy struct {
				Replicas  any `yaml:"replicas"`
				Resources struct {
					Reservations struct {
						Devices []struct {
							Capabilities []string `yaml:"capabilities"`
						} `yaml:"devices"`
					} `yaml:"reservations"`
				} `yaml:"resources"`
			} `yaml:"deploy"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"nats": {"--jetstream"}, "coordinator": {"submit", "--wait"}, "worker": {"worker"},
		"trainer": {"train", "pretrain"}, "prometheus": nil, "minio": nil, "createbucket": nil,
	}
	for name, prefix := range want {
		s, ok := f.Services[name]
		if !ok {
			t.Errorf("no %s service", name)
			continue
		}
		if len(s.Command) < len(prefix) || strings.Join(s.Command[:len(prefix)], " ") != strings.Join(prefix, " ") {
			t.Errorf("%s runs %v, want it to start with %v", name, s.Command, prefix)
		}
	}
	w := raw.Services["worker"].Deploy
	if w.Replicas == nil || len(w.Resources.Reservations.Devices) != 1 || strings.Join(w.Resources.Reservations.Devices[0].Capabilities, ",") != "gpu" {
		t.Errorf("worker: want replicas and one device reservation with capabilities [gpu], got %+v", w)
	}
	if p := f.Services["trainer"].Profiles; len(p) == 0 {
		t.Error("trainer is not behind a profile: `docker compose up` would start training")
	}
}

// .env.example documents what the compose file reads, and nothing else.
func TestEnvExampleNamesOnlySettingsThatExist(t *testing.T) {
	env := loadEnvExample(t)
	refs := composeReferences(t)
	known := flagsByName(newRootCommand())
	for k, v := range env {
		if !refs[k] {
			t.Errorf(".env.example sets %s, which docker-compose.yml never reads", k)
		}
		setting, ok := settingName(k)
		if !ok {
			continue
		}
		decls := known[setting]
		if len(decls) == 0 {
			t.Errorf(".env.example: %s: capfilt has no setting %q", k, setting)
			continue
		}
		var errs []string
		for _, fl := range decls {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) == len(decls) {
			t.Errorf(".env.example: %s=%q: no declaration of --%s takes it: %s", k, v, setting, strings.Join(errs, "; "))
		}
	}
	for k := range refs {
		if _, ok := env[k]; !ok {
			t.Errorf("docker-compose.yml reads ${%s}, which .env.example does not document", k)
		}
	}
	for k, v := range env {
		if strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET") {
			if !strings.HasPrefix(v, "change-me") {
				t.Errorf(".env.example: %s holds %q; a committed example holds only a change-me placeholder", k, v)
			}
		}
	}
}

func TestInterpolationFollowsCompose(t *testing.T) {
	env := map[string]string{"SET": "v", "EMPTY": ""}
	cases := []struct{ in, want, err string }{
		{"a-${SET}-$SET", "a-v-v", ""},
		{"${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", "d  d", ""},
		{"$$SET costs $${SET}", "$SET costs ${SET}", ""},
		{"${UNSET:?give it}", "", "required (give it)"},
		{"${EMPTY?x}", "", ""},
		{"${UNSET}", "", "no default"},
	}
	for _, c := range cases {
		got, err := interpolate(c.in, env)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one saying %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// A flag the CLI does not have fails the command-line check: the check can fail.
func TestComposeCheckRefusesUnknownFlagsAndSettings(t *testing.T) {
	root := newRootCommand()
	for _, args := range [][]string{{"worker", "--no-such-flag"}, {"no-such-command"}, {"model"}, {"submit", "extra-arg"}} {
		if _, err := findCommand(root, args); err == nil {
			t.Errorf("%v passed the check", args)
		}
	}
	cmd, err := findCommand(newRootCommand(), []string{"worker"})
	if err != nil {
		t.Fatal(err)
	}
	if name, _ := settingName("CAPFILT_METRICS_ADDR"); cmd.Flags().Lookup(name) == nil {
		t.Errorf("worker has no %s", name)
	}
	if name, _ := settingName("CAPFILT_INPUT"); cmd.Flags().Lookup(name) != nil {
		t.Errorf("worker declares %s: the check would not notice a run setting on a worker", name)
	}
}

// With Compose installed, Compose itself reads the file with .env.example's values.
func TestComposeConfigAcceptsTheFile(t *testing.T) {
	var argv []string
	switch {
	case exec.Command("docker", "compose", "version").Run() == nil:
		argv = []string{"docker", "compose"}
	case exec.Command("docker-compose", "version").Run() == nil:
		argv = []string{"docker-compose"}
	default:
		t.Skip("NOT CHECKED: neither `docker compose` nor docker-compose is installed (apt-get install docker-compose)")
	}
	argv = append(argv, "--project-directory", repoRoot, "-f", filepath.Join(repoRoot, "docker-compose.yml"),
		"--env-file", filepath.Join(repoRoot, ".env.example"), "--profile", "demo", "--profile", "train", "--profile", "cpu", "config", "-q")
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	t.Logf("%s: valid", strings.Join(argv[:len(argv)-2], " "))
}

// flagsByName collects every declaration of every flag in the tree: one setting name may
// be declared by several commands, with different types (batch-size today).
func flagsByName(root *cobra.Command) map[string][]*pflag.Flag {
	out := map[string][]*pflag.Flag{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		add := func(f *pflag.Flag) { out[f.Name] = append(out[f.Name], f) }
		c.PersistentFlags().VisitAll(add)
		c.LocalNonPersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}
