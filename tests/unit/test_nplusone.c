/*
 * test_nplusone.c — rewrite/nplusone*.c: N+1 detection over real analyses
 * (rw_analyze) of the statements SQLAlchemy 1.4 sends for lazy loading, with
 * parent results fed row by row in text form as the proxy does.
 *
 * Covered: one-to-many confirmation (learning, learning, active) and the
 * keys to batch; fetched marks (a fetched child gets no keys: answer it from
 * the buffer) and their reset; a second session; values in no parent;
 * nested lazy loading (two patterns, one per level); many-to-one with
 * duplicate keys; bound parameters; a SELECT EXISTS (...) child; every bound
 * (rows, bytes, parents ring, registry eviction) with its counts; forget;
 * disable; JSON and text reports with the suggested fix; pattern references
 * outliving the registry.  Under build-asan/ the same run checks for leaks.
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
#include "../../rewrite/literal.h"
#include "../../rewrite/nplusone.h"

#define USERS "SELECT users.id AS users_id, users.name AS users_name FROM users"
#define USER_IDS "SELECT users.id AS users_id FROM users"
#define POSTS_OF_USER                                                                                                  \
	"SELECT posts.id AS posts_id, posts.title AS posts_title, posts.user_id AS posts_user_id FROM posts WHERE %d " \
	"= posts.user_id"
#define POSTS_OF_USER_PARAM                                                                                            \
	"SELECT posts.id AS posts_id, posts.title AS posts_title FROM posts WHERE posts.user_id = $1"
#define COMMENTS_OF_POST                                                                                               \
	"SELECT comments.id AS comments_id, comments.body AS comments_body, comments.post_id AS comments_post_id FROM " \
	"comments WHERE %d = comments.post_id"
#define ALL_POSTS "SELECT posts.id AS posts_id, posts.title AS posts_title, posts.user_id AS posts_user_id FROM posts"
#define USER_BY_ID "SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.id = %d"
#define POSTS_EXIST "SELECT EXISTS (SELECT * \nFROM posts \nWHERE posts.user_id = %d) AS anon_1"

#define INT4 23u
#define TEXT 25u
#define FLOAT8 701u

typedef struct ctx {
	rw_analyzer *an;
	rw_np_registry *reg;
	rw_np_session *s;
	pf_sb out;
} ctx;

static int setup_limits(void **state, const rw_np_limits *limits)
{
	ctx *c = calloc(1, sizeof *c);
	c->an = rw_analyzer_new(256, 1 << 20);
	c->reg = rw_np_registry_new(limits);
	c->s = rw_np_session_new(c->reg);
	pf_sb_init(&c->out);
	*state = c;
	return 0;
}

static int setup(void **state)
{
	return setup_limits(state, NULL);
}

static int teardown(void **state)
{
	ctx *c = *state;
	rw_np_session_free(c->s);
	rw_np_registry_free(c->reg);
	rw_analyzer_free(c->an);
	pf_sb_free(&c->out);
	free(c);
	return 0;
}

static rw_analysis *analyze(ctx *c, const char *sql)
{
	rw_analysis *a = rw_analyze(c->an, sql, strlen(sql));
	if (a->nstmts != 1)
		fail_msg("%s: %zu statements (%s)", sql, a->nstmts, a->error ? a->error : "");
	return a;
}

/* Feed a result of `sql` with ncols columns (names, types) and nrows rows;
 * cell(r, col) gives each value's text (NULL for SQL NULL). */
typedef const char *(*cell_fn)(size_t row, size_t col, char *buf, size_t size);

static void feed(ctx *c, rw_np_session *s, const char *sql, size_t ncols, const char *const *names,
		 const uint32_t *types, size_t nrows, cell_fn cell)
{
	rw_analysis *a = analyze(c, sql);
	rw_np_result_begin(s, a->stmts[0].shape, (int16_t)ncols);
	for (size_t i = 0; i < ncols; i++)
		rw_np_result_column(s, (int16_t)i, names[i], 16384, (int16_t)(i + 1), types[i]);
	for (size_t r = 0; r < nrows; r++) {
		char bufs[8][64];
		const char *vals[8];
		size_t lens[8];
		for (size_t i = 0; i < ncols; i++) {
			vals[i] = cell(r, i, bufs[i], sizeof bufs[i]);
			lens[i] = vals[i] ? strlen(vals[i]) : 0;
		}
		rw_np_result_row(s, (int16_t)ncols, vals, lens);
	}
	rw_np_result_end(s);
	rw_analysis_free(a);
}

/* users: id = row + 1, name = "user<id>". */
static const char *users_cell(size_t row, size_t col, char *buf, size_t size)
{
	snprintf(buf, size, col == 0 ? "%zu" : "user%zu", row + 1);
	return buf;
}

static void feed_users(ctx *c, rw_np_session *s, size_t n)
{
	static const char *const names[] = {"users_id", "users_name"};
	static const uint32_t types[] = {INT4, TEXT};
	feed(c, s, USERS, 2, names, types, n, users_cell);
}

/* The child statement fmt with %d = v, slot values taken from its literals
 * as the proxy does (rw_literal_text). */
