/*
 * nplusone_session.c — one session's side of N+1 detection (see
 * nplusone.h): the parent results it keeps, matching a child statement to
 * them, the keys to batch, and what was fetched already.
 *
 * Parent results.  The result being received (pending) keeps, for each
 * column of a key type, its distinct values up to max_value_len bytes in
 * first-seen order (nplusone_values.c), for at most max_parent_rows rows and
 * while the session's kept value bytes stay within max_parent_bytes; past
 * either bound the result stops keeping values ("full") but remains a parent
 * for what it kept.  At CommandComplete a result with at least one value
 * joins the session's parents; at most max_parents are kept, least recently
 * used first out: a parent that a child matches counts as used, so with
 * nested lazy loading (users -> posts -> comments) the users result outlives
 * the stream of posts and comments results that follow it.
 *
 * Matching a child.  For every kept parent and every slot of the child with
 * a column (rel_index >= 0) and a known value, the parent's key columns
 * holding that value are ranked by name (np_column_score: the column the
 * child's key most likely refers to) and the best one (ties: leftmost) is
 * a candidate.  Candidates are ordered by that score, then by the parent's
 * recency, then by slot.  If a candidate's pattern is already ACTIVE or
 * DISABLED, the first such is the match and nothing else is counted.
 * Otherwise the child counts for every candidate's (LEARNING) pattern, best
 * first, stopping at the first one it confirms; the match is the one
 * confirmed, else the best candidate.  Counting every candidate means a
 * coincidental match in a more recent result (post ids that happen to equal
 * user ids) cannot starve the real pattern.
 *
 * Per (parent result, pattern) a link keeps two bitsets over the parent
 * column's values: the children seen (distinct count -> confirmation) and
 * the keys fetched (rw_np_mark_fetched).  At most NP_MAX_LINKS links per
 * parent; the least recently used one is recycled.
 */
#include "nplusone_int.h"

#include <string.h>

#include "../common/alloc.h"

#define NP_MAX_LINKS 16

typedef struct np_link {
	np_key key;        /* the pattern counted */
	uint32_t column;   /* = key.column */
	size_t nbits;      /* the column's value count when the link was made */
	size_t distinct;   /* distinct child values matched */
	bool occurred;     /* counted in the pattern's occurrences */
	uint64_t used;     /* session tick of the last match */
	uint8_t *seen;     /* nbits bits; fetched follows in the same allocation */
	uint8_t *fetched;
} np_link;

typedef struct np_column {
	char *name;        /* key-type columns only */
	uint32_t type_oid;
	bool key;
	np_values values;
} np_column;

typedef struct np_result {
	uint64_t fp;
	const rw_shape *shape; /* between begin and end only */
	char *text;            /* normalized text, copied at end */
	char *table;           /* first relation's name, copied at end */
	size_t ncols;
	np_column *cols;
	size_t rows;
	size_t bytes;          /* value bytes kept (counted in the session's) */
	size_t nvalues;
	bool full;             /* stopped keeping values */
	size_t nlinks;
	np_link links[NP_MAX_LINKS];
} np_result;

typedef struct np_cand {
	np_result *parent;
	uint32_t column;
	uint32_t slot;
	size_t vidx;           /* the value's index in the column */
	int score;
} np_cand;

struct rw_np_session {
	rw_np_registry *reg;
	np_result *pending;
	np_result **parents;   /* [0] most recently used */
	size_t nparents;
	size_t parents_cap;
	size_t bytes;          /* value bytes kept by pending + parents */
	uint64_t tick;
	rw_np_pattern *held;   /* the pattern last returned */
	const char **keys;
	size_t *key_lengths;
	size_t keys_cap;
	np_cand *cands;
	size_t cands_cap;
};

static bool bit_get(const uint8_t *bits, size_t i)
{
	return (bits[i / 8] >> (i % 8)) & 1u;
}

