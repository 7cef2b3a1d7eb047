/*
 * Private definitions shared by the utcp_*.c files: the stack, the
 * connection object, TIME_WAIT records and the internal calls between
 * input, output, timers, congestion control and the SACK scoreboard.
 * Not installed; unit tests include it to reach the pure helpers.
 */
#ifndef UTCP_IMPL_H
#define UTCP_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "utcp.h"
#include "utcp_seq.h"

#define UTCP_WHEEL_SLOTS 1024u		/* power of two */
#define UTCP_TICK_US 1000u		/* wheel granularity */
#define UTCP_SACK_BLOCKS 8		/* sender scoreboard ranges */
#define UTCP_OOO_RANGES 4		/* receiver out-of-order ranges */
#define UTCP_PMTU_SLOTS 256		/* path MTU cache entries (a few KB) */
#define UTCP_CTLQ_MIN 256		/* queued stateless segments, at least */
#define UTCP_MAX_LISTEN 8
#define UTCP_DUPTHRESH 3
#define UTCP_PORT_TABLE 256		/* RFC 6056 alg. 3 table size */
#define UTCP_NO_BUF UINT32_MAX

/* Connection flags (c->flags). */
enum {
	UTCP_F_RELEASED = 1u << 0,	/* user called utcp_close: orphan */
	UTCP_F_HANDED = 1u << 1,	/* the user knows the handle */
	UTCP_F_HASHED = 1u << 2,	/* in the 4-tuple table */
	UTCP_F_FIN_QUEUED = 1u << 3,	/* shutdown: FIN after the data */
	UTCP_F_FIN_RCVD = 1u << 4,
	UTCP_F_TS = 1u << 5,		/* timestamps negotiated */
	UTCP_F_SACK = 1u << 6,		/* SACK negotiated */
	UTCP_F_WS = 1u << 7,		/* window scaling negotiated */
	UTCP_F_ACK_NOW = 1u << 8,	/* send an ACK at the next output */
	UTCP_F_IN_OUTQ = 1u << 9,
	UTCP_F_IN_EVQ = 1u << 10,
	UTCP_F_IN_WHEEL = 1u << 11,
	UTCP_F_RECOVERY = 1u << 12,	/* fast recovery (NewReno or RFC 6675) */
	UTCP_F_RTT_TIMING = 1u << 13,	/* Karn timing of rtt_seq running */
	UTCP_F_PERSIST = 1u << 14,	/* zero window, probing */
	UTCP_F_WANT_WRITE = 1u << 15,	/* short write: WRITABLE later */
	UTCP_F_PASSIVE = 1u << 16,
	UTCP_F_SYN_REXMIT = 1u << 17,	/* our SYN was retransmitted: IW = 1 */
	UTCP_F_REXMIT_UNA = 1u << 18,	/* NewReno: resend the first segment */
	UTCP_F_DEAD = 1u << 19,		/* error reported, no more protocol */
	UTCP_F_PROBE = 1u << 20,	/* persist timer fired: send a probe */
	UTCP_F_CWND_LIMITED = 1u << 21,	/* cwnd held data back this window */
	UTCP_F_FIN_OOO = 1u << 22,	/* the peer's FIN is at fin_seq, not yet taken */
};

/* Pending events (c->ev_bits), delivered in bit order. */
#define UTCP_EVB(t) (1u << (t))

struct utcp_sack_block {
	uint32_t start, end;
};

/* Sender-side scoreboard (RFC 6675), ranges sorted, disjoint. */
struct utcp_scoreboard {
	struct utcp_sack_block blk[UTCP_SACK_BLOCKS];
	uint8_t n;
	uint32_t sacked;		/* bytes in blk[] */
	uint32_t high_rxt;		/* RFC 6675 HighRxt */
};

struct utcp_rtt {
	uint32_t srtt, rttvar, rto;	/* microseconds; srtt 0 = no sample yet */
	uint32_t rto_min, rto_max;
};

