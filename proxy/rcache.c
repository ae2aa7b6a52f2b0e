/*
 * rcache.c — the result cache on the session's data path (see rcache.h):
 * lookups with a deadline, hits answered by pgfold (simple Query and
 * extended groups), misses captured and stored, cold shapes sent without
 * waiting for Redis, near-cache hits (rcache_near.h), writes turned into
 * version bumps at commit.  N+1 batches: rcache_fill.c; pinning to
 * primary-key values: rcache_rows.c; /cache and /metrics: rcache_admin.c.
 *
 * Every Redis command a session sends carries a small context holding a
 * session reference and the session's command sequence number: a reply
 * that arrives after its deadline (or after the session closed) finds the
 * number changed and only drops its reference.
 */
#include "rcache.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/key.h"
#include "../common/alloc.h"
#include "../common/log.h"
#include "rcache_int.h"
#include "rcache_retry.h"
#include "rcache_rows.h"
#include "qstats.h"
#include "session.h"

typedef struct rc_cmd {
	px_session *s;
	uint64_t seq;
} rc_cmd;

/* ---- helpers -------------------------------------------------------------- */

static px_rcache_stats *stats_of(px_session *s)
{
	return &s->server->cache_stats;
}

/* Writes are followed (and bumped) whenever the cache is on, analysed or not. */
static bool cache_on(const px_session *s)
{
	return s->server->redis && s->server->cfg->cache_mode != CF_CACHE_OFF;
}

static void on_timer_closed(uv_handle_t *h)
{
	px_rcache *rc = h->data;
	px_session_unref(rc->s);
}

static void on_deadline(uv_timer_t *t);

static px_rcache *rcache_of(px_session *s)
{
	if (s->rcache)
		return s->rcache;
	px_rcache *rc = pf_calloc(1, sizeof(*rc));
	rc->s = s;
	pf_sb_init(&rc->capture);
	s->rcache = rc;
	if (s->state == PX_SESSION_CLOSING)
		return rc; /* no timer: px_rcache_close() already ran */
	uv_timer_init(s->server->loop, &rc->timer);
	rc->timer.data = rc;
	rc->timer_open = true;
	px_session_ref(s); /* the timer */
	return rc;
}

static rc_cmd *cmd_new(px_session *s)
{
	rc_cmd *c = pf_malloc(sizeof(*c));
	c->s = s;
	c->seq = s->rcache->seq;
	px_session_ref(s);
	return c;
}

/* The context of an answer: the session when the answer still matters. */
static px_session *cmd_done(rc_cmd *c, bool *current)
{
	px_session *s = c->s;
	*current = s->state == PX_SESSION_ACTIVE && s->rcache && s->rcache->seq == c->seq;
	pf_free(c);
	return s;
}

static void start_deadline(px_rcache *rc, int ms)
{
	if (rc->timer_open)
		uv_timer_start(&rc->timer, on_deadline, (uint64_t)(ms > 0 ? ms : 1), 0);
}

static void bypass(px_session *s, qc_bypass why)
{
	stats_of(s)->bypass[why]++;
}

/* ---- session facts -------------------------------------------------------- */

static bool custom_setting_in(const px_settings *st)
{
	for (size_t pos = 0; st->blob && pos < st->len;) {
		const char *name = st->blob + pos;
		const char *value = name + strlen(name) + 1;
		if (strchr(name, '.') || strcmp(name, "role") == 0 || strcmp(name, "session_authorization") == 0)
			return true;
		pos = (size_t)(value - st->blob) + strlen(value) + 1;
	}
	return false;
}

static qc_session_facts session_facts(const px_session *s)
{
	const px_sstate *st = &s->track.state;
	qc_session_facts f = {
		.tx_status = s->tx_status,
		.tx_wrote = st->tx_wrote,
		.isolation = px_sstate_isolation(st),
		.unknown = st->cur.unknown || st->local.unknown,
		.role_changed = s->startup_role || custom_setting_in(&st->cur) || custom_setting_in(&st->local),
	};
	return f;
}

static char volatility_of(void *ctx, const char *fn)
{
	px_session *s = ctx;
	return s->server->volatility ? px_volatility_of(s->server->volatility, s->database, s->user, fn) : 'v';
}

/* Nothing else in flight, no N+1 batch: this Query is all the session waits for. */
static bool session_idle(const px_session *s)
{
	return s->batch.phase == PX_BATCH_IDLE && s->pending_ready == 1 && !s->extended_open &&
	       px_track_inflight(&s->track) == 2 && !(s->rcache && (s->rcache->phase != PX_RC_IDLE ||
								    s->rcache->bumping));
}

/* ---- lookup --------------------------------------------------------------- */

static void forward_query(px_session *s, bool capture);
static void answer_hit(px_session *s, const char *payload, size_t len, const char *tag);

/* May statement st (of query string sql) be cached in the session as it is
 * now?  Everything but whether the session is idle. */
static qc_bypass policy_of(px_session *s, const rw_stmt *st, const char *sql, size_t len, int *ttl_ms)
{
	qc_policy_input in = {
		.mode = s->server->cfg->cache_mode,
		.default_ttl_ms = s->server->cfg->cache_default_ttl_ms,
		.rules = &s->server->cfg->cache_rules, /* [cache.rules] (conf owner) */
		.shape = st->shape,
		.sql = sql,
		.sql_len = len,
		.stmt_location = st->location,
		.stmt_length = st->length,
		.session = session_facts(s),
		.volatility = volatility_of,
		.volatility_ctx = s,
	};
	qc_decision d = qc_policy_decide(&in);
	*ttl_ms = d.ttl_ms;
	if (d.reason == QC_CACHEABLE && s->rcache && s->rcache->temp_tables)
		return QC_BYPASS_TEMP;
	for (size_t i = 0; d.reason == QC_CACHEABLE && i < st->shape->nrelations; i++)
		if (!(px_relcat_flags(s->server->relcat, s->database, s->user, st->shape->relations[i].name) &
		      PX_REL_READ_OK))
			return QC_BYPASS_RELATION;
	return d.reason;
}

static qc_bypass decide(px_session *s, const rw_analysis *an, const char *sql, size_t len, int *ttl_ms)
{
	if (!s->analyse)
		return QC_BYPASS_SESSION;
	if (an->nstmts != 1)
		return QC_BYPASS_MULTI;
	qc_bypass why = policy_of(s, &an->stmts[0], sql, len, ttl_ms);
	if (why == QC_CACHEABLE && !session_idle(s))
		return QC_BYPASS_BUSY;
	return why;
}