static void bit_set(uint8_t *bits, size_t i)
{
	bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* ---- results ---------------------------------------------------------------- */

static void result_free(rw_np_session *s, np_result *r)
{
	if (!r)
		return;
	s->bytes -= r->bytes;
	for (size_t i = 0; i < r->ncols; i++) {
		pf_free(r->cols[i].name);
		np_values_free(&r->cols[i].values);
	}
	for (size_t i = 0; i < r->nlinks; i++)
		pf_free(r->links[i].seen);
	pf_free(r->cols);
	pf_free(r->text);
	pf_free(r->table);
	pf_free(r);
}

rw_np_session *rw_np_session_new(rw_np_registry *reg)
{
	rw_np_session *s = pf_calloc(1, sizeof *s);
	s->reg = reg;
	return s;
}

static void release_held(rw_np_session *s)
{
	rw_np_pattern_unref(s->held);
	s->held = NULL;
}

void rw_np_forget(rw_np_session *s)
{
	for (size_t i = 0; i < s->nparents; i++)
		result_free(s, s->parents[i]);
	s->nparents = 0;
}

void rw_np_session_free(rw_np_session *s)
{
	if (!s)
		return;
	rw_np_forget(s);
	result_free(s, s->pending);
	release_held(s);
	pf_free(s->parents);
	pf_free(s->keys);
	pf_free(s->key_lengths);
	pf_free(s->cands);
	pf_free(s);
}

void rw_np_result_begin(rw_np_session *s, const rw_shape *parent, int16_t ncolumns)
{
	rw_np_result_abort(s);
	if (!parent || parent->kind != RW_KIND_READ || ncolumns <= 0)
		return;
	np_result *r = pf_calloc(1, sizeof *r);
	r->fp = parent->fingerprint;
	r->shape = parent;
	r->ncols = (size_t)ncolumns;
	r->cols = pf_calloc(r->ncols, sizeof *r->cols);
	s->pending = r;
}

void rw_np_result_column(rw_np_session *s, int16_t i, const char *name, uint32_t table_oid, int16_t attnum,
			 uint32_t type_oid)
{
	np_result *r = s->pending;
	if (!r || i < 0 || (size_t)i >= r->ncols || !rw_np_key_type(type_oid))
		return;
	np_column *c = &r->cols[i];
	pf_free(c->name);
	c->name = pf_strdup(name ? name : "");
	c->type_oid = type_oid;
	c->key = true;
}

/* Keep value v of column c unless present; false when the byte budget is spent. */
static bool keep_value(rw_np_session *s, np_result *r, np_column *c, const char *v, size_t len)
{
	uint64_t h = np_hash(v, len);
	if (np_values_find(&c->values, v, len, h) >= 0)
		return true;
	if (s->bytes + len > s->reg->limits.max_parent_bytes)
		return false;
	np_values_add(&c->values, v, len, h);
	s->bytes += len;
	r->bytes += len;
	r->nvalues++;
	return true;
}

void rw_np_result_row(rw_np_session *s, int16_t ncolumns, const char *const *values, const size_t *lengths)
{
	np_result *r = s->pending;
	const rw_np_limits *lim = &s->reg->limits;
	if (!r || r->full || ncolumns <= 0 || !values)
		return;
	if (r->rows >= lim->max_parent_rows) {
		r->full = true;
		return;
	}
	r->rows++;
	size_t n = (size_t)ncolumns < r->ncols ? (size_t)ncolumns : r->ncols;
	for (size_t i = 0; i < n; i++) {
		np_column *c = &r->cols[i];
		if (!c->key || !values[i])
			continue;
		size_t len = lengths ? lengths[i] : strlen(values[i]);
		if (len > lim->max_value_len || memchr(values[i], '\0', len))
			continue;
		if (!keep_value(s, r, c, values[i], len)) {
			r->full = true;
			return;
		}
	}
}

/* r becomes the most recent parent; the least recently used beyond max_parents go. */
static void parents_push(rw_np_session *s, np_result *r)
{
	size_t max = s->reg->limits.max_parents;
	while (s->nparents > 0 && s->nparents >= max)
		result_free(s, s->parents[--s->nparents]);
	if (s->nparents == s->parents_cap) {
		s->parents_cap = s->parents_cap ? s->parents_cap * 2 : 4;
		s->parents = pf_realloc(s->parents, s->parents_cap * sizeof *s->parents);
	}
	memmove(s->parents + 1, s->parents, s->nparents * sizeof *s->parents);
	s->parents[0] = r;
	s->nparents++;
}

void rw_np_result_end(rw_np_session *s)
{
	np_result *r = s->pending;
	if (!r)
		return;
	s->pending = NULL;
	if (r->nvalues == 0) {
		result_free(s, r);
		return;
	}
	const rw_shape *sh = r->shape;
	r->text = pf_strdup(sh->normalized ? sh->normalized : "");
	r->table = pf_strdup(sh->nrelations > 0 && sh->relations[0].name ? sh->relations[0].name : "");
	r->shape = NULL;
	parents_push(s, r);
}

void rw_np_result_abort(rw_np_session *s)
{
	result_free(s, s->pending);
	s->pending = NULL;
}

/* r becomes the most recently used parent. */
static void parent_touch(rw_np_session *s, np_result *r)
{
	size_t i = 0;
	while (i < s->nparents && s->parents[i] != r)
		i++;
	if (i == 0 || i == s->nparents)
		return;
	memmove(s->parents + 1, s->parents, i * sizeof *s->parents);
	s->parents[0] = r;
}

/* ---- links ------------------------------------------------------------------ */

static np_link *link_find(np_result *r, const np_key *key)
{
	for (size_t i = 0; i < r->nlinks; i++) {
		if (np_key_equal(&r->links[i].key, key))
			return &r->links[i];
	}
	return NULL;
}

/* The link of r for key, made (or recycled from the least recently used) if absent. */
static np_link *link_get(np_result *r, const np_key *key)
{
	np_link *l = link_find(r, key);
	if (l)
		return l;
	if (r->nlinks < NP_MAX_LINKS) {
		l = &r->links[r->nlinks++];
	} else {
		l = &r->links[0];
		for (size_t i = 1; i < r->nlinks; i++) {
			if (r->links[i].used < l->used)
				l = &r->links[i];
		}
		pf_free(l->seen);
	}
	memset(l, 0, sizeof *l);
	l->key = *key;
	l->column = key->column;
	l->nbits = r->cols[key->column].values.n;
	size_t nbytes = (l->nbits + 7) / 8;
	l->seen = pf_calloc(nbytes > 0 ? 2 * nbytes : 1, 1);
	l->fetched = l->seen + nbytes;
	return l;
}

/* ---- children --------------------------------------------------------------- */

static bool slot_usable(const rw_shape *child, size_t k, const char *const *values)
{
	const rw_slot *sl = &child->slots[k];
	return sl->rel_index >= 0 && (size_t)sl->rel_index < child->nrelations && sl->column && values[k];
}

/* The best-ranked key column of r holding value v, or -1. */
static long best_column(const np_result *r, const rw_shape *child, size_t k, const char *v, size_t len,
			size_t *vidx, int *score)
{
	const rw_slot *sl = &child->slots[k];
	const char *ctable = child->relations[sl->rel_index].name;
	uint64_t h = np_hash(v, len);
	long best = -1;
	for (size_t i = 0; i < r->ncols; i++) {
		const np_column *c = &r->cols[i];
		long at = c->key ? np_values_find(&c->values, v, len, h) : -1;
		if (at < 0)
			continue;
		int sc = np_column_score(c->name, r->table, sl->column, ctable);
		if (best < 0 || sc > *score) {
			best = (long)i;
			*score = sc;
			*vidx = (size_t)at;
		}
	}
	return best;
}

static void cand_push(rw_np_session *s, size_t *n, const np_cand *c)
{
	if (*n == s->cands_cap) {
		s->cands_cap = s->cands_cap ? s->cands_cap * 2 : 8;
		s->cands = pf_realloc(s->cands, s->cands_cap * sizeof *s->cands);
	}
	s->cands[(*n)++] = *c;
}

/* Candidates in s->cands, ordered best first (score, then parent recency, then slot). */
static size_t collect(rw_np_session *s, const rw_shape *child, const char *const *values, const size_t *lengths)
{
	size_t n = 0;
	for (size_t pi = 0; pi < s->nparents; pi++) {
		for (size_t k = 0; k < child->nslots; k++) {
			if (!slot_usable(child, k, values))
				continue;
			size_t len = lengths ? lengths[k] : strlen(values[k]);
			if (len > s->reg->limits.max_value_len)
				continue;
			np_cand c = {.parent = s->parents[pi], .slot = (uint32_t)k};
			long col = best_column(c.parent, child, k, values[k], len, &c.vidx, &c.score);
			if (col < 0)
				continue;
			c.column = (uint32_t)col;
			cand_push(s, &n, &c);
		}
	}
	for (size_t i = 1; i < n; i++) { /* stable insertion sort by score, descending */
		np_cand c = s->cands[i];
		size_t j = i;
		for (; j > 0 && s->cands[j - 1].score < c.score; j--)
			s->cands[j] = s->cands[j - 1];
		s->cands[j] = c;
	}
	return n;
}

static np_key cand_key(const np_cand *c, const rw_shape *child)
{
	np_key k = {.parent_fp = c->parent->fp, .child_fp = child->fingerprint, .column = c->column, .slot = c->slot};
	return k;
}

static rw_np_pattern *cand_pattern_add(rw_np_session *s, const np_cand *c, const rw_shape *child)
{
	const np_column *col = &c->parent->cols[c->column];
	const rw_slot *sl = &child->slots[c->slot];
	np_pattern_info info = {
		.parent_text = c->parent->text,
		.parent_table = c->parent->table,
		.parent_column = col->name,
		.key_type = col->type_oid,
		.child_text = child->normalized,
		.child_table = child->relations[sl->rel_index].name,
		.child_column = sl->column,
		.child_flags = child->flags,
	};
	np_key key = cand_key(c, child);
	return np_pattern_add(s->reg, &key, &info);
}

/* Count the child for pattern p on candidate c's parent; true when this confirmed p. */
static bool apply(rw_np_session *s, const np_cand *c, rw_np_pattern *p)
{
	np_link *l = link_get(c->parent, &p->key);
	bool newly = false;
	l->used = ++s->tick;
	p->children_seen++;
	np_pattern_touch(p);
	if (c->vidx < l->nbits && !bit_get(l->seen, c->vidx)) {
		bit_set(l->seen, c->vidx);
		l->distinct++;
		if (l->distinct > p->best_run)
			p->best_run = l->distinct;
	}
	if (p->status == RW_NP_LEARNING && l->distinct >= s->reg->limits.min_repeats) {
		np_pattern_confirm(p);
		newly = true;
	}
	if (p->status != RW_NP_LEARNING && !l->occurred) {
		l->occurred = true;
		p->occurrences++;
	}
	return newly;
}

/* Hold p as the session's match. */
static void hold(rw_np_session *s, rw_np_pattern *p)
{
	rw_np_pattern_ref(p);
	release_held(s);
	s->held = p;
}

/* Apply the child to the candidates (see the file comment); the match is
 * held in s->held, its candidate index returned. */
static size_t choose(rw_np_session *s, const rw_shape *child, size_t n, bool *newly)
{
	for (size_t i = 0; i < n; i++) {
		np_key key = cand_key(&s->cands[i], child);
		rw_np_pattern *p = np_pattern_find(s->reg, &key);
		if (p && p->status != RW_NP_LEARNING) {
			hold(s, p);
			apply(s, &s->cands[i], p);
			return i;
		}
	}
	size_t chosen = 0;
	for (size_t i = 0; i < n; i++) {
		np_key key = cand_key(&s->cands[i], child);
		rw_np_pattern *p = np_pattern_find(s->reg, &key);
		if (!p)
			p = cand_pattern_add(s, &s->cands[i], child);
		if (i == 0)
			hold(s, p);
		if (apply(s, &s->cands[i], p)) {
			hold(s, p);
			*newly = true;
			chosen = i;
			break;
		}
	}
	return chosen;
}

/* Keys for an ACTIVE match: the child's own value, then the following
 * values of the column not fetched yet, at most want. */
static void fill_keys(rw_np_session *s, const np_cand *c, size_t want, rw_np_match *out)
{
	np_link *l = link_find(c->parent, &s->held->key);
	const np_values *v = &c->parent->cols[c->column].values;
	if (!l || c->vidx >= l->nbits)
		return;
	if (bit_get(l->fetched, c->vidx)) {
		out->already_fetched = true;
		return;
	}
	size_t cap = v->n - c->vidx < want ? v->n - c->vidx : want;
	if (cap > s->keys_cap) {
		s->keys_cap = cap;
		s->keys = pf_realloc(s->keys, cap * sizeof *s->keys);
		s->key_lengths = pf_realloc(s->key_lengths, cap * sizeof *s->key_lengths);
	}
	size_t nk = 0;
	for (size_t j = c->vidx; j < v->n && nk < cap; j++) {
		if (j != c->vidx && j < l->nbits && bit_get(l->fetched, j))
			continue;
		s->keys[nk] = np_values_at(v, j, &s->key_lengths[nk]);
		nk++;
	}
	out->nkeys = nk;
	out->keys = s->keys;
	out->key_lengths = s->key_lengths;
}

void rw_np_child(rw_np_session *s, const rw_shape *child, const char *const *values, const size_t *lengths,
		 size_t want, rw_np_match *out)
{
	memset(out, 0, sizeof *out);
	release_held(s);
	if (!child || child->kind != RW_KIND_READ || !values || s->nparents == 0)
		return;
	size_t n = collect(s, child, values, lengths);
	if (n == 0)
		return;
	bool newly = false;
	size_t ci = choose(s, child, n, &newly);
	np_cand c = s->cands[ci];
	for (size_t i = n; i-- > 0;)
		parent_touch(s, s->cands[i].parent);
	parent_touch(s, c.parent);
	s->reg->children_seen++;
	out->pattern = s->held;
	out->status = s->held->status;
	out->newly_active = newly;
	out->slot = c.slot;
	out->key_type = s->held->key_type;
	if (out->status == RW_NP_ACTIVE && want > 0)
		fill_keys(s, &c, want, out);
}

void rw_np_uncount_child(rw_np_session *s, rw_np_pattern *p)
{
	if (p && p->children_seen > 0)
		p->children_seen--;
	if (s->reg->children_seen > 0)
		s->reg->children_seen--;
}

void rw_np_mark_fetched(rw_np_session *s, rw_np_pattern *p, size_t nkeys, const char *const *keys,
			const size_t *key_lengths)
{
	for (size_t pi = 0; pi < s->nparents; pi++) {
		np_result *r = s->parents[pi];
		np_link *l = link_find(r, &p->key);
		if (!l)
			continue;
		const np_values *v = &r->cols[l->column].values;
		for (size_t i = 0; i < nkeys; i++) {
			size_t len = key_lengths ? key_lengths[i] : strlen(keys[i]);
			long at = np_values_find(v, keys[i], len, np_hash(keys[i], len));
			if (at >= 0 && (size_t)at < l->nbits)
				bit_set(l->fetched, (size_t)at);
		}
	}
}

void rw_np_reset_fetched(rw_np_session *s)
{
	for (size_t pi = 0; pi < s->nparents; pi++) {
		np_result *r = s->parents[pi];
		for (size_t i = 0; i < r->nlinks; i++)
			memset(r->links[i].fetched, 0, (r->links[i].nbits + 7) / 8);
	}
}
