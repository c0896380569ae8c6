GO ?= go
MNT ?= /tmp/vspherefs-demo
# The VCS revision `vspherefs version` shows, where Go's own stamping is off
# (GOFLAGS=-buildvcs=false) or cannot see the repository (git worktrees).
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)

.PHONY: build test demo bench vet clean

build:
	$(GO) build -buildvcs=auto -ldflags "-X main.revision=$(REVISION)" -o bin/vspherefs ./cmd/vspherefs

# The suite: unit tests and real FUSE mounts against the embedded simulator, with -race.
test:
	$(GO) test -race -count=1 -timeout 45m ./...

# Build, start the embedded simulator, mount it at $(MNT) and say what to try.
demo: build
	bash scripts/demo.sh $(MNT)

# Benchmarks against curl/govc in the same run (figures go to BENCHMARKS.md).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./test/ | tee bench.out

vet:
	gofmt -l . && $(GO) vet ./...

clean:
	rm -rf bin tmp bench.out
