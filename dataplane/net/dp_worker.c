/*
 * The worker lcore loop, one per worker core, sharing nothing with the
 * others: its own RX/TX queue pair, neighbour cache, counters and a ring on
 * which other workers hand it frames (ARP copies now, TCP flows later when
 * the NIC spreads them where it likes).
 *
 * One iteration, in order: drain TX when its TSC deadline has passed; RX
 * burst; frames from the redirect ring; timers (every 10 ms: ARP retries,
 * gratuitous ARP, gateway probe); the layer above's poll hook; TX flush
 * when full. An iteration that did nothing counts toward an idle back-off
 * that pauses and then sleeps (up to idle_sleep_max_us), so that an idle
 * daemon does not keep a core at 100%.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include <rte_arp.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_pause.h>

#include "dp.h"

#define TX_DRAIN_US 50
#define TICK_US 10000
#define IDLE_SPIN 256
#define IDLE_PAUSE 4096
#define PING_IDENT 0x4d50

volatile int dp_stop;

static inline uint64_t
tsc_to_us(const struct dp_worker *w, uint64_t tsc)
{
	return tsc / w->hz * 1000000 + tsc % w->hz * 1000000 / w->hz;
}

/*
 * Hand the queued frames to the NIC; what its ring does not take stays
 * queued, in order, for the next try (a full ring drains within a burst
 * or two). @return frames still queued.
 */
static uint16_t
tx_push(struct dp_worker *w)
{
	uint16_t sent = 0;

	if (w->tx_n == 0)
		return 0;
	for (int i = 0; i < 2 && sent < w->tx_n; i++)
		sent += rte_eth_tx_burst(w->port->port_id, w->queue,
			w->tx + sent, (uint16_t)(w->tx_n - sent));
	for (uint16_t i = 0; i < sent; i++)
		w->cnt.tx_bytes += rte_pktmbuf_pkt_len(w->tx[i]);
	w->cnt.tx_pkts += sent;
	if (sent > 0 && sent < w->tx_n)
		memmove(w->tx, w->tx + sent, (size_t)(w->tx_n - sent) * sizeof(w->tx[0]));
	w->tx_n = (uint16_t)(w->tx_n - sent);
	return w->tx_n;
}

/* At the end: what the NIC will not take is dropped. */
static void
tx_flush(struct dp_worker *w)
{
	if (tx_push(w) > 0) {
		w->cnt.drops[DP_DROP_TX_FULL] += w->tx_n;
		rte_pktmbuf_free_bulk(w->tx, w->tx_n);
		w->tx_n = 0;
	}
}

int
dp_worker_tx_room(struct dp_worker *w)
{
	if (w->tx_n == DP_TX_BUF && tx_push(w) == DP_TX_BUF)
		return 0;
	return DP_TX_BUF - w->tx_n;
}

static void
tx_enqueue(struct dp_worker *w, struct rte_mbuf *m)
{
	if (dp_worker_tx_room(w) == 0) {
		/* the NIC takes nothing: this frame is lost, not the queue */
		w->cnt.drops[DP_DROP_TX_FULL]++;
		rte_pktmbuf_free(m);
		return;
	}
	if (w->tx_n == 0)
		w->tx_deadline = rte_rdtsc() + w->hz / 1000000 * TX_DRAIN_US;
	w->tx[w->tx_n++] = m;
}

static void
set_eth(struct rte_mbuf *m, const struct rte_ether_addr *src,
	const struct rte_ether_addr *dst)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);

	rte_ether_addr_copy(dst, &eth->dst_addr);
	rte_ether_addr_copy(src, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
}

/* The local address to speak from toward a neighbour: the first one. */
static uint32_t
local_ip(const struct dp_worker *w)
{
	return w->port->ifa.ip[0];
}

static struct rte_mbuf *
alloc_frame(struct dp_worker *w, uint16_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(w->port->pool);

	if (m == NULL) {
		w->cnt.drops[DP_DROP_NO_MBUF]++;
		return NULL;
	}
	if (rte_pktmbuf_append(m, len) == NULL) {
		rte_pktmbuf_free(m);
		w->cnt.drops[DP_DROP_NO_MBUF]++;
		return NULL;
	}
	return m;
}

static void
send_arp(struct dp_worker *w, uint16_t op, uint32_t sip,
	const struct rte_ether_addr *tha, uint32_t tip)
{
	struct rte_mbuf *m = alloc_frame(w, DP_ARP_FRAME_LEN);

	if (m == NULL)
		return;
	dp_arp_build(rte_pktmbuf_mtod(m, uint8_t *), op, &w->port->ifa.mac,
		sip, tha, tip);
	tx_enqueue(w, m);
}

