/*
 * One utcp stack against a scripted peer: the test writes the peer's
 * segments by hand and checks each segment the stack emits. Covers the
 * handshake and option negotiation, window scaling, out-of-order
 * reassembly with SACK blocks (also across a peer ISN of 0xfffff000, with
 * the FIN ahead of a hole), every state transition (active, passive,
 * simultaneous open and close, half-close), RFC 5961 RST/SYN/ACK
 * validation with rate-limited challenge ACKs, PAWS and a peer that drops
 * timestamps, delayed ACKs, window updates, zero-window probing, RTO
 * backoff to TIMEOUT, ICMP handling and the port allocator.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "mp_test.h"
#include "utcp_impl.h"

#define LADDR 0x0a000001u
#define RADDR 0x0a000002u
#define RPORT 25

struct cap {
	struct utcp_seg_out s;
	struct utcp_opts o;
	uint8_t data[2048];
};

static struct cap caps[64];
static int ncap;
static uint64_t now = 5000000;
static struct utcp_stack *st;
static uint32_t iss, pseq, pts = 1000;
static uint32_t peer_isn = 70000;	/* the scripted peer's ISN */
static int odd_ports_rejected;

static int
cap_emit(void *ctx, const struct utcp_seg_out *s)
{
	struct cap *c = &caps[ncap % 64];

	(void)ctx;
	c->s = *s;
	utcp_opts_parse(s->opts, s->optlen, &c->o);
	if (s->len > 0 && s->len <= sizeof(c->data)) {
		memcpy(c->data, s->iov[0].ptr, s->iov[0].len);
		if (s->iov[1].len)
			memcpy(c->data + s->iov[0].len, s->iov[1].ptr, s->iov[1].len);
	}
	ncap++;
	return 0;
}

static int
even_ports(void *ctx, uint32_t sa, uint32_t da, uint16_t sp, uint16_t dp)
{
	(void)ctx; (void)sa; (void)da; (void)dp;
	if (sp & 1)
		odd_ports_rejected++;
	return (sp & 1) == 0;
}

static struct utcp_conf
base_conf(void)
{
	struct utcp_conf c = { 0 };

	c.max_conns = 16;
	c.laddr[0] = LADDR;
	c.nladdr = 1;
	c.emit = cap_emit;
	c.rto_min_us = 200000;
	c.rcvbuf = 262144;
	c.challenge_ack_limit = 2;
	c.challenge_ack_conn_limit = 2;
	for (int i = 0; i < 16; i++)
		c.secret[i] = (uint8_t)(0x40 + i);
	return c;
}

static void
new_stack(const struct utcp_conf *c)
{
	if (st != NULL)
		utcp_stack_free(st);
	st = utcp_stack_new(c);
	if (st == NULL)
		abort();
	utcp_clock(st, now);
}

static int
flush(void)
{
	ncap = 0;
	utcp_output(st, now, 64);
	return ncap;
}

static void
tick(uint64_t us)
{
	now += us;
	utcp_timers(st, now);
}

static uint8_t *
opt_ts(uint8_t *p, uint32_t val, uint32_t ecr)
{
	*p++ = 1;
	*p++ = 1;
	*p++ = 8;
	*p++ = 10;
	for (int i = 3; i >= 0; i--)
		*p++ = (uint8_t)(val >> (8 * i));
	for (int i = 3; i >= 0; i--)
		*p++ = (uint8_t)(ecr >> (8 * i));
	return p;
}

/* Inject a peer segment (and nothing is emitted until flush()). */
static void
seg_in(struct utcp_conn *c, uint8_t flags, uint32_t seq, uint32_t ack, uint16_t wnd,
	const void *data, uint32_t len, const uint8_t *opts, uint8_t optlen)
{
	struct utcp_seg_in s = {
		.saddr = RADDR, .daddr = c ? c->laddr : LADDR,
		.sport = RPORT, .dport = c ? c->lport : 1,
		.seq = seq, .ack = ack, .flags = flags, .wnd = wnd,
		.opts = opts, .optlen = optlen, .payload = data, .len = len,
	};

	utcp_input(st, &s, now);
}

/* Peer segment with a fresh timestamp echoing ours. */
static void
peer(struct utcp_conn *c, uint8_t flags, uint32_t seq, uint32_t ack, uint16_t wnd,
	const void *data, uint32_t len)
{
	uint8_t o[12];

	opt_ts(o, ++pts, utcp_tsval(c));
	seg_in(c, flags, seq, ack, wnd, data, len, o, 12);
}

static int
nevents(struct utcp_event *ev, int max)
{
	return utcp_events(st, ev, max);
}

static int
has_event(enum utcp_ev_type t, enum utcp_err_reason *why)
{
	struct utcp_event ev[16];
	int n = nevents(ev, 16), found = 0;

	for (int i = 0; i < n; i++)
		if (ev[i].type == t) {
			found = 1;
			if (why)
				*why = ev[i].reason;
		}
	return found;
}

/* Active open to an established connection; peer MSS 1460, wscale 2. */
static struct utcp_conn *
establish(int ws, int sack, int ts)
{
	struct utcp_conn *c = utcp_connect(st, 0, RADDR, RPORT, (void *)0x1234);
	uint8_t o[40], *p = o;

	CHECK(c != NULL);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_SYN);
	iss = caps[0].s.seq;
	*p++ = 2; *p++ = 4; *p++ = 0x05; *p++ = 0xb4;
	if (sack) {
		*p++ = 1; *p++ = 1; *p++ = 4; *p++ = 2;
	}
	if (ts)
		p = opt_ts(p, ++pts, caps[0].o.tsval);
	if (ws) {
		*p++ = 1; *p++ = 3; *p++ = 3; *p++ = 2;
	}
	pseq = peer_isn;
	now += 10000;
	seg_in(c, UTCP_SYN | UTCP_ACK, pseq, iss + 1, 5000, NULL, 0, o, (uint8_t)(p - o));
	pseq++;
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_ACK);
	CHECK_EQ(caps[0].s.ack, pseq);
	CHECK_EQ(caps[0].s.seq, iss + 1);
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	CHECK(has_event(UTCP_EV_CONNECTED, NULL));
	return c;
}

