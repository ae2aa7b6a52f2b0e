/*
 * admin_stats.c — the admin port's read-only routes over a px_stats and the
 * Redis client (info->redis, NULL when cache.redis is off):
 *
 *   GET /health   200 {"status":"ok"} while info->accepting(ctx) is true,
 *                 503 {"status":"shutting_down"} after; with Redis
 *                 configured, its state is added ({"status":"ok","redis":
 *                 "down"}) but never changes the status: the cache fails open
 *   GET /stats    one JSON object: version, uptime_seconds, every counter and
 *                 "redis":{"state","address","commands","errors","timeouts",
 *                 "reconnects","ping_us"} (state "off" without Redis)
 *   GET /metrics  Prometheus text exposition format 0.0.4, names pgfold_*,
 *                 counters with the _total suffix; pgfold_redis_* only when
 *                 Redis is configured
 *
 * Both /stats and /metrics come from one table of the px_stats fields, so a
 * counter added to px_stats needs one line here to appear in both.
 */
#include "admin.h"
#include "qstats.h"
#include "../rewrite/nplusone.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../common/log.h"

typedef struct stat_field {
	const char *name;   /* JSON key in /stats */
	const char *metric; /* Prometheus name: counters end in _total */
	size_t offset;      /* of a uint64_t in px_stats */
	bool counter;       /* counter (else gauge) */
	const char *help;
} stat_field;

#define GAUGE(field, help) {#field, "pgfold_" #field, offsetof(px_stats, field), false, help}
#define COUNTER(field, metric, help) {#field, metric, offsetof(px_stats, field), true, help}

/* In /stats order (after version and uptime_seconds). */
static const stat_field stat_fields[] = {
	GAUGE(clients_active, "Client connections open now."),
	COUNTER(clients_total, "pgfold_clients_total", "Client connections accepted."),
	COUNTER(clients_rejected, "pgfold_clients_rejected_total", "Client connections refused (max_client_conn or shutting down)."),
	GAUGE(backends_active, "Backend connections open now."),
	COUNTER(backends_total, "pgfold_backends_total", "Backend connections opened."),
	COUNTER(backend_connect_errors, "pgfold_backend_connect_errors_total", "Backend connect or startup failures."),
	COUNTER(bytes_from_clients, "pgfold_bytes_from_clients_total", "Bytes read from clients."),
	COUNTER(bytes_to_clients, "pgfold_bytes_to_clients_total", "Bytes written to clients."),
	COUNTER(bytes_from_backends, "pgfold_bytes_from_backends_total", "Bytes read from backends."),
	COUNTER(bytes_to_backends, "pgfold_bytes_to_backends_total", "Bytes written to backends."),
	COUNTER(queries, "pgfold_queries_total", "Query and Execute messages from clients."),
	COUNTER(backend_errors, "pgfold_backend_errors_total", "ErrorResponse messages relayed from backends."),
	COUNTER(protocol_errors, "pgfold_protocol_errors_total", "Clients closed for a protocol violation."),
	COUNTER(cancel_requests, "pgfold_cancel_requests_total", "CancelRequest messages received."),
	COUNTER(config_reloads, "pgfold_config_reloads_total", "Successful configuration reloads."),
};

#undef GAUGE
#undef COUNTER

static uint64_t stat_value(const px_stats *stats, const stat_field *f)
{
	return *(const uint64_t *)((const char *)stats + f->offset);
}

static uint64_t uptime_seconds(const px_stats *stats)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (stats->start_time_ms == 0 || now_ms < stats->start_time_ms)
		return 0;
	return (now_ms - stats->start_time_ms) / 1000;
}

/* ---- redis -------------------------------------------------------------- */

static const char *redis_state(const px_admin_info *info)
{
	return qc_redis_state_name(qc_redis_state(info->redis));
}

/* "connections":[{"state":"up","commands":N,...}, ...]: each connection of the pool. */
static void redis_connections_json(pf_sb *b, const px_admin_info *info)
{
	pf_sb_append(b, ",\"connections\":[");
	for (int i = 0; i < qc_redis_connections(info->redis); i++) {
		qc_redis_conn_info ci;
		if (qc_redis_conn_info_get(info->redis, i, &ci) < 0)
			break;
		pf_sb_append(b, i ? ",{\"state\":" : "{\"state\":");
		pf_sb_append_json_string(b, qc_redis_state_name(ci.state));
		pf_sb_appendf(b, ",\"commands\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"ping_us\":%" PRIu64
			      ",\"last_error\":", ci.commands, ci.reconnects, ci.ping_us);
		pf_sb_append_json_string(b, ci.last_error);
		pf_sb_append(b, "}");
	}
	pf_sb_append(b, "]");
}

