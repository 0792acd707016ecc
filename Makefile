# The two commands a fresh machine needs (see README.md):
#   make demo   the whole flow on this machine
#   make test   install what is missing, lint, and run every test
GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test demo deps lint bench build fuzz actions-dist loadtest helm

# Helm, built from the Go module proxy (about a minute the first time,
# cached after). A Helm built this way assumes Kubernetes 1.20 unless told.
HELM_MODULE := helm.sh/helm/v3/cmd/helm@v3.22.0
HELM := $(CURDIR)/bin/helm
KUBE_VERSION := 1.33.0
CHART := deploy/helm/ferry

# deploy/helm_test.go renders the chart again with the same helm (FERRY_HELM)
# and checks the manifests; here it must run, never skip.
test: deps lint actions-dist helm
	FERRY_HELM="$(HELM)" $(GO) test -count=1 ./...

demo:
	$(GO) run ./cmd/ferry demo

# A static binary, built as deploy/Dockerfile builds it (deploy/image_test.go
# checks both): no cgo, no build paths. grpcnotrace keeps gRPC from linking
# golang.org/x/net/trace, whose html/template would make the linker keep
# every exported method of every type: 39 MB of binary against 23 MB, and
# 6 MiB more of the executable resident (docs/performance.md).
VERSION ?= dev
BUILD_TAGS := grpcnotrace
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags "-s -w -X main.version=$(VERSION)" -o bin/ferry ./cmd/ferry

# Tests start real servers: redis-server (Debian package), moto_server and
# the aws CLI (present on the project's machines; PyPI is not reachable).
# gitlab-ci-local (npm, pinned in actions/gitlab) runs the GitLab component
# as GitLab does; it needs rsync.
deps:
	@missing=""; for p in redis-server rsync; do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	cd actions/gitlab && npm ci --no-audit --no-fund --loglevel=error
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

# The chart lints and renders with its default values and with a
# production-like set.
helm:
	GOBIN=$(CURDIR)/bin $(GO) install $(HELM_MODULE)
	$(HELM) lint --strict --kube-version $(KUBE_VERSION) $(CHART)
	$(HELM) lint --strict --kube-version $(KUBE_VERSION) -f $(CHART)/ci/production-values.yaml $(CHART)
	$(HELM) template ferry $(CHART) --kube-version $(KUBE_VERSION) >/dev/null
	$(HELM) template ferry $(CHART) --kube-version $(KUBE_VERSION) -f $(CHART)/ci/production-values.yaml >/dev/null

# ferry serve against a bare verify-only server, side by side, on loopback:
# requests/s, p50/p99 and the ratio per scenario (docs/performance.md).
loadtest: build
	$(GO) run ./tools/loadtest -ferry bin/ferry

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/trust ./internal/exchange ./internal/identity ./internal/mint/tokensign ./internal/replay

# Each fuzz target for a while; CI runs their seed corpora as plain tests.
# The audit targets minimize by count, not for the default minute an input:
# each run checks signatures, and minimizing would eat the whole run.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 30s ./internal/trust
	$(GO) test -run '^$$' -fuzz FuzzParseJSON -fuzztime 30s ./internal/claimtmpl
	$(GO) test -run '^$$' -fuzz FuzzLimit -fuzztime 30s ./internal/memlimit
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeExchange$$' -fuzztime 30s ./internal/exchange
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeTokenExchange$$' -fuzztime 30s ./internal/exchange
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeStrict$$' -fuzztime 30s ./internal/exchange
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRelease$$' -fuzztime 30s ./internal/exchange
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime 30s -fuzzminimizetime 1000x ./internal/audit
	$(GO) test -run '^$$' -fuzz '^FuzzVerifyCheckpoints$$' -fuzztime 30s -fuzzminimizetime 1000x ./internal/audit
