/*
 * rcache_retry.h — bumps that failed.  A committed write whose bump Redis
 * did not take (refused, an error, no answer in time) leaves entries in the
 * cache that still match its tables' or rows' versions.  Its version keys
 * are kept here and bumped again, once a second while Redis is up, until
 * one bump of each succeeds; until then no statement depending on one of
 * them is answered from the cache by this pgfold (rcache.c asks
 * px_bump_retry_blocks() before every lookup), so a client never reads
 * through pgfold a result older than its own committed write.  Other
 * pgfold instances learn of it when the retry succeeds (until then they
 * rely on the TTL, as README says).
 *
 * Bounded: past PX_BUMP_RETRY_MAX keys the global version key
 * (QC_KEY_GLOBAL, read by every lookup) stands for them all.
 *
 * Interface
 *   px_bump_retry_new / px_bump_retry_free (after Redis is closed)
 *   px_bump_retry_configure()  the Redis and near cache to use
 *   px_bump_retry_add()        version keys whose bump failed
 *   px_bump_retry_blocks()     does a lookup over these version keys wait for a retry?
 *   px_bump_retry_pending()    keys waiting (for /cache)
 */
#ifndef PGFOLD_PROXY_RCACHE_RETRY_H
#define PGFOLD_PROXY_RCACHE_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "../cache/key.h"
#include "../cache/redis.h"
#include "rcache_near.h"

#define PX_BUMP_RETRY_MAX 4096  /* version keys kept; more: the global key instead */
#define PX_BUMP_RETRY_MS 1000   /* one retry this often while any is waiting */
#define PX_BUMP_RETRY_BATCH 64  /* keys per retried bump */

typedef struct px_bump_retry px_bump_retry;

px_bump_retry *px_bump_retry_new(uv_loop_t *loop);
/* Pending retries are answered (QC_CLOSED) by qc_redis_close(): call this after it. */
void px_bump_retry_free(px_bump_retry *br);
void px_bump_retry_configure(px_bump_retry *br, qc_redis *redis, px_near *near);
void px_bump_retry_add(px_bump_retry *br, const char *const *keys, size_t n);
bool px_bump_retry_blocks(const px_bump_retry *br, const qc_keys *vk);
size_t px_bump_retry_pending(const px_bump_retry *br);

#endif /* PGFOLD_PROXY_RCACHE_RETRY_H */
