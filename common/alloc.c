/* alloc.c — allocation that aborts on out-of-memory (see alloc.h). */
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void out_of_memory(size_t n)
{
	fprintf(stderr, "pgfold: out of memory allocating %zu bytes\n", n);
	abort();
}

void *pf_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		out_of_memory(n);
	return p;
}

void *pf_calloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (!p)
		out_of_memory(count * size);
	return p;
}

void *pf_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		out_of_memory(n);
	return q;
}

char *pf_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = pf_malloc(n);
	memcpy(p, s, n);
	return p;
}

void pf_free(void *p)
{
	free(p);
}
