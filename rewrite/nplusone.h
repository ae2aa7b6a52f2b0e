/*
 * nplusone.h — N+1 detection: recognising that a session, having received a
 * parent result, sends N child statements of one shape each keyed by a value
 * from one column of that result.  Pure bookkeeping over what the proxy
 * observed (no I/O): the proxy feeds parent results and child statements, and
 * asks whether a child belongs to a known pattern.
 *
 *   rw_np_registry   process-wide: every pattern seen (learning / active /
 *                    disabled), bounded, with its counters; rendered on
 *                    GET /nplusone as JSON or text with a suggested fix.
 *   rw_np_session    per client session: the last few parent results (their
 *                    key-type columns' distinct values, bounded in rows and
 *                    bytes), least recently used out: a parent a child
 *                    matched counts as used, so users -> posts -> comments
 *                    keeps the users result while posts results come and go.
 *
 * A pattern is (parent shape P, column j of P's result, child shape C, slot k
 * of C).  It is learning until `min_repeats` children of one parent result
 * matched it, then active for every session (so the next time P runs the
 * very first child can be batched).  Values are compared in their text form;
 * the proxy converts binary int2/int4/int8/uuid/text values to text before
 * feeding them.
 *
 * Lifetimes: free every session before its registry.  A pattern pointer
 * handed out (rw_np_match.pattern) stays valid until the next rw_np_child()
 * on that session; to keep one longer (a batch in flight), take a reference
 * with rw_np_pattern_ref() and drop it with rw_np_pattern_unref().  A
 * pattern evicted from the registry (or outliving it) lives on for its
 * holders, detached: its counters no longer reach the report.
 *
 * Interface
 *   rw_np_limits_default, rw_np_key_type
 *   rw_np_registry_new/free/set_limits, rw_np_render_json/text, rw_np_registry_stats
 *   rw_np_session_new/free
 *   rw_np_result_begin/column/row/end   feed one result set (RowDescription, DataRows, CommandComplete)
 *   rw_np_child()                        a candidate child statement was sent: match it
 *   rw_np_disable()                      a pattern failed (batch error): never again, with why
 *   rw_np_mark_fetched/reset_fetched()   keys answered from / dropped with the prefetch buffer
 *   rw_np_count_batch/count_served()     what batching did, for the report
 *   rw_np_forget()                       drop the session's parents (writes, DDL, session change)
 *   rw_np_pattern_ref/unref/status/describe()
 */
#ifndef PGFOLD_REWRITE_NPLUSONE_H
#define PGFOLD_REWRITE_NPLUSONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/strbuf.h"
#include "analysis.h"

typedef struct rw_np_registry rw_np_registry;
typedef struct rw_np_session rw_np_session;
typedef struct rw_np_pattern rw_np_pattern;

typedef enum rw_np_status {
	RW_NP_LEARNING, /* seen, fewer than min_repeats children of one parent so far */
	RW_NP_ACTIVE,   /* confirmed: children are batched (mode rewrite) or reported (detect) */
	RW_NP_DISABLED, /* a batch failed or was unsafe; reason kept */
} rw_np_status;

typedef struct rw_np_limits {
	unsigned min_repeats;      /* children of one parent result that confirm a pattern (default 3) */
	size_t max_parent_rows;    /* rows kept per parent result (default 1000) */
	size_t max_parent_bytes;   /* value bytes kept per session over all parents (default 1 MiB) */
	size_t max_parents;        /* parent results kept per session (default 4) */
	size_t max_patterns;       /* patterns in the registry (default 1000) */
	size_t max_value_len;      /* longer values are not key candidates (default 64) */
} rw_np_limits;

/* The defaults above.  A field left 0 in the limits given to
 * rw_np_registry_new/set_limits also takes its default. */
void rw_np_limits_default(rw_np_limits *out);

/* Column types whose values can be keys (text form compared). */
bool rw_np_key_type(uint32_t type_oid);

