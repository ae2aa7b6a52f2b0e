/*
 * batcher.c — N+1 children answered from batches (see batcher.h).
 *
 * Life of a batch: px_batch_query() builds the batched statement for the
 * child and the parent's next keys and sends it instead of the child (the
 * client's reads pause); px_batch_backend() takes the backend's answers
 * (nothing of them reaches the client but notifications), splitting rows by
 * their key into groups; at its ReadyForQuery the child is answered from its
 * group and the rest become a prefetch buffer.  If anything failed, the
 * savepoint (inside a block) is rolled back and the child goes to the
 * backend unchanged.
 */
#include "batcher_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../protocol/pgwire.h"
#include "../rewrite/batch.h"
#include "nplusone.h"
#include "volatility.h"

#define SAVEPOINT "pgfold_batch_sp"

uint64_t px_batch_now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* ---- prefetch buffers ---------------------------------------------------- */

static void prefetch_clear(px_prefetch *p)
{
	for (size_t i = 0; i < p->ngroups; i++) {
		pf_free(p->groups[i].key);
		pf_sb_free(&p->groups[i].rows);
	}
	pf_free(p->groups);
	pf_sb_free(&p->rowdesc);
	pf_sb_free(&p->identity);
	rw_np_pattern_unref(p->pattern);
	memset(p, 0, sizeof(*p));
}

/* The session's prefetched bytes change: its own count and the server's. */
static void account(px_session *s, size_t add, size_t remove)
{
	s->batch.buffered_bytes = s->batch.buffered_bytes + add - remove;
	uint64_t *total = &s->server->stats.nplusone_buffered_bytes;
	*total = *total + add - remove;
}

/* Would `more` bytes take the session, or all sessions together, over
 * their budget (nplusone.max_buffer_bytes, max_total_buffer_bytes)? */
static bool over_budget(const px_session *s, size_t more)
{
	const cf_config *cfg = s->server->cfg;
	return s->batch.buffered_bytes + more > cfg->nplusone_max_buffer_bytes ||
	       s->server->stats.nplusone_buffered_bytes + more > cfg->nplusone_max_total_buffer_bytes;
}

void px_batch_drop_all(px_session *s)
{
	px_batcher *b = &s->batch;
	bool any = false;
	for (size_t i = 0; i < PX_MAX_PREFETCH; i++) {
		any |= b->bufs[i].pattern != NULL;
		prefetch_clear(&b->bufs[i]);
	}
	account(s, 0, b->buffered_bytes);
	if (any && s->np)
		rw_np_reset_fetched(s->np); /* keys no longer buffered must be fetched again */
}

void px_batch_ready(px_session *s, char status)
{
	if (status != 'I')
		return;
	for (size_t i = 0; i < PX_MAX_PREFETCH; i++)
		if (s->batch.bufs[i].in_block) {
			px_batch_drop_all(s); /* the block ended: its snapshot is gone */
			return;
		}
}

void px_batch_free(px_session *s)
{
	px_batcher *b = &s->batch;
	px_batch_drop_all(s);
	prefetch_clear(&b->building);
	pf_free(b->child_msg);
	b->child_msg = NULL;
	pf_sb_free(&b->parse_error);
	pf_sb_free(&b->unnamed);
	pf_sb_free(&b->restore);
	px_batch_forget_types(s);
	pf_free(b->describe_key);
	b->describe_key = NULL;
}

static px_prefetch *buffer_for(px_session *s, const rw_np_pattern *p)
{
	for (size_t i = 0; i < PX_MAX_PREFETCH; i++)
		if (s->batch.bufs[i].pattern == p)
			return &s->batch.bufs[i];
	return NULL;
}

static px_group *group_for(px_prefetch *p, const char *key, size_t len)
{
	for (size_t i = 0; i < p->ngroups; i++)
		if (p->groups[i].key_len == len && memcmp(p->groups[i].key, key, len) == 0)
			return &p->groups[i];
	return NULL;
}

static bool fresh(const px_session *s, const px_prefetch *p)
{
	return p->snapshot_block ||
	       px_batch_now_ms() - p->created_ms <= (uint64_t)s->server->cfg->nplusone_max_staleness_ms;
}