static void child(ctx *c, rw_np_session *s, const char *fmt, int v, size_t want, rw_np_match *m)
{
	char sql[512], bufs[8][64];
	const char *vals[8] = {0};
	size_t lens[8] = {0};
	snprintf(sql, sizeof sql, fmt, v);
	rw_analysis *a = analyze(c, sql);
	const rw_stmt *st = &a->stmts[0];
	assert_true(st->shape->nslots <= 8);
	for (size_t k = 0; k < st->shape->nslots; k++) {
		if (st->shape->slots[k].rel_index >= 0 &&
		    rw_literal_text(sql + st->values[k].location, (size_t)st->values[k].length, bufs[k], sizeof bufs[k],
				    &lens[k]) == 0)
			vals[k] = bufs[k];
	}
	rw_np_child(s, st->shape, vals, lens, want, m);
	rw_analysis_free(a);
}

static void expect_match(const rw_np_match *m, rw_np_status st, bool newly, const char *what)
{
	if (!m->pattern || m->status != st || m->newly_active != newly)
		fail_msg("%s: pattern %p status %s newly %d, want status %s newly %d", what, (void *)m->pattern,
			 rw_np_status_name(m->status), m->newly_active, rw_np_status_name(st), newly);
}

/* keys are exactly the integers of want[] in order. */
static void expect_keys(const rw_np_match *m, const int *want, size_t n, const char *what)
{
	char buf[32];
	if (m->nkeys != n)
		fail_msg("%s: %zu keys, want %zu (first %s)", what, m->nkeys, n, m->nkeys ? m->keys[0] : "-");
	for (size_t i = 0; i < n; i++) {
		snprintf(buf, sizeof buf, "%d", want[i]);
		if (m->key_lengths[i] != strlen(buf) || strcmp(m->keys[i], buf) != 0)
			fail_msg("%s: key %zu is \"%s\" (%zu bytes), want %s", what, i, m->keys[i], m->key_lengths[i],
				 buf);
	}
}

static void expect_key_range(const rw_np_match *m, int from, int to, const char *what)
{
	int want[1000];
	size_t n = 0;
	for (int v = from; v <= to; v++)
		want[n++] = v;
	expect_keys(m, want, n, what);
}

static rw_np_stats stats(const ctx *c)
{
	rw_np_stats st;
	rw_np_registry_stats(c->reg, &st);
	return st;
}

static void expect_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("missing %s in:\n%s", needle, hay);
}

static const char *render_json(ctx *c)
{
	pf_sb_reset(&c->out);
	rw_np_render_json(c->reg, &c->out);
	return pf_sb_str(&c->out);
}

static const char *render_text(ctx *c)
{
	pf_sb_reset(&c->out);
	rw_np_render_text(c->reg, &c->out);
	return pf_sb_str(&c->out);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_key_types(void **state)
{
	(void)state;
	static const struct {
		uint32_t oid;
		bool key;
	} cases[] = {{21, true},  {23, true},   {20, true},   {25, true},  {1043, true}, {1042, true},
		     {2950, true}, {26, true},  {16, false},  {701, false}, {1700, false}, {1114, false},
		     {19, false},  {0, false}, {3802, false}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (rw_np_key_type(cases[i].oid) != cases[i].key)
			fail_msg("rw_np_key_type(%u) = %d, want %d", cases[i].oid, !cases[i].key, cases[i].key);
	}
}

static void test_one_to_many(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 100);
	child(c, c->s, POSTS_OF_USER, 1, 10, &m);
	expect_match(&m, RW_NP_LEARNING, false, "child 1");
	assert_int_equal(m.nkeys, 0);
	assert_int_equal(m.slot, 0);
	assert_int_equal(m.key_type, INT4);
	child(c, c->s, POSTS_OF_USER, 2, 10, &m);
	expect_match(&m, RW_NP_LEARNING, false, "child 2");
	child(c, c->s, POSTS_OF_USER, 2, 10, &m); /* a repeated value is not a new child */
	expect_match(&m, RW_NP_LEARNING, false, "child 2 again");
	child(c, c->s, POSTS_OF_USER, 3, 10, &m);
	expect_match(&m, RW_NP_ACTIVE, true, "child 3 confirms");
	expect_key_range(&m, 3, 12, "child 3");
	rw_np_pattern *p = m.pattern;

	child(c, c->s, POSTS_OF_USER, 4, 10, &m); /* 3..12 were not marked fetched */
	expect_match(&m, RW_NP_ACTIVE, false, "child 4");
	assert_ptr_equal(m.pattern, p);
	assert_false(m.already_fetched);
	expect_key_range(&m, 4, 13, "child 4");
	rw_np_mark_fetched(c->s, p, m.nkeys, m.keys, m.key_lengths);

	child(c, c->s, POSTS_OF_USER, 5, 10, &m);
	expect_match(&m, RW_NP_ACTIVE, false, "child 5");
	assert_true(m.already_fetched);
	assert_int_equal(m.nkeys, 0);
	child(c, c->s, POSTS_OF_USER, 14, 10, &m);
	assert_false(m.already_fetched);
	expect_key_range(&m, 14, 23, "child 14");
	child(c, c->s, POSTS_OF_USER, 99, 10, &m); /* the end of the parent */
	expect_key_range(&m, 99, 100, "child 99");
	child(c, c->s, POSTS_OF_USER, 14, 0, &m); /* detect mode: no keys */
	expect_match(&m, RW_NP_ACTIVE, false, "want 0");
	assert_int_equal(m.nkeys, 0);

	/* fetched keys inside the range are skipped */
	const char *some[] = {"16", "18", "nope"};
	rw_np_mark_fetched(c->s, p, 3, some, NULL);
	child(c, c->s, POSTS_OF_USER, 15, 5, &m);
	static const int skip[] = {15, 17, 19, 20, 21};
	expect_keys(&m, skip, 5, "child 15 skips 16 and 18");

	rw_np_reset_fetched(c->s);
	child(c, c->s, POSTS_OF_USER, 5, 3, &m);
	assert_false(m.already_fetched);
	expect_key_range(&m, 5, 7, "after reset");

	rw_np_stats st = stats(c);
	assert_int_equal(st.patterns, 1);
	assert_int_equal(st.active, 1);
	assert_int_equal(st.children_seen, 11);
	const char *json = render_json(c);
	expect_contains(json, "\"occurrences\":1,\"children_seen\":11,");
}

