/*
 * Worker <-> utcp glue. Input: validate the TCP header and checksum (the
 * NIC's verdict when it gives one), redirect segments owned by another
 * worker, hand the rest to utcp_input(). ICMP destination unreachable is
 * matched to the quoted segment. The poll hook runs, in order, timers, the
 * application's events and work, and utcp_output(), whose emit callback
 * builds each segment in an mbuf and queues it through ARP to the NIC.
 */
#include <errno.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_tcp.h>
#include <rte_thash.h>

#include "dp_tcp.h"

#define EV_BATCH 64
#define OUT_BUDGET 512

uint32_t
dp_steer_toeplitz(const uint32_t key_be[10], uint32_t sip, uint32_t dip,
	uint16_t sport, uint16_t dport)
{
	uint32_t tuple[3];

	tuple[0] = sip;
	tuple[1] = dip;
	tuple[2] = (uint32_t)sport << 16 | dport;
	return rte_softrss_be(tuple, 3, (const uint8_t *)key_be);
}

unsigned int
dp_steer_owner(const struct dp_steer *s, uint32_t laddr, uint16_t lport,
	uint32_t raddr, uint16_t rport)
{
	if (s->mode == DP_STEER_RSS) {
		/* The NIC hashes what it receives: peer -> us. */
		uint32_t h = dp_steer_toeplitz(s->key_be, raddr, laddr, rport, lport);

		return s->reta[h % s->reta_size];
	}
	return lport % s->n_workers;
}

int
dp_steer_init(struct dp_steer *s, const struct dp_port *p, unsigned int n_workers)
{
	struct rte_eth_rss_reta_entry64 reta[512 / RTE_ETH_RETA_GROUP_SIZE];
	struct rte_eth_rss_conf rss = {0};
	struct rte_eth_dev_info info;
	uint8_t key[40];

	memset(s, 0, sizeof(*s));
	s->mode = DP_STEER_SOFT;
	s->n_workers = n_workers;
	if (n_workers == 1 || strncmp(p->driver, "net_tap", 7) == 0 ||
	    strncmp(p->driver, "net_af_packet", 13) == 0 ||
	    strncmp(p->driver, "net_virtio", 10) == 0)
		return 0;
	if (rte_eth_dev_info_get(p->port_id, &info) != 0 || info.reta_size == 0 ||
	    info.reta_size > 512 || info.hash_key_size != sizeof(key))
		return 0;
	rss.rss_key = key;
	rss.rss_key_len = sizeof(key);
	if (rte_eth_dev_rss_hash_conf_get(p->port_id, &rss) != 0)
		return 0;
	memset(reta, 0, sizeof(reta));
	for (unsigned int i = 0; i < info.reta_size / RTE_ETH_RETA_GROUP_SIZE; i++)
		reta[i].mask = ~0ULL;
	if (rte_eth_dev_rss_reta_query(p->port_id, reta, info.reta_size) != 0)
		return 0;
	for (unsigned int i = 0; i < info.reta_size; i++)
		s->reta[i] = reta[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];
	rte_convert_rss_key((const uint32_t *)key, s->key_be, sizeof(key));
	s->reta_size = info.reta_size;
	s->mode = DP_STEER_RSS;
	return 0;
}

static int
port_ok(void *ctx, uint32_t saddr, uint32_t daddr, uint16_t sport, uint16_t dport)
{
	struct dp_tcp *t = ctx;

	return dp_steer_owner(t->steer, saddr, sport, daddr, dport) == t->w->id;
}

