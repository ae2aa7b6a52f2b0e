/*
 * analysis_scan.c — the scanner side of the analysis: pg_query_scan's tokens
 * (decoded straight from its protobuf bytes, no per-token allocation), the
 * split of a query string into statements at top-level ';', the shape key of
 * a statement, and the hash both caches use.
 *
 * Shape key: for every token but comments, its token type; then, unless it
 * is a literal (ICONST FCONST SCONST BCONST XCONST USCONST) or a keyword (the
 * type already names it; case does not matter), its text as written.  The
 * one literal kept is the escape character after UESCAPE, which changes the
 * name a U&"..." identifier decodes to; and a comment right after a U&
 * token is kept, since libpg_query then misses the UESCAPE.  So two
 * statements share a key exactly when their token streams are equal but for
 * the values of their literals (and the case of keywords), which the grammar
 * cannot tell apart: they parse to the same tree.
 */
#include "analysis_int.h"

#include <ctype.h>
#include <pg_query.h>
#include <string.h>

#include "../common/alloc.h"

void rw_grow(void *arrayp, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return;
	size_t n = *cap ? *cap : 8;
	while (n < need)
		n *= 2;
	void **pp = arrayp;
	*pp = pf_realloc(*pp, n * elem);
	*cap = n;
}

void rw_scan_free(rw_scan *s)
{
	pf_free(s->tok);
	pf_free(s->piece);
	memset(s, 0, sizeof *s);
}

bool rw_token_is_literal(int type)
{
	switch (type) {
	case PG_QUERY__TOKEN__ICONST:
	case PG_QUERY__TOKEN__FCONST:
	case PG_QUERY__TOKEN__SCONST:
	case PG_QUERY__TOKEN__BCONST:
	case PG_QUERY__TOKEN__XCONST:
	case PG_QUERY__TOKEN__USCONST:
		return true;
	default:
		return false;
	}
}

bool rw_token_is_slot(int type)
{
	return type == PG_QUERY__TOKEN__PARAM || rw_token_is_literal(type);
}

bool rw_token_is_comment(int type)
{
	return type == PG_QUERY__TOKEN__SQL_COMMENT || type == PG_QUERY__TOKEN__C_COMMENT;
}

/* ---- protobuf decoding of PgQuery__ScanResult ---------------------------- */

