#!/usr/bin/env bash
# Make a local PostgreSQL server available for the team-mode tests and print its URL.
# Installs Debian's postgresql package when missing (as root, or with sudo), starts the
# cluster, and creates the role and database shipml_test (idempotent). Exits non-zero,
# printing nothing on stdout, when that cannot be done.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install PostgreSQL yourself" >&2; exit 1; }
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
fi
cluster=$(pg_lsclusters --no-header | head -n 1)
[ -n "$cluster" ] || { echo "no PostgreSQL cluster found" >&2; exit 1; }
read -r version name port status _ <<<"$cluster"
if [ "$status" != "online" ]; then
  $SUDO pg_ctlcluster "$version" "$name" start >&2
fi
psql_as_postgres() { $SUDO su postgres -c "psql -v ON_ERROR_STOP=1 -p $port -qtAc \"$1\""; }
if [ "$(psql_as_postgres "SELECT 1 FROM pg_roles WHERE rolname='shipml_test'")" != "1" ]; then
  psql_as_postgres "CREATE ROLE shipml_test LOGIN PASSWORD 'shipml_test'" >&2
fi
if [ "$(psql_as_postgres "SELECT 1 FROM pg_database WHERE datname='shipml_test'")" != "1" ]; then
  psql_as_postgres "CREATE DATABASE shipml_test OWNER shipml_test" >&2
fi
echo "postgresql://shipml_test:shipml_test@127.0.0.1:${port}/shipml_test"