static void on_lookup(qc_redis *r, int status, const redisReply *reply, void *ctx);

/* QC_LOOKUP_SCRIPT's keys: the entry, then the versions. */
static int lookup_keys(const char *key, const qc_keys *vk, const char *argv[QC_MAX_VERSION_KEYS + 1])
{
	int argc = 0;
	argv[argc++] = key;
	for (size_t i = 0; i < vk->n; i++)
		argv[argc++] = vk->keys[i];
	return argc;
}

/* Send the lookup.  False when Redis refused it at once. */
static bool send_lookup(px_session *s, px_rcache *rc, const qc_keys *vk)
{
	const char *argv[QC_MAX_VERSION_KEYS + 1];
	int argc = lookup_keys(rc->key, vk, argv);
	rc_cmd *c = cmd_new(s);
	if (qc_redis_eval(s->server->redis, on_lookup, c, QC_LOOKUP_SCRIPT, argc, argc, argv, NULL) < 0) {
		pf_free(c);
		px_session_unref(s);
		return false;
	}
	stats_of(s)->redis_lookups++;
	return true;
}

static void near_synced(void *ctx, bool ok);

/* The near cache holds the key: wait for a sync sent after now. */
static bool near_wait(px_session *s)
{
	px_near_wait(s->server->near, near_synced, cmd_new(s));
	return true;
}

static void cold_clear(px_rcache *rc)
{
	rc->cold = false;
	qc_keys_free(&rc->cold_vk);
}

/* A cold shape's statement goes to PostgreSQL without a lookup (the caller
 * relays it): capture its answer to store under rc->key all the same.  Not
 * for a child the batcher is asking about (it is batched instead), nor an
 * undescribed portal (its answer has no RowDescription to store). */
static void cold_capture(px_session *s, int ttl_ms, qc_keys *vk)
{
	px_rcache *rc = s->rcache;
	uint64_t after;
	if (rc->claiming || (rc->grp.ext && !rc->grp.describe) || !px_rc_log_seq(s, &after)) {
		qc_keys_free(vk);
		return;
	}
	cold_clear(rc);
	rc->cold = true;
	rc->cold_after_seq = after;
	rc->cold_vk = *vk; /* owned now */
	memset(vk, 0, sizeof(*vk));
	rc->ttl_ms = ttl_ms;
	rc->phase = PX_RC_CAPTURE;
	rc->inject = false;
	pf_sb_reset(&rc->capture);
	rc->capture_ok = true;
}

typedef struct rc_probe {
	px_server *server;
	uint64_t fingerprint;
} rc_probe;

static void on_probe(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	(void)r;
	rc_probe *p = ctx;
	px_rcache_stats *st = &p->server->cache_stats;
	if (status == QC_OK && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER) {
		px_rc_shape_record(&st->shapes, p->fingerprint, reply->element[0]->integer == 1);
		st->probe_hits += reply->element[0]->integer == 1;
	}
	pf_free(p);
}

/* A cold shape's probe: look rc->key up without holding the statement; the
 * answer only tells the shape's table whether it would have hit. */
static void send_probe(px_session *s, uint64_t fingerprint, const qc_keys *vk)
{
	const char *argv[QC_MAX_VERSION_KEYS + 1];
	int argc = lookup_keys(s->rcache->key, vk, argv);
	rc_probe *p = pf_malloc(sizeof(*p));
	*p = (rc_probe){.server = s->server, .fingerprint = fingerprint};
	if (qc_redis_eval(s->server->redis, on_probe, p, QC_LOOKUP_SCRIPT, argc, argc, argv, NULL) < 0)
		pf_free(p);
	else
		stats_of(s)->probes++;
}

/* Send the lookup for key input ki and hold msg (a Query, or the group
 * rc->grp describes) until it is answered; a cold shape's statement (v) is
 * only captured.  False: not looked up (counted), the caller relays msg. */
static bool start_lookup(px_session *s, const rw_stmt *stmt, const px_rc_values *vals, px_rc_verdict v,
			 const qc_key_input *ki, int ttl_ms, const uint8_t *msg, size_t msg_len)
{
	qc_keys vk;
	char row[PX_RC_ROW_KEY_MAX];
	size_t slot;
	bool pinned = px_rc_pin_read(s, stmt, vals, row, &slot);
	if (!qc_key_versions(s->database, stmt->shape, pinned ? row : NULL, &vk)) {
		qc_keys_free(&vk);
		bypass(s, QC_BYPASS_TABLES);
		return false;
	}
	if (px_bump_retry_blocks(s->server->bump_retry, &vk)) {
		/* a committed write's bump failed: what is cached may predate it */
		qc_keys_free(&vk);
		bypass(s, QC_BYPASS_REDIS);
		return false;
	}
	px_rcache *rc = rcache_of(s);
	qc_key_entry(ki, rc->key);
	if (v == PX_RC_PROBE)
		send_probe(s, stmt->shape->fingerprint, &vk);
	if (v == PX_RC_SKIP_STORE || v == PX_RC_PROBE) {
		stats_of(s)->bypass_cold++;
		cold_capture(s, ttl_ms, &vk);
		return false;
	}
	rc->fingerprint = stmt->shape->fingerprint;
	rc->seq++;
	qc_keys_free(&rc->look_vk);
	rc->look_vk = vk; /* owned now */
	bool sent = px_near_has(s->server->near, rc->key) ? near_wait(s) : send_lookup(s, rc, &rc->look_vk);
	if (!sent) {
		qc_keys_free(&rc->look_vk);
		stats_of(s)->redis_errors++;
		bypass(s, QC_BYPASS_REDIS);
		return false;
	}
	stats_of(s)->lookups++;
	rc->sent_us = uv_hrtime() / 1000u;
	rc->phase = PX_RC_LOOKUP;
	rc->ttl_ms = ttl_ms;
	rc->query = pf_malloc(msg_len);
	memcpy(rc->query, msg, msg_len);
	rc->query_len = msg_len;
	start_deadline(rc, s->server->cfg->cache_timeout_ms);
	return true; /* the client's next messages wait in its buffer (session.c) */
}

/* Is the statement's shape cold (rcache_shape.h)?  A cold shape's
 * statements, but for probes and the ones whose answers are stored, skip
 * everything else (policy, keys): forwarding is always safe. */
