#!/usr/bin/env bash
# run_nplusone_bench.sh — what `make bench-nplusone` does (and `make bench`
# too): lazy loading (the N+1) with and without pgfold's N+1 batching, over
# an emulated network between the application's side and PostgreSQL, with
# SQLAlchemy 1.4 + psycopg2 (simple Query), psycopg 3 (server-side binding:
# extended protocol) and node-postgres (extended protocol), written into
# BENCHMARKS.md between <!-- bench:nplusone --> and <!-- /bench:nplusone -->
# (other sections of the file are kept).
#
# The kernel has no netem, so build/bench/delay_relay (bench/delay_relay.c)
# emulates the network: a TCP relay on loopback delaying every chunk by
# NPLUS_DELAY_US in each direction.  The application sits on pgfold's side
# of the delayed link:
#
#   app -> relay(delay) -> PostgreSQL                    (a), (d)
#   app -> pgfold(rewrite) -> relay(delay) -> PostgreSQL  (b)
#   app -> PostgreSQL                                     (c)
#   app -> pgfold(rewrite) -> PostgreSQL                  (e)
#
# It starts its own PostgreSQL 15 (scripts/servers.sh; pg_stat_statements
# with track_planning on), two relays (delay NPLUS_DELAY_US and delay 0), two
# pgfold instances with nplusone.mode=rewrite (one behind the delaying relay,
# one straight on PostgreSQL), seeds a blog schema (NPLUS_USERS users with
# NPLUS_POSTS posts each) and pgbench -i -s 1, then:
#   1. calibrates the relay: pgbench -n -S -M simple -c 1 (one round trip per
#      transaction) direct, through the 0-delay relay and through the delaying
#      relay, alternating, NPLUS_CAL_ROUNDS rounds of NPLUS_CAL_SECONDS s;
#   2. runs bench/nplusone_workload.py with Debian's /usr/bin/python3
#      (SQLAlchemy 1.4 + psycopg2): (a) lazy loading direct over the delayed
#      link, (b) lazy loading through pgfold over it, (c) lazy loading direct
#      with no delay, (d) selectinload(User.posts) direct over the delayed
#      link, and (e) lazy loading through the undelayed pgfold; and the same
#      lazy load written by hand (a), (b), (c), (e) with psycopg 3 (Debian's
#      python3-psycopg, in the same process) and with node-postgres
#      (tests/node/node_modules; bench/nplusone_node.js, a node coprocess);
#      all targets in one rotation: each warmed up (pgfold learns the
#      pattern), then NPLUS_ROUNDS alternating rounds, medians reported;
#      then, without emulated latency, the backend's work from
#      pg_stat_statements for every (c) and (e);
#   3. checks that every load returned the same data as (a) and that both
#      pgfold instances served children from batches (GET /nplusone
#      children_served > 0), else fails.
# Goals (issue 4), per client stack: (b)/(c) <= 1.2 and (a)/(b) >= 3; a
# missed goal is reported as missed in BENCHMARKS.md, not an error.
# Everything it started is stopped on exit (trap), whatever happens.
#
# Environment: NPLUS_USERS (200), NPLUS_POSTS (5), NPLUS_ROUNDS (5),
# NPLUS_WARMUP (2), NPLUS_DELAY_US (500), NPLUS_CAL_SECONDS (3),
# NPLUS_CAL_ROUNDS (3; 0 skips the calibration), BENCH_OUT (BENCHMARKS.md),
# BENCH_SKIP_DEPS=1, BENCH_SKIP_BUILD=1, SRV_KEEP=1 (keep the temp dir),
# PGFOLD_BIN (another pgfold binary; BENCHMARKS.md then says so, with
# NPLUS_PGFOLD_NOTE, free text, describing it),
# DELAY_RELAY_SPIN_US (read by the relay: how early it wakes up and spins
# before a deadline, default 50).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/servers.sh
source "$ROOT/scripts/servers.sh"

NPLUS_USERS="${NPLUS_USERS:-200}"
NPLUS_POSTS="${NPLUS_POSTS:-5}"
NPLUS_ROUNDS="${NPLUS_ROUNDS:-5}"
NPLUS_WARMUP="${NPLUS_WARMUP:-2}"
NPLUS_DELAY_US="${NPLUS_DELAY_US:-500}"
NPLUS_CAL_SECONDS="${NPLUS_CAL_SECONDS:-3}"
NPLUS_CAL_ROUNDS="${NPLUS_CAL_ROUNDS:-3}"
BENCH_OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
PY=/usr/bin/python3
RELAY_BIN="$ROOT/build/bench/delay_relay"
NODE_MODULES="$ROOT/tests/node/node_modules"

