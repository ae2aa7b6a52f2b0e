/*
 * test_qstats.c — per-query statistics (proxy/qstats.c): the table, its
 * eviction, the p99 histogram, the three renderings and the /queries routes
 * on a real admin server.
 *
 * Shapes are built by hand (no rw_analyze): only kind, fingerprint,
 * normalized text and relations matter here.  The route test runs a
 * px_admin on a uv loop in the main thread and a blocking client in a
 * pthread, as test_admin.c does; the client records failed checks with
 * CHECK() and the main thread fails on them after joining.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "../../common/log.h"
#include "../../proxy/admin.h"
#include "../../proxy/qstats.h"

/* ---------------------------------------------------------------- helpers */

static rw_shape shape_of(rw_kind kind, uint64_t fingerprint, const char *text, const rw_relation *rels, size_t nrels)
{
	rw_shape s;
	memset(&s, 0, sizeof(s));
	s.kind = kind;
	s.fingerprint = fingerprint;
	s.normalized = text;
	s.relations = rels;
	s.nrelations = nrels;
	return s;
}

static const rw_relation users_orders[] = {
	{"public", "users", "u", false},
	{"public", "users", "v", false}, /* self-join: one table */
	{NULL, "orders", NULL, false},
};

/* get + record, as the proxy does when a statement is done. */
static const px_qstat *run(px_qstats *qs, const rw_shape *s, uint64_t us, uint64_t rows, bool error)
{
	px_qstat *st = px_qstats_get(qs, s);
	px_qstats_record(st, us, rows, error);
	return st;
}

static size_t count_of(const char *haystack, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("expected\n  %s\nin\n  %s", needle, haystack);
}

static void assert_within(uint64_t got, uint64_t want, double rel)
{
	double err = (double)got > (double)want ? (double)got - (double)want : (double)want - (double)got;
	if (err > rel * (double)want)
		fail_msg("got %" PRIu64 ", want %" PRIu64 " within %.0f%%", got, want, rel * 100);
}

/* ---------------------------------------------------------- the table */

static void test_create_and_lookup(void **state)
{
	px_qstats *qs = px_qstats_new(10);
	char *text = strdup("SELECT * FROM users u JOIN users v ON true, orders WHERE u.id = $1");
	rw_shape a = shape_of(RW_KIND_READ, 0xabcdef0123456789ULL, text, users_orders, 3);
	rw_shape b = shape_of(RW_KIND_WRITE, 42, "UPDATE orders SET x = $1", users_orders + 2, 1);

	px_qstat *sa = px_qstats_get(qs, &a);
	assert_non_null(sa);
	assert_int_equal(sa->calls, 0);
	assert_true(sa->fingerprint == 0xabcdef0123456789ULL);
	assert_int_equal(sa->kind, RW_KIND_READ);
	assert_ptr_not_equal(sa->query, text); /* a copy */
	assert_string_equal(sa->query, text);
	assert_int_equal(sa->ntables, 2);
	assert_string_equal(sa->tables[0], "public.users");
	assert_string_equal(sa->tables[1], "orders");

	/* the entry outlives the shape's text */
	memset(text, 'X', strlen(text));
	free(text);
	a.normalized = "something else";
	assert_ptr_equal(px_qstats_get(qs, &a), sa);
	assert_string_equal(sa->query, "SELECT * FROM users u JOIN users v ON true, orders WHERE u.id = $1");

	px_qstat *sb = px_qstats_get(qs, &b);
	assert_ptr_not_equal(sb, sa);
	assert_int_equal(sb->kind, RW_KIND_WRITE);
	assert_int_equal(sb->ntables, 1);
	assert_string_equal(sb->tables[0], "orders");

	assert_ptr_equal(px_qstats_find(qs, 0xabcdef0123456789ULL, false), sa);
	assert_ptr_equal(px_qstats_find(qs, 42, false), sb);
	assert_null(px_qstats_find(qs, 43, false));
	assert_null(px_qstats_find(qs, 0, true));

	px_qstats_totals t;
	px_qstats_totals_get(qs, &t);
	assert_int_equal(t.shapes, 2);
	assert_int_equal(t.max_shapes, 10);
	assert_int_equal(t.evicted, 0);
	assert_int_equal(t.statements, 0);
	px_qstats_free(qs);
}

static void test_record_math(void **state)
{
	px_qstats *qs = px_qstats_new(10);
	rw_shape a = shape_of(RW_KIND_READ, 1, "SELECT $1", NULL, 0);
	px_qstat *st = px_qstats_get(qs, &a);
	px_qstats_record(st, 100, 1, false);
	px_qstats_record(st, 300, 10, true);
	px_qstats_record(st, 200, 0, false);
	px_qstats_record(st, 0, 5, true);
	assert_int_equal(st->calls, 4);
	assert_int_equal(st->rows, 16);
	assert_int_equal(st->errors, 2);
	assert_int_equal(st->total_us, 600);
	assert_int_equal(st->max_us, 300);

	px_qstats_record(NULL, 5, 5, true); /* disabled: nothing */
	rw_shape b = shape_of(RW_KIND_WRITE, 2, "DELETE FROM t", NULL, 0);
	run(qs, &b, 1000, 3, false);

	px_qstats_totals t;
	px_qstats_totals_get(qs, &t);
	assert_int_equal(t.statements, 5);
	assert_int_equal(t.errors, 2);
	assert_int_equal(t.time_us, 1600);

	pf_sb sb;
	pf_sb_init(&sb);
	px_qstats_render_json(qs, &sb, 0);
	assert_contains(pf_sb_str(&sb), "\"calls\":4,\"rows\":16,\"errors\":2,\"cache_hits\":0,\"cache_misses\":0,\"total_ms\":0.600,\"mean_ms\":0.150,"
					"\"max_ms\":0.300,");
	pf_sb_free(&sb);
	px_qstats_free(qs);
}

