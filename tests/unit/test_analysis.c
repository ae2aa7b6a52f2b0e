/*
 * test_analysis.c — unit tests for rewrite/analysis.h, corpus-driven
 * (test_analysis_cache.c has the cache and bound tests).
 *
 *   corpus         every case of tests/corpus/analysis.txt (real ORM and
 *                  pgbench statements, PostgreSQL edge cases): the analysis,
 *                  printed one fact a line, equals the expected lines; plus
 *                  invariants (ranges inside the text, $n slots, ...)
 *   fastscan       every single-statement case fastscan.h handles: its
 *                  slots and statement range are exactly the analysis'
 *                  values and range (what the fast path learns from)
 *   shape path     each case again with every literal changed (other values,
 *                  other lengths): must take the shape path (stats) — the
 *                  fast path when fastscan handles both texts as one
 *                  statement — and give exactly what a full parse of that
 *                  text gives, value locations and statement ranges included
 *   loose variants each case again, eight times (ANALYSIS_LOOSE_ROUNDS,
 *                  ANALYSIS_SEED), with literals changed, the case of
 *                  keywords and unquoted names flipped at random and
 *                  comments inserted between tokens: identical to a full
 *                  parse, by the fast path whenever fastscan handles both
 *   text cache     the same text again is the same analysis object
 *   write form     UPDATE / DELETE / INSERT VALUES facts (target, SET
 *                  columns, column list, VALUES cells to slots, ON
 *                  CONFLICT) and what is OTHER / NONE, table-driven; the
 *                  same facts by the shape and fast paths; every corpus
 *                  case's write facts checked for consistency and, in the
 *                  variants above, equal to a full parse's
 *
 * Inputs are copied into exact-size heap buffers (no NUL) so that ASan
 * catches any read past len.  Run from the repository root, or set
 * PGFOLD_CORPUS to the corpus file.  The corpus format is described at the
 * top of the corpus file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "../../common/strbuf.h"
#include "../../rewrite/analysis.h"
#include "../../rewrite/fastscan.h"

#define CORPUS_DEFAULT "tests/corpus/analysis.txt"
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

/* Like CHECK, but counts the failure and goes on (for per-case checks). */
static int soft_failures;
#define SOFT_CHECK(cond, ...)                                                                                  \
	do {                                                                                                   \
		if (!(cond)) {                                                                                 \
			print_error(__VA_ARGS__);                                                              \
			print_error(": check failed: %s\n", #cond);                                           \
			soft_failures++;                                                                       \
		}                                                                                              \
	} while (0)

/* Analyse from an exact-size heap copy of s (not NUL-terminated). */
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

/* ---- printing an analysis, one fact a line ------------------------------- */

static const char *const flag_names[] = {"LIMIT",    "OFFSET",	 "ORDER_BY",    "GROUP_BY",  "AGGREGATE",
					 "DISTINCT", "WINDOW",	 "SET_OP",	"SUBQUERY",  "EXISTS",
					 "CTE",	     "FOR_UPDATE", "SELECT_INTO", "WRITABLE_CTE", "TEMP",
					 "CATALOG",  "EXISTS_QUERY"};

static void put_relname(pf_sb *sb, const rw_relation *r, bool with_alias)
{
	if (with_alias && r->alias) {
		pf_sb_append(sb, r->alias);
		return;
	}
	if (r->schema)
		pf_sb_appendf(sb, "%s.", r->schema);
	pf_sb_append(sb, r->name);
}

static void dump_slot(pf_sb *sb, const char *sql, const rw_shape *sh, const rw_value *v, size_t i)
{
	const rw_slot *sl = &sh->slots[i];
	pf_sb_append(sb, "slot ");
	if (sl->rel_index >= 0) {
		put_relname(sb, &sh->relations[sl->rel_index], true);
		pf_sb_appendf(sb, ".%s ", sl->column);
	} else if (sl->column) {
		pf_sb_appendf(sb, "?.%s ", sl->column);
	} else {
		pf_sb_append(sb, "- ");
	}
	pf_sb_append_n(sb, sql + v[i].location, (size_t)v[i].length);
	pf_sb_append(sb, "\n");
}

static void dump_tx(pf_sb *sb, const rw_shape *sh)
{
	if (sh->tx_op != RW_TX_NONE || sh->isolation != RW_ISO_DEFAULT || sh->read_only != -1 || sh->chain) {
		pf_sb_appendf(sb, "tx %s", rw_tx_op_name(sh->tx_op));
		if (sh->isolation != RW_ISO_DEFAULT)
			pf_sb_appendf(sb, " iso %s", rw_isolation_name(sh->isolation));
		if (sh->read_only != -1)
			pf_sb_append(sb, sh->read_only ? " read only" : " read write");
		if (sh->chain)
			pf_sb_append(sb, " chain");
		pf_sb_append(sb, "\n");
	}
	if (sh->setting || sh->set_local)
		pf_sb_appendf(sb, "setting %s%s\n", sh->setting ? sh->setting : "(unknown)", sh->set_local ? " local" : "");
}

static void dump_stmt(pf_sb *sb, const char *sql, const rw_stmt *st, bool with_norm)
{
	const rw_shape *sh = st->shape;
	pf_sb_appendf(sb, "kind %s\n", rw_kind_name(sh->kind));
	if (with_norm)
		pf_sb_appendf(sb, "norm %s\n", sh->normalized ? sh->normalized : "(null)");
	for (size_t i = 0; i < sh->nrelations; i++) {
		const rw_relation *r = &sh->relations[i];
		pf_sb_append(sb, "rel ");
		put_relname(sb, r, false);
		if (r->alias)
			pf_sb_appendf(sb, " AS %s", r->alias);
		pf_sb_append(sb, r->written ? " written\n" : "\n");
	}
	for (size_t i = 0; i < sh->nfunctions; i++)
		pf_sb_appendf(sb, "func %s\n", sh->functions[i]);
	if (sh->flags) {
		pf_sb_append(sb, "flags");
		for (size_t i = 0; i < sizeof flag_names / sizeof *flag_names; i++)
			if (sh->flags & (1u << i))
				pf_sb_appendf(sb, " %s", flag_names[i]);
		pf_sb_append(sb, "\n");
	}
	for (size_t i = 0; i < sh->nslots; i++)
		dump_slot(sb, sql, sh, st->values, i);
	dump_tx(sb, sh);
}

static void dump(pf_sb *sb, const char *sql, const rw_analysis *an, bool with_norm)
{
	pf_sb_reset(sb);
	for (size_t i = 0; i < an->nstmts; i++) {
		if (an->nstmts > 1)
			pf_sb_appendf(sb, "stmt %zu\n", i + 1);
		dump_stmt(sb, sql, &an->stmts[i], with_norm);
	}
	if (an->error)
		pf_sb_appendf(sb, "error %s\n", an->error);
}

static const char *const write_form_names[] = {"none", "update", "delete", "insert", "other"};

static void put_names(pf_sb *sb, const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pf_sb_appendf(sb, "%s%s", i ? "," : "", v[i]);
}

static void put_cell(pf_sb *sb, const char *sql, const rw_stmt *st, int k)
{
	pf_sb_append(sb, " ");
	if (k < 0)
		pf_sb_append(sb, "-");
	else
		pf_sb_append_n(sb, sql + st->values[k].location, (size_t)st->values[k].length);
}

/* The write facts of one statement: "write FORM [TARGET] [set|cols NAMES] [on
 * conflict]", then "row CELL..." per VALUES row (the cell's slot text, or -). */
static void dump_write(pf_sb *sb, const char *sql, const rw_stmt *st)
{
	const rw_shape *sh = st->shape;
	unsigned form = (unsigned)sh->write_form;
	pf_sb_appendf(sb, "write %s", form < 5 ? write_form_names[form] : "?");
	if (sh->write_rel >= 0 && (size_t)sh->write_rel < sh->nrelations) {
		const rw_relation *r = &sh->relations[sh->write_rel];
		pf_sb_append(sb, " ");
		put_relname(sb, r, false);
		if (r->alias)
			pf_sb_appendf(sb, " AS %s", r->alias);
	}
	if (sh->nset_columns) {
		pf_sb_append(sb, " set ");
		put_names(sb, sh->set_columns, sh->nset_columns);
	}
	if (sh->write_form == RW_WRITE_INSERT_VALUES) {
		pf_sb_append(sb, sh->ninsert_columns ? " cols " : " cols none");
		put_names(sb, sh->insert_columns, sh->ninsert_columns);
	}
	if (sh->write_on_conflict)
		pf_sb_append(sb, " on conflict");
	pf_sb_append(sb, "\n");
	for (size_t r = 0; r < sh->ninsert_rows; r++) {
		pf_sb_append(sb, "row");
		for (size_t c = 0; c < sh->ninsert_columns; c++)
			put_cell(sb, sql, st, sh->insert_slots[r * sh->ninsert_columns + c]);
		pf_sb_append(sb, "\n");
	}
}

static void dump_writes(pf_sb *sb, const char *sql, const rw_analysis *an)
{
	pf_sb_reset(sb);
	for (size_t i = 0; i < an->nstmts; i++)
		dump_write(sb, sql, &an->stmts[i]);
}

/* ---- invariants every analysis must satisfy ------------------------------ */

static void check_values(const char *name, const char *sql, const rw_stmt *st)
{
	const rw_shape *sh = st->shape;
	int prev_end = st->location;
	for (size_t i = 0; i < sh->nslots; i++) {
		const rw_value *v = &st->values[i];
		const char *text = sql + v->location;
		SOFT_CHECK(v->location >= prev_end && v->length > 0, "%s: slot %zu at %d+%d", name, i, v->location, v->length);
		SOFT_CHECK(v->location + v->length <= st->location + st->length, "%s: slot %zu past its statement", name, i);
		prev_end = v->location + v->length;
		if (sh->slots[i].param) {
			char want[24];
			snprintf(want, sizeof want, "$%d", sh->slots[i].param);
			SOFT_CHECK((size_t)v->length == strlen(want) && memcmp(text, want, strlen(want)) == 0,
			      "%s: slot %zu is %s", name, i, want);
		} else {
			SOFT_CHECK(text[0] != '$' || (v->length > 1 && !isdigit((unsigned char)text[1])),
			      "%s: slot %zu: a $n slot without its number", name, i);
		}
		SOFT_CHECK(sh->slots[i].rel_index < (int)sh->nrelations, "%s: slot %zu rel_index", name, i);
		SOFT_CHECK(sh->slots[i].rel_index < 0 || sh->slots[i].column, "%s: slot %zu: relation without column", name,
		      i);
	}
}

static bool any_written(const rw_shape *sh)
{
	for (size_t i = 0; i < sh->nrelations; i++)
		if (sh->relations[i].written)
			return true;
	return false;
}

static void check_insert_cells(const char *name, const rw_shape *sh)
{
	SOFT_CHECK(sh->ninsert_rows == 0 || (sh->ninsert_columns > 0 && sh->insert_slots), "%s: insert rows", name);
	int prev = -1;
	for (size_t i = 0; i < sh->ninsert_rows * sh->ninsert_columns; i++) {
		int k = sh->insert_slots[i];
		SOFT_CHECK(k >= -1 && k < (int)sh->nslots, "%s: insert cell %zu slot %d", name, i, k);
		SOFT_CHECK(k < 0 || k > prev, "%s: insert cells out of text order at %zu", name, i);
		if (k >= 0)
			prev = k;
	}
}

static void check_write(const char *name, const rw_shape *sh)
{
	rw_write_form f = sh->write_form;
	bool keyed = f == RW_WRITE_UPDATE || f == RW_WRITE_DELETE || f == RW_WRITE_INSERT_VALUES;
	bool writes = sh->kind == RW_KIND_WRITE || sh->kind == RW_KIND_TRUNCATE ||
		      (sh->kind == RW_KIND_COPY && any_written(sh));
	SOFT_CHECK((f != RW_WRITE_NONE) == writes, "%s: write form %d, kind %s", name, f, rw_kind_name(sh->kind));
	SOFT_CHECK(f <= RW_WRITE_OTHER, "%s: write form %d", name, f);
	SOFT_CHECK((sh->write_rel >= 0) == keyed, "%s: write_rel %d", name, sh->write_rel);
	SOFT_CHECK(!keyed || (sh->write_rel < (int)sh->nrelations && sh->relations[sh->write_rel].written),
		   "%s: write_rel %d not a written relation", name, sh->write_rel);
	SOFT_CHECK(!keyed || !(sh->flags & RW_WRITABLE_CTE), "%s: keyed write with a writable CTE", name);
	SOFT_CHECK((sh->nset_columns > 0) == (f == RW_WRITE_UPDATE) && (!sh->nset_columns || sh->set_columns),
		   "%s: set columns", name);
	SOFT_CHECK(f == RW_WRITE_INSERT_VALUES || (sh->ninsert_columns == 0 && sh->ninsert_rows == 0),
		   "%s: insert columns", name);
	SOFT_CHECK(!sh->ninsert_columns || sh->insert_columns, "%s: insert column names", name);
	SOFT_CHECK(!sh->write_on_conflict || f == RW_WRITE_INSERT_VALUES, "%s: on conflict", name);
	check_insert_cells(name, sh);
}

static void check_invariants(const char *name, const char *sql, size_t len, const rw_analysis *an)
{
	int prev_end = 0;
	for (size_t i = 0; i < an->nstmts; i++) {
		const rw_stmt *st = &an->stmts[i];
		SOFT_CHECK(st->location >= prev_end && st->length >= 0 && (size_t)(st->location + st->length) <= len,
		      "%s: stmt %zu range %d+%d", name, i, st->location, st->length);
		prev_end = st->location + st->length;
		if (st->shape->kind == RW_KIND_UNPARSED) {
			SOFT_CHECK(an->error && an->nstmts == 1 && st->shape->nslots == 0, "%s: unparsed", name);
			continue;
		}
		SOFT_CHECK(!an->error, "%s: error on a parsed statement", name);
		SOFT_CHECK(st->shape->fingerprint != 0 && st->shape->normalized, "%s: stmt %zu fingerprint", name, i);
		check_values(name, sql, st);
		check_write(name, st->shape);
	}
}

/* When fastscan handles a one-statement text, its view must be the
 * analysis' exactly (else the fast path never learns the shape).  true when
 * handled. */
static bool check_fastscan(const char *name, const char *sql, size_t len, const rw_analysis *an)
{
	rw_fastscan fs = {0};
	bool handled = rw_fastscan_run(&fs, sql, len) == RW_FS_OK;
	if (handled && an->nstmts == 1 && !an->error) {
		const rw_stmt *st = &an->stmts[0];
		SOFT_CHECK(fs.stmt_location == st->location && fs.stmt_length == st->length,
			   "%s: fastscan statement %d+%d, analysis %d+%d", name, fs.stmt_location, fs.stmt_length,
			   st->location, st->length);
		SOFT_CHECK(fs.nslots == st->shape->nslots, "%s: fastscan %zu slots, analysis %zu", name, fs.nslots,
			   st->shape->nslots);
		for (size_t i = 0; i < fs.nslots && i < st->shape->nslots; i++)
			SOFT_CHECK(fs.slots[i].location == st->values[i].location &&
					   fs.slots[i].length == st->values[i].length &&
					   (fs.slots[i].cls == RW_FS_PARAM) == (st->shape->slots[i].param != 0),
				   "%s: slot %zu: fastscan %d+%d, analysis %d+%d", name, i, fs.slots[i].location,
				   fs.slots[i].length, st->values[i].location, st->values[i].length);
	}
	SOFT_CHECK(!handled || an->nstmts == 1, "%s: fastscan handled %zu statements", name, an->nstmts);
	rw_fastscan_free(&fs);
	return handled;
}

/* ---- the corpus ----------------------------------------------------------- */

typedef struct corpus_case {
	char *name;
	int line;
	pf_sb sql;
	pf_sb expect;
	bool noshape;   /* its facts depend on a literal: a changed text is parsed again */
	bool with_norm; /* the expectation lists normalized texts */
} corpus_case;

static void chomp(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

static size_t load_corpus(corpus_case **out)
{
	const char *path = getenv("PGFOLD_CORPUS") ? getenv("PGFOLD_CORPUS") : CORPUS_DEFAULT;
	FILE *f = fopen(path, "r");
	if (!f) {
		print_error("cannot open %s (run from the repository root or set PGFOLD_CORPUS)\n", path);
		fail();
	}
	corpus_case *v = NULL;
	size_t n = 0, cap = 0;
	char line[8192];
	int lineno = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		chomp(line);
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (strncmp(line, "== ", 3) == 0) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				v = realloc(v, cap * sizeof *v);
				assert_non_null(v);
			}
			memset(&v[n], 0, sizeof v[n]);
			v[n].name = strdup(line + 3);
			v[n].line = lineno;
			n++;
			continue;
		}
		if (n == 0) {
			print_error("%s:%d: a line before the first case\n", path, lineno);
			fail();
		}
		corpus_case *c = &v[n - 1];
		if (strcmp(line, "sql") == 0 || strncmp(line, "sql ", 4) == 0) {
			if (c->sql.data)
				pf_sb_append(&c->sql, "\n");
			pf_sb_append(&c->sql, line[3] ? line + 4 : "");
		} else if (strcmp(line, "option noshape") == 0) {
			c->noshape = true;
		} else {
			if (strncmp(line, "norm ", 5) == 0)
				c->with_norm = true;
			pf_sb_appendf(&c->expect, "%s\n", line);
		}
	}
	fclose(f);
	*out = v;
	return n;
}

