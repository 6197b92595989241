#!/usr/bin/env bash
# Fleet benchmark: how many open documents one replica carries (examples/fleet.rs). Simulated
# Collabora clients against three replicas on S3 (Garage) + Redis, then one on the local store;
# writes target/fleet-results.md. All traffic goes to 127.0.0.1.
#
#   bench/fleet.sh            full run (release build; at most about 15 minutes)
#   bench/fleet.sh --smoke    seconds-long run on the test build; fails on any error response
#   bench/fleet.sh [--smoke] OPTIONS…   options of examples/fleet.rs on top (--steps 100,200 …;
#                             `target/release/examples/fleet --help` lists them)
#
# Garage's and the local store's data go to the temporary directory: TMPDIR=/dev/shm puts them
# on tmpfs (no disk latency in the figures; BENCHMARKS.md says when that was done).
#
# Needs Garage and redis-server: WOPIGATE_TEST_GARAGE / WOPIGATE_TEST_REDIS_SERVER, else
# target/tools/bin/garage (scripts/test.sh builds it) and redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi

export WOPIGATE_TEST_GARAGE="${WOPIGATE_TEST_GARAGE:-$PWD/target/tools/bin/garage}"
export WOPIGATE_TEST_REDIS_SERVER="${WOPIGATE_TEST_REDIS_SERVER:-$(command -v redis-server || true)}"
export WOPIGATE_TEST_REQUIRE_BACKENDS=1
[ -x "$WOPIGATE_TEST_GARAGE" ] || { echo "Garage not found at $WOPIGATE_TEST_GARAGE (scripts/test.sh builds it)" >&2; exit 1; }
[ -x "$WOPIGATE_TEST_REDIS_SERVER" ] || { echo "redis-server not found (apt install redis-server)" >&2; exit 1; }

# As bench/run.sh: real figures from the release build, the smoke run on the test build.
if [ "$SMOKE" = 1 ]; then PROFILE=dev; OUT=debug; else PROFILE=release; OUT=release; fi
cargo build --profile "$PROFILE" --locked --bin wopigate --example fleet -q

if [ "$SMOKE" = 1 ]; then
  # 600× compressed: an autosave every 0.5 s, RefreshLock every 1.5 s, a reconnect every 3 s,
  # sessions of 6 s, so a few seconds cover every operation. The debug build is slow: the latency
  # limit is lifted so that both steps run; any error response fails.
  ARGS=(--steps 10,20 --compression 600 --ramp 1 --steady 3 --p99-ms 60000 --fail-on-error --out target/fleet-smoke.md)
else
  ARGS=(--out target/fleet-results.md)
fi
echo "machine: $(nproc) cores, load: $(uptime | sed 's/.*load average/load average/')" >&2
# Prints the results (also written to --out).
"target/$OUT/examples/fleet" --wopigate "target/$OUT/wopigate" "${ARGS[@]}" "$@"
echo "load after: $(uptime | sed 's/.*load average/load average/')" >&2
