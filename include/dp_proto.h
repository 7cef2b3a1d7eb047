/*
 * Ethernet, ARP, IPv4 and ICMP on flat byte buffers: validation of what
 * arrives and building of what we send. No EAL and no mbufs here, so the
 * unit tests drive every case with byte vectors; the worker calls these on
 * the first (only) segment of an mbuf.
 *
 * Call order on receive: dp_classify() validates the frame for our
 * interface and says what it is (or why it is dropped); the caller then
 * hands ARP to the neighbour cache, answers ICMP echo with
 * dp_icmp_echo_to_reply(), and passes TCP up.
 */
#ifndef DP_PROTO_H
#define DP_PROTO_H

#include <stdint.h>
#include <stddef.h>

#include <rte_ether.h>

#define DP_MAX_IPS 16

/* Reasons a received frame is dropped. Keep dp_drop_names in sync. */
enum dp_drop {
	DP_DROP_ETH_TRUNC,      /* shorter than an Ethernet header */
	DP_DROP_ETH_DST,        /* unicast to another MAC */
	DP_DROP_ETHERTYPE,      /* neither ARP nor IPv4 */
	DP_DROP_ARP_MALFORMED,  /* truncated, not Ethernet/IPv4, bad opcode */
	DP_DROP_ARP_OTHER,      /* ARP not about us */
	DP_DROP_IP_TRUNC,       /* shorter than 20 bytes */
	DP_DROP_IP_VERSION,     /* not 4 */
	DP_DROP_IP_IHL,         /* IHL < 5 or past the frame */
	DP_DROP_IP_LEN,         /* total length < IHL or past the frame */
	DP_DROP_IP_CSUM,        /* header checksum */
	DP_DROP_IP_FRAG,        /* fragment: a client never needs them */
	DP_DROP_IP_TTL,         /* TTL 0 */
	DP_DROP_IP_SRC,         /* broadcast, multicast or our own source */
	DP_DROP_IP_DST,         /* not one of our addresses */
	DP_DROP_IP_PROTO,       /* neither ICMP nor TCP */
	DP_DROP_ICMP_TRUNC,     /* shorter than an ICMP header */
	DP_DROP_ICMP_CSUM,      /* ICMP checksum */
	DP_DROP_ICMP_TYPE,      /* a type we neither answer nor pass up */
	DP_DROP_TCP_TRUNC,      /* shorter than a TCP header */
	DP_DROP_TCP_HDR,        /* data offset < 5 or past the segment */
	DP_DROP_TCP_CSUM,       /* TCP checksum */
	DP_DROP_ICMP_QUOTE,     /* quoted packet not a TCP segment of ours */
	DP_DROP_NO_HANDLER,     /* TCP or ICMP error with nobody to take it */
	DP_DROP_NO_MBUF,        /* pool empty when building a reply */
	DP_DROP_TX_FULL,        /* NIC queue refused the packet */
	DP_DROP_ARP_QUEUE,      /* pending queue of an unresolved neighbour full */
	DP_DROP_ARP_FAILED,     /* neighbour did not answer */
	DP_DROP_NO_ROUTE,       /* off-subnet and no gateway */
	DP_DROP_REDIRECT_FULL,  /* ring to the owning worker full */
	DP_DROP_LAST
};

extern const char *const dp_drop_names[DP_DROP_LAST];

/* What dp_classify() found. */
enum dp_pkt_kind {
	DP_PKT_DROP = 0,
	DP_PKT_ARP,
	DP_PKT_ICMP_ECHO,       /* echo request to us */
	DP_PKT_ICMP_REPLY,      /* echo reply to us */
	DP_PKT_ICMP_UNREACH,    /* destination unreachable: pass up */
	DP_PKT_TCP,
	DP_PKT_LAST
};

/* Our side of a port: MAC, addresses, one prefix length, gateway. */
struct dp_ifaddr {
	struct rte_ether_addr mac;
	uint32_t ip[DP_MAX_IPS];        /* network order */
	unsigned int n_ip;
	uint8_t prefixlen;
	uint32_t gw;                    /* network order, 0 = none */
};

/* Offsets and fields of a classified frame. */
struct dp_pkt_info {
	enum dp_pkt_kind kind;
	enum dp_drop drop;              /* valid when kind == DP_PKT_DROP */
	uint16_t l3_off;                /* start of ARP or IPv4 header */
	uint16_t l4_off;                /* start of ICMP or TCP header */
	uint16_t l4_len;                /* bytes from l4_off to IP total length */
	uint32_t src_ip, dst_ip;        /* network order */
	/* DP_PKT_ARP */
	uint16_t arp_op;
	/* DP_PKT_ICMP_UNREACH: code, next-hop MTU and the quoted header */
	uint8_t icmp_code;
	uint16_t icmp_mtu;
	uint16_t quoted_off;            /* quoted IPv4 header inside the ICMP */
	uint16_t quoted_len;
};

/**
 * Validate a received frame for our interface and say what it is.
 * Never reads past len.
 * @param frame  first byte of the Ethernet header
 * @param len    bytes available
 * @param ifa    our MAC and addresses
 * @param info   filled; info->drop says why when the result is DP_PKT_DROP
 * @return the kind, DP_PKT_DROP for anything to discard
 */
enum dp_pkt_kind dp_classify(const uint8_t *frame, size_t len,
	const struct dp_ifaddr *ifa, struct dp_pkt_info *info);

/** @return 1 when ip (network order) is one of ours. */
int dp_ifaddr_is_local(const struct dp_ifaddr *ifa, uint32_t ip);
/** @return the next hop for dst (dst itself on-subnet, else the gateway, 0 = no route). */
uint32_t dp_ifaddr_next_hop(const struct dp_ifaddr *ifa, uint32_t dst);

/**
 * Build an ARP frame (request or reply) of exactly DP_ARP_FRAME_LEN bytes.
 * A request goes to broadcast with a zero target MAC unless tha is given.
 * @return bytes written
 */
#define DP_ARP_FRAME_LEN (RTE_ETHER_HDR_LEN + (int)sizeof(struct rte_arp_hdr))
size_t dp_arp_build(uint8_t *buf, uint16_t op,
	const struct rte_ether_addr *sha, uint32_t sip,
	const struct rte_ether_addr *tha, uint32_t tip);

/**
 * Turn a validated echo request (frame of len bytes, info from
 * dp_classify) into the echo reply in place: addresses swapped, type 0,
 * checksums updated. The Ethernet destination is left for the caller to
 * fill from the neighbour cache.
 */
void dp_icmp_echo_to_reply(uint8_t *frame, const struct dp_pkt_info *info);

/**
 * Write an IPv4 header (no options, DF set, checksum computed).
 * @return 20
 */
size_t dp_ipv4_build(uint8_t *buf, uint8_t proto, uint32_t src, uint32_t dst,
	uint16_t payload_len, uint16_t id, uint8_t ttl);

/**
 * Build an ICMP echo request (IPv4 header + ICMP, payload bytes copied)
 * after a 14-byte Ethernet header whose addresses the caller sets.
 * @return frame length
 */
size_t dp_icmp_echo_build(uint8_t *buf, size_t cap, uint32_t src, uint32_t dst,
	uint16_t ident, uint16_t seq, const void *payload, size_t plen);

/** Internet checksum of len bytes (folded, not inverted). */
uint16_t dp_cksum_fold(const void *buf, size_t len, uint32_t sum);

#endif
