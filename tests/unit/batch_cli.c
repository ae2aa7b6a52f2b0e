/*
 * batch_cli.c — print the batched SQL rw_batch_build() makes for one child
 * statement and a list of keys, for tests/integration/test_batch_sql.py
 * (not a unit test: the Makefile runs only tests/unit/test_*.c).
 *
 *   batch_cli [--form auto|in|lateral|exists] [--slot N] [--key-type OID]
 *             [--column-type OID] [--param OID=VALUE | --param-null OID]...
 *             CHILD_SQL KEY...
 *
 * --slot defaults to the first slot with a column of a known table (else 0);
 * --key-type to 23 (int4); --param gives $1, $2, ... in order.  Output: one
 * JSON object on stdout, {"form_for": ..., "form": ..., "extra_columns": N,
 * "grouped": bool, "nkeys": N, "sql": ...}, or {"form_for": ..., "error": ...}
 * with exit code 2 when the child cannot be batched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/strbuf.h"
#include "../../rewrite/analysis.h"
#include "../../rewrite/batch.h"

#define MAX_PARAMS 64

static rw_batch_form parse_form(const char *s)
{
	if (strcmp(s, "in") == 0)
		return RW_BATCH_IN;
	if (strcmp(s, "lateral") == 0)
		return RW_BATCH_LATERAL;
	if (strcmp(s, "exists") == 0)
		return RW_BATCH_EXISTS;
	return RW_BATCH_NONE;
}

static int usage(void)
{
	fprintf(stderr, "usage: batch_cli [--form F] [--slot N] [--key-type OID] [--column-type OID] "
			"[--param OID=VALUE | --param-null OID]... CHILD_SQL KEY...\n");
	return 1;
}

int main(int argc, char **argv)
{
	rw_batch_request req = {.key_type = 23};
	long slot = -1;
	const char *pvals[MAX_PARAMS];
	size_t plens[MAX_PARAMS];
	uint32_t ptypes[MAX_PARAMS];
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *opt = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;
		if (!arg)
			return usage();
		i++;
		if (strcmp(opt, "--form") == 0) {
			req.form = parse_form(arg);
		} else if (strcmp(opt, "--slot") == 0) {
			slot = atol(arg);
		} else if (strcmp(opt, "--key-type") == 0) {
			req.key_type = (uint32_t)strtoul(arg, NULL, 10);
		} else if (strcmp(opt, "--column-type") == 0) {
			req.column_type = (uint32_t)strtoul(arg, NULL, 10);
		} else if ((strcmp(opt, "--param") == 0 || strcmp(opt, "--param-null") == 0) &&
			   req.nparams < MAX_PARAMS) {
			char *end;
			ptypes[req.nparams] = (uint32_t)strtoul(arg, &end, 10);
			bool null = strcmp(opt, "--param-null") == 0;
			pvals[req.nparams] = null ? NULL : (*end == '=' ? end + 1 : "");
			plens[req.nparams] = null ? 0 : strlen(pvals[req.nparams]);
			req.nparams++;
		} else {
			return usage();
		}
	}
	if (argc - i < 2)
		return usage();
	const char *sql = argv[i++];
	req.nkeys = (size_t)(argc - i);
	req.keys = (const char *const *)(argv + i);
	size_t *klens = calloc(req.nkeys, sizeof *klens);
	for (size_t k = 0; k < req.nkeys; k++)
		klens[k] = strlen(req.keys[k]);
	req.key_lengths = klens;
	req.param_values = pvals;
	req.param_lengths = plens;
	req.param_types = ptypes;

	rw_analyzer *az = rw_analyzer_new(16, 1 << 20);
	rw_analysis *an = rw_analyze(az, sql, strlen(sql));
	pf_sb out;
	pf_sb_init(&out);
	int rc = 2;
	if (an->nstmts == 1) {
		const rw_stmt *st = &an->stmts[0];
		for (size_t s = 0; slot < 0 && s < st->shape->nslots; s++)
			if (st->shape->slots[s].rel_index >= 0)
				slot = (long)s;
		req.sql = sql;
		req.sql_len = strlen(sql);
		req.stmt = st;
		req.slot = slot < 0 ? 0 : (size_t)slot;
		rw_batch_form ff = rw_batch_form_for(st->shape, req.slot);
		pf_sb body;
		pf_sb_init(&body);
		rw_batch_layout lay;
		if (rw_batch_build(&req, &body, &lay) == 0) {
			pf_sb_appendf(&out,
				      "{\"form_for\":\"%s\",\"form\":\"%s\",\"extra_columns\":%zu,\"grouped\":%s,"
				      "\"nkeys\":%zu,\"sql\":",
				      rw_batch_form_name(ff), rw_batch_form_name(lay.form), lay.extra_columns,
				      lay.grouped ? "true" : "false", lay.nkeys);
			pf_sb_append_json_string(&out, pf_sb_str(&body));
			pf_sb_append(&out, "}");
			rc = 0;
		} else {
			pf_sb_appendf(&out, "{\"form_for\":\"%s\",\"error\":\"cannot batch\"}", rw_batch_form_name(ff));
		}
		pf_sb_free(&body);
	} else {
		pf_sb_append(&out, "{\"form_for\":\"none\",\"error\":\"not one statement\"}");
	}
	puts(pf_sb_str(&out));
	pf_sb_free(&out);
	rw_analysis_free(an);
	rw_analyzer_free(az);
	free(klens);
	return rc;
}