static int get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (int shift = 0; shift < 64 && *pp < end; shift += 7) {
		uint8_t c = *(*pp)++;
		x |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* Skip a field of wire type wt. */
static int skip_field(const uint8_t **pp, const uint8_t *end, unsigned wt)
{
	uint64_t v;
	switch (wt) {
	case 0:
		return get_varint(pp, end, &v);
	case 1:
		v = 8;
		break;
	case 2:
		if (get_varint(pp, end, &v) < 0)
			return -1;
		break;
	case 5:
		v = 4;
		break;
	default:
		return -1;
	}
	if (v > (uint64_t)(end - *pp))
		return -1;
	*pp += v;
	return 0;
}

/* One ScanToken message (pg_query.proto): start = 1, end = 2, token = 4, keyword_kind = 5. */
static int decode_token(const uint8_t *p, const uint8_t *end, rw_token *t)
{
	uint64_t f[6] = {0, 0, 0, 0, 0, 0};
	while (p < end) {
		uint64_t tag, v;
		if (get_varint(&p, end, &tag) < 0)
			return -1;
		unsigned field = (unsigned)(tag >> 3), wt = (unsigned)(tag & 7);
		if (field >= 1 && field <= 5 && wt == 0) {
			if (get_varint(&p, end, &v) < 0)
				return -1;
			f[field] = v;
		} else if (skip_field(&p, end, wt) < 0) {
			return -1;
		}
	}
	if (f[1] > INT32_MAX || f[2] > INT32_MAX || f[2] < f[1] || f[4] > INT32_MAX)
		return -1;
	t->start = (int)f[1];
	t->end = (int)f[2];
	t->type = (int)f[4];
	t->keyword = f[5] != 0;
	return 0;
}

static int decode_scan(rw_scan *s, const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	while (p < end) {
		uint64_t tag, v;
		if (get_varint(&p, end, &tag) < 0)
			return -1;
		if ((tag >> 3) != 2 || (tag & 7) != 2) {
			if (skip_field(&p, end, (unsigned)(tag & 7)) < 0)
				return -1;
			continue;
		}
		if (get_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
			return -1;
		rw_grow(&s->tok, &s->captok, s->ntok + 1, sizeof *s->tok);
		if (decode_token(p, p + v, &s->tok[s->ntok]) < 0)
			return -1;
		s->ntok++;
		p += v;
	}
	return 0;
}

/* ---- pieces -------------------------------------------------------------- */

static void add_piece(rw_scan *s, size_t first, size_t end)
{
	bool any = false;
	for (size_t i = first; i < end && !any; i++)
		any = !rw_token_is_comment(s->tok[i].type);
	if (!any)
		return;
	rw_grow(&s->piece, &s->cappiece, s->npiece + 1, sizeof *s->piece);
	s->piece[s->npiece++] = (rw_piece){.first = first, .end = end};
}

/* Keywords that start a clause or separate the items of a flat list: a
 * run of operators does not go on across them. */
static bool ends_run(int type)
{
	switch (type) {
	case PG_QUERY__TOKEN__AND:
	case PG_QUERY__TOKEN__OR:
	case PG_QUERY__TOKEN__WHEN:
	case PG_QUERY__TOKEN__THEN:
	case PG_QUERY__TOKEN__ELSE:
	case PG_QUERY__TOKEN__SELECT:
	case PG_QUERY__TOKEN__FROM:
	case PG_QUERY__TOKEN__WHERE:
	case PG_QUERY__TOKEN__GROUP_P:
	case PG_QUERY__TOKEN__HAVING:
	case PG_QUERY__TOKEN__ORDER:
	case PG_QUERY__TOKEN__BY:
	case PG_QUERY__TOKEN__LIMIT:
	case PG_QUERY__TOKEN__OFFSET:
	case PG_QUERY__TOKEN__VALUES:
	case PG_QUERY__TOKEN__SET:
	case PG_QUERY__TOKEN__RETURNING:
	case PG_QUERY__TOKEN__ON:
	case PG_QUERY__TOKEN__USING:
	case PG_QUERY__TOKEN__JOIN:
	case PG_QUERY__TOKEN__AS:
	case PG_QUERY__TOKEN__WITH:
	case PG_QUERY__TOKEN__INTO:
	case PG_QUERY__TOKEN__ALL:
	case PG_QUERY__TOKEN__DISTINCT:
		return true;
	default:
		return false;
	}
}

/*
 * An upper estimate of the parse tree's depth, in "levels": 3 per open
 * parenthesis or bracket (a subquery nests several nodes), plus the run of
 * operators and keywords (NOT, IS, LIKE, type names, ...) since the last
 * ',' ';' or clause keyword at that level (a + b + c ... and x::int::int ...
 * are left-deep trees; AND/OR and CASE WHEN lists are flat).
 * libpg_query's protobuf output and protobuf-c's unpack recurse without a
 * depth check and overflow an 8 MB stack at about 1,500 nested subqueries or
 * 4,500 chained operators; RW_MAX_DEPTH keeps a wide margin below that.
 */
static void estimate_depth(rw_scan *s)
{
	long open = 0, run = 0, max = 0;
	for (size_t i = 0; i < s->ntok; i++) {
		const rw_token *t = &s->tok[i];
		switch (t->type) {
		case PG_QUERY__TOKEN__ASCII_40:
		case PG_QUERY__TOKEN__ASCII_91:
			open++;
			run = 0;
			break;
		case PG_QUERY__TOKEN__ASCII_41:
		case PG_QUERY__TOKEN__ASCII_93:
			open = open > 0 ? open - 1 : 0;
			break;
		case PG_QUERY__TOKEN__ASCII_44:
		case PG_QUERY__TOKEN__ASCII_59:
			run = 0;
			break;
		case PG_QUERY__TOKEN__ASCII_46:
		case PG_QUERY__TOKEN__IDENT:
		case PG_QUERY__TOKEN__UIDENT:
		case PG_QUERY__TOKEN__PARAM:
		case PG_QUERY__TOKEN__SQL_COMMENT:
		case PG_QUERY__TOKEN__C_COMMENT:
			break;
		default:
			if (rw_token_is_literal(t->type))
				break;
			if (ends_run(t->type))
				run = 0;
			else
				run++;
			break;
		}
		if (3 * open + run > max)
			max = 3 * open + run;
	}
	s->depth = max;
}

static void split(rw_scan *s)
{
	size_t first = 0;
	long depth = 0;
	for (size_t i = 0; i < s->ntok; i++) {
		int type = s->tok[i].type;
		if (type == PG_QUERY__TOKEN__ASCII_40)
			depth++;
		else if (type == PG_QUERY__TOKEN__ASCII_41)
			depth--;
		else if (type == PG_QUERY__TOKEN__ASCII_59 && depth == 0) {
			add_piece(s, first, i);
			first = i + 1;
		}
	}
	add_piece(s, first, s->ntok);
}

/* libpg_query reports U&'...' (USCONST) with an empty range and U&"..."
 * (UIDENT) as just its "U": such a token reaches up to the next token (only
 * white space lies between tokens; comments are tokens). */
static void fix_unicode_ends(rw_scan *s, const char *sql)
{
	for (size_t i = 0; i < s->ntok; i++) {
		rw_token *t = &s->tok[i];
		if (t->type != PG_QUERY__TOKEN__USCONST && t->type != PG_QUERY__TOKEN__UIDENT)
			continue;
		int end = i + 1 < s->ntok ? s->tok[i + 1].start : (int)strlen(sql);
		while (end > t->start && isspace((unsigned char)sql[end - 1]))
			end--;
		if (end > t->end)
			t->end = end;
	}
}

int rw_scan_text(rw_scan *s, const char *sql, char **err)
{
	s->ntok = s->npiece = 0;
	PgQueryScanResult r = pg_query_scan(sql);
	int rc = 0;
	if (r.error) {
		*err = pf_strdup(r.error->message ? r.error->message : "scan error");
		rc = -1;
	} else if (decode_scan(s, (const uint8_t *)r.pbuf.data, r.pbuf.len) < 0) {
		*err = pf_strdup("cannot decode the scanner's tokens");
		rc = -1;
	}
	pg_query_free_scan_result(r);
	if (rc == 0) {
		fix_unicode_ends(s, sql);
		split(s);
		estimate_depth(s);
	}
	return rc;
}

void rw_scan_pieces_from_ranges(rw_scan *s, const int *loc, const int *end, size_t n)
{
	s->npiece = 0;
	size_t i = 0;
	for (size_t k = 0; k < n; k++) {
		while (i < s->ntok && s->tok[i].start < loc[k])
			i++;
		size_t first = i;
		while (i < s->ntok && s->tok[i].start < end[k])
			i++;
		add_piece(s, first, i);
	}
}

const rw_token *rw_piece_lead(const rw_scan *s, const rw_piece *p)
{
	for (size_t i = p->first; i < p->end; i++)
		if (!rw_token_is_comment(s->tok[i].type))
			return &s->tok[i];
	return &s->tok[p->first];
}

size_t rw_piece_nslots(const rw_scan *s, const rw_piece *p)
{
	size_t n = 0;
	for (size_t i = p->first; i < p->end; i++)
		n += rw_token_is_slot(s->tok[i].type);
	return n;
}

/* ---- shape key ----------------------------------------------------------- */

static void key_put(char **buf, size_t *cap, size_t *len, const void *p, size_t n)
{
	rw_grow(buf, cap, *len + n + 1, 1);
	memcpy(*buf + *len, p, n);
	*len += n;
}

size_t rw_shape_key(const rw_scan *s, const rw_piece *p, const char *sql, char **buf, size_t *cap)
{
	size_t len = 0;
	int prev = 0;
	for (size_t i = p->first; i < p->end; i++) {
		const rw_token *t = &s->tok[i];
		int type = t->type;
		if (rw_token_is_comment(type)) {
			/* libpg_query 15 no longer sees a UESCAPE after a comment (PostgreSQL does):
			 * a comment right after U&"..." / U&'...' is part of the shape */
			if (prev == PG_QUERY__TOKEN__UIDENT || prev == PG_QUERY__TOKEN__USCONST) {
				unsigned char hdr[2] = {(unsigned char)(type & 0xff), (unsigned char)((type >> 8) & 0xff)};
				key_put(buf, cap, &len, hdr, sizeof hdr);
			}
			continue;
		}
		/* UESCAPE 'c' changes how U&"..." decodes: that literal is part of the shape */
		bool masked = rw_token_is_literal(type) && prev != PG_QUERY__TOKEN__UESCAPE;
		prev = type;
		unsigned char hdr[2 + 5];
		size_t h = 0;
		hdr[h++] = (unsigned char)(type & 0xff);
		hdr[h++] = (unsigned char)((type >> 8) & 0xff);
		bool text = !masked && !t->keyword;
		size_t n = (size_t)(t->end - t->start);
		if (text) {
			size_t v = n;
			do {
				hdr[h++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
				v >>= 7;
			} while (v && h < sizeof hdr);
		}
		key_put(buf, cap, &len, hdr, h);
		if (text)
			key_put(buf, cap, &len, sql + t->start, n);
	}
	if (len == 0)
		rw_grow(buf, cap, 1, 1);
	return len;
}

/* ---- hash (MurmurHash64A, public domain, Austin Appleby) ----------------- */

uint64_t rw_hash(const void *p, size_t n, uint64_t seed)
{
	const uint64_t m = 0xc6a4a7935bd1e995ULL;
	const int r = 47;
	const unsigned char *d = p;
	uint64_t h = seed ^ (n * m);
	for (; n >= 8; n -= 8, d += 8) {
		uint64_t k;
		memcpy(&k, d, 8);
		k *= m;
		k ^= k >> r;
		k *= m;
		h ^= k;
		h *= m;
	}
	if (n) {
		uint64_t k = 0;
		for (size_t i = n; i-- > 0;)
			k = (k << 8) | d[i];
		h ^= k;
		h *= m;
	}
	h ^= h >> r;
	h *= m;
	h ^= h >> r;
	return h;
}
