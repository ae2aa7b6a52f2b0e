/*
 * test_fastscan.c — unit tests for rewrite/fastscan.h, the fast path's lexer.
 *
 *   lexing        table-driven: slots (class and text), statement range,
 *                 comments, quoted identifiers with "", keyword case, $n,
 *                 ICONST/FCONST boundaries, '' inside strings, trailing ';'
 *   bail-outs     every form it must refuse, each with its reason
 *   keys          pairs that must share a key (case, white space, comments,
 *                 literal values of one class) and near-identical pairs that
 *                 must not (1 / '1', "A" / a / A, + + / ++, : : / ::, ...)
 *   differential  against libpg_query's scanner (pg_query_scan), on the
 *                 corpus and on random texts built from tricky fragments:
 *                 whenever fastscan handles a text, PostgreSQL's scanner
 *                 accepts it, its literal and $n tokens are exactly
 *                 fastscan's slots, and the statement range is the same; and
 *                 two texts with equal keys have the same token stream up to
 *                 literal values and the case of unquoted names
 *
 * Inputs are copied into exact-size heap buffers (no NUL) so that ASan
 * catches any read past len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "../../common/strbuf.h"
#include "../../rewrite/fastscan.h"

#define CORPUS_DEFAULT "tests/corpus/analysis.txt"

#define CHECK(cond, ...)                                                                                       \
	do {                                                                                                   \
		if (!(cond)) {                                                                                 \
			print_error(__VA_ARGS__);                                                              \
			print_error(": check failed: %s\n", #cond);                                            \
			fail();                                                                                \
		}                                                                                              \
	} while (0)

/* Like CHECK, but counts the failure and goes on. */
static int soft_failures;
#define SOFT_CHECK(cond, ...)                                                                                  \
	do {                                                                                                   \
		if (!(cond)) {                                                                                 \
			print_error(__VA_ARGS__);                                                              \
			print_error(": check failed: %s\n", #cond);                                            \
			soft_failures++;                                                                       \
		}                                                                                              \
	} while (0)

/* Fastscan from an exact-size heap copy (not NUL-terminated). */
static rw_fs_status scan_n(rw_fastscan *fs, const char *s, size_t n)
{
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	rw_fs_status st = rw_fastscan_run(fs, copy, n);
	free(copy);
	return st;
}

static rw_fs_status scan(rw_fastscan *fs, const char *s)
{
	return scan_n(fs, s, strlen(s));
}

static char class_letter(rw_fs_class c)
{
	switch (c) {
	case RW_FS_ICONST:
		return 'I';
	case RW_FS_FCONST:
		return 'F';
	case RW_FS_SCONST:
		return 'S';
	case RW_FS_PARAM:
		return 'P';
	}
	return '?';
}

/* "I:1|S:'a'|P:$1": each slot's class and text. */
static void slots_text(pf_sb *out, const rw_fastscan *fs, const char *sql)
{
	pf_sb_reset(out);
	for (size_t i = 0; i < fs->nslots; i++) {
		const rw_fs_slot *s = &fs->slots[i];
		pf_sb_appendf(out, "%s%c:%.*s", i ? "|" : "", class_letter(s->cls), s->length, sql + s->location);
	}
}

/* ---- lexing -------------------------------------------------------------- */

typedef struct lex_case {
	const char *sql;
	const char *slots; /* as slots_text() prints them */
	const char *stmt;  /* the statement range's text; NULL: the whole text */
} lex_case;

static const lex_case lex_cases[] = {
	{"SELECT 1", "I:1", NULL},
	{"SELECT abalance FROM pgbench_accounts WHERE aid = 1234;", "I:1234",
	 "SELECT abalance FROM pgbench_accounts WHERE aid = 1234"},
	{"SELECT 2147483647, 2147483648, 00002147483647, 02147483648, 0, 4294967296",
	 "I:2147483647|F:2147483648|I:00002147483647|F:02147483648|I:0|F:4294967296", NULL},
	{"SELECT 1.5, .5, 1., 1e5, 1E+5, 1.5e-3, 2.e7, 99999999999999999999",
	 "F:1.5|F:.5|F:1.|F:1e5|F:1E+5|F:1.5e-3|F:2.e7|F:99999999999999999999", NULL},
	{"SELECT 'it''s', '', 'a''''b', ''''", "S:'it''s'|S:''|S:'a''''b'|S:''''", NULL},
	{"SELECT 'caf\xc3\xa9 \xe2\x82\xac', 'tab\there'", "S:'caf\xc3\xa9 \xe2\x82\xac'|S:'tab\there'", NULL},
	{"SELECT \"a\"\"b\", \"My Table\".\"x\", \"\xc3\xa9\" FROM \"\"\"\"", "", NULL},
	{"SELECT $1, $10, $2::text FROM t WHERE a = $1", "P:$1|P:$10|P:$2|P:$1", NULL},
	{"select * from T where A = 1 -- trailing\n;", "I:1", "select * from T where A = 1 -- trailing"},
	{"/* lead */ SELECT 1 /* tail */ ; -- after", "I:1", "/* lead */ SELECT 1 /* tail */"},
	{"-- first line\nSELECT 1", "I:1", NULL},
	{"SELECT 1;;  ; /* x */ ;", "I:1", "SELECT 1"},
	{"  \t\r\n\fSELECT 7  \n", "I:7", "SELECT 7"},
	{"SELECT /* a /* nested */ b */ 1 /**/ /***/ /* **/", "I:1", NULL},
	{"SELECT x::int, a[1:2], b[3 : 4], c := 5, d => 6", "I:1|I:2|I:3|I:4|I:5|I:6", NULL},
	{"SELECT 1 ++ 2, 3 + + 4, a = +5, 6 * 7", "I:1|I:2|I:3|I:4|I:5|I:6|I:7", NULL},
	{"SELECT a - $1, -$2, b - (3)", "P:$1|P:$2|I:3", NULL},
	{"SELECT 'a'\n, 'b'", "S:'a'|S:'b'", NULL},
	{"SELECT e 'x', xe'y', date'2020-01-01', u & 'z'", "S:'x'|S:'y'|S:'2020-01-01'|S:'z'", NULL},
	{"SELECT a$b, _x1, t.\"c\" FROM s.t", "", NULL},
	{"SELECT 1 /* x */--y\n", "I:1", "SELECT 1 /* x */--y"},
	{"SELECT a+-/*c*/b", "", NULL},
	{"SELECT $1.x", "P:$1", NULL},
	{"SELECT t.5", "F:.5", NULL},
	{"SELECT 1 -- no newline", "I:1", NULL},
	{"SELECT 1 -- cr\rFROM t", "I:1", NULL},
	{"UPDATE \"app_user\" SET \"last_login\" = '2024-01-02T03:04:05.000000+00:00'::timestamptz WHERE "
	 "\"app_user\".\"id\" = 1",
	 "S:'2024-01-02T03:04:05.000000+00:00'|I:1", NULL},
};

static void test_lexing(void **state)
{
	(void)state;
	rw_fastscan fs = {0};
	pf_sb got;
	pf_sb_init(&got);
	for (size_t i = 0; i < sizeof lex_cases / sizeof *lex_cases; i++) {
		const lex_case *c = &lex_cases[i];
		rw_fs_status st = scan(&fs, c->sql);
		CHECK(st == RW_FS_OK, "%s: status %s", c->sql, rw_fs_status_name(st));
		slots_text(&got, &fs, c->sql);
		CHECK(strcmp(pf_sb_str(&got), c->slots) == 0, "%s: slots \"%s\", want \"%s\"", c->sql, pf_sb_str(&got),
		      c->slots);
		const char *want = c->stmt ? c->stmt : c->sql;
		size_t off = c->stmt ? (size_t)(strstr(c->sql, c->stmt) - c->sql) : 0;
		CHECK(fs.stmt_location == (int)off && fs.stmt_length == (int)strlen(want),
		      "%s: statement \"%.*s\", want \"%s\"", c->sql, fs.stmt_length, c->sql + fs.stmt_location, want);
	}
	pf_sb_free(&got);
	rw_fastscan_free(&fs);
}

/* ---- bail-outs ----------------------------------------------------------- */

typedef struct bail_case {
	const char *sql;
	rw_fs_status want;
} bail_case;

static const bail_case bail_cases[] = {
	{"", RW_FS_EMPTY},
	{" \n\t", RW_FS_EMPTY},
	{"-- only a comment", RW_FS_EMPTY},
	{"/* c */ /* d */", RW_FS_EMPTY},
	{";", RW_FS_MULTI},
	{"; SELECT 1", RW_FS_MULTI},
	{"/* c */ ; SELECT 1", RW_FS_MULTI},
	{"SELECT 1; SELECT 2", RW_FS_MULTI},
	{"BEGIN; SELECT 1", RW_FS_MULTI},
	{"SELECT 1; -- c\n x", RW_FS_MULTI},
	{"SELECT E'x'", RW_FS_PREFIXED_STRING},
	{"SELECT e'x'", RW_FS_PREFIXED_STRING},
	{"SELECT B'101'", RW_FS_PREFIXED_STRING},
	{"SELECT b'1'", RW_FS_PREFIXED_STRING},
	{"SELECT X'1F'", RW_FS_PREFIXED_STRING},
	{"SELECT x'1f'", RW_FS_PREFIXED_STRING},
	{"SELECT N'x'", RW_FS_PREFIXED_STRING},
	{"SELECT n'x'", RW_FS_PREFIXED_STRING},
	{"SELECT U&'x'", RW_FS_UNICODE},
	{"SELECT u&'x'", RW_FS_UNICODE},
	{"SELECT U&\"x\" FROM t", RW_FS_UNICODE},
	{"SELECT 'x' UESCAPE '!'", RW_FS_UNICODE},
	{"SELECT 'x' uescape '!'", RW_FS_UNICODE},
	{"SELECT $$x$$", RW_FS_DOLLAR},
	{"SELECT $q$x$q$", RW_FS_DOLLAR},
	{"SELECT $", RW_FS_DOLLAR},
	{"DO $$BEGIN END$$", RW_FS_DOLLAR},
	{"SELECT 'a'\n'b'", RW_FS_CONTINUATION},
	{"SELECT 'a'  \r\n  'b'", RW_FS_CONTINUATION},
	{"SELECT 'a' 'b'", RW_FS_CONTINUATION},
	{"SELECT 'a' -- c\n'b'", RW_FS_CONTINUATION},
	{"SELECT 'a'/* c */'b'", RW_FS_CONTINUATION},
	{"SELECT 'a''b''c'\n'd'", RW_FS_CONTINUATION},
	{"SELECT 'a\\b'", RW_FS_BACKSLASH},
	{"SELECT 'a\\'", RW_FS_BACKSLASH},
	{"SELECT 'a''\\'''", RW_FS_BACKSLASH},
	{"SELECT \xc3\xa9", RW_FS_NON_ASCII},
	{"SELECT a\xc3\xa9", RW_FS_NON_ASCII},
	{"SELECT 1 \xe2\x80\x8b", RW_FS_NON_ASCII},
	{"SELECT 'abc", RW_FS_UNTERMINATED},
	{"SELECT 'abc''", RW_FS_UNTERMINATED},
	{"SELECT \"abc", RW_FS_UNTERMINATED},
	{"SELECT \"a\"\"", RW_FS_UNTERMINATED},
	{"SELECT 1 /* x", RW_FS_UNTERMINATED},
	{"SELECT 1 /* /* */", RW_FS_UNTERMINATED},
	{"SELECT 1 /*/", RW_FS_UNTERMINATED},
	{"SELECT \"\"", RW_FS_EMPTY_IDENT},
	{"SELECT -1", RW_FS_NEGATIVE},
	{"SELECT - 1", RW_FS_NEGATIVE},
	{"SELECT x-1", RW_FS_NEGATIVE},
	{"SELECT 1 +-2", RW_FS_NEGATIVE},
	{"SELECT -/*c*/1", RW_FS_NEGATIVE},
	{"SELECT - -- c\n 1", RW_FS_NEGATIVE},
	{"SELECT a @- 5", RW_FS_NEGATIVE},
	{"SELECT -.5", RW_FS_NEGATIVE},
	{"UPDATE t SET b = b + -4321 WHERE id = 1", RW_FS_NEGATIVE},
	{"SELECT 1e", RW_FS_JUNK},
	{"SELECT 1e+", RW_FS_JUNK},
	{"SELECT 1.5E-x", RW_FS_JUNK},
	{"SELECT 1..2", RW_FS_JUNK},
	{"SELECT 12abc", RW_FS_JUNK},
	{"SELECT 1.5x", RW_FS_JUNK},
	{"SELECT 1.5.3", RW_FS_JUNK},
	{"SELECT .5.", RW_FS_JUNK},
	{"SELECT 0x1F", RW_FS_JUNK},
	{"SELECT 1_000", RW_FS_JUNK},
	{"SELECT 1$", RW_FS_JUNK},
	{"SELECT 1\xc3\xa9", RW_FS_JUNK},
	{"SELECT $1a", RW_FS_JUNK},
	{"SELECT $1$", RW_FS_JUNK},
	{"SELECT 1 @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ 2", RW_FS_JUNK},
	{"SELECT :v", RW_FS_PSQL_VAR},
	{"SELECT :'v'", RW_FS_PSQL_VAR},
	{"SELECT :\"v\"", RW_FS_PSQL_VAR},
	{"SELECT a[1:n]", RW_FS_PSQL_VAR},
	{"SELECT \\", RW_FS_CHAR},
	{"SELECT {", RW_FS_CHAR},
	{"SELECT }", RW_FS_CHAR},
	{"SELECT 1 \v", RW_FS_CHAR},
	{"SELECT \x01", RW_FS_CHAR},
	{"SELECT \x7f", RW_FS_CHAR},
};

static void test_bail_outs(void **state)
{
	(void)state;
	rw_fastscan fs = {0};
	for (size_t i = 0; i < sizeof bail_cases / sizeof *bail_cases; i++) {
		const bail_case *c = &bail_cases[i];
		rw_fs_status st = scan(&fs, c->sql);
		CHECK(st == c->want, "\"%s\": %s, want %s", c->sql, rw_fs_status_name(st), rw_fs_status_name(c->want));
	}
	/* NUL bytes anywhere, given by length */
	static const char nul[][24] = {"SELECT 1\0", "SELECT '\0'", "SELECT \"\0\"", "SELECT 1 -- \0\n",
				       "SELECT 1 /* \0 */"};
	static const size_t nul_len[] = {9, 10, 10, 14, 16};
	for (size_t i = 0; i < sizeof nul_len / sizeof *nul_len; i++) {
		rw_fs_status st = scan_n(&fs, nul[i], nul_len[i]);
		CHECK(st == RW_FS_CHAR, "NUL case %zu: %s", i, rw_fs_status_name(st));
	}
	/* too long */
	size_t n = RW_FS_MAX_LEN + 1;
	char *big = malloc(n);
	assert_non_null(big);
	memset(big, ' ', n);
	memcpy(big, "SELECT 1", 8);
	CHECK(scan_n(&fs, big, n) == RW_FS_TOO_LONG, "too long");
	CHECK(scan_n(&fs, big, n - 1) == RW_FS_OK, "just short enough");
	free(big);
	CHECK(strcmp(rw_fs_status_name(RW_FS_TOO_LONG), "too long") == 0, "names");
	CHECK(strcmp(rw_fs_status_name((rw_fs_status)99), "?") == 0, "out of range");
	rw_fastscan_free(&fs);
}

/* ---- keys ---------------------------------------------------------------- */

typedef struct key_case {
	const char *a, *b;
	bool same;
} key_case;

static const key_case key_cases[] = {
	{"SELECT * FROM a WHERE x = 1", "select * from A where X = 99999", true},
	{"SELECT * FROM a WHERE x = 1", "SELECT\n*\tFROM a/* c */WHERE x=1 -- d", true},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = 1;", true},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = 00001", true},
	{"SELECT 'a'", "SELECT 'a b '' c'", true},
	{"SELECT ''", "SELECT 'x'", true},
	{"SELECT 1.5", "SELECT 2e10", true},
	{"SELECT 1.5", "SELECT 2147483648", true},
	{"SELECT a+b", "SELECT a + b", true},
	{"SELECT \"Ab\"", "SELECT \"Ab\"", true},
	{"SELECT $1", "SELECT $1", true},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = '1'", false},
	{"SELECT * FROM a WHERE x = 1", "SELECT * FROM a WHERE x = 1.0", false},
	{"SELECT 2147483647", "SELECT 2147483648", false},
	{"SELECT * FROM \"A\"", "SELECT * FROM a", false},
	{"SELECT * FROM \"A\"", "SELECT * FROM A", false},
	{"SELECT * FROM \"a\"", "SELECT * FROM a", false},
	{"SELECT * FROM \"a\"", "SELECT * FROM \"A\"", false},
	{"SELECT a ++ b", "SELECT a + + b", false},
	{"SELECT a <> b", "SELECT a != b", false},
	{"SELECT a[1::2]", "SELECT a[1: :2]", false},
	{"SELECT a..b", "SELECT a. .b", false},
	{"SELECT a := b", "SELECT a : = b", false},
	{"SELECT $1", "SELECT $2", false},
	{"SELECT $1", "SELECT $01", false},
	{"SELECT \"a\"\"b\"", "SELECT \"a\" \"b\"", false},
	{"SELECT \"ab\"", "SELECT \"a\"\"b\"", false},
	{"SELECT ab", "SELECT a b", false},
	{"SELECT x IN (1, 2)", "SELECT x IN (1, 2, 3)", false},
	{"SELECT a.b", "SELECT a . b x", false},
	{"SELECT t.1", "SELECT t .1", true}, /* both IDENT then FCONST .1 */
	{"SELECT 1", "SELECT $1", false},
	{"SELECT 'x'", "SELECT \"x\"", false},
	{"SELECT a", "SELECT \"a\x01\"", false},
	{"DELETE FROM a WHERE x = 1", "SELECT * FROM a WHERE x = 1", false},
};

