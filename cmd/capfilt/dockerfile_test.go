package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Dockerfile builds with the scripts `make setup` uses, so an image is built the way
// every developer machine and CI are, and nothing in it compiles capfilt another way.

type dockerInstruction struct {
	line int
	op   string // upper case: FROM, RUN, COPY, ...
	args string
}

type dockerStage struct {
	name, from string
	ins        []dockerInstruction
}

// dockerfile is the global ARGs and the stages, in order.
type dockerfile struct {
	args   map[string]string
	stages []*dockerStage
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{args: map[string]string{}}
	var cur *dockerStage
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		start := i
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				next = "" // Docker drops comment lines inside a continued instruction
			}
			line = strings.TrimSuffix(line, "\\") + " " + next
		}
		op, args, _ := strings.Cut(line, " ")
		in := dockerInstruction{line: start + 1, op: strings.ToUpper(op), args: strings.TrimSpace(args)}
		switch {
		case in.op == "FROM":
			f := strings.Fields(in.args)
			cur = &dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				cur.name = f[2]
			}
			df.stages = append(df.stages, cur)
		case cur == nil && in.op == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			df.args[k] = v
		case cur == nil:
			t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.op)
		default:
			cur.ins = append(cur.ins, in)
		}
	}
	return df
}

func (df dockerfile) stage(name string) *dockerStage {
	for _, s := range df.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (s *dockerStage) runs() []dockerInstruction {
	var out []dockerInstruction
	for _, in := range s.ins {
		if in.op == "RUN" {
			out = append(out, in)
		}
	}
	return out
}

// setupSteps reads what `make setup` runs: the scripts of the Makefile's setup recipe, and
// the scripts and make targets those call.
func setupSteps(t *testing.T) (scripts, targets map[string]bool) {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	recipe := regexp.MustCompile(`(?m)^setup:.*\n((?:\t.*\n)+)`).FindSubmatch(mk)
	if recipe == nil {
		t.Fatal("Makefile has no setup recipe")
	}
	scriptRE := regexp.MustCompile(`scripts/[A-Za-z0-9_-]+\.sh`)
	scripts, targets = map[string]bool{}, map[string]bool{}
	for _, s := range scriptRE.FindAllString(string(recipe[1]), -1) {
		scripts[s] = true
	}
	if len(scripts) == 0 {
		t.Fatalf("make setup runs no script: %q", recipe[1])
	}
	for s := range scripts {
		data, err := os.ReadFile(filepath.Join(repoRoot, s))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, called := range scriptRE.FindAllString(line, -1) {
				scripts[called] = true
			}
			for _, tgt := range makeTargets(line) {
				targets[tgt] = true
			}
		}
	}
	return scripts, targets
}

// compilerCall names the first compiler or `go build` a shell line runs itself.
func compilerCall(line string) string {
	assignment := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|'[^']*'|\S)*$`)
	for _, cmd := range regexp.MustCompile(`&&|\|\||;|\|`).Split(line, -1) {
		words := strings.Fields(cmd)
		for len(words) > 0 && assignment.MatchString(words[0]) {
			words = words[1:]
		}
		if len(words) == 0 {
			continue
		}
		switch prog := words[0]; prog {
		case "g++", "gcc", "c++", "cc", "clang", "clang++", "nvcc", "cmake", "$CXX", `"$CXX"`:
			return prog
		case "go":
			if len(words) > 1 && (words[1] == "build" || words[1] == "install") {
				return "go " + words[1]
			}
		}
	}
	return ""
}

// makeTargets finds the targets of the `make` calls on a shell line.
func makeTargets(line string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?:^|[\s;&|(])make((?:\s+[^\s;&|)]+)*)`).FindAllStringSubmatch(line, -1) {
		for _, w := range strings.Fields(m[1]) {
			if !strings.HasPrefix(w, "-") && !strings.Contains(w, "=") && !strings.ContainsAny(w, `"'$`) {
				out = append(out, w)
			}
		}
	}
	return out
}

