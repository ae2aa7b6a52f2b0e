/*
 * strmap.c — open-addressing string map (see strmap.h).
 *
 * Slots hold the key copy, its length, its hash and the value; an empty slot
 * has key == NULL.  Capacity is a power of two (at least 8) and the map grows
 * before it would be more than half full, so probe runs stay short.  remove()
 * shifts the following entries of the run back instead of leaving tombstones.
 * The hash is FNV-1a finished with a 64-bit mixer (keys here are catalog
 * names and database names, not attacker-chosen bulk input).
 */
#include "strmap.h"

#include "hash.h"

#include <stdint.h>
#include <string.h>

#include "alloc.h"

#define STRMAP_MIN_CAP 8u

typedef struct strmap_slot {
	char *key; /* owned copy; NULL when the slot is empty */
	size_t len;
	uint64_t hash;
	void *value;
} strmap_slot;

struct pf_strmap {
	strmap_slot *slots;
	size_t cap; /* power of two */
	size_t count;
};

static uint64_t hash_bytes(const char *s, size_t len)
{
	return pf_hash_bytes(s, len);
}

pf_strmap *pf_strmap_new(void)
{
	pf_strmap *m = pf_calloc(1, sizeof(*m));
	m->cap = STRMAP_MIN_CAP;
	m->slots = pf_calloc(m->cap, sizeof(*m->slots));
	return m;
}

void pf_strmap_free(pf_strmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->cap; i++)
		pf_free(m->slots[i].key);
	pf_free(m->slots);
	pf_free(m);
}

void pf_strmap_free_values(pf_strmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			pf_free(m->slots[i].value);
	pf_strmap_free(m);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find_slot(const pf_strmap *m, const char *key, size_t len, uint64_t hash)
{
	size_t mask = m->cap - 1;
	size_t i = (size_t)hash & mask;
	for (;;) {
		const strmap_slot *s = &m->slots[i];
		if (!s->key || (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0))
			return i;
		i = (i + 1) & mask;
	}
}

static void grow(pf_strmap *m)
{
	strmap_slot *old = m->slots;
	size_t old_cap = m->cap;
	m->cap *= 2;
	m->slots = pf_calloc(m->cap, sizeof(*m->slots));
	for (size_t i = 0; i < old_cap; i++) {
		if (!old[i].key)
			continue;
		size_t j = find_slot(m, old[i].key, old[i].len, old[i].hash);
		m->slots[j] = old[i];
	}
	pf_free(old);
}

bool pf_strmap_put(pf_strmap *m, const char *key, void *value, void **old)
{
	size_t len = strlen(key);
	uint64_t hash = hash_bytes(key, len);
	size_t i = find_slot(m, key, len, hash);
	strmap_slot *s = &m->slots[i];
	if (s->key) {
		if (old)
			*old = s->value;
		s->value = value;
		return false;
	}
	if (old)
		*old = NULL;
	if ((m->count + 1) * 2 > m->cap) {
		grow(m);
		i = find_slot(m, key, len, hash);
		s = &m->slots[i];
	}
	s->key = pf_malloc(len + 1);
	memcpy(s->key, key, len + 1);
	s->len = len;
	s->hash = hash;
	s->value = value;
	m->count++;
	return true;
}

bool pf_strmap_get_n(const pf_strmap *m, const char *key, size_t len, void **value)
{
	if (memchr(key, '\0', len))
		return false;
	const strmap_slot *s = &m->slots[find_slot(m, key, len, hash_bytes(key, len))];
	if (!s->key)
		return false;
	if (value)
		*value = s->value;
	return true;
}

bool pf_strmap_get(const pf_strmap *m, const char *key, void **value)
{
	return pf_strmap_get_n(m, key, strlen(key), value);
}

bool pf_strmap_remove(pf_strmap *m, const char *key, void **old)
{
	size_t len = strlen(key);
	size_t mask = m->cap - 1;
	size_t hole = find_slot(m, key, len, hash_bytes(key, len));
	if (!m->slots[hole].key)
		return false;
	if (old)
		*old = m->slots[hole].value;
	pf_free(m->slots[hole].key);
	m->slots[hole].key = NULL;
	m->count--;
	/* Backward shift: move each later entry of the run whose home slot is
	 * not between the hole and itself into the hole. */
	for (size_t j = (hole + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
		size_t home = (size_t)m->slots[j].hash & mask;
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			m->slots[hole] = m->slots[j];
			m->slots[j].key = NULL;
			hole = j;
		}
	}
	return true;
}

size_t pf_strmap_count(const pf_strmap *m)
{
	return m->count;
}

bool pf_strmap_next(const pf_strmap *m, size_t *pos, const char **key, void **value)
{
	for (size_t i = *pos; i < m->cap; i++) {
		if (!m->slots[i].key)
			continue;
		if (key)
			*key = m->slots[i].key;
		if (value)
			*value = m->slots[i].value;
		*pos = i + 1;
		return true;
	}
	*pos = m->cap;
	return false;
}