static void test_bound_parameter(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 20);
	rw_analysis *a = analyze(c, POSTS_OF_USER_PARAM);
	const rw_shape *sh = a->stmts[0].shape;
	assert_int_equal(sh->slots[0].param, 1);
	static const char *const ids[] = {"7", "9", "11"};
	for (size_t i = 0; i < 3; i++) {
		const char *vals[1] = {ids[i]};
		size_t lens[1] = {strlen(ids[i])};
		rw_np_child(c->s, sh, vals, lens, 4, &m);
	}
	expect_match(&m, RW_NP_ACTIVE, true, "$1 child 11");
	expect_key_range(&m, 11, 14, "$1 child 11");
	const char *unknown[1] = {NULL};
	rw_np_child(c->s, sh, unknown, NULL, 4, &m);
	assert_null(m.pattern);
	rw_analysis_free(a);
}

/* SQLAlchemy's select(exists().where(Post.user_id == u.id)) per user: the key
 * is in the EXISTS subquery's WHERE, a child like any other. */
static void test_exists_child(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 30);
	for (int v = 1; v <= 3; v++)
		child(c, c->s, POSTS_EXIST, v, 5, &m);
	expect_match(&m, RW_NP_ACTIVE, true, "EXISTS child 3 confirms");
	assert_int_equal(m.slot, 0);
	expect_key_range(&m, 3, 7, "EXISTS child 3");
	expect_contains(render_text(c), "users_id (users) -> posts.user_id");
	expect_contains(render_text(c), "fix       e.g. SQLAlchemy: exists() as a correlated column of the Users query");
}

/* The fix is worded for what the child asks: a count, the first row. */
static void test_suggestion_follows_the_child(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 30);
	for (int v = 1; v <= 3; v++)
		child(c, c->s, "SELECT count(*) FROM posts WHERE posts.user_id = %d", v, 5, &m);
	expect_match(&m, RW_NP_ACTIVE, true, "count child 3 confirms");
	feed_users(c, c->s, 30);
	for (int v = 1; v <= 3; v++)
		child(c, c->s, "SELECT posts.id FROM posts WHERE posts.user_id = %d ORDER BY posts.id DESC LIMIT 1", v, 5,
		      &m);
	expect_match(&m, RW_NP_ACTIVE, true, "first-post child 3 confirms");
	const char *text = render_text(c);
	expect_contains(text, "Django: annotate(Count('posts'))");
	expect_contains(text, "prefetch_related(Prefetch('posts', queryset=...[:1]))");
}

static void test_second_session(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 100);
	for (int v = 1; v <= 3; v++)
		child(c, c->s, POSTS_OF_USER, v, 0, &m);
	expect_match(&m, RW_NP_ACTIVE, true, "session 1");

	rw_np_session *s2 = rw_np_session_new(c->reg);
	child(c, s2, POSTS_OF_USER, 50, 10, &m);
	assert_null(m.pattern); /* no parent yet in this session */
	feed_users(c, s2, 100);
	child(c, s2, POSTS_OF_USER, 50, 10, &m);
	expect_match(&m, RW_NP_ACTIVE, false, "session 2, first child");
	expect_key_range(&m, 50, 59, "session 2");
	rw_np_mark_fetched(s2, m.pattern, m.nkeys, m.keys, m.key_lengths);
	/* session 1's parent has nothing fetched */
	child(c, c->s, POSTS_OF_USER, 51, 2, &m);
	expect_key_range(&m, 51, 52, "session 1 unaffected");
	rw_np_session_free(s2);
	expect_contains(render_json(c), "\"occurrences\":2,");
}

