/*
 * rcache_retry.c — bumps that failed, retried (rcache_retry.h): a map from
 * version key to the number of the add that last put it there, so a retry
 * that succeeds clears only the keys it covered (one added again while it
 * was in flight waits for the next).
 */
#include "rcache_retry.h"

#include <hiredis/hiredis.h>
#include <stdint.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/strmap.h"

struct px_bump_retry {
	uv_loop_t *loop;
	qc_redis *redis;
	px_near *near;
	pf_strmap *keys;   /* version key -> uint64_t * (the add that put it there) */
	uint64_t adds;
	bool inflight;     /* one retry at a time */
	bool closing;
	uv_timer_t timer;
};

/* One retry in flight: its keys and the last add it covers. */
typedef struct retry_call {
	px_bump_retry *br;
	uint64_t upto;
	size_t n;
	char *keys[PX_BUMP_RETRY_BATCH];
} retry_call;

static void on_timer(uv_timer_t *t);

px_bump_retry *px_bump_retry_new(uv_loop_t *loop)
{
	px_bump_retry *br = pf_calloc(1, sizeof(*br));
	br->loop = loop;
	br->keys = pf_strmap_new();
	uv_timer_init(loop, &br->timer);
	br->timer.data = br;
	return br;
}

static void on_closed(uv_handle_t *h)
{
	pf_free(h->data);
}

void px_bump_retry_free(px_bump_retry *br)
{
	if (!br)
		return;
	pf_strmap_free_values(br->keys);
	br->keys = NULL;
	uv_close((uv_handle_t *)&br->timer, on_closed);
}

void px_bump_retry_configure(px_bump_retry *br, qc_redis *redis, px_near *near)
{
	if (!br)
		return;
	br->redis = redis;
	br->near = near;
}

static void put_key(px_bump_retry *br, const char *key)
{
	void *v = NULL;
	if (!pf_strmap_get(br->keys, key, &v)) {
		v = pf_malloc(sizeof(uint64_t));
		pf_strmap_put(br->keys, key, v, NULL);
	}
	*(uint64_t *)v = br->adds;
}

void px_bump_retry_add(px_bump_retry *br, const char *const *keys, size_t n)
{
	if (!br || !br->keys || n == 0)
		return;
	br->adds++;
	for (size_t i = 0; i < n; i++) {
		if (pf_strmap_count(br->keys) >= PX_BUMP_RETRY_MAX) {
			put_key(br, QC_KEY_GLOBAL); /* stands for everything beyond the bound */
			break;
		}
		put_key(br, keys[i]);
	}
	if (!uv_is_active((uv_handle_t *)&br->timer))
		uv_timer_start(&br->timer, on_timer, PX_BUMP_RETRY_MS, PX_BUMP_RETRY_MS);
}

bool px_bump_retry_blocks(const px_bump_retry *br, const qc_keys *vk)
{
	if (!br || !br->keys || pf_strmap_count(br->keys) == 0)
		return false;
	void *v;
	for (size_t i = 0; i < vk->n; i++)
		if (pf_strmap_get(br->keys, vk->keys[i], &v))
			return true;
	return false;
}

size_t px_bump_retry_pending(const px_bump_retry *br)
{
	return br && br->keys ? pf_strmap_count(br->keys) : 0;
}

static void call_free(retry_call *c)
{
	for (size_t i = 0; i < c->n; i++)
		pf_free(c->keys[i]);
	pf_free(c);
}

static void on_retried(qc_redis *r, int status, const redisReply *reply, void *ctx)
{
	(void)r;
	retry_call *c = ctx;
	px_bump_retry *br = c->br;
	br->inflight = false;
	if (status == QC_OK && reply && reply->type == REDIS_REPLY_ARRAY && br->keys) {
		px_near_after_bump(br->near, reply, NULL, NULL);
		for (size_t i = 0; i < c->n; i++) {
			void *v = NULL;
			if (pf_strmap_get(br->keys, c->keys[i], &v) && *(uint64_t *)v <= c->upto &&
			    pf_strmap_remove(br->keys, c->keys[i], &v))
				pf_free(v);
		}
	}
	call_free(c);
}

/* Once a second while keys wait: bump up to PX_BUMP_RETRY_BATCH of them. */
static void on_timer(uv_timer_t *t)
{
	px_bump_retry *br = t->data;
	if (!br->keys || pf_strmap_count(br->keys) == 0) {
		uv_timer_stop(t);
		return;
	}
	if (br->inflight || qc_redis_state(br->redis) != QC_STATE_UP)
		return;
	retry_call *c = pf_calloc(1, sizeof(*c));
	c->br = br;
	c->upto = br->adds;
	size_t pos = 0;
	const char *key;
	void *v;
	while (c->n < PX_BUMP_RETRY_BATCH && pf_strmap_next(br->keys, &pos, &key, &v))
		c->keys[c->n++] = pf_strdup(key);
	const char *argv[PX_BUMP_RETRY_BATCH + 2];
	for (size_t i = 0; i < c->n; i++)
		argv[i] = c->keys[i];
	argv[c->n] = px_near_id(br->near);
	argv[c->n + 1] = px_near_channel(br->near);
	if (qc_redis_eval(br->redis, on_retried, c, QC_BUMP_SCRIPT, (int)c->n, (int)c->n + 2, argv, NULL) < 0) {
		call_free(c);
		return;
	}
	br->inflight = true;
}
