/*
 * analysis_walk.c — walks one statement's parse tree (libpg_query's protobuf
 * C structs) and gathers its kind, the relations it reads and writes, CTE
 * scopes and the clause flags; expressions go to analysis_expr.c and
 * transaction/session statements to analysis_tx.c.
 *
 * The walk is generic: every message field of every node is visited through
 * the protobuf-c descriptors, so a relation or function call is found
 * wherever the grammar puts it (subqueries, CTEs, joins, DDL).  The visitor
 * intercepts the few nodes that need more than that: RangeVar, the
 * statements that open a CTE scope, FuncCall, SubLink, A_Const.
 *
 * CTE scope follows PostgreSQL: in a plain WITH each CTE sees the ones before
 * it; in WITH RECURSIVE every CTE sees all of them; the statement body sees
 * all.  An unqualified name found in scope is a CTE reference, not a relation
 * (`WITH users AS (SELECT * FROM users) ...` reads the table users).
 */
#include "analysis_int.h"

#include <string.h>

#include "../common/alloc.h"

const char *rw_nz(const char *s)
{
	return s && *s ? s : NULL;
}

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

int rw_builder_find_relation(const rw_builder *b, const char *schema, const char *name, const char *alias)
{
	for (size_t i = 0; i < b->nrels; i++) {
		const rw_relation *r = &b->rels[i];
		if (same(r->schema, schema) && same(r->name, name) && same(r->alias, alias))
			return (int)i;
	}
	return -1;
}

static bool is_temp_schema(const char *schema)
{
	return schema && strncmp(schema, "pg_temp", 7) == 0 && (schema[7] == '\0' || schema[7] == '_');
}

static bool is_catalog(const char *schema, const char *name)
{
	if (schema)
		return (strncmp(schema, "pg_", 3) == 0 && !is_temp_schema(schema)) ||
		       strcmp(schema, "information_schema") == 0;
	return strncmp(name, "pg_", 3) == 0;
}

int rw_builder_add_relation(rw_builder *b, const char *schema, const char *name, const char *alias,
			    bool written)
{
	schema = rw_nz(schema);
	alias = rw_nz(alias);
	written = written && !b->no_write;
	if (is_temp_schema(schema))
		b->flags |= RW_TOUCHES_TEMP;
	if (is_catalog(schema, name))
		b->flags |= RW_TOUCHES_CATALOG;
	int i = rw_builder_find_relation(b, schema, name, alias);
	if (i >= 0) {
		b->rels[i].written = b->rels[i].written || written;
		return i;
	}
	rw_grow(&b->rels, &b->caprels, b->nrels + 1, sizeof *b->rels);
	b->rels[b->nrels] = (rw_relation){.schema = schema, .name = name, .alias = alias, .written = written};
	return (int)b->nrels++;
}

static bool in_cte_scope(const rw_builder *b, const char *name)
{
	for (size_t i = b->nscope; i-- > 0;)
		if (strcmp(b->scope[i], name) == 0)
			return true;
	return false;
}

static void scope_push(rw_builder *b, const char *name)
{
	rw_grow(&b->scope, &b->capscope, b->nscope + 1, sizeof *b->scope);
	b->scope[b->nscope++] = name;
}

/* A RangeVar as a table reference (read, or written in DDL outside a query). */
static int add_range_var(rw_builder *b, const PgQuery__RangeVar *rv, bool written)
{
	if (!rw_nz(rv->relname))
		return -1;
	if (rv->relpersistence && strcmp(rv->relpersistence, "t") == 0)
		b->flags |= RW_TOUCHES_TEMP;
	const char *alias = rv->alias ? rv->alias->aliasname : NULL;
	return rw_builder_add_relation(b, rv->schemaname, rv->relname, alias, written);
}

static bool visit_range_var(rw_builder *b, const PgQuery__RangeVar *rv)
{
	if (!rw_nz(rv->schemaname) && rw_nz(rv->relname) && in_cte_scope(b, rv->relname))
		return true; /* a CTE reference */
	add_range_var(b, rv, b->ddl && b->query_depth == 0);
	return true;
}

/* ---- the generic walk ---------------------------------------------------- */

static bool visit(rw_builder *b, const ProtobufCMessage *m);

static void walk_children(rw_builder *b, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n;
			ProtobufCMessage *const *v;
			memcpy(&n, base + f->quantifier_offset, sizeof n);
			memcpy(&v, base + f->offset, sizeof v);
			for (size_t j = 0; j < n; j++)
				rw_walk(b, v[j]);
			continue;
		}
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which;
			memcpy(&which, base + f->quantifier_offset, sizeof which);
			if (which != f->id)
				continue;
		}
		const ProtobufCMessage *c;
		memcpy(&c, base + f->offset, sizeof c);
		rw_walk(b, c);
	}
}

