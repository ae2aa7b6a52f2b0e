/*
 * nplusone_int.h — what the nplusone_*.c files share (not an interface):
 * the pattern and registry structures, and the registry operations the
 * session side (nplusone_session.c) and the report (nplusone_report.c) use.
 *
 *   nplusone.c          registry: pattern table, recency lists, eviction, counters, references
 *   nplusone_values.c   one parent column's distinct values (arena + index hash set)
 *   nplusone_session.c  parent results of a session, child matching, keys, fetched marks
 *   nplusone_names.c    naming-convention guesses (column ranking, relationship kind)
 *   nplusone_report.c   /nplusone JSON and text, suggested fixes
 */
#ifndef PGFOLD_REWRITE_NPLUSONE_INT_H
#define PGFOLD_REWRITE_NPLUSONE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nplusone.h"

/* A pattern's identity. */
typedef struct np_key {
	uint64_t parent_fp; /* parent shape fingerprint */
	uint64_t child_fp;  /* child shape fingerprint */
	uint32_t column;    /* column index in the parent's RowDescription */
	uint32_t slot;      /* slot index in the child shape */
} np_key;

/* What a new pattern records of its parent and child (copied). */
typedef struct np_pattern_info {
	const char *parent_text;   /* parent normalized text */
	const char *parent_table;  /* parent shape's first relation, or NULL */
	const char *parent_column; /* RowDescription name of the key column */
	uint32_t key_type;         /* its type OID */
	const char *child_text;    /* child normalized text */
	const char *child_table;   /* the child slot column's relation */
	const char *child_column;  /* the child slot's column */
	uint32_t child_flags;      /* the child shape's RW_* flags (the suggestion's wording) */
} np_pattern_info;

/* A registry recency list: head is the most recently seen. */
typedef struct np_list {
	rw_np_pattern *head;
	rw_np_pattern *tail;
	size_t count;
} np_list;

struct rw_np_pattern {
	np_key key;
	uint64_t hash;
	rw_np_pattern *hnext;      /* registry bucket chain */
	rw_np_pattern *prev;       /* registry list (learning or confirmed) */
	rw_np_pattern *next;
	rw_np_registry *reg;       /* NULL once evicted or the registry was freed */
	unsigned refs;             /* the registry's (while in it) + each holder's */
	rw_np_status status;
	uint32_t key_type;
	uint64_t last_seen;        /* registry clock when a child last matched */
	size_t best_run;           /* most distinct children matched in one parent result */
	char *reason;              /* why DISABLED, else NULL */
	char *parent_text;
	char *parent_table;        /* "" when the parent named no relation */
	char *parent_column;
	char *child_text;
	char *child_table;
	char *child_column;
	uint32_t child_flags;      /* the child shape's RW_* flags */
	uint64_t occurrences;      /* parent results in which it matched while confirmed */
	uint64_t children_seen;
	uint64_t children_served;
	uint64_t batches;
	uint64_t statements_saved;
};

struct rw_np_registry {
	rw_np_limits limits;
	rw_np_pattern **buckets;
	size_t nbuckets;           /* power of two, at least the pattern count */
	np_list learning;          /* LEARNING patterns */
	np_list confirmed;         /* ACTIVE and DISABLED patterns */
	size_t disabled;           /* DISABLED patterns among confirmed */
	uint64_t clock;            /* ticks once per matched child */
	uint64_t children_seen;    /* totals since start, kept across evictions */
	uint64_t children_served;
	uint64_t batches;
	uint64_t statements_saved;
	uint64_t evicted;
};

/* ---- registry (nplusone.c) ------------------------------------------------ */

bool np_key_equal(const np_key *a, const np_key *b);
rw_np_pattern *np_pattern_find(rw_np_registry *reg, const np_key *key);
/* A new LEARNING pattern (evicting others to make room); the registry holds
 * its one reference. */
rw_np_pattern *np_pattern_add(rw_np_registry *reg, const np_key *key, const np_pattern_info *info);
/* A child matched p: newest in its list. */
void np_pattern_touch(rw_np_pattern *p);
/* LEARNING -> ACTIVE. */
void np_pattern_confirm(rw_np_pattern *p);

/* ---- values (nplusone_values.c) ------------------------------------------- */

/* The distinct values of one parent column, in first-seen order, each
 * NUL-terminated in one arena; a hash set of indexes for membership. */
typedef struct np_values {
	char *arena;
	size_t arena_len;
	size_t arena_cap;
	uint32_t *off;             /* value i starts at arena + off[i] */
	uint32_t *len;
	size_t n;
	size_t cap;
	uint32_t *set;             /* open addressing: index + 1, 0 empty; at most half full */
	size_t set_cap;            /* power of two, or 0 before the first value */
} np_values;

uint64_t np_hash(const char *s, size_t len);
/* Index of the value, or -1. */
long np_values_find(const np_values *v, const char *s, size_t len, uint64_t hash);
/* Append a value known to be absent; returns its index. */
size_t np_values_add(np_values *v, const char *s, size_t len, uint64_t hash);
const char *np_values_at(const np_values *v, size_t i, size_t *len);
void np_values_free(np_values *v);

/* ---- names (nplusone_names.c) -------------------------------------------- */

bool np_ieq(const char *a, const char *b);
bool np_ends_word(const char *name, const char *word);
bool np_refers_to(const char *name, const char *table);
bool np_idlike(const char *name, const char *table);
int np_column_score(const char *col, const char *ptable, const char *ccol, const char *ctable);
bool np_many_to_one(const rw_np_pattern *p);
void np_many_to_one_name(const rw_np_pattern *p, char *out, size_t size);

#endif /* PGFOLD_REWRITE_NPLUSONE_INT_H */