static void redis_json(pf_sb *b, const px_admin_info *info)
{
	const qc_redis_counters *c = qc_redis_counters_get(info->redis);
	pf_sb_append(b, ",\"redis\":{\"state\":");
	pf_sb_append_json_string(b, redis_state(info));
	pf_sb_append(b, ",\"address\":");
	pf_sb_append_json_string(b, qc_redis_address(info->redis));
	pf_sb_appendf(b,
		      ",\"database\":%d,\"commands\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64
		      ",\"reconnects\":%" PRIu64 ",\"ping_us\":%" PRIu64,
		      qc_redis_database(info->redis), c->commands, c->errors, c->timeouts, c->reconnects, c->ping_us);
	redis_connections_json(b, info);
	pf_sb_append(b, "}");
}

/* With more than one connection, /health lists each one's state too. */
static void redis_health_connections(pf_sb *b, const px_admin_info *info)
{
	int n = qc_redis_connections(info->redis);
	if (n < 2)
		return;
	pf_sb_append(b, ",\"redis_connections\":[");
	for (int i = 0; i < n; i++) {
		qc_redis_conn_info ci;
		if (qc_redis_conn_info_get(info->redis, i, &ci) < 0)
			break;
		if (i)
			pf_sb_append(b, ",");
		pf_sb_append_json_string(b, qc_redis_state_name(ci.state));
	}
	pf_sb_append(b, "]");
}

/* ---- routes ------------------------------------------------------------- */

static void health_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	const px_admin_info *info = ctx;
	bool ok = !info->accepting || info->accepting(info->ctx);
	if (!ok)
		resp->status = 503;
	pf_sb_append(&resp->body, ok ? "{\"status\":\"ok\"" : "{\"status\":\"shutting_down\"");
	if (info->redis) {
		pf_sb_append(&resp->body, ",\"redis\":");
		pf_sb_append_json_string(&resp->body, redis_state(info));
		redis_health_connections(&resp->body, info);
	}
	pf_sb_append(&resp->body, "}");
}

static void nplusone_json(pf_sb *b, const px_admin_info *info)
{
	if (!info->nplusone)
		return;
	rw_np_stats st;
	rw_np_registry_stats(info->nplusone, &st);
	pf_sb_appendf(b,
		      ",\"nplusone\":{\"patterns\":%zu,\"active\":%zu,\"disabled\":%zu,\"children_seen\":%" PRIu64
		      ",\"children_served\":%" PRIu64 ",\"batches\":%" PRIu64 ",\"statements_saved\":%" PRIu64
		      ",\"buffered_bytes\":%" PRIu64 "}",
		      st.patterns, st.active, st.disabled, st.children_seen, st.children_served, st.batches,
		      st.statements_saved, info->stats->nplusone_buffered_bytes);
}


static void nplusone_metrics(pf_sb *b, const px_admin_info *info)
{
	if (!info->nplusone)
		return;
	rw_np_stats st;
	rw_np_registry_stats(info->nplusone, &st);
	px_admin_metric(b, "pgfold_nplusone_patterns", "gauge", "N+1 patterns known.", st.patterns);
	px_admin_metric(b, "pgfold_nplusone_patterns_active", "gauge", "N+1 patterns confirmed.", st.active);
	px_admin_metric(b, "pgfold_nplusone_children_seen_total", "counter", "Statements matched to an N+1 pattern.",
			st.children_seen);
	px_admin_metric(b, "pgfold_nplusone_children_served_total", "counter", "N+1 children answered from a batch.",
			st.children_served);
	px_admin_metric(b, "pgfold_nplusone_batches_total", "counter", "Batched statements sent.", st.batches);
	px_admin_metric(b, "pgfold_nplusone_buffered_bytes", "gauge", "Prefetched N+1 answers held by all sessions.",
			info->stats->nplusone_buffered_bytes);
	px_admin_metric(b, "pgfold_nplusone_statements_saved_total", "counter", "Backend statements avoided.",
			st.statements_saved);
}

