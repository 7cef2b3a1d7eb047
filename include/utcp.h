/*
 * utcp: the userspace TCP stack of the mailpump workers (client side, one
 * stack per lcore, share-nothing). This header is free of DPDK: the stack is
 * driven by plain calls with a caller-supplied clock and hands finished
 * segments to an emit callback, so the dp_ glue maps it onto mbufs and unit
 * tests drive it through a simulated link.
 *
 * Call order in a worker loop:
 *   utcp_input() for each received TCP segment, utcp_icmp_input() for ICMP
 *   errors quoting TCP, utcp_timers(), then the session work drains
 *   utcp_events() and calls utcp_connect/send/recv/shutdown/close, then
 *   utcp_output() emits what is pending through conf->emit.
 * The emit callback is only ever called from utcp_output(); no function of
 * this API calls back into user code from inside input or timers.
 *
 * All addresses, ports and header fields are in host byte order.
 * All memory is allocated by utcp_stack_new(); nothing is allocated later.
 */
#ifndef UTCP_H
#define UTCP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/** Upper bound of syn_retries, data_retries and orphan_retries. */
#define UTCP_RETRIES_MAX 100
#define UTCP_FIN 0x01
#define UTCP_SYN 0x02
#define UTCP_RST 0x04
#define UTCP_PSH 0x08
#define UTCP_ACK 0x10
#define UTCP_URG 0x20

#define UTCP_MAX_LADDR 16
#define UTCP_MAX_OPTLEN 40

struct utcp_stack;
struct utcp_conn;

/** One outgoing segment, valid only during the emit callback. */
struct utcp_seg_out {
	uint32_t saddr, daddr;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;			/**< UTCP_SYN|UTCP_ACK|... */
	uint8_t optlen;			/**< bytes of opts, multiple of 4 */
	uint16_t wnd;			/**< already scaled down for the wire */
	uint8_t opts[UTCP_MAX_OPTLEN];	/**< TCP options, wire format */
	uint32_t len;			/**< payload bytes = iov[0].len + iov[1].len */
	struct {
		const void *ptr;
		uint32_t len;
	} iov[2];			/**< payload pieces (point into the send buffer) */
	void *user;			/**< user pointer of the connection, or NULL */
};

/** One received segment; the glue has checked IP and TCP checksums. */
struct utcp_seg_in {
	uint32_t saddr, daddr;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t wnd;			/**< raw window field */
	const uint8_t *opts;		/**< raw option bytes (after the 20-byte header) */
	uint8_t optlen;
	const void *payload;
	uint32_t len;
};

enum utcp_cc_algo {
	UTCP_CC_CUBIC = 0,		/**< RFC 9438, the default */
	UTCP_CC_NEWRENO,		/**< RFC 5681 + RFC 6582 */
	UTCP_CC_LAST
};

/**
 * Stack configuration. Zero means "default" for every numeric field.
 */
