/*
 * nplusone.c — the process-wide pattern registry (see nplusone.h): a hash
 * table of patterns keyed by (parent fingerprint, parent column, child
 * fingerprint, child slot), two recency lists, eviction, counters and
 * references.
 *
 * Bounds: at most limits.max_patterns patterns.  A new pattern arriving at
 * the bound evicts the least recently seen LEARNING pattern; ACTIVE and
 * DISABLED ones are worth more (they are what is batched, or what must not
 * be batched again), so they are only evicted once the total reaches twice
 * the bound, and then the least recently seen of any status goes.
 *
 * References: the registry holds one reference to each pattern in it; the
 * sessions hold one to the pattern they last returned, and the proxy takes
 * its own for a batch in flight.  Eviction unlinks the pattern and drops the
 * registry's reference; the last unref frees it.
 */
#include "nplusone_int.h"
#include "../protocol/pgtypes.h"

#include <string.h>

#include "../common/alloc.h"

#define NP_MIN_BUCKETS 64u

bool rw_np_key_type(uint32_t type_oid)
{
	switch (type_oid) {
	case OID_INT8:
	case OID_INT2:
	case OID_INT4:
	case OID_TEXT:
	case OID_OID:
	case OID_BPCHAR:
	case OID_VARCHAR:
	case OID_UUID:
		return true;
	default:
		return false;
	}
}

void rw_np_limits_default(rw_np_limits *out)
{
	out->min_repeats = 3;
	out->max_parent_rows = 1000;
	out->max_parent_bytes = (size_t)1 << 20;
	out->max_parents = 4;
	out->max_patterns = 1000;
	out->max_value_len = 64;
}

/* limits with 0 fields defaulted; value bytes capped so arena offsets fit 32 bits. */
static void limits_normalize(rw_np_limits *dst, const rw_np_limits *src)
{
	rw_np_limits d;
	rw_np_limits_default(&d);
	*dst = src ? *src : d;
	dst->min_repeats = dst->min_repeats ? dst->min_repeats : d.min_repeats;
	dst->max_parent_rows = dst->max_parent_rows ? dst->max_parent_rows : d.max_parent_rows;
	dst->max_parent_bytes = dst->max_parent_bytes ? dst->max_parent_bytes : d.max_parent_bytes;
	dst->max_parents = dst->max_parents ? dst->max_parents : d.max_parents;
	dst->max_patterns = dst->max_patterns ? dst->max_patterns : d.max_patterns;
	dst->max_value_len = dst->max_value_len ? dst->max_value_len : d.max_value_len;
	if (dst->max_parent_bytes > ((size_t)1 << 30))
		dst->max_parent_bytes = (size_t)1 << 30;
	if (dst->max_parent_rows > ((size_t)1 << 30))
		dst->max_parent_rows = (size_t)1 << 30;
}

rw_np_registry *rw_np_registry_new(const rw_np_limits *limits)
{
	rw_np_registry *reg = pf_calloc(1, sizeof *reg);
	limits_normalize(&reg->limits, limits);
	reg->nbuckets = NP_MIN_BUCKETS;
	reg->buckets = pf_calloc(reg->nbuckets, sizeof *reg->buckets);
	return reg;
}

void rw_np_registry_set_limits(rw_np_registry *reg, const rw_np_limits *limits)
{
	limits_normalize(&reg->limits, limits);
}

/* ---- patterns ------------------------------------------------------------- */

static uint64_t key_hash(const np_key *k)
{
	uint64_t h = k->parent_fp * UINT64_C(0x9e3779b97f4a7c15);
	h ^= k->child_fp + UINT64_C(0x632be59bd9b4e019) + (h << 6) + (h >> 2);
	h ^= ((uint64_t)k->column << 32 | k->slot) * UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return h;
}

bool np_key_equal(const np_key *a, const np_key *b)
{
	return a->parent_fp == b->parent_fp && a->child_fp == b->child_fp && a->column == b->column &&
	       a->slot == b->slot;
}

