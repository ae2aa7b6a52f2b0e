/*
 * batch.c — the batched statement for N children of one shape (batch.h has
 * the forms and the exactness rules).
 *
 * The child's statement text is scanned (pg_query_scan) and parsed
 * (pg_query_parse_protobuf) again: the tree tells which top-level WHERE
 * conjunct (for EXISTS: of the subquery's WHERE, rw_exists_inner) is the
 * key's `column = value` (by the value's location), the tokens give the
 * exact bytes of its two sides, of the '=' (checked to be the '=' token, not
 * OPERATOR(...)) and of every $n.  The batch is the child's text with a few
 * byte ranges replaced (an edit list applied in one pass), wrapped for
 * LATERAL/EXISTS, and parsed once more before it is handed out.
 */
#include "batch.h"
#include "analysis_int.h"

#include <pg_query.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../protocol/pgtypes.h"
#include <pg_query/pg_query.pb-c.h>

/* ---- types --------------------------------------------------------------- */


typedef struct type_entry {
	uint32_t oid;
	const char *name; /* without type modifier: unconstrained */
	bool key;         /* a key type (rw_batch_type_name) */
} type_entry;

static const type_entry TYPES[] = {
	{OID_INT2, "smallint", true},
	{OID_INT4, "integer", true},
	{OID_INT8, "bigint", true},
	{OID_TEXT, "text", true},
	{OID_VARCHAR, "varchar", true},
	{OID_BPCHAR, "bpchar", true},
	{OID_UUID, "uuid", true},
	{OID_OID, "oid", true},
	{OID_NUMERIC, "numeric", true},
	{OID_BOOL, "boolean", false},
	{OID_BYTEA, "bytea", false},
	{OID_NAME, "name", false},
	{OID_FLOAT4, "real", false},
	{OID_FLOAT8, "double precision", false},
	{OID_DATE, "date", false},
	{OID_TIME, "time", false},
	{OID_TIMETZ, "timetz", false},
	{OID_TIMESTAMP, "timestamp", false},
	{OID_TIMESTAMPTZ, "timestamptz", false},
	{OID_INTERVAL, "interval", false},
	{OID_JSON, "json", false},
	{OID_JSONB, "jsonb", false},
	{OID_INET, "inet", false},
	{OID_CIDR, "cidr", false},
	{OID_MACADDR, "macaddr", false},
	{OID_BOOL_ARRAY, "boolean[]", false},
	{OID_INT2_ARRAY, "smallint[]", false},
	{OID_INT4_ARRAY, "integer[]", false},
	{OID_INT8_ARRAY, "bigint[]", false},
	{OID_TEXT_ARRAY, "text[]", false},
	{OID_VARCHAR_ARRAY, "varchar[]", false},
	{OID_NUMERIC_ARRAY, "numeric[]", false},
	{OID_FLOAT4_ARRAY, "real[]", false},
	{OID_FLOAT8_ARRAY, "double precision[]", false},
	{OID_UUID_ARRAY, "uuid[]", false},
	{OID_DATE_ARRAY, "date[]", false},
	{OID_TIMESTAMP_ARRAY, "timestamp[]", false},
	{OID_TIMESTAMPTZ_ARRAY, "timestamptz[]", false},
};

static const char *type_name(uint32_t oid)
{
	for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
		if (TYPES[i].oid == oid)
			return TYPES[i].name;
	return NULL;
}

const char *rw_batch_type_name(uint32_t type_oid)
{
	for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
		if (TYPES[i].oid == type_oid)
			return TYPES[i].key ? TYPES[i].name : NULL;
	return NULL;
}

static bool is_int_type(uint32_t oid)
{
	return oid == OID_INT2 || oid == OID_INT4 || oid == OID_INT8;
}

/* Types whose equality a text comparison could get wrong (citext, char(n),
 * collations): a bare string compared with such a column needs its type. */
static bool is_text_like(uint32_t oid)
{
	return oid == OID_TEXT || oid == OID_VARCHAR || oid == OID_BPCHAR || oid == OID_NAME;
}

const char *rw_batch_form_name(rw_batch_form form)
{
	switch (form) {
	case RW_BATCH_NONE:
		return "none";
	case RW_BATCH_IN:
		return "in";
	case RW_BATCH_LATERAL:
		return "lateral";
	case RW_BATCH_EXISTS:
		return "exists";
	}
	return "?";
}

/* ---- key texts ----------------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* -?[0-9]+ within bigint's range (leading zeros allowed). */
static bool int8_syntax(const char *s, size_t n)
{
	size_t i = 0;
	bool neg = n > 0 && s[0] == '-';
	if (neg)
		i++;
	if (i == n)
		return false;
	for (size_t j = i; j < n; j++)
		if (!is_digit(s[j]))
			return false;
	while (i + 1 < n && s[i] == '0')
		i++;
	size_t digits = n - i;
	const char *lim = neg ? "9223372036854775808" : "9223372036854775807";
	return digits < 19 || (digits == 19 && memcmp(s + i, lim, 19) <= 0);
}

