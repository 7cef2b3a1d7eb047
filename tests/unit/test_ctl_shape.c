/*
 * Per-destination shaping (ctl_shape) on a simulated millisecond clock:
 * override parsing and its error messages, override precedence (exact,
 * ".parent", "*"), the connection limit under a random open/close load
 * (never exceeded, always reachable), the token bucket (never more than
 * burst + rate * t, wait_ms exact), adaptation on 421 and on a burst of
 * 4xx (lower limits, no stacking inside the window, step-wise recovery),
 * and forgetting idle domains.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ctl_shape.h"
#include "mp_test.h"

static int
has(const char *s, const char *needle)
{
	return strstr(s, needle) != NULL;
}

static void
test_parse_ok(void)
{
	struct ctl_shape_override ov;
	char err[256] = "";

	CHECK_EQ(ctl_shape_override_parse("Example.COM:max_conns=5,msgs_per_conn=50,rate=20",
					  &ov, err, sizeof(err)), 0);
	CHECK_STREQ(ov.domain, "example.com");
	CHECK_EQ(ov.set, CTL_SHAPE_K_MAX_CONNS | CTL_SHAPE_K_MSGS_PER_CONN | CTL_SHAPE_K_RATE);
	CHECK_EQ(ov.lim.max_conns, 5);
	CHECK_EQ(ov.lim.msgs_per_conn, 50);
	CHECK(ov.lim.rate == 20);
	CHECK_EQ(ctl_shape_override_parse("  .example.org : rate = 0.5 , burst=3 ,rcpts_per_txn=7 ",
					  &ov, err, sizeof(err)), 0);
	CHECK_STREQ(ov.domain, ".example.org");
	CHECK(ov.lim.rate == 0.5);
	CHECK_EQ(ov.lim.burst, 3);
	CHECK_EQ(ov.lim.rcpts_per_txn, 7);
	CHECK_EQ(ctl_shape_override_parse("*:rate=0", &ov, err, sizeof(err)), 0);
	CHECK_STREQ(ov.domain, "*");
	CHECK_EQ(ov.set, CTL_SHAPE_K_RATE);
	CHECK_EQ(ctl_shape_override_parse("example.net.:max_conns=1", &ov, err, sizeof(err)), 0);
	CHECK_STREQ(ov.domain, "example.net");
}

static void
test_parse_errors(void)
{
	static const struct {
		const char *spec, *msg;
	} bad[] = {
		{ "example.com", "expected DOMAIN:key=value" },
		{ "example.com:", "no key=value" },
		{ "example.com:max_conns", "expected key=value" },
		{ "example.com:max_conn=5", "unknown key \"max_conn\"" },
		{ "example.com:max_conns=x", "max_conns: \"x\" is not a number" },
		{ "example.com:max_conns=-1", "is not a number" },
		{ "example.com:max_conns=5x", "is not a number" },
		{ "example.com:max_conns=", "is not a number" },
		{ "example.com:max_conns=0", "max_conns must be at least 1" },
		{ "example.com:max_conns=1,max_conns=2", "max_conns given twice" },
		{ "example.com:rate=fast", "rate: \"fast\" is not a number" },
		{ "example.com:rate=1e3", "rate" },
		{ "example.com:rate=-2", "rate" },
		{ "example.com:rate=1,", "trailing ','" },
		{ ":rate=1", "empty domain" },
		{ "exa mple.com:rate=1", "bad character" },
		{ "a..b:rate=1", "empty label" },
		{ "*.example.com:rate=1", "bad character" },
		{ "a.com:rate=1;b.com:rate=2", "one override only" },
	};
	struct ctl_shape_override ov;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		int rc = ctl_shape_override_parse(bad[i].spec, &ov, err, sizeof(err));

		CHECK_EQ(rc, -EINVAL);
		if (!has(err, bad[i].msg))
			fprintf(stderr, "spec \"%s\": error \"%s\" lacks \"%s\"\n",
				bad[i].spec, err, bad[i].msg);
		CHECK(has(err, bad[i].msg));
	}
	CHECK_EQ(ctl_shape_override_parse(NULL, &ov, NULL, 0), -EINVAL);
}

static void
test_precedence(void)
{
	struct ctl_shape_conf c = { .defaults = { .max_conns = 10, .rate = 0 } };
	struct ctl_shape *sh = ctl_shape_new(&c);
	struct ctl_shape_limits l;
	char err[256] = "";

	CHECK(sh != NULL);
	ctl_shape_limits(sh, "x.test", 0, &l);
	CHECK_EQ(l.max_conns, 10);
	CHECK_EQ(l.msgs_per_conn, CTL_SHAPE_MSGS_PER_CONN_DEFAULT);
	CHECK_EQ(l.rcpts_per_txn, CTL_SHAPE_RCPTS_PER_TXN_DEFAULT);
	CHECK(l.rate == 0);
	CHECK_EQ(ctl_shape_override_add(sh, "*:msgs_per_conn=30; example.com:max_conns=5,rate=20\n"
					".example.com:max_conns=2 ;; sub.example.com:rate=3",
					err, sizeof(err)), 4);
	ctl_shape_limits(sh, "example.com", 0, &l);
	CHECK_EQ(l.max_conns, 5);
	CHECK(l.rate == 20);
	CHECK_EQ(l.burst, 20);               /* default burst: ceil(rate) */
	CHECK_EQ(l.msgs_per_conn, 30);       /* from "*" */
	ctl_shape_limits(sh, "EXAMPLE.com.", 0, &l);
	CHECK_EQ(l.max_conns, 5);
	ctl_shape_limits(sh, "a.b.example.com", 0, &l);
	CHECK_EQ(l.max_conns, 2);            /* ".example.com" */
	CHECK(l.rate == 0);
	ctl_shape_limits(sh, "sub.example.com", 0, &l);
	CHECK_EQ(l.max_conns, 10);           /* exact wins; keys not set come from defaults */
	CHECK(l.rate == 3);
	ctl_shape_limits(sh, "other.test", 0, &l);
	CHECK_EQ(l.max_conns, 10);
	CHECK_EQ(l.msgs_per_conn, 30);
	/* all or nothing: a bad item installs nothing */
	CHECK_EQ(ctl_shape_override_add(sh, "other.test:max_conns=1; bad:max_conns=q",
					err, sizeof(err)), -EINVAL);
	CHECK(has(err, "bad: max_conns"));
	ctl_shape_limits(sh, "other.test", 0, &l);
	CHECK_EQ(l.max_conns, 10);
	/* replacing an override applies to a domain already tracked */
	CHECK_EQ(ctl_shape_conn_acquire(sh, "example.com", 0), 0);
	CHECK_EQ(ctl_shape_override_add(sh, "example.com:max_conns=1", err, sizeof(err)), 1);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "example.com", 0), -EBUSY);
	ctl_shape_limits(sh, "example.com", 0, &l);
	CHECK(l.rate == 0);                  /* the new override replaced the old one */
	ctl_shape_free(sh);
}