static void test_no_match(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	child(c, c->s, POSTS_OF_USER, 1, 10, &m);
	assert_null(m.pattern); /* no parent at all */
	feed_users(c, c->s, 100);
	child(c, c->s, POSTS_OF_USER, 1000, 10, &m);
	assert_null(m.pattern);
	child(c, c->s, POSTS_OF_USER, -1, 10, &m);
	assert_null(m.pattern);
	child(c, c->s, "UPDATE posts SET title = 'x' WHERE posts.user_id = %d", 5, 10, &m);
	assert_null(m.pattern); /* not a read */
	child(c, c->s, "SELECT posts.id FROM posts WHERE posts.title = 'user%d'", 5, 10, &m);
	expect_match(&m, RW_NP_LEARNING, false, "text key user5"); /* users_name is a text key column */
	child(c, c->s, "SELECT posts.id FROM posts WHERE posts.title = 'user%d' || 'x'", 5, 10, &m);
	assert_null(m.pattern); /* not a column = value slot */

	/* results that are not parents: a write's RETURNING, no key column, no rows */
	static const char *const id[] = {"id"};
	static const uint32_t int4[] = {INT4}, float8[] = {FLOAT8};
	rw_np_session *s2 = rw_np_session_new(c->reg);
	feed(c, s2, "INSERT INTO users (name) VALUES ('a') RETURNING id", 1, id, int4, 5, users_cell);
	feed(c, s2, "SELECT avg(users.id) AS id FROM users", 1, id, float8, 5, users_cell);
	feed(c, s2, USER_IDS, 1, id, int4, 0, users_cell);
	child(c, s2, POSTS_OF_USER, 1, 10, &m);
	assert_null(m.pattern);
	rw_np_result_begin(s2, NULL, 1); /* no shape */
	rw_np_result_row(s2, 1, NULL, NULL);
	rw_np_result_end(s2);
	child(c, s2, POSTS_OF_USER, 1, 10, &m);
	assert_null(m.pattern);
	/* an aborted result is not a parent */
	rw_analysis *a = analyze(c, USER_IDS);
	rw_np_result_begin(s2, a->stmts[0].shape, 1);
	rw_np_result_column(s2, 0, "users_id", 0, 0, INT4);
	const char *v[1] = {"1"};
	rw_np_result_row(s2, 1, v, NULL);
	rw_np_result_abort(s2);
	rw_np_result_end(s2); /* nothing open: ignored */
	rw_analysis_free(a);
	child(c, s2, POSTS_OF_USER, 1, 10, &m);
	assert_null(m.pattern);
	rw_np_session_free(s2);
}

/* posts: ids 1000 + row, title, user_id = (row * 7 % 10) + 1: 1, 8, 5, 2, 9, 6, 3, 10, 7, 4, 1, 8, ... */
static const char *posts_cell(size_t row, size_t col, char *buf, size_t size)
{
	if (col == 0)
		snprintf(buf, size, "%zu", row + 1);
	else if (col == 1)
		snprintf(buf, size, "title %zu", row + 1);
	else
		snprintf(buf, size, "%zu", row * 7 % 10 + 1);
	return buf;
}

static void test_many_to_one(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	static const char *const names[] = {"posts_id", "posts_title", "posts_user_id"};
	static const uint32_t types[] = {INT4, TEXT, INT4};
	feed(c, c->s, ALL_POSTS, 3, names, types, 30, posts_cell);
	child(c, c->s, USER_BY_ID, 1, 20, &m);
	expect_match(&m, RW_NP_LEARNING, false, "user 1");
	child(c, c->s, USER_BY_ID, 8, 20, &m);
	child(c, c->s, USER_BY_ID, 5, 20, &m);
	expect_match(&m, RW_NP_ACTIVE, true, "user 5");
	/* posts_user_id (not posts_id, which holds 5 too): its distinct values after 5 */
	static const int want[] = {5, 2, 9, 6, 3, 10, 7, 4};
	expect_keys(&m, want, 8, "user 5");
	pf_sb d;
	pf_sb_init(&d);
	rw_np_pattern_describe(m.pattern, &d);
	assert_string_equal(pf_sb_str(&d), "posts_user_id (posts) -> users.id (many-to-one): SELECT users.id AS users_id, "
					   "users.name AS users_name FROM users WHERE users.id = $1");
	pf_sb_free(&d);
	const char *json = render_json(c);
	expect_contains(json, "\"parent_column\":\"posts_user_id\",\"key_column\":\"users.id\","
			      "\"relationship\":\"many-to-one\",\"status\":\"active\"");
	expect_contains(json, "e.g. SQLAlchemy: joinedload(Posts.user) \u2014 Django: select_related('user') \u2014 "
			      "Rails: includes(:user)");
	/* one candidate per parent: the best-named column (posts_id held 1, 8, 5 too) */
	rw_np_stats st = stats(c);
	assert_int_equal(st.patterns, 1);
	assert_int_equal(st.active, 1);
}

/* posts of user u: ids u * 10 .. u * 10 + 2; comments of post p: ids 5000 + row, post_id p */
static size_t g_user, g_post;
static const char *posts_of_user_cell(size_t row, size_t col, char *buf, size_t size)
{
	if (col == 0)
		snprintf(buf, size, "%zu", g_user * 10 + row);
	else if (col == 1)
		snprintf(buf, size, "post %zu", row);
	else
		snprintf(buf, size, "%zu", g_user);
	return buf;
}

