/*
 * rcache_admin.c — the result cache on the admin port (see rcache.h): GET
 * /cache (JSON counters, the near cache's included), POST /cache/flush and
 * the pgfold_cache_* lines of /metrics.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>

#include "../cache/key.h"
#include "../common/log.h"
#include "rcache.h"
#include "rcache_near.h"
#include "rcache_retry.h"
#include "server.h"

static void stats_json(pf_sb *b, const px_server *server)
{
	const px_rcache_stats *st = &server->cache_stats;
	static const char *const modes[] = {"off", "rules", "auto"};
	int mode = server->cfg->cache_mode;
	pf_sb_appendf(b, "{\"mode\":\"%s\",\"redis\":\"%s\"", mode >= 0 && mode <= 2 ? modes[mode] : "?",
		      server->redis ? qc_redis_state_name(qc_redis_state(server->redis)) : "off");
	pf_sb_appendf(b,
		      ",\"lookups\":%llu,\"hits\":%llu,\"misses\":%llu,\"stores\":%llu,\"store_errors\":%llu"
		      ",\"invalidations\":%llu,\"invalidation_errors\":%llu,\"redis_errors\":%llu,\"timeouts\":%llu"
		      ",\"bytes_served\":%llu,\"bytes_stored\":%llu,\"flushes\":%llu"
		      ",\"lookup_mean_us\":%llu,\"lookup_max_us\":%llu,\"fills\":%llu,\"fills_refused\":%llu"
		      ",\"probes\":%llu,\"probe_hits\":%llu"
		      ",\"bypasses\":{",
		      (unsigned long long)st->lookups, (unsigned long long)st->hits, (unsigned long long)st->misses,
		      (unsigned long long)st->stores, (unsigned long long)st->store_errors,
		      (unsigned long long)st->invalidations, (unsigned long long)st->bump_errors,
		      (unsigned long long)st->redis_errors, (unsigned long long)st->timeouts,
		      (unsigned long long)st->bytes_served, (unsigned long long)st->bytes_stored,
		      (unsigned long long)st->flushes,
		      (unsigned long long)(st->lookups_answered ? st->lookup_us_sum / st->lookups_answered : 0),
		      (unsigned long long)st->lookup_us_max, (unsigned long long)st->fills,
		      (unsigned long long)st->fill_refused, (unsigned long long)st->probes,
		      (unsigned long long)st->probe_hits);
	for (int i = 1; i < QC_BYPASS_COUNT; i++)
		pf_sb_appendf(b, "%s\"%s\":%llu", i > 1 ? "," : "", qc_bypass_name((qc_bypass)i),
			      (unsigned long long)st->bypass[i]);
	pf_sb_appendf(b, ",\"max_rows\":%llu,\"cold_shape\":%llu}", (unsigned long long)st->bypass_max_rows,
		      (unsigned long long)st->bypass_cold);
	px_near_stats ns = px_near_stats_get(server->near);
	pf_sb_appendf(b,
		      ",\"redis_lookups\":%llu,\"bumps_to_retry\":%zu,\"near\":{\"enabled\":%s,\"hits\":%llu,\"stale\":%llu"
		      ",\"misses_without_lookup\":%llu,\"syncs\":%llu"
		      ",\"sync_errors\":%llu,\"resets\":%llu,\"evictions\":%llu,\"entries\":%zu,\"bytes\":%zu"
		      ",\"known_versions\":%zu,\"lease\":{\"held\":%s,\"answered_batches\":%llu"
		      ",\"bump_waits\":%llu,\"bump_wait_timeouts\":%llu}}}",
		      (unsigned long long)st->redis_lookups, px_bump_retry_pending(server->bump_retry),
		      px_near_enabled(server->near) ? "true" : "false",
		      (unsigned long long)st->near_hits, (unsigned long long)ns.stale,
		      (unsigned long long)st->near_misses, (unsigned long long)ns.syncs,
		      (unsigned long long)ns.sync_errors, (unsigned long long)ns.resets, (unsigned long long)ns.evictions,
		      ns.entries, ns.bytes, ns.known, ns.lease_held ? "true" : "false", (unsigned long long)ns.leased,
		      (unsigned long long)ns.bump_waits, (unsigned long long)ns.bump_wait_timeouts);
}

static void cache_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	(void)req;
	stats_json(&resp->body, ctx);
}

static void on_flushed(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	(void)r;
	px_server *server = ctx;
	if (status != QC_OK || !reply || reply->type != REDIS_REPLY_ARRAY) {
		const char *global = QC_KEY_GLOBAL;
		server->cache_stats.bump_errors++;
		px_bump_retry_add(server->bump_retry, &global, 1);
	} else
		px_near_after_bump(server->near, reply, NULL, NULL); /* known here at once; nobody waits */
}

/* POST /cache/flush: bump the global version; every entry becomes unreachable
 * (and expires by its TTL). */
