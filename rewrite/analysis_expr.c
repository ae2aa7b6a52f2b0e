/*
 * analysis_expr.c — expressions: the functions a statement calls (with the
 * ones that change its kind: nextval/setval write, set_config sets, pg_notify
 * notifies), aggregates and window functions, subqueries and EXISTS, and the
 * numeric constants whose location tells a folded unary minus apart.
 */
#include "analysis_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"

/* Built-in aggregates (a FuncCall does not say whether it aggregates; a
 * user-defined aggregate is only known as one through * / DISTINCT / ORDER
 * BY / FILTER / WITHIN GROUP).  Sorted for bsearch. */
static const char *const aggregates[] = {
	"any_value",	   "array_agg",	      "avg",		"bit_and",	    "bit_or",
	"bit_xor",	   "bool_and",	      "bool_or",	"corr",		    "count",
	"covar_pop",	   "covar_samp",      "cume_dist",	"dense_rank",	    "every",
	"json_agg",	   "json_object_agg", "jsonb_agg",	"jsonb_object_agg", "max",
	"min",		   "mode",	      "percent_rank",	"percentile_cont",  "percentile_disc",
	"range_agg",	   "range_intersect_agg", "rank",	"regr_avgx",	    "regr_avgy",
	"regr_count",	   "regr_intercept",  "regr_r2",	"regr_slope",	    "regr_sxx",
	"regr_sxy",	   "regr_syy",	      "stddev",		"stddev_pop",	    "stddev_samp",
	"string_agg",	   "sum",	      "var_pop",	"var_samp",	    "variance",
	"xmlagg",
};

static int cmp_name(const void *key, const void *elem)
{
	return strcmp(key, *(const char *const *)elem);
}

static bool is_builtin_aggregate(const char *name)
{
	return bsearch(name, aggregates, sizeof aggregates / sizeof *aggregates, sizeof *aggregates, cmp_name) != NULL;
}

static void add_function(rw_builder *b, char *name)
{
	for (size_t i = 0; i < b->nfuncs; i++) {
		if (strcmp(b->funcs[i], name) == 0) {
			pf_free(name);
			return;
		}
	}
	rw_grow(&b->funcs, &b->capfuncs, b->nfuncs + 1, sizeof *b->funcs);
	b->funcs[b->nfuncs++] = name;
}

/* "schema.name" as written; SQL-syntax calls (EXTRACT, SUBSTRING ... FROM,
 * TRIM, ...) lose the pg_catalog the grammar adds. */
static char *func_name(const PgQuery__FuncCall *f, const char **last, const char **schema)
{
	size_t first = 0, n = f->n_funcname;
	if (f->funcformat == PG_QUERY__COERCION_FORM__COERCE_SQL_SYNTAX && n == 2)
		first = 1;
	size_t len = 0;
	*last = *schema = NULL;
	for (size_t i = first; i < n; i++) {
		const PgQuery__Node *p = f->funcname[i];
		if (p->node_case != PG_QUERY__NODE__NODE_STRING)
			return NULL;
		len += strlen(p->string->sval) + 1;
		*last = p->string->sval;
		if (i + 2 == n)
			*schema = p->string->sval;
	}
	if (!*last)
		return NULL;
	char *s = pf_malloc(len), *o = s;
	for (size_t i = first; i < n; i++) {
		size_t k = strlen(f->funcname[i]->string->sval);
		memcpy(o, f->funcname[i]->string->sval, k);
		o += k;
		*o++ = i + 1 < n ? '.' : '\0';
	}
	return s;
}

bool rw_visit_func_call(rw_builder *b, const PgQuery__FuncCall *f)
{
	const char *last, *schema;
	char *name = func_name(f, &last, &schema);
	if (!name)
		return false;
	bool system = !schema || strcmp(schema, "pg_catalog") == 0;
	if (system && (strcmp(last, "nextval") == 0 || strcmp(last, "setval") == 0))
		b->seq_write = true;
	if (system && strcmp(last, "set_config") == 0)
		rw_tx_set_config(b, f);
	if (system && strcmp(last, "pg_notify") == 0)
		b->calls_notify = true;
	if (f->over)
		b->flags |= RW_HAS_WINDOW;
	else if (f->agg_star || f->agg_distinct || f->n_agg_order || f->agg_filter || f->agg_within_group ||
		 (system && is_builtin_aggregate(last)))
		b->flags |= RW_HAS_AGGREGATE;
	add_function(b, name);
	return false;
}

bool rw_visit_sql_value_function(rw_builder *b, const PgQuery__SQLValueFunction *f)
{
	const char *name = NULL;
	switch (f->op) {
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_DATE:
		name = "current_date";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_TIME:
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_TIME_N:
		name = "current_time";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_TIMESTAMP:
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_TIMESTAMP_N:
		name = "current_timestamp";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIME:
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIME_N:
		name = "localtime";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIMESTAMP:
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIMESTAMP_N:
		name = "localtimestamp";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_ROLE:
		name = "current_role";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_USER:
		name = "current_user";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_USER:
		name = "user";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_SESSION_USER:
		name = "session_user";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_CATALOG:
		name = "current_catalog";
		break;
	case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_SCHEMA:
		name = "current_schema";
		break;
	default:
		return true;
	}
	add_function(b, pf_strdup(name));
	return true;
}

bool rw_visit_sub_link(rw_builder *b, const PgQuery__SubLink *s)
{
	b->flags |= RW_HAS_SUBQUERY;
	if (s->sub_link_type == PG_QUERY__SUB_LINK_TYPE__EXISTS_SUBLINK)
		b->flags |= RW_HAS_EXISTS;
	return false;
}

bool rw_visit_a_const(rw_builder *b, const PgQuery__AConst *c)
{
	if (!c->isnull && c->location >= 0 &&
	    (c->val_case == PG_QUERY__A__CONST__VAL_IVAL || c->val_case == PG_QUERY__A__CONST__VAL_FVAL)) {
		rw_grow(&b->numlocs, &b->capnumlocs, b->nnumlocs + 1, sizeof *b->numlocs);
		b->numlocs[b->nnumlocs++] = c->location;
	}
	return true;
}
