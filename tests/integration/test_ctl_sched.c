/*
 * Scheduler core under a test clock: a real redis-server (unix socket in a
 * temporary directory, no TCP), the real ctl_dns (static routes only),
 * ctl_shape and ctl_retry, and a test backend implementing the dispatch
 * interface that answers each message by its domain after a simulated
 * session time. What it proves:
 *  - shaping at the dispatch interface: never more concurrent orders per
 *    domain than max_conns, never more messages per order than
 *    msgs_per_conn, cumulative messages never above burst + rate * t;
 *  - retry timing: each new attempt of a deferred recipient comes no
 *    sooner than the jittered backoff allows and not much later, the last
 *    one by the maximum age, then the recipient is failed with the last
 *    reply; counts add up at every check;
 *  - 5xx bounces, cancelled and paused campaigns, re-delivered batches of
 *    final recipients are skipped, malformed batches are dropped alone, a
 *    consumer that vanished has its batches claimed by another and every
 *    recipient ends in exactly one final state, a live consumer keeps
 *    batches it holds longer than min-idle;
 *  - Redis trouble (connection killed, scripts flushed) loses nothing;
 *  - results of a consumer that stalled and lost its batches to another
 *    are counted as dup_deliveries and change no state or counter;
 *  - a send window holds a campaign outside it;
 *  - MX through dnsmasq on loopback: 421 and refused connects fall back
 *    to the next MX within one attempt, null MX / NXDOMAIN bounce, DNS
 *    trouble defers until the maximum age;
 *  - suppression: an unsubscribe written after submit is not sent and
 *    ends cancelled with its reason; a 5.1.1 bounce adds the address to
 *    the sender domain's list, a 5.7.26 does not; a second campaign
 *    skips the bounced address at submit.
 *  - poison jobs entries written with redis-cli (empty rcpts, bad JSON,
 *    invalid UTF-8, \u0000, an unknown campaign, an unknown TLS policy)
 *    each end in jobs:dead with their reason, the recipients they name
 *    are failed with it, none stays queued, a good campaign goes on;
 *  - 100 merge fields reach the template (field 90 rendered);
 *  - an IDN domain submitted by mailpumpctl is looked up (dnsmasq MX for
 *    the xn-- name) and addressed (RCPT) under its A-label; an invalid IDN
 *    is refused at submit with a per-line error.
 * Skips (77) without redis-server.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ctl_bounce.h"
#include "ctl_campdef.h"
#include "ctl_dns.h"
#include "ctl_retry.h"
#include "ctl_sched.h"
#include "ctl_shape.h"
#include "ctl_submit.h"
#include "mp_test.h"

#define T0 ((uint64_t)1800000000000ull)

static uint64_t fake_now = T0;
static char tmpdir[64], sock[128], url[160];
static pid_t redis_pid;
static redisContext *rc;

static uint64_t
clk(void *arg)
{
	(void)arg;
	return fake_now;
}

/* Real time, for bounds on waits for real peers (the scheduler runs on clk). */
static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Only to let real time pass (min-idle is Redis's clock) or to pace a
 * poll loop; never to wait for something to happen. */
static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* ---- redis ---- */

static int
redis_start(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mp-ctlsched.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(sock, sizeof(sock), "%s/redis.sock", tmpdir);
	snprintf(url, sizeof(url), "unix:%s", sock);
	redis_pid = fork();
	if (redis_pid == 0) {
		/* dies with the test, whatever happens to it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		freopen("/dev/null", "w", stdout);
		execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
			"--save", "", "--appendonly", "no", "--dir", tmpdir, (char *)NULL);
		_exit(127);
	}
	/* until it answers: 20 s, for a loaded machine under ASan */
	for (uint64_t end = mono_ms() + 20000; mono_ms() < end;) {
		rc = redisConnectUnix(sock);
		if (rc != NULL && !rc->err)
			return 0;
		if (rc != NULL)
			redisFree(rc);
		rc = NULL;
		if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) {
			redis_pid = -1;
			break;
		}
		sleep_ms(50);
	}
	return -1;
}

static void
redis_stop(void)
{
	if (rc != NULL)
		redisFree(rc);
	if (redis_pid > 0) {
		kill(redis_pid, SIGTERM);
		waitpid(redis_pid, NULL, 0);
	}
	unlink(sock);
	rmdir(tmpdir);
}

static long long
rint_cmd(const char *fmt, const char *a, const char *b)
{
	redisReply *r = redisCommand(rc, fmt, a, b);
	long long v = -1;

	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		v = r->integer;
	else if (r != NULL && r->type == REDIS_REPLY_STRING)
		v = atoll(r->str);
	else if (r != NULL && r->type == REDIS_REPLY_NIL)
		v = 0;
	freeReplyObject(r);
	return v;
}

static long long
count(const char *camp, const char *field)
{
	char key[128];

	snprintf(key, sizeof(key), "mp:campaign:%s:counts", camp);
	return rint_cmd("HGET %s %s", key, field);
}

static void
cmd(const char *fmt, ...)
{
	va_list ap;
	redisReply *r;

	va_start(ap, fmt);
	r = redisvCommand(rc, fmt, ap);
	va_end(ap);
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		fprintf(stderr, "redis: %s\n", r ? r->str : rc->errstr);
	freeReplyObject(r);
}

/* A campaign with n recipients per domain, batches of bsize (section F). */
static void
seed(const char *camp, const char *const *domains, unsigned ndom, unsigned n,
	unsigned bsize, unsigned max_age_s, const char *state)
{
	unsigned total = ndom * n;

	cmd("HSET mp:campaign:%s id %s from news@sender.test subject %s text %s "
		"tls_policy opportunistic max_age_s %u state %s created_ms %" PRIu64
		" submitted_ms %" PRIu64 " total %u",
		camp, camp, "Hi {{first|there}}", "Hello {{first|you}}\n", max_age_s, state,
		fake_now, fake_now, total);
	cmd("HSET mp:campaign:%s:counts queued %u deferred 0 delivered 0 bounced 0 "
		"failed 0 cancelled 0 dup_deliveries 0 attempts 0", camp, total);
	for (unsigned d = 0; d < ndom; d++) {
		json_t *arr = json_array();

		for (unsigned i = 0; i < n; i++) {
			char addr[128];

			snprintf(addr, sizeof(addr), "u%u@%s", i, domains[d]);
			cmd("HSETNX mp:campaign:%s:rcpt %s %s", camp, addr,
				"{\"state\":\"queued\",\"attempts\":0}");
			json_array_append_new(arr, json_pack("{s:s, s:{s:s}}", "to", addr,
				"f", "first", "F"));
			if (json_array_size(arr) == bsize || i + 1 == n) {
				char *txt = json_dumps(arr, JSON_COMPACT);

				cmd("XADD mp:jobs * campaign %s domain %s attempt 0 rcpts %s",
					camp, domains[d], txt);
				free(txt);
				json_array_clear(arr);
			}
		}
		json_decref(arr);
	}
}

/* every recipient exactly one state, counts equal to the hash */
static void
check_consistent(const char *camp, long long total)
{
	static const char *const st[] = { "queued", "deferred", "delivered", "bounced",
		"failed", "cancelled" };
	long long by[6] = { 0 }, sum = 0;
	redisReply *r = redisCommand(rc, "HGETALL mp:campaign:%s:rcpt", camp);

	CHECK(r != NULL && r->type == REDIS_REPLY_ARRAY);
	if (r == NULL)
		return;
	CHECK_EQ(r->elements / 2, total);
	for (size_t i = 1; i < r->elements; i += 2) {
		json_t *j = json_loads(r->element[i]->str, 0, NULL);
		const char *s = json_string_value(json_object_get(j, "state"));

		for (int k = 0; s != NULL && k < 6; k++) {
			if (strcmp(s, st[k]) == 0)
				by[k]++;
		}
		json_decref(j);
	}
	freeReplyObject(r);
	for (int k = 0; k < 6; k++) {
		CHECK_EQ(count(camp, st[k]), by[k]);
		sum += by[k];
	}
	CHECK_EQ(sum, total);
}

static json_t *
rcpt_state(const char *camp, const char *addr)
{
	char key[128];
	redisReply *r;
	json_t *j = NULL;

	snprintf(key, sizeof(key), "mp:campaign:%s:rcpt", camp);
	r = redisCommand(rc, "HGET %s %s", key, addr);
	if (r != NULL && r->type == REDIS_REPLY_STRING)
		j = json_loads(r->str, 0, NULL);
	freeReplyObject(r);
	return j;
}

/* ---- test backend ---- */

#define TB_MAX 4096
#define LOG_MAX 20000

struct tb_order {
	struct ctl_order *o;
	uint64_t due;
};

struct tb_att {		/* one dispatched message */
	char rcpt[64];
	uint64_t t;
};

struct tb {
	struct ctl_sink sink;
	struct tb_order open[TB_MAX];
	unsigned nopen;
	uint64_t sess_ms;		/* simulated session time */
	int hold;			/* never complete (a consumer that dies) */
	/* shaping observations for domain "shaped.test" */
	unsigned max_open_shaped, max_msgs_shaped, violations;
	uint64_t shaped_msgs, shaped_t0;
	unsigned cap_conns, cap_msgs;
	double cap_rate, cap_burst;
	struct tb_att log[LOG_MAX];
	unsigned nlog;
	unsigned submits;
	/* every message rendered; those holding want counted */
	const char *want;
	unsigned want_hits, renders;
};

/* Render @p m as a backend would and look for t->want in it. */
static void
tb_render_check(struct tb *t, const struct ctl_msg *m)
{
	struct msg_fields fs = { .v = m->fields, .n = m->nfields };
	struct msg_render r;
	static char buf[1 << 16];
	char err[256];
	size_t len = 0;
	ssize_t k;

	t->renders++;
	if (msg_render_open(&r, m->camp->tpl, m->rcpt, &fs, 0, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "render %s: %s\n", m->rcpt, err);
		return;
	}
	while (len + 1 < sizeof(buf) && (k = msg_render_read(&r, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)k;
	buf[len] = '\0';
	if (strstr(buf, t->want) != NULL)
		t->want_hits++;
}

static unsigned
tb_open_for(const struct tb *t, const char *dom)
{
	unsigned n = 0;

	for (unsigned i = 0; i < t->nopen; i++)
		n += strcmp(t->open[i].o->domain, dom) == 0;
	return n;
}

static int
tb_submit(void *be, struct ctl_order *o)
{
	struct tb *t = be;

	if (t->nopen == TB_MAX)
		return -EAGAIN;
	t->submits++;
	if (strcmp(o->domain, "shaped.test") == 0) {
		unsigned open = tb_open_for(t, o->domain) + 1;
		double allowed;

		if (t->shaped_msgs == 0)
			t->shaped_t0 = fake_now;
		t->shaped_msgs += o->n_msgs;
		allowed = t->cap_burst + t->cap_rate * (double)(fake_now - t->shaped_t0) / 1000.0;
		if (open > t->max_open_shaped)
			t->max_open_shaped = open;
		if (o->n_msgs > t->max_msgs_shaped)
			t->max_msgs_shaped = o->n_msgs;
		if (open > t->cap_conns || o->n_msgs > t->cap_msgs ||
		    (double)t->shaped_msgs > allowed + 1e-9 || o->msgs_per_conn > t->cap_msgs) {
			fprintf(stderr, "shaping violated at t=%" PRIu64 ": open=%u msgs=%u total=%" PRIu64
				" allowed=%.1f\n", fake_now - T0, open, o->n_msgs, t->shaped_msgs, allowed);
			t->violations++;
		}
	}
	for (unsigned i = 0; t->want != NULL && i < o->n_msgs; i++)
		tb_render_check(t, o->msgs[i]);
	for (unsigned i = 0; i < o->n_msgs && t->nlog < LOG_MAX; i++) {
		snprintf(t->log[t->nlog].rcpt, sizeof(t->log[0].rcpt), "%.60s", o->msgs[i]->rcpt);
		t->log[t->nlog++].t = fake_now;
	}
	t->open[t->nopen].o = o;
	t->open[t->nopen].due = fake_now + t->sess_ms;
	t->nopen++;
	return 0;
}

/* Orders the test backend saw per address family, and the last IPv6
 * address in text form (test_mx_ipv6). */
static unsigned tb_orders_v4, tb_orders_v6;
static char tb_last_v6[INET6_ADDRSTRLEN];

static void
tb_answer(struct tb *t, struct ctl_order *o)
{
	struct ctl_sess_report rep;

	if (o->addr.sa.sa_family == AF_INET6) {
		tb_orders_v6++;
		inet_ntop(AF_INET6, &o->addr.sin6.sin6_addr, tb_last_v6, sizeof(tb_last_v6));
	} else if (o->addr.sa.sa_family == AF_INET) {
		tb_orders_v4++;
	}

	for (unsigned i = 0; i < o->n_msgs; i++) {
		struct ctl_result r;

		memset(&r, 0, sizeof(r));
		r.order_id = o->id;
		r.msg_index = i;
		if (strcmp(o->domain, "busy.test") == 0 &&
		    o->addr.sin.sin_addr.s_addr == htonl(0x7f00003d)) {
			/* its first MX is overloaded */
			r.outcome = SMTP_OUT_DEFERRED;
			r.stage = SMTP_STAGE_GREETING;
			r.code = 421;
			snprintf(r.text, sizeof(r.text), "421 4.3.2 too busy");
		} else if (strcmp(o->domain, "down.test") == 0 &&
		    o->addr.sin.sin_addr.s_addr == htonl(0x7f000047)) {
			/* its first MX refuses connections */
			r.outcome = SMTP_OUT_DEFERRED;
			r.stage = SMTP_STAGE_CONNECT;
			snprintf(r.text, sizeof(r.text), "connect 127.0.0.71:25: Connection refused");
		} else if (strcmp(o->domain, "refuse.test") == 0 &&
		    o->addr.sin.sin_addr.s_addr == htonl(0x7f000051)) {
			/* its first MX greets with 554: the SMTP client defers */
			r.outcome = SMTP_OUT_DEFERRED;
			r.stage = SMTP_STAGE_GREETING;
			r.code = 554;
			snprintf(r.text, sizeof(r.text), "554 5.7.1 no service");
		} else if (strcmp(o->domain, "tlsbad.test") == 0 &&
		    o->addr.sin.sin_addr.s_addr == htonl(0x7f000065)) {
			/* its first MX's certificate does not verify */
			r.outcome = SMTP_OUT_DEFERRED;
			r.stage = SMTP_STAGE_TLS;
			snprintf(r.text, sizeof(r.text), "TLS handshake with mx1.tlsbad.test failed: "
				"expired: certificate has expired");
		} else if (strcmp(o->domain, "only.test") == 0) {
			/* its only MX refuses EHLO and HELO */
			r.outcome = SMTP_OUT_DEFERRED;
			r.stage = SMTP_STAGE_HELO;
			r.code = 550;
			snprintf(r.esc, sizeof(r.esc), "5.7.1");
			snprintf(r.text, sizeof(r.text), "550 5.7.1 HELO refused");
		} else if (strcmp(o->domain, "slow.test") == 0) {
			r.outcome = SMTP_OUT_DEFERRED;
			r.stage = SMTP_STAGE_RCPT;
			r.code = 451;
			snprintf(r.esc, sizeof(r.esc), "4.7.1");
			snprintf(r.text, sizeof(r.text), "451 4.7.1 greylisted, try later");
		} else if (strcmp(o->domain, "dkim.test") == 0) {
			/* Gmail's refusal of unauthenticated mail: the sender's fault */
			r.outcome = SMTP_OUT_BOUNCED;
			r.stage = SMTP_STAGE_BODY;
			r.code = 550;
			snprintf(r.esc, sizeof(r.esc), "5.7.26");
			snprintf(r.text, sizeof(r.text), "550-5.7.26 This mail has been blocked because "
				"the sender is unauthenticated.");
		} else if (strcmp(o->domain, "bounce.test") == 0) {
			r.outcome = SMTP_OUT_BOUNCED;
			r.stage = SMTP_STAGE_RCPT;
			r.code = 550;
			snprintf(r.esc, sizeof(r.esc), "5.1.1");
			snprintf(r.text, sizeof(r.text), "550 5.1.1 no such user");
		} else {
			r.outcome = SMTP_OUT_DELIVERED;
			r.stage = SMTP_STAGE_BODY;
			r.code = 250;
			snprintf(r.esc, sizeof(r.esc), "2.0.0");
			snprintf(r.text, sizeof(r.text), "250 2.0.0 queued");
			r.tls_on = 1;
			r.has_tls = 1;
			snprintf(r.tls.version, sizeof(r.tls.version), "TLSv1.3");
			snprintf(r.tls.cipher, sizeof(r.tls.cipher), "TLS_AES_256_GCM_SHA384");
			r.tls.verify = TLS_VERIFY_SELF_SIGNED;
		}
		t->sink.on_result(t->sink.arg, o, &r);
	}
	memset(&rep, 0, sizeof(rep));
	rep.order_id = o->id;
	rep.connected = !(strcmp(o->domain, "down.test") == 0 &&
		o->addr.sin.sin_addr.s_addr == htonl(0x7f000047));
	rep.info.starttls_offered = 1;
	rep.info.tls_active = 1;
	snprintf(rep.info.greeting_host, sizeof(rep.info.greeting_host), "mx.%.40s", o->domain);
	rep.has_tls = 1;
	snprintf(rep.tls.version, sizeof(rep.tls.version), "TLSv1.3");
	snprintf(rep.tls.cipher, sizeof(rep.tls.cipher), "TLS_AES_256_GCM_SHA384");
	rep.tls.verify = TLS_VERIFY_SELF_SIGNED;
	rep.tls.handshake_us = 3000;
	t->sink.on_done(t->sink.arg, o, &rep);
}

static int
tb_poll(void *be, int timeout_ms)
{
	struct tb *t = be;
	int n = 0;

	(void)timeout_ms;
	if (t->hold)
		return 0;
	for (unsigned i = 0; i < t->nopen;) {
		if (t->open[i].due <= fake_now) {
			struct ctl_order *o = t->open[i].o;

			t->open[i] = t->open[--t->nopen];
			tb_answer(t, o);
			n++;
		} else {
			i++;
		}
	}
	return n;
}

static unsigned
tb_active(void *be)
{
	return ((struct tb *)be)->nopen;
}

static const struct ctl_backend_ops tb_ops = { tb_submit, tb_poll, tb_active };

/* ---- scheduler setup ---- */

struct rig {
	struct ctl_dns *dns;
	struct ctl_shape *shape;
	struct ctl_sched *s;
	struct tb *tb;
};

/* DNS for the MX test: NULL = static route "*" only */
static const char *rig_dns_servers;
/* the resolver is configured for an IPv6-capable transport (ksock) */
static int rig_dns_ipv6;
/* sender refusals fail at once (else they are retried until max age) */
static int rig_refusal_fails;

static int
rig_new(struct rig *g, const char *consumer, const char *shape_spec, uint64_t min_idle)
{
	struct ctl_sched_conf sc = { 0 };
	struct ctl_dns_conf dc = { 0 };
	struct ctl_shape_conf shc = { 0 };
	struct ctl_backend be;
	char err[256];

	memset(g, 0, sizeof(*g));
	dc.servers = rig_dns_servers;
	dc.timeout_ms = 500;
	dc.ipv6 = rig_dns_ipv6;
	g->dns = ctl_dns_new(&dc, err, sizeof(err));
	if (g->dns == NULL || (rig_dns_servers == NULL &&
	    ctl_dns_route_parse(g->dns, "*=127.0.0.1:25", err, sizeof(err)) < 0)) {
		fprintf(stderr, "dns: %s\n", err);
		return -1;
	}
	g->shape = ctl_shape_new(&shc);
	if (g->shape == NULL)
		return -1;
	if (shape_spec != NULL && ctl_shape_override_add(g->shape, shape_spec, err, sizeof(err)) < 0) {
		fprintf(stderr, "shape: %s\n", err);
		return -1;
	}
	sc.redis_url = url;
	sc.consumer = consumer;
	sc.block_ms = 1;
	sc.read_every_ms = 1;
	sc.min_idle_ms = min_idle;
	sc.claim_every_ms = min_idle / 2 + 1;
	sc.retry_every_ms = 1;
	sc.state_every_ms = 1;
	sc.now_ms = clk;
	sc.seed = 42;
	sc.sender_refusal_fails = rig_refusal_fails;
	sc.dns = g->dns;
	sc.shape = g->shape;
	ctl_retry_conf_init(&sc.retry);
	sc.retry.base_ms = 60000;
	sc.retry.factor_pct = 200;
	sc.retry.cap_ms = 600000;
	sc.retry.jitter_pct = 20;
	g->s = ctl_sched_new(&sc, err, sizeof(err));
	if (g->s == NULL) {
		fprintf(stderr, "sched: %s\n", err);
		return -1;
	}
	g->tb = calloc(1, sizeof(*g->tb));
	g->tb->sink = *ctl_sched_sink(g->s);
	g->tb->sess_ms = 500;
	be.ops = &tb_ops;
	be.be = g->tb;
	ctl_sched_set_backend(g->s, &be);
	return 0;
}

static void
rig_free(struct rig *g)
{
	/* orders still at the test backend belong to it */
	for (unsigned i = 0; g->tb != NULL && i < g->tb->nopen; i++)
		ctl_order_free(g->tb->open[i].o);
	ctl_dns_free(g->dns);
	ctl_sched_free(g->s);
	ctl_shape_free(g->shape);
	free(g->tb);
}

/*
 * Step until the campaign is done with nothing held, or the bound is hit:
 * @p steps steps of fake time += @p dt, and @p real_ms of real time if not
 * 0. A lookup to a real DNS server (dnsmasq) is answered in real time: the
 * test clock stands still while one is out, so an answer costs no test
 * time however slowly it comes. @return 0 done, -1 at the bound.
 */
static int
run_steps(struct rig *g, const char *camp, unsigned steps, uint64_t dt, uint64_t real_ms)
{
	uint64_t end = mono_ms() + real_ms;
	char key[128];

	snprintf(key, sizeof(key), "mp:campaign:%s", camp);
	for (unsigned i = 0; i < steps && (real_ms == 0 || mono_ms() < end);) {
		redisReply *r;
		int done;

		ctl_sched_step(g->s, 0);
		if (ctl_dns_pending(g->dns) > 0) {
			sleep_ms(1);
			continue;
		}
		fake_now += dt;
		if (i++ % 8 != 0)
			continue;
		r = redisCommand(rc, "HGET %s state", key);
		done = r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, "done") == 0;
		freeReplyObject(r);
		if (done && ctl_sched_held(g->s) == 0)
			return 0;
	}
	return -1;
}

static int
run_until_done(struct rig *g, const char *camp, unsigned steps, uint64_t dt)
{
	return run_steps(g, camp, steps, dt, 0);
}

static void
test_shaping(void)
{
	static const char *const doms[] = { "shaped.test", "free.test" };
	struct rig g;

	cmd("FLUSHALL");
	if (rig_new(&g, "shape-a", "shaped.test:max_conns=2,msgs_per_conn=3,rate=5,burst=4", 60000) < 0) {
		CHECK(0);
		return;
	}
	g.tb->cap_conns = 2;
	g.tb->cap_msgs = 3;
	g.tb->cap_rate = 5;
	g.tb->cap_burst = 4;
	g.tb->sess_ms = 700;
	seed("shape", doms, 2, 120, 50, 3600, "running");
	CHECK_EQ(run_until_done(&g, "shape", 20000, 20), 0);
	CHECK_EQ(g.tb->violations, 0);
	CHECK_EQ(g.tb->max_open_shaped, 2);	/* the limit was reached, never passed */
	CHECK_EQ(g.tb->max_msgs_shaped, 3);
	CHECK_EQ(g.tb->shaped_msgs, 120);
	CHECK_EQ(count("shape", "delivered"), 240);
	CHECK_EQ(count("shape", "attempts"), 240);
	check_consistent("shape", 240);
	/* TLS counters and proof of TLS per recipient */
	CHECK(rint_cmd("HGET %s %s", "mp:tls:shaped.test", "sessions") >= 40);
	CHECK_EQ(rint_cmd("HGET %s %s", "mp:tls:shaped.test", "verify_fail:self-signed"),
		rint_cmd("HGET %s %s", "mp:tls:shaped.test", "sessions"));
	CHECK_EQ(rint_cmd("SISMEMBER %s %s", "mp:tls:domains", "free.test"), 1);
	{
		json_t *j = rcpt_state("shape", "u7@shaped.test");
		json_t *tls = json_object_get(j, "tls");

		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "delivered");
		CHECK_STREQ(json_string_value(json_object_get(tls, "version")), "TLSv1.3");
		CHECK_EQ(json_integer_value(json_object_get(j, "code")), 250);
		json_decref(j);
	}
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs"), 0);
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "events"), 240);
	rig_free(&g);
}

