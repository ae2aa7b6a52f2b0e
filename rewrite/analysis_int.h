/*
 * analysis_int.h — internals of the statement analysis, shared by its files
 * (not part of the interface; include analysis.h instead).
 *
 *   analysis.c        rw_analyze(): text cache, shape table, the paths
 *   analysis_fast.c   fast-key table: shape hits from fastscan.h, no pg_query_scan
 *   analysis_lru.c    hash table + LRU list used by the caches
 *   analysis_scan.c   pg_query_scan tokens, statement pieces, shape keys, hash
 *   analysis_shape.c  one parsed statement -> an immutable rw_shape_obj
 *   analysis_walk.c   tree walker: kind, relations, CTE scopes, clause flags
 *   analysis_expr.c   functions called, aggregates/windows, subqueries
 *   analysis_where.c  top-level WHERE `column = value` equalities (and SELECT EXISTS's)
 *   analysis_tx.c     transaction and session statements, set_config
 *   analysis_write.c  the top-level write form (analysis_write.h)
 */
#ifndef PGFOLD_REWRITE_ANALYSIS_INT_H
#define PGFOLD_REWRITE_ANALYSIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pg_query/pg_query.pb-c.h>

#include "analysis.h"
#include "fastscan.h"

/* ---- hash table + LRU list (analysis_lru.c) ------------------------------ */

typedef struct rw_lru_node {
	struct rw_lru_node *hnext;       /* hash chain */
	struct rw_lru_node *prev, *next; /* recency list, most recent after the sentinel */
	uint64_t hash;
	const char *key;
	size_t keylen;
	size_t bytes; /* what this entry accounts for against max_bytes */
} rw_lru_node;

typedef struct rw_lru {
	rw_lru_node **buckets;
	size_t nbuckets; /* power of two, grows with count */
	size_t count, bytes;
	size_t max_entries, max_bytes;
	rw_lru_node head; /* sentinel of the recency list */
} rw_lru;

void rw_lru_init(rw_lru *l, size_t max_entries, size_t max_bytes);
void rw_lru_destroy(rw_lru *l); /* the table must be empty (see rw_lru_pop) */
/* Find and mark most recently used; NULL when absent. */
rw_lru_node *rw_lru_find(rw_lru *l, uint64_t hash, const char *key, size_t keylen);
bool rw_lru_fits(const rw_lru *l, size_t bytes); /* could an entry this large be kept at all */
bool rw_lru_full(const rw_lru *l, size_t bytes); /* would inserting it push another entry out */
void rw_lru_insert(rw_lru *l, rw_lru_node *n);   /* n->hash/key/keylen/bytes set, key absent */
/* Remove and return the least recently used entry while over a limit, else NULL. */
rw_lru_node *rw_lru_evict(rw_lru *l);
rw_lru_node *rw_lru_pop(rw_lru *l); /* remove any entry (draining), NULL when empty */
void rw_lru_touch(rw_lru *l, rw_lru_node *n); /* mark n (in l) most recently used */
static inline bool rw_lru_linked(const rw_lru_node *n) /* is n in a table now */
{
	return n->next != NULL;
}

/* ---- tokens, pieces and shape keys (analysis_scan.c) --------------------- */

typedef struct rw_token {
	int start, end; /* byte range in the query string */
	int type;       /* PgQuery__Token */
	bool keyword;   /* a keyword (reserved or not): type names it, case does not matter */
} rw_token;

typedef struct rw_piece {
	size_t first, end; /* token index range [first, end): one statement, ';' excluded */
} rw_piece;

typedef struct rw_scan {
	rw_token *tok;
	size_t ntok, captok;
	rw_piece *piece;
	size_t npiece, cappiece;
	long depth; /* an upper estimate of the parse tree's depth */
} rw_scan;

/* Texts whose estimated depth passes this are not parsed (UNPARSED): libpg_query
 * would overflow the stack turning them into protobuf. */
#define RW_MAX_DEPTH 1000

void rw_scan_free(rw_scan *s);
/* Scan sql (NUL-terminated) into s, split into pieces at top-level ';'.
 * 0, or -1 with *err a pf_malloc'ed message. */
int rw_scan_text(rw_scan *s, const char *sql, char **err);
/* Pieces from the parser's statement ranges instead (when they disagree with
 * the ';' split: BEGIN ATOMIC bodies). */
void rw_scan_pieces_from_ranges(rw_scan *s, const int *loc, const int *end, size_t n);
bool rw_token_is_literal(int type);
bool rw_token_is_slot(int type); /* a literal or $n */
bool rw_token_is_comment(int type);
size_t rw_piece_nslots(const rw_scan *s, const rw_piece *p);
/* The first non-comment token of a piece (every piece has one). */
const rw_token *rw_piece_lead(const rw_scan *s, const rw_piece *p);
/* The shape key of a piece into *buf (grown with pf_realloc); its length. */
size_t rw_shape_key(const rw_scan *s, const rw_piece *p, const char *sql, char **buf, size_t *cap);
uint64_t rw_hash(const void *p, size_t n, uint64_t seed);

/* ---- shapes (analysis_shape.c) ------------------------------------------- */

/* The object behind every rw_shape: immutable once built, reference counted
 * (each analysis referring to it and the shape table hold one reference). */
