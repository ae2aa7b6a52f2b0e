/*
 * rcache_int.h — what rcache.c (lookups, hits, captures, invalidation)
 * shares with rcache_fill.c (N+1 batches).  Not an interface: only those
 * two files include it.
 */
#ifndef PGFOLD_PROXY_RCACHE_INT_H
#define PGFOLD_PROXY_RCACHE_INT_H

#include <hiredis/hiredis.h>
#include <uv.h>

#include "../cache/key.h"
#include "../cache/redis.h"
#include "rcache.h"
#include "rcache_near.h"

#define PX_RC_MAX_PENDING 64 /* tables a transaction may write before it counts as the whole database */

typedef enum px_rc_phase {
	PX_RC_IDLE,
	PX_RC_LOOKUP,  /* EVAL in flight; the client's Query is held */
	PX_RC_CAPTURE, /* miss forwarded: copying its answer */
} px_rc_phase;

/* An extended group held for a lookup: what its answer must look like. */
typedef struct rc_group {
	bool ext;              /* the held message is an extended group, not a Query */
	size_t parse_len;      /* its Parse (0: none) */
	size_t bind_end;       /* where its Bind ends */
	bool describe;         /* the portal is described: RowDescription wanted */
	bool unnamed;          /* binds the unnamed statement without a Parse */
	int32_t max_rows;      /* Execute's row limit (0: all) */
} rc_group;

struct px_rcache {
	px_session *s;
	px_rc_phase phase;
	uint64_t seq;          /* bumped whenever a command's answer stops mattering */
	uint64_t sent_us;      /* LOOKUP: when the EVAL was sent */
	uv_timer_t timer;      /* lookup / bump deadline */
	bool timer_open;
	uint8_t *query;        /* LOOKUP: the client's Query message */
	size_t query_len;
	char key[QC_ENTRY_KEY_LEN + 1];
	int ttl_ms;
	char *versions;        /* CAPTURE: the versions the lookup read */
	pf_sb capture;         /* CAPTURE: the answer so far */
	bool capture_ok;
	size_t npending;       /* version keys written by the running transaction */
	char *pending[PX_RC_MAX_PENDING];
	bool pending_db;       /* ... or the whole database */
	size_t nbump;          /* committed, to bump at the ReadyForQuery */
	char *bump[PX_RC_MAX_PENDING + 1];
	bool bumping;          /* a ReadyForQuery is held until the bump is answered */
	bool bump_fenced;      /* ... and, its fate unknown, until any lease has run out */
	bool temp_tables;      /* the session made a temporary table: an unqualified name may be one */
	rc_group grp;          /* LOOKUP / CAPTURE: the extended group query holds (grp.ext) */
	bool inject;           /* CAPTURE: pgfold added a Describe: the RowDescription is not the client's */
	bool batch_on_miss;    /* LOOKUP: an N+1 child the batcher gave first refusal: a miss goes back */
	bool redispatching;    /* ... and is being given to it now: do not claim it again */
	bool fill_armed;        /* an N+1 batch is running: its answer may fill the cache ... */
	uint64_t fill_after_seq; /* ... against this bump-log sequence, read before it was sent */
	bool claiming;         /* px_rcache_batch_claim() is asking: a cold shape is not captured */
	uint64_t fingerprint;  /* LOOKUP: the statement's shape */
	bool cold;             /* CAPTURE: a cold shape's, not looked up: stored with QC_FILL_SCRIPT ... */
	uint64_t cold_after_seq; /* ... against this bump-log sequence (read before it was sent) ... */
	qc_keys cold_vk;       /* ... and these version keys */
	qc_keys look_vk;       /* LOOKUP / CAPTURE: the version keys the lookup reads */
};

px_rcache_stats *px_rc_stats(px_session *s);
/* Redis configured and cache.mode not off. */
bool px_rc_cache_on(const px_session *s);
/* The session's cache state, made on first use. */
px_rcache *px_rc_of(px_session *s);
/* May statement st be cached in the session as it is now (idle or not)? */
qc_bypass px_rc_policy(px_session *s, const rw_stmt *st, const char *sql, size_t len, int *ttl_ms);
/* The key input of a statement in the session ('t' simple Query, 'x' extended). */
qc_key_input px_rc_key_input(const px_session *s, char format, const char *sql, size_t len);
/* The latest bump-log sequence pgfold has seen (lookups, near-cache syncs):
 * read before now.  False when none was seen yet. */
bool px_rc_log_seq(px_session *s, uint64_t *seq);
/* The answer to a QC_FILL_SCRIPT (ctx: the server). */
void px_rc_on_filled(qc_redis *r, int status, const redisReply *reply, void *ctx);
/* A held child the batcher gave first refusal missed: offer it to the
 * batcher again.  True when the batcher took it. */
bool px_rc_redispatch(px_session *s);

#endif /* PGFOLD_PROXY_RCACHE_INT_H */
