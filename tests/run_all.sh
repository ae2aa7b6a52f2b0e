#!/usr/bin/env bash
# run_all.sh — what `make test` runs: install what is missing, build pgfold
# and the C unit tests, run every unit test binary (cmocka) and the
# integration suite (pytest against throwaway PostgreSQL, Redis and pgfold
# processes), then print one final line:
#
#     N passed, N failed[, N skipped]
#
# summing both layers.  Exits non-zero if anything failed or nothing ran.
#
# Environment:
#   PGFOLD_BUILD   build directory (default build); build-asan builds with
#                  `make asan` and runs the suite against build-asan/pgfold
#                  with ASAN_OPTIONS=detect_leaks=1, failing on any sanitizer
#                  report in pgfold's logs
#   PYTEST_ARGS    extra pytest arguments (e.g. "-k wire -x")
#   SKIP_INSTALL=1 do not call scripts/install-deps.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD="${PGFOLD_BUILD:-build}"
PYTHON=/usr/bin/python3 # Debian's python with python3-pytest/psycopg; not a pyenv one
JOBS="$(nproc 2>/dev/null || echo 2)"

RUN_TMP="$(mktemp -d /tmp/pgfold-run.XXXXXX)"
chmod 755 "$RUN_TMP" # the postgres user must reach its cluster dirs inside
export PGFOLD_LOG_DIR="$RUN_TMP/logs"
export PGFOLD_TEST_PIDFILE="$RUN_TMP/pids"
mkdir -p "$PGFOLD_LOG_DIR"
: >"$PGFOLD_TEST_PIDFILE"

cleanup() {
	# servers the test process could not stop itself (it died hard)
	local pid
	while read -r pid; do
		[[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null
	done <"$PGFOLD_TEST_PIDFILE"
	rm -rf "$RUN_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n=== %s\n' "$*"; }

passed=0
failed=0
skipped=0

# ---- install and build --------------------------------------------------

if [[ "${SKIP_INSTALL:-0}" != 1 && -x scripts/install-deps.sh ]]; then
	say "scripts/install-deps.sh"
	if ! scripts/install-deps.sh; then
		echo "install-deps.sh failed"
		failed=$((failed + 1))
	fi
fi
if [[ -f tests/node/package.json && ! -d tests/node/node_modules/pg ]] && command -v npm >/dev/null; then
	say "npm ci in tests/node"
	(cd tests/node && npm ci --no-audit --no-fund --loglevel=error) || echo "npm ci failed"
fi

say "build ($BUILD)"
if [[ "$BUILD" == build-asan ]]; then
	build_cmd=(make -j"$JOBS" asan-build)
	export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
	# ASan's shadow memory and quarantine raise the RSS floor
	export PGFOLD_RSS_LIMIT_MB="${PGFOLD_RSS_LIMIT_MB:-256}"
else
	build_cmd=(make -j"$JOBS" BUILD="$BUILD" all unit)
fi
if ! "${build_cmd[@]}"; then
	echo "BUILD FAILED: ${build_cmd[*]}"
	echo "0 passed, 1 failed"
	exit 1
fi
export PGFOLD_BIN="$ROOT/$BUILD/pgfold"

# ---- C unit tests (cmocka) ----------------------------------------------

say "unit tests ($BUILD/tests/test_*)"
shopt -s nullglob
for bin in "$BUILD"/tests/test_*; do
	[[ -x "$bin" && -f "$bin" ]] || continue
	out="$RUN_TMP/$(basename "$bin").out"
	timeout 300 "$bin" >"$out" 2>&1
	rc=$?
	cat "$out"
	# cmocka: "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s), listed below:"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
	s=$(sed -n 's/^\[  SKIPPED \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
	if ((rc != 0 && f == 0)); then
		echo "$bin exited with $rc without a cmocka failure summary: counted as 1 failure"
		f=1
	fi
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$out" && ((f == 0)); then
		echo "$bin: sanitizer report: counted as 1 failure"
		f=1
	fi
	echo "--- $bin: $p passed, $f failed"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
done
shopt -u nullglob

# ---- integration tests (pytest) -----------------------------------------

say "integration tests (pytest tests/integration, pgfold = $PGFOLD_BIN)"
junit="$RUN_TMP/junit.xml"
# shellcheck disable=SC2086
TMPDIR="$RUN_TMP" timeout --signal=TERM --kill-after=30 1500 \
	"$PYTHON" -m pytest tests/integration -q -rfEs -p no:cacheprovider --junitxml="$junit" \
	-o junit_family=xunit2 ${PYTEST_ARGS:-}
rc=$?
if [[ -s "$junit" ]]; then
	read -r p f s < <("$PYTHON" - "$junit" <<'EOF'
import sys
import xml.etree.ElementTree as ET
p = f = s = 0
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    kinds = {child.tag for child in case}
    if kinds & {"failure", "error"}:
        f += 1
    elif "skipped" in kinds:
        s += 1
    else:
        p += 1
print(p, f, s)
EOF
	)
	echo "--- pytest (exit $rc): $p passed, $f failed, $s skipped"
	if ((rc != 0 && rc != 5 && f == 0)); then
		echo "pytest exited with $rc but reported no failure: counted as 1 failure"
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
else
	echo "pytest wrote no report (exit $rc): counted as 1 failure"
	failed=$((failed + 1))
fi

# ---- sanitizer reports in pgfold's logs ---------------------------------

reports=$(grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$PGFOLD_LOG_DIR"/*pgfold*.log 2>/dev/null || true)
if [[ -n "$reports" ]]; then
	for log in $reports; do
		echo "sanitizer report in $(basename "$log"):"
		grep -E -A 30 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log" | head -60
	done
	failed=$((failed + $(wc -w <<<"$reports")))
fi

echo
if ((passed + failed == 0)); then
	echo "no test ran"
	failed=1
fi
summary="$passed passed, $failed failed"
((skipped > 0)) && summary+=", $skipped skipped"
echo "$summary"
((failed == 0))
