/*
 * rcache_fill.c — the result cache and the N+1 batcher (see rcache.h):
 * a child the batcher is about to batch is looked up first (a miss goes back
 * to the batcher), and a delivered batch stores every group under the key
 * its child would have.
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/key.h"
#include "../protocol/pgtypes.h"
#include "../common/alloc.h"
#include "rcache_int.h"
#include "rcache_rows.h"
#include "session.h"

/* The batcher is about to send a batch for the child msg (a Query or an
 * extended group): a cacheable child is looked up first.  A hit answers it;
 * a miss (or Redis failing) gives it back to the batcher (redispatch()). */
bool px_rcache_batch_claim(px_session *s, const uint8_t *msg, size_t len)
{
	if (!px_rc_cache_on(s) || !s->analyse)
		return false;
	px_rcache *rc = px_rc_of(s);
	rc->fill_armed = px_rc_log_seq(s, &rc->fill_after_seq); /* read before the batch */
	if (rc->redispatching || len < PGW_HEADER_LEN)
		return false;
	bool taken = false;
	rc->claiming = true;
	if (msg[0] == PGW_FE_QUERY) {
		const char *sql;
		size_t sql_len;
		if (pgw_read_query(msg + PGW_HEADER_LEN, len - PGW_HEADER_LEN, &sql, &sql_len) != PGW_OK) {
			rc->claiming = false;
			return false;
		}
		rw_analysis *an = rw_analyze(s->server->analyzer, sql, sql_len);
		taken = an && px_rcache_query(s, an, sql, sql_len, msg, len);
		rw_analysis_free(an);
	} else {
		pgw_ext_group g;
		taken = pgw_ext_group_scan(msg, len, len, &g) == PGW_OK && px_rcache_extended(s, &g, msg);
	}
	rc->claiming = false;
	rc->batch_on_miss = taken;
	return taken;
}

/* The held child missed: offer it to the batcher again (this time it is not
 * claimed).  True when the batcher took it. */
bool px_rc_redispatch(px_session *s)
{
	px_rcache *rc = s->rcache;
	const uint8_t *msg = rc->query;
	size_t len = rc->query_len;
	bool taken = false;
	rc->phase = PX_RC_IDLE;
	rc->redispatching = true;
	if (!rc->grp.ext) {
		const char *sql;
		size_t sql_len;
		if (pgw_read_query(msg + PGW_HEADER_LEN, len - PGW_HEADER_LEN, &sql, &sql_len) == PGW_OK) {
			rw_analysis *an = rw_analyze(s->server->analyzer, sql, sql_len);
			taken = an && an->nstmts == 1 && px_batch_query(s, an, sql, msg, len);
			rw_analysis_free(an);
		}
	} else {
		pgw_ext_group g;
		taken = pgw_ext_group_scan(msg, len, len, &g) == PGW_OK && px_batch_extended(s, &g, msg);
	}
	rc->redispatching = false;
	if (taken) {
		pf_free(rc->query);
		rc->query = NULL; /* the batcher has its own copy; it resumes the client */
	}
	return taken;
}

/* The child as the batch saw it: its statement, text and (extended) group. */
typedef struct fill_child {
	rw_analysis *owned;
	const rw_stmt *st;
	const char *text;
	size_t text_len;
	bool ext;
	pgw_ext_group g;
	px_track_stmt ts;
	size_t slot;
} fill_child;

static bool fill_child_open(px_session *s, const px_prefetch *p, const uint8_t *msg, size_t len, fill_child *c)
{
	memset(c, 0, sizeof(*c));
	if (len < PGW_HEADER_LEN)
		return false;
	if (msg[0] == PGW_FE_QUERY) {
		if (pgw_read_query(msg + PGW_HEADER_LEN, len - PGW_HEADER_LEN, &c->text, &c->text_len) != PGW_OK)
			return false;
		c->owned = rw_analyze(s->server->analyzer, c->text, c->text_len);
		if (!c->owned || c->owned->nstmts != 1)
			return false;
		c->st = &c->owned->stmts[0];
	} else {
		c->ext = true;
		if (pgw_ext_group_scan(msg, len, len, &c->g) != PGW_OK ||
		    !px_track_statement(&s->track, c->g.bind.stmt_name, &c->ts) || !c->ts.an || !c->ts.text ||
		    c->ts.an->nstmts != 1)
			return false;
		c->st = &c->ts.an->stmts[0];
		c->text = c->ts.text;
		c->text_len = strlen(c->text);
	}
	/* the key slot: where the identity (px_batch_identity) has its marker */
	const char *mark = memchr(p->identity.data, '\x01', p->identity.len);
	size_t at = mark ? (size_t)(mark - p->identity.data) : 0;
	if (!mark || (size_t)c->st->location + at > c->text_len ||
	    memcmp(c->text + c->st->location, p->identity.data, at) != 0)
		return false;
	for (size_t k = 0; k < c->st->shape->nslots; k++)
		if ((size_t)c->st->values[k].location == (size_t)c->st->location + at) {
			c->slot = k;
			return true;
		}
	return false;
}

