/*
 * test_analysis_cache.c — unit tests for rewrite/analysis.h: the three paths
 * and the two caches (test_analysis.c runs the corpus).
 *
 *   paths          text hit returns the same object; a new literal (other
 *                  length, sign, comment, keyword case) takes the shape path
 *                  with this text's value locations; several statements
 *   fast path      a single statement fastscan handles: learned after a
 *                  parse or a pg_query_scan shape hit, then found without
 *                  pg_query_scan (values, ranges, case folding); never
 *                  learned for what fastscan refuses or a shape that may not
 *                  be shared; near-identical texts never share a fast key;
 *                  a fast key keeps its shape alive past the shape table;
 *                  a SELECT EXISTS (...) child's key column by every path
 *   shape keys     statements differing in a table, column, operator,
 *                  keyword, literal type, $n, quoting, U&"" name or list
 *                  length never share a shape, and each gets its own facts
 *   never shared   set_config, unparseable text, a BEGIN ATOMIC body
 *   bounds         LRU eviction by entries and by bytes; shapes and analyses
 *                  outlive their eviction and the analyzer; caches off
 *   edges          empty text, comments only, a NUL byte; trees too deep
 *                  for libpg_query refused, big flat statements analysed
 *
 * Inputs are copied into exact-size heap buffers (no NUL) so that ASan
 * catches any read past len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../rewrite/analysis.h"

#define BIG 4096
#define BIG_BYTES (64u << 20)

#define CHECK(cond, ...)                                                                                       \
	do {                                                                                                   \
		if (!(cond)) {                                                                                 \
			print_error(__VA_ARGS__);                                                              \
			print_error(": check failed: %s\n", #cond);                                            \
			fail();                                                                                \
		}                                                                                              \
	} while (0)

#define CHECK_U64(got, want, ...)                                                                              \
	do {                                                                                                   \
		unsigned long long got_ = (got), want_ = (want);                                               \
		if (got_ != want_) {                                                                           \
			print_error(__VA_ARGS__);                                                              \
			print_error(": %s: got %llu, want %llu\n", #got, got_, want_);                         \
			fail();                                                                                \
		}                                                                                              \
	} while (0)

static rw_analysis *analyze_n(rw_analyzer *a, const char *s, size_t n)
{
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	rw_analysis *an = rw_analyze(a, copy, n);
	free(copy);
	return an;
}

static rw_analysis *analyze(rw_analyzer *a, const char *s)
{
	return analyze_n(a, s, strlen(s));
}

static rw_analyzer_stats stats(const rw_analyzer *a)
{
	rw_analyzer_stats st;
	rw_analyzer_stats_get(a, &st);
	return st;
}

/* Analyse and free, returning which counter moved: 't'ext, 's'hape, 'p'arse, 'f'ailure. */
static char path_of(rw_analyzer *a, const char *sql)
{
	rw_analyzer_stats b = stats(a);
	rw_analysis_free(analyze(a, sql));
	rw_analyzer_stats s = stats(a);
	int moved = (s.text_hits != b.text_hits) + (s.shape_hits != b.shape_hits) +
		    (s.full_parses != b.full_parses) + (s.failures != b.failures);
	CHECK(moved == 1, "%s: one counter per call", sql);
	if (s.text_hits != b.text_hits)
		return 't';
	if (s.shape_hits != b.shape_hits)
		return 's';
	return s.full_parses != b.full_parses ? 'p' : 'f';
}

/* The text of value i of statement k. */
static void check_value(const rw_analysis *an, const char *sql, size_t k, size_t i, const char *want)
{
	CHECK(k < an->nstmts && i < an->stmts[k].shape->nslots, "%s: stmt %zu slot %zu exists", sql, k, i);
	const rw_value *v = &an->stmts[k].values[i];
	CHECK((size_t)v->length == strlen(want) && memcmp(sql + v->location, want, strlen(want)) == 0,
	      "%s: stmt %zu value %zu is \"%.*s\" at %d, want \"%s\"", sql, k, i, v->length, sql + v->location,
	      v->location, want);
}

/* ---- paths --------------------------------------------------------------- */

static void test_text_hit_is_same_object(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 1234;";
	rw_analysis *x = analyze(a, sql), *y = analyze(a, sql);
	CHECK(x == y, "same text, same analysis");
	rw_analyzer_stats st = stats(a);
	CHECK_U64(st.full_parses, 1, "first");
	CHECK_U64(st.text_hits, 1, "second");
	CHECK_U64(st.entries, 1, "cached");
	rw_analysis_free(x);
	rw_analysis_free(y);
	rw_analyzer_free(a);
}

