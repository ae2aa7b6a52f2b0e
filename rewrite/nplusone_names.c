/*
 * nplusone_names.c — naming-convention guesses: which parent column a child
 * key most likely refers to when several hold its value, whether a pattern
 * is one-to-many or many-to-one, and the relationship name a suggestion
 * uses.  Names are compared ASCII case-insensitively; pluralisation is the
 * naive kind ("users" -> "user" by dropping one trailing s).  These only
 * rank candidates and word the report: a wrong guess never changes what a
 * child matches (every candidate is counted), only which is preferred.
 */
#include "nplusone_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define NP_NAME_MAX 128

bool np_ieq(const char *a, const char *b)
{
	return a && b && strcasecmp(a, b) == 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* name is word, or ends with "_" word. */
bool np_ends_word(const char *name, const char *word)
{
	size_t n = strlen(name), m = strlen(word);
	if (n == m)
		return strcasecmp(name, word) == 0;
	return n > m && name[n - m - 1] == '_' && strcasecmp(name + n - m, word) == 0;
}

/* name looks like a reference to table's rows: it is, or ends with "_" and,
 * "<table>_id" or "<table without its trailing s>_id" (posts_user_id -> users). */
bool np_refers_to(const char *name, const char *table)
{
	char buf[NP_NAME_MAX];
	if (!table || !*table || snprintf(buf, sizeof buf, "%s_id", table) >= (int)sizeof buf)
		return false;
	if (np_ends_word(name, buf))
		return true;
	size_t t = strlen(table);
	if (t < 2 || (table[t - 1] != 's' && table[t - 1] != 'S'))
		return false;
	snprintf(buf, sizeof buf, "%.*s_id", (int)(t - 1), table);
	return np_ends_word(name, buf);
}

/* name looks like the primary key of table's rows in a result: "id" or the
 * SQLAlchemy label "<table>_id". */
bool np_idlike(const char *name, const char *table)
{
	char buf[NP_NAME_MAX];
	if (np_ieq(name, "id"))
		return true;
	return table && *table && snprintf(buf, sizeof buf, "%s_id", table) < (int)sizeof buf && np_ieq(name, buf);
}

/*
 * How well parent column `col` (of a result whose first relation is
 * `ptable`) fits a child key `ccol` of table `ctable`:
 *   3  the names say so: a foreign key column compared with the same-named
 *      parent column (posts_user_id vs addresses.user_id), a foreign key
 *      naming the parent table compared with the parent's id (users_id vs
 *      posts.user_id), or an id looked up from a column naming the child
 *      table (posts_user_id vs users.id);
 *   2  half of that: the parent's own id for a foreign key child, any other
 *      *_id column for an id child;
 *   1  any column whose name ends in "id";
 *   0  anything else.
 */
int np_column_score(const char *col, const char *ptable, const char *ccol, const char *ctable)
{
	if (!np_ieq(ccol, "id")) {
		if (np_ends_word(col, ccol))
			return 3;
		if (np_idlike(col, ptable))
			return np_refers_to(ccol, ptable) ? 3 : 2;
	} else {
		if (np_refers_to(col, ctable))
			return 3;
		if (ends_with(col, "_id") && !np_idlike(col, ptable))
			return 2;
	}
	return ends_with(col, "id") ? 1 : 0;
}

/* The child fetches the row a parent column points to (post.user) rather
 * than the rows pointing to the parent (user.posts). */
bool np_many_to_one(const rw_np_pattern *p)
{
	if (np_ieq(p->child_column, "id"))
		return true;
	if (ends_with(p->child_column, "_id") && np_idlike(p->parent_column, p->parent_table))
		return false;
	return np_refers_to(p->parent_column, p->child_table);
}

/* The relationship attribute of a many-to-one pattern, from the parent
 * column: posts_user_id in a posts result -> "user"; the child table when
 * the column says nothing. */
void np_many_to_one_name(const rw_np_pattern *p, char *out, size_t size)
{
	const char *name = p->parent_column;
	size_t t = strlen(p->parent_table), n = strlen(name);
	if (t > 0 && n > t + 1 && strncasecmp(name, p->parent_table, t) == 0 && name[t] == '_') {
		name += t + 1;
		n -= t + 1;
	}
	if (n > 3 && strcasecmp(name + n - 3, "_id") == 0)
		n -= 3;
	if (n == 0 || (n == 2 && strncasecmp(name, "id", 2) == 0)) {
		snprintf(out, size, "%s", p->child_table);
		return;
	}
	snprintf(out, size, "%.*s", (int)n, name);
}
