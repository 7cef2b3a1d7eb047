/*
 * Segment input (RFC 9293 3.10.7), called from utcp_input() once per
 * segment: options are parsed, the 4-tuple finds a connection, a TIME_WAIT
 * record or a listener. For a connection the order is the RFC's: PAWS
 * (RFC 7323), sequence acceptability, RST and SYN checks with RFC 5961
 * challenge ACKs, ACK validation, SND.UNA/window/RTT/congestion updates and
 * loss detection (NewReno dupacks or the RFC 6675 scoreboard), then data
 * into the receive ring (out-of-order ranges kept in place and reported as
 * SACK blocks), then FIN. Input never emits and never calls the user: it
 * queues events and marks connections for utcp_output().
 */
#include <string.h>

#include "utcp_impl.h"

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int
utcp_opts_parse(const uint8_t *p, unsigned len, struct utcp_opts *o)
{
	unsigned i = 0;

	memset(o, 0, sizeof(*o));
	while (i < len) {
		uint8_t kind = p[i], l;

		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= len)
			return -1;
		l = p[i + 1];
		if (l < 2 || i + l > len)
			return -1;
		switch (kind) {
		case 2:
			if (l == 4) {
				o->has_mss = 1;
				o->mss = (uint16_t)(p[i + 2] << 8 | p[i + 3]);
			}
			break;
		case 3:
			if (l == 3) {
				o->has_ws = 1;
				o->ws = p[i + 2] > 14 ? 14 : p[i + 2];
			}
			break;
		case 4:
			if (l == 2)
				o->sack_ok = 1;
			break;
		case 5:
			if (l >= 10 && (l - 2) % 8 == 0) {
				unsigned n = (l - 2) / 8;

				for (unsigned k = 0; k < n && k < 4; k++) {
					o->sack[k].start = get32(p + i + 2 + 8 * k);
					o->sack[k].end = get32(p + i + 6 + 8 * k);
				}
				o->nsack = (uint8_t)(n < 4 ? n : 4);
			}
			break;
		case 8:
			if (l == 10) {
				o->has_ts = 1;
				o->tsval = get32(p + i + 2);
				o->tsecr = get32(p + i + 6);
			}
			break;
		default:
			break;
		}
		i += l;
	}
	return 0;
}

/* Apply the SYN's options (ours were offered per the configuration). */
static void
negotiate(struct utcp_conn *c, const struct utcp_seg_in *seg, const struct utcp_opts *o)
{
	const struct utcp_conf *cf = &c->st->conf;
	uint32_t peer_mss = o->has_mss ? o->mss : 536;

	c->mss = cf->mss < peer_mss ? cf->mss : peer_mss;
	{
		uint32_t mtu = utcp_pmtu_get(c->st, c->raddr);

		if (mtu != 0 && mtu - 40u < c->mss) {
			c->st->cnt.pmtu_cached++;
			c->mss = mtu - 40u;
		}
	}
	if (c->mss < 64)
		c->mss = 64;
	if (o->has_ws && !cf->no_wscale) {
		c->flags |= UTCP_F_WS;
		c->snd_wscale = o->ws;
	} else {
		c->snd_wscale = 0;
		c->rcv_wscale = 0;
	}
	if (o->sack_ok && !cf->no_sack)
		c->flags |= UTCP_F_SACK;
	if (o->has_ts && !cf->no_timestamps) {
		c->flags |= UTCP_F_TS;
		c->ts_recent = o->tsval;
	}
	c->irs = seg->seq;
	c->rcv_nxt = seg->seq + 1;
	c->rcv_adv = c->rcv_nxt;
	c->snd_wnd = seg->wnd;		/* never scaled in a SYN */
	c->max_snd_wnd = c->snd_wnd;
	c->snd_wl1 = seg->seq;
}

static void
rtt_from_ack(struct utcp_conn *c, const struct utcp_opts *o, uint32_t ack)
{
	struct utcp_stack *st = c->st;

	if ((c->flags & UTCP_F_TS) && o->has_ts && o->tsecr != 0) {
		uint32_t ms = utcp_tsval(c) - o->tsecr;

		if (ms < 600000) {
			utcp_rtt_sample(&c->rtt, ms * 1000);
			if (utcp_seq_gt(ack, c->rtt_seq))
				c->flags &= ~UTCP_F_RTT_TIMING;
			return;
		}
	}
	/* no (usable) timestamp: Karn-filtered timing of one segment */
	if ((c->flags & UTCP_F_RTT_TIMING) && utcp_seq_gt(ack, c->rtt_seq)) {
		c->flags &= ~UTCP_F_RTT_TIMING;
		utcp_rtt_sample(&c->rtt, (uint32_t)(st->now - c->rtt_time));
	}
}

