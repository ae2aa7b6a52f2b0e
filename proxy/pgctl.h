/*
 * pgctl.h — pgfold's own side connections to PostgreSQL: libpq in
 * non-blocking mode, driven by the libuv loop through PQsocket on a uv_poll_t.
 * Used for catalog lookups (function volatility), never for client traffic.
 *
 *   px_pgctl_new()    start connecting (keywords/values as PQconnectStartParams)
 *   px_pgctl_query()  queue one statement; its callback runs exactly once
 *   px_pgctl_close()  idempotent; queued callbacks run with an error; the
 *                     object frees itself after its handles closed
 */
#ifndef PGFOLD_PROXY_PGCTL_H
#define PGFOLD_PROXY_PGCTL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <uv.h>

typedef struct px_pgctl px_pgctl;

/* The outcome of one query: res is the last PGresult (NULL when err is set);
 * it is freed after the callback returns.  The callback may call
 * px_pgctl_query() or px_pgctl_close(); it is never called from inside
 * px_pgctl_query(). */
typedef void (*px_pgctl_cb)(const PGresult *res, const char *err, void *ctx);

/* timeout_ms bounds the connect and each query. */
px_pgctl *px_pgctl_new(uv_loop_t *loop, const char *const *keywords, const char *const *values, unsigned timeout_ms);
/* 0 when queued; -1 when the connection has failed or is closed (the
 * callback will not run). */
int px_pgctl_query(px_pgctl *c, const char *sql, px_pgctl_cb cb, void *ctx);
bool px_pgctl_failed(const px_pgctl *c);
void px_pgctl_close(px_pgctl *c);

#endif /* PGFOLD_PROXY_PGCTL_H */
