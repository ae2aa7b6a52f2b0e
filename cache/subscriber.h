/*
 * subscriber.h — one Redis connection subscribed to one pub/sub channel, the
 * way the result cache hears the invalidations other pgfold instances
 * publish.  hiredis 0.14 async API on the libuv loop (redis_link.c), like
 * cache/redis.c, but its own connection: a subscribed
 * connection can send nothing else, so it cannot be one of the pool's.
 *
 * Each connection sends AUTH (with a user name for a Redis 6 ACL user) when
 * a password is configured, then SUBSCRIBE <channel>; no SELECT (pub/sub
 * ignores databases).  The subscription is active once Redis confirms the
 * SUBSCRIBE.  A failed connect, a connect + handshake not done within the
 * timeout, an error answer (AUTH: WRONGPASS ...) or a lost connection ends
 * the attempt; the next one follows with capped exponential backoff
 * (QC_BACKOFF_MIN_MS doubling to QC_BACKOFF_MAX_MS, back to the minimum
 * after each successful subscribe), forever.  The password is never logged.
 *
 * While the subscription is not active, messages published on the channel
 * are lost (Redis pub/sub keeps nothing): the caller learns of each such gap
 * from on_state(false) and the generation changing, and must assume it
 * missed some.  A silently dead peer is noticed through TCP keepalive
 * (about half a minute); there is no PING.
 *
 * Interface
 *   qc_sub_open(loop, options, channel, on_message, on_state, ctx)
 *                            start connecting (and keep reconnecting)
 *   qc_sub_active(s)         subscribed right now
 *   qc_sub_generation(s)     how many times the subscription became active
 *   qc_sub_messages(s)       messages delivered to on_message
 *   qc_sub_close(s)          idempotent; no callback afterwards; frees itself
 *                            once hiredis and libuv let go
 * Each change is logged once: "redis ADDR: subscribed to CHANNEL" (info),
 * "redis ADDR: subscription to CHANNEL lost (why); resubscribing" or, before
 * the first subscribe, "redis ADDR: cannot subscribe to CHANNEL (why);
 * retrying" (warning); further failed attempts at debug level.
 *
 * Callbacks run from the loop, never from inside qc_sub_open() or
 * qc_sub_close().  Either may call qc_sub_close(s) (s stays valid until the
 * callback returns).  Single-threaded: every function runs on the loop's
 * thread; the process must ignore SIGPIPE (pgfold's main does).
 */
#ifndef PGFOLD_CACHE_SUBSCRIBER_H
#define PGFOLD_CACHE_SUBSCRIBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis.h"

typedef struct qc_sub qc_sub;

/* A message published on the channel; payload is valid only during the call
 * (binary-safe, len bytes). */
typedef void (*qc_sub_message_fn)(void *ctx, const char *payload, size_t len);
/* The subscription became active (Redis confirmed SUBSCRIBE: true) or was
 * lost (false: connection lost or closed by Redis).  Called only on a change. */
typedef void (*qc_sub_state_fn)(void *ctx, bool active);

/* Starts connecting to options->addr (must be CF_ADDR_TCP; a host name is
 * resolved before every attempt) with options->timeout_ms for each connect +
 * handshake (0: 1000 ms), options->username / password for AUTH; database
 * and connections are ignored.  channel is copied.  Either callback may be
 * NULL.  Returns NULL, after logging, only when the address is not TCP or
 * the channel is NULL or empty. */
qc_sub *qc_sub_open(uv_loop_t *loop, const qc_redis_options *options, const char *channel,
		    qc_sub_message_fn on_message, qc_sub_state_fn on_state, void *ctx);

bool qc_sub_active(const qc_sub *s);         /* subscribed right now (false for NULL) */
uint64_t qc_sub_generation(const qc_sub *s); /* incremented each time the subscription becomes active (0: never) */
uint64_t qc_sub_messages(const qc_sub *s);   /* messages delivered (0 for NULL) */

/* Idempotent, NULL-safe.  Drops the connection without calling on_state:
 * no callback runs after this returns.  s frees itself once hiredis has let
 * go of the connection and its timer closed: do not use s after this call
 * (except inside a callback that is running). */
void qc_sub_close(qc_sub *s);

#endif /* PGFOLD_CACHE_SUBSCRIBER_H */
