/*
 * rcache_near.c — the near cache (rcache_near.h): entries in a map with an
 * LRU list, the known versions (reference-counted by the entries) in
 * another map, and the syncs with Redis's bump log: the statements that
 * arrived during one loop turn share one EVAL, sent from a check handle at
 * the turn's end; several may be in flight.
 */
#include "rcache_near.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/strmap.h"

typedef struct near_entry near_entry;
struct near_entry {
	near_entry *prev, *next; /* LRU list, most recent first */
	char *key;
	uint64_t expires_ms;     /* loop time */
	size_t ndeps;
	char **dep_keys;         /* the version keys ... */
	uint64_t *dep_vals;      /* ... and the values this entry is valid for */
	char tag[64];
	char *payload;
	size_t len;
	size_t bytes;            /* what it counts against max_bytes */
};

/* A version the near cache follows: its value (0: not known yet) and the
 * entries that depend on it (a version no entry needs may be forgotten). */
typedef struct known_ver {
	uint64_t value;
	uint32_t refs;
} known_ver;

typedef struct waiter waiter;
struct waiter {
	waiter *next;
	px_near_fn cb;
	void *ctx;
};

/* One sync in flight and the statements waiting for it. */
typedef struct near_sync {
	px_near *near;
	waiter *waiters;
} near_sync;

struct px_near {
	uv_loop_t *loop;
	qc_redis *redis;
	size_t max_bytes;
	size_t bytes;
	pf_strmap *entries;      /* key -> near_entry */
	near_entry *head, *tail;
	pf_strmap *known;        /* version key -> known_ver */
	uint64_t synced;         /* the last log sequence applied; 0: none yet */
	waiter *pending, **pending_end; /* wait for the next sync */
	unsigned inflight;       /* syncs sent, not answered yet */
	uv_check_t check;        /* sends the next sync once per loop turn */
	bool check_active;
	px_near_stats st;
};

/* ---- entries -------------------------------------------------------------- */

