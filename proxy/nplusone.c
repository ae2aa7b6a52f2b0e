/*
 * nplusone.c — N+1 detection glue (see nplusone.h): result rows in text
 * form into the session's parent results, statements into child matching.
 */
#include "nplusone.h"

#include <string.h>

#include "../common/log.h"
#include "../protocol/pgwire.h"
#include "../rewrite/literal.h"
#include "batcher.h"
#include "session.h"
#include "volatility.h"

#define PX_NP_VALUE_MAX PX_NP_KEY_MAX
#define PX_NP_MAX_SLOTS 32

static bool detecting(const px_session *s)
{
	return s->np != NULL && s->server->cfg->nplusone_mode != CF_NPLUSONE_OFF;
}

void px_np_capture_free(px_np_capture *c)
{
	pf_sb_free(&c->rowdesc);
	pf_sb_free(&c->first_row);
}

void px_np_row_description(px_session *s, const uint8_t *body, size_t len)
{
	px_np_capture *c = &s->np_capture;
	px_np_abort(s);
	const rw_stmt *st = px_track_current(&s->track);
	int16_t n;
	if (!detecting(s) || !st || st->shape->kind != RW_KIND_READ || pgw_read_row_desc(body, len, &n) != PGW_OK)
		return;
	bool keyed = false;
	c->ncolumns = n < PX_NP_MAX_COLUMNS ? n : PX_NP_MAX_COLUMNS;
	for (int16_t i = 0; i < c->ncolumns; i++) {
		pgw_column col;
		if (pgw_row_desc_column(body, len, i, &col) != PGW_OK)
			return;
		c->types[i] = col.type_oid;
		c->formats[i] = col.format;
		keyed |= rw_np_key_type(col.type_oid);
	}
	if (!keyed)
		return; /* no column could hold a key */
	pf_sb_reset(&c->rowdesc);
	pf_sb_append_n(&c->rowdesc, (const char *)body, len);
	c->shape = st->shape;
	c->rows = 0;
	c->active = true;
}

/* The second row arrived: the result is a possible parent from now on. */
static void begin_parent(px_session *s)
{
	px_np_capture *c = &s->np_capture;
	const uint8_t *body = (const uint8_t *)c->rowdesc.data;
	rw_np_result_begin(s->np, c->shape, c->ncolumns);
	for (int16_t i = 0; i < c->ncolumns; i++) {
		pgw_column col;
		(void)pgw_row_desc_column(body, c->rowdesc.len, i, &col); /* validated before */
		rw_np_result_column(s->np, i, col.name, col.table_oid, col.attnum, col.type_oid);
	}
	c->begun = true;
}

static void feed_row(px_session *s, const uint8_t *body, size_t len)
{
	px_np_capture *c = &s->np_capture;
	int16_t n;
	if (pgw_read_data_row(body, len, &n) != PGW_OK)
		return;
	char buf[PX_NP_MAX_COLUMNS][PX_NP_VALUE_MAX];
	const char *values[PX_NP_MAX_COLUMNS];
	size_t lengths[PX_NP_MAX_COLUMNS];
	int16_t cols = n < c->ncolumns ? n : c->ncolumns;
	for (int16_t i = 0; i < cols; i++) {
		const uint8_t *v;
		int32_t vlen;
		values[i] = NULL;
		lengths[i] = 0;
		if (!rw_np_key_type(c->types[i]) || pgw_data_row_value(body, len, i, &v, &vlen) != PGW_OK || !v)
			continue;
		if (pgw_value_text(c->types[i], c->formats[i], v, vlen, buf[i], sizeof(buf[i]), &lengths[i]) == PGW_OK)
			values[i] = buf[i];
	}
	rw_np_result_row(s->np, cols, values, lengths);
}

/* Rows of a portal the client never described (asyncpg, PgJDBC): its
 * statement's described RowDescription, with the Bind's formats, stands in
 * for the one the backend does not send.  Once per statement answered. */
static void row_description_from_track(px_session *s)
{
	px_np_capture *c = &s->np_capture;
	size_t len;
	const uint8_t *rd = c->tried_track ? NULL : px_track_current_row_desc(&s->track, &len);
	if (rd)
		px_np_row_description(s, rd, len);
	c->tried_track = true;
}

void px_np_data_row(px_session *s, const uint8_t *body, size_t len)
{
	px_np_capture *c = &s->np_capture;
	if (!c->active)
		row_description_from_track(s);
	if (!c->active)
		return;
	if (++c->rows == 1) {
		pf_sb_reset(&c->first_row);
		pf_sb_append_n(&c->first_row, (const char *)body, len);
		return;
	}
	if (!c->begun) {
		begin_parent(s);
		feed_row(s, (const uint8_t *)c->first_row.data, c->first_row.len);
	}
	feed_row(s, body, len);
}