static px_rc_verdict shape_verdict(px_session *s, const rw_stmt *st)
{
	px_rc_verdict v = px_rc_shape_lookup(&stats_of(s)->shapes, st->shape->fingerprint);
	if (v == PX_RC_SKIP)
		stats_of(s)->bypass_cold++;
	return v;
}

static qc_key_input key_input(const px_session *s, char format, const char *sql, size_t len)
{
	const px_sstate *st = &s->track.state;
	qc_key_input ki = {
		.database = s->database,
		.user = s->user,
		.startup = s->startup_settings,
		.startup_len = s->startup_settings_len,
		.settings = st->cur.blob,
		.settings_len = st->cur.len,
		.local = st->local.blob,
		.local_len = st->local.len,
		.format = format,
		.sql = sql,
		.sql_len = len,
	};
	return ki;
}

/* ---- for rcache_fill.c (rcache_int.h) ------------------------------------- */

bool px_rc_log_seq(px_session *s, uint64_t *seq)
{
	const px_rcache_stats *st = stats_of(s);
	uint64_t synced = px_near_synced(s->server->near);
	if (!st->log_seq_known && !synced)
		return false;
	*seq = synced > st->log_seq ? synced : st->log_seq;
	return true;
}

px_rcache_stats *px_rc_stats(px_session *s)
{
	return stats_of(s);
}

bool px_rc_cache_on(const px_session *s)
{
	return cache_on(s);
}

px_rcache *px_rc_of(px_session *s)
{
	return rcache_of(s);
}

qc_bypass px_rc_policy(px_session *s, const rw_stmt *st, const char *sql, size_t len, int *ttl_ms)
{
	return policy_of(s, st, sql, len, ttl_ms);
}

qc_key_input px_rc_key_input(const px_session *s, char format, const char *sql, size_t len)
{
	return key_input(s, format, sql, len);
}

bool px_rcache_query(px_session *s, const rw_analysis *an, const char *sql, size_t len, const uint8_t *msg,
		     size_t msg_len)
{
	if (!cache_on(s))
		return false;
	px_rc_verdict v = an->nstmts == 1 ? shape_verdict(s, &an->stmts[0]) : PX_RC_LOOK_UP;
	if (v == PX_RC_SKIP)
		return false;
	int ttl_ms = 0;
	qc_bypass why = decide(s, an, sql, len, &ttl_ms);
	if (why != QC_CACHEABLE) {
		bypass(s, why);
		return false;
	}
	const rw_stmt *stmt = &an->stmts[0];
	qc_key_input ki = key_input(s, 't', sql + stmt->location, (size_t)stmt->length);
	if (s->rcache)
		s->rcache->grp.ext = false;
	px_rc_values vals = {.sql = sql + stmt->location, .sql_len = (size_t)stmt->length};
	return start_lookup(s, stmt, &vals, v, &ki, ttl_ms, msg, msg_len);
}

bool px_rcache_groups(const px_session *s)
{
	return s->analyse && cache_on(s);
}

/* Where the group's Bind ends (it follows the Parse, if any). */
static size_t bind_end(const pgw_ext_group *g, const uint8_t *bytes)
{
	const uint8_t *m = bytes + g->parse_len;
	return g->parse_len + pgw_frame_size(m);
}

bool px_rcache_extended(px_session *s, const pgw_ext_group *g, const uint8_t *bytes)
{
	if (!cache_on(s))
		return false;
	px_track_stmt ts;
	bool unnamed = !g->parse && !g->bind.stmt_name[0];
	if (!s->analyse || !px_track_statement(&s->track, g->bind.stmt_name, &ts) || !ts.an || !ts.text ||
	    (unnamed && s->batch.unnamed_state != PX_UNNAMED_KNOWN) || g->max_rows < 0) {
		bypass(s, QC_BYPASS_SESSION); /* what the statement is, pgfold cannot tell */
		return false;
	}
	px_rc_verdict v = ts.an->nstmts == 1 ? shape_verdict(s, &ts.an->stmts[0]) : PX_RC_LOOK_UP;
	if (v == PX_RC_SKIP)
		return false;
	int ttl_ms = 0;
	size_t text_len = strlen(ts.text);
	qc_bypass why = decide(s, ts.an, ts.text, text_len, &ttl_ms);
	if (why != QC_CACHEABLE) {
		bypass(s, why);
		return false;
	}
	pf_sb params;
	pf_sb_init(&params);
	const pgw_bind_msg *b = &g->bind;
	qc_key_bind(&params, ts.ntypes, ts.types, b->nformats, b->formats, b->nparams, b->params, b->params_len,
		    b->nresult_formats, b->result_formats);
	qc_key_input ki = key_input(s, 'x', ts.text, text_len);
	ki.params = params.data;
	ki.params_len = params.len;
	rc_group grp = {.ext = true,
			.parse_len = g->parse ? g->parse_len : 0,
			.bind_end = bind_end(g, bytes),
			.describe = g->describe,
			.unnamed = unnamed,
			.max_rows = g->max_rows};
	rcache_of(s)->grp = grp;
	const rw_stmt *stmt = &ts.an->stmts[0];
	px_rc_bind bv = {.b = b, .ntypes = ts.ntypes, .types = ts.types};
	px_rc_values vals = {.sql = ts.text + stmt->location,
			     .sql_len = (size_t)stmt->length,
			     .param = px_rc_bind_param,
			     .ctx = &bv};
	bool taken = start_lookup(s, stmt, &vals, v, &ki, ttl_ms, bytes, g->len);
	pf_sb_free(&params);
	return taken;
}

bool px_rcache_offered_again(const px_session *s)
{
	return s->rcache && s->rcache->redispatching;
}

bool px_rcache_busy(const px_session *s)
{
	return s->rcache && s->rcache->phase == PX_RC_LOOKUP;
}

bool px_rcache_unsettled(const px_session *s)
{
	const px_rcache *rc = s->rcache;
	return cache_on(s) && s->state == PX_SESSION_ACTIVE && s->pending_ready > 0 &&
	       (s->track.writes_queued > 0 || (rc && (rc->npending > 0 || rc->pending_db || rc->nbump > 0)));
}

/* DataRow messages in a stored payload (checked by qc_payload_check()). */
static uint32_t payload_rows(const char *payload, size_t len)
{
	const uint8_t *p = (const uint8_t *)payload;
	uint32_t n = 0;
	for (size_t pos = 0; pos + PGW_HEADER_LEN <= len;) {
		n += p[pos] == PGW_BE_DATA_ROW;
		pos += pgw_frame_size(p + pos);
	}
	return n;
}