struct utcp_conf {
	uint32_t max_conns;		/**< connection objects (default 1024) */
	uint32_t max_tw;		/**< TIME_WAIT records (default max_conns) */
	uint32_t sndbuf;		/**< send buffer bytes per connection (default 65536) */
	uint32_t rcvbuf;		/**< receive buffer bytes per connection (default 65536) */
	uint32_t nsndbuf;		/**< send buffers in the pool (default max_conns) */
	uint32_t nrcvbuf;		/**< receive buffers in the pool (default max_conns) */
	uint32_t laddr[UTCP_MAX_LADDR];	/**< local IPv4 source addresses */
	unsigned nladdr;
	uint16_t mss;			/**< our MSS = MTU - 40 (default 1460) */
	uint16_t port_min, port_max;	/**< ephemeral range (default 32768..60999) */
	uint32_t rto_init_us;		/**< default 1 s (RFC 6298) */
	uint32_t rto_min_us;		/**< default 200 ms (as Linux; RFC 6298 says 1 s) */
	uint32_t rto_max_us;		/**< default 60 s */
	uint32_t syn_retries;		/**< SYN retransmissions before TIMEOUT (default 6, at most UTCP_RETRIES_MAX) */
	uint32_t data_retries;		/**< RTO retransmissions before TIMEOUT (default 15, at most UTCP_RETRIES_MAX) */
	uint32_t delack_us;		/**< delayed-ACK bound (default 40 ms) */
	uint32_t time_wait_us;		/**< TIME_WAIT length (default 60 s) */
	uint32_t challenge_ack_limit;	/**< stack-wide challenge ACKs per second, randomised up to 2x (default 1000) */
	uint32_t challenge_ack_conn_limit;	/**< challenge ACKs per second per connection (default 10) */
	uint32_t orphan_retries;	/**< probes/RTOs of a closed connection before RST (default 8, at most UTCP_RETRIES_MAX) */
	uint32_t orphan_timeout_us;	/**< lifetime of a closed connection (default 60 s) */
	/**
	 * At most one ACK per connection in this interval (default 500 ms, as
	 * Linux's tcp_invalid_ratelimit) to a segment without data that fails
	 * PAWS, lies outside the window or acknowledges what was not sent: a
	 * spoofed flood, or two stacks in an ACK loop, cannot eat the output.
	 * Segments with data always get their duplicate ACK.
	 */
	uint32_t oow_ack_interval_us;
	/** RSTs per second to segments for no connection (default 1000). */
	uint32_t rst_limit;
	enum utcp_cc_algo cc;
	int no_timestamps, no_sack, no_wscale;	/**< disable an option */
	/**
	 * ICMP host/net unreachable (and the other codes but "fragmentation
	 * needed") while connecting: 0 (default) fails the connect at once
	 * with UNREACHABLE, as Linux does, so a sender moves on to its next
	 * MX; 1 treats them as soft errors (RFC 1122 4.2.3.9): the connect
	 * goes on and reports UNREACHABLE only when its SYN retries run out.
	 */
	int icmp_soft_connect;
	/**
	 * Black-hole detection (RFC 4821 7.7, Linux tcp_mtu_probing=1): after
	 * this many RTOs in a row (default 3), a connection lowers its MSS
	 * to 1024, then to 536: a path that drops large segments without
	 * the "fragmentation needed" ICMP (a filtering firewall) otherwise
	 * kills every connection that sends a full segment. no_blackhole
	 * turns it off.
	 */
	uint32_t blackhole_rtos;
	int no_blackhole;
	/**
	 * A path MTU learnt from "fragmentation needed" is kept per remote
	 * address for this long (default 600 s, Linux mtu_expires), so the
	 * next connections to it start with it. no_pmtu_cache turns it off.
	 */
	uint32_t pmtu_expire_us;
	int no_pmtu_cache;
	uint8_t secret[16];		/**< port/ISN key; all zero = random */
	/** Emit one segment; return 0, or < 0 to stop utcp_output (no buffer). */
	int (*emit)(void *ctx, const struct utcp_seg_out *seg);
	/** Optional: return non-zero if this 4-tuple is steered to this lcore. */
	int (*port_ok)(void *ctx, uint32_t saddr, uint32_t daddr,
		uint16_t sport, uint16_t dport);
	void *ctx;			/**< passed to emit and port_ok */
};

enum utcp_state {
	UTCP_CLOSED = 0,
	UTCP_LISTEN,
	UTCP_SYN_SENT,
	UTCP_SYN_RCVD,
	UTCP_ESTABLISHED,
	UTCP_FIN_WAIT_1,
	UTCP_FIN_WAIT_2,
	UTCP_CLOSING,
	UTCP_TIME_WAIT,
	UTCP_CLOSE_WAIT,
	UTCP_LAST_ACK,
	UTCP_STATE_LAST
};

enum utcp_ev_type {
	UTCP_EV_CONNECTED = 0,	/**< active open completed */
	UTCP_EV_ACCEPTED,	/**< passive open completed (user = listener's) */
	UTCP_EV_READABLE,	/**< new in-order data */
	UTCP_EV_WRITABLE,	/**< send space after a short utcp_send */
	UTCP_EV_PEER_CLOSED,	/**< FIN received: utcp_recv returns 0 once drained */
	UTCP_EV_CLOSED,		/**< orderly close finished; call utcp_close */
	UTCP_EV_ERROR,		/**< connection dead (reason); call utcp_close */
	UTCP_EV_LAST
};

enum utcp_err_reason {
	UTCP_ERR_NONE = 0,
	UTCP_ERR_REFUSED,	/**< RST in answer to our SYN */
	UTCP_ERR_TIMEOUT,	/**< SYN or data retransmission limit */
	UTCP_ERR_RESET,		/**< RST on a synchronized connection */
	UTCP_ERR_UNREACHABLE,	/**< ICMP hard error, or soft error then timeout */
	UTCP_ERR_LAST
};

struct utcp_event {
	enum utcp_ev_type type;
	enum utcp_err_reason reason;	/**< for UTCP_EV_ERROR */
	struct utcp_conn *conn;
	void *user;
};