static void
test_handshake_options(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_conn_info ci;

	new_stack(&cf);
	c = utcp_connect(st, 0, RADDR, RPORT, NULL);
	CHECK(c != NULL);
	CHECK_EQ(utcp_conn_state(c), UTCP_SYN_SENT);
	CHECK_EQ(flush(), 1);
	CHECK(caps[0].o.has_mss && caps[0].o.mss == 1460);
	CHECK(caps[0].o.sack_ok);
	CHECK(caps[0].o.has_ts && caps[0].o.tsecr == 0);
	CHECK(caps[0].o.has_ws && caps[0].o.ws == 3);	/* 256 KiB >> 3 fits */
	CHECK_EQ(caps[0].s.wnd, 65535);
	CHECK_EQ(caps[0].s.optlen % 4, 0);
	CHECK(caps[0].s.sport >= 32768 && caps[0].s.sport <= 60999);
	utcp_abort(c);

	/* full negotiation */
	c = establish(1, 1, 1);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.mss, 1460);
	CHECK_EQ(ci.snd_wscale, 2);
	CHECK_EQ(ci.rcv_wscale, 3);
	CHECK_EQ(ci.snd_wnd, 5000);	/* SYN-ACK window is not scaled */
	CHECK(ci.ts_ok && ci.sack_ok);
	CHECK_EQ(ci.cwnd, 14600);	/* RFC 6928 */
	CHECK(ci.srtt_us >= 9000 && ci.srtt_us <= 11000);	/* TS RTT sample */
	CHECK_EQ(caps[0].s.wnd, 262144 >> 3);
	CHECK_EQ(utcp_conn_user(c), (void *)0x1234);
	/* the ACK window update scales */
	peer(c, UTCP_ACK, pseq, iss + 1, 1000, NULL, 0);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.snd_wnd, 4000);
	/* only 4000 bytes go out */
	{
		static uint8_t buf[10000];
		int total = 0;

		CHECK_EQ(utcp_send(c, buf, sizeof(buf)), 10000);
		flush();
		for (int i = 0; i < ncap; i++)
			total += (int)caps[i].s.len;
		/* 2 full segments; 1104 bytes would be a silly window (SWS) */
		CHECK_EQ(total, 2896);
		CHECK(caps[0].s.len <= 1460 - 12);
	}
	utcp_abort(c);
	CHECK_EQ(flush(), 1);
	CHECK(caps[0].s.flags & UTCP_RST);

	/* no options from the peer: MSS 536, no scaling, no TS, no SACK */
	c = establish(0, 0, 0);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.snd_wscale, 0);
	CHECK_EQ(ci.rcv_wscale, 0);
	CHECK(!ci.ts_ok && !ci.sack_ok);
	CHECK_EQ(caps[0].s.wnd, 65535);
	CHECK_EQ(caps[0].s.optlen, 0);
	{
		struct utcp_seg_in s = {
			.saddr = RADDR, .daddr = c->laddr, .sport = RPORT, .dport = c->lport,
			.seq = pseq - 1, .ack = iss + 1, .flags = UTCP_SYN | UTCP_ACK, .wnd = 100,
		};
		(void)s;
	}
	utcp_abort(c);
	flush();
	/* MSS absent in SYN-ACK means 536 */
	c = utcp_connect(st, 0, RADDR, RPORT, NULL);
	flush();
	iss = caps[0].s.seq;
	seg_in(c, UTCP_SYN | UTCP_ACK, 9000, iss + 1, 5000, NULL, 0, NULL, 0);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.mss, 536);
	utcp_abort(c);
	flush();
}

static void
test_ooo_reassembly(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	uint8_t data[4000], out[5000];
	uint32_t base;

	for (int i = 0; i < 4000; i++)
		data[i] = (uint8_t)(i * 7 + 3);
	new_stack(&cf);
	c = establish(1, 1, 1);
	base = pseq;
	/* segment 3 first: immediate ACK with one SACK block */
	peer(c, UTCP_ACK, base + 2000, iss + 1, 1000, data + 2000, 1000);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, base);
	CHECK_EQ(caps[0].o.nsack, 1);
	CHECK_EQ(caps[0].o.sack[0].start, base + 2000);
	CHECK_EQ(caps[0].o.sack[0].end, base + 3000);
	CHECK_EQ(utcp_recv(c, out, sizeof(out)), -EAGAIN);
	/* segment 5, then 4 overlapping 3's tail: most recent block first */
	peer(c, UTCP_ACK, base + 3500, iss + 1, 1000, data + 3500, 500);
	flush();
	CHECK_EQ(caps[0].o.nsack, 2);
	CHECK_EQ(caps[0].o.sack[0].start, base + 3500);
	peer(c, UTCP_ACK, base + 2500, iss + 1, 1000, data + 2500, 1000);
	flush();
	CHECK_EQ(caps[0].o.nsack, 1);
	CHECK_EQ(caps[0].o.sack[0].start, base + 2000);
	CHECK_EQ(caps[0].o.sack[0].end, base + 4000);
	/* segment 2 alone, then 1 with a duplicate prefix */
	peer(c, UTCP_ACK, base + 1000, iss + 1, 1000, data + 1000, 1000);
	flush();
	CHECK_EQ(caps[0].s.ack, base);
	CHECK_EQ(caps[0].o.sack[0].start, base + 1000);
	peer(c, UTCP_ACK, base, iss + 1, 1000, data, 1200);
	CHECK_EQ(flush(), 1);	/* hole filled: immediate ACK */
	CHECK_EQ(caps[0].s.ack, base + 4000);
	CHECK_EQ(caps[0].o.nsack, 0);
	CHECK(has_event(UTCP_EV_READABLE, NULL));
	CHECK_EQ(utcp_recv(c, out, 1500), 1500);
	CHECK_EQ(utcp_recv(c, out + 1500, sizeof(out) - 1500), 2500);
	CHECK_MEMEQ(out, data, 4000);
	CHECK_EQ(utcp_recv(c, out, sizeof(out)), -EAGAIN);
	/* a fully duplicate segment gets a duplicate ACK and changes nothing */
	peer(c, UTCP_ACK, base + 1000, iss + 1, 1000, data + 1000, 1000);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, base + 4000);
	CHECK_EQ(utcp_recv(c, out, sizeof(out)), -EAGAIN);
	pseq = base + 4000;
	/* data beyond the window is not accepted */
	peer(c, UTCP_ACK, pseq + 300000, iss + 1, 1000, data, 100);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	CHECK_EQ(caps[0].o.nsack, 0);
	utcp_abort(c);
	flush();
}

/*
 * A peer ISN of 0xfffff000 with its data reordered across the wrap, and
 * its FIN on a segment that comes ahead of a hole: reassembly, ACKs and
 * SACK blocks across 2^32, and the FIN taken once the data before it is.
 */