void px_batch_identity(pf_sb *out, const px_child *c)
{
	const rw_stmt *st = c->st;
	const rw_value *v = &st->values[c->m->slot];
	pf_sb_append_n(out, c->sql + st->location, (size_t)(v->location - st->location));
	pf_sb_append_n(out, "\x01", 1);
	size_t after = (size_t)(v->location + v->length);
	pf_sb_append_n(out, c->sql + after, (size_t)(st->location + st->length) - after);
	uint16_t nformats = (uint16_t)c->nresult_formats;
	pf_sb_append_n(out, (const char *)&nformats, sizeof(nformats));
	if (nformats)
		pf_sb_append_n(out, (const char *)c->result_formats, 2 * (size_t)nformats);
	int key_param = st->shape->slots[c->m->slot].param;
	for (size_t i = 0; i < c->nparams; i++) {
		if ((int)i + 1 == key_param)
			continue;
		int32_t len = c->param_values[i] ? (int32_t)c->param_lengths[i] : -1;
		pf_sb_append_n(out, (const char *)&c->param_types[i], sizeof(uint32_t));
		pf_sb_append_n(out, (const char *)&len, sizeof(len));
		if (len > 0)
			pf_sb_append_n(out, c->param_values[i], (size_t)len);
	}
}

static bool same_child(const px_prefetch *p, const px_child *c)
{
	pf_sb t;
	pf_sb_init(&t);
	px_batch_identity(&t, c);
	bool same = t.len == p->identity.len && memcmp(pf_sb_str(&t), pf_sb_str(&p->identity), t.len) == 0;
	pf_sb_free(&t);
	return same;
}

/* ---- answering the client ------------------------------------------------ */

/* Bytes of the first n DataRow messages in rows. */
static size_t rows_prefix(const pf_sb *rows, uint32_t n)
{
	size_t pos = 0;
	for (uint32_t i = 0; i < n && pos + PGW_HEADER_LEN <= rows->len; i++) {
		const uint8_t *m = (const uint8_t *)rows->data + pos;
		pos += pgw_frame_size(m);
	}
	return pos;
}

/* The Execute's row limit stops short of the group's end: the portal is
 * suspended, which only outside a block ends with the Sync (inside one the
 * client could fetch more from a portal the backend does not have). */
static bool suspends(const px_group *g, px_answer_form form)
{
	return form.max_rows > 0 && g->nrows >= (uint32_t)form.max_rows;
}

/* What the backend would have sent for the child alone: ParseComplete and
 * BindComplete when asked (extended), RowDescription, the group's rows,
 * CommandComplete (or PortalSuspended at the row limit) and ReadyForQuery. */
static void answer_child(px_session *s, const px_prefetch *p, const px_group *g, char status, px_answer_form form)
{
	pgw_buf out;
	pgw_buf_init(&out, 0);
	if (form.parse_complete)
		pgw_build_empty(&out, PGW_BE_PARSE_COMPLETE);
	if (form.bind_complete)
		pgw_build_empty(&out, PGW_BE_BIND_COMPLETE);
	if (form.row_desc)
		pgw_buf_put_bytes(&out, p->rowdesc.data, p->rowdesc.len);
	bool suspended = suspends(g, form);
	uint32_t nrows = suspended ? (uint32_t)form.max_rows : g->nrows;
	pgw_buf_put_bytes(&out, g->rows.data, suspended ? rows_prefix(&g->rows, nrows) : g->rows.len);
	char tag[32];
	snprintf(tag, sizeof(tag), "SELECT %u", nrows);
	if (suspended) {
		pgw_build_empty(&out, PGW_BE_PORTAL_SUSPENDED);
	} else {
		pgw_buf_begin(&out, PGW_BE_COMMAND_COMPLETE);
		pgw_buf_put_cstr(&out, tag);
		pgw_buf_end(&out);
	}
	pgw_build_ready(&out, status);
	if (pgw_buf_ok(&out))
		(void)px_peer_write(&s->client, out.data, out.len);
	pgw_buf_free(&out);
	uint64_t now = uv_hrtime() / 1000u;
	if (suspended)
		px_track_suspended(&s->track, now);
	else
		px_track_complete(&s->track, tag, now);
	px_session_ready(s, status);
}

