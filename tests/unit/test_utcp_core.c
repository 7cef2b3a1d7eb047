/*
 * Pure pieces of the utcp stack: sequence arithmetic across the wrap,
 * option parsing, SipHash (reference vectors), the RFC 6298 estimator
 * (first sample, smoothing, clamping, backoff), the RFC 6675 scoreboard
 * (merge, IsLost, NextSeg, pipe), the initial window of RFC 6928.
 */
#include <stdint.h>

#include "mp_test.h"
#include "utcp_impl.h"

static void
test_seq_wrap(void)
{
	CHECK(utcp_seq_lt(0xfffffff0u, 0x10u));
	CHECK(utcp_seq_gt(0x10u, 0xfffffff0u));
	CHECK(utcp_seq_le(5, 5));
	CHECK(!utcp_seq_lt(5, 5));
	CHECK(utcp_seq_ge(0x7fffffffu, 0));
	CHECK(utcp_seq_lt(0x80000001u, 0));	/* more than 2^31 ahead is behind */
	CHECK_EQ(utcp_seq_max(0xffffffffu, 3), 3);
	CHECK_EQ(utcp_seq_min(0xffffffffu, 3), 0xffffffffu);
	CHECK(utcp_seq_in(0xfffffffeu, 0xfffffff0u, 0x10u));
	CHECK(utcp_seq_in(0x5u, 0xfffffff0u, 0x10u));
	CHECK(!utcp_seq_in(0x10u, 0xfffffff0u, 0x10u));
	CHECK(!utcp_seq_in(0xffffffefu, 0xfffffff0u, 0x10u));
	CHECK_EQ((uint32_t)(0x5u - 0xfffffff0u), 0x15u);
}

static void
test_opts(void)
{
	const uint8_t syn[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0,
		1, 3, 3, 7 };
	const uint8_t sack[] = { 1, 1, 5, 18, 0, 0, 0, 10, 0, 0, 0, 20,
		0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 5 };
	const uint8_t bad[] = { 2, 4, 0x05 };
	const uint8_t zero_len[] = { 3, 0, 0, 0 };
	struct utcp_opts o;

	CHECK_EQ(utcp_opts_parse(syn, sizeof(syn), &o), 0);
	CHECK(o.has_mss && o.mss == 1460);
	CHECK(o.sack_ok);
	CHECK(o.has_ts && o.tsval == 1 && o.tsecr == 0);
	CHECK(o.has_ws && o.ws == 7);
	CHECK_EQ(utcp_opts_parse(sack, sizeof(sack), &o), 0);
	CHECK_EQ(o.nsack, 2);
	CHECK_EQ(o.sack[0].start, 10);
	CHECK_EQ(o.sack[1].start, 0xfffffff0u);
	CHECK_EQ(o.sack[1].end, 5);
	CHECK(utcp_opts_parse(bad, sizeof(bad), &o) < 0);
	CHECK(utcp_opts_parse(zero_len, sizeof(zero_len), &o) < 0);
}

