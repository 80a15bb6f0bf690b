#!/usr/bin/env bash
# Make a headless Chromium available for the browser tests and print its path.
# Uses $SHIPML_CHROMIUM or /usr/bin/chromium when present; otherwise installs Debian's
# chromium package (as root, or with sudo). Playwright's own browser download is not used:
# it cannot reach its servers on the CI machines. Exits non-zero, printing nothing on
# stdout, when no Chromium can be had (the Makefile then goes on; the browser tests skip,
# or fail under CI=true).
set -euo pipefail
for candidate in "${SHIPML_CHROMIUM:-}" /usr/bin/chromium; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "$candidate"
    exit 0
  fi
done
command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install Chromium yourself" >&2; exit 1; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  chromium fonts-dejavu-core >&2
[ -x /usr/bin/chromium ] || { echo "apt-get installed chromium, but /usr/bin/chromium is missing" >&2; exit 1; }
echo /usr/bin/chromium
