/*
 * dp_steer: the Toeplitz hash against the verification vectors of the
 * Microsoft RSS specification (IPv4 with TCP ports), and ownership in
 * software mode (local port modulo workers).
 */
#include <arpa/inet.h>
#include <string.h>

#include <rte_thash.h>

#include "dp_tcp.h"
#include "mp_test.h"

static const uint8_t ms_key[40] = {
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d,
	0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4,
	0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b,
	0xbe, 0xac, 0x01, 0xfa,
};

static uint32_t
ip(const char *s)
{
	struct in_addr a;

	inet_pton(AF_INET, s, &a);
	return ntohl(a.s_addr);
}

int
main(void)
{
	static const struct {
		const char *dst, *src;
		uint16_t dport, sport;
		uint32_t hash;
	} v[] = {
		{ "161.142.100.80", "66.9.149.187", 1766, 2794, 0x51ccc178 },
		{ "65.69.140.83", "199.92.111.2", 4739, 14230, 0xc626b0ea },
		{ "12.22.207.184", "24.19.198.95", 38024, 12898, 0x5c2b394a },
		{ "209.142.163.6", "38.27.205.30", 2217, 48228, 0xafc7327f },
		{ "202.188.127.2", "153.39.163.191", 1303, 44251, 0x10e828a2 },
	};
	struct dp_steer s;
	uint32_t key_be[10];

	rte_convert_rss_key((const uint32_t *)ms_key, key_be, sizeof(ms_key));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		CHECK_EQ(dp_steer_toeplitz(key_be, ip(v[i].src), ip(v[i].dst),
			v[i].sport, v[i].dport), v[i].hash);

	/* RSS mode: owner is the RETA entry of the hash of peer -> us. */
	memset(&s, 0, sizeof(s));
	s.mode = DP_STEER_RSS;
	s.n_workers = 2;
	s.reta_size = 128;
	for (int i = 0; i < 128; i++)
		s.reta[i] = (uint16_t)(i % 2);
	memcpy(s.key_be, key_be, sizeof(key_be));
	CHECK_EQ(dp_steer_owner(&s, ip("161.142.100.80"), 1766, ip("66.9.149.187"), 2794),
		(0x51ccc178u % 128) % 2);
	/* Software mode: local port modulo workers. */
	s.mode = DP_STEER_SOFT;
	s.n_workers = 3;
	CHECK_EQ(dp_steer_owner(&s, 1, 40001, 2, 25), 40001 % 3);
	CHECK_EQ(dp_steer_owner(&s, 1, 40002, 2, 25), 40002 % 3);
	return mp_test_result("dp_steer");
}
