/*
 * nplusone_values.c — the distinct values of one parent result column, in
 * the order the rows brought them: one arena of NUL-terminated values (so a
 * key handed to the caller is a plain pointer into it) and an
 * open-addressing set of 32-bit indexes for O(1) membership.
 *
 * common/strmap.h was the other candidate; it keeps its own copy of every
 * key, which would double the bytes kept per value, and it has no order, so
 * the values would need an array anyway.  The set here stores only indexes
 * and rehashes from the arena when it grows.
 */
#include "nplusone_int.h"

#include "../common/hash.h"

#include <string.h>

#include "../common/alloc.h"

#define NP_SET_MIN 16u

uint64_t np_hash(const char *s, size_t len)
{
	return pf_hash_bytes(s, len);
}

const char *np_values_at(const np_values *v, size_t i, size_t *len)
{
	if (len)
		*len = v->len[i];
	return v->arena + v->off[i];
}

static bool value_is(const np_values *v, size_t i, const char *s, size_t len)
{
	return v->len[i] == len && memcmp(v->arena + v->off[i], s, len) == 0;
}

long np_values_find(const np_values *v, const char *s, size_t len, uint64_t hash)
{
	if (v->set_cap == 0)
		return -1;
	size_t mask = v->set_cap - 1;
	for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
		uint32_t e = v->set[i];
		if (e == 0)
			return -1;
		if (value_is(v, e - 1, s, len))
			return (long)(e - 1);
	}
}

static void set_insert(np_values *v, size_t index, uint64_t hash)
{
	size_t mask = v->set_cap - 1;
	size_t i = (size_t)hash & mask;
	while (v->set[i] != 0)
		i = (i + 1) & mask;
	v->set[i] = (uint32_t)(index + 1);
}

static void set_grow(np_values *v)
{
	pf_free(v->set);
	v->set_cap = v->set_cap ? v->set_cap * 2 : NP_SET_MIN;
	v->set = pf_calloc(v->set_cap, sizeof *v->set);
	for (size_t i = 0; i < v->n; i++)
		set_insert(v, i, np_hash(v->arena + v->off[i], v->len[i]));
}

size_t np_values_add(np_values *v, const char *s, size_t len, uint64_t hash)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 16;
		v->off = pf_realloc(v->off, v->cap * sizeof *v->off);
		v->len = pf_realloc(v->len, v->cap * sizeof *v->len);
	}
	if (v->arena_len + len + 1 > v->arena_cap) {
		size_t cap = v->arena_cap ? v->arena_cap : 256;
		while (cap < v->arena_len + len + 1)
			cap *= 2;
		v->arena = pf_realloc(v->arena, cap);
		v->arena_cap = cap;
	}
	size_t i = v->n++;
	v->off[i] = (uint32_t)v->arena_len;
	v->len[i] = (uint32_t)len;
	memcpy(v->arena + v->arena_len, s, len);
	v->arena[v->arena_len + len] = '\0';
	v->arena_len += len + 1;
	if (2 * v->n > v->set_cap)
		set_grow(v); /* reinserts value i too */
	else
		set_insert(v, i, hash);
	return i;
}

void np_values_free(np_values *v)
{
	pf_free(v->arena);
	pf_free(v->off);
	pf_free(v->len);
	pf_free(v->set);
	memset(v, 0, sizeof *v);
}
