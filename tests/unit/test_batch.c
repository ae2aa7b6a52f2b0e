/*
 * test_batch.c — rewrite/batch.c: the form each child shape gets
 * (rw_batch_form_for), the exact batched SQL (rw_batch_build) for
 * representative ORM children — SQLAlchemy lazy loads one-to-many
 * (`WHERE 5 = posts.user_id`) and many-to-one, extra filters, ORDER BY +
 * LIMIT, count(*) per parent, DISTINCT, EXISTS, string keys with quotes and
 * backslashes, uuid keys, $n parameters — the layout values, the cases that
 * must be refused, type names and literals.  Table-driven; each case is
 * analysed with rw_analyze() exactly as the proxy does.  tests/integration/
 * test_batch_sql.py runs the same kind of SQL against PostgreSQL 15.
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

#include "../../common/strbuf.h"
#include "../../rewrite/analysis.h"
#include "../../rewrite/batch.h"

enum { INT2 = 21, INT4 = 23, INT8 = 20, TEXT = 25, BOOL = 16, UUID = 2950, NUMERIC = 1700, BPCHAR = 1042 };

#define MAXK 8
#define MAXP 4

typedef struct param {
	uint32_t type;
	const char *value; /* NULL: SQL NULL */
} param;

typedef struct batch_case {
	const char *name;
	const char *sql;
	const char *keys[MAXK]; /* NULL-terminated */
	uint32_t key_type;      /* 0: int4 */
	uint32_t column_type;
	const char *column_type_name; /* a non-built-in column_type's SQL name */
	param params[MAXP];
	size_t nparams;
	rw_batch_form request; /* the form asked for (NONE: rw_batch_form_for's) */
	int slot;              /* 1-based; 0: the first slot with a column of a known table */
	rw_batch_form want_for;
	rw_batch_form want;    /* NONE: rw_batch_build refuses */
	const char *want_sql;
} batch_case;

/* The LATERAL wrapper around a child text C, keys K (a VALUES list). */
#define LAT_HEAD(K)                                                                                           \
	"SELECT pgfold_k.pgfold_key, pgfold_s.* FROM (VALUES " K ") AS pgfold_k(pgfold_key, pgfold_ord) CROSS JOIN " \
	"LATERAL (SELECT row_number() OVER () AS pgfold_row, pgfold_c.* FROM ("
#define LAT_TAIL ") AS pgfold_c) AS pgfold_s ORDER BY pgfold_k.pgfold_ord, 2"
#define LATERAL_SQL(K, C) LAT_HEAD(K) C LAT_TAIL
#define EXISTS_SQL(K, C)                                                                                      \
	"SELECT pgfold_k.pgfold_key, pgfold_s.* FROM (VALUES " K ") AS pgfold_k(pgfold_key, pgfold_ord) CROSS JOIN " \
	"LATERAL (" C ") AS pgfold_s ORDER BY pgfold_k.pgfold_ord"
#define K567 "('5', 1), ('6', 2), ('7', 3)"
#define U1 "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
#define U2 "b1ffcd88-0000-4000-8000-000000000002"

