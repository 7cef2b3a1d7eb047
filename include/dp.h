/*
 * The dataplane as the daemon sees it: configuration, EAL start, the port,
 * worker lcores and their counters.
 *
 * Call order: dp_conf_defaults() and dp_conf_parse_arg() (or fill the
 * struct), dp_eal_init(), dp_port_init(), dp_workers_start(); then the main
 * lcore loops on dp_stats_*() until dp_stop is set (SIGINT/SIGTERM or a
 * duration); dp_workers_stop(), dp_port_fini(), rte_eal_cleanup().
 */
#ifndef DP_H
#define DP_H

#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <rte_common.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "dp_arp.h"
#include "dp_proto.h"

#define DP_MAX_WORKERS 16
#define DP_RX_BURST 32
#define DP_TX_BUF 64

struct dp_conf {
	char vdev[256];                 /* e.g. "net_tap0,iface=mp0" */
	char pci[64];                   /* PCI address: a real NIC instead */
	char file_prefix[64];
	char lcores[128];               /* EAL --lcores value */
	int huge;                       /* -1 auto, 0 no, 1 yes */
	unsigned int mem_mb;            /* with --no-huge */
	unsigned int n_mbufs;
	struct dp_ifaddr ifa;
	uint16_t mtu;
	char stats_file[256];
	unsigned int stats_interval_ms;
	unsigned int ping_gw;           /* echo requests to the gateway at start */
	unsigned int garp_count;        /* gratuitous ARPs at start, 1 s apart */
	unsigned int duration_s;        /* 0 = until a signal */
	unsigned int idle_sleep_max_us; /* longest idle back-off */
	int eal_argc;                   /* passed through after "--" */
	char **eal_argv;
};

/* Per-worker counters: written by the owning worker only, read by the
 * main lcore with relaxed loads. */
struct dp_counters {
	uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes;
	uint64_t drops[DP_DROP_LAST];
	uint64_t arp_rx, arp_req_tx, arp_reply_tx, garp_tx;
	uint64_t icmp_echo_rx, icmp_echo_reply_tx, icmp_echo_reply_rx;
	uint64_t icmp_echo_tx, icmp_unreach_rx;
	uint64_t tcp_rx;
	uint64_t redirect_in, redirect_out;
	uint64_t loops, busy_loops, busy_cycles, idle_sleeps;
	uint64_t tx_stalls;		/* segments held back: the NIC ring was full */
};

struct dp_worker;

/* What a layer above (the TCP stack) takes from the worker loop. */
struct dp_hooks {
	/** A TCP segment to one of our addresses; owns m. */
	void (*tcp_input)(struct dp_worker *w, struct rte_mbuf *m,
		const struct dp_pkt_info *info);
	/** Destination unreachable quoting one of our packets; owns m. */
	void (*icmp_unreach)(struct dp_worker *w, struct rte_mbuf *m,
		const struct dp_pkt_info *info);
	/** Session work and output; @return units of work done. */
	int (*poll)(struct dp_worker *w, uint64_t now_tsc);
	void *ctx;
};

struct dp_port {
	uint16_t port_id;
	uint16_t n_queues;
	uint64_t tx_offloads;           /* offloads enabled on the port */
	struct rte_mempool *pool;
	struct dp_ifaddr ifa;           /* mac filled from the port */
	char name[64];
	char driver[32];
};

struct dp_worker {
	unsigned int id;
	unsigned int lcore;
	uint16_t queue;
	struct dp_port *port;
	const struct dp_conf *conf;
	struct rte_ring *redirect;      /* frames other workers pass to us */
	struct dp_worker *peers;        /* all workers, peers[id] == this */
	unsigned int n_peers;
	struct dp_arp_table arp;
	struct dp_hooks hooks;
	uint64_t hz;
	uint64_t now_us;
	uint64_t tx_deadline;
	uint16_t tx_n;
	uint16_t ip_id;
	unsigned int garp_left;
	unsigned int ping_left;
	uint64_t next_tick, next_garp, next_ping;
	struct rte_mbuf *tx[DP_TX_BUF];
	struct dp_counters cnt;
} __rte_cache_aligned;

extern volatile int dp_stop;

/* Dataplane command-line options (dp_options.c). Programs number their
 * own options from DP_OPT_LAST. */
enum {
	DP_OPT_VDEV = 256, DP_OPT_PCI, DP_OPT_IP, DP_OPT_GW, DP_OPT_LCORES,
	DP_OPT_PREFIX, DP_OPT_HUGE, DP_OPT_MEM, DP_OPT_MBUFS, DP_OPT_MTU,
	DP_OPT_STATS_FILE, DP_OPT_STATS_IVL, DP_OPT_PING_GW, DP_OPT_GARP,
	DP_OPT_IDLE, DP_OPT_DURATION, DP_OPT_LAST
};