static void
established(struct utcp_conn *c, const struct utcp_seg_in *seg)
{
	c->snd_wl1 = seg->seq;
	c->snd_wl2 = seg->ack;
	c->retries = 0;
	c->rto_at = 0;
	utcp_timer_update(c);
	/* RFC 6298 5.7: no sample after a retransmitted SYN: RTO 3 s */
	if (c->rtt.srtt == 0 && (c->flags & UTCP_F_SYN_REXMIT) && c->rtt.rto < 3000000)
		c->rtt.rto = 3000000 < c->rtt.rto_max ? 3000000 : c->rtt.rto_max;
	utcp_cc_init(c);
	c->recover = c->snd_una;
	c->sb.high_rxt = c->snd_una;
	utcp_conn_set_state(c, (c->flags & UTCP_F_FIN_QUEUED) ? UTCP_FIN_WAIT_1 :
		UTCP_ESTABLISHED);
	if (c->flags & UTCP_F_PASSIVE) {
		c->flags |= UTCP_F_HANDED;
		utcp_conn_event(c, UTCP_EV_ACCEPTED);
	} else {
		utcp_conn_event(c, UTCP_EV_CONNECTED);
	}
	if (c->snd_len > 0)
		utcp_out_schedule(c);
}

static void
syn_sent_input(struct utcp_conn *c, const struct utcp_seg_in *seg,
	const struct utcp_opts *o)
{
	struct utcp_stack *st = c->st;

	if (seg->flags & UTCP_ACK) {
		if (utcp_seq_le(seg->ack, c->iss) || utcp_seq_gt(seg->ack, c->snd_max)) {
			st->cnt.drops[UTCP_DROP_BADACK]++;
			utcp_ctl_rst_for(st, seg);
			return;
		}
	}
	if (seg->flags & UTCP_RST) {
		if (seg->flags & UTCP_ACK) {
			st->cnt.rst_in++;
			utcp_conn_error(c, UTCP_ERR_REFUSED);
		} else {
			st->cnt.drops[UTCP_DROP_BADRST]++;
		}
		return;
	}
	if (!(seg->flags & UTCP_SYN))
		return;
	negotiate(c, seg, o);
	if (seg->flags & UTCP_ACK) {
		rtt_from_ack(c, o, seg->ack);
		c->snd_una = seg->ack;
		if (utcp_seq_lt(c->snd_nxt, c->snd_una))
			c->snd_nxt = c->snd_una;
		established(c, seg);
		utcp_out_ack_now(c);
		return;
	}
	/* simultaneous open: answer with SYN-ACK (RFC 9293 figure 7) */
	utcp_conn_set_state(c, UTCP_SYN_RCVD);
	c->snd_nxt = c->iss;
	utcp_out_schedule(c);
}

static void
passive_open(struct utcp_stack *st, const struct utcp_listener *l,
	const struct utcp_seg_in *seg, const struct utcp_opts *o)
{
	struct utcp_conn *c = utcp_conn_alloc(st);

	if (c == NULL) {
		st->cnt.drops[UTCP_DROP_NOCONN_POOL]++;
		return;
	}
	c->user = l->user;
	c->flags |= UTCP_F_PASSIVE;
	c->laddr = seg->daddr;
	c->lport = seg->dport;
	c->raddr = seg->saddr;
	c->rport = seg->sport;
	c->iss = utcp_isn(st, c->laddr, c->lport, c->raddr, c->rport, st->now);
	c->ts_offset = utcp_ts_offset(st, c->laddr, c->lport, c->raddr, c->rport);
	c->snd_una = c->snd_nxt = c->snd_max = c->iss;
	c->buf_seq = c->iss + 1;
	negotiate(c, seg, o);
	utcp_conn_set_state(c, UTCP_SYN_RCVD);
	utcp_conn_hash(c);
	utcp_out_schedule(c);
}

static void
tw_ack(struct utcp_stack *st, const struct utcp_tw *tw)
{
	struct utcp_ctl ctl = {
		.saddr = tw->laddr, .daddr = tw->raddr,
		.sport = tw->lport, .dport = tw->rport,
		.seq = tw->snd_nxt, .ack = tw->rcv_nxt, .flags = UTCP_ACK,
		.wnd = (uint16_t)tw->rcv_wnd, .has_ts = tw->ts_ok,
		.tsval = tw->ts_last, .tsecr = tw->ts_recent,
	};

	utcp_ctl_queue(st, &ctl);
}

