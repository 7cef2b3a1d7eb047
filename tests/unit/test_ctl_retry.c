/*
 * Retry timing (ctl_retry): the nominal backoff sequence and its cap, the
 * jitter range and its determinism for a given random value, the last try
 * moved to the maximum age, expiry at the maximum age, a whole retry
 * schedule played on a simulated clock, and bad configurations.
 */
#include <errno.h>
#include <stdint.h>

#include "ctl_retry.h"
#include "mp_test.h"

static struct ctl_retry_conf
conf(uint64_t base, unsigned factor, uint64_t cap, uint64_t max_age, unsigned jitter)
{
	struct ctl_retry_conf c = { base, factor, cap, max_age, jitter };

	return c;
}

static void
test_defaults(void)
{
	struct ctl_retry_conf c;

	ctl_retry_conf_init(&c);
	CHECK_EQ(ctl_retry_conf_check(&c), 0);
	CHECK_EQ(c.max_age_ms, 432000ull * 1000);
	CHECK_EQ(ctl_retry_delay_ms(&c, 1), 5 * 60 * 1000);
	CHECK_EQ(ctl_retry_delay_ms(&c, 2), 10 * 60 * 1000);
}

static void
test_nominal_sequence_and_cap(void)
{
	struct ctl_retry_conf c = conf(1000, 200, 60000, 3600000, 0);
	const uint64_t want[] = { 1000, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000 };

	for (unsigned a = 0; a < sizeof(want) / sizeof(want[0]); a++)
		CHECK_EQ(ctl_retry_delay_ms(&c, a), want[a]);
	/* Huge attempt numbers stay at the cap and do not overflow or hang. */
	CHECK_EQ(ctl_retry_delay_ms(&c, 1000000), 60000);
	c = conf(1, 101, UINT64_MAX / 2, UINT64_MAX / 2, 0);
	CHECK_EQ(ctl_retry_delay_ms(&c, 4000000000u), UINT64_MAX / 2);
	/* factor 150% */
	c = conf(1000, 150, 100000, 3600000, 0);
	CHECK_EQ(ctl_retry_delay_ms(&c, 3), 2250);
	/* factor 100%: constant */
	c = conf(700, 100, 700, 3600000, 0);
	CHECK_EQ(ctl_retry_delay_ms(&c, 50), 700);
}

static void
test_no_jitter_exact(void)
{
	struct ctl_retry_conf c = conf(1000, 200, 60000, 3600000, 0);
	uint64_t due = 0;

	CHECK_EQ(ctl_retry_next(&c, 1, 5000, 6000, 0xffffffffffffffffull, &due), 0);
	CHECK_EQ(due, 7000);
	CHECK_EQ(ctl_retry_next(&c, 3, 5000, 10000, 12345, &due), 0);
	CHECK_EQ(due, 14000);
}

static void
test_jitter_range_and_determinism(void)
{
	struct ctl_retry_conf c = conf(100000, 200, 10000000, 1000000000, 20);
	uint64_t st = 42, lo = UINT64_MAX, hi = 0, d1 = 0, d2 = 0;
	unsigned distinct_low = 0;

	for (int i = 0; i < 10000; i++) {
		uint64_t due = 0, r = ctl_retry_rand(&st);

		CHECK_EQ(ctl_retry_next(&c, 2, 0, 1000, r, &due), 0);
		/* nominal 200000, jitter takes off at most 20%: [160000, 200000] */
		if (due - 1000 < lo)
			lo = due - 1000;
		if (due - 1000 > hi)
			hi = due - 1000;
		if (due - 1000 < 170000)
			distinct_low++;
	}
	CHECK(lo >= 160000);
	CHECK(hi <= 200000);
	/* spread: both ends of the range are reached, roughly uniformly */
	CHECK(lo < 161000);
	CHECK(hi > 199000);
	CHECK(distinct_low > 2000 && distinct_low < 3000);
	/* same rnd, same answer */
	CHECK_EQ(ctl_retry_next(&c, 2, 0, 1000, 0x123456789abcdefull, &d1), 0);
	CHECK_EQ(ctl_retry_next(&c, 2, 0, 1000, 0x123456789abcdefull, &d2), 0);
	CHECK_EQ(d1, d2);
	/* rnd 0 takes nothing off, all ones takes almost the whole 20% */
	CHECK_EQ(ctl_retry_next(&c, 2, 0, 1000, 0, &d1), 0);
	CHECK_EQ(d1, 201000);
	CHECK_EQ(ctl_retry_next(&c, 2, 0, 1000, UINT64_MAX, &d1), 0);
	CHECK(d1 >= 161000 && d1 < 161001 + 1);
	/* the generator is deterministic */
	st = 7;
	d1 = ctl_retry_rand(&st);
	st = 7;
	CHECK_EQ(ctl_retry_rand(&st), d1);
	/* 100% jitter never yields a zero delay */
	c = conf(1, 200, 1, 100000, 100);
	CHECK_EQ(ctl_retry_next(&c, 1, 0, 10, UINT64_MAX, &d1), 0);
	CHECK_EQ(d1, 11);
}

