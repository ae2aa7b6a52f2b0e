/*
 * track.c — statements in flight on one session (see track.h).
 *
 * The queue holds, in the order the client sent them: statement items (one
 * per statement of a simple Query, one per Execute) and end markers (the end
 * of a simple Query, a Sync, a FunctionCall), each answered by exactly one
 * ReadyForQuery.  CommandComplete, EmptyQueryResponse, PortalSuspended and
 * ErrorResponse finish the statement at the head; after an error the rest
 * of that Query (or, in the extended protocol, everything up to the Sync) is
 * skipped by the server and dropped here at ReadyForQuery.
 */
#include "track.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/strbuf.h"

typedef enum item_type {
	ITEM_STMT,      /* one statement: an is set, or NULL when unknown */
	ITEM_UNKNOWN,   /* a Query pgfold did not analyse: absorbs every answer until its end */
	ITEM_QUERY_END, /* end of a simple Query */
	ITEM_SYNC,
	ITEM_FUNCTION,
} item_type;

/* A RowDescription body shared by a portal and the statements executed from
 * it (reference counted). */
typedef struct px_blob {
	unsigned refs;
	size_t len;
	uint8_t data[];
} px_blob;

static px_blob *blob_ref(px_blob *b)
{
	if (b)
		b->refs++;
	return b;
}

static void blob_unref(px_blob *b)
{
	if (b && --b->refs == 0)
		pf_free(b);
}

struct px_track_item {
	item_type type;
	px_blob *rowdesc; /* the portal's RowDescription when its statement was described, or NULL */
	rw_analysis *an; /* a reference, or NULL */
	uint32_t index;  /* statement in an */
	char *sql;       /* this statement's own text, kept only when it may change session state or
	                    is a write the cache may pin to keys (keeps_text) */
	size_t sql_len;
	char *params;    /* an Execute of such a write: the bound values (portal form), or NULL */
	size_t params_len;
	int16_t nparams;
	uint64_t start_us;
	bool writes;     /* counted in px_track.writes_queued */
};

struct px_named {
	px_named *next;
	uint64_t gen;   /* portals: end markers the client had sent before the Bind */
	char *name;
	rw_analysis *an;
	uint32_t index;
	char *sql; /* the prepared statement's text (for session-state statements) */
	char *text;            /* statements: the whole query text when <= PX_TRACK_TEXT_MAX */
	uint8_t *rowdesc;      /* statements: the RowDescription body a Describe of it gave */
	size_t rowdesc_len;
	px_blob *portal_rowdesc; /* portals: that RowDescription with the Bind's result formats */
	uint32_t *param_types; /* statements: OIDs from Parse (0 unspecified) */
	int16_t nparam_types;
	char *params;          /* portals: the bound values as text, len-prefixed; NULL when not kept */
	size_t params_len;
	int16_t nparams;
};

void px_track_init(px_track *t, px_track_done_fn done, void *ctx)
{
	memset(t, 0, sizeof(*t));
	px_sstate_init(&t->state);
	t->done = done;
	t->done_ctx = ctx;
}

/* ---- the queue ---------------------------------------------------------- */

static px_track_item *at(px_track *t, uint32_t i)
{
	return &t->items[(t->head + i) % t->cap];
}

static void item_release(px_track_item *it)
{
	if (it->an)
		rw_analysis_free(it->an);
	pf_free(it->sql);
	pf_free(it->params);
	blob_unref(it->rowdesc);
	memset(it, 0, sizeof(*it));
}

static bool push(px_track *t, const px_track_item *it)
{
	if (t->count == PX_TRACK_MAX_INFLIGHT) {
		t->overflow = true;
		px_sstate_lost(&t->state);
		return false;
	}
	if (t->count == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 16;
		px_track_item *items = pf_calloc(cap, sizeof(*items));
		for (uint32_t i = 0; i < t->count; i++)
			items[i] = *at(t, i);
		pf_free(t->items);
		t->items = items;
		t->cap = cap;
		t->head = 0;
	}
	*at(t, t->count++) = *it;
	if (it->writes)
		t->writes_queued++;
	return true;
}

static void pop(px_track *t)
{
	if (at(t, 0)->writes)
		t->writes_queued--;
	item_release(at(t, 0));
	t->head = (t->head + 1) % t->cap;
	t->count--;
}

/* Statements whose text pgfold reads once they complete: SET values,
 * savepoint names, DEALLOCATE names (kind OTHER). */