static const batch_case CASES[] = {
	/* ---- IN ---------------------------------------------------------------- */
	{"sqlalchemy lazy one-to-many",
	 "SELECT posts.id AS posts_id, posts.user_id AS posts_user_id, posts.title AS posts_title FROM posts "
	 "WHERE 5 = posts.user_id",
	 {"5", "6", "7"}, .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "SELECT posts.user_id::bigint AS pgfold_key, posts.id AS posts_id, posts.user_id AS posts_user_id, "
		     "posts.title AS posts_title FROM posts WHERE posts.user_id IN (5, 6, 7)"},
	{"sqlalchemy lazy many-to-one",
	 "SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.id = 5", {"5", "6", "7"},
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "SELECT users.id::bigint AS pgfold_key, users.id AS users_id, users.name AS users_name FROM users "
		     "WHERE users.id IN (5, 6, 7)"},
	{"extra filters around the key",
	 "SELECT posts.id FROM posts WHERE posts.published = true AND 5 = posts.user_id AND posts.id > 10",
	 {"5", "6", "7"}, .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "SELECT posts.user_id::bigint AS pgfold_key, posts.id FROM posts WHERE posts.published = true AND "
		     "posts.user_id IN (5, 6, 7) AND posts.id > 10"},
	{"duplicate keys collapse, negative and zero keys",
	 "SELECT * FROM posts WHERE (user_id = 5)", {"5", "-3", "5", "0", "-3"}, .want_for = RW_BATCH_IN,
	 .want = RW_BATCH_IN,
	 .want_sql = "SELECT user_id::bigint AS pgfold_key, * FROM posts WHERE (user_id IN (5, -3, 0))"},
	{"comments kept, trailing line comment closed",
	 "/* app */ SELECT posts.id FROM posts WHERE posts.user_id = 5 -- lazy", {"5", "6"},
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "/* app */ SELECT posts.user_id::bigint AS pgfold_key, posts.id FROM posts WHERE posts.user_id IN "
		     "(5, 6) -- lazy\n"},
	{"quoted identifiers as written",
	 "SELECT \"Posts\".\"Id\" FROM \"Posts\" WHERE \"Posts\".\"UserId\"=5", {"5", "6"}, .want_for = RW_BATCH_IN,
	 .want = RW_BATCH_IN,
	 .want_sql = "SELECT \"Posts\".\"UserId\"::bigint AS pgfold_key, \"Posts\".\"Id\" FROM \"Posts\" WHERE "
		     "\"Posts\".\"UserId\" IN (5, 6)"},
	{"string keys with quotes and a backslash (column type known)",
	 "SELECT users.id FROM users WHERE users.name = 'o''brien'", {"o'brien", "a\\b", "plain"}, TEXT, TEXT,
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "SELECT users.name::text AS pgfold_key, users.id FROM users WHERE users.name IN ('o''brien', "
		     "E'a\\\\b', 'plain')"},
	{"uuid keys", "SELECT users.id FROM users WHERE users.uid = '" U1 "'", {U1, U2}, UUID, .want_for = RW_BATCH_IN,
	 .want = RW_BATCH_IN,
	 .want_sql = "SELECT users.uid::uuid AS pgfold_key, users.id FROM users WHERE users.uid IN ('" U1 "', '" U2 "')"},
	{"uuid keys under the child's cast", "SELECT users.id FROM users WHERE '" U1 "'::uuid = users.uid", {U1, U2},
	 UUID, .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "SELECT users.uid::uuid AS pgfold_key, users.id FROM users WHERE users.uid IN ('" U1 "'::uuid, '" U2
		     "'::uuid)"},
	{"$n key and parameters inlined",
	 "SELECT posts.id FROM posts WHERE posts.user_id = $1 AND posts.published = $2 AND posts.title <> $3",
	 {"5", "6", "7"}, .params = {{INT8, "5"}, {BOOL, "t"}, {TEXT, "it's"}}, .nparams = 3,
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "SELECT posts.user_id::bigint AS pgfold_key, posts.id FROM posts WHERE posts.user_id IN "
		     "(('5'::bigint), ('6'::bigint), ('7'::bigint)) AND posts.published = ('t'::boolean) AND posts.title "
		     "<> ('it''s'::text)"},
	{"int2 parameter widened, NULL parameter",
	 "SELECT posts.id FROM posts WHERE posts.score IS NOT DISTINCT FROM $2 AND posts.user_id = $1", {"5", "40000"},
	 .params = {{INT2, "5"}, {NUMERIC, NULL}}, .nparams = 2, .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "SELECT posts.user_id::bigint AS pgfold_key, posts.id FROM posts WHERE posts.score IS NOT DISTINCT "
		     "FROM (NULL::numeric) AND posts.user_id IN (('5'::bigint), ('40000'::bigint))"},
	{"text parameter key",
	 "SELECT users.id FROM users WHERE users.name = $1", {"a'b", "c"}, TEXT, .params = {{TEXT, "a'b"}},
	 .nparams = 1, .want_for = RW_BATCH_IN, .want = RW_BATCH_IN,
	 .want_sql = "SELECT users.name::text AS pgfold_key, users.id FROM users WHERE users.name IN (('a''b'::text), "
		     "('c'::text))"},

	/* ---- IN asked, LATERAL built ---------------------------------------------- */
	{"non-canonical integer keys",
	 "SELECT posts.id FROM posts WHERE posts.user_id = 5", {"5", "06"}, .want_for = RW_BATCH_IN,
	 .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL("('5', 1), ('06', 2)",
				 "SELECT posts.id FROM posts WHERE posts.user_id = (pgfold_k.pgfold_key::bigint)")},
	{"upper-case uuid key",
	 "SELECT users.id FROM users WHERE users.uid = '" U1 "'", {U1, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}, UUID,
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL("('" U1 "', 1), ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 2)",
				 "SELECT users.id FROM users WHERE users.uid = (pgfold_k.pgfold_key::uuid)")},
	{"numeric keys compare as numeric",
	 "SELECT posts.id FROM posts WHERE posts.score = 4.50", {"4.50", "3", "-0.25"}, NUMERIC,
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL("('4.50', 1), ('3', 2), ('-0.25', 3)",
				 "SELECT posts.id FROM posts WHERE posts.score = (pgfold_k.pgfold_key::numeric)")},
	{"OPERATOR(pg_catalog.=) is not the '=' token",
	 "SELECT posts.id FROM posts WHERE 5 OPERATOR(pg_catalog.=) posts.user_id", {"5", "6", "7"},
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT posts.id FROM posts WHERE (pgfold_k.pgfold_key::bigint) "
				       "OPERATOR(pg_catalog.=) posts.user_id")},
	{"number under a CAST",
	 "SELECT posts.id FROM posts WHERE posts.user_id = CAST(5 AS bigint)", {"5", "6", "7"},
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT posts.id FROM posts WHERE posts.user_id = "
				       "CAST((pgfold_k.pgfold_key::bigint) AS bigint)")},
	{"bpchar keys", "SELECT users.id FROM users WHERE users.code = 'c2'", {"c2    ", "c4"}, BPCHAR, BPCHAR,
	 .want_for = RW_BATCH_IN, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL("('c2    ', 1), ('c4', 2)",
				 "SELECT users.id FROM users WHERE users.code = (pgfold_k.pgfold_key::bpchar)")},
	{"enum column", "SELECT users.id FROM users WHERE users.mood = 'sad'", {"sad", "happy"}, TEXT, 90001,
	 .column_type_name = "\"public\".\"mood\"", .want_for = RW_BATCH_IN, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL("('sad', 1), ('happy', 2)",
				 "SELECT users.id FROM users WHERE users.mood = (pgfold_k.pgfold_key::\"public\".\"mood\")")},
	{"unknown column type without a name", "SELECT users.id FROM users WHERE users.mood = 'sad'", {"sad", "happy"},
	 TEXT, 90001, .want_for = RW_BATCH_IN, .want = RW_BATCH_NONE},
	{"$n key used twice", "SELECT posts.id, $1::int FROM posts WHERE posts.user_id = $1", {"5", "6", "7"},
	 .params = {{INT4, "5"}}, .nparams = 1, .slot = 2, .want_for = RW_BATCH_IN, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT posts.id, (pgfold_k.pgfold_key::integer)::int FROM posts WHERE "
				       "posts.user_id = (pgfold_k.pgfold_key::bigint)")},
	{"LATERAL asked for an IN child", "SELECT posts.id FROM posts WHERE posts.user_id = 5", {"5", "6", "7"},
	 .request = RW_BATCH_LATERAL, .want_for = RW_BATCH_IN, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT posts.id FROM posts WHERE posts.user_id = (pgfold_k.pgfold_key::bigint)")},
	{"a join takes LATERAL",
	 "SELECT tags.id AS tags_id FROM tags, post_tags WHERE 5 = post_tags.post_id AND tags.id = post_tags.tag_id",
	 {"5", "6", "7"}, .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT tags.id AS tags_id FROM tags, post_tags WHERE (pgfold_k.pgfold_key::bigint) "
				       "= post_tags.post_id AND tags.id = post_tags.tag_id")},

	/* ---- LATERAL -------------------------------------------------------------- */
	{"first post per user: ORDER BY + LIMIT",
	 "SELECT posts.id, posts.title FROM posts WHERE posts.user_id = 5 ORDER BY posts.created_at DESC LIMIT 1",
	 {"5", "6", "7"}, .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT posts.id, posts.title FROM posts WHERE posts.user_id = "
				       "(pgfold_k.pgfold_key::bigint) ORDER BY posts.created_at DESC LIMIT 1")},
	{"count(*) per parent", "SELECT count(*) AS count_1 FROM posts WHERE 5 = posts.user_id", {"5", "6", "7"},
	 .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT count(*) AS count_1 FROM posts WHERE (pgfold_k.pgfold_key::bigint) = "
				       "posts.user_id")},
	{"DISTINCT", "SELECT DISTINCT comments.user_id FROM comments WHERE comments.post_id = 5", {"5", "6", "7"},
	 .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT DISTINCT comments.user_id FROM comments WHERE comments.post_id = "
				       "(pgfold_k.pgfold_key::bigint)")},
	{"select 1 ... limit 1 existence check", "SELECT 1 FROM posts WHERE posts.user_id = 5 LIMIT 1", {"5", "6", "7"},
	 .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT 1 FROM posts WHERE posts.user_id = (pgfold_k.pgfold_key::bigint) LIMIT 1")},
	{"string keys, ORDER BY: quoted VALUES, cast to the column type",
	 "SELECT users.id FROM users WHERE users.name = E'o\\'brien' ORDER BY users.id", {"o'brien", "a\\b"}, TEXT, TEXT,
	 .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL("('o''brien', 1), (E'a\\\\b', 2)",
				 "SELECT users.id FROM users WHERE users.name = (pgfold_k.pgfold_key::text) ORDER BY users.id")},
	{"string under the child's cast keeps it",
	 "SELECT users.id FROM users WHERE users.uid = '" U1 "'::uuid ORDER BY 1", {U1, U2}, UUID,
	 .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL("('" U1 "', 1), ('" U2 "', 2)",
				 "SELECT users.id FROM users WHERE users.uid = (pgfold_k.pgfold_key)::uuid ORDER BY 1")},
	{"$n key with ORDER BY, LIMIT $n",
	 "SELECT posts.id FROM posts WHERE $1 = posts.user_id ORDER BY posts.id LIMIT $2", {"5", "6", "7"},
	 .params = {{INT4, "5"}, {INT8, "3"}}, .nparams = 2, .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT posts.id FROM posts WHERE (pgfold_k.pgfold_key::bigint) = posts.user_id "
				       "ORDER BY posts.id LIMIT ('3'::bigint)")},
	{"window function", "SELECT posts.id, rank() OVER (ORDER BY posts.score) FROM posts WHERE posts.user_id = 5",
	 {"5", "6", "7"}, .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT posts.id, rank() OVER (ORDER BY posts.score) FROM posts WHERE "
				       "posts.user_id = (pgfold_k.pgfold_key::bigint)")},

	/* ---- EXISTS ---------------------------------------------------------------- */
	{"select exists (sqlalchemy exists().where())",
	 "SELECT EXISTS (SELECT * FROM posts WHERE posts.user_id = 5) AS anon_1", {"5", "6", "7"},
	 .want_for = RW_BATCH_EXISTS, .want = RW_BATCH_EXISTS,
	 .want_sql = EXISTS_SQL(K567, "SELECT EXISTS (SELECT * FROM posts WHERE posts.user_id = "
				      "(pgfold_k.pgfold_key::bigint)) AS anon_1")},
	{"select exists with a $n key",
	 "SELECT EXISTS (SELECT 1 FROM posts WHERE $1 = posts.user_id AND posts.published)", {"5", "6", "7"},
	 .params = {{INT4, "5"}}, .nparams = 1, .slot = 2, .want_for = RW_BATCH_EXISTS, .want = RW_BATCH_EXISTS,
	 .want_sql = EXISTS_SQL(K567, "SELECT EXISTS (SELECT 1 FROM posts WHERE (pgfold_k.pgfold_key::bigint) = "
				      "posts.user_id AND posts.published)")},
	{"select exists, the slot found by the analysis (alias, join, inner LIMIT)",
	 "SELECT EXISTS (SELECT 1 FROM posts AS p JOIN users u ON u.id = p.user_id WHERE u.active AND "
	 "p.user_id = 5 LIMIT 1) AS e",
	 {"5", "6", "7"}, .want_for = RW_BATCH_EXISTS, .want = RW_BATCH_EXISTS,
	 .want_sql = EXISTS_SQL(K567, "SELECT EXISTS (SELECT 1 FROM posts AS p JOIN users u ON u.id = p.user_id "
				      "WHERE u.active AND p.user_id = (pgfold_k.pgfold_key::bigint) LIMIT 1) AS e")},
	{"select exists, negative key", "SELECT EXISTS (SELECT 1 FROM posts WHERE posts.user_id = -5)",
	 {"-5", "6"}, .want_for = RW_BATCH_EXISTS, .want = RW_BATCH_EXISTS,
	 .want_sql = EXISTS_SQL("('-5', 1), ('6', 2)", "SELECT EXISTS (SELECT 1 FROM posts WHERE posts.user_id = "
						      "(pgfold_k.pgfold_key::bigint))")},
	{"existence check as SELECT 1 ... LIMIT 1", "SELECT 1 AS x FROM posts WHERE posts.user_id = 5 LIMIT 1",
	 {"5", "6", "7"}, .want_for = RW_BATCH_LATERAL, .want = RW_BATCH_LATERAL,
	 .want_sql = LATERAL_SQL(K567, "SELECT 1 AS x FROM posts WHERE posts.user_id = (pgfold_k.pgfold_key::bigint) "
				       "LIMIT 1")},

	/* ---- refused ---------------------------------------------------------------- */
	{"FOR UPDATE", "SELECT posts.id FROM posts WHERE posts.user_id = 5 FOR UPDATE", {"5"}, .slot = 1},
	{"UNION", "SELECT posts.id FROM posts WHERE posts.user_id = 5 UNION SELECT 1", {"5"}, .slot = 1},
	{"CTE", "WITH p AS (SELECT * FROM posts) SELECT p.id FROM p WHERE p.user_id = 5", {"5"}, .slot = 1},
	{"temp table", "SELECT id FROM pg_temp.t WHERE t.a = 5", {"5"}, .slot = 1},
	{"write", "DELETE FROM posts WHERE posts.user_id = 5", {"5"}, .slot = 1},
	{"OR", "SELECT posts.id FROM posts WHERE posts.user_id = 5 OR posts.id = 1", {"5"}, .slot = 1},
	{"key not in an equality", "SELECT posts.id FROM posts WHERE posts.user_id > 5", {"5"}, .slot = 1},
	{"unqualified column with two tables",
	 "SELECT p.id FROM posts p JOIN users u ON u.id = p.user_id WHERE user_id = 5", {"5"}, .slot = 1},
	{"NOT EXISTS", "SELECT NOT EXISTS (SELECT 1 FROM posts WHERE posts.user_id = 5)", {"5"}, .slot = 1},
	{"exists with a FROM", "SELECT EXISTS (SELECT 1 FROM posts WHERE posts.user_id = 5) FROM users", {"5"},
	 .slot = 1},
	{"exists: the slot outside the WHERE", "SELECT EXISTS (SELECT 1 FROM posts WHERE posts.user_id = 5)", {"5"},
	 .slot = 1},
	{"exists: the key under OR", "SELECT EXISTS (SELECT 1 FROM posts WHERE posts.user_id = 5 OR posts.id = 1)",
	 {"5"}, .slot = 2},
	{"exists: unqualified column with two tables",
	 "SELECT EXISTS (SELECT 1 FROM posts p JOIN users u ON u.id = p.user_id WHERE user_id = 5)", {"5"}, .slot = 2},
	{"exists: CTE inside", "SELECT EXISTS (WITH p AS (SELECT * FROM posts) SELECT 1 FROM p WHERE p.user_id = 5)",
	 {"5"}, .slot = 2},
	{"LATERAL asked for an EXISTS child", "SELECT EXISTS (SELECT * FROM posts WHERE posts.user_id = 5) AS anon_1",
	 {"5"}, .request = RW_BATCH_LATERAL, .want_for = RW_BATCH_EXISTS},
	{"bare string, text key, column type unknown", "SELECT users.id FROM users WHERE users.name = 'x'",
	 {"x", "y"}, TEXT, .want_for = RW_BATCH_IN},
	{"number literal, key not a number", "SELECT posts.id FROM posts WHERE posts.user_id = 5", {"5", "five"},
	 .want_for = RW_BATCH_IN},
	{"$n of unknown type", "SELECT posts.id FROM posts WHERE posts.user_id = $1", {"5", "6"},
	 .params = {{0, "5"}}, .nparams = 1, .want_for = RW_BATCH_IN},
	{"$n of a type without a name here", "SELECT posts.id FROM posts WHERE posts.user_id = $1 AND posts.p = $2",
	 {"5", "6"}, .params = {{INT4, "5"}, {600, "(1,2)"}}, .nparams = 2, .want_for = RW_BATCH_IN},
	{"$n without its value", "SELECT posts.id FROM posts WHERE posts.user_id = $1 AND posts.id = $2", {"5", "6"},
	 .params = {{INT4, "5"}}, .nparams = 1, .want_for = RW_BATCH_IN},
	{"prefix-typed literal in LATERAL",
	 "SELECT users.id FROM users WHERE users.uid = uuid '" U1 "' LIMIT 1", {U1, U2}, UUID,
	 .want_for = RW_BATCH_LATERAL},
	{"EXISTS asked for a plain child", "SELECT posts.id FROM posts WHERE posts.user_id = 5", {"5"},
	 .request = RW_BATCH_EXISTS, .want_for = RW_BATCH_IN},
};