static void free_corpus(corpus_case *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		pf_sb_free(&v[i].sql);
		pf_sb_free(&v[i].expect);
	}
	free(v);
}

static void print_case_diff(const corpus_case *c, const char *got)
{
	print_error("case \"%s\" (corpus line %d)\n  sql: %s\n--- want\n%s--- got\n%s---\n", c->name, c->line,
		    pf_sb_str(&c->sql), pf_sb_str(&c->expect), got);
}

static void test_corpus_expected(void **state)
{
	(void)state;
	soft_failures = 0;
	corpus_case *cases;
	size_t n = load_corpus(&cases), failed = 0, fast = 0;
	pf_sb got;
	pf_sb_init(&got);
	for (size_t i = 0; i < n; i++) {
		const corpus_case *c = &cases[i];
		const char *sql = pf_sb_str(&c->sql);
		rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
		rw_analysis *an = analyze(a, sql);
		dump(&got, sql, an, c->with_norm);
		if (strcmp(pf_sb_str(&got), pf_sb_str(&c->expect)) != 0) {
			print_case_diff(c, pf_sb_str(&got));
			failed++;
		}
		check_invariants(c->name, sql, strlen(sql), an);
		fast += check_fastscan(c->name, sql, strlen(sql), an);
		rw_analysis_free(an);
		rw_analyzer_free(a);
	}
	print_message("corpus: %zu cases (%zu handled by fastscan), %zu failed, %d invariant failures\n", n, fast,
		      failed, soft_failures);
	pf_sb_free(&got);
	free_corpus(cases, n);
	CHECK(failed == 0 && soft_failures == 0, "corpus");
}