static void lru_unlink(px_near *n, near_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		n->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		n->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(px_near *n, near_entry *e)
{
	e->prev = NULL;
	e->next = n->head;
	if (n->head)
		n->head->prev = e;
	n->head = e;
	if (!n->tail)
		n->tail = e;
}

static void entry_free(near_entry *e)
{
	for (size_t i = 0; i < e->ndeps; i++)
		pf_free(e->dep_keys[i]);
	pf_free(e->dep_keys);
	pf_free(e->dep_vals);
	pf_free(e->payload);
	pf_free(e->key);
	pf_free(e);
}

static known_ver *known_find(const px_near *n, const char *key)
{
	void *v = NULL;
	return n->known && pf_strmap_get(n->known, key, &v) ? v : NULL;
}

static void entry_remove(px_near *n, near_entry *e)
{
	for (size_t i = 0; i < e->ndeps; i++) {
		known_ver *k = known_find(n, e->dep_keys[i]);
		if (k && k->refs)
			k->refs--;
	}
	pf_strmap_remove(n->entries, e->key, NULL);
	lru_unlink(n, e);
	n->bytes -= e->bytes;
	entry_free(e);
}

static void evict_to(px_near *n, size_t limit)
{
	while (n->tail && n->bytes > limit) {
		entry_remove(n, n->tail);
		n->st.evictions++;
	}
}

static void known_free(pf_strmap *m)
{
	size_t pos = 0;
	const char *key;
	void *v;
	while (m && pf_strmap_next(m, &pos, &key, &v))
		pf_free(v);
	pf_strmap_free(m);
}

/* Forget every entry and every known version. */
static void drop_all(px_near *n)
{
	while (n->head)
		entry_remove(n, n->head);
	known_free(n->known);
	n->known = pf_strmap_new();
	n->st.resets++;
}

/* Forget the versions no entry depends on. */
static void known_sweep(px_near *n)
{
	size_t pos = 0, nold = 0, cap = pf_strmap_count(n->known);
	char **old = pf_calloc(cap ? cap : 1, sizeof(char *));
	const char *key;
	void *v;
	while (pf_strmap_next(n->known, &pos, &key, &v))
		if (((known_ver *)v)->refs == 0 && nold < cap)
			old[nold++] = pf_strdup(key);
	for (size_t i = 0; i < nold; i++) {
		if (pf_strmap_remove(n->known, old[i], &v))
			pf_free(v);
		pf_free(old[i]);
	}
	pf_free(old);
}

/* Room for more known versions: the unneeded ones go first; everything
 * when that leaves less than a quarter free (so sweeps stay rare). */
static void known_make_room(px_near *n, size_t more)
{
	if (pf_strmap_count(n->known) + more <= PX_NEAR_MAX_KNOWN)
		return;
	known_sweep(n);
	if (pf_strmap_count(n->known) + more > PX_NEAR_MAX_KNOWN / 4 * 3)
		drop_all(n);
}

static near_entry *entry_find(px_near *n, const char *key)
{
	void *v = NULL;
	if (!n->entries || !pf_strmap_get(n->entries, key, &v))
		return NULL;
	near_entry *e = v;
	if (e->expires_ms <= uv_now(n->loop)) {
		entry_remove(n, e);
		return NULL;
	}
	return e;
}

/* ---- known versions ------------------------------------------------------- */

static bool known_get(const px_near *n, const char *key, uint64_t *value)
{
	const known_ver *k = known_find(n, key);
	if (!k || k->value == 0)
		return false;
	*value = k->value;
	return true;
}

static known_ver *known_add(px_near *n, const char *key)
{
	known_ver *k = known_find(n, key);
	if (!k) {
		k = pf_calloc(1, sizeof(*k));
		pf_strmap_put(n->known, key, k, NULL);
	}
	return k;
}

/* Versions only grow: keep the larger. */
static void known_raise(px_near *n, const char *key, uint64_t value)
{
	known_ver *k = known_add(n, key);
	if (value > k->value)
		k->value = value;
}

static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	if (len == 0 || len > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* "v1,v2,..." into vals (n of them exactly). */
static bool parse_versions(const char *versions, size_t n, uint64_t *vals)
{
	const char *p = versions;
	for (size_t i = 0; i < n; i++) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (!parse_u64(p, len, &vals[i]) || (i + 1 < n && !end) || (i + 1 == n && end))
			return false;
		p = end ? end + 1 : p + len;
	}
	return true;
}

/* ---- interface: entries --------------------------------------------------- */

px_near *px_near_new(uv_loop_t *loop)
{
	px_near *n = pf_calloc(1, sizeof(*n));
	n->loop = loop;
	n->entries = pf_strmap_new();
	n->known = pf_strmap_new();
	n->pending_end = &n->pending;
	uv_check_init(loop, &n->check);
	n->check.data = n;
	return n;
}

static void run_waiters(waiter *w, bool ok)
{
	while (w) {
		waiter *next = w->next;
		w->cb(w->ctx, ok);
		pf_free(w);
		w = next;
	}
}

static void on_check_closed(uv_handle_t *h)
{
	pf_free(h->data);
}

void px_near_free(px_near *n)
{
	if (!n)
		return;
	waiter *w = n->pending;
	n->pending = NULL;
	n->pending_end = &n->pending;
	run_waiters(w, false);
	while (n->head)
		entry_remove(n, n->head);
	pf_strmap_free(n->entries);
	known_free(n->known);
	n->entries = n->known = NULL;
	uv_close((uv_handle_t *)&n->check, on_check_closed); /* frees n */
}

void px_near_configure(px_near *n, qc_redis *redis, size_t max_bytes)
{
	if (!n)
		return;
	n->redis = redis;
	n->max_bytes = redis ? max_bytes : 0;
	evict_to(n, n->max_bytes);
}

bool px_near_enabled(const px_near *n)
{
	return n && n->max_bytes > 0 && n->redis;
}

bool px_near_has(px_near *n, const char *key)
{
	return px_near_enabled(n) && entry_find(n, key) != NULL;
}

bool px_near_get(px_near *n, const char *key, const char **payload, size_t *len, const char **tag)
{
	near_entry *e = px_near_enabled(n) ? entry_find(n, key) : NULL;
	if (!e)
		return false;
	for (size_t i = 0; i < e->ndeps; i++) {
		uint64_t v;
		if (!known_get(n, e->dep_keys[i], &v) || v != e->dep_vals[i]) {
			n->st.stale++;
			entry_remove(n, e);
			return false;
		}
	}
	lru_unlink(n, e);
	lru_push(n, e);
	n->st.hits++;
	*payload = e->payload;
	*len = e->len;
	*tag = e->tag;
	return true;
}

bool px_near_versions(const px_near *n, const qc_keys *vk, pf_sb *out)
{
	if (!px_near_enabled(n))
		return false;
	for (size_t i = 0; i < vk->n; i++) {
		uint64_t v;
		if (!known_get(n, vk->keys[i], &v))
			return false;
		pf_sb_appendf(out, "%s%llu", i ? "," : "", (unsigned long long)v);
	}
	return true;
}

void px_near_learn(px_near *n, const char *seq, const qc_keys *vk, const char *versions)
{
	uint64_t at, vals[QC_MAX_VERSION_KEYS];
	if (!px_near_enabled(n) || !seq || !versions || !parse_u64(seq, strlen(seq), &at) || at < n->synced ||
	    vk->n > QC_MAX_VERSION_KEYS || !parse_versions(versions, vk->n, vals))
		return; /* read before the last sync: a bump in between may be missing */
	known_make_room(n, vk->n);
	for (size_t i = 0; i < vk->n; i++)
		known_raise(n, vk->keys[i], vals[i]);
}

void px_near_put(px_near *n, const char *key, const qc_keys *vk, const char *versions, const char *payload,
		 size_t len, int64_t ttl_ms)
{
	if (!px_near_enabled(n) || ttl_ms <= 0 || !versions || vk->n > QC_MAX_VERSION_KEYS)
		return;
	near_entry *e = pf_calloc(1, sizeof(*e));
	e->dep_vals = pf_calloc(vk->n ? vk->n : 1, sizeof(uint64_t));
	if (!parse_versions(versions, vk->n, e->dep_vals) ||
	    !qc_payload_check(payload, len, e->tag, sizeof(e->tag))) {
		entry_free(e);
		return;
	}
	e->key = pf_strdup(key);
	e->dep_keys = pf_calloc(vk->n ? vk->n : 1, sizeof(char *));
	e->ndeps = vk->n;
	e->bytes = sizeof(*e) + len + strlen(key) + 1;
	for (size_t i = 0; i < vk->n; i++) {
		e->dep_keys[i] = pf_strdup(vk->keys[i]);
		e->bytes += strlen(vk->keys[i]) + 1 + sizeof(char *) + sizeof(uint64_t);
	}
	e->payload = pf_malloc(len ? len : 1);
	memcpy(e->payload, payload, len);
	e->len = len;
	e->expires_ms = uv_now(n->loop) + (uint64_t)ttl_ms;
	if (e->bytes > n->max_bytes) {
		entry_free(e);
		return;
	}
	void *old = NULL;
	if (pf_strmap_get(n->entries, key, &old))
		entry_remove(n, old);
	known_make_room(n, vk->n);
	for (size_t i = 0; i < vk->n; i++)
		known_add(n, vk->keys[i])->refs++; /* its value comes from a lookup or the log */
	pf_strmap_put(n->entries, key, e, NULL);
	lru_push(n, e);
	n->bytes += e->bytes;
	evict_to(n, n->max_bytes);
}

uint64_t px_near_synced(const px_near *n)
{
	return n ? n->synced : 0;
}

px_near_stats px_near_stats_get(const px_near *n)
{
	px_near_stats st = {0};
	if (!n)
		return st;
	st = n->st;
	st.entries = n->entries ? pf_strmap_count(n->entries) : 0;
	st.bytes = n->bytes;
	st.known = n->known ? pf_strmap_count(n->known) : 0;
	return st;
}

/* ---- sync ----------------------------------------------------------------- */

static bool reply_is_string(const redisReply *r)
{
	return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* Syncs may answer out of order (several connections): a log read from an
 * older point applies again harmlessly (versions only grow). */
static void synced_at(px_near *n, uint64_t seq)
{
	if (seq > n->synced)
		n->synced = seq;
}

/* {seq}, {seq, "reset"} or {seq, "log", key, value, ...}: apply it. */
static bool apply_sync(px_near *n, const redisReply *reply)
{
	uint64_t seq;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 || !reply_is_string(reply->element[0]) ||
	    !parse_u64(reply->element[0]->str, reply->element[0]->len, &seq))
		return false;
	if (reply->elements == 1) {
		synced_at(n, seq);
		return true;
	}
	const redisReply *what = reply->element[1];
	if (!reply_is_string(what))
		return false;
	if (strcmp(what->str, "log") != 0 || reply->elements % 2 != 0) {
		drop_all(n);
		synced_at(n, seq);
		return strcmp(what->str, "reset") == 0;
	}
	for (size_t i = 2; i + 1 < reply->elements; i += 2) {
		const redisReply *k = reply->element[i], *v = reply->element[i + 1];
		uint64_t value;
		if (!reply_is_string(k) || !reply_is_string(v) || !parse_u64(v->str, v->len, &value)) {
			drop_all(n);
			synced_at(n, seq);
			return false;
		}
		known_ver *kv = known_find(n, k->str);
		if (kv && value > kv->value)
			kv->value = value;
	}
	synced_at(n, seq);
	return true;
}

static void on_sync(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	(void)r;
	near_sync *sy = ctx;
	px_near *n = sy->near;
	n->inflight--;
	bool ok = status == QC_OK && n->known && apply_sync(n, reply);
	if (!ok)
		n->st.sync_errors++;
	run_waiters(sy->waiters, ok);
	pf_free(sy);
}

/* Send a sync for everything pending (from the check handle). */
static void send_sync(px_near *n)
{
	char last[24];
	snprintf(last, sizeof(last), "%llu", (unsigned long long)n->synced);
	const char *argv[] = {last};
	near_sync *sy = pf_malloc(sizeof(*sy));
	*sy = (near_sync){.near = n, .waiters = n->pending};
	n->pending = NULL;
	n->pending_end = &n->pending;
	n->st.syncs++;
	if (!n->redis || qc_redis_eval(n->redis, on_sync, sy, QC_SYNC_SCRIPT, 0, 1, argv, NULL) < 0) {
		n->st.sync_errors++;
		run_waiters(sy->waiters, false);
		pf_free(sy);
		return;
	}
	n->inflight++;
}

static void on_check(uv_check_t *h)
{
	px_near *n = h->data;
	uv_check_stop(h);
	n->check_active = false;
	if (n->pending) {
		send_sync(n);
		qc_redis_flush(n->redis); /* redis.c's own flush would only run a turn later */
	}
}

static void start_check(px_near *n)
{
	if (n->check_active)
		return;
	n->check_active = true;
	uv_check_start(&n->check, on_check);
}

void px_near_wait(px_near *n, px_near_fn cb, void *ctx)
{
	waiter *w = pf_malloc(sizeof(*w));
	*w = (waiter){.cb = cb, .ctx = ctx};
	*n->pending_end = w;
	n->pending_end = &w->next;
	start_check(n);
}