static const char *comments_cell(size_t row, size_t col, char *buf, size_t size)
{
	if (col == 1)
		snprintf(buf, size, "comment %zu", row);
	else
		snprintf(buf, size, "%zu", col == 0 ? 5000 + row : g_post);
	return buf;
}

static void test_nested(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	static const char *const pnames[] = {"posts_id", "posts_title", "posts_user_id"};
	static const char *const cnames[] = {"comments_id", "comments_body", "comments_post_id"};
	static const uint32_t types[] = {INT4, TEXT, INT4};
	char sql[512];
	feed_users(c, c->s, 100);
	int newly = 0;
	/* for user in users: for post in user.posts: post.comments */
	for (size_t u = 1; u <= 4; u++) {
		g_user = u;
		child(c, c->s, POSTS_OF_USER, (int)u, 0, &m);
		assert_non_null(m.pattern);
		newly += m.newly_active;
		snprintf(sql, sizeof sql, POSTS_OF_USER, (int)u);
		feed(c, c->s, sql, 3, pnames, types, 3, posts_of_user_cell);
		for (size_t p = 0; p < 3; p++) {
			child(c, c->s, COMMENTS_OF_POST, (int)(u * 10 + p), 0, &m);
			assert_non_null(m.pattern);
			newly += m.newly_active;
			g_post = u * 10 + p;
			snprintf(sql, sizeof sql, COMMENTS_OF_POST, (int)g_post);
			feed(c, c->s, sql, 3, cnames, types, 2, comments_cell);
		}
	}
	assert_int_equal(newly, 2);
	rw_np_stats st = stats(c);
	assert_int_equal(st.active, 2);
	const char *json = render_json(c);
	expect_contains(json, "\"parent_column\":\"users_id\",\"key_column\":\"posts.user_id\","
			      "\"relationship\":\"one-to-many\",\"status\":\"active\"");
	expect_contains(json, "\"parent_column\":\"posts_id\",\"key_column\":\"comments.post_id\","
			      "\"relationship\":\"one-to-many\",\"status\":\"active\"");
	expect_contains(json, "selectinload(Posts.comments) \u2014 Django: prefetch_related('comments')");
	/* users -> posts confirmed in the one users result, posts -> comments in each posts result */
	expect_contains(json, "\"key_column\":\"posts.user_id\",\"relationship\":\"one-to-many\",\"status\":\"active\","
			      "\"reason\":null,\"occurrences\":1,");
	expect_contains(json, "\"key_column\":\"comments.post_id\",\"relationship\":\"one-to-many\",\"status\":"
			      "\"active\",\"reason\":null,\"occurrences\":4,");
}

static void test_forget(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 100);
	for (int v = 1; v <= 3; v++)
		child(c, c->s, POSTS_OF_USER, v, 0, &m);
	expect_match(&m, RW_NP_ACTIVE, true, "confirmed");
	rw_np_forget(c->s);
	child(c, c->s, POSTS_OF_USER, 4, 10, &m);
	assert_null(m.pattern);
	rw_np_forget(c->s); /* twice is fine */
	feed_users(c, c->s, 100);
	child(c, c->s, POSTS_OF_USER, 60, 2, &m);
	expect_match(&m, RW_NP_ACTIVE, false, "after forget, a new parent");
	expect_key_range(&m, 60, 61, "after forget");
	/* a result still being received survives forget */
	rw_analysis *a = analyze(c, USER_IDS);
	rw_np_result_begin(c->s, a->stmts[0].shape, 1);
	rw_np_result_column(c->s, 0, "users_id", 0, 0, INT4);
	rw_np_forget(c->s);
	const char *v[1] = {"777"};
	rw_np_result_row(c->s, 1, v, NULL);
	rw_np_result_end(c->s);
	rw_analysis_free(a);
	child(c, c->s, POSTS_OF_USER, 777, 2, &m);
	expect_match(&m, RW_NP_LEARNING, false, "new parent shape: new pattern");
}

static void test_disable(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 100);
	for (int v = 1; v <= 3; v++)
		child(c, c->s, POSTS_OF_USER, v, 10, &m);
	rw_np_pattern *p = rw_np_pattern_ref(m.pattern);
	rw_np_disable(p, "batch failed: division by zero");
	rw_np_disable(p, "another reason"); /* the first one stays */
	assert_int_equal(rw_np_pattern_status(p), RW_NP_DISABLED);
	child(c, c->s, POSTS_OF_USER, 4, 10, &m);
	expect_match(&m, RW_NP_DISABLED, false, "disabled");
	assert_int_equal(m.nkeys, 0);
	rw_np_stats st = stats(c);
	assert_int_equal(st.active, 0);
	assert_int_equal(st.disabled, 1);
	const char *json = render_json(c);
	expect_contains(json, "\"status\":\"disabled\",\"reason\":\"batch failed: division by zero\"");
	const char *text = render_text(c);
	expect_contains(text, "[1] disabled  users_id (users) -> posts.user_id (one-to-many)");
	expect_contains(text, "    reason    batch failed: division by zero\n");
	rw_np_pattern_unref(p);

	/* a learning pattern can be disabled too */
	child(c, c->s, "SELECT tags.id FROM tags WHERE tags.user_id = %d", 1, 10, &m);
	expect_match(&m, RW_NP_LEARNING, false, "tags");
	rw_np_disable(m.pattern, NULL);
	for (int v = 2; v <= 4; v++)
		child(c, c->s, "SELECT tags.id FROM tags WHERE tags.user_id = %d", v, 10, &m);
	expect_match(&m, RW_NP_DISABLED, false, "tags never confirms");
	assert_int_equal(stats(c).disabled, 2);
	expect_contains(render_json(c), "\"reason\":\"disabled\"");
}