static uint64_t rng_state = 1;

static unsigned
rnd(unsigned n)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)(rng_state >> 33) % n;
}

/* Random opens and closes over three domains: never above the limit, and
 * an acquire is refused only at the limit. */
static void
test_conn_limit_random(void)
{
	struct ctl_shape *sh = ctl_shape_new(NULL);
	const char *dom[3] = { "a.test", "b.test", "c.test" };
	unsigned lim[3] = { 1, 3, 7 }, open[3] = { 0 }, peak[3] = { 0 };
	char err[128], spec[64];
	uint64_t now = 0;

	for (int i = 0; i < 3; i++) {
		snprintf(spec, sizeof(spec), "%s:max_conns=%u", dom[i], lim[i]);
		CHECK_EQ(ctl_shape_override_add(sh, spec, err, sizeof(err)), 1);
	}
	for (int step = 0; step < 20000; step++) {
		unsigned d = rnd(3);
		struct ctl_shape_state st;

		now += rnd(5);
		if (rnd(100) < 55) {
			int rc = ctl_shape_conn_acquire(sh, dom[d], now);

			if (open[d] < lim[d]) {
				CHECK_EQ(rc, 0);
				if (rc == 0)
					open[d]++;
			} else {
				CHECK_EQ(rc, -EBUSY);
			}
		} else if (open[d] > 0) {
			ctl_shape_conn_release(sh, dom[d], now);
			open[d]--;
		}
		ctl_shape_state_get(sh, dom[d], now, &st);
		CHECK(st.conns <= lim[d]);
		CHECK_EQ(st.conns, open[d]);
		if (st.conns > peak[d])
			peak[d] = st.conns;
	}
	for (int i = 0; i < 3; i++)
		CHECK_EQ(peak[i], lim[i]);
	/* an extra release is ignored */
	for (int i = 0; i < 10; i++)
		ctl_shape_conn_release(sh, "a.test", now);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "a.test", now), 0);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "a.test", now), -EBUSY);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "", now), -EINVAL);
	ctl_shape_free(sh);
}

