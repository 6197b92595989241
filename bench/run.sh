#!/usr/bin/env bash
# wopigate benchmarks, every figure measured against its floor in the same run (this machine
# is shared and noisy: only ratios mean something). All traffic goes to 127.0.0.1.
#
#   bench/run.sh            full run (about 4 minutes, writes target/bench-results.md)
#   bench/run.sh --smoke    seconds-long run with small files (CI checks it still works)
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
if [ "$SMOKE" = 1 ]; then DURATION=2s; BIG_MB=8; HUGE_MB=16; else DURATION=15s; BIG_MB=100; HUGE_MB=1024; fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need curl; then
  scripts/apt-install.sh wrk nginx-light curl
fi

# Real figures need the release build; the smoke run (CI) only checks that the script works, so
# it uses the test build already there instead of compiling everything again with optimisations.
if [ "$SMOKE" = 1 ]; then PROFILE=dev; OUT=debug; else PROFILE=release; OUT=release; fi
cargo build --profile "$PROFILE" --locked --bin wopigate --example floor -q
BIN=target/$OUT/wopigate
FLOOR=target/$OUT/examples/floor

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no server on $1" >&2; exit 1; }

# Files: a document for CheckFileInfo, 256 KiB, 100 MiB and 1 GiB (smaller when smoking).
DATA=$WORK/data
mkdir -p "$DATA/u1"
head -c 20000 /dev/urandom > "$DATA/u1/doc.docx"
head -c 65536 /dev/urandom > "$DATA/u1/64k.docx"
head -c 262144 /dev/urandom > "$DATA/u1/256k.docx"
head -c $((BIG_MB * 1048576)) /dev/urandom > "$DATA/u1/big.docx"
head -c $((HUGE_MB * 1048576)) /dev/zero > "$WORK/huge.src"
cp "$WORK/huge.src" "$DATA/u1/huge.docx"

SECRET=bench-token-secret-bench-token-secret-000001
CALLER=bench-caller-secret-bench-caller-secret-0001
VIEWER=11111111-1111-4111-8111-111111111111
# Every wopigate of the run has these settings (exported: bench/per_request.sh starts more).
export WOPIGATE_DATA_DIR=$DATA WOPIGATE_TOKEN_SECRET=$SECRET WOPIGATE_CALLER_JWT_SECRET=$CALLER \
  WOPIGATE_MAX_UPLOAD_SIZE=2147483648 WOPIGATE_EDIT_MAX_SIZE=2147483648 WOPIGATE_SHARE_PASSWORD_ATTEMPTS=100000000 \
  WOPIGATE_VIEWERS="[{\"id\":\"$VIEWER\",\"name\":\"Collabora\",\"discovery\":\"$PWD/tests/fixtures/discovery/collabora.xml\"}]" \
  RUST_LOG=info
start_wopigate() { # port -> pid
  WOPIGATE_BIND=127.0.0.1:$1 WOPIGATE_PUBLIC_URL=http://127.0.0.1:$1 "$BIN" serve >/dev/null 2>&1 &
  echo $!
}
WP=$(port); WPID=$(start_wopigate "$WP"); PIDS+=("$WPID"); wait_up "$WP" /readyz

JWT=$(python3 - "$CALLER" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
c = b(json.dumps({"sub": "u1", "name": "Bench", "exp": int(time.time()) + 3600}).encode())
s = b(hmac.new(sys.argv[1].encode(), f"{h}.{c}".encode(), hashlib.sha256).digest())
print(f"{h}.{c}.{s}")
EOF
)
session() { # file -> "token fid"
  curl -fs -X PUT "http://127.0.0.1:$WP/api/v4/file/viewerSession" -H "Authorization: Bearer $JWT" -H "Content-Type: application/json" \
    -d "{\"uri\":\"cloudreve://my/$1\",\"viewer_id\":\"$VIEWER\",\"preferred_action\":\"edit\"}" |
    python3 -c 'import sys,json,urllib.parse as u; e=json.load(sys.stdin); e["code"] == 0 or sys.exit(f"viewerSession failed: {e}"); q=u.parse_qs(u.urlparse(e["data"]["wopi_src"]).query); src=next(v[0] for k,v in q.items() if k.lower()=="wopisrc"); print(e["data"]["session"]["access_token"], src.rsplit("/", 1)[1])'
}
read -r TOKEN FID < <(session doc.docx)
read -r TOKEN64 FID64 < <(session 64k.docx)
read -r TOKEN256 FID256 < <(session 256k.docx)
read -r TOKENBIG FIDBIG < <(session big.docx)
CFI_URL="http://127.0.0.1:$WP/wopi/files/$FID?access_token=$TOKEN"
CFI_SIZE=$(curl -fs "$CFI_URL" | wc -c)