static void test_report(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 100);
	child(c, c->s, POSTS_OF_USER, 1, 10, &m);
	expect_contains(render_json(c), "\"status\":\"learning\",\"reason\":\"1 of 3 children of one parent result "
					"so far\"");
	for (int v = 2; v <= 3; v++)
		child(c, c->s, POSTS_OF_USER, v, 10, &m);
	rw_np_count_batch(m.pattern, 1, 0);
	rw_np_count_served(m.pattern, 9);
	rw_np_count_batch(m.pattern, 1, 0);
	const char *json = render_json(c);
	expect_contains(json, "{\"totals\":{\"patterns\":1,\"active\":1,\"disabled\":0,\"learning\":0,"
			      "\"children_seen\":3,\"children_served\":11,\"batches\":2,\"statements_saved\":9,"
			      "\"round_trips_saved\":9,\"evicted\":0},\"patterns\":[{\"parent\":\"" USERS "\",");
	expect_contains(json, "\"child\":\"SELECT posts.id AS posts_id, posts.title AS posts_title, posts.user_id AS "
			      "posts_user_id FROM posts WHERE $1 = posts.user_id\",\"parent_table\":\"users\","
			      "\"parent_column\":\"users_id\",\"key_column\":\"posts.user_id\"");
	expect_contains(json, "\"occurrences\":1,\"children_seen\":3,\"children_served\":11,\"batches\":2,"
			      "\"statements_saved\":9,\"round_trips_saved\":9,\"suggestion\":\"e.g. SQLAlchemy: "
			      "selectinload(Users.posts) \u2014 Django: prefetch_related('posts') \u2014 Rails: "
			      "includes(:posts)\"}]}");
	const char *text = render_text(c);
	expect_contains(text, "N+1 patterns: 1 (1 active, 0 disabled, 0 learning); children seen 3, served 11, "
			      "batches 2, statements saved 9, evicted 0\n");
	expect_contains(text, "\n[1] active    users_id (users) -> posts.user_id (one-to-many): SELECT posts.id");
	expect_contains(text, "\n    parent    " USERS "\n");
	expect_contains(text, "\n    counts    occurrences 1, children seen 3, served 11, batches 2, statements saved "
			      "9, round trips saved 9\n");
	expect_contains(text, "\n    fix       e.g. SQLAlchemy: selectinload(Users.posts) \u2014 Django: "
			      "prefetch_related('posts') \u2014 Rails: includes(:posts)\n");
	if (strstr(text, "reason"))
		fail_msg("an active pattern has no reason line:\n%s", text);
	rw_np_stats st = stats(c);
	assert_int_equal(st.children_served, 11);
	assert_int_equal(st.batches, 2);
	assert_int_equal(st.statements_saved, 9);

	/* an empty registry */
	rw_np_registry *empty = rw_np_registry_new(NULL);
	pf_sb_reset(&c->out);
	rw_np_render_json(empty, &c->out);
	expect_contains(pf_sb_str(&c->out), "\"patterns\":[]}");
	rw_np_registry_free(empty);
}

/* ---- bounds ----------------------------------------------------------------- */

static int setup_small(void **state)
{
	rw_np_limits l = {.max_parent_rows = 10, .max_parent_bytes = 20, .max_parents = 2, .max_patterns = 2};
	return setup_limits(state, &l);
}

static void test_limit_rows(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	rw_np_limits l;
	rw_np_limits_default(&l);
	l.max_parent_rows = 10;
	rw_np_registry_set_limits(c->reg, &l);
	feed_users(c, c->s, 100);
	child(c, c->s, POSTS_OF_USER, 11, 10, &m);
	assert_null(m.pattern); /* row 11 was not kept */
	child(c, c->s, POSTS_OF_USER, 10, 10, &m);
	assert_non_null(m.pattern);
	child(c, c->s, POSTS_OF_USER, 8, 10, &m);
	child(c, c->s, POSTS_OF_USER, 9, 10, &m);
	expect_match(&m, RW_NP_ACTIVE, true, "rows");
	expect_key_range(&m, 9, 10, "only the kept rows");
}

static const char *ids_cell(size_t row, size_t col, char *buf, size_t size)
{
	snprintf(buf, size, "%zu", row + 1 + col * 1000);
	return buf;
}

static int setup_bytes(void **state)
{
	rw_np_limits l = {.max_parent_bytes = 19};
	return setup_limits(state, &l);
}

