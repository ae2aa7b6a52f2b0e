/*
 * batch.h — folding N child statements into one: the SQL of the batched
 * statement for a list of key values, and how its rows map back to each
 * child's answer.  Pure text work (no I/O): the child is scanned and parsed
 * again with libpg_query (once per batch) to find the exact bytes to change.
 *
 * Forms (issue 4), with the child  SELECT <targets> FROM ... WHERE ... col = v ...
 *   IN       plain filters on one table (no join; no LIMIT/OFFSET, ORDER BY,
 *            GROUP BY, aggregate, DISTINCT, window function):
 *              SELECT <col>::<t> AS pgfold_key, <targets> FROM ... WHERE ... <col> IN (v1, v2, ...) ...
 *            <col> is the column reference as written, <t> bigint / uuid / text;
 *            each vi is the child's own value expression with the key in it
 *            (numbers as written, strings quoted, a $n as '<key>'::<type>);
 *            rows of different keys are interleaved.
 *   LATERAL  everything else that is still a pure function of v (ORDER BY,
 *            LIMIT/OFFSET, aggregates like count(*) per parent, DISTINCT,
 *            window functions, joins), and IN children whose IN form would not
 *            be exact:
 *              SELECT pgfold_k.pgfold_key, pgfold_s.*
 *              FROM (VALUES ('k1', 1), ('k2', 2), ...) AS pgfold_k(pgfold_key, pgfold_ord)
 *              CROSS JOIN LATERAL (SELECT row_number() OVER () AS pgfold_row, pgfold_c.*
 *                                  FROM (<child, v replaced by (pgfold_k.pgfold_key::<type>)>) AS pgfold_c) AS pgfold_s
 *              ORDER BY pgfold_k.pgfold_ord, 2
 *            (one line in the real text).  The sort is not stable, so the row
 *            number taken over the child's own output keeps each key's rows in
 *            the child's order; groups come in key order.
 *   EXISTS   SELECT EXISTS (SELECT ... WHERE col = v ...) [AS name] — the key is
 *            inside the EXISTS subquery: the analysis flags the statement
 *            RW_EXISTS_QUERY and gives the slot the inner WHERE's column (and
 *            its table from the inner FROM), so N+1 detection sees it as any
 *            other child.  Built like LATERAL without the row number (the
 *            child returns exactly one row):
 *              SELECT pgfold_k.pgfold_key, pgfold_s.* FROM (VALUES ...) AS pgfold_k(pgfold_key, pgfold_ord)
 *              CROSS JOIN LATERAL (<child, v replaced>) AS pgfold_s ORDER BY pgfold_k.pgfold_ord
 *            so every key gets its row — the child's own column (name, type)
 *            with true or false — and nothing needs synthesising.  Existence
 *            checks written as SELECT 1 ... WHERE fk = v LIMIT 1 have a LIMIT and
 *            take the LATERAL form, which is exact for them (one row or none per
 *            key, the child's own RowDescription).
 *
 * The first column of every form is the key exactly as the caller passed it
 * (IN: the column's value in the key's canonical text form — IN is only
 * chosen when every key is canonical, see below), so the proxy splits rows by
 * comparing it with its key texts.  The child's own columns follow unchanged
 * in name, type, type modifier, table OID and attribute number (checked on
 * PostgreSQL 15, also through the nested subqueries and with duplicate column
 * names): once the proxy drops the first layout.extra_columns columns, each
 * group's RowDescription and DataRows are what the child alone would have
 * produced (text format: the batch goes out as a simple Query), and its
 * CommandComplete is "SELECT <rows in the group>".  A key with no rows gets
 * the batch's RowDescription (minus the extra columns) and SELECT 0.  Keys
 * are deduplicated (byte-equal texts); the rows of a duplicate are its first
 * occurrence's.  Row order: LATERAL and EXISTS keep the child's own order per
 * key exactly (ties under its ORDER BY included, as long as PostgreSQL plans
 * the per-key subquery as it plans the child: it did for every child of the
 * integration test).  The IN form is only used for single-table children
 * without ORDER BY, whose row order SQL leaves to the plan: seq, bitmap and
 * btree index scans all return one key's rows in heap order, so the batch
 * matches the child whenever both plans scan one of these ways (a
 * synchronized seq scan of a table over a quarter of shared_buffers may start
 * mid-table — for the child alone too).  Joins go LATERAL because a many-key
 * IN plans the join differently (seen on PG 15: a many-to-many lazy load's
 * rows came back in another order under IN).
 *
 * Exactness of the key substitution (never a wrong answer; a batch that
 * fails on the server is safe: the proxy falls back to the child):
 *   $n key        the child's parameter type (param_types): the key becomes
 *                 '<key>'::<type> (int2/int4 widened to bigint at the equality,
 *                 so another key cannot overflow the first child's type);
 *                 every other $n is inlined as '<value>'::<type> / NULL::<type>.
 *   number        (ICONST/FCONST, a folded minus included) compared as a number:
 *                 bigint when every key is an integer, numeric otherwise, oid for
 *                 oid keys; a key that is not a number refuses the batch.
 *   string under  an explicit cast ('...'::uuid, CAST('...' AS uuid)): the key
 *                 text goes under the child's own cast.  The prefix form
 *                 uuid '...' is refused for LATERAL/EXISTS.
 *   bare string   its type comes from the column it is compared with: cast to
 *                 column_type when known (by column_type_name when it is not
 *                 built in), else to key_type — except text-like
 *                 key types (text, varchar, bpchar, name) with column_type 0:
 *                 a citext, char(n) or nondeterministic-collation column would
 *                 compare differently from text, so the batch is refused unless
 *                 the proxy supplies the column's type (pg_attribute).
 * IN is chosen only where splitting by <col>::<t> is exact: integer keys
 * (canonical: no sign but '-', no leading zero) compared as numbers, as an
 * int2/int4/int8 parameter or as a bare string with an integer key_type
 * (t = bigint); canonical uuid keys (lower-case,
 * 8-4-4-4-12) with uuid key type (t = uuid); text/varchar keys from a
 * text/varchar parameter, or a bare string against a column_type of text or
 * varchar (t = text); the operator token is '=' and a $n key appears once.
 * Otherwise an IN request is built as LATERAL (layout.form says which).
 *
 * The caller's duties: only children whose shape rw_batch_form_for() accepts,
 * with no volatile function (pg_proc) and not in a session whose settings are
 * unknown; the texts assume standard_conforming_strings = on for the child
 * (key strings holding a backslash are written E'...', correct either way);
 * param values and keys in text form (convert binary ones first).  A later
 * child may be answered from group k only when its text is this child's text
 * with the key slot's value replaced by k (same shape, every other slot's
 * value equal, same parameter values but the key).
 *
 * Interface
 *   rw_batch_form_for()    which form a shape + key slot needs (or NONE)
 *   rw_batch_build()       the batched SQL and its layout
 *   rw_batch_type_name()   SQL names of the key types
 *   rw_batch_literal()     a text value as a typed SQL literal
 */