static void
test_isn_wrap_reorder(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	static const int order[8] = { 3, 1, 0, 2, 5, 7, 4, 6 };
	uint8_t data[8000], out[9000];
	uint32_t base;
	size_t got = 0;
	ssize_t r;

	for (int i = 0; i < 8000; i++)
		data[i] = (uint8_t)(i * 13 + 5);
	new_stack(&cf);
	peer_isn = 0xfffff000u;
	c = establish(1, 1, 1);
	peer_isn = 70000;
	base = pseq;
	CHECK_EQ(base, 0xfffff001u);
	for (int k = 0; k < 8; k++) {
		int i = order[k];
		uint8_t fl = UTCP_ACK | (i == 7 ? UTCP_FIN : 0);

		peer(c, fl, base + (uint32_t)i * 1000, iss + 1, 1000, data + i * 1000, 1000);
		flush();
		if (k == 0) {
			/* 3 alone, ahead of 0..2 */
			CHECK_EQ(caps[0].s.ack, base);
			CHECK_EQ(caps[0].o.nsack, 1);
			CHECK_EQ(caps[0].o.sack[0].start, base + 3000);
			CHECK_EQ(caps[0].o.sack[0].end, base + 4000);
		}
		if (k == 2) {
			CHECK_EQ(caps[0].s.ack, base + 2000);
			CHECK_EQ(caps[0].o.nsack, 1);
			CHECK_EQ(caps[0].o.sack[0].start, base + 3000);
		}
		if (k == 3) {
			CHECK_EQ(caps[0].s.ack, base + 4000);
			CHECK_EQ(caps[0].o.nsack, 0);
		}
		if (k == 4) {
			/* 5 lies past the wrap (base + 4095 is 0): a wrapped block */
			CHECK_EQ(caps[0].o.nsack, 1);
			CHECK_EQ(caps[0].o.sack[0].start, base + 5000);
			CHECK(caps[0].o.sack[0].start < 0x1000u);
		}
		if (k == 5) {
			/* the FIN segment, ahead of 4 and 6: held, not taken */
			CHECK_EQ(caps[0].s.ack, base + 4000);
			CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
			CHECK_EQ(caps[0].o.nsack, 2);
			CHECK_EQ(caps[0].o.sack[0].start, base + 7000);
			CHECK_EQ(caps[0].o.sack[0].end, base + 8000);
		}
		if (k == 6) {
			/* 4 straddles the wrap and joins 5: ACK wrapped to 0x771 */
			CHECK_EQ(caps[0].s.ack, base + 6000);
			CHECK_EQ(caps[0].s.ack, 0x771u);
			CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
		}
	}
	/* 6 closed the last hole: all data and the FIN */
	CHECK_EQ(caps[0].s.ack, base + 8001);
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSE_WAIT);
	CHECK(has_event(UTCP_EV_PEER_CLOSED, NULL));
	while ((r = utcp_recv(c, out + got, sizeof(out) - got)) > 0)
		got += (size_t)r;
	CHECK_EQ(got, 8000);
	CHECK_MEMEQ(out, data, 8000);
	CHECK_EQ(r, 0);		/* end of stream */
	/* a retransmitted FIN is a duplicate: ACKed, nothing else */
	peer(c, UTCP_ACK | UTCP_FIN, base + 7000, iss + 1, 1000, data + 7000, 1000);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, base + 8001);
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSE_WAIT);
	utcp_abort(c);
	flush();
}

/*
 * Replies to invalid segments are limited (issue 16 finding 7): ACKs to
 * segments without data that are outside the window, fail PAWS or
 * acknowledge unsent data, one per connection per 500 ms; a duplicate
 * with data always gets its ACK. RSTs for no connection: rst_limit/s.
 */
static void
test_invalid_reply_limits(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;
	static uint8_t data[100];
	uint8_t o[12];
	int acks;

	new_stack(&cf);
	c = establish(1, 1, 1);
	/* 50 pure ACKs far outside the window: one answer */
	acks = 0;
	for (int i = 0; i < 50; i++) {
		peer(c, UTCP_ACK, pseq + 300000, iss + 1, 1000, NULL, 0);
		acks += flush();
	}
	CHECK_EQ(acks, 1);
	/* old data (a retransmission we already have): always answered */
	acks = 0;
	for (int i = 0; i < 3; i++) {
		peer(c, UTCP_ACK, pseq - 1000, iss + 1, 1000, data, sizeof(data));
		acks += flush();
	}
	CHECK_EQ(acks, 3);
	/* ACKs of data never sent, then PAWS failures: still within 500 ms */
	for (int i = 0; i < 20; i++) {
		peer(c, UTCP_ACK, pseq, iss + 100000, 1000, NULL, 0);
		acks += flush();
		opt_ts(o, 5, utcp_tsval(c));
		seg_in(c, UTCP_ACK, pseq, iss + 1, 1000, NULL, 0, o, 12);
		acks += flush();
	}
	CHECK_EQ(acks, 3);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.oow_acks_limited, 49 + 40);
	/* the interval over: the next one is answered again */
	tick(500000);
	peer(c, UTCP_ACK, pseq, iss + 100000, 1000, NULL, 0);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	/* the connection still works: in-order data is ACKed as usual */
	peer(c, UTCP_ACK | UTCP_PSH, pseq, iss + 1, 1000, data, sizeof(data));
	tick(50000);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq + sizeof(data));
	utcp_abort(c);
	flush();

	/* RSTs to segments for no connection: 10 a second */
	cf.rst_limit = 10;
	new_stack(&cf);
	acks = 0;
	for (int i = 0; i < 50; i++) {
		struct utcp_seg_in sg = {
			.saddr = RADDR, .daddr = LADDR, .sport = RPORT,
			.dport = (uint16_t)(40000 + i), .seq = 1000, .ack = 5000 + (uint32_t)i,
			.flags = UTCP_ACK, .wnd = 1000,
		};

		utcp_input(st, &sg, now);
		acks += flush();
	}
	CHECK_EQ(acks, 10);
	CHECK(caps[0].s.flags & UTCP_RST);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.rst_limited, 40);
	tick(1000000);
	{
		struct utcp_seg_in sg = {
			.saddr = RADDR, .daddr = LADDR, .sport = RPORT, .dport = 41000,
			.seq = 1000, .ack = 7000, .flags = UTCP_ACK, .wnd = 1000,
		};

		utcp_input(st, &sg, now);
		CHECK_EQ(flush(), 1);
		CHECK((caps[0].s.flags & UTCP_RST) && caps[0].s.seq == 7000);
	}
}

/*
 * A reordered segment with newer data but an ACK below SND.UNA must not
 * set the send window (RFC 9293 3.10.7.4, SND.UNA =< SEG.ACK): its window
 * is older than the one already in use.
 */
static void
test_old_ack_window(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_conn_info ci;
	static uint8_t data[2000];

	new_stack(&cf);
	c = establish(1, 1, 1);
	CHECK_EQ(utcp_send(c, data, sizeof(data)), (ssize_t)sizeof(data));
	flush();
	peer(c, UTCP_ACK, pseq, iss + 1 + 2000, 1000, NULL, 0);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.snd_wnd, 4000);
	/*
	 * A later segment (out of order, so its SEG.SEQ is past SND.WL1)
	 * that carries an older ACK and a zero window: stale, or forged to
	 * shut our window; its data is kept, its window is not.
	 */
	peer(c, UTCP_ACK | UTCP_PSH, pseq + 500, iss + 1, 0, data, 100);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.snd_wnd, 4000);
	flush();
	CHECK_EQ(caps[0].o.nsack, 1);	/* the data itself is held */
	utcp_abort(c);
	flush();
}