static void test_disabled(void **state)
{
	rw_shape a = shape_of(RW_KIND_READ, 1, "SELECT 1", NULL, 0);
	assert_null(px_qstats_get(NULL, &a));
	px_qstats *qs = px_qstats_new(0);
	assert_null(px_qstats_get(qs, &a));
	px_qstats_record(px_qstats_get(qs, &a), 10, 1, false);
	pf_sb sb;
	pf_sb_init(&sb);
	px_qstats_render_json(qs, &sb, 0);
	assert_string_equal(pf_sb_str(&sb), "{\"shapes\":0,\"evicted\":0,\"queries\":[]}");
	pf_sb_free(&sb);
	px_qstats_free(qs);
	px_qstats_free(NULL);
}

static void test_unparsed(void **state)
{
	px_qstats *qs = px_qstats_new(10);
	rw_shape u1 = shape_of(RW_KIND_UNPARSED, 0, NULL, NULL, 0);
	rw_shape u2 = shape_of(RW_KIND_UNPARSED, 77, "ignored", users_orders, 1);
	rw_shape zero = shape_of(RW_KIND_READ, 0, "SELECT $1", NULL, 0); /* a real fingerprint 0 */
	const px_qstat *a = run(qs, &u1, 10, 0, true);
	const px_qstat *b = run(qs, &u2, 20, 0, true);
	assert_ptr_equal(a, b);
	assert_int_equal(a->calls, 2);
	assert_int_equal(a->kind, RW_KIND_UNPARSED);
	assert_null(a->query);
	assert_int_equal(a->ntables, 0);
	assert_int_equal(a->fingerprint, 0);
	const px_qstat *z = run(qs, &zero, 5, 1, false);
	assert_ptr_not_equal(z, a);
	assert_ptr_equal(px_qstats_find(qs, 0, true), a);
	assert_ptr_equal(px_qstats_find(qs, 123, true), a);
	assert_ptr_equal(px_qstats_find(qs, 0, false), z);

	pf_sb sb;
	pf_sb_init(&sb);
	px_qstats_render_json(qs, &sb, 0);
	assert_contains(pf_sb_str(&sb), "{\"fingerprint\":\"0000000000000000\",\"query\":null,\"kind\":\"unparsed\","
					"\"tables\":[],\"volatility\":null,\"calls\":2,\"rows\":0,\"errors\":2,");
	assert_contains(pf_sb_str(&sb), "{\"fingerprint\":\"0000000000000000\",\"query\":\"SELECT $1\",\"kind\":\"read\"");
	pf_sb_reset(&sb);
	px_qstats_render_text(qs, &sb, 0);
	assert_contains(pf_sb_str(&sb), "  unparsed  (unparsed)\n");
	pf_sb_free(&sb);
	px_qstats_free(qs);
}

/* Result-cache hits and misses per shape: a lookup may come before the
 * shape's first execution is recorded (a miss of a new shape creates the
 * entry); NULL table, statement or disabled statistics do nothing; reset
 * clears them with the entries. */
static void test_cache_counters(void **state)
{
	px_qstats *qs = px_qstats_new(2);
	rw_shape a = shape_of(RW_KIND_READ, 1, "SELECT * FROM t WHERE id = $1", NULL, 0);
	rw_shape b = shape_of(RW_KIND_READ, 2, "SELECT count(*) FROM t", NULL, 0);
	rw_shape c = shape_of(RW_KIND_READ, 3, "SELECT max(id) FROM t", NULL, 0);
	rw_stmt sa = {.shape = &a}, sb_ = {.shape = &b}, sc = {.shape = &c};

	px_qstats_record_cache(qs, &sa, false); /* first lookup of a new shape: a miss */
	const px_qstat *st = px_qstats_find(qs, 1, false);
	assert_non_null(st);
	assert_int_equal(st->calls, 0);
	assert_int_equal(st->cache_misses, 1);
	run(qs, &a, 500, 1, false); /* the miss went to PostgreSQL */
	for (int i = 0; i < 3; i++) {
		px_qstats_record_cache(qs, &sa, true);
		run(qs, &a, 20, 1, false);
	}
	st = px_qstats_find(qs, 1, false);
	assert_int_equal(st->calls, 4);
	assert_int_equal(st->cache_hits, 3);
	assert_int_equal(st->cache_misses, 1);

	px_qstats_record_cache(qs, &sb_, true);
	run(qs, &b, 30, 1, false);
	px_qstats_record_cache(qs, &sc, false); /* full: evicts b (fewest calls) */
	assert_null(px_qstats_find(qs, 2, false));
	assert_int_equal(px_qstats_find(qs, 3, false)->cache_misses, 1);
	assert_int_equal(px_qstats_find(qs, 1, false)->cache_hits, 3);

	px_qstats_record_cache(NULL, &sa, true);
	px_qstats_record_cache(qs, NULL, true);
	rw_stmt none = {.shape = NULL};
	px_qstats_record_cache(qs, &none, true);
	assert_int_equal(px_qstats_find(qs, 1, false)->cache_hits, 3);

	pf_sb out;
	pf_sb_init(&out);
	px_qstats_render_json(qs, &out, 0);
	assert_contains(pf_sb_str(&out), "\"calls\":4,\"rows\":4,\"errors\":0,\"cache_hits\":3,\"cache_misses\":1,");
	assert_contains(pf_sb_str(&out), "\"calls\":0,\"rows\":0,\"errors\":0,\"cache_hits\":0,\"cache_misses\":1,");
	pf_sb_free(&out);

	/* by fingerprint: existing entries only, not a use */
	px_qstats_record_cache_fingerprint(qs, 1, true);
	px_qstats_record_cache_fingerprint(qs, 3, false);
	px_qstats_record_cache_fingerprint(qs, 2, true); /* evicted: nothing */
	px_qstats_record_cache_fingerprint(NULL, 1, true);
	assert_null(px_qstats_find(qs, 2, false));
	assert_int_equal(px_qstats_find(qs, 1, false)->cache_hits, 4);
	assert_int_equal(px_qstats_find(qs, 3, false)->cache_misses, 2);
	px_qstats_totals tot;
	px_qstats_totals_get(qs, &tot);
	assert_int_equal(tot.shapes, 2);

	px_qstats_reset(qs);
	px_qstats_record_cache_fingerprint(qs, 1, true); /* empty table */
	px_qstats_record_cache(qs, &sa, true);
	assert_int_equal(px_qstats_find(qs, 1, false)->cache_hits, 1);
	assert_int_equal(px_qstats_find(qs, 1, false)->cache_misses, 0);
	px_qstats_free(qs);

	px_qstats *off = px_qstats_new(0);
	px_qstats_record_cache(off, &sa, true);
	assert_null(px_qstats_find(off, 1, false));
	px_qstats_free(off);
}