static void
test_retry_timing(void)
{
	static const char *const doms[] = { "slow.test", "bounce.test", "dkim.test" };
	struct ctl_retry_conf rcf;
	struct rig g;
	uint64_t first = fake_now, max_age = 3600 * 1000;
	unsigned att = 0, bad_gap = 0;
	uint64_t prev = 0, last = 0;

	cmd("FLUSHALL");
	if (rig_new(&g, "retry-a", NULL, 60000) < 0) {
		CHECK(0);
		return;
	}
	g.tb->sess_ms = 0;
	seed("retry", doms, 3, 5, 100, 3600, "running");
	CHECK_EQ(run_until_done(&g, "retry", 40000, 1000), 0);
	ctl_retry_conf_init(&rcf);
	rcf.base_ms = 60000;
	rcf.factor_pct = 200;
	rcf.cap_ms = 600000;
	rcf.jitter_pct = 20;
	rcf.max_age_ms = max_age;
	/* attempts of one deferred recipient, in order */
	for (unsigned i = 0; i < g.tb->nlog; i++) {
		uint64_t t = g.tb->log[i].t;

		if (strcmp(g.tb->log[i].rcpt, "u3@slow.test") != 0)
			continue;
		if (att > 0) {
			uint64_t d = ctl_retry_delay_ms(&rcf, att);
			uint64_t gap = t - prev;
			uint64_t lo = d - d * 20 / 100;

			/* the last try is moved to the deadline */
			if (t <= first + max_age + 3000 && prev + lo > first + max_age)
				lo = first + max_age - prev;
			if (gap + 1 < lo || gap > d + 5000) {
				fprintf(stderr, "attempt %u gap %" PRIu64 " ms, nominal %" PRIu64 "\n",
					att + 1, gap, d);
				bad_gap++;
			}
		}
		prev = t;
		last = t;
		att++;
	}
	CHECK_EQ(bad_gap, 0);
	CHECK(att >= 6);		/* 60+120+240+480+600+600... within an hour */
	CHECK(last <= first + max_age + 5000);
	CHECK(last >= first + max_age - 600000);
	{
		json_t *j = rcpt_state("retry", "u3@slow.test");
		const char *text = json_string_value(json_object_get(j, "text"));

		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "failed");
		CHECK(text != NULL && strstr(text, "451 4.7.1 greylisted") != NULL);
		CHECK(text != NULL && strstr(text, "expired") != NULL);
		CHECK_EQ(json_integer_value(json_object_get(j, "attempts")), att);
		json_decref(j);
		j = rcpt_state("retry", "u1@bounce.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "bounced");
		CHECK_STREQ(json_string_value(json_object_get(j, "esc")), "5.1.1");
		CHECK_STREQ(json_string_value(json_object_get(j, "class")), "invalid_recipient");
		json_decref(j);
		/* 5.7.26 refuses the sender: retried like a 4xx, failed at the
		 * maximum age, never bounced */
		j = rcpt_state("retry", "u2@dkim.test");
		text = json_string_value(json_object_get(j, "text"));
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "failed");
		CHECK_STREQ(json_string_value(json_object_get(j, "class")), "auth_failure");
		CHECK(text != NULL && strstr(text, "expired") != NULL && strstr(text, "5.7.26") != NULL);
		CHECK(json_integer_value(json_object_get(j, "attempts")) >= 6);
		json_decref(j);
		j = rcpt_state("retry", "u3@slow.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "class")), "greylisted");
		json_decref(j);
	}
	CHECK_EQ(count("retry", "failed"), 10);
	CHECK_EQ(count("retry", "bounced"), 5);
	CHECK_EQ(count("retry", "deferred"), 0);
	CHECK(ctl_sched_stats(g.s)->sender_refusals >= 30);
	CHECK_EQ(ctl_sched_stats(g.s)->by_class[CTL_BC_INVALID_RECIPIENT], 5);
	CHECK(ctl_sched_stats(g.s)->by_class[CTL_BC_AUTH_FAILURE] >= 30);
	{
		/* the events carry the class too */
		redisReply *e = redisCommand(rc, "XREVRANGE mp:events + - COUNT 1");
		int found = 0;

		if (e != NULL && e->type == REDIS_REPLY_ARRAY && e->elements == 1) {
			redisReply *f = e->element[0]->element[1];

			for (size_t k = 0; k + 1 < f->elements; k += 2)
				if (strcmp(f->element[k]->str, "class") == 0)
					found = 1;
		}
		CHECK(found);
		freeReplyObject(e);
	}
	CHECK_EQ(rint_cmd("ZCARD %s%s", "mp:", "retry"), 0);
	check_consistent("retry", 15);
	rig_free(&g);
}