/* As PostgreSQL prints an integer: no leading zero, no "-0". */
static bool int_canonical(const char *s, size_t n)
{
	if (!int8_syntax(s, n))
		return false;
	size_t i = s[0] == '-' ? 1 : 0;
	return !(s[i] == '0' && (n - i > 1 || i == 1));
}

/* A SQL numeric constant: -?digits[.digits][e[+-]digits], digits on at
 * least one side of the point. */
static bool number_syntax(const char *s, size_t n)
{
	size_t i = 0, before = 0, after = 0;
	if (i < n && s[i] == '-')
		i++;
	while (i < n && is_digit(s[i]))
		i++, before++;
	if (i < n && s[i] == '.') {
		i++;
		while (i < n && is_digit(s[i]))
			i++, after++;
	}
	if (before + after == 0)
		return false;
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		size_t exp = 0;
		while (i < n && is_digit(s[i]))
			i++, exp++;
		if (exp == 0)
			return false;
	}
	return i == n;
}

/* As PostgreSQL prints a uuid: lower-case 8-4-4-4-12. */
static bool uuid_canonical(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		char c = s[i];
		if (dash ? c != '-' : !(is_digit(c) || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

typedef bool (*key_check)(const char *s, size_t n);

/* The distinct keys (indices into req->keys, first occurrences in order). */
typedef struct keyset {
	const char *const *v;
	const size_t *len;
	size_t *idx;
	size_t n;
} keyset;

static bool all_keys(const keyset *k, key_check ok)
{
	for (size_t i = 0; i < k->n; i++)
		if (!ok(k->v[k->idx[i]], k->len[k->idx[i]]))
			return false;
	return true;
}

static int keyset_init(keyset *k, const rw_batch_request *req)
{
	*k = (keyset){.v = req->keys, .len = req->key_lengths};
	if (req->nkeys == 0 || !req->keys || !req->key_lengths)
		return -1;
	k->idx = pf_malloc(req->nkeys * sizeof *k->idx);
	for (size_t i = 0; i < req->nkeys; i++) {
		const char *s = req->keys[i];
		size_t n = req->key_lengths[i];
		if (!s || memchr(s, '\0', n))
			return -1;
		bool dup = false;
		for (size_t j = 0; j < k->n && !dup; j++)
			dup = k->len[k->idx[j]] == n && memcmp(k->v[k->idx[j]], s, n) == 0;
		if (!dup)
			k->idx[k->n++] = i;
	}
	return 0;
}

/* ---- literals ------------------------------------------------------------ */

/* '...' with quotes doubled; E'...' with backslashes doubled too when the
 * value holds one (right whatever standard_conforming_strings says). */
static void append_quoted(pf_sb *out, const char *s, size_t n)
{
	bool esc = memchr(s, '\\', n) != NULL;
	pf_sb_append(out, esc ? "E'" : "'");
	size_t from = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\'' || (esc && s[i] == '\\')) {
			pf_sb_append_n(out, s + from, i + 1 - from);
			from = i; /* the character again: doubled */
		}
	}
	pf_sb_append_n(out, s + from, n - from);
	pf_sb_append(out, "'");
}

int rw_batch_literal(pf_sb *out, const char *value, size_t len, uint32_t type_oid)
{
	const char *name = type_name(type_oid);
	if (!name || !value || memchr(value, '\0', len))
		return -1;
	append_quoted(out, value, len);
	pf_sb_appendf(out, "::%s", name);
	return 0;
}

static bool opens(int type)
{
	return type == PG_QUERY__TOKEN__ASCII_40 || type == PG_QUERY__TOKEN__ASCII_91;
}

static bool closes(int type)
{
	return type == PG_QUERY__TOKEN__ASCII_41 || type == PG_QUERY__TOKEN__ASCII_93;
}

/* ---- the child: text, tokens, tree ---------------------------------------- */

/* Deeper nesting is refused: libpg_query's protobuf output recurses. */
#define MAX_NESTING 200

static void grow(void *arrayp, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	void **pp = arrayp;
	*pp = pf_realloc(*pp, n * elem);
	*cap = n;
}

typedef struct btok {
	int start, end; /* bytes of the text */
	int type;       /* PgQuery__Token */
	bool keyword;
} btok;

typedef struct child_text {
	char *text; /* the statement's bytes, NUL-terminated */
	int len;
	btok *tok; /* every token, comments included */
	size_t ntok;
	PgQuery__ParseResult *tree;
	const PgQuery__SelectStmt *sel; /* the statement */
} child_text;

static bool is_comment(int type)
{
	return type == PG_QUERY__TOKEN__SQL_COMMENT || type == PG_QUERY__TOKEN__C_COMMENT;
}

static void child_close(child_text *c)
{
	pf_free(c->text);
	pf_free(c->tok);
	if (c->tree)
		pg_query__parse_result__free_unpacked(c->tree, NULL);
	memset(c, 0, sizeof *c);
}

/* The tokens of c->text; 0 or -1 (scan error, nesting too deep). */
static int child_scan(child_text *c)
{
	PgQueryScanResult r = pg_query_scan(c->text);
	PgQuery__ScanResult *sr = NULL;
	if (!r.error)
		sr = pg_query__scan_result__unpack(NULL, r.pbuf.len, (const uint8_t *)r.pbuf.data);
	pg_query_free_scan_result(r);
	if (!sr)
		return -1;
	size_t cap = 0;
	long depth = 0, max = 0;
	for (size_t i = 0; i < sr->n_tokens; i++) {
		const PgQuery__ScanToken *t = sr->tokens[i];
		grow(&c->tok, &cap, c->ntok + 1, sizeof *c->tok);
		c->tok[c->ntok++] = (btok){.start = t->start, .end = t->end, .type = t->token,
					   .keyword = t->keyword_kind != PG_QUERY__KEYWORD_KIND__NO_KEYWORD};
		depth += opens(t->token) ? 1 : closes(t->token) ? -1 : 0;
		max = depth > max ? depth : max;
	}
	pg_query__scan_result__free_unpacked(sr, NULL);
	/* libpg_query reports U&'...' with an empty range and U&"..." as just its
	 * "U": such a token reaches up to the next one (analysis_scan.c) */
	for (size_t i = 0; i < c->ntok; i++) {
		btok *t = &c->tok[i];
		if (t->type != PG_QUERY__TOKEN__USCONST && t->type != PG_QUERY__TOKEN__UIDENT)
			continue;
		int end = i + 1 < c->ntok ? c->tok[i + 1].start : c->len;
		while (end > t->start && (c->text[end - 1] == ' ' || (c->text[end - 1] >= '\t' && c->text[end - 1] <= '\r')))
			end--;
		if (end > t->end)
			t->end = end;
	}
	for (size_t i = 0; i < c->ntok; i++)
		if (c->tok[i].start < 0 || c->tok[i].end > c->len || c->tok[i].start > c->tok[i].end ||
		    (i && c->tok[i].start < c->tok[i - 1].end))
			return -1;
	return max <= MAX_NESTING ? 0 : -1;
}

/* Scan and parse text[0..len): one SELECT.  0 or -1. */
static int child_open(child_text *c, const char *text, size_t len)
{
	memset(c, 0, sizeof *c);
	if (len == 0 || len > INT32_MAX / 2 || memchr(text, '\0', len))
		return -1;
	c->text = pf_malloc(len + 1);
	memcpy(c->text, text, len);
	c->text[len] = '\0';
	c->len = (int)len;
	if (child_scan(c) < 0)
		return -1;
	PgQueryProtobufParseResult pr = pg_query_parse_protobuf(c->text);
	if (!pr.error)
		c->tree = pg_query__parse_result__unpack(NULL, pr.parse_tree.len, (const uint8_t *)pr.parse_tree.data);
	pg_query_free_protobuf_parse_result(pr);
	if (!c->tree || c->tree->n_stmts != 1 || !c->tree->stmts[0]->stmt ||
	    c->tree->stmts[0]->stmt->node_case != PG_QUERY__NODE__NODE_SELECT_STMT)
		return -1;
	c->sel = c->tree->stmts[0]->stmt->select_stmt;
	return 0;
}

/* Index of the token starting at byte `start`, or -1. */
static long tok_at(const child_text *c, int start)
{
	size_t lo = 0, hi = c->ntok;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->tok[mid].start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->ntok && c->tok[lo].start == start ? (long)lo : -1;
}

static int tok_type(const child_text *c, long i)
{
	return i >= 0 && (size_t)i < c->ntok ? c->tok[i].type : -1;
}

/* The next / previous token that is not a comment (-1 / ntok past the ends). */
static long tok_next(const child_text *c, long i)
{
	for (i++; (size_t)i < c->ntok; i++)
		if (!is_comment(c->tok[i].type))
			return i;
	return (long)c->ntok;
}

static long tok_prev(const child_text *c, long i)
{
	for (i--; i >= 0; i--)
		if (!is_comment(c->tok[i].type))
			return i;
	return -1;
}

/* ---- the key's equality ---------------------------------------------------- */

typedef enum cast_kind {
	CAST_NONE,
	CAST_POSTFIX, /* v::type */
	CAST_FUNC,    /* CAST(v AS type) */
	CAST_PREFIX,  /* type 'v' */
} cast_kind;

typedef enum key_kind {
	KEY_PARAM,  /* $n */
	KEY_NUMBER, /* ICONST / FCONST, a folded minus included */
	KEY_STRING, /* SCONST / USCONST */
} key_kind;

/* Where the key sits: the conjunct `col = v` (or `v = col`). */
typedef struct keypos {
	int start, end; /* the slot's bytes */
	key_kind kind;
	int param; /* n for $n */
	cast_kind cast;
	long op, op_last;     /* token range of the operator: '=' or OPERATOR(schema.=) */
	bool op_is_eq;        /* it is the '=' token */
	long col_first, col_last; /* token range of the column side */
	long val_first, val_last; /* token range of the value side */
} keypos;

static const char *string_of(const PgQuery__Node *n)
{
	return n && n->node_case == PG_QUERY__NODE__NODE_STRING ? n->string->sval : NULL;
}

/* n is the slot's value at loc, bare or under one cast. */
static bool value_at(const PgQuery__Node *n, int loc, bool *cast)
{
	*cast = false;
	if (n && n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST && n->type_cast->arg) {
		*cast = true;
		n = n->type_cast->arg;
	}
	if (!n)
		return false;
	if (n->node_case == PG_QUERY__NODE__NODE_A_CONST)
		return !n->a_const->isnull && n->a_const->location == loc;
	if (n->node_case == PG_QUERY__NODE__NODE_PARAM_REF)
		return n->param_ref->location == loc;
	return false;
}

typedef struct eq_found {
	const PgQuery__AExpr *eq;
	const PgQuery__ColumnRef *col;
	bool value_left; /* v = col */
	bool cast;
} eq_found;

/* The AND-conjunct of e that is `column = <value at loc>` (either way round). */
static bool find_eq(const PgQuery__Node *e, int loc, eq_found *f)
{
	if (!e)
		return false;
	if (e->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
	    e->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR) {
		for (size_t i = 0; i < e->bool_expr->n_args; i++)
			if (find_eq(e->bool_expr->args[i], loc, f))
				return true;
		return false;
	}
	if (e->node_case != PG_QUERY__NODE__NODE_A_EXPR)
		return false;
	const PgQuery__AExpr *a = e->a_expr;
	const char *op = a->n_name ? string_of(a->name[a->n_name - 1]) : NULL;
	if (a->kind != PG_QUERY__A__EXPR__KIND__AEXPR_OP || !op || strcmp(op, "=") != 0 || !a->lexpr || !a->rexpr)
		return false;
	for (int left = 0; left < 2; left++) {
		const PgQuery__Node *col = left ? a->rexpr : a->lexpr, *val = left ? a->lexpr : a->rexpr;
		if (col->node_case == PG_QUERY__NODE__NODE_COLUMN_REF && value_at(val, loc, &f->cast)) {
			*f = (eq_found){.eq = a, .col = col->column_ref, .value_left = left, .cast = f->cast};
			return true;
		}
	}
	return false;
}

static bool ends_conjunct_forward(int type)
{
	switch (type) {
	case PG_QUERY__TOKEN__AND:
	case PG_QUERY__TOKEN__OR:
	case PG_QUERY__TOKEN__GROUP_P:
	case PG_QUERY__TOKEN__HAVING:
	case PG_QUERY__TOKEN__WINDOW:
	case PG_QUERY__TOKEN__ORDER:
	case PG_QUERY__TOKEN__LIMIT:
	case PG_QUERY__TOKEN__OFFSET:
	case PG_QUERY__TOKEN__FETCH:
	case PG_QUERY__TOKEN__FOR:
	case PG_QUERY__TOKEN__UNION:
	case PG_QUERY__TOKEN__INTERSECT:
	case PG_QUERY__TOKEN__EXCEPT:
	case PG_QUERY__TOKEN__ASCII_59:
		return true;
	default:
		return false;
	}
}

/* The operand after token op: up to the token before the conjunct ends (at
 * nesting depth 0: AND, a clause keyword, an unmatched ')' , the end). */
static bool operand_after(const child_text *c, long op, long *first, long *last)
{
	long depth = 0, i = tok_next(c, op), prev = -1;
	*first = i;
	for (; (size_t)i < c->ntok; prev = i, i = tok_next(c, i)) {
		int t = c->tok[i].type;
		if (opens(t))
			depth++;
		else if (closes(t) && depth-- == 0)
			break;
		else if (depth == 0 && ends_conjunct_forward(t))
			break;
	}
	*last = prev;
	return prev >= *first;
}

/* The operand before token op: back to the token after AND / WHERE / an
 * unmatched '(' / the start. */
static bool operand_before(const child_text *c, long op, long *first, long *last)
{
	long depth = 0, i = tok_prev(c, op), prev = -1;
	*last = i;
	for (; i >= 0; prev = i, i = tok_prev(c, i)) {
		int t = c->tok[i].type;
		if (closes(t))
			depth++;
		else if (opens(t) && depth-- == 0)
			break;
		else if (depth == 0 && (t == PG_QUERY__TOKEN__AND || t == PG_QUERY__TOKEN__OR ||
					t == PG_QUERY__TOKEN__WHERE))
			break;
	}
	*first = prev;
	return prev >= 0 && prev <= *last;
}

/* Drop balanced parentheses around the whole range. */
static void strip_parens(const child_text *c, long *first, long *last)
{
	while (*first < *last && tok_type(c, *first) == PG_QUERY__TOKEN__ASCII_40 &&
	       tok_type(c, *last) == PG_QUERY__TOKEN__ASCII_41) {
		long depth = 0, i;
		for (i = *first; i <= *last; i = tok_next(c, i)) {
			int t = tok_type(c, i);
			if (opens(t))
				depth++;
			else if (closes(t) && --depth == 0)
				break;
		}
		if (i != *last)
			return; /* (a) = (b): the first '(' closes earlier */
		*first = tok_next(c, *first);
		*last = tok_prev(c, *last);
	}
}

static bool is_name_token(const btok *t)
{
	return t->type == PG_QUERY__TOKEN__IDENT || t->type == PG_QUERY__TOKEN__UIDENT || t->keyword;
}

/* The column side is exactly the column reference: name(.name)*. */
static bool column_tokens_ok(const child_text *c, long first, long last, const PgQuery__ColumnRef *col)
{
	strip_parens(c, &first, &last);
	if (first < 0 || first > last || c->tok[first].start != col->location)
		return false;
	size_t names = 0;
	bool want_name = true;
	for (long i = first; i <= last; i = tok_next(c, i)) {
		const btok *t = &c->tok[i];
		if (want_name ? !is_name_token(t) : t->type != PG_QUERY__TOKEN__ASCII_46)
			return false;
		names += want_name;
		want_name = !want_name;
	}
	return !want_name && names == col->n_fields;
}

/* How the slot's value is cast, from the tokens around it. */
static cast_kind cast_of(const child_text *c, long slot_first, long slot_last)
{
	long i = tok_next(c, slot_last);
	while (tok_type(c, i) == PG_QUERY__TOKEN__ASCII_41)
		i = tok_next(c, i);
	if (tok_type(c, i) == PG_QUERY__TOKEN__TYPECAST)
		return CAST_POSTFIX;
	i = tok_prev(c, slot_first);
	if (tok_type(c, i) != PG_QUERY__TOKEN__ASCII_40)
		return CAST_PREFIX;
	while (tok_type(c, i) == PG_QUERY__TOKEN__ASCII_40)
		i = tok_prev(c, i);
	return tok_type(c, i) == PG_QUERY__TOKEN__CAST ? CAST_FUNC : CAST_PREFIX;
}

/* Locate the key slot (bytes [start, end) of the child text) as the value of
 * a `column = value` conjunct of where.  0 or -1. */
static int locate_key(const child_text *c, const PgQuery__Node *where, int start, int end, keypos *k)
{
	memset(k, 0, sizeof *k);
	long first = tok_at(c, start);
	if (first < 0 || end <= start || end > c->len)
		return -1;
	long last = first;
	while ((size_t)last < c->ntok && c->tok[last].end < end)
		last = tok_next(c, last);
	if ((size_t)last >= c->ntok || c->tok[last].end != end)
		return -1;
	int type = c->tok[last].type;
	if (type == PG_QUERY__TOKEN__PARAM && first == last) {
		k->kind = KEY_PARAM;
		k->param = atoi(c->text + start + 1);
	} else if ((type == PG_QUERY__TOKEN__ICONST || type == PG_QUERY__TOKEN__FCONST) &&
		   (first == last || (tok_next(c, first) == last && tok_type(c, first) == PG_QUERY__TOKEN__ASCII_45))) {
		k->kind = KEY_NUMBER;
	} else if ((type == PG_QUERY__TOKEN__SCONST || type == PG_QUERY__TOKEN__USCONST) && first == last) {
		k->kind = KEY_STRING;
	} else {
		return -1; /* bit strings, ... */
	}
	eq_found f;
	if (!find_eq(where, start, &f))
		return -1;
	k->start = start;
	k->end = end;
	k->op = tok_at(c, f.eq->location);
	if (k->op < 0)
		return -1;
	k->op_is_eq = tok_type(c, k->op) == PG_QUERY__TOKEN__ASCII_61;
	k->op_last = k->op;
	if (tok_type(c, k->op) == PG_QUERY__TOKEN__OPERATOR) {
		while ((size_t)k->op_last < c->ntok && tok_type(c, k->op_last) != PG_QUERY__TOKEN__ASCII_41)
			k->op_last = tok_next(c, k->op_last);
		if ((size_t)k->op_last >= c->ntok)
			return -1;
	}
	long lf, ll, rf, rl;
	if (!operand_before(c, k->op, &lf, &ll) || !operand_after(c, k->op_last, &rf, &rl))
		return -1;
	k->col_first = f.value_left ? rf : lf;
	k->col_last = f.value_left ? rl : ll;
	k->val_first = f.value_left ? lf : rf;
	k->val_last = f.value_left ? ll : rl;
	if (!column_tokens_ok(c, k->col_first, k->col_last, f.col))
		return -1;
	if (c->tok[k->val_first].start > start || c->tok[k->val_last].end < end)
		return -1;
	k->cast = CAST_NONE;
	if (f.cast) {
		k->cast = cast_of(c, first, last);
	} else {
		long vf = k->val_first, vl = k->val_last;
		strip_parens(c, &vf, &vl);
		if (vf != first || vl != last)
			return -1;
	}
	return 0;
}

/* ---- forms --------------------------------------------------------------- */

rw_batch_form rw_batch_form_for(const rw_shape *child, size_t slot)
{
	const uint32_t never =
		RW_FOR_UPDATE | RW_HAS_SET_OP | RW_HAS_CTE | RW_TOUCHES_TEMP | RW_SELECT_INTO | RW_WRITABLE_CTE;
	const uint32_t lateral = RW_HAS_LIMIT | RW_HAS_OFFSET | RW_HAS_ORDER_BY | RW_HAS_GROUP_BY | RW_HAS_AGGREGATE |
				 RW_HAS_DISTINCT | RW_HAS_WINDOW;
	if (!child || child->kind != RW_KIND_READ || slot >= child->nslots || (child->flags & never))
		return RW_BATCH_NONE;
	const rw_slot *s = &child->slots[slot];
	if (s->rel_index < 0 || !s->column)
		return RW_BATCH_NONE;
	/* the analysis found the slot in the EXISTS subquery's WHERE (rw_exists_inner,
	 * as plan_open looks for it) */
	if (child->flags & RW_EXISTS_QUERY)
		return RW_BATCH_EXISTS;
	/* IN only for one table: a join's row order follows its join method, which
	 * a many-key IN plans differently from one key (LATERAL keeps the child's
	 * plan per key). */
	return (child->flags & lateral) || child->nrelations != 1 ? RW_BATCH_LATERAL : RW_BATCH_IN;
}

/* ---- edits: the child's text with byte ranges replaced ------------------- */

typedef struct edit {
	int start, end;  /* bytes of the child text replaced */
	size_t off, len; /* the replacement, in edits.repl */
} edit;

typedef struct edits {
	edit *v;
	size_t n, cap;
	pf_sb repl;
} edits;

/* Start an edit of [start, end): append its replacement to e->repl, then edit_close(). */
static pf_sb *edit_open(edits *e, int start, int end)
{
	grow(&e->v, &e->cap, e->n + 1, sizeof *e->v);
	e->v[e->n] = (edit){.start = start, .end = end, .off = e->repl.len};
	return &e->repl;
}

static void edit_close(edits *e)
{
	e->v[e->n].len = e->repl.len - e->v[e->n].off;
	e->n++;
}

static void edits_free(edits *e)
{
	pf_free(e->v);
	pf_sb_free(&e->repl);
}

static int cmp_edit(const void *a, const void *b)
{
	const edit *x = a, *y = b;
	return (x->start > y->start) - (x->start < y->start);
}

/* The child's text with the edits applied, appended to out.  -1 when two overlap. */
static int edits_apply(edits *e, const child_text *c, pf_sb *out)
{
	qsort(e->v, e->n, sizeof *e->v, cmp_edit);
	int at = 0;
	for (size_t i = 0; i < e->n; i++) {
		const edit *d = &e->v[i];
		if (d->start < at)
			return -1;
		pf_sb_append_n(out, c->text + at, (size_t)(d->start - at));
		if (d->len)
			pf_sb_append_n(out, e->repl.data + d->off, d->len);
		at = d->end;
	}
	pf_sb_append_n(out, c->text + at, (size_t)(c->len - at));
	/* a trailing -- comment would swallow what follows */
	if (c->ntok && c->tok[c->ntok - 1].type == PG_QUERY__TOKEN__SQL_COMMENT)
		pf_sb_append(out, "\n");
	return 0;
}

/* ---- the plan for one batch ---------------------------------------------- */

typedef struct plan {
	const rw_batch_request *req;
	child_text c;
	keypos k;
	keyset keys;
	bool lateral_ok;        /* the key can be typed for LATERAL/EXISTS (plan_lateral_type) */
	const char *slot_type;  /* LATERAL/EXISTS: the key's cast at the slot, NULL: none (the child's cast) */
	const char *param_type; /* a $n key: its own type's name (for its other occurrences) */
	const char *split_type; /* IN: the split column's type, NULL when IN would not be exact */
	size_t key_uses;        /* occurrences of a $n key */
} plan;

static uint32_t param_type(const rw_batch_request *req, int n)
{
	if (n < 1 || (size_t)n > req->nparams || !req->param_types)
		return 0;
	return req->param_types[n - 1];
}

/* The type the key takes at the slot in LATERAL/EXISTS (batch.h, "Exactness"). */
static int plan_lateral_type(plan *p)
{
	const rw_batch_request *req = p->req;
	switch (p->k.kind) {
	case KEY_PARAM: {
		uint32_t t = param_type(req, p->k.param);
		p->slot_type = is_int_type(t) ? "bigint" : type_name(t);
		return p->slot_type ? 0 : -1;
	}
	case KEY_NUMBER:
		if (req->key_type == OID_OID)
			p->slot_type = "oid";
		else if (all_keys(&p->keys, int8_syntax))
			p->slot_type = "bigint";
		else if (all_keys(&p->keys, number_syntax))
			p->slot_type = "numeric";
		else
			return -1;
		return 0;
	case KEY_STRING:
		if (p->k.cast == CAST_PREFIX)
			return -1;
		if (p->k.cast != CAST_NONE) {
			p->slot_type = NULL; /* text under the child's own cast */
			return 0;
		}
		if (req->column_type == 0 && is_text_like(req->key_type))
			return -1;
		p->slot_type = type_name(req->column_type ? req->column_type : req->key_type);
		if (!p->slot_type && req->column_type)
			p->slot_type = req->column_type_name; /* an enum, domain or extension type */
		return p->slot_type ? 0 : -1;
	}
	return -1;
}

/* The IN form's split column type, or NULL when splitting would not be exact. */
static const char *plan_split_type(const plan *p)
{
	const rw_batch_request *req = p->req;
	if (!p->k.op_is_eq || p->key_uses > 1 || p->c.sel->n_target_list == 0)
		return NULL;
	switch (p->k.kind) {
	case KEY_PARAM: {
		uint32_t t = param_type(req, p->k.param);
		if (is_int_type(t))
			return all_keys(&p->keys, int_canonical) ? "bigint" : NULL;
		if (t == OID_UUID)
			return all_keys(&p->keys, uuid_canonical) ? "uuid" : NULL;
		return t == OID_TEXT || t == OID_VARCHAR ? "text" : NULL;
	}
	case KEY_NUMBER:
		return p->k.cast == CAST_NONE && all_keys(&p->keys, int_canonical) ? "bigint" : NULL;
	case KEY_STRING:
		if (req->key_type == OID_UUID)
			return all_keys(&p->keys, uuid_canonical) ? "uuid" : NULL;
		if (p->k.cast != CAST_NONE)
			return NULL;
		if (is_int_type(req->key_type))
			return all_keys(&p->keys, int_canonical) ? "bigint" : NULL;
		if ((req->key_type == OID_TEXT || req->key_type == OID_VARCHAR) &&
		    (req->column_type == OID_TEXT || req->column_type == OID_VARCHAR))
			return "text";
		return NULL;
	}
	return NULL;
}

static int plan_open(plan *p, const rw_batch_request *req, rw_batch_form form)
{
	memset(p, 0, sizeof *p);
	p->req = req;
	const rw_stmt *st = req->stmt;
	if (!req->sql || !st || !st->shape || req->slot >= st->shape->nslots || !st->values || st->location < 0 ||
	    st->length <= 0 || (size_t)st->location + (size_t)st->length > req->sql_len)
		return -1;
	if (keyset_init(&p->keys, req) < 0)
		return -1;
	if (child_open(&p->c, req->sql + st->location, (size_t)st->length) < 0)
		return -1;
	const rw_value *v = &st->values[req->slot];
	const PgQuery__SelectStmt *where_of = p->c.sel;
	if (form == RW_BATCH_EXISTS && !(where_of = rw_exists_inner(p->c.sel)))
		return -1;
	if (locate_key(&p->c, where_of->where_clause, v->location - st->location,
		       v->location - st->location + v->length, &p->k) < 0)
		return -1;
	if (p->k.kind == KEY_PARAM) {
		uint32_t t = param_type(req, p->k.param);
		if (!(p->param_type = type_name(t)))
			return -1;
		for (size_t i = 0; i < p->c.ntok; i++) {
			const btok *t2 = &p->c.tok[i];
			p->key_uses += t2->type == PG_QUERY__TOKEN__PARAM && atoi(p->c.text + t2->start + 1) == p->k.param;
		}
	}
	p->lateral_ok = plan_lateral_type(p) == 0;
	p->split_type = plan_split_type(p);
	return p->lateral_ok || p->split_type ? 0 : -1;
}

static void plan_close(plan *p)
{
	child_close(&p->c);
	pf_free(p->keys.idx);
}

/* Every $n but those inside [skip_start, skip_end) as an edit: the key's as
 * (pgfold_k.pgfold_key::<type>), others as their value.  0 or -1. */
static int edit_params(const plan *p, edits *e, int skip_start, int skip_end)
{
	const rw_batch_request *req = p->req;
	for (size_t i = 0; i < p->c.ntok; i++) {
		const btok *t = &p->c.tok[i];
		if (t->type != PG_QUERY__TOKEN__PARAM || (t->start >= skip_start && t->start < skip_end))
			continue;
		int n = atoi(p->c.text + t->start + 1);
		pf_sb *r = edit_open(e, t->start, t->end);
		if (p->k.kind == KEY_PARAM && n == p->k.param) {
			bool slot = t->start == p->k.start;
			pf_sb_appendf(r, "(pgfold_k.pgfold_key::%s)", slot ? p->slot_type : p->param_type);
		} else {
			uint32_t type = param_type(req, n);
			const char *name = type_name(type);
			if (!name || !req->param_values || !req->param_lengths)
				return -1;
			const char *val = req->param_values[n - 1];
			pf_sb_append(r, "(");
			if (!val)
				pf_sb_appendf(r, "NULL::%s", name);
			else if (rw_batch_literal(r, val, req->param_lengths[n - 1], type) < 0)
				return -1;
			pf_sb_append(r, ")");
		}
		edit_close(e);
	}
	return 0;
}

static const char *tok_text(const child_text *c, long i)
{
	return c->text + c->tok[i].start;
}

/* One item of the IN list: the value side with the key in it. */
static void append_in_item(const plan *p, pf_sb *out, const char *key, size_t n)
{
	const child_text *c = &p->c;
	int vstart = c->tok[p->k.val_first].start, vend = c->tok[p->k.val_last].end;
	pf_sb_append_n(out, c->text + vstart, (size_t)(p->k.start - vstart));
	if (p->k.kind == KEY_PARAM) {
		pf_sb_append(out, "(");
		append_quoted(out, key, n);
		pf_sb_appendf(out, "::%s)", p->slot_type);
	} else if (p->k.kind == KEY_NUMBER) {
		pf_sb_append_n(out, key, n);
	} else {
		append_quoted(out, key, n);
	}
	pf_sb_append_n(out, c->text + p->k.end, (size_t)(vend - p->k.end));
}

static int build_in(const plan *p, pf_sb *out)
{
	const child_text *c = &p->c;
	const PgQuery__Node *t0 = c->sel->target_list[0];
	if (t0->node_case != PG_QUERY__NODE__NODE_RES_TARGET || tok_at(c, t0->res_target->location) < 0)
		return -1;
	const char *col = tok_text(c, p->k.col_first);
	size_t col_len = (size_t)(c->tok[p->k.col_last].end - c->tok[p->k.col_first].start);
	int eq_start = c->tok[p->k.col_first < p->k.val_first ? p->k.col_first : p->k.val_first].start;
	int eq_end = c->tok[p->k.col_last > p->k.val_last ? p->k.col_last : p->k.val_last].end;

	edits e = {0};
	pf_sb *r = edit_open(&e, t0->res_target->location, t0->res_target->location);
	pf_sb_append_n(r, col, col_len);
	pf_sb_appendf(r, "::%s AS pgfold_key, ", p->split_type);
	edit_close(&e);
	r = edit_open(&e, eq_start, eq_end);
	pf_sb_append_n(r, col, col_len);
	pf_sb_append(r, " IN (");
	for (size_t i = 0; i < p->keys.n; i++) {
		size_t k = p->keys.idx[i];
		if (i)
			pf_sb_append(r, ", ");
		append_in_item(p, r, p->keys.v[k], p->keys.len[k]);
	}
	pf_sb_append(r, ")");
	edit_close(&e);
	int rc = edit_params(p, &e, eq_start, eq_end);
	if (rc == 0)
		rc = edits_apply(&e, c, out);
	edits_free(&e);
	return rc;
}

/* LATERAL (row_number: true) and EXISTS (false). */
static int build_lateral(const plan *p, pf_sb *out, bool row_number)
{
	edits e = {0};
	int rc = 0;
	if (p->k.kind != KEY_PARAM) {
		pf_sb *r = edit_open(&e, p->k.start, p->k.end);
		if (p->slot_type)
			pf_sb_appendf(r, "(pgfold_k.pgfold_key::%s)", p->slot_type);
		else
			pf_sb_append(r, "(pgfold_k.pgfold_key)");
		edit_close(&e);
	}
	rc = edit_params(p, &e, 0, 0);
	if (rc == 0) {
		pf_sb_append(out, "SELECT pgfold_k.pgfold_key, pgfold_s.* FROM (VALUES ");
		for (size_t i = 0; i < p->keys.n; i++) {
			size_t k = p->keys.idx[i];
			pf_sb_append(out, i ? ", (" : "(");
			append_quoted(out, p->keys.v[k], p->keys.len[k]);
			pf_sb_appendf(out, ", %zu)", i + 1);
		}
		pf_sb_append(out, ") AS pgfold_k(pgfold_key, pgfold_ord) CROSS JOIN LATERAL (");
		if (row_number)
			pf_sb_append(out, "SELECT row_number() OVER () AS pgfold_row, pgfold_c.* FROM (");
		rc = edits_apply(&e, &p->c, out);
		if (row_number)
			pf_sb_append(out, ") AS pgfold_c");
		pf_sb_append(out, ") AS pgfold_s ORDER BY pgfold_k.pgfold_ord");
		if (row_number)
			pf_sb_append(out, ", 2");
	}
	edits_free(&e);
	return rc;
}

static bool parses(const char *sql)
{
	PgQueryProtobufParseResult pr = pg_query_parse_protobuf(sql);
	bool ok = !pr.error;
	pg_query_free_protobuf_parse_result(pr);
	return ok;
}

int rw_batch_build(const rw_batch_request *req, pf_sb *out, rw_batch_layout *layout)
{
	if (!req || !req->stmt || !req->stmt->shape || !out || !layout)
		return -1;
	rw_batch_form form = rw_batch_form_for(req->stmt->shape, req->slot);
	if (form == RW_BATCH_NONE ||
	    (req->form != RW_BATCH_NONE && (req->form == RW_BATCH_EXISTS) != (form == RW_BATCH_EXISTS)))
		return -1;
	if (req->form == RW_BATCH_LATERAL && form == RW_BATCH_IN)
		form = RW_BATCH_LATERAL;
	plan p;
	pf_sb sql;
	pf_sb_init(&sql);
	int rc = plan_open(&p, req, form);
	if (rc == 0 && form == RW_BATCH_IN && !p.split_type)
		form = RW_BATCH_LATERAL;
	if (rc == 0 && form != RW_BATCH_IN && !p.lateral_ok)
		rc = -1;
	if (rc == 0)
		rc = form == RW_BATCH_IN ? build_in(&p, &sql) : build_lateral(&p, &sql, form == RW_BATCH_LATERAL);
	if (rc == 0 && !parses(pf_sb_str(&sql)))
		rc = -1;
	if (rc == 0) {
		pf_sb_append_n(out, sql.data, sql.len);
		*layout = (rw_batch_layout){.form = form,
					    .extra_columns = form == RW_BATCH_LATERAL ? 2 : 1,
					    .grouped = form != RW_BATCH_IN,
					    .nkeys = p.keys.n};
	}
	plan_close(&p);
	pf_sb_free(&sql);
	return rc;
}
