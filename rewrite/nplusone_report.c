/*
 * nplusone_report.c — GET /nplusone: every pattern of the registry as JSON
 * or as text, with a suggested fix in the application's own terms.
 *
 * The suggestion names come from table names, used as they are (no real
 * pluralisation): the class is the parent table in CamelCase, the
 * relationship attribute is the child table (one-to-many: Users.posts) or,
 * for many-to-one, the parent column without its table prefix and "_id"
 * (posts_user_id -> Posts.user).  It is worded "e.g.": the ORM's real names
 * may differ.
 */
#include "nplusone_int.h"

#include <ctype.h>
#include <string.h>

#define NP_ATTR_MAX 128

/* "blog_posts" -> "BlogPosts"; "Parent" when empty. */
static void append_class(pf_sb *out, const char *table)
{
	if (!*table) {
		pf_sb_append(out, "Parent");
		return;
	}
	bool up = true;
	for (const char *c = table; *c; c++) {
		if (*c == '_') {
			up = true;
			continue;
		}
		char ch = up ? (char)toupper((unsigned char)*c) : *c;
		pf_sb_append_n(out, &ch, 1);
		up = false;
	}
}

/* What each child asks of its parent's rows, for the wording of the fix. */
typedef enum child_kind { CHILD_ROWS, CHILD_COUNT, CHILD_EXISTS, CHILD_FIRST } child_kind;

static child_kind kind_of(const rw_np_pattern *p)
{
	uint32_t f = p->child_flags;
	if (f & (RW_EXISTS_QUERY | RW_HAS_EXISTS))
		return CHILD_EXISTS;
	if ((f & RW_HAS_AGGREGATE) && !(f & RW_HAS_GROUP_BY))
		return CHILD_COUNT;
	if ((f & RW_HAS_LIMIT) && (f & RW_HAS_ORDER_BY))
		return CHILD_FIRST;
	return CHILD_ROWS;
}

static void append_suggestion(pf_sb *out, const rw_np_pattern *p)
{
	char attr[NP_ATTR_MAX];
	bool m2o = np_many_to_one(p);
	if (m2o)
		np_many_to_one_name(p, attr, sizeof attr);
	const char *a = m2o ? attr : p->child_table;
	pf_sb_append(out, "e.g. SQLAlchemy: ");
	switch (m2o ? CHILD_ROWS : kind_of(p)) {
	case CHILD_COUNT:
		/* one aggregate per parent: compute them with the parents */
		pf_sb_append(out, "a column_property or a grouped subquery joined to ");
		append_class(out, p->parent_table);
		pf_sb_appendf(out, " \u2014 Django: annotate(Count('%s')) \u2014 Rails: counter_cache or "
				   "left_joins(:%s).group(:id).count",
			      a, a);
		return;
	case CHILD_EXISTS:
		pf_sb_append(out, "exists() as a correlated column of the ");
		append_class(out, p->parent_table);
		pf_sb_appendf(out, " query \u2014 Django: annotate(has_%s=Exists(...)) \u2014 Rails: "
				   "select(\"EXISTS (SELECT 1 FROM %s WHERE ...)\") on the parent query",
			      a, a);
		return;
	case CHILD_FIRST:
		pf_sb_append(out, "selectinload(");
		append_class(out, p->parent_table);
		pf_sb_appendf(out, ".%s) on a relationship limited with row_number() \u2014 Django: "
				   "prefetch_related(Prefetch('%s', queryset=...[:1])) \u2014 Rails: includes(:%s) on a "
				   "scoped association",
			      a, a, a);
		return;
	case CHILD_ROWS:
		break;
	}
	pf_sb_append(out, m2o ? "joinedload(" : "selectinload(");
	append_class(out, p->parent_table);
	pf_sb_appendf(out, ".%s) \u2014 Django: %s('%s') \u2014 Rails: includes(:%s)", a,
		      m2o ? "select_related" : "prefetch_related", a, a);
}

static const char *relationship(const rw_np_pattern *p)
{
	return np_many_to_one(p) ? "many-to-one" : "one-to-many";
}

/* Why the pattern has its status: the disable reason, progress while
 * learning, nothing when active. */
static void append_reason(pf_sb *out, const rw_np_pattern *p, unsigned min_repeats)
{
	if (p->status == RW_NP_DISABLED)
		pf_sb_append(out, p->reason ? p->reason : "disabled");
	else if (p->status == RW_NP_LEARNING)
		pf_sb_appendf(out, "%zu of %u children of one parent result so far", p->best_run, min_repeats);
}

void rw_np_pattern_describe(const rw_np_pattern *p, pf_sb *out)
{
	pf_sb_appendf(out, "%s (%s) -> %s.%s (%s): %s", p->parent_column, *p->parent_table ? p->parent_table : "?",
		      p->child_table, p->child_column, relationship(p), p->child_text);
}

static void json_field(pf_sb *out, const char *name, const char *value)
{
	pf_sb_appendf(out, ",\"%s\":", name);
	pf_sb_append_json_string(out, value);
}

