# bridge — see README.md. `make` alone lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO      ?= $(shell command -v go || echo /usr/local/go/bin/go)
BIN     := $(CURDIR)/bin
BRIDGE  := $(BIN)/bridge
PYTHON  := /usr/bin/python3
export PATH := $(BIN):$(dir $(GO)):$(PATH)

# Debian packages bridge needs to build, test and run the demo.
APT_PKGS := protobuf-compiler python3-grpcio python3-protobuf python3-pytest \
            python3-h2 python3-hpack ruby-protocol-http2 \
            python3-flask nginx curl ca-certificates \
            libprotocol-http2-perl libplack-perl libtest-tcp-perl libwww-perl \
            libdancer2-perl libmojolicious-perl \
            ruby ruby-grpc ruby-google-protobuf ruby-rack ruby-sinatra ruby-minitest \
            ruby-rails \
            uwsgi uwsgi-plugin-python3 uwsgi-plugin-psgi uwsgi-plugin-rack-ruby3.1
# systemd-analyze verifies deploy/systemd's units (e2e/systemd_units_test.go).
# Debian's systemd package; in a container it is installed, not started.
APT_PKGS += systemd
# What `make bench` measures bridge against, and how (bench/README.md).
BENCH_APT_PKGS := nginx wrk uwsgi uwsgi-plugin-python3 uwsgi-plugin-psgi uwsgi-plugin-rack-ruby3.1 \
                  gunicorn starman puma python3-flask libdancer2-perl libtemplate-perl ruby-sinatra
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

NODE_RUNNER := examples/runners/node

DEMO_HTTP  ?= 127.0.0.1:8080
DEMO_SOCK  ?= /tmp/bridge-demo.sock

.PHONY: help deps node-deps build run test test-go test-python test-perl test-ruby test-node fuzz conformance proto proto-check coverage lint \
        bench bench-deps bench-quick bench-scaling bench-transport bench-publish soak clean

help: ## show this help
	@echo "bridge — application server for WSGI, PSGI and Rack apps behind nginx"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install missing Debian packages (needs root or sudo)
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "deps: all Debian packages present"; fi

# The Node.js example runner (examples/runners/node) is tested like the
# built-in ones: it needs node, npm and its locked npm packages.
node-deps: ## install node and npm if missing, and the Node example runner's locked npm packages
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "installing: nodejs npm"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	@if [ ! -f $(NODE_RUNNER)/node_modules/.package-lock.json ] || \
	    ! cmp -s $(NODE_RUNNER)/package-lock.json $(NODE_RUNNER)/node_modules/.bridge-lock; then \
	  echo "npm ci in $(NODE_RUNNER)"; \
	  (cd $(NODE_RUNNER) && npm ci --no-audit --no-fund --loglevel=error) && \
	  cp $(NODE_RUNNER)/package-lock.json $(NODE_RUNNER)/node_modules/.bridge-lock; \
	else echo "node-deps: npm packages present"; fi

build: ## build bin/bridge
	$(GO) build -o $(BRIDGE) ./cmd/bridge

# The uwsgi socket is 0660: nginx's workers (www-data on Debian) may connect
# only if it is given their group, which bridge can do as root or as a
# member of www-data; otherwise only bridge's own user and group can.
DEMO_GROUP ?= www-data

run: deps build ## serve the demo app on http://127.0.0.1:8080 and a uwsgi socket
	@group=; \
	if getent group $(DEMO_GROUP) >/dev/null && \
	   { [ "$$(id -u)" = 0 ] || id -nG | tr ' ' '\n' | grep -qx '$(DEMO_GROUP)'; }; then \
	  group="--socket-group $(DEMO_GROUP)"; \
	fi; \
	echo; \
	echo "bridge is serving deploy/demo/app.py"; \
	echo "  HTTP:  http://$(DEMO_HTTP)/   (try: curl http://$(DEMO_HTTP)/)"; \
	echo "  uwsgi: unix:$(DEMO_SOCK)   — nginx snippet:"; \
	echo; \
	echo "    location / {"; \
	echo "        include uwsgi_params;"; \
	echo "        uwsgi_pass unix:$(DEMO_SOCK);"; \
	echo "    }"; \
	echo; \
	if [ -n "$$group" ]; then \
	  echo "  The socket is mode 0660, group $(DEMO_GROUP): nginx's workers may connect, other users may not."; \
	else \
	  echo "  The socket is mode 0660, group $$(id -gn): nginx's workers can connect only if they run"; \
	  echo "  in that group. To give it to nginx's group, run as root or as a member of it:"; \
	  echo "  make run DEMO_GROUP=www-data (the default; the group must exist)."; \
	fi; \
	echo; \
	echo "Ctrl-C stops it (requests in flight finish first)."; \
	echo; \
	set -x; \
	exec $(BRIDGE) serve --runner python:app:application --chdir deploy/demo \
	  --http $(DEMO_HTTP) --uwsgi unix:$(DEMO_SOCK) $$group --log-format console