static void test_limit_bytes(void **state)
{
	ctx *c = *state; /* max_parent_bytes 19 */
	rw_np_match m;
	static const char *const id[] = {"users_id"};
	static const uint32_t int4[] = {INT4};
	/* 1..9 are 9 bytes, 10..14 ten more: 19; 15 would pass the budget */
	feed(c, c->s, USER_IDS, 1, id, int4, 100, ids_cell);
	child(c, c->s, POSTS_OF_USER, 15, 10, &m);
	assert_null(m.pattern);
	child(c, c->s, POSTS_OF_USER, 14, 10, &m);
	assert_non_null(m.pattern);
	/* the budget is the session's: a second result keeps nothing and is no parent */
	feed(c, c->s, "SELECT posts.id AS posts_id FROM posts", 1, id, int4, 5, ids_cell);
	child(c, c->s, "SELECT comments.id FROM comments WHERE comments.post_id = %d", 1, 10, &m);
	expect_match(&m, RW_NP_LEARNING, false, "matched in the users result");
	pf_sb_reset(&c->out);
	rw_np_pattern_describe(m.pattern, &c->out);
	expect_contains(pf_sb_str(&c->out), "users_id (users) -> comments.post_id");
	/* forgetting gives the budget back */
	rw_np_forget(c->s);
	feed(c, c->s, "SELECT posts.id AS posts_id FROM posts", 1, id, int4, 5, ids_cell);
	child(c, c->s, "SELECT tags.id FROM tags WHERE tags.post_id = %d", 5, 10, &m);
	assert_non_null(m.pattern);
	/* values over max_value_len (default 64) are never kept */
	rw_np_limits l;
	rw_np_limits_default(&l);
	l.max_value_len = 3;
	l.max_parent_rows = 5000;
	rw_np_registry_set_limits(c->reg, &l);
	rw_np_forget(c->s);
	feed(c, c->s, USER_IDS, 1, id, int4, 2000, ids_cell);
	child(c, c->s, POSTS_OF_USER, 999, 10, &m);
	assert_non_null(m.pattern);
	child(c, c->s, POSTS_OF_USER, 1000, 10, &m);
	assert_null(m.pattern);
}

static void test_limit_parents(void **state)
{
	ctx *c = *state; /* max_parents 2, max_parent_bytes 20 */
	rw_np_match m;
	static const char *const id[] = {"id"};
	static const uint32_t int4[] = {INT4};
	feed(c, c->s, "SELECT a.id FROM a", 1, id, int4, 3, ids_cell); /* 1 2 3 */
	feed(c, c->s, "SELECT b.id FROM b", 1, id, int4, 3, ids_cell); /* 1 2 3 again */
	child(c, c->s, "SELECT x.v FROM x WHERE x.a_id = %d", 1, 0, &m);
	expect_match(&m, RW_NP_LEARNING, false, "a and b both hold 1");
	rw_np_stats st = stats(c);
	assert_int_equal(st.patterns, 2); /* one candidate per parent */
	/* a (matched, names fit best) is now the most recent: c evicts b */
	feed(c, c->s, "SELECT c.id FROM c", 1, id, int4, 3, ids_cell);
	child(c, c->s, "SELECT y.v FROM y WHERE y.b_id = %d", 2, 0, &m);
	assert_non_null(m.pattern);
	pf_sb_reset(&c->out);
	rw_np_pattern_describe(m.pattern, &c->out);
	expect_contains(pf_sb_str(&c->out), "id (c) -> y.b_id");
	child(c, c->s, "SELECT z.v FROM z WHERE z.w = %d", 3, 0, &m);
	pf_sb_reset(&c->out);
	rw_np_pattern_describe(m.pattern, &c->out);
	expect_contains(pf_sb_str(&c->out), "id (c) -> z.w"); /* c, a: most recent first */
	feed(c, c->s, "SELECT d.id FROM d", 1, id, int4, 3, ids_cell);
	feed(c, c->s, "SELECT e.id FROM e", 1, id, int4, 3, ids_cell);
	child(c, c->s, "SELECT z.v FROM z WHERE z.w = %d", 3, 0, &m);
	pf_sb_reset(&c->out);
	rw_np_pattern_describe(m.pattern, &c->out);
	expect_contains(pf_sb_str(&c->out), "id (e) -> z.w");
}

