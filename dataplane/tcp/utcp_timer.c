/*
 * Timers. Each connection files itself once in a hashed timing wheel
 * (1 ms slots, 1024 of them; later deadlines wait for their round) under
 * the earliest of its deadlines: retransmission (RTO), delayed ACK, persist
 * (zero-window probe) and the orphan linger bound. TIME_WAIT records all
 * last the same time, so they sit in a FIFO instead. utcp_timers() walks
 * the slots elapsed since the last call and fires what is due; firing only
 * changes state and schedules output, utcp_output() emits.
 * The RFC 6298 estimator (SRTT, RTTVAR, RTO with Karn and backoff) lives
 * here too.
 */
#include <stdlib.h>

#include "utcp_impl.h"

void
utcp_rtt_init(struct utcp_rtt *r, uint32_t init, uint32_t min, uint32_t max)
{
	r->srtt = 0;
	r->rttvar = 0;
	r->rto = init;
	r->rto_min = min;
	r->rto_max = max;
}

/* RFC 6298 section 2 with G = 1 ms. */
void
utcp_rtt_sample(struct utcp_rtt *r, uint32_t m)
{
	uint32_t var4;
	uint64_t rto;

	if (m == 0)
		m = 1;
	if (r->srtt == 0) {
		r->srtt = m;
		r->rttvar = m / 2;
	} else {
		uint32_t d = r->srtt > m ? r->srtt - m : m - r->srtt;

		r->rttvar = (uint32_t)(((uint64_t)r->rttvar * 3 + d) / 4);
		r->srtt = (uint32_t)(((uint64_t)r->srtt * 7 + m) / 8);
		if (r->srtt == 0)
			r->srtt = 1;
	}
	var4 = 4 * r->rttvar;
	rto = (uint64_t)r->srtt + (var4 > UTCP_TICK_US ? var4 : UTCP_TICK_US);
	if (rto < r->rto_min)
		rto = r->rto_min;
	if (rto > r->rto_max)
		rto = r->rto_max;
	r->rto = (uint32_t)rto;
}

/* Current RTO with exponential backoff (RFC 6298 5.5). */
uint32_t
utcp_rto_cur(const struct utcp_conn *c)
{
	uint64_t rto = (uint64_t)c->rtt.rto << (c->retries < 20 ? c->retries : 20);

	return rto > c->rtt.rto_max ? c->rtt.rto_max : (uint32_t)rto;
}

void
utcp_rto_arm(struct utcp_conn *c)
{
	c->rto_at = c->st->now + utcp_rto_cur(c);
	utcp_timer_update(c);
}

void
utcp_timer_remove(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	if (c->flags & UTCP_F_IN_WHEEL) {
		uint64_t tick = (c->timer_at + UTCP_TICK_US - 1) / UTCP_TICK_US;

		TAILQ_REMOVE(&st->wheel[tick & (UTCP_WHEEL_SLOTS - 1)], c, wheel);
		c->flags &= ~UTCP_F_IN_WHEEL;
	}
}