static bool affects_session(const rw_shape *sh)
{
	return sh->kind == RW_KIND_TRANSACTION || sh->kind == RW_KIND_SESSION || sh->kind == RW_KIND_OTHER ||
	       sh->setting;
}

/* Statements whose text (and bound values) the track keeps: session state,
 * and the writes the result cache may pin to primary-key values. */
static bool keeps_text(const rw_shape *sh)
{
	return affects_session(sh) || (sh->kind == RW_KIND_WRITE && (sh->write_form == RW_WRITE_UPDATE ||
								       sh->write_form == RW_WRITE_DELETE ||
								       sh->write_form == RW_WRITE_INSERT_VALUES));
}

static rw_analysis *ref(const rw_analysis *an)
{
	return an ? rw_analysis_ref(an) : NULL;
}

/* A statement item for statement i of an (an may be NULL: unknown). */
static void push_stmt(px_track *t, const rw_analysis *an, uint32_t i, const char *sql, size_t sql_len,
		      uint64_t now_us)
{
	px_track_item it = {.type = ITEM_STMT, .index = i, .start_us = now_us};
	if (an && an->nstmts == 0) {
		/* An empty prepared statement: fully known, answered by EmptyQueryResponse. */
		it.an = ref(an);
		if (!push(t, &it))
			item_release(&it);
		return;
	}
	const rw_shape *sh = an ? an->stmts[i].shape : NULL;
	if (sh && keeps_text(sh) && sql && (affects_session(sh) || sql_len <= PX_TRACK_TEXT_MAX)) {
		it.sql = pf_malloc(sql_len + 1);
		memcpy(it.sql, sql, sql_len);
		it.sql[sql_len] = '\0';
		it.sql_len = sql_len;
	}
	it.an = ref(an);
	it.writes = px_sstate_is_write(sh);
	if (!push(t, &it)) {
		item_release(&it);
		return;
	}
	px_sstate_sent(&t->state, sh);
}

static void push_marker(px_track *t, item_type type, uint64_t now_us)
{
	px_track_item it = {.type = type, .start_us = now_us};
	t->markers_sent++;
	(void)push(t, &it);
}

/* ---- client messages ---------------------------------------------------- */

void px_track_query(px_track *t, const rw_analysis *an, const char *text, uint64_t now_us)
{
	if (!an) {
		px_track_item it = {.type = ITEM_UNKNOWN, .start_us = now_us, .writes = true};
		if (push(t, &it))
			px_sstate_sent(&t->state, NULL);
	} else {
		for (uint32_t i = 0; i < an->nstmts; i++) {
			const rw_stmt *st = &an->stmts[i];
			push_stmt(t, an, i, text + st->location, (size_t)st->length, now_us);
		}
	}
	push_marker(t, ITEM_QUERY_END, now_us);
}

static px_named **named_find(px_named **list, const char *name)
{
	for (; *list; list = &(*list)->next)
		if (strcmp((*list)->name, name) == 0)
			return list;
	return list;
}

static void named_free(px_named *n)
{
	if (n->an)
		rw_analysis_free(n->an);
	pf_free(n->name);
	pf_free(n->sql);
	pf_free(n->text);
	pf_free(n->rowdesc);
	blob_unref(n->portal_rowdesc);
	pf_free(n->param_types);
	pf_free(n->params);
	pf_free(n);
}

static void named_remove(px_named **list, const char *name, uint32_t *count)
{
	px_named **slot = named_find(list, name);
	if (!*slot)
		return;
	px_named *n = *slot;
	*slot = n->next;
	named_free(n);
	if (count)
		(*count)--;
}

/* Replace or add `name`; returns the entry, or NULL when over the bound. */
static px_named *named_put(px_named **list, const char *name, uint32_t *count)
{
	named_remove(list, name, count);
	if (count && *count >= PX_TRACK_MAX_PREPARED)
		return NULL;
	px_named *n = pf_calloc(1, sizeof(*n));
	n->name = pf_strdup(name);
	n->next = *list;
	*list = n;
	if (count)
		(*count)++;
	return n;
}