static bool same_key(const rw_fastscan *x, const rw_fastscan *y)
{
	return x->keylen == y->keylen && memcmp(x->key, y->key, x->keylen) == 0;
}

static void test_keys(void **state)
{
	(void)state;
	rw_fastscan x = {0}, y = {0};
	for (size_t i = 0; i < sizeof key_cases / sizeof *key_cases; i++) {
		const key_case *c = &key_cases[i];
		CHECK(scan(&x, c->a) == RW_FS_OK && scan(&y, c->b) == RW_FS_OK, "%s / %s: handled", c->a, c->b);
		CHECK(same_key(&x, &y) == c->same, "%s / %s: keys %s", c->a, c->b, c->same ? "differ" : "equal");
	}
	rw_fastscan_free(&x);
	rw_fastscan_free(&y);
}

/* ---- differential: against pg_query_scan ----------------------------------- */

typedef struct pg_scan {
	PgQueryScanResult raw;
	PgQuery__ScanResult *sr;
} pg_scan;

static bool pg_scan_text(pg_scan *p, const char *sql)
{
	p->raw = pg_query_scan(sql);
	p->sr = NULL;
	if (p->raw.error)
		return false;
	p->sr = pg_query__scan_result__unpack(NULL, p->raw.pbuf.len, (const uint8_t *)p->raw.pbuf.data);
	assert_non_null(p->sr);
	return true;
}