static void test_shape_hit_values(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *first = "SELECT abalance FROM pgbench_accounts WHERE aid = 1234;";
	const char *texts[] = {
		"SELECT abalance FROM pgbench_accounts WHERE aid = 98765;",
		"SELECT abalance FROM pgbench_accounts WHERE aid = 5",
		"/* traceparent='00-abc' */ SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
		"select abalance from pgbench_accounts where aid = 77 -- lower-case keywords\n;",
		"SELECT  abalance\n\tFROM pgbench_accounts WHERE aid=3",
	};
	const char *values[] = {"98765", "5", "42", "77", "3"};
	rw_analysis *base = analyze(a, first);
	const rw_shape *shape = base->stmts[0].shape;
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
		rw_analyzer_stats b = stats(a);
		rw_analysis *an = analyze(a, texts[i]);
		CHECK_U64(stats(a).shape_hits - b.shape_hits, 1, "%s: shape path", texts[i]);
		CHECK(an->nstmts == 1 && an->stmts[0].shape == shape, "%s: same shape", texts[i]);
		check_value(an, texts[i], 0, 0, values[i]);
		const rw_stmt *st = &an->stmts[0];
		const char *sel = strstr(texts[i], "SELECT") ? strstr(texts[i], "SELECT") : strstr(texts[i], "select");
		int want_start = strncmp(texts[i], "/*", 2) == 0 ? 0 : (int)(sel - texts[i]);
		CHECK(st->location == want_start, "%s: statement starts at %d", texts[i], st->location);
		CHECK(texts[i][st->location + st->length - 1] != ';', "%s: ';' not in the statement", texts[i]);
		rw_analysis_free(an);
	}
	CHECK_U64(stats(a).shapes, 1, "one shape");
	rw_analysis_free(base);
	rw_analyzer_free(a);
}

static void test_shape_hit_negative_and_strings(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *u1 = "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 1234;";
	const char *u2 = "UPDATE pgbench_accounts SET abalance = abalance + - 7 WHERE aid = 55555;";
	const char *s1 = "SELECT * FROM t WHERE name = 'x' AND note = E'a\\'b' AND d = DATE '2020-01-01'";
	const char *s2 = "SELECT * FROM t WHERE name = 'it''s long' AND note = E'' AND d = DATE '1999-12-31'";
	rw_analysis *x1 = analyze(a, u1), *x2 = analyze(a, u2), *y1 = analyze(a, s1), *y2 = analyze(a, s2);
	CHECK_U64(stats(a).shape_hits, 2, "both second texts");
	check_value(x2, u2, 0, 0, "- 7");
	check_value(x2, u2, 0, 1, "55555");
	CHECK(x2->stmts[0].shape->slots[1].rel_index == 0 && strcmp(x2->stmts[0].shape->slots[1].column, "aid") == 0,
	      "aid slot");
	check_value(y2, s2, 0, 0, "'it''s long'");
	check_value(y2, s2, 0, 1, "E''");
	check_value(y2, s2, 0, 2, "'1999-12-31'");
	rw_analysis_free(x1);
	rw_analysis_free(x2);
	rw_analysis_free(y1);
	rw_analysis_free(y2);
	rw_analyzer_free(a);
}

static void test_multi_statement_shapes(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *m1 = "BEGIN; SELECT * FROM t WHERE id = 1; COMMIT";
	const char *m2 = "BEGIN;SELECT * FROM t WHERE id = 22;COMMIT;";
	CHECK(path_of(a, m1) == 'p', "new");
	CHECK(path_of(a, m2) == 's', "known shapes");
	CHECK(path_of(a, "SELECT * FROM t WHERE id = 3") == 's', "a statement alone shares its shape");
	CHECK(path_of(a, "COMMIT; BEGIN") == 's', "other order, same shapes");
	rw_analysis *an = analyze(a, m2);
	CHECK(an->nstmts == 3, "three statements");
	check_value(an, m2, 1, 0, "22");
	CHECK(an->stmts[1].location == 6 && an->stmts[1].length == 29, "second statement range %d+%d",
	      an->stmts[1].location, an->stmts[1].length);
	rw_analysis_free(an);

	const char *twice = "SELECT 1; SELECT 22";
	an = analyze(a, twice);
	CHECK(an->nstmts == 2 && an->stmts[0].shape == an->stmts[1].shape, "one shape for both");
	check_value(an, twice, 0, 0, "1");
	check_value(an, twice, 1, 0, "22");
	rw_analysis_free(an);
	rw_analyzer_free(a);
}

/* ---- shape keys ---------------------------------------------------------- */

typedef struct key_pair {
	const char *a, *b;
	const char *b_relation; /* relations[0].name of b, or NULL */
} key_pair;