/* The first slot with a column of a known table, 0-based. */
static size_t auto_slot(const rw_shape *sh)
{
	for (size_t i = 0; i < sh->nslots; i++)
		if (sh->slots[i].rel_index >= 0)
			return i;
	return 0;
}

#define FAIL(...) (print_error(__VA_ARGS__), print_error("\n"), ok = false)

/* One case; false (after printing why) when it fails. */
static bool run_case(rw_analyzer *az, const batch_case *c)
{
	bool ok = true;
	rw_analysis *an = rw_analyze(az, c->sql, strlen(c->sql));
	if (an->nstmts != 1) {
		print_error("%s: %zu statements\n", c->name, an->nstmts);
		rw_analysis_free(an);
		return false;
	}
	const rw_stmt *st = &an->stmts[0];
	size_t nkeys = 0, lens[MAXK];
	while (nkeys < MAXK && c->keys[nkeys]) {
		lens[nkeys] = strlen(c->keys[nkeys]);
		nkeys++;
	}
	const char *pvals[MAXP];
	size_t plens[MAXP];
	uint32_t ptypes[MAXP];
	for (size_t i = 0; i < c->nparams; i++) {
		pvals[i] = c->params[i].value;
		plens[i] = pvals[i] ? strlen(pvals[i]) : 0;
		ptypes[i] = c->params[i].type;
	}
	rw_batch_request req = {
		.sql = c->sql, .sql_len = strlen(c->sql), .stmt = st,
		.slot = c->slot ? (size_t)c->slot - 1 : auto_slot(st->shape), .form = c->request,
		.key_type = c->key_type ? c->key_type : INT4, .column_type = c->column_type,
		.column_type_name = c->column_type_name, .nkeys = nkeys, .keys = c->keys, .key_lengths = lens,
		.nparams = c->nparams, .param_values = pvals, .param_lengths = plens, .param_types = ptypes,
	};
	rw_batch_form ff = rw_batch_form_for(st->shape, req.slot);
	if (ff != c->want_for)
		FAIL("%s: rw_batch_form_for %s, want %s", c->name, rw_batch_form_name(ff),
			 rw_batch_form_name(c->want_for));
	pf_sb out;
	pf_sb_init(&out);
	pf_sb_append(&out, "prefix;");
	rw_batch_layout lay = {.form = RW_BATCH_NONE, .extra_columns = 99};
	int rc = rw_batch_build(&req, &out, &lay);
	if (c->want == RW_BATCH_NONE) {
		if (rc != -1 || strcmp(pf_sb_str(&out), "prefix;") != 0 || lay.extra_columns != 99)
			FAIL("%s: built, want refused:\n%s", c->name, pf_sb_str(&out));
	} else {
		size_t distinct = 0;
		for (size_t i = 0; i < nkeys; i++) {
			bool dup = false;
			for (size_t j = 0; j < i; j++)
				dup = dup || strcmp(c->keys[i], c->keys[j]) == 0;
			distinct += !dup;
		}
		if (rc != 0)
			FAIL("%s: refused", c->name);
		if (strcmp(pf_sb_str(&out) + 7, c->want_sql) != 0 || strncmp(pf_sb_str(&out), "prefix;", 7) != 0)
			FAIL("%s:\n got: %s\nwant: %s", c->name, pf_sb_str(&out) + 7, c->want_sql);
		if (lay.form != c->want || lay.extra_columns != (c->want == RW_BATCH_LATERAL ? 2u : 1u) ||
		    lay.grouped != (c->want != RW_BATCH_IN) || lay.nkeys != distinct)
			FAIL("%s: layout form %s extra %zu grouped %d nkeys %zu", c->name, rw_batch_form_name(lay.form),
				 lay.extra_columns, lay.grouped, lay.nkeys);
	}
	pf_sb_free(&out);
	rw_analysis_free(an);
	return ok;
}

