#!/usr/bin/env bash
# run_cache_bench.sh — the result-cache benchmark (issue 5), written into
# BENCHMARKS.md between <!-- bench:cache --> and <!-- /bench:cache -->
# (other sections of the file are kept).
#
# It starts its own PostgreSQL 15 (fsync off), Redis, PgBouncer (session
# pooling, as the postgres user when root) and two pgfold instances of the
# same binary: `pgfold` with --set cache.mode=auto on the Redis, and
# `pgfold-nocache` with --redis off (cache off: pgfold's pass-through, with
# analysis on as by default).  Data: pgbench -i -s $BENCH_SCALE plus a seeded
# blog (users, posts, $BENCH_COMMENTS comments).  In one run, targets
# alternating (order rotated each round), $BENCH_ROUNDS rounds, medians:
#
#  1. heavy read: one aggregate over comments (several ms in PostgreSQL),
#     pgbench -c 1 -M simple, direct vs pgfold (every run after the first
#     is a cache hit; checked on /cache) vs pgfold-nocache.  Goal: a hit
#     at least 20x faster than direct.
#  2. 90/10 mix: pgbench -M simple -c N (each N of $BENCH_CLIENTS) over a
#     hot set of $BENCH_HOT pgbench_accounts rows, -f read@9 (primary-key
#     lookup) and -f write@1, direct vs PgBouncer vs pgfold (cache auto) vs
#     pgfold-nocache, in three variants: (a) the writes update the rows the
#     reads look up (abalance + 1, by primary key: each write invalidates
#     that row's entries and no other's), (b) the writes go to another table
#     (pgbench_tellers), (c) reads only (the checker's writes aside).  Beside every run bench/cache_checker.py
#     writes a hot row every 250 ms through the same target and reads rows
#     it wrote through it and directly, counting stale reads (a value older
#     than one whose COMMIT had returned).  Goal: pgfold >= 1.5x direct
#     tps, zero stale reads.
#  3. miss cost: pgbench -c 1 -M simple, a primary-key lookup whose text is
#     new every time (a random 1..1e9 constant in the select list), so every
#     lookup through pgfold misses and stores; vs pgfold-nocache (the same
#     process without the cache) and direct.  Goal: a miss adds < 10% over
#     pass-through.
# Everything it started is stopped on exit (trap), whatever happens.
#
# Environment: BENCH_SECONDS (10, mix runs), BENCH_SHORT_SECONDS (5, heavy
# and miss runs), BENCH_ROUNDS (3), BENCH_SCALE (10), BENCH_COMMENTS
# (20000), BENCH_HOT (1000), BENCH_CLIENTS ("8 32": one set of mix runs per
# count), BENCH_THREADS (2),
# BENCH_OUT (BENCHMARKS.md), BENCH_SKIP_DEPS=1, BENCH_SKIP_BUILD=1,
# SRV_KEEP=1 (keep the temp dir).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/servers.sh
source "$ROOT/scripts/servers.sh"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_SHORT_SECONDS="${BENCH_SHORT_SECONDS:-5}"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_SCALE="${BENCH_SCALE:-10}"
BENCH_COMMENTS="${BENCH_COMMENTS:-20000}"
BENCH_HOT="${BENCH_HOT:-1000}"
BENCH_CLIENTS="${BENCH_CLIENTS:-8 32}"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"

say() { printf 'bench-cache: %s\n' "$*" >&2; }

if [[ "${BENCH_SKIP_DEPS:-0}" != 1 ]]; then
	"$ROOT/scripts/install-deps.sh" >&2
fi
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
	say "make"
	make -j"$(nproc)" all >&2
fi

BIN="$(pg_bindir)"
PGBENCH="$BIN/pgbench"
PSQL="$BIN/psql"

srv_install_traps
srv_workdir pgfold-cache-bench
W="$SRV_WORKDIR"
declare -A PORT ADMIN_URL

# ---------------------------------------------------------------- servers

PORT[direct]="$(free_port)"
srv_on_exit pg_stop "$W/pg"
pg_start "$W/pg" "${PORT[direct]}" "shared_buffers = 512MB" "max_wal_size = 4GB" "autovacuum = off"

REDIS_PORT_="$(free_port)"
srv_on_exit redis_stop "$W/redis"
redis_start "$W/redis" "$REDIS_PORT_"