func TestDockerfileBuildsWithTheScriptsMakeSetupUses(t *testing.T) {
	df := loadDockerfile(t)
	scripts, targets := setupSteps(t)
	scriptRE := regexp.MustCompile(`scripts/[A-Za-z0-9_-]+\.sh`)
	builds := 0
	for _, s := range df.stages {
		used := map[string]bool{}
		for _, in := range s.runs() {
			if prog := compilerCall(in.args); prog != "" {
				t.Errorf("Dockerfile:%d: compiles with %s instead of the setup scripts", in.line, prog)
			}
			for _, sc := range scriptRE.FindAllString(in.args, -1) {
				if !scripts[sc] {
					t.Errorf("Dockerfile:%d: runs %s, which make setup does not", in.line, sc)
				}
				if fi, err := os.Stat(filepath.Join(repoRoot, sc)); err != nil || fi.Mode()&0o111 == 0 {
					t.Errorf("Dockerfile:%d: %s is not an executable file of the repository", in.line, sc)
				}
				used[sc] = true
			}
			for _, tgt := range makeTargets(in.args) {
				if !targets[tgt] {
					t.Errorf("Dockerfile:%d: runs make %s, which make setup does not", in.line, tgt)
				}
				used["make "+tgt] = true
				if tgt == "build-go" && !strings.Contains(in.args, `LDFLAGS="-s -w`) {
					t.Errorf("Dockerfile:%d: make build-go without LDFLAGS=\"-s -w ...\"", in.line)
				}
			}
		}
		if len(used) == 0 {
			continue
		}
		builds++
		// A stage runs setup.sh itself, or every step setup.sh takes to build.
		if !used["scripts/setup.sh"] {
			for sc := range scripts {
				if sc != "scripts/setup.sh" && !used[sc] {
					t.Errorf("stage %s builds without %s", s.name, sc)
				}
			}
			for tgt := range targets {
				if !used["make "+tgt] {
					t.Errorf("stage %s builds without make %s", s.name, tgt)
				}
			}
		}
	}
	if builds < 2 {
		t.Errorf("%d stages build capfilt; want one per variant (cpu, cuda)", builds)
	}
}

// The CUDA shim is built against the libtorch of the PyTorch image the runtime stage runs,
// found the way build-torch-shim.sh documents.
func TestDockerfileCUDAVariantUsesThePyTorchImagesLibtorch(t *testing.T) {
	df := loadDockerfile(t)
	script, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "build-torch-shim.sh"))
	if err != nil {
		t.Fatal(err)
	}
	documented := regexp.MustCompile(`LIBTORCH=\$\((python3 -c '[^']*')\)`).FindSubmatch(script)
	if documented == nil {
		t.Fatal("build-torch-shim.sh documents no LIBTORCH=$(python3 -c '...') form")
	}
	build, run := df.stage("build-cuda"), df.stage("runtime-cuda")
	if build == nil || run == nil {
		t.Fatal("no build-cuda and runtime-cuda stages")
	}
	found := false
	for _, in := range build.runs() {
		if strings.Contains(in.args, "scripts/build-torch-shim.sh") && strings.Contains(in.args, `LIBTORCH="$(`+string(documented[1])+`)"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("build-cuda does not run build-torch-shim.sh with LIBTORCH=$(%s)", documented[1])
	}
	image := func(from string) string { return from[:strings.LastIndex(from, "-")] }
	if !strings.HasPrefix(build.from, "pytorch/pytorch:") || image(build.from) != image(run.from) {
		t.Errorf("build-cuda FROM %s and runtime-cuda FROM %s: want one PyTorch image tag, -devel and -runtime", build.from, run.from)
	}
	cpu := df.stage("runtime-cpu")
	if cpu == nil {
		t.Fatal("no runtime-cpu stage")
	}
	setup, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	blasCheck := regexp.MustCompile(`grep -q '[^']*openblas[^']*'`).Find(setup)
	var cpuRuns strings.Builder
	for _, in := range cpu.runs() {
		cpuRuns.WriteString(in.args + "\n")
	}
	for _, want := range []string{"libopenblas0-pthread", "libtorch", string(blasCheck)} {
		if blasCheck == nil || !strings.Contains(cpuRuns.String(), want) {
			t.Errorf("runtime-cpu does not install or check %q (setup.sh's OpenBLAS rule)", want)
		}
	}
}

func TestDockerImageRunsCapfiltAsAUserWithAHealthcheck(t *testing.T) {
	df := loadDockerfile(t)
	if v := df.args["VARIANT"]; v != "cpu" && v != "cuda" {
		t.Errorf("ARG VARIANT=%q: want a default of cpu or cuda", v)
	}
	final := df.stages[len(df.stages)-1]
	if final.from != "runtime-${VARIANT}" {
		t.Errorf("the last stage is FROM %s, want runtime-${VARIANT}", final.from)
	}
	last := map[string]dockerInstruction{}
	var copies []dockerInstruction
	for _, in := range final.ins {
		last[in.op] = in
		if in.op == "COPY" {
			copies = append(copies, in)
		}
	}
	if u := strings.Fields(last["USER"].args); len(u) == 0 || u[0] == "root" || u[0] == "0" {
		t.Errorf("USER %q: want a user other than root", last["USER"].args)
	}
	var entry []string
	if err := json.Unmarshal([]byte(last["ENTRYPOINT"].args), &entry); err != nil || len(entry) != 1 || entry[0] != "capfilt" {
		t.Errorf(`ENTRYPOINT %s: want ["capfilt"]`, last["ENTRYPOINT"].args)
	}
	hc := regexp.MustCompile(`CMD \["([^"]+)"\]`).FindStringSubmatch(last["HEALTHCHECK"].args)
	if hc == nil {
		t.Fatalf("HEALTHCHECK %q: want CMD [\"script\"]", last["HEALTHCHECK"].args)
	}
	shipped := false
	for _, c := range copies {
		f := strings.Fields(c.args)
		if len(f) == 2 && f[0] == "deploy/healthcheck.sh" && filepath.Base(f[1]) == hc[1] && filepath.Dir(f[1]) == "/usr/local/bin" {
			shipped = true
		}
	}
	if !shipped {
		t.Errorf("HEALTHCHECK runs %s, but no COPY puts deploy/healthcheck.sh there on the PATH", hc[1])
	}
	if fi, err := os.Stat(filepath.Join(repoRoot, "deploy", "healthcheck.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("deploy/healthcheck.sh is not executable: the exec-form HEALTHCHECK could not run it")
	}
}

// The Go toolchain image is the Go release go.mod asks for.
func TestDockerfileGoImageMatchesGoMod(t *testing.T) {
	df := loadDockerfile(t)
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	got := regexp.MustCompile(`^golang:(\d+\.\d+)[-.]`).FindStringSubmatch(df.args["GO_IMAGE"])
	if want == nil || got == nil || got[1] != string(want[1]) {
		t.Errorf("GO_IMAGE=%s, go.mod wants go %s", df.args["GO_IMAGE"], want[1])
	}
}

// dockerignored tells whether .dockerignore keeps a path (slash-separated, relative to the
// repository) out of the build context. Docker anchors patterns at the context root; an
// excluded folder excludes what is in it.
func dockerignored(patterns []string, path string) bool {
	parts := strings.Split(path, "/")
	excluded := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		re := regexp.MustCompile("^" + globToRegexp(strings.TrimPrefix(p, "!")) + "$")
		for i := 1; i <= len(parts); i++ {
			if re.MatchString(strings.Join(parts[:i], "/")) {
				excluded = !neg
				break
			}
		}
	}
	return excluded
}

