/*
 * qstats.c — the per-shape statistics table behind /queries (see qstats.h).
 *
 * Three structures share the entries:
 *   - an open-addressing hash table (linear probing, backward-shift
 *     deletion) on (fingerprint, unparsed), grown by doubling up to twice
 *     max_shapes slots;
 *   - a binary min-heap ordered by (calls, last use), so the entry to evict
 *     is always heap[0] and a use costs one sift-down (both keys only grow);
 *   - per entry, a log-scale histogram of elapsed times.
 *
 * "Last use" is a logical clock advanced by every px_qstats_get() and
 * px_qstats_record(), so eviction is deterministic.
 *
 * Histogram: values 0..7 µs have one bucket each; above, each power of two
 * [2^k, 2^(k+1)) is cut into 8 equal buckets, up to 2^27 µs (~134 s), and one
 * overflow bucket holds the rest.  A bucket's width is at most 1/8 of its
 * lower bound, so reporting its middle is within 1/16 (6.25%) of any value in
 * it.  201 buckets, 1.6 KiB per entry.
 */
#include "qstats.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "admin.h"

enum {
	QS_SUB_BITS = 3,                 /* 8 buckets per power of two */
	QS_SUB = 1 << QS_SUB_BITS,
	QS_MAX_EXP = 26,                 /* the last regular octave: [2^26, 2^27) µs */
	QS_REGULAR = QS_SUB + (QS_MAX_EXP - QS_SUB_BITS + 1) * QS_SUB,
	QS_OVERFLOW = QS_REGULAR,        /* index of the overflow bucket */
	QS_BUCKETS = QS_REGULAR + 1,
	QS_TEXT_QUERY_CHARS = 80,        /* query column of the text table */
};

typedef struct qs_entry {
	px_qstat pub;      /* first: a px_qstat * is a qs_entry * */
	px_qstats *owner;
	uint64_t hash;
	uint64_t last_use; /* qs->tick at the last get or record */
	size_t heap_index;
	bool unparsed;
	char **tables;     /* pub.tables, owned */
	uint64_t hist[QS_BUCKETS];
} qs_entry;

struct px_qstats {
	size_t max_shapes;
	qs_entry **slots;  /* hash table, nslots a power of two (0 before the first entry) */
	size_t nslots;
	qs_entry **heap;   /* every entry, min-heap on (calls, last_use) */
	size_t n;
	size_t heap_cap;
	uint64_t tick;
	uint64_t evicted_since_reset;
	px_qstats_totals life; /* shapes and max_shapes are filled on demand */
};

/* ---- histogram ---------------------------------------------------------- */

static unsigned bucket_of(uint64_t us)
{
	if (us < QS_SUB)
		return (unsigned)us;
	unsigned k = 63u - (unsigned)__builtin_clzll(us); /* us in [2^k, 2^(k+1)), k >= 3 */
	if (k > QS_MAX_EXP)
		return QS_OVERFLOW;
	unsigned sub = (unsigned)(us >> (k - QS_SUB_BITS)) & (QS_SUB - 1);
	return QS_SUB + (k - QS_SUB_BITS) * QS_SUB + sub;
}

/* The middle of a regular bucket. */
static uint64_t bucket_mid(unsigned b)
{
	if (b < QS_SUB)
		return b;
	unsigned shift = (b - QS_SUB) / QS_SUB; /* k - QS_SUB_BITS */
	uint64_t lo = (uint64_t)(QS_SUB + (b - QS_SUB) % QS_SUB) << shift;
	uint64_t width = (uint64_t)1 << shift;
	return lo + width / 2;
}

uint64_t px_qstat_p99_us(const px_qstat *st)
{
	const qs_entry *e = (const qs_entry *)st;
	if (st->calls == 0)
		return 0;
	uint64_t rank = st->calls - st->calls / 100; /* ceil(0.99 * calls) */
	uint64_t seen = 0;
	for (unsigned b = 0; b < QS_REGULAR; b++) {
		seen += e->hist[b];
		if (seen >= rank) {
			uint64_t mid = bucket_mid(b);
			return mid < st->max_us ? mid : st->max_us;
		}
	}
	return st->max_us; /* in the overflow bucket */
}

/* ---- hash table --------------------------------------------------------- */