pgbouncer_start() {
	local dir=$1 port=$2 backend_port=$3
	mkdir -p "$dir"
	cat >"$dir/pgbouncer.ini" <<-EOF
		[databases]
		shop = host=127.0.0.1 port=$backend_port dbname=shop

		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $port
		unix_socket_dir =
		auth_type = trust
		auth_file = $dir/userlist.txt
		pool_mode = session
		max_client_conn = 200
		default_pool_size = 40
		ignore_startup_parameters = extra_float_digits,options
		log_connections = 0
		log_disconnections = 0
		logfile = $dir/pgbouncer.log
		pidfile = $dir/pgbouncer.pid
	EOF
	printf '"app" "app"\n' >"$dir/userlist.txt"
	if ((EUID == 0)); then
		chown -R postgres: "$dir"
		(cd "$dir" && exec runuser -u postgres -- pgbouncer "$dir/pgbouncer.ini") </dev/null >>"$dir/pgbouncer.out" 2>&1 &
	else
		(cd "$dir" && exec pgbouncer "$dir/pgbouncer.ini") </dev/null >>"$dir/pgbouncer.out" 2>&1 &
	fi
	PGBOUNCER_PID=$!
	if ! wait_tcp 127.0.0.1 "$port" "$SRV_TIMEOUT" "$PGBOUNCER_PID"; then
		tail -n 20 "$dir/pgbouncer.log" "$dir/pgbouncer.out" >&2 2>/dev/null || true
		return 1
	fi
	say "PgBouncer ready on 127.0.0.1:$port"
}
pgbouncer_stop() {
	local dir=$1 pid
	srv_stop_pid "${PGBOUNCER_PID:-}" pgbouncer 15 || true
	if [[ -f "$dir/pgbouncer.pid" ]]; then
		pid="$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)"
		[[ -n "$pid" ]] && srv_stop_pid "$pid" pgbouncer 15 || true
	fi
}
PORT[pgbouncer]="$(free_port)"
srv_on_exit pgbouncer_stop "$W/pgbouncer"
pgbouncer_start "$W/pgbouncer" "${PORT[pgbouncer]}" "${PORT[direct]}"

# bench_pgfold_start TARGET ARGS...: a pgfold named TARGET, log $W/TARGET.log.
bench_pgfold_start() {
	local t=$1 admin_port
	shift
	PORT[$t]="$(free_port)"
	admin_port="$(free_port)"
	srv_on_exit pgfold_stop "@$t"
	if ! PGFOLD_LOG="$W/$t.log" pgfold_start "@$t" --listen "127.0.0.1:${PORT[$t]}" \
		--backend "127.0.0.1:${PORT[direct]}" --admin "127.0.0.1:$admin_port" "$@"; then
		tail -n 30 "$W/$t.log" >&2 || true
		exit 1
	fi
	ADMIN_URL[$t]="${PGFOLD_ADMIN_URLS[$t]}"
}
bench_pgfold_start pgfold --redis "127.0.0.1:$REDIS_PORT_" --set cache.mode=auto
bench_pgfold_start pgfold-nocache --redis off

# ---------------------------------------------------------------- data

export PGPASSWORD=app
say "pgbench -i -s $BENCH_SCALE, blog with $BENCH_COMMENTS comments"
"$PGBENCH" -i -q -s "$BENCH_SCALE" -h 127.0.0.1 -p "${PORT[direct]}" -U app shop >"$W/init.log" 2>&1 ||
	{
		cat "$W/init.log" >&2
		exit 1
	}
"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[direct]}" -U app -d shop >>"$W/init.log" 2>&1 <<-SQL
	CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
	CREATE TABLE posts (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users, title text NOT NULL);
	CREATE TABLE comments (id int PRIMARY KEY, post_id int NOT NULL REFERENCES posts, user_id int NOT NULL,
	                       body text NOT NULL, score int NOT NULL, created_at timestamp NOT NULL);
	INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 1000) g;
	INSERT INTO posts SELECT g, 1 + g % 1000, 'post ' || g FROM generate_series(1, 10000) g;
	INSERT INTO comments SELECT g, 1 + g % 10000, 1 + (g * 7) % 1000, repeat('comment ', 1 + g % 12),
	       (g * 37) % 101 - 50, timestamp '2026-01-01' + g * interval '13 seconds'
	FROM generate_series(1, $BENCH_COMMENTS) g;
	CREATE INDEX ON comments (post_id);
	VACUUM ANALYZE;