/* ---- building a batch ---------------------------------------------------- */

bool px_batch_allowed(const px_session *s)
{
	const px_sstate *st = &s->track.state;
	return s->server->cfg->nplusone_mode == CF_NPLUSONE_REWRITE && s->batch.phase == PX_BATCH_IDLE &&
	       s->tx_status != 'E' && !st->cur.unknown && s->pending_ready == 1 && !s->extended_open &&
	       px_track_inflight(&s->track) == 2; /* this child's statement and its end marker */
}

void px_batch_uncount_again(px_session *s, const rw_np_match *m)
{
	if (m->pattern && px_rcache_offered_again(s))
		rw_np_uncount_child(s->np, m->pattern);
}

/* The type of the column the key is compared with (pg_attribute through the
 * control connection), or 0: batch.h types bare string keys with it. */
static uint32_t key_column_type(px_session *s, const px_child *c)
{
	const rw_shape *sh = c->st->shape;
	const rw_slot *slot = &sh->slots[c->m->slot];
	if (!s->server->volatility || slot->rel_index < 0 || (size_t)slot->rel_index >= sh->nrelations || !slot->column)
		return 0;
	const rw_relation *rel = &sh->relations[slot->rel_index];
	return px_volatility_column_type(s->server->volatility, s->database, s->user, rel->schema, rel->name,
					 slot->column);
}

static bool start_batch_sql(px_session *s, const px_child *c, bool block, pf_sb *q)
{
	const rw_np_match *m = c->m;
	uint32_t column_type = key_column_type(s, c);
	rw_batch_request req = {
		.sql = c->sql,
		.sql_len = strlen(c->sql),
		.stmt = c->st,
		.slot = m->slot,
		.form = RW_BATCH_NONE,
		.key_type = m->key_type,
		.column_type = column_type,
		.column_type_name = px_volatility_type_name(s->server->volatility, s->database, column_type),
		.nkeys = m->nkeys,
		.keys = m->keys,
		.key_lengths = m->key_lengths,
		.nparams = c->nparams,
		.param_values = c->param_values,
		.param_lengths = c->param_lengths,
		.param_types = c->param_types,
	};
	rw_batch_layout layout;
	if (block)
		pf_sb_append(q, "SAVEPOINT " SAVEPOINT "; ");
	size_t before = q->len;
	if (rw_batch_build(&req, q, &layout) != 0 || q->len == before)
		return false;
	if (block)
		pf_sb_append(q, "; RELEASE SAVEPOINT " SAVEPOINT);
	s->batch.extra_columns = layout.extra_columns;
	return true;
}

static void begin_building(px_session *s, const px_child *c)
{
	const rw_np_match *m = c->m;
	px_prefetch *p = &s->batch.building;
	prefetch_clear(p);
	px_batch_identity(&p->identity, c);
	p->pattern = rw_np_pattern_ref(m->pattern);
	p->created_ms = px_batch_now_ms();
	p->in_block = s->tx_status == 'T';
	rw_isolation iso = px_sstate_isolation(&s->track.state);
	p->snapshot_block = p->in_block && (iso == RW_ISO_REPEATABLE_READ || iso == RW_ISO_SERIALIZABLE);
	p->groups = pf_calloc(m->nkeys, sizeof(px_group));
	for (size_t i = 0; i < m->nkeys; i++) {
		px_group *g = &p->groups[p->ngroups];
		if (group_for(p, m->keys[i], m->key_lengths[i]))
			continue; /* a repeated key */
		g->key = pf_malloc(m->key_lengths[i] + 1);
		memcpy(g->key, m->keys[i], m->key_lengths[i]);
		g->key[m->key_lengths[i]] = '\0';
		g->key_len = m->key_lengths[i];
		pf_sb_init(&g->rows);
		p->ngroups++;
	}
}