func globToRegexp(glob string) string {
	var b strings.Builder
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; {
		case strings.HasPrefix(glob[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String()
}

func TestDockerContextHoldsTheSourcesAndNoBuildOutputs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/"))
		}
	}
	// Outputs compiled against this machine's libtorch, and credentials.
	for _, p := range []string{"build/libcapfilt_torch.so", "build/tensor.o", "bin/capfilt", ".env", ".git/config"} {
		if !dockerignored(patterns, p) {
			t.Errorf("the build context carries %s", p)
		}
	}
	// Every file the binary compiles from, the shim's sources and what the Dockerfile COPYs.
	out, err := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}} {{end}}{{range .CgoFiles}}{{$.Dir}}/{{.}} {{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}} {{end}}{{end}}{{end}}`,
		".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum", "Makefile", "scripts/setup.sh", "scripts/build-torch-shim.sh", "deploy/healthcheck.sh"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		needed = append(needed, filepath.ToSlash(rel))
	}
	csrc, _ := filepath.Glob(filepath.Join(repoRoot, "torch", "csrc", "*"))
	for _, f := range csrc {
		needed = append(needed, "torch/csrc/"+filepath.Base(f))
	}
	for _, s := range loadDockerfile(t).stages {
		for _, in := range s.ins {
			if f := strings.Fields(in.args); in.op == "COPY" && len(f) >= 2 && !strings.HasPrefix(f[0], "--") {
				for _, src := range f[:len(f)-1] {
					if src != "." {
						if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
							t.Errorf("Dockerfile:%d: COPY %s: not in the repository", in.line, src)
						}
						needed = append(needed, src)
					}
				}
			}
		}
	}
	if len(needed) < 50 {
		t.Fatalf("only %d files found to check; go list said %q", len(needed), out)
	}
	for _, p := range needed {
		if dockerignored(patterns, p) {
			t.Errorf(".dockerignore keeps %s out of the build context, and the build needs it", p)
		}
	}
}

func TestCompilerCallsAreFoundAtCommandPosition(t *testing.T) {
	cases := map[string]string{
		"apt-get install -y g++ make":                              "",
		"cd x && g++ -c a.cpp":                                     "g++",
		`CGO_ENABLED=1 go build -o bin/capfilt ./cmd/capfilt`:      "go build",
		`LIBTORCH="$(python3 -c 'x')" scripts/build-torch-shim.sh`: "",
		"go mod download; nvcc k.cu":                               "nvcc",
	}
	for line, want := range cases {
		if got := compilerCall(line); got != want {
			t.Errorf("compilerCall(%q) = %q, want %q", line, got, want)
		}
	}
}