static void
arp_send_request(void *ctx, uint32_t ip, const struct rte_ether_addr *mac)
{
	struct dp_worker *w = ctx;

	send_arp(w, RTE_ARP_OP_REQUEST, local_ip(w), mac, ip);
	w->cnt.arp_req_tx++;
}

static void
arp_send_pending(void *ctx, void *pkt, const struct rte_ether_addr *mac)
{
	struct dp_worker *w = ctx;
	struct rte_mbuf *m = pkt;

	set_eth(m, &w->port->ifa.mac, mac);
	tx_enqueue(w, m);
}

static void
arp_drop_pending(void *ctx, void *pkt)
{
	struct dp_worker *w = ctx;

	w->cnt.drops[DP_DROP_ARP_FAILED]++;
	rte_pktmbuf_free(pkt);
}

void
dp_worker_ip_send(struct dp_worker *w, struct rte_mbuf *m, uint32_t next_hop)
{
	struct rte_ether_addr mac;
	int r;

	if (next_hop == 0) {
		w->cnt.drops[DP_DROP_NO_ROUTE]++;
		rte_pktmbuf_free(m);
		return;
	}
	r = dp_arp_resolve(&w->arp, next_hop, m, w->now_us, &mac);
	if (r == 0) {
		set_eth(m, &w->port->ifa.mac, &mac);
		tx_enqueue(w, m);
	} else if (r < 0) {
		w->cnt.drops[r == -ENOBUFS ? DP_DROP_ARP_QUEUE : DP_DROP_ARP_FAILED]++;
		rte_pktmbuf_free(m);
	}
}

void
dp_worker_redirect(struct dp_worker *w, unsigned int to, struct rte_mbuf *m)
{
	if (to >= w->n_peers || rte_ring_enqueue(w->peers[to].redirect, m) != 0) {
		w->cnt.drops[DP_DROP_REDIRECT_FULL]++;
		rte_pktmbuf_free(m);
		return;
	}
	w->cnt.redirect_out++;
}

/* Other workers keep their own neighbour caches: give each a copy. */
static void
redirect_copies(struct dp_worker *w, struct rte_mbuf *m)
{
	for (unsigned int i = 0; i < w->n_peers; i++) {
		struct dp_worker *peer = &w->peers[i];
		struct rte_mbuf *c;

		if (peer == w)
			continue;
		c = rte_pktmbuf_copy(m, w->port->pool, 0, UINT32_MAX);
		if (c == NULL) {
			w->cnt.drops[DP_DROP_NO_MBUF]++;
			continue;
		}
		if (rte_ring_enqueue(peer->redirect, c) != 0) {
			w->cnt.drops[DP_DROP_REDIRECT_FULL]++;
			rte_pktmbuf_free(c);
			continue;
		}
		w->cnt.redirect_out++;
	}
}

static void
input_arp(struct dp_worker *w, struct rte_mbuf *m, const struct dp_pkt_info *info,
	int from_peer)
{
	const struct rte_arp_hdr *arp = rte_pktmbuf_mtod_offset(m,
		const struct rte_arp_hdr *, info->l3_off);
	struct rte_ether_addr sha = arp->arp_data.arp_sha;
	int for_us = dp_ifaddr_is_local(&w->port->ifa, info->dst_ip);

	w->cnt.arp_rx++;
	if (!from_peer && w->n_peers > 1)
		redirect_copies(w, m);
	dp_arp_learn(&w->arp, info->src_ip, &sha, for_us, w->now_us);
	if (from_peer || !for_us || info->arp_op != RTE_ARP_OP_REQUEST) {
		rte_pktmbuf_free(m);
		return;
	}
	/* Answer in the same mbuf. */
	rte_pktmbuf_reset(m);
	if (rte_pktmbuf_append(m, DP_ARP_FRAME_LEN) == NULL) {
		rte_pktmbuf_free(m);
		return;
	}
	dp_arp_build(rte_pktmbuf_mtod(m, uint8_t *), RTE_ARP_OP_REPLY,
		&w->port->ifa.mac, info->dst_ip, &sha, info->src_ip);
	tx_enqueue(w, m);
	w->cnt.arp_reply_tx++;
}