static const key_pair distinct_pairs[] = {
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM b WHERE x = 1", "b"},
	{"SELECT * FROM s.a WHERE x = 1", "SELECT * FROM s2.a WHERE x = 1", "a"},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE y = 1", "a"},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x < 1", "a"},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = '1'", "a"},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = 1.5", "a"},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = -1", "a"},
	{"SELECT * FROM a WHERE x = $1", "SELECT * FROM a WHERE x = $2", "a"},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = 1 FOR UPDATE", "a"},
	{"SELECT * FROM a WHERE x = 1 AND y = 2", "SELECT * FROM a WHERE x = 1 OR y = 2", "a"},
	{"SELECT * FROM a WHERE x IN (1, 2)", "SELECT * FROM a WHERE x IN (1, 2, 3)", "a"},
	{"SELECT * FROM \"A\" WHERE x = 1", "SELECT * FROM A WHERE x = 1", "a"},
	{"SELECT * FROM U&\"a\" WHERE x = 1", "SELECT * FROM U&\"b\" WHERE x = 1", "b"},
	{"SELECT * FROM U&\"!0061\" UESCAPE '!'", "SELECT * FROM U&\"!0061\" UESCAPE '#'", "!0061"},
	{"SELECT B'1'", "SELECT X'1'", NULL},
	{"SELECT 1; SELECT 2", "SELECT 1, 2", NULL},
	{"DELETE FROM a WHERE x = 1", "SELECT * FROM a WHERE x = 1", "a"},
	{"SELECT * FROM \"a\" WHERE x = 1", "SELECT * FROM a WHERE x = 1", "a"},
	{"SELECT * FROM a WHERE \"x\" = 1", "SELECT * FROM a WHERE x = 1", "a"},
	{"SELECT * FROM a WHERE x <> 1", "SELECT * FROM a WHERE x != 1", "a"},
	{"SELECT * FROM a WHERE x = 2147483647", "SELECT * FROM a WHERE x = 2147483648", "a"},
	{"SELECT * FROM a WHERE x = $1", "SELECT * FROM a WHERE x = 1", "a"},
};

static void test_shape_keys_distinct(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof distinct_pairs / sizeof *distinct_pairs; i++) {
		const key_pair *p = &distinct_pairs[i];
		rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
		CHECK(path_of(a, p->a) == 'p', "%s: parsed", p->a);
		char path = path_of(a, p->b);
		CHECK(path == 'p', "%s after %s: must be parsed, took path %c", p->b, p->a, path);
		if (p->b_relation) {
			rw_analysis *an = analyze(a, p->b);
			const rw_shape *sh = an->stmts[0].shape;
			CHECK(sh->nrelations >= 1 && strcmp(sh->relations[0].name, p->b_relation) == 0,
			      "%s: relation %s", p->b, sh->nrelations ? sh->relations[0].name : "(none)");
			rw_analysis_free(an);
		}
		rw_analyzer_free(a);
	}
}

/* ---- the fast path -------------------------------------------------------- */

/* path_of, with 'F' for a shape hit by fastscan key. */
static char path_of_fast(rw_analyzer *a, const char *sql)
{
	uint64_t before = stats(a).fast_hits;
	char p = path_of(a, sql);
	return p == 's' && stats(a).fast_hits != before ? 'F' : p;
}

typedef struct fast_text {
	const char *sql;
	const char *values[3];
	const char *stmt; /* the statement's text */
} fast_text;

static void test_fast_path_values(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *first = "SELECT u.id, u.name FROM users u WHERE u.id = 1234 AND u.name = 'bob' LIMIT 21";
	static const fast_text texts[] = {
		{"SELECT u.id, u.name FROM users u WHERE u.id = 5 AND u.name = 'it''s me' LIMIT 1;",
		 {"5", "'it''s me'", "1"},
		 "SELECT u.id, u.name FROM users u WHERE u.id = 5 AND u.name = 'it''s me' LIMIT 1"},
		{"select U.ID, u.name from USERS u where u.id = 2147483647 and u.name = '' limit 9999 -- c",
		 {"2147483647", "''", "9999"},
		 "select U.ID, u.name from USERS u where u.id = 2147483647 and u.name = '' limit 9999 -- c"},
		{"/* app=web */ SELECT u.id,u.name FROM users u WHERE u.id=00042 AND u.name='x'LIMIT 0 ; ; ",
		 {"00042", "'x'", "0"},
		 "/* app=web */ SELECT u.id,u.name FROM users u WHERE u.id=00042 AND u.name='x'LIMIT 0"},
		{"\n\tSELECT u.id, u.name\nFROM users u\nWHERE u.id = 7 AND u.name = 'caf\xc3\xa9' LIMIT 3\n",
		 {"7", "'caf\xc3\xa9'", "3"},
		 "SELECT u.id, u.name\nFROM users u\nWHERE u.id = 7 AND u.name = 'caf\xc3\xa9' LIMIT 3"},
	};
	rw_analysis *base = analyze(a, first);
	CHECK_U64(stats(a).fast_keys, 1, "learned from the parse");
	const rw_shape *shape = base->stmts[0].shape;
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
		const fast_text *t = &texts[i];
		uint64_t fast = stats(a).fast_hits;
		rw_analysis *an = analyze(a, t->sql);
		CHECK_U64(stats(a).fast_hits - fast, 1, "%s: fast path", t->sql);
		CHECK(an->nstmts == 1 && an->stmts[0].shape == shape && !an->error, "%s: same shape", t->sql);
		for (size_t k = 0; k < 3; k++)
			check_value(an, t->sql, 0, k, t->values[k]);
		const rw_stmt *st = &an->stmts[0];
		CHECK(st->location == (int)(strstr(t->sql, t->stmt) - t->sql) && st->length == (int)strlen(t->stmt),
		      "%s: statement \"%.*s\"", t->sql, st->length, t->sql + st->location);
		CHECK(shape->slots[0].rel_index == 0 && strcmp(shape->slots[0].column, "id") == 0, "%s: u.id", t->sql);
		rw_analysis_free(an);
	}
	/* an integer too large for int32 is another token (FCONST): another shape */
	CHECK(path_of_fast(a, "SELECT u.id, u.name FROM users u WHERE u.id = 2147483648 AND u.name = 'b' LIMIT 2") ==
		      'p',
	      "FCONST");
	CHECK_U64(stats(a).shapes, 2, "two shapes");
	rw_analysis_free(base);
	rw_analyzer_free(a);
}

