/*
 * batcher_ext.c — N+1 children sent with the extended protocol (see
 * batcher.h): an extended group made into a px_child for batcher.c, the
 * parameter types PostgreSQL infers for parameters a Parse left untyped, and
 * what the backend's unnamed prepared statement is.
 */
#include "batcher_int.h"

#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "nplusone.h"

/* ---- the backend's unnamed statement ------------------------------------- */

void px_batch_note_query(px_session *s)
{
	s->batch.unnamed_state = PX_UNNAMED_NONE;
	s->batch.unnamed_deferred = false;
}

void px_batch_note_parse(px_session *s, const char *name, const uint8_t *msg, size_t len)
{
	px_batcher *b = &s->batch;
	if (name && name[0])
		return;
	b->unnamed_deferred = false;
	pf_sb_reset(&b->unnamed);
	if (!name || !msg || len > PX_TRACK_TEXT_MAX + 1024) {
		b->unnamed_state = PX_UNNAMED_UNKNOWN; /* perhaps the unnamed one, not kept */
		return;
	}
	pf_sb_append_n(&b->unnamed, (const char *)msg, len);
	b->unnamed_state = PX_UNNAMED_KNOWN;
}

void px_batch_note_close(px_session *s, char kind, const char *name)
{
	if (kind == 'S' && name[0] == '\0') {
		s->batch.unnamed_state = PX_UNNAMED_NONE;
		s->batch.unnamed_deferred = false;
	}
}

static bool unnamed_is(const px_batcher *b, const uint8_t *parse, size_t len)
{
	return b->unnamed_state == PX_UNNAMED_KNOWN && b->unnamed.len == len && memcmp(b->unnamed.data, parse, len) == 0;
}

void px_batch_parse_answered(px_session *s, const uint8_t *parse, size_t len)
{
	if (!parse || !len || unnamed_is(&s->batch, parse, len))
		return; /* the client's unnamed statement is already this one */
	px_batch_note_parse(s, "", parse, len);
	s->batch.unnamed_deferred = true;
}

/* ---- inferred parameter types -------------------------------------------- */

/* The statement text and the types its Parse gave: the types PostgreSQL
 * infers for the rest follow from these (and the catalog: see forget). */
static void learned_key(pf_sb *out, const char *text, const px_track_stmt *ts)
{
	pf_sb_append_n(out, text, strlen(text) + 1);
	pf_sb_append_n(out, (const char *)&ts->ntypes, sizeof(ts->ntypes));
	if (ts->ntypes > 0)
		pf_sb_append_n(out, (const char *)ts->types, sizeof(uint32_t) * (size_t)ts->ntypes);
}

static const px_learned_types *learned_find(const px_batcher *b, const char *key, size_t len)
{
	for (size_t i = 0; i < PX_LEARNED_TYPES; i++)
		if (b->learned[i].key && b->learned[i].key_len == len && memcmp(b->learned[i].key, key, len) == 0)
			return &b->learned[i];
	return NULL;
}

static void learned_clear(px_learned_types *l)
{
	pf_free(l->key);
	pf_free(l->types);
	memset(l, 0, sizeof(*l));
}

void px_batch_forget_types(px_session *s)
{
	for (size_t i = 0; i < PX_LEARNED_TYPES; i++)
		learned_clear(&s->batch.learned[i]);
}

void px_batch_learn_types(px_session *s, const uint8_t *body, size_t len)
{
	px_batcher *b = &s->batch;
	int16_t n;
	const uint8_t *types;
	if (!b->describe_key || pgw_read_param_desc(body, len, &n, &types) != PGW_OK || n > PX_BATCH_MAX_PARAMS)
		return;
	px_learned_types *l = &b->learned[b->learned_next++ % PX_LEARNED_TYPES];
	learned_clear(l);
	l->key = b->describe_key;
	l->key_len = b->describe_key_len;
	b->describe_key = NULL;
	l->n = n;
	l->types = pf_calloc((size_t)n + 1, sizeof(uint32_t));
	for (int16_t i = 0; i < n; i++)
		l->types[i] = pgw_get_u32(types + 4 * i);
}

void px_batch_described(px_session *s)
{
	px_batcher *b = &s->batch;
	pf_free(b->describe_key);
	b->describe_key = NULL;
	b->failed = false;
	b->phase = PX_BATCH_IDLE;
	px_session_resume_client(s);
}

/* Ask the backend for the statement's parameter types, with the child right
 * behind (relayed as usual when the answer to the Describe is in).  Only
 * where the Describe cannot fail differently from the child: outside a
 * block, or for a statement the backend already has. */
static bool send_describe(px_session *s, const pgw_ext_group *g, const uint8_t *bytes, pf_sb *key)
{
	px_batcher *b = &s->batch;
	const char *name = g->bind.stmt_name;
	bool exists = !g->parse && (name[0] || (b->unnamed_state == PX_UNNAMED_KNOWN && !b->unnamed_deferred));
	if (s->tx_status != 'I' && !exists)
		return false;
	pgw_buf out;
	pgw_buf_init(&out, 0);
	if (g->parse)
		pgw_buf_put_bytes(&out, g->parse, g->parse_len);
	pgw_buf_begin(&out, PGW_FE_DESCRIBE);
	pgw_buf_put_u8(&out, 'S');
	pgw_buf_put_cstr(&out, name);
	pgw_buf_end(&out);
	pgw_build_empty(&out, PGW_FE_SYNC);
	pgw_buf_put_bytes(&out, bytes, g->len);
	bool ok = pgw_buf_ok(&out) && px_peer_write(&s->backend, out.data, out.len) == 0;
	pgw_buf_free(&out);
	if (!ok)
		return false;
	if (g->parse) {
		px_batch_note_parse(s, "", g->parse, g->parse_len);
		px_session_parse_sent(s);
	}
	b->describe_key = (char *)key->data; /* owned now */
	b->describe_key_len = key->len;
	pf_sb_init(key);
	b->phase = PX_BATCH_DESCRIBING;
	b->ready_left = 1;
	b->failed = false;
	px_peer_set_want_read(&s->client, false);
	return true;
}