static void
input(struct dp_worker *w, struct rte_mbuf *m, int from_peer)
{
	struct dp_pkt_info info;
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);

	w->cnt.rx_pkts++;
	w->cnt.rx_bytes += rte_pktmbuf_pkt_len(m);
	switch (dp_classify(frame, rte_pktmbuf_data_len(m), &w->port->ifa, &info)) {
	case DP_PKT_DROP:
		w->cnt.drops[info.drop]++;
		rte_pktmbuf_free(m);
		return;
	case DP_PKT_ARP:
		input_arp(w, m, &info, from_peer);
		return;
	case DP_PKT_ICMP_ECHO:
		w->cnt.icmp_echo_rx++;
		/* Drop padding beyond the IP datagram before echoing it. */
		rte_pktmbuf_trim(m, (uint16_t)(rte_pktmbuf_data_len(m) -
			info.l4_off - info.l4_len));
		dp_icmp_echo_to_reply(frame, &info);
		w->cnt.icmp_echo_reply_tx++;
		dp_worker_ip_send(w, m, dp_ifaddr_next_hop(&w->port->ifa, info.src_ip));
		return;
	case DP_PKT_ICMP_REPLY:
		w->cnt.icmp_echo_reply_rx++;
		rte_pktmbuf_free(m);
		return;
	case DP_PKT_ICMP_UNREACH:
		w->cnt.icmp_unreach_rx++;
		if (w->hooks.icmp_unreach != NULL) {
			w->hooks.icmp_unreach(w, m, &info);
			return;
		}
		rte_pktmbuf_free(m);
		return;
	case DP_PKT_TCP:
		w->cnt.tcp_rx++;
		if (w->hooks.tcp_input != NULL) {
			w->hooks.tcp_input(w, m, &info);
			return;
		}
		w->cnt.drops[DP_DROP_NO_HANDLER]++;
		rte_pktmbuf_free(m);
		return;
	default:
		abort();
	}
}

static void
send_garp(struct dp_worker *w)
{
	for (unsigned int i = 0; i < w->port->ifa.n_ip; i++) {
		send_arp(w, RTE_ARP_OP_REQUEST, w->port->ifa.ip[i], NULL,
			w->port->ifa.ip[i]);
		w->cnt.garp_tx++;
	}
}

static void
send_gw_ping(struct dp_worker *w, uint16_t seq)
{
	static const char payload[] = "mailpump gateway probe";
	struct rte_mbuf *m = alloc_frame(w, RTE_ETHER_HDR_LEN + 20 + 8 + sizeof(payload));

	if (m == NULL)
		return;
	dp_icmp_echo_build(rte_pktmbuf_mtod(m, uint8_t *), rte_pktmbuf_data_len(m),
		local_ip(w), w->port->ifa.gw, PING_IDENT, seq, payload, sizeof(payload));
	w->cnt.icmp_echo_tx++;
	dp_worker_ip_send(w, m, w->port->ifa.gw);
}

static void
timers(struct dp_worker *w)
{
	dp_arp_tick(&w->arp, w->now_us);
	if (w->garp_left > 0 && w->now_us >= w->next_garp) {
		send_garp(w);
		w->garp_left--;
		w->next_garp = w->now_us + 1000000;
	}
	if (w->ping_left > 0 && w->now_us >= w->next_ping) {
		send_gw_ping(w, (uint16_t)(w->conf->ping_gw - w->ping_left));
		w->ping_left--;
		w->next_ping = w->now_us + 100000;
	}
}

static void
idle_backoff(struct dp_worker *w, unsigned int *idle)
{
	struct timespec ts;
	uint64_t us;

	(*idle)++;
	if (*idle < IDLE_SPIN)
		return;
	if (*idle < IDLE_PAUSE) {
		rte_pause();
		return;
	}
	tx_push(w);
	/* Sleep longer the longer we have been idle, up to the maximum. */
	us = RTE_MIN((uint64_t)(*idle - IDLE_PAUSE) / 64 + 1,
		(uint64_t)w->conf->idle_sleep_max_us);
	ts.tv_sec = 0;
	ts.tv_nsec = (long)us * 1000;
	nanosleep(&ts, NULL);
	w->cnt.idle_sleeps++;
}