/* @return true if the segment is a new SYN that may replace the record. */
static bool
tw_input(struct utcp_stack *st, struct utcp_tw *tw, const struct utcp_seg_in *seg,
	const struct utcp_opts *o)
{
	if (seg->flags & UTCP_RST)
		return false;		/* RFC 1337 */
	if ((seg->flags & (UTCP_SYN | UTCP_ACK)) == UTCP_SYN) {
		/* RFC 6191: a higher timestamp, or a higher sequence without */
		bool ok = (tw->ts_ok && o->has_ts) ? utcp_seq_gt(o->tsval, tw->ts_recent) :
			utcp_seq_gt(seg->seq, tw->rcv_nxt);

		if (ok) {
			utcp_tw_free(st, tw);
			return true;
		}
		return false;
	}
	if ((seg->flags & UTCP_FIN) || seg->len > 0) {
		tw_ack(st, tw);
		if (seg->flags & UTCP_FIN) {
			TAILQ_REMOVE(&st->tw_fifo, tw, fifo);
			tw->expire = st->now + st->conf.time_wait_us;
			TAILQ_INSERT_TAIL(&st->tw_fifo, tw, fifo);
		}
	}
	return false;
}

/* Record [s, e) as received out of order; most recent range first. */
static bool
ooo_add(struct utcp_conn *c, uint32_t s, uint32_t e)
{
	struct utcp_sack_block nb = { s, e };
	unsigned out = 0;
	struct utcp_sack_block keep[UTCP_OOO_RANGES];

	for (unsigned i = 0; i < c->ooo_n; i++) {
		struct utcp_sack_block x = c->ooo[i];

		if (utcp_seq_le(x.start, nb.end) && utcp_seq_ge(x.end, nb.start)) {
			nb.start = utcp_seq_min(nb.start, x.start);
			nb.end = utcp_seq_max(nb.end, x.end);
		} else {
			keep[out++] = x;
		}
	}
	if (out >= UTCP_OOO_RANGES)
		return false;
	c->ooo[0] = nb;
	memcpy(&c->ooo[1], keep, out * sizeof(keep[0]));
	c->ooo_n = (uint8_t)(out + 1);
	return true;
}

/* Would [s, e) fit among the ranges (overlap one, or a free slot)? */
static bool
ooo_fits(const struct utcp_conn *c, uint32_t s, uint32_t e)
{
	if (c->ooo_n < UTCP_OOO_RANGES)
		return true;
	for (unsigned i = 0; i < c->ooo_n; i++)
		if (utcp_seq_le(c->ooo[i].start, e) && utcp_seq_ge(c->ooo[i].end, s))
			return true;
	return false;
}

/* After in-order progress, pull in the ranges that became contiguous. */
static void
ooo_pull(struct utcp_conn *c)
{
	bool again = true;

	while (again) {
		again = false;
		for (unsigned i = 0; i < c->ooo_n; i++) {
			struct utcp_sack_block x = c->ooo[i];

			if (utcp_seq_gt(x.start, c->rcv_nxt))
				continue;
			if (utcp_seq_gt(x.end, c->rcv_nxt)) {
				c->rcv_len += x.end - c->rcv_nxt;
				c->rcv_nxt = x.end;
			}
			memmove(&c->ooo[i], &c->ooo[i + 1], (c->ooo_n - i - 1) * sizeof(x));
			c->ooo_n--;
			again = true;
			break;
		}
	}
}

/*
 * Data of an accepted segment. @return true if all of it was taken (in
 * order or held out of order), so a FIN after it counts.
 */
