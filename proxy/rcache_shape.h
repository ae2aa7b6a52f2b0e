/*
 * rcache_shape.h — per statement shape, how often the result cache's
 * lookups hit: a shape whose recent lookups almost never hit (unique keys)
 * skips the lookup, so its misses cost no Redis round trip.  Pure: no I/O.
 *
 * Each shape (fingerprint) keeps the outcome of its last
 * PX_RC_SHAPE_WINDOW lookups.  Once the window is full and under
 * PX_RC_SHAPE_COLD_PCT percent of it hit, the shape is cold: every
 * execution goes straight to PostgreSQL, and every PX_RC_SHAPE_PROBE-th is
 * also looked up, without waiting for the answer (a probe: it re-measures).  One in PX_RC_SHAPE_STORE of those
 * has its answer stored all the same (a store is a Redis round trip of its
 * own: storing every one would cost most of what skipping the lookup
 * saves), so a shape whose keys start repeating warms up again through its
 * probes.
 *
 * The table is bounded: PX_RC_SHAPE_SETS sets of PX_RC_SHAPE_WAYS shapes,
 * a fingerprint's set chosen by hash; a new shape replaces the least
 * recently used one of its set.  It lives inside px_server (no allocation).
 *
 * Interface
 *   px_rc_shape_lookup()   should this execution of the shape be looked up?
 *   px_rc_shape_record()   a lookup of the shape hit or missed
 */
#ifndef PGFOLD_PROXY_RCACHE_SHAPE_H
#define PGFOLD_PROXY_RCACHE_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#define PX_RC_SHAPE_WINDOW 32
#define PX_RC_SHAPE_COLD_PCT 10
#define PX_RC_SHAPE_PROBE 16
#define PX_RC_SHAPE_STORE 8
#define PX_RC_SHAPE_WAYS 8
#define PX_RC_SHAPE_SETS 512 /* 4096 shapes */

typedef struct px_rc_shape {
	uint64_t fingerprint; /* 0: free */
	uint64_t used;        /* the table's tick when last used (LRU within the set) */
	uint32_t window;      /* bit i: the i-th most recent lookup hit */
	uint8_t n;            /* lookups in the window (up to PX_RC_SHAPE_WINDOW) */
	uint8_t since_probe;  /* executions skipped since the last probe */
	uint8_t since_store;  /* skipped executions not stored since the last stored one */
} px_rc_shape;

typedef enum px_rc_verdict {
	PX_RC_LOOK_UP,    /* look it up (a warm or new shape) */
	PX_RC_SKIP_STORE, /* cold: go to PostgreSQL at once, store the answer */
	PX_RC_SKIP,       /* cold: go to PostgreSQL at once */
	PX_RC_PROBE,      /* cold: go to PostgreSQL at once, store the answer, and look the key up
	                     meanwhile to record whether it would have hit */
} px_rc_verdict;

typedef struct px_rc_shapes {
	uint64_t tick;
	px_rc_shape shapes[PX_RC_SHAPE_SETS * PX_RC_SHAPE_WAYS];
} px_rc_shapes;

/* What to do with this execution of the shape. */
px_rc_verdict px_rc_shape_lookup(px_rc_shapes *t, uint64_t fingerprint);
void px_rc_shape_record(px_rc_shapes *t, uint64_t fingerprint, bool hit);

#endif /* PGFOLD_PROXY_RCACHE_SHAPE_H */