static bool binary_results(const px_child *c)
{
	for (size_t i = 0; i < c->nresult_formats; i++)
		if (c->result_formats[2 * i] || c->result_formats[2 * i + 1])
			return true;
	return false;
}

static void put_query(pgw_buf *out, const char *sql)
{
	pgw_buf_begin(out, PGW_FE_QUERY);
	pgw_buf_put_cstr(out, sql);
	pgw_buf_end(out);
}

/* The batch as one extended-protocol statement whose result columns come in
 * the child's formats (its key columns in text), for children that asked
 * for binary results; inside a block between SAVEPOINT and RELEASE Queries.
 * The ReadyForQuery messages before the batch's own: returned. */
static int put_extended_batch(pgw_buf *out, const px_child *c, const char *sql, size_t extra, bool block)
{
	if (block)
		put_query(out, "SAVEPOINT " SAVEPOINT);
	pgw_buf_begin(out, PGW_FE_PARSE);
	pgw_buf_put_cstr(out, "");
	pgw_buf_put_cstr(out, sql);
	pgw_buf_put_i16(out, 0);
	pgw_buf_end(out);
	pgw_buf_begin(out, PGW_FE_BIND);
	pgw_buf_put_cstr(out, "");
	pgw_buf_put_cstr(out, "");
	pgw_buf_put_i16(out, 0); /* no parameters: their values are inlined */
	pgw_buf_put_i16(out, 0);
	size_t n = c->nresult_formats;
	pgw_buf_put_i16(out, (int16_t)(n <= 1 ? n : extra + n));
	for (size_t i = 0; n > 1 && i < extra; i++)
		pgw_buf_put_i16(out, 0); /* the key columns: text, to split rows by */
	pgw_buf_put_bytes(out, c->result_formats, 2 * n);
	pgw_buf_end(out);
	pgw_buf_begin(out, PGW_FE_DESCRIBE);
	pgw_buf_put_u8(out, 'P');
	pgw_buf_put_cstr(out, "");
	pgw_buf_end(out);
	pgw_buf_begin(out, PGW_FE_EXECUTE);
	pgw_buf_put_cstr(out, "");
	pgw_buf_put_i32(out, 0);
	pgw_buf_end(out);
	pgw_build_empty(out, PGW_FE_SYNC);
	if (block)
		put_query(out, "RELEASE SAVEPOINT " SAVEPOINT);
	return block ? 1 : 0;
}

static bool send_batch(px_session *s, const px_child *c)
{
	bool block = s->tx_status == 'T';
	bool extended = binary_results(c);
	pf_sb q;
	pf_sb_init(&q);
	if (!start_batch_sql(s, c, block && !extended, &q)) {
		pf_sb_free(&q);
		return false;
	}
	px_batcher *b = &s->batch;
	pgw_buf out;
	pgw_buf_init(&out, 0);
	int before = 0, total = 1;
	if (extended) {
		before = put_extended_batch(&out, c, pf_sb_str(&q), b->extra_columns, block);
		total = block ? 3 : 1;
	} else {
		put_query(&out, pf_sb_str(&q));
	}
	pf_sb_free(&q);
	if (c->restore) {
		pgw_buf_put_bytes(&out, c->restore, c->restore_len);
		pgw_build_empty(&out, PGW_FE_SYNC);
		total++;
	}
	bool ok = pgw_buf_ok(&out) && px_peer_write(&s->backend, out.data, out.len) == 0;
	pgw_buf_free(&out);
	if (!ok)
		return false;
	begin_building(s, c);
	b->phase = PX_BATCH_RUNNING;
	b->ready_left = total;
	b->ready_total = total;
	b->ready_before = before;
	b->failed = false;
	b->reason[0] = '\0';
	b->form = c->form;
	b->restore_is_childs = c->restore && c->restore_is_childs;
	b->parse_failed = false;
	pf_sb_reset(&b->parse_error);
	pf_sb_reset(&b->restore);
	if (c->restore)
		pf_sb_append_n(&b->restore, (const char *)c->restore, c->restore_len);
	/* the batch destroys the unnamed statement; the restore makes it again */
	b->unnamed_state = PX_UNNAMED_NONE;
	b->unnamed_deferred = false;
	b->child_msg = pf_malloc(c->msg_len);
	memcpy(b->child_msg, c->msg, c->msg_len);
	b->child_len = c->msg_len;
	px_peer_set_want_read(&s->client, false); /* answers come in order: wait for the batch */
	return true;
}