extern const struct option dp_long_options[];
extern const size_t dp_long_options_n;
void dp_options_usage(FILE *f);
/** Apply one dataplane option. @return 0 or -EINVAL (bad value or not ours) */
int dp_conf_apply_option(struct dp_conf *c, int opt, const char *arg);
/** @return the long name of a dataplane option, for error messages. */
const char *dp_option_name(int opt);
/** Parse an unsigned decimal no larger than max. @return 0 or -EINVAL */
int dp_parse_uint(const char *s, unsigned int max, unsigned int *out);

void dp_conf_defaults(struct dp_conf *c);
/**
 * Parse "A.B.C.D/len" into c->ifa (appends an address; the prefix of the
 * first one is the subnet). @return 0 or -EINVAL
 */
int dp_conf_add_ip(struct dp_conf *c, const char *cidr);
/** @return 0 or -EINVAL */
int dp_conf_set_gw(struct dp_conf *c, const char *ip);
/** Check a filled configuration; @return 0 or -EINVAL with msg set. */
int dp_conf_check(const struct dp_conf *c, char *msg, size_t len);

/**
 * Start EAL from the configuration: --no-pci and the virtual device unless
 * a PCI address is set, hugepages when reserved (in-memory mode: no files
 * left behind) else --no-huge. @return number of EAL args consumed or <0.
 */
int dp_eal_init(const struct dp_conf *c, const char *prog);

/**
 * The signals a PMD may raise per received frame (the tap PMD's Rx trigger:
 * SIGIO or a real-time signal). dp_eal_init() blocks them in the calling
 * thread before EAL creates its threads; worker lcores unblock them, so
 * they land on a worker instead of waking the main lcore. The main thread
 * keeps them blocked (so would a child it forks and execs: unblock first).
 * @param set filled with SIGIO and SIGRTMIN..SIGRTMAX
 */
void dp_signals_for_workers(sigset_t *set);

/** @return 1 when 2 MB hugepages are mounted with at least mb free. */
int dp_huge_available(unsigned int mb);

/** Configure and start the port with n_queues queue pairs. @return 0 or -errno */
int dp_port_init(struct dp_port *p, const struct dp_conf *c, unsigned int n_queues);
void dp_port_fini(struct dp_port *p);

/**
 * Create one worker per worker lcore and launch them.
 * @param setup  called for each worker before any is launched (attach a
 *   TCP stack, set hooks); NULL for none. A negative return aborts.
 * @return number of workers, or -errno
 */
int dp_workers_start(struct dp_port *p, const struct dp_conf *c,
	struct dp_worker **out, int (*setup)(struct dp_worker *w, void *arg),
	void *arg);
void dp_workers_stop(struct dp_worker *w, unsigned int n);

/** The worker loop (lcore entry). */
int dp_worker_main(void *arg);

/** Hand a frame to worker `to` through its redirect ring (it owns m after). */
void dp_worker_redirect(struct dp_worker *w, unsigned int to, struct rte_mbuf *m);

/** Queue an IPv4 packet (Ethernet header room at the front) to next_hop. */
void dp_worker_ip_send(struct dp_worker *w, struct rte_mbuf *m, uint32_t next_hop);
/**
 * Frames the worker can still queue for the NIC, after trying to hand it
 * what is queued. 0: its ring is full; a sender should hold its segment
 * (utcp keeps it for the next output) rather than have it dropped.
 */
int dp_worker_tx_room(struct dp_worker *w);

/** Sum of all workers' counters; arp stats added into *arp when not NULL. */
void dp_stats_sum(const struct dp_worker *w, unsigned int n,
	struct dp_counters *sum, struct dp_arp_stats *arp);
/** Write the counters as one JSON object. */
void dp_stats_json(FILE *f, const struct dp_port *p, const struct dp_worker *w,
	unsigned int n);
/** Write JSON to path atomically (temp file + rename). @return 0 or -errno */
int dp_stats_write_file(const char *path, const struct dp_port *p,
	const struct dp_worker *w, unsigned int n);
/** Human-readable table of the counters. */
void dp_stats_print(FILE *f, const struct dp_worker *w, unsigned int n);
/** Register /mailpump/stats with DPDK telemetry. */
void dp_stats_telemetry_register(const struct dp_port *p,
	const struct dp_worker *w, unsigned int n);

extern int dp_logtype;
#define DP_LOG(level, fmt, ...) \
	rte_log(RTE_LOG_ ## level, dp_logtype, "dp: " fmt "\n", ##__VA_ARGS__)

#endif