/* ---- variants: every literal replaced ------------------------------------ */

static void replacement(pf_sb *out, const char *tok, size_t len, int type)
{
	switch (type) {
	case PG_QUERY__TOKEN__ICONST:
		for (size_t i = 0; i < (len < 8 ? len + 1 : 1); i++)
			pf_sb_append(out, "7");
		break;
	case PG_QUERY__TOKEN__FCONST:
		pf_sb_append(out, strncmp(tok, "9.25", len) == 0 ? "8.5" : "9.25");
		break;
	case PG_QUERY__TOKEN__SCONST:
		if (tok[0] == '$') {
			pf_sb_append(out, "$q$dollar$q$");
		} else if (tok[0] == 'e' || tok[0] == 'E') {
			pf_sb_append(out, "E'w\\'x'");
		} else {
			pf_sb_append(out, "'");
			for (size_t i = 0; i < len; i++)
				pf_sb_append(out, "v");
			pf_sb_append(out, "'");
		}
		break;
	case PG_QUERY__TOKEN__BCONST:
		pf_sb_append(out, "B'1'");
		break;
	case PG_QUERY__TOKEN__XCONST:
		pf_sb_append(out, "X'AB'");
		break;
	case PG_QUERY__TOKEN__USCONST:
		pf_sb_append(out, "U&'w'");
		break;
	default:
		pf_sb_append_n(out, tok, len);
		break;
	}
}

