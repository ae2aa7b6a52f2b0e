/*
 * qstats.h — per-query statistics, like pg_stat_statements but measured at
 * pgfold: one entry per statement shape (rw_shape, keyed by its libpg_query
 * fingerprint) with calls, rows, errors and timing (total, max, mean, p99
 * from a log-scale histogram).  Statements libpg_query could not parse
 * (RW_KIND_UNPARSED) all share one "unparsed" entry.
 *
 * The table is bounded: at max_shapes entries, a new shape evicts the
 * least-used entry (fewest calls; among those, the one used longest ago) and
 * the eviction is counted.  An entry copies what it shows (normalized text,
 * kind, table names) from the shape, so it never keeps a shape alive.
 *
 * Interface
 *   px_qstats_new / px_qstats_free
 *   px_qstats_get()            find or create the entry of a shape
 *   px_qstats_record()         add one execution to an entry
 *   px_qstats_record_cache()   count a result-cache hit or miss of a statement
 *   px_qstats_record_cache_fingerprint()  the same by shape fingerprint
 *   px_qstats_find()           look an entry up without creating it
 *   px_qstat_p99_us()          an entry's 99th percentile
 *   px_qstats_reset()          drop every entry (POST /queries/reset)
 *   px_qstats_totals_get()     process-lifetime counters (for /metrics)
 *   px_qstats_render_json()    the /queries JSON document
 *   px_qstats_render_text()    the /queries?format=text table
 *   px_qstats_render_metrics() top-level counters in Prometheus text format
 *   px_qstats_add_admin_routes()  GET /queries, POST /queries/reset
 *
 * The table and rendering are pure computation (no I/O, no libuv); only
 * px_qstats_add_admin_routes() touches the admin server.  Not thread-safe:
 * the table belongs to the event loop's thread.
 */
#ifndef PGFOLD_PROXY_QSTATS_H
#define PGFOLD_PROXY_QSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/strbuf.h"
#include "../rewrite/analysis.h"

typedef struct px_admin px_admin; /* admin.h */
typedef struct px_qstats px_qstats;

/* The stored normalized text is cut to this many bytes (at a UTF-8 character
 * boundary, "..." appended) and at most this many distinct tables are kept,
 * so an entry's memory is bounded whatever the statement. */
#define PX_QSTATS_MAX_QUERY_BYTES 4096
#define PX_QSTATS_MAX_TABLES 32

/*
 * One shape's statistics.  Read-only for callers: change it only through
 * px_qstats_record().  To add a counter (cache hits, N+1 involvement, ...):
 * a uint64_t field here, its increment where the event happens, and one line
 * in qstats.c's counter table to show it in /queries.
 */
typedef struct px_qstat {
	uint64_t fingerprint;       /* rw_shape.fingerprint; 0 for the unparsed entry */
	rw_kind kind;
	const char *query;          /* normalized text (owned, maybe cut); NULL for the unparsed entry */
	size_t ntables;
	const char *const *tables;  /* "schema.name" or "name": distinct, in order of appearance */
	uint64_t calls;             /* executions recorded */
	uint64_t rows;              /* rows returned or affected, summed */
	uint64_t errors;            /* executions that ended in an ErrorResponse */
	uint64_t cache_hits;        /* executions answered from the result cache (also in calls) */
	uint64_t cache_misses;      /* result-cache lookups that found no valid entry */
	uint64_t total_us;          /* elapsed time, summed */
	uint64_t max_us;            /* longest execution */
	char volatility;            /* most volatile function called: 'i', 's', 'v'; 0 not known */
} px_qstat;

/* Counters over the life of the table: px_qstats_reset() leaves them alone,
 * so they only grow, as Prometheus counters must. */
typedef struct px_qstats_totals {
	size_t shapes;        /* entries now */
	size_t max_shapes;    /* the bound */
	uint64_t evicted;     /* entries evicted to make room */
	uint64_t statements;  /* px_qstats_record() calls */
	uint64_t errors;      /* ... with error set */
	uint64_t time_us;     /* ... elapsed time summed */
} px_qstats_totals;

/* max_shapes 0 disables statistics: px_qstats_get() then returns NULL. */
px_qstats *px_qstats_new(size_t max_shapes);
void px_qstats_free(px_qstats *qs); /* NULL is fine */

/*
 * The entry of shape (created, with calls 0, if new; when the table is full
 * the least-used entry is evicted first).  A shape of kind RW_KIND_UNPARSED
 * maps to the one unparsed entry whatever its fingerprint.  Returns NULL
 * when qs is NULL or disabled.
 *
 * The pointer is valid until the next px_qstats_get() or px_qstats_reset()
 * on the same table (either may free the entry): look up and record
 * together, when the statement is done.
 */