static void test_registry_eviction(void **state)
{
	ctx *c = *state; /* max_patterns 2 */
	rw_np_match m;
	static const char *const id[] = {"id"};
	static const uint32_t int4[] = {INT4};
	static const char *const learning[] = {"SELECT t1.v FROM t1 WHERE t1.k = %d", "SELECT t2.v FROM t2 WHERE t2.k = %d",
					       "SELECT t3.v FROM t3 WHERE t3.k = %d"};
	feed(c, c->s, "SELECT a.id FROM a", 1, id, int4, 3, ids_cell);
	for (size_t i = 0; i < 3; i++)
		child(c, c->s, learning[i], 1, 0, &m);
	rw_np_stats st = stats(c);
	assert_int_equal(st.patterns, 2);
	assert_int_equal(st.evicted, 1);
	const char *json = render_json(c);
	if (strstr(json, "t1.k"))
		fail_msg("t1 should have been evicted:\n%s", json);
	expect_contains(json, "t3.k");

	/* confirmed patterns: kept up to twice the bound */
	rw_np_limits l = {.min_repeats = 1, .max_parent_rows = 10, .max_parent_bytes = 20, .max_parents = 2,
			  .max_patterns = 2};
	rw_np_registry_set_limits(c->reg, &l);
	char sql[128];
	for (int i = 0; i < 4; i++) {
		snprintf(sql, sizeof sql, "SELECT u%d.v FROM u%d WHERE u%d.k = %%d", i, i, i);
		child(c, c->s, sql, 1, 0, &m);
		expect_match(&m, RW_NP_ACTIVE, true, sql);
	}
	st = stats(c);
	assert_int_equal(st.patterns, 4); /* both learning ones went first */
	assert_int_equal(st.active, 4);
	assert_int_equal(st.evicted, 3);
	child(c, c->s, "SELECT u0.v FROM u0 WHERE u0.k = %d", 2, 0, &m); /* u0 seen again: u1 is the oldest */
	rw_np_pattern *held = rw_np_pattern_ref(m.pattern);
	child(c, c->s, "SELECT u9.v FROM u9 WHERE u9.k = %d", 1, 0, &m);
	st = stats(c);
	assert_int_equal(st.patterns, 4);
	assert_int_equal(st.evicted, 4);
	json = render_json(c);
	if (strstr(json, "u1.k"))
		fail_msg("u1 should have been evicted:\n%s", json);
	expect_contains(json, "u0.k");
	/* an evicted pattern held by a caller stays usable, detached */
	for (int i = 2; i <= 4; i++) {
		snprintf(sql, sizeof sql, "SELECT w%d.v FROM w%d WHERE w%d.k = %%d", i, i, i);
		child(c, c->s, sql, 1, 0, &m);
	}
	assert_int_equal(rw_np_pattern_status(held), RW_NP_ACTIVE);
	rw_np_count_batch(held, 3, 2);
	rw_np_disable(held, "late failure");
	rw_np_mark_fetched(c->s, held, 0, NULL, NULL);
	assert_int_equal(stats(c).batches, 0);
	rw_np_pattern_unref(held);
}

static void test_pattern_outlives_registry(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	feed_users(c, c->s, 10);
	for (int v = 1; v <= 3; v++)
		child(c, c->s, POSTS_OF_USER, v, 10, &m);
	rw_np_pattern *p = rw_np_pattern_ref(m.pattern);
	rw_np_session_free(c->s);
	c->s = NULL;
	rw_np_registry_free(c->reg);
	c->reg = NULL;
	assert_int_equal(rw_np_pattern_status(p), RW_NP_ACTIVE);
	rw_np_count_served(p, 2);
	rw_np_disable(p, "after shutdown");
	pf_sb_reset(&c->out);
	rw_np_pattern_describe(p, &c->out);
	expect_contains(pf_sb_str(&c->out), "users_id (users) -> posts.user_id (one-to-many)");
	rw_np_pattern_unref(p);
	rw_np_pattern_unref(NULL);
}

static void test_defaults(void **state)
{
	(void)state;
	rw_np_limits l;
	rw_np_limits_default(&l);
	assert_int_equal(l.min_repeats, 3);
	assert_int_equal(l.max_parent_rows, 1000);
	assert_int_equal(l.max_parent_bytes, 1 << 20);
	assert_int_equal(l.max_parents, 4);
	assert_int_equal(l.max_patterns, 1000);
	assert_int_equal(l.max_value_len, 64);
	assert_string_equal(rw_np_status_name(RW_NP_LEARNING), "learning");
	assert_string_equal(rw_np_status_name(RW_NP_ACTIVE), "active");
	assert_string_equal(rw_np_status_name(RW_NP_DISABLED), "disabled");
	rw_np_registry_free(NULL);
	rw_np_session_free(NULL);
}

/* Many sessions, many results, many patterns: the bounds hold and nothing leaks. */
static void test_churn(void **state)
{
	ctx *c = *state;
	rw_np_match m;
	rw_np_session *ss[5];
	for (size_t i = 0; i < 5; i++)
		ss[i] = rw_np_session_new(c->reg);
	char sql[128];
	for (int round = 0; round < 200; round++) {
		rw_np_session *s = ss[round % 5];
		feed_users(c, s, 50);
		snprintf(sql, sizeof sql, "SELECT t%d.v FROM t%d WHERE t%d.user_id = %%d", round % 37, round % 37,
			 round % 37);
		for (int v = 1; v <= 6; v++)
			child(c, s, sql, v + round % 40, 8, &m);
		if (m.nkeys)
			rw_np_mark_fetched(s, m.pattern, m.nkeys, m.keys, m.key_lengths);
		if (round % 50 == 0)
			rw_np_forget(s);
	}
	rw_np_stats st = stats(c);
	assert_int_equal(st.patterns, 37);
	assert_int_equal(st.active, 37);
	for (size_t i = 0; i < 5; i++)
		rw_np_session_free(ss[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_types),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test_setup_teardown(test_one_to_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bound_parameter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suggestion_follows_the_child, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exists_child, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_session, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_match, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_to_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit_bytes, setup_bytes, teardown),
		cmocka_unit_test_setup_teardown(test_limit_parents, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_registry_eviction, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_pattern_outlives_registry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_churn, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