say() { printf 'bench-nplusone: %s\n' "$*" >&2; }
for v in NPLUS_USERS NPLUS_POSTS NPLUS_ROUNDS NPLUS_DELAY_US NPLUS_CAL_SECONDS; do
	if ! [[ "${!v}" =~ ^[0-9]+$ ]] || ((${!v} == 0)); then
		say "$v must be a positive integer (is '${!v}')"
		exit 2
	fi
done
for v in NPLUS_WARMUP NPLUS_CAL_ROUNDS; do
	if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then
		say "$v must be a non-negative integer (is '${!v}')"
		exit 2
	fi
done
if ((NPLUS_WARMUP < 1)); then
	say "NPLUS_WARMUP must be at least 1: pgfold learns the N+1 pattern in the warm-up"
	exit 2
fi

if [[ "${BENCH_SKIP_DEPS:-0}" != 1 ]]; then
	"$ROOT/scripts/install-deps.sh" >&2
fi
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
	say "make"
	make -j"$(nproc)" all build/bench/delay_relay >&2
fi
for f in "$PGFOLD_BIN" "$RELAY_BIN"; do
	[[ -x "$f" ]] || {
		say "$f not built"
		exit 1
	}
done
command -v node >/dev/null 2>&1 || {
	say "node not found (scripts/install-deps.sh installs it)"
	exit 1
}
[[ -d "$NODE_MODULES/pg" ]] || {
	say "node-postgres not installed in $NODE_MODULES (scripts/install-deps.sh: npm install in tests/node)"
	exit 1
}
"$PY" -c 'import psycopg' 2>/dev/null || {
	say "psycopg 3 not importable by $PY (python3-psycopg; scripts/install-deps.sh)"
	exit 1
}

BIN="$(pg_bindir)"
PGBENCH="$BIN/pgbench"
PSQL="$BIN/psql"

srv_install_traps
srv_workdir pgfold-nplusone
W="$SRV_WORKDIR"

# ---------------------------------------------------------------- servers

PG_TCP="$(free_port)"
srv_on_exit pg_stop "$W/pg"
pg_start "$W/pg" "$PG_TCP" "shared_buffers = 128MB" "autovacuum = off" "pg_stat_statements.track_planning = on"

# relay_start NAME DELAY_US: a delay_relay in front of PostgreSQL; sets
# RELAY_PORT[NAME] and RELAY_PID[NAME]; log $W/relay-NAME.log.
declare -A RELAY_PORT RELAY_PID
relay_start() {
	local name=$1 delay=$2 port
	port="$(free_port)"
	"$RELAY_BIN" "$port" "127.0.0.1:$PG_TCP" "$delay" </dev/null 2>>"$W/relay-$name.log" &
	RELAY_PID[$name]=$!
	RELAY_PORT[$name]=$port
	srv_on_exit srv_stop_pid "${RELAY_PID[$name]}" "delay_relay $name" 10
	if ! wait_tcp 127.0.0.1 "$port" "$SRV_TIMEOUT" "${RELAY_PID[$name]}"; then
		cat "$W/relay-$name.log" >&2 || true
		exit 1
	fi
	say "delay_relay $name: 127.0.0.1:$port -> PostgreSQL, ${delay} µs each way (pid ${RELAY_PID[$name]})"
}
relay_start delay "$NPLUS_DELAY_US"
relay_start zero 0

# nplusone_pgfold_start NAME BACKEND_PORT: pgfold (nplusone.mode=rewrite)
# instance NAME in front of 127.0.0.1:BACKEND_PORT; sets PF_PORT[NAME].
declare -A PF_PORT
nplusone_pgfold_start() {
	local name=$1 backend=$2 admin_port
	PF_PORT[$name]="$(free_port)"
	admin_port="$(free_port)"
	srv_on_exit pgfold_stop "@$name"
	if ! PGFOLD_LOG="$W/$name.log" pgfold_start "@$name" --listen "127.0.0.1:${PF_PORT[$name]}" \
		--backend "127.0.0.1:$backend" --admin "127.0.0.1:$admin_port" --redis off \
		--set nplusone.mode=rewrite; then
		tail -n 30 "$W/$name.log" >&2 || true
		exit 1
	fi
}
nplusone_pgfold_start pgfold-delay "${RELAY_PORT[delay]}"
nplusone_pgfold_start pgfold-local "$PG_TCP"

