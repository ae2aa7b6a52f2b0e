/*
 * sstate.h — what pgfold knows of one client session's state, kept from the
 * statements it relays and the backend's answers: transaction status,
 * whether the transaction has written, isolation and read-only, the role,
 * search_path and every other setting changed with SET.  The result cache and
 * the N+1 rewriter refuse whatever this cannot vouch for.
 *
 * Pure bookkeeping (no I/O).  The session calls:
 *   px_sstate_sent()      a statement is on its way to the backend
 *   px_sstate_done()      it completed (CommandComplete), with its tag
 *   px_sstate_failed()    it got an ErrorResponse
 *   px_sstate_ready()     ReadyForQuery arrived with a transaction status
 *
 * Everything but `tx_wrote` follows the server's answers, which arrive in
 * execution order, so a client that pipelines several transactions is
 * followed exactly.  `tx_wrote` is set when a write is *sent*: a read sent
 * after it in the same transaction must already count as after a write.
 *
 * Settings changed inside a transaction are undone if it rolls back (as
 * PostgreSQL does), SET LOCAL lasts until the transaction ends, and ROLLBACK
 * TO SAVEPOINT restores what the savepoint saw.  When pgfold cannot follow
 * exactly (too many settings or savepoints, a statement it could not
 * analyse, set_config with a computed name), `unknown` is set and stays set
 * until DISCARD ALL (RESET ALL keeps the role, which an unknown statement may
 * have set): callers treat the session as unsafe.
 */
#ifndef PGFOLD_PROXY_SSTATE_H
#define PGFOLD_PROXY_SSTATE_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/strbuf.h"
#include "../rewrite/analysis.h"

#define PX_SSTATE_MAX_SETTINGS_BYTES 8192
#define PX_SSTATE_MAX_SAVEPOINTS 16
#define PX_SSTATE_NAME_MAX 64

/* The settings as seen at one point; copied whole on BEGIN and SAVEPOINT.
 * `blob` holds name\0value\0 pairs: name lower case ("search_path", "role",
 * "timezone" ...), value the statement that set it, as sent. */
typedef struct px_settings {
	char *blob;
	size_t len;
	rw_isolation default_isolation; /* SET SESSION CHARACTERISTICS / default_transaction_isolation */
	int default_read_only;          /* -1 server default, 0/1 */
	bool unknown;
} px_settings;

typedef struct px_savepoint {
	char name[PX_SSTATE_NAME_MAX];
	px_settings saved;       /* cur as the savepoint was set */
	px_settings saved_local; /* and the SET LOCAL values */
} px_savepoint;

typedef struct px_sstate {
	char tx;                   /* 'I' idle, 'T' in a transaction block, 'E' failed block */
	bool tx_wrote;             /* a write was sent in a transaction not yet ended */
	bool seg_open;             /* a transaction (implicit or block) is running on the server */
	bool in_block;             /* a BEGIN completed and its block has not ended */
	bool failed;               /* the running transaction saw an error */
	rw_isolation tx_isolation; /* isolation of the running transaction */
	int tx_read_only;          /* -1 not given */
	px_settings cur;           /* in force now (SET LOCAL aside) */
	px_settings local;         /* SET LOCAL: dropped at the transaction's end */
	px_settings at_start;      /* cur as the running transaction started (restored on rollback) */
	size_t nsavepoints;
	px_savepoint *savepoints;  /* PX_SSTATE_MAX_SAVEPOINTS, allocated on first SAVEPOINT */
} px_sstate;

void px_sstate_init(px_sstate *st);
void px_sstate_free(px_sstate *st);

/* A statement leaves for the backend (shape NULL: pgfold does not know it). */
void px_sstate_sent(px_sstate *st, const rw_shape *shape);
/* The statement, whose own text is sql[0..len), completed with
 * CommandComplete `tag`. */
void px_sstate_done(px_sstate *st, const rw_shape *shape, const char *sql, size_t len, const char *tag);
/* A statement failed. */
void px_sstate_failed(px_sstate *st);
/* ReadyForQuery with transaction status 'I', 'T' or 'E'; writes_pending:
 * writes sent after this transaction are still unanswered. */
void px_sstate_ready(px_sstate *st, char status, bool writes_pending);
/* True when a statement of this shape may write (NULL: unknown, so yes). */
bool px_sstate_is_write(const rw_shape *shape);
/* pgfold lost track (untracked statement completed, queue overflow). */
void px_sstate_lost(px_sstate *st);

/* The isolation level in force for the current or next statement. */
rw_isolation px_sstate_isolation(const px_sstate *st);
/* The value text of a setting in force (SET LOCAL first), or NULL. */
const char *px_sstate_setting(const px_sstate *st, const char *name);
/* True when anything was changed with SET (or the state is unknown). */
bool px_sstate_settings_changed(const px_sstate *st);

/* The name a statement ends with (SAVEPOINT s, DEALLOCATE p): its last
 * identifier, lower-cased unless quoted, cut to size - 1 bytes. */
void px_sql_last_name(const char *sql, size_t len, char *out, size_t size);

/* JSON object describing the state, for /sessions. */
void px_sstate_render_json(const px_sstate *st, pf_sb *sb);

#endif /* PGFOLD_PROXY_SSTATE_H */
