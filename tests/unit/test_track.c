/*
 * test_track.c — statements in flight (proxy/track.c) and the session state
 * they feed (proxy/sstate.c), driven with real analyses from rw_analyze()
 * through message sequences exactly as a PostgreSQL 15 server answers them
 * (ParseComplete, BindComplete, RowDescription, DataRow ... are not fed:
 * the track never looks at them).
 *
 * Every test drives one px_track through a small script of client messages
 * (Q P B E S C) and backend answers (CC ERR EMPTY SUSP RFQ), then checks the
 * done-callback reports (statement shape, rows from the tag, error flag,
 * elapsed time) and the session state: px_sstate_setting(), the isolation
 * in force, tx/tx_wrote, and the /sessions JSON rendering.
 *
 * The "regressions" section holds sequences an earlier version got wrong
 * (each checked against a real PostgreSQL 15).  Tests named test_bug_*
 * describe what PostgreSQL does where pgfold currently disagrees: they fail
 * until the bug is fixed.  Their comments give the exact sequence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/strbuf.h"
#include "../../proxy/sstate.h"
#include "../../proxy/track.h"
#include "../../rewrite/analysis.h"

/* ---------------------------------------------------------------- harness */

#define MAX_RECS 64

typedef struct done_rec {
	bool known; /* stmt != NULL */
	rw_kind kind;
	rw_tx_op tx_op;
	char *normalized; /* the shape's normalized text (copy), or NULL */
	uint64_t elapsed;
	uint64_t rows;
	bool error;
} done_rec;

typedef struct harness {
	rw_analyzer *az;
	px_track t;
	done_rec rec[MAX_RECS];
	size_t ndone; /* done callbacks, all of them (the first MAX_RECS are kept) */
	uint64_t now; /* the clock handed to the track; every call advances it by 10 */
	pf_sb json;
} harness;

static void on_done(void *ctx, const rw_stmt *stmt, uint64_t elapsed_us, uint64_t rows, bool error)
{
	harness *h = ctx;
	if (h->ndone < MAX_RECS) {
		done_rec *r = &h->rec[h->ndone];
		r->known = stmt != NULL;
		if (stmt) {
			r->kind = stmt->shape->kind;
			r->tx_op = stmt->shape->tx_op;
			r->normalized = stmt->shape->normalized ? strdup(stmt->shape->normalized) : NULL;
		}
		r->elapsed = elapsed_us;
		r->rows = rows;
		r->error = error;
	}
	h->ndone++;
}

static int setup(void **state)
{
	harness *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	h->az = rw_analyzer_new(1000, 16u << 20);
	assert_non_null(h->az);
	px_track_init(&h->t, on_done, h);
	h->now = 1000;
	pf_sb_init(&h->json);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	harness *h = *state;
	px_track_free(&h->t);
	rw_analyzer_free(h->az);
	for (size_t i = 0; i < MAX_RECS; i++)
		free(h->rec[i].normalized);
	pf_sb_free(&h->json);
	free(h);
	return 0;
}

static uint64_t tick(harness *h)
{
	return h->now += 10;
}

/* Client messages.  Texts are analysed from exact-size heap copies (no NUL)
 * so ASan sees any read past the statement. */
static rw_analysis *analyze(harness *h, const char *sql)
{
	size_t n = strlen(sql);
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, sql, n);
	rw_analysis *an = rw_analyze(h->az, copy, n);
	free(copy);
	return an;
}

static void Q(harness *h, const char *sql)
{
	rw_analysis *an = analyze(h, sql);
	px_track_query(&h->t, an, sql, tick(h));
	rw_analysis_free(an);
}

static void P(harness *h, const char *name, const char *sql)
{
	rw_analysis *an = analyze(h, sql);
	px_track_parse(&h->t, name, an, sql);
	rw_analysis_free(an);
}

static void B(harness *h, const char *portal, const char *stmt)
{
	px_track_bind(&h->t, portal, stmt);
}

static void E(harness *h, const char *portal)
{
	px_track_execute(&h->t, portal, tick(h));
}

static void S(harness *h)
{
	px_track_sync(&h->t);
}

/* Parse + Bind + Execute of the unnamed statement and portal. */
static void PBE(harness *h, const char *sql)
{
	P(h, "", sql);
	B(h, "", "");
	E(h, "");
}

/* Backend answers. */
static void CC(harness *h, const char *tag)
{
	px_track_complete(&h->t, tag, tick(h));
}

static void ERR(harness *h)
{
	px_track_error(&h->t, tick(h));
}

static void RFQ(harness *h, char status)
{
	px_track_ready(&h->t, status);
}

/* One simple Query of one statement, answered with tag and ReadyForQuery. */
static void run(harness *h, const char *sql, const char *tag, char status)
{
	Q(h, sql);
	CC(h, tag);
	RFQ(h, status);
}

/* ---------------------------------------------------------------- checks */

static const px_sstate *st(harness *h)
{
	return &h->t.state;
}

static void check_setting_(harness *h, const char *name, const char *want, int line)
{
	const char *got = px_sstate_setting(st(h), name);
	if (!want && got)
		fail_msg("line %d: setting %s: got \"%s\", want none", line, name, got);
	if (want && !got)
		fail_msg("line %d: setting %s: got none, want \"%s\"", line, name, want);
	if (want && strcmp(got, want) != 0)
		fail_msg("line %d: setting %s: got \"%s\", want \"%s\"", line, name, got, want);
}
#define check_setting(h, name, want) check_setting_((h), (name), (want), __LINE__)

static void check_iso_(harness *h, rw_isolation want, int line)
{
	rw_isolation got = px_sstate_isolation(st(h));
	if (got != want)
		fail_msg("line %d: isolation: got %s, want %s", line, rw_isolation_name(got), rw_isolation_name(want));
}
#define check_iso(h, want) check_iso_((h), (want), __LINE__)

/* Done report i: known with this normalized text (NULL: unknown
 * statement), rows and error. */
static void check_done_(harness *h, size_t i, const char *normalized, uint64_t rows, bool error, int line)
{
	if (i >= h->ndone)
		fail_msg("line %d: done report %zu missing (%zu reports)", line, i, h->ndone);
	const done_rec *r = &h->rec[i];
	if (!normalized && r->known)
		fail_msg("line %d: report %zu: got statement \"%s\", want unknown", line, i,
			 r->normalized ? r->normalized : "(null)");
	if (normalized && (!r->known || !r->normalized || strcmp(r->normalized, normalized) != 0))
		fail_msg("line %d: report %zu: got statement \"%s\", want \"%s\"", line, i,
			 r->known ? (r->normalized ? r->normalized : "(null)") : "unknown", normalized);
	if (r->rows != rows)
		fail_msg("line %d: report %zu (%s): rows %llu, want %llu", line, i, normalized ? normalized : "?",
			 (unsigned long long)r->rows, (unsigned long long)rows);
	if (r->error != error)
		fail_msg("line %d: report %zu (%s): error %d, want %d", line, i, normalized ? normalized : "?",
			 r->error, error);
}
#define check_done(h, i, norm, rows, error) check_done_((h), (i), (norm), (rows), (error), __LINE__)

#define check_ndone(h, n)                                                                                              \
	do {                                                                                                           \
		if ((h)->ndone != (size_t)(n))                                                                         \
			fail_msg("line %d: %zu done reports, want %zu", __LINE__, (h)->ndone, (size_t)(n));            \
	} while (0)

static const char *json(harness *h)
{
	pf_sb_reset(&h->json);
	px_sstate_render_json(st(h), &h->json);
	return pf_sb_str(&h->json);
}

static void check_json_has_(harness *h, const char *needle, int line)
{
	const char *j = json(h);
	if (!strstr(j, needle))
		fail_msg("line %d: expected %s in %s", line, needle, j);
}
#define check_json_has(h, needle) check_json_has_((h), (needle), __LINE__)

/* ---------------------------------------------------------------- simple Query */