static bool
data_input(struct utcp_conn *c, const struct utcp_seg_in *seg)
{
	struct utcp_stack *st = c->st;
	uint32_t seq = seg->seq, len = seg->len, cap = st->conf.rcvbuf;
	const uint8_t *p = seg->payload;
	uint32_t space, off, pos, first;
	bool had_ooo = c->ooo_n > 0, trimmed = false;

	if (utcp_seq_lt(seq, c->rcv_nxt)) {
		off = c->rcv_nxt - seq;
		if (off >= len) {
			utcp_out_ack_now(c);	/* duplicate */
			return len == off;
		}
		seq += off;
		p += off;
		len -= off;
	}
	space = utcp_rcv_space(c);
	if (seq - c->rcv_nxt >= space) {
		utcp_out_ack_now(c);
		return false;
	}
	if (seq - c->rcv_nxt + len > space) {
		len = space - (seq - c->rcv_nxt);
		trimmed = true;
	}
	if (seq != c->rcv_nxt && !ooo_fits(c, seq, seq + len)) {
		st->cnt.drops[UTCP_DROP_OOO_FULL]++;
		utcp_out_ack_now(c);
		return false;
	}
	if (utcp_rcvbuf_attach(c) < 0) {
		st->cnt.drops[UTCP_DROP_NOBUF]++;
		return false;
	}
	pos = (c->rcv_head + c->rcv_len + (seq - c->rcv_nxt)) % cap;
	first = cap - pos < len ? cap - pos : len;
	memcpy(utcp_rcvbuf_mem(c) + pos, p, first);
	memcpy(utcp_rcvbuf_mem(c), p + first, len - first);
	if (seq == c->rcv_nxt) {
		c->rcv_nxt += len;
		c->rcv_len += len;
		ooo_pull(c);
		c->unacked_bytes += len;
		utcp_conn_event(c, UTCP_EV_READABLE);
		if (had_ooo || c->unacked_bytes >= 2 * c->mss - 80)
			utcp_out_ack_now(c);
		else if (c->delack_at == 0 && !(c->flags & UTCP_F_ACK_NOW)) {
			c->delack_at = st->now + st->conf.delack_us;
			utcp_timer_update(c);
		}
	} else {
		ooo_add(c, seq, seq + len);
		/*
		 * One duplicate ACK per out-of-order segment even when a burst
		 * is processed before output: without SACK the sender counts
		 * them (RFC 5681 4.2).
		 */
		if ((c->flags & UTCP_F_ACK_NOW) && !(c->flags & UTCP_F_SACK) &&
		    c->acks_owed < 255)
			c->acks_owed++;
		utcp_out_ack_now(c);
	}
	return !trimmed;
}

static void
fin_input(struct utcp_conn *c)
{
	c->rcv_nxt++;
	c->flags |= UTCP_F_FIN_RCVD;
	utcp_conn_event(c, UTCP_EV_PEER_CLOSED);
	utcp_out_ack_now(c);
	switch (c->state) {
	case UTCP_SYN_RCVD:
	case UTCP_ESTABLISHED:
		utcp_conn_set_state(c, UTCP_CLOSE_WAIT);
		break;
	case UTCP_FIN_WAIT_1:
		utcp_conn_set_state(c, UTCP_CLOSING);
		break;
	case UTCP_FIN_WAIT_2:
		utcp_conn_enter_time_wait(c);
		break;
	default:
		break;
	}
}

/*
 * RFC 5827 early retransmit: with fewer than four segments outstanding and
 * no new data that may be sent, three duplicate ACKs never come; the
 * threshold is the outstanding segments minus one.
 */
static unsigned
dupthresh(const struct utcp_conn *c)
{
	uint32_t flight = utcp_flight(c), data_end = c->buf_seq + c->snd_len;
	uint32_t segs = (flight + c->mss - 1) / c->mss, wnd;
	bool can_send;

	if (segs >= 4)
		return UTCP_DUPTHRESH;
	wnd = c->snd_wnd < c->cwnd + 2 * c->mss ? c->snd_wnd : c->cwnd + 2 * c->mss;
	can_send = utcp_seq_lt(c->snd_max, data_end) &&
		utcp_seq_lt(c->snd_max, c->snd_una + wnd);
	if (can_send)
		return UTCP_DUPTHRESH;
	return segs > 2 ? segs - 1 : 1;
}

/* Fast retransmit and recovery from SND.UNA (RFC 6582, RFC 6675). */
static void
enter_recovery(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;
	bool sack = (c->flags & UTCP_F_SACK) != 0;

	st->cnt.fast_recoveries++;
	c->flags |= UTCP_F_RECOVERY | UTCP_F_REXMIT_UNA;
	c->flags &= ~UTCP_F_RTT_TIMING;
	c->recover = c->snd_max;
	utcp_cc_on_loss(c);
	c->cubic.epoch_start = 0;
	if (sack) {
		c->cwnd = c->ssthresh;
		/* the REXMIT_UNA send moves HighRxt past what it resent */
		c->sb.high_rxt = c->snd_una;
	} else {
		c->cwnd = c->ssthresh + UTCP_DUPTHRESH * c->mss;
	}
	utcp_out_schedule(c);
}

