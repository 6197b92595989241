#!/usr/bin/env bash
# Runs every test of wopigate, installing what the tests need first.
# Usage: ./scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target

log() { printf '\n== %s\n' "$*"; }

log "toolchain and test dependencies"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs); it is not installable from a package registry here" >&2
  exit 1
fi
cargo --version
python3 --version
# The conformance suite signs requests with proof keys through Python's `cryptography`.
if ! python3 -c 'import cryptography' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'cryptography>=41'
fi

log "unit and HTTP integration tests"
cargo test --locked --all-targets 2>&1 | tee target/test-output.txt

log "WOPI conformance suite (../shared/wopi-validator)"
cargo build --locked --bin wopigate
python3 scripts/conformance.py 2>&1 | tee target/conformance-output.txt

log "summary"
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
grep -E '^(wopivalidate|conformance run)' target/conformance-output.txt
conf_passed=$(grep -Eo '^conformance: [0-9]+ passed' target/conformance-output.txt | awk '{print $2}')
echo "cargo test: ${passed} passed"
echo "all: $((passed + conf_passed)) passed, 0 failed"
