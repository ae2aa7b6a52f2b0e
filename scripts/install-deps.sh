#!/usr/bin/env bash
# install-deps.sh — install every Debian package pgfold needs to build, test,
# run and benchmark, then the Node test dependencies (tests/node).
#
# Idempotent and fast when everything is present: each package is checked
# with dpkg-query, and apt-get runs (update once, then install) only for the
# missing ones.  Prints one line per action.  Must run as root (or via sudo)
# when something is missing.
#
# Note: on bookworm pg_stat_statements ships inside postgresql-15 itself
# (postgresql-contrib-15 is only a virtual package it provides).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf 'install-deps: %s\n' "$*"; }

PACKAGES=(
	build-essential pkg-config
	libuv1-dev libpq-dev libhiredis-dev libpg-query-dev libprotobuf-c-dev
	libinih-dev libcmocka-dev libhttp-parser-dev
	postgresql-15 redis-server pgbouncer
	python3-pytest python3-psycopg2 python3-psycopg python3-sqlalchemy python3-asyncpg
	docker-compose
	default-jdk-headless libpostgresql-jdbc-java
	procps iproute2 curl
)
# nodejs may come from another source (e.g. NodeSource, which bundles npm and
# conflicts with Debian's npm): only ask Debian for what is really missing.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

is_installed() {
	[[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
	is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
	say "all ${#PACKAGES[@]} Debian packages present"
else
	SUDO=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || {
			say "missing ${missing[*]} and not root (no sudo): install them as root"
			exit 1
		}
		SUDO=(sudo)
	fi
	export DEBIAN_FRONTEND=noninteractive
	# Keep package post-install scripts from starting system services
	# (a cluster on 5432, redis on 6379, pgbouncer on 6432): the project
	# starts its own throwaway servers on free ports.
	policy=/usr/sbin/policy-rc.d
	remove_policy=0
	if [[ ! -e "$policy" ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
		"${SUDO[@]}" chmod 755 "$policy"
		remove_policy=1
		trap '[[ $remove_policy == 1 ]] && "${SUDO[@]}" rm -f "$policy"' EXIT
	fi
	say "apt-get update"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get update -qq
	say "apt-get install ${missing[*]}"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# pg_stat_statements must be loadable by the throwaway servers.
pg_lib="$(ls -d /usr/lib/postgresql/15/lib 2>/dev/null || true)"
if [[ -z "$pg_lib" || ! -e "$pg_lib/pg_stat_statements.so" ]]; then
	say "warning: pg_stat_statements.so not found under /usr/lib/postgresql/15/lib"
fi

# Node test dependencies.
node_dir="$ROOT/tests/node"
if [[ -f "$node_dir/package.json" ]]; then
	if [[ -d "$node_dir/node_modules" ]]; then
		say "tests/node/node_modules present"
	elif [[ -f "$node_dir/package-lock.json" ]]; then
		say "npm ci in tests/node"
		(cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
	else
		say "npm install in tests/node"
		(cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error)
	fi
fi
