/*
 * Port bring-up: find the device (virtual by name, or a PCI address),
 * size queues to the worker count within what the PMD allows, create the
 * mbuf pool, enable the checksum offloads the port has, start it and read
 * its MAC. dp_port_fini() stops and closes it.
 */
#include <errno.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "dp.h"

#define RX_DESC 1024
#define TX_DESC 1024

static int
find_port(const struct dp_conf *c, uint16_t *port_id, char *name, size_t len)
{
	const char *comma;
	size_t n;

	if (c->pci[0] != '\0') {
		snprintf(name, len, "%s", c->pci);
	} else {
		comma = strchr(c->vdev, ',');
		n = comma != NULL ? (size_t)(comma - c->vdev) : strlen(c->vdev);
		if (n >= len)
			return -EINVAL;
		memcpy(name, c->vdev, n);
		name[n] = '\0';
	}
	if (rte_eth_dev_get_port_by_name(name, port_id) != 0) {
		DP_LOG(ERR, "port=%s not found (probed ports: %u)", name,
			rte_eth_dev_count_avail());
		return -ENODEV;
	}
	return 0;
}

int
dp_port_init(struct dp_port *p, const struct dp_conf *c, unsigned int n_queues)
{
	struct rte_eth_conf pconf = {0};
	struct rte_eth_dev_info info;
	struct rte_ether_addr mac;
	uint16_t nrx = RX_DESC, ntx = TX_DESC;
	uint64_t want;
	uint32_t room;
	int ret, socket;

	memset(p, 0, sizeof(*p));
	p->ifa = c->ifa;
	ret = find_port(c, &p->port_id, p->name, sizeof(p->name));
	if (ret < 0)
		return ret;
	ret = rte_eth_dev_info_get(p->port_id, &info);
	if (ret != 0)
		return ret;
	snprintf(p->driver, sizeof(p->driver), "%s", info.driver_name);
	if (n_queues > info.max_rx_queues || n_queues > info.max_tx_queues) {
		DP_LOG(ERR, "port=%s driver=%s supports %u queue pairs, %u workers asked",
			p->name, info.driver_name,
			RTE_MIN(info.max_rx_queues, info.max_tx_queues), n_queues);
		return -EINVAL;
	}
	p->n_queues = (uint16_t)n_queues;
	if (n_queues > 1 && info.flow_type_rss_offloads != 0) {
		pconf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		pconf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads &
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP);
	}
	want = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
	p->tx_offloads = info.tx_offload_capa & want;
	pconf.txmode.offloads = p->tx_offloads;

	socket = rte_eth_dev_socket_id(p->port_id);
	if (socket < 0)
		socket = (int)rte_socket_id();
	/*
	 * One frame per mbuf (no scattered RX, no multi-segment TX): the data
	 * room holds a frame of the configured MTU, in whole KB (PMDs such as
	 * af_packet want their frame slot to fit), 2 KB at least.
	 */
	room = RTE_MAX((uint32_t)RTE_MBUF_DEFAULT_DATAROOM, RTE_ALIGN_CEIL((uint32_t)c->mtu +
		RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + RTE_ETHER_CRC_LEN, 1024u));
	p->pool = rte_pktmbuf_pool_create("mp_pool", c->n_mbufs, 256, 0,
		(uint16_t)(RTE_PKTMBUF_HEADROOM + room), socket);
	if (p->pool == NULL) {
		DP_LOG(ERR, "mbuf pool of %u: %s", c->n_mbufs, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	ret = rte_eth_dev_configure(p->port_id, p->n_queues, p->n_queues, &pconf);
	if (ret != 0) {
		DP_LOG(ERR, "port=%s configure: %s", p->name, rte_strerror(-ret));
		return ret;
	}
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &nrx, &ntx);
	if (ret != 0)
		return ret;
	for (uint16_t q = 0; q < p->n_queues; q++) {
		struct rte_eth_txconf txc = info.default_txconf;

		txc.offloads = p->tx_offloads;
		ret = rte_eth_rx_queue_setup(p->port_id, q, nrx, (unsigned int)socket,
			NULL, p->pool);
		if (ret == 0)
			ret = rte_eth_tx_queue_setup(p->port_id, q, ntx,
				(unsigned int)socket, &txc);
		if (ret != 0) {
			DP_LOG(ERR, "port=%s queue=%u setup: %s", p->name, q,
				rte_strerror(-ret));
			return ret;
		}
	}
	ret = rte_eth_dev_set_mtu(p->port_id, c->mtu);
	if (ret != 0 && c->mtu != RTE_ETHER_MTU) {
		/* segments sized for an MTU the port does not take would be lost */
		DP_LOG(ERR, "port=%s mtu=%u: %s", p->name, c->mtu, rte_strerror(-ret));
		return ret;
	}
	if (ret != 0 && ret != -ENOTSUP)
		DP_LOG(WARNING, "port=%s mtu=%u: %s", p->name, c->mtu, rte_strerror(-ret));
	ret = rte_eth_dev_start(p->port_id);
	if (ret != 0) {
		DP_LOG(ERR, "port=%s start: %s", p->name, rte_strerror(-ret));
		return ret;
	}
	ret = rte_eth_macaddr_get(p->port_id, &mac);
	if (ret != 0)
		return ret;
	p->ifa.mac = mac;
	DP_LOG(INFO, "port=%s driver=%s queues=%u mac=" RTE_ETHER_ADDR_PRT_FMT
		" tx_cksum_offload=%s", p->name, p->driver, p->n_queues,
		RTE_ETHER_ADDR_BYTES(&mac), p->tx_offloads == want ? "yes" : "no");
	return 0;
}

void
dp_port_fini(struct dp_port *p)
{
	rte_eth_dev_stop(p->port_id);
	rte_eth_dev_close(p->port_id);
	rte_mempool_free(p->pool);
	p->pool = NULL;
}
