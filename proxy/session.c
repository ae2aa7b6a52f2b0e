/*
 * session.c — a client session: the startup phase (SSL/GSSENC refusal,
 * CancelRequest routing, StartupMessage), the relay between client and
 * backend with per-message checks, and the deferred close.
 *
 * The relay frames both directions with pgw_stream: most bytes pass through
 * as they arrive; the few messages pgfold needs to read (ReadyForQuery,
 * BackendKeyData, ErrorResponse, Terminate ...) are delivered whole.  Every
 * run of consecutive bytes read is forwarded with one write.
 */
#include "session.h"

#include <stdio.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"

#define PX_CLIENT_BUF_INITIAL (16 * 1024)
#define PX_BACKEND_BUF_INITIAL (64 * 1024)
/* Messages pgfold reads whole are at most this big; larger ones stream. */
#define PX_WHOLE_LIMIT (1024 * 1024)
#define PX_BUF_MAX (PX_WHOLE_LIMIT + 64 * 1024)
/* How long a closing session waits for its last bytes to be written. */
#define PX_CLOSE_DRAIN_MS 5000
#define PX_HELD_READ_MAX (64 * 1024) /* bytes read on from a peer whose message is held for the cache */

static const px_peer_ops client_ops;
static const px_peer_ops backend_ops;

static const char *const state_names[] = {"startup", "connecting", "login", "active", "closing"};

const char *px_session_state_name(px_session_state state)
{
	return state_names[state];
}

static void on_timer(uv_timer_t *timer);

static void start_timer(px_session *s, int ms)
{
	uv_timer_start(&s->timer, on_timer, (uint64_t)(ms > 0 ? ms : 1), 0);
}

void px_session_set_state(px_session *s, px_session_state state)
{
	const cf_config *cfg = s->server->cfg;
	if (s->state != state)
		px_session_log(PF_LOG_DEBUG, s, "state %s -> %s", state_names[s->state], state_names[state]);
	s->state = state;
	switch (state) {
	case PX_SESSION_STARTUP:
		start_timer(s, cfg->client_login_timeout_ms);
		break;
	case PX_SESSION_CONNECTING:
	case PX_SESSION_LOGIN: /* until the backend answers the StartupMessage */
		start_timer(s, cfg->connect_timeout_ms);
		break;
	case PX_SESSION_ACTIVE:
		uv_timer_stop(&s->timer);
		break;
	case PX_SESSION_CLOSING:
		start_timer(s, PX_CLOSE_DRAIN_MS);
		break;
	}
}

/* ---- close -------------------------------------------------------------- */

void px_session_ref(px_session *s)
{
	s->refs++;
}

void px_session_unref(px_session *s)
{
	if (--s->refs > 0)
		return;
	px_peer_release(&s->client);
	px_peer_release(&s->backend);
	px_batch_free(s);
	px_rcache_free(s);
	px_np_capture_free(&s->np_capture);
	px_track_free(&s->track);
	rw_np_session_free(s->np);
	pf_free(s->startup_packet);
	pf_free(s->startup_settings);
	px_server_session_gone(s->server, s);
	pf_free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
	px_session_unref(h->data);
}

/* Close a peer once nothing is left to write to it. */
static void close_peer_when_drained(px_peer *peer)
{
	if (peer->write_queued == 0)
		px_peer_close(peer);
}

