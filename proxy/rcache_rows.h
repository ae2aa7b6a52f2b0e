/*
 * rcache_rows.h — pinning reads and writes to primary-key values, so that a
 * write invalidates only the cached reads of the rows it changes (the "r"
 * and "n" versions of cache/key.h) instead of every read of its table.
 *
 * A read is pinned to value v when it is a read-only statement of exactly
 * one relation t (no subquery, CTE, set operation or EXISTS), t has a
 * single-column integer primary key k (relcat.h), and a constant or $n of
 * its WHERE is one side of a top-level AND-ed `k = value` (rw_slot) whose
 * value reads as an integer: canonical decimal v.  Every row its answer is
 * made of has k = v, so only the rows with k = v decide it.
 *
 * A write is pinned to values v1..vn when it writes one relation t whose
 * writes stay in t (relcat.h write_local), t has such a key k, and it is an
 * UPDATE that does not assign k, or a DELETE, with such an equality on t's
 * k; or an INSERT ... VALUES without ON CONFLICT that gives k an integer in
 * every row (at most PX_RC_MAX_ROW_KEYS rows).  It changes only rows whose
 * k is one of v1..vn, before and after.  Such a write bumps each "r" key
 * and the table's "n" key; any other write to t bumps t's table key.
 *
 * An integer is read strictly: digits with an optional minus sign, quoted
 * ('5') or not, at most 18 digits; anything else (5.0, ' 5', 1e3, +5) does
 * not pin (the statement is then treated as unpinned, which is always safe).
 *
 * Interface
 *   px_rc_pin_read()   the value a read is pinned to, and the slot that pins it
 *   px_rc_pin_write()  the values a write is pinned to
 *   px_rc_canonical_int()  the strict integer reading (exposed for tests)
 *   px_rc_bind_param()     px_rc_values.param over a Bind (ctx: px_rc_bind)
 */
#ifndef PGFOLD_PROXY_RCACHE_ROWS_H
#define PGFOLD_PROXY_RCACHE_ROWS_H

#include <stdbool.h>
#include <stddef.h>

#include "../protocol/pgwire.h"
#include "../rewrite/analysis.h"

#define PX_RC_ROW_KEY_MAX 24    /* canonical value, NUL included */
#define PX_RC_MAX_ROW_KEYS 32   /* rows of an INSERT pinned one by one */

typedef struct px_session px_session;

/* Where a statement's values are: the text its literals sit in (offset 0
 * is the statement's location) and its bound parameters. */
typedef struct px_rc_values {
	const char *sql;
	size_t sql_len;
	/* $n in text form: 1 with the value, 0 for NULL, -1 when not known (NULL: none known) */
	int (*param)(void *ctx, int n, const char **value, size_t *len);
	void *ctx;
} px_rc_values;

/* A Bind's parameters for px_rc_bind_param(): binary values of the types
 * pgw_value_text() knows are read in text form. */
typedef struct px_rc_bind {
	const pgw_bind_msg *b;
	int16_t ntypes;
	const uint32_t *types;   /* the Parse's parameter types */
	char text[PX_RC_ROW_KEY_MAX + 8];
} px_rc_bind;

int px_rc_bind_param(void *ctx, int n, const char **value, size_t *len);

/* The canonical decimal of an integer literal as written (quoted or not) or
 * of a parameter's text (quoted false); false when it is not one. */
bool px_rc_canonical_int(const char *text, size_t len, bool literal, char out[PX_RC_ROW_KEY_MAX]);

/* True with the pinned value in out and the pinning slot's index in *slot. */
bool px_rc_pin_read(px_session *s, const rw_stmt *st, const px_rc_values *vals, char out[PX_RC_ROW_KEY_MAX],
		    size_t *slot);

/* The number of values the write is pinned to (into out), or -1: not pinned. */
int px_rc_pin_write(px_session *s, const rw_stmt *st, const px_rc_values *vals,
		    char out[PX_RC_MAX_ROW_KEYS][PX_RC_ROW_KEY_MAX]);

#endif /* PGFOLD_PROXY_RCACHE_ROWS_H */