/* ---- extended groups ----------------------------------------------------- */

typedef struct ext_values {
	const char *values[PX_BATCH_MAX_PARAMS];
	size_t lengths[PX_BATCH_MAX_PARAMS];
	uint32_t types[PX_BATCH_MAX_PARAMS];
	bool types_known;
} ext_values;

/* The bound values in text form and every parameter's type: the Parse's, or
 * the ones learned for this statement text. */
static bool ext_values_open(const px_session *s, const pgw_ext_group *g, const px_track_stmt *ts, const pf_sb *key,
			    ext_values *v)
{
	int16_t n = g->bind.nparams;
	if (n > PX_BATCH_MAX_PARAMS || (n > 0 && px_track_portal_nparams(&s->track, "") != n))
		return false;
	v->types_known = true;
	for (int16_t i = 0; i < n; i++) {
		const char *val = NULL;
		size_t len = 0;
		int rc = px_track_portal_value(&s->track, "", i + 1, &val, &len);
		if (rc < 0)
			return false; /* a value pgfold cannot put in text form */
		v->values[i] = rc ? val : NULL;
		v->lengths[i] = rc ? len : 0;
		v->types[i] = i < ts->ntypes ? ts->types[i] : 0;
		v->types_known &= v->types[i] != 0;
	}
	if (!v->types_known) {
		const px_learned_types *l = learned_find(&s->batch, key->data, key->len);
		if (l && l->n == n) {
			memcpy(v->types, l->types, sizeof(uint32_t) * (size_t)n);
			v->types_known = true;
		}
	}
	return true;
}

/* The Parse that must follow a batch (whose Query destroys the backend's
 * unnamed statement) so the client's statements stay as they were.  False
 * when pgfold cannot tell. */
static bool restore_for(const px_batcher *b, const pgw_ext_group *g, px_child *c)
{
	if (g->parse) {
		c->restore = g->parse;
		c->restore_len = g->parse_len;
		c->restore_is_childs = true;
		return true;
	}
	if (b->unnamed_state == PX_UNNAMED_KNOWN) {
		c->restore = (const uint8_t *)b->unnamed.data;
		c->restore_len = b->unnamed.len;
		return true;
	}
	return b->unnamed_state == PX_UNNAMED_NONE && g->bind.stmt_name[0];
}

static bool ext_child(px_session *s, const pgw_ext_group *g, const uint8_t *bytes, const rw_np_match *m,
		      const px_track_stmt *ts, const ext_values *v)
{
	px_child c = {
		.st = &ts->an->stmts[0],
		.sql = ts->text,
		.m = m,
		.msg = bytes,
		.msg_len = g->len,
		.nparams = (size_t)g->bind.nparams,
		.param_values = v->values,
		.param_lengths = v->lengths,
		.param_types = v->types,
		.portal = "",
		.nresult_formats = (size_t)g->bind.nresult_formats,
		.result_formats = g->bind.result_formats,
		.form = {.parse_complete = g->parse != NULL,
			 .bind_complete = true,
			 .row_desc = g->describe,
			 .max_rows = g->max_rows},
	};
	if (!g->parse && !g->bind.stmt_name[0] && s->batch.unnamed_state != PX_UNNAMED_KNOWN)
		return false; /* the unnamed statement may not exist: let the backend say */
	if (!m->already_fetched && !restore_for(&s->batch, g, &c))
		return false;
	if (!px_batch_child(s, &c))
		return false;
	if (m->already_fetched)
		px_batch_parse_answered(s, g->parse, g->parse_len);
	return true;
}

bool px_batch_extended(px_session *s, const pgw_ext_group *g, const uint8_t *bytes)
{
	px_track_stmt ts;
	bool known = px_track_statement(&s->track, g->bind.stmt_name, &ts) && ts.an && ts.an->nstmts == 1 && ts.text;
	const rw_stmt *st = known ? &ts.an->stmts[0] : NULL;
	bool allowed = known && px_batch_allowed(s) && g->max_rows >= 0;
	rw_np_match m;
	px_np_statement_keys(s, st, known ? ts.text : NULL, "",
			     allowed ? (size_t)s->server->cfg->nplusone_batch_size : 0, &m);
	px_batch_uncount_again(s, &m);
	if (!allowed || !m.pattern || m.status != RW_NP_ACTIVE)
		return false;
	pf_sb key;
	pf_sb_init(&key);
	learned_key(&key, ts.text, &ts);
	ext_values v;
	bool taken = false;
	if (ext_values_open(s, g, &ts, &key, &v)) {
		if (v.types_known)
			taken = ext_child(s, g, bytes, &m, &ts, &v);
		else if (!m.already_fetched)
			taken = send_describe(s, g, bytes, &key);
	}
	pf_sb_free(&key);
	return taken;
}