/* A child of an active pattern whose keys px_np_statement_keys() gave. */
bool px_batch_child(px_session *s, const px_child *c)
{
	const rw_np_match *m = c->m;
	px_prefetch *p = buffer_for(s, m->pattern);
	if (m->already_fetched) {
		char value[PX_NP_KEY_MAX];
		size_t len;
		if (p && !same_child(p, c)) {
			/* same shape, other literals, values or formats: not what was
			 * fetched.  Twice in a row with nothing served between (a driver
			 * that switched to binary results, say): fetch afresh. */
			if (++p->mismatches >= 2)
				px_batch_drop_all(s);
			return false;
		}
		px_group *g = p && fresh(s, p) &&
				      px_np_child_value(s, c->st, c->sql, c->portal, m->slot, value, sizeof(value), &len)
				      ? group_for(p, value, len)
				      : NULL;
		if (!g) {
			px_batch_drop_all(s); /* stale or dropped: fetch again next time */
			return false;
		}
		if (suspends(g, c->form) && s->tx_status != 'I')
			return false;
		p->mismatches = 0;
		answer_child(s, p, g, s->tx_status, c->form);
		rw_np_count_served(m->pattern, 1);
		return true;
	}
	if (m->nkeys < 2 || over_budget(s, 0) || px_batch_now_ms() < s->batch.over_budget_until_ms)
		return false;
	if (p) { /* a new parent: its old answers go */
		account(s, 0, p->bytes);
		prefetch_clear(p);
	}
	if (px_rcache_batch_claim(s, c->msg, c->msg_len))
		return true; /* result cache hook: looked up first; a miss comes back here */
	return send_batch(s, c);
}

bool px_batch_query(px_session *s, const rw_analysis *an, const char *sql, const uint8_t *msg, size_t msg_len)
{
	const rw_stmt *st = &an->stmts[0];
	bool allowed = px_batch_allowed(s);
	rw_np_match m;
	px_np_statement_keys(s, st, sql, NULL, allowed ? (size_t)s->server->cfg->nplusone_batch_size : 0, &m);
	px_batch_uncount_again(s, &m);
	if (!allowed || !m.pattern || m.status != RW_NP_ACTIVE)
		return false;
	px_child c = {
		.st = st,
		.sql = sql,
		.m = &m,
		.msg = msg,
		.msg_len = msg_len,
		.form = {.row_desc = true},
	};
	return px_batch_child(s, &c);
}

/* ---- the batch's answers ------------------------------------------------- */

static void fail(px_batcher *b, const char *why)
{
	if (!b->failed)
		snprintf(b->reason, sizeof(b->reason), "%s", why);
	b->failed = true;
}

/* Offset just past the first `skip` fields of a DataRow body, or 0. */
static size_t data_row_skip(const uint8_t *body, size_t len, size_t skip)
{
	size_t pos = 2;
	for (size_t i = 0; i < skip; i++) {
		if (pos + 4 > len)
			return 0;
		int32_t n = (int32_t)pgw_get_u32(body + pos);
		pos += 4 + (n > 0 ? (size_t)n : 0);
	}
	return pos <= len ? pos : 0;
}

/* Offset just past the first `skip` columns of a RowDescription body, or 0. */
static size_t row_desc_skip(const uint8_t *body, size_t len, size_t skip)
{
	size_t pos = 2;
	for (size_t i = 0; i < skip; i++) {
		const void *nul = pos < len ? memchr(body + pos, 0, len - pos) : NULL;
		if (!nul)
			return 0;
		pos = (size_t)((const uint8_t *)nul - body) + 1 + 18;
	}
	return pos <= len ? pos : 0;
}

