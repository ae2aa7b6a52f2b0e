/*
 * rcache.h — the result cache on the session's data path (cache.mode rules
 * or auto, Redis configured).  First slice: simple Query only.
 *
 * Lookup: a simple Query holding one cacheable statement (cache/policy.h) on
 * an idle session is held back (the client's reads pause) while one EVAL
 * (cache/key.h) reads the entry and the versions of every table it reads;
 * the lookup is bounded by cache.timeout_ms.  A hit writes the stored
 * RowDescription / DataRows / CommandComplete and a ReadyForQuery with the
 * session's status to the client; the statement never reaches PostgreSQL.
 * A miss forwards the Query and captures its answer (up to
 * cache.max_entry_bytes, plain results only), stored with the versions the
 * lookup read and the TTL after its ReadyForQuery.  Redis down, erroring or
 * late: the Query is forwarded unchanged (fail open), counted.
 *
 * Invalidation: every statement that completes is classified from its
 * analysis (tables written, CALL/DO/DDL/unknown: the whole database) into
 * the session's pending writes; they are bumped (one EVAL) once committed:
 * at the ReadyForQuery with status 'I' (autocommit, or a block ended by
 * COMMIT), never after a ROLLBACK.  That ReadyForQuery is held back until
 * the bump is answered (at most max(100 ms, 4 x cache.timeout_ms)), so once
 * a client sees its COMMIT return, every pgfold sharing the Redis misses.
 * Per-table versions are keyed by relation name only (cache/key.h); what a
 * name is comes from relcat.h: reads of views, foreign, temporary or
 * unknown relations are not cached, writes to tables whose writes reach
 * other tables (triggers, rules, cascading foreign keys, partitions) bump
 * the whole database.  Not seen, so covered by the TTL alone: writes that
 * bypass pgfold, a bump lost while Redis was unreachable, DDL made
 * elsewhere until relcat's periodic reload.
 *
 * Interface (session.c calls these; all no-ops when the cache is off)
 *   px_rcache_query()     a simple Query arrived: true when pgfold took it
 *   px_rcache_busy()      a lookup is in flight: relay no more client messages
 *   px_rcache_backend()   a backend message (or a streamed one's first chunk)
 *   px_rcache_ready()     a backend ReadyForQuery: true to hold it back
 *   px_rcache_close()     the session is closing (stops the timer)
 *   px_rcache_free()      the session is freed
 * Admin: px_rcache_add_admin_routes() GET /cache, POST /cache/flush;
 * px_rcache_metrics() the /metrics lines.
 */
#ifndef PGFOLD_PROXY_RCACHE_H
#define PGFOLD_PROXY_RCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../cache/policy.h"
#include "../common/strbuf.h"
#include "../protocol/pgwire.h"
#include "../rewrite/analysis.h"
#include "admin.h"

typedef struct px_session px_session;
typedef struct px_server px_server;
typedef struct px_rcache px_rcache;

/* Process-wide counters (px_server.cache_stats). */
typedef struct px_rcache_stats {
	uint64_t lookups;        /* EVALs sent */
	uint64_t hits;
	uint64_t misses;
	uint64_t stores;         /* entries written (SET answered OK) */
	uint64_t store_errors;
	uint64_t invalidations;  /* version keys bumped */
	uint64_t bump_errors;    /* bumps refused, failed or late */
	uint64_t redis_errors;   /* lookups refused or failed */
	uint64_t timeouts;       /* lookups not answered within cache.timeout_ms */
	uint64_t bytes_served;   /* payload bytes written to clients from the cache */
	uint64_t bytes_stored;
	uint64_t flushes;
	uint64_t lookups_answered; /* lookups answered before their deadline ... */
	uint64_t lookup_us_sum;    /* ... their round trips, microseconds */
	uint64_t lookup_us_max;
	uint64_t bypass[QC_BYPASS_COUNT];
} px_rcache_stats;

bool px_rcache_query(px_session *s, const rw_analysis *an, const char *sql, size_t len, const uint8_t *msg,
		     size_t msg_len);
bool px_rcache_busy(const px_session *s);
void px_rcache_backend(px_session *s, const pgw_chunk *ch, const uint8_t *msg);
bool px_rcache_ready(px_session *s, char status);
void px_rcache_close(px_session *s);
void px_rcache_free(px_session *s);

void px_rcache_add_admin_routes(px_admin *admin, px_server *server);
void px_rcache_metrics(pf_sb *b, void *server);

#endif /* PGFOLD_PROXY_RCACHE_H */