rw_np_registry *rw_np_registry_new(const rw_np_limits *limits); /* limits NULL: defaults */
void rw_np_registry_free(rw_np_registry *reg);                   /* NULL is ignored */
/* Reload: new limits apply from the next result / child / new pattern (what
 * is kept already is not trimmed, except the parents ring at its next push). */
void rw_np_registry_set_limits(rw_np_registry *reg, const rw_np_limits *limits);

rw_np_session *rw_np_session_new(rw_np_registry *reg);
void rw_np_session_free(rw_np_session *s);

/* ---- parent results ------------------------------------------------------ */

/* A result set begins for a statement of shape `parent` (a RowDescription
 * arrived).  Only READ shapes are kept; `parent` must stay valid until
 * rw_np_result_end/abort.  A result still open is abandoned.  A completed
 * result with no kept key value is not kept as a parent. */
void rw_np_result_begin(rw_np_session *s, const rw_shape *parent, int16_t ncolumns);
/* Column i of the RowDescription. */
void rw_np_result_column(rw_np_session *s, int16_t i, const char *name, uint32_t table_oid, int16_t attnum,
			 uint32_t type_oid);
/* One DataRow: value i in text form (NULL for SQL NULL). */
void rw_np_result_row(rw_np_session *s, int16_t ncolumns, const char *const *values, const size_t *lengths);
/* CommandComplete: the result is complete and becomes a parent. */
void rw_np_result_end(rw_np_session *s);
/* The result was abandoned (error, or the statement was not a read). */
void rw_np_result_abort(rw_np_session *s);

/* ---- children ------------------------------------------------------------ */

/* What rw_np_child found. */
typedef struct rw_np_match {
	rw_np_pattern *pattern;  /* NULL: not a child of any kept parent */
	rw_np_status status;     /* the pattern's status after this child */
	bool newly_active;       /* this child confirmed the pattern */
	size_t slot;             /* the key slot of the child shape */
	bool already_fetched;    /* ACTIVE, and the child's own value was marked fetched for this
	                            parent: nkeys is 0, answer it from the prefetch buffer */
	/* The parent column's distinct values in the parent's order, starting
	 * with the child's own value, that have not been asked for yet by this
	 * session for this pattern (for batching): at most `want` of them. */
	size_t nkeys;
	const char *const *keys;
	const size_t *key_lengths;
	uint32_t key_type;       /* the parent column's type OID */
} rw_np_match;
/* keys are filled only when status is ACTIVE and want > 0 (never for
 * LEARNING or DISABLED); key i points into the session's own copy of the
 * parent's values (NUL-terminated). */

/*
 * A statement that may be an N+1 child was sent: `child` is its shape (the
 * caller already checked it is a read-only SELECT without volatile
 * functions, FOR UPDATE or temp tables), values[k] the text of slot k's value
 * as the server will see it (a literal unquoted and unescaped, or a bound
 * parameter in text form), NULL when unknown.  want = how many keys the
 * caller can batch (0 in detect mode).  The keys stay valid until the next
 * call on this session.
 *
 * Matching: for each kept parent and each slot with a column and a value,
 * the parent's key columns holding the value are ranked by name and the best
 * is a candidate: 3 when the names say so (parent users_id for child
 * posts.user_id; posts_user_id for users.id; same-named foreign keys), 2 for
 * the parent's own id (id / <table>_id) or, for an id child, another *_id
 * column, 1 for any *id, 0 otherwise; ties go to the leftmost column.
 * Candidates are ordered by rank, then parent recency, then slot.  The
 * first candidate whose pattern is ACTIVE or DISABLED is the match, alone.
 * Otherwise the child counts (distinct values per parent result) for every
 * candidate's LEARNING pattern, best first, stopping at the one it confirms:
 * so a coincidental match in a more recent result cannot starve the real
 * pattern (the report may show such coincidences as learning patterns).
 * Confirmation needs min_repeats distinct child values in one parent result;
 * newly_active is set on that one call only.  occurrences counts the parent
 * results in which the pattern matched while confirmed (the confirming one
 * included).
 *
 * Keys (ACTIVE, want > 0): the child's own value, then the values after it
 * in the parent's order not marked fetched for this parent, at most want.
 * When the child's own value was marked fetched: already_fetched, no keys.
 */
