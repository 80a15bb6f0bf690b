#!/usr/bin/env bash
# Make podman usable for the container tests and print the path of the containers.conf
# to export as CONTAINERS_CONF. Installs Debian's podman, buildah, runc, debootstrap and
# iptables (netavark, podman's network stack, needs it) when one is missing (as root, or
# with sudo). Exits non-zero, printing nothing on stdout, when that cannot be done.
#
# The containers.conf (written to $CONF, default .venv/containers.conf) holds the two
# settings podman needs on the CI machines (see docs/containers.md): the runc runtime
# (crun fails with "cgroups in hybrid mode not supported") and ulimits low enough to be
# set without CAP_SYS_RESOURCE. It changes nothing system-wide.
set -euo pipefail
CONF=${CONF:-${VENV:-.venv}/containers.conf}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for tool in podman buildah runc debootstrap iptables; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install ${missing[*]} yourself" >&2; exit 1; }
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman buildah runc debootstrap iptables >&2
fi

mkdir -p "$(dirname "$CONF")"
tmp="$CONF.tmp.$$"
cat >"$tmp" <<'EOF'
# Written by scripts/podman.sh for shipml's container tests (see docs/containers.md).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
EOF
mv "$tmp" "$CONF"
conf_path="$(cd "$(dirname "$CONF")" && pwd)/$(basename "$CONF")"
CONTAINERS_CONF="$conf_path" podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null || {
  echo "podman is installed but does not work here (podman info failed)" >&2; exit 1; }
echo "$conf_path"