/* Greedy sender taking a token whenever it can, for 10 simulated seconds. */
static void
test_rate_bucket(void)
{
	struct ctl_shape *sh = ctl_shape_new(NULL);
	char err[128];
	uint64_t taken = 0, t0 = 1000000;
	uint64_t w;

	CHECK_EQ(ctl_shape_override_add(sh, "r.test:rate=20,burst=5", err, sizeof(err)), 1);
	for (uint64_t now = t0; now <= t0 + 10000; now++) {
		while (ctl_shape_msg_take(sh, "r.test", 1, now) == 0)
			taken++;
		/* never more than burst + rate * elapsed */
		CHECK(taken <= 5 + (now - t0) * 20 / 1000);
	}
	CHECK_EQ(taken, 5 + 200);
	/* wait_ms is exact: empty bucket at 20/s -> next token in 50 ms */
	{
		uint64_t now = t0 + 10000;

		CHECK_EQ(ctl_shape_msg_take(sh, "r.test", 1, now), -EAGAIN);
		w = ctl_shape_wait_ms(sh, "r.test", 1, now);
		CHECK_EQ(w, 50);
		CHECK_EQ(ctl_shape_msg_take(sh, "r.test", 1, now + w - 1), -EAGAIN);
		CHECK_EQ(ctl_shape_msg_take(sh, "r.test", 1, now + w), 0);
		CHECK_EQ(ctl_shape_wait_ms(sh, "r.test", 3, now + w), 150);
		CHECK_EQ(ctl_shape_msg_take(sh, "r.test", 6, now + w), -E2BIG);
		CHECK_EQ(ctl_shape_wait_ms(sh, "r.test", 6, now + w), UINT64_MAX);
		/* a long idle period refills to the burst, not beyond */
		CHECK_EQ(ctl_shape_msg_take(sh, "r.test", 5, now + 3600000), 0);
		CHECK_EQ(ctl_shape_msg_take(sh, "r.test", 1, now + 3600000), -EAGAIN);
	}
	/* a fractional rate: 0.5/s, burst 1 -> one message every 2 s */
	CHECK_EQ(ctl_shape_override_add(sh, "slow.test:rate=0.5", err, sizeof(err)), 1);
	CHECK_EQ(ctl_shape_msg_take(sh, "slow.test", 1, 0), 0);
	CHECK_EQ(ctl_shape_wait_ms(sh, "slow.test", 1, 1000), 1000);
	CHECK_EQ(ctl_shape_msg_take(sh, "slow.test", 1, 1999), -EAGAIN);
	CHECK_EQ(ctl_shape_msg_take(sh, "slow.test", 1, 2000), 0);
	/* unlimited rate: always granted */
	for (int i = 0; i < 1000; i++)
		CHECK_EQ(ctl_shape_msg_take(sh, "free.test", 1, 0), 0);
	CHECK_EQ(ctl_shape_wait_ms(sh, "free.test", 1000, 0), 0);
	ctl_shape_free(sh);
}

static void
test_adapt_421(void)
{
	struct ctl_shape_conf c = {
		.defaults = { .max_conns = 8, .rate = 40 },
		.window_ms = 10000, .cooldown_ms = 60000, .slow_pct = 50,
	};
	struct ctl_shape *sh = ctl_shape_new(&c);
	struct ctl_shape_state st;
	struct ctl_shape_limits l;
	uint64_t t = 5000;

	CHECK_EQ(ctl_shape_on_reply(sh, "d.test", 250, t), 0);
	CHECK_EQ(ctl_shape_on_reply(sh, "d.test", 550, t), 0);
	CHECK_EQ(ctl_shape_on_reply(sh, "d.test", 421, t), 1);
	ctl_shape_limits(sh, "d.test", t, &l);
	CHECK_EQ(l.max_conns, 4);
	CHECK(fabs(l.rate - 20) < 1e-9);
	CHECK_EQ(l.burst, 20);
	CHECK_EQ(l.msgs_per_conn, CTL_SHAPE_MSGS_PER_CONN_DEFAULT);
	/* twenty sessions getting 421 at once are one event */
	for (int i = 0; i < 20; i++)
		CHECK_EQ(ctl_shape_on_reply(sh, "d.test", 421, t + (uint64_t)i), 0);
	ctl_shape_state_get(sh, "d.test", t + 20, &st);
	CHECK_EQ(st.level, 1);
	CHECK_EQ(st.triggers, 1);
	/* ... but they restarted the cool-down */
	CHECK_EQ(st.slowed_until_ms, t + 19 + 60000);
	/* a 421 after the window: level 2 */
	t += 20000;
	CHECK_EQ(ctl_shape_on_reply(sh, "d.test", 421, t), 1);
	ctl_shape_limits(sh, "d.test", t, &l);
	CHECK_EQ(l.max_conns, 2);
	CHECK(fabs(l.rate - 10) < 1e-9);
	/* the slowed rate is enforced: bucket capped at the new burst (10) */
	CHECK_EQ(ctl_shape_msg_take(sh, "d.test", 10, t), 0);
	CHECK_EQ(ctl_shape_msg_take(sh, "d.test", 1, t), -EAGAIN);
	CHECK_EQ(ctl_shape_wait_ms(sh, "d.test", 1, t), 100);
	/* the domain does not recover other domains' limits */
	ctl_shape_limits(sh, "e.test", t, &l);
	CHECK_EQ(l.max_conns, 8);
	/* recovery: one level per quiet cool-down */
	ctl_shape_limits(sh, "d.test", t + 59999, &l);
	CHECK_EQ(l.max_conns, 2);
	ctl_shape_limits(sh, "d.test", t + 60000, &l);
	CHECK_EQ(l.max_conns, 4);
	ctl_shape_limits(sh, "d.test", t + 119999, &l);
	CHECK_EQ(l.max_conns, 4);
	ctl_shape_limits(sh, "d.test", t + 120000, &l);
	CHECK_EQ(l.max_conns, 8);
	CHECK(l.rate == 40);
	ctl_shape_state_get(sh, "d.test", t + 120000, &st);
	CHECK_EQ(st.level, 0);
	CHECK_EQ(st.slowed_until_ms, 0);
	CHECK_EQ(st.triggers, 2);
	ctl_shape_free(sh);
}

