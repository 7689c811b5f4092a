# vecstream: the two commands of the quick start are `make demo` and `make test`.
# Both do all set-up on a fresh machine (scripts/setup, idempotent) and start the native
# stack (compose/local/stack up). Build outputs and the stack live in $(VECSTREAM_CACHE).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VECSTREAM_CACHE ?= $(HOME)/.cache/vecstream
export VECSTREAM_CACHE
export CARGO_TARGET_DIR ?= $(VECSTREAM_CACHE)/target
CARGO ?= cargo
VECSTREAM := $(CARGO_TARGET_DIR)/debug/vecstream

.PHONY: setup stack-up stack-down build demo demo-stop test unit lint fmt clean-stack

## setup: install system packages, the native stack and the test clients (idempotent)
setup:
	@scripts/setup

## stack-up / stack-down: start or stop Kafka, the registry, Temporal and Weaviate, and the
## secure mode beside them (SASL_SSL Kafka, API-key Weaviate, TLS fronts)
stack-up: setup
	@compose/local/stack up
	@compose/local/stack up secure
stack-down:
	@compose/local/stack down secure
	@compose/local/stack down

## build: the vecstream binary and every test target
build:
	$(CARGO) build --workspace --all-targets

## demo: stack up, pipeline running (run all), sample corpus produced and indexed, searches,
## lineage and DLQ (scripts/demo)
demo: stack-up build
	@VECSTREAM=$(VECSTREAM) scripts/demo

## demo-stop: stop the demo's pipeline (the stack keeps running)
demo-stop:
	@pidfile=$(VECSTREAM_CACHE)/run/pipeline.pid; \
	  if [[ -f $$pidfile ]] && kill -0 $$(cat $$pidfile) 2>/dev/null; then kill -TERM $$(cat $$pidfile) && echo "pipeline stopped"; \
	  else echo "no demo pipeline running"; fi; rm -f $$pidfile

## test: set-up, lint, build, stack up, then every test (unit + end-to-end against the real
## stack); the stack installs in the background while Rust compiles (scripts/test)
test:
	@scripts/test

## unit: tests that need no services (everything but the end-to-end crate)
unit:
	$(CARGO) test --workspace --exclude vecstream-e2e

## lint: formatting and clippy with warnings as errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p vecstream-engine --features cuda --all-targets -- -D warnings