static void test_simple_query_three_statements(void **state)
{
	harness *h = *state;
	const char *sql = "SELECT 1 FROM t; INSERT INTO t VALUES (1), (2), (3); UPDATE t SET a = 1 WHERE a > 1";
	rw_analysis *an = analyze(h, sql);
	assert_int_equal(an->nstmts, 3);
	px_track_query(&h->t, an, sql, 100);
	rw_analysis_free(an);
	assert_int_equal(px_track_inflight(&h->t), 4); /* 3 statements + end of Query */
	assert_true(st(h)->tx_wrote);                  /* sent a write */
	px_track_complete(&h->t, "SELECT 5", 150);
	px_track_complete(&h->t, "INSERT 0 3", 180);
	px_track_complete(&h->t, "UPDATE 2", 400);
	assert_int_equal(px_track_inflight(&h->t), 1);
	assert_true(st(h)->tx_wrote);
	RFQ(h, 'I');
	assert_int_equal(px_track_inflight(&h->t), 0);
	check_ndone(h, 3);
	check_done(h, 0, "SELECT $1 FROM t", 5, false);
	check_done(h, 1, "INSERT INTO t VALUES ($1), ($2), ($3)", 3, false);
	check_done(h, 2, "UPDATE t SET a = $1 WHERE a > $2", 2, false);
	assert_int_equal(h->rec[0].kind, RW_KIND_READ);
	assert_int_equal(h->rec[1].kind, RW_KIND_WRITE);
	assert_int_equal(h->rec[2].kind, RW_KIND_WRITE);
	/* timed from the Query's arrival; never more than that */
	assert_int_equal(h->rec[0].elapsed, 50);
	assert_in_range(h->rec[1].elapsed, 1, 80);
	assert_in_range(h->rec[2].elapsed, 1, 300);
	assert_int_equal(st(h)->tx, 'I');
	assert_false(st(h)->tx_wrote);
	assert_false(px_sstate_settings_changed(st(h)));
	check_json_has(h, "\"transaction\":\"idle\",\"wrote\":false");
}

static void test_tag_rows(void **state)
{
	harness *h = *state;
	static const struct {
		const char *sql, *tag;
		uint64_t rows;
	} cases[] = {
		{"SELECT * FROM t", "SELECT 5", 5},
		{"INSERT INTO t VALUES (1)", "INSERT 0 1", 1},
		{"INSERT INTO t SELECT * FROM u", "INSERT 0 12345678901", 12345678901ull},
		{"UPDATE t SET a = 2", "UPDATE 0", 0},
		{"DELETE FROM t", "DELETE 7", 7},
		{"MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE", "MERGE 4", 4},
		{"CREATE TABLE x (a int)", "CREATE TABLE", 0},
		{"COPY t FROM STDIN", "COPY 3", 3},
		{"SELECT 1", "", 0}, /* an unreadable CommandComplete is passed as "" */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run(h, cases[i].sql, cases[i].tag, 'I');
	check_ndone(h, sizeof(cases) / sizeof(cases[0]));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (h->rec[i].rows != cases[i].rows || h->rec[i].error || !h->rec[i].known)
			fail_msg("%s / tag \"%s\": rows %llu (want %llu), error %d, known %d", cases[i].sql,
				 cases[i].tag, (unsigned long long)h->rec[i].rows, (unsigned long long)cases[i].rows,
				 h->rec[i].error, h->rec[i].known);
	}
	assert_int_equal(h->rec[7].kind, RW_KIND_COPY);
}

/* The 2nd statement fails: PostgreSQL sends ErrorResponse and skips the
 * 3rd; ReadyForQuery drops it, unreported. */
static void test_multi_statement_second_fails(void **state)
{
	harness *h = *state;
	Q(h, "SELECT 1; SELECT 1/0; INSERT INTO t VALUES (1)");
	CC(h, "SELECT 1");
	ERR(h);
	assert_int_equal(px_track_inflight(&h->t), 2); /* the skipped INSERT + end */
	RFQ(h, 'I');
	assert_int_equal(px_track_inflight(&h->t), 0);
	check_ndone(h, 2);
	check_done(h, 0, "SELECT $1", 1, false);
	check_done(h, 1, "SELECT $1/$2", 0, true);
	assert_false(st(h)->tx_wrote);
	/* the next Query lines up */
	run(h, "SELECT 2 FROM u", "SELECT 4", 'I');
	check_ndone(h, 3);
	check_done(h, 2, "SELECT $1 FROM u", 4, false);
}

static void test_empty_query(void **state)
{
	harness *h = *state;
	Q(h, "");
	px_track_empty(&h->t, tick(h)); /* EmptyQueryResponse */
	RFQ(h, 'I');
	Q(h, " ; -- nothing\n");
	px_track_empty(&h->t, tick(h));
	RFQ(h, 'I');
	check_ndone(h, 0);
	assert_int_equal(px_track_inflight(&h->t), 0);
	assert_false(px_sstate_settings_changed(st(h)));
	assert_false(st(h)->tx_wrote);
}

/* A syntax error: PostgreSQL runs nothing of the string. */
static void test_unparsed_query(void **state)
{
	harness *h = *state;
	Q(h, "SELEC 1");
	assert_true(st(h)->cur.unknown);
	ERR(h);
	RFQ(h, 'I');
	check_ndone(h, 1);
	assert_true(h->rec[0].known);
	assert_int_equal(h->rec[0].kind, RW_KIND_UNPARSED);
	assert_true(h->rec[0].error);
	assert_int_equal(px_track_inflight(&h->t), 0);
}

/* ---------------------------------------------------------------- extended protocol */

static void test_extended_pipeline(void **state)
{
	harness *h = *state;
	/* unnamed statement + unnamed portal */
	P(h, "", "SELECT a FROM t WHERE id = $1");
	B(h, "", "");
	E(h, "");
	/* named statement, unnamed portal */
	P(h, "ins", "INSERT INTO t (a) VALUES ($1)");
	B(h, "", "ins");
	E(h, "");
	/* named statement, named portal */
	B(h, "p1", "ins");
	E(h, "p1");
	S(h);
	assert_int_equal(px_track_inflight(&h->t), 4);
	assert_non_null(px_track_prepared(&h->t, ""));
	assert_non_null(px_track_prepared(&h->t, "ins"));
	assert_int_equal(h->t.nprepared, 2);
	/* ParseComplete, BindComplete, RowDescription, DataRow ... */
	CC(h, "SELECT 1");
	CC(h, "INSERT 0 1");
	CC(h, "INSERT 0 1");
	assert_true(st(h)->tx_wrote);
	RFQ(h, 'I');
	assert_int_equal(px_track_inflight(&h->t), 0);
	check_ndone(h, 3);
	check_done(h, 0, "SELECT a FROM t WHERE id = $1", 1, false);
	check_done(h, 1, "INSERT INTO t (a) VALUES ($1)", 1, false);
	check_done(h, 2, "INSERT INTO t (a) VALUES ($1)", 1, false);
	assert_false(st(h)->tx_wrote);
	assert_false(px_sstate_settings_changed(st(h)));

	/* the named statement is reused without a new Parse */
	B(h, "", "ins");
	E(h, "");
	S(h);
	CC(h, "INSERT 0 1");
	RFQ(h, 'I');
	check_ndone(h, 4);
	check_done(h, 3, "INSERT INTO t (a) VALUES ($1)", 1, false);

	/* Close the statement and the portal */
	px_track_close(&h->t, 'S', "ins");
	px_track_close(&h->t, 'P', "p1");
	S(h);
	RFQ(h, 'I');
	assert_null(px_track_prepared(&h->t, "ins"));
	assert_non_null(px_track_prepared(&h->t, ""));
	assert_int_equal(h->t.nprepared, 1);
	/* re-Parse under the same name replaces, not adds */
	P(h, "", "SELECT 2");
	P(h, "", "SELECT 3");
	assert_int_equal(h->t.nprepared, 1);
	assert_int_equal(px_track_inflight(&h->t), 0);
}