void px_track_parse(px_track *t, const char *name, const rw_analysis *an, const char *text)
{
	px_named *n = named_put(&t->prepared, name, &t->nprepared);
	if (!n || !an || an->nstmts > 1)
		return; /* unknown: executes of it are tracked as unknown statements */
	n->an = ref(an);
	if (an->nstmts == 0)
		return;
	if (strlen(text) <= PX_TRACK_TEXT_MAX)
		n->text = pf_strdup(text);
	const rw_stmt *st = &an->stmts[0];
	if (keeps_text(st->shape) && (affects_session(st->shape) || st->length <= PX_TRACK_TEXT_MAX)) {
		n->sql = pf_malloc((size_t)st->length + 1);
		memcpy(n->sql, text + st->location, (size_t)st->length);
		n->sql[st->length] = '\0';
	}
}

void px_track_bind(px_track *t, const char *portal, const char *stmt_name)
{
	px_named *stmt = *named_find(&t->prepared, stmt_name);
	px_named *p = named_put(&t->portals, portal, &t->nportals);
	if (!p) {
		px_sstate_lost(&t->state);
		return;
	}
	p->gen = t->markers_sent;
	if (stmt && stmt->an) {
		p->an = ref(stmt->an);
		p->sql = stmt->sql ? pf_strdup(stmt->sql) : NULL;
	}
}

void px_track_parse_types(px_track *t, const char *name, int16_t n, const uint8_t *types)
{
	px_named *stmt = *named_find(&t->prepared, name);
	if (!stmt || n <= 0)
		return;
	stmt->param_types = pf_calloc((size_t)n, sizeof(uint32_t));
	for (int16_t i = 0; i < n; i++)
		stmt->param_types[i] = pgw_get_u32(types + 4 * i);
	stmt->nparam_types = n;
}

/* Append parameter i's value in text form (len -1 when NULL, -2 when it has
 * no text form pgfold knows). */
static void param_append(pf_sb *out, const px_named *stmt, const pgw_bind_msg *m, int16_t i, const uint8_t *v,
			 int32_t len)
{
	int16_t format = pgw_bind_format(m, i);
	uint32_t type = stmt && i < stmt->nparam_types ? stmt->param_types[i] : 0;
	char text[PX_TRACK_PARAM_TEXT_MAX];
	size_t n = 0;
	int32_t out_len = -1;
	if (len >= 0)
		out_len = pgw_value_text(type, format, v, len, text, sizeof(text), &n) == PGW_OK ? (int32_t)n : -2;
	pf_sb_append_n(out, (const char *)&out_len, sizeof(out_len));
	if (out_len > 0)
		pf_sb_append_n(out, text, (size_t)out_len);
}

/* The statement's described RowDescription with the result format codes of
 * the Bind (none: text; one: for every column; else one per column). */
static px_blob *portal_row_desc(const px_named *stmt, const pgw_bind_msg *m)
{
	if (!stmt->rowdesc || stmt->rowdesc_len < 2)
		return NULL;
	px_blob *b = pf_malloc(sizeof(px_blob) + stmt->rowdesc_len);
	b->refs = 1;
	b->len = stmt->rowdesc_len;
	memcpy(b->data, stmt->rowdesc, stmt->rowdesc_len);
	int16_t n = (int16_t)pgw_get_u16(b->data);
	if (m->nresult_formats > 1 && m->nresult_formats != n) {
		pf_free(b); /* the server refuses this Bind */
		return NULL;
	}
	size_t pos = 2;
	for (int16_t i = 0; i < n; i++) {
		const uint8_t *nul = pos < b->len ? memchr(b->data + pos, 0, b->len - pos) : NULL;
		if (!nul || (size_t)(nul - b->data) + 1 + 18 > b->len) {
			pf_free(b);
			return NULL;
		}
		pos = (size_t)(nul - b->data) + 1 + 18;
		int16_t format = m->nresult_formats == 0 ? 0 : (int16_t)pgw_get_u16(m->result_formats + 2 * (m->nresult_formats == 1 ? 0 : i));
		b->data[pos - 2] = (uint8_t)((uint16_t)format >> 8);
		b->data[pos - 1] = (uint8_t)format;
	}
	return b;
}

void px_track_bind_params(px_track *t, const char *portal, const char *stmt_name, const pgw_bind_msg *m)
{
	px_named *p = *named_find(&t->portals, portal);
	const px_named *stmt = *named_find(&t->prepared, stmt_name);
	if (p && stmt)
		p->portal_rowdesc = portal_row_desc(stmt, m);
	if (!p || m->nparams <= 0)
		return;
	pf_sb out;
	pf_sb_init(&out);
	size_t pos = 0;
	const uint8_t *v;
	int32_t len;
	for (int16_t i = 0; i < m->nparams && pgw_bind_next(m, &pos, &v, &len); i++) {
		param_append(&out, stmt, m, i, v, len);
		if (out.len > PX_TRACK_PARAMS_MAX)
			break;
	}
	if (out.len <= PX_TRACK_PARAMS_MAX) {
		p->params = out.data; /* owned now */
		p->params_len = out.len;
		p->nparams = m->nparams;
	} else {
		pf_sb_free(&out);
	}
}