static void pg_scan_free(pg_scan *p)
{
	if (p->sr)
		pg_query__scan_result__free_unpacked(p->sr, NULL);
	pg_query_free_scan_result(p->raw);
}

static bool is_comment(int t)
{
	return t == PG_QUERY__TOKEN__SQL_COMMENT || t == PG_QUERY__TOKEN__C_COMMENT;
}

static bool is_literal(int t)
{
	return t == PG_QUERY__TOKEN__ICONST || t == PG_QUERY__TOKEN__FCONST || t == PG_QUERY__TOKEN__SCONST ||
	       t == PG_QUERY__TOKEN__BCONST || t == PG_QUERY__TOKEN__XCONST || t == PG_QUERY__TOKEN__USCONST;
}

static int pg_class(rw_fs_class c)
{
	switch (c) {
	case RW_FS_ICONST:
		return PG_QUERY__TOKEN__ICONST;
	case RW_FS_FCONST:
		return PG_QUERY__TOKEN__FCONST;
	case RW_FS_SCONST:
		return PG_QUERY__TOKEN__SCONST;
	case RW_FS_PARAM:
		return PG_QUERY__TOKEN__PARAM;
	}
	return -1;
}

/* The number of tokens of the statement: up to the first ';' (only ';' and
 * comments may follow it).  *bad set when something else follows. */
