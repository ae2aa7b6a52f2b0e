/*
 * rcache.h — the result cache on the session's data path (cache.mode rules
 * or auto, Redis configured): simple Query, and extended-protocol
 * statements sent as one group (below).
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
 * Extended protocol: a group [Parse ""] Bind [Describe portal] Execute Sync
 * on an idle session (protocol/pgwire.h, pgw_ext_group; the N+1 batcher has
 * it first) is looked up the same way.  Its key adds the Parse's parameter
 * types, the Bind's parameter formats and values and its result formats
 * (cache/key.h).  The entry holds RowDescription, DataRows and
 * CommandComplete (a miss whose portal the client did not describe is sent
 * with a Describe added, whose RowDescription pgfold keeps to itself).  A hit
 * answers ParseComplete (when the group parsed), BindComplete, the
 * RowDescription only when the portal was described, the rows,
 * CommandComplete and ReadyForQuery; with an Execute row limit only when the
 * result has fewer rows.  A Parse answered so never reached the backend:
 * when it differs from the backend's unnamed statement it is deferred as the
 * batcher's are (batcher.h): the session sends it in front of the first
 * message that uses the unnamed statement.  Such a Parse succeeded for a
 * session of the same database, user and settings (the entry's key).
 *
 * N+1 batches (batcher.h): before the batcher sends a batch for a child, a
 * cacheable child is looked up (a hit answers it; a miss goes back to the
 * batcher, which then batches).  When the batch is delivered and the child
 * may be cached as the session is, every group is stored under the key the
 * child with that group's key would have: its text with the key literal
 * replaced (plain keys only: digits, letters, - _ . : @), or its Bind with
 * the key parameter's value replaced (text format, or binary smallint,
 * integer, bigint, text or varchar).  A batch has no
 * lookup that read the versions before it ran, so the entries are stored by
 * QC_FILL_SCRIPT only if Redis's bump log shows no bump of their versions
 * since a log sequence read before the batch was sent (the latest any
 * lookup or near-cache sync returned; cache/key.h).  A child pinned to a
 * primary-key value by the batch's key (rcache_rows.h) is stored per key,
 * each with that key's row version.
 *
 * Miss cost: per statement shape the outcomes of its recent lookups are kept
 * (rcache_shape.h); a shape whose lookups almost never hit (unique keys) is
 * cold: its statements go to PostgreSQL without waiting for a lookup,
 * counted as the bypass "cold_shape"; one in PX_RC_SHAPE_PROBE is also
 * looked up meanwhile (a probe: its answer only re-measures the shape).
 * Probes and one in PX_RC_SHAPE_STORE of the others are captured and stored
 * (QC_FILL_SCRIPT, against a log sequence read before the statement was
 * sent), so a shape whose keys start repeating warms up again.
 *
 * Near cache (rcache_near.h): a statement whose entry pgfold holds in
 * memory is answered at the loop turn's end under the lease, or else waits
 * for a sync with Redis's bump log sent after it arrived, instead of a
 * lookup, and is answered from memory when the entry's
 * versions did not move; an outdated one goes to PostgreSQL at once and is
 * stored with the versions the sync brought.  Lookups and stores fill it.
 *
 * Invalidation: every statement that completes is classified from its
 * analysis (tables written, or the primary-key values a write is pinned to:
 * rcache_rows.h; CALL/DO/DDL/unknown: the whole database) into the
 * session's pending writes; they are bumped (one EVAL) once committed:
 * at the ReadyForQuery with status 'I' (autocommit, or a block ended by
 * COMMIT), never after a ROLLBACK.  That ReadyForQuery is held back until
 * the bump is answered (at most max(100 ms, 4 x cache.timeout_ms)) and
 * every other pgfold holding a near-cache lease acknowledged it (at most the
 * lease, QC_LEASE_MS, for one that does not answer: rcache_near.h), so once
 * a client sees its COMMIT return, every pgfold sharing the Redis misses.
 * Per-table versions are keyed by relation name only (cache/key.h); what a
 * name is comes from relcat.h: reads of views, foreign, temporary or
 * unknown relations are not cached, writes to tables whose writes reach
 * other tables (triggers, rules, cascading foreign keys, partitions) bump
 * the whole database.  Not seen, so covered by the TTL alone: writes that
 * bypass pgfold, a failed bump as other instances see it until its retry
 * succeeds (this one answers nothing depending on it from the cache
 * meanwhile: rcache_retry.h), DDL made
 * elsewhere until relcat's periodic reload.
 *
 * Interface (session.c calls these; all no-ops when the cache is off)
 *   px_rcache_query()     a simple Query arrived: true when pgfold took it
 *   px_rcache_groups()    should the relay recognise extended groups for the cache?
 *   px_rcache_extended()  an extended group arrived (not the batcher's): true when pgfold took it
 *   px_rcache_busy()      a lookup is in flight: relay no more client messages
 *   px_rcache_offered_again()  the batcher is being given back a child it already saw
 *   px_rcache_unsettled() the client left with writes in flight: wait for their answer
 *   px_rcache_batch_claim()  the batcher is about to batch for a child: true when
 *                         the cache looks it up first (a miss goes back to the batcher)
 *   px_rcache_batch_fill()   a batch delivered: store each group under its child's key
 *   px_rcache_backend()   a backend message (or a streamed one's first chunk):
 *                         true when it is pgfold's own (not relayed)
 *   px_rcache_ready()     a backend ReadyForQuery: true to hold it back
 *   px_rcache_close()     the session is closing (stops the timer)
 *   px_rcache_free()      the session is freed
 * Admin (rcache_admin.c): px_rcache_add_admin_routes() GET /cache, POST /cache/flush;
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
#include "batcher.h"
#include "rcache_shape.h"

typedef struct px_session px_session;
typedef struct px_server px_server;
typedef struct px_rcache px_rcache;

/* Process-wide counters (px_server.cache_stats). */
typedef struct px_rcache_stats {
	uint64_t lookups;        /* statements held for a lookup (near cache or Redis) */
	uint64_t redis_lookups;  /* lookup EVALs sent */
	uint64_t near_hits;      /* hits answered from the near cache (counted in hits too) */
	uint64_t near_misses;    /* near entries found outdated: sent to PostgreSQL without a Redis lookup
	                            (counted in misses too) */
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
	uint64_t bypass_max_rows;  /* extended hits whose rows reach Execute's limit: forwarded */
	uint64_t fills;            /* N+1 batch groups sent to be stored (px_rcache_batch_fill) */
	uint64_t fill_refused;     /* ... fills Redis refused: a version changed since the batch began */
	uint64_t redis_now_us;     /* the latest Redis time a lookup returned (not a counter) */
	uint64_t log_seq;          /* the latest bump-log sequence a lookup returned (not a counter) ... */
	bool log_seq_known;        /* ... once one did */
	uint64_t bypass_cold;      /* executions of a cold shape sent without a lookup (rcache_shape.h) */
	uint64_t probes;           /* ... of which looked up meanwhile (not waited for) */
	uint64_t probe_hits;       /* ... and found a valid entry */
	px_rc_shapes shapes;       /* per-shape lookup outcomes (not counters) */
} px_rcache_stats;

