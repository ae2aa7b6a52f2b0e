# pgfold — build, test and run.  Plain make + pkg-config.
#
#   make            build/pgfold
#   make asan       build-asan/ with ASan+UBSan and run the whole test suite against it
#   make unit       build the C unit tests (tests/unit/test_*.c)
#   make test       install what is missing, build, run every test; ends "N passed, N failed"
#   make run        install what is missing, build, start throwaway PostgreSQL+Redis and pgfold
#   make bench      pass-through benchmark vs direct PostgreSQL and PgBouncer, the
#                   per-statement cost of analysis, N+1 batching and the result cache -> BENCHMARKS.md
#   make bench-nplusone  lazy loading (SQLAlchemy, psycopg 3, node-postgres) with and
#                   without pgfold over an emulated network (bench/delay_relay.c) -> BENCHMARKS.md
#   make bench-cache  result cache (Redis): heavy read hit vs direct, 90/10 pgbench mix with a
#                   stale-read checker, cost of a miss (bench/run_cache_bench.sh) -> BENCHMARKS.md
#   make format     clang-format every C file

CC      ?= cc
BUILD   ?= build
PKGS     = libuv hiredis libpq inih libprotobuf-c libcrypto
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -MMD -MP
OPT     ?= -O2 -g
CFLAGS_PKG := $(shell pkg-config --cflags $(PKGS))
LIBS_PKG   := $(shell pkg-config --libs $(PKGS)) -lpg_query -lhttp_parser
SAN     ?=
ALL_CFLAGS = $(CFLAGS_BASE) $(OPT) $(SAN) $(CFLAGS_PKG) $(CFLAGS)
ALL_LDFLAGS = $(SAN) $(LDFLAGS)

COMMON_SRC   = $(wildcard common/*.c)
PROTOCOL_SRC = $(wildcard protocol/*.c)
CONF_SRC     = $(wildcard conf/*.c)
CACHE_SRC    = $(wildcard cache/*.c)
REWRITE_SRC  = $(wildcard rewrite/*.c)
PROXY_SRC    = $(filter-out proxy/main.c,$(wildcard proxy/*.c))
LIB_SRC      = $(COMMON_SRC) $(PROTOCOL_SRC) $(CONF_SRC) $(CACHE_SRC) $(REWRITE_SRC) $(PROXY_SRC)
LIB_OBJ      = $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
MAIN_OBJ     = $(BUILD)/obj/proxy/main.o

UNIT_SRC     = $(wildcard tests/unit/test_*.c)
UNIT_BIN     = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

BENCH_BIN    = $(BUILD)/bench/analysis_bench
RELAY_BIN    = $(BUILD)/bench/delay_relay

.PHONY: all asan asan-build unit bench-analysis bench-nplusone bench-cache test run bench format clean check-deps
all: $(BUILD)/pgfold

$(BUILD)/pgfold: $(LIB_OBJ) $(MAIN_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS_PKG)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIB_OBJ) $(LIBS_PKG) -lcmocka

unit: $(UNIT_BIN)

$(BUILD)/bench/%: bench/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIB_OBJ) $(LIBS_PKG)

bench-analysis: $(BENCH_BIN)
	bench/run_analysis_bench.sh

# The delaying relay is standalone: libuv only, none of pgfold's modules.
$(RELAY_BIN): bench/delay_relay.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(OPT) $(SAN) $(shell pkg-config --cflags libuv) $(CFLAGS) $(ALL_LDFLAGS) \
		-o $@ $< $(shell pkg-config --libs libuv)

bench-nplusone: $(BUILD)/pgfold $(RELAY_BIN)
	bench/run_nplusone_bench.sh

bench-cache: $(BUILD)/pgfold
	bench/run_cache_bench.sh

asan-build:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all unit

asan:
	PGFOLD_BUILD=build-asan tests/run_all.sh

test:
	tests/run_all.sh

run:
	scripts/run.sh

bench: $(BENCH_BIN) $(RELAY_BIN)
	bench/run_bench.sh
	bench/run_analysis_bench.sh
	bench/run_nplusone_bench.sh
	bench/run_cache_bench.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
