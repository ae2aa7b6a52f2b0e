# shellcheck shell=bash disable=SC2034
# (SC2034: the globals set here, PG_PORT, REDIS_PID, ..., are read by callers.)
# servers.sh — a sourced bash library that starts and stops throwaway servers
# for tests, `make run` and `make bench`: PostgreSQL 15, Redis and pgfold, on
# loopback ports, with deadlines on every wait and cleanup traps.
#
#   source scripts/servers.sh
#   srv_install_traps                     # EXIT/INT/TERM/HUP run the cleanups
#   srv_workdir pgfold-test               # SRV_WORKDIR=/tmp/pgfold-test.XXXXXX, removed on exit
#   pg_port=$(free_port)
#   srv_on_exit pg_stop "$SRV_WORKDIR/pg"        # stops are idempotent:
#   pg_start "$SRV_WORKDIR/pg" "$pg_port"        # register them first
#   srv_on_exit redis_stop "$SRV_WORKDIR/redis"
#   redis_start "$SRV_WORKDIR/redis" "$(free_port)"
#   srv_on_exit pgfold_stop
#   PGFOLD_LOG=$SRV_WORKDIR/pgfold.log pgfold_start --listen 127.0.0.1:$p --backend 127.0.0.1:$pg_port ...
#   srv_on_exit pgfold_stop @raw                 # a second instance, by name
#   PGFOLD_LOG=$SRV_WORKDIR/raw.log pgfold_start @raw --listen ... --admin ... --set analysis=off
#
# pg_start gives: role app (password 'app'; host auth trust unless
# PG_AUTH_HOST=md5|scram-sha-256|...), database shop owned by app, extension
# pg_stat_statements (app may read all of it and reset it), max_connections
# 200, fsync off, a unix socket in DIR.  As root, initdb/postgres run as the
# `postgres` user, so DIR's parents must be traversable by it (srv_workdir
# makes its directory 0755).
#
# Functions that start a background process (redis_start, pgfold_start) set
# globals (REDIS_PID, PGFOLD_PID, ...) and must not run inside $(...).
# Tunables: SRV_TIMEOUT (default deadline, s), SRV_KEEP=1 (keep SRV_WORKDIR),
# PGFOLD_BIN, PGFOLD_LOG (file for pgfold's output; default: inherit).

if [[ -n "${_PGFOLD_SERVERS_SH:-}" ]]; then
	return 0
fi
_PGFOLD_SERVERS_SH=1

SRV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRV_PYTHON=/usr/bin/python3
SRV_TIMEOUT="${SRV_TIMEOUT:-60}"
PGFOLD_BIN="${PGFOLD_BIN:-$SRV_ROOT/build/pgfold}"
SRV_CLEANUP=()

