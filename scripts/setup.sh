#!/usr/bin/env bash
# Installs what the tests and the packaging need, idempotently:
# a Python venv (.venv) with moto, cfn-lint, SAM CLI, cargo-lambda and zig, and the arm64 Rust target.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

for tool in cargo rustup python3; do
  command -v "$tool" >/dev/null || { echo "setup: '$tool' is required but not on PATH" >&2; exit 1; }
done

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

stamp="$VENV/.requirements-dev.sha"
want="$(sha256sum "$ROOT/requirements-dev.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/moto_server" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q -r "$ROOT/requirements-dev.txt"
  echo "$want" > "$stamp"
fi
# Schemathesis (make schemathesis), pinned here: requirements-dev.txt keeps the packaging and AWS tools.
SCHEMATHESIS=schemathesis==4.32.5
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version ${SCHEMATHESIS#*==}" ]; then
  "$VENV/bin/pip" install --disable-pip-version-check -q "$SCHEMATHESIS"
fi
echo "setup: ok ($VENV)"