static void pattern_free(rw_np_pattern *p)
{
	pf_free(p->reason);
	pf_free(p->parent_text);
	pf_free(p->parent_table);
	pf_free(p->parent_column);
	pf_free(p->child_text);
	pf_free(p->child_table);
	pf_free(p->child_column);
	pf_free(p);
}

rw_np_pattern *rw_np_pattern_ref(rw_np_pattern *p)
{
	p->refs++;
	return p;
}

void rw_np_pattern_unref(rw_np_pattern *p)
{
	if (p && --p->refs == 0)
		pattern_free(p);
}

rw_np_status rw_np_pattern_status(const rw_np_pattern *p)
{
	return p->status;
}

const char *rw_np_status_name(rw_np_status st)
{
	switch (st) {
	case RW_NP_LEARNING: return "learning";
	case RW_NP_ACTIVE: return "active";
	case RW_NP_DISABLED: return "disabled";
	}
	return "?";
}

static void list_unlink(np_list *l, rw_np_pattern *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		l->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		l->tail = p->prev;
	p->prev = p->next = NULL;
	l->count--;
}

static void list_push_front(np_list *l, rw_np_pattern *p)
{
	p->prev = NULL;
	p->next = l->head;
	if (l->head)
		l->head->prev = p;
	else
		l->tail = p;
	l->head = p;
	l->count++;
}

static np_list *list_of(rw_np_registry *reg, const rw_np_pattern *p)
{
	return p->status == RW_NP_LEARNING ? &reg->learning : &reg->confirmed;
}

static void bucket_insert(rw_np_registry *reg, rw_np_pattern *p)
{
	rw_np_pattern **b = &reg->buckets[p->hash & (reg->nbuckets - 1)];
	p->hnext = *b;
	*b = p;
}

static void bucket_remove(rw_np_registry *reg, rw_np_pattern *p)
{
	rw_np_pattern **pp = &reg->buckets[p->hash & (reg->nbuckets - 1)];
	while (*pp != p)
		pp = &(*pp)->hnext;
	*pp = p->hnext;
	p->hnext = NULL;
}

static void buckets_grow(rw_np_registry *reg)
{
	rw_np_pattern **old = reg->buckets;
	size_t nold = reg->nbuckets;
	reg->nbuckets *= 2;
	reg->buckets = pf_calloc(reg->nbuckets, sizeof *reg->buckets);
	for (size_t i = 0; i < nold; i++) {
		for (rw_np_pattern *p = old[i], *next; p; p = next) {
			next = p->hnext;
			bucket_insert(reg, p);
		}
	}
	pf_free(old);
}

/* Take p out of the registry; it lives on while someone holds it. */
static void pattern_detach(rw_np_registry *reg, rw_np_pattern *p)
{
	if (p->status == RW_NP_DISABLED)
		reg->disabled--;
	list_unlink(list_of(reg, p), p);
	bucket_remove(reg, p);
	p->reg = NULL;
	rw_np_pattern_unref(p);
}

void rw_np_registry_free(rw_np_registry *reg)
{
	if (!reg)
		return;
	while (reg->learning.head)
		pattern_detach(reg, reg->learning.head);
	while (reg->confirmed.head)
		pattern_detach(reg, reg->confirmed.head);
	pf_free(reg->buckets);
	pf_free(reg);
}

rw_np_pattern *np_pattern_find(rw_np_registry *reg, const np_key *key)
{
	uint64_t h = key_hash(key);
	for (rw_np_pattern *p = reg->buckets[h & (reg->nbuckets - 1)]; p; p = p->hnext) {
		if (p->hash == h && np_key_equal(&p->key, key))
			return p;
	}
	return NULL;
}