enum utcp_drop {
	UTCP_DROP_NOCONN = 0,	/**< no connection, answered with RST */
	UTCP_DROP_BADACK,	/**< unacceptable ACK */
	UTCP_DROP_OUTWIN,	/**< sequence outside the window */
	UTCP_DROP_PAWS,		/**< old timestamp */
	UTCP_DROP_BADRST,	/**< RST not exactly at RCV.NXT */
	UTCP_DROP_BADSYN,	/**< SYN on a synchronized connection */
	UTCP_DROP_NOBUF,	/**< data without a receive buffer */
	UTCP_DROP_OOO_FULL,	/**< too many out-of-order ranges */
	UTCP_DROP_OPTS,		/**< malformed options: parsed up to the bad one, segment kept */
	UTCP_DROP_CTLQ,		/**< control segment queue full */
	UTCP_DROP_NOCONN_POOL,	/**< SYN to a listener, no connection object */
	UTCP_DROP_LAST
};

/** Per-stack counters; read with utcp_stack_counters(). */
struct utcp_counters {
	uint64_t segs_in, segs_out, bytes_in, bytes_out;
	uint64_t retransmits;		/**< segments sent again */
	uint64_t rto_fired, fast_recoveries, syn_retransmits;
	uint64_t sack_reneged;		/**< RTOs that found the peer dropped SACKed data */
	uint64_t challenge_acks, rst_sent, rst_in;
	uint64_t persist_probes, delayed_acks;
	uint64_t orphan_aborts;		/**< closed connections reset at the orphan bound */
	uint64_t oow_acks_limited;	/**< ACKs not sent to invalid segments (oow_ack_interval_us) */
	uint64_t rst_limited;		/**< RSTs not sent to unknown tuples (rst_limit) */
	uint64_t tw_reused, tw_recycled;	/**< TIME_WAIT reuse (RFC 6191) / pool full */
	uint64_t icmp_in, pmtu_reductions;
	uint64_t blackhole_mss_reductions;	/**< MSS lowered after repeated RTOs */
	uint64_t pmtu_cached;		/**< connections started at a cached path MTU */
	uint64_t drops[UTCP_DROP_LAST];
	uint32_t conns_by_state[UTCP_STATE_LAST];	/**< live connection objects */
	uint32_t tw_records;
	uint32_t conn_free, sndbuf_free, rcvbuf_free, tw_free;
};

/** Per-connection information for tests and stats. */
struct utcp_conn_info {
	enum utcp_state state;
	uint32_t laddr, raddr;
	uint16_t lport, rport;
	uint32_t mss;			/**< current send MSS (payload + options) */
	uint32_t cwnd, ssthresh, snd_wnd, rcv_wnd;
	uint32_t srtt_us, rttvar_us, rto_us;
	uint32_t snd_queued;		/**< bytes in the send buffer (unacked + unsent) */
	uint32_t rcv_queued;		/**< bytes readable */
	uint8_t snd_wscale, rcv_wscale;
	uint8_t ts_ok, sack_ok;
};

/**
 * Create a stack; all memory is allocated here.
 * @return the stack, or NULL with errno EINVAL (bad conf) or ENOMEM.
 */
struct utcp_stack *utcp_stack_new(const struct utcp_conf *conf);
/** Free a stack and everything it owns (connection handles included). */
void utcp_stack_free(struct utcp_stack *st);

/** Snapshot of the counters (state and pool counts are current). */
void utcp_stack_counters(const struct utcp_stack *st, struct utcp_counters *out);

/**
 * Set the stack clock without doing anything else. The stack also takes the
 * clock from utcp_input/utcp_timers/utcp_output; utcp_connect uses the last
 * one seen (for the ISN and timestamps).
 */
void utcp_clock(struct utcp_stack *st, uint64_t now_us);

/**
 * Start an active open.
 * @param saddr local address, 0 = pick one from conf->laddr.
 * @return the connection, or NULL with errno EADDRNOTAVAIL (no ephemeral
 *   port left, or saddr not configured), ENOMEM (no connection object),
 *   EINVAL (daddr or dport 0).
 */
struct utcp_conn *utcp_connect(struct utcp_stack *st, uint32_t saddr,
	uint32_t daddr, uint16_t dport, void *user);