static void test_cases(void **state)
{
	(void)state;
	rw_analyzer *az = rw_analyzer_new(64, 1 << 20);
	size_t failed = 0;
	for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
		failed += !run_case(az, &CASES[i]);
	rw_analyzer_free(az);
	if (failed)
		fail_msg("%zu of %zu cases failed", failed, sizeof CASES / sizeof CASES[0]);
}

/* The statement is the second of a query string: locations are taken from
 * stmt->location, the ';' and the first statement are not copied. */
static void test_statement_inside_a_longer_text(void **state)
{
	(void)state;
	const char *sql = "SELECT 1; SELECT posts.id FROM posts WHERE posts.user_id = 5;";
	rw_analyzer *az = rw_analyzer_new(8, 1 << 20);
	rw_analysis *an = rw_analyze(az, sql, strlen(sql));
	assert_int_equal(an->nstmts, 2);
	const char *keys[] = {"5", "6"};
	size_t lens[] = {1, 1};
	rw_batch_request req = {.sql = sql, .sql_len = strlen(sql), .stmt = &an->stmts[1], .slot = 0,
				.key_type = INT4, .nkeys = 2, .keys = keys, .key_lengths = lens};
	pf_sb out;
	pf_sb_init(&out);
	rw_batch_layout lay;
	assert_int_equal(rw_batch_build(&req, &out, &lay), 0);
	assert_string_equal(pf_sb_str(&out), "SELECT posts.user_id::bigint AS pgfold_key, posts.id FROM posts WHERE "
					     "posts.user_id IN (5, 6)");
	/* a statement range that leaves the text */
	rw_stmt bad = an->stmts[1];
	bad.length += 5;
	req.stmt = &bad;
	pf_sb_reset(&out);
	assert_int_equal(rw_batch_build(&req, &out, &lay), -1);
	assert_int_equal(out.len, 0);
	/* no keys, a slot out of range */
	req.stmt = &an->stmts[1];
	req.nkeys = 0;
	assert_int_equal(rw_batch_build(&req, &out, &lay), -1);
	req.nkeys = 2;
	req.slot = 7;
	assert_int_equal(rw_batch_build(&req, &out, &lay), -1);
	assert_int_equal(rw_batch_form_for(an->stmts[1].shape, 7), RW_BATCH_NONE);
	assert_int_equal(rw_batch_form_for(an->stmts[0].shape, 0), RW_BATCH_NONE);
	pf_sb_free(&out);
	rw_analysis_free(an);
	rw_analyzer_free(az);
}