static size_t statement_tokens(const PgQuery__ScanResult *sr, bool *bad)
{
	size_t n = sr->n_tokens;
	for (size_t i = 0; i < sr->n_tokens; i++) {
		if (sr->tokens[i]->token == PG_QUERY__TOKEN__ASCII_59) {
			n = i;
			break;
		}
	}
	*bad = false;
	for (size_t i = n; i < sr->n_tokens; i++) {
		int t = sr->tokens[i]->token;
		if (t != PG_QUERY__TOKEN__ASCII_59 && !is_comment(t))
			*bad = true;
	}
	return n;
}

/* fastscan handled sql (its result in fs): does PostgreSQL's scanner agree? */
static bool agrees_with_pg(const char *what, const char *sql, const rw_fastscan *fs)
{
	pg_scan p;
	bool ok = pg_scan_text(&p, sql);
	SOFT_CHECK(ok, "%s: fastscan handled \"%s\", PostgreSQL's scanner: %s", what, sql,
		   p.raw.error ? p.raw.error->message : "?");
	if (!ok) {
		pg_scan_free(&p);
		return false;
	}
	int before = soft_failures;
	bool bad;
	size_t n = statement_tokens(p.sr, &bad), k = 0;
	SOFT_CHECK(!bad && n > 0, "%s: \"%s\": one statement", what, sql);
	for (size_t i = 0; i < n; i++) {
		const PgQuery__ScanToken *t = p.sr->tokens[i];
		if (!is_literal(t->token) && t->token != PG_QUERY__TOKEN__PARAM)
			continue;
		SOFT_CHECK(k < fs->nslots, "%s: \"%s\": token %d-%d is not a slot", what, sql, t->start, t->end);
		if (k >= fs->nslots)
			break;
		const rw_fs_slot *s = &fs->slots[k++];
		SOFT_CHECK(s->location == t->start && s->length == t->end - t->start && pg_class(s->cls) == (int)t->token,
			   "%s: \"%s\": slot %zu %c %d+%d, PostgreSQL %d-%d type %d", what, sql, k - 1,
			   class_letter(s->cls), s->location, s->length, t->start, t->end, t->token);
	}
	SOFT_CHECK(k == fs->nslots, "%s: \"%s\": %zu slots, PostgreSQL %zu", what, sql, fs->nslots, k);
	if (n > 0) {
		int start = p.sr->tokens[0]->start, end = p.sr->tokens[n - 1]->end;
		SOFT_CHECK(fs->stmt_location == start && fs->stmt_length == end - start,
			   "%s: \"%s\": statement %d+%d, PostgreSQL %d-%d", what, sql, fs->stmt_location,
			   fs->stmt_length, start, end);
	}
	pg_scan_free(&p);
	return soft_failures == before;
}