/* A SELECT EXISTS (...) child (SQLAlchemy's select(exists().where(...))):
 * its key slot has the subquery's column by every path — parse, fast key,
 * pg_query_scan shape hit (a folded minus, which fastscan leaves alone). */
static void test_exists_query_every_path(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	static const struct {
		const char *sql, *value;
		char path;
	} texts[] = {
		{"SELECT EXISTS (SELECT * \nFROM posts \nWHERE posts.user_id = 5) AS anon_1", "5", 'p'},
		{"SELECT EXISTS (SELECT * \nFROM posts \nWHERE posts.user_id = 17) AS anon_1", "17", 'F'},
		{"select exists (select * from POSTS where posts.user_id = 123456) as anon_1", "123456", 'F'},
		{"SELECT EXISTS (SELECT * FROM posts WHERE posts.user_id = -5) AS anon_1", "-5", 'p'},
		{"SELECT EXISTS (SELECT * FROM posts WHERE posts.user_id = -6) AS anon_1", "-6", 's'},
	};
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
		const char *sql = texts[i].sql;
		rw_analyzer_stats b = stats(a);
		rw_analysis *an = analyze(a, sql);
		rw_analyzer_stats e = stats(a);
		char path = e.full_parses != b.full_parses ? 'p' : e.fast_hits != b.fast_hits ? 'F' : 's';
		CHECK(path == texts[i].path && e.failures == b.failures, "%s: path %c, want %c", sql, path,
		      texts[i].path);
		CHECK(an->nstmts == 1, "%s: one statement", sql);
		const rw_shape *sh = an->stmts[0].shape;
		CHECK(sh->flags & RW_EXISTS_QUERY, "%s: EXISTS query", sql);
		CHECK(sh->nslots == 1 && sh->slots[0].rel_index == 0 && sh->slots[0].column &&
			      strcmp(sh->slots[0].column, "user_id") == 0 && strcmp(sh->relations[0].name, "posts") == 0,
		      "%s: posts.user_id", sql);
		check_value(an, sql, 0, 0, texts[i].value);
		rw_analysis_free(an);
	}
	rw_analyzer_free(a);
}

static void test_fast_learned_from_scan_path(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	CHECK(path_of_fast(a, "BEGIN; SELECT * FROM t WHERE id = 1; COMMIT") == 'p', "new");
	CHECK_U64(stats(a).fast_keys, 0, "several statements: no fast key");
	CHECK(path_of_fast(a, "SELECT * FROM t WHERE id = 2") == 's', "scanned, then learned");
	CHECK_U64(stats(a).fast_keys, 1, "learned");
	CHECK(path_of_fast(a, "SELECT * FROM t WHERE id = 3") == 'F', "fast");
	CHECK(path_of_fast(a, "SELECT * FROM T WHERE ID = 4") == 'F', "case folded as PostgreSQL does");
	rw_analysis *an = analyze(a, "select * from t where id = 55555");
	CHECK(stats(a).fast_hits == 3 && strcmp(an->stmts[0].shape->relations[0].name, "t") == 0, "relation t");
	check_value(an, "select * from t where id = 55555", 0, 0, "55555");
	rw_analysis_free(an);

	/* a shape first parsed from mixed case is found for lower case (its facts are folded) */
	CHECK(path_of_fast(a, "SELECT Name FROM Users WHERE Id = 1") == 'p', "new");
	an = analyze(a, "select name from users where id = 2");
	CHECK(stats(a).fast_hits == 4, "fast");
	CHECK(strcmp(an->stmts[0].shape->relations[0].name, "users") == 0 &&
		      strcmp(an->stmts[0].shape->slots[0].column, "id") == 0,
	      "folded facts");
	rw_analysis_free(an);
	rw_analyzer_free(a);
}

typedef struct never_fast {
	const char *first, *second;
} never_fast;

static const never_fast never_fast_cases[] = {
	{"SELECT set_config('a.b', 'x', false)", "SELECT set_config('a.b', 'y', false)"}, /* literal-dependent */
	{"EXPLAIN (ANALYZE 'off') SELECT 1", "EXPLAIN (ANALYZE 'on') SELECT 1"},
	{"SELECT * FROM t WHERE a = E'x'", "SELECT * FROM t WHERE a = E'y'"},
	{"SELECT * FROM t WHERE a = B'1'", "SELECT * FROM t WHERE a = B'10'"},
	{"SELECT * FROM t WHERE a = U&'x'", "SELECT * FROM t WHERE a = U&'y'"},
	{"SELECT * FROM t WHERE a = $$x$$", "SELECT * FROM t WHERE a = $$y$$"},
	{"SELECT * FROM t WHERE a = 'x'\n'y'", "SELECT * FROM t WHERE a = 'z'\n'w'"},
	{"SELECT * FROM t WHERE a = 'x\\'", "SELECT * FROM t WHERE a = 'y\\'"},
	{"UPDATE t SET b = b + -5 WHERE id = 1", "UPDATE t SET b = b + -6 WHERE id = 2"},
	{"SELECT * FROM t WHERE a = 1; SELECT 2", "SELECT * FROM t WHERE a = 3; SELECT 4"},
	{"SELECT * FROM t WHERE a = $0", "SELECT * FROM t WHERE a = $0 AND b = 1"},
	{"SELECT caf\xc3\xa9 FROM t WHERE a = 1", "SELECT caf\xc3\xa9 FROM t WHERE a = 2"},
};

