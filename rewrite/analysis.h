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
 * rw_analyzer keeps a bounded cache keyed by exact text (hit: a hash lookup
 * and a reference count, no other work), and a shape table keyed by the
 * scanner's token stream with only the literal tokens (ICONST FCONST SCONST
 * BCONST XCONST USCONST) masked — keywords, identifiers, operators and $n stay,
 * comments and white space are dropped (shape hit: one pg_query_scan, no
 * parse); only a new shape pays a full parse.  Before pg_query_scan, a
 * single statement made only of the common token forms (names, quoted
 * names, operators, integers, decimals, '...' strings without backslashes,
 * $n, comments) is lexed by pgfold's own exact lexer (fastscan.h) and looked
 * up in a third table by that lexer's key (fast hit: well under a
 * microsecond); a shape enters that table only after the slow path analysed
 * a text with that key and the two views of it agreed exactly
 * (analysis_fast.c).  Two texts share a shape only when their token streams
 * are equal but for literal values (and, by fastscan key, the case of
 * unquoted names, which PostgreSQL folds), so the grammar gives them the
 * same tree; a shape whose facts depend on a literal's
 * contents (set_config('name', ...), EXPLAIN (ANALYZE 'off')) is never put in
 * the shape table.  A shape hit does not re-check literal contents: a text
 * PostgreSQL rejects only for a literal's value (U&'\zzzz', float(99)) gets its
 * shape's analysis, and the server's error.  Statements libpg_query cannot
 * parse get kind RW_KIND_UNPARSED and are never cached or rewritten; so do
 * statements nested deeper than libpg_query can turn into protobuf without
 * overflowing the stack (about 300 nested subqueries or 1,000 chained
 * operators: "statement nested too deeply to analyse"; the limit assumes the
 * caller runs on a thread with the usual 8 MB stack).
 *
 * Interface
 *   rw_analyzer_new / rw_analyzer_free
 *   rw_analyze()            a query string (one or more statements) -> rw_analysis
 *   rw_analysis_ref() / rw_analysis_free()
 *   rw_analyzer_stats_get() cache hits / shape hits (fast hits) / full parses / failures
 *   rw_kind_name(), rw_tx_op_name(), rw_isolation_name()
 *
 * Pure computation: no I/O, no libuv, no logging.  Not thread-safe: one
 * analyzer (and the analyses it returned) belongs to one thread, the event
 * loop's.  Function volatility is not known here (it lives in the database):
 * rw_shape lists the functions called and the caller decides with its own
 * pg_proc knowledge.
 *
 * The scanner and parser assume standard_conforming_strings = on (the
 * default since PostgreSQL 9.1); a session that turns it off may be analysed
 * wrongly when a string literal contains a backslash.
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
	                         ROLLBACK TO, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED,
	                         SET TRANSACTION */
	RW_KIND_SESSION,      /* SET, RESET, DISCARD, SET ROLE, SET SESSION AUTHORIZATION,
	                         SET SESSION CHARACTERISTICS, a SELECT calling set_config
	                         (one that also writes is WRITE, with setting filled) */
	RW_KIND_LISTEN,       /* LISTEN, UNLISTEN, NOTIFY (and a SELECT calling pg_notify) */
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
	RW_TX_SET, /* SET TRANSACTION ...: characteristics of the current transaction */
} rw_tx_op;

typedef enum rw_isolation {
	RW_ISO_DEFAULT, /* not given */
	RW_ISO_READ_UNCOMMITTED,
	RW_ISO_READ_COMMITTED,
	RW_ISO_REPEATABLE_READ,
	RW_ISO_SERIALIZABLE,
} rw_isolation;

/* The statement's top-level write form (rw_shape.write_form), for invalidating
 * by key what a write provably touches.  Data writes that are not one of the
 * three simple forms are OTHER; statements of kind WRITE and TRUNCATE are
 * never NONE, nor is a COPY that writes. */
typedef enum rw_write_form {
	RW_WRITE_NONE,          /* not a data write (SELECT, DDL, SET, ...; PREPARE/EXECUTE/CALL/DO are kind
	                           OTHER and NONE here: what they run is not known here) */
	RW_WRITE_UPDATE,        /* top-level UPDATE t SET ... (FROM, RETURNING and a read-only WITH allowed;
	                           no writable CTE) */
	RW_WRITE_DELETE,        /* top-level DELETE FROM t ... (USING, RETURNING and a read-only WITH
	                           allowed; no writable CTE) */
	RW_WRITE_INSERT_VALUES, /* top-level INSERT INTO t [(cols)] VALUES (...), (...) [ON CONFLICT ...]
	                           [RETURNING ...] (no writable CTE, not INSERT ... SELECT, not DEFAULT
	                           VALUES, not OVERRIDING USER VALUE, no clause around the VALUES list) */
	RW_WRITE_OTHER,         /* any other data write: MERGE, INSERT ... SELECT / DEFAULT VALUES,
	                           writable CTEs, EXPLAIN ANALYZE of a write, SELECT INTO, TRUNCATE,
	                           COPY FROM, nextval/setval, SELECT FOR UPDATE (kind WRITE) ... */
} rw_write_form;

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
	RW_TOUCHES_TEMP = 1u << 14,    /* a relation is pg_temp-qualified or created TEMP here (an
	                                  unqualified name of an existing temp table is not known here) */
	RW_TOUCHES_CATALOG = 1u << 15, /* pg_catalog.* / pg_toast.* / information_schema.* / pg_* relation */
	RW_EXISTS_QUERY = 1u << 16,    /* the whole statement is SELECT EXISTS (<select>) [AS name] (no FROM,
	                                  WHERE or other clause around it): slot columns come from the
	                                  inner select's WHERE (rw_slot) */
};

