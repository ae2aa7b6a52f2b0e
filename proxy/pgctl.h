/*
 * pgctl.h — pgfold's own side connections to PostgreSQL: libpq in
 * non-blocking mode, driven by the libuv loop through PQsocket on a uv_poll_t.
 * Used for catalog lookups (function volatility), never for client traffic.
 *
 *   px_pgctl_new()    start connecting (keywords/values as PQconnectStartParams)
 *   px_pgctl_query()  queue one statement; its callback runs exactly once
 *   px_pgctl_failed() the connection is unusable (connect failure, timeout,
 *                     server gone, closed); px_pgctl_error() says why
 *   px_pgctl_close()  idempotent; queued callbacks run with an error; the
 *                     object frees itself after its handles closed
 *
 * Queries run one at a time in FIFO order.  An SQL error fails only its own
 * query; a connection-level failure (connect, timeout, server gone) fails the
 * running query and every queued one, and the connection stays failed: the
 * owner makes a new one when it wants.  Host names are resolved by libpq
 * synchronously; use an address literal or a socket directory where that
 * matters.  Notices from the server go to the debug log.
 */
#ifndef PGFOLD_PROXY_PGCTL_H
#define PGFOLD_PROXY_PGCTL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <uv.h>

typedef struct px_pgctl px_pgctl;

/* The outcome of one query: res is the last PGresult (NULL when err is set);
 * it is freed after the callback returns.  err is a one-line message without
 * a trailing newline.  The callback may call px_pgctl_query() or
 * px_pgctl_close() on its connection; it is never called from inside
 * px_pgctl_new() or px_pgctl_query(), and is called from inside
 * px_pgctl_close() (err "closed") for every query still queued. */
typedef void (*px_pgctl_cb)(const PGresult *res, const char *err, void *ctx);

/* Never NULL.  timeout_ms bounds the connect and each query (0: 5 s).  A
 * connection that fails at once (bad parameters) is returned failed. */
px_pgctl *px_pgctl_new(uv_loop_t *loop, const char *const *keywords, const char *const *values, unsigned timeout_ms);
/* 0 when queued; -1 when the connection has failed or is closed (the
 * callback will not run). */
int px_pgctl_query(px_pgctl *c, const char *sql, px_pgctl_cb cb, void *ctx);
/* true once the connection is unusable: failed or closed. */
bool px_pgctl_failed(const px_pgctl *c);
/* Why it failed ("" while it has not); valid until px_pgctl_close(). */
const char *px_pgctl_error(const px_pgctl *c);
/* Idempotent, also from inside a callback.  Runs the callback of every
 * queued query with err "closed" before returning; c must not be used
 * afterwards (it frees itself once its handles closed). */
void px_pgctl_close(px_pgctl *c);

#endif /* PGFOLD_PROXY_PGCTL_H */
