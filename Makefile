# capfilt - see README.md. `make setup` once, then `make test`.
GO      ?= go
VERSION := $(shell git describe --always --dirty --tags 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Packages whose tests spend their time inside libtorch gain nothing from the race
# detector but its slowdown; every other package is tested with -race.
NORACE_PKGS := $(shell $(GO) list ./... 2>/dev/null | grep -E '/(torch|blip|captioner|filter|trainer)(/|$$)')
RACE_PKGS   := $(filter-out $(NORACE_PKGS),$(shell $(GO) list ./... 2>/dev/null))

.PHONY: setup shim build build-go test bench demo fmt

setup:
	scripts/setup.sh

shim:
	scripts/build-torch-shim.sh

build-go:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/capfilt ./cmd/capfilt

build: shim build-go

test: build
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) test -race -timeout 20m $(RACE_PKGS)
	$(GO) test -timeout 20m $(NORACE_PKGS)

# Benchmarks print their ratios; compare speeds only within one run.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 5x -timeout 60m ./...

# The main job on the embedded default. Until `capfilt demo` exists this shows what
# capfilt runs on.
demo: build
	./bin/capfilt version

fmt:
	gofmt -w $$(git ls-files '*.go')