/* One relation named in the statement (CTE references are not relations).
 * One entry per distinct (schema, name, alias): a table joined to itself under
 * two aliases appears twice; a table read and written once, written. */
typedef struct rw_relation {
	const char *schema; /* NULL when not written in the statement */
	const char *name;   /* as the parser folds it: unquoted lower case, quoted as written */
	const char *alias;  /* NULL when none */
	bool written;       /* target of INSERT/UPDATE/DELETE/MERGE/TRUNCATE/COPY FROM/SELECT INTO/DDL
	                       (never under EXPLAIN without ANALYZE) */
} rw_relation;

/* One constant slot of the shape (in text order).  A slot is either a
 * literal the scanner masked or a $n parameter.  A literal the grammar does
 * not turn into a constant (the 10 of varchar(10), a NOTIFY payload, ...)
 * is still a slot, never with a column. */
typedef struct rw_slot {
	int param;              /* n for $n, 0 for a literal */
	int rel_index;          /* when the slot (bare or under a cast) is one side of a `column = value`
	                           equality in the WHERE of a top-level SELECT (no set operation),
	                           UPDATE or DELETE, combined by AND only: the index into relations
	                           of the column's table (alias resolved; an unqualified column
	                           resolves only when FROM holds exactly one table), else -1.  For
	                           an RW_EXISTS_QUERY statement: in the WHERE of the EXISTS
	                           subquery, resolved against that subquery's FROM */
	const char *column;     /* that column's name (also when rel_index is -1), else NULL */
} rw_slot;

typedef struct rw_shape {
	rw_kind kind;
	uint64_t fingerprint;   /* pg_query_fingerprint of the statement; 0 when UNPARSED */
	const char *normalized; /* pg_query_normalize of the first text seen with this shape
	                           (literals replaced by $n, its comments kept); NULL when UNPARSED */
	uint32_t flags;         /* enum rw_flag */
	size_t nrelations;
	const rw_relation *relations;
	size_t nfunctions;
	const char *const *functions; /* distinct, in order of appearance, as the parser folds them
	                                 (lower case unless quoted), schema-qualified when written so;
	                                 SQL-syntax forms by their SQL name: "extract", "current_timestamp",
	                                 "current_user", ... (unknown to pg_proc: treat as volatile) */
	size_t nslots;
	const rw_slot *slots;
	/* RW_KIND_TRANSACTION (BEGIN/START and SET TRANSACTION fill isolation and read_only);
	 * SET SESSION CHARACTERISTICS AS TRANSACTION fills them too, with kind SESSION */
	rw_tx_op tx_op;
	rw_isolation isolation;
	int read_only;          /* -1 not given, 0 READ WRITE, 1 READ ONLY */
	bool chain;             /* COMMIT/ROLLBACK AND CHAIN */
	/* The setting name (lower case) for SET/RESET/set_config ("role", "session_authorization",
	 * "search_path", "timezone", "all" for RESET ALL/DISCARD ALL, "plans"/"sequences"/"temp" for
	 * the other DISCARDs, "session_characteristics"); also set when a statement of another
	 * kind calls set_config.  NULL otherwise, or when set_config's name is not a constant. */
	const char *setting;
	bool set_local;         /* SET LOCAL / set_config(..., true) */
	/* The top-level write.  write_rel and the lists are filled for UPDATE, DELETE and
	 * INSERT_VALUES only (else -1, false, 0 and NULL).  Which rows the WHERE of an UPDATE/DELETE
	 * picks: its `column = value` slots (rw_slot: rel_index == write_rel for an unqualified column
	 * only when there is no FROM/USING).  Values are as written: the column's type may turn them
	 * into another value (5.7 into an integer column is 6, '05' is 5), compare typed values. */
	rw_write_form write_form;
	int write_rel;          /* index into relations of the target (its entry, alias included, never a
	                           FROM/USING entry of the same table under another alias), written */
	bool write_on_conflict; /* INSERT_VALUES ... ON CONFLICT (DO NOTHING or DO UPDATE): rows other than
	                           those given may be updated (a conflict on any unique index) */
	size_t nset_columns;
	const char *const *set_columns;    /* UPDATE: the columns SET assigns, distinct, in order, as the
	                                      parser folds them; every column of SET (a, b) = (...);
	                                      SET a[1] = ... / SET a.f = ... assign a */
	size_t ninsert_columns;
	const char *const *insert_columns; /* INSERT_VALUES: the column list as written (folded); 0 when
	                                      none is written */
	size_t ninsert_rows;               /* INSERT_VALUES: rows of VALUES; 0 when there is no column list
	                                      or a row's length is not the list's */
	const int *insert_slots;           /* ninsert_rows * ninsert_columns, row-major: the index into
	                                      slots of the slot that is exactly that cell's value (a
	                                      literal, a folded negative number or $n, bare or under one
	                                      cast: 5, -5, '5'::int, CAST($1 AS int)), else -1 (DEFAULT,
	                                      NULL, TRUE, expressions, function calls, subqueries, and
	                                      every cell of a column written with a subscript or field) */
} rw_shape;