/* Same token stream up to literal values and the case of unquoted names? */
static bool same_stream(const char *a, const char *b)
{
	pg_scan pa = {0}, pb = {0};
	bool ok = pg_scan_text(&pa, a) && pg_scan_text(&pb, b);
	size_t i = 0, j = 0, na = 0, nb = 0;
	if (ok) {
		bool bad;
		na = statement_tokens(pa.sr, &bad);
		nb = statement_tokens(pb.sr, &bad);
	}
	while (ok) {
		while (i < na && is_comment(pa.sr->tokens[i]->token))
			i++;
		while (j < nb && is_comment(pb.sr->tokens[j]->token))
			j++;
		if (i == na || j == nb) {
			ok = i == na && j == nb;
			break;
		}
		const PgQuery__ScanToken *x = pa.sr->tokens[i++], *y = pb.sr->tokens[j++];
		if (x->token != y->token) {
			ok = false;
			break;
		}
		if (is_literal(x->token))
			continue;
		size_t lx = (size_t)(x->end - x->start), ly = (size_t)(y->end - y->start);
		const char *tx = a + x->start, *ty = b + y->start;
		bool folded = (x->keyword_kind != 0 || x->token == PG_QUERY__TOKEN__IDENT) && tx[0] != '"';
		ok = lx == ly && (folded ? strncasecmp(tx, ty, lx) : memcmp(tx, ty, lx)) == 0;
	}
	pg_scan_free(&pa);
	pg_scan_free(&pb);
	return ok;
}