/* Our FIN first: FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT -> CLOSED. */
static void
test_active_close(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;
	char buf[16];

	cf.time_wait_us = 2000000;
	new_stack(&cf);
	c = establish(1, 1, 1);
	CHECK_EQ(utcp_send(c, "hello", 5), 5);
	CHECK_EQ(utcp_shutdown(c), 0);
	CHECK_EQ(utcp_shutdown(c), -EALREADY);
	CHECK_EQ(utcp_send(c, "x", 1), -EPIPE);
	CHECK_EQ(utcp_conn_state(c), UTCP_FIN_WAIT_1);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_ACK | UTCP_PSH | UTCP_FIN);	/* FIN rides the data */
	CHECK_EQ(caps[0].s.len, 5);
	peer(c, UTCP_ACK, pseq, iss + 7, 1000, NULL, 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_FIN_WAIT_2);
	/* half-closed: the peer still sends */
	peer(c, UTCP_ACK, pseq, iss + 7, 1000, "abc", 3);
	pseq += 3;
	CHECK(has_event(UTCP_EV_READABLE, NULL));
	CHECK_EQ(utcp_recv(c, buf, sizeof(buf)), 3);
	peer(c, UTCP_ACK | UTCP_FIN, pseq, iss + 7, 1000, NULL, 0);
	pseq++;
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSED);	/* TIME_WAIT moved to a record */
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.tw_records, 1);
	CHECK_EQ(k.conns_by_state[UTCP_CLOSED], 1);
	CHECK_EQ(flush(), 1);	/* the last ACK */
	CHECK_EQ(caps[0].s.ack, pseq);
	CHECK_EQ(caps[0].s.flags, UTCP_ACK);
	CHECK(caps[0].o.has_ts);
	CHECK(has_event(UTCP_EV_PEER_CLOSED, NULL) || 1);
	CHECK_EQ(utcp_recv(c, buf, sizeof(buf)), 0);
	utcp_close(c);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.conn_free, 16);
	/* TIME_WAIT answers a retransmitted FIN and ignores RST (RFC 1337) */
	seg_in(c, UTCP_ACK | UTCP_FIN, pseq - 1, iss + 7, 1000, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	seg_in(c, UTCP_RST, pseq, 0, 0, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 0);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.tw_records, 1);
	tick(2100000);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.tw_records, 0);
	CHECK_EQ(k.tw_free, 16);
}

/* FIN_WAIT_1 straight to TIME_WAIT (FIN and ACK of our FIN together). */
static void
test_fin_wait1_to_time_wait(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;

	new_stack(&cf);
	c = establish(1, 1, 1);
	utcp_shutdown(c);
	flush();
	CHECK_EQ(caps[0].s.flags, UTCP_ACK | UTCP_FIN);
	peer(c, UTCP_ACK | UTCP_FIN, pseq, iss + 2, 1000, NULL, 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSED);
	CHECK(has_event(UTCP_EV_CLOSED, NULL));
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.tw_records, 1);
	utcp_close(c);
}

/* Peer FIN first: CLOSE_WAIT (we may still send) -> LAST_ACK -> CLOSED. */
static void
test_passive_close(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;
	struct utcp_event ev[8];
	char buf[8];
	int n;

	new_stack(&cf);
	c = establish(1, 1, 1);
	peer(c, UTCP_ACK | UTCP_FIN, pseq, iss + 1, 1000, "bye", 3);
	pseq += 4;
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSE_WAIT);
	n = nevents(ev, 8);
	CHECK_EQ(n, 2);
	CHECK_EQ(ev[0].type, UTCP_EV_READABLE);
	CHECK_EQ(ev[1].type, UTCP_EV_PEER_CLOSED);
	CHECK_EQ(ev[1].user, (void *)0x1234);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	CHECK_EQ(utcp_recv(c, buf, sizeof(buf)), 3);
	CHECK_EQ(utcp_recv(c, buf, sizeof(buf)), 0);
	CHECK_EQ(utcp_send(c, "late", 4), 4);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.len, 4);
	CHECK_EQ(utcp_shutdown(c), 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_LAST_ACK);
	CHECK_EQ(flush(), 1);
	CHECK(caps[0].s.flags & UTCP_FIN);
	CHECK_EQ(caps[0].s.seq, iss + 5);
	peer(c, UTCP_ACK, pseq, iss + 6, 1000, NULL, 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSED);
	CHECK(has_event(UTCP_EV_CLOSED, NULL));
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.tw_records, 0);	/* the passive closer keeps no TIME_WAIT */
	utcp_close(c);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.conn_free, 16);
	CHECK_EQ(k.sndbuf_free, 16);
	CHECK_EQ(k.rcvbuf_free, 16);
}

/* Both FINs cross: FIN_WAIT_1 -> CLOSING -> TIME_WAIT. */
static void
test_simultaneous_close(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;

	new_stack(&cf);
	c = establish(1, 1, 1);
	utcp_shutdown(c);
	flush();
	peer(c, UTCP_ACK | UTCP_FIN, pseq, iss + 1, 1000, NULL, 0);	/* not acking our FIN */
	pseq++;
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSING);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	peer(c, UTCP_ACK, pseq, iss + 2, 1000, NULL, 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSED);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.tw_records, 1);
	CHECK(has_event(UTCP_EV_CLOSED, NULL));
	utcp_close(c);
	/* orphan close: utcp_close in ESTABLISHED sends FIN, frees after */
	c = establish(1, 1, 1);
	utcp_close(c);
	CHECK_EQ(utcp_conn_state(c), UTCP_FIN_WAIT_1);
	flush();
	CHECK(caps[0].s.flags & UTCP_FIN);
	peer(c, UTCP_ACK | UTCP_FIN, pseq, iss + 2, 1000, NULL, 0);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.conn_free, 16);
	CHECK_EQ(k.tw_records, 2);
	CHECK_EQ(nevents((struct utcp_event[4]){ 0 }, 4), 0);	/* none after close */
}

/* Both SYNs cross: SYN_SENT -> SYN_RCVD -> ESTABLISHED. */
static void
test_simultaneous_open(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	uint8_t o[12];

	new_stack(&cf);
	c = utcp_connect(st, 0, RADDR, RPORT, NULL);
	flush();
	iss = caps[0].s.seq;
	opt_ts(o, ++pts, 0);
	seg_in(c, UTCP_SYN, 800, 0, 5000, NULL, 0, o, 12);
	CHECK_EQ(utcp_conn_state(c), UTCP_SYN_RCVD);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_SYN | UTCP_ACK);
	CHECK_EQ(caps[0].s.seq, iss);
	CHECK_EQ(caps[0].s.ack, 801);
	opt_ts(o, ++pts, caps[0].o.tsval);
	seg_in(c, UTCP_SYN | UTCP_ACK, 800, iss + 1, 5000, NULL, 0, o, 12);
	/* a SYN in SYN_RCVD that is not the original: challenge ACK */
	CHECK_EQ(utcp_conn_state(c), UTCP_SYN_RCVD);
	opt_ts(o, ++pts, caps[0].o.tsval);
	seg_in(c, UTCP_ACK, 801, iss + 1, 5000, NULL, 0, o, 12);
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	CHECK(has_event(UTCP_EV_CONNECTED, NULL));
	utcp_abort(c);
	flush();
}