SQL

# The heavy read: top 20 posts by comment score, with the authors' names.
HEAVY_SQL="SELECT p.id, p.title, u.name, count(*) AS comments, sum(c.score) AS score, avg(c.score)::numeric(8,2) AS avg_score, max(c.created_at) AS last FROM comments c JOIN posts p ON p.id = c.post_id JOIN users u ON u.id = p.user_id GROUP BY p.id, p.title, u.name ORDER BY score DESC, p.id LIMIT 20"
printf '%s;\n' "$HEAVY_SQL" >"$W/heavy.sql"
cat >"$W/read.sql" <<-EOF
	\set aid random(1, $BENCH_HOT)
	SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
EOF
cat >"$W/write_same.sql" <<-EOF
	\set aid random(1, $BENCH_HOT)
	UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
EOF
cat >"$W/write_other.sql" <<-EOF
	\set tid random(1, $((10 * BENCH_SCALE)))
	UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = :tid;
EOF
cat >"$W/miss.sql" <<-EOF
	\set aid random(1, $((100000 * BENCH_SCALE)))
	\set k random(1, 1000000000)
	SELECT abalance, :k AS k FROM pgbench_accounts WHERE aid = :aid;
EOF

# ---------------------------------------------------------------- helpers

# run_pgbench TARGET CLIENTS THREADS SECONDS SCRIPT_ARGS... -> "tps latency_ms transactions"
run_pgbench() {
	local target=$1 c=$2 j=$3 secs=$4 out tps lat n failed
	shift 4
	out="$("$PGBENCH" -n -M simple -c "$c" -j "$j" -T "$secs" "$@" \
		-h 127.0.0.1 -p "${PORT[$target]}" -U app shop 2>&1 </dev/null)" || {
		say "pgbench against $target failed:"
		printf '%s\n' "$out" >&2
		return 1
	}
	printf '%s\n' "$out" >>"$W/pgbench.log"
	tps="$(awk '/^tps = /{print $3; exit}' <<<"$out")"
	lat="$(awk '/^latency average = /{print $4; exit}' <<<"$out")"
	n="$(awk '/^number of transactions actually processed/{print $6; exit}' <<<"$out")"
	failed="$(awk -F'[:( ]+' '/^number of failed transactions/{print $5; exit}' <<<"$out")"
	if [[ -z "$tps" || -z "$lat" ]]; then
		say "could not parse pgbench output for $target:"
		printf '%s\n' "$out" >&2
		return 1
	fi
	if [[ -n "$failed" && "$failed" != 0 ]]; then
		say "$target: $failed failed transactions"
		return 1
	fi
	printf '%s %s %s\n' "$tps" "$lat" "${n%%/*}"
}

# pgfold's /cache and /metrics as "hits misses lookups stores lookup_us_sum
# lookups_answered" (the sum: Redis round trips of answered lookups, µs)
cache_counts() {
	/usr/bin/python3 -c '
import json, sys, urllib.request
c = json.load(urllib.request.urlopen(sys.argv[1] + "/cache", timeout=5))
m = dict(l.split() for l in urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5).read().decode().splitlines()
         if l.startswith(("pgfold_cache_lookup_seconds_total ", "pgfold_cache_lookup_answered_total ")))
print(c["hits"], c["misses"], c["lookups"], c["stores"], round(float(m["pgfold_cache_lookup_seconds_total"]) * 1e6),
      m["pgfold_cache_lookup_answered_total"])' "${ADMIN_URL[pgfold]}"
}

rotated() {
	local start=$1 i
	shift
	local list=("$@") n=$#
	for ((i = 0; i < n; i++)); do
		printf '%s\n' "${list[(start + i) % n]}"
	done
}

