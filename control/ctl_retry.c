/*
 * Retry timing: exponential backoff with downward jitter, capped, bounded
 * by a maximum age counted from the first attempt. Integer arithmetic
 * only, saturating, so any attempt number gives a sane answer. See
 * ctl_retry.h for the contract.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl_retry.h"

void
ctl_retry_conf_init(struct ctl_retry_conf *c)
{
	c->base_ms = CTL_RETRY_BASE_MS_DEFAULT;
	c->factor_pct = CTL_RETRY_FACTOR_PCT_DEFAULT;
	c->cap_ms = CTL_RETRY_CAP_MS_DEFAULT;
	c->max_age_ms = CTL_RETRY_MAX_AGE_MS_DEFAULT;
	c->jitter_pct = CTL_RETRY_JITTER_PCT_DEFAULT;
}

int
ctl_retry_conf_check(const struct ctl_retry_conf *c)
{
	if (c == NULL || c->base_ms < 1 || c->factor_pct < 100 ||
	    c->cap_ms < c->base_ms || c->max_age_ms < 1 || c->jitter_pct > 100)
		return -EINVAL;
	return 0;
}

uint64_t
ctl_retry_delay_ms(const struct ctl_retry_conf *c, unsigned attempt)
{
	uint64_t d = c->base_ms;

	if (attempt == 0)
		attempt = 1;
	/* Multiply step by step and stop at the cap, so nothing overflows.
	 * Each step grows d by at least 1 (rounding would stall a small d with
	 * a factor just above 100), which bounds the loop to a few thousand
	 * steps for any attempt number. */
	if (c->factor_pct <= 100)
		attempt = 1;
	for (unsigned i = 1; i < attempt && d < c->cap_ms; i++) {
		uint64_t n;

		if (d > UINT64_MAX / c->factor_pct)
			return c->cap_ms;
		n = d * c->factor_pct / 100;
		d = n > d ? n : d + 1;
	}
	return d < c->cap_ms ? d : c->cap_ms;
}

int
ctl_retry_expired(const struct ctl_retry_conf *c, uint64_t first_ms, uint64_t now_ms)
{
	uint64_t deadline = first_ms > UINT64_MAX - c->max_age_ms ?
		UINT64_MAX : first_ms + c->max_age_ms;

	return now_ms >= deadline;
}

int
ctl_retry_next(const struct ctl_retry_conf *c, unsigned attempt, uint64_t first_ms,
	       uint64_t now_ms, uint64_t rnd, uint64_t *due_ms)
{
	uint64_t d, cut, deadline;

	if (ctl_retry_conf_check(c) < 0 || due_ms == NULL)
		return -EINVAL;
	if (now_ms < first_ms)
		now_ms = first_ms;
	if (ctl_retry_expired(c, first_ms, now_ms))
		return -ETIMEDOUT;
	deadline = first_ms + c->max_age_ms;
	d = ctl_retry_delay_ms(c, attempt);
	/* Take off a uniform share in [0, jitter_pct]% of d, in steps of 1/2^20
	 * of the maximum cut so the result does not depend on floating point. */
	cut = d / 100 * c->jitter_pct + d % 100 * c->jitter_pct / 100;
	cut = (cut >> 20) * (rnd >> 44) + (((cut & 0xfffff) * (rnd >> 44)) >> 20);
	d -= cut;
	if (d < 1)
		d = 1;
	*due_ms = d >= deadline - now_ms ? deadline : now_ms + d;
	return 0;
}

uint64_t
ctl_retry_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
