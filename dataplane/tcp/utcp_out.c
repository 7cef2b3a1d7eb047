/*
 * Segment output. Input, timers and the API only mark a connection
 * (utcp_out_schedule / utcp_out_ack_now) or queue a stateless segment
 * (RST, TIME_WAIT ACK: utcp_ctl_queue); utcp_output() then walks the
 * stateless queue and the connections with pending output and builds each
 * segment: options (MSS, window scale, SACK-permitted, timestamps, SACK
 * blocks), the advertised window, and up to two payload pieces pointing
 * into the send ring. What to send comes from, in order: the SYN, the
 * NewReno retransmission of the first segment, RFC 6675 NextSeg during SACK
 * recovery, new data within min(cwnd, peer window), the FIN, a zero-window
 * probe, a bare ACK. Nagle is off; sender-side SWS avoidance is on.
 */
#include <string.h>

#include "utcp_impl.h"

void
utcp_out_schedule(struct utcp_conn *c)
{
	if (c->flags & UTCP_F_IN_OUTQ)
		return;
	TAILQ_INSERT_TAIL(&c->st->outq, c, outq);
	c->flags |= UTCP_F_IN_OUTQ;
}

void
utcp_out_ack_now(struct utcp_conn *c)
{
	c->flags |= UTCP_F_ACK_NOW;
	if (c->delack_at) {
		c->delack_at = 0;
		utcp_timer_update(c);
	}
	utcp_out_schedule(c);
}

uint32_t
utcp_flight(const struct utcp_conn *c)
{
	return c->snd_max - c->snd_una;
}

uint32_t
utcp_tsval(const struct utcp_conn *c)
{
	return (uint32_t)(c->st->now / 1000) + c->ts_offset;
}

