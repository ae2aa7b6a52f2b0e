/*
 * rcache_near.h — the near cache: the result cache's hot entries kept in
 * pgfold's own memory, so a hit costs no Redis lookup and no copy of the
 * result over the network.
 *
 * Why it is safe across pgfold instances sharing one Redis: every bump of a
 * version (cache/key.h) is logged in Redis under a sequence number.  The near
 * cache keeps the entries with the versions they were valid for, and its own
 * picture of the versions ("known"), brought up to date by a small EVAL
 * (QC_SYNC_SCRIPT) that returns the log since the last sequence it applied.
 * An entry is served only when every version it depends on equals the
 * known one, and only when the known versions include every bump whose
 * COMMIT returned before the statement arrived.  Two ways to be sure:
 *
 * The lease (the usual way): an instance subscribed to the channel
 * (px_near_channel(), cache/subscriber.h) and holding entries renews a lease in Redis's
 * registry every PX_NEAR_RENEW_MS (QC_LEASE_MS long, by Redis's clock);
 * each renewal also brings the log, and the lease is used, from the
 * renewal's answer on, for PX_NEAR_LEASE_VALID_MS after it was *sent* (the
 * rest is a margin for clocks running at slightly different rates).  Every
 * bump (QC_BUMP_SCRIPT) lists the other instances whose lease is running
 * and announces itself on the channel; the bumping instance holds the
 * COMMIT back (px_near_after_bump) until each listed one acknowledged the
 * bump or its lease ran out.  An instance hearing of a bump it has not
 * applied stops answering under the lease, sends a sync that acknowledges
 * everything up to the moment it runs, and answers again once that sync
 * is applied.  Renewals acknowledge what was applied when they were sent.
 * A registry younger than a lease (first use, Redis restarted or flushed,
 * the key evicted) makes every bump wait until it is a lease old: a lease
 * granted before may still be in use.  So under the lease a hit costs no
 * round trip; a write waits for its bump and, with other instances holding
 * leases, one more round trip through them (at most a lease when one of
 * them is paused or cut off).
 *
 * Without a lease (channel not subscribed, Redis slow, an announcement not
 * applied yet): a statement that finds its entry here waits for a sync
 * *sent after it arrived* (px_near_wait); a client that saw another
 * instance's COMMIT return before sending its read therefore always gets a
 * sync that includes that commit's bump.  One sync answers every statement
 * that arrived during the same loop turn, so its cost is shared.  When the
 * log cannot tell (first sync, Redis restarted or flushed, trimmed log, too
 * far behind) everything here is dropped.
 *
 * An own bump's new values are known here as soon as its answer arrives.
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
 *   px_near_wait()     call cb once a sync sent after this call was applied (ok) or failed,
 *                      or at the loop turn's end under the lease (ok)
 *   px_near_get()      the entry when it is current (under the lease or after a sync): payload and tag
 *   px_near_versions() the known versions of a list of keys (a miss stored without a lookup)
 *   px_near_learn()    the versions a lookup answer read, with its sequence number
 *   px_near_put()      keep an answer with the versions it is valid for
 *   px_near_after_bump() an own bump's answer: apply it, wait for the leases
 *   px_near_message()   an announcement from the channel
 *   px_near_sub_state() the channel's subscription came up or went down
 *   px_near_id(), px_near_channel()  this instance in the registry, the channel
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
#define PX_NEAR_LEASE_MS 400       /* a lease in the registry (QC_LEASE_MS) */
#define PX_NEAR_RENEW_MS 100       /* the lease is renewed this often ... */
#define PX_NEAR_LEASE_VALID_MS 300 /* ... and used this long after a renewal was sent
				      (QC_LEASE_MS in the registry: the rest is the margin) */
#define PX_NEAR_MAX_PEERS 256      /* other instances' acknowledgements followed */

typedef struct px_near px_near;

typedef struct px_near_stats {
	uint64_t hits;       /* statements answered from the near cache */
	uint64_t stale;      /* entries found but no longer current after the sync */
	uint64_t syncs;      /* syncs sent */
	uint64_t sync_errors;
	uint64_t resets;     /* times everything was dropped */
	uint64_t evictions;
	uint64_t leased;     /* statement batches answered under the lease, without a sync */
	uint64_t acks;       /* acknowledgements published */
	uint64_t bump_waits; /* own bumps that other instances' leases had to acknowledge */
	uint64_t bump_wait_timeouts; /* ... and that a lease ran out on instead */
	size_t entries;
	size_t bytes;
	size_t known;
	bool lease_held;     /* answering under the lease right now */
} px_near_stats;

/* The answer to px_near_wait(): ok false when the sync failed. */
typedef void (*px_near_fn)(void *ctx, bool ok);

px_near *px_near_new(uv_loop_t *loop);
/* Every waiter is called (ok false) before it returns: the pending ones
 * here, those of syncs in flight by qc_redis_close(), which must run first
 * (it answers every command still waiting). */
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

/* Shutdown, before Redis is closed: end the lease in the registry now (other
 * instances' writes need not wait for it to run out). */
void px_near_release(px_near *n);
/* The subscription to px_near_channel() is up (true) or lost. */
void px_near_sub_state(px_near *n, bool active);
/* A message on the channel: "b <seq> <id>" (another instance bumped) or
 * "a <seq> <id>" (it acknowledged every bump up to seq). */
void px_near_message(px_near *n, const char *payload, size_t len);
/* An own bump's answer (QC_BUMP_SCRIPT): its new values are applied here at
 * once; true when the COMMIT must wait for other instances' leases: cb(ctx,
 * ok) then runs once, later (ok false only when the near cache is freed). */
bool px_near_after_bump(px_near *n, const struct redisReply *reply, px_near_fn cb, void *ctx);
/* This instance's id in the lease registry, and the channel to subscribe to
 * ("pgfold:bus:<redis database>"). */
const char *px_near_id(const px_near *n);
const char *px_near_channel(const px_near *n);

px_near_stats px_near_stats_get(const px_near *n);
/* The last bump-log sequence a sync applied (0: none; NULL-safe). */
uint64_t px_near_synced(const px_near *n);

#endif /* PGFOLD_PROXY_RCACHE_NEAR_H */