static uint64_t key_hash(uint64_t fingerprint, bool unparsed)
{
	/* splitmix64's finalizer: fingerprints are hashes already, but tests and
	 * the unparsed entry use small ones */
	uint64_t x = fingerprint ^ (unparsed ? 0x9e3779b97f4a7c15ULL : 0);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* The slot holding the key, or the empty slot where it would go.  nslots > 0. */
static size_t slot_find(const px_qstats *qs, uint64_t fingerprint, bool unparsed, uint64_t hash)
{
	size_t mask = qs->nslots - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		const qs_entry *e = qs->slots[i];
		if (!e || (e->unparsed == unparsed && e->pub.fingerprint == fingerprint))
			return i;
	}
}

/* Empties slot i and moves later entries of its probe run back into the gap. */
static void slot_remove(px_qstats *qs, size_t i)
{
	size_t mask = qs->nslots - 1;
	qs->slots[i] = NULL;
	for (size_t j = (i + 1) & mask; qs->slots[j]; j = (j + 1) & mask) {
		qs_entry *e = qs->slots[j];
		size_t home = e->hash & mask;
		if (((j - i) & mask) <= ((j - home) & mask)) { /* i lies in [home, j) */
			qs->slots[i] = e;
			qs->slots[j] = NULL;
			i = j;
		}
	}
}

/* Room for one more entry at a load factor of at most 1/2. */
static void slots_reserve(px_qstats *qs)
{
	if ((qs->n + 1) * 2 <= qs->nslots)
		return;
	size_t nslots = qs->nslots ? qs->nslots * 2 : 16;
	qs_entry **old = qs->slots;
	size_t old_n = qs->nslots;
	qs->slots = pf_calloc(nslots, sizeof(*qs->slots));
	qs->nslots = nslots;
	for (size_t i = 0; i < old_n; i++)
		if (old[i])
			qs->slots[slot_find(qs, old[i]->pub.fingerprint, old[i]->unparsed, old[i]->hash)] = old[i];
	pf_free(old);
}

/* ---- heap --------------------------------------------------------------- */

static bool heap_less(const qs_entry *a, const qs_entry *b)
{
	if (a->pub.calls != b->pub.calls)
		return a->pub.calls < b->pub.calls;
	return a->last_use < b->last_use;
}

static void heap_put(px_qstats *qs, size_t i, qs_entry *e)
{
	qs->heap[i] = e;
	e->heap_index = i;
}

static void heap_sift_up(px_qstats *qs, size_t i)
{
	qs_entry *e = qs->heap[i];
	while (i > 0 && heap_less(e, qs->heap[(i - 1) / 2])) {
		heap_put(qs, i, qs->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_put(qs, i, e);
}

static void heap_sift_down(px_qstats *qs, size_t i)
{
	qs_entry *e = qs->heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= qs->n)
			break;
		if (child + 1 < qs->n && heap_less(qs->heap[child + 1], qs->heap[child]))
			child++;
		if (!heap_less(qs->heap[child], e))
			break;
		heap_put(qs, i, qs->heap[child]);
		i = child;
	}
	heap_put(qs, i, e);
}

static void heap_push(px_qstats *qs, qs_entry *e)
{
	if (qs->n == qs->heap_cap) {
		qs->heap_cap = qs->heap_cap ? qs->heap_cap * 2 : 16;
		qs->heap = pf_realloc(qs->heap, qs->heap_cap * sizeof(*qs->heap));
	}
	qs->heap[qs->n++] = e;
	heap_sift_up(qs, qs->n - 1);
}

/* Removes and returns the least-used entry.  n > 0. */
static qs_entry *heap_pop(px_qstats *qs)
{
	qs_entry *top = qs->heap[0];
	qs_entry *last = qs->heap[--qs->n];
	if (qs->n > 0) {
		heap_put(qs, 0, last);
		heap_sift_down(qs, 0);
	}
	return top;
}

/* The entry was used now: a later last_use, maybe more calls; both only grow. */
static void entry_touch(qs_entry *e)
{
	px_qstats *qs = e->owner;
	e->last_use = ++qs->tick;
	heap_sift_down(qs, e->heap_index);
}

/* ---- entries ------------------------------------------------------------ */

/* A copy of text cut to PX_QSTATS_MAX_QUERY_BYTES at a character boundary. */
static char *query_copy(const char *text)
{
	size_t len = strlen(text);
	if (len <= PX_QSTATS_MAX_QUERY_BYTES)
		return pf_strdup(text);
	size_t keep = PX_QSTATS_MAX_QUERY_BYTES - 3;
	while (keep > 0 && ((unsigned char)text[keep] & 0xC0) == 0x80) /* not inside a UTF-8 sequence */
		keep--;
	char *s = pf_malloc(keep + 4);
	memcpy(s, text, keep);
	memcpy(s + keep, "...", 4);
	return s;
}

