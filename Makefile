# capfilt - see README.md. `make setup` once, then `make test`.
GO      ?= go
VERSION := $(shell git describe --always --dirty --tags 2>/dev/null || echo dev)
BUILD   := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.build=$(BUILD)

# Packages whose tests spend their time inside libtorch gain nothing from the race
# detector but its slowdown; every other package is tested with -race.
NORACE_PKGS := $(shell $(GO) list ./... 2>/dev/null | grep -E '/(torch|blip|captioner|filter|modelstage|trainer|demo)(/|$$)')
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

# Benchmarks print their ratios; compare speeds only within one run. The binding's
# micro-benchmarks run for a second each; the model-sized ones (seconds per iteration)
# once. `capfilt bench pipeline` measures the worker pipeline.
bench: build
	$(GO) test -run '^$$' -bench . -timeout 30m ./torch ./shards
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./blip ./captioner ./filter
	./bin/capfilt bench pipeline

# The README's first run: CapFilt end to end on a synthetic web, then BLIP's Table 1 in
# miniature and capfilt-demo/report.html (capfilt demo --help). DEMO_FLAGS=--quick runs
# the few-minute version.
demo: build
	./bin/capfilt demo --workdir capfilt-demo $(DEMO_FLAGS)

fmt:
	gofmt -w $$(git ls-files '*.go')