void rw_walk(rw_builder *b, const ProtobufCMessage *m)
{
	if (!m || m == b->skip_with)
		return;
	if (m->descriptor == &pg_query__node__descriptor) {
		/* every member of Node's oneof is a pointer at the same offset */
		const PgQuery__Node *n = (const PgQuery__Node *)m;
		if (n->node_case != PG_QUERY__NODE__NODE__NOT_SET)
			rw_walk(b, (const ProtobufCMessage *)n->range_var);
		return;
	}
	if (!visit(b, m))
		walk_children(b, m);
}

/* Walk a statement that may carry a WITH clause, with its CTE names in scope. */
static void walk_scoped(rw_builder *b, const ProtobufCMessage *stmt, const PgQuery__WithClause *with)
{
	size_t saved = b->nscope;
	const void *saved_skip = b->skip_with;
	if (with) {
		b->flags |= RW_HAS_CTE;
		for (size_t i = 0; with->recursive && i < with->n_ctes; i++)
			if (with->ctes[i]->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR)
				scope_push(b, with->ctes[i]->common_table_expr->ctename);
		for (size_t i = 0; i < with->n_ctes; i++) {
			if (with->ctes[i]->node_case != PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR)
				continue;
			const PgQuery__CommonTableExpr *cte = with->ctes[i]->common_table_expr;
			const PgQuery__Node *q = cte->ctequery;
			if (q && (q->node_case == PG_QUERY__NODE__NODE_INSERT_STMT ||
				  q->node_case == PG_QUERY__NODE__NODE_UPDATE_STMT ||
				  q->node_case == PG_QUERY__NODE__NODE_DELETE_STMT ||
				  q->node_case == PG_QUERY__NODE__NODE_MERGE_STMT))
				b->flags |= RW_WRITABLE_CTE;
			walk_children(b, &cte->base);
			if (!with->recursive)
				scope_push(b, cte->ctename);
		}
		b->skip_with = with;
	}
	walk_children(b, stmt);
	b->skip_with = saved_skip;
	b->nscope = saved;
}

static bool visit_select(rw_builder *b, const PgQuery__SelectStmt *s)
{
	if (s->n_distinct_clause)
		b->flags |= RW_HAS_DISTINCT;
	if (s->n_sort_clause)
		b->flags |= RW_HAS_ORDER_BY;
	if (s->n_group_clause)
		b->flags |= RW_HAS_GROUP_BY;
	if (s->having_clause)
		b->flags |= RW_HAS_AGGREGATE;
	if (s->n_window_clause)
		b->flags |= RW_HAS_WINDOW;
	if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE && s->op != PG_QUERY__SET_OPERATION__SET_OPERATION_UNDEFINED)
		b->flags |= RW_HAS_SET_OP;
	if (s->n_locking_clause)
		b->flags |= RW_FOR_UPDATE;
	if (s->into_clause && s->into_clause->rel) {
		b->flags |= RW_SELECT_INTO;
		add_range_var(b, s->into_clause->rel, true);
	}
	b->query_depth++;
	walk_scoped(b, &s->base, s->with_clause);
	b->query_depth--;
	return true;
}

/* INSERT / UPDATE / DELETE / MERGE: the target is written, wherever it is. */
static bool visit_dml(rw_builder *b, const ProtobufCMessage *m, const PgQuery__RangeVar *target,
		      const PgQuery__WithClause *with)
{
	b->has_dml = true;
	if (target)
		add_range_var(b, target, true);
	walk_scoped(b, m, with);
	return true;
}

