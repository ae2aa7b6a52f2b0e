/*
 * server.c — the process-wide proxy: the client listener, the session
 * registry, signals (SIGHUP reload, SIGTERM/SIGINT graceful shutdown), the
 * admin port, the Redis client (health, and the result cache: rcache.h;
 * pgfold works the same with Redis down) and the catalog readers
 * (volatility.h, relcat.h).  The loop ends by itself once shutdown has
 * closed every handle.
 */
#include "server.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "session.h"

#include "volatility.h"

#define PX_REDIS_TIMEOUT_MS 1000u /* per Redis command, PING and connect */



static uint64_t wall_clock_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

int px_config_build(const px_options *opts, cf_config **out, cf_error *err)
{
	cf_config *cfg = cf_config_new();
	memset(err, 0, sizeof(*err));
	if (opts->config_path && cf_config_load_file(cfg, opts->config_path, err) < 0)
		goto fail;
	for (size_t i = 0; i < opts->noverrides; i++)
		if (cf_config_set(cfg, opts->overrides[i].key, opts->overrides[i].value, err) < 0)
			goto fail;
	if (cf_config_validate(cfg, err) < 0)
		goto fail;
	*out = cfg;
	return 0;
fail:
	cf_config_free(cfg);
	return -1;
}

/* ---- sessions ----------------------------------------------------------- */

void px_server_session_gone(px_server *server, px_session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		server->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	server->stats.clients_active--;
	px_server_check_drained(server);
}

px_session *px_server_find_by_key(px_server *server, uint32_t pid, uint32_t key)
{
	for (px_session *s = server->sessions; s; s = s->next)
		if (s->has_key && s->backend_pid == pid && s->backend_key == key && s->state != PX_SESSION_CLOSING)
			return s;
	return NULL;
}

/* ---- shutdown ----------------------------------------------------------- */

static void close_listener(px_server *server)
{
	if (!server->listener_open)
		return;
	server->listener_open = false;
	uv_close(&server->listener.handle, NULL);
}

static void close_signals(px_server *server)
{
	if (!server->signals_open)
		return;
	server->signals_open = false;
	uv_close((uv_handle_t *)&server->sig_term, NULL);
	uv_close((uv_handle_t *)&server->sig_int, NULL);
	uv_close((uv_handle_t *)&server->sig_hup, NULL);
	uv_close((uv_handle_t *)&server->shutdown_timer, NULL);
}

void px_server_check_drained(px_server *server)
{
	if (!server->shutting_down || server->sessions || !server->signals_open)
		return;
	pf_info("all clients gone, exiting");
	close_signals(server);
	if (server->admin) {
		px_admin_close(server->admin);
		server->admin = NULL;
	}
	qc_sub_close(server->bus);
	server->bus = NULL;
	px_near_release(server->near);
	if (server->redis) {
		server->admin_info.redis = NULL;
		qc_redis_close(server->redis); /* every answer delivered: the near cache may go */
		server->redis = NULL;
	}
	px_near_free(server->near);
	server->near = NULL;
	px_bump_retry_free(server->bump_retry);
	server->bump_retry = NULL;
	px_volatility_close(server->volatility);
	server->volatility = NULL;
	px_relcat_close(server->relcat);
	server->relcat = NULL;
}

static void close_all_sessions(px_server *server)
{
	for (px_session *s = server->sessions; s; s = s->next) {
		px_session_cancel_running(s);
		px_session_close(s, "shutdown_timeout expired", "57P01",
				 "terminating connection due to administrator command");
	}
}

static void on_shutdown_timeout(uv_timer_t *timer)
{
	px_server *server = timer->data;
	pf_warn("shutdown_timeout expired, closing the remaining clients");
	close_all_sessions(server);
}

static void begin_shutdown(px_server *server, int signum)
{
	if (server->shutting_down) {
		pf_info("signal %d again: closing every client now", signum);
		close_all_sessions(server);
		return;
	}
	pf_info("signal %d: stopping; waiting up to %d ms for running queries", signum,
		server->cfg->shutdown_timeout_ms);
	server->shutting_down = true;
	close_listener(server);
	uv_timer_start(&server->shutdown_timer, on_shutdown_timeout, (uint64_t)server->cfg->shutdown_timeout_ms, 0);
	for (px_session *s = server->sessions; s; s = s->next)
		px_session_close_if_idle(s);
	px_server_check_drained(server);
}

/* ---- reload ------------------------------------------------------------- */

static void report_fixed(const char *key, void *ctx)
{
	(void)ctx;
	pf_warn("reload: %s changed; it takes effect only after a restart", key);
}