/* The shape's distinct relations as "schema.name" / "name". */
static void tables_copy(qs_entry *e, const rw_shape *shape)
{
	size_t max = shape->nrelations < PX_QSTATS_MAX_TABLES ? shape->nrelations : PX_QSTATS_MAX_TABLES;
	e->tables = max ? pf_calloc(max, sizeof(*e->tables)) : NULL;
	size_t n = 0;
	for (size_t i = 0; i < shape->nrelations && n < max; i++) {
		const rw_relation *r = &shape->relations[i];
		if (!r->name)
			continue;
		pf_sb name;
		pf_sb_init(&name);
		if (r->schema)
			pf_sb_appendf(&name, "%s.", r->schema);
		pf_sb_append(&name, r->name);
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(e->tables[j], pf_sb_str(&name)) == 0;
		if (!dup)
			e->tables[n++] = pf_strdup(pf_sb_str(&name));
		pf_sb_free(&name);
	}
	e->pub.tables = (const char *const *)e->tables;
	e->pub.ntables = n;
}

static qs_entry *entry_new(px_qstats *qs, const rw_shape *shape, bool unparsed, uint64_t hash)
{
	qs_entry *e = pf_calloc(1, sizeof(*e));
	e->owner = qs;
	e->hash = hash;
	e->unparsed = unparsed;
	e->pub.kind = unparsed ? RW_KIND_UNPARSED : shape->kind;
	if (!unparsed) {
		e->pub.fingerprint = shape->fingerprint;
		e->pub.query = shape->normalized ? query_copy(shape->normalized) : NULL;
		tables_copy(e, shape);
	}
	return e;
}

static void entry_free(qs_entry *e)
{
	for (size_t i = 0; i < e->pub.ntables; i++)
		pf_free(e->tables[i]);
	pf_free(e->tables);
	pf_free((char *)e->pub.query);
	pf_free(e);
}

static void evict_one(px_qstats *qs)
{
	qs_entry *victim = heap_pop(qs);
	slot_remove(qs, slot_find(qs, victim->pub.fingerprint, victim->unparsed, victim->hash));
	entry_free(victim);
	qs->evicted_since_reset++;
	qs->life.evicted++;
}

/* ---- the table ---------------------------------------------------------- */

px_qstats *px_qstats_new(size_t max_shapes)
{
	px_qstats *qs = pf_calloc(1, sizeof(*qs));
	qs->max_shapes = max_shapes;
	return qs;
}

void px_qstats_free(px_qstats *qs)
{
	if (!qs)
		return;
	px_qstats_reset(qs);
	pf_free(qs->slots);
	pf_free(qs->heap);
	pf_free(qs);
}

px_qstat *px_qstats_get(px_qstats *qs, const rw_shape *shape)
{
	if (!qs || qs->max_shapes == 0)
		return NULL;
	bool unparsed = shape->kind == RW_KIND_UNPARSED;
	uint64_t fingerprint = unparsed ? 0 : shape->fingerprint;
	uint64_t hash = key_hash(fingerprint, unparsed);
	if (qs->n > 0) {
		qs_entry *found = qs->slots[slot_find(qs, fingerprint, unparsed, hash)];
		if (found) {
			entry_touch(found);
			return &found->pub;
		}
	}
	if (qs->n >= qs->max_shapes)
		evict_one(qs);
	slots_reserve(qs);
	qs_entry *e = entry_new(qs, shape, unparsed, hash);
	qs->slots[slot_find(qs, fingerprint, unparsed, hash)] = e;
	e->last_use = ++qs->tick;
	heap_push(qs, e);
	return &e->pub;
}

void px_qstats_record(px_qstat *st, uint64_t elapsed_us, uint64_t rows, bool error)
{
	if (!st)
		return;
	qs_entry *e = (qs_entry *)st;
	st->calls++;
	st->rows += rows;
	st->errors += error;
	st->total_us += elapsed_us;
	if (elapsed_us > st->max_us)
		st->max_us = elapsed_us;
	e->hist[bucket_of(elapsed_us)]++;
	px_qstats *qs = e->owner;
	qs->life.statements++;
	qs->life.errors += error;
	qs->life.time_us += elapsed_us;
	entry_touch(e);
}

