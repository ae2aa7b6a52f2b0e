/*
 * analysis_shape.c — one parsed statement to an immutable rw_shape_obj.
 *
 * The walkers fill an rw_builder (pointing into the protobuf tree); then the
 * slots are laid over the statement's tokens: slot i is the i-th literal or
 * $n token, matched to the parse by location (a negative number's A_Const
 * sits on its '-'), which tells its column and whether its value starts at
 * the minus.  Matching by location, not by count, keeps literals the grammar
 * does not turn into constants (varchar(10), a NOTIFY payload) harmless and
 * ignores constants the grammar makes from keywords (EXTRACT(year ...),
 * SET search_path TO a, BEGIN ISOLATION LEVEL ...).  The INSERT VALUES
 * cells (analysis_write.c) find their slots the same way.  Last, everything is
 * copied into one block sized by a first dry pass, so a shape is one
 * allocation and its strings live exactly as long as it does.
 */
#include "analysis_int.h"
#include "analysis_write.h"

#include <pg_query.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"

static void builder_init(rw_builder *b)
{
	memset(b, 0, sizeof *b);
	b->fast = true;
	b->read_only = -1;
	b->tx_op = RW_TX_NONE;
	b->isolation = RW_ISO_DEFAULT;
}

static void builder_free(rw_builder *b)
{
	for (size_t i = 0; i < b->nfuncs; i++)
		pf_free(b->funcs[i]);
	pf_free(b->funcs);
	pf_free(b->rels);
	pf_free(b->eqs);
	pf_free(b->numlocs);
	pf_free(b->scope);
	pf_free(b->setting);
}

/* ---- slots --------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

static bool has_numloc(const rw_builder *b, int loc)
{
	return b->nnumlocs && bsearch(&loc, b->numlocs, b->nnumlocs, sizeof *b->numlocs, cmp_int) != NULL;
}

static int param_number(const char *p, size_t n)
{
	long v = 0;
	for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '9' && v <= 100000000; i++)
		v = v * 10 + (p[i] - '0');
	return (int)v;
}

/* Slot k of piece p: its number, column and folded minus; locs[k] the
 * location the parser gives its constant (the '-' of a folded minus). */
static void build_slots(const rw_builder *b, const char *sql, const rw_scan *s, const rw_piece *p, rw_slot *slots,
			unsigned char *neg, int *locs)
{
	size_t k = 0;
	const rw_token *prev = NULL;
	for (size_t i = p->first; i < p->end; i++) {
		const rw_token *t = &s->tok[i];
		if (rw_token_is_comment(t->type))
			continue;
		if (rw_token_is_slot(t->type)) {
			int loc = t->start;
			bool numeric = t->type == PG_QUERY__TOKEN__ICONST || t->type == PG_QUERY__TOKEN__FCONST;
			neg[k] = numeric && prev && prev->type == PG_QUERY__TOKEN__ASCII_45 && !has_numloc(b, t->start) &&
				 has_numloc(b, prev->start);
			if (neg[k])
				loc = prev->start;
			locs[k] = loc;
			slots[k] = (rw_slot){.rel_index = -1};
			if (t->type == PG_QUERY__TOKEN__PARAM)
				slots[k].param = param_number(sql + t->start + 1, (size_t)(t->end - t->start - 1));
			for (size_t e = 0; e < b->neqs; e++) {
				if (b->eqs[e].location == loc) {
					slots[k].rel_index = b->eqs[e].rel_index;
					slots[k].column = b->eqs[e].column;
					break;
				}
			}
			k++;
		}
		prev = t;
	}
}

/* The slot whose constant the parser puts at loc (locs ascend: text order), or -1. */
static int slot_at(const int *locs, size_t nslots, int loc)
{
	if (loc < 0 || !nslots)
		return -1;
	const int *hit = bsearch(&loc, locs, nslots, sizeof *locs, cmp_int);
	return hit ? (int)(hit - locs) : -1;
}