/* A window longer than the cool-down: a 421 after recovery but inside the
 * window of the previous trigger still slows the domain down again. */
static void
test_adapt_after_recovery(void)
{
	struct ctl_shape_conf c = {
		.defaults = { .max_conns = 8 }, .window_ms = 60000, .cooldown_ms = 1000,
	};
	struct ctl_shape *sh = ctl_shape_new(&c);
	struct ctl_shape_state st;

	CHECK_EQ(ctl_shape_on_reply(sh, "r.test", 421, 0), 1);
	ctl_shape_state_get(sh, "r.test", 1000, &st);
	CHECK_EQ(st.level, 0);
	CHECK_EQ(ctl_shape_on_reply(sh, "r.test", 421, 2000), 1);
	ctl_shape_state_get(sh, "r.test", 2000, &st);
	CHECK_EQ(st.level, 1);
	CHECK_EQ(st.lim.max_conns, 4);
	ctl_shape_free(sh);
}

/* Connections open when the limit drops are not cut; new ones wait. */
static void
test_adapt_open_conns(void)
{
	struct ctl_shape_conf c = { .defaults = { .max_conns = 4 }, .cooldown_ms = 1000 };
	struct ctl_shape *sh = ctl_shape_new(&c);

	for (int i = 0; i < 4; i++)
		CHECK_EQ(ctl_shape_conn_acquire(sh, "o.test", 0), 0);
	CHECK_EQ(ctl_shape_on_reply(sh, "o.test", 421, 0), 1);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "o.test", 1), -EBUSY);
	ctl_shape_conn_release(sh, "o.test", 2);
	ctl_shape_conn_release(sh, "o.test", 3);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "o.test", 4), -EBUSY);  /* 2 open, limit 2 */
	ctl_shape_conn_release(sh, "o.test", 5);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "o.test", 6), 0);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "o.test", 7), -EBUSY);
	/* after the cool-down the full limit is back */
	CHECK_EQ(ctl_shape_conn_acquire(sh, "o.test", 1000), 0);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "o.test", 1000), 0);
	CHECK_EQ(ctl_shape_conn_acquire(sh, "o.test", 1000), -EBUSY);
	ctl_shape_free(sh);
}