/* A key value pgfold writes back into SQL or a bound value unchanged. */
static bool plain_key(const char *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
		      strchr("-_.:@", k[i])))
			return false;
	return n > 0;
}

static bool numeric(const char *k, size_t n)
{
	size_t i = n > 0 && k[0] == '-';
	if (i == n)
		return false;
	for (; i < n; i++)
		if (!(k[i] >= '0' && k[i] <= '9'))
			return false;
	return true;
}

/* The extended child's key parameter (0-based), -1 when it has none, and
 * its format and type. */
static int key_param(const fill_child *c, int16_t *format, uint32_t *type)
{
	const pgw_bind_msg *b = &c->g.bind;
	int kp = c->st->shape->slots[c->slot].param;
	if (kp < 1 || kp > b->nparams)
		return -1;
	*format = pgw_bind_format(b, kp - 1);
	*type = kp <= c->ts.ntypes ? c->ts.types[kp - 1] : 0;
	return kp - 1;
}

/* A key (text form) as the parameter carries it: text as is; binary for
 * text, varchar and the integer types; false otherwise (or out of range). */
static bool encode_key(int16_t format, uint32_t type, const char *key, size_t klen, uint8_t *out, size_t size,
		       size_t *len)
{
	if (format == 0 || type == OID_TEXT || type == OID_VARCHAR) {
		if (klen > size)
			return false;
		memcpy(out, key, klen);
		*len = klen;
		return true;
	}
	int width = type == OID_INT2 ? 2 : type == OID_INT4 ? 4 : type == OID_INT8 ? 8 : 0;
	char canon[PX_RC_ROW_KEY_MAX];
	if (format != 1 || !width || !px_rc_canonical_int(key, klen, false, canon))
		return false;
	long long v = strtoll(canon, NULL, 10);
	if ((width == 2 && (v < INT16_MIN || v > INT16_MAX)) || (width == 4 && (v < INT32_MIN || v > INT32_MAX)))
		return false;
	uint64_t u = (uint64_t)v;
	for (int i = 0; i < width; i++)
		out[i] = (uint8_t)(u >> (8 * (width - 1 - i)));
	*len = (size_t)width;
	return true;
}

/* The Bind's parameters with the key parameter's value replaced by key,
 * as qc_key_bind() puts them.  own: instead check that the child's own
 * value is key. */
static bool fill_bind(const fill_child *c, const char *text_key, size_t text_len, pf_sb *out, bool own)
{
	const pgw_bind_msg *b = &c->g.bind;
	int16_t format;
	uint32_t type;
	int kp = key_param(c, &format, &type);
	uint8_t bytes[PX_NP_KEY_MAX];
	size_t klen;
	if (kp < 0 || !encode_key(format, type, text_key, text_len, bytes, sizeof(bytes), &klen))
		return false;
	const char *key = (const char *)bytes;
	pf_sb params;
	pf_sb_init(&params);
	bool ok = true;
	size_t pos = 0;
	for (int i = 0; ok && i < b->nparams; i++) {
		const uint8_t *v;
		int32_t n;
		ok = pgw_bind_next(b, &pos, &v, &n);
		if (ok && i == kp && own)
			ok = n >= 0 && (size_t)n == klen && memcmp(v, key, klen) == 0;
		if (!ok)
			break;
		if (i == kp) {
			v = (const uint8_t *)key;
			n = (int32_t)klen;
		}
		uint8_t l[4] = {(uint8_t)((uint32_t)n >> 24), (uint8_t)((uint32_t)n >> 16), (uint8_t)((uint32_t)n >> 8),
				(uint8_t)n};
		pf_sb_append_n(&params, (const char *)l, 4);
		if (n > 0)
			pf_sb_append_n(&params, (const char *)v, (size_t)n);
	}
	if (ok)
		qc_key_bind(out, c->ts.ntypes, c->ts.types, b->nformats, b->formats, b->nparams,
			    (const uint8_t *)params.data, params.len, b->nresult_formats, b->result_formats);
	pf_sb_free(&params);
	return ok;
}