static void
test_pause_cancel_skip(void)
{
	static const char *const doms[] = { "ok.test" };
	struct rig g;
	unsigned before;

	cmd("FLUSHALL");
	if (rig_new(&g, "pc-a", NULL, 60000) < 0) {
		CHECK(0);
		return;
	}
	seed("paused", doms, 1, 30, 10, 3600, "paused");
	for (int i = 0; i < 200; i++) {
		ctl_sched_step(g.s, 0);
		fake_now += 20;
	}
	CHECK_EQ(g.tb->submits, 0);		/* nothing leaves while paused */
	CHECK_EQ(count("paused", "queued"), 30);
	/* written to the shared stream, they moved to the campaign's own,
	 * which is not read while it is paused: nothing of it is held */
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs"), 0);
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "campaign:paused:jobs"), 3);
	CHECK_EQ(ctl_sched_stats(g.s)->batches_parked, 3);
	CHECK_EQ(ctl_sched_held(g.s), 0);
	cmd("HSET mp:campaign:paused state running");
	CHECK_EQ(run_until_done(&g, "paused", 5000, 20), 0);
	CHECK_EQ(count("paused", "delivered"), 30);

	/* cancelled: remaining recipients finalised as cancelled, no attempt */
	seed("gone", doms, 1, 25, 10, 3600, "cancelled");
	before = g.tb->submits;
	for (int i = 0; i < 300; i++) {
		ctl_sched_step(g.s, 0);
		fake_now += 20;
	}
	CHECK_EQ(g.tb->submits, before);
	CHECK_EQ(count("gone", "cancelled"), 25);
	CHECK_EQ(count("gone", "attempts"), 0);
	{
		redisReply *r = redisCommand(rc, "HGET mp:campaign:gone state");

		/* every recipient final, yet a cancelled campaign is never "done" */
		CHECK(r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, "cancelled") == 0);
		freeReplyObject(r);
	}
	check_consistent("gone", 25);

	/* the same batch again (a redelivery): every recipient is final, skipped */
	{
		const char *const d2[] = { "ok.test" };
		unsigned sub = g.tb->submits;

		cmd("XADD mp:jobs * campaign paused domain ok.test attempt 0 rcpts %s",
			"[{\"to\":\"u1@ok.test\"},{\"to\":\"u2@ok.test\"}]");
		for (int i = 0; i < 100; i++) {
			ctl_sched_step(g.s, 0);
			fake_now += 20;
		}
		(void)d2;
		CHECK_EQ(g.tb->submits, sub);
		CHECK_EQ(count("paused", "delivered"), 30);
		CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs"), 0);
		CHECK(ctl_sched_stats(g.s)->rcpts_skipped >= 2);
	}
	/* a malformed batch is acknowledged and dropped, nothing else stalls */
	cmd("XADD mp:jobs * campaign paused domain ok.test attempt 0 rcpts %s", "{not json");
	cmd("XADD mp:jobs * campaign nosuch domain ok.test attempt 0 rcpts %s", "[]");
	for (int i = 0; i < 100; i++) {
		ctl_sched_step(g.s, 0);
		fake_now += 20;
	}
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs"), 0);
	CHECK_EQ(ctl_sched_stats(g.s)->batches_bad, 2);
	rig_free(&g);
}

