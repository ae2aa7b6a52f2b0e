/*
 * batcher.h — answering N+1 children from batches (nplusone.mode = rewrite).
 *
 * When a child of an active pattern arrives as a simple Query on an idle
 * session, pgfold sends the backend one batched statement for the child's
 * key and the parent's next keys (rewrite/batch.h), answers the child from
 * its group and keeps the other groups; the following children with those
 * keys are answered from that prefetch buffer without touching the backend.
 * Inside a transaction block the batch runs under a savepoint; a batch that
 * fails is undone, the child is sent unchanged, the pattern is disabled and
 * the client never sees the batch's error.
 *
 * What the client receives is what the child alone would have produced:
 * RowDescription and DataRows from the batch with the key columns removed,
 * CommandComplete "SELECT n", ReadyForQuery with the session's status.
 */
#ifndef PGFOLD_PROXY_BATCHER_H
#define PGFOLD_PROXY_BATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/strbuf.h"
#include "../rewrite/analysis.h"
#include "../rewrite/nplusone.h"

typedef struct px_session px_session;

#define PX_MAX_PREFETCH 4 /* patterns with prefetched answers per session */

typedef struct px_group {
	char *key;
	size_t key_len;
	pf_sb rows;     /* DataRow messages, key columns removed */
	uint32_t nrows;
} px_group;

typedef struct px_prefetch {
	rw_np_pattern *pattern; /* a reference; NULL when the slot is free */
	uint64_t created_ms;
	bool in_block;          /* built inside a transaction block: dies with it */
	bool snapshot_block;    /* ... a REPEATABLE READ / SERIALIZABLE one: no staleness limit */
	pf_sb rowdesc;          /* the child's RowDescription */
	pf_sb child_text;       /* the batched child's text with its key left out: a later
	                           child is answered from here only when its text is equal
	                           but for the key (other literals may differ in one shape) */
	size_t ngroups;
	px_group *groups;       /* one per key, in key order */
	size_t bytes;
} px_prefetch;

typedef enum px_batch_phase {
	PX_BATCH_IDLE,
	PX_BATCH_RUNNING, /* the batch is on the backend */
	PX_BATCH_UNDOING, /* it failed inside a block: rolling back to the savepoint */
} px_batch_phase;

typedef struct px_batcher {
	px_batch_phase phase;
	bool failed;
	char reason[160];
	size_t extra_columns;
	uint8_t *child_msg;  /* the client's Query, sent unchanged if the batch fails */
	size_t child_len;
	px_prefetch building; /* the batch's answers as they arrive */
	px_prefetch bufs[PX_MAX_PREFETCH];
	size_t buffered_bytes;
	uint64_t over_budget_until_ms; /* a batch did not fit: relay children unchanged until then */
} px_batcher;

/* A simple Query holding one statement arrived on an idle session: answer it
 * from a prefetch buffer or a new batch.  True when pgfold took the message
 * (it must not be forwarded); msg is the whole Query message. */
bool px_batch_query(px_session *s, const rw_analysis *an, const char *sql, const uint8_t *msg, size_t msg_len);
/* Backend bytes while a batch is running. */
void px_batch_backend(px_session *s);
/* Drop every prefetched answer (a write, DDL, session change, block end). */
void px_batch_drop_all(px_session *s);
/* ReadyForQuery relayed with this status: a block that ended takes its buffers. */
void px_batch_ready(px_session *s, char status);
void px_batch_free(px_session *s);

#endif /* PGFOLD_PROXY_BATCHER_H */