RESULTS="$W/results.tsv"
: >"$RESULTS"
# record KIND ROUND TARGET TPS LAT N HITS LOOKUPS [EXTRA]
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# measure KIND ROUND TARGET CLIENTS THREADS SECONDS SCRIPT_ARGS...: one
# pgbench run, with the cache hits/lookups of pgfold over it.
measure() {
	local kind=$1 r=$2 t=$3 c=$4 j=$5 secs=$6 h0 m0 l0 s0 u0 a0 h1 m1 l1 s1 u1 a1 tps lat n rtt=
	shift 6
	read -r h0 m0 l0 s0 u0 a0 < <(cache_counts)
	read -r tps lat n < <(run_pgbench "$t" "$c" "$j" "$secs" "$@")
	[[ -n "${n:-}" ]] || exit 1
	read -r h1 m1 l1 s1 u1 a1 < <(cache_counts)
	if [[ "$t" != pgfold ]]; then
		h1=$h0
		l1=$l0
	elif ((a1 > a0)); then
		rtt=$(((u1 - u0) / (a1 - a0)))
	fi
	record "$kind" "$r" "$t" "$tps" "$lat" "$n" "$((h1 - h0))" "$((l1 - l0))" "$rtt"
	say "$kind round $r $t: tps $tps, latency $lat ms, cache hits $((h1 - h0)) of $((l1 - l0)) lookups"
}

# ---------------------------------------------------------------- warm-up

say "warm-up (pgfold loads pg_proc and pg_class for the database at first use)"
for t in direct pgbouncer pgfold pgfold-nocache; do
	run_pgbench "$t" 2 1 2 -f "$W/read.sql" >/dev/null
	run_pgbench "$t" 1 1 2 -f "$W/heavy.sql" >/dev/null
done
read -r h0 _ l0 _ _ _ < <(cache_counts)
run_pgbench pgfold 1 1 2 -f "$W/heavy.sql" >/dev/null
read -r h1 _ l1 _ _ _ < <(cache_counts)
if ((h1 - h0 < 10)); then
	say "pgfold does not answer the heavy read from the cache (hits $((h1 - h0)) of $((l1 - l0)) lookups); see $W/pgfold.log"
	curl -s "${ADMIN_URL[pgfold]}/cache" >&2 || true
	exit 1
fi

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- 1. heavy read

heavy_targets=(direct pgfold pgfold-nocache)
for ((r = 1; r <= BENCH_ROUNDS; r++)); do
	while read -r t; do
		measure heavy "$r" "$t" 1 1 "$BENCH_SHORT_SECONDS" -f "$W/heavy.sql"
	done < <(rotated "$r" "${heavy_targets[@]}")
done

# ---------------------------------------------------------------- 2. 90/10 mix

mix_targets=(direct pgbouncer pgfold pgfold-nocache)
for clients in $BENCH_CLIENTS; do
	for variant in same other none; do
		scripts=(-f "$W/read.sql@9" -f "$W/write_$variant.sql@1")
		[[ "$variant" == none ]] && scripts=(-f "$W/read.sql")
		for ((r = 1; r <= BENCH_ROUNDS; r++)); do
			while read -r t; do
				/usr/bin/python3 "$ROOT/bench/cache_checker.py" "${PORT[$t]}" "${PORT[direct]}" \
					"$BENCH_SECONDS" "$BENCH_HOT" 250 >"$W/checker.out" 2>"$W/checker.err" &
				checker=$!
				measure "mix-$variant-$clients" "$r" "$t" "$clients" "$BENCH_THREADS" "$BENCH_SECONDS" \
					"${scripts[@]}"
				if ! wait "$checker"; then
					say "the stale-read checker failed:"
					cat "$W/checker.err" >&2
					exit 1
				fi
				printf 'checker\t%s\t%s\t%s\n' "$variant-$clients" "$t" "$(cat "$W/checker.out")" >>"$RESULTS"
				say "checker ($variant, $clients clients, $t): $(cat "$W/checker.out")"
			done < <(rotated "$r" "${mix_targets[@]}")
		done
	done
done

# ---------------------------------------------------------------- 3. miss cost

miss_targets=(direct pgfold pgfold-nocache)
for ((r = 1; r <= BENCH_ROUNDS; r++)); do
	while read -r t; do
		measure miss "$r" "$t" 1 1 "$BENCH_SHORT_SECONDS" -f "$W/miss.sql"
	done < <(rotated "$r" "${miss_targets[@]}")
done