/* consumer A takes every batch and vanishes; B claims them after min-idle */
static void
test_claim_after_death(void)
{
	static const char *const doms[] = { "ok.test", "other.test" };
	struct rig a, b;
	long long pend;

	cmd("FLUSHALL");
	if (rig_new(&a, "dead-a", "*:msgs_per_conn=5", 300) < 0 ||
	    rig_new(&b, "live-b", NULL, 300) < 0) {
		CHECK(0);
		return;
	}
	seed("crash", doms, 2, 40, 10, 3600, "running");
	a.tb->hold = 1;
	a.tb->sess_ms = 0;
	for (int i = 0; i < 50; i++)
		ctl_sched_step(a.s, 0);
	/* some delivered by A before it dies: let it finish a few orders */
	a.tb->hold = 0;
	{
		unsigned k = a.tb->nopen > 2 ? 2 : a.tb->nopen;

		for (unsigned i = 0; i < k; i++) {
			struct ctl_order *o = a.tb->open[0].o;

			a.tb->open[0] = a.tb->open[--a.tb->nopen];
			tb_answer(a.tb, o);
		}
		a.tb->hold = 1;
		ctl_sched_step(a.s, 0);	/* their writes */
	}
	pend = rint_cmd("XPENDING %s %s", "mp:jobs", "mailpump");
	(void)pend;
	CHECK(count("crash", "delivered") > 0);
	CHECK(count("crash", "delivered") < 80);
	rig_free(&a);			/* dies: its batches stay pending */
	/* lets real time pass beyond the 300 ms min-idle; a loaded machine
	 * only makes the batches idler */
	sleep_ms(400);
	CHECK_EQ(run_until_done(&b, "crash", 20000, 20), 0);
	CHECK(ctl_sched_stats(b.s)->batches_claimed > 0);
	CHECK(ctl_sched_stats(b.s)->rcpts_skipped > 0);	/* A's finals not redone */
	CHECK_EQ(count("crash", "delivered"), 80);
	CHECK_EQ(count("crash", "dup_deliveries"), 0);
	check_consistent("crash", 80);
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs"), 0);
	rig_free(&b);
}

/* a live consumer holding batches longer than min-idle keeps them */
static void
test_refresh_keeps_batches(void)
{
	static const char *const doms[] = { "ok.test" };
	struct rig a, b;

	cmd("FLUSHALL");
	if (rig_new(&a, "slow-a", NULL, 300) < 0 || rig_new(&b, "idle-b", NULL, 300) < 0) {
		CHECK(0);
		return;
	}
	seed("hold", doms, 1, 20, 10, 3600, "running");
	a.tb->hold = 1;
	/* >= 1.2 s real, 4x min-idle (more under load). Assumes no gap of
	 * ~200 ms (min-idle less A's 100 ms refresh period) between A's steps
	 * and B's; A steps first after any stall, so it refreshes first. */
	for (int i = 0; i < 120; i++) {
		ctl_sched_step(a.s, 0);
		ctl_sched_step(b.s, 0);
		sleep_ms(10);
	}
	CHECK_EQ(ctl_sched_stats(b.s)->batches_claimed, 0);
	CHECK_EQ(ctl_sched_stats(b.s)->batches_read, 0);
	CHECK_EQ(b.tb->submits, 0);
	a.tb->hold = 0;
	CHECK_EQ(run_until_done(&a, "hold", 2000, 20), 0);
	CHECK_EQ(count("hold", "delivered"), 20);
	check_consistent("hold", 20);
	rig_free(&a);
	rig_free(&b);
}

/* the scheduler's Redis connection is killed again and again and the
 * server forgets its scripts: writes are repeated after the reconnect or
 * the reload, nothing is lost, counts stay consistent */
static void
test_redis_connection_loss(void)
{
	static const char *const doms[] = { "ok.test", "bounce.test", "slow.test" };
	struct rig g;
	unsigned kills = 0;
	int done = 0;

	cmd("FLUSHALL");
	if (rig_new(&g, "flaky", "*:msgs_per_conn=4", 60000) < 0) {
		CHECK(0);
		return;
	}
	g.tb->sess_ms = 100;
	seed("flaky", doms, 3, 60, 7, 120, "running");
	for (int i = 0; i < 200000 && !done; i++) {
		ctl_sched_step(g.s, 0);
		fake_now += 50;
		if (i % 37 == 5) {
			cmd("CLIENT KILL TYPE normal SKIPME yes");
			kills++;
		}
		if (i % 53 == 11)
			cmd("SCRIPT FLUSH");	/* as after a server restart: NOSCRIPT */
		if (i % 16 == 0) {
			redisReply *r = redisCommand(rc, "HGET mp:campaign:flaky state");

			done = r != NULL && r->type == REDIS_REPLY_STRING &&
				strcmp(r->str, "done") == 0 && ctl_sched_held(g.s) == 0;
			freeReplyObject(r);
		}
	}
	CHECK(done);
	CHECK(kills > 10);
	CHECK(ctl_sched_stats(g.s)->redis_errors > 0);
	CHECK_EQ(count("flaky", "delivered"), 60);
	CHECK_EQ(count("flaky", "bounced"), 60);
	CHECK_EQ(count("flaky", "failed"), 60);
	check_consistent("flaky", 180);
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs"), 0);
	CHECK_EQ(rint_cmd("ZCARD %s%s", "mp:", "retry"), 0);
	rig_free(&g);
}

/* A stalls (no refresh within B's min-idle), B takes its batches over and
 * delivers; then A's sessions finish too: A's results find the recipients
 * final, are counted as dup_deliveries and change nothing else */
static void
test_dup_deliveries_counted(void)
{
	static const char *const doms[] = { "ok.test" };
	struct rig a, b;

	cmd("FLUSHALL");
	if (rig_new(&a, "stall-a", NULL, 60000) < 0 || rig_new(&b, "eager-b", NULL, 200) < 0) {
		CHECK(0);
		return;
	}
	seed("dup", doms, 1, 15, 5, 3600, "running");
	a.tb->hold = 1;
	for (int i = 0; i < 20; i++)
		ctl_sched_step(a.s, 0);
	CHECK_EQ(a.tb->nopen, 1);		/* all 15 in one session */
	/* lets real time pass beyond B's 200 ms min-idle (A's refresh comes
	 * only after 20 s); longer under load changes nothing */
	sleep_ms(300);
	CHECK_EQ(run_until_done(&b, "dup", 2000, 20), 0);
	CHECK(ctl_sched_stats(b.s)->batches_claimed == 3);
	CHECK_EQ(count("dup", "delivered"), 15);
	a.tb->hold = 0;
	for (int i = 0; i < 50; i++) {
		ctl_sched_step(a.s, 0);
		fake_now += 20;
	}
	CHECK_EQ(count("dup", "dup_deliveries"), 15);
	CHECK_EQ(count("dup", "delivered"), 15);
	CHECK_EQ(count("dup", "attempts"), 15);
	CHECK_EQ(ctl_sched_stats(a.s)->dup_final, 15);
	/* the session's 15 results went to Redis in one finalise call */
	CHECK_EQ(ctl_sched_stats(a.s)->final_calls, 1);
	/* B's sessions of 5 (one per batch): at most one call each */
	CHECK(ctl_sched_stats(b.s)->final_calls <= 3);
	check_consistent("dup", 15);
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs"), 0);
	CHECK_EQ(ctl_sched_held(a.s), 0);
	rig_free(&a);
	rig_free(&b);
}