/* ---- the corpus ---------------------------------------------------------- */

static void test_corpus_against_pg(void **state)
{
	(void)state;
	soft_failures = 0;
	const char *path = getenv("PGFOLD_CORPUS") ? getenv("PGFOLD_CORPUS") : CORPUS_DEFAULT;
	FILE *f = fopen(path, "r");
	CHECK(f != NULL, "cannot open %s (run from the repository root or set PGFOLD_CORPUS)", path);
	rw_fastscan fs = {0};
	pf_sb sql;
	pf_sb_init(&sql);
	char line[8192];
	size_t cases = 0, handled = 0;
	bool in_case = false;
	for (;;) {
		bool eof = !fgets(line, sizeof line, f);
		if (!eof)
			line[strcspn(line, "\r\n")] = '\0';
		if (eof || strncmp(line, "== ", 3) == 0) {
			if (in_case) {
				const char *text = pf_sb_str(&sql);
				cases++;
				if (scan(&fs, text) == RW_FS_OK) {
					handled++;
					agrees_with_pg("corpus", text, &fs);
				}
			}
			if (eof)
				break;
			in_case = true;
			pf_sb_reset(&sql);
			pf_sb_append(&sql, "");
			continue;
		}
		if (strcmp(line, "sql") == 0 || strncmp(line, "sql ", 4) == 0) {
			if (pf_sb_str(&sql)[0])
				pf_sb_append(&sql, "\n");
			pf_sb_append(&sql, line[3] ? line + 4 : "");
		}
	}
	fclose(f);
	print_message("corpus: %zu cases, %zu handled by fastscan, %d disagreements\n", cases, handled, soft_failures);
	CHECK(handled > cases / 2, "most of the corpus is handled");
	pf_sb_free(&sql);
	rw_fastscan_free(&fs);
	CHECK(soft_failures == 0, "corpus agrees with pg_query_scan");
}

/* ---- random texts from tricky fragments ------------------------------------ */

typedef enum frag_kind { FR_OTHER, FR_NAME, FR_ICONST, FR_FCONST, FR_SCONST } frag_kind;