void px_np_complete(px_session *s)
{
	px_np_capture *c = &s->np_capture;
	if (c->begun)
		rw_np_result_end(s->np);
	c->active = c->begun = c->tried_track = false;
}

void px_np_abort(px_session *s)
{
	px_np_capture *c = &s->np_capture;
	if (c->begun)
		rw_np_result_abort(s->np);
	c->active = c->begun = c->tried_track = false;
}

/* ---- children ------------------------------------------------------------ */

/* Could this read be an N+1 child?  Read-only, no FOR UPDATE/SHARE, no temp
 * tables or catalogs, no volatile function. */
static bool child_candidate(px_session *s, const rw_shape *sh)
{
	if (sh->kind != RW_KIND_READ || (sh->flags & (RW_FOR_UPDATE | RW_TOUCHES_TEMP | RW_TOUCHES_CATALOG)))
		return false;
	bool keyed = false;
	for (size_t i = 0; i < sh->nslots && !keyed; i++)
		keyed = sh->slots[i].rel_index >= 0;
	if (!keyed)
		return false;
	return !s->server->volatility ||
	       px_volatility_of_shape(s->server->volatility, s->database, s->user, sh) != 'v';
}

/* Slot k's value as the server sees it, in text form, into buf. */
static bool slot_value(px_session *s, const rw_stmt *st, size_t k, const char *text, const char *portal, char *buf,
		       size_t size, size_t *len)
{
	const rw_slot *slot = &st->shape->slots[k];
	if (slot->param > 0) {
		const char *v;
		size_t n;
		if (!portal || !px_track_portal_param(&s->track, portal, slot->param, &v, &n) || n + 1 > size)
			return false;
		memcpy(buf, v, n);
		buf[n] = '\0';
		*len = n;
		return true;
	}
	if (!text)
		return false;
	const rw_value *v = &st->values[k];
	return rw_literal_text(text + v->location, (size_t)v->length, buf, size, len) == 0;
}

bool px_np_child_value(px_session *s, const rw_stmt *stmt, const char *text, const char *portal, size_t k, char *buf,
		       size_t size, size_t *len)
{
	return k < stmt->shape->nslots && slot_value(s, stmt, k, text, portal, buf, size, len);
}

static void log_confirmed(px_session *s, const rw_np_match *m)
{
	pf_sb line;
	pf_sb_init(&line);
	rw_np_pattern_describe(m->pattern, &line);
	px_session_log(PF_LOG_INFO, s, "N+1 pattern confirmed: %s", pf_sb_str(&line));
	pf_sb_free(&line);
}

void px_np_statement(px_session *s, const rw_stmt *st, const char *text, const char *portal)
{
	rw_np_match m;
	px_np_statement_keys(s, st, text, portal, 0, &m);
}

void px_np_statement_keys(px_session *s, const rw_stmt *st, const char *text, const char *portal, size_t want,
			  rw_np_match *out)
{
	memset(out, 0, sizeof(*out));
	if (!detecting(s) || !st)
		return;
	const rw_shape *sh = st->shape;
	if (sh->kind == RW_KIND_DDL || sh->kind == RW_KIND_SESSION)
		px_batch_forget_types(s); /* parameter types may be inferred differently now */
	if (px_sstate_is_write(sh) || sh->kind == RW_KIND_SESSION) {
		/* A write, DDL or session change: earlier results are history, and
		 * answers prefetched before it may be stale. */
		rw_np_forget(s->np);
		px_batch_drop_all(s);
		return;
	}
	if (sh->kind != RW_KIND_READ)
		return;
	if (!child_candidate(s, sh) || sh->nslots > PX_NP_MAX_SLOTS)
		return;
	char buf[PX_NP_MAX_SLOTS][PX_NP_VALUE_MAX];
	const char *values[PX_NP_MAX_SLOTS];
	size_t lengths[PX_NP_MAX_SLOTS];
	for (size_t k = 0; k < sh->nslots; k++) {
		values[k] = NULL;
		lengths[k] = 0;
		if (sh->slots[k].rel_index >= 0 &&
		    slot_value(s, st, k, text, portal, buf[k], sizeof(buf[k]), &lengths[k]))
			values[k] = buf[k];
	}
	rw_np_child(s->np, sh, values, lengths, want, out);
	if (out->pattern && out->newly_active)
		log_confirmed(s, out);
}