FP=$(port); "$FLOOR" "127.0.0.1:$FP" "$CFI_SIZE" & FPID=$!; PIDS+=("$FPID"); wait_up "$FP" /
NP=$(port)
cat > "$WORK/nginx.conf" <<EOF
daemon on; user root; worker_processes auto; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  server { listen 127.0.0.1:$NP; root $DATA/u1; } }
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK"; wait_up "$NP" /256k.docx

# wrk: requests/s, p99 latency (ms) and transfer (MiB/s) of one run.
run_wrk() { # connections url [script]
  local out threads=2
  [ "$1" -lt 2 ] && threads=1
  if [ -n "${3:-}" ]; then out=$(wrk -t$threads -c"$1" -d"$DURATION" --latency -s "$3" "$2"); else out=$(wrk -t$threads -c"$1" -d"$DURATION" --latency "$2"); fi
  python3 - "$out" <<'EOF'
import re, sys
t = sys.argv[1]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
m = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
p99 = float(m.group(1)) * unit[m.group(2)]
m = re.search(r"50%\s+([\d.]+)(us|ms|s)", t)
p50 = float(m.group(1)) * unit[m.group(2)]
m = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", t)
mib = float(m.group(1)) * {"B": 1 / 1048576, "KB": 1 / 1024, "MB": 1, "GB": 1024}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if errors:
    sys.exit(f"wrk saw {errors.group(1)} error responses")
print(f"{rps:.0f} {p99:.2f} {mib:.1f} {p50:.3f}")
EOF
}
# The same, with the CPU time (user + system) the servers `pids` spent per request, in µs:
# what a request costs the server itself, which the client sharing its cores does not blur.
TICK=$(getconf CLK_TCK)
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
run_wrk_cpu() { # "pids" connections url [script]
  local pids=$1 t0 t1 out; shift
  # shellcheck disable=SC2086
  t0=$(ticks $pids); out=$(run_wrk "$@"); t1=$(ticks $pids)
  read -r rps p99 mib p50 <<<"$out"
  echo "$rps $p99 $mib $p50 $(python3 -c "print(f'{($t1 - $t0) / $TICK / ($rps * ${DURATION%s}) * 1e6:.1f}')")"
}
NGINX_PIDS="$(cat "$WORK/nginx.pid") $(pgrep -P "$(cat "$WORK/nginx.pid")" | xargs)"

cat > "$WORK/session.lua" <<EOF
wrk.method = "PUT"
wrk.body = '{"uri":"cloudreve://my/doc.docx","viewer_id":"$VIEWER","preferred_action":"edit"}'
wrk.headers["Authorization"] = "Bearer $JWT"
wrk.headers["Content-Type"] = "application/json"
EOF

echo "running benchmarks ($DURATION each)..." >&2
read -r FLOOR_RPS FLOOR_P99 _ _ FLOOR_CPU < <(run_wrk_cpu "$FPID" 64 "http://127.0.0.1:$FP/")
read -r CFI_RPS CFI_P99 _ _ CFI_CPU < <(run_wrk_cpu "$WPID" 64 "$CFI_URL")
read -r VS_RPS VS_P99 _ _ VS_CPU < <(run_wrk_cpu "$WPID" 64 "http://127.0.0.1:$WP/api/v4/file/viewerSession" "$WORK/session.lua")
read -r NG64_RPS _ NG64_MIB _ NG64_CPU < <(run_wrk_cpu "$NGINX_PIDS" 16 "http://127.0.0.1:$NP/64k.docx")
read -r GF64_RPS _ GF64_MIB _ GF64_CPU < <(run_wrk_cpu "$WPID" 16 "http://127.0.0.1:$WP/wopi/files/$FID64/contents?access_token=$TOKEN64")
read -r NG256_RPS _ NG256_MIB _ < <(run_wrk 16 "http://127.0.0.1:$NP/256k.docx")
read -r GF256_RPS _ GF256_MIB _ < <(run_wrk 16 "http://127.0.0.1:$WP/wopi/files/$FID256/contents?access_token=$TOKEN256")
read -r _ _ NGBIG_MIB _ < <(run_wrk 4 "http://127.0.0.1:$NP/big.docx")
read -r _ _ GFBIG_MIB _ < <(run_wrk 4 "http://127.0.0.1:$WP/wopi/files/$FIDBIG/contents?access_token=$TOKENBIG")

