# The two commands a fresh machine needs (see README.md):
#   make demo   the whole flow on this machine
#   make test   install what is missing, lint, and run every test
GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test demo deps lint bench build fuzz actions-dist

test: deps lint actions-dist
	$(GO) test -count=1 ./...

demo:
	$(GO) run ./cmd/ferry demo

build:
	$(GO) build -trimpath -o bin/ferry ./cmd/ferry

# Tests start real servers: redis-server (Debian package), moto_server and
# the aws CLI (present on the project's machines; PyPI is not reachable).
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v moto_server >/dev/null 2>&1 || echo "warning: moto_server not found: the STS tests will fail in CI and skip locally"
	@command -v aws >/dev/null 2>&1 || echo "warning: the aws CLI not found: the CLI tests will fail in CI and skip locally"
	@for c in node npm curl bash dash; do command -v $$c >/dev/null 2>&1 || echo "warning: $$c not found: the GitHub Action and GitLab template tests will fail in CI and skip locally"; done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# The GitHub Action runs the committed dist/: rebuild it with the pinned
# toolchain and fail if that changes anything.
actions-dist:
	cd actions/github && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run build
	@test -z "$$(git status --porcelain -- actions/github/dist)" || { echo "actions/github/dist is stale: run 'make actions-dist' and commit it"; git status --short -- actions/github/dist; exit 1; }

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/trust ./internal/exchange ./internal/identity ./internal/mint/tokensign

# Each fuzz target for a while; CI runs their seed corpora as plain tests.
# The audit targets minimize by count, not for the default minute an input:
# each run checks signatures, and minimizing would eat the whole run.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 30s ./internal/trust
	$(GO) test -run '^$$' -fuzz FuzzDecodeExchange -fuzztime 30s ./internal/exchange
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime 30s -fuzzminimizetime 1000x ./internal/audit
	$(GO) test -run '^$$' -fuzz '^FuzzVerifyCheckpoints$$' -fuzztime 30s -fuzzminimizetime 1000x ./internal/audit