static void reload(px_server *server)
{
	cf_config *next;
	cf_error err;
	if (px_config_build(server->opts, &next, &err) < 0) {
		char msg[900];
		pf_error("reload failed, keeping the running configuration: %s", cf_error_format(&err, msg, sizeof(msg)));
		return;
	}
	cf_config_carry_fixed(server->cfg, next, report_fixed, NULL);
	cf_config_free(server->cfg);
	server->cfg = next;
	pf_log_set_level((pf_log_level)next->log_level);
	px_volatility_configure(server->volatility, next);
	px_relcat_configure(server->relcat, next);
	px_near_configure(server->near, server->redis, next->cache_near_cache_bytes);
	server->stats.config_reloads++;
	pf_info("configuration reloaded");
}

static void on_signal(uv_signal_t *handle, int signum)
{
	px_server *server = handle->data;
	if (signum == SIGHUP)
		reload(server);
	else
		begin_shutdown(server, signum);
}

/* ---- listener ----------------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status)
{
	px_server *server = listener->data;
	if (status < 0) {
		pf_warn("accept: %s", uv_strerror(status));
		return;
	}
	if (!server->shutting_down)
		px_session_accept(server, listener);
}

static int bind_tcp(px_server *server, const cf_addr *addr)
{
	char port[16];
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", addr->port);
	if (getaddrinfo(addr->host, port, &hints, &res) != 0 || !res)
		return UV_EADDRNOTAVAIL;
	int rc = uv_tcp_init(server->loop, &server->listener.tcp);
	if (rc == 0) {
		server->listener_open = true;
		rc = uv_tcp_bind(&server->listener.tcp, res->ai_addr, 0);
	}
	freeaddrinfo(res);
	return rc;
}

static int bind_unix(px_server *server, const cf_addr *addr)
{
	int rc = uv_pipe_init(server->loop, &server->listener.pipe, 0);
	if (rc < 0)
		return rc;
	server->listener_open = true;
	unlink(addr->path); /* a stale socket file from an earlier run */
	return uv_pipe_bind(&server->listener.pipe, addr->path);
}

static int start_listener(px_server *server)
{
	const cf_addr *addr = &server->cfg->listen;
	char where[300];
	server->listener.handle.data = server;
	int rc = addr->kind == CF_ADDR_UNIX ? bind_unix(server, addr) : bind_tcp(server, addr);
	if (rc == 0)
		rc = uv_listen(&server->listener.stream, server->cfg->listen_backlog, on_connection);
	if (rc < 0) {
		pf_error("could not listen on %s: %s", cf_addr_format(addr, where, sizeof(where)), uv_strerror(rc));
		return rc;
	}
	server->listener.handle.data = server;
	pf_info("listening on %s", cf_addr_format(addr, where, sizeof(where)));
	return 0;
}

/* ---- admin -------------------------------------------------------------- */

static int accepting(void *ctx)
{
	const px_server *server = ctx;
	return !server->shutting_down;
}

/* GET /sessions: every client session with its tracked state. */
static void sessions_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	px_server *server = ctx;
	(void)req;
	pf_sb *b = &resp->body;
	pf_sb_append(b, "{\"sessions\":[");
	for (px_session *s = server->sessions; s; s = s->next) {
		pf_sb_appendf(b, "%s{\"id\":%llu,\"client\":", s == server->sessions ? "" : ",",
			      (unsigned long long)s->id);
		pf_sb_append_json_string(b, s->peer_name);
		pf_sb_append(b, ",\"user\":");
		pf_sb_append_json_string(b, s->user);
		pf_sb_append(b, ",\"database\":");
		pf_sb_append_json_string(b, s->database);
		pf_sb_appendf(b, ",\"state\":\"%s\",\"backend_pid\":%u,\"inflight\":%u,\"session\":",
			      px_session_state_name(s->state), s->has_key ? s->backend_pid : 0,
			      px_track_inflight(&s->track));
		px_sstate_render_json(&s->track.state, b);
		pf_sb_append(b, "}");
	}
	pf_sb_append(b, "]}");
}

/* GET /nplusone: every N+1 pattern seen; ?format=text for a table. */
static void nplusone_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	px_server *server = ctx;
	if (strstr(req->query, "format=text")) {
		resp->content_type = "text/plain; charset=utf-8";
		rw_np_render_text(server->np_registry, &resp->body);
	} else {
		rw_np_render_json(server->np_registry, &resp->body);
	}
}

static int start_admin(px_server *server)
{
	const cf_addr *addr = &server->cfg->admin;
	char where[300];
	if (addr->kind == CF_ADDR_OFF)
		return 0;
	server->admin = px_admin_new(server->loop);
	server->admin_info.stats = &server->stats;
	server->admin_info.version = PX_VERSION;
	server->admin_info.accepting = accepting;
	server->admin_info.ctx = server;
	server->admin_info.qstats = server->qstats;
	server->admin_info.nplusone = server->np_registry;
	server->admin_info.extra_metrics = px_rcache_metrics;
	server->admin_info.extra_ctx = server;
	px_admin_add_stats_routes(server->admin, &server->admin_info);
	px_qstats_add_admin_routes(server->admin, server->qstats);
	px_admin_route(server->admin, "GET", "/sessions", sessions_handler, server);
	px_admin_route(server->admin, "GET", "/nplusone", nplusone_handler, server);
	px_rcache_add_admin_routes(server->admin, server);
	int rc = px_admin_listen(server->admin, addr);
	if (rc < 0) {
		pf_error("could not listen on admin %s: %s", cf_addr_format(addr, where, sizeof(where)),
			 uv_strerror(rc));
		return rc;
	}
	return 0;
}