/* An Execute row limit the held group's answer would reach: forwarded, as
 * the backend would suspend the portal. */
static bool reaches_max_rows(px_session *s, const char *payload, size_t len)
{
	const px_rcache *rc = s->rcache;
	if (!rc->grp.ext || rc->grp.max_rows <= 0 || payload_rows(payload, len) < (uint32_t)rc->grp.max_rows)
		return false;
	stats_of(s)->bypass_max_rows++;
	return true;
}

static void record_outcome(px_session *s, bool hit)
{
	px_rcache *rc = s->rcache;
	if (hit)
		stats_of(s)->hits++;
	else
		stats_of(s)->misses++;
	px_rc_shape_record(&stats_of(s)->shapes, rc->fingerprint, hit);
	px_qstats_record_cache_fingerprint(s->server->qstats, rc->fingerprint, hit);
}

static bool reply_string(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_STRING;
}

/* The lookup's answer: {1, versions, time, seq, payload, pttl} or {0,
 * versions, time, seq}. */
static void lookup_answered(px_session *s, const redisReply *reply)
{
	px_rcache *rc = s->rcache;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 4 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER || !reply_string(reply->element[1]) ||
	    !reply_string(reply->element[2]) || !reply_string(reply->element[3])) {
		if (reply && reply->type == REDIS_REPLY_ERROR)
			px_session_log(PF_LOG_DEBUG, s, "cache lookup: redis: %s", reply->str);
		stats_of(s)->redis_errors++;
		bypass(s, QC_BYPASS_REDIS);
		forward_query(s, false);
		return;
	}
	char tag[64];
	const char *versions = reply->element[1]->str;
	uint64_t now = strtoull(reply->element[2]->str, NULL, 10);
	if (now > stats_of(s)->redis_now_us)
		stats_of(s)->redis_now_us = now;
	uint64_t seq = strtoull(reply->element[3]->str, NULL, 10);
	if (!stats_of(s)->log_seq_known || seq > stats_of(s)->log_seq)
		stats_of(s)->log_seq = seq;
	stats_of(s)->log_seq_known = true;
	px_near_learn(s->server->near, reply->element[3]->str, &rc->look_vk, versions);
	const redisReply *payload = reply->elements == 6 ? reply->element[4] : NULL;
	if (reply->element[0]->integer == 1 && reply_string(payload) &&
	    qc_payload_check(payload->str, payload->len, tag, sizeof(tag))) {
		if (reply->element[5]->type == REDIS_REPLY_INTEGER)
			px_near_put(s->server->near, rc->key, &rc->look_vk, versions, payload->str, payload->len,
				    reply->element[5]->integer);
		if (reaches_max_rows(s, payload->str, payload->len)) {
			forward_query(s, false);
			return;
		}
		record_outcome(s, true);
		answer_hit(s, payload->str, payload->len, tag);
		return;
	}
	record_outcome(s, false);
	pf_free(rc->versions);
	rc->versions = pf_strdup(versions);
	forward_query(s, true);
}

/* A sync the statement waited for was applied: answer from the near cache
 * when its entry is still current, else look it up in Redis. */
static void near_decide(px_session *s, bool ok)
{
	px_rcache *rc = s->rcache;
	const char *payload, *tag;
	size_t len;
	if (ok && px_near_get(s->server->near, rc->key, &payload, &len, &tag)) {
		uv_timer_stop(&rc->timer);
		rc->seq++;
		if (reaches_max_rows(s, payload, len)) {
			forward_query(s, false);
			return;
		}
		stats_of(s)->near_hits++;
		record_outcome(s, true);
		answer_hit(s, payload, len, tag);
		return;
	}
	pf_sb known;
	pf_sb_init(&known);
	if (ok && px_near_versions(s->server->near, &rc->look_vk, &known)) {
		/* the entry was outdated by a write: Redis's is too, unless another
		 * pgfold stored it again since; go to PostgreSQL without a lookup */
		uv_timer_stop(&rc->timer);
		rc->seq++;
		stats_of(s)->near_misses++;
		record_outcome(s, false);
		pf_free(rc->versions);
		rc->versions = pf_strdup(pf_sb_str(&known));
		pf_sb_free(&known);
		forward_query(s, true);
		return;
	}
	pf_sb_free(&known);
	if (!send_lookup(s, rc, &rc->look_vk)) {
		uv_timer_stop(&rc->timer);
		rc->seq++;
		stats_of(s)->redis_errors++;
		bypass(s, QC_BYPASS_REDIS);
		forward_query(s, false);
	}
}

static void near_synced(void *ctx, bool ok)
{
	bool current;
	px_session *s = cmd_done(ctx, &current);
	if (current && s->rcache->phase == PX_RC_LOOKUP)
		near_decide(s, ok);
	px_session_unref(s);
}

static void on_lookup(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	(void)r;
	bool current;
	px_session *s = cmd_done(ctx, &current);
	if (current && s->rcache->phase == PX_RC_LOOKUP) {
		uv_timer_stop(&s->rcache->timer);
		s->rcache->seq++;
		uint64_t us = uv_hrtime() / 1000u - s->rcache->sent_us;
		stats_of(s)->lookup_us_sum += us;
		stats_of(s)->lookups_answered++;
		if (us > stats_of(s)->lookup_us_max)
			stats_of(s)->lookup_us_max = us;
		if (status != QC_OK) {
			stats_of(s)->redis_errors++;
			bypass(s, QC_BYPASS_REDIS);
			forward_query(s, false);
		} else {
			lookup_answered(s, reply);
		}
	}
	px_session_unref(s);
}

/* Send the held group as relay_group() in session.c would have: its Parse
 * noted (or the deferred Parse of the unnamed statement it binds sent
 * first).  When its answer is captured and the client did not describe the
 * portal, a Describe is added: the entry keeps the RowDescription (capture()
 * keeps it from the client).  Returns px_peer_write()'s result. */
