#!/usr/bin/env bash
# Create .venv and install shipml with its development tools, on a fresh Debian or
# Ubuntu machine too: installs python3-venv and git with apt-get when they are missing.
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_apt=()
command -v git >/dev/null 2>&1 || need_apt+=(git)
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "shipml needs Python 3.11 or newer as '$PYTHON' (set PYTHON=python3.12 etc.)" >&2
  exit 1
fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
  ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  need_apt+=("python${ver}-venv")
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
  else
    echo "please install: ${need_apt[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# pip byte-compiles what it installs in one process (40 of its 75 s on the 2-core
# machine); compileall does the same on every core (the whole install: 60 s, was 77).
# Compiled ahead all the same: where PYTHONDONTWRITEBYTECODE is set, a process that had
# to compile what it imports would do so every time. compileall fails on files pip skips
# too (test data in old syntax), hence `|| true`.
"$VENV/bin/python" -m pip install -q --no-compile -e ".[dev]"
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true
