/*
 * rcache_shape.c — per-shape hit ratios of the result cache's lookups and
 * the decision to skip the lookup for cold shapes (see rcache_shape.h).
 */
#include "rcache_shape.h"

#include <stddef.h>

static px_rc_shape *set_of(px_rc_shapes *t, uint64_t fp)
{
	uint64_t h = fp * 0x9e3779b97f4a7c15ull;
	return &t->shapes[(size_t)(h >> 40) % PX_RC_SHAPE_SETS * PX_RC_SHAPE_WAYS];
}

/* The shape's slot, made (replacing the set's least recently used) when new. */
static px_rc_shape *shape_of(px_rc_shapes *t, uint64_t fp)
{
	px_rc_shape *set = set_of(t, fp), *victim = &set[0];
	t->tick++;
	for (size_t i = 0; i < PX_RC_SHAPE_WAYS; i++) {
		if (set[i].fingerprint == fp) {
			set[i].used = t->tick;
			return &set[i];
		}
		if (set[i].used < victim->used)
			victim = &set[i];
	}
	*victim = (px_rc_shape){.fingerprint = fp, .used = t->tick};
	return victim;
}

static bool cold(const px_rc_shape *e)
{
	return e->n >= PX_RC_SHAPE_WINDOW &&
	       (unsigned)__builtin_popcount(e->window) * 100u < (unsigned)PX_RC_SHAPE_COLD_PCT * e->n;
}

px_rc_verdict px_rc_shape_lookup(px_rc_shapes *t, uint64_t fingerprint)
{
	if (!fingerprint)
		return PX_RC_LOOK_UP;
	px_rc_shape *e = shape_of(t, fingerprint);
	if (!cold(e))
		return PX_RC_LOOK_UP;
	if (++e->since_probe >= PX_RC_SHAPE_PROBE) {
		e->since_probe = 0;
		return PX_RC_PROBE;
	}
	if (++e->since_store >= PX_RC_SHAPE_STORE) {
		e->since_store = 0;
		return PX_RC_SKIP_STORE;
	}
	return PX_RC_SKIP;
}

void px_rc_shape_record(px_rc_shapes *t, uint64_t fingerprint, bool hit)
{
	if (!fingerprint)
		return;
	px_rc_shape *e = shape_of(t, fingerprint);
	e->window = (e->window << 1) | (hit ? 1u : 0u);
	if (e->n < PX_RC_SHAPE_WINDOW)
		e->n++;
}