static void
test_siphash(void)
{
	uint8_t key[16], msg[15];

	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 15; i++)
		msg[i] = (uint8_t)i;
	CHECK(utcp_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
	CHECK(utcp_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
}

static void
test_rtt(void)
{
	struct utcp_rtt r;

	utcp_rtt_init(&r, 1000000, 200000, 60000000);
	CHECK_EQ(r.rto, 1000000);
	/* first sample R: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR */
	utcp_rtt_sample(&r, 100000);
	CHECK_EQ(r.srtt, 100000);
	CHECK_EQ(r.rttvar, 50000);
	CHECK_EQ(r.rto, 300000);
	/* second sample 200 ms: RTTVAR = 3/4*50 + 1/4*100 = 62.5, SRTT = 112.5 */
	utcp_rtt_sample(&r, 200000);
	CHECK_EQ(r.rttvar, 62500);
	CHECK_EQ(r.srtt, 112500);
	CHECK_EQ(r.rto, 112500 + 250000);
	/* steady samples converge, RTO clamped at the minimum */
	for (int i = 0; i < 100; i++)
		utcp_rtt_sample(&r, 10000);
	CHECK(r.srtt >= 10000 && r.srtt < 11000);
	CHECK_EQ(r.rto, 200000);
	/* default RFC 6298 minimum of 1 s */
	utcp_rtt_init(&r, 1000000, 1000000, 60000000);
	utcp_rtt_sample(&r, 5000);
	CHECK_EQ(r.rto, 1000000);
	/* maximum */
	utcp_rtt_init(&r, 1000000, 1000, 2000000);
	utcp_rtt_sample(&r, 1900000);
	CHECK_EQ(r.rto, 2000000);
}

static void
test_backoff(void)
{
	static struct utcp_conn c;

	utcp_rtt_init(&c.rtt, 1000000, 1000000, 60000000);
	c.retries = 0;
	CHECK_EQ(utcp_rto_cur(&c), 1000000);
	c.retries = 1;
	CHECK_EQ(utcp_rto_cur(&c), 2000000);
	c.retries = 5;
	CHECK_EQ(utcp_rto_cur(&c), 32000000);
	c.retries = 6;
	CHECK_EQ(utcp_rto_cur(&c), 60000000);
	c.retries = 60;
	CHECK_EQ(utcp_rto_cur(&c), 60000000);
}

static void
test_scoreboard(void)
{
	struct utcp_scoreboard sb;
	const uint32_t una = 0xfffff000u, mss = 1000;	/* across the wrap */
	struct utcp_sack_block b[4];
	uint32_t seq, len, end;

	utcp_sb_reset(&sb);
	sb.high_rxt = una;
	/* segments 0..9 sent; 1 and 3 and 5 sacked */
	b[0] = (struct utcp_sack_block){ una + 1000, una + 2000 };
	CHECK_EQ(utcp_sb_update(&sb, b, 1, una, una + 10000), 1000);
	CHECK(!utcp_sb_is_lost(&sb, una, mss));
	b[0] = (struct utcp_sack_block){ una + 3000, una + 4000 };
	b[1] = (struct utcp_sack_block){ una + 1000, una + 2000 };	/* repeated */
	CHECK_EQ(utcp_sb_update(&sb, b, 2, una, una + 10000), 1000);
	CHECK_EQ(sb.n, 2);
	CHECK(!utcp_sb_is_lost(&sb, una, mss));	/* 2000 bytes, 2 ranges */
	CHECK(!utcp_sb_next_seg(&sb, una, mss, &seq, &len));
	b[0] = (struct utcp_sack_block){ una + 5000, una + 6000 };
	utcp_sb_update(&sb, b, 1, una, una + 10000);
	CHECK(utcp_sb_is_lost(&sb, una, mss));	/* 3 ranges above */
	CHECK(utcp_sb_is_lost(&sb, una + 2000, mss) == false);	/* 2 above */
	CHECK(utcp_sb_is_sacked(&sb, una + 3500, &end) && end == una + 4000);
	CHECK(!utcp_sb_is_sacked(&sb, una + 2500, NULL));
	CHECK(utcp_sb_next_seg(&sb, una, mss, &seq, &len));
	CHECK_EQ(seq, una);
	CHECK_EQ(len, 1000);
	/* pipe: 10000 out, 3000 sacked, hole 0 lost (not counted) */
	CHECK_EQ(utcp_sb_pipe(&sb, una, una + 10000, mss), 10000 - 3000 - 1000);
	sb.high_rxt = una + 1000;	/* hole 0 resent: counts once again */
	CHECK_EQ(utcp_sb_pipe(&sb, una, una + 10000, mss), 10000 - 3000);
	CHECK(!utcp_sb_next_seg(&sb, una, mss, &seq, &len));
	/* adjacent ranges merge */
	b[0] = (struct utcp_sack_block){ una + 4000, una + 5000 };
	utcp_sb_update(&sb, b, 1, una, una + 10000);
	CHECK_EQ(sb.n, 2);
	CHECK_EQ(sb.blk[1].start, una + 3000);
	CHECK_EQ(sb.blk[1].end, una + 6000);
	CHECK_EQ(sb.sacked, 4000);
	/* bogus blocks (beyond snd_max, inverted) are ignored */
	b[0] = (struct utcp_sack_block){ una + 9000, una + 12000 };
	b[1] = (struct utcp_sack_block){ una + 8000, una + 7000 };
	CHECK_EQ(utcp_sb_update(&sb, b, 2, una, una + 10000), 0);
	/* cumulative ACK past the first range */
	utcp_sb_ack(&sb, una + 3500);
	CHECK_EQ(sb.n, 1);
	CHECK_EQ(sb.blk[0].start, una + 3500);
	CHECK_EQ(sb.sacked, 2500);
	CHECK_EQ(sb.high_rxt, una + 3500);
	CHECK_EQ(utcp_sb_high(&sb), una + 6000);
	/* overflow keeps the lowest ranges */
	utcp_sb_reset(&sb);
	for (uint32_t i = 0; i < UTCP_SACK_BLOCKS + 3; i++) {
		b[0] = (struct utcp_sack_block){ 1000 + 2000 * i, 2000 + 2000 * i };
		utcp_sb_update(&sb, b, 1, 0, 100000);
	}
	CHECK_EQ(sb.n, UTCP_SACK_BLOCKS);
	CHECK_EQ(sb.blk[0].start, 1000);
}

static void
test_iw(void)
{
	CHECK_EQ(utcp_cc_iw(1460), 14600);
	CHECK_EQ(utcp_cc_iw(536), 5360);
	CHECK_EQ(utcp_cc_iw(8960), 17920);
	CHECK_EQ(utcp_cc_iw(1000), 10000);
}

int
main(void)
{
	test_seq_wrap();
	test_opts();
	test_siphash();
	test_rtt();
	test_backoff();
	test_scoreboard();
	test_iw();
	return mp_test_result("test_utcp_core");
}
