/*
 * analysis_lru.c — the hash table with a recency list behind the analyzer's
 * text cache, shape table and fast-key table.  Intrusive: the entries embed
 * an rw_lru_node and own their key; the table never allocates or frees an
 * entry, it only hands back the ones a limit pushes out (rw_lru_evict) for
 * the caller to release.  Chained buckets, doubled when the count passes
 * the bucket count.
 */
#include "analysis_int.h"

#include <string.h>

#include "../common/alloc.h"

#define RW_LRU_MIN_BUCKETS 64

void rw_lru_init(rw_lru *l, size_t max_entries, size_t max_bytes)
{
	memset(l, 0, sizeof *l);
	l->max_entries = max_entries;
	l->max_bytes = max_bytes;
	l->nbuckets = RW_LRU_MIN_BUCKETS;
	l->buckets = pf_calloc(l->nbuckets, sizeof *l->buckets);
	l->head.next = l->head.prev = &l->head;
}

void rw_lru_destroy(rw_lru *l)
{
	pf_free(l->buckets);
	l->buckets = NULL;
	l->nbuckets = 0;
}

static void list_unlink(rw_lru_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

static void list_push_front(rw_lru *l, rw_lru_node *n)
{
	n->next = l->head.next;
	n->prev = &l->head;
	l->head.next->prev = n;
	l->head.next = n;
}

void rw_lru_touch(rw_lru *l, rw_lru_node *n)
{
	if (l->head.next != n) {
		list_unlink(n);
		list_push_front(l, n);
	}
}

rw_lru_node *rw_lru_find(rw_lru *l, uint64_t hash, const char *key, size_t keylen)
{
	rw_lru_node *n = l->buckets[hash & (l->nbuckets - 1)];
	for (; n; n = n->hnext) {
		if (n->hash == hash && n->keylen == keylen && (keylen == 0 || memcmp(n->key, key, keylen) == 0)) {
			rw_lru_touch(l, n);
			return n;
		}
	}
	return NULL;
}

bool rw_lru_fits(const rw_lru *l, size_t bytes)
{
	return l->max_entries > 0 && bytes <= l->max_bytes;
}

bool rw_lru_full(const rw_lru *l, size_t bytes)
{
	return l->count >= l->max_entries || l->bytes + bytes > l->max_bytes;
}

static void grow_buckets(rw_lru *l)
{
	size_t nb = l->nbuckets * 2;
	rw_lru_node **b = pf_calloc(nb, sizeof *b);
	for (size_t i = 0; i < l->nbuckets; i++) {
		rw_lru_node *n = l->buckets[i];
		while (n) {
			rw_lru_node *next = n->hnext;
			size_t j = n->hash & (nb - 1);
			n->hnext = b[j];
			b[j] = n;
			n = next;
		}
	}
	pf_free(l->buckets);
	l->buckets = b;
	l->nbuckets = nb;
}

void rw_lru_insert(rw_lru *l, rw_lru_node *n)
{
	if (l->count >= l->nbuckets)
		grow_buckets(l);
	size_t i = n->hash & (l->nbuckets - 1);
	n->hnext = l->buckets[i];
	l->buckets[i] = n;
	list_push_front(l, n);
	l->count++;
	l->bytes += n->bytes;
}

static void remove_node(rw_lru *l, rw_lru_node *n)
{
	rw_lru_node **pp = &l->buckets[n->hash & (l->nbuckets - 1)];
	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	n->hnext = NULL;
	list_unlink(n);
	l->count--;
	l->bytes -= n->bytes;
}

rw_lru_node *rw_lru_evict(rw_lru *l)
{
	if (l->count == 0 || (l->count <= l->max_entries && l->bytes <= l->max_bytes))
		return NULL;
	rw_lru_node *n = l->head.prev;
	remove_node(l, n);
	return n;
}

rw_lru_node *rw_lru_pop(rw_lru *l)
{
	if (l->count == 0)
		return NULL;
	rw_lru_node *n = l->head.prev;
	remove_node(l, n);
	return n;
}
