/*
 * dp_proto: frames built against byte vectors computed independently,
 * classification of valid frames, and every malformed case dropped with
 * its reason. Frames are copied to heap buffers of their exact length so
 * that the sanitizer build catches any read past the end.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "dp_proto.h"
#include "mp_test.h"

/* 198.18.0.1 (02:00:00:00:00:01) pings 198.18.0.2 (02:00:00:00:00:02). */
static const uint8_t echo_req[50] = {
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x08, 0x00, 0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01,
	0xae, 0xb0, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02, 0x08, 0x00,
	0x19, 0x19, 0x4d, 0x50, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
	0x67, 0x68,
};
static const uint8_t echo_rep[50] = {
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
	0x08, 0x00, 0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01,
	0xae, 0xb0, 0xc6, 0x12, 0x00, 0x02, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00,
	0x21, 0x19, 0x4d, 0x50, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
	0x67, 0x68,
};
static const uint8_t arp_req[42] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00,
	0x00, 0x00, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0xc6, 0x12, 0x00, 0x02,
};
static const uint8_t arp_rep[42] = {
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
	0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00,
	0x00, 0x00, 0x00, 0x02, 0xc6, 0x12, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00,
	0x00, 0x01, 0xc6, 0x12, 0x00, 0x01,
};

/* RFC 791 header checksum example (a UDP datagram, 0xb861). */
static const uint8_t udp_ip_hdr[20] = {
	0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61,
	0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
};

static struct dp_ifaddr ifa;
static const struct rte_ether_addr mac_us = {{2, 0, 0, 0, 0, 2}};
static const struct rte_ether_addr mac_peer = {{2, 0, 0, 0, 0, 1}};
static uint64_t drops[DP_DROP_LAST];