static uint64_t
min_nz(uint64_t a, uint64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

static void
wheel_insert(struct utcp_conn *c, uint64_t at)
{
	struct utcp_stack *st = c->st;
	uint64_t tick = (at + UTCP_TICK_US - 1) / UTCP_TICK_US;

	/* a slot already walked this round would wait a whole round */
	if (tick <= st->wheel_tick) {
		tick = st->wheel_tick + 1;
		at = tick * UTCP_TICK_US;
	}
	c->timer_at = at;
	TAILQ_INSERT_TAIL(&st->wheel[tick & (UTCP_WHEEL_SLOTS - 1)], c, wheel);
	c->flags |= UTCP_F_IN_WHEEL;
}

/* File the connection under its earliest deadline (or take it out). */
void
utcp_timer_update(struct utcp_conn *c)
{
	uint64_t at = min_nz(min_nz(c->rto_at, c->delack_at),
		min_nz(c->persist_at, c->linger_at));

	if ((c->flags & UTCP_F_IN_WHEEL) && at != 0 && at == c->timer_at)
		return;
	utcp_timer_remove(c);
	if (at != 0)
		wheel_insert(c, at);
}

static void
fire_rto(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	if (c->state == UTCP_SYN_SENT || c->state == UTCP_SYN_RCVD) {
		if (++c->retries > st->conf.syn_retries) {
			if (c->flags & UTCP_F_PASSIVE && !(c->flags & UTCP_F_HANDED)) {
				utcp_conn_free(c);
				return;
			}
			utcp_conn_error(c, c->soft_err ? UTCP_ERR_UNREACHABLE : UTCP_ERR_TIMEOUT);
			return;
		}
		st->cnt.syn_retransmits++;
		c->flags |= UTCP_F_SYN_REXMIT;
		c->flags &= ~UTCP_F_RTT_TIMING;
		c->snd_nxt = c->iss;
		utcp_out_schedule(c);
		return;
	}
	if (c->snd_una == c->snd_max)
		return;
	if ((c->flags & UTCP_F_RELEASED) && c->retries >= st->conf.orphan_retries) {
		/* Linux tcp_orphan_retries: an orphan does not retry for long */
		st->cnt.orphan_aborts++;
		utcp_conn_reset(c);
		return;
	}
	if (++c->retries > st->conf.data_retries) {
		utcp_conn_error(c, c->soft_err ? UTCP_ERR_UNREACHABLE : UTCP_ERR_TIMEOUT);
		return;
	}
	st->cnt.rto_fired++;
	/*
	 * Black hole (RFC 4821 7.7): RTOs in a row while full segments are
	 * outstanding. A path that drops big segments without an ICMP looks
	 * exactly like this; smaller segments cost little if it is not one.
	 */
	if (!st->conf.no_blackhole && c->retries >= st->conf.blackhole_rtos &&
	    c->mss > 536 && c->snd_max - c->snd_una >= c->mss - 40u) {
		c->mss = c->mss > 1024 ? 1024 : 536;
		st->cnt.blackhole_mss_reductions++;
	}
	utcp_cc_on_rto(c);
	/*
	 * Go back N over what the peer has not SACKed (RFC 6675 5.1, and
	 * Linux keeps its SACK marks too): utcp_out skips the SACKed ranges.
	 * They are forgotten when the receiver shows it reneged (RFC 2018 8):
	 * its cumulative ACK stops at the start of a range it had SACKed, so
	 * SND.UNA lies in one. Then everything is sent again.
	 */
	c->flags &= ~(UTCP_F_RECOVERY | UTCP_F_RTT_TIMING | UTCP_F_REXMIT_UNA);
	c->dupacks = 0;
	if (utcp_sb_is_sacked(&c->sb, c->snd_una, NULL)) {
		st->cnt.sack_reneged++;
		utcp_sb_reset(&c->sb);
	}
	c->sb.high_rxt = c->snd_una;
	c->recover = c->snd_max;
	c->snd_nxt = c->snd_una;
	utcp_out_schedule(c);
}

static void
fire_persist(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	if (!(c->flags & UTCP_F_PERSIST))
		return;
	/*
	 * A peer that answers the probes is alive: only silence times out,
	 * unless the connection is an orphan, which gets orphan_retries
	 * probes, answered or not (ack_input does not reset orphan_probes).
	 */
	if ((c->flags & UTCP_F_RELEASED) && c->orphan_probes >= st->conf.orphan_retries) {
		st->cnt.orphan_aborts++;
		utcp_conn_reset(c);
		return;
	}
	if (c->flags & UTCP_F_RELEASED)
		c->orphan_probes++;
	if (++c->probes > st->conf.data_retries) {
		utcp_conn_error(c, c->soft_err ? UTCP_ERR_UNREACHABLE : UTCP_ERR_TIMEOUT);
		return;
	}
	if (c->retries < 30)
		c->retries++;	/* backoff */
	st->cnt.persist_probes++;
	c->flags |= UTCP_F_PROBE;
	utcp_out_schedule(c);
	c->persist_at = st->now + utcp_rto_cur(c);
}

static void
fire(struct utcp_conn *c, uint64_t now)
{
	struct utcp_stack *st = c->st;

	if (c->linger_at && c->linger_at <= now) {
		/*
		 * An orphan that its peer never finished closing: silently in
		 * FIN_WAIT_2 (our FIN is acked), with a RST before that.
		 */
		if (c->state == UTCP_FIN_WAIT_2) {
			utcp_conn_free(c);
		} else {
			st->cnt.orphan_aborts++;
			utcp_conn_reset(c);
		}
		return;
	}
	if (c->delack_at && c->delack_at <= now) {
		c->delack_at = 0;
		st->cnt.delayed_acks++;
		utcp_out_ack_now(c);
	}
	if (c->persist_at && c->persist_at <= now) {
		c->persist_at = 0;
		fire_persist(c);
		if (c->flags & UTCP_F_DEAD || c->state == UTCP_CLOSED)
			return;
	}
	if (c->rto_at && c->rto_at <= now) {
		c->rto_at = 0;
		fire_rto(c);
		if (c->state == UTCP_CLOSED)
			return;
	}
	utcp_timer_update(c);
}

void
utcp_timers(struct utcp_stack *st, uint64_t now)
{
	uint64_t now_tick, t, n;
	struct utcp_tw *tw;

	if (now > st->now)
		st->now = now;
	now = st->now;
	now_tick = now / UTCP_TICK_US;
	n = now_tick - st->wheel_tick;
	if (n > UTCP_WHEEL_SLOTS)
		n = UTCP_WHEEL_SLOTS;
	for (t = now_tick - n + 1; n > 0; t++, n--) {
		struct utcp_conn_list *slot = &st->wheel[t & (UTCP_WHEEL_SLOTS - 1)];
		struct utcp_conn_list due = TAILQ_HEAD_INITIALIZER(due);
		struct utcp_conn *c;

		TAILQ_CONCAT(&due, slot, wheel);
		while ((c = TAILQ_FIRST(&due)) != NULL) {
			TAILQ_REMOVE(&due, c, wheel);
			c->flags &= ~UTCP_F_IN_WHEEL;
			if (c->timer_at <= now) {
				fire(c, now);
			} else {
				uint64_t tick = (c->timer_at + UTCP_TICK_US - 1) / UTCP_TICK_US;

				TAILQ_INSERT_TAIL(&st->wheel[tick & (UTCP_WHEEL_SLOTS - 1)], c, wheel);
				c->flags |= UTCP_F_IN_WHEEL;
			}
		}
	}
	st->wheel_tick = now_tick;

	while ((tw = TAILQ_FIRST(&st->tw_fifo)) != NULL && tw->expire <= now)
		utcp_tw_free(st, tw);
}

uint64_t
utcp_next_timer(const struct utcp_stack *st)
{
	uint64_t best = UINT64_MAX;
	const struct utcp_tw *tw = TAILQ_FIRST(&st->tw_fifo);

	for (unsigned i = 0; i < UTCP_WHEEL_SLOTS; i++) {
		const struct utcp_conn *c;

		TAILQ_FOREACH(c, &st->wheel[i], wheel)
			if (c->timer_at < best)
				best = c->timer_at;
	}
	if (tw != NULL && tw->expire < best)
		best = tw->expire;
	return best;
}
