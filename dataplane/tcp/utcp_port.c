/*
 * Per-stack keyed choices that an off-path attacker must not guess:
 * SipHash-2-4 keyed with the stack secret feeds the ISN (RFC 6528: a 4 us
 * clock plus a keyed hash of the 4-tuple), the per-connection timestamp
 * offset (RFC 7323 section 5.4) and the ephemeral port choice (RFC 6056
 * algorithm 3, double-hash: a keyed offset per (saddr, daddr, dport) plus a
 * per-bucket counter, so successive connections to one peer walk the range
 * and a 4-tuple is not reused soon after).
 * A port whose 4-tuple is still in our TIME_WAIT is taken over only when
 * the new ISN and timestamp are both above the old ones (RFC 6191).
 */
#include <errno.h>
#include <string.h>

#include "utcp_impl.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

static uint64_t
le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint64_t
utcp_siphash(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	uint64_t b = (uint64_t)len << 56, m;
	size_t i, left = len & 7, end = len - left;

	for (i = 0; i < end; i += 8) {
		m = le64(in + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t j = 0; j < left; j++)
		b |= (uint64_t)in[end + j] << (8 * j);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* Hash of a tagged tuple; the tag separates the uses of the one key. */
static uint64_t
tuple_hash(const struct utcp_stack *st, uint8_t tag, uint32_t a, uint16_t ap,
	uint32_t b, uint16_t bp)
{
	uint8_t buf[13];

	buf[0] = tag;
	memcpy(buf + 1, &a, 4);
	memcpy(buf + 5, &b, 4);
	memcpy(buf + 9, &ap, 2);
	memcpy(buf + 11, &bp, 2);
	return utcp_siphash(st->key, buf, sizeof(buf));
}

uint32_t
utcp_isn(const struct utcp_stack *st, uint32_t laddr, uint16_t lport,
	uint32_t raddr, uint16_t rport, uint64_t now_us)
{
	return (uint32_t)(now_us / 4) +
		(uint32_t)tuple_hash(st, 'I', laddr, lport, raddr, rport);
}

uint32_t
utcp_ts_offset(const struct utcp_stack *st, uint32_t laddr, uint16_t lport,
	uint32_t raddr, uint16_t rport)
{
	return (uint32_t)tuple_hash(st, 'T', laddr, lport, raddr, rport);
}

/* May a new connection on this tuple replace our TIME_WAIT record? */
static bool
tw_reusable(struct utcp_stack *st, const struct utcp_tw *tw)
{
	uint32_t isn = utcp_isn(st, tw->laddr, tw->lport, tw->raddr, tw->rport, st->now);
	uint32_t ts = (uint32_t)(st->now / 1000) +
		utcp_ts_offset(st, tw->laddr, tw->lport, tw->raddr, tw->rport);

	if (!utcp_seq_gt(isn, tw->snd_nxt))
		return false;
	if (tw->ts_ok && !utcp_seq_gt(ts, tw->ts_last))
		return false;
	return true;
}

int
utcp_port_pick(struct utcp_stack *st, uint32_t saddr, uint32_t daddr,
	uint16_t dport, uint16_t *port)
{
	uint32_t lo = st->conf.port_min, num = st->conf.port_max - lo + 1u;
	uint32_t offset = (uint32_t)tuple_hash(st, 'P', saddr, 0, daddr, dport);
	uint32_t idx = (uint32_t)tuple_hash(st, 'G', saddr, 0, daddr, dport) % UTCP_PORT_TABLE;

	for (uint32_t count = 0; count < num; count++) {
		uint16_t p = (uint16_t)(lo + (offset + st->port_next[idx]) % num);
		struct utcp_tw *tw;

		st->port_next[idx]++;
		if (st->conf.port_ok != NULL &&
		    !st->conf.port_ok(st->conf.ctx, saddr, daddr, p, dport))
			continue;
		if (utcp_conn_lookup(st, saddr, p, daddr, dport) != NULL)
			continue;
		tw = utcp_tw_lookup(st, saddr, p, daddr, dport);
		if (tw != NULL) {
			if (!tw_reusable(st, tw))
				continue;
			utcp_tw_free(st, tw);
			st->cnt.tw_reused++;
		}
		*port = p;
		return 0;
	}
	return -EADDRNOTAVAIL;
}
