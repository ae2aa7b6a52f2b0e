/*
 * analysis.c — rw_analyze(): the paths and the caches.
 *
 *   text hit    the exact text is in the text cache: return its analysis
 *               (reference counted; nothing else runs)
 *   fast hit    fastscan.h handles the text (one statement, token forms it
 *               lexes exactly) and its key is in the fast-key table
 *               (analysis_fast.c): the shape plus fastscan's slot locations
 *   shape hit   pg_query_scan, split at top-level ';', and every statement's
 *               token key is in the shape table: the analysis is the shapes
 *               plus this text's value locations, read off the tokens
 *   full parse  otherwise: pg_query_parse_protobuf, and a new shape for each
 *               statement whose key is unknown (analysis_shape.c)
 *
 * A fast hit counts as a shape hit (and as a fast hit).  After a shape hit
 * or full parse of a text fastscan handled, its shape is entered under the
 * text's fast key when the two views agree exactly (rw_fast_learn).
 *
 * The parser's statement boundaries are checked against the ';' split; when
 * they differ (a BEGIN ATOMIC body holds ';') the parser's win and none of
 * the text's shapes goes into the shape table, since a key taken from a
 * wrong split could later match a statement it does not describe.
 * Unparseable text is counted and never cached.
 */
#include "analysis_int.h"

#include <assert.h>
#include <pg_query.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../common/alloc.h"

#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

typedef struct rw_analysis_obj {
	rw_analysis pub; /* first: (rw_analysis_obj *)analysis */
	unsigned refs;   /* the caller(s) and the text cache */
	size_t bytes;
} rw_analysis_obj;

typedef struct text_entry {
	rw_lru_node node;
	rw_analysis_obj *an;
	char text[]; /* the key */
} text_entry;

/* Texts recently offered to the text cache, by hash (direct-mapped; a
 * collision forgets the older one): once the cache is full, a text
 * enters it only when seen before, so a stream of texts that never repeat
 * (literals inline, e.g. pgbench -S) does not cycle the cache for nothing. */
#define RW_TEXT_SEEN 4096

struct rw_analyzer {
	rw_lru texts;  /* text_entry */
	uint64_t seen[RW_TEXT_SEEN];
	rw_lru shapes; /* rw_shape_obj, keyed by token key */
	rw_fast fast;  /* shapes by fastscan key */
	rw_analyzer_stats st;
	uint64_t seed;
	/* scratch, reused from call to call */
	rw_scan scan;
	char *buf; /* the text, NUL-terminated */
	size_t capbuf;
	char *key;
	size_t capkey;
	rw_shape_obj **found; /* per piece: its shape (a reference held), or NULL */
	size_t capfound;
};

rw_analyzer *rw_analyzer_new(size_t max_entries, size_t max_bytes)
{
	rw_analyzer *a = pf_calloc(1, sizeof *a);
	rw_lru_init(&a->texts, max_entries, max_bytes / 2);
	rw_lru_init(&a->shapes, max_entries, max_bytes / 4);
	rw_fast_init(&a->fast, max_entries, max_bytes / 4);
	a->seed = (uint64_t)(uintptr_t)a * 0x9e3779b97f4a7c15ULL;
	return a;
}

/* ---- analyses ------------------------------------------------------------ */

static void analysis_unref(rw_analysis_obj *an)
{
	if (!an || --an->refs > 0)
		return;
	for (size_t i = 0; i < an->pub.nstmts; i++)
		rw_shape_unref((rw_shape_obj *)(void *)an->pub.stmts[i].shape);
	pf_free(an);
}

rw_analysis *rw_analysis_ref(const rw_analysis *an)
{
	rw_analysis_obj *o = (rw_analysis_obj *)(void *)(uintptr_t)an;
	o->refs++;
	return &o->pub;
}

void rw_analysis_free(rw_analysis *an)
{
	analysis_unref((rw_analysis_obj *)(void *)an);
}

/* The previous non-comment token before index i of piece p (the '-' of a
 * folded negative number). */
static const rw_token *token_before(const rw_scan *s, const rw_piece *p, size_t i)
{
	while (i-- > p->first)
		if (!rw_token_is_comment(s->tok[i].type))
			return &s->tok[i];
	return NULL;
}