/* Loss detection on a duplicate ACK (RFC 5681/6582, RFC 6675). */
static void
dupack(struct utcp_conn *c)
{
	bool sack = (c->flags & UTCP_F_SACK) != 0;
	unsigned thresh;

	c->dupacks++;
	if (c->flags & UTCP_F_RECOVERY) {
		if (!sack)
			c->cwnd += c->mss;	/* inflation */
		utcp_out_schedule(c);
		return;
	}
	/* RFC 3042 limited transmit: new data for the first two dupacks */
	if (c->dupacks < UTCP_DUPTHRESH)
		utcp_out_schedule(c);
	thresh = dupthresh(c);
	/* with SACK, RFC 5827 counts SACKed segments, one ACK may carry several */
	if (c->dupacks < thresh &&
	    !(sack && utcp_sb_is_lost(&c->sb, c->snd_una, c->mss)) &&
	    !(sack && thresh < UTCP_DUPTHRESH &&
	      (c->sb.sacked + c->mss - 1) / c->mss >= thresh))
		return;
	/*
	 * A previous episode's retransmissions are still being acked (RFC
	 * 6582 3.2), or an RTO's go-back-N is under way (RFC 6675 5.1: no
	 * new recovery before its RecoveryPoint, and no second decrease)
	 */
	if (utcp_seq_lt(c->snd_una, c->recover) && c->recover != c->snd_una)
		return;
	enter_recovery(c);
}

/* @return true when the ACK acknowledged our FIN. */
static bool
ack_input(struct utcp_conn *c, const struct utcp_seg_in *seg, const struct utcp_opts *o)
{
	struct utcp_stack *st = c->st;
	uint32_t ack = seg->ack, wnd = (uint32_t)seg->wnd << c->snd_wscale;
	bool fin_acked = false, wnd_update = false, newsack = false;
	uint32_t old_wnd = c->snd_wnd;

	c->probes = 0;

	/* RFC 9293 3.10.7.4: only an ACK at or past SND.UNA updates the window */
	if (utcp_seq_ge(ack, c->snd_una) && (utcp_seq_lt(c->snd_wl1, seg->seq) ||
	    (c->snd_wl1 == seg->seq && utcp_seq_le(c->snd_wl2, ack)))) {
		wnd_update = wnd != c->snd_wnd;
		c->snd_wnd = wnd;
		c->snd_wl1 = seg->seq;
		c->snd_wl2 = ack;
		if (wnd > c->max_snd_wnd)
			c->max_snd_wnd = wnd;
		if (wnd > 0 && (c->flags & UTCP_F_PERSIST)) {
			/* output sends, or re-arms a timer for what it cannot */
			c->flags &= ~UTCP_F_PERSIST;
			c->persist_at = 0;
			c->retries = 0;
			utcp_timer_update(c);
			utcp_out_schedule(c);
		}
		if (wnd > old_wnd)
			utcp_out_schedule(c);
	}

	if (utcp_seq_gt(ack, c->snd_una)) {
		uint32_t acked = ack - c->snd_una;
		uint32_t fin_seq = c->buf_seq + c->snd_len;

		rtt_from_ack(c, o, ack);
		if (utcp_seq_gt(ack, c->buf_seq)) {
			uint32_t d = ack - c->buf_seq;

			if (d > c->snd_len)
				d = c->snd_len;
			c->buf_seq += d;
			c->snd_len -= d;
			if (c->sndbuf != UTCP_NO_BUF)
				c->snd_head = (c->snd_head + d) % st->conf.sndbuf;
			if (d > 0 && (c->flags & UTCP_F_WANT_WRITE)) {
				c->flags &= ~UTCP_F_WANT_WRITE;
				utcp_conn_event(c, UTCP_EV_WRITABLE);
			}
		}
		if ((c->flags & UTCP_F_FIN_QUEUED) && ack == fin_seq + 1)
			fin_acked = true;
		c->snd_una = ack;
		if (utcp_seq_lt(c->snd_nxt, ack))
			c->snd_nxt = ack;
		utcp_sb_ack(&c->sb, ack);
		if (o->nsack && (c->flags & UTCP_F_SACK))
			utcp_sb_update(&c->sb, o->sack, o->nsack, c->snd_una, c->snd_max);
		c->retries = 0;
		if (c->flags & UTCP_F_RECOVERY) {
			if (utcp_seq_ge(ack, c->recover)) {
				uint32_t fl = utcp_flight(c) + c->mss;

				c->flags &= ~UTCP_F_RECOVERY;
				c->dupacks = 0;
				c->cwnd = (c->flags & UTCP_F_SACK) || fl > c->ssthresh ?
					c->ssthresh : fl;
			} else if (!(c->flags & UTCP_F_SACK)) {
				/* RFC 6582 partial ACK: resend the next hole, deflate */
				c->flags |= UTCP_F_REXMIT_UNA;
				c->cwnd = c->cwnd > acked ? c->cwnd - acked + c->mss : c->mss;
			}
		} else {
			c->dupacks = 0;
			utcp_cc_on_ack(c, acked);
			/*
			 * An ACK that moves SND.UNA can still show, by what it
			 * SACKs, that the next segment is lost (RFC 6675 IsLost):
			 * a short flight may send no further ACK to count.
			 */
			if ((c->flags & UTCP_F_SACK) && c->snd_una != c->snd_max &&
			    !utcp_seq_lt(c->snd_una, c->recover) &&
			    utcp_sb_is_lost(&c->sb, c->snd_una, c->mss))
				enter_recovery(c);
		}
		if (c->snd_una == c->snd_max) {
			c->rto_at = 0;
			utcp_timer_update(c);
		} else {
			utcp_rto_arm(c);
		}
		utcp_bufs_release(c);
		utcp_out_schedule(c);
	} else if (ack == c->snd_una) {
		if (o->nsack && (c->flags & UTCP_F_SACK))
			newsack = utcp_sb_update(&c->sb, o->sack, o->nsack,
				c->snd_una, c->snd_max) > 0;
		/* answers to zero-window probes are not duplicate ACKs */
		if (c->snd_max != c->snd_una && c->snd_wnd > 0 &&
		    !(c->flags & UTCP_F_PERSIST) && (newsack ||
		    (seg->len == 0 && !(seg->flags & (UTCP_SYN | UTCP_FIN)) && !wnd_update)))
			dupack(c);
	}
	return fin_acked;
}

