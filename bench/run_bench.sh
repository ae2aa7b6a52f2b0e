#!/usr/bin/env bash
# run_bench.sh — what `make bench` does: a pass-through benchmark of pgfold
# against direct PostgreSQL and PgBouncer (session pooling), written into
# BENCHMARKS.md between <!-- bench:passthrough --> and
# <!-- /bench:passthrough --> (other sections of the file are kept).
#
# It starts its own PostgreSQL 15 (fsync off), PgBouncer (as the postgres user
# when root, since PgBouncer refuses root) and two pgfold instances (both
# --redis off): target `pgfold` with statement analysis on (the default) and
# target `pgfold-raw` with --set analysis=off (pure pass-through), all on free
# loopback ports in a temp dir, loads pgbench -i -s $BENCH_SCALE, then:
#   throughput: pgbench -S -c 8 -j 2 -T $BENCH_SECONDS, -M simple and
#               -M extended, targets alternating (order rotated each round),
#               $BENCH_ROUNDS rounds, median reported;
#   latency:    pgbench -S -c 1 -j 1 -M extended, same alternation; the added
#               latency of each proxy over direct, in µs.
# Reported ratios: pgfold (analysis on) / pgfold (analysis off) and
# pgfold (analysis on) / PgBouncer, for tps and for added latency (issue 3:
# on/off tps >= 0.95 and on/PgBouncer tps >= 1.0).
# After the warm-up it checks, on each pgfold's /queries, that the analysis-on
# instance has seen statement shapes and the analysis-off one none.
# Everything it started is stopped on exit (trap), whatever happens.
#
# Environment: BENCH_SECONDS (15), BENCH_ROUNDS (3), BENCH_SCALE (10),
# BENCH_CLIENTS (8), BENCH_THREADS (2), BENCH_MODES ("simple extended"),
# BENCH_TARGETS ("direct pgbouncer pgfold pgfold-raw"), BENCH_OUT
# (BENCHMARKS.md), BENCH_PGFOLD_ARGS (extra arguments for both pgfold
# instances, split on spaces; pgfold-raw's --set analysis=off comes last),
# BENCH_SKIP_DEPS=1, BENCH_SKIP_BUILD=1, SRV_KEEP=1 (keep the temp dir).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/servers.sh
source "$ROOT/scripts/servers.sh"

BENCH_SECONDS="${BENCH_SECONDS:-15}"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_SCALE="${BENCH_SCALE:-10}"
BENCH_CLIENTS="${BENCH_CLIENTS:-8}"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_MODES="${BENCH_MODES:-simple extended}"
BENCH_TARGETS="${BENCH_TARGETS:-direct pgbouncer pgfold pgfold-raw}"
BENCH_OUT="${BENCH_OUT:-$ROOT/BENCHMARKS.md}"
read -r -a modes <<<"$BENCH_MODES"
read -r -a targets <<<"$BENCH_TARGETS"
read -r -a pgfold_extra <<<"${BENCH_PGFOLD_ARGS:-}"

say() { printf 'bench: %s\n' "$*" >&2; }
has_target() {
	local t
	for t in "${targets[@]}"; do [[ "$t" == "$1" ]] && return 0; done
	return 1
}
has_pgfold() { has_target pgfold || has_target pgfold-raw; }
for t in "${targets[@]}"; do
	case "$t" in
	direct | pgbouncer | pgfold | pgfold-raw) ;;
	*)
		say "unknown target $t (known: direct pgbouncer pgfold pgfold-raw)"
		exit 2
		;;
	esac
done
has_target direct || {
	say "BENCH_TARGETS must include direct (the baseline)"
	exit 2
}

if [[ "${BENCH_SKIP_DEPS:-0}" != 1 ]]; then
	"$ROOT/scripts/install-deps.sh" >&2
fi
if has_pgfold && [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
	say "make"
	make -j"$(nproc)" all >&2
fi

BIN="$(pg_bindir)"
PGBENCH="$BIN/pgbench"

srv_install_traps
srv_workdir pgfold-bench
W="$SRV_WORKDIR"
declare -A PORT

# ---------------------------------------------------------------- servers

PORT[direct]="$(free_port)"
srv_on_exit pg_stop "$W/pg"
pg_start "$W/pg" "${PORT[direct]}" "shared_buffers = 512MB" "max_wal_size = 4GB" "autovacuum = off"

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
	# runuser forwards SIGTERM; make sure the daemon itself is gone too.
	if [[ -f "$dir/pgbouncer.pid" ]]; then
		pid="$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)"
		if [[ -n "$pid" ]]; then
			srv_stop_pid "$pid" pgbouncer 15 || true
		fi
	fi
}
if has_target pgbouncer; then
	PORT[pgbouncer]="$(free_port)"
	srv_on_exit pgbouncer_stop "$W/pgbouncer"
	pgbouncer_start "$W/pgbouncer" "${PORT[pgbouncer]}" "${PORT[direct]}"
