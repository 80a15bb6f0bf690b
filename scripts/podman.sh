#!/usr/bin/env bash
# Make podman usable for the container and deploy tests and print the path of the
# containers.conf to export as CONTAINERS_CONF. Installs Debian's podman, buildah, runc,
# debootstrap, iptables, netavark and aardvark-dns when one is missing (as root, or with
# sudo): netavark is podman's network stack (it needs iptables), aardvark-dns lets pods
# resolve each other by name. Exits non-zero, printing nothing on stdout, when that
# cannot be done.
#
# The containers.conf (written to $CONF, default .venv/containers.conf) holds the settings
# podman needs on the CI machines (docs/containers.md): the runc runtime (crun fails with
# "cgroups in hybrid mode not supported"), ulimits low enough to be set without
# CAP_SYS_RESOURCE, and the netavark network backend. It changes nothing system-wide.
set -euo pipefail
CONF=${CONF:-${VENV:-.venv}/containers.conf}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for tool in podman buildah runc debootstrap iptables; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
[ -x /usr/lib/podman/netavark ] || [ -x /usr/libexec/podman/netavark ] || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || [ -x /usr/libexec/podman/aardvark-dns ] || missing+=(aardvark-dns)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install ${missing[*]} yourself" >&2; exit 1; }
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

mkdir -p "$(dirname "$CONF")"
tmp="$CONF.tmp.$$"
cat >"$tmp" <<'CONFEOF'
# Written by scripts/podman.sh for shipml's container and deploy tests (docs/containers.md).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
CONFEOF
mv "$tmp" "$CONF"
conf_path="$(cd "$(dirname "$CONF")" && pwd)/$(basename "$CONF")"
CONTAINERS_CONF="$conf_path" podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null || {
  echo "podman is installed but does not work here (podman info failed)" >&2; exit 1; }
echo "$conf_path"