static int forward_group(px_session *s, bool capture)
{
	px_rcache *rc = s->rcache;
	const rc_group *g = &rc->grp;
	if (g->parse_len) {
		px_batch_note_parse(s, "", rc->query, g->parse_len);
		px_session_parse_sent(s);
	} else if (g->unnamed && s->batch.unnamed_deferred && !px_session_send_deferred_parse(s)) {
		return -1;
	}
	rc->inject = capture && !g->describe;
	if (!rc->inject)
		return px_peer_write(&s->backend, rc->query, rc->query_len);
	pgw_buf out;
	pgw_buf_init(&out, 0);
	pgw_buf_put_bytes(&out, rc->query, g->bind_end);
	pgw_buf_begin(&out, PGW_FE_DESCRIBE);
	pgw_buf_put_u8(&out, 'P');
	pgw_buf_put_cstr(&out, "");
	pgw_buf_end(&out);
	pgw_buf_put_bytes(&out, rc->query + g->bind_end, rc->query_len - g->bind_end);
	int rc_write = pgw_buf_ok(&out) ? px_peer_write(&s->backend, out.data, out.len) : -1;
	pgw_buf_free(&out);
	return rc_write;
}

/* Send the held Query (or group) to PostgreSQL; capture its answer on a
 * miss.  An N+1 child goes back to the batcher first. */
static void forward_query(px_session *s, bool capture)
{
	px_rcache *rc = s->rcache;
	if (rc->batch_on_miss) {
		rc->batch_on_miss = false;
		if (px_rc_redispatch(s))
			return;
	}
	int rc_write = rc->grp.ext ? forward_group(s, capture) : px_peer_write(&s->backend, rc->query, rc->query_len);
	pf_free(rc->query);
	rc->query = NULL;
	rc->phase = capture && rc_write == 0 ? PX_RC_CAPTURE : PX_RC_IDLE;
	if (rc->phase == PX_RC_IDLE)
		qc_keys_free(&rc->look_vk);
	cold_clear(rc);
	pf_sb_reset(&rc->capture);
	rc->capture_ok = true;
	px_session_resume_client(s);
}

/* Feed a stored answer to N+1 detection as if the backend had sent it. */
static void replay_for_nplusone(px_session *s, const uint8_t *p, size_t len)
{
	for (size_t pos = 0; pos + PGW_HEADER_LEN <= len;) {
		size_t size = pgw_frame_size(p + pos);
		const uint8_t *body = p + pos + PGW_HEADER_LEN;
		if (p[pos] == PGW_BE_ROW_DESC)
			px_np_row_description(s, body, size - PGW_HEADER_LEN);
		else if (p[pos] == PGW_BE_DATA_ROW)
			px_np_data_row(s, body, size - PGW_HEADER_LEN);
		else
			px_np_complete(s);
		pos += size;
	}
}


/* The extended answer's front: ParseComplete (when the group parsed) and
 * BindComplete; the payload loses its RowDescription unless the portal was
 * described. */
static void ext_front(const px_rcache *rc, pgw_buf *out, const char **payload, size_t *len)
{
	if (rc->grp.parse_len)
		pgw_build_empty(out, PGW_BE_PARSE_COMPLETE);
	pgw_build_empty(out, PGW_BE_BIND_COMPLETE);
	const uint8_t *p = (const uint8_t *)*payload;
	if (rc->grp.describe || *len < PGW_HEADER_LEN || p[0] != PGW_BE_ROW_DESC)
		return;
	size_t skip = pgw_frame_size(p);
	*payload += skip;
	*len -= skip;
}

static void answer_hit(px_session *s, const char *payload, size_t len, const char *tag)
{
	px_rcache *rc = s->rcache;
	char status = s->tx_status;
	pgw_buf out;
	pgw_buf_init(&out, 0);
	if (rc->grp.ext) {
		ext_front(rc, &out, &payload, &len);
		px_batch_parse_answered(s, rc->grp.parse_len ? rc->query : NULL, rc->grp.parse_len);
	}
	pgw_buf_put_bytes(&out, payload, len);
	pgw_build_ready(&out, status);
	if (pgw_buf_ok(&out))
		(void)px_peer_write(&s->client, out.data, out.len);
	pgw_buf_free(&out);
	stats_of(s)->bytes_served += len;
	pf_free(rc->query);
	rc->query = NULL;
	rc->phase = PX_RC_IDLE;
	qc_keys_free(&rc->look_vk);
	rc->batch_on_miss = false;
	replay_for_nplusone(s, (const uint8_t *)payload, len);
	px_track_complete(&s->track, tag, uv_hrtime() / 1000u);
	px_session_ready(s, status);
	px_session_resume_client(s);
	if (s->server->shutting_down)
		px_session_close_if_idle(s);
}

/* ---- storing a miss ------------------------------------------------------- */

static void on_stored(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	(void)r;
	px_server *server = ctx;
	if (status == QC_OK && reply && reply->type == REDIS_REPLY_STATUS)
		server->cache_stats.stores++;
	else
		server->cache_stats.store_errors++;
}