/* Does the child's own key value read back as the batch's first key?  (Then
 * writing other keys into its place gives what their children send.) */
static bool own_key_matches(const fill_child *c, const px_group *g)
{
	if (c->ext) {
		pf_sb t;
		pf_sb_init(&t);
		bool ok = fill_bind(c, g->key, g->key_len, &t, true);
		pf_sb_free(&t);
		return ok;
	}
	const rw_value *v = &c->st->values[c->slot];
	const char *lit = c->text + v->location;
	size_t n = (size_t)v->length;
	if (n >= 2 && lit[0] == '\'')
		return n == g->key_len + 2 && memcmp(lit + 1, g->key, g->key_len) == 0 && lit[n - 1] == '\'';
	return n == g->key_len && memcmp(lit, g->key, n) == 0;
}

/* The key a child with key value `key` would have: into out. */
static bool fill_key(px_session *s, const fill_child *c, const char *key, size_t klen, char out[QC_ENTRY_KEY_LEN + 1])
{
	if (!plain_key(key, klen))
		return false;
	const rw_value *v = &c->st->values[c->slot];
	pf_sb buf;
	pf_sb_init(&buf);
	bool ok = true;
	qc_key_input ki;
	if (!c->ext) {
		const char *lit = c->text + v->location;
		pf_sb_append_n(&buf, c->text + c->st->location, (size_t)(v->location - c->st->location));
		if (lit[0] == '\'') {
			pf_sb_append_n(&buf, "'", 1);
			pf_sb_append_n(&buf, key, klen);
			pf_sb_append_n(&buf, "'", 1);
		} else {
			ok = numeric(key, klen) && ((lit[0] >= '0' && lit[0] <= '9') || lit[0] == '-');
			pf_sb_append_n(&buf, key, klen);
		}
		size_t after = (size_t)(v->location + v->length);
		pf_sb_append_n(&buf, c->text + after, (size_t)(c->st->location + c->st->length) - after);
		ki = px_rc_key_input(s, 't', buf.data, buf.len);
	} else {
		ok = fill_bind(c, key, klen, &buf, false);
		ki = px_rc_key_input(s, 'x', c->text, c->text_len);
		ki.params = buf.data;
		ki.params_len = buf.len;
	}
	if (ok)
		qc_key_entry(&ki, out);
	pf_sb_free(&buf);
	return ok;
}

/* The entries of one batch: the key and payload of each group's child. */
typedef struct fill_entries {
	size_t n;
	char (*keys)[QC_ENTRY_KEY_LEN + 1];
	pf_sb *payloads;
	const px_group **groups;
} fill_entries;

static void entries_free(fill_entries *e)
{
	for (size_t i = 0; i < e->n; i++)
		pf_sb_free(&e->payloads[i]);
	pf_free(e->payloads);
	pf_free(e->keys);
	pf_free(e->groups);
}

/* One entry per group: the child's RowDescription, the group's rows and
 * CommandComplete, under the key of the child with that group's key. */
static void entries_make(px_session *s, const px_prefetch *p, const fill_child *c, fill_entries *e)
{
	e->n = 0;
	e->keys = pf_calloc(p->ngroups + 1, QC_ENTRY_KEY_LEN + 1);
	e->payloads = pf_calloc(p->ngroups + 1, sizeof(pf_sb));
	e->groups = pf_calloc(p->ngroups + 1, sizeof(*e->groups));
	for (size_t i = 0; own_key_matches(c, &p->groups[0]) && i < p->ngroups; i++) {
		const px_group *g = &p->groups[i];
		pf_sb *pl = &e->payloads[e->n];
		pf_sb_init(pl);
		if (!fill_key(s, c, g->key, g->key_len, e->keys[e->n]))
			continue;
		pf_sb_append_n(pl, p->rowdesc.data, p->rowdesc.len);
		pf_sb_append_n(pl, g->rows.data, g->rows.len);
		char tag[32];
		int tl = snprintf(tag, sizeof(tag), "SELECT %u", g->nrows);
		uint32_t mlen = (uint32_t)(4 + tl + 1);
		uint8_t head[5] = {PGW_BE_COMMAND_COMPLETE, (uint8_t)(mlen >> 24), (uint8_t)(mlen >> 16),
				   (uint8_t)(mlen >> 8), (uint8_t)mlen};
		pf_sb_append_n(pl, (const char *)head, sizeof(head));
		pf_sb_append_n(pl, tag, (size_t)tl + 1);
		if (pl->len <= s->server->cfg->cache_max_entry_bytes)
			e->groups[e->n++] = g;
		else
			pf_sb_free(pl);
	}
}

