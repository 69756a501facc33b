# Build, run and test the sign-in token service.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/server
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
export TEST_DATABASE_URL

.PHONY: run build image deploy-check test test-short failover-test fuzz bench bench-go vet clean

## run: start the service with zero configuration (SQLite and dev keys under
## ./data), its logs as console lines for people
run:
	LOG_FORMAT=console $(GO) run ./cmd/server serve

## build: a static, stripped binary, as the container image builds it
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/server

## image: the container image (needs a Docker engine)
image:
	docker build --build-arg VERSION=$(VERSION) -t signin-tokens:$(VERSION) .

## deploy-check: what the image runs and the deploy/ manifests, checked without Docker
deploy-check:
	$(GO) test -count=1 -run TestImage ./cmd/server/
	$(GO) test -count=1 ./deploy/

## test: every test, with the race detector, against TEST_DATABASE_URL; the
## HTTP tests run once more on SQLite, and Clerk's JavaScript SDK for
## TestClerkJSSDK is installed first when compat/js/node_modules is missing
test: | compat/js/node_modules
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	HTTP_TEST_STORE=sqlite $(GO) test -race -count=1 -timeout 10m ./internal/http/

# Without npm the JavaScript SDK test skips itself, or fails under CI=true.
compat/js/node_modules:
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix compat/js --no-audit --no-fund; \
	else echo "npm not found: TestClerkJSSDK will be skipped (and fail under CI=true)"; fi

## failover-test: a primary and a streaming standby of their own (PostgreSQL 15
## binaries, run as the postgres OS user, on free ports; never the cluster on
## 5432), two server processes, the primary crashed under load and the standby
## promoted, with asynchronous and synchronous replication (docs/operations.md);
## needs root. FAILOVER_RUNS=N repeats it; not part of make test
FAILOVER_RUNS ?= 1
failover-test:
	FAILOVER_TEST=1 $(GO) test -count=$(FAILOVER_RUNS) -timeout 30m -v -run '^TestFailover' ./cmd/server/

## fuzz: each fuzz target for FUZZTIME (CI runs this after the tests)
FUZZTIME ?= 5s
FUZZ_TARGETS := ./internal/tokens:FuzzVerify ./internal/http:FuzzCreateRequest ./internal/http:FuzzParseFlatObject \
	./internal/http:FuzzRedeemRequest ./internal/http:FuzzListQuery
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## bench: load the service and the raw pgx baseline in the same run (docs/benchmarks.md);
## BENCH_FLAGS passes more flags, e.g. BENCH_FLAGS="-seed 1000000 -c 32";
## BENCH_STORE=sqlite runs the service on its embedded store against the
## same statements straight through the SQLite driver (create and pairs)
BENCH_FLAGS ?=
BENCH_STORE ?= postgres
ifeq ($(BENCH_STORE),sqlite)
BENCH_PHASES := -phases create,pairs
endif
bench: build
	$(GO) build -o bin/loadgen ./cmd/loadgen
	bin/loadgen -server $(BIN) -store $(BENCH_STORE) $(BENCH_PHASES) $(BENCH_FLAGS)

## bench-go: the Go micro-benchmarks, with allocation counts
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/tokens ./internal/http

## test-short: the tests without the race detector
test-short:
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