/* INSERT VALUES cells, from parser locations to slot indices (a new array). */
static int *insert_slots(const rw_write_facts *w, const int *locs, size_t nslots)
{
	size_t n = w->nrows * w->nins_cols;
	int *v = pf_calloc(n ? n : 1, sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = slot_at(locs, nslots, w->cells[i]);
	return v;
}

/* ---- one block ----------------------------------------------------------- */

typedef struct blk {
	char *base; /* NULL on the sizing pass */
	size_t off;
} blk;

static void *blk_take(blk *k, size_t n, size_t align)
{
	k->off = (k->off + align - 1) & ~(align - 1);
	void *p = k->base ? k->base + k->off : NULL;
	k->off += n;
	return p;
}

static const char *blk_str(blk *k, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = blk_take(k, n, 1);
	if (p)
		memcpy(p, s, n);
	return p;
}

typedef struct shape_parts {
	const rw_builder *b;
	const rw_write_facts *w;
	const int *insert_slots; /* w->nrows * w->nins_cols */
	const rw_slot *slots;
	const unsigned char *neg;
	size_t nslots;
	uint64_t fingerprint;
	const char *normalized;
	const char *key;
	size_t keylen;
} shape_parts;

/* An array of n copied names (NULL on the sizing pass). */
static const char *const *lay_names(blk *k, const char *const *names, size_t n)
{
	const char **v = blk_take(k, n * sizeof *v, alignof(const char *));
	for (size_t i = 0; i < n; i++) {
		const char *s = blk_str(k, names[i]);
		if (v)
			v[i] = s;
	}
	return v;
}

static rw_shape_obj *lay_out(blk *k, const shape_parts *in)
{
	const rw_builder *b = in->b;
	rw_shape_obj *sh = blk_take(k, sizeof *sh, alignof(rw_shape_obj));
	rw_relation *rels = blk_take(k, b->nrels * sizeof *rels, alignof(rw_relation));
	const char **funcs = blk_take(k, b->nfuncs * sizeof *funcs, alignof(const char *));
	rw_slot *slots = blk_take(k, in->nslots * sizeof *slots, alignof(rw_slot));
	unsigned char *neg = blk_take(k, in->nslots, 1);
	char *key = blk_take(k, in->keylen, 1);
	const char *const *set_cols = lay_names(k, in->w->set_cols, in->w->nset_cols);
	const char *const *ins_cols = lay_names(k, in->w->ins_cols, in->w->nins_cols);
	size_t ncells = in->w->nrows * in->w->nins_cols;
	int *cells = blk_take(k, ncells * sizeof *cells, alignof(int));
	for (size_t i = 0; i < b->nrels; i++) {
		rw_relation r = {.schema = blk_str(k, b->rels[i].schema), .name = blk_str(k, b->rels[i].name),
				 .alias = blk_str(k, b->rels[i].alias), .written = b->rels[i].written};
		if (sh)
			rels[i] = r;
	}
	for (size_t i = 0; i < b->nfuncs; i++) {
		const char *f = blk_str(k, b->funcs[i]);
		if (sh)
			funcs[i] = f;
	}
	for (size_t i = 0; i < in->nslots; i++) {
		const char *col = blk_str(k, in->slots[i].column);
		if (sh)
			slots[i] = (rw_slot){.param = in->slots[i].param, .rel_index = in->slots[i].rel_index, .column = col};
	}
	const char *normalized = blk_str(k, in->normalized), *setting = blk_str(k, b->setting);
	if (!sh)
		return NULL;
	if (in->nslots)
		memcpy(neg, in->neg, in->nslots);
	if (in->keylen)
		memcpy(key, in->key, in->keylen);
	if (ncells)
		memcpy(cells, in->insert_slots, ncells * sizeof *cells);
	*sh = (rw_shape_obj){
		.pub = {.kind = b->kind, .fingerprint = in->fingerprint, .normalized = normalized, .flags = b->flags,
			.nrelations = b->nrels, .relations = rels, .nfunctions = b->nfuncs, .functions = funcs,
			.nslots = in->nslots, .slots = slots, .tx_op = b->tx_op, .isolation = b->isolation,
			.read_only = b->read_only, .chain = b->chain, .setting = setting, .set_local = b->set_local,
			.write_form = in->w->form, .write_rel = in->w->rel, .write_on_conflict = in->w->on_conflict,
			.nset_columns = in->w->nset_cols, .set_columns = set_cols,
			.ninsert_columns = in->w->nins_cols, .insert_columns = ins_cols,
			.ninsert_rows = in->w->nrows, .insert_slots = cells},
		.node = {.key = key, .keylen = in->keylen},
		.refs = 1,
		.fast = b->fast,
		.neg = neg,
	};
	return sh;
}

static rw_shape_obj *freeze(const shape_parts *in)
{
	blk k = {0};
	lay_out(&k, in);
	size_t size = k.off;
	k = (blk){.base = pf_malloc(size)};
	rw_shape_obj *sh = lay_out(&k, in);
	sh->bytes = size;
	sh->node.bytes = size;
	return sh;
}

/* ---- building ------------------------------------------------------------ */

/* The statement's text, NUL-terminated, for pg_query_fingerprint/normalize. */
static char *piece_text(const char *sql, const rw_scan *s, const rw_piece *p)
{
	int start = s->tok[p->first].start, end = s->tok[p->end - 1].end;
	char *t = pf_malloc((size_t)(end - start) + 1);
	memcpy(t, sql + start, (size_t)(end - start));
	t[end - start] = '\0';
	return t;
}

rw_shape_obj *rw_shape_build(const PgQuery__Node *stmt, const char *sql, const rw_scan *s, const rw_piece *p,
			     const char *key, size_t keylen)
{
	rw_builder b;
	builder_init(&b);
	rw_walk_statement(&b, stmt);
	rw_where_collect(&b, stmt);
	rw_write_facts w;
	rw_write_collect(&w, &b, stmt);
	if (b.nnumlocs)
		qsort(b.numlocs, b.nnumlocs, sizeof *b.numlocs, cmp_int);

	size_t nslots = rw_piece_nslots(s, p);
	rw_slot *slots = pf_calloc(nslots, sizeof *slots);
	unsigned char *neg = pf_calloc(nslots, 1);
	int *locs = pf_calloc(nslots ? nslots : 1, sizeof *locs);
	build_slots(&b, sql, s, p, slots, neg, locs);
	int *cells = insert_slots(&w, locs, nslots);

	char *text = piece_text(sql, s, p);
	PgQueryFingerprintResult fp = pg_query_fingerprint(text);
	PgQueryNormalizeResult nr = pg_query_normalize(text);
	shape_parts in = {.b = &b, .w = &w, .insert_slots = cells, .slots = slots, .neg = neg, .nslots = nslots,
			  .fingerprint = fp.error ? 0 : fp.fingerprint,
			  .normalized = nr.error || !nr.normalized_query ? text : nr.normalized_query,
			  .key = key, .keylen = keylen};
	rw_shape_obj *sh = freeze(&in);
	pg_query_free_fingerprint_result(fp);
	pg_query_free_normalize_result(nr);
	pf_free(text);
	pf_free(slots);
	pf_free(neg);
	pf_free(locs);
	pf_free(cells);
	rw_write_facts_free(&w);
	builder_free(&b);
	return sh;
}

rw_shape_obj *rw_shape_unparsed(void)
{
	rw_builder b;
	builder_init(&b);
	b.kind = RW_KIND_UNPARSED;
	b.fast = false;
	rw_write_facts w = {.form = RW_WRITE_NONE, .rel = -1};
	shape_parts in = {.b = &b, .w = &w};
	return freeze(&in);
}

void rw_shape_ref(rw_shape_obj *sh)
{
	sh->refs++;
}

void rw_shape_unref(rw_shape_obj *sh)
{
	if (sh && --sh->refs == 0)
		pf_free(sh);
}