struct utcp_cubic {
	double w_max;			/* segments */
	double k;			/* seconds */
	double w_est;			/* segments */
	uint64_t epoch_start;		/* us; 0 = no epoch */
};

struct utcp_conn {
	TAILQ_ENTRY(utcp_conn) wheel;	/* timer wheel slot */
	TAILQ_ENTRY(utcp_conn) outq;	/* pending output */
	TAILQ_ENTRY(utcp_conn) evq;	/* pending events */
	struct utcp_conn *hnext;	/* 4-tuple chain / free list */
	struct utcp_stack *st;
	void *user;

	uint32_t laddr, raddr;
	uint16_t lport, rport;
	uint8_t state;
	uint8_t err;			/* enum utcp_err_reason to report */
	uint8_t soft_err;		/* ICMP soft error seen */
	uint8_t snd_wscale, rcv_wscale;
	uint8_t retries;		/* consecutive RTO expiries */
	uint8_t dupacks;
	uint8_t ooo_n;
	uint8_t probes;			/* zero-window probes not answered */
	uint8_t orphan_probes;		/* probes sent since utcp_close */
	uint8_t acks_owed;		/* extra duplicate ACKs to send (no SACK) */
	uint32_t flags;
	uint32_t ev_bits;

	/* send side */
	uint32_t iss, snd_una, snd_nxt, snd_max;
	uint32_t snd_wnd, max_snd_wnd, snd_wl1, snd_wl2;
	uint32_t buf_seq;		/* sequence of sndbuf's first byte */
	uint32_t snd_len;		/* bytes in sndbuf from buf_seq */
	uint32_t snd_head;		/* ring offset of buf_seq */
	uint32_t sndbuf;		/* pool index or UTCP_NO_BUF */
	uint32_t recover;		/* RFC 6582 / 6675 RecoveryPoint */
	uint32_t mss;			/* send MSS incl. options (per RFC 6691) */
	uint32_t cwnd, ssthresh;
	uint32_t max_flight;		/* largest flight of the last window (RFC 7661) */
	uint32_t cwnd_usage_seq;	/* end of that window */
	uint64_t last_tx;		/* us of the last new data sent (idle restart) */
	uint32_t rtt_seq;
	uint64_t rtt_time;
	struct utcp_rtt rtt;
	struct utcp_scoreboard sb;
	struct utcp_cubic cubic;

	/* receive side */
	uint32_t irs, rcv_nxt, rcv_adv;	/* rcv_adv = right edge advertised */
	uint32_t rcv_head, rcv_len;	/* ring offset and bytes readable */
	uint32_t rcvbuf;		/* pool index or UTCP_NO_BUF */
	uint32_t unacked_bytes;		/* in-order bytes since our last ACK */
	uint32_t fin_seq;		/* sequence of a FIN held out of order */
	struct utcp_sack_block ooo[UTCP_OOO_RANGES];	/* most recent first */
	uint32_t ts_recent, last_ack_sent, ts_offset;

	/* timers, absolute microseconds, 0 = off */
	uint64_t chal_epoch;		/* second of chal_count */
	uint32_t chal_count;		/* challenge ACKs sent in it */
	uint64_t oow_ack_at;		/* last ACK to an invalid segment */
	uint64_t rto_at, delack_at, persist_at, linger_at;
	uint64_t timer_at;		/* slot the connection is filed under */
};

struct utcp_tw {
	TAILQ_ENTRY(utcp_tw) fifo;	/* expiry order */
	struct utcp_tw *hnext;
	uint32_t laddr, raddr;
	uint16_t lport, rport;
	uint32_t snd_nxt, rcv_nxt;
	uint32_t ts_recent, ts_last;	/* peer's and our last timestamp */
	uint32_t rcv_wnd;
	uint64_t expire;
	uint8_t ts_ok;
};