static bool token_is_literal(int type)
{
	return type == PG_QUERY__TOKEN__ICONST || type == PG_QUERY__TOKEN__FCONST || type == PG_QUERY__TOKEN__SCONST ||
	       type == PG_QUERY__TOKEN__BCONST || type == PG_QUERY__TOKEN__XCONST || type == PG_QUERY__TOKEN__USCONST;
}

/* libpg_query gives U&'...' an empty range: it reaches up to the next token. */
static size_t token_end(const char *sql, const PgQuery__ScanResult *sr, size_t i)
{
	const PgQuery__ScanToken *t = sr->tokens[i];
	if (t->token != PG_QUERY__TOKEN__USCONST)
		return (size_t)t->end;
	size_t end = i + 1 < sr->n_tokens ? (size_t)sr->tokens[i + 1]->start : strlen(sql);
	while (end > (size_t)t->start && isspace((unsigned char)sql[end - 1]))
		end--;
	return end;
}

/* sql with every literal token replaced; the number replaced. */
static size_t make_variant(const char *sql, pf_sb *out)
{
	pf_sb_reset(out);
	PgQueryScanResult r = pg_query_scan(sql);
	if (r.error) { /* unscannable: no variant */
		pg_query_free_scan_result(r);
		return 0;
	}
	PgQuery__ScanResult *sr = pg_query__scan_result__unpack(NULL, r.pbuf.len, (const uint8_t *)r.pbuf.data);
	assert_non_null(sr);
	size_t pos = 0, changed = 0;
	for (size_t i = 0; i < sr->n_tokens; i++) {
		const PgQuery__ScanToken *t = sr->tokens[i];
		int type = t->token;
		if (type != PG_QUERY__TOKEN__ICONST && type != PG_QUERY__TOKEN__FCONST &&
		    type != PG_QUERY__TOKEN__SCONST && type != PG_QUERY__TOKEN__BCONST &&
		    type != PG_QUERY__TOKEN__XCONST && type != PG_QUERY__TOKEN__USCONST)
			continue;
		if (i > 0 && sr->tokens[i - 1]->token == PG_QUERY__TOKEN__UESCAPE)
			continue; /* the escape character is part of the shape */
		size_t end = token_end(sql, sr, i);
		pf_sb_append_n(out, sql + pos, (size_t)t->start - pos);
		replacement(out, sql + t->start, end - (size_t)t->start, type);
		pos = end;
		changed++;
	}
	pf_sb_append(out, sql + pos);
	pg_query__scan_result__free_unpacked(sr, NULL);
	pg_query_free_scan_result(r);
	return changed;
}

