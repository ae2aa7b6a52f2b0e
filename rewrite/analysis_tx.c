/*
 * analysis_tx.c — transaction control and session state: BEGIN/START with
 * their characteristics, COMMIT/ROLLBACK (AND CHAIN), savepoints, two-phase
 * commit, SET TRANSACTION, SET SESSION CHARACTERISTICS, SET/RESET (role,
 * session authorization, search_path, ...), DISCARD, and set_config() calls.
 */
#include "analysis_int.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "../common/alloc.h"

void rw_builder_set_setting(rw_builder *b, const char *name, size_t len)
{
	pf_free(b->setting);
	b->setting = NULL;
	if (!name)
		return;
	b->setting = pf_malloc(len + 1);
	for (size_t i = 0; i < len; i++)
		b->setting[i] = (char)tolower((unsigned char)name[i]);
	b->setting[len] = '\0';
}

static void set_setting(rw_builder *b, const char *name)
{
	rw_builder_set_setting(b, name, strlen(name));
}

static rw_isolation isolation_of(const char *s)
{
	if (strcmp(s, "read uncommitted") == 0)
		return RW_ISO_READ_UNCOMMITTED;
	if (strcmp(s, "read committed") == 0)
		return RW_ISO_READ_COMMITTED;
	if (strcmp(s, "repeatable read") == 0)
		return RW_ISO_REPEATABLE_READ;
	if (strcmp(s, "serializable") == 0)
		return RW_ISO_SERIALIZABLE;
	return RW_ISO_DEFAULT;
}

/* The DefElem list of BEGIN / START TRANSACTION / SET TRANSACTION. */
static void tx_characteristics(rw_builder *b, PgQuery__Node *const *opts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (opts[i]->node_case != PG_QUERY__NODE__NODE_DEF_ELEM)
			continue;
		const PgQuery__DefElem *d = opts[i]->def_elem;
		const PgQuery__Node *arg = d->arg;
		if (!arg || arg->node_case != PG_QUERY__NODE__NODE_A_CONST)
			continue;
		const PgQuery__AConst *c = arg->a_const;
		if (strcmp(d->defname, "transaction_isolation") == 0 && c->val_case == PG_QUERY__A__CONST__VAL_SVAL)
			b->isolation = isolation_of(c->sval->sval);
		else if (strcmp(d->defname, "transaction_read_only") == 0 &&
			 c->val_case == PG_QUERY__A__CONST__VAL_IVAL)
			b->read_only = c->ival->ival != 0;
	}
}

rw_kind rw_tx_transaction(rw_builder *b, const PgQuery__TransactionStmt *t)
{
	switch (t->kind) {
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN:
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START:
		b->tx_op = RW_TX_BEGIN;
		tx_characteristics(b, t->options, t->n_options);
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT:
		b->tx_op = RW_TX_COMMIT;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK:
		b->tx_op = RW_TX_ROLLBACK;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT:
		b->tx_op = RW_TX_SAVEPOINT;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE:
		b->tx_op = RW_TX_RELEASE;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
		b->tx_op = RW_TX_ROLLBACK_TO;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_PREPARE:
		b->tx_op = RW_TX_PREPARE;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT_PREPARED:
		b->tx_op = RW_TX_COMMIT_PREPARED;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_PREPARED:
		b->tx_op = RW_TX_ROLLBACK_PREPARED;
		break;
	default:
		break;
	}
	b->chain = t->chain;
	return RW_KIND_TRANSACTION;
}

rw_kind rw_tx_variable_set(rw_builder *b, const PgQuery__VariableSetStmt *v)
{
	b->set_local = v->is_local;
	switch (v->kind) {
	case PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL:
		set_setting(b, "all");
		return RW_KIND_SESSION;
	case PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI:
		tx_characteristics(b, v->args, v->n_args);
		if (v->name && strcmp(v->name, "TRANSACTION") == 0) {
			b->tx_op = RW_TX_SET;
			return RW_KIND_TRANSACTION;
		}
		set_setting(b, "session_characteristics");
		return RW_KIND_SESSION;
	default:
		if (rw_nz(v->name))
			set_setting(b, v->name);
		return RW_KIND_SESSION;
	}
}

rw_kind rw_tx_discard(rw_builder *b, const PgQuery__DiscardStmt *d)
{
	switch (d->target) {
	case PG_QUERY__DISCARD_MODE__DISCARD_ALL:
		set_setting(b, "all");
		break;
	case PG_QUERY__DISCARD_MODE__DISCARD_PLANS:
		set_setting(b, "plans");
		break;
	case PG_QUERY__DISCARD_MODE__DISCARD_SEQUENCES:
		set_setting(b, "sequences");
		break;
	case PG_QUERY__DISCARD_MODE__DISCARD_TEMP:
		set_setting(b, "temp");
		break;
	default:
		break;
	}
	return RW_KIND_SESSION;
}

/* PostgreSQL's parse_bool() for the true side: t[rue], y[es], on, 1. */
static bool text_true(const char *s)
{
	char c = (char)tolower((unsigned char)s[0]);
	return c == 't' || c == 'y' || c == '1' || strcasecmp(s, "on") == 0;
}

/* set_config(name, value, is_local): the name and is_local are usually
 * literals, so the facts depend on literal contents: never share the shape. */
void rw_tx_set_config(rw_builder *b, const PgQuery__FuncCall *f)
{
	b->calls_set_config = true;
	b->fast = false;
	if (b->setting)
		return; /* the first call names the setting */
	const PgQuery__Node *name = f->n_args >= 1 ? f->args[0] : NULL;
	if (name && name->node_case == PG_QUERY__NODE__NODE_TYPE_CAST)
		name = name->type_cast->arg;
	if (name && name->node_case == PG_QUERY__NODE__NODE_A_CONST &&
	    name->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL)
		set_setting(b, name->a_const->sval->sval);
	const PgQuery__Node *local = f->n_args >= 3 ? f->args[2] : NULL;
	if (local && local->node_case == PG_QUERY__NODE__NODE_TYPE_CAST)
		local = local->type_cast->arg;
	if (local && local->node_case == PG_QUERY__NODE__NODE_A_CONST) {
		const PgQuery__AConst *c = local->a_const;
		if (c->val_case == PG_QUERY__A__CONST__VAL_BOOLVAL)
			b->set_local = c->boolval->boolval;
		else if (c->val_case == PG_QUERY__A__CONST__VAL_SVAL)
			b->set_local = text_true(c->sval->sval);
		else if (c->val_case == PG_QUERY__A__CONST__VAL_IVAL)
			b->set_local = c->ival->ival != 0;
	}
}
