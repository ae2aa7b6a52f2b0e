/*
 * analysis_write.h — internals: the top-level write form of a statement
 * (rw_shape.write_form and the fields after it), gathered by
 * analysis_write.c from the parse tree and the walk's facts, and laid out
 * into the shape by analysis_shape.c.  Not an interface: include
 * analysis.h.
 */
#ifndef PGFOLD_REWRITE_ANALYSIS_WRITE_H
#define PGFOLD_REWRITE_ANALYSIS_WRITE_H

#include "analysis_int.h"

typedef struct rw_write_facts {
	rw_write_form form;
	int rel;              /* into the builder's relations, or -1 */
	bool on_conflict;
	const char **set_cols; /* UPDATE: distinct, in order (names point into the parse tree) */
	size_t nset_cols;
	const char **ins_cols; /* INSERT: the column list as written */
	size_t nins_cols;
	size_t nrows;          /* INSERT VALUES rows (0: no column list, or a row of another length) */
	int *cells;           /* nrows * nins_cols parser locations of the cells' constants, -1 for others */
} rw_write_facts;

/* The write facts of stmt, walked into b already (kind, flags, relations). */
void rw_write_collect(rw_write_facts *w, const rw_builder *b, const PgQuery__Node *stmt);
void rw_write_facts_free(rw_write_facts *w);

/* The location the parser gives a value that is a constant or $n, bare or
 * under one cast; false for anything else (analysis_where.c). */
bool rw_value_location(const PgQuery__Node *n, int *loc);

#endif /* PGFOLD_REWRITE_ANALYSIS_WRITE_H */