/* Describe / Flush are not tracked; an Execute with a row limit is answered
 * with PortalSuspended, then the next Execute with CommandComplete. */
static void test_portal_suspended(void **state)
{
	harness *h = *state;
	P(h, "c", "SELECT * FROM t");
	B(h, "cur", "c");
	E(h, "cur");
	px_track_suspended(&h->t, tick(h));
	E(h, "cur");
	CC(h, "SELECT 2");
	S(h);
	RFQ(h, 'I');
	check_ndone(h, 2);
	check_done(h, 0, "SELECT * FROM t", 0, false);
	check_done(h, 1, "SELECT * FROM t", 2, false);
	assert_false(st(h)->cur.unknown);
}

/* An error in the middle of a pipeline: the server skips everything up to
 * the Sync; the next Sync's statements line up again. */
static void test_pipeline_error_in_middle(void **state)
{
	harness *h = *state;
	PBE(h, "INSERT INTO t VALUES (1)");
	PBE(h, "SELECT 1/0");
	PBE(h, "INSERT INTO t VALUES (2)"); /* skipped */
	S(h);
	PBE(h, "SELECT b FROM u"); /* after the Sync: runs */
	S(h);
	CC(h, "INSERT 0 1");
	ERR(h);
	assert_int_equal(px_track_inflight(&h->t), 4); /* skipped INSERT, Sync, SELECT b, Sync */
	RFQ(h, 'I');
	assert_int_equal(px_track_inflight(&h->t), 2);
	CC(h, "SELECT 7");
	RFQ(h, 'I');
	assert_int_equal(px_track_inflight(&h->t), 0);
	check_ndone(h, 3);
	check_done(h, 0, "INSERT INTO t VALUES ($1)", 1, false);
	check_done(h, 1, "SELECT $1/$2", 0, true);
	check_done(h, 2, "SELECT b FROM u", 7, false);
	assert_false(st(h)->tx_wrote);
}

/* A Parse that fails (the statement never exists): its Execute is skipped
 * and the error reported on it. */
static void test_pipeline_parse_error(void **state)
{
	harness *h = *state;
	P(h, "bad", "SELECT FROM WHERE");
	B(h, "", "bad");
	E(h, "");
	S(h);
	ERR(h); /* at Parse */
	RFQ(h, 'I');
	check_ndone(h, 1);
	assert_true(h->rec[0].error);
	assert_int_equal(px_track_inflight(&h->t), 0);
	run(h, "SELECT 1", "SELECT 1", 'I');
	check_done(h, 1, "SELECT $1", 1, false);
}

/* Statements changing session state work through the extended protocol too. */
static void test_extended_set(void **state)
{
	harness *h = *state;
	P(h, "sp", "SET search_path = a, public");
	B(h, "", "sp");
	E(h, "");
	S(h);
	CC(h, "SET");
	RFQ(h, 'I');
	check_setting(h, "search_path", "SET search_path = a, public");
	/* an implicit transaction (one Sync) that fails undoes it */
	PBE(h, "SET search_path = b");
	PBE(h, "SELECT 1/0");
	S(h);
	CC(h, "SET");
	check_setting(h, "search_path", "SET search_path = b");
	ERR(h);
	RFQ(h, 'I');
	check_setting(h, "search_path", "SET search_path = a, public");
}

static void test_function_call(void **state)
{
	harness *h = *state;
	px_track_function_call(&h->t, tick(h));
	assert_true(st(h)->cur.unknown); /* a function can do anything */
	/* FunctionCallResponse, ReadyForQuery */
	RFQ(h, 'I');
	check_ndone(h, 0);
	assert_int_equal(px_track_inflight(&h->t), 0);
	run(h, "SELECT 1", "SELECT 1", 'I');
	check_done(h, 0, "SELECT $1", 1, false);
}

/* ---------------------------------------------------------------- transactions */

static void test_begin_commit_keeps_set(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	assert_int_equal(st(h)->tx, 'T');
	check_json_has(h, "\"transaction\":\"in_transaction\"");
	run(h, "SET search_path = a", "SET", 'T');
	check_setting(h, "search_path", "SET search_path = a");
	assert_true(px_sstate_settings_changed(st(h)));
	run(h, "COMMIT", "COMMIT", 'I');
	assert_int_equal(st(h)->tx, 'I');
	check_setting(h, "search_path", "SET search_path = a");
	check_json_has(h, "\"settings\":{\"search_path\":\"SET search_path = a\"}");
	check_ndone(h, 3);
	assert_int_equal(h->rec[0].tx_op, RW_TX_BEGIN);
	assert_int_equal(h->rec[2].tx_op, RW_TX_COMMIT);
}

static void test_begin_rollback_undoes_set(void **state)
{
	harness *h = *state;
	run(h, "SET timezone = 'UTC'", "SET", 'I');
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET search_path = a", "SET", 'T');
	run(h, "SET timezone = 'Europe/Paris'", "SET", 'T');
	run(h, "RESET statement_timeout", "RESET", 'T');
	check_setting(h, "timezone", "SET timezone = 'Europe/Paris'");
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_setting(h, "search_path", NULL);
	check_setting(h, "timezone", "SET timezone = 'UTC'");
	assert_false(st(h)->cur.unknown);
}

/* COMMIT of a failed block is answered "ROLLBACK": the SETs are undone. */
static void test_failed_block_commit_is_rollback(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET search_path = a", "SET", 'T');
	Q(h, "SELECT 1/0");
	ERR(h);
	RFQ(h, 'E');
	assert_int_equal(st(h)->tx, 'E');
	check_json_has(h, "\"transaction\":\"failed_transaction\"");
	/* in a failed block every statement but ROLLBACK errors */
	Q(h, "SELECT 1");
	ERR(h);
	RFQ(h, 'E');
	check_setting(h, "search_path", "SET search_path = a");
	run(h, "COMMIT", "ROLLBACK", 'I');
	check_setting(h, "search_path", NULL);
	assert_false(px_sstate_settings_changed(st(h)));
	check_json_has(h, "\"transaction\":\"idle\"");
}

/* One Query string holding a whole block. */
static void test_block_in_one_query(void **state)
{
	harness *h = *state;
	Q(h, "BEGIN; SET search_path = a; INSERT INTO t VALUES (1); COMMIT");
	CC(h, "BEGIN");
	CC(h, "SET");
	CC(h, "INSERT 0 1");
	CC(h, "COMMIT");
	RFQ(h, 'I');
	check_setting(h, "search_path", "SET search_path = a");
	check_ndone(h, 4);
	check_done(h, 2, "INSERT INTO t VALUES ($1)", 1, false);
	/* the same with an error before COMMIT: the block is left failed */
	Q(h, "BEGIN; SET search_path = b; SELECT 1/0; COMMIT");
	CC(h, "BEGIN");
	CC(h, "SET");
	ERR(h);
	RFQ(h, 'E');
	check_setting(h, "search_path", "SET search_path = b");
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_setting(h, "search_path", "SET search_path = a");
}

static void test_set_local_dropped_at_end(void **state)
{
	harness *h = *state;
	run(h, "SET search_path = a", "SET", 'I');
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET LOCAL search_path = b", "SET", 'T');
	run(h, "SET LOCAL statement_timeout = '5s'", "SET", 'T');
	check_setting(h, "search_path", "SET LOCAL search_path = b");
	check_setting(h, "statement_timeout", "SET LOCAL statement_timeout = '5s'");
	check_json_has(h, "\"local_settings\":{\"search_path\":\"SET LOCAL search_path = b\"");
	run(h, "COMMIT", "COMMIT", 'I');
	check_setting(h, "search_path", "SET search_path = a");
	check_setting(h, "statement_timeout", NULL);
	check_json_has(h, "\"local_settings\":{}");
	/* set_config(..., true) is SET LOCAL */
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SELECT set_config('search_path', 'c', true)", "SELECT 1", 'T');
	check_setting(h, "search_path", "SELECT set_config('search_path', 'c', true)");
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_setting(h, "search_path", "SET search_path = a");
	/* SET LOCAL outside a block has no effect (PostgreSQL warns) */
	run(h, "SET LOCAL timezone = 'UTC'", "SET", 'I');
	check_setting(h, "timezone", NULL);
}

