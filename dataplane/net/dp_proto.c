/*
 * Frame validation and building for Ethernet, ARP, IPv4 and ICMP.
 * dp_classify() is the single entry for received frames: each check names
 * the drop reason it stands for, and no check reads a byte before it has
 * established that the byte is inside the frame. Builders write headers
 * the worker sends (ARP, echo requests/replies).
 */
#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_icmp.h>
#include <rte_ip.h>

#include "dp_proto.h"

const char *const dp_drop_names[DP_DROP_LAST] = {
	[DP_DROP_ETH_TRUNC] = "eth_trunc",
	[DP_DROP_ETH_DST] = "eth_dst",
	[DP_DROP_ETHERTYPE] = "ethertype",
	[DP_DROP_ARP_MALFORMED] = "arp_malformed",
	[DP_DROP_ARP_OTHER] = "arp_other",
	[DP_DROP_IP_TRUNC] = "ip_trunc",
	[DP_DROP_IP_VERSION] = "ip_version",
	[DP_DROP_IP_IHL] = "ip_ihl",
	[DP_DROP_IP_LEN] = "ip_len",
	[DP_DROP_IP_CSUM] = "ip_csum",
	[DP_DROP_IP_FRAG] = "ip_frag",
	[DP_DROP_IP_TTL] = "ip_ttl",
	[DP_DROP_IP_SRC] = "ip_src",
	[DP_DROP_IP_DST] = "ip_dst",
	[DP_DROP_IP_PROTO] = "ip_proto",
	[DP_DROP_ICMP_TRUNC] = "icmp_trunc",
	[DP_DROP_ICMP_CSUM] = "icmp_csum",
	[DP_DROP_ICMP_TYPE] = "icmp_type",
	[DP_DROP_TCP_TRUNC] = "tcp_trunc",
	[DP_DROP_TCP_HDR] = "tcp_hdr",
	[DP_DROP_TCP_CSUM] = "tcp_csum",
	[DP_DROP_ICMP_QUOTE] = "icmp_quote",
	[DP_DROP_NO_HANDLER] = "no_handler",
	[DP_DROP_NO_MBUF] = "no_mbuf",
	[DP_DROP_TX_FULL] = "tx_full",
	[DP_DROP_ARP_QUEUE] = "arp_queue",
	[DP_DROP_ARP_FAILED] = "arp_failed",
	[DP_DROP_NO_ROUTE] = "no_route",
	[DP_DROP_REDIRECT_FULL] = "redirect_full",
};

