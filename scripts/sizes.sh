#!/usr/bin/env bash
# `make sizes`: the zip sizes of the deployed build — the four functions built as `sam build` builds them
# (cargo-lambda, release, arm64 via zig) — printed as a table, one row per function. Fails when a zip is over
# 6 MB (6,000,000 B): the figure in the README's table comes from this command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FUNCTIONS=(oauth-callback test-connection push-invoice exact-webhook-paid)
LIMIT=6000000
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

args=()
for f in "${FUNCTIONS[@]}"; do args+=(--package "$f"); done
cargo lambda build --release --arm64 --locked "${args[@]}" >&2

python3 - "$TARGET_DIR" "$LIMIT" "${FUNCTIONS[@]}" <<'PY'
import io, os, sys, zipfile
target, limit, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| Function (arm64, release, cargo-lambda) | bootstrap | zip (deflate -9) | Target | Result |")
print("|---|---|---|---|---|")
failed = 0
for name in names:
    path = os.path.join(target, "lambda", name, "bootstrap")
    if not os.path.isfile(path):
        print(f"| {name} | missing: {path} | — | ≤ 6 MB | **FAIL** |")
        failed += 1
        continue
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read(), compresslevel=9)
    size, zipped = os.path.getsize(path), len(buf.getvalue())
    ok = zipped <= limit
    failed += not ok
    print(f"| {name} | {size:,} B ({size/1e6:.2f} MB) | {zipped:,} B ({zipped/1e6:.2f} MB) | ≤ 6 MB | {'PASS' if ok else '**FAIL**'} |")
sys.exit(1 if failed else 0)
PY
