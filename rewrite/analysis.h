/*
 * analysis.h — what pgfold knows about a SQL statement, from libpg_query.
 * The N+1 rewriter and the result cache decide from these facts only.
 *
 * Two layers:
 *   rw_shape     facts shared by every statement with the same text once its
 *                literals are masked: kind, fingerprint, normalized text,
 *                relations, functions, clause flags, transaction/session
 *                details, and for each constant slot the column it is
 *                compared with.  Immutable, reference counted, cached.
 *   rw_stmt      one statement of one concrete text: its shape plus where
 *                each constant / parameter sits in this text.
 *
 * rw_analyzer keeps a bounded cache keyed by exact text (hit: no work), and a
 * shape table keyed by the scanner's token stream with literals masked (shape
 * hit: one pg_query_scan, no parse); only a new shape pays a full parse.
 * Statements libpg_query cannot parse get kind RW_KIND_UNPARSED and are
 * never cached or rewritten.
 *
 * Interface
 *   rw_analyzer_new / rw_analyzer_free
 *   rw_analyze()            a query string (one or more statements) -> rw_analysis
 *   rw_analysis_free()
 *   rw_analyzer_stats()     cache hits / shape hits / full parses / failures
 *   rw_kind_name()
 *
 * Pure computation: no I/O, no libuv, no logging.  Function volatility is not
 * known here (it lives in the database): rw_shape lists the functions called
 * and the caller decides with its own pg_proc knowledge.
 */
#ifndef PGFOLD_REWRITE_ANALYSIS_H
#define PGFOLD_REWRITE_ANALYSIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum rw_kind {
	RW_KIND_READ,         /* read-only SELECT (also VALUES, TABLE, SHOW, EXPLAIN without ANALYZE) */
	RW_KIND_WRITE,        /* INSERT/UPDATE/DELETE/MERGE, SELECT FOR UPDATE/SHARE, writable CTE,
	                         SELECT INTO, nextval/setval, EXPLAIN ANALYZE of a write */
	RW_KIND_DDL,          /* CREATE/ALTER/DROP/COMMENT/GRANT/REVOKE/... */
	RW_KIND_TRUNCATE,
	RW_KIND_TRANSACTION,  /* BEGIN/START, COMMIT/END, ROLLBACK/ABORT, SAVEPOINT, RELEASE,
	                         ROLLBACK TO, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED */
	RW_KIND_SESSION,      /* SET, RESET, DISCARD, SET ROLE, SET SESSION AUTHORIZATION,
	                         a SELECT calling set_config */
	RW_KIND_LISTEN,       /* LISTEN, UNLISTEN, NOTIFY (and pg_notify) */
	RW_KIND_COPY,
	RW_KIND_OTHER,        /* VACUUM, ANALYZE, CHECKPOINT, PREPARE/EXECUTE/DEALLOCATE, DO, CALL, ... */
	RW_KIND_UNPARSED,     /* libpg_query could not parse it */
} rw_kind;

typedef enum rw_tx_op {
	RW_TX_NONE,
	RW_TX_BEGIN,
	RW_TX_COMMIT,
	RW_TX_ROLLBACK,
	RW_TX_SAVEPOINT,
	RW_TX_RELEASE,
	RW_TX_ROLLBACK_TO,
	RW_TX_PREPARE,
	RW_TX_COMMIT_PREPARED,
	RW_TX_ROLLBACK_PREPARED,
} rw_tx_op;

typedef enum rw_isolation {
	RW_ISO_DEFAULT, /* not given */
	RW_ISO_READ_UNCOMMITTED,
	RW_ISO_READ_COMMITTED,
	RW_ISO_REPEATABLE_READ,
	RW_ISO_SERIALIZABLE,
} rw_isolation;