static void test_unparsed_and_null(void **state)
{
	(void)state;
	rw_analyzer *az = rw_analyzer_new(8, 1 << 20);
	rw_analysis *an = rw_analyze(az, "SELEC 5", 7);
	assert_int_equal(rw_batch_form_for(an->stmts[0].shape, 0), RW_BATCH_NONE);
	assert_int_equal(rw_batch_form_for(NULL, 0), RW_BATCH_NONE);
	pf_sb out;
	pf_sb_init(&out);
	rw_batch_layout lay;
	assert_int_equal(rw_batch_build(NULL, &out, &lay), -1);
	rw_analysis_free(an);
	rw_analyzer_free(az);
}

/* 500 keys (nplusone.batch_size's default): every one in the list. */
static void test_many_keys(void **state)
{
	(void)state;
	const char *sql = "SELECT posts.id FROM posts WHERE posts.user_id = 1";
	rw_analyzer *az = rw_analyzer_new(8, 1 << 20);
	rw_analysis *an = rw_analyze(az, sql, strlen(sql));
	enum { N = 500 };
	char bufs[N][8];
	const char *keys[N];
	size_t lens[N];
	pf_sb want;
	pf_sb_init(&want);
	pf_sb_append(&want, "SELECT posts.user_id::bigint AS pgfold_key, posts.id FROM posts WHERE posts.user_id IN (");
	for (int i = 0; i < N; i++) {
		snprintf(bufs[i], sizeof bufs[i], "%d", i + 1);
		keys[i] = bufs[i];
		lens[i] = strlen(bufs[i]);
		pf_sb_appendf(&want, "%s%d", i ? ", " : "", i + 1);
	}
	pf_sb_append(&want, ")");
	rw_batch_request req = {.sql = sql, .sql_len = strlen(sql), .stmt = &an->stmts[0], .slot = 0,
				.key_type = INT4, .nkeys = N, .keys = keys, .key_lengths = lens};
	pf_sb out;
	pf_sb_init(&out);
	rw_batch_layout lay;
	assert_int_equal(rw_batch_build(&req, &out, &lay), 0);
	assert_string_equal(pf_sb_str(&out), pf_sb_str(&want));
	assert_int_equal(lay.nkeys, N);
	pf_sb_free(&out);
	pf_sb_free(&want);
	rw_analysis_free(an);
	rw_analyzer_free(az);
}

