/*
 * track.h — the statements in flight on one session, matched to the
 * backend's answers, plus the session's prepared statements and portals.
 *
 * The client side feeds: px_track_query (a simple Query, already analysed),
 * px_track_parse / _bind / _execute / _close / _sync (extended protocol),
 * px_track_function_call.  The backend side feeds: px_track_complete
 * (CommandComplete), px_track_empty (EmptyQueryResponse), px_track_suspended
 * (PortalSuspended), px_track_error (ErrorResponse), px_track_ready
 * (ReadyForQuery).  Every statement that finishes is reported once through
 * the done callback (for per-shape statistics) and its effect on the
 * session is applied to `state`.
 *
 * Memory: prepared statements keep their analysis (bounded by
 * PX_TRACK_MAX_PREPARED; more are tracked as unknown); the queue is bounded by
 * PX_TRACK_MAX_INFLIGHT — past it statements go untracked and the session
 * state is marked unknown (until RESET ALL / DISCARD ALL, see sstate.h).
 * Elapsed time runs from the arrival of the client message carrying the
 * statement (Query or Execute) to the statement's own answer; statements of
 * one multi-statement Query all start at the Query's arrival.
 */
#ifndef PGFOLD_PROXY_TRACK_H
#define PGFOLD_PROXY_TRACK_H

#include <stdbool.h>
#include <stdint.h>

#include "../protocol/pgwire.h"
#include "../rewrite/analysis.h"
#include "sstate.h"

#define PX_TRACK_MAX_INFLIGHT 65536
#define PX_TRACK_MAX_PREPARED 10000
#define PX_TRACK_PARAMS_MAX 4096      /* bound values kept per portal (text form), else none */
#define PX_TRACK_PARAM_TEXT_MAX 256   /* longer values are not kept */
#define PX_TRACK_TEXT_MAX 16384       /* longer statement texts are not kept */
#define PX_TRACK_MAX_DESCRIBES 16     /* Describe statement messages followed at once */
#define PX_TRACK_ROWDESC_MAX 8192     /* larger described RowDescriptions are not kept */

/* One finished statement: stmt is NULL when pgfold did not know what ran. */
typedef void (*px_track_done_fn)(void *ctx, const rw_stmt *stmt, uint64_t elapsed_us, uint64_t rows, bool error);

typedef struct px_track_item px_track_item;
typedef struct px_named px_named;

typedef struct px_track {
	px_sstate state;
	px_track_item *items; /* ring buffer */
	uint32_t cap, head, count;
	bool overflow;        /* items were dropped since the queue was last empty */
	px_named *prepared;   /* name -> analysis (list; "" is the unnamed statement) */
	px_named *portals;    /* name -> analysis + statement index */
	uint32_t nprepared;
	uint32_t nportals;
	uint32_t writes_queued; /* queued items that may write */
	struct px_describe { char *name; uint64_t gen; bool params_seen; } describes[PX_TRACK_MAX_DESCRIBES];
	uint32_t describes_head, describes_count; /* Describe statement messages not answered yet */
	uint64_t markers_sent;     /* end markers (Query end, Sync, FunctionCall) sent */
	uint64_t markers_answered; /* ReadyForQuery messages seen */
	px_track_done_fn done;
	void *done_ctx;
} px_track;

void px_track_init(px_track *t, px_track_done_fn done, void *ctx);
void px_track_free(px_track *t);

/* Client messages.  `an` may be NULL (not analysed: too large); the track
 * takes its own reference.  text is the query string an's locations refer to. */
void px_track_query(px_track *t, const rw_analysis *an, const char *text, uint64_t now_us);
void px_track_parse(px_track *t, const char *name, const rw_analysis *an, const char *text);
void px_track_bind(px_track *t, const char *portal, const char *stmt_name);
void px_track_execute(px_track *t, const char *portal, uint64_t now_us);
/* After px_track_parse / px_track_bind: remember the statement's parameter
 * types, and the portal's bound values in text form (for N+1 detection). */
