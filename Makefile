# The two commands a newcomer needs: `make demo` and `make test`.
# pingora builds zlib-ng with cmake; `ensure-cmake` installs it when it is missing.

SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: demo test check lint bench load soak fuzz ensure-cmake interop-deps redis-deps deploy-check layering

## Run the self-contained demo: dev issuer + echo upstream + gateway (Ctrl-C stops it).
demo: ensure-cmake
	cargo run --bin authgate -- demo

## Run every test (unit, integration, and interop with a real OpenID provider). CI runs exactly this.
## The integration tests run twice: on the fast path (the default), then with every gateway
## on the general path (AUTHGATE_FAST_PATH=false), so the two paths cannot drift apart. The
## second run leaves out the tests that never send a request through the proxy.
GENERAL_PATH_TESTS := binary(integration) and not (test(/^cli::/) | test(/^explain::/) | test(/^cases::/) | test(/^fuzz_corpus::/))
test: ensure-cmake interop-deps redis-deps layering
	@status=0; \
	if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --no-fail-fast || status=1; \
		echo "== the integration tests again, on the general path (AUTHGATE_FAST_PATH=false)"; \
		AUTHGATE_FAST_PATH=false cargo nextest run --no-fail-fast -E '$(GENERAL_PATH_TESTS)' || status=1; \
	else \
		echo "cargo-nextest not found; using cargo test"; \
		cargo test --no-fail-fast || status=1; \
		AUTHGATE_FAST_PATH=false cargo test --no-fail-fast --test integration || status=1; \
	fi; \
	exit $$status

## The dependency arrows of src/ point one way (README, "Code layout"); the check checks itself first.
layering:
	python3 .ci/layering.py --self-test
	python3 .ci/layering.py

## Formatting and lints, as CI checks them.
lint: ensure-cmake
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

## Alert rules, their unit tests, the dashboard and a live /metrics page, checked with promtool.
deploy-check: ensure-cmake
	bash deploy/check.sh

## Criterion micro-benchmarks.
bench: ensure-cmake
	cargo bench --bench decide

## Load benchmark next to nginx and HAProxy in one run (as root; writes docs/PERFORMANCE.md).
load: ensure-cmake
	cargo build --release --bin authgate
	bash benches/load.sh

## Chaos under load for SOAK_SECONDS (default 600) against the release binary, one gateway and
## a fleet of two on Redis (restarted, paused, revocations streaming in); prints the figures.
SOAK_SECONDS ?= 600
soak: ensure-cmake interop-deps redis-deps
	cargo build --release --bin authgate
	AUTHGATE_SOAK_SECONDS=$(SOAK_SECONDS) AUTHGATE_BIN=$(CURDIR)/target/release/authgate \
		cargo nextest run --no-capture -E 'test(soak::)'

## Every fuzz target for FUZZ_SECONDS each (default 60), new inputs in fuzz/work/ (needs
## `cargo install cargo-fuzz`; stable Rust is enough with --sanitizer none).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = normalize head bearer decide jwks config revocation cache_control
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/work/$$t; \
		cargo fuzz run --sanitizer none $$t fuzz/work/$$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 || exit 1; \
	done

ensure-cmake:
	@if ! command -v cmake >/dev/null 2>&1; then \
		echo "cmake is missing (pingora builds zlib-ng with it); installing it now..."; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq && apt-get install -y -qq cmake >/dev/null) && echo "installed cmake from Debian packages"; \
		else \
			python3 -m pip install --user --quiet cmake && echo "installed cmake from PyPI into $(HOME)/.local/bin"; \
		fi; \
		command -v cmake >/dev/null 2>&1 || { echo "could not install cmake; install it and retry"; exit 1; }; \
	fi

# The fleet-store tests start a real redis-server (Debian's package) on a loopback port.
redis-deps:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		echo "redis-server is missing (the fleet-store tests start one); installing it..."; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) && echo "installed redis-server from Debian packages"; \
		else \
			echo "install redis-server (7+), then retry"; exit 1; \
		fi; \
	fi

# The interop tests run the npm package oidc-provider as a real OpenID provider.
interop-deps:
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "npm is missing (the interop tests run the npm package oidc-provider); installing Node.js..."; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null) && echo "installed Node.js from Debian packages"; \
		else \
			echo "install Node.js 20+ with npm, then retry"; exit 1; \
		fi; \
	fi
	@if [ ! -d tests/interop/node_modules/oidc-provider ]; then \
		echo "installing oidc-provider for the interop tests (npm ci in tests/interop)"; \
		cd tests/interop && npm ci --no-audit --no-fund --loglevel=error; \
	fi