srv_log() { printf '[servers] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- ports, pids

# A free TCP port on 127.0.0.1, chosen by the kernel.
free_port() {
	"$SRV_PYTHON" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_is_free PORT [HOST]: true when PORT can be bound on HOST (127.0.0.1).
port_is_free() {
	"$SRV_PYTHON" - "$1" "${2:-127.0.0.1}" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind((sys.argv[2], int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# True while PID runs (a zombie counts as gone).
srv_pid_alive() {
	local pid=$1 state=
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r "/proc/$pid/stat" ]]; then
		state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
		[[ "$state" != Z ]] || return 1
	fi
	return 0
}

# srv_stop_pid PID NAME [TIMEOUT]: SIGTERM, wait up to TIMEOUT s, then SIGKILL.
# Returns the process's exit status when it is a child of this shell, else 0.
srv_stop_pid() {
	local pid=$1 name=$2 timeout=${3:-30} deadline rc=0
	[[ -n "$pid" ]] || return 0
	if srv_pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		deadline=$((SECONDS + timeout))
		while srv_pid_alive "$pid" && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if srv_pid_alive "$pid"; then
			srv_log "$name (pid $pid) still running after ${timeout}s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || rc=$?
	# 127: not a child of this shell; -1: bash lost the status (seen when an
	# earlier `wait` for it was interrupted by a trapped signal).  Unknown.
	if ((rc == 127 || rc == -1)); then
		rc=0
	fi
	return "$rc"
}

# ---------------------------------------------------------------- waits

# wait_http URL [TIMEOUT] [PID]: until URL answers 2xx; fails at the deadline
# or as soon as PID (the server) exits.
wait_http() {
	local url=$1 timeout=${2:-$SRV_TIMEOUT} pid=${3:-} deadline
	deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if command -v curl >/dev/null 2>&1; then
			curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
		else
			"$SRV_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
				"$url" 2>/dev/null && return 0
		fi
		if [[ -n "$pid" ]] && ! srv_pid_alive "$pid"; then
			srv_log "process $pid exited while waiting for $url"
			return 1
		fi
		sleep 0.1
	done
	srv_log "timed out after ${timeout}s waiting for $url"
	return 1
}

# wait_tcp HOST PORT [TIMEOUT] [PID]: until a TCP connect succeeds.
wait_tcp() {
	local host=$1 port=$2 timeout=${3:-$SRV_TIMEOUT} pid=${4:-} deadline
	deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
			return 0
		fi
		if [[ -n "$pid" ]] && ! srv_pid_alive "$pid"; then
			srv_log "process $pid exited while waiting for $host:$port"
			return 1
		fi
		sleep 0.1
	done
	srv_log "timed out after ${timeout}s waiting for $host:$port"
	return 1
}

# ---------------------------------------------------------------- cleanup

# srv_on_exit CMD [ARGS...]: run at exit, in reverse order of registration.
srv_on_exit() {
	local cmd
	printf -v cmd '%q ' "$@"
	SRV_CLEANUP+=("$cmd")
}

# Run (and forget) every registered cleanup, last registered first.
srv_cleanup() {
	local i
	for ((i = ${#SRV_CLEANUP[@]} - 1; i >= 0; i--)); do
		eval "${SRV_CLEANUP[i]}" || true
	done
	SRV_CLEANUP=()
}

_srv_exit_trap() {
	local rc=$?
	set +e
	trap - INT TERM HUP
	srv_cleanup
	exit "$rc"
}

# EXIT runs the cleanups; INT/TERM/HUP exit with 130/143/129 (and so run them).
srv_install_traps() {
	trap _srv_exit_trap EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
}

# srv_workdir PREFIX: SRV_WORKDIR=/tmp/PREFIX.XXXXXX (mode 0755), removed at
# exit unless SRV_KEEP=1.
srv_workdir() {
	SRV_WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/${1:-pgfold}.XXXXXX")"
	chmod 755 "$SRV_WORKDIR"
	if [[ "${SRV_KEEP:-0}" == 1 ]]; then
		srv_log "keeping $SRV_WORKDIR"
	else
		srv_on_exit rm -rf "$SRV_WORKDIR"
	fi
}

# ---------------------------------------------------------------- PostgreSQL

# Directory of initdb/pg_ctl/postgres (Debian keeps them off PATH).
pg_bindir() {
	local d
	for d in "${PG_BINDIR:-}" /usr/lib/postgresql/15/bin; do
		if [[ -n "$d" && -x "$d/initdb" ]]; then
			printf '%s\n' "$d"
			return 0
		fi
	done
	d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
	if [[ -n "$d" && -x "$d/initdb" ]]; then
		printf '%s\n' "$d"
		return 0
	fi
	d="$(command -v initdb 2>/dev/null || true)"
	if [[ -n "$d" ]]; then
		dirname "$d"
		return 0
	fi
	srv_log "initdb not found (install postgresql-15)"
	return 1
}

# Run a command as the postgres user when root (initdb/postgres refuse root).
_pg_as() {
	if ((EUID == 0)); then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# pg_start DIR PORT [CONF_LINE...]: initdb DIR/data and start PostgreSQL on
# 127.0.0.1:PORT and a unix socket in DIR; extra postgresql.conf lines may
# follow.  Log: DIR/postgres.log.  Sets PG_DIR and PG_PORT.
pg_start() {
	local dir=$1 port=$2 bin deadline line
	shift 2
	bin="$(pg_bindir)" || return 1
	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
	if ((EUID == 0)); then
		chown postgres: "$dir"
		chmod 700 "$dir"
		if ! runuser -u postgres -- test -w "$dir"; then
			srv_log "user postgres cannot write $dir: its parent directories must be traversable (chmod 755)"
			return 1
		fi
	fi
	if ! (cd "$dir" && _pg_as "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
		--auth-host="${PG_AUTH_HOST:-trust}" -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1); then
		srv_log "initdb failed:"
		cat "$dir/initdb.log" >&2
		return 1
	fi
	{
		printf '\n# pgfold scripts/servers.sh\n'
		printf "listen_addresses = '127.0.0.1'\n"
		printf 'port = %s\n' "$port"
		printf "unix_socket_directories = '%s'\n" "$dir"
		printf 'max_connections = 200\n'
		printf "shared_preload_libraries = 'pg_stat_statements'\n"
		printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n'
		printf "log_min_messages = warning\nlog_line_prefix = '%%m [%%p] %%q%%u@%%d '\n"
		for line in "$@"; do
			printf '%s\n' "$line"
		done
	} >>"$dir/data/postgresql.conf"
	if ! (cd "$dir" && _pg_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$SRV_TIMEOUT" \
		start >/dev/null 2>&1); then
		srv_log "PostgreSQL failed to start on port $port:"
		tail -n 20 "$dir/postgres.log" >&2 || true
		pg_stop "$dir" || true
		return 1
	fi
	deadline=$((SECONDS + SRV_TIMEOUT))
	until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres -t 2; do
		if ((SECONDS >= deadline)); then
			srv_log "PostgreSQL on port $port not ready after ${SRV_TIMEOUT}s"
			tail -n 20 "$dir/postgres.log" >&2 || true
			pg_stop "$dir" || true
			return 1
		fi
		sleep 0.1
	done
	"$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres >/dev/null <<-'SQL' || {
		CREATE ROLE app LOGIN PASSWORD 'app';
		CREATE DATABASE shop OWNER app;
	SQL
		srv_log "setting up role app / database shop failed"
		pg_stop "$dir" || true
		return 1
	}
	"$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d shop >/dev/null <<-'SQL' || {
		CREATE EXTENSION pg_stat_statements;
		GRANT pg_read_all_stats TO app;
		GRANT EXECUTE ON FUNCTION pg_stat_statements_reset(oid, oid, bigint) TO app;
	SQL
		srv_log "setting up role app / database shop failed"
		pg_stop "$dir" || true
		return 1
	}
	PG_DIR="$dir"
	PG_PORT="$port"
	srv_log "PostgreSQL ready on 127.0.0.1:$port (socket dir $dir)"
}

# pg_stop DIR: fast shutdown (immediate if that times out).  Idempotent.
pg_stop() {
	local dir=$1 bin
	[[ -f "$dir/data/postmaster.pid" ]] || return 0
	bin="$(pg_bindir)" || return 1
	(cd "$dir" && _pg_as "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1) ||
		(cd "$dir" && _pg_as "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1) ||
		{
			srv_log "could not stop PostgreSQL in $dir"
			return 1
		}
}

# ---------------------------------------------------------------- Redis

# redis_start DIR PORT: redis-server on 127.0.0.1:PORT, no persistence, in
# the background (pid in DIR/redis.pid, log DIR/redis.log).  Sets REDIS_PID
# and REDIS_PORT.  Not inside $(...).
redis_start() {
	local dir=$1 port=$2 deadline
	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
		--dir "$dir" --logfile "$dir/redis.log" </dev/null >>"$dir/redis.out" 2>&1 &
	REDIS_PID=$!
	REDIS_PORT=$port
	echo "$REDIS_PID" >"$dir/redis.pid"
	deadline=$((SECONDS + SRV_TIMEOUT))
	until [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)" == PONG ]]; do
		if ! srv_pid_alive "$REDIS_PID" || ((SECONDS >= deadline)); then
			srv_log "Redis failed to start on port $port:"
			tail -n 20 "$dir/redis.log" "$dir/redis.out" >&2 2>/dev/null || true
			return 1
		fi
		sleep 0.1
	done
	srv_log "Redis ready on 127.0.0.1:$port"
}

# redis_stop DIR: stop the Redis started by redis_start DIR.  Idempotent.
redis_stop() {
	local dir=$1 pid
	[[ -f "$dir/redis.pid" ]] || return 0
	pid="$(cat "$dir/redis.pid")"
	srv_stop_pid "$pid" redis 15 || true
	rm -f "$dir/redis.pid"
}

# ---------------------------------------------------------------- pgfold

# Value of a pgfold address setting (listen|admin) as the command line
# ARGS... would give it: --KEY X, --KEY=X, --set [pgfold.]KEY=X, else the
# [pgfold] section of -c FILE, else empty.
_pgfold_setting() {
	local key=$1 val='' conf='' a
	shift
	while (($#)); do
		a=$1
		case "$a" in
		-c | --config) conf=${2:-}; shift ;;
		-c*) conf=${a#-c} ;;
		--config=*) conf=${a#--config=} ;;
		"--$key") val=${2:-}; shift ;;
		"--$key="*) val=${a#--"$key"=} ;;
		--set)
			case "${2:-}" in
			"$key="* | "pgfold.$key="*) val=${2#*=} ;;
			esac
			shift
			;;
		--set=*)
			case "${a#--set=}" in
			"$key="* | "pgfold.$key="*) val=${a#*=} ; val=${val#*=} ;;
			esac
			;;
		esac
		shift || true
	done
	if [[ -z "$val" && -n "$conf" && -r "$conf" ]]; then
		val="$("$SRV_PYTHON" - "$conf" "$key" <<'PY' 2>/dev/null || true
import configparser, sys
cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), strict=False, interpolation=None)
cp.read(sys.argv[1])
if cp.has_option("pgfold", sys.argv[2]):
    print(cp.get("pgfold", sys.argv[2]).strip().strip('"'))
PY
)"
	fi
	printf '%s\n' "$val"
}

# "HOST:PORT" (or "[v6]:PORT") -> "HOST PORT" with wildcard hosts made loopback.
_srv_split_addr() {
	local addr=$1 host port
	port=${addr##*:}
	host=${addr%:*}
	host=${host#[}
	host=${host%]}
	case "$host" in
	"" | "*" | 0.0.0.0) host=127.0.0.1 ;;
	::) host=::1 ;;
	esac
	printf '%s %s\n' "$host" "$port"
}

# Several pgfold instances can run at once, each under a name: pass @NAME as
# the first argument of pgfold_start / pgfold_stop (without it the name is
# "default", so one-instance callers need no change).  Each instance needs its
# own listen and admin addresses.  Per name: PGFOLD_PIDS[NAME],
# PGFOLD_LISTEN_PORTS[NAME], PGFOLD_ADMIN_URLS[NAME].
declare -gA PGFOLD_PIDS=() PGFOLD_LISTEN_PORTS=() PGFOLD_ADMIN_URLS=()

# pgfold_start [@NAME] ARGS...: start build/pgfold ARGS in the background and
# wait until GET /health answers 200 on its admin port (or, with --admin off,
# until its listen port accepts).  Sets PGFOLD_PID, PGFOLD_LISTEN_HOST/PORT and
# PGFOLD_ADMIN_URL ("" when admin is off) for the instance just started, and
# the per-name arrays above.  Output goes to $PGFOLD_LOG if set (one file per
# instance: PGFOLD_LOG=... pgfold_start @NAME ...).  Not inside $(...).
pgfold_start() {
	local name=default listen admin host port
	if [[ "${1:-}" == @* ]]; then
		name=${1#@}
		shift
	fi
	if [[ -z "$name" ]]; then
		srv_log "pgfold_start: empty instance name"
		return 1
	fi
	if srv_pid_alive "${PGFOLD_PIDS[$name]:-}"; then
		srv_log "pgfold instance $name already running (pid ${PGFOLD_PIDS[$name]})"
		return 1
	fi
	if [[ ! -x "$PGFOLD_BIN" ]]; then
		srv_log "$PGFOLD_BIN not built (run make)"
		return 1
	fi
	listen="$(_pgfold_setting listen "$@")"
	admin="$(_pgfold_setting admin "$@")"
	read -r PGFOLD_LISTEN_HOST PGFOLD_LISTEN_PORT < <(_srv_split_addr "${listen:-127.0.0.1:6432}")
	if [[ -n "${PGFOLD_LOG:-}" ]]; then
		"$PGFOLD_BIN" "$@" </dev/null >>"$PGFOLD_LOG" 2>&1 &
	else
		"$PGFOLD_BIN" "$@" </dev/null &
	fi
	PGFOLD_PID=$!
	PGFOLD_PIDS[$name]=$PGFOLD_PID
	PGFOLD_LISTEN_PORTS[$name]=$PGFOLD_LISTEN_PORT
	if [[ "${admin:-127.0.0.1:6433}" == off ]]; then
		PGFOLD_ADMIN_URL=
		PGFOLD_ADMIN_URLS[$name]=
		wait_tcp "$PGFOLD_LISTEN_HOST" "$PGFOLD_LISTEN_PORT" "$SRV_TIMEOUT" "$PGFOLD_PID" || return 1
	else
		read -r host port < <(_srv_split_addr "${admin:-127.0.0.1:6433}")
		[[ "$host" == *:* ]] && host="[$host]"
		PGFOLD_ADMIN_URL="http://$host:$port"
		PGFOLD_ADMIN_URLS[$name]=$PGFOLD_ADMIN_URL
		wait_http "$PGFOLD_ADMIN_URL/health" "$SRV_TIMEOUT" "$PGFOLD_PID" || return 1
	fi
	if [[ "$name" == default ]]; then
		srv_log "pgfold ready on $PGFOLD_LISTEN_HOST:$PGFOLD_LISTEN_PORT (pid $PGFOLD_PID)"
	else
		srv_log "pgfold (instance $name) ready on $PGFOLD_LISTEN_HOST:$PGFOLD_LISTEN_PORT (pid $PGFOLD_PID)"
	fi
}

# pgfold_stop [@NAME] [TIMEOUT]: SIGTERM the pgfold instance NAME (default
# "default") from pgfold_start; returns its exit status (0 for a clean
# shutdown).  Idempotent.  Clears PGFOLD_PID when it was that instance's.
pgfold_stop() {
	local name=default rc=0 pid label=pgfold
	if [[ "${1:-}" == @* ]]; then
		name=${1#@}
		shift
	fi
	[[ "$name" == default ]] || label="pgfold (instance $name)"
	pid=${PGFOLD_PIDS[$name]:-}
	# A caller may have cleared PGFOLD_PIDS but still hold PGFOLD_PID.
	if [[ -z "$pid" && "$name" == default ]]; then
		pid=${PGFOLD_PID:-}
	fi
	[[ -n "$pid" ]] || return 0
	srv_stop_pid "$pid" "$label" "${1:-30}" || rc=$?
	unset 'PGFOLD_PIDS[$name]'
	if [[ "${PGFOLD_PID:-}" == "$pid" ]]; then
		PGFOLD_PID=
	fi
	return "$rc"
}