static void test_fast_never_learned(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof never_fast_cases / sizeof *never_fast_cases; i++) {
		const never_fast *c = &never_fast_cases[i];
		rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
		rw_analysis_free(analyze(a, c->first));
		char p = path_of_fast(a, c->second);
		CHECK(p != 'F' && stats(a).fast_keys == 0, "%s then %s: path %c, %zu fast keys", c->first, c->second, p,
		      stats(a).fast_keys);
		rw_analyzer_free(a);
	}
}

/* Near-identical texts: the second never comes from the first's fast key. */
static const key_pair fast_distinct[] = {
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = '1'", "a"},
	{"SELECT * FROM \"A\" WHERE x = 1", "SELECT * FROM a WHERE x = 1", "a"},
	{"SELECT * FROM \"A\" WHERE x = 1", "SELECT * FROM A WHERE x = 1", "a"},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM \"a\" WHERE x = 1", "a"},
	{"SELECT x ++ 1 FROM a", "SELECT x + + 1 FROM a", "a"},
	{"SELECT x::int FROM a", "SELECT x: :int FROM a", NULL},
	{"SELECT * FROM a WHERE x = 1.5", "SELECT * FROM a WHERE x = 15", "a"},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = 1 LIMIT 1", "a"},
	{"SELECT * FROM a_b WHERE x = 1", "SELECT * FROM a b WHERE x = 1", "a"},
};

static void test_fast_keys_distinct(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof fast_distinct / sizeof *fast_distinct; i++) {
		const key_pair *p = &fast_distinct[i];
		rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
		rw_analysis_free(analyze(a, p->a));
		char path = path_of_fast(a, p->b);
		CHECK(path != 'F', "%s after %s: took the fast path", p->b, p->a);
		if (p->b_relation) {
			rw_analysis *an = analyze(a, p->b);
			CHECK(an->nstmts == 1 && an->stmts[0].shape->nrelations >= 1 &&
				      strcmp(an->stmts[0].shape->relations[0].name, p->b_relation) == 0,
			      "%s: relation %s", p->b, p->b_relation);
			rw_analysis_free(an);
		}
		rw_analyzer_free(a);
	}
}

static void test_fast_key_outlives_shape_table(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(2, BIG_BYTES);
	rw_analysis *held = analyze(a, "SELECT * FROM keep_me km WHERE km.id = 1");
	char sql[128];
	for (int i = 0; i < 4; i++) { /* new shapes, no fast keys: push keep_me out of the shape table */
		snprintf(sql, sizeof sql, "SELECT * FROM other%d WHERE id = 1; SELECT %d", i, i);
		rw_analysis_free(analyze(a, sql));
	}
	rw_analyzer_stats st = stats(a);
	CHECK(st.shapes == 2 && st.fast_keys == 1, "%zu shapes, %zu fast keys", st.shapes, st.fast_keys);
	const char *again = "SELECT * FROM keep_me km WHERE km.id = 77";
	rw_analysis *an = analyze(a, again);
	CHECK_U64(stats(a).fast_hits, 1, "found by its fast key");
	CHECK(an->stmts[0].shape == held->stmts[0].shape, "the same shape");
	rw_analysis_free(held);
	CHECK(strcmp(an->stmts[0].shape->relations[0].alias, "km") == 0, "alive");
	check_value(an, again, 0, 0, "77");
	rw_analysis_free(an);
	rw_analyzer_free(a);
}

/* ---- never shared -------------------------------------------------------- */

static void test_set_config_never_shared(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	rw_analysis *x = analyze(a, "SELECT set_config('search_path', 'a', false)");
	rw_analysis *y = analyze(a, "SELECT set_config('statement_timeout', '5s', true)");
	CHECK_U64(stats(a).full_parses, 2, "parsed twice");
	CHECK_U64(stats(a).shapes, 0, "no shape kept");
	CHECK(strcmp(x->stmts[0].shape->setting, "search_path") == 0 && !x->stmts[0].shape->set_local, "x");
	CHECK(strcmp(y->stmts[0].shape->setting, "statement_timeout") == 0 && y->stmts[0].shape->set_local, "y");
	rw_analysis_free(x);
	rw_analysis_free(y);
	rw_analyzer_free(a);
}