static void test_savepoints(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET search_path = a", "SET", 'T');
	run(h, "SAVEPOINT s1", "SAVEPOINT", 'T');
	run(h, "SET search_path = b", "SET", 'T');
	run(h, "SAVEPOINT \"S2\"", "SAVEPOINT", 'T');
	run(h, "SET timezone = 'UTC'", "SET", 'T');
	assert_int_equal(st(h)->nsavepoints, 2);
	check_json_has(h, "\"savepoints\":2");
	/* ROLLBACK TO keeps the savepoint, drops the later ones */
	run(h, "ROLLBACK TO SAVEPOINT s1", "ROLLBACK", 'T');
	check_setting(h, "search_path", "SET search_path = a");
	check_setting(h, "timezone", NULL);
	assert_int_equal(st(h)->nsavepoints, 1);
	run(h, "SET search_path = c", "SET", 'T');
	/* after an error, ROLLBACK TO leaves the failed state */
	Q(h, "SELECT 1/0");
	ERR(h);
	RFQ(h, 'E');
	run(h, "ROLLBACK TO s1", "ROLLBACK", 'T');
	assert_int_equal(st(h)->tx, 'T');
	check_setting(h, "search_path", "SET search_path = a");
	/* a quoted name is case sensitive; RELEASE drops it and the later ones */
	run(h, "SAVEPOINT \"S2\"", "SAVEPOINT", 'T');
	run(h, "SAVEPOINT s3", "SAVEPOINT", 'T');
	run(h, "SET search_path = d", "SET", 'T');
	run(h, "RELEASE SAVEPOINT \"S2\"", "RELEASE", 'T');
	assert_int_equal(st(h)->nsavepoints, 1);
	check_setting(h, "search_path", "SET search_path = d"); /* RELEASE keeps what was set */
	run(h, "RELEASE s1", "RELEASE", 'T');
	assert_int_equal(st(h)->nsavepoints, 0);
	run(h, "COMMIT", "COMMIT", 'I');
	check_setting(h, "search_path", "SET search_path = d");
	assert_false(st(h)->cur.unknown);
}

static void test_savepoint_same_name_twice(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SAVEPOINT s", "SAVEPOINT", 'T');
	run(h, "SET search_path = a", "SET", 'T');
	run(h, "SAVEPOINT s", "SAVEPOINT", 'T');
	run(h, "SET search_path = b", "SET", 'T');
	run(h, "ROLLBACK TO s", "ROLLBACK", 'T'); /* the newer one */
	check_setting(h, "search_path", "SET search_path = a");
	run(h, "RELEASE s", "RELEASE", 'T');      /* the newer one */
	run(h, "ROLLBACK TO s", "ROLLBACK", 'T'); /* the older one */
	check_setting(h, "search_path", NULL);
	/* a savepoint pgfold never saw: stop vouching */
	Q(h, "ROLLBACK TO nosuch");
	ERR(h);
	RFQ(h, 'E');
	assert_false(st(h)->cur.unknown); /* it failed: nothing happened */
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	assert_int_equal(st(h)->nsavepoints, 0);
}

static void test_too_many_savepoints(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	char sql[64];
	for (int i = 0; i <= PX_SSTATE_MAX_SAVEPOINTS; i++) {
		snprintf(sql, sizeof(sql), "SAVEPOINT sp%d", i);
		run(h, sql, "SAVEPOINT", 'T');
	}
	assert_int_equal(st(h)->nsavepoints, PX_SSTATE_MAX_SAVEPOINTS);
	assert_true(st(h)->cur.unknown);
	run(h, "COMMIT", "COMMIT", 'I');
	assert_true(st(h)->cur.unknown);
	run(h, "DISCARD ALL", "DISCARD ALL", 'I');
	assert_false(st(h)->cur.unknown);
}

static void test_reset_and_discard(void **state)
{
	harness *h = *state;
	run(h, "SET search_path = a", "SET", 'I');
	run(h, "SET timezone TO 'UTC'", "SET", 'I');
	run(h, "SET statement_timeout = 1000", "SET", 'I');
	check_setting(h, "timezone", "SET timezone TO 'UTC'");
	run(h, "RESET search_path", "RESET", 'I');
	check_setting(h, "search_path", NULL);
	check_setting(h, "timezone", "SET timezone TO 'UTC'");
	run(h, "SET TIME ZONE 'Europe/Paris'", "SET", 'I');
	check_setting(h, "timezone", "SET TIME ZONE 'Europe/Paris'");
	run(h, "RESET ALL", "RESET", 'I');
	check_setting(h, "timezone", NULL);
	check_setting(h, "statement_timeout", NULL);
	assert_false(px_sstate_settings_changed(st(h)));
	check_json_has(h, "\"settings\":{}");
	run(h, "SET search_path = b", "SET", 'I');
	run(h, "SET ROLE alice", "SET", 'I');
	run(h, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET", 'I');
	check_setting(h, "role", "SET ROLE alice");
	run(h, "DISCARD PLANS", "DISCARD PLANS", 'I');
	run(h, "DISCARD TEMP", "DISCARD TEMP", 'I');
	check_setting(h, "search_path", "SET search_path = b");
	run(h, "DISCARD ALL", "DISCARD ALL", 'I');
	check_setting(h, "search_path", NULL);
	check_setting(h, "role", NULL); /* DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT */
	check_iso(h, RW_ISO_DEFAULT);
	assert_false(px_sstate_settings_changed(st(h)));
	/* RESET inside a block that rolls back is undone */
	run(h, "SET search_path = c", "SET", 'I');
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "RESET search_path", "RESET", 'T');
	check_setting(h, "search_path", NULL);
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_setting(h, "search_path", "SET search_path = c");
}

static void test_set_role(void **state)
{
	harness *h = *state;
	run(h, "SET ROLE alice", "SET", 'I');
	check_setting(h, "role", "SET ROLE alice");
	check_json_has(h, "\"role\":\"SET ROLE alice\"");
	run(h, "RESET ROLE", "RESET", 'I');
	check_setting(h, "role", NULL);
	run(h, "SET SESSION AUTHORIZATION bob", "SET", 'I');
	check_setting(h, "session_authorization", "SET SESSION AUTHORIZATION bob");
	run(h, "SELECT set_config('role', 'carol', false)", "SELECT 1", 'I');
	check_setting(h, "role", "SELECT set_config('role', 'carol', false)");
	/* set_config with a name pgfold cannot read */
	run(h, "SELECT set_config(name, 'x', false) FROM settings_to_apply", "SELECT 1", 'I');
	assert_true(st(h)->cur.unknown);
	check_json_has(h, "\"settings_unknown\":true");
}

/* "SET search_path = a; SELECT 1/0" is one implicit transaction: PostgreSQL
 * rolls the SET back with it. */
static void test_implicit_transaction_failure_undoes_set(void **state)
{
	harness *h = *state;
	Q(h, "SET search_path = a; SELECT 1/0");
	CC(h, "SET");
	check_setting(h, "search_path", "SET search_path = a");
	ERR(h);
	RFQ(h, 'I');
	check_setting(h, "search_path", NULL);
	assert_false(px_sstate_settings_changed(st(h)));
	/* success keeps it */
	Q(h, "SET search_path = a; SELECT 1");
	CC(h, "SET");
	CC(h, "SELECT 1");
	RFQ(h, 'I');
	check_setting(h, "search_path", "SET search_path = a");
	/* a later failed implicit transaction restores to what it started with */
	Q(h, "SET search_path = b; SET timezone = 'UTC'; SELECT 1/0");
	CC(h, "SET");
	CC(h, "SET");
	ERR(h);
	RFQ(h, 'I');
	check_setting(h, "search_path", "SET search_path = a");
	check_setting(h, "timezone", NULL);
}