typedef struct frag {
	const char *text;
	frag_kind kind;
} frag;

static const frag frags[] = {
	{"SELECT", FR_NAME}, {"select", FR_NAME}, {"FROM", FR_NAME}, {"where", FR_NAME}, {"not", FR_NAME},
	{"between", FR_NAME}, {"nulls", FR_NAME}, {"first", FR_NAME}, {"with", FR_NAME}, {"time", FR_NAME},
	{"in", FR_NAME}, {"AND", FR_NAME}, {"a", FR_NAME}, {"b", FR_NAME}, {"t1", FR_NAME}, {"a$b", FR_NAME},
	{"_x", FR_NAME}, {"e", FR_NAME}, {"E", FR_NAME}, {"x", FR_NAME}, {"n", FR_NAME}, {"u", FR_NAME},
	{"U", FR_NAME}, {"B", FR_NAME}, {"uescape", FR_NAME}, {"date", FR_NAME}, {"int", FR_NAME},
	{"\"A\"", FR_OTHER}, {"\"a\"", FR_OTHER}, {"\"a\"\"b\"", FR_OTHER}, {"\"sp ace\"", FR_OTHER},
	{"\"\xc3\xa9\"", FR_OTHER}, {"\"\"", FR_OTHER},
	{"0", FR_ICONST}, {"1", FR_ICONST}, {"42", FR_ICONST}, {"2147483647", FR_ICONST}, {"0002147483647", FR_ICONST},
	{"2147483648", FR_FCONST}, {"1.5", FR_FCONST}, {".5", FR_FCONST}, {"1.", FR_FCONST}, {"1e5", FR_FCONST},
	{"1E+5", FR_FCONST}, {"1e-5", FR_FCONST}, {"99999999999", FR_FCONST},
	{"1e", FR_OTHER}, {"0x1F", FR_OTHER},
	{"'a'", FR_SCONST}, {"''", FR_SCONST}, {"'it''s'", FR_SCONST}, {"'x y'", FR_SCONST},
	{"'\xc3\xa9'", FR_SCONST}, {"'--'", FR_SCONST}, {"'/*'", FR_SCONST},
	{"'a\\b'", FR_OTHER}, {"E'x'", FR_OTHER}, {"B'1'", FR_OTHER}, {"X'1F'", FR_OTHER}, {"U&'x'", FR_OTHER},
	{"$$x$$", FR_OTHER}, {"$q$x$q$", FR_OTHER}, {"$1", FR_OTHER}, {"$2", FR_OTHER}, {"$10", FR_OTHER},
	{"+", FR_OTHER}, {"-", FR_OTHER}, {"*", FR_OTHER}, {"/", FR_OTHER}, {"%", FR_OTHER}, {"^", FR_OTHER},
	{"<", FR_OTHER}, {">", FR_OTHER}, {"=", FR_OTHER}, {"<=", FR_OTHER}, {">=", FR_OTHER}, {"<>", FR_OTHER},
	{"!=", FR_OTHER}, {"=>", FR_OTHER}, {"~", FR_OTHER}, {"!", FR_OTHER}, {"@", FR_OTHER}, {"#", FR_OTHER},
	{"&", FR_OTHER}, {"|", FR_OTHER}, {"`", FR_OTHER}, {"?", FR_OTHER}, {"||", FR_OTHER}, {"->", FR_OTHER},
	{"->>", FR_OTHER}, {"@-", FR_OTHER}, {"+-", FR_OTHER}, {"=-", FR_OTHER}, {"!~~", FR_OTHER},
	{"(", FR_OTHER}, {")", FR_OTHER}, {",", FR_OTHER}, {"[", FR_OTHER}, {"]", FR_OTHER}, {".", FR_OTHER},
	{":", FR_OTHER}, {"::", FR_OTHER}, {":=", FR_OTHER}, {"..", FR_OTHER}, {";", FR_OTHER},
	{"--c\n", FR_OTHER}, {"/*c*/", FR_OTHER}, {"/*", FR_OTHER}, {"*/", FR_OTHER}, {"/* /* */ */", FR_OTHER},
	{"\\", FR_OTHER}, {"{", FR_OTHER}, {"\xc3\xa9", FR_OTHER}, {"\n", FR_OTHER}, {"'", FR_OTHER},
	{"\"", FR_OTHER}, {"1..", FR_OTHER}, {"$", FR_OTHER}, {"-1", FR_OTHER}, {"e'x'", FR_OTHER}, {"u&", FR_OTHER},
	{":a", FR_OTHER},
};