/* ---- redis -------------------------------------------------------------- */

static void on_bus_message(void *ctx, const char *payload, size_t len)
{
	px_server *server = ctx;
	px_near_message(server->near, payload, len);
}

static void on_bus_state(void *ctx, bool active)
{
	px_server *server = ctx;
	px_near_sub_state(server->near, active);
}

/* Connects in the background: a Redis that is down or slow never delays or
 * fails the start. */
static void start_redis(px_server *server)
{
	if (server->cfg->redis.kind == CF_ADDR_OFF)
		return;
	const cf_config *cfg = server->cfg;
	qc_redis_options o = {
		.addr = cfg->redis,
		.timeout_ms = PX_REDIS_TIMEOUT_MS,
		.database = cfg->cache_redis_db,
		.username = cfg->cache_redis_user,
		.password = cfg->cache_redis_password,
		.connections = cfg->cache_redis_connections,
	};
	server->redis = qc_redis_open(server->loop, &o);
	server->admin_info.redis = server->redis;
	server->near = px_near_new(server->loop);
	px_near_configure(server->near, server->redis, cfg->cache_near_cache_bytes);
	server->bump_retry = px_bump_retry_new(server->loop);
	px_bump_retry_configure(server->bump_retry, server->redis, server->near);
	server->bus = qc_sub_open(server->loop, &o, px_near_channel(server->near), on_bus_message, on_bus_state, server);
}

/* ---- function volatility ------------------------------------------------ */

/* Nothing connects until a database is first asked about. */
static void start_volatility(px_server *server)
{
	server->volatility = px_volatility_new(server->loop);
	px_volatility_configure(server->volatility, server->cfg);
	server->relcat = px_relcat_new(server->loop);
	px_relcat_configure(server->relcat, server->cfg);
	if (server->admin)
		px_volatility_add_admin_routes(server->admin, server->volatility);
}

/* ---- lifecycle ---------------------------------------------------------- */

static rw_np_registry *nplusone_registry_new(const cf_config *cfg)
{
	rw_np_limits limits = {
		.min_repeats = (unsigned)cfg->nplusone_min_repeats,
		.max_parent_rows = (size_t)cfg->nplusone_max_parent_rows,
		.max_parent_bytes = cfg->nplusone_max_parent_bytes,
		.max_parents = 16, /* nested lazy loading keeps several levels alive */
		.max_patterns = (size_t)cfg->nplusone_max_patterns,
		.max_value_len = 64,
	};
	return rw_np_registry_new(&limits);
}

px_server *px_server_new(uv_loop_t *loop, const px_options *opts, cf_config *cfg)
{
	px_server *server = pf_calloc(1, sizeof(*server));
	server->loop = loop;
	server->opts = opts;
	server->cfg = cfg;
	server->stats.start_time_ms = wall_clock_ms();
	server->analyzer = rw_analyzer_new((size_t)cfg->analysis_cache_entries, cfg->analysis_cache_bytes);
	server->qstats = px_qstats_new((size_t)cfg->max_shapes);
	server->np_registry = nplusone_registry_new(cfg);
	return server;
}

static void start_signals(px_server *server)
{
	uv_signal_t *sigs[] = {&server->sig_term, &server->sig_int, &server->sig_hup};
	int nums[] = {SIGTERM, SIGINT, SIGHUP};
	for (int i = 0; i < 3; i++) {
		uv_signal_init(server->loop, sigs[i]);
		sigs[i]->data = server;
		uv_signal_start(sigs[i], on_signal, nums[i]);
	}
	uv_timer_init(server->loop, &server->shutdown_timer);
	server->shutdown_timer.data = server;
	server->signals_open = true;
}

int px_server_start(px_server *server)
{
	pf_log_set_level((pf_log_level)server->cfg->log_level);
	int rc = start_listener(server);
	if (rc == 0)
		rc = start_admin(server);
	if (rc == 0) {
		start_redis(server);
		start_volatility(server);
	}
	start_signals(server);
	if (rc < 0) {
		/* Unwind through the normal shutdown path so every handle closes. */
		server->shutting_down = true;
		close_listener(server);
		px_server_check_drained(server);
	}
	return rc;
}

void px_server_free(px_server *server)
{
	px_qstats_free(server->qstats);
	rw_np_registry_free(server->np_registry);
	rw_analyzer_free(server->analyzer);
	cf_config_free(server->cfg);
	pf_free(server);
}