void px_rc_on_filled(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	(void)r;
	px_server *server = ctx;
	if (status == QC_OK && reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
		server->cache_stats.stores += (uint64_t)reply->integer;
	else if (status == QC_OK && reply && reply->type == REDIS_REPLY_INTEGER)
		server->cache_stats.fill_refused++;
	else
		server->cache_stats.store_errors++;
}

/* A cold shape's answer: stored only if no version it depends on changed
 * since a Redis time read before it was sent (QC_FILL_SCRIPT). */
static void store_cold(px_session *s)
{
	px_rcache *rc = s->rcache;
	const qc_keys *vk = &rc->cold_vk;
	const char *argv[QC_MAX_VERSION_KEYS + 10];
	size_t lens[QC_MAX_VERSION_KEYS + 10];
	char nv[16], after[24], ttl[24];
	int n = 0;
	snprintf(nv, sizeof(nv), "%zu", vk->n);
	snprintf(after, sizeof(after), "%llu", (unsigned long long)rc->cold_after_seq);
	snprintf(ttl, sizeof(ttl), "%d", rc->ttl_ms > 0 ? rc->ttl_ms : 1000);
	for (size_t i = 0; i < vk->n; i++)
		argv[n++] = vk->keys[i];
	argv[n++] = rc->key;
	argv[n++] = nv;
	argv[n++] = after;
	argv[n++] = ttl;
	for (int i = 0; i < n; i++)
		lens[i] = strlen(argv[i]);
	lens[n] = rc->capture.len;
	argv[n++] = rc->capture.data;
	if (qc_redis_eval(s->server->redis, px_rc_on_filled, s->server, QC_FILL_SCRIPT, (int)vk->n + 1, n, argv,
			  lens) < 0)
		stats_of(s)->store_errors++;
	else
		stats_of(s)->bytes_stored += rc->capture.len;
}

static void store(px_session *s)
{
	px_rcache *rc = s->rcache;
	if (rc->cold) {
		store_cold(s);
		return;
	}
	pf_sb value;
	pf_sb_init(&value);
	pf_sb_append(&value, rc->versions ? rc->versions : "");
	pf_sb_append_n(&value, "\n", 1);
	pf_sb_append_n(&value, rc->capture.data, rc->capture.len);
	char ttl[24];
	snprintf(ttl, sizeof(ttl), "%d", rc->ttl_ms > 0 ? rc->ttl_ms : 1000);
	const char *argv[] = {"SET", rc->key, value.data, "PX", ttl};
	size_t lens[] = {3, strlen(rc->key), value.len, 2, strlen(ttl)};
	if (qc_redis_command_argv(s->server->redis, on_stored, s->server, 5, argv, lens) < 0)
		stats_of(s)->store_errors++;
	else
		stats_of(s)->bytes_stored += rc->capture.len;
	pf_sb_free(&value);
	if (rc->versions)
		px_near_put(s->server->near, rc->key, &rc->look_vk, rc->versions, rc->capture.data, rc->capture.len,
			    rc->ttl_ms > 0 ? rc->ttl_ms : 1000);
}

static void capture_end(px_rcache *rc, qc_bypass why)
{
	if (rc->capture_ok && why != QC_CACHEABLE)
		bypass(rc->s, why);
	rc->capture_ok = false;
	pf_sb_free(&rc->capture); /* up to max_entry_bytes: do not keep it per idle session */
	pf_sb_init(&rc->capture);
}

static void capture_message(px_session *s, const pgw_chunk *ch, const uint8_t *msg)
{
	px_rcache *rc = s->rcache;
	if (!rc->capture_ok)
		return;
	if (ch->kind != PGW_CHUNK_MESSAGE) {
		capture_end(rc, QC_BYPASS_TOO_LARGE);
		return;
	}
	if (rc->capture.len + ch->frame.frame_len > s->server->cfg->cache_max_entry_bytes) {
		capture_end(rc, QC_BYPASS_TOO_LARGE);
		return;
	}
	pf_sb_append_n(&rc->capture, (const char *)msg, ch->frame.frame_len);
}

/* One backend message of a miss's answer.  True when it is pgfold's own
 * (the RowDescription of a Describe forward_group() added): not relayed. */
static bool capture(px_session *s, const pgw_chunk *ch, const uint8_t *msg)
{
	px_rcache *rc = s->rcache;
	bool own = false;
	switch (ch->frame.type) {
	case PGW_BE_ROW_DESC:
		own = rc->inject;
		rc->inject = false;
		capture_message(s, ch, msg);
		break;
	case PGW_BE_DATA_ROW:
	case PGW_BE_COMMAND_COMPLETE:
		capture_message(s, ch, msg);
		break;
	case PGW_BE_NOTIFICATION:
	case PGW_BE_PARAM_STATUS:
		break; /* not part of the result */
	case PGW_BE_PARSE_COMPLETE:
	case PGW_BE_BIND_COMPLETE:
		if (!rc->grp.ext)
			capture_end(rc, QC_BYPASS_NOT_STORED);
		break; /* an extended group's: made again on a hit */
	case PGW_BE_READY:
		if (rc->capture_ok && rc->capture.len > 0)
			store(s);
		capture_end(rc, QC_CACHEABLE);
		rc->phase = PX_RC_IDLE;
		rc->inject = false;
		cold_clear(rc);
		qc_keys_free(&rc->look_vk);
		pf_free(rc->versions);
		rc->versions = NULL;
		break;
	default:
		capture_end(rc, QC_BYPASS_NOT_STORED);
		break;
	}
	return own;
}

/* ---- invalidation --------------------------------------------------------- */

static void add_key(char **list, size_t *n, size_t max, const char *key)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(list[i], key) == 0)
			return;
	if (*n < max)
		list[(*n)++] = pf_strdup(key);
}

static void pending_clear(px_rcache *rc)
{
	for (size_t i = 0; i < rc->npending; i++)
		pf_free(rc->pending[i]);
	rc->npending = 0;
	rc->pending_db = false;
}

/* Add the version key in k (reset) to the pending writes; past
 * PX_RC_MAX_PENDING the transaction counts as writing the whole database. */
static void pending_key(px_session *s, pf_sb *k)
{
	px_rcache *rc = rcache_of(s);
	if (rc->npending == PX_RC_MAX_PENDING)
		rc->pending_db = true;
	else
		add_key(rc->pending, &rc->npending, PX_RC_MAX_PENDING, pf_sb_str(k));
	pf_sb_reset(k);
}

static void pending_table(px_session *s, const char *table)
{
	pf_sb k;
	pf_sb_init(&k);
	qc_key_table(&k, s->database, table);
	pending_key(s, &k);
	pf_sb_free(&k);
}

/* A write pinned to primary-key values (rcache_rows.h): their row versions
 * and the table's version of unpinned reads. */
static void pending_rows(px_session *s, const char *table, char rows[][PX_RC_ROW_KEY_MAX], int n)
{
	pf_sb k;
	pf_sb_init(&k);
	for (int i = 0; i < n; i++) {
		qc_key_row(&k, s->database, table, rows[i]);
		pending_key(s, &k);
	}
	qc_key_unkeyed(&k, s->database, table);
	pending_key(s, &k);
	pf_sb_free(&k);
}

static int current_param(void *ctx, int n, const char **value, size_t *len)
{
	return px_track_current_param(ctx, n, value, len);
}

/* The values the completing write stmt is pinned to, or -1. */
static int pinned_write(px_session *s, const rw_stmt *stmt, char rows[PX_RC_MAX_ROW_KEYS][PX_RC_ROW_KEY_MAX])
{
	px_rc_values vals = {.param = current_param, .ctx = &s->track};
	if (!stmt || !px_track_current_text(&s->track, &vals.sql, &vals.sql_len))
		return -1;
	return px_rc_pin_write(s, stmt, &vals, rows);
}

/* The running transaction's writes are committed: bump them at the next
 * ReadyForQuery. */
