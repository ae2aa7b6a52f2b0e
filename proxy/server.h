/*
 * server.h — the px_server as the sessions see it (internal to proxy/): the
 * current configuration snapshot, the counters, the session registry used
 * to route CancelRequests, and the shutdown flag.
 */
#ifndef PGFOLD_PROXY_SERVER_H
#define PGFOLD_PROXY_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../cache/redis.h"
#include "../rewrite/analysis.h"
#include "../rewrite/nplusone.h"
#include "qstats.h"
#include "volatility.h"
#include "../cache/subscriber.h"
#include "rcache_near.h"
#include "rcache_retry.h"
#include "relcat.h"
#include "../conf/conf.h"
#include "admin.h"
#include "proxy.h"
#include "stats.h"
#include "rcache.h"

typedef struct px_session px_session;

struct px_server {
	uv_loop_t *loop;
	const px_options *opts;
	cf_config *cfg; /* current snapshot; replaced whole on reload */
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} listener;
	bool listener_open;
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t shutdown_timer;
	px_admin *admin;
	px_admin_info admin_info;
	rw_analyzer *analyzer; /* statement analysis cache, shared by every session */
	px_qstats *qstats;     /* per-shape statistics for /queries */
	rw_np_registry *np_registry; /* N+1 patterns, shared by every session */
	px_volatility *volatility; /* function volatility per database; NULL until started */
	px_relcat *relcat;         /* relation kinds and write side effects per database (result cache) */
	qc_redis *redis; /* NULL when cache.redis = off; closed with the admin at shutdown */
	px_bump_retry *bump_retry;   /* failed bumps, retried (rcache_retry.h); freed after redis */
	qc_sub *bus;                 /* the near cache's announcements (cache/subscriber.h) */
	px_stats stats;
	px_rcache_stats cache_stats; /* result cache counters (/cache) */
	px_near *near;               /* the near cache (rcache_near.h); freed after redis is closed */
	px_session *sessions; /* doubly linked through session->next/prev */
	uint64_t next_session_id;
	bool shutting_down;
	bool signals_open;
};

/* Called by a session once every one of its handles has closed. */
void px_server_session_gone(px_server *server, px_session *session);
/* The live session whose backend sent this BackendKeyData, or NULL. */
px_session *px_server_find_by_key(px_server *server, uint32_t pid, uint32_t key);
/* Called when a session became idle or closed during shutdown. */
void px_server_check_drained(px_server *server);

#endif /* PGFOLD_PROXY_SERVER_H */
