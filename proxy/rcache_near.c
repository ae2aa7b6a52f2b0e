/*
 * rcache_near.c — the near cache (rcache_near.h): entries in a map with an
 * LRU list, the known versions (reference-counted by the entries) in
 * another map, the syncs with Redis's bump log (the statements that arrived
 * during one loop turn share one EVAL, sent from a check handle at the
 * turn's end; several may be in flight), the lease (renewed from a timer),
 * the channel's announcements, and the own bumps waiting for other
 * instances' acknowledgements.
 */
#include "rcache_near.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/strbuf.h"
#include "../common/strmap.h"

typedef struct near_entry near_entry;
struct near_entry {
	near_entry *prev, *next; /* LRU list, most recent first */
	char *key;
	uint64_t expires_ms;     /* loop time */
	size_t ndeps;
	struct known_ver **deps; /* the versions it depends on (holding a reference each) ... */
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
	bool renewal;      /* renews (or ends) the lease */
	bool leases;       /* ... asking for one */
	uint64_t sent_ns;  /* uv_hrtime() when sent */
} near_sync;

/* One of this instance's bumps, waiting until every other instance holding
 * a lease acknowledged it or that lease ran out (the bump's answer said how
 * long each has left). */
typedef struct bump_wait bump_wait;
struct bump_wait {
	bump_wait *prev, *next;
	px_near *near;
	uint64_t seq;
	size_t n;
	char **ids;
	uint64_t *until_ns;   /* each lease's end as seen from here */
	uint64_t min_ns;      /* a young registry: not before this */
	uv_timer_t timer;
	px_near_fn cb;
	void *ctx;
};

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
	/* the lease (rcache_near.h) */
	char id[24];             /* this instance in the lease registry */
	char channel[48];        /* where bumps and acknowledgements are announced */
	bool sub_active;         /* subscribed to it right now */
	uint64_t lease_until_ns; /* uv_hrtime(): answer without a sync until then; 0: no lease */
	bool registered;         /* the registry may hold a lease of ours */
	bool renewing;           /* a renewal in flight */
	uint64_t acked;          /* the last sequence this instance acknowledged */
	bool sync_wanted;        /* another instance's bump was announced: sync at the turn's end */
	uv_timer_t renew;
	pf_strmap *acks;         /* instance id -> uint64_t * (largest sequence it acknowledged) */
	bump_wait *waits;        /* own bumps waiting for acknowledgements */
	unsigned handles;        /* uv handles not closed yet (frees n at 0) */
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
	pf_free(e->deps);
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
	for (size_t i = 0; i < e->ndeps; i++)
		if (e->deps[i]->refs)
			e->deps[i]->refs--;
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
	pf_strmap_free_values(m);
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