/* Value n (1-based) of a blob of bound values (px_named.params form). */
static int params_value(const char *params, size_t params_len, int16_t nparams, int n, const char **value,
			size_t *len)
{
	if (!params || n < 1 || n > nparams)
		return -1;
	size_t pos = 0;
	for (int i = 1; pos + 4 <= params_len; i++) {
		int32_t l;
		memcpy(&l, params + pos, sizeof(l));
		pos += 4;
		if (i == n) {
			if (l < 0)
				return l == -1 ? 0 : -1;
			*value = params + pos;
			*len = (size_t)l;
			return 1;
		}
		pos += l > 0 ? (size_t)l : 0;
	}
	return -1;
}

int px_track_portal_value(const px_track *t, const char *portal, int n, const char **value, size_t *len)
{
	const px_named *p = *named_find((px_named **)&t->portals, portal);
	return p ? params_value(p->params, p->params_len, p->nparams, n, value, len) : -1;
}

bool px_track_portal_param(const px_track *t, const char *portal, int n, const char **value, size_t *len)
{
	return px_track_portal_value(t, portal, n, value, len) == 1;
}

int16_t px_track_portal_nparams(const px_track *t, const char *portal)
{
	const px_named *p = *named_find((px_named **)&t->portals, portal);
	return p && p->params ? p->nparams : 0;
}

void px_track_execute(px_track *t, const char *portal, uint64_t now_us)
{
	px_named *p = *named_find(&t->portals, portal);
	if (p && p->an)
		push_stmt(t, p->an, 0, p->sql, p->sql ? strlen(p->sql) : 0, now_us);
	else
		push_stmt(t, NULL, 0, NULL, 0, now_us);
	if (p && p->portal_rowdesc && t->count > 0) {
		px_track_item *it = at(t, t->count - 1);
		if (it->type == ITEM_STMT && !it->rowdesc)
			it->rowdesc = blob_ref(p->portal_rowdesc);
	}
	if (p && p->params && t->count > 0) {
		px_track_item *it = at(t, t->count - 1);
		if (it->type == ITEM_STMT && it->sql && !it->params) {
			it->params = pf_malloc(p->params_len);
			memcpy(it->params, p->params, p->params_len);
			it->params_len = p->params_len;
			it->nparams = p->nparams;
		}
	}
}

const uint8_t *px_track_current_row_desc(const px_track *t, size_t *len)
{
	if (t->count == 0)
		return NULL;
	const px_track_item *it = &t->items[t->head % t->cap];
	if (it->type != ITEM_STMT || !it->rowdesc)
		return NULL;
	*len = it->rowdesc->len;
	return it->rowdesc->data;
}

void px_track_close(px_track *t, char kind, const char *name)
{
	if (kind == 'S')
		named_remove(&t->prepared, name, &t->nprepared);
	else
		named_remove(&t->portals, name, &t->nportals);
}

static void named_clear(px_named **list)
{
	while (*list) {
		px_named *n = *list;
		*list = n->next;
		named_free(n);
	}
}

void px_track_forget_prepared(px_track *t)
{
	named_clear(&t->prepared);
	t->nprepared = 0;
	px_sstate_lost(&t->state);
}

void px_track_forget_portals(px_track *t)
{
	named_clear(&t->portals);
	t->nportals = 0;
	px_sstate_lost(&t->state);
}

void px_track_sync(px_track *t)
{
	/* The unnamed portal does not outlive the transaction; named ones may,
	 * but a Sync ending the implicit transaction closes them too unless a
	 * block is open.  Keep them: a stale entry only costs memory until
	 * rebound, and Bind replaces it. */
	push_marker(t, ITEM_SYNC, 0);
}

void px_track_function_call(px_track *t, uint64_t now_us)
{
	push_marker(t, ITEM_FUNCTION, now_us);
	px_sstate_lost(&t->state); /* a function call can do anything */
}

/* ---- backend messages --------------------------------------------------- */