static int
emit(void *ctx, const struct utcp_seg_out *s)
{
	struct dp_tcp *t = ctx;
	struct dp_worker *w = t->w;
	uint16_t thl = (uint16_t)(20 + s->optlen);
	uint16_t len = (uint16_t)(RTE_ETHER_HDR_LEN + 20 + thl + s->len);
	struct rte_ipv4_hdr *ip;
	struct rte_tcp_hdr *th;
	struct rte_mbuf *m;
	uint8_t *p;

	/* a full NIC ring: utcp keeps the segment and sends it next time */
	if (dp_worker_tx_room(w) == 0) {
		w->cnt.tx_stalls++;
		return -ENOBUFS;
	}
	m = rte_pktmbuf_alloc(w->port->pool);
	if (m == NULL) {
		w->cnt.drops[DP_DROP_NO_MBUF]++;
		return -ENOBUFS;
	}
	p = (uint8_t *)rte_pktmbuf_append(m, len);
	if (p == NULL) {
		rte_pktmbuf_free(m);
		w->cnt.drops[DP_DROP_NO_MBUF]++;
		return -ENOBUFS;
	}
	ip = (struct rte_ipv4_hdr *)(p + RTE_ETHER_HDR_LEN);
	dp_ipv4_build((uint8_t *)ip, IPPROTO_TCP, rte_cpu_to_be_32(s->saddr),
		rte_cpu_to_be_32(s->daddr), (uint16_t)(thl + s->len), w->ip_id++, 64);
	th = (struct rte_tcp_hdr *)(ip + 1);
	th->src_port = rte_cpu_to_be_16(s->sport);
	th->dst_port = rte_cpu_to_be_16(s->dport);
	th->sent_seq = rte_cpu_to_be_32(s->seq);
	th->recv_ack = rte_cpu_to_be_32(s->ack);
	th->data_off = (uint8_t)((thl / 4) << 4);
	th->tcp_flags = s->flags;
	th->rx_win = rte_cpu_to_be_16(s->wnd);
	th->cksum = 0;
	th->tcp_urp = 0;
	memcpy(th + 1, s->opts, s->optlen);
	p = (uint8_t *)(th + 1) + s->optlen;
	/* a segment without payload has no buffer: memcpy(p, NULL, 0) is UB */
	if (s->iov[0].len)
		memcpy(p, s->iov[0].ptr, s->iov[0].len);
	if (s->iov[1].len)
		memcpy(p + s->iov[0].len, s->iov[1].ptr, s->iov[1].len);
	if (t->hw_cksum) {
		m->l2_len = RTE_ETHER_HDR_LEN;
		m->l3_len = 20;
		m->ol_flags |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM;
		th->cksum = rte_ipv4_phdr_cksum(ip, m->ol_flags);
	} else {
		th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	}
	dp_worker_ip_send(w, m, dp_ifaddr_next_hop(&w->port->ifa, ip->dst_addr));
	return 0;
}

static int
cksum_ok(struct rte_mbuf *m, const struct rte_ipv4_hdr *ip, const void *th)
{
	switch (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) {
	case RTE_MBUF_F_RX_L4_CKSUM_GOOD:
		return 1;
	case RTE_MBUF_F_RX_L4_CKSUM_BAD:
		return 0;
	default:
		/* Summed with its own checksum field, a valid segment
		 * folds to all ones: the complemented result is 0. */
		return rte_ipv4_udptcp_cksum(ip, th) == 0;
	}
}

static void
tcp_input(struct dp_worker *w, struct rte_mbuf *m, const struct dp_pkt_info *info)
{
	struct dp_tcp *t = w->hooks.ctx;
	const struct rte_ipv4_hdr *ip;
	const struct rte_tcp_hdr *th;
	struct utcp_seg_in seg;
	unsigned int owner, thl;

	if (m->nb_segs > 1 && rte_pktmbuf_linearize(m) != 0) {
		w->cnt.drops[DP_DROP_NO_MBUF]++;
		rte_pktmbuf_free(m);
		return;
	}
	ip = rte_pktmbuf_mtod_offset(m, const struct rte_ipv4_hdr *, info->l3_off);
	th = rte_pktmbuf_mtod_offset(m, const struct rte_tcp_hdr *, info->l4_off);
	thl = (unsigned int)(th->data_off >> 4) * 4;
	if (thl < 20 || thl > info->l4_len) {
		w->cnt.drops[DP_DROP_TCP_HDR]++;
		rte_pktmbuf_free(m);
		return;
	}
	seg.saddr = rte_be_to_cpu_32(info->src_ip);
	seg.daddr = rte_be_to_cpu_32(info->dst_ip);
	seg.sport = rte_be_to_cpu_16(th->src_port);
	seg.dport = rte_be_to_cpu_16(th->dst_port);
	owner = dp_steer_owner(t->steer, seg.daddr, seg.dport, seg.saddr, seg.sport);
	if (owner != w->id) {
		t->cnt.redirected++;
		dp_worker_redirect(w, owner, m);
		return;
	}
	/* Checksum only where the segment is consumed: a redirected one is
	 * checked once, by its owner. The IPv4 total length bounds it. */
	if (rte_pktmbuf_data_len(m) > info->l4_off + info->l4_len)
		rte_pktmbuf_trim(m, (uint16_t)(rte_pktmbuf_data_len(m) -
			info->l4_off - info->l4_len));
	if (!cksum_ok(m, ip, th)) {
		w->cnt.drops[DP_DROP_TCP_CSUM]++;
		rte_pktmbuf_free(m);
		return;
	}
	seg.seq = rte_be_to_cpu_32(th->sent_seq);
	seg.ack = rte_be_to_cpu_32(th->recv_ack);
	seg.flags = th->tcp_flags;
	seg.wnd = rte_be_to_cpu_16(th->rx_win);
	seg.opts = (const uint8_t *)(th + 1);
	seg.optlen = (uint8_t)(thl - 20);
	seg.payload = (const uint8_t *)th + thl;
	seg.len = info->l4_len - thl;
	utcp_input(t->stack, &seg, w->now_us);
	rte_pktmbuf_free(m);
}

