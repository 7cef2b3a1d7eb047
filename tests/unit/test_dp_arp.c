/*
 * dp_arp: the neighbour cache against a recording owner and a virtual
 * clock: miss queues and requests, answer flushes in order, retries then
 * failure drop the queue, the queue bound holds, FAILED holds down, idle
 * entries expire, used entries are refreshed by unicast, and a full probe
 * window evicts the least recently used entry that holds no packets.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "dp_arp.h"
#include "mp_test.h"

struct owner {
	int requests, unicast_requests, sent, dropped;
	uintptr_t last_sent;
	uint32_t last_req_ip;
};

static void
o_request(void *ctx, uint32_t ip, const struct rte_ether_addr *mac)
{
	struct owner *o = ctx;

	o->requests++;
	o->unicast_requests += mac != NULL;
	o->last_req_ip = ip;
}

static void
o_send(void *ctx, void *pkt, const struct rte_ether_addr *mac)
{
	struct owner *o = ctx;

	(void)mac;
	/* Packets must come out in the order they were queued. */
	if ((uintptr_t)pkt != o->last_sent + 1)
		mp_test_fail++;
	o->last_sent = (uintptr_t)pkt;
	o->sent++;
}

static void
o_drop(void *ctx, void *pkt)
{
	struct owner *o = ctx;

	(void)pkt;
	o->dropped++;
}

static const struct dp_arp_ops ops = { o_request, o_send, o_drop };
static const struct dp_arp_conf conf = {
	.capacity = 64, .retry_us = 1000, .max_retries = 3,
	.reachable_us = 30000, .stale_us = 5000, .hold_us = 2000,
};
static const struct rte_ether_addr mac1 = {{2, 0, 0, 0, 0, 1}};

static void
setup(struct dp_arp_table *t, struct owner *o, void **mem)
{
	memset(o, 0, sizeof(*o));
	*mem = calloc(1, dp_arp_mem_size(&conf));
	CHECK_EQ(dp_arp_init(t, &conf, &ops, o, *mem), 0);
}

static void
test_resolve_and_flush(void)
{
	struct dp_arp_table t;
	struct owner o;
	struct rte_ether_addr mac;
	void *mem;

	setup(&t, &o, &mem);
	CHECK_EQ(dp_arp_resolve(&t, 7, (void *)1, 0, &mac), 1);
	CHECK_EQ(o.requests, 1);
	CHECK_EQ(o.last_req_ip, 7);
	CHECK_EQ(dp_arp_resolve(&t, 7, (void *)2, 10, &mac), 1);
	CHECK_EQ(o.requests, 1);                /* one request per resolution */
	CHECK_EQ(dp_arp_lookup(&t, 7)->state, DP_ARP_INCOMPLETE);
	dp_arp_learn(&t, 7, &mac1, 1, 20);
	CHECK_EQ(o.sent, 2);
	CHECK_EQ(dp_arp_lookup(&t, 7)->state, DP_ARP_REACHABLE);
	CHECK_EQ(dp_arp_resolve(&t, 7, (void *)3, 30, &mac), 0);
	CHECK(rte_is_same_ether_addr(&mac, &mac1));
	CHECK_EQ(t.stats.hits, 1);
	CHECK_EQ(t.stats.misses, 2);
	CHECK_EQ(t.stats.resolved, 1);
	free(mem);
}

static void
test_queue_bound_and_failure(void)
{
	struct dp_arp_table t;
	struct owner o;
	struct rte_ether_addr mac;
	void *mem;
	uint64_t now = 0;

	setup(&t, &o, &mem);
	for (uintptr_t i = 1; i <= DP_ARP_PENDING_MAX; i++)
		CHECK_EQ(dp_arp_resolve(&t, 9, (void *)i, now, &mac), 1);
	CHECK_EQ(dp_arp_resolve(&t, 9, (void *)99, now, &mac), -ENOBUFS);
	CHECK_EQ(t.stats.queue_full, 1);
	/* Retries at retry_us, then FAILED with the queue dropped. */
	for (unsigned int i = 0; i < conf.max_retries; i++) {
		now += conf.retry_us;
		dp_arp_tick(&t, now);
	}
	CHECK_EQ(o.requests, (int)conf.max_retries);
	CHECK_EQ(o.dropped, DP_ARP_PENDING_MAX);
	CHECK_EQ(o.sent, 0);
	CHECK_EQ(t.stats.failed, 1);
	/* Held down: new packets are refused, not queued, until hold_us... */
	now += 1;
	CHECK(dp_arp_lookup(&t, 9) != NULL &&
		dp_arp_lookup(&t, 9)->state == DP_ARP_FAILED);
	CHECK_EQ(dp_arp_resolve(&t, 9, (void *)1, now, &mac), -EHOSTUNREACH);
	/* ...after which a new resolution starts. */
	now += conf.hold_us;
	CHECK_EQ(dp_arp_resolve(&t, 9, (void *)1, now, &mac), 1);
	CHECK_EQ(o.requests, (int)conf.max_retries + 1);
	dp_arp_flush(&t);
	CHECK_EQ(o.dropped, DP_ARP_PENDING_MAX + 1);
	free(mem);
}