/* The message without its first `extra` fields: same type, count lowered. */
static void strip_fields(pf_sb *out, uint8_t type, const uint8_t *body, size_t len, size_t from, size_t extra)
{
	int16_t n = (int16_t)pgw_get_u16(body);
	uint32_t mlen = (uint32_t)(4 + 2 + (len - from));
	uint8_t head[7] = {type, (uint8_t)(mlen >> 24), (uint8_t)(mlen >> 16), (uint8_t)(mlen >> 8), (uint8_t)mlen,
			   (uint8_t)((uint16_t)(n - (int16_t)extra) >> 8), (uint8_t)(n - (int16_t)extra)};
	pf_sb_append_n(out, (const char *)head, sizeof(head));
	pf_sb_append_n(out, (const char *)body + from, len - from);
}

static void on_row_desc(px_session *s, const uint8_t *body, size_t len)
{
	px_batcher *b = &s->batch;
	size_t from = row_desc_skip(body, len, b->extra_columns);
	if (!from) {
		fail(b, "unexpected RowDescription");
		return;
	}
	pgw_column key;
	if (pgw_row_desc_column(body, len, 0, &key) != PGW_OK) {
		fail(b, "unexpected RowDescription");
		return;
	}
	b->key_type = key.type_oid;
	b->key_format = key.format;
	pf_sb_reset(&b->building.rowdesc);
	strip_fields(&b->building.rowdesc, PGW_BE_ROW_DESC, body, len, from, b->extra_columns);
}

static void on_data_row(px_session *s, const uint8_t *body, size_t len)
{
	px_batcher *b = &s->batch;
	px_prefetch *p = &b->building;
	const uint8_t *key;
	int32_t klen;
	int16_t n;
	size_t from = data_row_skip(body, len, b->extra_columns);
	if (b->failed)
		return;
	char text[PX_NP_KEY_MAX];
	size_t tlen;
	if (!from || pgw_read_data_row(body, len, &n) != PGW_OK ||
	    pgw_data_row_value(body, len, 0, &key, &klen) != PGW_OK || !key ||
	    pgw_value_text(b->key_type, b->key_format, key, klen, text, sizeof(text), &tlen) != PGW_OK) {
		fail(b, "unexpected DataRow");
		return;
	}
	px_group *g = group_for(p, text, tlen);
	if (!g) {
		fail(b, "a row for a key not asked for");
		return;
	}
	if (g != &p->groups[0] && over_budget(s, p->bytes))
		return; /* over budget: only the child's own answer is kept (others stay unfetched) */
	strip_fields(&g->rows, PGW_BE_DATA_ROW, body, len, from, b->extra_columns);
	g->nrows++;
	p->bytes += len;
}

/* The whole batch is one parent result for the next level (nested lazy
 * loading folds level by level), seen as the child statement's result. */
static void batch_as_parent(px_session *s, const px_prefetch *p)
{
	if (p->rowdesc.len < PGW_HEADER_LEN)
		return;
	px_np_row_description(s, (const uint8_t *)p->rowdesc.data + PGW_HEADER_LEN, p->rowdesc.len - PGW_HEADER_LEN);
	for (size_t i = 0; i < p->ngroups; i++) {
		const pf_sb *rows = &p->groups[i].rows;
		for (size_t pos = 0; pos + PGW_HEADER_LEN <= rows->len;) {
			const uint8_t *m = (const uint8_t *)rows->data + pos;
			size_t size = pgw_frame_size(m);
			px_np_data_row(s, m + PGW_HEADER_LEN, size - PGW_HEADER_LEN);
			pos += size;
		}
	}
	px_np_complete(s);
}

/* The client's own messages go to the backend after all. */
static void send_child_unchanged(px_session *s)
{
	px_batcher *b = &s->batch;
	(void)px_peer_write(&s->backend, b->child_msg, b->child_len);
	if (b->form.parse_complete) { /* the child's own Parse goes along */
		const uint8_t *m = b->child_msg;
		px_batch_note_parse(s, "", m, pgw_frame_size(m));
		px_session_parse_sent(s);
	}
}