static void close_everything_now(px_session *s)
{
	px_peer_close(&s->client);
	px_peer_close(&s->backend);
	if (!uv_is_closing((uv_handle_t *)&s->timer))
		uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void send_error(px_peer *peer, const char *severity, const char *sqlstate, const char *message)
{
	pgw_buf b;
	pgw_buf_init(&b, 64 * 1024);
	pgw_build_error(&b, severity, sqlstate, message);
	if (pgw_buf_ok(&b))
		(void)px_peer_write(peer, b.data, b.len);
	pgw_buf_free(&b);
}

/* The backend bytes held back with a ReadyForQuery (relay(): hold_before)
 * answer statements that ran, a write's CommandComplete among them: a
 * session that closes during the hold still sends them (the client learns
 * the write happened), never the ReadyForQuery itself. */
static void send_held(px_session *s)
{
	px_peer *b = &s->backend;
	if (b->held > 0 && !s->settling && px_peer_is_open(&s->client))
		(void)px_peer_write(&s->client, b->in, b->held);
	px_peer_consume(b, b->held);
}

void px_session_close(px_session *s, const char *reason, const char *sqlstate, const char *message)
{
	if (s->state == PX_SESSION_CLOSING)
		return;
	px_session_log(sqlstate ? PF_LOG_WARN : PF_LOG_INFO, s, "closing: %s%s%s", reason, message ? ": " : "",
		       message ? message : "");
	if (s->resolving)
		uv_cancel((uv_req_t *)&s->resolve_req);
	px_session_set_state(s, PX_SESSION_CLOSING);
	px_rcache_close(s);
	px_peer_set_want_read(&s->client, false);
	px_peer_set_want_read(&s->backend, false);
	send_held(s);
	if (sqlstate && px_peer_is_open(&s->client))
		send_error(&s->client, "FATAL", sqlstate, message);
	close_peer_when_drained(&s->client);
	close_peer_when_drained(&s->backend);
	if (!px_peer_is_open(&s->client) && !px_peer_is_open(&s->backend))
		close_everything_now(s);
	px_server_check_drained(s->server);
}

static void on_timer(uv_timer_t *timer)
{
	px_session *s = timer->data;
	switch (s->state) {
	case PX_SESSION_STARTUP:
		px_session_close(s, "login timeout", "08006", "pgfold: client_login_timeout expired");
		break;
	case PX_SESSION_LOGIN:
		if (s->backend_answered) {
			px_session_close(s, "login timeout", "08006", "pgfold: client_login_timeout expired");
			break;
		}
		s->server->stats.backend_connect_errors++;
		px_session_close(s, "backend startup timeout", "08006",
				 "pgfold: the backend did not answer the startup packet within connect_timeout");
		break;
	case PX_SESSION_CONNECTING:
		s->server->stats.backend_connect_errors++;
		px_session_close(s, "connect timeout", "08006",
				 "pgfold: could not connect to the backend: connect_timeout expired");
		break;
	case PX_SESSION_ACTIVE:
		if (s->settling)
			px_session_close(s, "client left; its writes did not settle in time", NULL, NULL);
		break;
	case PX_SESSION_CLOSING:
		close_everything_now(s);
		break;
	}
}

/* No statement in flight: the client has every answer it asked for.  An open
 * transaction does not count as running (closing rolls it back, as
 * PostgreSQL's own fast shutdown does). */
static bool session_idle(const px_session *s)
{
	return s->state == PX_SESSION_ACTIVE && s->pending_ready == 0 && !s->extended_open && s->client.in_len == 0;
}

void px_session_cancel_running(px_session *s)
{
	if (s->state == PX_SESSION_ACTIVE && s->has_key && (s->pending_ready > 0 || s->extended_open))
		px_cancel_forward(s->server->loop, s, s->backend_pid, s->backend_key);
}

void px_session_close_if_idle(px_session *s)
{
	if (s->state == PX_SESSION_STARTUP || s->state == PX_SESSION_CONNECTING || s->state == PX_SESSION_LOGIN ||
	    session_idle(s))
		px_session_close(s, "shutting down", "57P01", "terminating connection due to administrator command");
}

/* ---- relay -------------------------------------------------------------- */

/* What the relay does after looking at a message. */
typedef enum relay_verdict {
	RELAY_FORWARD,     /* pass it on and carry on */
	RELAY_FORWARD_END, /* pass it on, then close the session */
	RELAY_CONSUME,     /* pgfold answered it: do not pass it on */
	RELAY_UNNAMED,     /* it uses the unnamed statement, whose Parse pgfold deferred: send that first */
	RELAY_HOLD,        /* not yet: forward what came before it and stop (the result cache resumes) */
	RELAY_SETTLE,      /* a Terminate while writes are in flight: hold it until they are answered */
} relay_verdict;

static uint64_t now_us(void)
{
	return uv_hrtime() / 1000u;
}

/* A finished statement feeds the per-shape statistics. */
static void statement_done(void *ctx, const rw_stmt *stmt, uint64_t elapsed_us, uint64_t rows, bool error)
{
	px_session *s = ctx;
	if (!stmt)
		return;
	px_qstat *qs = px_qstats_get(s->server->qstats, stmt->shape);
	px_qstats_record(qs, elapsed_us, rows, error);
	if (qs && s->server->volatility)
		px_qstats_set_volatility(qs, px_volatility_of_shape(s->server->volatility, s->database, s->user,
								    stmt->shape));
	if (!error && stmt->shape->kind == RW_KIND_DDL)
		s->ddl_done = true;
}

/* After a transaction with DDL commits, the catalog may have new or changed
 * functions: reload their volatility (earlier would read the old catalog). */
static void refresh_catalog_after_ddl(px_session *s, char status)
{
	if (!s->ddl_done || status != 'I')
		return;
	s->ddl_done = false;
	if (s->server->volatility)
		px_volatility_invalidate(s->server->volatility, s->database);
	px_relcat_invalidate(s->server->relcat, s->database);
}

/* NULL when analysis is off: the statement is then tracked as unknown. */
static rw_analysis *analyze(px_session *s, const char *sql, size_t len)
{
	return s->analyse ? rw_analyze(s->server->analyzer, sql, len) : NULL;
}

static relay_verdict on_query(px_session *s, const pgw_chunk *ch, const uint8_t *body)
{
	const char *sql;
	size_t len;
	if (ch->kind != PGW_CHUNK_MESSAGE || pgw_read_query(body, ch->frame.body_len, &sql, &len) != PGW_OK) {
		px_track_query(&s->track, NULL, NULL, now_us()); /* too large to analyse */
		return RELAY_FORWARD;
	}
	rw_analysis *an = analyze(s, sql, len);
	px_track_query(&s->track, an, sql, now_us());
	relay_verdict verdict = RELAY_FORWARD;
	if (an && an->nstmts == 1 && s->np)
		verdict = px_batch_query(s, an, sql, body - PGW_HEADER_LEN, ch->frame.frame_len) ? RELAY_CONSUME
												 : RELAY_FORWARD;
	else
		for (size_t i = 0; an && i < an->nstmts; i++)
			px_np_statement(s, &an->stmts[i], sql, NULL);
	/* not one the batcher took: maybe the result cache answers it */
	if (verdict == RELAY_FORWARD && an &&
	    px_rcache_query(s, an, sql, len, body - PGW_HEADER_LEN, ch->frame.frame_len))
		verdict = RELAY_CONSUME;
	rw_analysis_free(an);
	return verdict;
}

static void on_parse(px_session *s, const pgw_chunk *ch, const uint8_t *body)
{
	pgw_parse_msg m;
	if (ch->kind != PGW_CHUNK_MESSAGE || pgw_read_parse(body, ch->frame.body_len, &m) != PGW_OK) {
		px_track_forget_prepared(&s->track); /* cannot tell which name it replaced */
		if (!s->in_group)
			px_batch_note_parse(s, NULL, NULL, 0);
		return;
	}
	if (!s->in_group)
		px_batch_note_parse(s, m.stmt_name, body - PGW_HEADER_LEN, ch->frame.frame_len);
	rw_analysis *an = analyze(s, m.query, m.query_len);
	px_track_parse(&s->track, m.stmt_name, an, m.query);
	px_track_parse_types(&s->track, m.stmt_name, m.nparams, m.param_types);
	rw_analysis_free(an);
}

static void on_bind(px_session *s, const pgw_chunk *ch, const uint8_t *body)
{
	pgw_bind_msg m;
	if (ch->kind != PGW_CHUNK_MESSAGE || pgw_read_bind(body, ch->frame.body_len, &m) != PGW_OK) {
		px_track_forget_portals(&s->track);
		return;
	}
	px_track_bind(&s->track, m.portal, m.stmt_name);
	px_track_bind_params(&s->track, m.portal, m.stmt_name, &m);
}

void px_session_parse_sent(px_session *s)
{
	s->parses_out++;
}

/* Does the message use the unnamed statement while its Parse is deferred
 * (batcher.h)?  Then that Parse must reach the backend first. */
static bool needs_deferred_parse(const px_session *s, const pgw_chunk *ch, const uint8_t *body)
{
	if (!s->batch.unnamed_deferred || s->in_group)
		return false;
	if (ch->kind != PGW_CHUNK_MESSAGE)
		return true; /* unreadable: assume it does */
	if (ch->frame.type == PGW_FE_BIND) {
		pgw_bind_msg m;
		return pgw_read_bind(body, ch->frame.body_len, &m) != PGW_OK || m.stmt_name[0] == '\0';
	}
	char kind;
	const char *name;
	return pgw_read_describe_close(body, ch->frame.body_len, &kind, &name) != PGW_OK ||
	       (kind == 'S' && name[0] == '\0');
}

/* Send the deferred Parse in front of the message at hand; its
 * ParseComplete comes after those of the client's Parses still unanswered. */
static bool send_deferred_parse(px_session *s)
{
	px_batcher *b = &s->batch;
	if (px_peer_write(&s->backend, b->unnamed.data, b->unnamed.len) < 0)
		return false;
	b->unnamed_deferred = false;
	s->swallow_parse = true;
	s->swallow_after = s->parses_out;
	return true;
}

bool px_session_send_deferred_parse(px_session *s)
{
	return send_deferred_parse(s);
}

/* A ParseComplete from the backend: the deferred Parse's is pgfold's own. */
static relay_verdict on_parse_complete(px_session *s)
{
	if (s->swallow_parse && s->swallow_after == 0) {
		s->swallow_parse = false;
		return RELAY_CONSUME;
	}
	if (s->swallow_parse)
		s->swallow_after--;
	if (s->parses_out > 0)
		s->parses_out--;
	return RELAY_FORWARD;
}

/* ReadyForQuery: every message before the Sync is answered or was skipped
 * after an error (a deferred Parse skipped so is still to be sent). */
static void parses_settled(px_session *s)
{
	if (s->swallow_parse)
		s->batch.unnamed_deferred = true;
	s->swallow_parse = false;
	s->parses_out = 0;
}

static void on_execute(px_session *s, const pgw_chunk *ch, const uint8_t *body)
{
	const char *portal;
	int32_t max_rows;
	s->server->stats.queries++;
	s->extended_open = true;
	if (ch->kind != PGW_CHUNK_MESSAGE || pgw_read_execute(body, ch->frame.body_len, &portal, &max_rows) != PGW_OK)
		portal = "\x01"; /* no portal has this name: tracked as unknown */
	px_track_execute(&s->track, portal, now_us());
	if (!s->in_group) /* a group's child is matched by px_batch_extended() */
		px_np_statement(s, px_track_last(&s->track), NULL, portal);
}

/* A Describe of a statement: its ParameterDescription gives the types. */
static void on_describe(px_session *s, const pgw_chunk *ch, const uint8_t *body)
{
	char kind;
	const char *name;
	if (ch->kind == PGW_CHUNK_MESSAGE && pgw_read_describe_close(body, ch->frame.body_len, &kind, &name) == PGW_OK &&
	    kind == 'S')
		px_track_describe(&s->track, name);
}

static void on_close_message(px_session *s, const pgw_chunk *ch, const uint8_t *body)
{
	char kind;
	const char *name;
	if (ch->kind == PGW_CHUNK_MESSAGE && pgw_read_describe_close(body, ch->frame.body_len, &kind, &name) == PGW_OK) {
		px_track_close(&s->track, kind, name);
		px_batch_note_close(s, kind, name);
	}
}

static relay_verdict inspect_frontend(px_session *s, const pgw_chunk *ch, const uint8_t *msg)
{
	const uint8_t *body = msg + PGW_HEADER_LEN;
	switch (ch->frame.type) {
	case PGW_FE_QUERY:
		s->server->stats.queries++;
		s->pending_ready++;
		px_batch_note_query(s);
		return on_query(s, ch, body);
	case PGW_FE_EXECUTE:
		on_execute(s, ch, body);
		break;
	case PGW_FE_PARSE:
		s->extended_open = true;
		on_parse(s, ch, body);
		if (!s->in_group)
			s->parses_out++;
		break;
	case PGW_FE_BIND:
		if (needs_deferred_parse(s, ch, body))
			return RELAY_UNNAMED;
		s->extended_open = true;
		on_bind(s, ch, body);
		break;
	case PGW_FE_CLOSE:
		s->extended_open = true;
		on_close_message(s, ch, body);
		break;
	case PGW_FE_DESCRIBE:
		if (needs_deferred_parse(s, ch, body))
			return RELAY_UNNAMED;
		s->extended_open = true;
		on_describe(s, ch, body);
		break;
	case PGW_FE_FLUSH:
		s->extended_open = true;
		break;
	case PGW_FE_SYNC:
		s->pending_ready++;
		s->extended_open = false;
		px_track_sync(&s->track);
		break;
	case PGW_FE_FUNCTION_CALL:
		s->pending_ready++;
		px_track_function_call(&s->track, now_us());
		break;
	case PGW_FE_TERMINATE:
		return px_rcache_unsettled(s) ? RELAY_SETTLE : RELAY_FORWARD_END;
	default:
		break;
	}
	return RELAY_FORWARD;
}

static void on_ready_for_query(px_session *s, const uint8_t *body, size_t len)
{
	char status;
	if (pgw_read_ready(body, len, &status) == PGW_OK)
		px_session_ready(s, status);
}

void px_session_ready(px_session *s, char status)
{
	s->tx_status = status;
	px_batch_ready(s, status);
	if (s->pending_ready > 0)
		s->pending_ready--;
	if (s->state == PX_SESSION_ACTIVE) {
		px_track_ready(&s->track, status);
		refresh_catalog_after_ddl(s, status);
	}
	if (s->state == PX_SESSION_LOGIN) {
		px_session_set_state(s, PX_SESSION_ACTIVE);
		px_session_log(PF_LOG_DEBUG, s, "logged in, backend pid %u", s->backend_pid);
		/* Start loading this database's function volatility (once per database). */
		if (s->server->volatility)
			(void)px_volatility_of(s->server->volatility, s->database, s->user, "now");
	}
}

static void on_backend_error(px_session *s, const pgw_chunk *ch, const uint8_t *msg)
{
	s->server->stats.backend_errors++;
	px_np_abort(s);
	if (s->state == PX_SESSION_ACTIVE)
		px_track_error(&s->track, now_us());
	if (ch->kind != PGW_CHUNK_MESSAGE)
		return;
	pgw_error_fields f;
	if (pgw_read_error(msg + PGW_HEADER_LEN, ch->frame.body_len, &f) != PGW_OK || !f.severity_nl)
		return;
	if (strcmp(f.severity_nl, "FATAL") == 0 || strcmp(f.severity_nl, "PANIC") == 0) {
		s->backend_fatal = true;
		px_session_log(PF_LOG_INFO, s, "backend: %s %s: %s", f.severity_nl, f.sqlstate ? f.sqlstate : "",
			       f.message ? f.message : "");
	}
}

static relay_verdict inspect_backend(px_session *s, const pgw_chunk *ch, const uint8_t *msg)
{
	const uint8_t *body = msg + PGW_HEADER_LEN;
	char status;
	if (ch->frame.type == PGW_BE_READY && ch->kind == PGW_CHUNK_MESSAGE &&
	    pgw_read_ready(body, ch->frame.body_len, &status) == PGW_OK && px_rcache_ready(s, status))
		return RELAY_HOLD; /* committed writes are being invalidated first */
	if (px_rcache_backend(s, ch, msg))
		return RELAY_CONSUME; /* the answer to a Describe the result cache added */
	switch (ch->frame.type) {
	case PGW_BE_READY:
		parses_settled(s);
		on_ready_for_query(s, body, ch->frame.body_len);
		break;
	case PGW_BE_PARSE_COMPLETE:
		return on_parse_complete(s);
	case PGW_BE_PARAM_DESC: {
		int16_t n;
		const uint8_t *types;
		if (ch->kind == PGW_CHUNK_MESSAGE && pgw_read_param_desc(body, ch->frame.body_len, &n, &types) == PGW_OK)
			px_track_param_desc(&s->track, n, types);
		break;
	}
	case PGW_BE_KEY_DATA:
		s->has_key = pgw_read_key_data(body, ch->frame.body_len, &s->backend_pid, &s->backend_key) == PGW_OK;
		break;
	case PGW_BE_ERROR:
		on_backend_error(s, ch, msg);
		break;
	case PGW_BE_ROW_DESC:
		px_track_row_desc(&s->track, ch->kind == PGW_CHUNK_MESSAGE ? body : NULL, ch->frame.body_len);
		if (ch->kind == PGW_CHUNK_MESSAGE)
			px_np_row_description(s, body, ch->frame.body_len);
		break;
	case PGW_BE_NO_DATA:
		px_track_row_desc(&s->track, NULL, 0);
		break;
	case PGW_BE_DATA_ROW:
		if (ch->kind == PGW_CHUNK_MESSAGE)
			px_np_data_row(s, body, ch->frame.body_len);
		else
			px_np_abort(s); /* a row too large to look at: not a parent */
		break;
	case PGW_BE_COMMAND_COMPLETE: {
		px_np_complete(s);
		const char *tag;
		if (ch->kind == PGW_CHUNK_MESSAGE && pgw_read_command_complete(body, ch->frame.body_len, &tag) == PGW_OK)
			px_track_complete(&s->track, tag, now_us());
		else
			px_track_complete(&s->track, "", now_us());
		break;
	}
	case PGW_BE_EMPTY_QUERY:
		px_np_abort(s);
		px_track_empty(&s->track, now_us());
		break;
	case PGW_BE_PORTAL_SUSPENDED:
		px_track_suspended(&s->track, now_us());
		break;
	default:
		break;
	}
	return RELAY_FORWARD;
}

static void protocol_violation(px_session *s, px_peer *src, int rc, const pgw_chunk *ch, const uint8_t *at)
{
	char msg[256];
	bool from_client = src == &s->client;
	if (rc == PGW_ERR_TOO_LARGE) {
		uint32_t n = pgw_get_u32(at + 1);
		snprintf(msg, sizeof(msg), "pgfold: %s message of %u bytes exceeds max_message_bytes (%zu)",
			 from_client ? "client" : "backend", n, src->framer.max_frame);
	} else {
		snprintf(msg, sizeof(msg), "pgfold: invalid %s message (type 0x%02x): %s",
			 from_client ? "frontend" : "backend", at[0], pgw_strerror(rc));
	}
	(void)ch;
	if (from_client)
		s->server->stats.protocol_errors++;
	px_session_close(s, "protocol violation", "08P01", msg);
}

/* ---- extended-protocol children ------------------------------------------ */

#define PX_GROUP_MAX (64 * 1024) /* larger groups are relayed message by message */

typedef enum group_verdict {
	GROUP_NONE,      /* not a group: relay message by message */
	GROUP_WAIT,      /* could be one: wait for the rest */
	GROUP_TAKEN,     /* pgfold answers it (the batcher, or the result cache: a hit, or a miss it forwards) */
	GROUP_FORWARDED, /* tracked; pass its bytes on */
	GROUP_FORWARDED_UNNAMED, /* ... after the deferred Parse of the unnamed statement it uses */
} group_verdict;

/* Could the batcher take a child at all?  Until some pattern is active
 * (confirmed, not disabled) none can, and the group scan would only cost
 * time on every statement. */
static bool batching_possible(const px_session *s)
{
	if (!s->np || s->server->cfg->nplusone_mode != CF_NPLUSONE_REWRITE || !s->server->np_registry)
		return false;
	rw_np_stats st;
	rw_np_registry_stats(s->server->np_registry, &st);
	return st.active > 0;
}

/* Could the client's next message begin an N+1 child the batcher might take
 * whole, or a statement the result cache may answer?  Only on an idle
 * session (nothing in flight, between messages). */
static bool group_possible(const px_session *s, const px_peer *src, const uint8_t *at)
{
	return src == &s->client && s->state == PX_SESSION_ACTIVE && (at[0] == PGW_FE_PARSE || at[0] == PGW_FE_BIND) &&
	       (batching_possible(s) || px_rcache_groups(s)) &&
	       s->batch.phase == PX_BATCH_IDLE &&
	       s->pending_ready == 0 && !s->extended_open && px_track_inflight(&s->track) == 0 &&
	       src->framer.remaining == 0;
}

/* Track each message of the group as the relay would have. */
static void track_group(px_session *s, const uint8_t *at, size_t len)
{
	s->in_group = true;
	for (size_t pos = 0; pos < len;) {
		pgw_chunk ch = {.kind = PGW_CHUNK_MESSAGE};
		(void)pgw_frame_header(at + pos, len - pos, PGW_FROM_FRONTEND, len, &ch.frame); /* scanned before */
		ch.len = ch.frame.frame_len;
		(void)inspect_frontend(s, &ch, at + pos);
		pos += ch.frame.frame_len;
	}
	s->in_group = false;
}

static group_verdict relay_group(px_session *s, const uint8_t *at, size_t avail, size_t *len)
{
	pgw_ext_group g;
	int rc = pgw_ext_group_scan(at, avail, PX_GROUP_MAX, &g);
	if (rc == PGW_NEED_MORE)
		return GROUP_WAIT;
	if (rc != PGW_OK)
		return GROUP_NONE;
	*len = g.len;
	track_group(s, at, g.len);
	if (px_batch_extended(s, &g, at) || px_rcache_extended(s, &g, at))
		return GROUP_TAKEN; /* the batcher first, as for a simple Query */
	if (g.parse) {
		px_batch_note_parse(s, "", g.parse, g.parse_len);
		s->parses_out++;
	}
	if (!g.parse && !g.bind.stmt_name[0] && s->batch.unnamed_deferred)
		return GROUP_FORWARDED_UNNAMED;
	return GROUP_FORWARDED;
}

/* Write to the peer, except to a client that left while its writes
 * settle: their answers go to nobody. */
static int relay_write(px_session *s, px_peer *dst, const uint8_t *data, size_t len)
{
	if (dst == &s->client && s->settling)
		return 0;
	return px_peer_write(dst, data, len);
}

/* The client left with writes in flight: stop reading it and wait (at most
 * PX_CLOSE_DRAIN_MS) for their ReadyForQuery, which tells whether they
 * committed (the result cache invalidates what did). */
static void begin_settling(px_session *s)
{
	s->settling = true;
	px_peer_set_want_read(&s->client, false);
	start_timer(s, PX_CLOSE_DRAIN_MS);
	px_session_log(PF_LOG_DEBUG, s, "client left with writes in flight: waiting for their answers");
}

/* Settling and everything answered: end the backend session and close. */
static bool settled(px_session *s)
{
	if (!s->settling || s->pending_ready > 0)
		return false;
	static const uint8_t terminate[] = {PGW_FE_TERMINATE, 0, 0, 0, 4};
	(void)px_peer_write(&s->backend, terminate, sizeof(terminate));
	px_session_close(s, "client left; its writes settled", NULL, NULL);
	return true;
}

/* A message is held (a ReadyForQuery waiting for the result cache's
 * invalidation): what came before it in src->in[fwd, off), looked at
 * already, waits too, so that the client gets the statement's end in one
 * write and wakes once (held bytes are never looked at again).  Past
 * PX_HELD_READ_MAX of input, the backend is not read until the hold ends. */
static void hold_before(px_session *s, px_peer *src, size_t fwd, size_t off)
{
	px_peer_consume(src, fwd);
	src->held = off - fwd;
	if (src == &s->backend && src->in_len > PX_HELD_READ_MAX && !s->backend_paused) {
		s->backend_paused = true;
		px_peer_set_want_read(src, false);
	}
}

/* Frame and forward whatever src holds.  Returns false if the session closed. */
static bool relay(px_session *s, px_peer *src, px_peer *dst)
{
	size_t off = src->held, fwd = 0, need = 0; /* src->in[fwd, off) is still to be forwarded */
	relay_verdict verdict = RELAY_FORWARD;
	bool hold = false;
	src->held = 0;
	while (off < src->in_len && verdict != RELAY_FORWARD_END && verdict != RELAY_SETTLE &&
	       s->batch.phase == PX_BATCH_IDLE &&
	       !(src == &s->client && px_rcache_busy(s))) {
		pgw_chunk ch;
		const uint8_t *at = src->in + off;
		if (group_possible(s, src, at)) {
			size_t len = 0;
			group_verdict g = relay_group(s, at, src->in_len - off, &len);
			if (g == GROUP_WAIT)
				break;
			if (g == GROUP_TAKEN) {
				if (off > fwd && relay_write(s, dst, src->in + fwd, off - fwd) < 0)
					break;
				fwd = off + len;
			}
			if (g == GROUP_FORWARDED_UNNAMED) {
				if ((off > fwd && relay_write(s, dst, src->in + fwd, off - fwd) < 0) ||
				    !send_deferred_parse(s))
					break;
				fwd = off;
			}
			if (g != GROUP_NONE) {
				off += len;
				continue;
			}
		}
		int rc = pgw_stream_next(&src->framer, at, src->in_len - off, &ch, &need);
		if (rc == PGW_NEED_MORE)
			break;
		if (rc < 0) {
			(void)relay_write(s, dst, src->in + fwd, off - fwd);
			protocol_violation(s, src, rc, &ch, at);
			return false;
		}
		verdict = RELAY_FORWARD;
		if (ch.kind == PGW_CHUNK_MESSAGE || ch.first)
			verdict = src == &s->client ? inspect_frontend(s, &ch, at) : inspect_backend(s, &ch, at);
		if (verdict == RELAY_UNNAMED) {
			/* forward what came before, then the deferred Parse; the
			 * message itself is looked at again on the next turn */
			if ((off > fwd && relay_write(s, dst, src->in + fwd, off - fwd) < 0) || !send_deferred_parse(s))
				break;
			fwd = off;
			verdict = RELAY_FORWARD;
			continue;
		}
		if (verdict == RELAY_HOLD) {
			verdict = RELAY_FORWARD; /* its chunk stays unconsumed; looked at again on resume */
			hold = true;
			break;
		}
		if (verdict == RELAY_CONSUME || verdict == RELAY_SETTLE) {
			/* pgfold answered this one: forward what came before it, skip it */
			if (off > fwd && relay_write(s, dst, src->in + fwd, off - fwd) < 0)
				break;
			fwd = off + ch.len;
		}
		off += ch.len;
	}
	if (hold) {
		hold_before(s, src, fwd, off);
	} else {
		if (off > fwd && relay_write(s, dst, src->in + fwd, off - fwd) < 0 && s->state != PX_SESSION_CLOSING) {
			px_session_close(s, "write failed", NULL, NULL);
			return false;
		}
		px_peer_consume(src, off);
	}
	/* While a statement is held for the cache the client's socket stays
	 * open for reading (nothing more is relayed until it is answered: this
	 * saves stopping and restarting the socket per statement), up to a bound. */
	if (src == &s->client && px_rcache_busy(s) && src->in_len > PX_HELD_READ_MAX)
		px_peer_set_want_read(&s->client, false);
	if (verdict == RELAY_FORWARD_END) {
		px_session_close(s, "client sent Terminate", NULL, NULL);
		return false;
	}
	if (verdict == RELAY_SETTLE)
		begin_settling(s);
	if (src == &s->backend && settled(s))
		return false;
	if (need > 0 && px_peer_reserve(src, need) < 0) {
		protocol_violation(s, src, PGW_ERR_TOO_LARGE, NULL, src->in);
		return false;
	}
	const cf_config *cfg = s->server->cfg;
	px_peer_apply_backpressure(src, dst, cfg->buffer_high_bytes, cfg->buffer_low_bytes);
	return true;
}

void px_session_resume_client(px_session *s)
{
	if (s->state != PX_SESSION_ACTIVE)
		return;
	px_peer_set_want_read(&s->client, true);
	if (s->client.in_len > 0)
		relay(s, &s->client, &s->backend);
}

void px_session_resume_backend(px_session *s)
{
	if (s->state != PX_SESSION_ACTIVE)
		return;
	if (s->backend_paused) {
		s->backend_paused = false;
		px_peer_set_want_read(&s->backend, true);
	}
	if (s->backend.in_len == 0)
		return;
	if (relay(s, &s->backend, &s->client) && s->server->shutting_down)
		px_session_close_if_idle(s);
}

/* ---- startup phase ------------------------------------------------------ */

static void copy_param(char *dst, size_t size, const char *value)
{
	snprintf(dst, size, "%s", value ? value : "");
}

/* Could this startup parameter give the session another role or a setting
 * row-level security may read?  (`options` may carry -c name=value.) */
static bool sets_role(const char *name, const char *value)
{
	if (strcmp(name, "options") == 0)
		return strstr(value, "role") || strstr(value, "authorization") || strchr(value, '.');
	return strcmp(name, "role") == 0 || strcmp(name, "session_authorization") == 0 || strchr(name, '.');
}

/* Keep the startup parameters that can change a statement's result. */
static void keep_startup_settings(px_session *s, const pgw_startup *st)
{
	pf_sb b;
	pf_sb_init(&b);
	size_t pos = 0;
	const char *name, *value;
	while (pgw_startup_next_param(st, &pos, &name, &value)) {
		if (strcmp(name, "user") == 0 || strcmp(name, "database") == 0 || strcmp(name, "application_name") == 0)
			continue;
		pf_sb_append_n(&b, name, strlen(name) + 1);
		pf_sb_append_n(&b, value, strlen(value) + 1);
		s->startup_role |= sets_role(name, value);
	}
	s->startup_settings = b.data; /* owned now (NULL when none) */
	s->startup_settings_len = b.len;
}

static void begin_login(px_session *s, const pgw_startup *st, size_t packet_len)
{
	copy_param(s->user, sizeof(s->user), pgw_startup_get(st, "user"));
	const char *db = pgw_startup_get(st, "database");
	copy_param(s->database, sizeof(s->database), db ? db : s->user);
	keep_startup_settings(s, st);
	s->startup_packet = pf_malloc(packet_len);
	memcpy(s->startup_packet, s->client.in, packet_len);
	s->startup_len = packet_len;
	px_peer_consume(&s->client, packet_len);
	if (s->reject_too_many) {
		px_session_close(s, "max_client_conn reached", "53300", "sorry, too many clients already");
		return;
	}
	px_peer_set_want_read(&s->client, false);
	px_session_set_state(s, PX_SESSION_CONNECTING);
	px_backend_connect(s);
}

void px_session_backend_connected(px_session *s)
{
	px_server *server = s->server;
	s->backend_connected = true;
	server->stats.backends_total++;
	server->stats.backends_active++;
	if (px_peer_write(&s->backend, s->startup_packet, s->startup_len) < 0) {
		px_session_close(s, "backend write failed", "08006", "pgfold: could not send the startup packet");
		return;
	}
	pf_free(s->startup_packet);
	s->startup_packet = NULL;
	px_session_set_state(s, PX_SESSION_LOGIN);
	px_peer_set_want_read(&s->backend, true);
	px_peer_set_want_read(&s->client, true);
	if (s->client.in_len > 0)
		relay(s, &s->client, &s->backend);
}

static void startup_error(px_session *s, int rc, uint32_t protocol)
{
	char msg[160];
	if (rc == PGW_ERR_BAD_PROTOCOL) {
		snprintf(msg, sizeof(msg), "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
			 PGW_PROTOCOL_MAJOR(protocol), PGW_PROTOCOL_MINOR(protocol));
		px_session_close(s, "bad startup packet", "0A000", msg);
		return;
	}
	s->server->stats.protocol_errors++;
	snprintf(msg, sizeof(msg), "pgfold: invalid startup packet: %s", pgw_strerror(rc));
	px_session_close(s, "bad startup packet", "08P01", msg);
}

/* Handle one startup-phase packet if it is all here.  False: wait or closed. */
static bool startup_step(px_session *s)
{
	uint32_t len, code;
	int rc = pgw_startup_header(s->client.in, s->client.in_len, &len, &code);
	if (rc == PGW_NEED_MORE)
		return false;
	if (rc < 0) {
		startup_error(s, rc, 0);
		return false;
	}
	if (s->client.in_len < len)
		return false;
	pgw_startup st;
	rc = pgw_startup_parse(s->client.in, len, &st);
	if (rc < 0) {
		startup_error(s, rc, code);
		return false;
	}
	switch (st.kind) {
	case PGW_STARTUP_SSL:
	case PGW_STARTUP_GSSENC:
		px_peer_consume(&s->client, len);
		(void)px_peer_write(&s->client, "N", 1);
		return true;
	case PGW_STARTUP_CANCEL:
		s->server->stats.cancel_requests++;
		px_session *target = px_server_find_by_key(s->server, st.cancel_pid, st.cancel_key);
		if (target)
			px_cancel_forward(s->server->loop, target, st.cancel_pid, st.cancel_key);
		px_peer_consume(&s->client, len);
		px_session_close(s, target ? "cancel request forwarded" : "cancel request for no session", NULL, NULL);
		return false;
	case PGW_STARTUP_MESSAGE:
		begin_login(s, &st, len);
		return false;
	}
	return false;
}

/* ---- peer callbacks ----------------------------------------------------- */

static void client_data(px_peer *peer)
{
	px_session *s = peer->owner;
	switch (s->state) {
	case PX_SESSION_STARTUP:
		while (s->state == PX_SESSION_STARTUP && startup_step(s))
			;
		break;
	case PX_SESSION_LOGIN:
	case PX_SESSION_ACTIVE:
		relay(s, &s->client, &s->backend);
		break;
	case PX_SESSION_CONNECTING:
		break;
	case PX_SESSION_CLOSING:
		px_peer_consume(peer, peer->in_len);
		break;
	}
}

static void backend_data(px_peer *peer)
{
	px_session *s = peer->owner;
	if (s->state == PX_SESSION_LOGIN && !s->backend_answered) {
		s->backend_answered = true;
		start_timer(s, s->server->cfg->client_login_timeout_ms);
	}
	if (s->state == PX_SESSION_ACTIVE && s->batch.phase != PX_BATCH_IDLE) {
		px_batch_backend(s); /* pgfold's own statement is being answered */
		if (s->state == PX_SESSION_ACTIVE && s->batch.phase != PX_BATCH_IDLE)
			return; /* the rest of its answer is still to come: keep the partial message */
	}
	if (s->state == PX_SESSION_LOGIN || s->state == PX_SESSION_ACTIVE) {
		if (relay(s, &s->backend, &s->client) && s->server->shutting_down)
			px_session_close_if_idle(s);
	} else {
		px_peer_consume(peer, peer->in_len);
	}
}

static void client_error(px_peer *peer, int status)
{
	px_session *s = peer->owner;
	if (s->state == PX_SESSION_CLOSING || s->settling) {
		px_peer_close(peer);
		return;
	}
	if (px_rcache_unsettled(s)) { /* dropped with writes in flight: see their answers first */
		begin_settling(s);
		px_peer_close(peer);
		return;
	}
	px_session_close(s, status == UV_EOF ? "client disconnected" : uv_strerror(status), NULL, NULL);
}

static void backend_error(px_peer *peer, int status)
{
	px_session *s = peer->owner;
	if (s->state == PX_SESSION_CLOSING) {
		px_peer_close(peer);
		return;
	}
	if (s->backend_fatal) {
		px_session_close(s, "backend closed after a FATAL error", NULL, NULL);
		return;
	}
	char msg[200];
	snprintf(msg, sizeof(msg), "pgfold: the backend connection was lost (%s)",
		 status == UV_EOF ? "server closed the connection unexpectedly" : uv_strerror(status));
	px_session_close(s, "backend connection lost", "08006", msg);
}

static void peer_drained(px_peer *peer)
{
	px_session *s = peer->owner;
	if (s->state == PX_SESSION_CLOSING) {
		close_peer_when_drained(peer);
		return;
	}
	/* The peer that feeds this one may have been throttled by its queue. */
	px_peer *src = peer == &s->client ? &s->backend : &s->client;
	const cf_config *cfg = s->server->cfg;
	px_peer_apply_backpressure(src, peer, cfg->buffer_high_bytes, cfg->buffer_low_bytes);
}

static void peer_closed(px_peer *peer)
{
	px_session *s = peer->owner;
	if (peer == &s->backend && s->backend_connected) {
		s->backend_connected = false;
		s->server->stats.backends_active--;
	}
	if (s->state != PX_SESSION_CLOSING && !(peer == &s->client && s->settling))
		px_session_close(s, "connection closed", NULL, NULL);
	px_peer *other = peer == &s->client ? &s->backend : &s->client;
	if (!px_peer_is_open(other) && !uv_is_closing((uv_handle_t *)&s->timer))
		uv_close((uv_handle_t *)&s->timer, on_timer_closed);
	px_session_unref(s);
}

static const px_peer_ops client_ops = {client_data, client_error, peer_drained, peer_closed};
static const px_peer_ops backend_ops = {backend_data, backend_error, peer_drained, peer_closed};

/* ---- accept ------------------------------------------------------------- */

static void describe_peer(px_session *s, uv_stream_t *listener)
{
	struct sockaddr_storage sa;
	int len = sizeof(sa);
	snprintf(s->peer_name, sizeof(s->peer_name), "unix");
	if (listener->type != UV_TCP || uv_tcp_getpeername(&s->client.h.tcp, (struct sockaddr *)&sa, &len) != 0)
		return;
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&sa;
		uv_ip4_name(in, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
		uv_ip6_name(in6, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(s->peer_name, sizeof(s->peer_name), "%s:%d", host, port);
}

static px_session *session_new(px_server *server)
{
	const cf_config *cfg = server->cfg;
	px_session *s = pf_calloc(1, sizeof(*s));
	s->server = server;
	s->id = ++server->next_session_id;
	s->tx_status = 'I';
	s->analyse = cfg->analysis;
	px_peer_init(&s->client, &client_ops, s, "client", PX_CLIENT_BUF_INITIAL, PX_BUF_MAX);
	px_peer_init(&s->backend, &backend_ops, s, "backend", PX_BACKEND_BUF_INITIAL, PX_BUF_MAX);
	pgw_stream_init(&s->client.framer, PGW_FROM_FRONTEND, cfg->max_message_bytes, PX_WHOLE_LIMIT);
	pgw_stream_want_whole(&s->client.framer, PGW_FE_TERMINATE);
	static const uint8_t analysed[] = {PGW_FE_QUERY,   PGW_FE_PARSE, PGW_FE_BIND,
					   PGW_FE_EXECUTE, PGW_FE_CLOSE, PGW_FE_DESCRIBE};
	for (size_t i = 0; i < sizeof(analysed); i++)
		pgw_stream_want_whole(&s->client.framer, analysed[i]);
	pgw_stream_init(&s->backend.framer, PGW_FROM_BACKEND, (size_t)PGW_MAX_LENGTH + 1, PX_WHOLE_LIMIT);
	pgw_stream_want_whole(&s->backend.framer, PGW_BE_READY);
	pgw_stream_want_whole(&s->backend.framer, PGW_BE_KEY_DATA);
	pgw_stream_want_whole(&s->backend.framer, PGW_BE_ERROR);
	pgw_stream_want_whole(&s->backend.framer, PGW_BE_COMMAND_COMPLETE);
	pgw_stream_want_whole(&s->backend.framer, PGW_BE_ROW_DESC);
	pgw_stream_want_whole(&s->backend.framer, PGW_BE_DATA_ROW);
	pgw_stream_want_whole(&s->backend.framer, PGW_BE_PARAM_DESC); /* the batcher learns types from it */
	pgw_stream_want_whole(&s->backend.framer, PGW_BE_PARSE_COMPLETE); /* a deferred Parse's is dropped */
	if (server->np_registry)
		s->np = rw_np_session_new(server->np_registry);
	px_track_init(&s->track, statement_done, s);
	uv_timer_init(server->loop, &s->timer);
	s->timer.data = s;
	s->refs = 1; /* the timer */
	s->client.count_read = &server->stats.bytes_from_clients;
	s->client.count_written = &server->stats.bytes_to_clients;
	s->backend.count_read = &server->stats.bytes_from_backends;
	s->backend.count_written = &server->stats.bytes_to_backends;
	return s;
}

static int init_client_handle(px_session *s, uv_stream_t *listener)
{
	int rc = listener->type == UV_TCP ? uv_tcp_init(s->server->loop, &s->client.h.tcp)
					  : uv_pipe_init(s->server->loop, &s->client.h.pipe, 0);
	if (rc < 0)
		return rc;
	s->client.h.handle.data = &s->client;
	s->client.initialized = true;
	px_session_ref(s);
	rc = uv_accept(listener, &s->client.h.stream);
	if (rc == 0 && listener->type == UV_TCP)
		uv_tcp_nodelay(&s->client.h.tcp, 1);
	return rc;
}

px_session *px_session_accept(px_server *server, uv_stream_t *listener)
{
	px_session *s = session_new(server);
	server->stats.clients_total++;
	server->stats.clients_active++;
	s->next = server->sessions;
	if (server->sessions)
		server->sessions->prev = s;
	server->sessions = s;
	int rc = init_client_handle(s, listener);
	if (rc < 0) {
		pf_warn("accept failed: %s", uv_strerror(rc));
		px_session_close(s, "accept failed", NULL, NULL);
		return NULL;
	}
	describe_peer(s, listener);
	if (server->stats.clients_active > (uint64_t)server->cfg->max_client_conn) {
		s->reject_too_many = true;
		server->stats.clients_rejected++;
	}
	px_session_set_state(s, PX_SESSION_STARTUP);
	px_peer_set_want_read(&s->client, true);
	px_session_log(PF_LOG_DEBUG, s, "accepted");
	return s;
}
