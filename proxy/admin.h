/*
 * admin.h — the admin HTTP/1.1 port: a small server on the libuv loop
 * (request parsing by Debian's http-parser) that dispatches GET/POST requests
 * to registered routes.  Requests are bounded (8 KiB head, no body kept over
 * 64 KiB); anything malformed gets 400, unknown paths 404, other methods 405;
 * a bad request never affects the proxy.
 *
 * Interface
 *   px_admin_new(loop)            an admin server with no routes
 *   px_admin_route(...)           register METHOD PATH -> handler
 *   px_admin_listen(admin, addr)  bind and listen (0 or a libuv error code)
 *   px_admin_close(admin)         stop listening, close every connection;
 *                                 the object frees itself once all handles closed
 *   px_admin_port(admin)          the port a TCP listener got (listen on port 0)
 *   px_admin_set_idle_timeout()   change the 10 s idle timeout (tests)
 *   px_admin_add_stats_routes()   /health, /stats and /metrics over a px_stats
 *                                 and the Redis client's health
 *   px_admin_metric()             one Prometheus counter or gauge, for /metrics lines
 *   px_admin_metric_seconds()     ... of a time kept in microseconds
 */
#ifndef PGFOLD_PROXY_ADMIN_H
#define PGFOLD_PROXY_ADMIN_H

#include <uv.h>

#include "../cache/redis.h"
#include "../common/strbuf.h"
#include "../conf/conf.h"
#include "stats.h"

typedef struct px_admin px_admin;

typedef struct px_admin_request {
	const char *method; /* "GET", "POST" */
	const char *path;   /* without the query string, e.g. "/stats" */
	const char *query;  /* after '?', "" when none, e.g. "format=text" */
} px_admin_request;

typedef struct px_admin_response {
	int status;               /* 200 by default */
	const char *content_type; /* "application/json" by default */
	pf_sb body;               /* handler appends the body here */
} px_admin_response;

/* A route handler: fills resp from req, synchronously.  It must not close the
 * admin server. */
typedef void (*px_admin_handler)(const px_admin_request *req, px_admin_response *resp, void *ctx);

px_admin *px_admin_new(uv_loop_t *loop);
/* method "GET" or "POST"; path exact, e.g. "/queries/reset".  0 or -1 when full. */
int px_admin_route(px_admin *admin, const char *method, const char *path, px_admin_handler handler, void *ctx);
/* 0 or a negative libuv error (UV_EADDRINUSE, ...). */
int px_admin_listen(px_admin *admin, const cf_addr *addr);
/* Idempotent; frees the admin once every handle's close_cb ran. */
void px_admin_close(px_admin *admin);
/* The local port of a TCP listener (useful after listening on port 0), or -1
 * when there is none. */
int px_admin_port(const px_admin *admin);
/* A connection must deliver a whole request within idle_ms of opening or of
 * its previous response; 0 restores the default (10 s).  Affects connections
 * accepted afterwards and the next restart of existing ones' timers. */
void px_admin_set_idle_timeout(px_admin *admin, unsigned idle_ms);

/* One metric in the Prometheus text format: HELP, TYPE ("counter" or
 * "gauge") and the value. */
void px_admin_metric(pf_sb *b, const char *name, const char *type, const char *help, uint64_t value);
/* The same for a time kept in microseconds, written in seconds. */
void px_admin_metric_seconds(pf_sb *b, const char *name, const char *type, const char *help, uint64_t us);

/* What /health and /stats report besides the counters. */
typedef struct px_admin_info {
	const px_stats *stats;
	const char *version;
	/* Returns true while the proxy accepts clients (false once shutting down). */
	int (*accepting)(void *ctx);
	void *ctx;
	/* Redis health for /health, /stats and /metrics; NULL when cache.redis
	 * is off (then /stats says "off" and the others leave Redis out). */
	const qc_redis *redis;
	/* Per-shape statistics: /metrics adds their totals; NULL leaves them out. */
	const struct px_qstats *qstats;
	/* N+1 patterns: /stats and /metrics add their totals; NULL leaves them out. */
	const struct rw_np_registry *nplusone;
	/* More /metrics lines (the result cache's); NULL leaves them out. */
	void (*extra_metrics)(pf_sb *b, void *ctx);
	void *extra_ctx;
} px_admin_info;

/* Registers GET /health, /stats (JSON) and /metrics (Prometheus, pgfold_ prefix).
 * info must outlive the admin server. */
void px_admin_add_stats_routes(px_admin *admin, const px_admin_info *info);

#endif /* PGFOLD_PROXY_ADMIN_H */
