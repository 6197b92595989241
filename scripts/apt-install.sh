#!/usr/bin/env bash
# Installs Debian packages for the tests: waits for another apt/dpkg run holding the lock
# (unattended upgrades, a parallel build) instead of failing, and retries downloads.
# Usage: scripts/apt-install.sh <package>...
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=5 -q "$@"; }
for attempt in 1 2 3; do
  if apt_get update >/dev/null && apt_get install -y --no-install-recommends "$@" >/dev/null; then
    exit 0
  fi
  echo "apt-get failed (attempt $attempt of 3); retrying in $((attempt * 10)) s" >&2
  sleep $((attempt * 10))
done
echo "could not install: $*" >&2
exit 1