/* Does fastscan handle both texts, with one key? */
static bool fast_expected(const char *sql, const char *vsql)
{
	rw_fastscan x = {0}, y = {0};
	bool same = rw_fastscan_run(&x, sql, strlen(sql)) == RW_FS_OK &&
		    rw_fastscan_run(&y, vsql, strlen(vsql)) == RW_FS_OK && x.keylen == y.keylen &&
		    memcmp(x.key, y.key, x.keylen) == 0;
	rw_fastscan_free(&x);
	rw_fastscan_free(&y);
	return same;
}

/* The same statement ranges? */
static bool same_ranges(const rw_analysis *x, const rw_analysis *y)
{
	if (x->nstmts != y->nstmts)
		return false;
	for (size_t i = 0; i < x->nstmts; i++)
		if (x->stmts[i].location != y->stmts[i].location || x->stmts[i].length != y->stmts[i].length)
			return false;
	return true;
}

/* A case's variant, analysed after the case on the same analyzer. */
static bool check_variant(const corpus_case *c, pf_sb *var, pf_sb *got, pf_sb *want, size_t *nfast)
{
	const char *sql = pf_sb_str(&c->sql);
	if (make_variant(sql, var) == 0)
		return true;
	const char *vsql = pf_sb_str(var);
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES), *fresh = rw_analyzer_new(BIG, BIG_BYTES);
	rw_analysis *first = analyze(a, sql);
	bool unparsed = first->error != NULL;
	bool fast = !unparsed && !c->noshape && first->nstmts == 1 && fast_expected(sql, vsql);
	rw_analysis *an = analyze(a, vsql), *ref = analyze(fresh, vsql);
	rw_analyzer_stats st = stats(a);
	bool ok = true;
	if (unparsed) {
		ok = st.failures == 2 && st.shapes == 0 && st.entries == 0 && st.fast_keys == 0;
	} else {
		ok = c->noshape ? (st.full_parses == 2 && st.shape_hits == 0) : (st.shape_hits == 1 && st.full_parses == 1);
		/* the fast path exactly when fastscan handles both texts alike */
		ok = ok && st.fast_hits == (fast ? 1u : 0u);
		ok = ok && (!fast || an->stmts[0].shape == first->stmts[0].shape);
		ok = ok && (c->noshape || first->nstmts != 1 || st.fast_keys == (fast ? 1u : 0u) || !fast);
		dump(got, vsql, an, false);
		dump(want, vsql, ref, false);
		if (strcmp(pf_sb_str(got), pf_sb_str(want)) != 0 || !same_ranges(an, ref))
			ok = false;
		if (ok) { /* then the write facts (printed instead on a failure) */
			dump_writes(got, vsql, an);
			dump_writes(want, vsql, ref);
			ok = strcmp(pf_sb_str(got), pf_sb_str(want)) == 0;
		}
		check_invariants(c->name, vsql, strlen(vsql), an);
		*nfast += st.fast_hits;
	}
	if (!ok)
		print_error("case \"%s\" (line %d): variant %s\n  shape hits %llu (fast %llu, fast expected %d), "
			    "full parses %llu, failures %llu\n--- full parse\n%s--- same analyzer\n%s---\n",
			    c->name, c->line, vsql, (unsigned long long)st.shape_hits, (unsigned long long)st.fast_hits,
			    fast, (unsigned long long)st.full_parses, (unsigned long long)st.failures, pf_sb_str(want),
			    pf_sb_str(got));
	rw_analysis_free(first);
	rw_analysis_free(an);
	rw_analysis_free(ref);
	rw_analyzer_free(a);
	rw_analyzer_free(fresh);
	return ok;
}

static void test_corpus_shape_path(void **state)
{
	(void)state;
	soft_failures = 0;
	corpus_case *cases;
	size_t n = load_corpus(&cases), failed = 0;
	pf_sb var, got, want;
	pf_sb_init(&var);
	pf_sb_init(&got);
	pf_sb_init(&want);
	size_t nfast = 0;
	for (size_t i = 0; i < n; i++)
		failed += !check_variant(&cases[i], &var, &got, &want, &nfast);
	print_message("shape path: %zu cases (%zu by the fast path), %zu failed, %d invariant failures\n", n, nfast,
		      failed, soft_failures);
	pf_sb_free(&var);
	pf_sb_free(&got);
	pf_sb_free(&want);
	free_corpus(cases, n);
	CHECK(failed == 0 && soft_failures == 0, "shape path");
}

/* ---- variants: literals, keyword and name case, comments ------------------ */

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)((rng >> 11) % n);
}

/* sql with every literal replaced (as make_variant), the case of keywords and
 * unquoted names changed at random, and comments or white space inserted
 * between some tokens (never before a string: 'a'\n'b' continues a string;
 * nor before UESCAPE, which libpg_query 15 no longer sees after a comment,
 * unlike PostgreSQL).  What PostgreSQL does not tell apart; the number of
 * changes. */
static size_t make_variant_loose(const char *sql, pf_sb *out)
{
	pf_sb_reset(out);
	PgQueryScanResult r = pg_query_scan(sql);
	if (r.error) {
		pg_query_free_scan_result(r);
		return 0;
	}
	PgQuery__ScanResult *sr = pg_query__scan_result__unpack(NULL, r.pbuf.len, (const uint8_t *)r.pbuf.data);
	assert_non_null(sr);
	static const char *const seps[] = {" /* c */ ", "\n", "--x\n", "\t", "/**/"};
	size_t pos = 0, changed = 0;
	for (size_t i = 0; i < sr->n_tokens; i++) {
		const PgQuery__ScanToken *t = sr->tokens[i];
		int type = t->token;
		size_t end = token_end(sql, sr, i);
		pf_sb_append_n(out, sql + pos, (size_t)t->start - pos);
		if (type != PG_QUERY__TOKEN__SCONST && type != PG_QUERY__TOKEN__UESCAPE && rnd(3) == 0) {
			pf_sb_append(out, seps[rnd(sizeof seps / sizeof *seps)]);
			changed++;
		}
		const char *text = sql + t->start;
		size_t len = end - (size_t)t->start;
		bool literal = token_is_literal(type) && !(i > 0 && sr->tokens[i - 1]->token == PG_QUERY__TOKEN__UESCAPE);
		bool name = (t->keyword_kind != 0 || type == PG_QUERY__TOKEN__IDENT) && text[0] != '"';
		if (literal) {
			replacement(out, text, len, type);
			changed++;
		} else if (name) {
			for (size_t k = 0; k < len; k++) {
				char c = text[k];
				if (isalpha((unsigned char)c) && rnd(2)) {
					c = (char)(isupper((unsigned char)c) ? tolower((unsigned char)c) : toupper((unsigned char)c));
					changed++;
				}
				pf_sb_append_n(out, &c, 1);
			}
		} else {
			pf_sb_append_n(out, text, len);
		}
		pos = end;
	}
	pf_sb_append(out, sql + pos);
	pg_query__scan_result__free_unpacked(sr, NULL);
	pg_query_free_scan_result(r);
	return changed;
}