static void fill_values(const rw_scan *s, const rw_piece *p, const rw_shape_obj *sh, rw_value *v)
{
	size_t k = 0;
	for (size_t i = p->first; i < p->end; i++) {
		const rw_token *t = &s->tok[i];
		if (!rw_token_is_slot(t->type))
			continue;
		int start = t->start;
		const rw_token *minus = sh->neg[k] ? token_before(s, p, i) : NULL;
		if (minus)
			start = minus->start;
		v[k++] = (rw_value){.location = start, .length = t->end - start};
	}
}

/* An analysis of the scanned pieces with these shapes (each gets a reference). */
static rw_analysis_obj *assemble(const rw_scan *s, rw_shape_obj *const *shapes)
{
	size_t n = s->npiece, nvalues = 0;
	for (size_t i = 0; i < n; i++)
		nvalues += shapes[i]->pub.nslots;
	size_t off_stmts = sizeof(rw_analysis_obj);
	off_stmts = (off_stmts + alignof(rw_stmt) - 1) & ~(alignof(rw_stmt) - 1);
	size_t off_values = off_stmts + n * sizeof(rw_stmt);
	off_values = (off_values + alignof(rw_value) - 1) & ~(alignof(rw_value) - 1);
	size_t size = off_values + nvalues * sizeof(rw_value);
	char *block = pf_malloc(size);
	rw_analysis_obj *an = (rw_analysis_obj *)(void *)block;
	rw_stmt *stmts = (rw_stmt *)(void *)(block + off_stmts);
	rw_value *values = (rw_value *)(void *)(block + off_values);
	for (size_t i = 0; i < n; i++) {
		const rw_piece *p = &s->piece[i];
		int start = s->tok[p->first].start, end = s->tok[p->end - 1].end;
		assert(rw_piece_nslots(s, p) == shapes[i]->pub.nslots); /* equal keys, equal slot tokens */
		rw_shape_ref(shapes[i]);
		fill_values(s, p, shapes[i], values);
		stmts[i] = (rw_stmt){.shape = &shapes[i]->pub, .location = start, .length = end - start, .values = values};
		values += shapes[i]->pub.nslots;
	}
	*an = (rw_analysis_obj){.pub = {.nstmts = n, .stmts = stmts}, .refs = 1, .bytes = size};
	return an;
}

/* One UNPARSED statement covering the text; takes err (pf_malloc'ed). */
static rw_analysis_obj *unparsed(rw_analyzer *a, size_t len, char *err)
{
	size_t elen = strlen(err) + 1;
	size_t off_stmt = (sizeof(rw_analysis_obj) + alignof(rw_stmt) - 1) & ~(alignof(rw_stmt) - 1);
	size_t size = off_stmt + sizeof(rw_stmt) + elen;
	char *block = pf_malloc(size);
	rw_analysis_obj *an = (rw_analysis_obj *)(void *)block;
	rw_stmt *stmt = (rw_stmt *)(void *)(block + off_stmt);
	char *msg = block + off_stmt + sizeof(rw_stmt);
	memcpy(msg, err, elen);
	pf_free(err);
	rw_shape_obj *sh = rw_shape_unparsed();
	*stmt = (rw_stmt){.shape = &sh->pub, .location = 0, .length = (int)len, .values = NULL};
	*an = (rw_analysis_obj){.pub = {.nstmts = 1, .stmts = stmt, .error = msg}, .refs = 1, .bytes = size};
	a->st.failures++;
	return an;
}

/* ---- shape table --------------------------------------------------------- */

static size_t piece_key(rw_analyzer *a, size_t i, uint64_t *hash)
{
	size_t n = rw_shape_key(&a->scan, &a->scan.piece[i], a->buf, &a->key, &a->capkey);
	*hash = rw_hash(a->key, n, a->seed);
	return n;
}

