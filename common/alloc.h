/*
 * alloc.h — the one allocation wrapper.  Internal allocations abort on
 * out-of-memory (there is no sane recovery on the event loop); sizes a client
 * controls are checked against config limits before they get here.
 */
#ifndef PGFOLD_COMMON_ALLOC_H
#define PGFOLD_COMMON_ALLOC_H

#include <stddef.h>

void *pf_malloc(size_t n) __attribute__((malloc, returns_nonnull));
void *pf_calloc(size_t count, size_t size) __attribute__((malloc, returns_nonnull));
void *pf_realloc(void *p, size_t n) __attribute__((returns_nonnull));
char *pf_strdup(const char *s) __attribute__((malloc, returns_nonnull));
void pf_free(void *p);

#endif /* PGFOLD_COMMON_ALLOC_H */