/* Where slot i of the shape sits in this statement's text. */
typedef struct rw_value {
	int location; /* byte offset in the whole query string */
	int length;   /* bytes of the literal as written (quotes, E/B/X prefix and a folded
	                 unary minus included: "-5", "- 1.5") / of "$n" */
} rw_value;

typedef struct rw_stmt {
	const rw_shape *shape;
	int location; /* byte range of this statement in the query string: first token (a leading */
	int length;   /* comment included) to last token, without the terminating ';' */
	const rw_value *values; /* shape->nslots entries */
} rw_stmt;

/* An empty string (or only comments / semicolons) gives nstmts == 0.  When the
 * string does not parse, nstmts == 1: one UNPARSED statement covering it all
 * (PostgreSQL runs none of a simple-query string that fails to parse). */
typedef struct rw_analysis {
	size_t nstmts;
	const rw_stmt *stmts;
	const char *error; /* parse error message when UNPARSED, else NULL */
} rw_analysis;

typedef struct rw_analyzer rw_analyzer;

/* Each rw_analyze() call counts exactly one of text_hits, shape_hits,
 * full_parses, failures. */
typedef struct rw_analyzer_stats {
	uint64_t text_hits;   /* exact text found in the cache */
	uint64_t shape_hits;  /* new text, every statement's shape known: not parsed (fast hits included) */
	uint64_t fast_hits;   /* those of the shape hits found by fastscan key, without pg_query_scan */
	uint64_t full_parses; /* some statement's shape new: parsed */
	uint64_t failures;    /* unparseable (never cached) */
	uint64_t evictions;   /* texts, shapes and fast keys evicted */
	uint64_t not_admitted; /* texts not cached: the cache was full and the text not seen lately */
	size_t entries;       /* texts cached now */
	size_t shapes;        /* shapes in the shape table now */
	size_t fast_keys;     /* keys in the fast-key table now */
	size_t bytes;         /* memory the three tables account for now */
} rw_analyzer_stats;

/*
 * max_entries bounds the text cache and, separately, the shape table and the
 * fast-key table (LRU each); max_bytes bounds the memory they account for
 * (texts, keys, values, slots, names): max_bytes / 2 the text cache,
 * max_bytes / 4 each of the other two (a fast key counts the shape it keeps
 * alive too), so a stream of huge distinct statements cannot grow it; an
 * entry larger than its table's share is not cached at all.  Shapes evicted
 * from the table live on while an analysis (cached or held by the caller) or
 * a fast key refers to them.  Once the text cache is full, a text enters it
 * only if it was analysed lately already (texts that never repeat leave it
 * as it is; counted in not_admitted).  max_entries == 0 disables the caches.
 */
rw_analyzer *rw_analyzer_new(size_t max_entries, size_t max_bytes);
void rw_analyzer_free(rw_analyzer *a); /* analyses still held stay valid until freed */

/*
 * Analyse sql (len bytes, need not be NUL-terminated; a NUL byte inside makes
 * it UNPARSED).  Always returns an analysis; the caller owns one reference
 * and drops it with rw_analysis_free().  It is immutable and may be the very
 * object returned for an earlier identical text (it is reference counted).
 * The shapes it points to stay valid until it is freed, even if evicted from
 * the cache or the analyzer is freed.
 */
rw_analysis *rw_analyze(rw_analyzer *a, const char *sql, size_t len) __attribute__((warn_unused_result));
/* One more reference to an (kept e.g. for a prepared statement); drop each with rw_analysis_free(). */
rw_analysis *rw_analysis_ref(const rw_analysis *an);
void rw_analysis_free(rw_analysis *an); /* drops one reference; NULL is ignored */

void rw_analyzer_stats_get(const rw_analyzer *a, rw_analyzer_stats *out);
const char *rw_kind_name(rw_kind kind);         /* "read", "write", ..., "unparsed" */
const char *rw_tx_op_name(rw_tx_op op);         /* "none", "begin", ... */
const char *rw_isolation_name(rw_isolation iso); /* "default", "read committed", ... */

#endif /* PGFOLD_REWRITE_ANALYSIS_H */