/**
 * Passive open: accept connections to (addr, port); addr 0 = any.
 * Meant for back-to-back tests. New connections appear as UTCP_EV_ACCEPTED
 * with the listener's user pointer.
 * @return 0, -EADDRINUSE, -ENOSPC (listener table full), -EINVAL.
 */
int utcp_listen(struct utcp_stack *st, uint32_t addr, uint16_t port, void *user);

/**
 * Queue bytes for sending.
 * @return bytes accepted (0..len; short when the send buffer is full, then
 *   UTCP_EV_WRITABLE follows), or -ENOTCONN (not yet or no more allowed to
 *   send: shut down, closed, error), -ENOBUFS (send-buffer pool empty).
 */
ssize_t utcp_send(struct utcp_conn *c, const void *buf, size_t len);
/** Like utcp_send for an iovec. */
ssize_t utcp_sendv(struct utcp_conn *c, const struct iovec *iov, int n);

/**
 * Read in-order bytes.
 * @return bytes copied, 0 at end of stream (FIN received and all read),
 *   -EAGAIN (nothing yet), -ENOTCONN (connection dead or never established).
 */
ssize_t utcp_recv(struct utcp_conn *c, void *buf, size_t cap);

/**
 * Half-close: send FIN after the queued data.
 * @return 0, -ENOTCONN (not connected), -EALREADY (already shut down).
 */
int utcp_shutdown(struct utcp_conn *c);

/**
 * Release the handle. The stack finishes the close (FIN after queued data,
 * or RST if unread data remains) and frees the connection; no more events.
 */
void utcp_close(struct utcp_conn *c);

/** Release the handle and reset the connection (RST sent). */
void utcp_abort(struct utcp_conn *c);

void *utcp_conn_user(const struct utcp_conn *c);
void utcp_conn_set_user(struct utcp_conn *c, void *user);
enum utcp_state utcp_conn_state(const struct utcp_conn *c);
void utcp_conn_get_info(const struct utcp_conn *c, struct utcp_conn_info *out);
const char *utcp_state_name(enum utcp_state s);
const char *utcp_ev_name(enum utcp_ev_type t);
const char *utcp_err_name(enum utcp_err_reason r);

/**
 * Drain queued events (per connection in order: CONNECTED/ACCEPTED,
 * READABLE, WRITABLE, PEER_CLOSED, ERROR/CLOSED).
 * @return number of events written to ev (0..max).
 */
int utcp_events(struct utcp_stack *st, struct utcp_event *ev, int max);

/** Process one received segment. */
void utcp_input(struct utcp_stack *st, const struct utcp_seg_in *seg, uint64_t now_us);

/**
 * Process an ICMP error quoting one of our segments (the quoted IP source is
 * ours). type 3 (destination unreachable): codes 2, 3 are hard errors
 * (abort in SYN_SENT, ERROR UNREACHABLE); codes 0, 1, 5..15 are soft (kept,
 * reported as UNREACHABLE if the connection then times out); code 4
 * (fragmentation needed) lowers the MSS to next_hop_mtu - 40 and resends.
 * @param seq the quoted TCP sequence number (checked against the window).
 */
void utcp_icmp_input(struct utcp_stack *st, uint8_t type, uint8_t code,
	uint16_t next_hop_mtu, uint32_t saddr, uint32_t daddr,
	uint16_t sport, uint16_t dport, uint32_t seq, uint64_t now_us);

/** Run expired timers (retransmission, delayed ACK, persist, TIME_WAIT). */
void utcp_timers(struct utcp_stack *st, uint64_t now_us);

/**
 * Emit pending segments through conf->emit, at most budget of them.
 * @return segments emitted.
 */
int utcp_output(struct utcp_stack *st, uint64_t now_us, int budget);

/** @return the earliest pending timer deadline, or UINT64_MAX if none. */
uint64_t utcp_next_timer(const struct utcp_stack *st);

/** sizeof(struct utcp_conn), for reports. */
size_t utcp_conn_size(void);

/**
 * Bytes of stack state, for reports: everything utcp_stack_new() allocated
 * except the send and receive buffers (connection objects, 4-tuple and
 * TIME_WAIT tables and records, control-segment queue, buffer index
 * stacks, the stack itself with its timer wheel). Divided by
 * utcp_stack_max_conns() it is what one connection costs besides its data
 * buffers, which an idle connection does not hold.
 */
size_t utcp_stack_state_bytes(const struct utcp_stack *st);
/** @return the number of connection objects (conf max_conns after defaults). */
uint32_t utcp_stack_max_conns(const struct utcp_stack *st);

#endif