test: deps node-deps build proto-check test-go test-python test-perl test-ruby test-node ## run every test (Go, shims, e2e with nginx, the conformance kit on every runner)

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

test-python:
	$(PYTHON) -m pytest -q -p no:cacheprovider python/tests

test-perl: build
	BRIDGE_BIN=$(BRIDGE) prove -Iperl/lib -r perl/t

test-ruby:
	ruby -Iruby/lib -Iruby/test ruby/test/run.rb

test-node: node-deps
	cd $(NODE_RUNNER) && node --test test/*.test.js

# Every Go fuzz target in turn (.ci/fuzz finds them with go test -list). The
# seed corpora (testdata/fuzz/) already run as tests in test-go.
FUZZTIME ?= 30s
fuzz: ## fuzz every Go fuzz target for FUZZTIME each (default 30s), one after another
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz

# A built-in runner by name, or any runner: RUNNER=SPEC KIT=DIR.
conformance: build ## check a runner with the conformance kit: RUNNER=python|perl|ruby|node, or RUNNER=SPEC KIT=DIR
	@case "$(RUNNER)" in \
	  python) spec=python:app:application; dir=runners/kit/python;; \
	  perl)   spec=perl:app.psgi;          dir=runners/kit/perl;; \
	  ruby)   spec=ruby:config.ru;         dir=runners/kit/ruby;; \
	  node)   spec="exec:node ../runner.js app.js"; dir=$(NODE_RUNNER)/kit;; \
	  "")     echo "usage: make conformance RUNNER=python|perl|ruby|node, or RUNNER=SPEC KIT=DIR"; exit 2;; \
	  *)      spec="$(RUNNER)"; dir="$(KIT)";; \
	esac; \
	$(BRIDGE) conform --runner "$$spec" --chdir "$${dir:-.}"

$(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go
	GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_GO_GRPC)

proto: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## regenerate Go, Python and Ruby stubs from proto/ (the Perl codec is hand-written, checked by golden tests)
	protoc -I proto --go_out=. --go_opt=module=bridge \
	  --go-grpc_out=. --go-grpc_opt=module=bridge proto/bridge/v1/runner.proto
	protoc -I proto/bridge/v1 --python_out=python/bridge_runner proto/bridge/v1/runner.proto
	protoc -I proto/bridge/v1 --ruby_out=ruby/lib/bridge_runner proto/bridge/v1/runner.proto

proto-check: proto ## fail if the committed stubs differ from what proto/ generates
	@git diff --exit-code -- proto python/bridge_runner/runner_pb2.py ruby/lib/bridge_runner/runner_pb.rb \
	  || { echo "generated code is stale: run 'make proto' and commit"; exit 1; }

coverage: ## regenerate docs/coverage.md: which test covers which conformance ID, per runner
	$(GO) run ./docs/coverage

lint: ## gofmt, go vet, shellcheck (if installed)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@if command -v shellcheck >/dev/null; then shellcheck .ci/run .ci/fuzz deploy/docker/install-runtime.sh; fi

bench-deps: ## install missing Debian packages for make bench (the peers, wrk, the frameworks)
	@missing=$$(for p in $(BENCH_APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "bench-deps: all Debian packages present"; fi

bench: deps bench-deps build ## bridge vs uWSGI, Gunicorn, Starman, Puma behind nginx: all workloads + scaling + transport (~25 min)
	$(GO) build -o $(BIN)/slotload ./bench/slotload
	$(PYTHON) bench/bench.py $(BENCH_ARGS)

bench-quick: deps bench-deps build ## the same, fewer configs and 2 s runs (under 3 minutes)
	$(PYTHON) bench/bench.py --quick $(BENCH_ARGS)

bench-scaling: deps bench-deps build ## req/s of bridge and uWSGI for 1, 2, 4 workers x concurrency 1..256
	$(PYTHON) bench/bench.py --scaling $(BENCH_ARGS)

bench-transport: deps build ## each runner's Slot transport without nginx (bench/slotload): python, perl, ruby at 1 and 8 slots
	$(GO) build -o $(BIN)/slotload ./bench/slotload
	$(PYTHON) bench/bench.py --transport $(BENCH_ARGS)

# SOAK_DURATION: how long the load runs (a Go duration); SOAK_ARGS: more
# flags of bench/soak (`go run ./bench/soak -h`), e.g. SOAK_ARGS="-runners perl".
SOAK_DURATION ?= 10m
SOAK_ARGS     ?=

soak: deps build ## mixed load, attacks, random reloads and runner kills against all three runners behind nginx (SOAK_DURATION, default 10m)
	$(GO) build -o $(BIN)/soak ./bench/soak
	$(BIN)/soak -duration $(SOAK_DURATION) -bridge $(BRIDGE) $(SOAK_ARGS)

bench-publish: ## copy the newest full bench run's table to bench/RESULTS.md
	$(PYTHON) bench/bench.py --report latest --publish

clean: ## remove build output
	rm -rf $(BIN)