fi

# bench_pgfold_start TARGET [ARGS...]: a pgfold instance named TARGET on its
# own listen and admin ports, log $W/TARGET.log.
declare -A ADMIN_URL
bench_pgfold_start() {
	local t=$1 admin_port
	shift
	PORT[$t]="$(free_port)"
	admin_port="$(free_port)"
	srv_on_exit pgfold_stop "@$t"
	if ! PGFOLD_LOG="$W/$t.log" pgfold_start "@$t" --listen "127.0.0.1:${PORT[$t]}" \
		--backend "127.0.0.1:${PORT[direct]}" --admin "127.0.0.1:$admin_port" --redis off "$@"; then
		tail -n 30 "$W/$t.log" >&2 || true
		exit 1
	fi
	ADMIN_URL[$t]="${PGFOLD_ADMIN_URLS[$t]}"
}
if has_target pgfold; then
	bench_pgfold_start pgfold "${pgfold_extra[@]}" --set analysis=on
fi
if has_target pgfold-raw; then
	bench_pgfold_start pgfold-raw "${pgfold_extra[@]}" --set analysis=off
fi

# ---------------------------------------------------------------- load

export PGPASSWORD=app
say "pgbench -i -s $BENCH_SCALE"
"$PGBENCH" -i -q -s "$BENCH_SCALE" -h 127.0.0.1 -p "${PORT[direct]}" -U app shop >"$W/init.log" 2>&1 ||
	{
		cat "$W/init.log" >&2
		exit 1
	}

# run_pgbench TARGET MODE CLIENTS THREADS SECONDS -> "tps latency_ms"
run_pgbench() {
	local target=$1 mode=$2 c=$3 j=$4 secs=$5 out tps lat failed
	out="$("$PGBENCH" -n -S -M "$mode" -c "$c" -j "$j" -T "$secs" \
		-h 127.0.0.1 -p "${PORT[$target]}" -U app shop 2>&1 </dev/null)" || {
		say "pgbench against $target failed:"
		printf '%s\n' "$out" >&2
		return 1
	}
	printf '%s\n' "$out" >>"$W/pgbench.log"
	tps="$(awk '/^tps = /{print $3; exit}' <<<"$out")"
	lat="$(awk '/^latency average = /{print $4; exit}' <<<"$out")"
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
	printf '%s %s\n' "$tps" "$lat"
}