static void
test_max_age(void)
{
	struct ctl_retry_conf c = conf(1000, 200, 100000, 10000, 0);
	uint64_t due = 0;

	/* 8000 + 4000 would be past first + max_age = 10000: last try at 10000 */
	CHECK_EQ(ctl_retry_next(&c, 3, 0, 8000, 0, &due), 0);
	CHECK_EQ(due, 10000);
	/* at or after the deadline: expired */
	CHECK_EQ(ctl_retry_next(&c, 4, 0, 10000, 0, &due), -ETIMEDOUT);
	CHECK_EQ(ctl_retry_next(&c, 4, 0, 99999, 0, &due), -ETIMEDOUT);
	CHECK(ctl_retry_expired(&c, 0, 10000));
	CHECK(!ctl_retry_expired(&c, 0, 9999));
	/* first_ms near the top of the range does not overflow */
	CHECK(!ctl_retry_expired(&c, UINT64_MAX - 5, UINT64_MAX - 1));
	/* a clock before first_ms is taken as first_ms */
	CHECK_EQ(ctl_retry_next(&c, 1, 5000, 4000, 0, &due), 0);
	CHECK_EQ(due, 6000);
}

/*
 * A recipient that is deferred on every attempt, on a simulated clock:
 * attempts happen exactly when due; the delays grow, the schedule ends with
 * a try at the deadline and then expiry, and nothing is due after it.
 */
static void
test_schedule_on_clock(void)
{
	struct ctl_retry_conf c = conf(60000, 200, 3600000, 24 * 3600000ull, 20);
	uint64_t first = 1000000, now = first, st = 99, prev_delay = 0, due = 0;
	unsigned attempt = 1, grew = 0;
	int rc;

	for (;;) {
		rc = ctl_retry_next(&c, attempt, first, now, ctl_retry_rand(&st), &due);
		if (rc != 0)
			break;
		CHECK(due > now);
		CHECK(due <= first + c.max_age_ms);
		CHECK(due - now <= ctl_retry_delay_ms(&c, attempt));
		CHECK(due - now >= ctl_retry_delay_ms(&c, attempt) * 80 / 100 ||
		      due == first + c.max_age_ms);
		if (due - now > prev_delay)
			grew++;
		prev_delay = due - now;
		now = due;
		attempt++;
		if (attempt > 1000)
			break;
	}
	CHECK_EQ(rc, -ETIMEDOUT);
	CHECK_EQ(now, first + c.max_age_ms);
	/* 1,2,4,...,32 min then capped at 60 min: about 6 + 22 attempts in 24 h */
	CHECK(attempt > 20 && attempt < 40);
	CHECK(grew >= 6);
}

static void
test_bad_conf(void)
{
	struct ctl_retry_conf c;
	uint64_t due = 0;

	c = conf(0, 200, 1000, 1000, 0);
	CHECK_EQ(ctl_retry_next(&c, 1, 0, 0, 0, &due), -EINVAL);
	c = conf(1000, 99, 1000, 1000, 0);
	CHECK_EQ(ctl_retry_conf_check(&c), -EINVAL);
	c = conf(1000, 200, 999, 1000, 0);
	CHECK_EQ(ctl_retry_conf_check(&c), -EINVAL);
	c = conf(1000, 200, 1000, 0, 0);
	CHECK_EQ(ctl_retry_conf_check(&c), -EINVAL);
	c = conf(1000, 200, 1000, 1000, 101);
	CHECK_EQ(ctl_retry_conf_check(&c), -EINVAL);
	CHECK_EQ(ctl_retry_conf_check(NULL), -EINVAL);
	c = conf(1000, 200, 1000, 1000, 0);
	CHECK_EQ(ctl_retry_next(&c, 1, 0, 0, 0, NULL), -EINVAL);
}

int
main(void)
{
	test_defaults();
	test_nominal_sequence_and_cap();
	test_no_jitter_exact();
	test_jitter_range_and_determinism();
	test_max_age();
	test_schedule_on_clock();
	test_bad_conf();
	return mp_test_result("ctl_retry");
}