static bool visit(rw_builder *b, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	if (d == &pg_query__range_var__descriptor)
		return visit_range_var(b, (const PgQuery__RangeVar *)m);
	if (d == &pg_query__a__const__descriptor)
		return rw_visit_a_const(b, (const PgQuery__AConst *)m);
	if (d == &pg_query__func_call__descriptor)
		return rw_visit_func_call(b, (const PgQuery__FuncCall *)m);
	if (d == &pg_query__column_ref__descriptor || d == &pg_query__param_ref__descriptor ||
	    d == &pg_query__string__descriptor || d == &pg_query__type_name__descriptor)
		return true; /* nothing below these matters */
	if (d == &pg_query__select_stmt__descriptor)
		return visit_select(b, (const PgQuery__SelectStmt *)m);
	if (d == &pg_query__sub_link__descriptor)
		return rw_visit_sub_link(b, (const PgQuery__SubLink *)m);
	if (d == &pg_query__range_subselect__descriptor) {
		b->flags |= RW_HAS_SUBQUERY;
		return false;
	}
	if (d == &pg_query__sqlvalue_function__descriptor)
		return rw_visit_sql_value_function(b, (const PgQuery__SQLValueFunction *)m);
	if (d == &pg_query__grouping_func__descriptor) {
		b->flags |= RW_HAS_AGGREGATE;
		return false;
	}
	if (d == &pg_query__insert_stmt__descriptor) {
		const PgQuery__InsertStmt *s = (const PgQuery__InsertStmt *)m;
		return visit_dml(b, m, s->relation, s->with_clause);
	}
	if (d == &pg_query__update_stmt__descriptor) {
		const PgQuery__UpdateStmt *s = (const PgQuery__UpdateStmt *)m;
		return visit_dml(b, m, s->relation, s->with_clause);
	}
	if (d == &pg_query__delete_stmt__descriptor) {
		const PgQuery__DeleteStmt *s = (const PgQuery__DeleteStmt *)m;
		return visit_dml(b, m, s->relation, s->with_clause);
	}
	if (d == &pg_query__merge_stmt__descriptor) {
		const PgQuery__MergeStmt *s = (const PgQuery__MergeStmt *)m;
		return visit_dml(b, m, s->relation, s->with_clause);
	}
	return false;
}

/* ---- statements ---------------------------------------------------------- */

/* DROP TABLE/VIEW/...: the dropped relations are written. */
static void drop_relations(rw_builder *b, const PgQuery__DropStmt *d)
{
	switch (d->remove_type) {
	case PG_QUERY__OBJECT_TYPE__OBJECT_TABLE:
	case PG_QUERY__OBJECT_TYPE__OBJECT_VIEW:
	case PG_QUERY__OBJECT_TYPE__OBJECT_MATVIEW:
	case PG_QUERY__OBJECT_TYPE__OBJECT_FOREIGN_TABLE:
	case PG_QUERY__OBJECT_TYPE__OBJECT_SEQUENCE:
	case PG_QUERY__OBJECT_TYPE__OBJECT_INDEX:
		break;
	default:
		return;
	}
	for (size_t i = 0; i < d->n_objects; i++) {
		const PgQuery__Node *o = d->objects[i];
		if (o->node_case != PG_QUERY__NODE__NODE_LIST)
			continue;
		const PgQuery__List *l = o->list;
		const char *part[3] = {NULL, NULL, NULL};
		size_t n = l->n_items < 3 ? l->n_items : 3;
		for (size_t j = 0; j < n; j++)
			if (l->items[l->n_items - n + j]->node_case == PG_QUERY__NODE__NODE_STRING)
				part[3 - n + j] = l->items[l->n_items - n + j]->string->sval;
		if (rw_nz(part[2]))
			rw_builder_add_relation(b, part[1], part[2], NULL, true);
	}
}

static bool explain_analyze(rw_builder *b, const PgQuery__ExplainStmt *e)
{
	bool analyze = false;
	for (size_t i = 0; i < e->n_options; i++) {
		const PgQuery__Node *o = e->options[i];
		if (o->node_case != PG_QUERY__NODE__NODE_DEF_ELEM || strcmp(o->def_elem->defname, "analyze") != 0)
			continue;
		const PgQuery__Node *arg = o->def_elem->arg;
		analyze = true;
		if (!arg)
			continue;
		/* ANALYZE false / off / 0 / 'off': may come from a literal, so never share the shape */
		b->fast = false;
		if (arg->node_case == PG_QUERY__NODE__NODE_STRING)
			analyze = !(strcmp(arg->string->sval, "false") == 0 || strcmp(arg->string->sval, "off") == 0 ||
				    strcmp(arg->string->sval, "0") == 0 || strcmp(arg->string->sval, "no") == 0);
		else if (arg->node_case == PG_QUERY__NODE__NODE_INTEGER)
			analyze = arg->integer->ival != 0;
		else if (arg->node_case == PG_QUERY__NODE__NODE_BOOLEAN)
			analyze = arg->boolean->boolval;
	}
	return analyze;
}

/* After the walk of a SELECT-like statement: what it really does. */
static rw_kind refine_read(const rw_builder *b)
{
	if (b->has_dml || b->seq_write || (b->flags & (RW_FOR_UPDATE | RW_SELECT_INTO | RW_WRITABLE_CTE)))
		return RW_KIND_WRITE;
	if (b->calls_set_config)
		return RW_KIND_SESSION;
	if (b->calls_notify)
		return RW_KIND_LISTEN;
	return RW_KIND_READ;
}

static rw_kind walk_other(rw_builder *b, const PgQuery__Node *stmt);

