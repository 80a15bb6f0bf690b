#!/usr/bin/env bash
# Start podman's Docker-compatible API on a socket (podman system service) unless it is
# already answering, and print the DOCKER_HOST to export: kfp's DockerRunner (shipml
# pipeline rehearse) and any docker client then run their containers with podman.
#   export DOCKER_HOST=$(scripts/podman-socket.sh)
# SOCKET (default /run/podman/podman.sock) sets where; CONTAINERS_CONF is honoured (see
# scripts/podman.sh for the settings the CI machines need). Stop it with
#   kill "$(cat "${SOCKET%.sock}.pid")"
set -euo pipefail
SOCKET=${SOCKET:-/run/podman/podman.sock}
command -v podman >/dev/null 2>&1 || { echo "podman is not installed (scripts/podman.sh)" >&2; exit 1; }
if [ -S "$SOCKET" ] && curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then
  echo "unix://$SOCKET"
  exit 0
fi
mkdir -p "$(dirname "$SOCKET")"
nohup podman system service --time=0 "unix://$SOCKET" >"${SOCKET%.sock}.log" 2>&1 &
echo $! >"${SOCKET%.sock}.pid"
for _ in $(seq 1 100); do
  if curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then
    echo "unix://$SOCKET"
    exit 0
  fi
  sleep 0.1
done
echo "podman system service did not answer on $SOCKET (see ${SOCKET%.sock}.log)" >&2
exit 1