/* A loose variant after the case on one analyzer: identical to a full parse
 * of it; by the fast path whenever fastscan handles both alike. */
static bool check_loose_variant(const corpus_case *c, pf_sb *var, pf_sb *got, pf_sb *want, size_t *nfast)
{
	const char *sql = pf_sb_str(&c->sql);
	if (make_variant_loose(sql, var) == 0)
		return true;
	const char *vsql = pf_sb_str(var);
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES), *fresh = rw_analyzer_new(BIG, BIG_BYTES);
	rw_analysis *first = analyze(a, sql);
	bool fast = !first->error && !c->noshape && first->nstmts == 1 && fast_expected(sql, vsql);
	rw_analysis *an = analyze(a, vsql), *ref = analyze(fresh, vsql);
	rw_analyzer_stats st = stats(a);
	bool ok = st.fast_hits == (fast ? 1u : 0u) && (an->error != NULL) == (ref->error != NULL);
	dump(got, vsql, an, false);
	dump(want, vsql, ref, false);
	ok = ok && strcmp(pf_sb_str(got), pf_sb_str(want)) == 0 && same_ranges(an, ref);
	if (ok) { /* then the write facts (printed instead on a failure) */
		dump_writes(got, vsql, an);
		dump_writes(want, vsql, ref);
		ok = strcmp(pf_sb_str(got), pf_sb_str(want)) == 0;
	}
	check_invariants(c->name, vsql, strlen(vsql), an);
	*nfast += st.fast_hits;
	if (!ok)
		print_error("case \"%s\" (line %d): loose variant %s\n  fast hits %llu (expected %d)\n"
			    "--- full parse\n%s--- same analyzer\n%s---\n",
			    c->name, c->line, vsql, (unsigned long long)st.fast_hits, fast, pf_sb_str(want),
			    pf_sb_str(got));
	rw_analysis_free(first);
	rw_analysis_free(an);
	rw_analysis_free(ref);
	rw_analyzer_free(a);
	rw_analyzer_free(fresh);
	return ok;
}

static void test_corpus_fast_path_loose(void **state)
{
	(void)state;
	soft_failures = 0;
	corpus_case *cases;
	size_t n = load_corpus(&cases), failed = 0, nfast = 0, runs = 0;
	pf_sb var, got, want;
	pf_sb_init(&var);
	pf_sb_init(&got);
	pf_sb_init(&want);
	int rounds = getenv("ANALYSIS_LOOSE_ROUNDS") ? atoi(getenv("ANALYSIS_LOOSE_ROUNDS")) : 8;
	if (getenv("ANALYSIS_SEED"))
		rng = strtoull(getenv("ANALYSIS_SEED"), NULL, 10) | 1;
	for (int round = 0; round < rounds; round++)
		for (size_t i = 0; i < n; i++, runs++)
			failed += !check_loose_variant(&cases[i], &var, &got, &want, &nfast);
	print_message("loose variants: %zu runs (%zu by the fast path), %zu failed, %d invariant failures\n", runs,
		      nfast, failed, soft_failures);
	pf_sb_free(&var);
	pf_sb_free(&got);
	pf_sb_free(&want);
	free_corpus(cases, n);
	CHECK(failed == 0 && soft_failures == 0 && nfast > runs / 2, "loose variants");
}

/* The whole corpus through one analyzer twice: the second round is all text hits. */
static void test_corpus_text_cache(void **state)
{
	(void)state;
	corpus_case *cases;
	size_t n = load_corpus(&cases);
	rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
	rw_analysis **first = calloc(n, sizeof *first);
	assert_non_null(first);
	for (size_t i = 0; i < n; i++)
		first[i] = analyze(a, pf_sb_str(&cases[i].sql));
	rw_analyzer_stats st0 = stats(a);
	size_t cached = 0;
	for (size_t i = 0; i < n; i++) {
		rw_analysis *again = analyze(a, pf_sb_str(&cases[i].sql));
		bool hit = again == first[i];
		CHECK(hit == (first[i]->error == NULL), "case \"%s\": text cache", cases[i].name);
		cached += hit;
		rw_analysis_free(again);
		rw_analysis_free(first[i]);
	}
	rw_analyzer_stats st = stats(a);
	CHECK_U64(st.text_hits - st0.text_hits, cached, "text hits");
	CHECK_U64(st.shape_hits + st.full_parses, st0.shape_hits + st0.full_parses, "second round parsed nothing");
	CHECK_U64(st.failures - st0.failures, n - cached, "unparseable texts are analysed again");
	free(first);
	rw_analyzer_free(a);
	free_corpus(cases, n);
}

/* ---- write form ------------------------------------------------------------ */

typedef struct write_case {
	const char *sql;
	const char *want; /* per statement: dump_write, then its slots as dump_slot prints them */
} write_case;