static void test_unparsed_never_cached(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *bad = "SELEC * FROM users";
	for (int i = 0; i < 2; i++) {
		rw_analysis *an = analyze(a, bad);
		CHECK(an->nstmts == 1 && an->error && strstr(an->error, "syntax error"), "unparsed");
		CHECK(an->stmts[0].shape->kind == RW_KIND_UNPARSED, "kind");
		CHECK(an->stmts[0].location == 0 && an->stmts[0].length == (int)strlen(bad), "covers the text");
		CHECK(an->stmts[0].shape->normalized == NULL && an->stmts[0].shape->nslots == 0, "no shape facts");
		rw_analysis_free(an);
	}
	rw_analyzer_stats st = stats(a);
	CHECK_U64(st.failures, 2, "failures");
	CHECK_U64(st.entries + st.shapes + st.text_hits, 0, "nothing cached");
	rw_analyzer_free(a);
}

/* libpg_query 15 misses a UESCAPE after a comment (PostgreSQL does not): such
 * a text must not share the shape of one without the comment. */
static void test_uescape_after_comment(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	CHECK(path_of(a, "SELECT * FROM t WHERE k = U&'!0061' UESCAPE '!'") == 'p', "parsed");
	CHECK(path_of(a, "SELECT * FROM t WHERE k = U&'!0062' UESCAPE '!'") == 's', "same shape");
	CHECK(path_of(a, "SELECT * FROM t WHERE k = U&'!0063' /* c */ UESCAPE '!'") == 'f', "what libpg_query says");
	CHECK(path_of(a, "SELECT * FROM U&\"!0061\" -- c\n UESCAPE '!'") == 'f', "identifiers too");
	rw_analyzer_free(a);
}

static void test_begin_atomic_not_shared(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *fn = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3";
	rw_analysis *an = analyze(a, fn);
	CHECK(an->nstmts == 2 && !an->error, "two statements, got %zu", an->nstmts);
	CHECK(an->stmts[0].shape->kind == RW_KIND_DDL && an->stmts[1].shape->kind == RW_KIND_READ, "kinds");
	CHECK(an->stmts[0].length == (int)(strstr(fn, "END;") + 3 - fn), "the body stays in the first statement");
	check_value(an, fn, 1, 0, "3");
	CHECK_U64(stats(a).shapes, 0, "no shape kept from a disagreeing split");
	CHECK(path_of(a, "SELECT 2") == 'p', "SELECT 2 was never a shape");
	CHECK(path_of(a, "END") == 'p', "nor END");
	rw_analysis_free(an);
	rw_analyzer_free(a);
}

/* ---- bounds -------------------------------------------------------------- */

static void test_lru_by_entries(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(4, BIG_BYTES);
	char sql[128];
	for (int i = 0; i < 50; i++) {
		snprintf(sql, sizeof sql, "SELECT * FROM t%d WHERE id = %d", i, i);
		CHECK(path_of(a, sql) == 'p', "%s", sql);
		rw_analyzer_stats st = stats(a);
		CHECK(st.entries <= 4 && st.shapes <= 4 && st.fast_keys <= 4,
		      "bounded after %d: %zu texts, %zu shapes, %zu fast keys", i, st.entries, st.shapes, st.fast_keys);
	}
	rw_analyzer_stats st = stats(a);
	CHECK_U64(st.evictions, 2 * (50 - 4), "evictions (shapes, fast keys)");
	CHECK_U64(st.not_admitted, 50 - 4, "a full text cache takes no text seen only once");
	CHECK(path_of(a, "SELECT * FROM t3 WHERE id = 3") == 't', "texts cached before it filled are kept");
	CHECK(path_of(a, "SELECT * FROM t49 WHERE id = 49") == 's', "seen once: not cached (its shape is)");
	CHECK(path_of(a, "SELECT * FROM t49 WHERE id = 49") == 't', "seen again: cached");
	CHECK_U64(stats(a).evictions, 2 * (50 - 4) + 1, "it pushed the least recent text out");
	CHECK(path_of(a, "SELECT * FROM t48 WHERE id = 0") == 's', "recent shape kept");
	CHECK(path_of(a, "SELECT * FROM t0 WHERE id = 0") == 'p', "oldest evicted");
	rw_analyzer_free(a);
}

/* A stream of texts that never repeat (pgbench -S: a new literal each
 * time) leaves a full text cache as it was; the texts in it still hit. */
static void test_unique_texts_leave_full_cache(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(8, BIG_BYTES);
	char sql[128];
	for (int i = 0; i < 8; i++) {
		snprintf(sql, sizeof sql, "SELECT * FROM hot%d WHERE id = 1", i);
		CHECK(path_of(a, sql) == 'p', "%s", sql);
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(sql, sizeof sql, "SELECT abalance FROM pgbench_accounts WHERE aid = %d", i);
		CHECK(path_of(a, sql) == (i == 0 ? 'p' : 's'), "%s", sql);
	}
	rw_analyzer_stats st = stats(a);
	CHECK_U64(st.not_admitted, 1000, "none of the unique texts cached");
	CHECK(st.entries == 8, "the cache still holds %zu texts", st.entries);
	for (int i = 0; i < 8; i++) {
		snprintf(sql, sizeof sql, "SELECT * FROM hot%d WHERE id = 1", i);
		CHECK(path_of(a, sql) == 't', "%s still cached", sql);
	}
	rw_analyzer_free(a);
}

