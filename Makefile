# psa-exact — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /usr/bin/env bash
VENV  ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= eu-west-1

.PHONY: help setup test fmt lint clippy cfn unit schemathesis run demo bench hostile sizes package clean

help:
	@echo "make setup    install test/packaging tools (.venv: moto, cfn-lint, SAM CLI, cargo-lambda, zig; arm64 target)"
	@echo "make test     everything CI checks: fmt, clippy, template lint, all tests (moto started by the tests)"
	@echo "make schemathesis  Schemathesis (every check) against cargo run with a connected, tested connection"
	@echo "make run      cargo run: the connector locally on the Exact sandbox and in-memory stores"
	@echo "make demo     cargo run -- demo: the whole story (connect, test, push, pay, webhook, notify) with Exact call counts"
	@echo "make bench    figures: Exact calls per operation, cold start, binary sizes, handler overhead, month-end batch"
	@echo "make hostile  reliability under hostile conditions (crashes, concurrency, faults, hostile input, log scan)"
	@echo "make sizes    zip sizes of the deployed arm64 build (cargo-lambda + zig, release)"
	@echo "make package  sam build (arm64 Lambda binaries via cargo-lambda + zig)"

setup:
	@bash scripts/setup.sh

test: setup fmt clippy cfn unit schemathesis demo hostile

fmt:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets --locked -- -D warnings

cfn:
	cfn-lint template.yaml
	sam validate --lint
	python scripts/check-template.py template.yaml

unit:
	cargo test --workspace --locked

# docs/openapi.json against the local run: every check, a fixed seed, a bounded number of examples (≈ 1.5 min).
schemathesis: setup
	python3 scripts/schemathesis.py

run:
	cargo run

demo:
	cargo run --locked -q -- demo

bench: setup
	cargo run --locked --release -p psa-exact-bench --bin bench

hostile: setup
	cargo run --locked -p psa-exact-bench --bin hostile

sizes: setup
	bash scripts/sizes.sh

package: setup
	sam build

clean:
	cargo clean
	rm -rf .aws-sam