px_qstat *px_qstats_get(px_qstats *qs, const rw_shape *shape);

/* One execution of st's shape: elapsed_us from its first byte in to
 * ReadyForQuery out.  st NULL does nothing. */
void px_qstats_record(px_qstat *st, uint64_t elapsed_us, uint64_t rows, bool error);

/*
 * A result-cache lookup of stmt's shape was answered: hit (the statement is
 * answered from the cache; its execution is still recorded by
 * px_qstats_record() when it completes) or miss (it goes to PostgreSQL).
 * Finds or creates the entry like px_qstats_get(), so a miss of a shape seen
 * for the first time is counted too.  qs or stmt NULL, or statistics
 * disabled: nothing.  Keeps no pointer.  Called by the result cache
 * (proxy/rcache.c) when a lookup's answer arrives, e.g. with
 * px_track_current(&s->track) for a simple Query (its statement is at the
 * head of the session's track then).
 */
void px_qstats_record_cache(px_qstats *qs, const rw_stmt *stmt, bool hit);

/*
 * The same for the shape with this fingerprint (never the unparsed entry,
 * which nothing cacheable maps to), when its entry exists: no entry is
 * created and it does not count as a use.  For a caller that kept only the
 * fingerprint of the statement it looked up (proxy/rcache.c's
 * rc->fingerprint).  The entry appears when the shape's first execution is
 * recorded, so a lookup before that (the very first of a new shape) is not
 * counted; px_qstats_record_cache() with the statement counts it.
 */
void px_qstats_record_cache_fingerprint(px_qstats *qs, uint64_t fingerprint, bool hit);

/* The entry with this fingerprint (unparsed false) or the unparsed entry
 * (unparsed true, fingerprint ignored); NULL when absent.  Does not count as
 * a use.  Valid as px_qstats_get()'s result is. */
const px_qstat *px_qstats_find(const px_qstats *qs, uint64_t fingerprint, bool unparsed);

/* 99th percentile (nearest rank) of st's elapsed times, within ~7%; never
 * more than max_us.  0 when no calls. */
uint64_t px_qstat_p99_us(const px_qstat *st);
/* Record what the database says of the functions the shape calls (st NULL: no-op). */
void px_qstats_set_volatility(px_qstat *st, char volatility);

/* Drops every entry and the "evicted" shown by /queries; lifetime totals stay. */
void px_qstats_reset(px_qstats *qs);
void px_qstats_totals_get(const px_qstats *qs, px_qstats_totals *out);

/*
 * Rendering.  Entries are ordered by total time, longest first, then by
 * fingerprint; limit 0 means all of them, else only the first limit.
 *
 * JSON: {"shapes":N,"evicted":N,"queries":[{"fingerprint":"<16 hex>",
 * "query":"..." (null for the unparsed entry),"kind":"read","tables":[...],
 * "calls":N,"rows":N,"errors":N,"cache_hits":N,"cache_misses":N,
 * "total_ms":F,"mean_ms":F,"max_ms":F,"p99_ms":F}, ...]} where "evicted"
 * counts evictions since the last reset.
 *
 * Text: a header line and one line per entry, columns calls, total_ms,
 * mean_ms, p99_ms, max_ms, rows, errors, cache_hits, cache_misses
 * (right-aligned), kind (left-aligned),
 * then the query with white space runs collapsed to one space, cut to 80
 * characters ("..." appended).
 *
 * Metrics: pgfold_query_shapes (gauge), pgfold_query_shapes_evicted_total,
 * pgfold_statements_total, pgfold_statement_errors_total and
 * pgfold_statement_time_seconds_total, each with HELP and TYPE lines.
 */
void px_qstats_render_json(const px_qstats *qs, pf_sb *out, size_t limit);
void px_qstats_render_text(const px_qstats *qs, pf_sb *out, size_t limit);
void px_qstats_render_metrics(const px_qstats *qs, pf_sb *out);

/*
 * Registers on admin:
 *   GET  /queries          the JSON document; ?format=text for the table
 *                          (text/plain), ?limit=N for the first N entries;
 *                          a bad format or limit gets 400
 *   POST /queries/reset    px_qstats_reset(), 200 {"reset":true}
 * qs must outlive the admin server.  0, or -1 when a route could not be
 * registered (the admin route table is full).
 */
int px_qstats_add_admin_routes(px_admin *admin, px_qstats *qs);

#endif /* PGFOLD_PROXY_QSTATS_H */
