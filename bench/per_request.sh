#!/usr/bin/env bash
# Instructions and system calls per request, for wopigate's CheckFileInfo and for the floor (a
# bare actix-web handler answering a body of the same size): counts, not times, so they compare
# on a busy machine and a regression shows without a quiet one.
#
#   bench/per_request.sh <wopigate binary> <floor binary> <CheckFileInfo URL> <floor port>
#
# Called by bench/run.sh with the servers it started (the floor is started again here, under the
# tools). Each count is a difference between two runs of one fresh process (N1 and N2 requests on
# one keep-alive connection, after a warm-up), divided by N2 - N1: start-up and shutdown cancel.
# Instructions: valgrind's callgrind (user-space instructions, like `perf stat -e instructions:u`,
# which this VM's missing PMU cannot give). System calls: strace -f -c, every thread.
set -euo pipefail
BIN=$1 FLOOR=$2 CFI_URL=$3 CFI_SIZE=$4
N1=${PER_REQUEST_N1:-200}
N2=${PER_REQUEST_N2:-1200}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need valgrind || ! need strace; then
  "$(dirname "$0")/../scripts/apt-install.sh" valgrind strace
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# N GETs of `url` on one keep-alive connection (after 50 to warm caches), each answer checked.
requests() { # url n
  python3 - "$1" "$2" <<'EOF'
import http.client, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
target = u.path + ("?" + u.query if u.query else "")
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        c.request("GET", target); r = c.getresponse(); r.read()
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
for i in range(50 + int(sys.argv[2])):
    c.request("GET", target); r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"request {i}: HTTP {r.status}")
EOF
}

# Runs `cmd…` under `tool` for n requests to `url` (with {PORT} in the command replaced by a free
# port, and in the URL), then stops it with SIGINT; prints the tool's count.
count() { # tool n url cmd...
  local tool=$1 n=$2 url=$3; shift 3
  local p; p=$(port)
  local cmd=("${@//\{PORT\}/$p}")
  url=${url//\{PORT\}/$p}
  # The server's own address (wopigate reads it from the environment; the floor ignores it).
  local at=(env "WOPIGATE_BIND=127.0.0.1:$p" "WOPIGATE_PUBLIC_URL=http://127.0.0.1:$p")
  case $tool in
    ir)
      "${at[@]}" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "${cmd[@]}" >/dev/null 2>"$WORK/tool.err" &
      ;;
    sys)
      "${at[@]}" strace -f -c -o "$WORK/strace.out" "${cmd[@]}" >/dev/null 2>"$WORK/tool.err" &
      ;;
  esac
  local pid=$!
  requests "$url" "$n"
  # SIGINT to the server (the tool passes it on and writes its counts when the server exits).
  pkill -INT -P "$pid" 2>/dev/null || kill -INT "$pid"
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" 2>/dev/null || true
  case $tool in
    ir) awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.out" ;;
    # The total line: % time, seconds, usecs/call, calls, [errors], "total".
    sys) awk '$NF=="total" {print $4; exit}' "$WORK/strace.out" ;;
  esac
}

per_request() { # tool url cmd...
  local tool=$1 url=$2; shift 2
  local a b
  a=$(count "$tool" "$N1" "$url" "$@")
  b=$(count "$tool" "$N2" "$url" "$@")
  python3 -c "print(round(($b - $a) / ($N2 - $N1), 1))"
}

# wopigate: a second process on the same data directory and settings as bench/run.sh's (the URL's
# port is swapped for the new one).
WOPI_URL=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(netloc="127.0.0.1:{PORT}").geturl())' "$CFI_URL")
WOPI_CMD=("$BIN" serve)
FLOOR_CMD=("$FLOOR" 127.0.0.1:{PORT} "$CFI_SIZE")
FLOOR_URL="http://127.0.0.1:{PORT}/"

CFI_IR=$(per_request ir "$WOPI_URL" "${WOPI_CMD[@]}")
FLOOR_IR=$(per_request ir "$FLOOR_URL" "${FLOOR_CMD[@]}")
CFI_SYS=$(per_request sys "$WOPI_URL" "${WOPI_CMD[@]}")
FLOOR_SYS=$(per_request sys "$FLOOR_URL" "${FLOOR_CMD[@]}")
echo "$CFI_IR $FLOOR_IR $CFI_SYS $FLOOR_SYS"