/* Evict until a new pattern fits (see the file comment). */
static void make_room(rw_np_registry *reg)
{
	size_t max = reg->limits.max_patterns;
	for (;;) {
		size_t total = reg->learning.count + reg->confirmed.count;
		rw_np_pattern *victim = NULL;
		if (total >= 2 * max) {
			rw_np_pattern *l = reg->learning.tail, *c = reg->confirmed.tail;
			victim = !l ? c : !c ? l : (l->last_seen <= c->last_seen ? l : c);
		} else if (total >= max) {
			victim = reg->learning.tail;
		}
		if (!victim)
			return;
		pattern_detach(reg, victim);
		reg->evicted++;
	}
}

static char *dup_or_empty(const char *s)
{
	return pf_strdup(s ? s : "");
}

rw_np_pattern *np_pattern_add(rw_np_registry *reg, const np_key *key, const np_pattern_info *info)
{
	make_room(reg);
	rw_np_pattern *p = pf_calloc(1, sizeof *p);
	p->key = *key;
	p->hash = key_hash(key);
	p->reg = reg;
	p->refs = 1;
	p->status = RW_NP_LEARNING;
	p->key_type = info->key_type;
	p->last_seen = reg->clock;
	p->parent_text = dup_or_empty(info->parent_text);
	p->parent_table = dup_or_empty(info->parent_table);
	p->parent_column = dup_or_empty(info->parent_column);
	p->child_text = dup_or_empty(info->child_text);
	p->child_table = dup_or_empty(info->child_table);
	p->child_column = dup_or_empty(info->child_column);
	p->child_flags = info->child_flags;
	if (reg->learning.count + reg->confirmed.count >= reg->nbuckets)
		buckets_grow(reg);
	bucket_insert(reg, p);
	list_push_front(&reg->learning, p);
	return p;
}

void np_pattern_touch(rw_np_pattern *p)
{
	rw_np_registry *reg = p->reg;
	if (!reg)
		return;
	p->last_seen = ++reg->clock;
	np_list *l = list_of(reg, p);
	if (l->head != p) {
		list_unlink(l, p);
		list_push_front(l, p);
	}
}

/* Move p between lists for a status change. */
static void set_status(rw_np_pattern *p, rw_np_status st)
{
	rw_np_registry *reg = p->reg;
	if (reg) {
		list_unlink(list_of(reg, p), p);
		if (p->status == RW_NP_DISABLED)
			reg->disabled--;
		if (st == RW_NP_DISABLED)
			reg->disabled++;
	}
	p->status = st;
	if (reg)
		list_push_front(list_of(reg, p), p);
}

void np_pattern_confirm(rw_np_pattern *p)
{
	if (p->status == RW_NP_LEARNING)
		set_status(p, RW_NP_ACTIVE);
}

void rw_np_disable(rw_np_pattern *p, const char *reason)
{
	if (p->status == RW_NP_DISABLED)
		return;
	p->reason = pf_strdup(reason ? reason : "disabled");
	set_status(p, RW_NP_DISABLED);
}

/* ---- counters ------------------------------------------------------------- */

void rw_np_count_batch(rw_np_pattern *p, size_t children_served, size_t statements_saved)
{
	p->batches++;
	p->children_served += children_served;
	p->statements_saved += statements_saved;
	if (p->reg) {
		p->reg->batches++;
		p->reg->children_served += children_served;
		p->reg->statements_saved += statements_saved;
	}
}

void rw_np_count_served(rw_np_pattern *p, size_t children_served)
{
	p->children_served += children_served;
	p->statements_saved += children_served;
	if (p->reg) {
		p->reg->children_served += children_served;
		p->reg->statements_saved += children_served;
	}
}

void rw_np_registry_stats(const rw_np_registry *reg, rw_np_stats *out)
{
	memset(out, 0, sizeof *out);
	out->patterns = reg->learning.count + reg->confirmed.count;
	out->disabled = reg->disabled;
	out->active = reg->confirmed.count - reg->disabled;
	out->children_seen = reg->children_seen;
	out->children_served = reg->children_served;
	out->batches = reg->batches;
	out->statements_saved = reg->statements_saved;
	out->evicted = reg->evicted;
}