# CheckFileInfo on one connection, alone and while 32 clients send wrong share passwords (the
# rate limit is lifted for this instance, so every guess really runs Argon2).
mkdir -p "$DATA/.wopigate/objects/shares"
printf '{"owner":"u1","path":"doc.docx","password_hash":"%s"}' "$(printf '%s' 'right' | "$BIN" hash-password)" \
  > "$DATA/.wopigate/objects/shares/pw.json"
cat > "$WORK/guess.lua" <<EOF
wrk.method = "PUT"
wrk.body = '{"uri":"cloudreve://pw:wrong@share/","viewer_id":"$VIEWER","preferred_action":"view"}'
wrk.headers["Content-Type"] = "application/json"
EOF
read -r _ _ _ CFI_ALONE_P50 < <(run_wrk 1 "$CFI_URL")
wrk -t1 -c32 -d"$DURATION" -s "$WORK/guess.lua" "http://127.0.0.1:$WP/api/v4/file/viewerSession" > "$WORK/guess.out" &
GUESS=$!
sleep 0.5
read -r _ _ _ CFI_ATTACK_P50 < <(run_wrk 1 "$CFI_URL")
wait "$GUESS"
GUESSES=$(awk '/Requests\/sec/ {print $2}' "$WORK/guess.out")

# Instructions and system calls per CheckFileInfo and per floor request (counts: the machine's
# noise does not move them). Seconds-long under valgrind, so the full run only.
if [ "$SMOKE" = 1 ]; then
  PER_REQUEST="- - - -"
else
  PER_REQUEST=$(bench/per_request.sh "$BIN" "$FLOOR" "$CFI_URL" "$CFI_SIZE")
fi
read -r CFI_IR FLOOR_IR CFI_SYS FLOOR_SYS <<<"$PER_REQUEST"

# Peak memory around a 1 GiB GetFile and PutFile, in a fresh process.
kill "$WPID"; wait "$WPID" 2>/dev/null || true
WP=$(port); WPID=$(start_wopigate "$WP"); PIDS+=("$WPID"); wait_up "$WP" /readyz
read -r TOKENHUGE FIDHUGE < <(session huge.docx)
HUGE_URL="http://127.0.0.1:$WP/wopi/files/$FIDHUGE"
RSS_IDLE=$(awk '/VmHWM/ {print $2}' "/proc/$WPID/status")
curl -fs -o /dev/null "$HUGE_URL/contents?access_token=$TOKENHUGE"
RSS_GET=$(awk '/VmHWM/ {print $2}' "/proc/$WPID/status")
curl -fs -o /dev/null -X POST -H "X-WOPI-Override: LOCK" -H "X-WOPI-Lock: bench" "$HUGE_URL?access_token=$TOKENHUGE"
curl -fs -o /dev/null -X POST -H "X-WOPI-Override: PUT" -H "X-WOPI-Lock: bench" -H "Content-Type: application/octet-stream" \
  -T "$WORK/huge.src" "$HUGE_URL/contents?access_token=$TOKENHUGE"
RSS_PUT=$(awk '/VmHWM/ {print $2}' "/proc/$WPID/status")
cmp -s "$WORK/huge.src" "$DATA/u1/huge.docx" || { echo "PutFile did not store the bytes sent" >&2; exit 1; }

# Token mint + verify on one core (criterion is single-threaded).
if [ "$SMOKE" = 1 ]; then CRIT="--warm-up-time 1 --measurement-time 1"; else CRIT=""; fi
# shellcheck disable=SC2086
if [ "$SMOKE" = 1 ]; then BENCH_PROFILE=dev; else BENCH_PROFILE=bench; fi
CRIT_OUT=$(cargo bench --locked --bench tokens --profile "$BENCH_PROFILE" -q -- $CRIT 2>/dev/null)
TOKENS_PER_SEC=$(python3 - "$CRIT_OUT" <<'EOF'
import re, sys
text = sys.argv[1]
block = text[text.index("token/mint+verify"):]
m = re.search(r"thrpt:\s+\[\S+ \S+ ([\d.]+) (\w?)elem/s", block)
scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]
print(f"{float(m.group(1)) * scale:.0f}")
EOF
)

