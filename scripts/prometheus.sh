#!/usr/bin/env bash
# Make Prometheus (the server and promtool) available for the monitoring tests and print
# the folder holding both. Uses them from PATH when present; otherwise installs Debian's
# prometheus package (as root, or with sudo) and stops the service the package starts:
# the tests start their own Prometheus on a free port. Exits non-zero, printing nothing on
# stdout, when Prometheus cannot be had (the Makefile then goes on; the Prometheus tests
# skip, or fail under CI=true).
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  dirname "$(command -v promtool)"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install Prometheus yourself" >&2; exit 1; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq >&2
# policy-rc.d 101: the package must not start its own server (no init system here, and the
# tests never use a fixed port).
policy=/usr/sbin/policy-rc.d
created=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy"
  created=1
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2 || {
  [ -n "$created" ] && $SUDO rm -f "$policy"; exit 1; }
[ -n "$created" ] && $SUDO rm -f "$policy"
command -v promtool >/dev/null 2>&1 || { echo "apt-get installed prometheus, but promtool is missing" >&2; exit 1; }
dirname "$(command -v promtool)"