void px_qstats_record_cache(px_qstats *qs, const rw_stmt *stmt, bool hit)
{
	px_qstat *st = stmt && stmt->shape ? px_qstats_get(qs, stmt->shape) : NULL;
	if (!st)
		return;
	if (hit)
		st->cache_hits++;
	else
		st->cache_misses++;
}

void px_qstats_record_cache_fingerprint(px_qstats *qs, uint64_t fingerprint, bool hit)
{
	if (!qs || qs->n == 0)
		return;
	qs_entry *e = qs->slots[slot_find(qs, fingerprint, false, key_hash(fingerprint, false))];
	if (!e)
		return;
	if (hit)
		e->pub.cache_hits++;
	else
		e->pub.cache_misses++;
}

const px_qstat *px_qstats_find(const px_qstats *qs, uint64_t fingerprint, bool unparsed)
{
	if (!qs || qs->n == 0)
		return NULL;
	if (unparsed)
		fingerprint = 0;
	const qs_entry *e = qs->slots[slot_find(qs, fingerprint, unparsed, key_hash(fingerprint, unparsed))];
	return e ? &e->pub : NULL;
}

void px_qstats_reset(px_qstats *qs)
{
	for (size_t i = 0; i < qs->n; i++)
		entry_free(qs->heap[i]);
	qs->n = 0;
	if (qs->slots)
		memset(qs->slots, 0, qs->nslots * sizeof(*qs->slots));
	qs->evicted_since_reset = 0;
}

void px_qstats_totals_get(const px_qstats *qs, px_qstats_totals *out)
{
	*out = qs->life;
	out->shapes = qs->n;
	out->max_shapes = qs->max_shapes;
}

/* ---- rendering ---------------------------------------------------------- */

/* The uint64_t counters shown in /queries, in order after "tables". */
static const struct {
	const char *name;
	size_t offset; /* of a uint64_t in px_qstat */
} counter_fields[] = {
	{"calls", offsetof(px_qstat, calls)},
	{"rows", offsetof(px_qstat, rows)},
	{"errors", offsetof(px_qstat, errors)},
	{"cache_hits", offsetof(px_qstat, cache_hits)},
	{"cache_misses", offsetof(px_qstat, cache_misses)},
};

static uint64_t counter_value(const px_qstat *st, size_t i)
{
	return *(const uint64_t *)((const char *)st + counter_fields[i].offset);
}

static int entry_order(const void *pa, const void *pb)
{
	const qs_entry *a = *(const qs_entry *const *)pa, *b = *(const qs_entry *const *)pb;
	if (a->pub.total_us != b->pub.total_us)
		return a->pub.total_us > b->pub.total_us ? -1 : 1;
	if (a->pub.fingerprint != b->pub.fingerprint)
		return a->pub.fingerprint < b->pub.fingerprint ? -1 : 1;
	return (int)a->unparsed - (int)b->unparsed;
}

/* The entries in output order, cut to limit (0: all); the caller frees. */
static const qs_entry **entries_sorted(const px_qstats *qs, size_t limit, size_t *count)
{
	*count = qs->n;
	if (qs->n == 0)
		return NULL;
	const qs_entry **v = pf_malloc(qs->n * sizeof(*v));
	memcpy(v, qs->heap, qs->n * sizeof(*v));
	qsort(v, qs->n, sizeof(*v), entry_order);
	if (limit && limit < qs->n)
		*count = limit;
	return v;
}

static double us_to_ms(uint64_t us)
{
	return (double)us / 1000.0;
}

void px_qstats_set_volatility(px_qstat *st, char volatility)
{
	if (st)
		st->volatility = volatility;
}

static double mean_ms(const px_qstat *st)
{
	return st->calls ? (double)st->total_us / (double)st->calls / 1000.0 : 0.0;
}

static void entry_json(pf_sb *b, const qs_entry *e)
{
	const px_qstat *st = &e->pub;
	pf_sb_appendf(b, "{\"fingerprint\":\"%016" PRIx64 "\",\"query\":", st->fingerprint);
	if (st->query)
		pf_sb_append_json_string(b, st->query);
	else
		pf_sb_append(b, "null");
	pf_sb_append(b, ",\"kind\":");
	pf_sb_append_json_string(b, rw_kind_name(st->kind));
	pf_sb_append(b, ",\"tables\":[");
	for (size_t i = 0; i < st->ntables; i++) {
		if (i)
			pf_sb_append(b, ",");
		pf_sb_append_json_string(b, st->tables[i]);
	}
	pf_sb_append(b, "],\"volatility\":");
	pf_sb_append(b, st->volatility == 'i'   ? "\"immutable\""
			: st->volatility == 's' ? "\"stable\""
			: st->volatility == 'v' ? "\"volatile\""
						: "null");
	for (size_t i = 0; i < sizeof(counter_fields) / sizeof(counter_fields[0]); i++)
		pf_sb_appendf(b, ",\"%s\":%" PRIu64, counter_fields[i].name, counter_value(st, i));
	pf_sb_appendf(b, ",\"total_ms\":%.3f,\"mean_ms\":%.3f,\"max_ms\":%.3f,\"p99_ms\":%.3f}", us_to_ms(st->total_us),
		      mean_ms(st), us_to_ms(st->max_us), us_to_ms(px_qstat_p99_us(st)));
}