static void commit_pending(px_session *s)
{
	px_rcache *rc = s->rcache;
	if (!rc)
		return;
	if (rc->pending_db) {
		pf_sb k;
		pf_sb_init(&k);
		qc_key_database(&k, s->database);
		add_key(rc->bump, &rc->nbump, PX_RC_MAX_PENDING + 1, pf_sb_str(&k));
		pf_sb_free(&k);
	}
	for (size_t i = 0; i < rc->npending; i++)
		add_key(rc->bump, &rc->nbump, PX_RC_MAX_PENDING + 1, rc->pending[i]);
	pending_clear(rc);
}

static bool tag_is(const char *tag, const char *word)
{
	size_t n = strlen(word);
	return strncmp(tag, word, n) == 0 && (tag[n] == '\0' || tag[n] == ' ');
}

/* Functions that never write a table although pg_proc does not say
 * immutable: SQL-syntax forms the analysis lists as functions (unknown to
 * pg_proc) and common volatile built-ins.  A SELECT calling any other
 * volatile function invalidates its database. */
static bool never_writes(const char *fn)
{
	if (strncmp(fn, "pg_catalog.", 11) == 0)
		fn += 11;
	static const char *const forms[] = {
		"current_timestamp", "current_date", "current_time", "localtime", "localtimestamp",
		"current_user", "session_user", "user", "current_role", "current_catalog", "current_schema",
		"extract", "random", "clock_timestamp", "timeofday", "gen_random_uuid", "pg_sleep",
		"statement_timestamp", "transaction_timestamp", "now", NULL};
	for (size_t i = 0; forms[i]; i++)
		if (strcmp(fn, forms[i]) == 0)
			return true;
	return false;
}

/* Might one of the statement's functions write (volatile or unknown)? */
static bool may_write_via_function(px_session *s, const rw_shape *sh)
{
	for (size_t i = 0; i < sh->nfunctions; i++)
		if (!never_writes(sh->functions[i]) && volatility_of(s, sh->functions[i]) == 'v')
			return true;
	return false;
}

/* Does a completed statement of this shape write, and what? */
static void note_write(px_session *s, const rw_stmt *stmt, const char *tag)
{
	const rw_shape *sh = stmt && stmt->shape->kind != RW_KIND_UNPARSED ? stmt->shape : NULL;
	if (!sh) {
		if (!tag_is(tag, "SELECT") && !tag_is(tag, "SHOW") && !tag_is(tag, "BEGIN") && !tag_is(tag, "SET"))
			rcache_of(s)->pending_db = true;
		return;
	}
	bool tables = false;
	switch (sh->kind) {
	case RW_KIND_READ:
	case RW_KIND_SESSION:
	case RW_KIND_LISTEN:
		if (may_write_via_function(s, sh))
			rcache_of(s)->pending_db = true; /* a volatile function may write */
		return;
	case RW_KIND_TRANSACTION:
		return;
	case RW_KIND_WRITE:
	case RW_KIND_TRUNCATE:
	case RW_KIND_COPY:
		break;
	default: /* DDL, CALL, DO, EXECUTE, VACUUM ...: anything may have changed */
		rcache_of(s)->pending_db = true;
		break;
	}
	char rows[PX_RC_MAX_ROW_KEYS][PX_RC_ROW_KEY_MAX];
	int nrows = pinned_write(s, stmt, rows);
	for (size_t i = 0; i < sh->nrelations; i++) {
		const char *name = sh->relations[i].name;
		if (!sh->relations[i].written)
			continue;
		if (nrows > 0 && (int)i == sh->write_rel)
			pending_rows(s, name, rows, nrows);
		else
			pending_table(s, name);
		tables = true;
		if (!(px_relcat_flags(s->server->relcat, s->database, s->user, name) & PX_REL_WRITE_LOCAL))
			rcache_of(s)->pending_db = true; /* triggers, rules, cascades, partitions, views ... */
	}
	if ((!tables && sh->kind != RW_KIND_COPY) || sh->kind == RW_KIND_TRUNCATE)
		rcache_of(s)->pending_db = true; /* TRUNCATE ... CASCADE empties tables it does not name */
	if (may_write_via_function(s, sh))
		rcache_of(s)->pending_db = true;
}

/* A CommandComplete: the statement at the head of the track finished. */
static void on_complete(px_session *s, const uint8_t *body, size_t len, bool whole)
{
	const char *tag = "";
	if (!whole || pgw_read_command_complete(body, len, &tag) != PGW_OK)
		tag = "";
	const rw_stmt *stmt = px_track_current(&s->track);
	if (stmt && (stmt->shape->flags & RW_TOUCHES_TEMP))
		rcache_of(s)->temp_tables = true;
	rw_tx_op op = stmt && stmt->shape->kind == RW_KIND_TRANSACTION ? stmt->shape->tx_op : RW_TX_NONE;
	if (tag_is(tag, "COMMIT PREPARED") || tag_is(tag, "ROLLBACK PREPARED")) {
		rcache_of(s)->pending_db = true; /* another session's writes, tables unknown */
		commit_pending(s);
		return;
	}
	if (tag_is(tag, "ROLLBACK") && (op == RW_TX_ROLLBACK || op == RW_TX_COMMIT)) {
		/* the block rolled back (COMMIT of a failed block answers ROLLBACK);
		 * ROLLBACK TO SAVEPOINT, also tagged ROLLBACK, keeps what came before */
		if (s->rcache)
			pending_clear(s->rcache);
		return;
	}
	if (tag_is(tag, "COMMIT") || tag_is(tag, "PREPARE")) {
		commit_pending(s);
		return;
	}
	if (tag_is(tag, "ROLLBACK"))
		return; /* unknown or ROLLBACK TO: keep the pending writes (at worst bumped needlessly) */
	note_write(s, stmt, tag);
}

bool px_rcache_backend(px_session *s, const pgw_chunk *ch, const uint8_t *msg)
{
	if (!cache_on(s) && !(s->rcache && s->rcache->phase == PX_RC_CAPTURE))
		return false;
	if (ch->frame.type == PGW_BE_COMMAND_COMPLETE && s->state == PX_SESSION_ACTIVE)
		on_complete(s, msg + PGW_HEADER_LEN, ch->frame.body_len, ch->kind == PGW_CHUNK_MESSAGE);
	/* An error outside a BEGIN block rolls the implicit transaction back:
	 * its writes will not commit (inside a block, ROLLBACK TO SAVEPOINT may
	 * keep them: they wait for the block's end). */
	if (ch->frame.type == PGW_BE_ERROR && s->state == PX_SESSION_ACTIVE && s->rcache && !s->track.state.in_block)
		pending_clear(s->rcache);
	if (s->rcache && s->rcache->phase == PX_RC_CAPTURE)
		return capture(s, ch, msg);
	return false;
}

