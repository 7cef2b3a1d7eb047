/*
 * TCP sequence-number arithmetic (RFC 9293 section 3.4): comparisons are
 * modulo 2^32, valid while the two numbers are less than 2^31 apart.
 * Header-only so that the glue and the tests share the exact definitions.
 */
#ifndef UTCP_SEQ_H
#define UTCP_SEQ_H

#include <stdint.h>

static inline int utcp_seq_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
static inline int utcp_seq_le(uint32_t a, uint32_t b) { return (int32_t)(a - b) <= 0; }
static inline int utcp_seq_gt(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }
static inline int utcp_seq_ge(uint32_t a, uint32_t b) { return (int32_t)(a - b) >= 0; }

static inline uint32_t utcp_seq_max(uint32_t a, uint32_t b) { return utcp_seq_gt(a, b) ? a : b; }
static inline uint32_t utcp_seq_min(uint32_t a, uint32_t b) { return utcp_seq_lt(a, b) ? a : b; }

/** @return non-zero when lo <= x < hi (modulo 2^32). */
static inline int
utcp_seq_in(uint32_t x, uint32_t lo, uint32_t hi)
{
	return x - lo < hi - lo;
}

#endif