# ---------------------------------------------------------------- report

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
heavy_direct_ms="$("$PSQL" -X -q -A -t -h 127.0.0.1 -p "${PORT[direct]}" -U app -d shop \
	-c "EXPLAIN (ANALYZE, FORMAT JSON) $HEAVY_SQL" | /usr/bin/python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)[0]["Execution Time"])')"
pg_version="$("$BIN/postgres" --version)"
pgbouncer_version="$(pgbouncer --version 2>/dev/null | head -n 1 || true)"
redis_version="$(redis-server --version | awk '{print $3}')"
pgfold_version="$(timeout 5 "$PGFOLD_BIN" --version 2>/dev/null | head -n 1 || true)"
pgfold_version="${pgfold_version#pgfold }"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
[[ -n "$commit" ]] && pgfold_version="$pgfold_version (commit $commit$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ', uncommitted changes'))"
model="$(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
mem="$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo 2>/dev/null || true)"
env_prefix="BENCH_SECONDS=$BENCH_SECONDS BENCH_SHORT_SECONDS=$BENCH_SHORT_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS"
[[ "$BENCH_COMMENTS" != 20000 ]] && env_prefix+=" BENCH_COMMENTS=$BENCH_COMMENTS"
[[ "$PGFOLD_BIN" != "$ROOT/build/pgfold" ]] && env_prefix+=" PGFOLD_BIN=$PGFOLD_BIN BENCH_SKIP_BUILD=1"

export HEAVY_SQL
/usr/bin/python3 - "$RESULTS" "$BENCH_OUT" <<PY
import json, os, statistics, sys
results, out = sys.argv[1], sys.argv[2]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
runs = [r for r in rows if r[0] != "checker"]
checks = [(r[1], r[2], json.loads(r[3])) for r in rows if r[0] == "checker"]
label = {"direct": "direct PostgreSQL", "pgbouncer": "PgBouncer (session)",
         "pgfold": "pgfold, cache.mode=auto", "pgfold-nocache": "pgfold, cache off (--redis off)"}
def col(kind, t, i):
    return [float(r[i]) for r in runs if r[0] == kind and r[2] == t]
def med(kind, t, i):
    v = col(kind, t, i)
    return statistics.median(v) if v else None
def hit_rate(kind, t):
    h = sum(int(r[6]) for r in runs if r[0] == kind and r[2] == t)
    l = sum(int(r[7]) for r in runs if r[0] == kind and r[2] == t)
    return "%.1f%% (%d of %d)" % (100.0 * h / l, h, l) if l else "-"
def looked_up(kind, t, reads_per_tx=1.0):
    n = sum(int(r[5]) for r in runs if r[0] == kind and r[2] == t) * reads_per_tx
    l = sum(int(r[7]) for r in runs if r[0] == kind and r[2] == t)
    return "%.0f%%" % (100.0 * l / n) if n else "-"
def goal(ok):
    return "met" if ok else "**not met**"
L = []
L.append("<!-- bench:cache -->")
L.append("## Result cache (bench/run_cache_bench.sh)")
L.append("")
L.append("Generated by \`bench/run_cache_bench.sh\`; do not edit this section by hand.")
L.append("")
L.append("- Date: $(date -u '+%Y-%m-%d %H:%M UTC')")
L.append("- Machine: $(nproc) CPUs, ${model:-unknown CPU}, ${mem}, Linux $(uname -r); load average (1/5/15 min) ${load_before} before the measurements, ${load_after} after (clients, proxies, Redis and PostgreSQL share these CPUs; anything else running on the machine skews the numbers)")
L.append("- Versions: ${pg_version}; ${pgbouncer_version:-PgBouncer unknown}; Redis ${redis_version}; $("$PGBENCH" --version); pgfold ${pgfold_version:-unknown}")
L.append("- Command: \`${env_prefix} bench/run_cache_bench.sh\` (\`make bench-cache\` runs the same with the defaults)")
L.append("- pgfold: two instances of the same binary: \`--set cache.mode=auto\` with a local Redis (defaults otherwise: cache.timeout_ms 5, default_ttl 60s), and \`--redis off\` (cache off); PgBouncer 1.18 \`pool_mode = session\`; everything on loopback")
L.append("- Data: \`pgbench -i -s ${BENCH_SCALE}\`, and users (1000), posts (10000), comments (${BENCH_COMMENTS}); PostgreSQL 15 with fsync off, shared_buffers 512MB")
L.append("- Every pgbench run is \`-n -M simple\`; targets alternate (order rotated each round), ${BENCH_ROUNDS} rounds; medians, min-max beside them; cache hits from pgfold's /cache over each run (near-cache hits included: statements answered from pgfold's memory, under its lease or after a sync with Redis's bump log, proxy/rcache_near.h)")
L.append("")
L.append("### 1. Heavy read: direct vs a cache hit")
L.append("")
L.append("\`pgbench -c 1 -j 1 -T ${BENCH_SHORT_SECONDS}\` running one statement (EXPLAIN ANALYZE in PostgreSQL: ${heavy_direct_ms} ms execution):")
L.append("")
L.append("\`\`\`sql")
L.append(os.environ["HEAVY_SQL"])
L.append("\`\`\`")
L.append("")
L.append("| target | latency ms (median) | min-max | statements looked up | cache hits of lookups |")
L.append("| --- | ---: | ---: | ---: | ---: |")
for t in ("direct", "pgfold", "pgfold-nocache"):
    v = col("heavy", t, 4)
    if v:
        p_ = t == "pgfold"
        L.append("| %s | %.3f | %.3f-%.3f | %s | %s |" % (label[t], statistics.median(v), min(v), max(v), looked_up("heavy", t) if p_ else "-", hit_rate("heavy", t) if p_ else "-"))