/* ------------------------------------------------------------------ p99 */

static uint64_t p99_of(const uint64_t *samples, size_t n)
{
	px_qstats *qs = px_qstats_new(1);
	rw_shape a = shape_of(RW_KIND_READ, 1, "SELECT 1", NULL, 0);
	px_qstat *st = px_qstats_get(qs, &a);
	for (size_t i = 0; i < n; i++)
		px_qstats_record(st, samples[i], 0, false);
	uint64_t p99 = px_qstat_p99_us(st);
	px_qstats_free(qs);
	return p99;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank p99 of the samples (sorts them). */
static uint64_t exact_p99(uint64_t *samples, size_t n)
{
	qsort(samples, n, sizeof(*samples), cmp_u64);
	size_t rank = n - n / 100; /* ceil(0.99 n) */
	return samples[rank - 1];
}

static uint64_t lcg_state = 12345;

static uint64_t lcg(void)
{
	lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return lcg_state >> 33;
}

static void test_p99(void **state)
{
	enum { N = 1000 };
	uint64_t *s = malloc(20000 * sizeof(*s));

	for (size_t i = 0; i < N; i++)
		s[i] = i + 1; /* 1..1000 µs */
	uint64_t p = p99_of(s, N);
	print_message("p99 of 1..1000 us: %" PRIu64 "\n", p);
	assert_within(p, 990, 0.10);

	for (size_t i = 0; i < N; i++) /* 99% fast, 1% slow: p99 is a fast one */
		s[i] = i < 990 ? 100 : 10000;
	assert_within(p99_of(s, N), 100, 0.10);
	for (size_t i = 0; i < N; i++) /* 2% slow: p99 is a slow one */
		s[i] = i < 980 ? 100 : 50000;
	assert_within(p99_of(s, N), 50000, 0.10);

	/* one value, many magnitudes: within 1/16, never above it (max caps) */
	for (uint64_t v = 1; v < 200000000; v = v * 3 / 2 + 1) {
		s[0] = v;
		uint64_t got = p99_of(s, 1);
		if (got > v)
			fail_msg("p99 of {%" PRIu64 "} is %" PRIu64, v, got);
		assert_within(got, v, 0.0625);
	}
	s[0] = 7;
	assert_int_equal(p99_of(s, 1), 7); /* exact below 8 µs */
	s[0] = 300000000;                  /* 300 s: overflow bucket reports max */
	assert_int_equal(p99_of(s, 1), 300000000);
	assert_int_equal(p99_of(s, 0), 0);

	/* random distributions against the exact nearest-rank p99 */
	for (int round = 0; round < 20; round++) {
		size_t n = 100 + lcg() % 19900;
		uint64_t scale = 1 + lcg() % 100000;
		for (size_t i = 0; i < n; i++) { /* roughly log-normal-ish: product of uniforms */
			uint64_t v = scale * (1 + lcg() % 100) / (1 + lcg() % 50);
			s[i] = v;
		}
		uint64_t got = p99_of(s, n);
		uint64_t want = exact_p99(s, n);
		assert_within(got, want, 0.10);
	}
	free(s);
}

/* ------------------------------------------------------------- eviction */

static void test_eviction(void **state)
{
	px_qstats *qs = px_qstats_new(3);
	rw_shape sh[6];
	for (int i = 0; i < 6; i++)
		sh[i] = shape_of(RW_KIND_READ, (uint64_t)(i + 1), "SELECT $1", NULL, 0);
	/* A: 3 calls, B: 1, C: 2 */
	for (int i = 0; i < 3; i++)
		run(qs, &sh[0], 10, 1, false);
	run(qs, &sh[1], 10, 1, false);
	run(qs, &sh[2], 10, 1, false);
	run(qs, &sh[2], 10, 1, false);

	run(qs, &sh[3], 10, 1, false); /* D evicts B (fewest calls) */
	assert_null(px_qstats_find(qs, 2, false));
	assert_non_null(px_qstats_find(qs, 1, false));
	assert_non_null(px_qstats_find(qs, 3, false));
	assert_non_null(px_qstats_find(qs, 4, false));

	/* now A 3, C 2, D 1: E evicts D, then D evicts E (each at one call) */
	run(qs, &sh[4], 10, 1, false);
	assert_null(px_qstats_find(qs, 4, false));
	run(qs, &sh[3], 10, 1, false);
	assert_null(px_qstats_find(qs, 5, false));
	assert_int_equal(px_qstats_find(qs, 4, false)->calls, 1); /* a new entry: counts restart */

	/* equal calls: the entry used longest ago goes.  A 3 (older), C 3
	 * (newer), D 1: D's calls reach 3, then a new shape evicts A */
	run(qs, &sh[2], 10, 1, false); /* C 3 */
	run(qs, &sh[3], 10, 1, false);
	run(qs, &sh[3], 10, 1, false); /* D 3, newest */
	run(qs, &sh[5], 10, 1, false); /* F */
	assert_null(px_qstats_find(qs, 1, false));
	assert_non_null(px_qstats_find(qs, 3, false));
	assert_non_null(px_qstats_find(qs, 4, false));
	assert_non_null(px_qstats_find(qs, 6, false));

	px_qstats_totals t;
	px_qstats_totals_get(qs, &t);
	assert_int_equal(t.shapes, 3);
	assert_int_equal(t.evicted, 4);
	pf_sb sb;
	pf_sb_init(&sb);
	px_qstats_render_json(qs, &sb, 0);
	assert_contains(pf_sb_str(&sb), "{\"shapes\":3,\"evicted\":4,\"queries\":[");
	pf_sb_free(&sb);
	px_qstats_free(qs);
}

/* A bare px_qstats_get() is a use: it saves an entry from eviction. */
static void test_eviction_get_is_use(void **state)
{
	px_qstats *qs = px_qstats_new(2);
	rw_shape x = shape_of(RW_KIND_READ, 10, "X", NULL, 0), y = shape_of(RW_KIND_READ, 11, "Y", NULL, 0),
		 z = shape_of(RW_KIND_READ, 12, "Z", NULL, 0), w = shape_of(RW_KIND_READ, 13, "W", NULL, 0);
	run(qs, &x, 1, 1, false);
	run(qs, &y, 1, 1, false);
	(void)px_qstats_get(qs, &x); /* X: one call, now the more recent */
	run(qs, &z, 1, 1, false);    /* evicts Y */
	assert_null(px_qstats_find(qs, 11, false));
	assert_non_null(px_qstats_find(qs, 10, false));
	run(qs, &w, 1, 1, false); /* X and Z at one call, X older: X goes */
	assert_null(px_qstats_find(qs, 10, false));
	assert_non_null(px_qstats_find(qs, 12, false));
	assert_non_null(px_qstats_find(qs, 13, false));
	px_qstats_free(qs);
}

/* A reference model of the policy (O(n) per step) against the table, over a
 * long random mix of gets and records: same entries, same calls. */
typedef struct model_entry {
	uint64_t fp, calls, last;
} model_entry;

static void test_eviction_model(void **state)
{
	enum { MAX = 50, OPS = 30000 };
	px_qstats *qs = px_qstats_new(MAX);
	model_entry m[MAX];
	size_t n = 0;
	uint64_t tick = 0, evicted = 0;
	char text[32];
	lcg_state = 99;
	for (int op = 0; op < OPS; op++) {
		uint64_t r = lcg() % 1000;
		uint64_t fp = (r * r) / 2500 + 1; /* 1..400, low values far more often */
		if (op % 97 == 0)
			fp = (uint64_t)op << 40; /* a fresh shape now and then */
		bool record = lcg() % 4 != 0;
		snprintf(text, sizeof(text), "SELECT %" PRIu64, fp);
		rw_shape s = shape_of(RW_KIND_READ, fp, text, NULL, 0);
		px_qstat *st = px_qstats_get(qs, &s);
		if (record)
			px_qstats_record(st, 1, 1, false);

		size_t i = 0;
		while (i < n && m[i].fp != fp)
			i++;
		if (i == n) {
			if (n == MAX) {
				size_t v = 0;
				for (size_t j = 1; j < n; j++)
					if (m[j].calls < m[v].calls || (m[j].calls == m[v].calls && m[j].last < m[v].last))
						v = j;
				m[v] = m[--n];
				evicted++;
			}
			i = n++;
			m[i].fp = fp;
			m[i].calls = 0;
		}
		m[i].last = ++tick;
		if (record) {
			m[i].calls++;
			m[i].last = ++tick;
		}

		px_qstats_totals t;
		px_qstats_totals_get(qs, &t);
		if (t.shapes != n || t.evicted != evicted)
			fail_msg("op %d: %zu shapes, %" PRIu64 " evicted; model %zu, %" PRIu64, op, t.shapes,
				 t.evicted, n, evicted);
		for (size_t j = 0; j < n; j++) {
			const px_qstat *e = px_qstats_find(qs, m[j].fp, false);
			if (!e || e->calls != m[j].calls)
				fail_msg("op %d: fingerprint %" PRIu64 ": %s, calls %" PRIu64 " (model %" PRIu64 ")",
					 op, m[j].fp, e ? "present" : "missing", e ? e->calls : 0, m[j].calls);
		}
	}
	assert_true(evicted > 1000);
	px_qstats_free(qs);
}

static void test_reset(void **state)
{
	px_qstats *qs = px_qstats_new(2);
	rw_shape a = shape_of(RW_KIND_READ, 1, "SELECT 1", users_orders, 3);
	rw_shape b = shape_of(RW_KIND_READ, 2, "SELECT 2", NULL, 0);
	rw_shape c = shape_of(RW_KIND_READ, 3, "SELECT 3", NULL, 0);
	run(qs, &a, 10, 1, false);
	run(qs, &b, 20, 1, true);
	run(qs, &c, 30, 1, false); /* evicts a */
	px_qstats_reset(qs);
	px_qstats_totals t;
	px_qstats_totals_get(qs, &t);
	assert_int_equal(t.shapes, 0);
	assert_int_equal(t.evicted, 1); /* lifetime */
	assert_int_equal(t.statements, 3);
	assert_int_equal(t.errors, 1);
	assert_int_equal(t.time_us, 60);
	assert_null(px_qstats_find(qs, 2, false));
	assert_null(px_qstats_find(qs, 3, false));
	pf_sb sb;
	pf_sb_init(&sb);
	px_qstats_render_json(qs, &sb, 0);
	assert_string_equal(pf_sb_str(&sb), "{\"shapes\":0,\"evicted\":0,\"queries\":[]}");

	const px_qstat *st = run(qs, &b, 5, 2, false); /* starts from zero */
	assert_int_equal(st->calls, 1);
	assert_int_equal(st->total_us, 5);
	run(qs, &a, 1, 1, false);
	run(qs, &c, 1, 1, false);
	px_qstats_totals_get(qs, &t);
	assert_int_equal(t.shapes, 2);
	assert_int_equal(t.evicted, 2);
	pf_sb_free(&sb);
	px_qstats_free(qs);
}

/* ------------------------------------------------------------ rendering */

static void test_json(void **state)
{
	px_qstats *qs = px_qstats_new(10);
	rw_shape a = shape_of(RW_KIND_READ, 0xab, "SELECT * FROM users u, users v, orders WHERE u.id = $1", users_orders,
			      3);
	rw_shape b = shape_of(RW_KIND_WRITE, 0xfedcba9876543210ULL,
			      "UPDATE \"we\\ird\" SET note = $1\n\tWHERE id = $2 -- \x01", NULL, 0);
	rw_shape c = shape_of(RW_KIND_TRANSACTION, 5, "BEGIN", NULL, 0);
	rw_shape d = shape_of(RW_KIND_TRANSACTION, 4, "COMMIT", NULL, 0);
	run(qs, &a, 1000, 5, false);
	run(qs, &a, 2000, 5, true);
	run(qs, &a, 3000, 5, false);
	run(qs, &b, 7000, 1, false);
	run(qs, &c, 10, 0, false);
	run(qs, &d, 10, 0, false);
	px_qstats_set_volatility(px_qstats_get(qs, &a), 's');
	rw_stmt sa = {.shape = &a};
	px_qstats_record_cache(qs, &sa, true);
	px_qstats_record_cache(qs, &sa, true);
	px_qstats_record_cache(qs, &sa, false);

	pf_sb sb;
	pf_sb_init(&sb);
	px_qstats_render_json(qs, &sb, 0);
	const char *js = pf_sb_str(&sb);
	print_message("%s\n", js);
	const char *frag_b = "{\"fingerprint\":\"fedcba9876543210\",\"query\":\"UPDATE \\\"we\\\\ird\\\" SET note = "
			     "$1\\n\\tWHERE id = $2 -- \\u0001\",\"kind\":\"write\",\"tables\":[],\"volatility\":null,\"calls\":1,\"rows\":1,"
			     "\"errors\":0,\"cache_hits\":0,\"cache_misses\":0,\"total_ms\":7.000,\"mean_ms\":7.000,\"max_ms\":7.000,\"p99_ms\":6.912}";
	const char *frag_a = "{\"fingerprint\":\"00000000000000ab\",\"query\":\"SELECT * FROM users u, users v, "
			     "orders WHERE u.id = $1\",\"kind\":\"read\",\"tables\":[\"public.users\",\"orders\"],"
			     "\"volatility\":\"stable\",\"calls\":3,\"rows\":15,\"errors\":1,\"cache_hits\":2,\"cache_misses\":1,\"total_ms\":6.000,\"mean_ms\":2.000,"
			     "\"max_ms\":3.000,\"p99_ms\":2.944}";
	const char *frag_d = "{\"fingerprint\":\"0000000000000004\",\"query\":\"COMMIT\",\"kind\":\"transaction\"";
	const char *frag_c = "{\"fingerprint\":\"0000000000000005\",\"query\":\"BEGIN\",\"kind\":\"transaction\"";
	assert_true(strncmp(js, "{\"shapes\":4,\"evicted\":0,\"queries\":[{", 36) == 0);
	assert_contains(js, frag_a);
	assert_contains(js, frag_b);
	/* by total time descending, then fingerprint */
	const char *pa = strstr(js, frag_a), *pb = strstr(js, frag_b), *pc = strstr(js, frag_c),
		   *pd = strstr(js, frag_d);
	assert_non_null(pc);
	assert_non_null(pd);
	assert_true(pb < pa && pa < pd && pd < pc);
	assert_true(strcmp(js + strlen(js) - 3, "}]}") == 0);
	assert_int_equal(count_of(js, "\"fingerprint\""), 4);

	pf_sb_reset(&sb);
	px_qstats_render_json(qs, &sb, 2);
	js = pf_sb_str(&sb);
	assert_int_equal(count_of(js, "\"fingerprint\""), 2);
	assert_contains(js, "{\"shapes\":4,");
	assert_contains(js, frag_b);
	assert_contains(js, frag_a);
	pf_sb_free(&sb);
	px_qstats_free(qs);
}

static void test_text(void **state)
{
	px_qstats *qs = px_qstats_new(10);
	rw_shape a = shape_of(RW_KIND_READ, 0xab, "SELECT id, name\n  FROM users\tWHERE id = $1  \n", NULL, 0);
	rw_shape u = shape_of(RW_KIND_UNPARSED, 0, NULL, NULL, 0);
	run(qs, &a, 1000, 5, false);
	run(qs, &a, 2000, 5, true);
	run(qs, &a, 3000, 5, false);
	run(qs, &u, 12345678, 0, true);
	rw_stmt sa = {.shape = &a};
	px_qstats_record_cache(qs, &sa, true);
	px_qstats_record_cache(qs, &sa, false);
	px_qstats_record_cache(qs, &sa, true);

	pf_sb sb;
	pf_sb_init(&sb);
	px_qstats_render_text(qs, &sb, 0);
	const char *want = "calls   total_ms    mean_ms     p99_ms     max_ms  rows  errors  cache_hits  cache_misses  kind      query\n"
			   "    1  12345.678  12345.678  12058.624  12345.678     0       1           0             0  unparsed  (unparsed)\n"
			   "    3      6.000      2.000      2.944      3.000    15       1           2             1  read      "
			   "SELECT id, name FROM users WHERE id = $1\n";
	if (strcmp(pf_sb_str(&sb), want) != 0)
		fail_msg("text table:\n%s\nwant:\n%s", pf_sb_str(&sb), want);

	pf_sb_reset(&sb);
	px_qstats_render_text(qs, &sb, 1);
	assert_int_equal(count_of(pf_sb_str(&sb), "\n"), 2);

	/* long queries: cut at 80 characters (not bytes) */
	char longq[400], utf[400];
	memset(longq, 0, sizeof(longq));
	for (int i = 0; i < 120; i++)
		longq[i] = i % 10 == 9 ? '\n' : 'x';
	utf[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(utf, "\xc3\xa9"); /* é */
	rw_shape l = shape_of(RW_KIND_READ, 1, longq, NULL, 0);
	rw_shape e = shape_of(RW_KIND_READ, 2, utf, NULL, 0);
	px_qstats_reset(qs);
	run(qs, &l, 2, 0, false);
	run(qs, &e, 1, 0, false);
	pf_sb_reset(&sb);
	px_qstats_render_text(qs, &sb, 0);
	const char *out = pf_sb_str(&sb);
	char want_l[100] = "", want_e[300] = "";
	for (int i = 0; i < 79; i++) /* the 80th is a space: not shown before "..." */
		strcat(want_l, i % 10 == 9 ? " " : "x");
	strcat(want_l, "...\n");
	for (int i = 0; i < 80; i++)
		strcat(want_e, "\xc3\xa9");
	strcat(want_e, "...\n");
	assert_contains(out, want_l);
	assert_contains(out, want_e);
	/* every line has its kind column at the same offset */
	const char *line2 = strchr(out, '\n') + 1, *line3 = strchr(line2, '\n') + 1;
	assert_int_equal(strstr(out, "kind") - out, strstr(line2, "read") - line2);
	assert_int_equal(strstr(out, "kind") - out, strstr(line3, "read") - line3);
	pf_sb_free(&sb);
	px_qstats_free(qs);
}

static void test_long_text_stored(void **state)
{
	px_qstats *qs = px_qstats_new(2);
	size_t len = PX_QSTATS_MAX_QUERY_BYTES * 3;
	char *big = malloc(len + 1);
	for (size_t i = 0; i < len; i += 2)
		memcpy(big + i, "\xc3\xa9", 2); /* é: the cut must not split one */
	big[len] = '\0';
	rw_shape s = shape_of(RW_KIND_READ, 9, big, NULL, 0);
	const px_qstat *st = run(qs, &s, 1, 1, false);
	free(big);
	size_t stored = strlen(st->query);
	assert_true(stored <= PX_QSTATS_MAX_QUERY_BYTES);
	assert_true(stored >= PX_QSTATS_MAX_QUERY_BYTES - 4);
	assert_string_equal(st->query + stored - 3, "...");
	assert_int_equal((stored - 3) % 2, 0);
	assert_true(memcmp(st->query + stored - 5, "\xc3\xa9", 2) == 0);

	rw_relation many[PX_QSTATS_MAX_TABLES + 10];
	char names[PX_QSTATS_MAX_TABLES + 10][16];
	for (int i = 0; i < PX_QSTATS_MAX_TABLES + 10; i++) {
		snprintf(names[i], sizeof(names[i]), "t%d", i);
		many[i] = (rw_relation){NULL, names[i], NULL, i % 2 == 0};
	}
	rw_shape m = shape_of(RW_KIND_WRITE, 10, "x", many, PX_QSTATS_MAX_TABLES + 10);
	st = run(qs, &m, 1, 1, false);
	assert_int_equal(st->ntables, PX_QSTATS_MAX_TABLES);
	assert_string_equal(st->tables[PX_QSTATS_MAX_TABLES - 1], "t31");
	px_qstats_free(qs);
}

static void test_metrics(void **state)
{
	px_qstats *qs = px_qstats_new(1);
	rw_shape a = shape_of(RW_KIND_READ, 1, "SELECT 1", NULL, 0);
	rw_shape b = shape_of(RW_KIND_READ, 2, "SELECT 2", NULL, 0);
	run(qs, &a, 1500000, 1, false);
	run(qs, &b, 250, 1, true); /* evicts a */
	px_qstats_reset(qs);      /* counters keep growing */
	run(qs, &a, 1, 1, false);
	pf_sb sb;
	pf_sb_init(&sb);
	px_qstats_render_metrics(qs, &sb);
	const char *want = "# HELP pgfold_query_shapes Statement shapes in the /queries table now.\n"
			   "# TYPE pgfold_query_shapes gauge\n"
			   "pgfold_query_shapes 1\n"
			   "# HELP pgfold_query_shapes_evicted_total Statement shapes evicted from the /queries table "
			   "to make room.\n"
			   "# TYPE pgfold_query_shapes_evicted_total counter\n"
			   "pgfold_query_shapes_evicted_total 1\n"
			   "# HELP pgfold_statements_total Statements whose execution was timed.\n"
			   "# TYPE pgfold_statements_total counter\n"
			   "pgfold_statements_total 3\n"
			   "# HELP pgfold_statement_errors_total Timed statements that ended in an error.\n"
			   "# TYPE pgfold_statement_errors_total counter\n"
			   "pgfold_statement_errors_total 1\n"
			   "# HELP pgfold_statement_time_seconds_total Time of timed statements, first byte in to "
			   "ReadyForQuery out.\n"
			   "# TYPE pgfold_statement_time_seconds_total counter\n"
			   "pgfold_statement_time_seconds_total 1.500251\n";
	if (strcmp(pf_sb_str(&sb), want) != 0)
		fail_msg("metrics:\n%s\nwant:\n%s", pf_sb_str(&sb), want);
	pf_sb_free(&sb);
	px_qstats_free(qs);
}

/* ------------------------------------------------------- admin routes */

typedef struct harness {
	uv_loop_t loop;
	uv_async_t close_async; /* client -> loop: px_admin_close */
	px_admin *admin;
	px_qstats *qs;
	int port;
	char failures[16384]; /* written by the client thread only */
	size_t failures_len;
	int nfailures;
} harness;

static void check_at(harness *h, bool ok, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void check_at(harness *h, bool ok, int line, const char *fmt, ...)
{
	if (ok)
		return;
	h->nfailures++;
	size_t room = sizeof(h->failures) - h->failures_len;
	if (room < 64)
		return;
	int n = snprintf(h->failures + h->failures_len, room, "  line %d: ", line);
	h->failures_len += (size_t)n;
	room -= (size_t)n;
	va_list ap;
	va_start(ap, fmt);
	n = vsnprintf(h->failures + h->failures_len, room - 1, fmt, ap);
	va_end(ap);
	h->failures_len += (size_t)n < room - 1 ? (size_t)n : room - 2;
	h->failures[h->failures_len++] = '\n';
	h->failures[h->failures_len] = '\0';
}

#define CHECK(h, cond, ...) check_at((h), (cond), __LINE__, __VA_ARGS__)

typedef struct response {
	int status; /* 0 when none */
	char head[2048];
	char body[64 * 1024];
} response;

/* One request on a fresh connection (Connection: close), read to EOF. */
static int http(harness *h, const char *method, const char *target, response *r)
{
	memset(r, 0, sizeof(*r));
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)h->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	char req[512];
	int len = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", method, target,
			   strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "");
	static char buf[sizeof(r->head) + sizeof(r->body)];
	size_t got = 0;
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 && send(fd, req, (size_t)len, MSG_NOSIGNAL) == len) {
		ssize_t n;
		while (got < sizeof(buf) - 1 && ((n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0 ||
						 (n < 0 && errno == EINTR)))
			if (n > 0)
				got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	const char *sep = strstr(buf, "\r\n\r\n");
	if (!sep || sscanf(buf, "HTTP/1.1 %d ", &r->status) != 1)
		return r->status = 0;
	snprintf(r->head, sizeof(r->head), "%.*s", (int)(sep + 4 - buf), buf);
	snprintf(r->body, sizeof(r->body), "%s", sep + 4);
	return r->status;
}

static void client_queries(harness *h)
{
	response *r = malloc(sizeof(*r));
	int st = http(h, "GET", "/queries", r);
	CHECK(h, st == 200, "GET /queries: %d", st);
	CHECK(h, strstr(r->head, "\r\nContent-Type: application/json\r\n") != NULL, "head: %s", r->head);
	const char *first = "{\"shapes\":2,\"evicted\":0,\"queries\":[{\"fingerprint\":\"00000000000000ab\","
			    "\"query\":\"SELECT * FROM users WHERE id = $1\",\"kind\":\"read\",\"tables\":[\"public.users\"],";
	CHECK(h, strncmp(r->body, first, strlen(first)) == 0, "GET /queries body: %s", r->body);
	CHECK(h, count_of(r->body, "\"fingerprint\"") == 2, "GET /queries body: %s", r->body);

	st = http(h, "GET", "/queries?format=text", r);
	CHECK(h, st == 200, "GET /queries?format=text: %d", st);
	CHECK(h, strstr(r->head, "\r\nContent-Type: text/plain") != NULL, "head: %s", r->head);
	CHECK(h, strncmp(r->body, "calls  total_ms  mean_ms  p99_ms  max_ms  rows  errors  cache_hits  cache_misses  kind   query\n", 95) == 0,
	      "text body: %s", r->body);
	CHECK(h, strstr(r->body, "  read   SELECT * FROM users WHERE id = $1\n") != NULL, "text body: %s", r->body);
	CHECK(h, count_of(r->body, "\n") == 3, "text body: %s", r->body);

	st = http(h, "GET", "/queries?limit=1&format=json", r);
	CHECK(h, st == 200 && count_of(r->body, "\"fingerprint\"") == 1, "limit=1: %d %s", st, r->body);
	st = http(h, "GET", "/queries?format=text&limit=1", r);
	CHECK(h, st == 200 && count_of(r->body, "\n") == 2, "text limit=1: %d %s", st, r->body);
	st = http(h, "GET", "/queries?limit=0", r);
	CHECK(h, st == 200 && count_of(r->body, "\"fingerprint\"") == 2, "limit=0: %d %s", st, r->body);

	static const char *const bad[] = {"/queries?limit=abc", "/queries?limit=", "/queries?limit=-1",
					  "/queries?format=xml", "/queries?format=texttexttexttexttext"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st = http(h, "GET", bad[i], r);
		CHECK(h, st == 400 && strncmp(r->body, "{\"error\":", 9) == 0, "%s: %d %s", bad[i], st, r->body);
	}

	st = http(h, "GET", "/queries/reset", r);
	CHECK(h, st == 405, "GET /queries/reset: %d", st);
	st = http(h, "POST", "/queries/reset", r);
	CHECK(h, st == 200 && strcmp(r->body, "{\"reset\":true}") == 0, "POST /queries/reset: %d %s", st, r->body);
	st = http(h, "GET", "/queries", r);
	CHECK(h, st == 200 && strcmp(r->body, "{\"shapes\":0,\"evicted\":0,\"queries\":[]}") == 0,
	      "GET /queries after reset: %d %s", st, r->body);
	st = http(h, "GET", "/queries?format=text", r);
	CHECK(h, st == 200 && strcmp(r->body, "calls  total_ms  mean_ms  p99_ms  max_ms  rows  errors  cache_hits  cache_misses  kind  query\n") == 0,
	      "text after reset: %d %s", st, r->body);
	free(r);
}

static void on_close_async(uv_async_t *async)
{
	harness *h = async->data;
	px_admin_close(h->admin);
	h->admin = NULL;
	uv_close((uv_handle_t *)async, NULL);
}

static void *client_main(void *arg)
{
	harness *h = arg;
	client_queries(h);
	uv_async_send(&h->close_async);
	return NULL;
}

static void test_admin_routes(void **state)
{
	harness *h = calloc(1, sizeof(*h));
	assert_int_equal(uv_loop_init(&h->loop), 0);
	h->qs = px_qstats_new(100);
	rw_shape a = shape_of(RW_KIND_READ, 0xab, "SELECT * FROM users WHERE id = $1", users_orders, 1);
	rw_shape b = shape_of(RW_KIND_WRITE, 0xcd, "INSERT INTO orders VALUES ($1)", users_orders + 2, 1);
	run(h->qs, &a, 900, 1, false);
	run(h->qs, &b, 100, 1, false);

	h->admin = px_admin_new(&h->loop);
	assert_int_equal(px_qstats_add_admin_routes(h->admin, h->qs), 0);
	cf_addr addr;
	memset(&addr, 0, sizeof(addr));
	addr.kind = CF_ADDR_TCP;
	strcpy(addr.host, "127.0.0.1");
	assert_int_equal(px_admin_listen(h->admin, &addr), 0);
	h->port = px_admin_port(h->admin);
	assert_true(h->port > 0);

	assert_int_equal(uv_async_init(&h->loop, &h->close_async, on_close_async), 0);
	h->close_async.data = h;
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, client_main, h), 0);
	assert_int_equal(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(pthread_join(thread, NULL), 0);
	assert_null(h->admin);
	assert_int_equal(uv_loop_close(&h->loop), 0);

	px_qstats_totals t;
	px_qstats_totals_get(h->qs, &t);
	px_qstats_free(h->qs);
	int nfailures = h->nfailures;
	if (nfailures)
		print_error("%d failed check(s):\n%s", nfailures, h->failures);
	free(h);
	assert_int_equal(nfailures, 0);
	assert_int_equal(t.shapes, 0);
	assert_int_equal(t.statements, 2);
}

int main(void)
{
	if (getenv("PGFOLD_TEST_DEBUG"))
		pf_log_set_level(PF_LOG_DEBUG);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_and_lookup),
		cmocka_unit_test(test_record_math),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_unparsed),
		cmocka_unit_test(test_cache_counters),
		cmocka_unit_test(test_p99),
		cmocka_unit_test(test_eviction),
		cmocka_unit_test(test_eviction_get_is_use),
		cmocka_unit_test(test_eviction_model),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_long_text_stored),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_admin_routes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