void rw_np_child(rw_np_session *s, const rw_shape *child, const char *const *values, const size_t *lengths,
		 size_t want, rw_np_match *out);

/* Mark keys as fetched (their answers are in the prefetch buffer) in every
 * kept parent result of the session that p matched, so later matches skip
 * them (key_lengths NULL: strlen).  Keys not among a parent's values are
 * ignored. */
/* The child rw_np_child() just matched to p was a statement it had already
 * counted (offered again: the result cache looked it up first and it
 * missed): take its counts back. */
void rw_np_uncount_child(rw_np_session *s, rw_np_pattern *p);
void rw_np_mark_fetched(rw_np_session *s, rw_np_pattern *p, size_t nkeys, const char *const *keys,
			const size_t *key_lengths);
/* The prefetch buffer was dropped: clear every fetched mark of the session
 * (the next matching child batches again from its own value on). */
void rw_np_reset_fetched(rw_np_session *s);
/* Counters for the report.  count_batch: one batched statement was sent
 * (batches + 1), answering children_served children and avoiding
 * statements_saved backend statements (the caller's arithmetic).
 * count_served: n more children answered from the prefetch buffer, each one
 * backend statement (and round trip) avoided: children_served and
 * statements_saved both grow by n. */
void rw_np_count_batch(rw_np_pattern *p, size_t children_served, size_t statements_saved);
void rw_np_count_served(rw_np_pattern *p, size_t children_served);

/* Never batch p again (status DISABLED, process-wide); the first reason is
 * kept (NULL: "disabled").  Children still match it, with no keys. */
void rw_np_disable(rw_np_pattern *p, const char *reason);
/* Forget the session's parent results (a result still being received is
 * kept: it was produced before whatever made the caller forget). */
void rw_np_forget(rw_np_session *s);

/* ---- patterns ------------------------------------------------------------ */

rw_np_pattern *rw_np_pattern_ref(rw_np_pattern *p); /* returns p */
void rw_np_pattern_unref(rw_np_pattern *p);         /* NULL is ignored */
rw_np_status rw_np_pattern_status(const rw_np_pattern *p);
const char *rw_np_status_name(rw_np_status st);     /* "learning", "active", "disabled" */
/* One line for a log: "users.users_id -> posts.user_id (one-to-many): <child text>". */
void rw_np_pattern_describe(const rw_np_pattern *p, pf_sb *out);

/* ---- report -------------------------------------------------------------- */

typedef struct rw_np_stats {
	size_t patterns;          /* in the registry */
	size_t active;
	size_t disabled;
	uint64_t children_seen;   /* statements matched to a pattern */
	uint64_t children_served; /* answered from a batch */
	uint64_t batches;         /* batched statements sent */
	uint64_t statements_saved;/* backend statements avoided */
	uint64_t evicted;         /* patterns evicted to stay within max_patterns */
} rw_np_stats;

void rw_np_registry_stats(const rw_np_registry *reg, rw_np_stats *out);
/* GET /nplusone: {"patterns":[{parent, child, key column, status, reason,
 * occurrences, children_seen, children_served, batches, statements_saved,
 * suggestion}, ...]} and an aligned text form.  Active and disabled patterns
 * first, then learning ones, most recently seen first within each.  The
 * registry counters (children_seen, ...) are totals since start; a
 * pattern's own counters go with it when it is evicted. */
void rw_np_render_json(const rw_np_registry *reg, pf_sb *out);
void rw_np_render_text(const rw_np_registry *reg, pf_sb *out);

#endif /* PGFOLD_REWRITE_NPLUSONE_H */
