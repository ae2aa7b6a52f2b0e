/*
 * nplusone.h — the proxy's side of N+1 detection: feeding the results a
 * session receives (RowDescription, DataRows, CommandComplete) and the
 * statements it sends to rewrite/nplusone.h, and logging confirmed patterns.
 * The session calls these from its relay; none of them changes what is
 * relayed (detection only).
 */
#ifndef PGFOLD_PROXY_NPLUSONE_H
#define PGFOLD_PROXY_NPLUSONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/strbuf.h"
#include "../rewrite/analysis.h"
#include "../rewrite/nplusone.h"

typedef struct px_session px_session;

#define PX_NP_MAX_COLUMNS 64 /* result columns looked at (further ones are ignored) */
#define PX_NP_KEY_MAX 128    /* longer values are never keys */

/* Per-session capture of the result being received.  A result becomes a
 * possible parent only from its second row on (one row can never have N
 * children worth batching), so the common one-row lookups cost a copy of
 * their RowDescription and first row, not a parent entry. */
typedef struct px_np_capture {
	bool active;             /* the result may become a parent */
	bool begun;              /* rw_np_result_begin was called (second row seen) */
	bool tried_track;        /* rows came without a RowDescription: the track's was tried */
	const rw_shape *shape;   /* the statement's (held by the track until it completes) */
	uint32_t rows;
	pf_sb rowdesc;           /* RowDescription body, kept until the second row */
	pf_sb first_row;         /* first DataRow body */
	int16_t ncolumns; /* looked-at columns */
	uint32_t types[PX_NP_MAX_COLUMNS];
	int16_t formats[PX_NP_MAX_COLUMNS];
} px_np_capture;

void px_np_capture_free(px_np_capture *c);

void px_np_row_description(px_session *s, const uint8_t *body, size_t len);
void px_np_data_row(px_session *s, const uint8_t *body, size_t len);
void px_np_complete(px_session *s);
void px_np_abort(px_session *s);

/* A statement was sent: a read may be an N+1 child; anything else ends
 * what the session's earlier results can be parents of.  text is the query
 * string stmt's locations refer to (NULL for an Execute); portal names the
 * portal of an Execute (NULL for a simple Query). */
void px_np_statement(px_session *s, const rw_stmt *stmt, const char *text, const char *portal);
/* Slot k's value in text form, as the server sees it (a literal's value, or
 * the bound parameter of `portal`).  False when unknown or too long. */
bool px_np_child_value(px_session *s, const rw_stmt *stmt, const char *text, const char *portal, size_t k, char *buf,
		       size_t size, size_t *len);
/* The same, asking for up to `want` keys to batch; *out describes the
 * match (out->pattern NULL when the statement is no child). */
void px_np_statement_keys(px_session *s, const rw_stmt *stmt, const char *text, const char *portal, size_t want,
			  rw_np_match *out);

#endif /* PGFOLD_PROXY_NPLUSONE_H */