static void
test_expiry_and_refresh(void)
{
	struct dp_arp_table t;
	struct owner o;
	struct rte_ether_addr mac;
	void *mem;

	setup(&t, &o, &mem);
	/* Learned from a request to us; never used: goes away. */
	dp_arp_learn(&t, 5, &mac1, 1, 0);
	dp_arp_tick(&t, conf.reachable_us);
	CHECK(dp_arp_lookup(&t, 5) == NULL);
	CHECK_EQ(o.requests, 0);
	/* In use: refreshed by a unicast request, stays usable while STALE. */
	dp_arp_learn(&t, 6, &mac1, 1, 0);
	CHECK_EQ(dp_arp_resolve(&t, 6, (void *)1, conf.reachable_us - 10, &mac), 0);
	dp_arp_tick(&t, conf.reachable_us);
	CHECK_EQ(dp_arp_lookup(&t, 6)->state, DP_ARP_STALE);
	CHECK_EQ(o.unicast_requests, 1);
	CHECK_EQ(dp_arp_resolve(&t, 6, (void *)1, conf.reachable_us + 1, &mac), 0);
	dp_arp_learn(&t, 6, &mac1, 0, conf.reachable_us + 2);
	CHECK_EQ(dp_arp_lookup(&t, 6)->state, DP_ARP_REACHABLE);
	/* Unanswered refresh: the entry goes. */
	dp_arp_resolve(&t, 6, (void *)1, 2 * conf.reachable_us, &mac);
	dp_arp_tick(&t, 2 * conf.reachable_us + 2);
	CHECK_EQ(dp_arp_lookup(&t, 6)->state, DP_ARP_STALE);
	dp_arp_tick(&t, 2 * conf.reachable_us + 2 + conf.stale_us);
	CHECK(dp_arp_lookup(&t, 6) == NULL);
	/* Not about us and unknown: not created (no cache pollution). */
	dp_arp_learn(&t, 8, &mac1, 0, 0);
	CHECK(dp_arp_lookup(&t, 8) == NULL);
	free(mem);
}

static void
test_eviction(void)
{
	struct dp_arp_table t;
	struct owner o;
	struct rte_ether_addr mac;
	void *mem;
	int evicted_ok = 1;

	setup(&t, &o, &mem);
	/* Fill the whole table with resolved entries, then more. */
	for (uint32_t ip = 1; ip <= 200; ip++) {
		dp_arp_learn(&t, ip, &mac1, 1, ip);
		if (dp_arp_lookup(&t, ip) == NULL)
			evicted_ok = 0;
	}
	CHECK(evicted_ok);
	CHECK(t.stats.evicted > 0);
	/* Entries holding packets are never evicted: fill with INCOMPLETE. */
	memset(mem, 0, dp_arp_mem_size(&conf));
	for (uint32_t ip = 1; ip <= 64; ip++)
		dp_arp_resolve(&t, ip, (void *)1, 0, &mac);
	int nospc = 0;
	for (uint32_t ip = 1000; ip < 1100; ip++)
		nospc += dp_arp_resolve(&t, ip, (void *)1, 0, &mac) == -ENOSPC;
	CHECK(nospc > 0);
	for (uint32_t ip = 1; ip <= 64; ip++) {
		const struct dp_arp_entry *e = dp_arp_lookup(&t, ip);

		if (e == NULL || e->n_pending == 0)
			evicted_ok = 0;
	}
	CHECK(evicted_ok);
	free(mem);
}

int
main(void)
{
	struct dp_arp_table t;
	struct dp_arp_conf bad = conf;
	struct owner o;

	bad.capacity = 100;
	CHECK_EQ(dp_arp_init(&t, &bad, &ops, &o, NULL), -EINVAL);
	test_resolve_and_flush();
	test_queue_bound_and_failure();
	test_expiry_and_refresh();
	test_eviction();
	return mp_test_result("dp_arp");
}