static rw_shape_obj *shape_find(rw_analyzer *a, size_t i)
{
	uint64_t h;
	size_t n = piece_key(a, i, &h);
	rw_lru_node *node = rw_lru_find(&a->shapes, h, a->key, n);
	if (!node)
		return NULL;
	rw_shape_obj *sh = CONTAINER(node, rw_shape_obj, node);
	rw_shape_ref(sh);
	return sh;
}

static void shape_insert(rw_analyzer *a, rw_shape_obj *sh)
{
	if (!sh->fast || !rw_lru_fits(&a->shapes, sh->bytes))
		return;
	sh->node.hash = rw_hash(sh->node.key, sh->node.keylen, a->seed);
	rw_shape_ref(sh);
	rw_lru_insert(&a->shapes, &sh->node);
	rw_lru_node *old;
	while ((old = rw_lru_evict(&a->shapes))) {
		a->st.evictions++;
		rw_shape_unref(CONTAINER(old, rw_shape_obj, node));
	}
}

static void drop_found(rw_analyzer *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rw_shape_unref(a->found[i]);
		a->found[i] = NULL;
	}
}

static void reset_found(rw_analyzer *a, size_t n)
{
	rw_grow(&a->found, &a->capfound, n + 1, sizeof *a->found);
	memset(a->found, 0, n * sizeof *a->found);
}

/* Look every piece up; true when all are known (a->found holds them). */
static bool find_all(rw_analyzer *a)
{
	size_t n = a->scan.npiece;
	reset_found(a, n);
	for (size_t i = 0; i < n; i++)
		if (!(a->found[i] = shape_find(a, i)))
			return false;
	return true;
}

/* ---- full parse ---------------------------------------------------------- */

/* Do the parser's statements match the ';' pieces one for one? */
static bool pieces_agree(const rw_scan *s, const PgQuery__ParseResult *tree, size_t len)
{
	if (s->npiece != tree->n_stmts)
		return false;
	for (size_t i = 0; i < s->npiece; i++) {
		const PgQuery__RawStmt *r = tree->stmts[i];
		long loc = r->stmt_location, end = r->stmt_len ? loc + r->stmt_len : (long)len;
		if (rw_piece_lead(s, &s->piece[i])->start < loc || s->tok[s->piece[i].end - 1].end > end)
			return false;
	}
	return true;
}

static void pieces_from_parser(rw_analyzer *a, const PgQuery__ParseResult *tree, size_t len)
{
	size_t n = tree->n_stmts;
	int *loc = pf_calloc(n, sizeof *loc), *end = pf_calloc(n, sizeof *end);
	for (size_t i = 0; i < n; i++) {
		const PgQuery__RawStmt *r = tree->stmts[i];
		loc[i] = r->stmt_location;
		end[i] = r->stmt_len ? r->stmt_location + r->stmt_len : (int)len;
	}
	rw_scan_pieces_from_ranges(&a->scan, loc, end, n);
	pf_free(loc);
	pf_free(end);
}

/* Shapes for every piece without one, from the parse tree. */
static void build_missing(rw_analyzer *a, const PgQuery__ParseResult *tree, bool cacheable)
{
	for (size_t i = 0; i < a->scan.npiece; i++) {
		if (a->found[i])
			continue;
		if (cacheable && (a->found[i] = shape_find(a, i)))
			continue; /* an earlier statement of this text made it */
		uint64_t h;
		size_t n = piece_key(a, i, &h);
		a->found[i] = rw_shape_build(tree->stmts[i]->stmt, a->buf, &a->scan, &a->scan.piece[i], a->key, n);
		if (cacheable)
			shape_insert(a, a->found[i]);
	}
}