/* A segment that needs no connection: RST, TIME_WAIT ACK, challenge ACK. */
struct utcp_ctl {
	uint32_t saddr, daddr;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags, has_ts;
	uint16_t wnd;
	uint32_t tsval, tsecr;
};

struct utcp_listener {
	uint32_t addr;
	uint16_t port;
	bool used;
	void *user;
};

TAILQ_HEAD(utcp_conn_list, utcp_conn);
TAILQ_HEAD(utcp_tw_list, utcp_tw);

struct utcp_stack {
	struct utcp_conf conf;
	uint64_t now;
	uint8_t key[16];

	struct utcp_conn *conns;
	struct utcp_conn *conn_free;
	struct utcp_conn *conn_defer;	/* freed, recycled at the next events/output call */
	struct utcp_conn **htab;
	uint32_t hmask;

	struct utcp_tw *tws;
	struct utcp_tw *tw_free;
	struct utcp_tw **twtab;
	uint32_t twmask;
	struct utcp_tw_list tw_fifo;

	uint8_t *sndmem, *rcvmem;
	uint32_t *snd_free, *rcv_free;	/* index stacks */
	uint32_t nsnd_free, nrcv_free;

	struct utcp_conn_list wheel[UTCP_WHEEL_SLOTS];
	uint64_t wheel_tick;		/* last tick processed */
	struct utcp_conn_list outq;
	struct utcp_conn_list evq;

	struct utcp_ctl *ctlq;		/* ring of ctl_cap entries */
	uint32_t ctl_cap, ctl_head, ctl_n;

	struct utcp_listener lst[UTCP_MAX_LISTEN];
	uint16_t port_next[UTCP_PORT_TABLE];
	unsigned laddr_rr;

	uint64_t chal_epoch;		/* second of the challenge-ACK budget */
	uint32_t chal_count;
	uint32_t chal_budget;		/* this second's randomised global budget */
	uint64_t rst_epoch;		/* second of rst_count */
	uint32_t rst_count;		/* RSTs to unknown tuples sent in it */

	/* path MTUs learnt from ICMP, direct-mapped by remote address */
	struct utcp_pmtu {
		uint32_t addr;
		uint16_t mtu;		/* 0 = empty */
		uint64_t expires;
	} pmtu[UTCP_PMTU_SLOTS];

	struct utcp_counters cnt;
};

/* utcp_conn.c */
void utcp_conn_set_state(struct utcp_conn *c, enum utcp_state s);
void utcp_conn_event(struct utcp_conn *c, enum utcp_ev_type t);
void utcp_conn_error(struct utcp_conn *c, enum utcp_err_reason why);
void utcp_conn_closed(struct utcp_conn *c);
void utcp_conn_free(struct utcp_conn *c);
void utcp_conn_reclaim(struct utcp_stack *st);
void utcp_conn_reset(struct utcp_conn *c);
void utcp_conn_enter_time_wait(struct utcp_conn *c);
struct utcp_conn *utcp_conn_lookup(struct utcp_stack *st, uint32_t laddr,
	uint16_t lport, uint32_t raddr, uint16_t rport);
struct utcp_conn *utcp_conn_alloc(struct utcp_stack *st);
void utcp_conn_hash(struct utcp_conn *c);
struct utcp_tw *utcp_tw_lookup(struct utcp_stack *st, uint32_t laddr,
	uint16_t lport, uint32_t raddr, uint16_t rport);
void utcp_tw_free(struct utcp_stack *st, struct utcp_tw *tw);
uint8_t *utcp_sndbuf_mem(const struct utcp_conn *c);
uint8_t *utcp_rcvbuf_mem(const struct utcp_conn *c);
int utcp_rcvbuf_attach(struct utcp_conn *c);
void utcp_bufs_release(struct utcp_conn *c);
uint32_t utcp_rcv_space(const struct utcp_conn *c);
void utcp_conn_init_cc(struct utcp_conn *c);