static const write_case write_cases[] = {
	/* UPDATE: SET columns; WHERE equalities on the target */
	{"UPDATE t SET a = 1, b = 'x' WHERE id = 5", "write update t set a,b\nslot - 1\nslot - 'x'\nslot t.id 5\n"},
	{"UPDATE t SET x = 1 WHERE id = 5 AND id = 6", "write update t set x\nslot - 1\nslot t.id 5\nslot t.id 6\n"},
	{"UPDATE t SET (a, b) = (1, 2) WHERE t.id = $1 RETURNING a",
	 "write update t set a,b\nslot - 1\nslot - 2\nslot t.id $1\n"},
	{"UPDATE t SET a[1] = 1, a[2] = 2, b = b + 1 WHERE id = 3",
	 "write update t set a,b\nslot - 1\nslot - 1\nslot - 2\nslot - 2\nslot - 1\nslot t.id 3\n"},
	{"UPDATE t SET a = 1", "write update t set a\nslot - 1\n"},
	/* FROM: an unqualified column is not resolved (?.id) */
	{"UPDATE t SET a = o.a FROM other AS o WHERE t.id = 5 AND o.k = 3 AND id = 4",
	 "write update t set a\nslot t.id 5\nslot o.k 3\nslot ?.id 4\n"},
	/* self-join: the target is t's own entry, t2.id is the other entry's */
	{"UPDATE t SET a = t2.a FROM t AS t2 WHERE t2.id = 5 AND t.id = 6",
	 "write update t set a\nslot t2.id 5\nslot t.id 6\n"},
	{"UPDATE public.t AS x SET a = 1 WHERE x.id = 2", "write update public.t AS x set a\nslot - 1\nslot x.id 2\n"},
	{"WITH s AS (SELECT 1 AS k) UPDATE t SET a = 2 FROM s WHERE t.id = s.k AND t.v = 3",
	 "write update t set a\nslot - 1\nslot - 2\nslot t.v 3\n"},
	/* DELETE */
	{"DELETE FROM t WHERE id = $1", "write delete t\nslot t.id $1\n"},
	{"DELETE FROM ONLY t WHERE t.id = 1", "write delete t\nslot t.id 1\n"},
	{"DELETE FROM t USING u WHERE t.id = u.tid AND u.k = 7 AND t.v = 'a' RETURNING t.id",
	 "write delete t\nslot u.k 7\nslot t.v 'a'\n"},
	/* INSERT VALUES: literals, $n, casts, negative numbers map to their slots; the rest is - */
	{"INSERT INTO t (id, name, n, m) VALUES (1, 'a', -5, $1::bigint), ($2, '5'::int, CAST(7 AS int), DEFAULT), "
	 "(1 + 2, now(), NULL, (SELECT 4))",
	 "write insert t cols id,name,n,m\nrow 1 'a' -5 $1\nrow $2 '5' 7 -\nrow - - - -\n"
	 "slot - 1\nslot - 'a'\nslot - -5\nslot - $1\nslot - $2\nslot - '5'\nslot - 7\nslot - 1\nslot - 2\n"
	 "slot - 4\n"},
	{"INSERT INTO t (id, v) VALUES (- 5, -2.5), (int '3', interval '1 day'), (-(6), -'7')",
	 "write insert t cols id,v\nrow - 5 -2.5\nrow '3' '1 day'\nrow - -\n"
	 "slot - - 5\nslot - -2.5\nslot - '3'\nslot - '1 day'\nslot - 6\nslot - '7'\n"},
	{"INSERT INTO t VALUES (1, 2)", "write insert t cols none\nslot - 1\nslot - 2\n"},
	{"INSERT INTO t (id, a) VALUES (1, 2), (3)", "write insert t cols id,a\nslot - 1\nslot - 2\nslot - 3\n"},
	{"INSERT INTO t (a[1], b) VALUES (1, 2)", "write insert t cols a,b\nrow - 2\nslot - 1\nslot - 1\nslot - 2\n"},
	{"INSERT INTO t AS x (id) VALUES ($1) RETURNING x.id", "write insert t AS x cols id\nrow $1\nslot - $1\n"},
	{"INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a",
	 "write insert t cols id,a on conflict\nrow 1 2\nslot - 1\nslot - 2\n"},
	{"INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING",
	 "write insert t cols id on conflict\nrow 1\nslot - 1\n"},
	/* other writes */
	{"INSERT INTO t (a) SELECT 1", "write other\nslot - 1\n"},
	{"INSERT INTO t DEFAULT VALUES", "write other\n"},
	{"INSERT INTO t (id) OVERRIDING USER VALUE VALUES (1)", "write other\nslot - 1\n"},
	{"INSERT INTO t (id) OVERRIDING SYSTEM VALUE VALUES (1)", "write insert t cols id\nrow 1\nslot - 1\n"},
	{"INSERT INTO t (id) VALUES (1), (2) LIMIT 1", "write other\nslot - 1\nslot - 2\nslot - 1\n"},
	{"WITH d AS (DELETE FROM u RETURNING id) UPDATE t SET a = 1 WHERE id = 5",
	 "write other\nslot - 1\nslot t.id 5\n"},
	{"WITH d AS (INSERT INTO u (id) VALUES (1) RETURNING id) SELECT * FROM d", "write other\nslot - 1\n"},
	{"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a", "write other\n"},
	{"EXPLAIN ANALYZE UPDATE t SET a = 1 WHERE id = 5", "write other\nslot - 1\nslot - 5\n"},
	{"SELECT * FROM t WHERE id = 1 FOR UPDATE", "write other\nslot t.id 1\n"},
	{"SELECT nextval('s')", "write other\nslot - 's'\n"},
	{"SELECT * INTO x FROM t", "write other\n"},
	{"TRUNCATE t", "write other\n"},
	{"COPY t FROM STDIN", "write other\n"},
	/* not data writes */
	{"SELECT * FROM t WHERE id = 5", "write none\nslot t.id 5\n"},
	{"EXPLAIN UPDATE t SET a = 1 WHERE id = 5", "write none\nslot - 1\nslot - 5\n"},
	{"PREPARE p AS UPDATE t SET a = 1 WHERE id = $1", "write none\nslot - 1\nslot - $1\n"},
	{"COPY t TO STDOUT", "write none\n"},
	{"CREATE TABLE x (id int)", "write none\n"},
	/* several statements: each its own */
	{"UPDATE t SET a = 1 WHERE id = 2; DELETE FROM u WHERE id = 3",
	 "write update t set a\nslot - 1\nslot t.id 2\nwrite delete u\nslot u.id 3\n"},
};