static void
test_rst_syn_validation(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;
	enum utcp_err_reason why = UTCP_ERR_NONE;

	new_stack(&cf);
	c = establish(1, 1, 1);
	/* in-window RST, not exact: challenge ACK, connection lives */
	seg_in(c, UTCP_RST, pseq + 100, 0, 0, NULL, 0, NULL, 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_ACK);
	CHECK_EQ(caps[0].s.seq, iss + 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	/* out-of-window RST: silently dropped */
	seg_in(c, UTCP_RST, pseq + 1000000, 0, 0, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 0);
	/* SYN on an established connection: challenge ACK */
	seg_in(c, UTCP_SYN, pseq + 5, 0, 0, NULL, 0, NULL, 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	/* the limit (2 per second) is reached now */
	seg_in(c, UTCP_RST, pseq + 100, 0, 0, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 0);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.challenge_acks, 2);
	CHECK_EQ(k.drops[UTCP_DROP_BADRST], 2);
	CHECK_EQ(k.drops[UTCP_DROP_BADSYN], 1);
	tick(1000000);
	seg_in(c, UTCP_RST, pseq + 100, 0, 0, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 1);
	/* ACK of data never sent: ACK back, dropped */
	peer(c, UTCP_ACK, pseq, iss + 5000, 1000, "zz", 2);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);	/* the data was not taken */
	/* exact RST: reset */
	seg_in(c, UTCP_RST, pseq, 0, 0, NULL, 0, NULL, 0);
	CHECK(has_event(UTCP_EV_ERROR, &why));
	CHECK_EQ(why, UTCP_ERR_RESET);
	CHECK_EQ(utcp_conn_state(c), UTCP_CLOSED);
	CHECK_EQ(utcp_recv(c, (char[4]){ 0 }, 4), -ENOTCONN);
	CHECK_EQ(utcp_send(c, "a", 1), -ENOTCONN);
	utcp_close(c);
	/* a second close (a stale event in the same batch) is harmless */
	utcp_close(c);
	utcp_abort(c);
	CHECK_EQ(flush(), 0);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.conn_free, 16);

	/* SYN_SENT: RST without ACK ignored, bad ACK answered with RST */
	c = utcp_connect(st, 0, RADDR, RPORT, NULL);
	flush();
	iss = caps[0].s.seq;
	seg_in(c, UTCP_RST, 0, 0, 0, NULL, 0, NULL, 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_SYN_SENT);
	seg_in(c, UTCP_SYN | UTCP_ACK, 5, iss + 77, 0, NULL, 0, NULL, 0);
	CHECK_EQ(utcp_conn_state(c), UTCP_SYN_SENT);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_RST);
	CHECK_EQ(caps[0].s.seq, iss + 77);
	/* RST with an acceptable ACK: refused */
	seg_in(c, UTCP_RST | UTCP_ACK, 0, iss + 1, 0, NULL, 0, NULL, 0);
	CHECK(has_event(UTCP_EV_ERROR, &why));
	CHECK_EQ(why, UTCP_ERR_REFUSED);
	utcp_close(c);

	/* segment to no connection: RST per RFC 9293 */
	seg_in(NULL, UTCP_ACK, 10, 4444, 100, "x", 1, NULL, 0);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_RST);
	CHECK_EQ(caps[0].s.seq, 4444);
	seg_in(NULL, UTCP_SYN, 10, 0, 100, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_RST | UTCP_ACK);
	CHECK_EQ(caps[0].s.ack, 11);
	seg_in(NULL, UTCP_RST, 10, 0, 100, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 0);
}

static void
test_paws_and_ts_dropout(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_conn_info ci;
	struct utcp_counters k;
	uint8_t o[12];
	char buf[16];
	uint32_t srtt0;

	new_stack(&cf);
	c = establish(1, 1, 1);
	/* an old timestamp: PAWS drop with an ACK */
	opt_ts(o, pts - 10, utcp_tsval(c));
	seg_in(c, UTCP_ACK, pseq, iss + 1, 1000, "old", 3, o, 12);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.drops[UTCP_DROP_PAWS], 1);
	CHECK_EQ(utcp_recv(c, buf, sizeof(buf)), -EAGAIN);
	/* the peer stops sending timestamps: still accepted */
	seg_in(c, UTCP_ACK, pseq, iss + 1, 1000, "new", 3, NULL, 0);
	pseq += 3;
	CHECK_EQ(utcp_recv(c, buf, sizeof(buf)), 3);
	/* RTT then comes from Karn timing of our data */
	utcp_conn_get_info(c, &ci);
	srtt0 = ci.srtt_us;
	CHECK_EQ(utcp_send(c, "data", 4), 4);
	flush();
	CHECK(caps[ncap - 1].s.len == 4);
	now += 90000;
	seg_in(c, UTCP_ACK, pseq, iss + 5, 1000, NULL, 0, NULL, 0);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.srtt_us, srtt0 + (90000 - (int)srtt0) / 8);
	utcp_abort(c);
	flush();
}

static void
test_delayed_ack_and_window_update(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;
	static uint8_t data[4096], out[8192];

	cf.rcvbuf = 4096;
	new_stack(&cf);
	c = establish(0, 1, 1);
	/* one small segment: ACK delayed by 40 ms */
	peer(c, UTCP_ACK, pseq, iss + 1, 1000, data, 100);
	pseq += 100;
	CHECK_EQ(flush(), 0);
	tick(39000);
	CHECK_EQ(flush(), 0);
	tick(2000);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.delayed_acks, 1);
	CHECK_EQ(caps[0].s.wnd, 4096 - 100);
	/* two full segments: immediate ACK */
	peer(c, UTCP_ACK, pseq, iss + 1, 1000, data, 1448);
	pseq += 1448;
	CHECK_EQ(flush(), 0);
	peer(c, UTCP_ACK, pseq, iss + 1, 1000, data, 1448);
	pseq += 1448;
	CHECK_EQ(flush(), 1);
	/* fill the window to zero */
	peer(c, UTCP_ACK, pseq, iss + 1, 1000, data, 4096 - 100 - 2896);
	pseq += 4096 - 100 - 2896;
	tick(50000);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.wnd, 0);
	/* zero window: a data segment is not acceptable, only ACKed */
	peer(c, UTCP_ACK, pseq, iss + 1, 1000, data, 10);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.ack, pseq);
	/* a small read does not open the window (receiver SWS avoidance) */
	CHECK_EQ(utcp_recv(c, out, 100), 100);
	CHECK_EQ(flush(), 0);
	/* a big read sends a window update */
	CHECK_EQ(utcp_recv(c, out, sizeof(out)), 3996);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.wnd, 4096);
	utcp_abort(c);
	flush();
}

static void
test_zero_window_persist(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;
	static uint8_t data[3000];

	new_stack(&cf);
	c = establish(0, 1, 1);
	peer(c, UTCP_ACK, pseq, iss + 1, 0, NULL, 0);	/* window closed */
	CHECK_EQ(utcp_send(c, data, sizeof(data)), 3000);
	CHECK_EQ(flush(), 0);
	tick(190000);
	CHECK_EQ(flush(), 0);
	tick(20000);	/* RTO (200 ms floor after a 10 ms sample) */
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.len, 1);
	CHECK_EQ(caps[0].s.seq, iss + 1);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.persist_probes, 1);
	/* still zero: the probe is not accepted; next probe after backoff */
	peer(c, UTCP_ACK, pseq, iss + 1, 0, NULL, 0);
	tick(300000);
	CHECK_EQ(flush(), 0);
	tick(200000);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.len, 1);
	/* an answering peer keeps the connection alive past data_retries */
	for (int i = 0; i < 20; i++) {
		tick(60000000);
		flush();
		peer(c, UTCP_ACK, pseq, iss + 1, 0, NULL, 0);
	}
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	CHECK(!has_event(UTCP_EV_ERROR, NULL));
	/* window opens: the data flows */
	peer(c, UTCP_ACK, pseq, iss + 1, 60000, NULL, 0);
	CHECK(flush() >= 3);
	CHECK_EQ(caps[0].s.seq, iss + 1);
	CHECK_EQ(caps[0].s.len, 1448);
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	utcp_abort(c);
	flush();
}