static uint32_t
ip4(const char *s)
{
	struct in_addr a;

	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

/* Classify a copy of exactly len bytes; count drops like the worker. */
static enum dp_pkt_kind
classify(const uint8_t *frame, size_t len, struct dp_pkt_info *info)
{
	uint8_t *copy = malloc(len ? len : 1);
	enum dp_pkt_kind k;

	memcpy(copy, frame, len);
	k = dp_classify(copy, len, &ifa, info);
	if (k == DP_PKT_DROP)
		drops[info->drop]++;
	free(copy);
	return k;
}

/* Expect a drop for the given reason, counted exactly once. */
static void
expect_drop(const uint8_t *frame, size_t len, enum dp_drop why, int line)
{
	struct dp_pkt_info info;
	uint64_t before = drops[why];

	if (classify(frame, len, &info) != DP_PKT_DROP || info.drop != why) {
		fprintf(stderr, "line %d: expected drop %s, got kind %d drop %s\n",
			line, dp_drop_names[why], info.kind, dp_drop_names[info.drop]);
		mp_test_fail++;
		return;
	}
	CHECK_EQ(drops[why], before + 1);
}
#define EXPECT_DROP(f, l, w) expect_drop((f), (l), (w), __LINE__)

static void
fix_ip_cksum(uint8_t *frame)
{
	size_t ihl = (size_t)(frame[14] & 0xf) * 4;
	uint16_t c;

	frame[24] = frame[25] = 0;
	c = (uint16_t)~dp_cksum_fold(frame + 14, ihl, 0);
	frame[24] = (uint8_t)(c >> 8);
	frame[25] = (uint8_t)c;
}

static void
test_builders(void)
{
	uint8_t buf[128];
	size_t n;

	memset(buf, 0, sizeof(buf));
	n = dp_icmp_echo_build(buf, sizeof(buf), ip4("198.18.0.1"), ip4("198.18.0.2"),
		0x4d50, 1, "abcdefgh", 8);
	memcpy(buf, echo_req, 12); /* the builder leaves MACs to the caller */
	CHECK_EQ(n, sizeof(echo_req));
	CHECK_MEMEQ(buf, echo_req, sizeof(echo_req));

	n = dp_arp_build(buf, 1, &mac_peer, ip4("198.18.0.1"), NULL, ip4("198.18.0.2"));
	CHECK_EQ(n, sizeof(arp_req));
	CHECK_MEMEQ(buf, arp_req, sizeof(arp_req));
	n = dp_arp_build(buf, 2, &mac_us, ip4("198.18.0.2"), &mac_peer, ip4("198.18.0.1"));
	CHECK_EQ(n, sizeof(arp_rep));
	CHECK_MEMEQ(buf, arp_rep, sizeof(arp_rep));

	CHECK_EQ(dp_cksum_fold(udp_ip_hdr, sizeof(udp_ip_hdr), 0), 0xffff);
}

static void
test_valid(void)
{
	struct dp_pkt_info info;
	uint8_t frame[64];

	CHECK_EQ(classify(echo_req, sizeof(echo_req), &info), DP_PKT_ICMP_ECHO);
	CHECK_EQ(info.src_ip, ip4("198.18.0.1"));
	CHECK_EQ(info.dst_ip, ip4("198.18.0.2"));
	CHECK_EQ(info.l4_off, 34);
	CHECK_EQ(info.l4_len, 16);
	memcpy(frame, echo_req, sizeof(echo_req));
	dp_icmp_echo_to_reply(frame, &info);
	CHECK_MEMEQ(frame, echo_rep, sizeof(echo_rep));

	CHECK_EQ(classify(arp_req, sizeof(arp_req), &info), DP_PKT_ARP);
	CHECK_EQ(info.arp_op, 1);
	CHECK_EQ(info.src_ip, ip4("198.18.0.1"));
	CHECK_EQ(info.dst_ip, ip4("198.18.0.2"));

	/* Ethernet padding after the datagram is accepted. */
	memset(frame, 0, sizeof(frame));
	memcpy(frame, echo_req, sizeof(echo_req));
	CHECK_EQ(classify(frame, 60, &info), DP_PKT_ICMP_ECHO);
	CHECK_EQ(info.l4_len, 16);

	/* A gratuitous ARP from a neighbour is taken (to refresh a cache entry). */
	memcpy(frame, arp_req, sizeof(arp_req));
	memcpy(frame + 38, frame + 28, 4);
	CHECK_EQ(classify(frame, sizeof(arp_req), &info), DP_PKT_ARP);

	/* Echo reply, destination unreachable with a quoted header, TCP. */
	memcpy(frame, echo_rep, sizeof(echo_rep));
	memcpy(frame, &mac_us, 6);
	memcpy(frame + 26, echo_req + 26, 8);  /* 198.18.0.1 -> .2 again */
	fix_ip_cksum(frame);
	CHECK_EQ(classify(frame, sizeof(echo_rep), &info), DP_PKT_ICMP_REPLY);
}

static void
test_unreach_and_tcp(void)
{
	struct dp_pkt_info info;
	uint8_t f[14 + 20 + 8 + 28];
	uint16_t c;

	memset(f, 0, sizeof(f));
	memcpy(f, echo_req, 14);
	dp_ipv4_build(f + 14, 1, ip4("198.18.0.1"), ip4("198.18.0.2"), 8 + 28, 7, 64);
	f[34] = 3;          /* dest unreachable */
	f[35] = 4;          /* fragmentation needed */
	f[40] = 0x05;       /* next-hop MTU 1280 */
	f[41] = 0x00;
	dp_ipv4_build(f + 42, 6, ip4("198.18.0.2"), ip4("198.18.0.9"), 8, 1, 64);
	c = (uint16_t)~dp_cksum_fold(f + 34, 36, 0);
	f[36] = (uint8_t)(c >> 8);
	f[37] = (uint8_t)c;
	CHECK_EQ(classify(f, sizeof(f), &info), DP_PKT_ICMP_UNREACH);
	CHECK_EQ(info.icmp_code, 4);
	CHECK_EQ(info.icmp_mtu, 1280);
	CHECK_EQ(info.quoted_off, 42);
	CHECK_EQ(info.quoted_len, 28);
	/* Too short to quote IP + 8 bytes of TCP: only the IP header. */
	memset(f + 14, 0, sizeof(f) - 14);
	dp_ipv4_build(f + 14, 1, ip4("198.18.0.1"), ip4("198.18.0.2"), 8 + 20, 8, 64);
	f[34] = 3;
	dp_ipv4_build(f + 42, 6, ip4("198.18.0.2"), ip4("198.18.0.9"), 8, 1, 64);
	c = (uint16_t)~dp_cksum_fold(f + 34, 28, 0);
	f[36] = (uint8_t)(c >> 8);
	f[37] = (uint8_t)c;
	EXPECT_DROP(f, 14 + 20 + 28, DP_DROP_ICMP_TRUNC);

	/* TCP: 20-byte header passes up, shorter is dropped. */
	memset(f, 0, sizeof(f));
	memcpy(f, echo_req, 14);
	dp_ipv4_build(f + 14, 6, ip4("198.18.0.1"), ip4("198.18.0.2"), 20, 2, 64);
	CHECK_EQ(classify(f, 54, &info), DP_PKT_TCP);
	CHECK_EQ(info.l4_len, 20);
	dp_ipv4_build(f + 14, 6, ip4("198.18.0.1"), ip4("198.18.0.2"), 12, 2, 64);
	EXPECT_DROP(f, 46, DP_DROP_TCP_TRUNC);
}

static void
test_malformed(void)
{
	uint8_t f[64];

	/* Every truncation of a valid echo request is dropped, never over-read. */
	for (size_t len = 0; len < sizeof(echo_req); len++) {
		struct dp_pkt_info info;

		CHECK_EQ(classify(echo_req, len, &info), DP_PKT_DROP);
	}
	EXPECT_DROP(echo_req, 0, DP_DROP_ETH_TRUNC);
	EXPECT_DROP(echo_req, 13, DP_DROP_ETH_TRUNC);
	EXPECT_DROP(echo_req, 14 + 19, DP_DROP_IP_TRUNC);
	EXPECT_DROP(echo_req, 14 + 20 + 3, DP_DROP_IP_LEN);
	for (size_t len = 0; len < sizeof(arp_req); len++) {
		struct dp_pkt_info info;

		CHECK_EQ(classify(arp_req, len, &info), DP_PKT_DROP);
	}
	EXPECT_DROP(arp_req, 41, DP_DROP_ARP_MALFORMED);

#define MUTATE(off, val, why) do { \
		memcpy(f, echo_req, sizeof(echo_req)); \
		f[off] = (val); \
		EXPECT_DROP(f, sizeof(echo_req), why); \
	} while (0)
#define MUTATE_FIX(off, val, why) do { \
		memcpy(f, echo_req, sizeof(echo_req)); \
		f[off] = (val); \
		fix_ip_cksum(f); \
		EXPECT_DROP(f, sizeof(echo_req), why); \
	} while (0)
	MUTATE(0, 0x04, DP_DROP_ETH_DST);          /* another unicast MAC */
	MUTATE(12, 0x86, DP_DROP_ETHERTYPE);       /* 0x86dd IPv6 */
	MUTATE(14, 0x65, DP_DROP_IP_VERSION);
	MUTATE(14, 0x44, DP_DROP_IP_IHL);          /* IHL 4 */
	MUTATE(14, 0x4f, DP_DROP_IP_IHL);          /* IHL 15 > frame */
	MUTATE(24, 0x00, DP_DROP_IP_CSUM);
	MUTATE(31, 0x05, DP_DROP_IP_CSUM);         /* changed byte, old checksum */
	MUTATE_FIX(17, 0x40, DP_DROP_IP_LEN);      /* total length > frame */
	MUTATE_FIX(17, 0x10, DP_DROP_IP_LEN);      /* total length < IHL */
	MUTATE_FIX(20, 0x20, DP_DROP_IP_FRAG);     /* MF */
	MUTATE_FIX(21, 0x08, DP_DROP_IP_FRAG);     /* offset 8 */
	MUTATE_FIX(22, 0x00, DP_DROP_IP_TTL);
	MUTATE_FIX(23, 17, DP_DROP_IP_PROTO);      /* UDP */
	MUTATE_FIX(33, 0x03, DP_DROP_IP_DST);      /* 198.18.0.3 */
	MUTATE_FIX(26, 0xe0, DP_DROP_IP_SRC);      /* multicast source */
	MUTATE(36, 0x00, DP_DROP_ICMP_CSUM);
	MUTATE(34, 0x0d, DP_DROP_ICMP_CSUM);       /* type changed, checksum not */

	/* Broadcast source, our own address as source, short ICMP. */
	memcpy(f, echo_req, sizeof(echo_req));
	memset(f + 26, 0xff, 4);
	fix_ip_cksum(f);
	EXPECT_DROP(f, sizeof(echo_req), DP_DROP_IP_SRC);
	memcpy(f, echo_req, sizeof(echo_req));
	memcpy(f + 26, f + 30, 4);
	fix_ip_cksum(f);
	EXPECT_DROP(f, sizeof(echo_req), DP_DROP_IP_SRC);
	memcpy(f, echo_req, sizeof(echo_req));
	f[17] = 20 + 4;
	fix_ip_cksum(f);
	EXPECT_DROP(f, sizeof(echo_req), DP_DROP_ICMP_TRUNC);
	/* An ICMP type we neither answer nor pass up (timestamp, 13). */
	{
		uint16_t c;

		memcpy(f, echo_req, sizeof(echo_req));
		f[34] = 13;
		f[36] = f[37] = 0;
		c = (uint16_t)~dp_cksum_fold(f + 34, 16, 0);
		f[36] = (uint8_t)(c >> 8);
		f[37] = (uint8_t)c;
		EXPECT_DROP(f, sizeof(echo_req), DP_DROP_ICMP_TYPE);
	}

	/* ARP: wrong hardware length, opcode, protocol, not about us. */
