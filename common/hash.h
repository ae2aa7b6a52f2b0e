/*
 * hash.h — the one byte-string hash (FNV-1a with a final avalanche) used by
 * the hash tables in common/ and rewrite/.  Not keyed: fine for tables whose
 * size is bounded, not a defence against chosen collisions.
 */
#ifndef PGFOLD_COMMON_HASH_H
#define PGFOLD_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t pf_hash_bytes(const void *data, size_t len)
{
	const unsigned char *s = data;
	uint64_t h = UINT64_C(14695981039346656037);
	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= UINT64_C(1099511628211);
	}
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return h;
}

#endif /* PGFOLD_COMMON_HASH_H */