/* Window field: never shrink the right edge, no small increases (SWS). */
uint16_t
utcp_wnd_field(const struct utcp_conn *c, bool syn)
{
	uint32_t space = utcp_rcv_space(c), adv, w;
	uint32_t sws = c->st->conf.rcvbuf / 2 < c->mss ? c->st->conf.rcvbuf / 2 : c->mss;

	if (syn)
		return space > 65535 ? 65535 : (uint16_t)space;
	adv = utcp_seq_gt(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	if (space < sws || space < adv)
		space = adv;
	w = space >> c->rcv_wscale;
	if ((w << c->rcv_wscale) < adv)
		w++;
	return w > 65535 ? 65535 : (uint16_t)w;
}

static uint8_t *
put_ts(uint8_t *p, uint32_t val, uint32_t ecr)
{
	*p++ = 8;
	*p++ = 10;
	for (int i = 3; i >= 0; i--)
		*p++ = (uint8_t)(val >> (8 * i));
	for (int i = 3; i >= 0; i--)
		*p++ = (uint8_t)(ecr >> (8 * i));
	return p;
}

static uint8_t *
put32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

/* Options of a SYN: what we offer (SYN_SENT) or accept (SYN_RCVD). */
static unsigned
syn_opts(const struct utcp_conn *c, uint8_t *o)
{
	const struct utcp_conf *cf = &c->st->conf;
	bool active = c->state == UTCP_SYN_SENT;
	bool sack = active ? !cf->no_sack : (c->flags & UTCP_F_SACK) != 0;
	bool ts = active ? !cf->no_timestamps : (c->flags & UTCP_F_TS) != 0;
	bool ws = active ? !cf->no_wscale : (c->flags & UTCP_F_WS) != 0;
	uint8_t *p = o;

	*p++ = 2;
	*p++ = 4;
	*p++ = (uint8_t)(cf->mss >> 8);
	*p++ = (uint8_t)cf->mss;
	if (sack && ts) {
		*p++ = 4;
		*p++ = 2;
		p = put_ts(p, utcp_tsval(c), c->ts_recent);
	} else if (ts) {
		*p++ = 1;
		*p++ = 1;
		p = put_ts(p, utcp_tsval(c), c->ts_recent);
	} else if (sack) {
		*p++ = 1;
		*p++ = 1;
		*p++ = 4;
		*p++ = 2;
	}
	if (ws) {
		*p++ = 1;
		*p++ = 3;
		*p++ = 3;
		*p++ = c->rcv_wscale;
	}
	return (unsigned)(p - o);
}

static unsigned
data_opts(const struct utcp_conn *c, uint8_t *o)
{
	uint8_t *p = o;

	if (c->flags & UTCP_F_TS) {
		*p++ = 1;
		*p++ = 1;
		p = put_ts(p, utcp_tsval(c), c->ts_recent);
	}
	if ((c->flags & UTCP_F_SACK) && c->ooo_n > 0) {
		unsigned n = c->ooo_n, max = (c->flags & UTCP_F_TS) ? 3 : 4;

		if (n > max)
			n = max;
		*p++ = 1;
		*p++ = 1;
		*p++ = 5;
		*p++ = (uint8_t)(2 + 8 * n);
		for (unsigned i = 0; i < n; i++) {
			p = put32(p, c->ooo[i].start);
			p = put32(p, c->ooo[i].end);
		}
	}
	return (unsigned)(p - o);
}

/* Build and emit one segment of a connection; payload from the send ring. */
static int
emit_seg(struct utcp_conn *c, uint32_t seq, uint32_t len, uint8_t flags)
{
	struct utcp_stack *st = c->st;
	struct utcp_seg_out s;
	int rc;

	s.saddr = c->laddr;
	s.daddr = c->raddr;
	s.sport = c->lport;
	s.dport = c->rport;
	s.seq = seq;
	s.flags = flags;
	s.user = c->user;
	if (flags & UTCP_SYN) {
		s.optlen = (uint8_t)syn_opts(c, s.opts);
		s.wnd = utcp_wnd_field(c, true);
	} else {
		s.optlen = (uint8_t)data_opts(c, s.opts);
		s.wnd = utcp_wnd_field(c, false);
	}
	s.ack = (flags & UTCP_ACK) ? c->rcv_nxt : 0;
	s.len = len;
	s.iov[0].ptr = s.iov[1].ptr = NULL;
	s.iov[0].len = s.iov[1].len = 0;
	if (len > 0) {
		uint32_t cap = st->conf.sndbuf;
		uint32_t pos = (c->snd_head + (seq - c->buf_seq)) % cap;
		uint8_t *mem = utcp_sndbuf_mem(c);
		uint32_t first = cap - pos < len ? cap - pos : len;

		s.iov[0].ptr = mem + pos;
		s.iov[0].len = first;
		if (first < len) {
			s.iov[1].ptr = mem;
			s.iov[1].len = len - first;
		}
	}
	rc = st->conf.emit(st->conf.ctx, &s);
	if (rc < 0)
		return rc;
	st->cnt.segs_out++;
	st->cnt.bytes_out += len;
	if (flags & UTCP_ACK) {
		uint32_t edge = c->rcv_nxt + ((uint32_t)s.wnd << ((flags & UTCP_SYN) ? 0 : c->rcv_wscale));

		if (utcp_seq_gt(edge, c->rcv_adv))
			c->rcv_adv = edge;
		c->last_ack_sent = c->rcv_nxt;
		c->unacked_bytes = 0;
		c->flags &= ~UTCP_F_ACK_NOW;
		if (c->delack_at) {
			c->delack_at = 0;
			utcp_timer_update(c);
		}
	}
	return 0;
}

/* Book-keeping after a segment that occupies sequence space left. */
static void
sent_seq(struct utcp_conn *c, uint32_t seq, uint32_t seqlen, bool rexmit)
{
	struct utcp_stack *st = c->st;

	if (rexmit) {
		st->cnt.retransmits++;
		c->flags &= ~UTCP_F_RTT_TIMING;	/* Karn */
	} else if (!(c->flags & UTCP_F_RTT_TIMING)) {
		c->flags |= UTCP_F_RTT_TIMING;
		c->rtt_seq = seq;
		c->rtt_time = st->now;
	}
	if (utcp_seq_gt(seq + seqlen, c->snd_max))
		c->snd_max = seq + seqlen;
	c->last_tx = st->now;
	if (c->rto_at == 0)
		utcp_rto_arm(c);
	if (c->flags & UTCP_F_PERSIST) {
		c->flags &= ~UTCP_F_PERSIST;
		c->persist_at = 0;
		utcp_timer_update(c);
	}
}

/* Max payload for a data segment, after this segment's options. */
static uint32_t
max_payload(const struct utcp_conn *c)
{
	unsigned optlen = 0;

	if (c->flags & UTCP_F_TS)
		optlen += 12;
	if ((c->flags & UTCP_F_SACK) && c->ooo_n > 0) {
		unsigned n = c->ooo_n, max = (c->flags & UTCP_F_TS) ? 3 : 4;

		optlen += 4 + 8 * (n < max ? n : max);
	}
	return c->mss > optlen + 8 ? c->mss - optlen : 8;
}

/*
 * Send the range starting at seq (data then, if it ends the stream, FIN).
 * *sent (if not NULL) gets the data bytes sent: this segment's options
 * may leave less room than maxlen.
 * @return 1 sent, 0 nothing to send, < 0 emit failure.
 */
static int
send_at(struct utcp_conn *c, uint32_t seq, uint32_t maxlen, bool rexmit, uint32_t *sent)
{
	uint32_t data_end = c->buf_seq + c->snd_len, len = 0;
	uint8_t flags = UTCP_ACK;
	int rc;

	if (utcp_seq_lt(seq, data_end)) {
		len = data_end - seq;
		if (len > maxlen)
			len = maxlen;
		if (len > max_payload(c))
			len = max_payload(c);
	}
	if ((c->flags & UTCP_F_FIN_QUEUED) && seq + len == data_end)
		flags |= UTCP_FIN;
	if (len == 0 && !(flags & UTCP_FIN))
		return 0;
	if (len > 0)
		flags |= UTCP_PSH;
	rc = emit_seg(c, seq, len, flags);
	if (rc < 0)
		return rc;
	if (sent != NULL)
		*sent = len;
	sent_seq(c, seq, len + ((flags & UTCP_FIN) ? 1 : 0), rexmit);
	if (!rexmit || seq == c->snd_nxt) {
		if (utcp_seq_ge(seq + len + !!(flags & UTCP_FIN), c->snd_nxt))
			c->snd_nxt = seq + len + !!(flags & UTCP_FIN);
	}
	return 1;
}

static int
out_syn(struct utcp_conn *c)
{
	bool rexmit = (c->flags & UTCP_F_SYN_REXMIT) != 0;
	uint8_t flags = c->state == UTCP_SYN_SENT ? UTCP_SYN : UTCP_SYN | UTCP_ACK;
	int rc = emit_seg(c, c->iss, 0, flags);

	if (rc < 0)
		return rc;
	c->snd_nxt = c->iss + 1;
	sent_seq(c, c->iss, 1, rexmit);
	return 1;
}

/* Emit what the connection may send now. @return segments, or < 0. */
int
utcp_out_conn(struct utcp_conn *c, int budget)
{
	uint32_t data_end, wnd, usable, len, flight;
	int n = 0, rc;

	if (c->state == UTCP_CLOSED || c->state == UTCP_LISTEN || (c->flags & UTCP_F_DEAD))
		return 0;
	if (c->state == UTCP_SYN_SENT || c->state == UTCP_SYN_RCVD) {
		if (c->snd_nxt == c->iss)
			return out_syn(c);
		if (c->flags & UTCP_F_ACK_NOW)
			c->flags &= ~UTCP_F_ACK_NOW;
		return 0;
	}

	if ((c->flags & UTCP_F_PROBE) && n < budget) {
		c->flags &= ~UTCP_F_PROBE;
		if (c->snd_wnd == 0 && c->snd_len > 0) {
			rc = send_at(c, c->snd_una, 1, c->snd_max != c->snd_una, NULL);
			if (rc < 0)
				return rc;
			/* the probe is outside the window: persist, not RTO */
			c->snd_nxt = c->snd_una;
			c->rto_at = 0;
			c->flags |= UTCP_F_PERSIST;
			c->persist_at = c->st->now + utcp_rto_cur(c);
			utcp_timer_update(c);
			n += rc;
		} else if (c->snd_wnd > 0 && c->snd_nxt == c->snd_una &&
			   utcp_seq_lt(c->snd_nxt, c->buf_seq + c->snd_len)) {
			/* RFC 1122 4.2.3.4 override: what the small window allows */
			rc = send_at(c, c->snd_nxt, c->snd_wnd,
				utcp_seq_lt(c->snd_nxt, c->snd_max), NULL);
			if (rc < 0)
				return rc;
			n += rc;
		}
	}
	if ((c->flags & UTCP_F_REXMIT_UNA) && n < budget) {
		uint32_t sent = 0;

		c->flags &= ~UTCP_F_REXMIT_UNA;
		rc = send_at(c, c->snd_una, c->mss, true, &sent);
		if (rc < 0)
			return rc;
		/* HighRxt: what went out, which options may make < MSS */
		if (utcp_seq_gt(c->snd_una + sent, c->sb.high_rxt))
			c->sb.high_rxt = c->snd_una + sent;
		n += rc;
	}
	utcp_cc_idle_restart(c);
	while (n < budget) {
		data_end = c->buf_seq + c->snd_len;
		if ((c->flags & (UTCP_F_RECOVERY | UTCP_F_SACK)) ==
		    (UTCP_F_RECOVERY | UTCP_F_SACK)) {
			uint32_t pipe = utcp_sb_pipe(&c->sb, c->snd_una, c->snd_max, c->mss);
			uint32_t seq, len, sent = 0;

			if (pipe + c->mss > c->cwnd)
				break;
			if (utcp_sb_next_seg(&c->sb, c->snd_una, c->mss, &seq, &len)) {
				rc = send_at(c, seq, len, true, &sent);
				if (rc < 0)
					return rc;
				if (rc == 0)
					break;
				c->sb.high_rxt = seq + sent;
				n++;
				continue;
			}
			/* rule 2: new data within the peer's window */
			if (utcp_seq_lt(c->snd_nxt, c->snd_max))
				c->snd_nxt = c->snd_max;
			if (!utcp_seq_lt(c->snd_nxt, c->snd_una + c->snd_wnd) &&
			    utcp_seq_lt(c->snd_nxt, data_end))
				break;
			rc = send_at(c, c->snd_nxt, c->snd_una + c->snd_wnd - c->snd_nxt, false, NULL);
			if (rc <= 0) {
				if (rc < 0)
					return rc;
				break;
			}
			n++;
			continue;
		}
		wnd = c->cwnd;
		/* RFC 3042 limited transmit: one new segment per early dupack */
		if (!(c->flags & UTCP_F_RECOVERY) && c->dupacks > 0 &&
		    c->dupacks < UTCP_DUPTHRESH)
			wnd += (c->dupacks < 2 ? c->dupacks : 2) * c->mss;
		wnd = wnd < c->snd_wnd ? wnd : c->snd_wnd;
		flight = c->snd_nxt - c->snd_una;
		/* go-back-N after an RTO: what the peer SACKed is not in flight */
		if (utcp_seq_lt(c->snd_nxt, c->snd_max) && c->sb.n > 0)
			flight -= utcp_sb_sacked_below(&c->sb, c->snd_nxt);
		usable = flight < wnd ? wnd - flight : 0;
		if (utcp_seq_lt(c->snd_nxt, data_end)) {
			uint32_t left = data_end - c->snd_nxt, maxp = max_payload(c);

			if (usable == 0)
				break;
			/* sender SWS avoidance (RFC 9293 3.8.6.2.1) */
			if (usable < maxp && usable < left && usable < c->max_snd_wnd / 2)
				break;
		} else if (!(c->flags & UTCP_F_FIN_QUEUED) ||
			   !utcp_seq_le(c->snd_nxt, data_end)) {
			break;
		}
		len = usable;
		if (utcp_seq_lt(c->snd_nxt, c->snd_max) && c->sb.n > 0) {
			/* go-back-N after an RTO: the peer has the SACKed ranges */
			uint32_t end, next;

			if (utcp_sb_is_sacked(&c->sb, c->snd_nxt, &end)) {
				c->snd_nxt = utcp_seq_min(end, c->snd_max);
				continue;
			}
			next = utcp_sb_next_start(&c->sb, c->snd_nxt);
			if (next != c->snd_nxt && next - c->snd_nxt < len)
				len = next - c->snd_nxt;
		}
		rc = send_at(c, c->snd_nxt, len, utcp_seq_lt(c->snd_nxt, c->snd_max), NULL);
		if (rc < 0)
			return rc;
		if (rc == 0)
			break;
		n++;
	}
	data_end = c->buf_seq + c->snd_len;
	utcp_cc_validate(c, utcp_seq_lt(c->snd_nxt, data_end) && c->cwnd <= c->snd_wnd &&
		utcp_flight(c) + c->mss > c->cwnd);
	/*
	 * Every connection with something to send has a timer. Data sent and
	 * not acknowledged: the RTO (SND.NXT may sit at SND.UNA with more
	 * outstanding, after a go-back-N or an ACK that caught up with it
	 * in recovery). Data waiting and nothing outstanding: the window is
	 * zero, or below what SWS avoidance sends; persist (probe, or RFC
	 * 1122 override timer), or one lost window update hangs the
	 * connection.
	 */
	if (!(c->flags & UTCP_F_PERSIST)) {
		if (c->snd_una != c->snd_max) {
			if (c->rto_at == 0)
				utcp_rto_arm(c);
		} else if (utcp_seq_lt(c->snd_nxt, data_end)) {
			c->flags |= UTCP_F_PERSIST;
			c->rto_at = 0;
			c->persist_at = c->st->now + utcp_rto_cur(c);
			utcp_timer_update(c);
		}
	}
	/*
	 * A pure ACK carries SND.MAX, not SND.NXT: after a go-back-N
	 * SND.NXT sits below what the peer has already acknowledged, and a
	 * segment that far back is outside its window, ACK field and all
	 * (RFC 9293 3.10.7.4; BSD tcp_output does the same).
	 */
	if ((c->flags & UTCP_F_ACK_NOW) && n < budget) {
		rc = emit_seg(c, c->snd_max, 0, UTCP_ACK);
		if (rc < 0)
			return rc;
		n++;
	}
	while (c->acks_owed > 0 && n < budget) {
		rc = emit_seg(c, c->snd_max, 0, UTCP_ACK);
		if (rc < 0)
			return rc;
		c->acks_owed--;
		n++;
	}
	return n;
}

void
utcp_ctl_queue(struct utcp_stack *st, const struct utcp_ctl *ctl)
{
	if (st->ctl_n == st->ctl_cap) {
		st->cnt.drops[UTCP_DROP_CTLQ]++;
		return;
	}
	st->ctlq[(st->ctl_head + st->ctl_n) % st->ctl_cap] = *ctl;
	st->ctl_n++;
}

/* RST for a segment that matches no connection (RFC 9293 3.10.7.1). */
void
utcp_ctl_rst_for(struct utcp_stack *st, const struct utcp_seg_in *seg)
{
	struct utcp_ctl ctl = {
		.saddr = seg->daddr, .daddr = seg->saddr,
		.sport = seg->dport, .dport = seg->sport,
	};

	if (seg->flags & UTCP_RST)
		return;
	if (seg->flags & UTCP_ACK) {
		ctl.seq = seg->ack;
		ctl.flags = UTCP_RST;
	} else {
		ctl.seq = 0;
		ctl.ack = seg->seq + seg->len + !!(seg->flags & UTCP_SYN) +
			!!(seg->flags & UTCP_FIN);
		ctl.flags = UTCP_RST | UTCP_ACK;
	}
	utcp_ctl_queue(st, &ctl);
}

/*
 * RFC 5961 challenge ACK. A per-connection limit, and a stack-wide one
 * whose budget is drawn anew each second (limit .. 2*limit-1, keyed by the
 * stack secret) so that one connection cannot learn from its own challenge
 * ACKs how many the others used (CVE-2016-5696).
 */
void
utcp_out_challenge_ack(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;
	uint64_t epoch = st->now / 1000000;

	if (epoch != st->chal_epoch) {
		uint32_t lim = st->conf.challenge_ack_limit;

		st->chal_epoch = epoch;
		st->chal_count = 0;
		st->chal_budget = lim + (uint32_t)(utcp_siphash(st->key, &epoch,
			sizeof(epoch)) % lim);
	}
	if (epoch != c->chal_epoch) {
		c->chal_epoch = epoch;
		c->chal_count = 0;
	}
	if (c->chal_count >= st->conf.challenge_ack_conn_limit ||
	    st->chal_count >= st->chal_budget)
		return;
	c->chal_count++;
	st->chal_count++;
	st->cnt.challenge_acks++;
	utcp_out_ack_now(c);
}

static int
emit_ctl(struct utcp_stack *st, const struct utcp_ctl *ctl)
{
	struct utcp_seg_out s;
	int rc;

	memset(&s, 0, sizeof(s));
	s.saddr = ctl->saddr;
	s.daddr = ctl->daddr;
	s.sport = ctl->sport;
	s.dport = ctl->dport;
	s.seq = ctl->seq;
	s.ack = ctl->ack;
	s.flags = ctl->flags;
	s.wnd = ctl->wnd;
	if (ctl->has_ts) {
		s.opts[0] = 1;
		s.opts[1] = 1;
		put_ts(s.opts + 2, ctl->tsval, ctl->tsecr);
		s.optlen = 12;
	}
	rc = st->conf.emit(st->conf.ctx, &s);
	if (rc < 0)
		return rc;
	st->cnt.segs_out++;
	if (ctl->flags & UTCP_RST)
		st->cnt.rst_sent++;
	return 0;
}

int
utcp_output(struct utcp_stack *st, uint64_t now_us, int budget)
{
	int n = 0;
	struct utcp_conn *c;

	utcp_clock(st, now_us);
	utcp_conn_reclaim(st);
	while (n < budget && st->ctl_n > 0) {
		if (emit_ctl(st, &st->ctlq[st->ctl_head]) < 0)
			return n;
		st->ctl_head = (st->ctl_head + 1) % st->ctl_cap;
		st->ctl_n--;
		n++;
	}
	while (n < budget && (c = TAILQ_FIRST(&st->outq)) != NULL) {
		int rc;

		TAILQ_REMOVE(&st->outq, c, outq);
		c->flags &= ~UTCP_F_IN_OUTQ;
		rc = utcp_out_conn(c, budget - n);
		if (rc < 0) {
			utcp_out_schedule(c);
			break;
		}
		n += rc;
		if (n >= budget)
			utcp_out_schedule(c);	/* may have more */
	}
	return n;
}
