/*
 * strmap.h — a small open-addressing hash map from C strings to pointers:
 * linear probing, power-of-two capacity kept at most half full, deletion by
 * backward shift (no tombstones).  The map owns copies of its keys; values
 * are the caller's (the map never frees them).  Not thread-safe; allocation
 * aborts on out-of-memory (pf_malloc).
 *
 * Interface
 *   pf_strmap_new()              an empty map
 *   pf_strmap_free()             frees the map and its keys (not the values)
 *   pf_strmap_free_values()      the same, and every value with pf_free()
 *   pf_strmap_put()              insert or replace
 *   pf_strmap_get/_get_n()       look up a key (NUL-terminated / by length)
 *   pf_strmap_remove()           delete a key
 *   pf_strmap_count()            number of keys
 *   pf_strmap_next()             iterate (any order; no put/remove meanwhile)
 */
#ifndef PGFOLD_COMMON_STRMAP_H
#define PGFOLD_COMMON_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pf_strmap pf_strmap;

pf_strmap *pf_strmap_new(void);
/* NULL-safe.  Values are not freed: iterate first when they are owned. */
void pf_strmap_free(pf_strmap *m);
/* NULL-safe: the map, its keys and every value (each a pf_malloc'ed block). */
void pf_strmap_free_values(pf_strmap *m);

/* Insert key (copied) -> value, or replace the value of an existing key.
 * Returns true when the key is new.  When old is not NULL it receives the
 * replaced value (NULL for a new key). */
bool pf_strmap_put(pf_strmap *m, const char *key, void *value, void **old);

/* true and *value (when not NULL) set when key is present. */
bool pf_strmap_get(const pf_strmap *m, const char *key, void **value);
/* The same for a key given as len bytes (need not be NUL-terminated; a key
 * holding a NUL byte never matches). */
bool pf_strmap_get_n(const pf_strmap *m, const char *key, size_t len, void **value);

/* Delete key; true and *old (when not NULL) set to its value when present. */
bool pf_strmap_remove(pf_strmap *m, const char *key, void **old);

size_t pf_strmap_count(const pf_strmap *m);

/* Iteration: start with *pos = 0; each call returns the next entry and
 * advances *pos, false at the end.  The map must not change meanwhile. */
bool pf_strmap_next(const pf_strmap *m, size_t *pos, const char **key, void **value);

#endif /* PGFOLD_COMMON_STRMAP_H */