static void test_begin_isolation(void **state)
{
	harness *h = *state;
	check_iso(h, RW_ISO_DEFAULT);
	check_json_has(h, "\"isolation\":\"default\",\"read_only\":-1");
	run(h, "BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN", 'T');
	check_iso(h, RW_ISO_REPEATABLE_READ);
	check_json_has(h, "\"isolation\":\"repeatable read\"");
	run(h, "SELECT 1", "SELECT 1", 'T');
	check_iso(h, RW_ISO_REPEATABLE_READ);
	run(h, "COMMIT", "COMMIT", 'I');
	check_iso(h, RW_ISO_DEFAULT);
	/* read only, and the end by ROLLBACK */
	run(h, "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", "START TRANSACTION", 'T');
	check_iso(h, RW_ISO_SERIALIZABLE);
	check_json_has(h, "\"isolation\":\"serializable\",\"read_only\":1");
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_iso(h, RW_ISO_DEFAULT);
	check_json_has(h, "\"read_only\":-1");
	/* a failed block keeps it until the block ends */
	run(h, "BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN", 'T');
	Q(h, "SELECT 1/0");
	ERR(h);
	RFQ(h, 'E');
	check_iso(h, RW_ISO_REPEATABLE_READ);
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_iso(h, RW_ISO_DEFAULT);
	/* COMMIT AND CHAIN keeps the characteristics */
	run(h, "BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN", 'T');
	run(h, "COMMIT AND CHAIN", "COMMIT", 'T');
	check_iso(h, RW_ISO_SERIALIZABLE);
	assert_int_equal(st(h)->tx, 'T');
	run(h, "COMMIT", "COMMIT", 'I');
	check_iso(h, RW_ISO_DEFAULT);
}