/* The same for a version only when it is known already. */
static void known_raise_existing(px_near *n, const char *key, uint64_t value)
{
	known_ver *k = known_find(n, key);
	if (k && value > k->value)
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
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
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

static bool leased(const px_near *n);

/* ---- interface: entries --------------------------------------------------- */

static void on_renew(uv_timer_t *t);

/* A random id for the lease registry (the time and pid if randomness fails). */
static void make_id(px_near *n)
{
	uint8_t r[8];
	if (uv_random(NULL, NULL, r, sizeof(r), 0, NULL) != 0) {
		uint64_t x = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
		memcpy(r, &x, sizeof(r));
	}
	pf_hex(r, sizeof(r), n->id);
}

px_near *px_near_new(uv_loop_t *loop)
{
	px_near *n = pf_calloc(1, sizeof(*n));
	n->loop = loop;
	n->entries = pf_strmap_new();
	n->known = pf_strmap_new();
	n->acks = pf_strmap_new();
	n->pending_end = &n->pending;
	make_id(n);
	snprintf(n->channel, sizeof(n->channel), "pgfold:bus:0");
	uv_check_init(loop, &n->check);
	n->check.data = n;
	uv_timer_init(loop, &n->renew);
	n->renew.data = n;
	uv_timer_start(&n->renew, on_renew, PX_NEAR_RENEW_MS, PX_NEAR_RENEW_MS);
	n->handles = 2;
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

static void on_handle_closed(uv_handle_t *h)
{
	px_near *n = h->data;
	if (--n->handles == 0)
		pf_free(n);
}

static void wait_finish(bump_wait *w, bool ok);

static void acks_free(pf_strmap *m)
{
	pf_strmap_free_values(m);
}

static void acks_clear(px_near *n)
{
	acks_free(n->acks);
	n->acks = pf_strmap_new();
}

void px_near_free(px_near *n)
{
	if (!n)
		return;
	n->max_bytes = 0; /* what the callbacks below do finds it off */
	while (n->pending) { /* a callback may wait again: that one is answered too */
		waiter *w = n->pending;
		n->pending = NULL;
		n->pending_end = &n->pending;
		run_waiters(w, false);
	}
	while (n->waits)
		wait_finish(n->waits, false);
	while (n->head)
		entry_remove(n, n->head);
	pf_strmap_free(n->entries);
	known_free(n->known);
	acks_free(n->acks);
	n->entries = n->known = n->acks = NULL;
	uv_close((uv_handle_t *)&n->check, on_handle_closed);
	uv_close((uv_handle_t *)&n->renew, on_handle_closed); /* the last one frees n */
}

void px_near_configure(px_near *n, qc_redis *redis, size_t max_bytes)
{
	if (!n)
		return;
	n->redis = redis;
	n->max_bytes = redis ? max_bytes : 0;
	snprintf(n->channel, sizeof(n->channel), "pgfold:bus:%d", qc_redis_database(redis));
	evict_to(n, n->max_bytes);
	if (n->max_bytes == 0)
		n->lease_until_ns = 0; /* off: the next renewal ends the lease in the registry too */
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
		uint64_t v = e->deps[i]->value; /* 0: not known */
		if (v == 0 || v != e->dep_vals[i]) {
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
	e->deps = pf_calloc(vk->n ? vk->n : 1, sizeof(known_ver *));
	e->bytes = sizeof(*e) + len + strlen(key) + 1;
	for (size_t i = 0; i < vk->n; i++)
		e->bytes += strlen(vk->keys[i]) + 1 + sizeof(known_ver *) + sizeof(uint64_t);
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
	/* A version an entry refers to stays in `known` until the entry goes
	 * (known_sweep spares referenced ones; drop_all removes the entries first). */
	e->ndeps = vk->n;
	for (size_t i = 0; i < vk->n; i++) {
		e->deps[i] = known_add(n, vk->keys[i]); /* its value comes from a lookup or the log */
		e->deps[i]->refs++;
	}
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
	st.lease_held = leased(n);
	return st;
}

/* ---- sync ----------------------------------------------------------------- */

static bool reply_is_string(const redisReply *r)
{
	return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static void acks_clear(px_near *n);

/* Redis's sequence went backwards (restored from an older snapshot, a
 * failover to a replica behind): what was applied and acknowledged belongs
 * to a log that is gone. */
static void went_back(px_near *n, uint64_t seq)
{
	n->synced = seq;
	n->acked = 0;
	acks_clear(n);
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
		if (seq < n->synced)
			went_back(n, seq);
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
		known_raise_existing(n, k->str, value);
	}
	synced_at(n, seq);
	return true;
}

/* ---- the lease ------------------------------------------------------------ */

/* May a statement be answered now without a sync?  Only under a lease
 * granted by a renewal whose answer (and the log it brought) was applied.
 * A bump announced but not applied here yet does not stop it: this
 * instance has not acknowledged it, so its COMMIT has not returned. */
static bool leased(const px_near *n)
{
	return px_near_enabled(n) && n->sub_active && n->synced > 0 && n->lease_until_ns > uv_hrtime();
}

/* Tell the other instances what is applied here: only ever after it was
 * applied (an acknowledgement is what lets their COMMIT return). */
static void publish_ack(px_near *n, bool again)
{
	if (!n->redis || n->synced == 0 || (n->synced <= n->acked && !again))
		return;
	char msg[64];
	snprintf(msg, sizeof(msg), "a %llu %s", (unsigned long long)n->synced, n->id);
	if (qc_redis_command(n->redis, NULL, NULL, "PUBLISH %s %s", n->channel, msg) == 0) {
		n->acked = n->synced;
		n->st.acks++;
		qc_redis_flush(n->redis);
	}
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
	if (sy->renewal) {
		n->renewing = false;
		/* the lease counts from the sending, with a margin for clocks that
		 * do not run at quite the same rate; a renewal that failed leaves
		 * the last one running out */
		if (ok && sy->leases)
			n->lease_until_ns = sy->sent_ns + (uint64_t)PX_NEAR_LEASE_VALID_MS * 1000000u;
		else if (!sy->leases)
			n->lease_until_ns = 0;
	}
	if (ok)
		publish_ack(n, false);
	run_waiters(sy->waiters, ok);
	pf_free(sy);
}

/* Send a sync: for the pending statements, an announced bump, or, from the
 * renewal timer, the lease (lease: "-", "0" or its length). */
static void send_sync(px_near *n, near_sync *sy, const char *lease)
{
	char last[24];
	snprintf(last, sizeof(last), "%llu", (unsigned long long)n->synced);
	const char *argv[] = {last, n->id, lease};
	sy->near = n;
	sy->sent_ns = uv_hrtime();
	n->st.syncs++;
	if (!n->redis || qc_redis_eval(n->redis, on_sync, sy, QC_SYNC_SCRIPT, 0, 3, argv, NULL) < 0) {
		n->st.sync_errors++;
		run_waiters(sy->waiters, false);
		pf_free(sy);
		return;
	}
	n->inflight++;
	if (sy->renewal)
		n->renewing = true;
}

/* The statements that arrived this turn: answered at once under a lease,
 * else after a sync sent now; a bump another instance announced is synced
 * (and acknowledged once applied) at once too. */
static void sync_pending(px_near *n)
{
	/* answered statements may let their clients' next ones wait too: those
	 * are answered in the same turn (a check started now would run only
	 * after the loop's next poll) */
	while (n->pending && leased(n)) {
		waiter *w = n->pending;
		n->pending = NULL;
		n->pending_end = &n->pending;
		n->st.leased++;
		run_waiters(w, true);
	}
	if (!n->pending && !n->sync_wanted)
		return;
	near_sync *sy = pf_calloc(1, sizeof(*sy));
	sy->waiters = n->pending;
	n->pending = NULL;
	n->pending_end = &n->pending;
	n->sync_wanted = false;
	send_sync(n, sy, "-");
	qc_redis_flush(n->redis); /* redis.c's own flush would only run a turn later */
}

static void on_check(uv_check_t *h)
{
	px_near *n = h->data;
	uv_check_stop(h);
	n->check_active = false;
	sync_pending(n);
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

/* Every PX_NEAR_RENEW_MS: renew the lease, or end it when the near cache is
 * off or empty or the channel is not heard. */
static void on_renew(uv_timer_t *t)
{
	px_near *n = t->data;
	/* an instance with nothing in memory has nothing to answer under a
	 * lease: holding none spares other instances' writes the wait for it */
	bool want = px_near_enabled(n) && n->sub_active && qc_redis_state(n->redis) == QC_STATE_UP &&
		    pf_strmap_count(n->entries) > 0;
	if (n->renewing || (!want && !n->registered) || !n->redis)
		return;
	near_sync *sy = pf_calloc(1, sizeof(*sy));
	sy->renewal = true;
	sy->leases = want;
	n->registered = want;
	if (!want)
		n->lease_until_ns = 0;
	send_sync(n, sy, want ? QC_LEASE_MS : "0");
}

void px_near_release(px_near *n)
{
	if (!n || !n->registered || !n->redis)
		return;
	n->max_bytes = 0; /* no lease is taken again */
	n->lease_until_ns = 0;
	n->registered = false;
	const char *argv[] = {"0", n->id, "0"};
	if (qc_redis_eval(n->redis, NULL, NULL, QC_SYNC_SCRIPT, 0, 3, argv, NULL) == 0)
		qc_redis_flush(n->redis);
}

void px_near_sub_state(px_near *n, bool active)
{
	if (!n)
		return;
	n->sub_active = active;
	if (!active)
		n->lease_until_ns = 0; /* announcements may be missed: no leased answers */
}

/* ---- announcements and acknowledgements ---------------------------------- */

static bool parse_announcement(const char *p, size_t len, char *kind, uint64_t *seq, char *id, size_t idsize)
{
	const char *end = p + len, *sp1, *sp2;
	if (len < 5 || p[1] != ' ' || (p[0] != 'a' && p[0] != 'b'))
		return false;
	*kind = p[0];
	sp1 = p + 2;
	sp2 = memchr(sp1, ' ', (size_t)(end - sp1));
	if (!sp2 || !parse_u64(sp1, (size_t)(sp2 - sp1), seq) || (size_t)(end - sp2 - 1) >= idsize ||
	    end - sp2 - 1 == 0)
		return false;
	memcpy(id, sp2 + 1, (size_t)(end - sp2 - 1));
	id[end - sp2 - 1] = '\0';
	return true;
}

static void wait_check(bump_wait *w);

static void note_ack(px_near *n, const char *id, uint64_t seq)
{
	void *v = NULL;
	if (!pf_strmap_get(n->acks, id, &v)) {
		if (pf_strmap_count(n->acks) >= PX_NEAR_MAX_PEERS) {
			acks_free(n->acks); /* forgotten acknowledgements: waits run to the lease's end */
			n->acks = pf_strmap_new();
		}
		v = pf_calloc(1, sizeof(uint64_t));
		pf_strmap_put(n->acks, id, v, NULL);
	}
	uint64_t *acked = v;
	if (seq > *acked)
		*acked = seq;
	for (bump_wait *w = n->waits, *next; w; w = next) {
		next = w->next;
		wait_check(w);
	}
}

void px_near_message(px_near *n, const char *payload, size_t len)
{
	char kind, id[sizeof(n->id)];
	uint64_t seq;
	if (!n || !n->acks || !parse_announcement(payload, len, &kind, &seq, id, sizeof(id)) ||
	    strcmp(id, n->id) == 0)
		return;
	if (kind == 'a') {
		note_ack(n, id, seq);
		return;
	}
	if (seq <= n->synced) {
		publish_ack(n, true); /* applied already: say so (the last one may have been missed) */
		return;
	}
	n->sync_wanted = true;
	start_check(n);
}

/* ---- own bumps ------------------------------------------------------------ */

static void wait_free(bump_wait *w);

static void on_wait_closed(uv_handle_t *h)
{
	wait_free(h->data);
}

static void wait_finish(bump_wait *w, bool ok)
{
	px_near *n = w->near;
	if (w->prev)
		w->prev->next = w->next;
	else
		n->waits = w->next;
	if (w->next)
		w->next->prev = w->prev;
	uv_timer_stop(&w->timer);
	w->cb(w->ctx, ok);
	uv_close((uv_handle_t *)&w->timer, on_wait_closed);
}

static uint64_t acked_by(const px_near *n, const char *id)
{
	void *v = NULL;
	return pf_strmap_get(n->acks, id, &v) ? *(uint64_t *)v : 0;
}

static void on_wait_timer(uv_timer_t *t)
{
	wait_check(t->data);
}

/* When the wait is over: every lease acknowledged the bump or ran out, and
 * the registry is old enough. */
static uint64_t wait_ready_ns(const bump_wait *w, bool *all_acked)
{
	uint64_t ready = w->min_ns;
	*all_acked = true;
	for (size_t i = 0; i < w->n; i++)
		if (acked_by(w->near, w->ids[i]) < w->seq) {
			*all_acked = false;
			if (w->until_ns[i] > ready)
				ready = w->until_ns[i];
		}
	return ready;
}

static void wait_check(bump_wait *w)
{
	bool all_acked;
	uint64_t now = uv_hrtime(), ready = wait_ready_ns(w, &all_acked);
	if (ready <= now) {
		if (!all_acked)
			w->near->st.bump_wait_timeouts++;
		wait_finish(w, true);
		return;
	}
	uv_timer_start(&w->timer, on_wait_timer, (ready - now) / 1000000u + 1, 0);
}

static bool reply_u64(const redisReply *r, uint64_t *out)
{
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
		*out = (uint64_t)r->integer;
		return true;
	}
	return reply_is_string(r) && parse_u64(r->str, r->len, out);
}

/* The new values of an own bump (sequence seq): known at once.  A version
 * not known yet is created too (so an older value a lookup brings later
 * cannot win) unless a sync applied the log past seq already: that sync
 * skipped the unknown key's later bumps, and this value may be older. */
static void apply_own(px_near *n, const redisReply *reply, size_t from, uint64_t seq)
{
	if (!px_near_enabled(n))
		return;
	bool create = seq >= n->synced;
	for (size_t i = from; i + 1 < reply->elements; i += 2) {
		const redisReply *k = reply->element[i];
		uint64_t value;
		if (!reply_is_string(k) || !reply_u64(reply->element[i + 1], &value))
			continue;
		if (create) {
			known_make_room(n, 1);
			known_raise(n, k->str, value);
		} else {
			known_raise_existing(n, k->str, value);
		}
	}
}

static void wait_free(bump_wait *w)
{
	for (size_t i = 0; i < w->n; i++)
		pf_free(w->ids[i]);
	pf_free(w->ids);
	pf_free(w->until_ns);
	pf_free(w);
}

bool px_near_after_bump(px_near *n, const redisReply *reply, px_near_fn cb, void *ctx)
{
	uint64_t seq, wait_ms, count;
	if (!n || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    !reply_u64(reply->element[0], &seq) || !reply_u64(reply->element[1], &wait_ms) ||
	    !reply_u64(reply->element[2], &count) || count > (reply->elements - 3) / 2)
		return false;
	if (seq < n->synced)
		went_back(n, seq); /* an acknowledgement from the old log proves nothing */
	apply_own(n, reply, 3 + 2 * count, seq);
	if ((count == 0 && wait_ms == 0) || !cb)
		return false;
	/* what Redis reports is bounded by a lease: a stepped clock cannot make
	 * a COMMIT wait longer */
	uint64_t now = uv_hrtime();
	bump_wait *w = pf_calloc(1, sizeof(*w));
	*w = (bump_wait){.near = n, .seq = seq, .cb = cb, .ctx = ctx};
	w->min_ns = now + (wait_ms < PX_NEAR_LEASE_MS ? wait_ms : PX_NEAR_LEASE_MS) * 1000000u;
	w->ids = pf_calloc(count ? count : 1, sizeof(char *));
	w->until_ns = pf_calloc(count ? count : 1, sizeof(uint64_t));
	for (size_t i = 0; i < count; i++) {
		const redisReply *id = reply->element[3 + 2 * i];
		uint64_t left = PX_NEAR_LEASE_MS;
		if (!reply_u64(reply->element[4 + 2 * i], &left) || left > PX_NEAR_LEASE_MS)
			left = PX_NEAR_LEASE_MS;
		w->ids[w->n] = pf_strdup(reply_is_string(id) ? id->str : "");
		w->until_ns[w->n++] = now + (left + 1) * 1000000u;
	}
	bool all_acked;
	uint64_t ready = wait_ready_ns(w, &all_acked);
	if (count > 0)
		n->st.bump_waits++; /* even when acknowledged before the answer came */
	if (ready <= now) {
		wait_free(w);
		return false;
	}
	uv_timer_init(n->loop, &w->timer);
	w->timer.data = w;
	w->next = n->waits;
	if (n->waits)
		n->waits->prev = w;
	n->waits = w;
	uv_timer_start(&w->timer, on_wait_timer, (ready - now) / 1000000u + 1, 0);
	return true;
}

const char *px_near_id(const px_near *n)
{
	return n ? n->id : "";
}

const char *px_near_channel(const px_near *n)
{
	return n ? n->channel : "";
}
