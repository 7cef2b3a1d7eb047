/*
 * FNV-1a, 64 bit: the one non-cryptographic hash of the project (Message-ID
 * tokens, stable recipient indexes, and the byte streams the TCP tools
 * verify end to end). Header-only: the TCP tools and their peer must hash
 * identically without linking a library for it.
 */
#ifndef MP_HASH_H
#define MP_HASH_H

#include <stddef.h>
#include <stdint.h>

/** FNV-1a offset basis: the hash of no bytes. */
#define MP_FNV1A_INIT 0xcbf29ce484222325ull

/** Continue hash @p h over @p n bytes at @p p. */
static inline uint64_t
mp_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *u = p;

	for (size_t i = 0; i < n; i++) {
		h ^= u[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#endif