/* a consumer restarted under the same name picks up all its own pending
 * batches at once (more than one read's worth), without waiting for a claim */
static void
test_restart_same_name(void)
{
	static const char *const doms[] = { "ok.test" };
	struct rig a, a2;

	cmd("FLUSHALL");
	if (rig_new(&a, "same", NULL, 60000) < 0) {
		CHECK(0);
		return;
	}
	seed("again", doms, 1, 60, 3, 3600, "running");	/* 20 batches */
	a.tb->hold = 1;
	for (int i = 0; i < 40; i++)
		ctl_sched_step(a.s, 0);
	CHECK_EQ(ctl_sched_stats(a.s)->batches_read, 20);
	rig_free(&a);
	if (rig_new(&a2, "same", NULL, 60000) < 0) {
		CHECK(0);
		return;
	}
	CHECK_EQ(run_until_done(&a2, "again", 3000, 20), 0);
	CHECK_EQ(ctl_sched_stats(a2.s)->batches_read, 20);
	CHECK_EQ(ctl_sched_stats(a2.s)->batches_claimed, 0);
	CHECK_EQ(count("again", "delivered"), 60);
	check_consistent("again", 60);
	rig_free(&a2);
}

/* a campaign with a send window: held outside it, sent inside it */
static void
test_send_window(void)
{
	static const char *const doms[] = { "ok.test" };
	unsigned m = (unsigned)((fake_now / 60000) % 1440), from = (m + 60) % 1440,
		to = (m + 120) % 1440;
	char win[16];
	struct rig g;

	cmd("FLUSHALL");
	if (rig_new(&g, "win", NULL, 60000) < 0) {
		CHECK(0);
		return;
	}
	seed("win", doms, 1, 10, 5, 86400, "running");
	snprintf(win, sizeof(win), "%02u:%02u-%02u:%02u", from / 60, from % 60, to / 60, to % 60);
	cmd("HSET mp:campaign:win window %s", win);
	for (int i = 0; i < 200; i++) {		/* 4 s, an hour before the window */
		ctl_sched_step(g.s, 0);
		fake_now += 20;
	}
	CHECK_EQ(g.tb->submits, 0);
	CHECK_EQ(count("win", "queued"), 10);
	fake_now += 3600 * 1000;		/* into the window */
	CHECK_EQ(run_until_done(&g, "win", 3000, 20), 0);
	CHECK_EQ(count("win", "delivered"), 10);
	for (unsigned i = 0; i < g.tb->nlog; i++) {
		unsigned mm = (unsigned)((g.tb->log[i].t / 60000) % 1440);

		CHECK(from < to ? (mm >= from && mm < to) : (mm >= from || mm < to));
	}
	rig_free(&g);
}

/* A loopback port free for both UDP and TCP (dnsmasq binds both). */
static int
free_port(void)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		socklen_t len = sizeof(a);
		int u = socket(AF_INET, SOCK_DGRAM, 0), t, ok;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (u < 0 || bind(u, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    getsockname(u, (struct sockaddr *)&a, &len) < 0) {
			if (u >= 0)
				close(u);
			continue;
		}
		t = socket(AF_INET, SOCK_STREAM, 0);
		ok = t >= 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (t >= 0)
			close(t);
		close(u);
		if (ok)
			return ntohs(a.sin_port);
	}
	return -1;
}

static void
on_probe(void *user, const struct ctl_dns_result *res)
{
	*(int *)user = (int)res->status;
}

/*
 * Wait (bounded: 20 s) until the dnsmasq at @p servers answers: a lookup of
 * null.test comes back as null MX (before it binds, the query is refused
 * at once). @return 0 when it answers, -1 at the bound or if @p pid died.
 */
static int
dns_wait_ready(const char *servers, pid_t pid)
{
	uint64_t end = mono_ms() + 20000;

	while (mono_ms() < end) {
		struct ctl_dns_conf c = { .servers = servers, .timeout_ms = 200, .tries = 1,
			.no_cache = 1 };
		struct ctl_dns *probe = ctl_dns_new(&c, NULL, 0);
		int st = -1;

		if (probe == NULL)
			return -1;
		if (ctl_dns_resolve(probe, "null.test", on_probe, &st) == 0) {
			while (st < 0 && mono_ms() < end)
				ctl_dns_poll(probe, 50);
		}
		ctl_dns_free(probe);	/* a lookup still out gets its callback here */
		if (st == CTL_DNS_NULL_MX)
			return 0;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		sleep_ms(20);
	}
	return -1;
}

/*
 * Start dnsmasq on a free loopback port, authoritative for /test/ with the
 * dnsmasq options @p records (NULL-terminated) and a null MX for null.test
 * (what dns_wait_ready asks). @p servers gets "127.0.0.1:port".
 * @return its pid, or -1.
 */
static pid_t
dnsmasq_start(const char *const *records, char *servers, size_t cap)
{
	static const char *const fixed[] = { "dnsmasq", "--keep-in-foreground",
		"--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
		"--listen-address=127.0.0.1", "--bind-interfaces", "--local=/test/",
		"--mx-host=null.test,.,0" };
	const char *argv[64];
	char port[32];
	size_t n = 0;
	int p = free_port();
	pid_t pid;

	if (p < 0)
		return -1;
	snprintf(port, sizeof(port), "--port=%d", p);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		argv[n++] = fixed[i];
	argv[n++] = port;
	for (size_t i = 0; records[i] != NULL && n < 63; i++)
		argv[n++] = records[i];
	argv[n] = NULL;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		freopen("/dev/null", "w", stderr);
		execvp("dnsmasq", (char *const *)argv);
		_exit(127);
	}
	snprintf(servers, cap, "127.0.0.1:%d", p);
	return pid;
}

static void
dnsmasq_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/* MX resolution through a real DNS server (dnsmasq on loopback): a 421
 * from the preferred MX, a refused connect and a 5xx greeting all move the
 * recipients to the next MX within the same attempt, and so does a TLS
 * failure where the domain's policy is "verify"; a single MX that
 * refuses the session with 5xx (EHLO, then HELO) defers them until the
 * maximum age (failed, never bounced); null MX and NXDOMAIN bounce without
 * a session; a domain whose MX host cannot be resolved is deferred */