static void release_ready(px_session *s);

/* Other instances' leases acknowledged the bump (or ran out): the
 * ReadyForQuery may go. */
static void bump_acked(void *ctx, bool ok)
{
	(void)ok;
	bool current;
	px_session *s = cmd_done(ctx, &current);
	if (current && s->rcache->bumping)
		release_ready(s);
	px_session_unref(s);
}

static void release_ready(px_session *s)
{
	uv_timer_stop(&s->rcache->timer);
	s->rcache->seq++;
	s->rcache->bumping = false;
	s->rcache->bump_fenced = false;
	px_session_resume_backend(s);
}

/* The bump may or may not have run (no answer in time, the connection lost
 * after it was sent, an error answer): another instance may hold a lease
 * and not know of it, so the ReadyForQuery waits until any lease running
 * when it could have run has ended (counted as a bump error). */
static void fence_bump(px_session *s)
{
	px_rcache *rc = s->rcache;
	stats_of(s)->bump_errors++;
	rc->seq++; /* a late answer is dropped */
	rc->bump_fenced = true;
	start_deadline(rc, PX_NEAR_LEASE_MS + 50);
}

/* The bump a committed write needs, in flight: its keys (retried when it
 * fails: rcache_retry.h). */
typedef struct bump_call {
	rc_cmd *cmd;
	size_t n;
	char *keys[PX_RC_MAX_PENDING + 1];
} bump_call;

/* Done with the call (its cmd is done already): a failed bump's keys go to
 * the retries. */
static void bump_call_end(bump_call *c, px_session *s, bool ok)
{
	if (!ok)
		px_bump_retry_add(s->server->bump_retry, (const char *const *)c->keys, c->n);
	for (size_t i = 0; i < c->n; i++)
		pf_free(c->keys[i]);
	pf_free(c);
}

static void on_bumped(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	(void)r;
	bump_call *call = ctx;
	bool current;
	bool ok = status == QC_OK && reply && reply->type == REDIS_REPLY_ARRAY;
	px_session *s = cmd_done(call->cmd, &current);
	bump_call_end(call, s, ok);
	if (!current || !s->rcache->bumping) {
		if (ok)
			px_near_after_bump(s->server->near, reply, NULL, NULL);
		else
			s->server->cache_stats.bump_errors++;
	} else if (!ok && qc_redis_never_ran(status, reply)) {
		stats_of(s)->bump_errors++;
		release_ready(s);
	} else if (!ok) {
		uv_timer_stop(&s->rcache->timer);
		fence_bump(s);
	} else {
		uv_timer_stop(&s->rcache->timer);
		s->rcache->seq++;
		rc_cmd *wait = cmd_new(s);
		if (px_near_after_bump(s->server->near, reply, bump_acked, wait)) {
			/* bounded by the leases (PX_NEAR_LEASE_MS): this is only a backstop */
			start_deadline(s->rcache, PX_NEAR_LEASE_MS + 200);
		} else {
			pf_free(wait);
			px_session_unref(s);
			release_ready(s);
		}
	}
	px_session_unref(s);
}

static void bump_clear(px_rcache *rc)
{
	for (size_t i = 0; i < rc->nbump; i++)
		pf_free(rc->bump[i]);
	rc->nbump = 0;
}

/* Send the committed bumps; true when the ReadyForQuery must wait for them. */
static bool send_bumps(px_session *s)
{
	px_rcache *rc = s->rcache;
	const char *argv[PX_RC_MAX_PENDING + 3];
	int nkeys = 0;
	for (size_t i = 0; i < rc->nbump; i++)
		argv[nkeys++] = rc->bump[i];
	argv[nkeys] = px_near_id(s->server->near);
	argv[nkeys + 1] = px_near_channel(s->server->near);
	stats_of(s)->invalidations += rc->nbump;
	rc->seq++;
	bump_call *c = pf_calloc(1, sizeof(*c));
	c->cmd = cmd_new(s);
	c->n = rc->nbump;
	memcpy(c->keys, rc->bump, rc->nbump * sizeof(char *)); /* the call owns them now */
	rc->nbump = 0;
	int sent = qc_redis_eval(s->server->redis, on_bumped, c, QC_BUMP_SCRIPT, nkeys, nkeys + 2, argv, NULL);
	if (sent < 0) {
		stats_of(s)->bump_errors++;
		pf_free(c->cmd);
		bump_call_end(c, s, false);
		px_session_unref(s);
		return false;
	}
	rc->bumping = true;
	int t = s->server->cfg->cache_timeout_ms;
	start_deadline(rc, t < 25 ? 100 : 4 * t);
	return true;
}

bool px_rcache_ready(px_session *s, char status)
{
	px_rcache *rc = s->rcache;
	if (!rc || s->state != PX_SESSION_ACTIVE)
		return false;
	if (rc->bumping)
		return true;
	if (status == 'I')
		commit_pending(s);
	if (rc->nbump == 0)
		return false;
	if (!cache_on(s)) {
		bump_clear(rc);
		return false;
	}
	return send_bumps(s);
}

/* ---- deadlines and teardown ----------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
	px_rcache *rc = t->data;
	px_session *s = rc->s;
	if (s->state != PX_SESSION_ACTIVE)
		return;
	rc->seq++; /* the late answer is dropped */
	if (rc->phase == PX_RC_LOOKUP) {
		stats_of(s)->timeouts++;
		bypass(s, QC_BYPASS_REDIS);
		forward_query(s, false);
	} else if (rc->bumping && !rc->bump_fenced) {
		fence_bump(s); /* not answered in time: it may still run */
	} else if (rc->bumping) {
		release_ready(s); /* the fence ran out */
	}
}

void px_rcache_close(px_session *s)
{
	px_rcache *rc = s->rcache;
	if (!rc || !rc->timer_open)
		return;
	rc->timer_open = false;
	rc->seq++;
	uv_close((uv_handle_t *)&rc->timer, on_timer_closed);
}

void px_rcache_free(px_session *s)
{
	px_rcache *rc = s->rcache;
	if (!rc)
		return;
	pf_free(rc->query);
	pf_free(rc->versions);
	pf_sb_free(&rc->capture);
	cold_clear(rc);
	qc_keys_free(&rc->look_vk);
	pending_clear(rc);
	bump_clear(rc);
	pf_free(rc);
	s->rcache = NULL;
}
