/*
 * analysis_write.c — the top-level write form (analysis_write.h): which of
 * UPDATE, DELETE or INSERT ... VALUES a data write is, its target's entry
 * among the relations, the columns SET assigns, and for INSERT the column
 * list and where each VALUES cell's constant sits.  Anything that does not
 * fit those simple forms exactly is RW_WRITE_OTHER: the caller then treats
 * the write as touching its whole table.
 */
#include "analysis_write.h"

#include <string.h>

#include "../common/alloc.h"

static bool any_written(const rw_builder *b)
{
	for (size_t i = 0; i < b->nrels; i++)
		if (b->rels[i].written)
			return true;
	return false;
}

/* The target's own entry (alias included), when the walk marked it written. */
static int target_of(const rw_builder *b, const PgQuery__RangeVar *rv)
{
	if (!rv || !rw_nz(rv->relname))
		return -1;
	const char *alias = rv->alias ? rv->alias->aliasname : NULL;
	int i = rw_builder_find_relation(b, rw_nz(rv->schemaname), rv->relname, rw_nz(alias));
	return i >= 0 && b->rels[i].written ? i : -1;
}

static const PgQuery__ResTarget *res_target(const PgQuery__Node *n)
{
	return n && n->node_case == PG_QUERY__NODE__NODE_RES_TARGET ? n->res_target : NULL;
}

static bool listed(const char *const *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], name) == 0)
			return true;
	return false;
}

/* UPDATE's SET: every column it assigns, once (SET (a, b) = ... gives one
 * ResTarget per column; SET a[1] = ... assigns a). */
static bool collect_set(rw_write_facts *w, const PgQuery__UpdateStmt *u)
{
	w->set_cols = pf_calloc(u->n_target_list ? u->n_target_list : 1, sizeof *w->set_cols);
	for (size_t i = 0; i < u->n_target_list; i++) {
		const PgQuery__ResTarget *t = res_target(u->target_list[i]);
		if (!t || !rw_nz(t->name))
			return false;
		if (!listed(w->set_cols, w->nset_cols, t->name))
			w->set_cols[w->nset_cols++] = t->name;
	}
	return w->nset_cols > 0;
}

/* The VALUES list of an INSERT: a plain SelectStmt made of VALUES only. */
static const PgQuery__SelectStmt *values_of(const PgQuery__InsertStmt *ins)
{
	const PgQuery__Node *n = ins->select_stmt;
	if (!n || n->node_case != PG_QUERY__NODE__NODE_SELECT_STMT)
		return NULL;
	const PgQuery__SelectStmt *s = n->select_stmt;
	bool plain = s->n_values_lists > 0 && !s->n_target_list && !s->n_from_clause && !s->where_clause &&
		     !s->n_sort_clause && !s->limit_offset && !s->limit_count && !s->n_locking_clause &&
		     !s->with_clause && !s->into_clause && !s->larg && !s->rarg &&
		     (s->op == PG_QUERY__SET_OPERATION__SETOP_NONE ||
		      s->op == PG_QUERY__SET_OPERATION__SET_OPERATION_UNDEFINED);
	return plain ? s : NULL;
}

static const PgQuery__List *row_of(const PgQuery__Node *n)
{
	return n && n->node_case == PG_QUERY__NODE__NODE_LIST ? n->list : NULL;
}

/* The column list, and each cell's constant location (-1: not a bare or cast
 * constant or $n, or its column is written with a subscript or field). */
static void collect_insert(rw_write_facts *w, const PgQuery__InsertStmt *ins, const PgQuery__SelectStmt *v)
{
	w->ins_cols = pf_calloc(ins->n_cols ? ins->n_cols : 1, sizeof *w->ins_cols);
	for (size_t i = 0; i < ins->n_cols; i++) {
		const PgQuery__ResTarget *t = res_target(ins->cols[i]);
		w->ins_cols[w->nins_cols++] = t && rw_nz(t->name) ? t->name : "";
	}
	if (!w->nins_cols)
		return;
	for (size_t r = 0; r < v->n_values_lists; r++) {
		const PgQuery__List *row = row_of(v->values_lists[r]);
		if (!row || row->n_items != w->nins_cols)
			return; /* PostgreSQL refuses it: no rows */
	}
	w->cells = pf_calloc(v->n_values_lists * w->nins_cols, sizeof *w->cells);
	for (size_t r = 0; r < v->n_values_lists; r++) {
		const PgQuery__List *row = row_of(v->values_lists[r]);
		for (size_t c = 0; c < w->nins_cols; c++) {
			const PgQuery__ResTarget *t = res_target(ins->cols[c]);
			int loc = -1;
			if (!t || t->n_indirection || !rw_value_location(row->items[c], &loc))
				loc = -1;
			w->cells[r * w->nins_cols + c] = loc;
		}
	}
	w->nrows = v->n_values_lists;
}

/* The simple forms; false leaves the statement OTHER. */
static bool collect_form(rw_write_facts *w, const rw_builder *b, const PgQuery__Node *stmt)
{
	switch (stmt->node_case) {
	case PG_QUERY__NODE__NODE_UPDATE_STMT:
		w->rel = target_of(b, stmt->update_stmt->relation);
		w->form = RW_WRITE_UPDATE;
		return w->rel >= 0 && collect_set(w, stmt->update_stmt);
	case PG_QUERY__NODE__NODE_DELETE_STMT:
		w->rel = target_of(b, stmt->delete_stmt->relation);
		w->form = RW_WRITE_DELETE;
		return w->rel >= 0;
	case PG_QUERY__NODE__NODE_INSERT_STMT: {
		const PgQuery__InsertStmt *ins = stmt->insert_stmt;
		const PgQuery__SelectStmt *v = values_of(ins);
		w->rel = target_of(b, ins->relation);
		w->form = RW_WRITE_INSERT_VALUES;
		/* OVERRIDING USER VALUE: identity columns take generated values, not the ones given */
		if (w->rel < 0 || !v || ins->override == PG_QUERY__OVERRIDING_KIND__OVERRIDING_USER_VALUE)
			return false;
		w->on_conflict = ins->on_conflict_clause != NULL;
		collect_insert(w, ins, v);
		return true;
	}
	default:
		return false;
	}
}

void rw_write_collect(rw_write_facts *w, const rw_builder *b, const PgQuery__Node *stmt)
{
	*w = (rw_write_facts){.form = RW_WRITE_NONE, .rel = -1};
	bool writes = b->kind == RW_KIND_WRITE || b->kind == RW_KIND_TRUNCATE ||
		      (b->kind == RW_KIND_COPY && any_written(b));
	if (!writes)
		return;
	if (b->kind == RW_KIND_WRITE && !(b->flags & RW_WRITABLE_CTE) && stmt && collect_form(w, b, stmt))
		return;
	rw_write_facts_free(w);
	*w = (rw_write_facts){.form = RW_WRITE_OTHER, .rel = -1};
}

void rw_write_facts_free(rw_write_facts *w)
{
	pf_free(w->set_cols);
	pf_free(w->ins_cols);
	pf_free(w->cells);
	*w = (rw_write_facts){.form = w->form, .rel = w->rel};
}
