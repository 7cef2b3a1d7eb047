/*
 * The byte stream the TCP tools send (mp-tcpbench on the userspace stack,
 * mp-tcpkclient on kernel sockets): a fixed 64 KiB table, entered at an
 * offset that differs per connection, so a byte landing in the wrong
 * connection or at the wrong place is caught by the echo check or by the
 * sink's FNV-1a summary (mp_hash.h). Both tools must produce exactly the
 * same bytes; this header is where that is defined.
 */
#ifndef MP_TCPPAT_H
#define MP_TCPPAT_H

#include <stdint.h>

#include "mp_hash.h"

#define MP_PAT_SIZE 65536
#define MP_PAT_MASK (MP_PAT_SIZE - 1)

/** Fill the table (once, at start). */
static inline void
mp_pat_fill(uint8_t pat[MP_PAT_SIZE])
{
	for (uint32_t i = 0; i < MP_PAT_SIZE; i++)
		pat[i] = (uint8_t)((i * 2654435761u) >> 13);
}

/**
 * Bytes of connection @p idx at stream offset @p off.
 * @param contig set to how many bytes may be read from there
 */
static inline const uint8_t *
mp_pat_at(const uint8_t pat[MP_PAT_SIZE], uint64_t idx, uint64_t off,
	uint32_t *contig)
{
	uint32_t pos = (uint32_t)((off + idx * 97) & MP_PAT_MASK);

	*contig = MP_PAT_SIZE - pos;
	return pat + pos;
}

#endif
