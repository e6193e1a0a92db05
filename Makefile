# psa-exact — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /usr/bin/env bash
VENV  ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= eu-west-1

.PHONY: help setup test fmt lint clippy cfn unit run demo package clean

help:
	@echo "make setup    install test/packaging tools (.venv: moto, cfn-lint, SAM CLI, cargo-lambda, zig; arm64 target)"
	@echo "make test     everything CI checks: fmt, clippy, template lint, all tests (moto started by the tests)"
	@echo "make run      cargo run: the connector locally on the Exact sandbox and in-memory stores"
	@echo "make package sam build (arm64 Lambda binaries via cargo-lambda + zig)"

setup:
	@bash scripts/setup.sh

test: setup fmt clippy cfn unit

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

run:
	cargo run

package: setup
	sam build

clean:
	cargo clean
	rm -rf .aws-sam
