/*
 * analysis_where.c — the `column = value` equalities of a top-level SELECT
 * (without set operation), UPDATE or DELETE: conjuncts of its WHERE reached
 * through AND only (never under OR / NOT / a subquery), one side a column
 * reference, the other a constant or $n, bare or under a cast, either way
 * round (SQLAlchemy writes `%(param_1)s = posts.user_id`).  The column's
 * qualifier is resolved against the statement's own FROM items: an alias, a
 * table name, or schema.table; an unqualified column resolves only when FROM
 * holds exactly one item and that item is a table.  A qualifier naming a
 * subquery, a function or a CTE gives rel_index -1 with the column kept.
 *
 * One exception to "never under a subquery": a statement that is nothing
 * but SELECT EXISTS (<select>) [AS name] (rw_exists_inner: the existence
 * check SQLAlchemy's select(exists().where(...)) emits) is flagged
 * RW_EXISTS_QUERY and its equalities are those of the inner select's WHERE,
 * resolved against the inner FROM — exactly where rewrite/batch.c looks for
 * the key of the EXISTS form.
 */
#include "analysis_int.h"
#include "analysis_write.h"

#include <string.h>

#include "../common/alloc.h"

typedef struct from_item {
	const char *visible; /* the name columns are qualified with: alias, else table name */
	const char *schema;  /* of a table without alias */
	const char *relname;
	int rel; /* index into the builder's relations, -1 when not a table */
} from_item;

typedef struct from_list {
	from_item *v;
	size_t n, cap;
	const PgQuery__WithClause *with; /* the statement's own CTEs */
} from_list;

static void from_push(from_list *fl, from_item it)
{
	rw_grow(&fl->v, &fl->cap, fl->n + 1, sizeof *fl->v);
	fl->v[fl->n++] = it;
}

static bool is_cte(const PgQuery__WithClause *with, const char *name)
{
	for (size_t i = 0; with && i < with->n_ctes; i++)
		if (with->ctes[i]->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR &&
		    strcmp(with->ctes[i]->common_table_expr->ctename, name) == 0)
			return true;
	return false;
}

static void from_add_range_var(const rw_builder *b, from_list *fl, const PgQuery__RangeVar *rv)
{
	const char *schema = rw_nz(rv->schemaname), *alias = rv->alias ? rw_nz(rv->alias->aliasname) : NULL;
	from_item it = {.visible = alias ? alias : rv->relname, .rel = -1};
	if (!schema && is_cte(fl->with, rv->relname)) {
		from_push(fl, it);
		return;
	}
	if (!alias) {
		it.schema = schema;
		it.relname = rv->relname;
	}
	it.rel = rw_builder_find_relation(b, schema, rv->relname, alias);
	from_push(fl, it);
}

static void from_add(const rw_builder *b, from_list *fl, const PgQuery__Node *n)
{
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_RANGE_VAR:
		from_add_range_var(b, fl, n->range_var);
		break;
	case PG_QUERY__NODE__NODE_JOIN_EXPR: {
		const PgQuery__JoinExpr *j = n->join_expr;
		if (j->alias) {
			from_push(fl, (from_item){.visible = j->alias->aliasname, .rel = -1});
			break;
		}
		if (j->larg)
			from_add(b, fl, j->larg);
		if (j->rarg)
			from_add(b, fl, j->rarg);
		break;
	}
	case PG_QUERY__NODE__NODE_RANGE_SUBSELECT: {
		const PgQuery__Alias *a = n->range_subselect->alias;
		from_push(fl, (from_item){.visible = a ? a->aliasname : NULL, .rel = -1});
		break;
	}
	case PG_QUERY__NODE__NODE_RANGE_FUNCTION: {
		const PgQuery__Alias *a = n->range_function->alias;
		from_push(fl, (from_item){.visible = a ? a->aliasname : NULL, .rel = -1});
		break;
	}
	default:
		from_push(fl, (from_item){.rel = -1});
		break;
	}
}

static const char *string_field(const PgQuery__Node *n)
{
	return n->node_case == PG_QUERY__NODE__NODE_STRING ? n->string->sval : NULL;
}

/* The relation a column reference belongs to; -1 when not a known table. */
static int resolve(const from_list *fl, const PgQuery__ColumnRef *c)
{
	if (c->n_fields == 1)
		return fl->n == 1 ? fl->v[0].rel : -1;
	const char *q = string_field(c->fields[c->n_fields - 2]);
	if (!q)
		return -1;
	if (c->n_fields == 2) {
		for (size_t i = 0; i < fl->n; i++)
			if (fl->v[i].visible && strcmp(fl->v[i].visible, q) == 0)
				return fl->v[i].rel;
		return -1;
	}
	const char *schema = string_field(c->fields[c->n_fields - 3]);
	for (size_t i = 0; schema && i < fl->n; i++) {
		const from_item *it = &fl->v[i];
		if (it->relname && strcmp(it->relname, q) == 0 && (!it->schema || strcmp(it->schema, schema) == 0))
			return it->rel;
	}
	return -1;
}