ratio() { python3 -c "print(f'{$1 / $2 * 100:.0f}%')"; }
times() { python3 -c "import sys; a, b = sys.argv[1:]; print('-' if '-' in (a, b) else f'{float(a) / float(b):.1f}×')" "$1" "$2"; }
MACHINE="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
RESULT=$(cat <<EOF
| measure | wopigate | floor | ratio | target |
|---|---|---|---|---|
| CheckFileInfo req/s (${CFI_SIZE}-byte JSON) | $CFI_RPS | $FLOOR_RPS (bare actix, same body size) | $(ratio "$CFI_RPS" "$FLOOR_RPS") | ≥ 50% |
| CheckFileInfo p99 latency | $CFI_P99 ms | $FLOOR_P99 ms | $(python3 -c "print(f'{$CFI_P99 / $FLOOR_P99:.1f}×')") | |
| CheckFileInfo p50, 1 connection, while 32 clients send wrong share passwords ($GUESSES guesses/s checked) | $CFI_ATTACK_P50 ms | $CFI_ALONE_P50 ms (no attack) | $(python3 -c "print(f'{$CFI_ATTACK_P50 / $CFI_ALONE_P50:.1f}×')") | < 20 ms |
| CheckFileInfo server CPU per request (user + system, µs) | $CFI_CPU | $FLOOR_CPU (bare actix) | $(times "$CFI_CPU" "$FLOOR_CPU") | |
| viewerSession req/s | $VS_RPS | $FLOOR_RPS (bare actix) | $(ratio "$VS_RPS" "$FLOOR_RPS") | ≥ 40% |
| viewerSession server CPU per request (µs) | $VS_CPU | $FLOOR_CPU (bare actix) | $(times "$VS_CPU" "$FLOOR_CPU") | |
| viewerSession p99 latency | $VS_P99 ms | $FLOOR_P99 ms | $(python3 -c "print(f'{$VS_P99 / $FLOOR_P99:.1f}×')") | |
| CheckFileInfo instructions per request (callgrind, user space) | $CFI_IR | $FLOOR_IR (bare actix) | $(times "$CFI_IR" "$FLOOR_IR") | |
| CheckFileInfo system calls per request (strace -f -c, every thread) | $CFI_SYS | $FLOOR_SYS (bare actix) | $(times "$CFI_SYS" "$FLOOR_SYS") | |
| GetFile 64 KiB req/s | $GF64_RPS ($GF64_MIB MiB/s) | $NG64_RPS ($NG64_MIB MiB/s, nginx) | $(ratio "$GF64_MIB" "$NG64_MIB") | ≥ 70% |
| GetFile 64 KiB server CPU per request (µs) | $GF64_CPU | $NG64_CPU (nginx) | $(times "$GF64_CPU" "$NG64_CPU") | |
| GetFile 256 KiB req/s | $GF256_RPS ($GF256_MIB MiB/s) | $NG256_RPS ($NG256_MIB MiB/s, nginx) | $(ratio "$GF256_MIB" "$NG256_MIB") | |
| GetFile ${BIG_MB} MiB throughput | $GFBIG_MIB MiB/s | $NGBIG_MIB MiB/s (nginx) | $(ratio "$GFBIG_MIB" "$NGBIG_MIB") | ≥ 70% |
| peak RSS: idle / after ${HUGE_MB} MiB GetFile / after ${HUGE_MB} MiB PutFile | $((RSS_IDLE / 1024)) / $((RSS_GET / 1024)) / $((RSS_PUT / 1024)) MiB | | | < 64 MiB |
| token mint + verify, one core | $TOKENS_PER_SEC /s | | | ≥ 200,000 /s |

Machine: $MACHINE. wrk: 2 threads, 64 connections (16 for 256 KiB, 4 for ${BIG_MB} MiB), $DURATION per run, on the same machine as the servers.
EOF
)
echo "$RESULT" | tee target/bench-results.md