/* The trailing row count of a CommandComplete tag ("SELECT 5", "INSERT 0 5"). */
static uint64_t tag_rows(const char *tag)
{
	const char *end = tag + strlen(tag), *p = end;
	while (p > tag && isdigit((unsigned char)p[-1]))
		p--;
	return p < end && p > tag && p[-1] == ' ' ? strtoull(p, NULL, 10) : 0;
}

/* DEALLOCATE [PREPARE] name | ALL and DISCARD ALL drop prepared statements
 * on the server, protocol-level ones included. */
static void prepared_dropped(px_track *t, const char *sql, size_t len, const char *tag)
{
	if (strcmp(tag, "DISCARD ALL") == 0 || strcmp(tag, "DEALLOCATE ALL") == 0) {
		named_clear(&t->prepared);
		t->nprepared = 0;
		return;
	}
	char name[PX_SSTATE_NAME_MAX];
	px_sql_last_name(sql, len, name, sizeof(name));
	named_remove(&t->prepared, name, &t->nprepared);
}

static void statement_completed(px_track *t, const rw_shape *sh, const char *sql, size_t len, const char *tag)
{
	px_sstate_done(&t->state, sh, sql, len, tag);
	if (strcmp(tag, "DISCARD ALL") == 0 || strncmp(tag, "DEALLOCATE", 10) == 0)
		prepared_dropped(t, sql, len, tag);
}

/* Finish the statement at the head, if the head is a statement. */
static void finish(px_track *t, const char *tag, bool error, uint64_t now_us)
{
	if (t->count == 0)
		return;
	px_track_item *it = at(t, 0);
	if (it->type == ITEM_UNKNOWN) {
		if (error)
			px_sstate_failed(&t->state);
		return; /* absorbs every answer of its Query */
	}
	if (it->type != ITEM_STMT) {
		px_sstate_lost(&t->state); /* an answer we did not expect */
		return;
	}
	if (it->an && it->an->nstmts == 0) {
		pop(t); /* an empty statement: nothing ran */
		return;
	}
	const rw_stmt *st = it->an ? &it->an->stmts[it->index] : NULL;
	uint64_t elapsed = now_us > it->start_us ? now_us - it->start_us : 0;
	if (t->done)
		t->done(t->done_ctx, st, elapsed, error ? 0 : tag_rows(tag), error);
	if (error)
		px_sstate_failed(&t->state);
	else if (st)
		statement_completed(t, st->shape, it->sql ? it->sql : "", it->sql_len, tag);
	else
		px_sstate_lost(&t->state);
	pop(t);
}

void px_track_complete(px_track *t, const char *tag, uint64_t now_us)
{
	finish(t, tag, false, now_us);
}

void px_track_empty(px_track *t, uint64_t now_us)
{
	/* An empty Query has no statement item: only an Execute of an empty
	 * prepared statement does. */
	if (t->count > 0 && at(t, 0)->type == ITEM_STMT)
		finish(t, "", false, now_us);
}

void px_track_suspended(px_track *t, uint64_t now_us)
{
	finish(t, "", false, now_us);
}

void px_track_error(px_track *t, uint64_t now_us)
{
	if (t->count > 0 && (at(t, 0)->type == ITEM_STMT || at(t, 0)->type == ITEM_UNKNOWN))
		finish(t, "", true, now_us);
	else
		px_sstate_failed(&t->state);
}

static void forget_old_portals(px_track *t)
{
	px_named **link = &t->portals;
	while (*link) {
		px_named *n = *link;
		if (n->gen < t->markers_answered) {
			*link = n->next;
			named_free(n);
			t->nportals--;
		} else {
			link = &n->next;
		}
	}
}

void px_track_describe(px_track *t, const char *name)
{
	if (t->describes_count == PX_TRACK_MAX_DESCRIBES)
		return; /* not followed: its statement keeps the types it has */
	struct px_describe *d = &t->describes[(t->describes_head + t->describes_count++) % PX_TRACK_MAX_DESCRIBES];
	d->name = pf_strdup(name);
	d->gen = t->markers_sent;
	d->params_seen = false;
}

static void describe_pop(px_track *t)
{
	pf_free(t->describes[t->describes_head].name);
	t->describes[t->describes_head].name = NULL;
	t->describes_head = (t->describes_head + 1) % PX_TRACK_MAX_DESCRIBES;
	t->describes_count--;
}