# ---------------------------------------------------------------- data

export PGPASSWORD=app
say "seeding $NPLUS_USERS users x $NPLUS_POSTS posts; pgbench -i -s 1"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -v users="$NPLUS_USERS" -v ppu="$NPLUS_POSTS" \
	-h 127.0.0.1 -p "$PG_TCP" -U app -d shop >"$W/seed.log" 2>&1 <<-'SQL' || {
	CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
	CREATE TABLE posts (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users, title text NOT NULL,
	                    body text NOT NULL, created_at timestamp NOT NULL);
	CREATE INDEX posts_user_id_idx ON posts (user_id);
	INSERT INTO users SELECT g, 'user ' || g, 'user' || g || '@example.com' FROM generate_series(1, :users) g;
	INSERT INTO posts SELECT (u - 1) * :ppu + p, u, 'post ' || p || ' of user ' || u,
	       repeat('lorem ipsum dolor sit amet ', 1 + (u + p) % 8),
	       timestamp '2024-01-01' + ((u - 1) * :ppu + p) * interval '17 minutes'
	  FROM generate_series(1, :users) u, generate_series(1, :ppu) p;
	VACUUM ANALYZE users, posts;
SQL
	cat "$W/seed.log" >&2
	exit 1
}
"$PGBENCH" -i -q -s 1 -h 127.0.0.1 -p "$PG_TCP" -U app shop >"$W/pgbench-init.log" 2>&1 || {
	cat "$W/pgbench-init.log" >&2
	exit 1
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- 1. relay calibration

CAL="$W/calibration.tsv"
: >"$CAL"
# pgbench_latency PORT -> mean latency in ms (one round trip per transaction)
pgbench_latency() {
	local out lat
	out="$("$PGBENCH" -n -S -M simple -c 1 -j 1 -T "$NPLUS_CAL_SECONDS" -h 127.0.0.1 -p "$1" -U app shop 2>&1 </dev/null)" || {
		say "pgbench on port $1 failed:"
		printf '%s\n' "$out" >&2
		return 1
	}
	lat="$(awk '/^latency average = /{print $4; exit}' <<<"$out")"
	[[ -n "$lat" ]] || {
		say "could not parse pgbench output:"
		printf '%s\n' "$out" >&2
		return 1
	}
	printf '%s\n' "$lat"
}
cal_targets=(direct zero delay)
declare -A CAL_PORT=([direct]="$PG_TCP" [zero]="${RELAY_PORT[zero]}" [delay]="${RELAY_PORT[delay]}")
if ((NPLUS_CAL_ROUNDS > 0)); then
	say "relay calibration: $NPLUS_CAL_ROUNDS rounds x 3 x ${NPLUS_CAL_SECONDS}s"
	for ((r = 0; r < NPLUS_CAL_ROUNDS; r++)); do
		for ((i = 0; i < 3; i++)); do
			t=${cal_targets[(r + i) % 3]}
			lat="$(pgbench_latency "${CAL_PORT[$t]}")"
			printf '%s\t%s\t%s\n' "$((r + 1))" "$t" "$lat" >>"$CAL"
			say "calibration round $((r + 1)) $t: $lat ms per round trip"
		done
	done
fi

# ---------------------------------------------------------------- 2. the workload

url() { printf 'postgresql+psycopg2://app:app@127.0.0.1:%s/shop' "$1"; }
# psycopg 3 and node-postgres take a libpq-style URL
lurl() { printf 'postgresql://app:app@127.0.0.1:%s/shop' "$1"; }
RESULTS="$W/nplusone.json"
say "workload: $NPLUS_WARMUP warm-up + $NPLUS_ROUNDS timed loads per target"
"$PY" "$ROOT/bench/nplusone_workload.py" \
	--target lazy-delay lazy "$(url "${RELAY_PORT[delay]}")" \
	--target lazy-pgfold-delay lazy "$(url "${PF_PORT[pgfold-delay]}")" \
	--target lazy-nodelay lazy "$(url "$PG_TCP")" \
	--target selectin-delay selectin "$(url "${RELAY_PORT[delay]}")" \
	--target lazy-pgfold-nodelay lazy "$(url "${PF_PORT[pgfold-local]}")" \
	--target pg3-delay psycopg3 "$(lurl "${RELAY_PORT[delay]}")" \
	--target pg3-pgfold-delay psycopg3 "$(lurl "${PF_PORT[pgfold-delay]}")" \
	--target pg3-nodelay psycopg3 "$(lurl "$PG_TCP")" \
	--target pg3-pgfold-nodelay psycopg3 "$(lurl "${PF_PORT[pgfold-local]}")" \
	--target node-delay node "$(lurl "${RELAY_PORT[delay]}")" \
	--target node-pgfold-delay node "$(lurl "${PF_PORT[pgfold-delay]}")" \
	--target node-nodelay node "$(lurl "$PG_TCP")" \
	--target node-pgfold-nodelay node "$(lurl "${PF_PORT[pgfold-local]}")" \
	--cpu lazy-nodelay --cpu lazy-pgfold-nodelay --cpu pg3-nodelay --cpu pg3-pgfold-nodelay \
	--cpu node-nodelay --cpu node-pgfold-nodelay \
	--node-modules "$NODE_MODULES" \
	--stats-url "postgresql://app:app@127.0.0.1:$PG_TCP/shop" \
	--rounds "$NPLUS_ROUNDS" --warmup "$NPLUS_WARMUP" --out "$RESULTS" || {
	say "the workload failed; the last lines of each pgfold's log:"
	for name in pgfold-delay pgfold-local; do
		tail -n 5 "$W/$name.log" | cut -c1-300 | sed "s/^/  $name: /" >&2 || true
	done
	exit 1
}

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- 3. did pgfold batch?

declare -A NP_JSON
for name in pgfold-delay pgfold-local; do
	f="$W/$name-nplusone.json"
	"$PY" -c 'import sys, urllib.request; open(sys.argv[2], "wb").write(urllib.request.urlopen(sys.argv[1], timeout=5).read())' \
		"${PGFOLD_ADMIN_URLS[$name]}/nplusone" "$f" || {
		say "GET /nplusone on $name failed"
		exit 1
	}
	NP_JSON[$name]="$f"
	served="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["totals"]["children_served"])' "$f")"
	say "$name: children_served $served"
	if ! [[ "$served" =~ ^[0-9]+$ ]] || ((served == 0)); then
		say "$name served no child from a batch: pgfold did not batch; its /nplusone and log:"
		cat "$f" >&2
		tail -n 30 "$W/$name.log" >&2 || true
		exit 1
	fi
done

# Stop the relays now, so that they report their timing (on stderr, in their logs).
for name in delay zero; do
	srv_stop_pid "${RELAY_PID[$name]}" "delay_relay $name" 10 || true
done
relay_stats_delay="$(grep -h 'connections;' "$W/relay-delay.log" | tail -n 1 || true)"
relay_stats_zero="$(grep -h 'connections;' "$W/relay-zero.log" | tail -n 1 || true)"

# ---------------------------------------------------------------- report

pg_version="$("$BIN/postgres" --version)"
pgfold_version="$(timeout 5 "$PGFOLD_BIN" --version 2>/dev/null | head -n 1 || true)"
pgfold_version="${pgfold_version#pgfold }"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
if [[ "$(realpath "$PGFOLD_BIN")" != "$(realpath "$ROOT/build/pgfold" 2>/dev/null || true)" ]]; then
	pgfold_version="$pgfold_version (PGFOLD_BIN=$PGFOLD_BIN, not this checkout's build/pgfold${NPLUS_PGFOLD_NOTE:+: $NPLUS_PGFOLD_NOTE})"
elif [[ -n "$commit" ]]; then
	pgfold_version="$pgfold_version (commit $commit$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ', uncommitted changes'))"
fi
model="$(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
mem="$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo 2>/dev/null || true)"
env_prefix=""
declare -A defaults=([NPLUS_USERS]=200 [NPLUS_POSTS]=5 [NPLUS_ROUNDS]=5 [NPLUS_WARMUP]=2 [NPLUS_DELAY_US]=500
	[NPLUS_CAL_SECONDS]=3 [NPLUS_CAL_ROUNDS]=3)
for v in NPLUS_USERS NPLUS_POSTS NPLUS_ROUNDS NPLUS_WARMUP NPLUS_DELAY_US NPLUS_CAL_SECONDS NPLUS_CAL_ROUNDS; do
	if [[ "${!v}" != "${defaults[$v]}" ]]; then
		env_prefix+="$v=${!v} "
	fi
done
[[ -n "${DELAY_RELAY_SPIN_US:-}" ]] && env_prefix+="DELAY_RELAY_SPIN_US=$DELAY_RELAY_SPIN_US "
if [[ "$(realpath "$PGFOLD_BIN")" != "$(realpath "$ROOT/build/pgfold" 2>/dev/null || true)" ]]; then
	env_prefix+="PGFOLD_BIN=$PGFOLD_BIN "
fi

export NB_DATE NB_MACHINE NB_LOAD_BEFORE NB_LOAD_AFTER NB_VERSIONS NB_COMMAND NB_DELAY_US NB_CAL_SECONDS \
	NB_RELAY_DELAY NB_RELAY_ZERO NB_SPIN
NB_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
NB_MACHINE="$(nproc) CPUs, ${model:-unknown CPU}, ${mem}, Linux $(uname -r)"
NB_LOAD_BEFORE="$load_before"
NB_LOAD_AFTER="$load_after"
NB_VERSIONS="${pg_version}; pgfold ${pgfold_version:-unknown}"
NB_COMMAND="${env_prefix}make bench-nplusone"
NB_DELAY_US="$NPLUS_DELAY_US"
NB_CAL_SECONDS="$NPLUS_CAL_SECONDS"
NB_RELAY_DELAY="$relay_stats_delay"
NB_RELAY_ZERO="$relay_stats_zero"
NB_SPIN="${DELAY_RELAY_SPIN_US:-50}"

SECTION="$W/section.md"
"$PY" - "$RESULTS" "$CAL" "${NP_JSON[pgfold-delay]}" "${NP_JSON[pgfold-local]}" "$SECTION" <<'PY'
import json, os, re, statistics, sys

res = json.load(open(sys.argv[1]))
cal_rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
np_delay, np_local = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
E = os.environ
delay_us = int(E["NB_DELAY_US"])
T = {k: [x * 1000 for x in v] for k, v in res["times"].items()}
med = {k: statistics.median(v) for k, v in T.items()}
v = res["versions"]

L = []
L.append("<!-- bench:nplusone -->")
L.append("## N+1 batching over an emulated network (bench/run_nplusone_bench.sh)")
L.append("")
L.append("Generated by `make bench-nplusone` (also part of `make bench`); do not edit this section by hand.")
L.append("")
L.append("- Date: %s" % E["NB_DATE"])
L.append("- Machine: %s; load average (1/5/15 min) %s before the measurements, %s after "
         "(everything — application, pgfold, relay, PostgreSQL — shares these CPUs, and anything else "
         "running on the machine skews the numbers)" % (E["NB_MACHINE"], E["NB_LOAD_BEFORE"], E["NB_LOAD_AFTER"]))
libpq = "%d.%d" % (v["libpq"] // 10000, v["libpq"] % 100) if "libpq" in v else "?"
L.append("- Versions: %s; Python %s (/usr/bin/python3), SQLAlchemy %s, psycopg2 %s, psycopg %s (%s implementation, "
         "libpq %s); Node.js %s, node-postgres (npm pg) %s"
         % (E["NB_VERSIONS"], v["python"], v["sqlalchemy"], v["psycopg2"], v.get("psycopg", "?"),
            v.get("psycopg_impl", "?"), libpq, v.get("node", "?"), v.get("pg", "?")))
L.append("- Command: `%s` (bench/run_nplusone_bench.sh)" % E["NB_COMMAND"])
L.append("- Network: no netem in this kernel, so `build/bench/delay_relay` (bench/delay_relay.c), a TCP relay "
         "on loopback, delays every chunk by %d µs in each direction (+%.1f ms per round trip) between the "
         "application's side and PostgreSQL: app → pgfold → [delay] → PostgreSQL" % (delay_us, 2 * delay_us / 1000))
L.append("- Data: %d users × %d posts (%d posts); workload: one new SQLAlchemy 1.4 `Session`, "
         "`select(User).order_by(User.id)`, then every `user.posts` (relationship `lazy=\"select\"`, "
         "`order_by=Post.id`): BEGIN + 1 + %d statements + ROLLBACK per load direct, as psycopg2 simple Queries "
         "with inline literals; selectinload: `.options(selectinload(User.posts))`"
         % (res["users"], res["posts"] // max(res["users"], 1), res["posts"], res["users"]))
L.append("- Extended protocol: the same lazy load written by hand, `SELECT id, name, email FROM users ORDER BY id`, "
         "then per user `SELECT id, user_id, title, body, created_at FROM posts WHERE user_id = $1 ORDER BY id` with "
         "the user's id bound (one statement per Sync; the same columns as SQLAlchemy's, so the same data): "
         "psycopg 3 `conn.execute(sql, (uid,))` on a default connection (server-side binding, a binary int2 "
         "parameter, named prepared statements after psycopg's prepare_threshold of 5; BEGIN + 1 + %d + ROLLBACK "
         "per load, in the workload's Python process); node-postgres `client.query(sql, [id])` on a plain "
         "`Client` (autocommit; unnamed statements, an untyped text parameter; 1 + %d per load), in a node "
         "coprocess (bench/nplusone_node.js) that times each load itself" % (res["users"], res["users"]))
L.append("- pgfold: `--set nplusone.mode=rewrite --redis off`, otherwise defaults; each target warmed up "
         "%d times first (pgfold learns the pattern in the first load), then %d rounds, targets alternating "
         "(order rotated each round); medians, min–max beside them" % (res["warmup"], res["rounds"]))
L.append("- Checked: all %d loads (warm-up, timed and CPU runs, every target and client stack) returned the same "
         "data as SQLAlchemy lazy loading direct; both pgfold instances served children from batches "
         "(GET /nplusone)" % res["loads_checked"])
L.append("")

# ---- relay calibration
if cal_rows:
    cal = {}
    for r, t, lat in cal_rows:
        cal.setdefault(t, []).append(float(lat) * 1000)
    cm = {t: statistics.median(x) for t, x in cal.items()}
    L.append("### The delaying relay on its own")
    L.append("")
    L.append("`pgbench -n -S -M simple -c 1 -T %s` (one round trip per transaction), direct and through the relay "
             "with delay 0 and with %d µs each way, alternating:" % (E["NB_CAL_SECONDS"], delay_us))
    L.append("")
    L.append("| path | µs per round trip (median) | min–max | vs direct µs |")
    L.append("| --- | ---: | ---: | ---: |")
    names = {"direct": "direct PostgreSQL", "zero": "relay, delay 0", "delay": "relay, %d µs each way" % delay_us}
    for t in ("direct", "zero", "delay"):
        if t in cal:
            L.append("| %s | %.0f | %.0f–%.0f | %s |" % (names[t], cm[t], min(cal[t]), max(cal[t]),
                     "-" if t == "direct" else "%+.0f" % (cm[t] - cm["direct"])))
    L.append("")
    over0 = cm["zero"] - cm["direct"]
    acc = cm["delay"] - cm["direct"] - 2 * delay_us
    L.append("Relay overhead with delay 0: %+.0f µs per round trip. With %d µs each way: %+.0f µs per round trip "
             "over direct, i.e. the intended %d µs %+.0f µs (%+.1f%%); the relay's own overhead included."
             % (over0, delay_us, cm["delay"] - cm["direct"], 2 * delay_us, acc, 100 * acc / (2 * delay_us)))
    stats = E.get("NB_RELAY_DELAY", "")
    m = re.search(r"released late by (.*)$", stats)
    if m:
        L.append("Its own account over the whole run (every chunk, both directions, release time − deadline; it "
                 "wakes up %s µs early and spins to the deadline): %s." % (E["NB_SPIN"], m.group(1)))
    L.append("")

# ---- wall time
label = {
    "lazy-delay": "(a) lazy loading, direct, delayed link",
    "lazy-pgfold-delay": "(b) lazy loading through pgfold (rewrite), delayed link",
    "lazy-nodelay": "(c) lazy loading, direct, no delay",
    "selectin-delay": "(d) selectinload, direct, delayed link",
    "lazy-pgfold-nodelay": "(e) lazy loading through pgfold (rewrite), no delay",
}
DRIVERS = (("pg3", "psycopg 3"), ("node", "node-postgres"))
for d, dn in DRIVERS:
    label.update({
        d + "-delay": "(a) %s, direct, delayed link" % dn,
        d + "-pgfold-delay": "(b) %s through pgfold (rewrite), delayed link" % dn,
        d + "-nodelay": "(c) %s, direct, no delay" % dn,
        d + "-pgfold-nodelay": "(e) %s through pgfold (rewrite), no delay" % dn,
    })
L.append("### Wall time per load")
L.append("")
L.append("| workload | ms per load (median) | min–max | vs (c) |")
L.append("| --- | ---: | ---: | ---: |")
for k in ("lazy-delay", "lazy-pgfold-delay", "lazy-nodelay", "selectin-delay", "lazy-pgfold-nodelay"):
    if k in T:
        L.append("| %s | %.1f | %.1f–%.1f | %.2fx |" % (label[k], med[k], min(T[k]), max(T[k]), med[k] / med["lazy-nodelay"]))
L.append("")
bc = med["lazy-pgfold-delay"] / med["lazy-nodelay"]
ab = med["lazy-delay"] / med["lazy-pgfold-delay"]
db = med["selectin-delay"] / med["lazy-pgfold-delay"]
L.append("| ratio | value | goal (issue 4) | |")
L.append("| --- | ---: | ---: | --- |")
L.append("| (b) / (c): pgfold over the delayed link vs no delay at all | %.2f | ≤ 1.2 | %s |"
         % (bc, "met" if bc <= 1.2 else "**missed**"))
L.append("| (a) / (b): speed-up of pgfold over lazy loading direct on the delayed link | %.2f | ≥ 3 | %s |"
         % (ab, "met" if ab >= 3 else "**missed**"))
L.append("| (d) / (b): selectinload direct vs pgfold, both delayed | %.2f | — | |" % db)
L.append("")
missed = []
if bc > 1.2:
    missed.append("(b)/(c) = %.2f is above 1.2" % bc)
if ab < 3:
    missed.append("(a)/(b) = %.2f is below 3" % ab)
if missed:
    L.append("Goal missed on this run: %s." % "; ".join(missed))
else:
    L.append("Both goals met on this run.")
L.append("")

# ---- extended protocol: psycopg 3 and node-postgres
drivers = [(d, dn) for d, dn in DRIVERS if all(d + s in T for s in ("-delay", "-pgfold-delay", "-nodelay"))]
if drivers:
    L.append("### Extended protocol: psycopg 3 and node-postgres, wall time per load")
    L.append("")
    L.append("The same lazy load by hand (above), in the same rotation as the SQLAlchemy targets; vs (c) is against "
             "the same driver's (c).")
    L.append("")
    L.append("| workload | ms per load (median) | min–max | vs (c) |")
    L.append("| --- | ---: | ---: | ---: |")
    for d, dn in drivers:
        for k in (d + "-delay", d + "-pgfold-delay", d + "-nodelay", d + "-pgfold-nodelay"):
            if k in T:
                L.append("| %s | %.1f | %.1f–%.1f | %.2fx |" % (label[k], med[k], min(T[k]), max(T[k]),
                         med[k] / med[d + "-nodelay"]))
    L.append("")
    L.append("| ratio | value | goal (issue 4) | |")
    L.append("| --- | ---: | ---: | --- |")
    xmissed = []
    for d, dn in drivers:
        xbc = med[d + "-pgfold-delay"] / med[d + "-nodelay"]
        xab = med[d + "-delay"] / med[d + "-pgfold-delay"]
        L.append("| %s (b) / (c): pgfold over the delayed link vs no delay at all | %.2f | ≤ 1.2 | %s |"
                 % (dn, xbc, "met" if xbc <= 1.2 else "**missed**"))
        L.append("| %s (a) / (b): speed-up of pgfold over lazy loading direct on the delayed link | %.2f | ≥ 3 | %s |"
                 % (dn, xab, "met" if xab >= 3 else "**missed**"))
        if xbc > 1.2:
            xmissed.append("%s (b)/(c) = %.2f is above 1.2" % (dn, xbc))
        if xab < 3:
            xmissed.append("%s (a)/(b) = %.2f is below 3" % (dn, xab))
    L.append("")
    if xmissed:
        L.append("Goal missed on this run: %s." % "; ".join(xmissed))
    else:
        L.append("Both goals met for %s on this run." % " and ".join(dn for _, dn in drivers))
    L.append("")

# ---- backend CPU
cpu = res["cpu"]
if cpu:
    L.append("### Backend work per load, no emulated latency (pg_stat_statements)")
    L.append("")
    L.append("`pg_stat_statements_reset()` before each load, then the sums over the database's statements "
             "(the measurement's own queries excluded), %d loads each, alternating; medians. "
             "Planning is counted with `pg_stat_statements.track_planning = on`; parsing and protocol work are not "
             "in pg_stat_statements." % res["rounds"])
    L.append("")
    L.append("| workload | statements | of them on posts | exec ms | plan ms | exec + plan ms |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    def cm_(k, f):
        return statistics.median(x[f] for x in cpu[k])
    for k in ["lazy-nodelay", "lazy-pgfold-nodelay"] + [d + s for d, _ in DRIVERS for s in ("-nodelay", "-pgfold-nodelay")]:
        if k in cpu:
            L.append("| %s | %d | %d | %.2f | %.2f | %.2f |" % (label[k], cm_(k, "calls"), cm_(k, "posts_calls"),
                     cm_(k, "exec_ms"), cm_(k, "plan_ms"), statistics.median(x["exec_ms"] + x["plan_ms"] for x in cpu[k])))
    L.append("")
    if "lazy-nodelay" in cpu and "lazy-pgfold-nodelay" in cpu:
        a = statistics.median(x["exec_ms"] + x["plan_ms"] for x in cpu["lazy-nodelay"])
        b = statistics.median(x["exec_ms"] + x["plan_ms"] for x in cpu["lazy-pgfold-nodelay"])
        ea, eb = cm_("lazy-nodelay", "exec_ms"), cm_("lazy-pgfold-nodelay", "exec_ms")
        L.append("Backend time through pgfold vs direct (SQLAlchemy): exec %.2fx, exec + plan %.2fx." % (eb / ea if ea else float("nan"),
                 b / a if a else float("nan")))
        L.append("")
    xs = []
    for d, dn in DRIVERS:
        if d + "-nodelay" in cpu and d + "-pgfold-nodelay" in cpu:
            a = statistics.median(x["exec_ms"] + x["plan_ms"] for x in cpu[d + "-nodelay"])
            b = statistics.median(x["exec_ms"] + x["plan_ms"] for x in cpu[d + "-pgfold-nodelay"])
            ea, eb = cm_(d + "-nodelay", "exec_ms"), cm_(d + "-pgfold-nodelay", "exec_ms")
            xs.append("%s exec %.2fx, exec + plan %.2fx" % (dn, eb / ea if ea else float("nan"), b / a if a else float("nan")))
    if xs:
        L.append("The same with the extended protocol: %s. (psycopg 3's children run as a named prepared statement "
                 "after its prepare_threshold, so direct it plans little; node-postgres's unnamed statements are "
                 "planned every time.)" % "; ".join(xs))
        L.append("")

# ---- pgfold's own account
L.append("### pgfold's account (GET /nplusone totals at the end)")
L.append("")
L.append("| instance | patterns | active | children seen | children served | batches | statements saved |")
L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, j in (("behind the delayed link (b)", np_delay), ("no delay (e)", np_local)):
    t = j["totals"]
    L.append("| %s | %d | %d | %d | %d | %d | %d |" % (name, t["patterns"], t["active"], t["children_seen"],
             t["children_served"], t["batches"], t["statements_saved"]))
L.append("")
def who(child):
    if child.startswith("SELECT posts.id AS posts_id"):
        return "SQLAlchemy (`... WHERE $1 = posts.user_id ...`)"
    if child == "SELECT id, user_id, title, body, created_at FROM posts WHERE user_id = $1 ORDER BY id":
        return "psycopg 3 and node-postgres (one statement text, one pattern)"
    return "`%s`" % (child if len(child) <= 60 else child[:57] + "...")
rows = [(name, p) for name, j in (("behind the delayed link (b)", np_delay), ("no delay (e)", np_local))
        for p in sorted(j["patterns"], key=lambda p: (not p["child"].startswith("SELECT posts.id"), p["child"]))
        if p["status"] != "learning"]
if rows:
    L.append("Per pattern (patterns still learning — a child statement seen as its own parent — left out):")
    L.append("")
    L.append("| instance | children of | status | children seen | children served | batches | statements saved |")
    L.append("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name, p in rows:
        L.append("| %s | %s | %s | %d | %d | %d | %d |" % (name, who(p["child"]), p["status"] + (
            " (%s)" % p["reason"] if p.get("reason") else ""), p["children_seen"], p["children_served"],
            p["batches"], p["statements_saved"]))
    L.append("")
pats = sorted((p for p in np_delay["patterns"] if p["status"] == "active"),
              key=lambda p: not p["child"].startswith("SELECT posts.id"))  # SQLAlchemy's first
if pats:
    L.append("Suggested fix reported: %s" % pats[0]["suggestion"])
    L.append("")
L.append("<!-- /bench:nplusone -->")
open(sys.argv[5], "w").write("\n".join(L) + "\n")
PY

"$PY" - "$BENCH_OUT" "$SECTION" <<'PY'
import os, re, sys
out, section = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(out).read() if os.path.exists(out) else "# Benchmarks\n"
pat = re.compile(r"<!-- bench:nplusone -->.*?<!-- /bench:nplusone -->", re.S)
text = pat.sub(lambda m: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(out, "w").write(text if text.endswith("\n") else text + "\n")
PY
cat "$SECTION"
say "written to $BENCH_OUT"
