/*
 * Glue between a worker and its userspace TCP stack: one utcp stack per
 * worker, mbufs in and out, checksums (offloaded when the port has it),
 * flow steering, ICMP errors, and an application that runs its session
 * work inside the worker loop.
 *
 * Steering: a connection belongs to the worker that opened it. With a NIC
 * whose RSS we can predict (Toeplitz key and redirection table readable),
 * source ports are picked so that the peer's packets hash to the owner's
 * queue. Otherwise (tap, af_packet, virtio) the owner is the local port
 * modulo the worker count, and a worker that receives another's segment
 * passes it on through the owner's redirect ring.
 *
 * Call order: dp_tcp_attach() for each worker after dp_workers_start()'s
 * allocation and before the loop runs (dp_workers_start() takes a setup
 * callback for this); from then on the worker loop drives everything.
 */
#ifndef DP_TCP_H
#define DP_TCP_H

#include <stdint.h>

#include "dp.h"
#include "utcp.h"

enum dp_steer_mode {
	DP_STEER_SOFT = 0,      /* local port % workers, ring redirect */
	DP_STEER_RSS,           /* Toeplitz + RETA of the NIC */
	DP_STEER_LAST
};

/* What a TCP application running on the worker provides. */
struct dp_tcp_app {
	/** One stack event; called from the worker loop, never from input. */
	void (*on_event)(void *app, struct dp_worker *w, const struct utcp_event *ev);
	/** Session work (open connections, send); @return units of work done. */
	int (*poll)(void *app, struct dp_worker *w, uint64_t now_us);
	void *ctx;              /* per worker */
};

struct dp_steer {
	enum dp_steer_mode mode;
	unsigned int n_workers;
	uint32_t reta_size;
	uint16_t reta[512];             /* RETA entry -> queue (= worker) */
	uint32_t key_be[10];            /* RSS key converted for rte_softrss_be */
};

struct dp_tcp_counters {
	uint64_t redirected, icmp_matched;
};

struct dp_tcp {
	struct dp_worker *w;
	struct utcp_stack *stack;
	struct dp_tcp_app app;
	const struct dp_steer *steer;
	struct dp_tcp_counters cnt;
	int hw_cksum;
};

/**
 * Steering for this port: RSS when the PMD gives a readable key and RETA
 * and is not a virtual device, software otherwise. @return 0 or -errno
 */
int dp_steer_init(struct dp_steer *s, const struct dp_port *p, unsigned int n_workers);

/** Toeplitz hash of an IPv4/TCP tuple as a NIC computes it (host order). */
uint32_t dp_steer_toeplitz(const uint32_t key_be[10], uint32_t sip, uint32_t dip,
	uint16_t sport, uint16_t dport);

/** The worker that owns the connection (our address/port, the peer's). */
unsigned int dp_steer_owner(const struct dp_steer *s, uint32_t laddr,
	uint16_t lport, uint32_t raddr, uint16_t rport);

/**
 * Give worker w a TCP stack built from conf (emit, port_ok and ctx are set
 * here) and run app on it. @return 0 or -errno
 */
int dp_tcp_attach(struct dp_worker *w, struct dp_tcp *t, const struct utcp_conf *conf,
	const struct dp_steer *steer, const struct dp_tcp_app *app);
void dp_tcp_detach(struct dp_tcp *t);

#endif