bool rw_value_location(const PgQuery__Node *n, int *loc)
{
	if (n->node_case == PG_QUERY__NODE__NODE_TYPE_CAST && n->type_cast->arg)
		n = n->type_cast->arg;
	if (n->node_case == PG_QUERY__NODE__NODE_A_CONST && !n->a_const->isnull) {
		*loc = n->a_const->location;
		return *loc >= 0;
	}
	if (n->node_case == PG_QUERY__NODE__NODE_PARAM_REF) {
		*loc = n->param_ref->location;
		return *loc >= 0;
	}
	return false;
}

static bool try_equality(rw_builder *b, const from_list *fl, const PgQuery__Node *col, const PgQuery__Node *val)
{
	int loc;
	if (!col || !val || col->node_case != PG_QUERY__NODE__NODE_COLUMN_REF || !rw_value_location(val, &loc))
		return false;
	const PgQuery__ColumnRef *c = col->column_ref;
	const char *column = c->n_fields ? string_field(c->fields[c->n_fields - 1]) : NULL;
	if (!column)
		return false;
	rw_grow(&b->eqs, &b->capeqs, b->neqs + 1, sizeof *b->eqs);
	b->eqs[b->neqs++] = (rw_eq){.location = loc, .rel_index = resolve(fl, c), .column = column};
	return true;
}

static bool is_equals(const PgQuery__AExpr *e)
{
	if (e->kind != PG_QUERY__A__EXPR__KIND__AEXPR_OP || e->n_name == 0)
		return false;
	const char *op = string_field(e->name[e->n_name - 1]);
	return op && strcmp(op, "=") == 0;
}

static void conjuncts(rw_builder *b, const from_list *fl, const PgQuery__Node *e)
{
	if (!e)
		return;
	if (e->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
	    e->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR) {
		for (size_t i = 0; i < e->bool_expr->n_args; i++)
			conjuncts(b, fl, e->bool_expr->args[i]);
		return;
	}
	if (e->node_case == PG_QUERY__NODE__NODE_A_EXPR && is_equals(e->a_expr)) {
		const PgQuery__AExpr *a = e->a_expr;
		if (!try_equality(b, fl, a->lexpr, a->rexpr))
			try_equality(b, fl, a->rexpr, a->lexpr);
	}
}

const PgQuery__SelectStmt *rw_exists_inner(const PgQuery__SelectStmt *s)
{
	if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE || s->n_from_clause || s->where_clause || s->n_group_clause ||
	    s->having_clause || s->n_window_clause || s->n_sort_clause || s->limit_count || s->limit_offset ||
	    s->n_locking_clause || s->with_clause || s->n_distinct_clause || s->into_clause || s->n_values_lists ||
	    s->n_target_list != 1)
		return NULL;
	const PgQuery__Node *t = s->target_list[0];
	if (t->node_case != PG_QUERY__NODE__NODE_RES_TARGET || !t->res_target->val || t->res_target->n_indirection)
		return NULL;
	const PgQuery__Node *v = t->res_target->val;
	if (v->node_case != PG_QUERY__NODE__NODE_SUB_LINK ||
	    v->sub_link->sub_link_type != PG_QUERY__SUB_LINK_TYPE__EXISTS_SUBLINK || !v->sub_link->subselect ||
	    v->sub_link->subselect->node_case != PG_QUERY__NODE__NODE_SELECT_STMT)
		return NULL;
	const PgQuery__SelectStmt *in = v->sub_link->subselect->select_stmt;
	return in->op == PG_QUERY__SET_OPERATION__SETOP_NONE ? in : NULL;
}

void rw_where_collect(rw_builder *b, const PgQuery__Node *stmt)
{
	from_list fl = {0};
	const PgQuery__Node *where = NULL;
	PgQuery__Node *const *from = NULL;
	size_t nfrom = 0;
	switch (stmt->node_case) {
	case PG_QUERY__NODE__NODE_SELECT_STMT: {
		const PgQuery__SelectStmt *s = stmt->select_stmt, *in = rw_exists_inner(s);
		if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE)
			return;
		if (in) {
			b->flags |= RW_EXISTS_QUERY;
			s = in;
		}
		fl.with = s->with_clause;
		from = s->from_clause, nfrom = s->n_from_clause, where = s->where_clause;
		break;
	}
	case PG_QUERY__NODE__NODE_UPDATE_STMT: {
		const PgQuery__UpdateStmt *s = stmt->update_stmt;
		if (s->relation)
			from_add_range_var(b, &fl, s->relation); /* a target is never a CTE */
		fl.with = s->with_clause;
		from = s->from_clause, nfrom = s->n_from_clause, where = s->where_clause;
		break;
	}
	case PG_QUERY__NODE__NODE_DELETE_STMT: {
		const PgQuery__DeleteStmt *s = stmt->delete_stmt;
		if (s->relation)
			from_add_range_var(b, &fl, s->relation);
		fl.with = s->with_clause;
		from = s->using_clause, nfrom = s->n_using_clause, where = s->where_clause;
		break;
	}
	default:
		return;
	}
	for (size_t i = 0; i < nfrom; i++)
		from_add(b, &fl, from[i]);
	conjuncts(b, &fl, where);
	pf_free(fl.v);
}