static void test_session_characteristics(void **state)
{
	harness *h = *state;
	run(h, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET", 'I');
	check_iso(h, RW_ISO_SERIALIZABLE);
	assert_true(px_sstate_settings_changed(st(h)));
	check_json_has(h, "\"isolation\":\"serializable\"");
	run(h, "BEGIN", "BEGIN", 'T');
	check_iso(h, RW_ISO_SERIALIZABLE);
	run(h, "COMMIT", "COMMIT", 'I');
	check_iso(h, RW_ISO_SERIALIZABLE);
	run(h, "BEGIN ISOLATION LEVEL READ COMMITTED", "BEGIN", 'T');
	check_iso(h, RW_ISO_READ_COMMITTED);
	run(h, "COMMIT", "COMMIT", 'I');
	check_iso(h, RW_ISO_SERIALIZABLE);
	/* read only default */
	run(h, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET", 'I');
	check_json_has(h, "\"read_only\":1");
	/* rolled back with its block */
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SET", 'T');
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_iso(h, RW_ISO_SERIALIZABLE);
	/* default_transaction_isolation is the same thing; RESET ends it */
	run(h, "SET default_transaction_isolation = 'repeatable read'", "SET", 'I');
	check_iso(h, RW_ISO_REPEATABLE_READ);
	run(h, "RESET default_transaction_isolation", "RESET", 'I');
	check_iso(h, RW_ISO_DEFAULT);
}

/* SET TRANSACTION inside a block sets the running transaction's
 * characteristics (rw_analyze: kind TRANSACTION, tx_op RW_TX_SET). */
static void test_set_transaction(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET", 'T');
	check_iso(h, RW_ISO_SERIALIZABLE);
	run(h, "COMMIT", "COMMIT", 'I');
	check_iso(h, RW_ISO_DEFAULT);
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET TRANSACTION READ ONLY", "SET", 'T');
	check_json_has(h, "\"read_only\":1");
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_json_has(h, "\"read_only\":-1");
	/* SET transaction_isolation is the same thing */
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET transaction_isolation = 'repeatable read'", "SET", 'T');
	check_iso(h, RW_ISO_REPEATABLE_READ);
	run(h, "COMMIT", "COMMIT", 'I');
	check_iso(h, RW_ISO_DEFAULT);
}

static void test_tx_wrote(void **state)
{
	harness *h = *state;
	run(h, "SELECT * FROM t", "SELECT 3", 'I');
	assert_false(st(h)->tx_wrote);
	run(h, "BEGIN", "BEGIN", 'T');
	assert_false(st(h)->tx_wrote);
	run(h, "SELECT * FROM t", "SELECT 3", 'T');
	assert_false(st(h)->tx_wrote);
	Q(h, "INSERT INTO t VALUES (1)");
	assert_true(st(h)->tx_wrote); /* from the moment it is sent */
	CC(h, "INSERT 0 1");
	RFQ(h, 'T');
	assert_true(st(h)->tx_wrote);
	check_json_has(h, "\"wrote\":true");
	run(h, "SELECT * FROM t", "SELECT 4", 'T');
	assert_true(st(h)->tx_wrote);
	run(h, "COMMIT", "COMMIT", 'I');
	assert_false(st(h)->tx_wrote);
	check_json_has(h, "\"wrote\":false");
	/* an implicit transaction */
	Q(h, "SELECT nextval('s')");
	assert_true(st(h)->tx_wrote);
	CC(h, "SELECT 1");
	RFQ(h, 'I');
	assert_false(st(h)->tx_wrote);
	/* SELECT ... FOR UPDATE and a failed block */
	run(h, "BEGIN", "BEGIN", 'T');
	Q(h, "SELECT * FROM t FOR UPDATE");
	assert_true(st(h)->tx_wrote);
	ERR(h);
	RFQ(h, 'E');
	assert_true(st(h)->tx_wrote);
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	assert_false(st(h)->tx_wrote);
	/* COPY TO STDOUT reads */
	run(h, "COPY t TO STDOUT", "COPY 3", 'I');
	Q(h, "COPY t TO STDOUT");
	assert_false(st(h)->tx_wrote);
	CC(h, "COPY 3");
	RFQ(h, 'I');
}

/* A Query pgfold did not analyse (too large: NULL analysis). */
static void test_untracked_query(void **state)
{
	harness *h = *state;
	px_track_query(&h->t, NULL, NULL, tick(h));
	assert_true(st(h)->cur.unknown);
	assert_true(st(h)->tx_wrote);
	check_json_has(h, "\"wrote\":true");
	check_json_has(h, "\"settings_unknown\":true");
	/* it absorbs every answer of its Query */
	CC(h, "SET");
	CC(h, "INSERT 0 1");
	CC(h, "SELECT 3");
	RFQ(h, 'I');
	assert_int_equal(px_track_inflight(&h->t), 0);
	check_ndone(h, 0);
	assert_true(st(h)->cur.unknown);
	assert_false(st(h)->tx_wrote);
	/* the next Query lines up */
	run(h, "SELECT 1", "SELECT 1", 'I');
	check_ndone(h, 1);
	check_done(h, 0, "SELECT $1", 1, false);
	assert_true(st(h)->cur.unknown); /* stays until RESET ALL / DISCARD ALL */
	/* RESET ALL leaves the role alone (GUC_NO_RESET_ALL): an unknown SET ROLE
	 * may survive it, so only DISCARD ALL makes the session known again. */
	run(h, "RESET ALL", "RESET", 'I');
	assert_true(st(h)->cur.unknown);
	run(h, "DISCARD ALL", "DISCARD ALL", 'I');
	assert_false(st(h)->cur.unknown);
	check_json_has(h, "\"settings_unknown\":false");
}

/* An Execute of a portal pgfold does not know (a Bind it could not read). */
static void test_unknown_portal(void **state)
{
	harness *h = *state;
	P(h, "s", "SELECT 1");
	B(h, "p", "s");
	px_track_forget_portals(&h->t);
	assert_true(st(h)->cur.unknown);
	E(h, "p");
	S(h);
	CC(h, "SELECT 1");
	RFQ(h, 'I');
	check_ndone(h, 1);
	check_done(h, 0, NULL, 1, false);
	assert_non_null(px_track_prepared(&h->t, "s"));
	px_track_forget_prepared(&h->t);
	assert_null(px_track_prepared(&h->t, "s"));
	assert_int_equal(h->t.nprepared, 0);
}

/* ---------------------------------------------------------------- bounds */

static void test_prepared_bound(void **state)
{
	harness *h = *state;
	const char *sql = "SELECT a FROM t WHERE id = $1";
	rw_analysis *an = analyze(h, sql);
	char name[32];
	for (int i = 0; i < PX_TRACK_MAX_PREPARED; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		px_track_parse(&h->t, name, an, sql);
	}
	assert_int_equal(h->t.nprepared, PX_TRACK_MAX_PREPARED);
	px_track_parse(&h->t, "one_too_many", an, sql);
	assert_int_equal(h->t.nprepared, PX_TRACK_MAX_PREPARED);
	assert_null(px_track_prepared(&h->t, "one_too_many"));
	assert_non_null(px_track_prepared(&h->t, "s0"));
	assert_non_null(px_track_prepared(&h->t, "s9999"));
	/* re-Parse of a known name still works at the bound */
	px_track_parse(&h->t, "s5", an, sql);
	assert_non_null(px_track_prepared(&h->t, "s5"));
	assert_int_equal(h->t.nprepared, PX_TRACK_MAX_PREPARED);
	/* executing the untracked one is an unknown statement */
	B(h, "", "one_too_many");
	E(h, "");
	S(h);
	CC(h, "SELECT 1");
	RFQ(h, 'I');
	check_ndone(h, 1);
	check_done(h, 0, NULL, 1, false);
	assert_true(st(h)->cur.unknown);
	/* Close makes room */
	px_track_close(&h->t, 'S', "s0");
	px_track_parse(&h->t, "one_too_many", an, sql);
	assert_non_null(px_track_prepared(&h->t, "one_too_many"));
	assert_int_equal(h->t.nprepared, PX_TRACK_MAX_PREPARED);
	rw_analysis_free(an);
}

/* More statements in flight than PX_TRACK_MAX_INFLIGHT: the extra ones are
 * not tracked, the state is unknown, and once the queue empties statements
 * line up again. */
static void test_queue_overflow(void **state)
{
	harness *h = *state;
	P(h, "s", "SELECT a FROM t WHERE id = $1");
	B(h, "p", "s");
	for (uint32_t i = 0; i + 1 < PX_TRACK_MAX_INFLIGHT; i++)
		E(h, "p");
	S(h);
	assert_int_equal(px_track_inflight(&h->t), PX_TRACK_MAX_INFLIGHT);
	assert_false(st(h)->cur.unknown);
	assert_false(h->t.overflow);
	E(h, "p"); /* dropped */
	S(h);      /* dropped */
	assert_true(h->t.overflow);
	assert_true(st(h)->cur.unknown);
	assert_int_equal(px_track_inflight(&h->t), PX_TRACK_MAX_INFLIGHT);
	for (uint32_t i = 0; i + 1 < PX_TRACK_MAX_INFLIGHT; i++)
		CC(h, "SELECT 1");
	RFQ(h, 'I');
	assert_int_equal(px_track_inflight(&h->t), 0);
	assert_false(h->t.overflow);
	CC(h, "SELECT 1"); /* the dropped Execute's answer */
	RFQ(h, 'I');
	check_ndone(h, PX_TRACK_MAX_INFLIGHT - 1);
	assert_true(st(h)->cur.unknown);
	/* lined up again */
	size_t before = h->ndone;
	run(h, "SELECT 2 FROM u", "SELECT 9", 'I');
	assert_int_equal(h->ndone, before + 1);
	assert_int_equal(px_track_inflight(&h->t), 0);
	check_done(h, 0, "SELECT a FROM t WHERE id = $1", 1, false);
}

/* ---------------------------------------------------------------- regressions
 * Sequences an earlier version of sstate.c / track.c got wrong; each was
 * checked against PostgreSQL 15. */

/* BEGIN; SAVEPOINT s; SET LOCAL search_path = a; ROLLBACK TO s
 * -> PostgreSQL: search_path is the default again (an earlier version kept
 * the SET LOCAL: savepoints saved `cur` only). */
static void test_rollback_to_undoes_set_local(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SAVEPOINT s", "SAVEPOINT", 'T');
	run(h, "SET LOCAL search_path = a", "SET", 'T');
	run(h, "ROLLBACK TO SAVEPOINT s", "ROLLBACK", 'T');
	check_setting(h, "search_path", NULL);
}

/* BEGIN; SET LOCAL search_path = a; SET search_path = public, a
 * -> PostgreSQL: SHOW search_path is "public, a" at once (a later SET
 * overrides the SET LOCAL) and after COMMIT (an earlier version answered the
 * SET LOCAL value until the block ended). */
static void test_set_after_set_local(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET LOCAL search_path = a", "SET", 'T');
	run(h, "SET search_path = public, a", "SET", 'T');
	check_setting(h, "search_path", "SET search_path = public, a");
}

/* SET ROLE alice; RESET ALL -> PostgreSQL: current_user is still alice
 * (role and session_authorization are GUC_NO_RESET_ALL; an earlier version
 * dropped the role and reported no settings changed). */
static void test_reset_all_keeps_role(void **state)
{
	harness *h = *state;
	run(h, "SET ROLE alice", "SET", 'I');
	run(h, "RESET ALL", "RESET", 'I');
	check_setting(h, "role", "SET ROLE alice");
	assert_true(px_sstate_settings_changed(st(h)));
}

/* BEGIN; SET search_path = a; BEGIN (WARNING: already in progress);
 * ROLLBACK -> PostgreSQL: search_path is the default again (an earlier
 * version re-snapshotted at the second BEGIN and kept a). */
static void test_second_begin(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET search_path = a", "SET", 'T');
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_setting(h, "search_path", NULL);
}

/* Query "SET search_path = a; BEGIN; SELECT 1/0", then ROLLBACK:
 * PostgreSQL turns the implicit transaction into the block, so the SET is
 * rolled back with it (an earlier version snapshotted at BEGIN, after the
 * SET, and kept it). */
static void test_set_before_begin_in_one_query(void **state)
{
	harness *h = *state;
	Q(h, "SET search_path = a; BEGIN; SELECT 1/0");
	CC(h, "SET");
	CC(h, "BEGIN");
	ERR(h);
	RFQ(h, 'E');
	run(h, "ROLLBACK", "ROLLBACK", 'I');
	check_setting(h, "search_path", NULL);
}

/* Query "BEGIN; COMMIT; SET search_path = a; SELECT 1/0": the statements
 * after COMMIT form a new implicit transaction that fails, so PostgreSQL
 * rolls the SET back (an earlier version never restored once a block had
 * ended in the Query). */
static void test_set_after_commit_in_failed_query(void **state)
{
	harness *h = *state;
	Q(h, "BEGIN; COMMIT; SET search_path = a; SELECT 1/0");
	CC(h, "BEGIN");
	CC(h, "COMMIT");
	CC(h, "SET");
	ERR(h);
	RFQ(h, 'I');
	check_setting(h, "search_path", NULL);
}

/* Parse(""), Bind, Execute, Sync -> EmptyQueryResponse, ReadyForQuery.
 * Nothing ran (pgjdbc's Connection.isValid() runs
 * prepareStatement("").executeUpdate(), HikariCP calls it on every
 * checkout); an earlier version tracked the Execute as unknown and marked
 * the session settings_unknown for good. */
static void test_empty_prepared_statement(void **state)
{
	harness *h = *state;
	P(h, "", "");
	B(h, "", "");
	E(h, "");
	S(h);
	px_track_empty(&h->t, tick(h));
	RFQ(h, 'I');
	assert_int_equal(px_track_inflight(&h->t), 0);
	assert_false(st(h)->cur.unknown);
	assert_false(px_sstate_settings_changed(st(h)));
}

/* The client pipelines Query "SET search_path = a" and Query "ROLLBACK"
 * before reading any answer.  PostgreSQL: the SET commits in its own
 * implicit transaction, the ROLLBACK only warns; search_path stays a.  An
 * earlier version snapshotted the implicit transaction when its first
 * statement was *sent*, "restored" the default at the ROLLBACK and so
 * vouched for a search_path the server did not have. */
static void test_pipelined_rollback_after_set(void **state)
{
	harness *h = *state;
	Q(h, "SET search_path = a");
	Q(h, "ROLLBACK");
	CC(h, "SET");
	RFQ(h, 'I');
	CC(h, "ROLLBACK");
	RFQ(h, 'I');
	check_setting(h, "search_path", "SET search_path = a");
}

/* Execute "SET search_path = a"; Sync; Execute "SET search_path = b";
 * Execute "SELECT 1/0"; Sync — all sent before any answer.  PostgreSQL: the
 * first implicit transaction commits a, the second fails and rolls b back
 * (an earlier version, tracking transactions by what was sent, reported b). */
static void test_pipelined_second_implicit_tx_fails(void **state)
{
	harness *h = *state;
	PBE(h, "SET search_path = a");
	S(h);
	PBE(h, "SET search_path = b");
	PBE(h, "SELECT 1/0");
	S(h);
	CC(h, "SET");
	RFQ(h, 'I');
	CC(h, "SET");
	ERR(h);
	RFQ(h, 'I');
	check_setting(h, "search_path", "SET search_path = a");
}

/* BEGIN; SET search_path = a; ...; COMMIT answered with ErrorResponse (a
 * deferred constraint, or a serialization failure at commit), then
 * ReadyForQuery 'I'.  PostgreSQL rolled the block back: search_path is the
 * default again (an earlier version kept the SET and marked the session
 * settings_unknown until RESET ALL). */
static void test_failed_commit_marks_unknown(void **state)
{
	harness *h = *state;
	run(h, "BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN", 'T');
	run(h, "SET search_path = a", "SET", 'T');
	run(h, "INSERT INTO t VALUES (1)", "INSERT 0 1", 'T');
	Q(h, "COMMIT");
	ERR(h);
	RFQ(h, 'I');
	assert_int_equal(st(h)->tx, 'I');
	assert_false(st(h)->tx_wrote);
	check_iso(h, RW_ISO_DEFAULT);
	check_setting(h, "search_path", NULL);
	assert_false(st(h)->cur.unknown);
}

/* BEGIN; SAVEPOINT café; SET search_path = a; SAVEPOINT thé; SET
 * search_path = b; ROLLBACK TO café -> PostgreSQL: search_path is the
 * default (an earlier savepoint_name() kept only ASCII letters and digits,
 * so both names became "" and café's rollback restored thé's snapshot). */
static void test_savepoint_non_ascii_names(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SAVEPOINT caf\xc3\xa9", "SAVEPOINT", 'T');
	run(h, "SET search_path = a", "SET", 'T');
	run(h, "SAVEPOINT th\xc3\xa9", "SAVEPOINT", 'T');
	run(h, "SET search_path = b", "SET", 'T');
	run(h, "ROLLBACK TO caf\xc3\xa9", "ROLLBACK", 'T');
	check_setting(h, "search_path", NULL);
	assert_int_equal(st(h)->nsavepoints, 1);
}

/* DISCARD ALL and DEALLOCATE name / DEALLOCATE ALL drop the session's
 * prepared statements on the server, protocol-level ones included (an
 * earlier version kept them tracked). */
static void test_discard_all_keeps_prepared(void **state)
{
	harness *h = *state;
	P(h, "s1", "SELECT a FROM t WHERE id = $1");
	P(h, "s2", "SELECT b FROM t WHERE id = $1");
	S(h);
	RFQ(h, 'I');
	run(h, "DEALLOCATE s1", "DEALLOCATE", 'I');
	assert_null(px_track_prepared(&h->t, "s1"));
	run(h, "DISCARD ALL", "DISCARD ALL", 'I');
	assert_null(px_track_prepared(&h->t, "s2"));
	assert_int_equal(h->t.nprepared, 0);
}

/* Portals do not outlive their transaction on the server: binding
 * distinct portal names in successive transactions (pgjdbc names its
 * cursors C_1, C_2, ...) must not grow pgfold's memory (an earlier version
 * kept every name, unbounded). */
static void test_portals_unbounded(void **state)
{
	harness *h = *state;
	P(h, "s", "SELECT a FROM t WHERE id = $1");
	S(h);
	RFQ(h, 'I');
	char name[32];
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "C_%d", i);
		B(h, name, "s");
		E(h, name);
		S(h);
		CC(h, "SELECT 1");
		RFQ(h, 'I');
		if (h->t.nportals > 1)
			fail_msg("after %d finished transactions, %u portals tracked", i + 1, h->t.nportals);
	}
	check_ndone(h, 20000);
	assert_false(st(h)->cur.unknown);
}