int
dp_worker_main(void *arg)
{
	struct dp_worker *w = arg;
	struct rte_mbuf *pkts[DP_RX_BURST];
	unsigned int idle = 0;
	sigset_t sigs;

	/* Idle sleeps are short; the default 50 us timer slack would
	 * stretch them. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	/* dp_eal_init() blocked the PMD's frame signals everywhere; workers
	 * take them. */
	dp_signals_for_workers(&sigs);
	pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
	DP_LOG(INFO, "worker=%u lcore=%u queue=%u started", w->id, w->lcore, w->queue);
	w->now_us = tsc_to_us(w, rte_rdtsc());
	w->next_tick = w->next_garp = w->next_ping = w->now_us;
	while (!__atomic_load_n(&dp_stop, __ATOMIC_RELAXED)) {
		uint64_t start = rte_rdtsc();
		unsigned int work = 0;
		uint16_t n;

		w->now_us = tsc_to_us(w, start);
		if (w->tx_n > 0 && start >= w->tx_deadline)
			tx_push(w);
		n = rte_eth_rx_burst(w->port->port_id, w->queue, pkts, DP_RX_BURST);
		for (uint16_t i = 0; i < n; i++)
			input(w, pkts[i], 0);
		work += n;
		n = (uint16_t)rte_ring_dequeue_burst(w->redirect, (void **)pkts,
			DP_RX_BURST, NULL);
		w->cnt.redirect_in += n;
		for (uint16_t i = 0; i < n; i++)
			input(w, pkts[i], 1);
		work += n;
		if (w->now_us >= w->next_tick) {
			timers(w);
			w->next_tick = w->now_us + TICK_US;
		}
		if (w->hooks.poll != NULL)
			work += (unsigned int)w->hooks.poll(w, start);
		if (w->tx_n >= DP_RX_BURST)
			tx_push(w);
		w->cnt.loops++;
		if (work > 0) {
			idle = 0;
			w->cnt.busy_loops++;
			w->cnt.busy_cycles += rte_rdtsc() - start;
		} else {
			idle_backoff(w, &idle);
		}
	}
	tx_flush(w);
	dp_arp_flush(&w->arp);
	DP_LOG(INFO, "worker=%u stopped", w->id);
	return 0;
}

int
dp_workers_start(struct dp_port *p, const struct dp_conf *c, struct dp_worker **out,
	int (*setup)(struct dp_worker *w, void *arg), void *arg)
{
	static const struct dp_arp_ops ops = {
		.send_request = arp_send_request,
		.send_pending = arp_send_pending,
		.drop_pending = arp_drop_pending,
	};
	struct dp_arp_conf ac = {
		.capacity = 1024,
		.retry_us = 1000000,
		.max_retries = 3,
		.reachable_us = 30000000,
		.stale_us = 5000000,
		.hold_us = 1000000,
	};
	unsigned int n = rte_lcore_count() - 1, i = 0, lcore;
	struct dp_worker *w;
	char name[RTE_RING_NAMESIZE];

	if (n == 0 || n > DP_MAX_WORKERS || n != p->n_queues)
		return -EINVAL;
	w = rte_zmalloc("dp_workers", sizeof(*w) * n, RTE_CACHE_LINE_SIZE);
	if (w == NULL)
		return -ENOMEM;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		struct dp_worker *x = &w[i];
		void *mem = rte_zmalloc_socket("dp_arp", dp_arp_mem_size(&ac),
			RTE_CACHE_LINE_SIZE, (int)rte_lcore_to_socket_id(lcore));

		x->id = i;
		x->lcore = lcore;
		x->queue = (uint16_t)i;
		x->port = p;
		x->conf = c;
		x->peers = w;
		x->n_peers = n;
		x->hz = rte_get_tsc_hz();
		x->now_us = tsc_to_us(x, rte_rdtsc());
		/* Worker 0 announces our addresses and probes the gateway. */
		x->garp_left = i == 0 ? c->garp_count : 0;
		x->ping_left = i == 0 && p->ifa.gw != 0 ? c->ping_gw : 0;
		snprintf(name, sizeof(name), "dp_redir_%u", i);
		x->redirect = rte_ring_create(name, 1024,
			(int)rte_lcore_to_socket_id(lcore), RING_F_SC_DEQ);
		if (mem == NULL || x->redirect == NULL ||
		    dp_arp_init(&x->arp, &ac, &ops, x, mem) != 0) {
			DP_LOG(ERR, "worker=%u: out of memory", i);
			return -ENOMEM;
		}
		i++;
	}
	*out = w;
	for (i = 0; setup != NULL && i < n; i++) {
		int ret = setup(&w[i], arg);

		if (ret < 0)
			return ret;
	}
	for (i = 0; i < n; i++) {
		int ret = rte_eal_remote_launch(dp_worker_main, &w[i], w[i].lcore);

		if (ret != 0)
			return ret;
	}
	return (int)n;
}

void
dp_workers_stop(struct dp_worker *w, unsigned int n)
{
	struct rte_mbuf *m;

	__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
	rte_eal_mp_wait_lcore();
	for (unsigned int i = 0; i < n; i++) {
		while (rte_ring_dequeue(w[i].redirect, (void **)&m) == 0)
			rte_pktmbuf_free(m);
		rte_ring_free(w[i].redirect);
		rte_free(w[i].arp.e);
	}
	rte_free(w);
}