static rw_kind walk_kind(rw_builder *b, const PgQuery__Node *stmt)
{
	const ProtobufCMessage *m = (const ProtobufCMessage *)stmt->range_var;
	switch (stmt->node_case) {
	case PG_QUERY__NODE__NODE_SELECT_STMT: {
		const PgQuery__SelectStmt *s = stmt->select_stmt;
		if (s->limit_count && !(s->limit_count->node_case == PG_QUERY__NODE__NODE_A_CONST &&
					s->limit_count->a_const->isnull))
			b->flags |= RW_HAS_LIMIT;
		if (s->limit_offset)
			b->flags |= RW_HAS_OFFSET;
		rw_walk(b, m);
		return refine_read(b);
	}
	case PG_QUERY__NODE__NODE_INSERT_STMT:
	case PG_QUERY__NODE__NODE_UPDATE_STMT:
	case PG_QUERY__NODE__NODE_DELETE_STMT:
	case PG_QUERY__NODE__NODE_MERGE_STMT:
		rw_walk(b, m);
		return RW_KIND_WRITE;
	case PG_QUERY__NODE__NODE_EXPLAIN_STMT: {
		bool analyze = explain_analyze(b, stmt->explain_stmt);
		b->no_write = !analyze;
		rw_kind k = stmt->explain_stmt->query ? walk_kind(b, stmt->explain_stmt->query) : RW_KIND_READ;
		return analyze ? k : RW_KIND_READ;
	}
	case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT:
		return RW_KIND_READ;
	case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
		return rw_tx_transaction(b, stmt->transaction_stmt);
	case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
		return rw_tx_variable_set(b, stmt->variable_set_stmt);
	case PG_QUERY__NODE__NODE_DISCARD_STMT:
		return rw_tx_discard(b, stmt->discard_stmt);
	case PG_QUERY__NODE__NODE_LISTEN_STMT:
	case PG_QUERY__NODE__NODE_UNLISTEN_STMT:
	case PG_QUERY__NODE__NODE_NOTIFY_STMT:
		return RW_KIND_LISTEN;
	case PG_QUERY__NODE__NODE_COPY_STMT: {
		const PgQuery__CopyStmt *c = stmt->copy_stmt;
		if (c->relation)
			add_range_var(b, c->relation, c->is_from);
		rw_walk(b, m);
		return RW_KIND_COPY;
	}
	case PG_QUERY__NODE__NODE_TRUNCATE_STMT:
		b->ddl = true;
		rw_walk(b, m);
		return RW_KIND_TRUNCATE;
	default:
		return walk_other(b, stmt);
	}
}

static rw_kind walk_other(rw_builder *b, const PgQuery__Node *stmt)
{
	const ProtobufCMessage *m = (const ProtobufCMessage *)stmt->range_var;
	switch (stmt->node_case) {
	case PG_QUERY__NODE__NODE_VACUUM_STMT:
	case PG_QUERY__NODE__NODE_CHECK_POINT_STMT:
	case PG_QUERY__NODE__NODE_PREPARE_STMT:
	case PG_QUERY__NODE__NODE_EXECUTE_STMT:
	case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
	case PG_QUERY__NODE__NODE_DO_STMT:
	case PG_QUERY__NODE__NODE_CALL_STMT:
	case PG_QUERY__NODE__NODE_LOAD_STMT:
	case PG_QUERY__NODE__NODE_LOCK_STMT:
	case PG_QUERY__NODE__NODE_REINDEX_STMT:
	case PG_QUERY__NODE__NODE_CLUSTER_STMT:
	case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
	case PG_QUERY__NODE__NODE_FETCH_STMT:
	case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
	case PG_QUERY__NODE__NODE_CONSTRAINTS_SET_STMT:
	case PG_QUERY__NODE__NODE_ALTER_SYSTEM_STMT:
	case PG_QUERY__NODE__NODE_PLASSIGN_STMT:
	case PG_QUERY__NODE__NODE_RETURN_STMT:
		rw_walk(b, m);
		return RW_KIND_OTHER;
	case PG_QUERY__NODE__NODE_DROP_STMT:
		drop_relations(b, stmt->drop_stmt);
		b->ddl = true;
		rw_walk(b, m);
		return RW_KIND_DDL;
	default: /* CREATE / ALTER / DROP / COMMENT / GRANT / REVOKE / REFRESH ... */
		b->ddl = true;
		rw_walk(b, m);
		return RW_KIND_DDL;
	}
}

void rw_walk_statement(rw_builder *b, const PgQuery__Node *stmt)
{
	b->kind = walk_kind(b, stmt);
}
