/*
 * rcache_near.h — the near cache: the result cache's hot entries kept in
 * pgfold's own memory, so a hit costs no Redis lookup and no copy of the
 * result over the network.
 *
 * Why it is safe across pgfold instances sharing one Redis: every bump of a
 * version (cache/key.h) is logged in Redis under a sequence number.  The near
 * cache keeps the entries with the versions they were valid for, and its own
 * picture of the versions ("known"), brought up to date by one small EVAL
 * (QC_SYNC_SCRIPT) that returns the log since the last sequence it applied.
 * A statement that finds its entry here waits for a sync *sent after it
 * arrived* (px_near_wait); a client that saw another instance's COMMIT
 * return before sending its read therefore always gets a sync that
 * includes that commit's bump, and the entry is served only when every
 * version it depends on still equals the known one.  One sync answers every
 * statement that arrived during the same loop turn, so its cost is shared.  When the log cannot tell (first sync, Redis restarted or
 * flushed, trimmed log, too far behind) everything here is dropped.
 *
 * Known versions come from lookup answers (px_near_learn): merged (larger
 * value wins; versions only grow) unless the answer was read before the
 * last sync applied — then a bump between the two could be missing from it
 * and it is not used.  A version not known makes its entries invalid.
 *
 * Bounded: entries by bytes (cache.near_cache_bytes, least recently used
 * evicted; 0 turns the near cache off), known versions by count: past
 * PX_NEAR_MAX_KNOWN the ones no entry depends on are forgotten, and if
 * that leaves less than a quarter free, everything is dropped.  An entry
 * also expires at its Redis TTL.
 *
 * Interface
 *   px_near_new / px_near_free / px_near_configure
 *   px_near_enabled()  configured with a size > 0 and a Redis
 *   px_near_has()      an entry exists (unexpired) for the key: worth waiting for a sync
 *   px_near_wait()     call cb once a sync sent after this call was applied (ok) or failed
 *   px_near_get()      the entry when it is current (after a sync): payload and tag
 *   px_near_versions() the known versions of a list of keys (a miss stored without a lookup)
 *   px_near_learn()    the versions a lookup answer read, with its sequence number
 *   px_near_put()      keep an answer with the versions it is valid for
 *   px_near_stats_get() counters for /cache
 */
#ifndef PGFOLD_PROXY_RCACHE_NEAR_H
#define PGFOLD_PROXY_RCACHE_NEAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../cache/key.h"
#include "../cache/redis.h"
#include "../common/strbuf.h"

#define PX_NEAR_MAX_KNOWN 262144 /* version keys followed at once */

typedef struct px_near px_near;

typedef struct px_near_stats {
	uint64_t hits;       /* statements answered from the near cache */
	uint64_t stale;      /* entries found but no longer current after the sync */
	uint64_t syncs;      /* syncs sent */
	uint64_t sync_errors;
	uint64_t resets;     /* times everything was dropped */
	uint64_t evictions;
	size_t entries;
	size_t bytes;
	size_t known;
} px_near_stats;

/* The answer to px_near_wait(): ok false when the sync failed. */
typedef void (*px_near_fn)(void *ctx, bool ok);

px_near *px_near_new(uv_loop_t *loop);
/* Every waiter is called (ok false) before it returns. */
void px_near_free(px_near *n);
/* The Redis to sync with (may be NULL) and the size bound (0: off; smaller
 * than before: evicts at once). */
void px_near_configure(px_near *n, qc_redis *redis, size_t max_bytes);
bool px_near_enabled(const px_near *n);

bool px_near_has(px_near *n, const char *key);
/* cb(ctx, ok) runs exactly once, always from the loop, never inside this call. */
void px_near_wait(px_near *n, px_near_fn cb, void *ctx);
/* The entry for key when every version it holds equals the known one:
 * true with its payload, length and CommandComplete tag (valid until the
 * next call into the near cache). */
bool px_near_get(px_near *n, const char *key, const char **payload, size_t *len, const char **tag);

/* The known versions of vk's keys as a lookup would return them
 * ("v1,v2,..." into out), when every one is known.  Right after a sync
 * they are at least what Redis held when the sync ran: a statement sent to
 * PostgreSQL after that may be stored with them (they were all read before
 * it). */
bool px_near_versions(const px_near *n, const qc_keys *vk, pf_sb *out);

/* A lookup's answer read versions (comma-separated, in vk's order) when the
 * log stood at seq (decimal string). */
void px_near_learn(px_near *n, const char *seq, const qc_keys *vk, const char *versions);
/* Keep payload (checked: qc_payload_check) for key, valid while vk's
 * versions equal versions, for ttl_ms at most. */
void px_near_put(px_near *n, const char *key, const qc_keys *vk, const char *versions, const char *payload,
		 size_t len, int64_t ttl_ms);

px_near_stats px_near_stats_get(const px_near *n);
/* The last bump-log sequence a sync applied (0: none; NULL-safe). */
uint64_t px_near_synced(const px_near *n);

#endif /* PGFOLD_PROXY_RCACHE_NEAR_H */