static void
test_mx_fallback(void)
{
	static const char *const doms[] = { "busy.test", "down.test", "null.test", "nx.test",
		"temp.test", "refuse.test", "only.test", "tlsbad.test", "v6.test" };
	static const char *const records[] = {
		"--mx-host=busy.test,mx1.busy.test,10", "--mx-host=busy.test,mx2.busy.test,20",
		"--host-record=mx1.busy.test,127.0.0.61", "--host-record=mx2.busy.test,127.0.0.62",
		"--mx-host=down.test,mx1.down.test,10", "--mx-host=down.test,mx2.down.test,20",
		"--host-record=mx1.down.test,127.0.0.71", "--host-record=mx2.down.test,127.0.0.72",
		"--mx-host=refuse.test,mx1.refuse.test,10", "--mx-host=refuse.test,mx2.refuse.test,20",
		"--host-record=mx1.refuse.test,127.0.0.81", "--host-record=mx2.refuse.test,127.0.0.82",
		"--mx-host=only.test,mx.only.test,10", "--host-record=mx.only.test,127.0.0.91",
		"--mx-host=tlsbad.test,mx1.tlsbad.test,10", "--mx-host=tlsbad.test,mx2.tlsbad.test,20",
		"--host-record=mx1.tlsbad.test,127.0.0.101", "--host-record=mx2.tlsbad.test,127.0.0.102",
		"--mx-host=temp.test,mx.other.example,10",
		"--mx-host=v6.test,mx.v6.test,10", "--host-record=mx.v6.test,::1", NULL };
	char servers[64];
	pid_t dpid;
	struct rig g;

	if (system("command -v dnsmasq >/dev/null 2>&1") != 0) {
		fprintf(stderr, "mx_fallback: dnsmasq not installed, skipped\n");
		return;
	}
	dpid = dnsmasq_start(records, servers, sizeof(servers));
	CHECK(dpid > 0);
	if (dpid <= 0)
		return;
	if (dns_wait_ready(servers, dpid) < 0) {
		fprintf(stderr, "mx_fallback: dnsmasq does not answer\n");
		CHECK(0);
		dnsmasq_stop(dpid);
		return;
	}
	cmd("FLUSHALL");
	rig_dns_servers = servers;
	if (rig_new(&g, "mx", NULL, 60000) < 0) {
		CHECK(0);
		rig_dns_servers = NULL;
		dnsmasq_stop(dpid);
		return;
	}
	rig_dns_servers = NULL;
	g.tb->sess_ms = 0;
	seed("mx", doms, 9, 6, 10, 1, "running");	/* max age 1 s: temp.test fails soon */
	/* tlsbad.test must be verified: its first MX's certificate fails */
	cmd("HSET mp:campaign:mx tls_overrides {\"tlsbad.test\":\"verify\"}");
	/* 4000 steps of test time, bounded by 60 s real */
	run_steps(&g, "mx", 4000, 50, 60000);
	{
		json_t *j = rcpt_state("mx", "u1@busy.test");

		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "delivered");
		CHECK_STREQ(json_string_value(json_object_get(j, "mx")), "mx2.busy.test");
		CHECK_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
		json_decref(j);
		j = rcpt_state("mx", "u2@down.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "delivered");
		CHECK_STREQ(json_string_value(json_object_get(j, "mx")), "mx2.down.test");
		CHECK_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
		json_decref(j);
		j = rcpt_state("mx", "u3@null.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "bounced");
		CHECK(strstr(json_string_value(json_object_get(j, "text")), "null_mx") != NULL);
		json_decref(j);
		j = rcpt_state("mx", "u0@nx.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "bounced");
		json_decref(j);
		j = rcpt_state("mx", "u0@temp.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "failed");
		CHECK(strstr(json_string_value(json_object_get(j, "text")), "tempfail") != NULL);
		json_decref(j);
	}
	{
		json_t *j = rcpt_state("mx", "u4@refuse.test");

		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "delivered");
		CHECK_STREQ(json_string_value(json_object_get(j, "mx")), "mx2.refuse.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "ip")), "127.0.0.82");
		CHECK_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
		json_decref(j);
		j = rcpt_state("mx", "u0@tlsbad.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "delivered");
		CHECK_STREQ(json_string_value(json_object_get(j, "mx")), "mx2.tlsbad.test");
		CHECK_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
		json_decref(j);
		/* an IPv6-only MX on an IPv4-only transport (the resolver
		 * not configured for IPv6, as for DPDK): deferred with its
		 * reason until the maximum age, never bounced */
		j = rcpt_state("mx", "u2@v6.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "failed");
		CHECK(strstr(json_string_value(json_object_get(j, "text")),
			"MX host has only IPv6 addresses; the transport is IPv4-only") != NULL);
		CHECK(json_integer_value(json_object_get(j, "attempts")) >= 2);
		CHECK_STREQ(json_string_value(json_object_get(j, "ip")), "");
		json_decref(j);
		j = rcpt_state("mx", "u1@only.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "failed");
		CHECK(strstr(json_string_value(json_object_get(j, "text")), "550 5.7.1 HELO refused") != NULL);
		CHECK(json_integer_value(json_object_get(j, "attempts")) >= 2);
		json_decref(j);
	}
	CHECK_EQ(ctl_sched_stats(g.s)->mx_fallbacks, 24);
	CHECK_EQ(ctl_sched_stats(g.s)->plaintext_retries, 0);
	CHECK_EQ(count("mx", "delivered"), 24);
	CHECK_EQ(count("mx", "bounced"), 12);
	CHECK_EQ(count("mx", "failed"), 18);
	check_consistent("mx", 54);
	CHECK_EQ(rint_cmd("HGET %s %s", "mp:tls:down.test", "connect_failed"), 1);
	rig_free(&g);
	dnsmasq_stop(dpid);
}

/* The resolver of an IPv6-capable transport (ksock; rig_dns_ipv6): an MX
 * whose host has only AAAA gets orders to that IPv6 address and its
 * recipients are delivered with "ip" in IPv6 text form; a dual-stack MX
 * host still gets IPv4 orders only; a host with neither still bounces. */
static void
test_mx_ipv6(void)
{
	static const char *const doms[] = { "v6.test", "dual.test", "none.test" };
	static const char *const records[] = {
		"--mx-host=v6.test,mx.v6.test,10", "--host-record=mx.v6.test,2001:db8::25",
		"--mx-host=dual.test,mx.dual.test,10",
		"--host-record=mx.dual.test,127.0.0.111,2001:db8::111",
		"--mx-host=none.test,ghost.none.test,10", NULL };
	char servers[64];
	pid_t dpid;
	struct rig g;

	if (system("command -v dnsmasq >/dev/null 2>&1") != 0) {
		fprintf(stderr, "mx_ipv6: dnsmasq not installed, skipped\n");
		return;
	}
	dpid = dnsmasq_start(records, servers, sizeof(servers));
	CHECK(dpid > 0);
	if (dpid <= 0)
		return;
	if (dns_wait_ready(servers, dpid) < 0) {
		fprintf(stderr, "mx_ipv6: dnsmasq does not answer\n");
		CHECK(0);
		dnsmasq_stop(dpid);
		return;
	}
	cmd("FLUSHALL");
	rig_dns_servers = servers;
	rig_dns_ipv6 = 1;
	if (rig_new(&g, "v6", NULL, 60000) < 0) {
		CHECK(0);
		rig_dns_servers = NULL;
		rig_dns_ipv6 = 0;
		dnsmasq_stop(dpid);
		return;
	}
	rig_dns_servers = NULL;
	rig_dns_ipv6 = 0;
	g.tb->sess_ms = 0;
	tb_orders_v4 = tb_orders_v6 = 0;
	seed("v6", doms, 3, 4, 10, 60, "running");
	run_steps(&g, "v6", 2000, 50, 30000);
	CHECK_EQ(count("v6", "delivered"), 8);
	CHECK_EQ(count("v6", "bounced"), 4);
	check_consistent("v6", 12);
	CHECK(tb_orders_v6 >= 1);
	CHECK(tb_orders_v4 >= 1);
	CHECK_STREQ(tb_last_v6, "2001:db8::25");
	for (unsigned i = 0; i < 4; i++) {
		char a[64];
		json_t *j;

		snprintf(a, sizeof(a), "u%u@v6.test", i);
		j = rcpt_state("v6", a);
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "delivered");
		CHECK_STREQ(json_string_value(json_object_get(j, "mx")), "mx.v6.test");
		CHECK_STREQ(json_string_value(json_object_get(j, "ip")), "2001:db8::25");
		CHECK_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
		json_decref(j);
		snprintf(a, sizeof(a), "u%u@dual.test", i);
		j = rcpt_state("v6", a);
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "delivered");
		CHECK_STREQ(json_string_value(json_object_get(j, "ip")), "127.0.0.111");
		json_decref(j);
		snprintf(a, sizeof(a), "u%u@none.test", i);
		j = rcpt_state("v6", a);
		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "bounced");
		CHECK(strstr(json_string_value(json_object_get(j, "text")), "no_address") != NULL);
		json_decref(j);
	}
	rig_free(&g);
	dnsmasq_stop(dpid);
}

/* the second campaign "sup2" of the same sender domain through the
 * real submit path: @return its stats (the list was written by "sup") */
static void
submit_second(struct ctl_submit_stats *st)
{
	static const char *const to[] = { "u0@bounce.test", "u0@dkim.test", "U1@Free.test" };
	struct ctl_redis_conf conf = { 0 };
	struct ctl_submit_conf sc = { 0 };
	struct ctl_input_field f = { "first", "S", 1 };
	struct msg_template *tpl = NULL;
	struct ctl_input_rec rec;
	struct ctl_campdef cd;
	struct ctl_submit *s;
	struct ctl_redis *r;
	char err[512], state[32];

	memset(st, 0, sizeof(*st));
	conf.url = url;
	r = ctl_redis_open(&conf, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL)
		return;
	ctl_campdef_init(&cd);
	CHECK_EQ(ctl_campdef_set(&cd, "id", "sup2", err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_set(&cd, "from", "other@Sender.test", err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_set(&cd, "subject", "Again {{first}}", err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_set(&cd, "text", "x\n", err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_validate(&cd, &tpl, err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_create(r, &cd, ctl_now_ms(), err, sizeof(err)), 0);
	sc.sender_domain = "sender.test";
	s = tpl != NULL ? ctl_submit_new(r, "sup2", tpl, &sc) : NULL;
	CHECK(s != NULL);
	for (unsigned i = 0; s != NULL && i < 3; i++) {
		memset(&rec, 0, sizeof(rec));
		rec.line = i + 2;
		rec.email = to[i];
		rec.email_len = strlen(to[i]);
		rec.f = &f;
		rec.nf = 1;
		CHECK_EQ(ctl_submit_add(s, &rec), 0);
	}
	if (s != NULL) {
		CHECK_EQ(ctl_submit_end(s), 0);
		ctl_submit_get_stats(s, st);
		CHECK_EQ(ctl_campdef_finish(r, "sup2", ctl_submit_take_invalid(s), state,
			sizeof(state), err, sizeof(err)), 0);
		ctl_submit_free(s);
	}
	msg_template_free(tpl);
	ctl_campdef_fini(&cd);
	ctl_redis_close(r);
}

static json_t *
suppress_entry_of(const char *addr)
{
	redisReply *r = redisCommand(rc, "HGET mp:suppress:sender.test %s", addr);
	json_t *j = NULL;

	if (r != NULL && r->type == REDIS_REPLY_STRING)
		j = json_loads(r->str, 0, NULL);
	freeReplyObject(r);
	return j;
}

/*
 * Suppression at dispatch and from bounces: an unsubscribe written into
 * the sender domain's list after submit is never dispatched and ends
 * cancelled with the entry's reason; a 550 5.1.1 (invalid_recipient)
 * adds the address to the list in the finalise call, a 550 5.7.26
 * (auth_failure, the sender's fault) does not, even when it fails the
 * recipient; a second campaign of the same sender domain then skips the
 * bounced address at submit.
 */
static void
test_suppression(void)
{
	static const char *const doms[] = { "bounce.test", "dkim.test", "free.test" };
	struct ctl_submit_stats st;
	const struct ctl_sched_stats *ss;
	struct rig g;
	json_t *j;
	int sent_u1 = 0;

	cmd("FLUSHALL");
	rig_refusal_fails = 1;
	if (rig_new(&g, "sup-a", NULL, 60000) < 0) {
		rig_refusal_fails = 0;
		CHECK(0);
		return;
	}
	rig_refusal_fails = 0;
	seed("sup", doms, 3, 4, 10, 3600, "running");
	/* submitted; now the application's RFC 8058 endpoint writes one */
	cmd("HSET mp:suppress:sender.test %s %s", "u1@free.test",
		"{\"reason\":\"unsubscribe\",\"source\":\"rfc8058\",\"ts_ms\":1}");
	CHECK_EQ(run_until_done(&g, "sup", 4000, 20), 0);
	for (unsigned i = 0; i < g.tb->nlog; i++)
		sent_u1 += strcmp(g.tb->log[i].rcpt, "u1@free.test") == 0;
	CHECK_EQ(sent_u1, 0);
	CHECK_EQ(g.tb->nlog, 11);
	j = rcpt_state("sup", "u1@free.test");
	CHECK_STREQ(json_string_value(json_object_get(j, "state")), "cancelled");
	CHECK_STREQ(json_string_value(json_object_get(j, "text")),
		"suppressed: unsubscribe (source rfc8058)");
	json_decref(j);
	CHECK_EQ(count("sup", "delivered"), 3);
	CHECK_EQ(count("sup", "bounced"), 4);
	CHECK_EQ(count("sup", "failed"), 4);
	CHECK_EQ(count("sup", "cancelled"), 1);
	check_consistent("sup", 12);
	ss = ctl_sched_stats(g.s);
	CHECK_EQ(ss->suppressed, 1);
	CHECK_EQ(ss->suppress_added, 4);
	/* the list: 4 bounces added, the unsubscribe untouched, no 5.7.26 */
	CHECK_EQ(rint_cmd("HLEN %s%s", "mp:suppress:", "sender.test"), 5);
	j = suppress_entry_of("u2@bounce.test");
	CHECK_STREQ(json_string_value(json_object_get(j, "reason")), "bounce");
	CHECK_STREQ(json_string_value(json_object_get(j, "source")), "mailpump");
	CHECK_STREQ(json_string_value(json_object_get(j, "campaign")), "sup");
	CHECK_STREQ(json_string_value(json_object_get(j, "text")), "550 5.1.1 no such user");
	CHECK(json_integer_value(json_object_get(j, "ts_ms")) >= (json_int_t)T0);
	json_decref(j);
	j = suppress_entry_of("u1@free.test");
	CHECK_STREQ(json_string_value(json_object_get(j, "reason")), "unsubscribe");
	json_decref(j);
	for (unsigned i = 0; i < 4; i++) {
		char a[64];

		snprintf(a, sizeof(a), "u%u@dkim.test", i);
		CHECK_EQ(rint_cmd("HEXISTS %s %s", "mp:suppress:sender.test", a), 0);
	}
	rig_free(&g);

	submit_second(&st);
	CHECK_EQ(st.suppressed, 2);	/* u0@bounce.test (bounced), U1@Free.test (unsubscribed) */
	CHECK_EQ(st.accepted, 1);	/* u0@dkim.test: a 5.7.26 never suppresses */
	CHECK_EQ(rint_cmd("HGET %s %s", "mp:campaign:sup2", "suppressed"), 2);
	CHECK_EQ(rint_cmd("HGET %s %s", "mp:campaign:sup2", "total"), 1);
	CHECK_EQ(rint_cmd("HEXISTS %s %s", "mp:campaign:sup2:rcpt", "u0@bounce.test"), 0);
	CHECK_EQ(rint_cmd("HEXISTS %s %s", "mp:campaign:sup2:rcpt", "u0@dkim.test"), 1);
	check_consistent("sup2", 1);
}

/* redis-cli, as a third party writes to the contract: argv as given
 * (bytes as they are, so invalid UTF-8 too), waited for at most 10 s */
static int
rcli(const char *const *args)
{
	const char *argv[32] = { "redis-cli", "-s", sock };
	int n = 3, st = -1;
	pid_t p;

	for (; *args != NULL && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	p = fork();
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		freopen("/dev/null", "w", stdout);
		execvp("redis-cli", (char *const *)argv);
		_exit(127);
	}
	for (uint64_t end = mono_ms() + 10000; p > 0;) {
		if (waitpid(p, &st, WNOHANG) == p)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (mono_ms() > end) {
			kill(p, SIGKILL);
			waitpid(p, NULL, 0);
			return -1;
		}
		sleep_ms(5);
	}
	return -1;
}

/* The dead letter whose original rcpts field is @p rcpts (byte for
 * byte): its reason and campaign. @return 1 found */
static int
dead_entry(const char *rcpts, char *reason, size_t rlen, char *camp, size_t clen)
{
	redisReply *r = redisCommand(rc, "XRANGE mp:jobs:dead - +");
	int ok = 0;

	reason[0] = camp[0] = '\0';
	for (size_t n = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && !ok && n < r->elements; n++) {
		const redisReply *f = r->element[n]->element[1];

		for (size_t k = 0; k + 1 < f->elements; k += 2) {
			if (strcmp(f->element[k]->str, "rcpts") == 0 &&
			    strcmp(f->element[k + 1]->str, rcpts) == 0)
				ok = 1;
		}
		for (size_t k = 0; ok && k + 1 < f->elements; k += 2) {
			if (strcmp(f->element[k]->str, "reason") == 0)
				snprintf(reason, rlen, "%s", f->element[k + 1]->str);
			if (strcmp(f->element[k]->str, "campaign") == 0)
				snprintf(camp, clen, "%s", f->element[k + 1]->str);
		}
	}
	freeReplyObject(r);
	return ok;
}

static const char *mailpumpctl;	/* argv[1]: the dead-letters view is checked too */

/* mailpumpctl --json dead-letters --count 10, its output parsed */
static json_t *
ctl_dead_letters(void)
{
	char line[600];
	json_t *j;
	FILE *f;

	snprintf(line, sizeof(line), "timeout 20 %s --redis %s --json dead-letters --count 10",
		mailpumpctl, sock);
	f = popen(line, "r");
	if (f == NULL)
		return NULL;
	j = json_loadf(f, 0, NULL);
	CHECK_EQ(pclose(f), 0);
	return j;
}

static void
rcpt_seed(const char *camp, const char *const *addrs, unsigned n, const char *policy)
{
	cmd("HSET mp:campaign:%s id %s from news@sender.test subject Hi text Hello "
		"tls_policy %s max_age_s 3600 state running created_ms %" PRIu64
		" submitted_ms %" PRIu64 " total %u", camp, camp, policy, fake_now, fake_now, n);
	cmd("HSET mp:campaign:%s:counts queued %u", camp, n);
	for (unsigned i = 0; i < n; i++)
		cmd("HSET mp:campaign:%s:rcpt %s %s", camp, addrs[i],
			"{\"state\":\"queued\",\"attempts\":0}");
}

/* Poison entries beside a good campaign: each is dead-lettered with its
 * reason, the recipients it names fail with that reason (none stays
 * queued), nothing is held, and the good campaign is delivered. */
static void
test_poison_entries(void)
{
	static const char *const doms[] = { "ok.test" };
	static const char *const pz[] = { "a1@ok.test", "a2@ok.test", "b1@ok.test",
		"c1@ok.test" };
	static const char *const pol[] = { "p1@ok.test", "p2@ok.test" };
	static const struct { const char *camp, *rcpts, *why; } in[] = {
		{ "pz", "[]", "no recipient" },
		{ "pz", "[{\"to\":\"a1@ok.test\"},{\"to\": \"a2@ok.test\",", "not valid JSON" },
		{ "pz", "[{\"to\":\"b1@ok.test\",\"f\":{\"n\":\"\xff\xfe\"}}]", "not valid JSON" },
		{ "pz", "[{\"to\":\"c1@ok.test\",\"f\":{\"n\":\"x\\u0000y\"}}]", "not valid JSON" },
		{ "nosuch", "[{\"to\":\"d1@ok.test\"}]", "campaign does not exist" },
		{ "pol", "[{\"to\":\"p1@ok.test\"},{\"to\":\"p2@ok.test\"}]", "tls_policy" },
	};
	char reason[512], camp[64];
	struct rig g;

	cmd("FLUSHALL");
	if (rig_new(&g, "poison", NULL, 60000) < 0) {
		CHECK(0);
		return;
	}
	rcpt_seed("pz", pz, 4, "opportunistic");
	rcpt_seed("pol", pol, 2, "stricter");
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		const char *a[] = { "XADD", "mp:jobs", "*", "campaign", in[i].camp, "domain",
			"ok.test", "attempt", "0", "rcpts", in[i].rcpts, NULL };

		CHECK_EQ(rcli(a), 0);
	}
	seed("good", doms, 1, 30, 10, 3600, "running");
	CHECK_EQ(run_until_done(&g, "good", 5000, 20), 0);
	for (int i = 0; i < 200; i++) {	/* the poison entries' writes */
		ctl_sched_step(g.s, 0);
		fake_now += 20;
	}
	CHECK_EQ(count("good", "delivered"), 30);
	check_consistent("good", 30);
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs"), 0);
	CHECK_EQ(ctl_sched_held(g.s), 0);
	CHECK_EQ(rint_cmd("XLEN %s%s", "mp:", "jobs:dead"), 6);
	CHECK_EQ(rint_cmd("GET %s%s", "mp:", "jobs:dead:count"), 6);
	CHECK_EQ(ctl_sched_stats(g.s)->dead_letters, 6);
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		CHECK(dead_entry(in[i].rcpts, reason, sizeof(reason), camp, sizeof(camp)));
		CHECK_STREQ(camp, in[i].camp);
		if (strstr(reason, in[i].why) == NULL) {
			fprintf(stderr, "dead letter %zu: reason \"%s\", want \"%s\"\n", i, reason,
				in[i].why);
			CHECK(0);
		}
	}
	/* none of the recipients the poison entries name stays queued */
	CHECK_EQ(count("pz", "queued"), 0);
	CHECK_EQ(count("pz", "failed"), 4);
	check_consistent("pz", 4);
	CHECK_EQ(count("pol", "queued"), 0);
	CHECK_EQ(count("pol", "failed"), 2);
	CHECK_EQ(count("pol", "delivered"), 0);	/* fail closed: never opportunistic */
	check_consistent("pol", 2);
	{
		json_t *j = rcpt_state("pz", "b1@ok.test");
		const char *text = json_string_value(json_object_get(j, "text"));

		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "failed");
		CHECK(text != NULL && strstr(text, "not valid JSON") != NULL);
		json_decref(j);
		j = rcpt_state("pol", "p2@ok.test");
		text = json_string_value(json_object_get(j, "text"));
		CHECK(text != NULL && strstr(text, "unknown tls_policy") != NULL);
		json_decref(j);
	}
	for (unsigned i = 0; i < g.tb->nlog; i++) {
		CHECK(strstr(g.tb->log[i].rcpt, "@ok.test") != NULL &&
			g.tb->log[i].rcpt[0] == 'u');	/* only the good campaign was sent */
	}
	if (mailpumpctl != NULL) {
		json_t *j = ctl_dead_letters(), *e;
		size_t i, utf8_shown = 0;

		CHECK(j != NULL);
		CHECK_EQ(json_integer_value(json_object_get(j, "length")), 6);
		CHECK_EQ(json_integer_value(json_object_get(j, "total")), 6);
		CHECK_EQ(json_array_size(json_object_get(j, "entries")), 6);
		json_array_foreach(json_object_get(j, "entries"), i, e) {
			json_t *f = json_object_get(e, "fields");
			const char *r = json_string_value(json_object_get(f, "rcpts"));

			CHECK(json_string_length(json_object_get(f, "reason")) > 0);
			CHECK(json_string_length(json_object_get(f, "entry_id")) > 0);
			utf8_shown += r != NULL && strstr(r, "\\xff\\xfe") != NULL;
		}
		CHECK_EQ(utf8_shown, 1);	/* the invalid UTF-8 shown as \xHH */
		json_decref(j);
	}
	rig_free(&g);
}

/* 100 merge fields per recipient, as submit accepts them: the template's
 * field 90 is rendered with its value, not its default */
static void
test_many_merge_fields(void)
{
	struct rig g;
	json_t *arr = json_array();
	char *txt;

	cmd("FLUSHALL");
	if (rig_new(&g, "fields", NULL, 60000) < 0) {
		CHECK(0);
		json_decref(arr);
		return;
	}
	cmd("HSET mp:campaign:mf id mf from news@sender.test subject Hi text %s "
		"tls_policy opportunistic max_age_s 3600 state running created_ms %" PRIu64
		" submitted_ms %" PRIu64 " total 3", "Value: {{f90|missing}}.\n", fake_now, fake_now);
	cmd("HSET mp:campaign:mf:counts queued 3");
	for (unsigned i = 0; i < 3; i++) {
		json_t *f = json_object();
		char addr[64];

		for (unsigned k = 0; k < 100; k++) {
			char name[16], val[32];

			snprintf(name, sizeof(name), "f%u", k);
			snprintf(val, sizeof(val), "field-%u-value", k);
			json_object_set_new(f, name, json_string(val));
		}
		snprintf(addr, sizeof(addr), "m%u@ok.test", i);
		cmd("HSET mp:campaign:mf:rcpt %s %s", addr, "{\"state\":\"queued\",\"attempts\":0}");
		json_array_append_new(arr, json_pack("{s:s, s:o}", "to", addr, "f", f));
	}
	txt = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	cmd("XADD mp:jobs * campaign mf domain ok.test attempt 0 rcpts %s", txt);
	free(txt);
	g.tb->want = "Value: field-90-value.";
	CHECK_EQ(run_until_done(&g, "mf", 3000, 20), 0);
	CHECK_EQ(g.tb->renders, 3);
	CHECK_EQ(g.tb->want_hits, 3);
	CHECK_EQ(count("mf", "delivered"), 3);
	rig_free(&g);
}

/* XGROUP CREATE calls so far (INFO commandstats). */
static long long
xgroup_calls(void)
{
	redisReply *r = redisCommand(rc, "INFO commandstats");
	const char *p;
	long long n = 0;

	if (r != NULL && r->type == REDIS_REPLY_STRING &&
	    (p = strstr(r->str, "cmdstat_xgroup|create:calls=")) != NULL)
		n = strtoll(p + strlen("cmdstat_xgroup|create:calls="), NULL, 10);
	freeReplyObject(r);
	return n;
}

/*
 * A campaign listed in NS active whose jobs stream is absent (expired, or
 * not written yet): XGROUP CREATE is tried again at the pace of the
 * reads (about 5 a second here), not at every pass of the scheduler, and
 * when the stream appears its entries are read.
 */
static void
test_absent_stream(void)
{
	struct rig g;
	long long before, calls;

	cmd("FLUSHALL");
	if (rig_new(&g, "absent", NULL, 60000) < 0) {
		CHECK(0);
		return;
	}
	cmd("HSET mp:campaign:ghost id ghost from news@sender.test subject Hi text Hello "
		"tls_policy opportunistic max_age_s 3600 state running created_ms %" PRIu64
		" submitted_ms %" PRIu64 " total 1", fake_now, fake_now);
	cmd("HSET mp:campaign:ghost:counts queued 1");
	cmd("HSET mp:campaign:ghost:rcpt g1@ok.test {\"state\":\"queued\",\"attempts\":0}");
	cmd("SADD mp:active ghost");
	cmd("CONFIG RESETSTAT");
	before = xgroup_calls();
	/* 400 passes over 4 s of the scheduler's clock */
	CHECK_EQ(run_steps(&g, "ghost", 400, 10, 0), -1);
	calls = xgroup_calls() - before;
	printf("absent stream: %lld XGROUP CREATE in 400 passes over 4 s\n", calls);
	CHECK(calls >= 4 && calls <= 40);
	cmd("XADD mp:campaign:ghost:jobs * campaign ghost domain ok.test attempt 0 "
		"rcpts [{\"to\":\"g1@ok.test\"}]");
	CHECK_EQ(run_until_done(&g, "ghost", 3000, 20), 0);
	CHECK_EQ(count("ghost", "delivered"), 1);
	rig_free(&g);
}

/* IDN: bücher.test is xn--bcher-kva.test (IDNA2008); ☃ is not allowed */
static void
test_idn_domain(void)
{
	static const char *const records[] = {
		"--mx-host=xn--bcher-kva.test,mx.xn--bcher-kva.test,10",
		"--host-record=mx.xn--bcher-kva.test,127.0.0.111", NULL };
	char servers[64], dir[96], csv[128], txt[128], line[1024], err[4096];
	pid_t dpid;
	struct rig g;
	int found = 0;
	size_t n = 0;
	FILE *f;

	if (mailpumpctl == NULL || system("command -v dnsmasq >/dev/null 2>&1") != 0) {
		fprintf(stderr, "idn: needs mailpumpctl and dnsmasq, skipped\n");
		return;
	}
	dpid = dnsmasq_start(records, servers, sizeof(servers));
	CHECK(dpid > 0);
	if (dpid <= 0)
		return;
	cmd("FLUSHALL");
	snprintf(dir, sizeof(dir), "%s/idn", tmpdir);
	mkdir(dir, 0700);
	snprintf(csv, sizeof(csv), "%s/rcpts.csv", dir);
	snprintf(txt, sizeof(txt), "%s/body.txt", dir);
	f = fopen(csv, "w");
	if (f != NULL) {
		fputs("email\nu0@b\xc3\xbc" "cher.test\nu1@B\xc3\x9c" "CHER.test\nbad@\xe2\x98\x83.test\n", f);
		fclose(f);
	}
	f = fopen(txt, "w");
	if (f != NULL) {
		fputs("Hello {{email}}\n", f);
		fclose(f);
	}
	snprintf(line, sizeof(line), "timeout 30 %s --redis %s submit --id idn --from news@sender.test "
		"--subject Hi --text %s %s 2>&1", mailpumpctl, sock, txt, csv);
	f = popen(line, "r");
	if (f != NULL) {
		n = fread(err, 1, sizeof(err) - 1, f);
		pclose(f);
	}
	err[n] = '\0';
	/* the invalid one named with its line, the other two queued */
	CHECK(strstr(err, "line 4") != NULL && strstr(err, "internationalised") != NULL);
	CHECK_EQ(count("idn", "queued"), 2);
	if (dns_wait_ready(servers, dpid) < 0) {
		fprintf(stderr, "idn: dnsmasq does not answer\n%s", err);
		CHECK(0);
		dnsmasq_stop(dpid);
		return;
	}
	rig_dns_servers = servers;
	if (rig_new(&g, "idn", NULL, 60000) < 0) {
		CHECK(0);
		rig_dns_servers = NULL;
		dnsmasq_stop(dpid);
		return;
	}
	rig_dns_servers = NULL;
	g.tb->sess_ms = 0;
	for (uint64_t i = 0, end = mono_ms() + 30000; i < 2000 && mono_ms() < end; i++) {
		ctl_sched_step(g.s, 0);
		if (ctl_dns_pending(g.dns) > 0) {
			sleep_ms(1);
			continue;
		}
		fake_now += 50;
		if (count("idn", "delivered") == 2 && ctl_sched_held(g.s) == 0)
			break;
	}
	CHECK_EQ(count("idn", "delivered"), 2);
	{
		/* the rcpt hash keeps the address as submitted */
		json_t *j = rcpt_state("idn", "u0@b\xc3\xbc" "cher.test");

		CHECK_STREQ(json_string_value(json_object_get(j, "state")), "delivered");
		CHECK_STREQ(json_string_value(json_object_get(j, "mx")), "mx.xn--bcher-kva.test");
		json_decref(j);
	}
	/* RCPT TO (what the receiver got) under the A-label */
	for (unsigned i = 0; i < g.tb->nlog; i++)
		found += strcmp(g.tb->log[i].rcpt, "u0@xn--bcher-kva.test") == 0 ||
			strcmp(g.tb->log[i].rcpt, "u1@xn--bcher-kva.test") == 0;
	CHECK_EQ(found, 2);
	CHECK_EQ(g.tb->nlog, 2);
	rig_free(&g);
	dnsmasq_stop(dpid);
	unlink(csv);
	unlink(txt);
	rmdir(dir);
}

int
main(int argc, char **argv)
{
	if (system("command -v redis-server >/dev/null 2>&1") != 0) {
		fprintf(stderr, "SKIP: redis-server not installed\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);	/* as mp-deliver: hiredis writes with write(2) */
	mailpumpctl = argc > 1 ? argv[1] : NULL;
	if (redis_start() < 0) {
		fprintf(stderr, "cannot start redis-server\n");
		redis_stop();
		return 1;
	}
	test_shaping();
	test_retry_timing();
	test_pause_cancel_skip();
	test_claim_after_death();
	test_refresh_keeps_batches();
	test_redis_connection_loss();
	test_dup_deliveries_counted();
	test_restart_same_name();
	test_mx_fallback();
	test_mx_ipv6();
	test_send_window();
	test_suppression();
	test_poison_entries();
	test_many_merge_fields();
	test_absent_stream();
	test_idn_domain();
	redis_stop();
	return mp_test_result("ctl_sched_clock");
}