void px_qstats_render_json(const px_qstats *qs, pf_sb *out, size_t limit)
{
	size_t count;
	const qs_entry **v = entries_sorted(qs, limit, &count);
	pf_sb_appendf(out, "{\"shapes\":%zu,\"evicted\":%" PRIu64 ",\"queries\":[", qs->n, qs->evicted_since_reset);
	for (size_t i = 0; i < count; i++) {
		if (i)
			pf_sb_append(out, ",");
		entry_json(out, v[i]);
	}
	pf_sb_append(out, "]}");
	pf_free(v);
}

enum { TEXT_COLS = 10 }; /* before the query */

static const char *const text_headers[TEXT_COLS] = {"calls", "total_ms", "mean_ms",    "p99_ms",       "max_ms",
						    "rows",  "errors",   "cache_hits", "cache_misses", "kind"};

typedef struct text_row {
	char cell[TEXT_COLS][32];
} text_row;

static void text_row_fill(text_row *r, const px_qstat *st)
{
	snprintf(r->cell[0], sizeof(r->cell[0]), "%" PRIu64, st->calls);
	snprintf(r->cell[1], sizeof(r->cell[1]), "%.3f", us_to_ms(st->total_us));
	snprintf(r->cell[2], sizeof(r->cell[2]), "%.3f", mean_ms(st));
	snprintf(r->cell[3], sizeof(r->cell[3]), "%.3f", us_to_ms(px_qstat_p99_us(st)));
	snprintf(r->cell[4], sizeof(r->cell[4]), "%.3f", us_to_ms(st->max_us));
	snprintf(r->cell[5], sizeof(r->cell[5]), "%" PRIu64, st->rows);
	snprintf(r->cell[6], sizeof(r->cell[6]), "%" PRIu64, st->errors);
	snprintf(r->cell[7], sizeof(r->cell[7]), "%" PRIu64, st->cache_hits);
	snprintf(r->cell[8], sizeof(r->cell[8]), "%" PRIu64, st->cache_misses);
	snprintf(r->cell[9], sizeof(r->cell[9]), "%s", rw_kind_name(st->kind));
}

/* q on one line: runs of white space and control characters become one space
 * (none leading), cut to QS_TEXT_QUERY_CHARS characters with "..." after. */
static void text_query_append(pf_sb *b, const char *q)
{
	size_t chars = 0;
	bool space = false, started = false;
	for (const unsigned char *p = (const unsigned char *)q; *p; p++) {
		if (*p <= 0x20 || *p == 0x7f) {
			space = started;
			continue;
		}
		if ((*p & 0xC0) != 0x80) { /* a character starts */
			if (chars + space + 1 > QS_TEXT_QUERY_CHARS) {
				pf_sb_append(b, "...");
				return;
			}
			if (space)
				pf_sb_append_n(b, " ", 1);
			chars += space + 1;
			space = false;
		}
		started = true;
		pf_sb_append_n(b, (const char *)p, 1);
	}
}

static void text_line(pf_sb *b, const char *const *cells, const size_t *width, const char *query)
{
	for (int c = 0; c < TEXT_COLS - 1; c++) /* numbers: right-aligned */
		pf_sb_appendf(b, "%s%*s", c ? "  " : "", (int)width[c], cells[c]);
	pf_sb_appendf(b, "  %-*s  ", (int)width[TEXT_COLS - 1], cells[TEXT_COLS - 1]);
	text_query_append(b, query);
	pf_sb_append(b, "\n");
}