void px_track_parse_types(px_track *t, const char *name, int16_t n, const uint8_t *types);
void px_track_bind_params(px_track *t, const char *portal, const char *stmt_name, const pgw_bind_msg *m);
/* Parameter $n of a portal in text form; false when NULL or not kept. */
bool px_track_portal_param(const px_track *t, const char *portal, int n, const char **value, size_t *len);
/* The same telling the two apart: 1 (value), 0 (SQL NULL), -1 (not kept). */
int px_track_portal_value(const px_track *t, const char *portal, int n, const char **value, size_t *len);
/* How many parameters the portal's kept values cover (0: none kept). */
int16_t px_track_portal_nparams(const px_track *t, const char *portal);
/* The statement the server is answering now (head of the queue), or NULL. */
const rw_stmt *px_track_current(const px_track *t);
/* That statement's own text (its rw_value locations less its location),
 * kept for session-state statements and the writes the cache may pin to
 * keys (UPDATE, DELETE, INSERT ... VALUES); false when not kept. */
bool px_track_current_text(const px_track *t, const char **sql, size_t *len);
/* Its bound value $n in text form (an Execute of such a write): 1 with the
 * value, 0 for NULL, -1 when not known. */
int px_track_current_param(const px_track *t, int n, const char **value, size_t *len);
/* The statement most recently queued (tail), or NULL. */
const rw_stmt *px_track_last(const px_track *t);
void px_track_close(px_track *t, char kind, const char *name);
/* A Describe of statement `name` was sent, and a ParameterDescription
 * arrived: it answers the oldest Describe of the current Sync group and
 * gives that statement's parameter types (drivers such as asyncpg leave them
 * unspecified in Parse and bind binary values, which pgfold can read once it
 * knows their types). */
void px_track_describe(px_track *t, const char *name);
void px_track_param_desc(px_track *t, int16_t n, const uint8_t *types);
/* A RowDescription (body; NULL for NoData) from the backend: after a
 * ParameterDescription it completes the Describe of a statement, whose
 * columns it gives.  A portal bound from a described statement knows its
 * RowDescription even when the client never describes the portal (asyncpg,
 * PgJDBC): px_track_current_row_desc() hands it out for the statement the
 * server is answering (NULL when unknown), with the Bind's formats. */
void px_track_row_desc(px_track *t, const uint8_t *body, size_t len);
const uint8_t *px_track_current_row_desc(const px_track *t, size_t *len);
/* A Parse / Bind pgfold could not read: forget every prepared statement /
 * portal (their executes are then tracked as unknown). */
void px_track_forget_prepared(px_track *t);
void px_track_forget_portals(px_track *t);
void px_track_sync(px_track *t);
void px_track_function_call(px_track *t, uint64_t now_us);

/* Backend messages. */
void px_track_complete(px_track *t, const char *tag, uint64_t now_us);
void px_track_empty(px_track *t, uint64_t now_us);
void px_track_suspended(px_track *t, uint64_t now_us);
void px_track_error(px_track *t, uint64_t now_us);
void px_track_ready(px_track *t, char status);

/* A prepared statement as the client parsed it: its analysis (NULL when
 * unknown), its whole query text (NULL when over PX_TRACK_TEXT_MAX) and the
 * parameter types its Parse gave (0 = unspecified). */
typedef struct px_track_stmt {
	const rw_analysis *an;
	const char *text;
	int16_t ntypes;
	const uint32_t *types;
} px_track_stmt;
bool px_track_statement(const px_track *t, const char *name, px_track_stmt *out);

/* The analysis of a prepared statement ("" = unnamed), or NULL. */
const rw_analysis *px_track_prepared(const px_track *t, const char *name);
uint32_t px_track_inflight(const px_track *t);

#endif /* PGFOLD_PROXY_TRACK_H */