#ifndef PGFOLD_REWRITE_BATCH_H
#define PGFOLD_REWRITE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/strbuf.h"
#include "analysis.h"

typedef enum rw_batch_form {
	RW_BATCH_NONE, /* not batchable: leave the child alone */
	RW_BATCH_IN,
	RW_BATCH_LATERAL,
	RW_BATCH_EXISTS,
} rw_batch_form;

const char *rw_batch_form_name(rw_batch_form form); /* "none", "in", "lateral", "exists" */

/* The form a child shape needs for key slot `slot`, or RW_BATCH_NONE: kind
 * READ only; never with FOR UPDATE/SHARE, a set operation, a CTE, a temp
 * table, SELECT INTO; the slot must be a top-level `column = value` of a
 * known table (rel_index >= 0) — for an RW_EXISTS_QUERY child, one of its
 * subquery's WHERE, which always takes the EXISTS form.  Otherwise IN when
 * the child reads one relation and no LIMIT, OFFSET, ORDER BY, GROUP BY,
 * aggregate, DISTINCT or window function appears anywhere; LATERAL
 * otherwise.  From the shape alone (no parse).  Volatility is the caller's
 * to check. */
rw_batch_form rw_batch_form_for(const rw_shape *child, size_t slot);

/* SQL type name for a key type OID: int2 "smallint", int4 "integer", int8
 * "bigint", text "text", varchar "varchar", bpchar "bpchar", uuid "uuid", oid
 * "oid", numeric "numeric"; NULL for any other type (not a key type). */
