#!/usr/bin/env bash
# Runs every test of wopigate, installing what the tests need first.
# Usage: ./scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

need_cmd() { command -v "$1" >/dev/null 2>&1; }

log "toolchain"
if ! need_cmd cargo; then
  echo "cargo is required (https://rustup.rs); it is not installable from a package registry here" >&2
  exit 1
fi
cargo --version

mkdir -p target
log "unit and HTTP integration tests"
cargo test --locked --all-targets 2>&1 | tee target/test-output.txt

log "summary"
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
echo "cargo: ${passed} passed, ${failed} failed"