static rw_analysis_obj *full_parse(rw_analyzer *a, size_t len)
{
	size_t nfound = a->scan.npiece;
	PgQueryProtobufParseResult pr = pg_query_parse_protobuf(a->buf);
	PgQuery__ParseResult *tree = NULL;
	if (!pr.error)
		tree = pg_query__parse_result__unpack(NULL, pr.parse_tree.len, (const uint8_t *)pr.parse_tree.data);
	if (!tree) {
		char *err = pf_strdup(pr.error && pr.error->message ? pr.error->message : "cannot decode the parse tree");
		pg_query_free_protobuf_parse_result(pr);
		drop_found(a, nfound);
		return unparsed(a, len, err);
	}
	bool agree = pieces_agree(&a->scan, tree, len);
	if (!agree) {
		drop_found(a, nfound);
		pieces_from_parser(a, tree, len);
		reset_found(a, a->scan.npiece);
	}
	rw_analysis_obj *an;
	if (a->scan.npiece != tree->n_stmts) {
		an = unparsed(a, len, pf_strdup("cannot map the parser's statements to the text"));
	} else {
		build_missing(a, tree, agree);
		an = assemble(&a->scan, a->found);
		a->st.full_parses++;
	}
	drop_found(a, a->scan.npiece);
	pg_query__parse_result__free_unpacked(tree, NULL);
	pg_query_free_protobuf_parse_result(pr);
	return an;
}

/* ---- rw_analyze ---------------------------------------------------------- */

/* The shape of the text rw_fast_find just scanned, with its slots. */
static rw_analysis_obj *fast_hit(rw_analyzer *a, rw_shape_obj *sh)
{
	const rw_fastscan *fs = &a->fast.fs; /* fs->nslots == sh->pub.nslots (rw_fast_find) */
	size_t off_stmt = (sizeof(rw_analysis_obj) + alignof(rw_stmt) - 1) & ~(alignof(rw_stmt) - 1);
	size_t off_values = (off_stmt + sizeof(rw_stmt) + alignof(rw_value) - 1) & ~(alignof(rw_value) - 1);
	size_t size = off_values + fs->nslots * sizeof(rw_value);
	char *block = pf_malloc(size);
	rw_analysis_obj *an = (rw_analysis_obj *)(void *)block;
	rw_stmt *stmt = (rw_stmt *)(void *)(block + off_stmt);
	rw_value *values = (rw_value *)(void *)(block + off_values);
	for (size_t i = 0; i < fs->nslots; i++)
		values[i] = (rw_value){.location = fs->slots[i].location, .length = fs->slots[i].length};
	rw_shape_ref(sh);
	if (rw_lru_linked(&sh->node))
		rw_lru_touch(&a->shapes, &sh->node); /* in use: keep it in the shape table too */
	*stmt = (rw_stmt){.shape = &sh->pub, .location = fs->stmt_location, .length = fs->stmt_length, .values = values};
	*an = (rw_analysis_obj){.pub = {.nstmts = 1, .stmts = stmt}, .refs = 1, .bytes = size};
	a->st.shape_hits++;
	a->st.fast_hits++;
	return an;
}

static rw_analysis_obj *analyze_slow(rw_analyzer *a, const char *sql, size_t len)
{
	if (len > INT32_MAX / 2)
		return unparsed(a, 0, pf_strdup("query string too long to analyse"));
	if (len && memchr(sql, '\0', len))
		return unparsed(a, len, pf_strdup("query string contains a NUL byte"));
	rw_grow(&a->buf, &a->capbuf, len + 1, 1);
	if (len)
		memcpy(a->buf, sql, len);
	a->buf[len] = '\0';
	char *err = NULL;
	if (rw_scan_text(&a->scan, a->buf, &err) < 0)
		return unparsed(a, len, err);
	if (a->scan.depth > RW_MAX_DEPTH)
		return unparsed(a, len, pf_strdup("statement nested too deeply to analyse"));
	if (!find_all(a))
		return full_parse(a, len);
	rw_analysis_obj *an = assemble(&a->scan, a->found);
	drop_found(a, a->scan.npiece);
	a->st.shape_hits++;
	return an;
}

static rw_analysis_obj *analyze_new_text(rw_analyzer *a, const char *sql, size_t len)
{
	bool scanned = false;
	if (rw_fast_enabled(&a->fast)) {
		rw_shape_obj *sh = rw_fast_find(&a->fast, sql, len, a->seed);
		if (sh)
			return fast_hit(a, sh);
		scanned = a->fast.status == RW_FS_OK;
	}
	rw_analysis_obj *an = analyze_slow(a, sql, len);
	if (scanned && an->pub.nstmts == 1 && !an->pub.error) {
		rw_shape_obj *sh = (rw_shape_obj *)(void *)(uintptr_t)an->pub.stmts[0].shape;
		a->st.evictions += rw_fast_learn(&a->fast, &an->pub.stmts[0], sh);
	}
	return an;
}

