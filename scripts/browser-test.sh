#!/usr/bin/env bash
# The host page (/host) in headless Chromium: Debian's chromium from apt, playwright-core from
# npm into tests/browser/node_modules, then tests/browser/host_page.test.mjs against the real
# binary. Run by scripts/test.sh; alone: ./scripts/browser-test.sh (builds the binary first).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium (first run only)"
  scripts/apt-install.sh chromium
fi
/usr/bin/chromium --version

if ! command -v node >/dev/null 2>&1; then
  echo "node is required for the browser test" >&2
  exit 1
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

cargo build --locked --bin wopigate
WOPIGATE_BIN="$PWD/target/debug/wopigate" node --test --test-reporter=spec tests/browser/host_page.test.mjs