/*
 * ACK an invalid segment (PAWS, outside the window, ACK of unsent data).
 * One with data always gets its duplicate ACK; others at most one per
 * oow_ack_interval_us (Linux tcp_oow_rate_limited), or a spoofed flood or
 * an ACK loop between two stacks eats the output.
 */
static void
oow_ack(struct utcp_conn *c, const struct utcp_seg_in *seg)
{
	struct utcp_stack *st = c->st;

	if (seg->len == 0 || (seg->flags & UTCP_SYN)) {
		if (c->oow_ack_at != 0 &&
		    st->now - c->oow_ack_at < st->conf.oow_ack_interval_us) {
			st->cnt.oow_acks_limited++;
			return;
		}
		c->oow_ack_at = st->now;
	}
	utcp_out_ack_now(c);
}

static void
sync_input(struct utcp_conn *c, const struct utcp_seg_in *seg, const struct utcp_opts *o)
{
	struct utcp_stack *st = c->st;
	uint32_t seglen = seg->len + !!(seg->flags & UTCP_SYN) + !!(seg->flags & UTCP_FIN);
	uint32_t wnd = utcp_rcv_space(c);
	bool ok, fin_acked;

	/* PAWS (RFC 7323 5.3); a segment without timestamp is tolerated */
	if ((c->flags & UTCP_F_TS) && o->has_ts && !(seg->flags & UTCP_RST) &&
	    utcp_seq_lt(o->tsval, c->ts_recent)) {
		st->cnt.drops[UTCP_DROP_PAWS]++;
		oow_ack(c, seg);
		return;
	}
	if (wnd == 0)
		ok = seg->seq == c->rcv_nxt;
	else if (seglen == 0)
		ok = utcp_seq_in(seg->seq, c->rcv_nxt, c->rcv_nxt + wnd);
	else
		ok = utcp_seq_in(seg->seq, c->rcv_nxt, c->rcv_nxt + wnd) ||
			utcp_seq_in(seg->seq + seglen - 1, c->rcv_nxt, c->rcv_nxt + wnd);
	if (!ok) {
		st->cnt.drops[UTCP_DROP_OUTWIN]++;
		if (!(seg->flags & UTCP_RST))
			oow_ack(c, seg);
		return;
	}
	if (seg->flags & UTCP_RST) {
		/* RFC 5961 3.2: only the exact next sequence resets */
		if (seg->seq != c->rcv_nxt) {
			st->cnt.drops[UTCP_DROP_BADRST]++;
			utcp_out_challenge_ack(c);
			return;
		}
		st->cnt.rst_in++;
		utcp_conn_error(c, UTCP_ERR_RESET);
		return;
	}
	if (seg->flags & UTCP_SYN) {
		if (c->state == UTCP_SYN_RCVD && seg->seq == c->irs &&
		    !(seg->flags & UTCP_ACK)) {
			c->snd_nxt = c->iss;	/* our SYN-ACK was lost */
			utcp_out_schedule(c);
			return;
		}
		/* RFC 5961 4.2 */
		st->cnt.drops[UTCP_DROP_BADSYN]++;
		utcp_out_challenge_ack(c);
		return;
	}
	if (!(seg->flags & UTCP_ACK))
		return;
	/* RFC 5961 5.2 ACK validation */
	if (utcp_seq_gt(seg->ack, c->snd_max)) {
		st->cnt.drops[UTCP_DROP_BADACK]++;
		oow_ack(c, seg);
		return;
	}
	if (utcp_seq_lt(seg->ack, c->snd_una - c->max_snd_wnd)) {
		st->cnt.drops[UTCP_DROP_BADACK]++;
		utcp_out_challenge_ack(c);
		return;
	}
	if (c->state == UTCP_SYN_RCVD) {
		if (!utcp_seq_gt(seg->ack, c->snd_una)) {
			utcp_ctl_rst_for(st, seg);
			return;
		}
		c->snd_wnd = (uint32_t)seg->wnd << c->snd_wscale;
		c->max_snd_wnd = c->snd_wnd;
		established(c, seg);
	}
	if ((c->flags & UTCP_F_TS) && o->has_ts && utcp_seq_le(seg->seq, c->last_ack_sent))
		c->ts_recent = o->tsval;

	fin_acked = ack_input(c, seg, o);
	if (fin_acked) {
		switch (c->state) {
		case UTCP_FIN_WAIT_1:
			utcp_conn_set_state(c, UTCP_FIN_WAIT_2);
			if ((c->flags & UTCP_F_RELEASED) &&
			    (c->linger_at == 0 || st->now + st->conf.time_wait_us < c->linger_at)) {
				c->linger_at = st->now + st->conf.time_wait_us;
				utcp_timer_update(c);
			}
			break;
		case UTCP_CLOSING:
			utcp_conn_enter_time_wait(c);
			return;
		case UTCP_LAST_ACK:
			utcp_conn_closed(c);
			return;
		default:
			break;
		}
	}
	if (c->state == UTCP_CLOSED)
		return;

	if (c->state == UTCP_ESTABLISHED || c->state == UTCP_FIN_WAIT_1 ||
	    c->state == UTCP_FIN_WAIT_2) {
		bool fin_ok = true;

		if (seg->len > 0) {
			if ((c->flags & UTCP_F_RELEASED) &&
			    utcp_seq_gt(seg->seq + seg->len, c->rcv_nxt)) {
				/* nobody will read it: reset (as Linux does) */
				utcp_conn_reset(c);
				return;
			}
			fin_ok = data_input(c, seg);
		}
		/* a FIN ahead of a hole is held until the data before it is in */
		if ((seg->flags & UTCP_FIN) && fin_ok &&
		    utcp_seq_ge(seg->seq + seg->len, c->rcv_nxt) &&
		    (!(c->flags & UTCP_F_FIN_OOO) || seg->seq + seg->len == c->rcv_nxt)) {
			c->flags |= UTCP_F_FIN_OOO;
			c->fin_seq = seg->seq + seg->len;
		}
		if ((c->flags & UTCP_F_FIN_OOO) && c->fin_seq == c->rcv_nxt) {
			c->flags &= ~UTCP_F_FIN_OOO;
			fin_input(c);
		}
	}
}