const char *rw_batch_type_name(uint32_t type_oid);

typedef struct rw_batch_request {
	const char *sql;          /* the text holding the child statement */
	size_t sql_len;
	const rw_stmt *stmt;      /* its analysis (rw_analyze of this very text): stmt->location/length
	                             and stmt->values give the statement's and each slot's bytes in sql */
	size_t slot;              /* the key slot */
	rw_batch_form form;       /* NONE: the form rw_batch_form_for() gives; LATERAL: LATERAL even where
	                             IN would do; IN/EXISTS: that form (IN may still come out LATERAL) */
	uint32_t key_type;        /* the parent column's type OID */
	uint32_t column_type;     /* the child's key column's type OID when known (pg_attribute), else 0 */
	const char *column_type_name; /* its SQL name when it is no built-in type (an enum, a domain,
	                             citext: "schema"."name"), else NULL; a bare string key compared
	                             with such a column is cast to it (LATERAL / EXISTS only) */
	size_t nkeys;             /* >= 1 */
	const char *const *keys;  /* key values in text form, the child's own first */
	const size_t *key_lengths;
	/* Bound parameters of an extended-protocol child ($1..$nparams); 0/NULL for a simple Query.
	 * The batch is sent as a simple Query, so every $n is inlined as a typed literal. */
	size_t nparams;
	const char *const *param_values; /* text form; a NULL pointer is SQL NULL */
	const size_t *param_lengths;
	const uint32_t *param_types;     /* the Parse's type OIDs (or ParameterDescription's); a $n whose
	                                    type is 0 or has no name here refuses the batch */
} rw_batch_request;

typedef struct rw_batch_layout {
	rw_batch_form form;       /* the form built */
	size_t extra_columns;     /* leading columns to drop from each row: 1 (IN, EXISTS: the key),
	                             2 (LATERAL: the key, then the row number) */
	bool grouped;             /* rows come grouped by key, groups in key order (LATERAL, EXISTS);
	                             false for IN (rows of different keys interleave) */
	size_t nkeys;             /* distinct keys in the statement */
} rw_batch_layout;

/* Build the batched statement into out (appended; one statement, no ';').
 * 0, or -1 when the child cannot be batched exactly after all (out and
 * layout unchanged): not a SELECT with the slot where its shape says, a key
 * or parameter that cannot be typed (above), a key of the wrong syntax for a
 * numeric comparison, no keys, or a result that does not parse. */
int rw_batch_build(const rw_batch_request *req, pf_sb *out, rw_batch_layout *layout)
	__attribute__((warn_unused_result));

/* Append value (len bytes) as a SQL literal of type type_oid: '<value>'::<name>,
 * quotes doubled (E'...' with backslashes doubled when the value holds one).
 * The names: every key type above plus boolean, bytea, name, real, double
 * precision, date, time, timetz, timestamp, timestamptz, interval, json,
 * jsonb, inet, cidr, macaddr and the arrays of boolean, the integers, text,
 * varchar, numeric, real, double precision, uuid, date, timestamp(tz).
 * 0, or -1 (out unchanged) for a type not in that list. */
int rw_batch_literal(pf_sb *out, const char *value, size_t len, uint32_t type_oid);

#endif /* PGFOLD_REWRITE_BATCH_H */