bool px_rcache_query(px_session *s, const rw_analysis *an, const char *sql, size_t len, const uint8_t *msg,
		     size_t msg_len);
bool px_rcache_groups(const px_session *s);
bool px_rcache_extended(px_session *s, const pgw_ext_group *g, const uint8_t *bytes);
bool px_rcache_busy(const px_session *s);
bool px_rcache_offered_again(const px_session *s);
/* The client is leaving (Terminate, or its connection dropped) while writes
 * it sent are still unanswered: their commit is known only from their
 * ReadyForQuery, so the session waits for it before closing (else no
 * pgfold would invalidate what they changed). */
bool px_rcache_unsettled(const px_session *s);
bool px_rcache_batch_claim(px_session *s, const uint8_t *msg, size_t len);
void px_rcache_batch_fill(px_session *s, const px_prefetch *p, const uint8_t *child_msg, size_t child_len);
bool px_rcache_backend(px_session *s, const pgw_chunk *ch, const uint8_t *msg);
bool px_rcache_ready(px_session *s, char status);
void px_rcache_close(px_session *s);
void px_rcache_free(px_session *s);

void px_rcache_add_admin_routes(px_admin *admin, px_server *server);
void px_rcache_metrics(pf_sb *b, void *server);

#endif /* PGFOLD_PROXY_RCACHE_H */