static void
icmp_unreach(struct dp_worker *w, struct rte_mbuf *m, const struct dp_pkt_info *info)
{
	struct dp_tcp *t = w->hooks.ctx;
	const uint8_t *q = rte_pktmbuf_mtod_offset(m, const uint8_t *, info->quoted_off);
	uint32_t qsrc, qdst, seq;
	uint16_t sport, dport;
	unsigned int ihl = (unsigned int)(q[0] & 0xf) * 4, owner;

	/* The quote is our IPv4 header and at least 8 bytes of TCP. */
	if ((q[0] >> 4) != 4 || ihl < 20 || info->quoted_len < ihl + 8 ||
	    q[9] != IPPROTO_TCP) {
		w->cnt.drops[DP_DROP_ICMP_QUOTE]++;
		rte_pktmbuf_free(m);
		return;
	}
	memcpy(&qsrc, q + 12, 4);
	memcpy(&qdst, q + 16, 4);
	if (!dp_ifaddr_is_local(&w->port->ifa, qsrc)) {
		w->cnt.drops[DP_DROP_ICMP_QUOTE]++;
		rte_pktmbuf_free(m);
		return;
	}
	sport = (uint16_t)(q[ihl] << 8 | q[ihl + 1]);
	dport = (uint16_t)(q[ihl + 2] << 8 | q[ihl + 3]);
	seq = (uint32_t)q[ihl + 4] << 24 | (uint32_t)q[ihl + 5] << 16 |
		(uint32_t)q[ihl + 6] << 8 | q[ihl + 7];
	owner = dp_steer_owner(t->steer, rte_be_to_cpu_32(qsrc), sport,
		rte_be_to_cpu_32(qdst), dport);
	if (owner != w->id) {
		t->cnt.redirected++;
		dp_worker_redirect(w, owner, m);
		return;
	}
	t->cnt.icmp_matched++;
	utcp_icmp_input(t->stack, 3, info->icmp_code, info->icmp_mtu,
		rte_be_to_cpu_32(qsrc), rte_be_to_cpu_32(qdst), sport, dport, seq,
		w->now_us);
	rte_pktmbuf_free(m);
}

static int
poll(struct dp_worker *w, uint64_t now_tsc)
{
	struct dp_tcp *t = w->hooks.ctx;
	struct utcp_event ev[EV_BATCH];
	int work = 0, n;

	(void)now_tsc;
	/* Walks only the wheel slots elapsed since the last call: cheaper
	 * than asking for the next deadline, which scans the whole wheel. */
	utcp_timers(t->stack, w->now_us);
	while ((n = utcp_events(t->stack, ev, EV_BATCH)) > 0) {
		for (int i = 0; i < n; i++)
			t->app.on_event(t->app.ctx, w, &ev[i]);
		work += n;
	}
	if (t->app.poll != NULL)
		work += t->app.poll(t->app.ctx, w, w->now_us);
	work += utcp_output(t->stack, w->now_us, OUT_BUDGET);
	return work;
}

int
dp_tcp_attach(struct dp_worker *w, struct dp_tcp *t, const struct utcp_conf *conf,
	const struct dp_steer *steer, const struct dp_tcp_app *app)
{
	struct utcp_conf c = *conf;
	uint64_t want = RTE_ETH_TX_OFFLOAD_TCP_CKSUM;

	memset(t, 0, sizeof(*t));
	t->w = w;
	t->steer = steer;
	t->app = *app;
	t->hw_cksum = (w->port->tx_offloads & want) == want;
	c.emit = emit;
	c.port_ok = port_ok;
	c.ctx = t;
	c.nladdr = 0;
	for (unsigned int i = 0; i < w->port->ifa.n_ip && i < UTCP_MAX_LADDR; i++)
		c.laddr[c.nladdr++] = rte_be_to_cpu_32(w->port->ifa.ip[i]);
	if (c.mss == 0)
		c.mss = (uint16_t)(w->conf->mtu - 40);
	t->stack = utcp_stack_new(&c);
	if (t->stack == NULL)
		return -errno;
	utcp_clock(t->stack, w->now_us);
	w->hooks.tcp_input = tcp_input;
	w->hooks.icmp_unreach = icmp_unreach;
	w->hooks.poll = poll;
	w->hooks.ctx = t;
	return 0;
}

void
dp_tcp_detach(struct dp_tcp *t)
{
	if (t->stack != NULL)
		utcp_stack_free(t->stack);
	t->stack = NULL;
}