hd, hp = med("heavy", "direct", 4), med("heavy", "pgfold", 4)
sp = hd / hp if hd and hp else 0
L.append("")
L.append("| ratio | value | goal (issue 5) | |")
L.append("| --- | ---: | ---: | --- |")
L.append("| direct latency / pgfold cache-hit latency | %.1fx | ≥ 20x | %s |" % (sp, goal(sp >= 20)))
L.append("")
L.append("### 2. Primary-key lookups over a hot set, 90% reads / 10% writes")
L.append("")
L.append("\`pgbench -c C -j ${BENCH_THREADS} -T ${BENCH_SECONDS} -f read.sql@9 -f write.sql@1\` for C in ${BENCH_CLIENTS}; read.sql: \`\\\\set aid random(1, ${BENCH_HOT})\` \`SELECT abalance FROM pgbench_accounts WHERE aid = :aid\`; write.sql (a): \`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid\` (aid in the same hot set: pinned to that primary key, it invalidates only that row's entries), write.sql (b): \`UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = :tid\`; (c) read.sql alone.")
L.append("")
L.append("Stale-read checker (bench/cache_checker.py), beside every run, through the same target: every 250 ms it commits \`abalance + 1 ... RETURNING abalance\` on a hot row, and in between reads rows it wrote (the text pgbench's reads use) through the target and then directly; a read through the target lower than what a COMMIT had already returned counts as stale, higher than PostgreSQL's value as wrong. Its writes also invalidate a hot row four times a second in every variant. \"Reads looked up\": lookups per pgbench read (90% of the transactions, all in (c)); the checker's reads are looked up too, so it can pass 100%.")
L.append("")
mixes = [(v + "-" + c, "%s, %s clients" % (title, c), v != "none")
         for c in "${BENCH_CLIENTS}".split()
         for v, title in (("same", "(a) writes to the rows the reads look up"), ("other", "(b) writes to another table"),
                          ("none", "(c) reads only"))]
