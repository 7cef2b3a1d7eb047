/*
 * Retry timing (ctl_retry): when to try a deferred recipient again, and
 * when to give up. Pure arithmetic, no clock and no RNG of its own: the
 * caller passes now_ms and a random 64-bit value, so the same inputs give
 * the same answer (tests, replays).
 *
 * After attempt number `attempt` (1 = the first try just failed), the
 * nominal delay is base_ms * (factor_pct / 100)^(attempt - 1), capped at
 * cap_ms. Jitter takes a pseudo-random part of up to jitter_pct percent
 * off it (never adds: cap_ms is a hard ceiling), so recipients deferred
 * together spread out instead of coming back as one wave. The delay is
 * never below 1 ms.
 *
 * Maximum age: a recipient first tried at first_ms expires at
 * first_ms + max_age_ms. A next attempt that would fall after that moment
 * is moved to exactly that moment (one last try at the deadline); once
 * now_ms has reached the deadline the answer is "expired" (the recipient
 * becomes failed).
 *
 *   ctl_retry_conf_init(&c);        defaults, then set what differs (per
 *                                   campaign: c.max_age_ms = max_age_s * 1000)
 *   rc = ctl_retry_next(&c, attempt, first_ms, now_ms, ctl_retry_rand(&seed), &due);
 *   rc == 0 -> ZADD retry due ...;  rc == -ETIMEDOUT -> final state failed
 */
#ifndef MP_CTL_RETRY_H
#define MP_CTL_RETRY_H

#include <stdint.h>

#define CTL_RETRY_BASE_MS_DEFAULT    (5ull * 60 * 1000)        /**< 5 minutes */
#define CTL_RETRY_FACTOR_PCT_DEFAULT 200                       /**< doubling */
#define CTL_RETRY_CAP_MS_DEFAULT     (4ull * 3600 * 1000)      /**< 4 hours */
#define CTL_RETRY_MAX_AGE_MS_DEFAULT (432000ull * 1000)        /**< 5 days */
#define CTL_RETRY_JITTER_PCT_DEFAULT 20

/** Backoff parameters. */
struct ctl_retry_conf {
	uint64_t base_ms;      /**< delay after the first failed attempt, >= 1 */
	unsigned factor_pct;   /**< growth per attempt in percent, >= 100 */
	uint64_t cap_ms;       /**< longest delay, >= base_ms */
	uint64_t max_age_ms;   /**< give up this long after the first attempt, >= 1 */
	unsigned jitter_pct;   /**< 0..100: up to this share of the delay is taken off */
};

/** Fill @p c with the CTL_RETRY_*_DEFAULT values. */
void ctl_retry_conf_init(struct ctl_retry_conf *c);

/**
 * Check a configuration.
 * @return 0, -EINVAL (a field out of the ranges documented above)
 */
int ctl_retry_conf_check(const struct ctl_retry_conf *c);

/**
 * Nominal delay (before jitter) after attempt @p attempt (>= 1; 0 is
 * treated as 1), capped at cap_ms. Never overflows.
 */
uint64_t ctl_retry_delay_ms(const struct ctl_retry_conf *c, unsigned attempt);

/**
 * Next attempt time for a recipient deferred after attempt @p attempt.
 * @param first_ms time of the recipient's first attempt
 * @param now_ms   time of the failure being handled (>= first_ms)
 * @param rnd      a random value (uniform 64 bits); the same value gives
 *                 the same jitter
 * @param due_ms   receives the time of the next attempt (> now_ms,
 *                 <= first_ms + max_age_ms) when 0 is returned
 * @return 0, -ETIMEDOUT (maximum age reached: give up), -EINVAL (bad conf)
 */
int ctl_retry_next(const struct ctl_retry_conf *c, unsigned attempt, uint64_t first_ms,
		   uint64_t now_ms, uint64_t rnd, uint64_t *due_ms);

/** 1 when a recipient first tried at @p first_ms is past its maximum age at @p now_ms. */
int ctl_retry_expired(const struct ctl_retry_conf *c, uint64_t first_ms, uint64_t now_ms);

/**
 * A small deterministic generator (splitmix64) for the rnd argument:
 * advances @p state and returns the next value.
 */
uint64_t ctl_retry_rand(uint64_t *state);

#endif