/* An untracked (oversized) Query that fails: pgfold cannot know whether
 * it held e.g. "SET ROLE x; COMMIT; ...; <error>" (the SET then survives),
 * so `unknown` stays set until RESET ALL / DISCARD ALL (an earlier version
 * cleared it when it restored the failed transaction's snapshot). */
static void test_untracked_failed_query_keeps_unknown(void **state)
{
	harness *h = *state;
	px_track_query(&h->t, NULL, NULL, tick(h));
	CC(h, "SET");
	CC(h, "COMMIT");
	ERR(h);
	RFQ(h, 'I');
	assert_true(st(h)->cur.unknown);
}

/* SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE;
 * BEGIN; SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ
 * COMMITTED -> PostgreSQL: the running transaction stays serializable; the
 * new default applies to the next one (an earlier version reported read
 * committed at once). */
static void test_session_characteristics_inside_block(void **state)
{
	harness *h = *state;
	run(h, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET", 'I');
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED", "SET", 'T');
	check_iso(h, RW_ISO_SERIALIZABLE);
	run(h, "COMMIT", "COMMIT", 'I');
	check_iso(h, RW_ISO_READ_COMMITTED);
}

/* SET default_transaction_isolation = 'read uncommitted' -> PostgreSQL
 * shows "read uncommitted" (an earlier isolation_in() found "committed"
 * inside "uncommitted"). */
static void test_read_uncommitted(void **state)
{
	harness *h = *state;
	run(h, "SET default_transaction_isolation = 'read uncommitted'", "SET", 'I');
	check_iso(h, RW_ISO_READ_UNCOMMITTED);
}

/* BEGIN; SET transaction_isolation = 'repeatable read'; COMMIT ->
 * transaction_isolation is per transaction, gone at COMMIT (an earlier
 * version kept it among the session's settings for good). */
static void test_transaction_isolation_setting_outlives_tx(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET transaction_isolation = 'repeatable read'", "SET", 'T');
	run(h, "COMMIT", "COMMIT", 'I');
	check_setting(h, "transaction_isolation", NULL);
	assert_false(px_sstate_settings_changed(st(h)));
}

/* ---------------------------------------------------------------- bugs
 * Each sequence below was checked against PostgreSQL 15; pgfold disagrees. */

/* Pipelined: [Bind "" s, Execute "", Sync] for transaction 1, then Bind "p"
 * s for transaction 2 — both sent before transaction 1's ReadyForQuery
 * arrives — then Execute "p", Sync.  The server runs s twice.
 * px_track_ready('I') clears every portal, also the one bound for the
 * transaction after it, so the second Execute is an unknown statement and
 * the session is marked settings_unknown (and wrote) for good. */
static void test_bug_portal_bound_before_earlier_ready(void **state)
{
	harness *h = *state;
	P(h, "s", "SELECT a FROM t WHERE id = $1");
	B(h, "", "s");
	E(h, "");
	S(h);
	B(h, "p", "s"); /* the next transaction's Bind, sent before the answer */
	CC(h, "SELECT 1");
	RFQ(h, 'I');
	E(h, "p");
	S(h);
	CC(h, "SELECT 1");
	RFQ(h, 'I');
	check_ndone(h, 2);
	check_done(h, 1, "SELECT a FROM t WHERE id = $1", 1, false);
	assert_false(st(h)->cur.unknown);
}

/* px_track_ready() calls writes_queued(), which scans every item still in
 * the queue: a client pipelining N Execute+Sync pairs makes the answers
 * cost O(N^2) on the event loop (32000 pairs: about 3 s at -O2, every other
 * session stalled meanwhile; linear work takes milliseconds). */
static double seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_bug_ready_scans_whole_queue(void **state)
{
	harness *h = *state;
	enum { PAIRS = 32000 };
	P(h, "s", "SELECT a FROM t WHERE id = $1");
	for (int i = 0; i < PAIRS; i++) {
		B(h, "", "s");
		E(h, "");
		S(h);
	}
	assert_int_equal(px_track_inflight(&h->t), 2 * PAIRS);
	double t0 = seconds();
	for (int i = 0; i < PAIRS; i++) {
		CC(h, "SELECT 1");
		RFQ(h, 'I');
	}
	double took = seconds() - t0;
	check_ndone(h, PAIRS);
	assert_int_equal(px_track_inflight(&h->t), 0);
	if (took > 1.0)
		fail_msg("answering %d pipelined Execute+Sync pairs took %.2f s", PAIRS, took);
}

/* BEGIN; SET LOCAL ROLE alice; RESET ALL -> PostgreSQL: current_user is
 * still alice until the block ends (role is GUC_NO_RESET_ALL, SET LOCAL
 * included).  reset_all() keeps the session-level role but frees every SET
 * LOCAL, so pgfold reports no role while the server runs as alice. */
static void test_bug_reset_all_drops_set_local_role(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET LOCAL ROLE alice", "SET", 'T');
	run(h, "RESET ALL", "RESET", 'T');
	check_setting(h, "role", "SET LOCAL ROLE alice");
	run(h, "COMMIT", "COMMIT", 'I');
	check_setting(h, "role", NULL);
}

/* BEGIN; SET transaction_read_only = on -> PostgreSQL: SHOW
 * transaction_read_only is on.  set_done() treats transaction_read_only as
 * transaction-scoped but only applies transaction_isolation: read_only
 * stays -1. */
static void test_bug_set_transaction_read_only_guc(void **state)
{
	harness *h = *state;
	run(h, "BEGIN", "BEGIN", 'T');
	run(h, "SET transaction_read_only = on", "SET", 'T');
	check_json_has(h, "\"read_only\":1");
}

/* SET default_transaction_read_only = on -> PostgreSQL: every later
 * transaction is read only (SHOW transaction_read_only: on).  It is stored
 * as a plain setting; default_read_only (what /sessions shows as read_only)
 * is only set by SET SESSION CHARACTERISTICS. */
static void test_bug_default_transaction_read_only(void **state)
{
	harness *h = *state;
	run(h, "SET default_transaction_read_only = on", "SET", 'I');
	check_json_has(h, "\"read_only\":1");
	run(h, "BEGIN", "BEGIN", 'T');
	check_json_has(h, "\"read_only\":1");
}

/* A binary int4 bound to a statement parsed without types (asyncpg): its
 * text form is known once a Describe of the statement has been answered,
 * and only for the statement that Describe was about. */
static void bind_binary_42(harness *h, const char *portal, const char *stmt)
{
	static const uint8_t formats[] = {0, 1};
	static const uint8_t params[] = {0, 0, 0, 4, 0, 0, 0, 42};
	pgw_bind_msg m = {.portal = portal, .stmt_name = stmt, .nformats = 1, .formats = formats,
			  .nparams = 1, .params = params, .params_len = sizeof(params)};
	B(h, portal, stmt);
	px_track_bind_params(&h->t, portal, stmt, &m);
}

static void test_param_types_from_describe(void **state)
{
	harness *h = *state;
	static const uint8_t int4[] = {0, 0, 0, 23};
	const char *v;
	size_t len;
	P(h, "s1", "SELECT a FROM t WHERE id = $1");
	P(h, "s2", "SELECT a FROM t WHERE id = $1");
	bind_binary_42(h, "", "s1");
	assert_int_equal(px_track_portal_value(&h->t, "", 1, &v, &len), -1); /* binary of an unknown type */
	/* Describe s1 in one Sync group; the answer of an earlier group's
	 * skipped Describe (s2, after an error) must not be taken for it */
	px_track_describe(&h->t, "s2");
	S(h);
	RFQ(h, 'I');
	px_track_describe(&h->t, "s1");
	S(h);
	px_track_param_desc(&h->t, 1, int4);
	RFQ(h, 'I');
	px_track_stmt ts;
	assert_true(px_track_statement(&h->t, "s1", &ts));
	assert_int_equal(ts.ntypes, 1);
	assert_int_equal(ts.types[0], 23);
	assert_true(px_track_statement(&h->t, "s2", &ts));
	assert_int_equal(ts.ntypes, 0);
	bind_binary_42(h, "", "s1");
	assert_int_equal(px_track_portal_value(&h->t, "", 1, &v, &len), 1);
	assert_int_equal(len, 2);
	assert_memory_equal(v, "42", 2);
	/* more Describes than followed: the extra ones are ignored */
	for (int i = 0; i < PX_TRACK_MAX_DESCRIBES + 3; i++)
		px_track_describe(&h->t, "s2");
	S(h);
	RFQ(h, 'I');
	assert_int_equal(h->t.describes_count, 0);
}

/* ---------------------------------------------------------------- main */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_simple_query_three_statements),
		T(test_param_types_from_describe),
		T(test_tag_rows),
		T(test_multi_statement_second_fails),
		T(test_empty_query),
		T(test_unparsed_query),
		T(test_extended_pipeline),
		T(test_portal_suspended),
		T(test_pipeline_error_in_middle),
		T(test_pipeline_parse_error),
		T(test_extended_set),
		T(test_function_call),
		T(test_begin_commit_keeps_set),
		T(test_begin_rollback_undoes_set),
		T(test_failed_block_commit_is_rollback),
		T(test_block_in_one_query),
		T(test_set_local_dropped_at_end),
		T(test_savepoints),
		T(test_savepoint_same_name_twice),
		T(test_too_many_savepoints),
		T(test_reset_and_discard),
		T(test_set_role),
		T(test_implicit_transaction_failure_undoes_set),
		T(test_begin_isolation),
		T(test_session_characteristics),
		T(test_set_transaction),
		T(test_tx_wrote),
		T(test_untracked_query),
		T(test_unknown_portal),
		T(test_prepared_bound),
		T(test_queue_overflow),
		T(test_rollback_to_undoes_set_local),
		T(test_set_after_set_local),
		T(test_reset_all_keeps_role),
		T(test_second_begin),
		T(test_set_before_begin_in_one_query),
		T(test_set_after_commit_in_failed_query),
		T(test_empty_prepared_statement),
		T(test_pipelined_rollback_after_set),
		T(test_pipelined_second_implicit_tx_fails),
		T(test_untracked_failed_query_keeps_unknown),
		T(test_failed_commit_marks_unknown),
		T(test_savepoint_non_ascii_names),
		T(test_discard_all_keeps_prepared),
		T(test_portals_unbounded),
		T(test_session_characteristics_inside_block),
		T(test_read_uncommitted),
		T(test_transaction_isolation_setting_outlives_tx),
		T(test_bug_portal_bound_before_earlier_ready),
		T(test_bug_ready_scans_whole_queue),
		T(test_bug_reset_all_drops_set_local_role),
		T(test_bug_set_transaction_read_only_guc),
		T(test_bug_default_transaction_read_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