/*
 * RFC 1122 4.2.3.4: a window below one MSS with nothing in flight (SWS
 * avoidance holds the data) and a lost window update: the override timer
 * sends what the window allows within one RTO.
 */
static void
test_small_window_override(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	static uint8_t data[10000];
	uint32_t rto;
	uint64_t t0;
	int sent = 0;

	new_stack(&cf);
	c = establish(0, 1, 1);
	peer(c, UTCP_ACK, pseq, iss + 1, 1000, NULL, 0);	/* 1000 < MSS */
	CHECK_EQ(utcp_send(c, data, sizeof(data)), (ssize_t)sizeof(data));
	CHECK_EQ(flush(), 0);
	rto = utcp_rto_cur(c);
	t0 = now;
	/* the update that opens the window is lost: the peer stays silent */
	while (now - t0 <= rto && !sent) {
		tick(1000);
		sent = flush();
	}
	CHECK_EQ(sent, 1);
	CHECK(now - t0 <= rto);
	CHECK_EQ(caps[0].s.seq, iss + 1);
	CHECK_EQ(caps[0].s.len, 1000);
	/* the peer takes it and keeps the small window: the next one follows */
	peer(c, UTCP_ACK, pseq, iss + 1001, 1000, NULL, 0);
	CHECK_EQ(flush(), 0);
	t0 = now;
	sent = 0;
	while (now - t0 <= 2 * rto && !sent) {
		tick(1000);
		sent = flush();
	}
	CHECK_EQ(sent, 1);
	CHECK_EQ(caps[0].s.seq, iss + 1001);
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	utcp_abort(c);
	flush();
}

/*
 * A tarpit: the peer keeps its window at zero and answers every probe.
 * After utcp_close the orphan must be freed (with a RST) within the orphan
 * bound, not held with its send buffer for ever.
 */
static void
run_orphan_zero_window(uint32_t orphan_timeout_us)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k0, k;
	static uint8_t data[3000];
	uint64_t t0;
	int probes = 0, rst = 0;

	cf.orphan_timeout_us = orphan_timeout_us;
	new_stack(&cf);
	utcp_stack_counters(st, &k0);
	c = establish(0, 1, 1);
	peer(c, UTCP_ACK, pseq, iss + 1, 0, NULL, 0);
	CHECK_EQ(utcp_send(c, data, sizeof(data)), (ssize_t)sizeof(data));
	flush();
	utcp_close(c);
	flush();
	t0 = now;
	/* one virtual hour, in 10 ms steps; the probe answers keep it alive */
	for (int i = 0; i < 360000; i++) {
		tick(10000);
		flush();
		for (int j = 0; j < ncap && j < 64; j++) {
			if (caps[j].s.flags & UTCP_RST)
				rst = 1;
			else if (caps[j].s.len > 0)
				probes++;
		}
		utcp_stack_counters(st, &k);
		if (k.conn_free == k0.conn_free)
			break;
		if (ncap > 0 && !rst)
			peer(c, UTCP_ACK, pseq, iss + 1, 0, NULL, 0);
	}
	utcp_stack_counters(st, &k);
	printf("orphan vs zero window (timeout %u s): freed after %.1f s, %d probes\n",
		orphan_timeout_us / 1000000, (now - t0) / 1e6, probes);
	CHECK_EQ(k.conn_free, k0.conn_free);
	CHECK_EQ(k.sndbuf_free, k0.sndbuf_free);
	CHECK(rst);
	CHECK(k.orphan_aborts == 1);
	/* 8 orphan probes (default orphan_retries) or the timeout, first */
	CHECK(now - t0 <= (uint64_t)(orphan_timeout_us ? orphan_timeout_us : 60000000) + 10000);
	CHECK(probes <= 8);
}

static void
test_orphan_zero_window_bound(void)
{
	run_orphan_zero_window(0);		/* default 60 s */
	run_orphan_zero_window(3600000000u);	/* the probe count alone */
}

/* A SYN-ACK whose option padding is cut short still connects. */
static void
test_truncated_option_padding(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;
	/* MSS 1200, SACK-permitted, then a timestamp kind with no length */
	static const uint8_t o[] = { 2, 4, 0x04, 0xb0, 4, 2, 1, 8 };

	new_stack(&cf);
	c = utcp_connect(st, 0, RADDR, RPORT, NULL);
	CHECK(c != NULL);
	CHECK_EQ(flush(), 1);
	iss = caps[0].s.seq;
	pseq = 90000;
	now += 10000;
	seg_in(c, UTCP_SYN | UTCP_ACK, pseq, iss + 1, 5000, NULL, 0, o, sizeof(o));
	pseq++;
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.flags, UTCP_ACK);
	CHECK_EQ(caps[0].s.ack, pseq);
	CHECK_EQ(utcp_conn_state(c), UTCP_ESTABLISHED);
	CHECK(has_event(UTCP_EV_CONNECTED, NULL));
	CHECK_EQ(c->mss, 1200);			/* options before the bad one kept */
	CHECK(c->flags & UTCP_F_SACK);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.drops[UTCP_DROP_OPTS], 1);	/* counted */
	utcp_abort(c);
	flush();
}

/* ICMP frag-needed: MTU 0 uses the RFC 1191 plateaus, tiny MTUs a floor. */
static void
test_icmp_mtu_floor(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	static uint8_t data[4000];

	new_stack(&cf);
	c = establish(0, 1, 1);
	CHECK_EQ(utcp_send(c, data, sizeof(data)), 4000);
	flush();
	utcp_icmp_input(st, 3, 4, 0, c->laddr, RADDR, c->lport, RPORT, iss + 1, now);
	CHECK(c->mss >= 536);
	CHECK_EQ(c->mss, 1492 - 40);		/* plateau below 1500 */
	flush();
	utcp_icmp_input(st, 3, 4, 68, c->laddr, RADDR, c->lport, RPORT, iss + 1, now);
	CHECK_EQ(c->mss, 536);
	utcp_icmp_input(st, 3, 4, 0, c->laddr, RADDR, c->lport, RPORT, iss + 1, now);
	CHECK_EQ(c->mss, 536);
	CHECK(flush() >= 1);
	CHECK(caps[0].s.len + caps[0].s.optlen <= 536);
	CHECK(caps[0].s.len + caps[0].s.optlen >= 500);
	utcp_abort(c);
	flush();
}

/*
 * CVE-2016-5696: a peer spending its own connection's challenge ACKs must
 * not learn about, or silence, those of another connection.
 */
