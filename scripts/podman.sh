#!/usr/bin/env bash
# Make podman usable for the deploy tests and print the path of the containers.conf to
# use (export it as CONTAINERS_CONF). Installs Debian's podman, runc, netavark and
# aardvark-dns when missing (pods resolve each other by name through aardvark-dns), and
# writes the settings the CI machines need (docs in /work/shared/notes): runc, since
# crun fails on cgroups v1 hybrid mode, and ulimits low enough to be set without
# CAP_SYS_RESOURCE. Exits non-zero, printing nothing on stdout, when that cannot be done.
set -euo pipefail
CONF=${SHIPML_CONTAINERS_CONF:-$PWD/.venv/containers.conf}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/podman/netavark ] || [ -x /usr/libexec/podman/netavark ] || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || [ -x /usr/libexec/podman/aardvark-dns ] || missing+=(aardvark-dns)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install ${missing[*]} yourself" >&2; exit 1; }
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
mkdir -p "$(dirname "$CONF")"
cat > "$CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
CONF
CONTAINERS_CONF="$CONF" podman info >/dev/null 2>&1 || { echo "podman does not start with $CONF" >&2; exit 1; }
echo "$CONF"