uint16_t
dp_cksum_fold(const void *buf, size_t len, uint32_t sum)
{
	const uint8_t *p = buf;

	while (len >= 2) {
		sum += (uint32_t)p[0] << 8 | p[1];
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* Checksum field value (network order) for the bytes given with a zero field. */
static uint16_t
cksum_field(const void *buf, size_t len)
{
	return rte_cpu_to_be_16((uint16_t)~dp_cksum_fold(buf, len, 0));
}

int
dp_ifaddr_is_local(const struct dp_ifaddr *ifa, uint32_t ip)
{
	for (unsigned int i = 0; i < ifa->n_ip; i++)
		if (ifa->ip[i] == ip)
			return 1;
	return 0;
}

static uint32_t
prefix_mask(uint8_t prefixlen)
{
	return prefixlen == 0 ? 0 :
		rte_cpu_to_be_32(~(uint32_t)0 << (32 - prefixlen));
}

uint32_t
dp_ifaddr_next_hop(const struct dp_ifaddr *ifa, uint32_t dst)
{
	uint32_t mask = prefix_mask(ifa->prefixlen);

	if (ifa->n_ip > 0 && (dst & mask) == (ifa->ip[0] & mask))
		return dst;
	return ifa->gw;
}

static int
ip_src_invalid(const struct dp_ifaddr *ifa, uint32_t src)
{
	uint32_t h = rte_be_to_cpu_32(src);

	return h == 0 || h == 0xffffffff || (h >> 28) == 0xe ||
		(h >> 24) == 127 || dp_ifaddr_is_local(ifa, src);
}

static enum dp_pkt_kind
drop(struct dp_pkt_info *info, enum dp_drop why)
{
	info->kind = DP_PKT_DROP;
	info->drop = why;
	return DP_PKT_DROP;
}

static enum dp_pkt_kind
classify_arp(const uint8_t *frame, size_t len, const struct dp_ifaddr *ifa,
	struct dp_pkt_info *info)
{
	const struct rte_arp_hdr *arp;
	uint16_t op;

	if (len < (size_t)DP_ARP_FRAME_LEN)
		return drop(info, DP_DROP_ARP_MALFORMED);
	arp = (const struct rte_arp_hdr *)(frame + RTE_ETHER_HDR_LEN);
	op = rte_be_to_cpu_16(arp->arp_opcode);
	if (arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
	    arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
	    arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != 4 ||
	    (op != RTE_ARP_OP_REQUEST && op != RTE_ARP_OP_REPLY))
		return drop(info, DP_DROP_ARP_MALFORMED);
	if (rte_is_multicast_ether_addr(&arp->arp_data.arp_sha) ||
	    ip_src_invalid(ifa, arp->arp_data.arp_sip))
		return drop(info, DP_DROP_ARP_MALFORMED);
	info->arp_op = op;
	info->l3_off = RTE_ETHER_HDR_LEN;
	info->src_ip = arp->arp_data.arp_sip;
	info->dst_ip = arp->arp_data.arp_tip;
	/* About us, or a gratuitous announcement that may refresh an entry. */
	if (!dp_ifaddr_is_local(ifa, info->dst_ip) && info->src_ip != info->dst_ip)
		return drop(info, DP_DROP_ARP_OTHER);
	info->kind = DP_PKT_ARP;
	return DP_PKT_ARP;
}

static enum dp_pkt_kind
classify_icmp(const uint8_t *frame, struct dp_pkt_info *info)
{
	const struct rte_icmp_hdr *icmp;

	if (info->l4_len < sizeof(struct rte_icmp_hdr))
		return drop(info, DP_DROP_ICMP_TRUNC);
	if (dp_cksum_fold(frame + info->l4_off, info->l4_len, 0) != 0xffff)
		return drop(info, DP_DROP_ICMP_CSUM);
	icmp = (const struct rte_icmp_hdr *)(frame + info->l4_off);
	switch (icmp->icmp_type) {
	case RTE_IP_ICMP_ECHO_REQUEST:
		info->kind = DP_PKT_ICMP_ECHO;
		return info->kind;
	case RTE_IP_ICMP_ECHO_REPLY:
		info->kind = DP_PKT_ICMP_REPLY;
		return info->kind;
	case 3: /* destination unreachable */
		/* The quoted IPv4 header and 8 bytes of TCP are what the
		 * layer above needs to find the connection. */
		if (info->l4_len < 8 + 20 + 8)
			return drop(info, DP_DROP_ICMP_TRUNC);
		info->icmp_code = icmp->icmp_code;
		info->icmp_mtu = (uint16_t)(frame[info->l4_off + 6] << 8 |
			frame[info->l4_off + 7]);
		info->quoted_off = info->l4_off + 8;
		info->quoted_len = info->l4_len - 8;
		info->kind = DP_PKT_ICMP_UNREACH;
		return info->kind;
	default:
		return drop(info, DP_DROP_ICMP_TYPE);
	}
}

static enum dp_pkt_kind
classify_ipv4(const uint8_t *frame, size_t len, const struct dp_ifaddr *ifa,
	struct dp_pkt_info *info)
{
	const struct rte_ipv4_hdr *ip;
	size_t avail = len - RTE_ETHER_HDR_LEN;
	size_t ihl, tot;

	if (avail < sizeof(struct rte_ipv4_hdr))
		return drop(info, DP_DROP_IP_TRUNC);
	ip = (const struct rte_ipv4_hdr *)(frame + RTE_ETHER_HDR_LEN);
	if ((ip->version_ihl >> 4) != 4)
		return drop(info, DP_DROP_IP_VERSION);
	ihl = (size_t)(ip->version_ihl & 0xf) * 4;
	if (ihl < sizeof(struct rte_ipv4_hdr) || ihl > avail)
		return drop(info, DP_DROP_IP_IHL);
	tot = rte_be_to_cpu_16(ip->total_length);
	if (tot < ihl || tot > avail)
		return drop(info, DP_DROP_IP_LEN);
	if (dp_cksum_fold(ip, ihl, 0) != 0xffff)
		return drop(info, DP_DROP_IP_CSUM);
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG |
	    RTE_IPV4_HDR_OFFSET_MASK))
		return drop(info, DP_DROP_IP_FRAG);
	if (ip->time_to_live == 0)
		return drop(info, DP_DROP_IP_TTL);
	info->src_ip = ip->src_addr;
	info->dst_ip = ip->dst_addr;
	if (!dp_ifaddr_is_local(ifa, info->dst_ip))
		return drop(info, DP_DROP_IP_DST);
	if (ip_src_invalid(ifa, info->src_ip))
		return drop(info, DP_DROP_IP_SRC);
	info->l3_off = RTE_ETHER_HDR_LEN;
	info->l4_off = (uint16_t)(RTE_ETHER_HDR_LEN + ihl);
	info->l4_len = (uint16_t)(tot - ihl);
	switch (ip->next_proto_id) {
	case IPPROTO_ICMP:
		return classify_icmp(frame, info);
	case IPPROTO_TCP:
		if (info->l4_len < 20)
			return drop(info, DP_DROP_TCP_TRUNC);
		info->kind = DP_PKT_TCP;
		return info->kind;
	default:
		return drop(info, DP_DROP_IP_PROTO);
	}
}