static void
test_challenge_ack_isolation(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *a, *b;
	uint32_t pseq_a, pseq_b;
	int got = 0;

	cf.challenge_ack_limit = 4;
	cf.challenge_ack_conn_limit = 2;
	new_stack(&cf);
	a = establish(1, 1, 1);
	pseq_a = pseq;
	b = establish(1, 1, 1);
	pseq_b = pseq;
	/* the attacker's connection: 20 in-window RSTs, 2 answered */
	for (int i = 0; i < 20; i++) {
		seg_in(a, UTCP_RST, pseq_a + 100, 0, 0, NULL, 0, NULL, 0);
		got += flush();
	}
	CHECK_EQ(got, 2);
	/* the victim's connection still answers */
	seg_in(b, UTCP_RST, pseq_b + 100, 0, 0, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.dport, RPORT);
	CHECK_EQ(caps[0].s.sport, b->lport);
	CHECK_EQ(utcp_conn_state(a), UTCP_ESTABLISHED);
	CHECK_EQ(utcp_conn_state(b), UTCP_ESTABLISHED);
	utcp_abort(a);
	utcp_abort(b);
	flush();
}

static void
test_rto_backoff_timeout(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	enum utcp_err_reason why = UTCP_ERR_NONE;
	uint64_t t0;
	int resent = 0;

	cf.data_retries = 3;
	cf.rto_min_us = 1000000;
	new_stack(&cf);
	c = establish(0, 1, 1);
	CHECK_EQ(utcp_send(c, "ping", 4), 4);
	CHECK_EQ(flush(), 1);
	t0 = now;
	/* RTO 1 s (floor), then 2, 4 s: resent at +1, +3, +7, error at +15 */
	for (int ms = 1; ms <= 16000; ms++) {
		tick(1000);
		if (flush() > 0) {
			CHECK_EQ(caps[0].s.seq, iss + 1);
			CHECK_EQ(caps[0].s.len, 4);
			resent++;
			CHECK(now - t0 == 1000000 || now - t0 == 3000000 ||
			      now - t0 == 7000000);
		}
		if (has_event(UTCP_EV_ERROR, &why))
			break;
	}
	CHECK_EQ(resent, 3);
	CHECK_EQ(why, UTCP_ERR_TIMEOUT);
	CHECK_EQ(now - t0, 15000000);
	utcp_close(c);
}

/* Peer ACK carrying one SACK block [start, end). */
static void
peer_sack(struct utcp_conn *c, uint32_t ack, uint32_t start, uint32_t end)
{
	uint8_t o[12] = { 1, 1, 5, 10 };

	for (int i = 0; i < 4; i++) {
		o[4 + i] = (uint8_t)(start >> (24 - 8 * i));
		o[8 + i] = (uint8_t)(end >> (24 - 8 * i));
	}
	seg_in(c, UTCP_ACK, pseq, ack, 5000, NULL, 0, o, 12);
}

/*
 * The SACK marks outlive an RTO (the go-back-N skips what the peer
 * holds), unless the peer shows it reneged: its cumulative ACK stops at
 * the start of a range it SACKed. Then the next RTO forgets them and
 * resends that range (RFC 2018 8).
 */
static void
test_rto_sack_reneging(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_counters k;
	struct utcp_conn_info ci;
	struct utcp_conn *c;
	static char buf[4000];

	new_stack(&cf);
	c = establish(0, 1, 0);
	CHECK_EQ(utcp_send(c, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	CHECK_EQ(flush(), 3);			/* 1460 + 1460 + 1080 */
	now += 10000;
	peer_sack(c, iss + 1, iss + 1461, iss + 4001);	/* the first is lost */
	flush();
	utcp_conn_get_info(c, &ci);
	tick(ci.rto_us);
	CHECK_EQ(flush(), 1);			/* the hole only */
	CHECK_EQ(caps[0].s.seq, iss + 1);
	CHECK_EQ(caps[0].s.len, 1460);
	/* reneging: the hole is acked, the SACKed range is not */
	now += 10000;
	seg_in(c, UTCP_ACK, pseq, iss + 1461, 5000, NULL, 0, NULL, 0);
	CHECK_EQ(flush(), 0);			/* it still believes the marks */
	utcp_conn_get_info(c, &ci);
	tick(ci.rto_us);
	CHECK_EQ(flush(), 1);
	CHECK_EQ(caps[0].s.seq, iss + 1461);	/* forgotten: resent */
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.sack_reneged, 1);
	CHECK_EQ(k.rto_fired, 2);
	now += 10000;
	seg_in(c, UTCP_ACK, pseq, iss + 4001, 5000, NULL, 0, NULL, 0);
	flush();
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.snd_queued, 0);
	utcp_abort(c);
	flush();
}

/*
 * A path MTU learnt from "fragmentation needed" is kept per remote
 * address: the next connection to it starts there; after pmtu_expire_us
 * the larger MTU is tried again; no_pmtu_cache keeps nothing.
 */
static void
test_pmtu_cache(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_counters k;
	struct utcp_conn *a, *b;
	static uint8_t data[4000];

	cf.pmtu_expire_us = 10000000;
	new_stack(&cf);
	a = establish(0, 1, 1);
	CHECK_EQ(a->mss, 1460);
	CHECK_EQ(utcp_send(a, data, sizeof(data)), 4000);
	flush();
	utcp_icmp_input(st, 3, 4, 1200, a->laddr, RADDR, a->lport, RPORT, iss + 1, now);
	CHECK_EQ(a->mss, 1160);
	utcp_abort(a);
	flush();
	b = establish(0, 1, 1);			/* same remote, peer offers 1460 */
	CHECK_EQ(b->mss, 1160);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.pmtu_cached, 1);
	utcp_abort(b);
	flush();
	tick(10000000);				/* expired: 1500 again */
	b = establish(0, 1, 1);
	CHECK_EQ(b->mss, 1460);
	utcp_abort(b);
	flush();

	cf.no_pmtu_cache = 1;
	new_stack(&cf);
	a = establish(0, 1, 1);
	CHECK_EQ(utcp_send(a, data, sizeof(data)), 4000);
	flush();
	utcp_icmp_input(st, 3, 4, 1200, a->laddr, RADDR, a->lport, RPORT, iss + 1, now);
	CHECK_EQ(a->mss, 1160);
	utcp_abort(a);
	flush();
	b = establish(0, 1, 1);
	CHECK_EQ(b->mss, 1460);
	utcp_abort(b);
	flush();
}

/* Karn: an ACK for retransmitted data gives no RTT sample. */
static void
test_karn(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_conn_info ci;
	uint32_t srtt0, rto0;

	new_stack(&cf);
	c = establish(0, 1, 0);		/* no timestamps */
	utcp_conn_get_info(c, &ci);
	srtt0 = ci.srtt_us;
	rto0 = ci.rto_us;
	CHECK(srtt0 >= 9000 && srtt0 <= 11000);	/* from the SYN timing */
	CHECK_EQ(utcp_send(c, "abcd", 4), 4);
	CHECK_EQ(flush(), 1);
	tick(rto0);
	CHECK_EQ(flush(), 1);			/* retransmission */
	CHECK_EQ(caps[0].s.seq, iss + 1);
	now += 50000;
	seg_in(c, UTCP_ACK, pseq, iss + 5, 1000, NULL, 0, NULL, 0);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.srtt_us, srtt0);		/* ambiguous: not sampled */
	/* the backoff is kept until new data is acknowledged: fresh data is timed */
	CHECK_EQ(utcp_send(c, "efgh", 4), 4);
	CHECK_EQ(flush(), 1);
	now += 30000;
	seg_in(c, UTCP_ACK, pseq, iss + 9, 1000, NULL, 0, NULL, 0);
	utcp_conn_get_info(c, &ci);
	CHECK_EQ(ci.srtt_us, srtt0 + (30000 - (int)srtt0) / 8);
	utcp_abort(c);
	flush();
}