/* Statement-level clause flags (anywhere in the statement unless noted). */
enum rw_flag {
	RW_HAS_LIMIT = 1u << 0,  /* top-level LIMIT */
	RW_HAS_OFFSET = 1u << 1, /* top-level OFFSET */
	RW_HAS_ORDER_BY = 1u << 2,
	RW_HAS_GROUP_BY = 1u << 3,
	RW_HAS_AGGREGATE = 1u << 4,
	RW_HAS_DISTINCT = 1u << 5,
	RW_HAS_WINDOW = 1u << 6,
	RW_HAS_SET_OP = 1u << 7, /* UNION / INTERSECT / EXCEPT */
	RW_HAS_SUBQUERY = 1u << 8,
	RW_HAS_EXISTS = 1u << 9,
	RW_HAS_CTE = 1u << 10,
	RW_FOR_UPDATE = 1u << 11, /* FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE */
	RW_SELECT_INTO = 1u << 12,
	RW_WRITABLE_CTE = 1u << 13,
	RW_TOUCHES_TEMP = 1u << 14,    /* a relation is pg_temp-qualified or created TEMP here */
	RW_TOUCHES_CATALOG = 1u << 15, /* pg_catalog.* / information_schema.* / pg_* relation */
};

typedef struct rw_relation {
	const char *schema; /* NULL when not written in the statement */
	const char *name;
	const char *alias;  /* NULL when none */
	bool written;       /* target of INSERT/UPDATE/DELETE/MERGE/TRUNCATE/DDL */
} rw_relation;

/* One constant slot of the shape (in text order).  A slot is either a
 * literal the scanner masked or a $n parameter. */
typedef struct rw_slot {
	int param;              /* n for $n, 0 for a literal */
	int rel_index;          /* when the slot is one side of a top-level `column = value`
	                           equality in WHERE (through AND): index into relations, else -1 */
	const char *column;     /* that column's name, else NULL */
} rw_slot;

typedef struct rw_shape {
	rw_kind kind;
	uint64_t fingerprint;   /* pg_query_fingerprint */
	const char *normalized; /* pg_query_normalize: literals replaced by $n */
	uint32_t flags;         /* enum rw_flag */
	size_t nrelations;
	const rw_relation *relations;
	size_t nfunctions;
	const char *const *functions; /* as written, schema-qualified when written so, lower case */
	size_t nslots;
	const rw_slot *slots;
	/* RW_KIND_TRANSACTION */
	rw_tx_op tx_op;
	rw_isolation isolation;
	int read_only;          /* -1 not given, 0 READ WRITE, 1 READ ONLY */
	/* RW_KIND_SESSION: the setting name for SET/RESET/set_config ("role",
	 * "session_authorization", "search_path", "all" for RESET ALL/DISCARD ALL) */
	const char *setting;
	bool set_local;         /* SET LOCAL / set_config(..., true) */
} rw_shape;

/* Where slot i of the shape sits in this statement's text. */
typedef struct rw_value {
	int location; /* byte offset in the whole query string */
	int length;   /* bytes of the literal as written (quotes included) / of "$n" */
} rw_value;

typedef struct rw_stmt {
	const rw_shape *shape;
	int location; /* byte range of this statement in the query string */
	int length;
	const rw_value *values; /* shape->nslots entries */
} rw_stmt;

typedef struct rw_analysis {
	size_t nstmts;
	const rw_stmt *stmts;
	const char *error; /* parse error message when a statement is UNPARSED, else NULL */
} rw_analysis;

typedef struct rw_analyzer rw_analyzer;

typedef struct rw_analyzer_stats {
	uint64_t text_hits;   /* exact text found in the cache */
	uint64_t shape_hits;  /* new text, known shape: scanned only */
	uint64_t full_parses; /* new shape: parsed */
	uint64_t failures;    /* unparseable */
	uint64_t evictions;
	size_t entries;       /* texts cached now */
	size_t shapes;        /* shapes known now */
} rw_analyzer_stats;

/* max_entries bounds both the text cache and the shape table (LRU). */
rw_analyzer *rw_analyzer_new(size_t max_entries);
void rw_analyzer_free(rw_analyzer *a);

/*
 * Analyse sql (len bytes, need not be NUL-terminated).  Always returns an
 * analysis (unparseable text gives one RW_KIND_UNPARSED statement covering
 * it); the caller owns it and frees it with rw_analysis_free().  Shapes it
 * points to stay valid until then even if evicted from the cache.
 */
rw_analysis *rw_analyze(rw_analyzer *a, const char *sql, size_t len);
void rw_analysis_free(rw_analysis *an);

void rw_analyzer_stats_get(const rw_analyzer *a, rw_analyzer_stats *out);
const char *rw_kind_name(rw_kind kind);

#endif /* PGFOLD_REWRITE_ANALYSIS_H */