static const char *const seps[] = {"", "", "", " ", " ", "\n", "\t", "/*s*/", "-- s\n", "\r\n", "\f", "\v"};
static const char *const ivals[] = {"0", "7", "42", "2147483647", "000123", "1000000"};
static const char *const fvals[] = {"1.5", ".25", "3.", "1e5", "2E-3", "2147483648", "99999999999", "0.0"};
static const char *const svals[] = {"'a'", "''", "'it''s'", "'x y z'", "'caf\xc3\xa9'", "'--'", "'/*'", "';'",
				    "'\"'"};

#define NFRAG_MAX 12

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)((rng_state >> 11) % n);
}

#define PICK(arr) (arr)[rnd(sizeof(arr) / sizeof *(arr))]

/* Render fragments with separators; variant: other case for names, other
 * values of the same class for literals. */
static void render(pf_sb *out, const size_t *fi, const size_t *si, size_t n, bool variant)
{
	pf_sb_reset(out);
	pf_sb_append(out, "");
	for (size_t i = 0; i < n; i++) {
		const frag *f = &frags[fi[i]];
		if (i)
			pf_sb_append(out, seps[si[i]]);
		if (!variant || f->kind == FR_OTHER) {
			pf_sb_append(out, f->text);
			continue;
		}
		switch (f->kind) {
		case FR_NAME: {
			char buf[64];
			size_t k = 0;
			for (; f->text[k] && k < sizeof buf - 1; k++) {
				unsigned char c = (unsigned char)f->text[k];
				buf[k] = (char)(rnd(2) ? toupper(c) : tolower(c));
			}
			buf[k] = '\0';
			pf_sb_append(out, buf);
			break;
		}
		case FR_ICONST:
			pf_sb_append(out, PICK(ivals));
			break;
		case FR_FCONST:
			pf_sb_append(out, PICK(fvals));
			break;
		default:
			pf_sb_append(out, PICK(svals));
			break;
		}
	}
}

static void test_random_against_pg(void **state)
{
	(void)state;
	soft_failures = 0;
	rng_state = getenv("FASTSCAN_SEED") ? strtoull(getenv("FASTSCAN_SEED"), NULL, 10) : 0x9e3779b97f4a7c15ULL;
	if (!rng_state)
		rng_state = 1;
	long iters = getenv("FASTSCAN_ITERATIONS") ? atol(getenv("FASTSCAN_ITERATIONS")) : 20000;
	rw_fastscan x = {0}, y = {0};
	pf_sb r1, r2;
	pf_sb_init(&r1);
	pf_sb_init(&r2);
	long handled = 0, pairs = 0;
	for (long it = 0; it < iters && soft_failures < 20; it++) {
		size_t n = 1 + rnd(NFRAG_MAX), fi[NFRAG_MAX], s1[NFRAG_MAX], s2[NFRAG_MAX];
		for (size_t i = 0; i < n; i++) {
			fi[i] = rnd(sizeof frags / sizeof *frags);
			s1[i] = rnd(sizeof seps / sizeof *seps);
			/* the same separator or another; "" stays "" half the time */
			s2[i] = rnd(2) ? s1[i] : rnd(sizeof seps / sizeof *seps);
		}
		render(&r1, fi, s1, n, false);
		if (scan(&x, pf_sb_str(&r1)) != RW_FS_OK)
			continue;
		handled++;
		if (!agrees_with_pg("random", pf_sb_str(&r1), &x))
			continue;
		render(&r2, fi, s2, n, true);
		if (scan(&y, pf_sb_str(&r2)) != RW_FS_OK)
			continue;
		agrees_with_pg("random variant", pf_sb_str(&r2), &y);
		if (!same_key(&x, &y))
			continue;
		pairs++;
		SOFT_CHECK(same_stream(pf_sb_str(&r1), pf_sb_str(&r2)),
			   "equal keys, different token streams:\n  \"%s\"\n  \"%s\"", pf_sb_str(&r1), pf_sb_str(&r2));
	}
	print_message("random: %ld texts, %ld handled, %ld equal-key pairs, %d failures\n", iters, handled, pairs,
		      soft_failures);
	CHECK(handled > iters / 20 && pairs > iters / 50, "the generator reaches the fast path");
	pf_sb_free(&r1);
	pf_sb_free(&r2);
	rw_fastscan_free(&x);
	rw_fastscan_free(&y);
	CHECK(soft_failures == 0, "random texts agree with pg_query_scan");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lexing),
		cmocka_unit_test(test_bail_outs),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_corpus_against_pg),
		cmocka_unit_test(test_random_against_pg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
