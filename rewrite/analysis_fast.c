/*
 * analysis_fast.c — the fast-key table: the shape path without
 * pg_query_scan.
 *
 * A text the exact-text cache misses is first lexed by fastscan.h (one pass,
 * no allocation once warm).  When fastscan handles it (one statement, only
 * token forms it lexes exactly as PostgreSQL does) its key is looked up
 * here; on a hit the analysis is the shape found plus the fastscan's slot
 * locations, and nothing else runs.
 *
 * Correctness by construction, plus verification: a shape is entered under
 * a fast key only by rw_fast_learn(), after the slow path (pg_query_scan
 * shape hit or full parse) analysed the very text the key was taken from as
 * one statement, and only when
 *   - the shape may be shared (rw_shape_obj.fast) and sits in the shape
 *     table (so it came from a ';' split that agreed with the parser), and
 *   - fastscan's view of that text equals the analysis exactly: the same
 *     statement range, as many slots as the shape, each at the location and
 *     of the length of the analysis' rw_value, $n exactly where the shape
 *     has a parameter, no folded minus.
 * Two texts with equal fast keys have equal token streams up to literal
 * values of the same class (fastscan.h), so the grammar gives them the same
 * tree: the shape's facts hold for both, and slot i is the same token of the
 * stream in both, so the locations fastscan reports are the analysis'.
 *
 * Entries hold a reference to their shape, which therefore outlives its
 * eviction from the shape table while the fast key lives.  Each entry
 * accounts for itself, its key and its shape's bytes (so the shapes it keeps
 * alive are bounded too, counted twice while also in the shape table).
 */
#include "analysis_int.h"

#include <string.h>

#include "../common/alloc.h"

#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

typedef struct fast_entry {
	rw_lru_node node;
	rw_shape_obj *shape; /* a reference */
	unsigned char key[];
} fast_entry;

void rw_fast_init(rw_fast *f, size_t max_entries, size_t max_bytes)
{
	memset(f, 0, sizeof *f);
	rw_lru_init(&f->lru, max_entries, max_bytes);
	f->status = RW_FS_EMPTY;
}

static void entry_free(fast_entry *e)
{
	rw_shape_unref(e->shape);
	pf_free(e);
}

void rw_fast_destroy(rw_fast *f)
{
	rw_lru_node *n;
	while ((n = rw_lru_pop(&f->lru)))
		entry_free(CONTAINER(n, fast_entry, node));
	rw_lru_destroy(&f->lru);
	rw_fastscan_free(&f->fs);
}

bool rw_fast_enabled(const rw_fast *f)
{
	return f->lru.max_entries > 0;
}

rw_shape_obj *rw_fast_find(rw_fast *f, const char *sql, size_t len, uint64_t seed)
{
	f->status = rw_fastscan_run(&f->fs, sql, len);
	if (f->status != RW_FS_OK)
		return NULL;
	f->hash = rw_hash(f->fs.key, f->fs.keylen, seed);
	rw_lru_node *n = rw_lru_find(&f->lru, f->hash, (const char *)f->fs.key, f->fs.keylen);
	if (!n)
		return NULL;
	rw_shape_obj *sh = CONTAINER(n, fast_entry, node)->shape;
	/* equal keys have equal slot tokens; checked anyway, since values are read by slot count */
	return sh->pub.nslots == f->fs.nslots ? sh : NULL;
}

/* Does the last fastscan describe statement st of shape sh exactly? */
static bool agrees(const rw_fastscan *fs, const rw_stmt *st, const rw_shape_obj *sh)
{
	if (fs->nslots != sh->pub.nslots || fs->stmt_location != st->location || fs->stmt_length != st->length)
		return false;
	for (size_t i = 0; i < fs->nslots; i++) {
		const rw_fs_slot *s = &fs->slots[i];
		if (s->location != st->values[i].location || s->length != st->values[i].length || sh->neg[i])
			return false;
		if ((s->cls == RW_FS_PARAM) != (sh->pub.slots[i].param != 0))
			return false;
	}
	return true;
}

size_t rw_fast_learn(rw_fast *f, const rw_stmt *st, rw_shape_obj *sh)
{
	const rw_fastscan *fs = &f->fs;
	if (f->status != RW_FS_OK || !sh->fast || !rw_lru_linked(&sh->node) || !agrees(fs, st, sh))
		return 0;
	size_t bytes = sizeof(fast_entry) + fs->keylen + sh->bytes;
	if (!rw_lru_fits(&f->lru, bytes) || rw_lru_find(&f->lru, f->hash, (const char *)fs->key, fs->keylen))
		return 0;
	fast_entry *e = pf_malloc(sizeof *e + (fs->keylen ? fs->keylen : 1));
	memcpy(e->key, fs->key, fs->keylen);
	e->node = (rw_lru_node){.hash = f->hash, .key = (const char *)e->key, .keylen = fs->keylen, .bytes = bytes};
	rw_shape_ref(sh);
	e->shape = sh;
	rw_lru_insert(&f->lru, &e->node);
	size_t evicted = 0;
	rw_lru_node *old;
	while ((old = rw_lru_evict(&f->lru))) {
		entry_free(CONTAINER(old, fast_entry, node));
		evicted++;
	}
	return evicted;
}