static void
test_adapt_4xx_burst(void)
{
	struct ctl_shape_conf c = {
		.defaults = { .max_conns = 10 },
		.burst_4xx = 5, .window_ms = 1000, .cooldown_ms = 5000,
	};
	struct ctl_shape *sh = ctl_shape_new(&c);
	struct ctl_shape_state st;

	/* 4xx spread wider than the window: never a trigger */
	for (int i = 0; i < 50; i++)
		CHECK_EQ(ctl_shape_on_reply(sh, "b.test", 451, (uint64_t)i * 300), 0);
	ctl_shape_state_get(sh, "b.test", 15000, &st);
	CHECK_EQ(st.level, 0);
	/* five inside one window: the fifth triggers */
	for (int i = 0; i < 4; i++)
		CHECK_EQ(ctl_shape_on_reply(sh, "b.test", 450, 20000 + (uint64_t)i * 100), 0);
	CHECK_EQ(ctl_shape_on_reply(sh, "b.test", 452, 20900), 1);
	ctl_shape_state_get(sh, "b.test", 20900, &st);
	CHECK_EQ(st.level, 1);
	CHECK_EQ(st.lim.max_conns, 5);
	/* the count restarted: four more do nothing */
	for (int i = 0; i < 4; i++)
		CHECK_EQ(ctl_shape_on_reply(sh, "b.test", 450, 22000 + (uint64_t)i), 0);
	/* code 0 (connection failure) counts as a 4xx */
	CHECK_EQ(ctl_shape_on_reply(sh, "b.test", 0, 22010), 1);
	ctl_shape_state_get(sh, "b.test", 22010, &st);
	CHECK_EQ(st.level, 2);
	CHECK_EQ(st.lim.max_conns, 2);       /* floor(10 * 0.25) */
	/* 2xx/5xx never count */
	for (int i = 0; i < 100; i++) {
		CHECK_EQ(ctl_shape_on_reply(sh, "c.test", 250, 50000), 0);
		CHECK_EQ(ctl_shape_on_reply(sh, "c.test", 554, 50000), 0);
	}
	/* floors: many levels keep one connection and min_rate */
	ctl_shape_free(sh);
}

static void
test_floors(void)
{
	struct ctl_shape_conf c = {
		.defaults = { .max_conns = 3, .rate = 1 },
		.window_ms = 1, .cooldown_ms = 1000000, .min_rate = 0.25,
	};
	struct ctl_shape *sh = ctl_shape_new(&c);
	struct ctl_shape_state st;

	for (int i = 0; i < 20; i++)
		ctl_shape_on_reply(sh, "f.test", 421, (uint64_t)i * 10);
	ctl_shape_state_get(sh, "f.test", 200, &st);
	CHECK_EQ(st.level, CTL_SHAPE_LEVEL_MAX);
	CHECK_EQ(st.lim.max_conns, 1);
	CHECK(fabs(st.lim.rate - 0.25) < 1e-9);
	CHECK_EQ(st.lim.burst, 1);
	ctl_shape_free(sh);
}

static void
test_gc_and_bounds(void)
{
	struct ctl_shape_conf c = { .max_domains = 3, .defaults = { .rate = 10 } };
	struct ctl_shape *sh = ctl_shape_new(&c);
	struct ctl_shape_state st;

	CHECK_EQ(ctl_shape_conn_acquire(sh, "a.test", 0), 0);
	CHECK_EQ(ctl_shape_msg_take(sh, "b.test", 1, 0), 0);
	CHECK_EQ(ctl_shape_on_reply(sh, "c.test", 421, 0), 1);
	CHECK_EQ(ctl_shape_domains(sh), 3);
	/* all busy: a fourth domain cannot be tracked */
	CHECK_EQ(ctl_shape_conn_acquire(sh, "d.test", 0), -ENOMEM);
	/* after b's bucket refilled it is idle and makes room */
	CHECK_EQ(ctl_shape_conn_acquire(sh, "d.test", 1000), 0);
	CHECK_EQ(ctl_shape_state_get(sh, "b.test", 1000, &st), -ENOENT);
	CHECK_EQ(st.lim.max_conns, CTL_SHAPE_MAX_CONNS_DEFAULT);
	ctl_shape_conn_release(sh, "a.test", 2000);
	ctl_shape_conn_release(sh, "d.test", 2000);
	CHECK_EQ(ctl_shape_gc(sh, 2000), 2);
	CHECK_EQ(ctl_shape_state_get(sh, "c.test", 2000, &st), 0);   /* still slowed */
	CHECK_EQ(st.level, 1);
	CHECK_EQ(ctl_shape_gc(sh, 2000 + CTL_SHAPE_COOLDOWN_MS_DEFAULT), 1);
	CHECK_EQ(ctl_shape_domains(sh), 0);
	ctl_shape_free(sh);
	/* bad configurations */
	c = (struct ctl_shape_conf){ .slow_pct = 100 };
	CHECK(ctl_shape_new(&c) == NULL);
	c = (struct ctl_shape_conf){ .defaults = { .rate = -1 } };
	CHECK(ctl_shape_new(&c) == NULL);
}

int
main(void)
{
	test_parse_ok();
	test_parse_errors();
	test_precedence();
	test_conn_limit_random();
	test_rate_bucket();
	test_adapt_421();
	test_adapt_after_recovery();
	test_adapt_open_conns();
	test_adapt_4xx_burst();
	test_floors();
	test_gc_and_bounds();
	return mp_test_result("ctl_shape");
}
