#!/usr/bin/env bash
# run.sh — what `make run` does: install missing dependencies, build, and run
# pgfold.
#
#   PGFOLD_CONFIG=FILE   run build/pgfold -c FILE (nothing else is started)
#   PGFOLD_BACKEND=ADDR  run build/pgfold --backend ADDR (and --redis
#                        $PGFOLD_REDIS when set)
#   neither              the embedded default: a throwaway PostgreSQL 15 and
#                        Redis in a temp dir on free loopback ports, pgfold in
#                        front of them on 127.0.0.1:6432 (or a free port) with
#                        admin on 127.0.0.1:6433 (or a free port), until
#                        Ctrl-C/SIGTERM; then everything is stopped and the
#                        temp dir removed.
#
# Extra arguments are passed to pgfold.  PGFOLD_PORT / PGFOLD_ADMIN_PORT pick
# other preferred ports; PGFOLD_SKIP_DEPS=1 / PGFOLD_SKIP_BUILD=1 skip the
# install and build steps; PGFOLD_BIN runs another binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A relative PGFOLD_CONFIG is relative to where run.sh was started.
if [[ -n "${PGFOLD_CONFIG:-}" && "$PGFOLD_CONFIG" != /* ]]; then
	PGFOLD_CONFIG="$PWD/$PGFOLD_CONFIG"
fi
cd "$ROOT"
# shellcheck source=scripts/servers.sh
source "$ROOT/scripts/servers.sh"

say() { printf 'run: %s\n' "$*"; }

if [[ "${PGFOLD_SKIP_DEPS:-0}" != 1 ]]; then
	"$ROOT/scripts/install-deps.sh"
fi
if [[ "${PGFOLD_SKIP_BUILD:-0}" != 1 ]]; then
	say "make"
	make -j"$(nproc)" all
fi
if [[ ! -x "$PGFOLD_BIN" ]]; then
	say "$PGFOLD_BIN missing after the build"
	exit 1
fi

# A user-configured backend: run pgfold alone, in the foreground.
if [[ -n "${PGFOLD_CONFIG:-}" ]]; then
	say "exec $PGFOLD_BIN -c $PGFOLD_CONFIG $*"
	exec "$PGFOLD_BIN" -c "$PGFOLD_CONFIG" "$@"
fi
if [[ -n "${PGFOLD_BACKEND:-}" ]]; then
	redis_args=()
	[[ -n "${PGFOLD_REDIS:-}" ]] && redis_args=(--redis "$PGFOLD_REDIS")
	say "exec $PGFOLD_BIN --backend $PGFOLD_BACKEND ${redis_args[*]} $*"
	exec "$PGFOLD_BIN" --backend "$PGFOLD_BACKEND" "${redis_args[@]}" "$@"
fi

# The embedded default.
srv_install_traps
srv_on_exit say "stopped pgfold, PostgreSQL and Redis; removed the temp dir"
srv_workdir pgfold-make-run

# prefer_port PORT [AVOID]: PORT if it is free on 127.0.0.1 (and not AVOID), else a free one.
prefer_port() {
	local p=$1
	if [[ "$p" != "${2:-}" ]] && port_is_free "$p"; then
		echo "$p"
		return
	fi
	p="$(free_port)"
	while [[ "$p" == "${2:-}" ]]; do p="$(free_port)"; done
	echo "$p"
}

pg_port="$(free_port)"
srv_on_exit pg_stop "$SRV_WORKDIR/pg"
pg_start "$SRV_WORKDIR/pg" "$pg_port"

redis_port="$(free_port)"
srv_on_exit redis_stop "$SRV_WORKDIR/redis"
redis_start "$SRV_WORKDIR/redis" "$redis_port"

listen_port="$(prefer_port "${PGFOLD_PORT:-6432}")"
admin_port="$(prefer_port "${PGFOLD_ADMIN_PORT:-6433}" "$listen_port")"

srv_on_exit pgfold_stop
pgfold_start --listen "127.0.0.1:$listen_port" --backend "127.0.0.1:$pg_port" \
	--redis "127.0.0.1:$redis_port" --admin "127.0.0.1:$admin_port" "$@"

cat <<EOF

  pgfold is running (pid $PGFOLD_PID).
    connect:   psql postgresql://app:app@127.0.0.1:$listen_port/shop
    admin:     http://127.0.0.1:$admin_port/health   (also /stats, /metrics)
    backend:   postgresql://app:app@127.0.0.1:$pg_port/shop  (PostgreSQL 15, direct)
    redis:     redis://127.0.0.1:$redis_port
    temp dir:  $SRV_WORKDIR
  Ctrl-C (or SIGTERM) stops everything.

EOF

stop=
trap 'stop=INT' INT
trap 'stop=TERM' TERM
trap 'stop=HUP' HUP
while srv_pid_alive "$PGFOLD_PID"; do
	wait "$PGFOLD_PID" || true
	[[ -n "$stop" ]] && break
done
if [[ -n "$stop" ]]; then
	trap 'exit 130' INT
	trap 'exit 143' TERM
	say "stopping (SIG$stop)"
	# Ctrl-C reached pgfold too (same process group): let it finish its own
	# shutdown before sending SIGTERM.
	if [[ "$stop" == INT ]]; then
		for _ in {1..50}; do
			srv_pid_alive "$PGFOLD_PID" || break
			sleep 0.1
		done
	fi
	rc=0
	pgfold_stop 30 || rc=$?
	((rc == 0)) || say "pgfold exited with status $rc"
	exit 0
fi
rc=0
pgfold_stop 30 || rc=$?
say "pgfold exited on its own with status $rc"
exit $((rc == 0 ? 1 : rc))