static void test_type_names_and_literals(void **state)
{
	(void)state;
	static const struct {
		uint32_t oid;
		const char *key_name; /* rw_batch_type_name */
		const char *value;
		const char *literal; /* rw_batch_literal, NULL: refused */
	} cases[] = {
		{INT2, "smallint", "-7", "'-7'::smallint"},
		{INT4, "integer", "5", "'5'::integer"},
		{INT8, "bigint", "9223372036854775807", "'9223372036854775807'::bigint"},
		{TEXT, "text", "it's", "'it''s'::text"},
		{1043, "varchar", "a\\b", "E'a\\\\b'::varchar"},
		{BPCHAR, "bpchar", "ab  ", "'ab  '::bpchar"},
		{UUID, "uuid", U1, "'" U1 "'::uuid"},
		{26, "oid", "16384", "'16384'::oid"},
		{NUMERIC, "numeric", "1.50", "'1.50'::numeric"},
		{BOOL, NULL, "t", "'t'::boolean"},
		{701, NULL, "1e300", "'1e300'::double precision"},
		{1184, NULL, "2024-01-01 00:00:00+00", "'2024-01-01 00:00:00+00'::timestamptz"},
		{1007, NULL, "{1,2}", "'{1,2}'::integer[]"},
		{3802, NULL, "{\"a\": \"'\"}", "'{\"a\": \"''\"}'::jsonb"},
		{600, NULL, "(1,2)", NULL},
		{0, NULL, "x", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *name = rw_batch_type_name(cases[i].oid);
		if ((name == NULL) != (cases[i].key_name == NULL) || (name && strcmp(name, cases[i].key_name) != 0))
			fail_msg("type %u: name %s, want %s", cases[i].oid, name ? name : "NULL",
				 cases[i].key_name ? cases[i].key_name : "NULL");
		pf_sb out;
		pf_sb_init(&out);
		int rc = rw_batch_literal(&out, cases[i].value, strlen(cases[i].value), cases[i].oid);
		if (cases[i].literal ? rc != 0 || strcmp(pf_sb_str(&out), cases[i].literal) != 0 : rc != -1 || out.len)
			fail_msg("type %u: literal %s (%d), want %s", cases[i].oid, pf_sb_str(&out), rc,
				 cases[i].literal ? cases[i].literal : "refused");
		pf_sb_free(&out);
	}
	assert_string_equal(rw_batch_form_name(RW_BATCH_NONE), "none");
	assert_string_equal(rw_batch_form_name(RW_BATCH_IN), "in");
	assert_string_equal(rw_batch_form_name(RW_BATCH_LATERAL), "lateral");
	assert_string_equal(rw_batch_form_name(RW_BATCH_EXISTS), "exists");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_statement_inside_a_longer_text),
		cmocka_unit_test(test_unparsed_and_null),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_type_names_and_literals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