#define MUTATE_ARP(off, val, why) do { \
		memcpy(f, arp_req, sizeof(arp_req)); \
		f[off] = (val); \
		EXPECT_DROP(f, sizeof(arp_req), why); \
	} while (0)
	MUTATE_ARP(18, 8, DP_DROP_ARP_MALFORMED);  /* hlen */
	MUTATE_ARP(21, 9, DP_DROP_ARP_MALFORMED);  /* opcode */
	MUTATE_ARP(16, 0x86, DP_DROP_ARP_MALFORMED); /* protocol */
	MUTATE_ARP(22, 0x01, DP_DROP_ARP_MALFORMED); /* multicast sender MAC */
	MUTATE_ARP(41, 0x07, DP_DROP_ARP_OTHER);   /* who-has 198.18.0.7 */
}

int
main(void)
{
	memset(&ifa, 0, sizeof(ifa));
	ifa.mac = mac_us;
	ifa.ip[0] = ip4("198.18.0.2");
	ifa.n_ip = 1;
	ifa.prefixlen = 24;
	ifa.gw = ip4("198.18.0.1");

	test_builders();
	test_valid();
	test_unreach_and_tcp();
	test_malformed();

	CHECK_EQ(dp_ifaddr_next_hop(&ifa, ip4("198.18.0.77")), ip4("198.18.0.77"));
	CHECK_EQ(dp_ifaddr_next_hop(&ifa, ip4("203.0.113.5")), ip4("198.18.0.1"));
	ifa.gw = 0;
	CHECK_EQ(dp_ifaddr_next_hop(&ifa, ip4("203.0.113.5")), 0);
	return mp_test_result("dp_proto");
}
