/*
 * policy.h — may this statement's result be served from (and stored in) the
 * result cache?  Pure: decides from the statement's analysis, the session
 * facts the proxy tracked and a function-volatility oracle; no I/O.
 *
 * Interface
 *   qc_hint_parse(sql, len)     the statement's pgfold hint comment, if any
 *   qc_policy_decide(in)        QC_CACHEABLE with a TTL, or the bypass reason
 *   qc_bypass_name(reason)      "for_update", "function", ... (admin, logs)
 *
 * Rules (first match wins):
 *   cache.mode off                               -> QC_BYPASS_OFF
 *   a  pgfold:nocache  comment                   -> QC_BYPASS_HINT
 *   no  pgfold:cache  comment, and the [cache.rules] entry that decides
 *   (below) is "off"                             -> QC_BYPASS_RULE
 *   rules mode without a  pgfold:cache  comment or a [cache.rules] entry
 *   that selects the statement                   -> QC_BYPASS_NO_RULE
 *   not a read-only SELECT / VALUES / TABLE / WITH (EXPLAIN, SHOW, writes, ...)
 *                                                -> QC_BYPASS_NOT_READ
 *   FOR UPDATE / SHARE                           -> QC_BYPASS_LOCKING
 *   a temporary table                            -> QC_BYPASS_TEMP
 *   a system catalog (pg_*, information_schema)  -> QC_BYPASS_CATALOG
 *   a function that is not immutable (stable counts too: now(),
 *   current_user, current_setting ...; unknown counts as volatile)
 *                                                -> QC_BYPASS_FUNCTION
 *   the transaction failed                       -> QC_BYPASS_TX_FAILED
 *   REPEATABLE READ or SERIALIZABLE              -> QC_BYPASS_ISOLATION
 *   the transaction (block) already wrote        -> QC_BYPASS_TX_WROTE
 *   pgfold lost track of the session's settings  -> QC_BYPASS_SESSION
 *   SET ROLE / SET SESSION AUTHORIZATION / a custom (dotted) setting
 *                                                -> QC_BYPASS_ROLE
 * The TTL is the hint's ttl=N (seconds) when given, else the deciding
 * [cache.rules] entry's, else cache.default_ttl.
 *
 * [cache.rules] (cf_cache_rules): a shape entry whose fingerprint is the
 * statement's decides alone.  Otherwise every table entry that names a
 * relation the statement reads counts ("any", not "all": a join of a listed
 * and an unlisted table is selected): one of them "off" decides off, else the
 * shortest of their TTLs.  A table entry with a schema matches a relation
 * written with that schema or without one (search_path is not resolved
 * here); one without a schema matches the name in any schema.  Names compare
 * as the parser folds them.  A  pgfold:cache  comment selects the statement
 * even when an entry says off (only its TTL may come from an entry).
 *
 * Hints are looked for in every block comment of the query string (a
 * string literal that looks like one counts too: a hint only opts in or
 * out, it never overrides a safety rule above).
 */
#ifndef PGFOLD_CACHE_POLICY_H
#define PGFOLD_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "../conf/conf.h"
#include "../rewrite/analysis.h"

/* Why a statement was not looked up.  The first group is the policy's; the
 * rest are the proxy's (counted on /cache the same way). */
typedef enum qc_bypass {
	QC_CACHEABLE = 0,
	QC_BYPASS_OFF,
	QC_BYPASS_HINT,
	QC_BYPASS_NO_RULE,
	QC_BYPASS_RULE,        /* a [cache.rules] entry says off */
	QC_BYPASS_NOT_READ,
	QC_BYPASS_LOCKING,
	QC_BYPASS_TEMP,
	QC_BYPASS_CATALOG,
	QC_BYPASS_FUNCTION,
	QC_BYPASS_TX_FAILED,
	QC_BYPASS_ISOLATION,
	QC_BYPASS_TX_WROTE,
	QC_BYPASS_SESSION,
	QC_BYPASS_ROLE,
	/* the proxy's */
	QC_BYPASS_MULTI,       /* not exactly one statement in the Query */
	QC_BYPASS_BUSY,        /* the session had something else in flight (pipelining, N+1 batch) */
	QC_BYPASS_TABLES,      /* more tables than one lookup reads */
	QC_BYPASS_RELATION,    /* a view, foreign or temporary table, sequence, or a name not (yet) known */
	QC_BYPASS_REDIS,       /* Redis down, erroring or too slow: the statement went to PostgreSQL */
	QC_BYPASS_TOO_LARGE,   /* the answer was over cache.max_entry_bytes: not stored */
	QC_BYPASS_NOT_STORED,  /* the answer was not a plain result (error, notice, COPY ...) */
	QC_BYPASS_COUNT
} qc_bypass;

typedef enum qc_hint_kind { QC_HINT_NONE, QC_HINT_CACHE, QC_HINT_NOCACHE } qc_hint_kind;

typedef struct qc_hint {
	qc_hint_kind kind;
	int ttl_s; /* QC_HINT_CACHE with ttl=N: N (1 .. 86400); 0 when not given */
} qc_hint;

/* The session as the proxy tracked it when the statement arrived. */
typedef struct qc_session_facts {
	char tx_status;        /* 'I', 'T' or 'E' */
	bool tx_wrote;         /* the running transaction (block) wrote */
	rw_isolation isolation;
	bool unknown;          /* settings pgfold could not follow */
	bool role_changed;     /* SET ROLE / SESSION AUTHORIZATION / custom setting in force */
} qc_session_facts;

/* 'i', 's' or 'v' for a function name as the analysis lists it. */
typedef char (*qc_volatility_fn)(void *ctx, const char *function);

typedef struct qc_policy_input {
	int mode;                   /* a cf_cache_mode */
	int default_ttl_ms;
	const cf_cache_rules *rules; /* [cache.rules]; NULL: none */
	const rw_shape *shape;
	const char *sql;            /* the whole query string (hints) ... */
	size_t sql_len;
	int stmt_location;          /* ... and the statement's byte range in it */
	int stmt_length;
	qc_session_facts session;
	qc_volatility_fn volatility;
	void *volatility_ctx;
} qc_policy_input;

typedef struct qc_decision {
	qc_bypass reason;
	int ttl_ms; /* QC_CACHEABLE: how long the entry lives */
} qc_decision;

qc_hint qc_hint_parse(const char *sql, size_t len);
qc_decision qc_policy_decide(const qc_policy_input *in);
const char *qc_bypass_name(qc_bypass reason);

#endif /* PGFOLD_CACHE_POLICY_H */