typedef struct rw_shape_obj {
	rw_shape pub; /* first: (rw_shape_obj *)shape */
	rw_lru_node node;
	unsigned refs;
	bool fast;                 /* may be found by token key: no literal-dependent facts */
	const unsigned char *neg;  /* per slot: the value starts at the '-' before the literal */
	size_t bytes;              /* size of the one block it lives in */
} rw_shape_obj;

/* Build the shape of one parsed statement; piece gives its tokens; key/keylen
 * is stored for the shape table.  The result has one reference. */
rw_shape_obj *rw_shape_build(const PgQuery__Node *stmt, const char *sql, const rw_scan *s, const rw_piece *p,
			     const char *key, size_t keylen);
rw_shape_obj *rw_shape_unparsed(void);
void rw_shape_ref(rw_shape_obj *sh);
void rw_shape_unref(rw_shape_obj *sh);

/* ---- the fast-key table (analysis_fast.c) ------------------------------- */

typedef struct rw_fast {
	rw_lru lru;          /* entries keyed by fastscan key, each holding a shape reference */
	rw_fastscan fs;      /* scratch: the scan of the text last given to rw_fast_find */
	rw_fs_status status; /* of that scan */
	uint64_t hash;       /* of fs.key, when status is RW_FS_OK */
} rw_fast;

void rw_fast_init(rw_fast *f, size_t max_entries, size_t max_bytes);
void rw_fast_destroy(rw_fast *f); /* drops every entry (and its shape reference) */
bool rw_fast_enabled(const rw_fast *f);
/* Fastscan sql and look its key up: the shape (borrowed, the table holds a
 * reference) or NULL; f->fs then holds this text's slots and range. */
rw_shape_obj *rw_fast_find(rw_fast *f, const char *sql, size_t len, uint64_t seed);
/* The slow path analysed the text last given to rw_fast_find as the one
 * statement st of shape sh: enter sh under that text's fast key if the
 * fastscan agrees with st exactly.  Returns the entries evicted. */
size_t rw_fast_learn(rw_fast *f, const rw_stmt *st, rw_shape_obj *sh);

/* ---- the builder: facts gathered while walking one statement ------------- */

typedef struct rw_eq {
	int location;      /* of the A_Const / ParamRef */
	int rel_index;     /* into the builder's relations, or -1 */
	const char *column;
} rw_eq;

typedef struct rw_builder {
	rw_relation *rels;
	size_t nrels, caprels;
	char **funcs; /* owned, distinct */
	size_t nfuncs, capfuncs;
	rw_eq *eqs;
	size_t neqs, capeqs;
	int *numlocs; /* locations of numeric A_Const nodes, for folded unary minus */
	size_t nnumlocs, capnumlocs;
	const char **scope; /* CTE names visible where the walk is */
	size_t nscope, capscope;
	const void *skip_with; /* the WithClause whose CTEs the current statement walked */
	int query_depth;       /* SelectStmts entered */
	bool ddl;              /* relations outside a query are written */
	bool no_write;         /* EXPLAIN without ANALYZE: nothing is written */
	uint32_t flags;
	bool has_dml, seq_write, calls_set_config, calls_notify;
	bool fast;
	rw_kind kind;
	rw_tx_op tx_op;
	rw_isolation isolation;
	int read_only;
	bool chain;
	char *setting; /* owned */
	bool set_local;
} rw_builder;

void rw_grow(void *arrayp, size_t *cap, size_t need, size_t elem);
const char *rw_nz(const char *s); /* NULL for NULL or "" (protobuf's unset string) */
int rw_builder_add_relation(rw_builder *b, const char *schema, const char *name, const char *alias,
			    bool written);
int rw_builder_find_relation(const rw_builder *b, const char *schema, const char *name, const char *alias);
void rw_builder_set_setting(rw_builder *b, const char *name, size_t len);

/* analysis_walk.c */
void rw_walk_statement(rw_builder *b, const PgQuery__Node *stmt);
void rw_walk(rw_builder *b, const ProtobufCMessage *m);

/* analysis_expr.c: visitors; true when the node's children were handled */
bool rw_visit_func_call(rw_builder *b, const PgQuery__FuncCall *f);
bool rw_visit_sql_value_function(rw_builder *b, const PgQuery__SQLValueFunction *f);
bool rw_visit_sub_link(rw_builder *b, const PgQuery__SubLink *s);
bool rw_visit_a_const(rw_builder *b, const PgQuery__AConst *c);

/* analysis_where.c */
void rw_where_collect(rw_builder *b, const PgQuery__Node *stmt);
/* s is SELECT EXISTS (<select>) [AS name] and nothing else (no FROM, WHERE or
 * other clause, one target without indirection, the subquery without set
 * operation): that inner select, else NULL.  The RW_EXISTS_QUERY test, shared
 * with batch.c so that the analysis and the EXISTS form agree. */
const PgQuery__SelectStmt *rw_exists_inner(const PgQuery__SelectStmt *s);

/* analysis_tx.c */
rw_kind rw_tx_transaction(rw_builder *b, const PgQuery__TransactionStmt *t);
rw_kind rw_tx_variable_set(rw_builder *b, const PgQuery__VariableSetStmt *v);
rw_kind rw_tx_discard(rw_builder *b, const PgQuery__DiscardStmt *d);
void rw_tx_set_config(rw_builder *b, const PgQuery__FuncCall *f);

#endif /* PGFOLD_REWRITE_ANALYSIS_INT_H */
