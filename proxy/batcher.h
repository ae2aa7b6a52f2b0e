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
 *
 * Extended protocol: a child sent as one group [Parse ""] Bind [Describe
 * portal] Execute Sync (protocol/pgwire.h, pgw_ext_group) on an idle session
 * is answered the same way, with ParseComplete / BindComplete in front and
 * the RowDescription only when the portal was described; its bound values
 * are inlined into the batch (rewrite/batch.h).  Parameters the Parse left
 * untyped (node-postgres, psycopg 3's strings) take the types PostgreSQL
 * infers: the first such child is sent behind a Describe of its statement,
 * whose ParameterDescription is kept per statement text.  The batch goes out
 * as a simple Query, which destroys the backend's unnamed statement, so the
 * Parse that made it is sent again after the batch.  A child answered from a
 * buffer does not reach the backend, Parse included: when that Parse differs
 * from the backend's unnamed statement it is deferred, and the session sends
 * it in front of the first message that uses the unnamed statement (Bind or
 * Describe of ""), swallowing its ParseComplete (session.c).  Such a Parse
 * is byte-equal to one the backend accepted in this session before.
 */
#ifndef PGFOLD_PROXY_BATCHER_H
#define PGFOLD_PROXY_BATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/strbuf.h"
#include "../protocol/pgwire.h"
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
	pf_sb identity;         /* the batched child's text with its key left out, then its other
	                           bound values: a later child is answered from here only when
	                           equal but for the key (other literals may differ in one shape) */
	size_t ngroups;
	px_group *groups;       /* one per key, in key order */
	size_t bytes;
	unsigned mismatches;    /* children of the pattern not equal to it, since one was served */
} px_prefetch;

/* What the client's messages asked for, in front of the rows. */
typedef struct px_answer_form {
	bool parse_complete;
	bool bind_complete;
	bool row_desc;
	int32_t max_rows;    /* Execute's row limit (0: all): more rows end with PortalSuspended */
} px_answer_form;

typedef enum px_batch_phase {
	PX_BATCH_IDLE,
	PX_BATCH_RUNNING,    /* the batch is on the backend */
	PX_BATCH_UNDOING,    /* it failed inside a block: rolling back to the savepoint */
	PX_BATCH_DESCRIBING, /* learning a statement's parameter types (the child follows it) */
} px_batch_phase;

/* What pgfold knows of the backend's unnamed prepared statement. */
typedef enum px_unnamed_state {
	PX_UNNAMED_NONE,    /* there is none (a simple Query or Close destroyed it) */
	PX_UNNAMED_KNOWN,   /* made by the Parse message in px_batcher.unnamed */
	PX_UNNAMED_UNKNOWN, /* made by a Parse pgfold did not keep */
} px_unnamed_state;

#define PX_LEARNED_TYPES 8 /* statement texts whose inferred parameter types are kept */

typedef struct px_learned_types {
	char *key;          /* statement text + the Parse's own types */
	size_t key_len;
	int16_t n;
	uint32_t *types;    /* as ParameterDescription gave them */
} px_learned_types;

typedef struct px_batcher {
	px_batch_phase phase;
	bool failed;
	char reason[160];
	size_t extra_columns;
	uint8_t *child_msg;  /* the client's Query (or extended group), sent unchanged if the batch fails */
	size_t child_len;
	int ready_left;      /* ReadyForQuery messages still due for pgfold's round trip */
	int ready_total;     /* ... in all */
	int ready_before;    /* ... before the batch's own (SAVEPOINT of an extended batch) */
	uint32_t key_type;   /* the batch's key column: type and format (binary when the child */
	int16_t key_format;  /* asked for binary results and gave one format for all columns) */
	px_answer_form form; /* what the child's messages ask for */
	pf_sb restore;       /* the Parse re-sent after the batch (empty: none) */
	bool restore_is_childs; /* ... is the child's own */
	bool parse_failed;   /* that Parse failed: */
	pf_sb parse_error;   /* its ErrorResponse */
	px_unnamed_state unnamed_state; /* the unnamed statement as the client sees it */
	pf_sb unnamed;       /* PX_UNNAMED_KNOWN: the whole Parse message */
	bool unnamed_deferred; /* ... answered from a buffer, not yet sent: the backend's differs */
	px_learned_types learned[PX_LEARNED_TYPES];
	size_t learned_next;
	char *describe_key;  /* DESCRIBING: the learned_types key being learned */
	size_t describe_key_len;
	px_prefetch building; /* the batch's answers as they arrive */
	px_prefetch bufs[PX_MAX_PREFETCH];
	size_t buffered_bytes;
	uint64_t over_budget_until_ms; /* a batch did not fit: relay children unchanged until then */
} px_batcher;

/* A simple Query holding one statement arrived on an idle session: answer it
 * from a prefetch buffer or a new batch.  True when pgfold took the message
 * (it must not be forwarded); msg is the whole Query message. */
bool px_batch_query(px_session *s, const rw_analysis *an, const char *sql, const uint8_t *msg, size_t msg_len);
/* An extended group (g, whose bytes start at `bytes`) arrived on an idle
 * session and has been tracked: answer it from a prefetch buffer or a new
 * batch.  True when pgfold took it (it must not be forwarded); false: the
 * caller forwards it (and reports its Parse with px_batch_note_parse). */
bool px_batch_extended(px_session *s, const pgw_ext_group *g, const uint8_t *bytes);
/* Client messages forwarded to the backend that change its unnamed
 * statement: a simple Query, a Parse (msg is the whole message, NULL when
 * unreadable), a Close. */
void px_batch_note_query(px_session *s);
void px_batch_note_parse(px_session *s, const char *name, const uint8_t *msg, size_t len);
void px_batch_note_close(px_session *s, char kind, const char *name);
/* pgfold answered a group whose Parse (the whole message; NULL: none) never
 * reached the backend: it is deferred until the unnamed statement is used,
 * unless the backend's already is the same. */
void px_batch_parse_answered(px_session *s, const uint8_t *parse, size_t len);
/* DDL or a session change: inferred parameter types may differ now. */
void px_batch_forget_types(px_session *s);
/* Backend bytes while a batch is running. */
void px_batch_backend(px_session *s);
/* Drop every prefetched answer (a write, DDL, session change, block end). */
void px_batch_drop_all(px_session *s);
/* ReadyForQuery relayed with this status: a block that ended takes its buffers. */
void px_batch_ready(px_session *s, char status);
void px_batch_free(px_session *s);

#endif /* PGFOLD_PROXY_BATCHER_H */