static void json_pattern(pf_sb *out, const rw_np_pattern *p, unsigned min_repeats)
{
	pf_sb sb;
	pf_sb_init(&sb);
	pf_sb_append(out, "{\"parent\":");
	pf_sb_append_json_string(out, p->parent_text);
	json_field(out, "child", p->child_text);
	json_field(out, "parent_table", p->parent_table);
	json_field(out, "parent_column", p->parent_column);
	pf_sb_appendf(&sb, "%s.%s", p->child_table, p->child_column);
	json_field(out, "key_column", pf_sb_str(&sb));
	json_field(out, "relationship", relationship(p));
	json_field(out, "status", rw_np_status_name(p->status));
	pf_sb_reset(&sb);
	append_reason(&sb, p, min_repeats);
	if (p->status == RW_NP_ACTIVE)
		pf_sb_append(out, ",\"reason\":null");
	else
		json_field(out, "reason", pf_sb_str(&sb));
	pf_sb_appendf(out,
		      ",\"occurrences\":%llu,\"children_seen\":%llu,\"children_served\":%llu,\"batches\":%llu,"
		      "\"statements_saved\":%llu,\"round_trips_saved\":%llu",
		      (unsigned long long)p->occurrences, (unsigned long long)p->children_seen,
		      (unsigned long long)p->children_served, (unsigned long long)p->batches,
		      (unsigned long long)p->statements_saved, (unsigned long long)p->statements_saved);
	pf_sb_reset(&sb);
	append_suggestion(&sb, p);
	json_field(out, "suggestion", pf_sb_str(&sb));
	pf_sb_append(out, "}");
	pf_sb_free(&sb);
}

void rw_np_render_json(const rw_np_registry *reg, pf_sb *out)
{
	rw_np_stats st;
	rw_np_registry_stats(reg, &st);
	pf_sb_appendf(out,
		      "{\"totals\":{\"patterns\":%zu,\"active\":%zu,\"disabled\":%zu,\"learning\":%zu,"
		      "\"children_seen\":%llu,\"children_served\":%llu,\"batches\":%llu,\"statements_saved\":%llu,"
		      "\"round_trips_saved\":%llu,\"evicted\":%llu},\"patterns\":[",
		      st.patterns, st.active, st.disabled, st.patterns - st.active - st.disabled,
		      (unsigned long long)st.children_seen, (unsigned long long)st.children_served,
		      (unsigned long long)st.batches, (unsigned long long)st.statements_saved,
		      (unsigned long long)st.statements_saved, (unsigned long long)st.evicted);
	const rw_np_pattern *lists[2] = {reg->confirmed.head, reg->learning.head};
	bool first = true;
	for (size_t i = 0; i < 2; i++) {
		for (const rw_np_pattern *p = lists[i]; p; p = p->next) {
			if (!first)
				pf_sb_append(out, ",");
			first = false;
			json_pattern(out, p, reg->limits.min_repeats);
		}
	}
	pf_sb_append(out, "]}\n");
}

static void text_pattern(pf_sb *out, size_t n, const rw_np_pattern *p, unsigned min_repeats)
{
	pf_sb_appendf(out, "\n[%zu] %-8s  ", n, rw_np_status_name(p->status));
	rw_np_pattern_describe(p, out);
	pf_sb_appendf(out, "\n    parent    %s\n    child     %s\n", p->parent_text, p->child_text);
	if (p->status != RW_NP_ACTIVE) {
		pf_sb_append(out, "    reason    ");
		append_reason(out, p, min_repeats);
		pf_sb_append(out, "\n");
	}
	pf_sb_appendf(out,
		      "    counts    occurrences %llu, children seen %llu, served %llu, batches %llu, "
		      "statements saved %llu, round trips saved %llu\n    fix       ",
		      (unsigned long long)p->occurrences, (unsigned long long)p->children_seen,
		      (unsigned long long)p->children_served, (unsigned long long)p->batches,
		      (unsigned long long)p->statements_saved, (unsigned long long)p->statements_saved);
	append_suggestion(out, p);
	pf_sb_append(out, "\n");
}

void rw_np_render_text(const rw_np_registry *reg, pf_sb *out)
{
	rw_np_stats st;
	rw_np_registry_stats(reg, &st);
	pf_sb_appendf(out,
		      "N+1 patterns: %zu (%zu active, %zu disabled, %zu learning); children seen %llu, served %llu, "
		      "batches %llu, statements saved %llu, evicted %llu\n",
		      st.patterns, st.active, st.disabled, st.patterns - st.active - st.disabled,
		      (unsigned long long)st.children_seen, (unsigned long long)st.children_served,
		      (unsigned long long)st.batches, (unsigned long long)st.statements_saved,
		      (unsigned long long)st.evicted);
	const rw_np_pattern *lists[2] = {reg->confirmed.head, reg->learning.head};
	size_t n = 0;
	for (size_t i = 0; i < 2; i++) {
		for (const rw_np_pattern *p = lists[i]; p; p = p->next)
			text_pattern(out, ++n, p, reg->limits.min_repeats);
	}
}