# Targets in round-robin order starting at index $1.
rotated() {
	local start=$1 n=${#targets[@]} i
	for ((i = 0; i < n; i++)); do
		printf '%s\n' "${targets[(start + i) % n]}"
	done
}

warm=$((BENCH_SECONDS / 5 > 2 ? BENCH_SECONDS / 5 : 2))
for t in "${targets[@]}"; do
	say "warm-up $t (${warm}s)"
	run_pgbench "$t" extended "$BENCH_CLIENTS" "$BENCH_THREADS" "$warm" >/dev/null
done

# Statement shapes a pgfold instance has recorded (/queries), "" if unknown.
pgfold_shapes() {
	/usr/bin/python3 -c '
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/queries?limit=1", timeout=5))["shapes"])' \
		"${ADMIN_URL[$1]}" 2>/dev/null || true
}
if has_target pgfold; then
	shapes="$(pgfold_shapes pgfold)"
	say "pgfold (analysis on): $shapes statement shapes in /queries"
	if ! [[ "$shapes" =~ ^[0-9]+$ ]] || ((shapes == 0)); then
		say "pgfold with analysis on recorded no statement shapes (${shapes:-unknown}): is analysis really on?"
		exit 1
	fi
fi
if has_target pgfold-raw; then
	shapes="$(pgfold_shapes pgfold-raw)"
	say "pgfold (analysis off): $shapes statement shapes in /queries"
	if [[ "$shapes" != 0 ]]; then
		say "pgfold with analysis=off recorded statement shapes (${shapes:-unknown}): not a pass-through"
		exit 1
	fi
fi

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
RESULTS="$W/results.tsv"
: >"$RESULTS"
total=$((BENCH_ROUNDS * ${#targets[@]} * (${#modes[@]} + 1) * BENCH_SECONDS))
say "measuring: about $((total / 60)) min $((total % 60)) s"
for ((r = 0; r < BENCH_ROUNDS; r++)); do
	for mode in "${modes[@]}"; do
		while read -r t; do
			read -r tps lat < <(run_pgbench "$t" "$mode" "$BENCH_CLIENTS" "$BENCH_THREADS" "$BENCH_SECONDS")
			[[ -n "${lat:-}" ]] || exit 1
			printf 'tput\t%s\t%s\t%s\t%s\t%s\n' "$((r + 1))" "$t" "$mode" "$tps" "$lat" >>"$RESULTS"
			say "round $((r + 1))/$BENCH_ROUNDS $mode c=$BENCH_CLIENTS $t: tps $tps, latency $lat ms"
			lat=
		done < <(rotated "$r")
	done
	while read -r t; do
		read -r tps lat < <(run_pgbench "$t" extended 1 1 "$BENCH_SECONDS")
		[[ -n "${lat:-}" ]] || exit 1
		printf 'lat\t%s\t%s\t%s\t%s\t%s\n' "$((r + 1))" "$t" extended "$tps" "$lat" >>"$RESULTS"
		say "round $((r + 1))/$BENCH_ROUNDS extended c=1 $t: tps $tps, latency $lat ms"
		lat=
	done < <(rotated "$r")
done

# ---------------------------------------------------------------- report

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
pg_version="$("$BIN/postgres" --version)"
pgbouncer_version="$(pgbouncer --version 2>/dev/null | head -n 1 || true)"
pgfold_version=
if has_pgfold; then
	pgfold_version="$(timeout 5 "$PGFOLD_BIN" --version 2>/dev/null | head -n 1 || true)"
	pgfold_version="${pgfold_version#pgfold }"
	commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
	[[ -n "$commit" ]] && pgfold_version="$pgfold_version (commit $commit$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ', uncommitted changes'))"
fi
model="$(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
mem="$(awk '/^MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo 2>/dev/null || true)"

env_prefix="BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS"
[[ "$BENCH_SCALE" != 10 ]] && env_prefix+=" BENCH_SCALE=$BENCH_SCALE"
[[ "$BENCH_TARGETS" != "direct pgbouncer pgfold pgfold-raw" ]] && env_prefix+=" BENCH_TARGETS='$BENCH_TARGETS'"
[[ "$BENCH_MODES" != "simple extended" ]] && env_prefix+=" BENCH_MODES='$BENCH_MODES'"

/usr/bin/python3 - "$RESULTS" "$BENCH_OUT" <<PY
import statistics, sys, os
results, out = sys.argv[1], sys.argv[2]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
targets = "$BENCH_TARGETS".split()
modes = "$BENCH_MODES".split()
def vals(kind, t, m, col):
    return [float(r[col]) for r in rows if r[0] == kind and r[2] == t and r[3] == m]
def med(kind, t, m, col):
    v = vals(kind, t, m, col)
    return statistics.median(v) if v else None
label = {"direct": "direct PostgreSQL", "pgbouncer": "PgBouncer (session)",
         "pgfold": "pgfold (analysis on)", "pgfold-raw": "pgfold (analysis off, pass-through)"}
ON, OFF, BNC = "pgfold (analysis on)", "pgfold (analysis off)", "pgbouncer"
L = []
L.append("<!-- bench:passthrough -->")
L.append("## Pass-through benchmark (bench/run_bench.sh)")
L.append("")
L.append("Generated by \`make bench\`; do not edit this section by hand.")
L.append("")
L.append("- Date: $(date -u '+%Y-%m-%d %H:%M UTC')")
L.append("- Machine: $(nproc) CPUs, ${model:-unknown CPU}, ${mem}, Linux $(uname -r); load average (1/5/15 min) ${load_before} before the measurements, ${load_after} after (anything else running on the machine skews the numbers)")
L.append("- Versions: ${pg_version}; ${pgbouncer_version:-PgBouncer not run}; $("$PGBENCH" --version)" + ("; pgfold ${pgfold_version:-unknown}" if "pgfold" in targets or "pgfold-raw" in targets else ""))
L.append("- Command: \`${env_prefix} make bench\` (bench/run_bench.sh)")
if "pgfold" in targets or "pgfold-raw" in targets:
    L.append("- pgfold: two instances of the same binary side by side, both \`--redis off\`: analysis on (the default: statement analysis and session tracking) and \`--set analysis=off\` (pure pass-through); checked after the warm-up: the first has statement shapes in /queries, the second none")
L.append("- Data: \`pgbench -i -s ${BENCH_SCALE}\`; PostgreSQL 15 with fsync off, shared_buffers 512MB; everything on loopback on this one machine (clients, proxies and server share its CPUs)")
L.append("- Throughput: \`pgbench -n -S -M MODE -c ${BENCH_CLIENTS} -j ${BENCH_THREADS} -T ${BENCH_SECONDS} -h 127.0.0.1 -p PORT -U app shop\`")
L.append("- Latency: \`pgbench -n -S -M extended -c 1 -j 1 -T ${BENCH_SECONDS} ...\`")
L.append("- Targets alternate (order rotated each round), ${BENCH_ROUNDS} rounds; medians reported, min-max in brackets")
L.append("")
L.append("### Throughput, ${BENCH_CLIENTS} clients")
L.append("")
L.append("| target | mode | tps (median) | tps min-max | mean latency ms |")
L.append("| --- | --- | ---: | ---: | ---: |")
for m in modes:
    for t in targets:
        v = vals("tput", t, m, 4)
        if not v: continue
        L.append("| %s | %s | %.0f | %.0f-%.0f | %.3f |" % (label.get(t, t), m, statistics.median(v), min(v), max(v), med("tput", t, m, 5)))
L.append("")
def ratio(a, b, m):
    x, y = med("tput", a, m, 4), med("tput", b, m, 4)
    return "%.2f" % (x / y) if x and y else "n/a"
L.append("| mode | %s / %s tps | %s / %s tps | %s / %s tps | %s / direct tps | %s / direct tps | %s / direct tps |"
         % (ON, OFF, ON, BNC, OFF, BNC, ON, OFF, BNC))
L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for m in modes:
    L.append("| %s | %s | %s | %s | %s | %s | %s |" % (m, ratio("pgfold", "pgfold-raw", m), ratio("pgfold", "pgbouncer", m),
             ratio("pgfold-raw", "pgbouncer", m), ratio("pgfold", "direct", m), ratio("pgfold-raw", "direct", m),
             ratio("pgbouncer", "direct", m)))
L.append("")
L.append("### Single-client latency (-c 1, extended)")
L.append("")
L.append("| target | mean latency µs (median) | min-max | added vs direct µs |")
L.append("| --- | ---: | ---: | ---: |")
d = med("lat", "direct", "extended", 5)
for t in targets:
    v = [x * 1000 for x in vals("lat", t, "extended", 5)]
    if not v: continue
    add = "-" if t == "direct" or d is None else "%+.0f" % (statistics.median(v) - d * 1000)
    L.append("| %s | %.0f | %.0f-%.0f | %s |" % (label.get(t, t), statistics.median(v), min(v), max(v), add))
L.append("")
def added_us(t):
    x = med("lat", t, "extended", 5)
    return (x - d) * 1000 if x is not None and d is not None else None
def added(t):
    x = added_us(t)
    return "%+.0f µs" % x if x is not None else "n/a"
def added_ratio(a, b):
    x, y = added_us(a), added_us(b)
    # A ratio of added latencies means something only when both are positive.
    return "%.2f" % (x / y) if x is not None and y is not None and x > 0 and y > 0 else "n/a"
L.append("| %s / %s added latency | %s / %s added latency | %s - %s µs |" % (ON, OFF, ON, BNC, ON, OFF))
L.append("| ---: | ---: | ---: |")
on_off = added_us("pgfold") - added_us("pgfold-raw") if added_us("pgfold") is not None and added_us("pgfold-raw") is not None else None
L.append("| %s | %s | %s |" % (added_ratio("pgfold", "pgfold-raw"), added_ratio("pgfold", "pgbouncer"),
         "%+.0f" % on_off if on_off is not None else "n/a"))
if any(x is not None and x <= 0 for x in (added_us("pgfold"), added_us("pgfold-raw"), added_us("pgbouncer"))):
    L.append("")
    L.append("(n/a: a ratio of added latencies needs both above 0; an added latency at or below 0 is within the noise of direct.)")
L.append("")
L.append("Added single-client latency: %s - direct = %s; %s - direct = %s; pgbouncer - direct = %s."
         % (ON, added("pgfold"), OFF, added("pgfold-raw"), added("pgbouncer")))
L.append("<!-- /bench:passthrough -->")
section = "\n".join(L) + "\n"

old = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
b, e = "<!-- bench:passthrough -->", "<!-- /bench:passthrough -->"
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