/* RSTs to segments for no connection: at most rst_limit a second. */
static bool
rst_budget(struct utcp_stack *st)
{
	uint64_t epoch = st->now / 1000000;

	if (epoch != st->rst_epoch) {
		st->rst_epoch = epoch;
		st->rst_count = 0;
	}
	if (st->rst_count >= st->conf.rst_limit) {
		st->cnt.rst_limited++;
		return false;
	}
	st->rst_count++;
	return true;
}

void
utcp_input(struct utcp_stack *st, const struct utcp_seg_in *seg, uint64_t now_us)
{
	struct utcp_opts o;
	struct utcp_conn *c;

	utcp_clock(st, now_us);
	st->cnt.segs_in++;
	st->cnt.bytes_in += seg->len;
	/*
	 * A malformed option (truncated padding, a bad length) ends the
	 * parse; what came before it is kept and so is the segment, as
	 * Linux's tcp_parse_options does.
	 */
	if (utcp_opts_parse(seg->opts, seg->optlen, &o) < 0)
		st->cnt.drops[UTCP_DROP_OPTS]++;
	c = utcp_conn_lookup(st, seg->daddr, seg->dport, seg->saddr, seg->sport);
	if (c == NULL) {
		struct utcp_tw *tw = utcp_tw_lookup(st, seg->daddr, seg->dport,
			seg->saddr, seg->sport);

		if (tw != NULL && !tw_input(st, tw, seg, &o))
			return;
		if ((seg->flags & (UTCP_SYN | UTCP_ACK | UTCP_RST)) == UTCP_SYN) {
			for (unsigned i = 0; i < UTCP_MAX_LISTEN; i++) {
				const struct utcp_listener *l = &st->lst[i];

				if (l->used && l->port == seg->dport &&
				    (l->addr == 0 || l->addr == seg->daddr)) {
					passive_open(st, l, seg, &o);
					return;
				}
			}
		}
		st->cnt.drops[UTCP_DROP_NOCONN]++;
		if (!(seg->flags & UTCP_RST) && rst_budget(st))
			utcp_ctl_rst_for(st, seg);
		return;
	}
	if (c->state == UTCP_SYN_SENT)
		syn_sent_input(c, seg, &o);
	else
		sync_input(c, seg, &o);
}