enum dp_pkt_kind
dp_classify(const uint8_t *frame, size_t len, const struct dp_ifaddr *ifa,
	struct dp_pkt_info *info)
{
	const struct rte_ether_hdr *eth;

	memset(info, 0, sizeof(*info));
	if (len < RTE_ETHER_HDR_LEN)
		return drop(info, DP_DROP_ETH_TRUNC);
	eth = (const struct rte_ether_hdr *)frame;
	if (!rte_is_same_ether_addr(&eth->dst_addr, &ifa->mac) &&
	    !rte_is_broadcast_ether_addr(&eth->dst_addr))
		return drop(info, DP_DROP_ETH_DST);
	switch (rte_be_to_cpu_16(eth->ether_type)) {
	case RTE_ETHER_TYPE_ARP:
		return classify_arp(frame, len, ifa, info);
	case RTE_ETHER_TYPE_IPV4:
		if (!rte_is_same_ether_addr(&eth->dst_addr, &ifa->mac))
			return drop(info, DP_DROP_ETH_DST);
		return classify_ipv4(frame, len, ifa, info);
	default:
		return drop(info, DP_DROP_ETHERTYPE);
	}
}

size_t
dp_arp_build(uint8_t *buf, uint16_t op, const struct rte_ether_addr *sha,
	uint32_t sip, const struct rte_ether_addr *tha, uint32_t tip)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)buf;
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(buf + RTE_ETHER_HDR_LEN);
	static const struct rte_ether_addr zero;

	if (tha != NULL)
		rte_ether_addr_copy(tha, &eth->dst_addr);
	else
		memset(&eth->dst_addr, 0xff, RTE_ETHER_ADDR_LEN);
	rte_ether_addr_copy(sha, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	arp->arp_hlen = RTE_ETHER_ADDR_LEN;
	arp->arp_plen = 4;
	arp->arp_opcode = rte_cpu_to_be_16(op);
	rte_ether_addr_copy(sha, &arp->arp_data.arp_sha);
	arp->arp_data.arp_sip = sip;
	rte_ether_addr_copy(tha != NULL ? tha : &zero, &arp->arp_data.arp_tha);
	arp->arp_data.arp_tip = tip;
	return DP_ARP_FRAME_LEN;
}

size_t
dp_ipv4_build(uint8_t *buf, uint8_t proto, uint32_t src, uint32_t dst,
	uint16_t payload_len, uint16_t id, uint8_t ttl)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)buf;

	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(payload_len + 20));
	ip->packet_id = rte_cpu_to_be_16(id);
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = ttl;
	ip->next_proto_id = proto;
	ip->hdr_checksum = 0;
	ip->src_addr = src;
	ip->dst_addr = dst;
	ip->hdr_checksum = cksum_field(ip, 20);
	return 20;
}

void
dp_icmp_echo_to_reply(uint8_t *frame, const struct dp_pkt_info *info)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(frame + info->l3_off);
	struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)(frame + info->l4_off);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)frame;
	size_t ihl = (size_t)(ip->version_ihl & 0xf) * 4;

	rte_ether_addr_copy(&eth->dst_addr, &eth->src_addr);
	ip->dst_addr = info->src_ip;
	ip->src_addr = info->dst_ip;
	ip->time_to_live = 64;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = cksum_field(ip, ihl);
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	icmp->icmp_code = 0;
	icmp->icmp_cksum = 0;
	icmp->icmp_cksum = cksum_field(icmp, info->l4_len);
}

size_t
dp_icmp_echo_build(uint8_t *buf, size_t cap, uint32_t src, uint32_t dst,
	uint16_t ident, uint16_t seq, const void *payload, size_t plen)
{
	size_t icmp_len = sizeof(struct rte_icmp_hdr) + plen;
	struct rte_icmp_hdr *icmp;
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)buf;

	if (cap < RTE_ETHER_HDR_LEN + 20 + icmp_len || icmp_len > 1480)
		return 0;
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	dp_ipv4_build(buf + RTE_ETHER_HDR_LEN, IPPROTO_ICMP, src, dst,
		(uint16_t)icmp_len, seq, 64);
	icmp = (struct rte_icmp_hdr *)(buf + RTE_ETHER_HDR_LEN + 20);
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REQUEST;
	icmp->icmp_code = 0;
	icmp->icmp_cksum = 0;
	icmp->icmp_ident = rte_cpu_to_be_16(ident);
	icmp->icmp_seq_nb = rte_cpu_to_be_16(seq);
	if (plen)
		memcpy(icmp + 1, payload, plen);
	icmp->icmp_cksum = cksum_field(icmp, icmp_len);
	return RTE_ETHER_HDR_LEN + 20 + icmp_len;
}
