/*
 * Congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438),
 * byte-counted. utcp_in.c calls utcp_cc_on_ack() for each ACK that advances
 * SND.UNA outside recovery, utcp_cc_on_loss() when it enters fast recovery
 * and utcp_timer.c calls utcp_cc_on_rto(). The recovery procedure itself
 * (cwnd inflation for NewReno, pipe for SACK) is in utcp_in.c/utcp_out.c.
 */
#include <math.h>

#include "utcp_impl.h"

#define CUBIC_C 0.4
#define CUBIC_BETA 0.7

/* RFC 6928: min(10*MSS, max(2*MSS, 14600)). */
uint32_t
utcp_cc_iw(uint32_t mss)
{
	uint32_t w = 2 * mss > 14600 ? 2 * mss : 14600;

	return 10 * mss < w ? 10 * mss : w;
}

void
utcp_cc_init(struct utcp_conn *c)
{
	c->cwnd = (c->flags & UTCP_F_SYN_REXMIT) ? c->mss : utcp_cc_iw(c->mss);
	c->ssthresh = UINT32_MAX / 2;
	c->max_flight = 0;
	c->cwnd_usage_seq = c->snd_max;
	c->flags &= ~UTCP_F_CWND_LIMITED;
	c->cubic.w_max = 0;
	c->cubic.k = 0;
	c->cubic.w_est = 0;
	c->cubic.epoch_start = 0;
}

static void
cubic_on_ack(struct utcp_conn *c, uint32_t acked)
{
	struct utcp_cubic *cu = &c->cubic;
	double mss = c->mss, cwnd = c->cwnd / mss, t, target, wcubic, rtt;
	uint64_t now = c->st->now;

	if (cu->epoch_start == 0) {
		cu->epoch_start = now ? now : 1;
		if (cu->w_max < cwnd) {
			/* no loss yet, or above the old maximum: plateau here */
			cu->k = 0;
			cu->w_max = cwnd;
		} else {
			cu->k = cbrt(cu->w_max * (1 - CUBIC_BETA) / CUBIC_C);
		}
		cu->w_est = cwnd;
	}
	rtt = (c->rtt.srtt ? c->rtt.srtt : 100000) / 1e6;
	t = (now - cu->epoch_start) / 1e6;
	wcubic = CUBIC_C * pow(t - cu->k, 3) + cu->w_max;
	target = CUBIC_C * pow(t + rtt - cu->k, 3) + cu->w_max;
	if (target < cwnd)
		target = cwnd;
	if (target > 1.5 * cwnd)
		target = 1.5 * cwnd;
	/* Reno-friendly estimate (RFC 9438 4.3) */
	cu->w_est += 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA) * (acked / mss) / cwnd;
	if (wcubic < cu->w_est) {
		if (cu->w_est > cwnd)
			c->cwnd = (uint32_t)(cu->w_est * mss);
		else
			c->cwnd += (uint32_t)(mss * (acked / mss) / cwnd);
		return;
	}
	c->cwnd += (uint32_t)((target - cwnd) / cwnd * acked);
}

/*
 * After each transmission burst (Linux tcp_cwnd_validate, RFC 7661):
 * remember the largest flight of the current window and whether cwnd, not
 * the send buffer or the peer, held data back during it.
 */
void
utcp_cc_validate(struct utcp_conn *c, bool cwnd_limited)
{
	uint32_t flight = utcp_flight(c);

	if (!utcp_seq_lt(c->snd_una, c->cwnd_usage_seq) || cwnd_limited ||
	    (!(c->flags & UTCP_F_CWND_LIMITED) && flight > c->max_flight)) {
		if (cwnd_limited)
			c->flags |= UTCP_F_CWND_LIMITED;
		else
			c->flags &= ~UTCP_F_CWND_LIMITED;
		c->max_flight = flight;
		c->cwnd_usage_seq = c->snd_max;
	}
}

/* Linux tcp_is_cwnd_limited: slow start up to twice the flight used. */
static bool
cwnd_limited(const struct utcp_conn *c)
{
	if (c->cwnd < c->ssthresh)
		return c->cwnd < 2 * c->max_flight;
	return (c->flags & UTCP_F_CWND_LIMITED) != 0;
}

/* RFC 5681 4.1: after an idle period longer than one RTO, restart at IW. */
void
utcp_cc_idle_restart(struct utcp_conn *c)
{
	uint32_t iw = utcp_cc_iw(c->mss);

	if (c->last_tx == 0 || c->snd_una != c->snd_max ||
	    c->st->now - c->last_tx <= utcp_rto_cur(c))
		return;
	if (c->cwnd > iw) {
		/* keep what was learnt in ssthresh, as Linux does */
		uint32_t keep = c->cwnd / 4 * 3;

		if (keep > c->ssthresh)
			c->ssthresh = keep;
		c->cwnd = iw;
	}
	c->cubic.epoch_start = 0;
}

void
utcp_cc_on_ack(struct utcp_conn *c, uint32_t acked)
{
	if (!cwnd_limited(c))
		return;
	if (c->cwnd < c->ssthresh) {
		/* slow start, RFC 3465 with L = 2*SMSS, to twice the flight used */
		c->cwnd += acked < 2 * c->mss ? acked : 2 * c->mss;
		if (c->cwnd > 2 * c->max_flight)
			c->cwnd = 2 * c->max_flight;
		return;
	}
	if (c->st->conf.cc == UTCP_CC_CUBIC) {
		cubic_on_ack(c, acked);
	} else {
		/* RFC 5681 (3.3): about one SMSS per RTT */
		uint32_t inc = (uint32_t)((uint64_t)c->mss * c->mss / c->cwnd);

		c->cwnd += inc ? inc : 1;
	}
	if (c->cwnd > (1u << 30))
		c->cwnd = 1u << 30;
}

/*
 * RFC 9438 4.6: ssthresh from the flight size; a cwnd larger than the
 * flight (application- or buffer-limited) would cut nothing real.
 */
void
utcp_cc_on_loss(struct utcp_conn *c)
{
	uint32_t flight = utcp_flight(c), min = 2 * c->mss;
	uint32_t eff = flight < c->cwnd ? flight : c->cwnd;

	if (c->st->conf.cc == UTCP_CC_CUBIC) {
		struct utcp_cubic *cu = &c->cubic;
		double cwnd = (double)eff / c->mss;

		/* fast convergence (RFC 9438 4.7) */
		if (cwnd < cu->w_max)
			cu->w_max = cwnd * (1 + CUBIC_BETA) / 2;
		else
			cu->w_max = cwnd;
		cu->epoch_start = 0;
		c->ssthresh = (uint32_t)(eff * CUBIC_BETA);
	} else {
		c->ssthresh = flight / 2;
	}
	if (c->ssthresh < min)
		c->ssthresh = min;
}

void
utcp_cc_on_rto(struct utcp_conn *c)
{
	/* a second timeout on the same data keeps ssthresh (RFC 5681 (4)) */
	if (c->retries <= 1)
		utcp_cc_on_loss(c);
	c->cwnd = c->mss;
	c->cubic.epoch_start = 0;
}