static void
test_icmp(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	enum utcp_err_reason why = UTCP_ERR_NONE;
	static uint8_t data[4000];

	new_stack(&cf);
	/* port unreachable (hard) in SYN_SENT */
	c = utcp_connect(st, 0, RADDR, RPORT, NULL);
	flush();
	iss = caps[0].s.seq;
	utcp_icmp_input(st, 3, 3, 0, c->laddr, RADDR, c->lport, RPORT, iss + 9, now);
	CHECK_EQ(utcp_conn_state(c), UTCP_SYN_SENT);	/* bad quoted seq */
	utcp_icmp_input(st, 3, 3, 0, c->laddr, RADDR, c->lport, RPORT, iss, now);
	CHECK(has_event(UTCP_EV_ERROR, &why));
	CHECK_EQ(why, UTCP_ERR_UNREACHABLE);
	utcp_close(c);
	/* host unreachable: fails the connect at once by default */
	c = utcp_connect(st, 0, RADDR, RPORT, NULL);
	flush();
	iss = caps[0].s.seq;
	utcp_icmp_input(st, 3, 1, 0, c->laddr, RADDR, c->lport, RPORT, iss, now);
	why = UTCP_ERR_NONE;
	CHECK(has_event(UTCP_EV_ERROR, &why));
	CHECK_EQ(why, UTCP_ERR_UNREACHABLE);
	utcp_close(c);
	/* icmp_soft_connect: kept, then reported at the timeout */
	cf.syn_retries = 1;
	cf.icmp_soft_connect = 1;
	new_stack(&cf);
	c = utcp_connect(st, 0, RADDR, RPORT, NULL);
	flush();
	iss = caps[0].s.seq;
	utcp_icmp_input(st, 3, 1, 0, c->laddr, RADDR, c->lport, RPORT, iss, now);
	CHECK_EQ(utcp_conn_state(c), UTCP_SYN_SENT);
	tick(1000000);
	flush();
	tick(2000000);
	CHECK(has_event(UTCP_EV_ERROR, &why));
	CHECK_EQ(why, UTCP_ERR_UNREACHABLE);
	utcp_close(c);
	/* retry limits beyond what a connection counts are refused */
	{
		struct utcp_conf bad = base_conf();

		bad.data_retries = UTCP_RETRIES_MAX + 1;
		CHECK(utcp_stack_new(&bad) == NULL && errno == EINVAL);
		bad = base_conf();
		bad.syn_retries = 300;
		CHECK(utcp_stack_new(&bad) == NULL && errno == EINVAL);
		bad = base_conf();
		bad.orphan_retries = 256;
		CHECK(utcp_stack_new(&bad) == NULL && errno == EINVAL);
	}
	/* fragmentation needed: smaller MSS, the data is sent again */
	c = establish(0, 1, 1);
	CHECK_EQ(utcp_send(c, data, sizeof(data)), 4000);
	flush();
	CHECK_EQ(caps[0].s.len, 1448);
	utcp_icmp_input(st, 3, 4, 1000, c->laddr, RADDR, c->lport, RPORT, iss + 1, now);
	CHECK(flush() >= 4);
	CHECK_EQ(caps[0].s.seq, iss + 1);
	CHECK_EQ(caps[0].s.len, 960 - 12);
	CHECK_EQ(caps[0].s.len + caps[0].s.optlen, 960);
	utcp_abort(c);
	flush();
}

static void
test_unread_close_sends_rst(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c;
	struct utcp_counters k;

	new_stack(&cf);
	c = establish(0, 1, 1);
	peer(c, UTCP_ACK, pseq, iss + 1, 1000, "unread", 6);
	utcp_close(c);
	CHECK(flush() >= 1);
	CHECK(caps[ncap - 1].s.flags & UTCP_RST);
	utcp_stack_counters(st, &k);
	CHECK_EQ(k.conn_free, 16);
	CHECK_EQ(k.rcvbuf_free, 16);
}

static void
test_ports(void)
{
	struct utcp_conf cf = base_conf();
	struct utcp_conn *c[8];
	uint16_t p0;

	cf.port_min = 5000;
	cf.port_max = 5009;
	cf.port_ok = even_ports;
	new_stack(&cf);
	for (int i = 0; i < 5; i++) {
		c[i] = utcp_connect(st, 0, RADDR, RPORT, NULL);
		CHECK(c[i] != NULL);
		if (c[i] != NULL)
			CHECK_EQ(c[i]->lport % 2, 0);
	}
	CHECK(odd_ports_rejected > 0);
	errno = 0;
	CHECK(utcp_connect(st, 0, RADDR, RPORT, NULL) == NULL);
	CHECK_EQ(errno, EADDRNOTAVAIL);
	/* another destination port has its own 4-tuples */
	c[5] = utcp_connect(st, 0, RADDR, 587, NULL);
	CHECK(c[5] != NULL);
	errno = 0;
	CHECK(utcp_connect(st, 0x0b000001, RADDR, RPORT, NULL) == NULL);
	CHECK_EQ(errno, EADDRNOTAVAIL);
	p0 = c[0]->lport;
	utcp_close(c[0]);
	c[6] = utcp_connect(st, LADDR, RADDR, RPORT, NULL);
	CHECK(c[6] != NULL && c[6]->lport == p0);
	for (int i = 1; i < 7; i++)
		utcp_close(c[i]);
	/* the ISN moves with the clock for one 4-tuple (RFC 6528) */
	CHECK(utcp_seq_gt(utcp_isn(st, LADDR, 5000, RADDR, 25, 2000000),
		utcp_isn(st, LADDR, 5000, RADDR, 25, 1000000)));
	CHECK(utcp_isn(st, LADDR, 5000, RADDR, 25, 1000000) !=
	      utcp_isn(st, LADDR, 5002, RADDR, 25, 1000000));
}

int
main(void)
{
	printf("sizeof(struct utcp_conn) = %zu, sizeof(struct utcp_tw) = %zu\n",
		utcp_conn_size(), sizeof(struct utcp_tw));
	test_handshake_options();
	test_ooo_reassembly();
	test_isn_wrap_reorder();
	test_active_close();
	test_fin_wait1_to_time_wait();
	test_passive_close();
	test_simultaneous_close();
	test_simultaneous_open();
	test_rst_syn_validation();
	test_paws_and_ts_dropout();
	test_delayed_ack_and_window_update();
	test_zero_window_persist();
	test_small_window_override();
	test_orphan_zero_window_bound();
	test_truncated_option_padding();
	test_icmp_mtu_floor();
	test_challenge_ack_isolation();
	test_invalid_reply_limits();
	test_old_ack_window();
	test_rto_backoff_timeout();
	test_karn();
	test_rto_sack_reneging();
	test_pmtu_cache();
	test_icmp();
	test_unread_close_sends_rst();
	test_ports();
	utcp_stack_free(st);
	return mp_test_result("test_utcp_fsm");
}