/*
 * Path MTU from a "fragmentation needed": the next-hop MTU, or for a
 * router that leaves it 0 (RFC 1191 5) the next plateau below the current
 * MTU; never below UTCP_PMTU_MIN, so a forged or tiny value cannot shrink
 * segments to a few bytes (Linux min_pmtu is 552; 576 keeps MSS 536).
 */
#define UTCP_PMTU_MIN 576u

static uint32_t
pmtu_next(uint32_t cur, uint16_t next_hop_mtu)
{
	static const uint16_t plateau[] = {
		32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68,
	};
	uint32_t mtu = next_hop_mtu;

	if (mtu == 0) {
		mtu = 68;
		for (unsigned i = 0; i < sizeof(plateau) / sizeof(plateau[0]); i++)
			if (plateau[i] < cur) {
				mtu = plateau[i];
				break;
			}
	}
	return mtu < UTCP_PMTU_MIN ? UTCP_PMTU_MIN : mtu;
}

static struct utcp_pmtu *
pmtu_slot(struct utcp_stack *st, uint32_t addr)
{
	return &st->pmtu[(addr * 2654435761u) >> 24 & (UTCP_PMTU_SLOTS - 1)];
}

void
utcp_pmtu_learn(struct utcp_stack *st, uint32_t addr, uint32_t mtu)
{
	struct utcp_pmtu *p = pmtu_slot(st, addr);

	if (st->conf.no_pmtu_cache)
		return;
	/* a newer address takes the slot: the cache is a hint */
	p->addr = addr;
	p->mtu = (uint16_t)mtu;
	p->expires = st->now + st->conf.pmtu_expire_us;
}

uint32_t
utcp_pmtu_get(struct utcp_stack *st, uint32_t addr)
{
	struct utcp_pmtu *p = pmtu_slot(st, addr);

	if (p->mtu == 0 || p->addr != addr)
		return 0;
	if (st->now >= p->expires) {
		p->mtu = 0;	/* RFC 1191 6.3: try the larger MTU again */
		return 0;
	}
	return p->mtu;
}

void
utcp_icmp_input(struct utcp_stack *st, uint8_t type, uint8_t code,
	uint16_t next_hop_mtu, uint32_t saddr, uint32_t daddr,
	uint16_t sport, uint16_t dport, uint32_t seq, uint64_t now_us)
{
	struct utcp_conn *c;

	utcp_clock(st, now_us);
	st->cnt.icmp_in++;
	c = utcp_conn_lookup(st, saddr, sport, daddr, dport);
	if (c == NULL || (c->flags & UTCP_F_DEAD))
		return;
	/* the quoted segment must be one we have outstanding */
	if (!utcp_seq_in(seq, c->snd_una, c->snd_max))
		return;
	if (type == 3 && code == 4) {
		uint32_t mss = pmtu_next(c->mss + 40u, next_hop_mtu) - 40u;

		if (mss < c->mss) {
			st->cnt.pmtu_reductions++;
			utcp_pmtu_learn(st, c->raddr, mss + 40u);
			c->mss = mss;
			if (c->cwnd < c->mss)
				c->cwnd = c->mss;
			if (c->state != UTCP_SYN_SENT && c->state != UTCP_SYN_RCVD) {
				c->snd_nxt = c->snd_una;
				c->flags &= ~UTCP_F_RTT_TIMING;
				utcp_out_schedule(c);
			}
		}
		return;
	}
	/*
	 * Protocol/port unreachable are hard errors while connecting; the
	 * others (host, net, administratively prohibited) too unless
	 * icmp_soft_connect asks for RFC 1122 soft errors: a sender has
	 * other MX hosts to try, and the 30 s of SYN retries help nobody.
	 */
	if (type == 3 && c->state == UTCP_SYN_SENT &&
	    (code == 2 || code == 3 || !st->conf.icmp_soft_connect)) {
		utcp_conn_error(c, UTCP_ERR_UNREACHABLE);
		return;
	}
	if (type == 3 || type == 11)
		c->soft_err = 1;
}