void px_qstats_render_text(const px_qstats *qs, pf_sb *out, size_t limit)
{
	size_t count;
	const qs_entry **v = entries_sorted(qs, limit, &count);
	text_row *rows = count ? pf_malloc(count * sizeof(*rows)) : NULL;
	size_t width[TEXT_COLS];
	for (int c = 0; c < TEXT_COLS; c++)
		width[c] = strlen(text_headers[c]);
	for (size_t i = 0; i < count; i++) {
		text_row_fill(&rows[i], &v[i]->pub);
		for (int c = 0; c < TEXT_COLS; c++)
			if (strlen(rows[i].cell[c]) > width[c])
				width[c] = strlen(rows[i].cell[c]);
	}
	text_line(out, text_headers, width, "query");
	for (size_t i = 0; i < count; i++) {
		const char *cells[TEXT_COLS];
		for (int c = 0; c < TEXT_COLS; c++)
			cells[c] = rows[i].cell[c];
		const char *q = v[i]->pub.query ? v[i]->pub.query : (v[i]->unparsed ? "(unparsed)" : "");
		text_line(out, cells, width, q);
	}
	pf_free(rows);
	pf_free(v);
}

void px_qstats_render_metrics(const px_qstats *qs, pf_sb *out)
{
	px_admin_metric(out, "pgfold_query_shapes", "gauge", "Statement shapes in the /queries table now.", qs->n);
	px_admin_metric(out, "pgfold_query_shapes_evicted_total", "counter",
			"Statement shapes evicted from the /queries table to make room.", qs->life.evicted);
	px_admin_metric(out, "pgfold_statements_total", "counter", "Statements whose execution was timed.",
			qs->life.statements);
	px_admin_metric(out, "pgfold_statement_errors_total", "counter", "Timed statements that ended in an error.",
			qs->life.errors);
	px_admin_metric_seconds(out, "pgfold_statement_time_seconds_total", "counter",
				"Time of timed statements, first byte in to ReadyForQuery out.", qs->life.time_us);
}

/* ---- admin routes ------------------------------------------------------- */

/* The value of name in a query string "a=1&b=2" into out: 1 found, 0 absent,
 * -1 longer than size - 1 bytes.  No %-decoding (our values never need it). */
static int query_param(const char *query, const char *name, char *out, size_t size)
{
	size_t nlen = strlen(name);
	for (const char *p = query; *p;) {
		size_t plen = strcspn(p, "&");
		if (plen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			size_t vlen = plen - nlen - 1;
			if (vlen >= size)
				return -1;
			memcpy(out, p + nlen + 1, vlen);
			out[vlen] = '\0';
			return 1;
		}
		p += plen + (p[plen] == '&');
	}
	return 0;
}

/* limit=N: 1 to 9 digits.  0 or -1. */
static int parse_limit(const char *s, size_t *limit)
{
	size_t n = strlen(s);
	if (n == 0 || n > 9 || strspn(s, "0123456789") != n)
		return -1;
	*limit = (size_t)strtoul(s, NULL, 10);
	return 0;
}

static void bad_request(px_admin_response *resp, const char *why)
{
	resp->status = 400;
	pf_sb_append(&resp->body, "{\"error\":");
	pf_sb_append_json_string(&resp->body, why);
	pf_sb_append(&resp->body, "}");
}

static void queries_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	const px_qstats *qs = ctx;
	char format[16] = "json", value[16];
	size_t limit = 0;
	if (query_param(req->query, "format", format, sizeof(format)) < 0 ||
	    (strcmp(format, "json") != 0 && strcmp(format, "text") != 0)) {
		bad_request(resp, "format must be json or text");
		return;
	}
	int found = query_param(req->query, "limit", value, sizeof(value));
	if (found < 0 || (found && parse_limit(value, &limit) != 0)) {
		bad_request(resp, "limit must be a number of entries (0: all)");
		return;
	}
	if (strcmp(format, "text") == 0) {
		resp->content_type = "text/plain; charset=utf-8";
		px_qstats_render_text(qs, &resp->body, limit);
	} else {
		px_qstats_render_json(qs, &resp->body, limit);
	}
}

static void reset_handler(const px_admin_request *req, px_admin_response *resp, void *ctx)
{
	px_qstats_reset(ctx);
	pf_sb_append(&resp->body, "{\"reset\":true}");
}

int px_qstats_add_admin_routes(px_admin *admin, px_qstats *qs)
{
	if (px_admin_route(admin, "GET", "/queries", queries_handler, qs) != 0 ||
	    px_admin_route(admin, "POST", "/queries/reset", reset_handler, qs) != 0) {
		pf_warn("admin: could not register the /queries routes");
		return -1;
	}
	return 0;
}