/* Describes of Sync groups already answered (skipped after an error). */
static void describes_expire(px_track *t)
{
	while (t->describes_count > 0 && t->describes[t->describes_head].gen < t->markers_answered)
		describe_pop(t);
}

/* The Describe the backend is answering now, or NULL. */
static struct px_describe *describe_current(px_track *t)
{
	describes_expire(t);
	if (t->describes_count == 0 || t->describes[t->describes_head].gen != t->markers_answered)
		return NULL;
	return &t->describes[t->describes_head];
}

void px_track_param_desc(px_track *t, int16_t n, const uint8_t *types)
{
	struct px_describe *d = describe_current(t);
	if (!d || d->params_seen)
		return;
	d->params_seen = true; /* its RowDescription or NoData follows */
	px_named *stmt = *named_find(&t->prepared, d->name);
	if (stmt) {
		pf_free(stmt->param_types);
		stmt->param_types = NULL;
		stmt->nparam_types = 0;
		px_track_parse_types(t, d->name, n, types);
	}
}

void px_track_row_desc(px_track *t, const uint8_t *body, size_t len)
{
	struct px_describe *d = describe_current(t);
	if (!d || !d->params_seen)
		return; /* the answer to a Describe of a portal, or to a Query */
	px_named *stmt = *named_find(&t->prepared, d->name);
	if (stmt && body && len <= PX_TRACK_ROWDESC_MAX) {
		pf_free(stmt->rowdesc);
		stmt->rowdesc = pf_malloc(len ? len : 1);
		memcpy(stmt->rowdesc, body, len);
		stmt->rowdesc_len = len;
	}
	describe_pop(t);
}

void px_track_ready(px_track *t, char status)
{
	/* Drop what the server skipped, then the marker this answers. */
	while (t->count > 0) {
		item_type type = at(t, 0)->type;
		pop(t);
		if (type == ITEM_QUERY_END || type == ITEM_SYNC || type == ITEM_FUNCTION)
			break;
	}
	if (t->count == 0 && t->overflow)
		t->overflow = false;
	/* Portals do not outlive their transaction: once it has ended, forget
	 * those bound before the marker just answered (a pipelining client may
	 * already have bound portals for its next transaction). */
	t->markers_answered++;
	describes_expire(t);
	if (status == 'I')
		forget_old_portals(t);
	px_sstate_ready(&t->state, status, t->writes_queued > 0);
}

const rw_analysis *px_track_prepared(const px_track *t, const char *name)
{
	px_named *const *list = &t->prepared;
	for (; *list; list = &(*list)->next)
		if (strcmp((*list)->name, name) == 0)
			return (*list)->an;
	return NULL;
}

bool px_track_statement(const px_track *t, const char *name, px_track_stmt *out)
{
	const px_named *n = *named_find((px_named **)&t->prepared, name);
	if (!n)
		return false;
	out->an = n->an;
	out->text = n->text;
	out->ntypes = n->nparam_types;
	out->types = n->param_types;
	return true;
}

static const rw_stmt *item_stmt(const px_track_item *it)
{
	if (it->type != ITEM_STMT || !it->an || it->an->nstmts == 0)
		return NULL;
	return &it->an->stmts[it->index];
}

const rw_stmt *px_track_current(const px_track *t)
{
	return t->count ? item_stmt(&t->items[t->head % t->cap]) : NULL;
}

bool px_track_current_text(const px_track *t, const char **sql, size_t *len)
{
	const px_track_item *it = t->count ? &t->items[t->head % t->cap] : NULL;
	if (!it || it->type != ITEM_STMT || !it->sql)
		return false;
	*sql = it->sql;
	*len = it->sql_len;
	return true;
}

int px_track_current_param(const px_track *t, int n, const char **value, size_t *len)
{
	const px_track_item *it = t->count ? &t->items[t->head % t->cap] : NULL;
	if (!it || it->type != ITEM_STMT)
		return -1;
	return params_value(it->params, it->params_len, it->nparams, n, value, len);
}

const rw_stmt *px_track_last(const px_track *t)
{
	return t->count ? item_stmt(&t->items[(t->head + t->count - 1) % t->cap]) : NULL;
}

uint32_t px_track_inflight(const px_track *t)
{
	return t->count;
}

void px_track_free(px_track *t)
{
	while (t->count > 0)
		pop(t);
	pf_free(t->items);
	named_clear(&t->prepared);
	named_clear(&t->portals);
	while (t->describes_count > 0)
		describe_pop(t);
	px_sstate_free(&t->state);
}