/* The batch worked: answer the child, keep the rest. */
static void deliver(px_session *s, char status)
{
	px_batcher *b = &s->batch;
	px_prefetch *p = &b->building;
	bool over = over_budget(s, p->bytes);
	batch_as_parent(s, p);
	if (suspends(&p->groups[0], b->form) && status != 'I') {
		send_child_unchanged(s); /* its answer ends in a portal the backend must keep */
	} else {
		answer_child(s, p, &p->groups[0], status, b->form);
	}
	rw_np_count_batch(p->pattern, 1, 0);
	px_rcache_batch_fill(s, p, b->child_msg, b->child_len); /* result cache hook: store every group */
	const char *keys[p->ngroups];
	size_t lens[p->ngroups];
	for (size_t i = 0; i < p->ngroups; i++) {
		keys[i] = p->groups[i].key;
		lens[i] = p->groups[i].key_len;
	}
	if (over) {
		/* Prefetching does not fit in the budget: stop for a while
		 * instead of batching again for every child. */
		b->over_budget_until_ms =
			px_batch_now_ms() + (uint64_t)s->server->cfg->nplusone_max_staleness_ms + 1000u;
		prefetch_clear(p);
		return;
	}
	rw_np_mark_fetched(s->np, p->pattern, p->ngroups, keys, lens);
	size_t slot = 0; /* a free slot, else the oldest buffer's */
	for (size_t i = 0; i < PX_MAX_PREFETCH; i++) {
		if (!b->bufs[i].pattern) {
			slot = i;
			break;
		}
		if (b->bufs[i].created_ms < b->bufs[slot].created_ms)
			slot = i;
	}
	account(s, p->bytes, b->bufs[slot].bytes);
	prefetch_clear(&b->bufs[slot]);
	b->bufs[slot] = *p;
	memset(p, 0, sizeof(*p));
}

/* The batch worked but the child's own Parse, sent after it, failed: the
 * child alone would have failed there too, with this error. */
static void answer_parse_error(px_session *s, char status)
{
	px_batcher *b = &s->batch;
	pgw_buf out;
	pgw_buf_init(&out, 0);
	pgw_buf_put_bytes(&out, b->parse_error.data, b->parse_error.len);
	pgw_build_ready(&out, status);
	if (pgw_buf_ok(&out))
		(void)px_peer_write(&s->client, out.data, out.len);
	pgw_buf_free(&out);
	px_track_error(&s->track, uv_hrtime() / 1000u);
	px_session_ready(s, status);
}

static void send_query(px_session *s, const char *sql)
{
	pgw_buf out;
	pgw_buf_init(&out, 0);
	put_query(&out, sql);
	if (pgw_buf_ok(&out))
		(void)px_peer_write(&s->backend, out.data, out.len);
	pgw_buf_free(&out);
}

/* The batch failed: undo it, then let the child through unchanged. */
static void fall_back(px_session *s, char status)
{
	px_batcher *b = &s->batch;
	if (b->phase == PX_BATCH_RUNNING) {
		rw_np_disable(b->building.pattern, b->reason);
		px_session_log(PF_LOG_WARN, s, "N+1 batch failed, pattern disabled: %s", b->reason);
		if (status == 'E') { /* inside a block: the savepoint takes the batch back */
			b->phase = PX_BATCH_UNDOING;
			b->ready_left = 1;
			b->unnamed_state = PX_UNNAMED_NONE;
			send_query(s, "ROLLBACK TO SAVEPOINT " SAVEPOINT "; RELEASE SAVEPOINT " SAVEPOINT);
			return;
		}
	}
	send_child_unchanged(s);
}