static void stats_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	const px_admin_info *info = ctx;
	pf_sb *b = &resp->body;
	pf_sb_append(b, "{\"version\":");
	pf_sb_append_json_string(b, info->version ? info->version : "unknown");
	pf_sb_appendf(b, ",\"uptime_seconds\":%" PRIu64, uptime_seconds(info->stats));
	for (size_t i = 0; i < sizeof(stat_fields) / sizeof(stat_fields[0]); i++)
		pf_sb_appendf(b, ",\"%s\":%" PRIu64, stat_fields[i].name, stat_value(info->stats, &stat_fields[i]));
	redis_json(b, info);
	nplusone_json(b, info);
	pf_sb_append(b, "}");
}

void px_admin_metric(pf_sb *b, const char *name, const char *type, const char *help, uint64_t value)
{
	pf_sb_appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, value);
}

void px_admin_metric_seconds(pf_sb *b, const char *name, const char *type, const char *help, uint64_t us)
{
	pf_sb_appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.6f\n", name, help, name, type, name, (double)us / 1e6);
}

/* A label value with \, " and newline escaped, as the format requires. */
static void label_value_append(pf_sb *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			pf_sb_appendf(b, "\\%c", *s);
		else if (*s == '\n')
			pf_sb_append(b, "\\n");
		else
			pf_sb_append_n(b, s, 1);
	}
}

static void redis_metrics(pf_sb *b, const px_admin_info *info)
{
	const qc_redis_counters *c = qc_redis_counters_get(info->redis);
	px_admin_metric(b, "pgfold_redis_up", "gauge", "1 while Redis is up, else 0 (the cache fails open).",
			qc_redis_state(info->redis) == QC_STATE_UP);
	uint64_t up = 0;
	for (int i = 0; i < qc_redis_connections(info->redis); i++) {
		qc_redis_conn_info ci;
		if (qc_redis_conn_info_get(info->redis, i, &ci) == 0 && ci.state == QC_STATE_UP)
			up++;
	}
	px_admin_metric(b, "pgfold_redis_connections_up", "gauge", "Connections of the Redis pool that are ready.", up);
	px_admin_metric(b, "pgfold_redis_commands_total", "counter", "Redis commands sent or refused.", c->commands);
	px_admin_metric(b, "pgfold_redis_errors_total", "counter",
			"Redis commands refused (down, disconnected) or lost with their connection.", c->errors);
	px_admin_metric(b, "pgfold_redis_timeouts_total", "counter", "Redis commands not answered in time.",
			c->timeouts);
	px_admin_metric(b, "pgfold_redis_reconnects_total", "counter", "Redis connection attempts after the first.",
			c->reconnects);
	px_admin_metric_seconds(b, "pgfold_redis_ping_seconds", "gauge", "Round trip of the last answered Redis PING.",
				c->ping_us);
}

static void metrics_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	const px_admin_info *info = ctx;
	pf_sb *b = &resp->body;
	resp->content_type = "text/plain; version=0.0.4";
	pf_sb_append(b, "# HELP pgfold_build_info The running pgfold version.\n"
			"# TYPE pgfold_build_info gauge\npgfold_build_info{version=\"");
	label_value_append(b, info->version ? info->version : "unknown");
	pf_sb_append(b, "\"} 1\n");
	px_admin_metric(b, "pgfold_uptime_seconds", "gauge", "Seconds since pgfold started.",
			uptime_seconds(info->stats));
	for (size_t i = 0; i < sizeof(stat_fields) / sizeof(stat_fields[0]); i++) {
		const stat_field *f = &stat_fields[i];
		px_admin_metric(b, f->metric, f->counter ? "counter" : "gauge", f->help, stat_value(info->stats, f));
	}
	if (info->redis)
		redis_metrics(b, info);
	if (info->qstats)
		px_qstats_render_metrics(info->qstats, b);
	nplusone_metrics(b, info);
	if (info->extra_metrics)
		info->extra_metrics(b, info->extra_ctx);
}

void px_admin_add_stats_routes(px_admin *admin, const px_admin_info *info)
{
	/* The handlers only read *info; the route ctx is not const. */
	void *ctx = (void *)info;
	if (px_admin_route(admin, "GET", "/health", health_handler, ctx) != 0 ||
	    px_admin_route(admin, "GET", "/stats", stats_handler, ctx) != 0 ||
	    px_admin_route(admin, "GET", "/metrics", metrics_handler, ctx) != 0)
		pf_warn("admin: could not register the /health, /stats and /metrics routes");
}