static void flush_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	(void)req;
	px_server *server = ctx;
	const char *argv[] = {QC_KEY_GLOBAL, px_near_id(server->near), px_near_channel(server->near)};
	if (!server->redis || qc_redis_eval(server->redis, on_flushed, server, QC_BUMP_SCRIPT, 1, 3, argv, NULL) < 0) {
		resp->status = 503;
		pf_sb_append(&resp->body, "{\"error\":\"redis is not available\"}");
		return;
	}
	server->cache_stats.flushes++;
	pf_sb_append(&resp->body, "{\"status\":\"flushing\"}");
}

void px_rcache_add_admin_routes(px_admin *admin, px_server *server)
{
	if (px_admin_route(admin, "GET", "/cache", cache_handler, server) != 0 ||
	    px_admin_route(admin, "POST", "/cache/flush", flush_handler, server) != 0)
		pf_warn("admin: could not register the /cache routes");
}

void px_rcache_metrics(pf_sb *b, void *ctx)
{
	const px_rcache_stats *st = &((const px_server *)ctx)->cache_stats;
	px_admin_metric(b, "pgfold_cache_lookups_total", "counter",
			"Statements held for a cache lookup (near cache or Redis).", st->lookups);
	px_admin_metric(b, "pgfold_cache_hits_total", "counter", "Statements answered from the result cache.", st->hits);
	px_admin_metric(b, "pgfold_cache_near_hits_total", "counter",
			"Statements answered from pgfold's near cache (counted in hits too).", st->near_hits);
	px_admin_metric(b, "pgfold_cache_redis_lookups_total", "counter", "Lookup EVALs sent to Redis.", st->redis_lookups);
	const px_server *server = ctx;
	px_near_stats ns = px_near_stats_get(server->near);
	px_admin_metric(b, "pgfold_cache_near_lease_held", "gauge",
			"1 while near-cache hits are answered under a lease, without a Redis command.", ns.lease_held);
	px_admin_metric(b, "pgfold_cache_bump_waits_total", "counter",
			"Committed writes whose bump other instances' leases had to acknowledge.", ns.bump_waits);
	px_admin_metric(b, "pgfold_cache_bump_wait_timeouts_total", "counter",
			"... of which a lease ran out instead (an instance paused or cut off).", ns.bump_wait_timeouts);
	px_admin_metric(b, "pgfold_cache_bumps_to_retry", "gauge",
			"Version keys whose bump failed, waiting for a retry (not served from the cache here).",
			px_bump_retry_pending(server->bump_retry));
	px_admin_metric(b, "pgfold_cache_misses_total", "counter", "Lookups that found no valid entry.", st->misses);
	px_admin_metric(b, "pgfold_cache_stores_total", "counter", "Results stored in the cache.", st->stores);
	px_admin_metric(b, "pgfold_cache_fills_total", "counter",
			"N+1 batch groups sent to be stored under their child's key.", st->fills);
	px_admin_metric(b, "pgfold_cache_invalidations_total", "counter", "Version keys bumped by committed writes.",
			st->invalidations);
	px_admin_metric(b, "pgfold_cache_redis_errors_total", "counter", "Lookups Redis refused or failed (fail open).",
			st->redis_errors + st->store_errors + st->bump_errors);
	px_admin_metric(b, "pgfold_cache_timeouts_total", "counter", "Lookups not answered within cache.timeout_ms.",
			st->timeouts);
	px_admin_metric(b, "pgfold_cache_bytes_served_total", "counter", "Result bytes written from the cache.",
			st->bytes_served);
	px_admin_metric(b, "pgfold_cache_bytes_stored_total", "counter", "Result bytes sent to the cache.", st->bytes_stored);
	px_admin_metric(b, "pgfold_cache_lookup_answered_total", "counter", "Lookups Redis answered in time.",
			st->lookups_answered);
	px_admin_metric_seconds(b, "pgfold_cache_lookup_seconds_total", "counter",
				"Time from sending a lookup to its answer.", st->lookup_us_sum);
	pf_sb_append(b, "# HELP pgfold_cache_bypasses_total Statements not looked up, by reason.\n"
			"# TYPE pgfold_cache_bypasses_total counter\n");
	for (int i = 1; i < QC_BYPASS_COUNT; i++)
		pf_sb_appendf(b, "pgfold_cache_bypasses_total{reason=\"%s\"} %llu\n", qc_bypass_name((qc_bypass)i),
			      (unsigned long long)st->bypass[i]);
	pf_sb_appendf(b, "pgfold_cache_bypasses_total{reason=\"max_rows\"} %llu\n",
		      (unsigned long long)st->bypass_max_rows);
	pf_sb_appendf(b, "pgfold_cache_bypasses_total{reason=\"cold_shape\"} %llu\n",
		      (unsigned long long)st->bypass_cold);
}