static void test_shape_outlives_eviction(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(2, BIG_BYTES);
	rw_analysis *held = analyze(a, "SELECT * FROM keep_me km WHERE km.id = 1");
	rw_analysis *again = analyze(a, "SELECT * FROM keep_me km WHERE km.id = 2"); /* shape hit */
	char sql[128];
	for (int i = 0; i < 20; i++) {
		snprintf(sql, sizeof sql, "SELECT * FROM other%d WHERE id = 1", i);
		rw_analysis_free(analyze(a, sql));
		rw_analysis_free(analyze(a, sql)); /* seen twice: the full text cache takes it */
	}
	CHECK(path_of(a, "SELECT * FROM keep_me km WHERE km.id = 1") == 'p', "evicted from both caches");
	const rw_shape *sh = held->stmts[0].shape;
	CHECK(sh == again->stmts[0].shape, "shared shape");
	CHECK(strcmp(sh->relations[0].name, "keep_me") == 0 && strcmp(sh->relations[0].alias, "km") == 0, "alive");
	CHECK(sh->slots[0].rel_index == 0 && strcmp(sh->slots[0].column, "id") == 0, "slot alive");
	rw_analysis_free(held);
	CHECK(strcmp(again->stmts[0].shape->normalized, "SELECT * FROM keep_me km WHERE km.id = $1") == 0,
	      "alive after the other holder went");
	rw_analysis_free(again);
	rw_analyzer_free(a);
}

static void test_analysis_outlives_analyzer(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *sql = "SELECT * FROM users WHERE id = 7";
	rw_analysis *an = analyze(a, sql), *hit = analyze(a, sql);
	rw_analysis *kept = rw_analysis_ref(hit);
	rw_analyzer_free(a);
	CHECK(an == hit && kept == an && strcmp(an->stmts[0].shape->relations[0].name, "users") == 0, "alive");
	check_value(an, sql, 0, 0, "7");
	rw_analysis_free(an);
	rw_analysis_free(hit);
	check_value(kept, sql, 0, 0, "7");
	rw_analysis_free(kept);
	rw_analysis_free(NULL);
}

static void test_lru_by_bytes(void **state)
{
	(void)state;
	const size_t budget = 64 * 1024;
	rw_analyzer *a = rw_analyzer_new(BIG, budget);
	char sql[4096];
	for (int i = 0; i < 200; i++) {
		int n = snprintf(sql, sizeof sql, "SELECT c%d", i);
		for (int k = 0; k < 60; k++)
			n += snprintf(sql + n, sizeof sql - (size_t)n, ", col_%d_%d", i, k);
		snprintf(sql + n, sizeof sql - (size_t)n, " FROM t WHERE id = %d", i);
		rw_analysis_free(analyze(a, sql));
		CHECK(stats(a).bytes <= budget, "within %zu bytes after %d: %zu", budget, i, stats(a).bytes);
	}
	CHECK(stats(a).evictions > 0 && stats(a).entries < 200, "evicted by bytes");

	/* one text larger than a cache's share: analysed, never cached */
	size_t cap = 200000, n = 0;
	char *huge = malloc(cap);
	assert_non_null(huge);
	n += (size_t)snprintf(huge, cap, "INSERT INTO t (a) VALUES (0)");
	for (int i = 1; n + 32 < cap; i++)
		n += (size_t)snprintf(huge + n, cap - n, ", (%d)", i);
	rw_analyzer_stats b = stats(a);
	rw_analysis *an = analyze_n(a, huge, n), *an2 = analyze_n(a, huge, n);
	rw_analyzer_stats s = stats(a);
	CHECK(an != an2 && s.text_hits == b.text_hits && s.full_parses == b.full_parses + 2, "huge text not cached");
	CHECK(an->nstmts == 1 && an->stmts[0].shape->kind == RW_KIND_WRITE && an->stmts[0].shape->nslots > 10000,
	      "huge text analysed");
	CHECK(s.bytes <= budget, "still within budget");
	rw_analysis_free(an);
	rw_analysis_free(an2);
	free(huge);
	rw_analyzer_free(a);
}

static void test_caches_off(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(0, 0);
	CHECK(path_of(a, "SELECT 1") == 'p', "first");
	CHECK(path_of(a, "SELECT 1") == 'p', "again: no cache");
	rw_analyzer_stats st = stats(a);
	CHECK_U64(st.entries + st.shapes + st.bytes, 0, "nothing kept");
	rw_analyzer_free(a);
}

/* ---- edges --------------------------------------------------------------- */

static void test_empty_and_comments(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	const char *texts[] = {"", "   \n\t", "-- only a comment", "/* c */ ; ; -- x\n;"};
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
		rw_analysis *an = analyze(a, texts[i]);
		CHECK(an->nstmts == 0 && !an->error, "\"%s\": no statement", texts[i]);
		rw_analysis_free(an);
	}
	rw_analyzer_free(a);
}