for variant, title, has_goal in mixes:
    kind = "mix-" + variant
    L.append("#### " + title)
    L.append("")
    L.append("| target | tps (median) | tps min-max | mean latency ms | reads looked up | cache hits of lookups | checker reads | stale | wrong |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t in ("direct", "pgbouncer", "pgfold", "pgfold-nocache"):
        v = col(kind, t, 3)
        if not v:
            continue
        c = [x for (var, tt, x) in checks if var == variant and tt == t]
        L.append("| %s | %.0f | %.0f-%.0f | %.3f | %s | %s | %d | %d | %d |" % (
            label[t], statistics.median(v), min(v), max(v), med(kind, t, 4),
            looked_up(kind, t, 0.9 if has_goal else 1.0) if t == "pgfold" else "-",
            hit_rate(kind, t) if t == "pgfold" else "-", sum(x["reads"] for x in c),
            sum(x["stale"] for x in c), sum(x["wrong"] for x in c)))
    d, p, b, n = (med(kind, t, 3) for t in ("direct", "pgfold", "pgbouncer", "pgfold-nocache"))
    stale = sum(x["stale"] + x["wrong"] for (var, tt, x) in checks if var == variant)
    L.append("")
    L.append("| ratio | value | goal (issue 5) | |")
    L.append("| --- | ---: | ---: | --- |")
    if has_goal:
        L.append("| pgfold (cache) / direct tps | %.2f | ≥ 1.5 | %s |" % (p / d, goal(p / d >= 1.5)))
    else:
        L.append("| pgfold (cache) / direct tps | %.2f | — | |" % (p / d))
    L.append("| pgfold (cache) / PgBouncer tps | %.2f | — | |" % (p / b))
    L.append("| pgfold (cache) / pgfold (cache off) tps | %.2f | — | |" % (p / n))
    L.append("| stale or wrong reads seen by the checker | %d | 0 | %s |" % (stale, goal(stale == 0)))
    ex = [e for (var, tt, x) in checks if var == variant for e in x["examples"]]
    if ex:
        L.append("")
        L.append("Checker examples: " + "; ".join(ex[:5]))
    L.append("")
L.append("### 3. Cost of a miss")
L.append("")
L.append("\`pgbench -c 1 -j 1 -T ${BENCH_SHORT_SECONDS}\`: \`SELECT abalance, :k AS k FROM pgbench_accounts WHERE aid = :aid\` with aid random over all rows and k random in 1..1e9, so every statement's text is new: through pgfold with the cache every lookup misses and its answer is stored. \"Statements looked up\" is lookups (/cache) per statement run: pgfold skips the lookup of a shape whose recent lookups almost never hit (a cold shape, proxy/rcache_shape.h: only every n-th execution is looked up as a probe; the others go straight to PostgreSQL and their answers are still stored), so below 100% most statements paid a store but no lookup.")
L.append("")
L.append("| target | latency µs (median) | min-max | statements looked up | cache hits of lookups |")
L.append("| --- | ---: | ---: | ---: | ---: |")
for t in ("direct", "pgfold-nocache", "pgfold"):
    v = [x * 1000 for x in col("miss", t, 4)]
    if v:
        p_ = t == "pgfold"
        L.append("| %s | %.0f | %.0f-%.0f | %s | %s |" % (label[t], statistics.median(v), min(v), max(v), looked_up("miss", t) if p_ else "-", hit_rate("miss", t) if p_ else "-"))
md_, mn, mp = (med("miss", t, 4) for t in ("direct", "pgfold-nocache", "pgfold"))
extra = (mp - mn) / mn * 100
L.append("")
L.append("| ratio | value | goal (issue 5) | |")
L.append("| --- | ---: | ---: | --- |")
L.append("| miss over pass-through: (pgfold cache − pgfold cache off) / pgfold cache off | %+.1f%% (%+.0f µs) | < 10%% | %s |" % (extra, (mp - mn) * 1000, goal(extra < 10)))
L.append("| pgfold cache (all misses) over direct | %+.0f µs | — | |" % ((mp - md_) * 1000))
rtt = [int(r[8]) for r in runs if r[0] == "miss" and r[2] == "pgfold" and r[8]]
if rtt:
    L.append("")
    L.append("A statement that is looked up and misses waits for the lookup's Redis round trip before it goes to PostgreSQL: median %d µs per lookup over these runs (sent to answered, as pgfold measures it: /metrics \`pgfold_cache_lookup_seconds_total\`); the others pay only the capture and the store of their answer (not waited for). The ratio above is the mix of both that the adaptive lookups produced." % statistics.median(rtt))
L.append("<!-- /bench:cache -->")
section = "\n".join(L) + "\n"

old = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
b, e = "<!-- bench:cache -->", "<!-- /bench:cache -->"
if b in old and e in old and old.index(b) < old.index(e):
    i, j = old.index(b), old.index(e) + len(e)
    if old[j:j + 1] == "\n": j += 1
    new = old[:i] + section + old[j:]
else:
    new = old.rstrip("\n") + "\n\n" + section
open(out + ".tmp", "w").write(new)
os.replace(out + ".tmp", out)
print(section)
PY
say "wrote $BENCH_OUT"