/* utcp_in.c */
struct utcp_opts {
	uint16_t mss;
	uint8_t ws;
	uint8_t has_mss, has_ws, sack_ok, has_ts, nsack;
	uint32_t tsval, tsecr;
	struct utcp_sack_block sack[4];
};
int utcp_opts_parse(const uint8_t *p, unsigned len, struct utcp_opts *o);

/* utcp_out.c */
void utcp_out_schedule(struct utcp_conn *c);
void utcp_out_ack_now(struct utcp_conn *c);
int utcp_out_conn(struct utcp_conn *c, int budget);
void utcp_ctl_queue(struct utcp_stack *st, const struct utcp_ctl *ctl);
void utcp_ctl_rst_for(struct utcp_stack *st, const struct utcp_seg_in *seg);
void utcp_out_challenge_ack(struct utcp_conn *c);
uint32_t utcp_tsval(const struct utcp_conn *c);
uint16_t utcp_wnd_field(const struct utcp_conn *c, bool syn);
uint32_t utcp_flight(const struct utcp_conn *c);

/* utcp_timer.c */
void utcp_timer_update(struct utcp_conn *c);
void utcp_timer_remove(struct utcp_conn *c);
void utcp_rto_arm(struct utcp_conn *c);
uint32_t utcp_rto_cur(const struct utcp_conn *c);
void utcp_rtt_init(struct utcp_rtt *r, uint32_t init, uint32_t min, uint32_t max);
void utcp_rtt_sample(struct utcp_rtt *r, uint32_t sample_us);

/* utcp_cc.c */
void utcp_cc_init(struct utcp_conn *c);
void utcp_cc_on_ack(struct utcp_conn *c, uint32_t acked);
void utcp_cc_on_loss(struct utcp_conn *c);
void utcp_cc_on_rto(struct utcp_conn *c);
void utcp_cc_validate(struct utcp_conn *c, bool cwnd_limited);
void utcp_cc_idle_restart(struct utcp_conn *c);
uint32_t utcp_cc_iw(uint32_t mss);

/* utcp_sack.c */
void utcp_sb_reset(struct utcp_scoreboard *sb);
uint32_t utcp_sb_update(struct utcp_scoreboard *sb, const struct utcp_sack_block *b,
	unsigned n, uint32_t snd_una, uint32_t snd_max);
void utcp_sb_ack(struct utcp_scoreboard *sb, uint32_t snd_una);
bool utcp_sb_is_sacked(const struct utcp_scoreboard *sb, uint32_t seq, uint32_t *end);
bool utcp_sb_is_lost(const struct utcp_scoreboard *sb, uint32_t seq, uint32_t mss);
bool utcp_sb_next_seg(const struct utcp_scoreboard *sb, uint32_t snd_una,
	uint32_t mss, uint32_t *seq, uint32_t *len);
uint32_t utcp_sb_pipe(const struct utcp_scoreboard *sb, uint32_t snd_una,
	uint32_t snd_max, uint32_t mss);
uint32_t utcp_sb_high(const struct utcp_scoreboard *sb);
void utcp_pmtu_learn(struct utcp_stack *st, uint32_t addr, uint32_t mtu);
uint32_t utcp_pmtu_get(struct utcp_stack *st, uint32_t addr);
uint32_t utcp_sb_next_start(const struct utcp_scoreboard *sb, uint32_t seq);
uint32_t utcp_sb_sacked_below(const struct utcp_scoreboard *sb, uint32_t seq);

/* utcp_port.c */
uint64_t utcp_siphash(const uint8_t key[16], const void *data, size_t len);
uint32_t utcp_isn(const struct utcp_stack *st, uint32_t laddr, uint16_t lport,
	uint32_t raddr, uint16_t rport, uint64_t now_us);
uint32_t utcp_ts_offset(const struct utcp_stack *st, uint32_t laddr, uint16_t lport,
	uint32_t raddr, uint16_t rport);
int utcp_port_pick(struct utcp_stack *st, uint32_t saddr, uint32_t daddr,
	uint16_t dport, uint16_t *port);

#endif