static void test_nul_byte(void **state)
{
	(void)state;
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	static const char sql[] = "SELECT 1\0; DROP TABLE users";
	rw_analysis *an = analyze_n(a, sql, sizeof sql - 1);
	CHECK(an->nstmts == 1 && an->error && strstr(an->error, "NUL"), "NUL byte: unparsed");
	CHECK(an->stmts[0].length == (int)(sizeof sql - 1), "covers all of it");
	rw_analysis_free(an);
	rw_analyzer_free(a);
}

/* prefix x n, middle, suffix x n, as a heap string */
static char *repeat(const char *head, const char *pre, size_t n, const char *mid, const char *suf)
{
	size_t len = strlen(head) + n * (strlen(pre) + strlen(suf)) + strlen(mid) + 1;
	char *s = malloc(len), *o = s;
	assert_non_null(s);
	o += sprintf(o, "%s", head);
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%s", pre);
	o += sprintf(o, "%s", mid);
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%s", suf);
	return s;
}

typedef struct deep_case {
	const char *head, *pre;
	size_t n;
	const char *mid, *suf;
	bool refused;
} deep_case;

/* Deep trees crash libpg_query's protobuf output: refused, not parsed.  Big
 * but flat statements (long IN lists, bulk VALUES, AND chains) are analysed. */
static const deep_case deep_cases[] = {
	{"SELECT ", "1 + ", 5000, "1", "", true},
	{"SELECT ", "(SELECT ", 1500, "1", ")", true},
	{"SELECT ", "NOT ", 4500, "true", "", true},
	{"SELECT 1", "::int", 8000, "", "", true},
	{"SELECT ", "'a' || ", 1200, "'b'", "", true},
	{"SELECT ", "1 + ", 900, "1", "", false},
	{"SELECT ", "(SELECT ", 200, "1", ")", false},
	{"SELECT ", "(", 300, "1", ")", false},
	{"SELECT * FROM t WHERE id IN (0", ", 1", 10000, ")", "", false},
	{"INSERT INTO t (a, b, c, d, e) VALUES (0, 0, 0, 0, 0)", ", (1, 'x', 2.5, $1, true)", 2000, "", "", false},
	{"SELECT * FROM t WHERE a = 0", " AND a = 1 OR b = 'x'", 500, "", "", false},
	{"SELECT 1", " UNION ALL SELECT 1", 3000, "", "", false},
	{"SELECT CASE", " WHEN x = 1 THEN 'y'", 1000, " END", "", false},
};

static void test_deep_statements(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof deep_cases / sizeof *deep_cases; i++) {
		const deep_case *c = &deep_cases[i];
		char *sql = repeat(c->head, c->pre, c->n, c->mid, c->suf);
		rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
		rw_analysis *an = analyze(a, sql);
		bool refused = an->error && strstr(an->error, "too deeply");
		CHECK(refused == c->refused, "%s%s x %zu: %s", c->head, c->pre, c->n,
		      an->error ? an->error : "analysed");
		CHECK(c->refused || (an->nstmts == 1 && !an->error), "%s%s x %zu: analysed", c->head, c->pre, c->n);
		rw_analysis_free(an);
		rw_analyzer_free(a);
		free(sql);
	}
}

static void test_names(void **state)
{
	(void)state;
	CHECK(strcmp(rw_kind_name(RW_KIND_READ), "read") == 0, "read");
	CHECK(strcmp(rw_kind_name(RW_KIND_UNPARSED), "unparsed") == 0, "unparsed");
	CHECK(strcmp(rw_kind_name((rw_kind)99), "?") == 0, "out of range");
	CHECK(strcmp(rw_tx_op_name(RW_TX_SET), "set transaction") == 0, "set transaction");
	CHECK(strcmp(rw_tx_op_name(RW_TX_ROLLBACK_PREPARED), "rollback prepared") == 0, "rollback prepared");
	CHECK(strcmp(rw_isolation_name(RW_ISO_SERIALIZABLE), "serializable") == 0, "serializable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_hit_is_same_object),
		cmocka_unit_test(test_shape_hit_values),
		cmocka_unit_test(test_shape_hit_negative_and_strings),
		cmocka_unit_test(test_multi_statement_shapes),
		cmocka_unit_test(test_shape_keys_distinct),
		cmocka_unit_test(test_fast_path_values),
		cmocka_unit_test(test_exists_query_every_path),
		cmocka_unit_test(test_fast_learned_from_scan_path),
		cmocka_unit_test(test_fast_never_learned),
		cmocka_unit_test(test_fast_keys_distinct),
		cmocka_unit_test(test_fast_key_outlives_shape_table),
		cmocka_unit_test(test_set_config_never_shared),
		cmocka_unit_test(test_unparsed_never_cached),
		cmocka_unit_test(test_begin_atomic_not_shared),
		cmocka_unit_test(test_uescape_after_comment),
		cmocka_unit_test(test_lru_by_entries),
		cmocka_unit_test(test_unique_texts_leave_full_cache),
		cmocka_unit_test(test_shape_outlives_eviction),
		cmocka_unit_test(test_analysis_outlives_analyzer),
		cmocka_unit_test(test_lru_by_bytes),
		cmocka_unit_test(test_caches_off),
		cmocka_unit_test(test_empty_and_comments),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_deep_statements),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
