/*
 * Per-lcore IPv4 neighbour cache. Fixed capacity, allocated by the caller
 * once; no allocation afterwards. Packets waiting for a resolution are
 * opaque pointers (mbufs in the worker, anything in tests) held in a small
 * bounded queue per entry.
 *
 * Call order: dp_arp_resolve() on every packet to send (hit: MAC now;
 * miss: the packet is queued and a request goes out through the ops);
 * dp_arp_input() for every ARP frame about us; dp_arp_tick() periodically
 * for retries, expiry and refresh.
 *
 * Entry states: INCOMPLETE (requests outstanding, packets queued),
 * REACHABLE (confirmed within reachable_us), STALE (usable, one refresh
 * request sent, becomes FAILED if unanswered), FAILED (recently
 * unresolvable; new packets to it are dropped until hold_us passes).
 */
#ifndef DP_ARP_H
#define DP_ARP_H

#include <stdint.h>

#include <rte_ether.h>

#define DP_ARP_PENDING_MAX 64

enum dp_arp_state {
	DP_ARP_FREE = 0,
	DP_ARP_INCOMPLETE,
	DP_ARP_REACHABLE,
	DP_ARP_STALE,
	DP_ARP_FAILED,
	DP_ARP_LAST
};

extern const char *const dp_arp_state_names[DP_ARP_LAST];

/* What the cache needs from its owner. */
struct dp_arp_ops {
	/** Send an ARP request for ip (network order); unicast to mac when given. */
	void (*send_request)(void *ctx, uint32_t ip, const struct rte_ether_addr *mac);
	/** A queued packet's neighbour resolved: send it to mac. */
	void (*send_pending)(void *ctx, void *pkt, const struct rte_ether_addr *mac);
	/** A queued packet is dropped (resolution failed or entry evicted). */
	void (*drop_pending)(void *ctx, void *pkt);
};

struct dp_arp_conf {
	uint32_t capacity;              /* power of two */
	uint64_t retry_us;              /* between requests while INCOMPLETE */
	uint32_t max_retries;           /* requests before FAILED */
	uint64_t reachable_us;          /* REACHABLE lifetime before STALE */
	uint64_t stale_us;              /* STALE lifetime without an answer */
	uint64_t hold_us;               /* FAILED lifetime */
};

struct dp_arp_entry {
	uint32_t ip;
	uint8_t state;
	uint8_t retries;
	uint8_t n_pending;
	struct rte_ether_addr mac;
	uint64_t expires;               /* next retry or state change */
	uint64_t used;                  /* last use, for eviction */
	void *pending[DP_ARP_PENDING_MAX];
};

struct dp_arp_stats {
	uint64_t hits, misses, requests_sent, replies_sent, learned;
	uint64_t resolved, failed, evicted, queue_full, pending_dropped;
};

struct dp_arp_table {
	struct dp_arp_conf conf;
	struct dp_arp_ops ops;
	void *ctx;
	struct dp_arp_stats stats;
	uint32_t mask;
	struct dp_arp_entry *e;         /* capacity entries, caller-provided */
};

/** Bytes of entry storage dp_arp_init() needs for conf->capacity. */
size_t dp_arp_mem_size(const struct dp_arp_conf *conf);

/**
 * @param mem  dp_arp_mem_size() bytes, zeroed
 * @return 0, or -EINVAL when capacity is not a power of two or is zero
 */
int dp_arp_init(struct dp_arp_table *t, const struct dp_arp_conf *conf,
	const struct dp_arp_ops *ops, void *ctx, void *mem);

/**
 * Find the MAC for next hop ip or queue pkt until it is known.
 * @return 0 with *mac set (pkt is the caller's to send), 1 when pkt was
 *   queued (the cache owns it now), -ENOBUFS when the queue is full,
 *   -EHOSTUNREACH when the neighbour recently failed, -ENOSPC when no
 *   entry can be had (pkt stays the caller's in every negative case)
 */
int dp_arp_resolve(struct dp_arp_table *t, uint32_t ip, void *pkt,
	uint64_t now, struct rte_ether_addr *mac);

/**
 * Take in a sender's ip/mac from an ARP frame. When the frame was about
 * us (target_is_us) the sender is created or refreshed (RFC 826 merge);
 * otherwise only an existing entry is updated. Pending packets go out.
 */
void dp_arp_learn(struct dp_arp_table *t, uint32_t ip,
	const struct rte_ether_addr *mac, int target_is_us, uint64_t now);

/** Retries, expiry and refreshes due at now. */
void dp_arp_tick(struct dp_arp_table *t, uint64_t now);

/** @return the entry for ip or NULL (for stats and tests). */
const struct dp_arp_entry *dp_arp_lookup(const struct dp_arp_table *t, uint32_t ip);

/** Drop every queued packet (shutdown). */
void dp_arp_flush(struct dp_arp_table *t);

#endif