/* dump_write and the slots of every statement. */
static void dump_write_case(pf_sb *sb, const char *sql, const rw_analysis *an)
{
	pf_sb_reset(sb);
	for (size_t i = 0; i < an->nstmts; i++) {
		const rw_stmt *st = &an->stmts[i];
		dump_write(sb, sql, st);
		for (size_t k = 0; k < st->shape->nslots; k++)
			dump_slot(sb, sql, st->shape, st->values, k);
	}
}

static void test_write_form(void **state)
{
	(void)state;
	soft_failures = 0;
	size_t n = sizeof write_cases / sizeof *write_cases, failed = 0;
	pf_sb got;
	pf_sb_init(&got);
	for (size_t i = 0; i < n; i++) {
		const write_case *c = &write_cases[i];
		rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES);
		rw_analysis *an = analyze(a, c->sql);
		dump_write_case(&got, c->sql, an);
		if (an->error || strcmp(pf_sb_str(&got), c->want) != 0) {
			print_error("write case %zu: %s\n--- want\n%s--- got\n%s---\n", i, c->sql, c->want,
				    pf_sb_str(&got));
			failed++;
		}
		check_invariants(c->sql, c->sql, strlen(c->sql), an);
		rw_analysis_free(an);
		rw_analyzer_free(a);
	}
	pf_sb_free(&got);
	CHECK(failed == 0 && soft_failures == 0, "write form: %zu of %zu failed, %d invariant failures", failed, n,
	      soft_failures);
}

/* A second text of one shape (other values, other lengths) has the first's
 * write facts, by the fast path when fastscan handles both, else the shape
 * path: the same as a full parse of it. */
static const struct {
	const char *first, *second, *want; /* want: dump_write_case of second */
	bool fast;
} write_pairs[] = {
	{"UPDATE t SET a = 1 WHERE id = 2", "UPDATE t SET a = 7 WHERE id = 9",
	 "write update t set a\nslot - 7\nslot t.id 9\n", true},
	{"UPDATE t SET a = 'x', b = 2 WHERE t.id = 5 AND k = 'a'",
	 "UPDATE t SET a = 'yyy', b = 30 WHERE t.id = 55 AND k = 'bb'",
	 "write update t set a,b\nslot - 'yyy'\nslot - 30\nslot t.id 55\nslot t.k 'bb'\n", true},
	{"DELETE FROM t WHERE id = $1 AND v = 3", "DELETE FROM t WHERE id = $1 AND v = 44",
	 "write delete t\nslot t.id $1\nslot t.v 44\n", true},
	{"INSERT INTO t (id, name) VALUES (1, 'x'), (2, $1)", "INSERT INTO t (id, name) VALUES (300, 'yy'), (4, $1)",
	 "write insert t cols id,name\nrow 300 'yy'\nrow 4 $1\nslot - 300\nslot - 'yy'\nslot - 4\nslot - $1\n", true},
	{"INSERT INTO t (id, n) VALUES (-5, '5'::int)", "INSERT INTO t (id, n) VALUES (-12, '77'::int)",
	 "write insert t cols id,n\nrow -12 '77'\nslot - -12\nslot - '77'\n", false},
	{"INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = 3",
	 "INSERT INTO t (id, a) VALUES (10, 20) ON CONFLICT (id) DO UPDATE SET a = 30",
	 "write insert t cols id,a on conflict\nrow 10 20\nslot - 10\nslot - 20\nslot - 30\n", true},
};

static void test_write_form_paths(void **state)
{
	(void)state;
	pf_sb got, ref;
	pf_sb_init(&got);
	pf_sb_init(&ref);
	for (size_t i = 0; i < sizeof write_pairs / sizeof *write_pairs; i++) {
		const char *first = write_pairs[i].first, *second = write_pairs[i].second;
		rw_analyzer *a = rw_analyzer_new(BIG, BIG_BYTES), *fresh = rw_analyzer_new(BIG, BIG_BYTES);
		rw_analysis *x = analyze(a, first), *y = analyze(a, second), *z = analyze(fresh, second);
		rw_analyzer_stats st = stats(a);
		dump_write_case(&got, second, y);
		dump_write_case(&ref, second, z);
		CHECK(st.shape_hits == 1 && st.fast_hits == (write_pairs[i].fast ? 1u : 0u) &&
			      y->stmts[0].shape == x->stmts[0].shape,
		      "%s: shape hits %llu, fast hits %llu", second, (unsigned long long)st.shape_hits,
		      (unsigned long long)st.fast_hits);
		CHECK(strcmp(pf_sb_str(&got), write_pairs[i].want) == 0 &&
			      strcmp(pf_sb_str(&ref), pf_sb_str(&got)) == 0,
		      "%s\n--- want\n%s--- same analyzer\n%s--- full parse\n%s---", second, write_pairs[i].want,
		      pf_sb_str(&got), pf_sb_str(&ref));
		rw_analysis_free(x);
		rw_analysis_free(y);
		rw_analysis_free(z);
		rw_analyzer_free(a);
		rw_analyzer_free(fresh);
	}
	pf_sb_free(&got);
	pf_sb_free(&ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus_expected),
		cmocka_unit_test(test_corpus_shape_path),
		cmocka_unit_test(test_corpus_fast_path_loose),
		cmocka_unit_test(test_corpus_text_cache),
		cmocka_unit_test(test_write_form),
		cmocka_unit_test(test_write_form_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