/* The last ReadyForQuery of pgfold's round trip arrived. */
static void batch_done(px_session *s, char status)
{
	px_batcher *b = &s->batch;
	if (b->phase == PX_BATCH_RUNNING && b->restore.len > 0) {
		if (b->parse_failed) {
			b->unnamed_state = PX_UNNAMED_NONE; /* a failed Parse drops the unnamed statement */
			if (!b->restore_is_childs)
				fail(b, "the statement pgfold parsed again after the batch failed");
		} else {
			b->unnamed_state = PX_UNNAMED_KNOWN;
			b->unnamed_deferred = false;
			pf_sb_reset(&b->unnamed);
			pf_sb_append_n(&b->unnamed, b->restore.data, b->restore.len);
		}
	}
	if (b->phase == PX_BATCH_RUNNING && !b->failed) {
		if (b->parse_failed)
			answer_parse_error(s, status);
		else
			deliver(s, status);
	} else {
		fall_back(s, status);
		if (b->phase == PX_BATCH_UNDOING && status == 'E')
			return; /* wait for the rollback's answer */
	}
	prefetch_clear(&b->building);
	pf_free(b->child_msg);
	b->child_msg = NULL;
	b->phase = PX_BATCH_IDLE;
	px_session_resume_client(s);
}

/* An ErrorResponse in pgfold's round trip: the batch's own, or (after the
 * batch's ReadyForQuery) the re-sent Parse's. */
static void on_error(px_session *s, const uint8_t *msg, size_t len)
{
	px_batcher *b = &s->batch;
	if (b->phase == PX_BATCH_RUNNING && b->ready_left == 1 && b->restore.len > 0) { /* the restore's */
		b->parse_failed = true;
		pf_sb_reset(&b->parse_error);
		pf_sb_append_n(&b->parse_error, (const char *)msg, len);
		return;
	}
	fail(b, b->phase == PX_BATCH_DESCRIBING ? "describing the statement failed"
						: "the batched statement failed on the server");
}

/* One whole message of the answer to pgfold's round trip.  False when the
 * round trip is over. */
static bool batch_message(px_session *s, const pgw_chunk *ch, const uint8_t *msg)
{
	px_batcher *b = &s->batch;
	const uint8_t *body = msg + PGW_HEADER_LEN;
	size_t len = ch->frame.body_len;
	bool batch_rows = b->phase == PX_BATCH_RUNNING && b->ready_total - b->ready_left == b->ready_before;
	switch (ch->frame.type) {
	case PGW_BE_ROW_DESC:
		if (batch_rows)
			on_row_desc(s, body, len);
		return true;
	case PGW_BE_DATA_ROW:
		if (batch_rows)
			on_data_row(s, body, len);
		return true;
	case PGW_BE_PARAM_DESC:
		if (b->phase == PX_BATCH_DESCRIBING)
			px_batch_learn_types(s, body, len);
		return true;
	case PGW_BE_ERROR:
		on_error(s, msg, ch->frame.frame_len);
		return true;
	case PGW_BE_NOTIFICATION:
	case PGW_BE_PARAM_STATUS:
		(void)px_peer_write(&s->client, msg, ch->frame.frame_len); /* the client's, not ours */
		return true;
	case PGW_BE_READY: {
		char status = 'I';
		(void)pgw_read_ready(body, len, &status);
		if (--b->ready_left > 0)
			return true;
		if (b->phase == PX_BATCH_DESCRIBING) {
			px_batch_described(s);
			return false;
		}
		batch_done(s, status);
		return false;
	}
	default:
		return true; /* CommandComplete, ParseComplete, notices: pgfold's own */
	}
}

void px_batch_backend(px_session *s)
{
	px_peer *src = &s->backend;
	size_t off = 0, need = 0;
	while (off < src->in_len && s->batch.phase != PX_BATCH_IDLE) {
		pgw_chunk ch;
		int rc = pgw_stream_next(&src->framer, src->in + off, src->in_len - off, &ch, &need);
		if (rc == PGW_NEED_MORE)
			break;
		if (rc < 0) {
			px_session_close(s, "protocol violation", "08P01", "pgfold: invalid message from the backend");
			return;
		}
		if (ch.kind == PGW_CHUNK_PART) {
			if (ch.frame.type == PGW_BE_DATA_ROW)
				fail(&s->batch, "a row too large to buffer");
			off += ch.len;
			continue;
		}
		const uint8_t *msg = src->in + off;
		off += ch.len;
		if (!batch_message(s, &ch, msg))
			break;
	}
	px_peer_consume(src, off);
	if (need > 0)
		(void)px_peer_reserve(src, need);
}