/* Was this text seen lately?  (It is remembered now either way.) */
static bool seen_before(rw_analyzer *a, uint64_t hash)
{
	uint64_t *slot = &a->seen[hash & (RW_TEXT_SEEN - 1)];
	bool seen = *slot == hash;
	*slot = hash;
	return seen;
}

static void cache_text(rw_analyzer *a, uint64_t hash, const char *sql, size_t len, rw_analysis_obj *an)
{
	size_t bytes = sizeof(text_entry) + len + an->bytes;
	if (!rw_lru_fits(&a->texts, bytes))
		return;
	if (!seen_before(a, hash) && rw_lru_full(&a->texts, bytes)) {
		a->st.not_admitted++;
		return;
	}
	text_entry *e = pf_malloc(sizeof *e + (len ? len : 1));
	if (len)
		memcpy(e->text, sql, len);
	e->node = (rw_lru_node){.hash = hash, .key = e->text, .keylen = len, .bytes = bytes};
	e->an = an;
	an->refs++;
	rw_lru_insert(&a->texts, &e->node);
	rw_lru_node *old;
	while ((old = rw_lru_evict(&a->texts))) {
		text_entry *o = CONTAINER(old, text_entry, node);
		a->st.evictions++;
		analysis_unref(o->an);
		pf_free(o);
	}
}

rw_analysis *rw_analyze(rw_analyzer *a, const char *sql, size_t len)
{
	uint64_t h = rw_hash(sql, len, a->seed);
	rw_lru_node *node = rw_lru_find(&a->texts, h, sql, len);
	if (node) {
		text_entry *e = CONTAINER(node, text_entry, node);
		a->st.text_hits++;
		e->an->refs++;
		return &e->an->pub;
	}
	rw_analysis_obj *an = analyze_new_text(a, sql, len);
	if (!an->pub.error)
		cache_text(a, h, sql, len, an);
	return &an->pub;
}

void rw_analyzer_free(rw_analyzer *a)
{
	if (!a)
		return;
	rw_lru_node *n;
	while ((n = rw_lru_pop(&a->texts))) {
		text_entry *e = CONTAINER(n, text_entry, node);
		analysis_unref(e->an);
		pf_free(e);
	}
	while ((n = rw_lru_pop(&a->shapes)))
		rw_shape_unref(CONTAINER(n, rw_shape_obj, node));
	rw_fast_destroy(&a->fast);
	rw_lru_destroy(&a->texts);
	rw_lru_destroy(&a->shapes);
	rw_scan_free(&a->scan);
	pf_free(a->buf);
	pf_free(a->key);
	pf_free(a->found);
	pf_free(a);
}

void rw_analyzer_stats_get(const rw_analyzer *a, rw_analyzer_stats *out)
{
	*out = a->st;
	out->entries = a->texts.count;
	out->shapes = a->shapes.count;
	out->fast_keys = a->fast.lru.count;
	out->bytes = a->texts.bytes + a->shapes.bytes + a->fast.lru.bytes;
}

/* ---- names --------------------------------------------------------------- */

const char *rw_kind_name(rw_kind kind)
{
	static const char *const names[] = {"read",	   "write",   "ddl",	"truncate", "transaction",
					    "session", "listen",  "copy",	"other",    "unparsed"};
	return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "?";
}

const char *rw_tx_op_name(rw_tx_op op)
{
	static const char *const names[] = {"none",	"begin",       "commit",	   "rollback",
					    "savepoint", "release",     "rollback to",	   "prepare transaction",
					    "commit prepared", "rollback prepared", "set transaction"};
	return (unsigned)op < sizeof names / sizeof *names ? names[op] : "?";
}

const char *rw_isolation_name(rw_isolation iso)
{
	static const char *const names[] = {"default", "read uncommitted", "read committed", "repeatable read",
					    "serializable"};
	return (unsigned)iso < sizeof names / sizeof *names ? names[iso] : "?";
}
