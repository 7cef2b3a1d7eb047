/*
 * Neighbour cache: open addressing over a fixed table, a bounded probe
 * window per address, and every probe window scanned whole so that freed
 * slots never hide an entry behind them. States and their timers are
 * described in dp_arp.h; dp_arp_tick() walks the table to fire them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dp_arp.h"

#define PROBE_MAX 16u

const char *const dp_arp_state_names[DP_ARP_LAST] = {
	[DP_ARP_FREE] = "free",
	[DP_ARP_INCOMPLETE] = "incomplete",
	[DP_ARP_REACHABLE] = "reachable",
	[DP_ARP_STALE] = "stale",
	[DP_ARP_FAILED] = "failed",
};

size_t
dp_arp_mem_size(const struct dp_arp_conf *conf)
{
	return (size_t)conf->capacity * sizeof(struct dp_arp_entry);
}

int
dp_arp_init(struct dp_arp_table *t, const struct dp_arp_conf *conf,
	const struct dp_arp_ops *ops, void *ctx, void *mem)
{
	if (conf->capacity == 0 || (conf->capacity & (conf->capacity - 1)))
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	t->conf = *conf;
	t->ops = *ops;
	t->ctx = ctx;
	t->mask = conf->capacity - 1;
	t->e = mem;
	return 0;
}

static uint32_t
slot_of(const struct dp_arp_table *t, uint32_t ip, uint32_t i)
{
	return ((ip * 2654435761u) + i) & t->mask;
}

static uint32_t
probe_len(const struct dp_arp_table *t)
{
	return t->mask + 1 < PROBE_MAX ? t->mask + 1 : PROBE_MAX;
}

static struct dp_arp_entry *
find(const struct dp_arp_table *t, uint32_t ip)
{
	for (uint32_t i = 0; i < probe_len(t); i++) {
		struct dp_arp_entry *e = &t->e[slot_of(t, ip, i)];

		if (e->state != DP_ARP_FREE && e->ip == ip)
			return e;
	}
	return NULL;
}

const struct dp_arp_entry *
dp_arp_lookup(const struct dp_arp_table *t, uint32_t ip)
{
	return find(t, ip);
}

static void
drop_pending(struct dp_arp_table *t, struct dp_arp_entry *e)
{
	for (unsigned int i = 0; i < e->n_pending; i++) {
		t->ops.drop_pending(t->ctx, e->pending[i]);
		t->stats.pending_dropped++;
	}
	e->n_pending = 0;
}

/* A slot for a new entry: free first, then the least recently used entry
 * that holds no packets. */
static struct dp_arp_entry *
claim(struct dp_arp_table *t, uint32_t ip)
{
	struct dp_arp_entry *victim = NULL;

	for (uint32_t i = 0; i < probe_len(t); i++) {
		struct dp_arp_entry *e = &t->e[slot_of(t, ip, i)];

		if (e->state == DP_ARP_FREE) {
			victim = e;
			break;
		}
		if (e->state != DP_ARP_INCOMPLETE &&
		    (victim == NULL || e->used < victim->used))
			victim = e;
	}
	if (victim == NULL)
		return NULL;
	if (victim->state != DP_ARP_FREE)
		t->stats.evicted++;
	memset(victim, 0, sizeof(*victim));
	victim->ip = ip;
	return victim;
}

static void
start_resolution(struct dp_arp_table *t, struct dp_arp_entry *e, uint64_t now)
{
	e->state = DP_ARP_INCOMPLETE;
	e->retries = 1;
	e->expires = now + t->conf.retry_us;
	e->used = now;
	t->ops.send_request(t->ctx, e->ip, NULL);
	t->stats.requests_sent++;
}

int
dp_arp_resolve(struct dp_arp_table *t, uint32_t ip, void *pkt, uint64_t now,
	struct rte_ether_addr *mac)
{
	struct dp_arp_entry *e = find(t, ip);

	if (e != NULL) {
		switch (e->state) {
		case DP_ARP_REACHABLE:
		case DP_ARP_STALE:
			e->used = now;
			*mac = e->mac;
			t->stats.hits++;
			return 0;
		case DP_ARP_FAILED:
			if (now < e->expires)
				return -EHOSTUNREACH;
			start_resolution(t, e, now);
			break;
		case DP_ARP_INCOMPLETE:
			break;
		default:
			abort();
		}
	} else {
		e = claim(t, ip);
		if (e == NULL)
			return -ENOSPC;
		start_resolution(t, e, now);
	}
	t->stats.misses++;
	if (e->n_pending == DP_ARP_PENDING_MAX) {
		t->stats.queue_full++;
		return -ENOBUFS;
	}
	e->pending[e->n_pending++] = pkt;
	return 1;
}

void
dp_arp_learn(struct dp_arp_table *t, uint32_t ip,
	const struct rte_ether_addr *mac, int target_is_us, uint64_t now)
{
	struct dp_arp_entry *e = find(t, ip);

	if (e == NULL) {
		if (!target_is_us)
			return;
		e = claim(t, ip);
		if (e == NULL)
			return;
		e->used = now;
	}
	if (e->state == DP_ARP_INCOMPLETE)
		t->stats.resolved++;
	t->stats.learned++;
	e->mac = *mac;
	e->state = DP_ARP_REACHABLE;
	e->retries = 0;
	e->expires = now + t->conf.reachable_us;
	for (unsigned int i = 0; i < e->n_pending; i++)
		t->ops.send_pending(t->ctx, e->pending[i], &e->mac);
	e->n_pending = 0;
}

static void
expire(struct dp_arp_table *t, struct dp_arp_entry *e, uint64_t now)
{
	switch (e->state) {
	case DP_ARP_INCOMPLETE:
		if (e->retries >= t->conf.max_retries) {
			drop_pending(t, e);
			e->state = DP_ARP_FAILED;
			e->expires = now + t->conf.hold_us;
			t->stats.failed++;
			return;
		}
		e->retries++;
		e->expires = now + t->conf.retry_us;
		t->ops.send_request(t->ctx, e->ip, NULL);
		t->stats.requests_sent++;
		return;
	case DP_ARP_REACHABLE:
		/* Refresh only what is still in use; idle entries go away. */
		if (now - e->used < t->conf.reachable_us) {
			e->state = DP_ARP_STALE;
			e->expires = now + t->conf.stale_us;
			t->ops.send_request(t->ctx, e->ip, &e->mac);
			t->stats.requests_sent++;
		} else {
			e->state = DP_ARP_FREE;
		}
		return;
	case DP_ARP_STALE:
	case DP_ARP_FAILED:
		e->state = DP_ARP_FREE;
		return;
	default:
		abort();
	}
}

void
dp_arp_tick(struct dp_arp_table *t, uint64_t now)
{
	for (uint32_t i = 0; i <= t->mask; i++) {
		struct dp_arp_entry *e = &t->e[i];

		if (e->state != DP_ARP_FREE && now >= e->expires)
			expire(t, e, now);
	}
}

void
dp_arp_flush(struct dp_arp_table *t)
{
	for (uint32_t i = 0; i <= t->mask; i++)
		if (t->e[i].state == DP_ARP_INCOMPLETE)
			drop_pending(t, &t->e[i]);
}