/* Store entries [first, first + n) valid for the versions vk (QC_FILL_SCRIPT). */
static void fill_send(px_session *s, const fill_entries *e, size_t first, size_t n, int ttl_ms, const qc_keys *vk)
{
	size_t max = vk->n + 2 * n + 4;
	const char **argv = pf_calloc(max, sizeof(char *));
	size_t *lens = pf_calloc(max, sizeof(size_t));
	char nv[16], after[24], ttl[24];
	snprintf(nv, sizeof(nv), "%zu", vk->n);
	snprintf(after, sizeof(after), "%llu", (unsigned long long)s->rcache->fill_after_seq);
	snprintf(ttl, sizeof(ttl), "%d", ttl_ms > 0 ? ttl_ms : 1000);
	size_t argc = 0;
	for (size_t i = 0; i < vk->n; i++)
		argv[argc++] = vk->keys[i];
	for (size_t i = first; i < first + n; i++)
		argv[argc++] = e->keys[i];
	argv[argc++] = nv;
	argv[argc++] = after;
	argv[argc++] = ttl;
	for (size_t i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	for (size_t i = first; i < first + n; i++) {
		lens[argc] = e->payloads[i].len;
		argv[argc++] = e->payloads[i].data;
		px_rc_stats(s)->bytes_stored += e->payloads[i].len;
	}
	px_rc_stats(s)->fills += n;
	if (qc_redis_eval(s->server->redis, px_rc_on_filled, s->server, QC_FILL_SCRIPT, (int)(vk->n + n), (int)argc,
			  argv, lens) < 0)
		px_rc_stats(s)->store_errors++;
	pf_free(lens);
	pf_free(argv);
}

/* The child's values as rcache_rows.h reads them. */
static px_rc_values child_values(const fill_child *c, px_rc_bind *bv)
{
	px_rc_values v = {.sql = c->text + c->st->location, .sql_len = (size_t)c->st->length};
	if (c->ext) {
		*bv = (px_rc_bind){.b = &c->g.bind, .ntypes = c->ts.ntypes, .types = c->ts.types};
		v.param = px_rc_bind_param;
		v.ctx = bv;
	}
	return v;
}

/* Store the entries.  A child pinned to a primary-key value by the batch's
 * key slot (rcache_rows.h) depends on that value's row version: one store
 * per group, each with its own versions; otherwise one store for all. */
static void fill_store(px_session *s, const fill_child *c, const fill_entries *e, int ttl_ms)
{
	char row[PX_RC_ROW_KEY_MAX];
	size_t slot;
	px_rc_bind bv;
	px_rc_values vals = child_values(c, &bv);
	bool pinned = px_rc_pin_read(s, c->st, &vals, row, &slot);
	qc_keys vk = {0};
	if (!pinned || slot != c->slot) {
		if (e->n && qc_key_versions(s->database, c->st->shape, pinned ? row : NULL, &vk))
			fill_send(s, e, 0, e->n, ttl_ms, &vk);
		qc_keys_free(&vk);
		return;
	}
	for (size_t i = 0; i < e->n; i++) {
		const px_group *g = e->groups[i];
		if (px_rc_canonical_int(g->key, g->key_len, false, row) &&
		    qc_key_versions(s->database, c->st->shape, row, &vk))
			fill_send(s, e, i, 1, ttl_ms, &vk);
		qc_keys_free(&vk);
	}
}

void px_rcache_batch_fill(px_session *s, const px_prefetch *p, const uint8_t *child_msg, size_t child_len)
{
	if (!px_rc_cache_on(s) || !s->analyse || !s->rcache || !s->rcache->fill_armed || p->ngroups == 0 ||
	    p->rowdesc.len == 0)
		return;
	fill_child c;
	int ttl_ms = 0;
	if (fill_child_open(s, p, child_msg, child_len, &c) &&
	    px_rc_policy(s, c.st, c.text, c.text_len, &ttl_ms) == QC_CACHEABLE && s->tx_status != 'E') {
		fill_entries e;
		entries_make(s, p, &c, &e);
		fill_store(s, &c, &e, ttl_ms);
		entries_free(&e);
	}
	rw_analysis_free(c.owned);
	s->rcache->fill_armed = false;
}
