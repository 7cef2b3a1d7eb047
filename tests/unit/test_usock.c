/*
 * The userspace-TCP session engine (usock_) and through it the session
 * core (mps_), without DPDK: the engine's utcp stack talks over the
 * simulated link of utcp_sim.h to a second stack running a small scripted
 * SMTP server (plaintext: TLS over this path is covered against Postfix
 * by tests/integration/dpsend_postfix.sh). Proves: many messages over
 * several sessions with loss and reordering, every recipient exactly one
 * result and done last; a send buffer so small that the core's tail and
 * the WRITABLE path carry a 256 KiB body, byte count checked by the
 * server; refused, connect timeout, reset in the DATA phase, SMTP
 * timeout, abort; the pool (-EMFILE when full, every slot back at the
 * end) and the stack's pools restored.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_test.h"
#include "usock.h"
#include "utcp_sim.h"

#define CLI_IP 0x0a000001u	/* 10.0.0.1 */
#define SRV_IP 0x0a000002u	/* 10.0.0.2 */
#define MAX_ITEMS 512
#define SRV_CONNS 64

enum srv_mode { SRV_OK = 0, SRV_RESET_AT_DATA, SRV_STALL };

struct srv_conn {
	struct utcp_conn *c;
	int in_use, data, rcpts;
	size_t inlen;
	uint64_t body;
	char in[4096];
};

struct srv {
	enum srv_mode mode;
	struct srv_conn conns[SRV_CONNS];
	unsigned msgs;
	uint64_t body_total;
};

/* The engine's owner: hands out items, checks results. */
struct drv {
	unsigned total, next, per_conn;
	unsigned seen[MAX_ITEMS];
	unsigned results, out[SMTP_OUT_LAST], done, opened;
	int bad_order;			/* a result after done */
	char rc[MAX_ITEMS][32];
	const char *rp[MAX_ITEMS];
	const char *body;
	size_t body_len;
	char last_text[SMTP_REPLY_TEXT_MAX];
	int last_stage;
};

struct dsess {
	struct drv *d;
	unsigned msgs, done;
	size_t off;
};

static struct sim S;
static struct srv SV;
static struct usock_engine *E;
static struct drv *D;
static unsigned want_done;

/* ---------------------------------------------------------------- */
/* server on side 1                                                   */
/* ---------------------------------------------------------------- */

static void
srv_say(struct srv_conn *k, const char *s)
{
	CHECK_EQ(utcp_send(k->c, s, strlen(s)), (long long)strlen(s));
}

static void
srv_free(struct srv_conn *k, int reset)
{
	if (reset)
		utcp_abort(k->c);
	else
		utcp_close(k->c);
	k->in_use = 0;
	k->c = NULL;
}

/* @return 0, or 1 when the connection went away. */
static int
srv_line(struct srv_conn *k, const char *l, size_t n)
{
	if (k->data) {
		if (n == 1 && l[0] == '.') {
			k->data = 0;
			SV.msgs++;
			SV.body_total += k->body;
			srv_say(k, "250 2.0.0 queued\r\n");
		} else {
			k->body += n + 2;
		}
		return 0;
	}
	if (SV.mode == SRV_STALL)
		return 0;
	if (strncasecmp(l, "EHLO", 4) == 0) {
		srv_say(k, "250-sim.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
	} else if (strncasecmp(l, "MAIL", 4) == 0 || strncasecmp(l, "RSET", 4) == 0) {
		k->rcpts = 0;
		srv_say(k, "250 2.1.0 ok\r\n");
	} else if (strncasecmp(l, "RCPT", 4) == 0) {
		if (memmem(l, n, "bad", 3) != NULL) {
			srv_say(k, "550 5.1.1 no such user\r\n");
		} else {
			k->rcpts++;
			srv_say(k, "250 2.1.5 ok\r\n");
		}
	} else if (strncasecmp(l, "DATA", 4) == 0) {
		if (k->rcpts == 0) {
			srv_say(k, "554 5.5.1 no valid recipients\r\n");
		} else if (SV.mode == SRV_RESET_AT_DATA) {
			srv_free(k, 1);
			return 1;
		} else {
			k->data = 1;
			k->body = 0;
			srv_say(k, "354 go ahead\r\n");
		}
	} else if (strncasecmp(l, "QUIT", 4) == 0) {
		srv_say(k, "221 2.0.0 bye\r\n");
		srv_free(k, 0);
		return 1;
	} else {
		srv_say(k, "500 5.5.1 what\r\n");
	}
	return 0;
}

static void
srv_read(struct srv_conn *k)
{
	for (;;) {
		ssize_t n = utcp_recv(k->c, k->in + k->inlen, sizeof(k->in) - k->inlen);
		size_t start = 0;

		if (n == 0) {
			srv_free(k, 0);
			return;
		}
		if (n < 0)
			return;
		k->inlen += (size_t)n;
		for (size_t i = 0; i + 1 < k->inlen; i++) {
			if (k->in[i] != '\r' || k->in[i + 1] != '\n')
				continue;
			if (srv_line(k, k->in + start, i - start))
				return;
			start = i + 2;
			i++;
		}
		memmove(k->in, k->in + start, k->inlen - start);
		k->inlen -= start;
		CHECK(k->inlen < sizeof(k->in));
	}
}

static void
srv_event(const struct utcp_event *ev)
{
	struct srv_conn *k = ev->user;

	switch (ev->type) {
	case UTCP_EV_ACCEPTED:
		for (unsigned i = 0; i < SRV_CONNS; i++)
			if (!SV.conns[i].in_use) {
				k = &SV.conns[i];
				memset(k, 0, sizeof(*k));
				k->in_use = 1;
				k->c = ev->conn;
				utcp_conn_set_user(ev->conn, k);
				srv_say(k, "220 sim.test ESMTP\r\n");
				return;
			}
		utcp_abort(ev->conn);
		return;
	case UTCP_EV_READABLE:
	case UTCP_EV_PEER_CLOSED:
		if (k != NULL && k->in_use && k->c == ev->conn)
			srv_read(k);
		return;
	case UTCP_EV_ERROR:
	case UTCP_EV_CLOSED:
		if (k != NULL && k->in_use && k->c == ev->conn)
			srv_free(k, 0);
		return;
	default:
		return;
	}
}

static void
app(struct sim *s, int side, const struct utcp_event *ev)
{
	if (side == 0) {
		if (E != NULL)
			usock_on_event(E, ev, s->now);
	} else {
		srv_event(ev);
	}
}

/* ---------------------------------------------------------------- */
/* the engine's owner                                                 */
/* ---------------------------------------------------------------- */

static int
body_open(void *src, unsigned flags)
{
	(void)flags;
	((struct dsess *)src)->off = 0;
	return 0;
}

static ssize_t
body_read(void *src, void *buf, size_t cap)
{
	struct dsess *x = src;
	size_t n = x->d->body_len - x->off;

	if (n > cap)
		n = cap;
	memcpy(buf, x->d->body + x->off, n);
	x->off += n;
	return (ssize_t)n;
}

static int
cb_next(void *user, struct smtp_txn *txn)
{
	struct dsess *x = user;
	struct drv *d = x->d;

	if (x->msgs >= d->per_conn || d->next >= d->total)
		return -ENOENT;
	x->msgs++;
	memset(txn, 0, sizeof(*txn));
	txn->mail_from = "sender@sim.test";
	txn->rcpt = &d->rp[d->next++];
	txn->n_rcpt = 1;
	txn->body.open = body_open;
	txn->body.read = body_read;
	txn->body.src = x;
	txn->body.size = (int64_t)d->body_len;
	return 0;
}

static void
cb_result(void *user, const struct smtp_rcpt_result *r, const struct tls_record *tls)
{
	struct dsess *x = user;
	struct drv *d = x->d;
	unsigned i;

	CHECK(tls == NULL);
	if (x->done)
		d->bad_order++;
	if (sscanf(r->rcpt, "u%u@", &i) == 1 && i < MAX_ITEMS)
		d->seen[i]++;
	d->results++;
	d->out[r->outcome]++;
	snprintf(d->last_text, sizeof(d->last_text), "%s", r->text);
	d->last_stage = r->stage;
}

static void
cb_done(void *user, const struct smtp_sess_info *info, const struct tls_record *tls)
{
	struct dsess *x = user;

	(void)info;
	(void)tls;
	x->done = 1;
	x->d->done++;
}

static struct dsess SESS[64];
/* open_one() asks for this IPv6 server instead of SRV_IP (utcp is IPv4 only) */
static const char *open_v6;

static int
open_one(struct drv *d, uint16_t port, enum smtp_tls_policy policy)
{
	struct mps_req req = { 0 };
	struct dsess *x = &SESS[d->opened];

	memset(x, 0, sizeof(*x));
	x->d = d;
	req.host = "sim.test";
	req.addr.sin.sin_family = AF_INET;
	req.addr.sin.sin_addr.s_addr = htonl(SRV_IP);
	req.addr.sin.sin_port = htons(port);
	if (open_v6 != NULL) {
		struct in6_addr a6;

		if (inet_pton(AF_INET6, open_v6, &a6) != 1)
			return -1;
		req.addr = mp_sockaddr_v6(&a6, port);
	}
	req.policy = policy;
	req.next_txn = cb_next;
	req.result = cb_result;
	req.done = cb_done;
	req.user = x;
	if (usock_sess_open(E, &req) != 0)
		return -1;
	d->opened++;
	return 0;
}

static void
drv_init(struct drv *d, unsigned total, unsigned per_conn, const char *body, size_t len)
{
	memset(d, 0, sizeof(*d));
	d->total = total;
	d->per_conn = per_conn;
	d->body = body;
	d->body_len = len;
	for (unsigned i = 0; i < total; i++) {
		snprintf(d->rc[i], sizeof(d->rc[i]), "u%u@%s.test", i, i % 17 == 5 ? "bad" : "ok");
		d->rp[i] = d->rc[i];
	}
	D = d;
}

/* sim_run's per-step hook: the worker's session work, then "finished?". */
static int
step(struct sim *s)
{
	usock_poll(E, s->now);
	return D->done >= want_done;
}

static void
setup(uint64_t seed, uint32_t loss_ppm, uint32_t sndbuf, uint32_t connect_ms,
	const struct smtp_config *smtp)
{
	struct utcp_conf cc = { 0 }, sc = { 0 };
	struct usock_conf uc = { 0 };
	char err[256];

	sim_init(&S, seed);
	S.loss_ppm = loss_ppm;
	S.jitter_us = 300;
	S.app = app;
	cc.laddr[0] = CLI_IP;
	cc.nladdr = 1;
	cc.max_conns = 64;
	cc.sndbuf = sndbuf;
	cc.rto_min_us = 200000;
	cc.rto_init_us = 200000;
	sc.laddr[0] = SRV_IP;
	sc.nladdr = 1;
	sc.max_conns = 64;
	sim_conf(&S, 0, &cc);
	sim_conf(&S, 1, &sc);
	S.st[0] = utcp_stack_new(&cc);
	S.st[1] = utcp_stack_new(&sc);
	CHECK(S.st[0] != NULL && S.st[1] != NULL);
	utcp_clock(S.st[0], S.now);
	utcp_clock(S.st[1], S.now);
	CHECK_EQ(utcp_listen(S.st[1], SRV_IP, 25, NULL), 0);
	uc.stack = S.st[0];
	uc.smtp = smtp;
	uc.max_sessions = 8;
	uc.connect_timeout_ms = connect_ms;
	E = usock_engine_new(&uc, err, sizeof(err));
	CHECK(E != NULL);
	usock_poll(E, S.now);	/* the engine's clock */
	memset(&SV, 0, sizeof(SV));
}

static void
teardown(void)
{
	struct usock_stats st;
	struct utcp_counters c;

	usock_poll(E, S.now);	/* slots of the last sessions come back */
	usock_engine_stats(E, &st);
	CHECK_EQ(usock_engine_active(E), 0);
	CHECK_EQ(st.pool_free, 8);
	CHECK_EQ(D->bad_order, 0);
	usock_engine_free(E);
	E = NULL;
	/* closes finish in the stack after the handles are gone */
	sim_run(&S, NULL, S.now + 120000000ull, 100000);
	utcp_stack_counters(S.st[0], &c);
	CHECK_EQ(c.conn_free, 64);
	utcp_stack_free(S.st[0]);
	utcp_stack_free(S.st[1]);
	sim_fini(&S);
}

static char *
make_body(size_t lines, size_t *len)
{
	char *b = malloc(lines * 72 + 1);
	size_t o = 0;

	for (size_t i = 0; i < lines; i++)
		o += (size_t)sprintf(b + o, "%-68zu x\r\n", i);
	*len = o;
	return b;
}

/* ---------------------------------------------------------------- */
/* tests                                                              */
/* ---------------------------------------------------------------- */

static void
test_many_with_loss(void)
{
	static struct drv d;
	struct usock_stats st;
	size_t len;
	char *body = make_body(40, &len);

	setup(1, 20000, 0, 0, NULL);	/* 2% loss, reordering */
	drv_init(&d, 200, 40, body, len);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(open_one(&d, 25, SMTP_TLS_OPPORTUNISTIC), 0);
	want_done = 5;
	CHECK(sim_run(&S, step, S.now + 600000000ull, 5000000));
	CHECK_EQ(d.done, 5);
	CHECK_EQ(d.results, 200);
	for (unsigned i = 0; i < 200; i++)
		CHECK_EQ(d.seen[i], 1);
	CHECK_EQ(d.out[SMTP_OUT_DELIVERED] + d.out[SMTP_OUT_BOUNCED], 200);
	CHECK_EQ(d.out[SMTP_OUT_BOUNCED], 12);	/* u5, u22, ... at "bad" */
	CHECK_EQ(SV.msgs, 188);
	CHECK_EQ(SV.body_total, 188 * (uint64_t)len);
	usock_engine_stats(E, &st);
	CHECK_EQ(st.connected, 5);
	CHECK(S.dropped[0] + S.dropped[1] > 0);
	printf("many with loss: %u delivered, %u bounced, dropped %llu/%llu segments\n",
		d.out[SMTP_OUT_DELIVERED], d.out[SMTP_OUT_BOUNCED],
		(unsigned long long)S.dropped[0], (unsigned long long)S.dropped[1]);
	teardown();
	free(body);
}

static void
test_tiny_sndbuf(void)
{
	static struct drv d;
	struct usock_stats st;
	size_t len;
	char *body = make_body(3641, &len);	/* 256 KiB */

	setup(2, 0, 2048, 0, NULL);
	drv_init(&d, 3, 3, body, len);
	CHECK_EQ(open_one(&d, 25, SMTP_TLS_NONE), 0);
	want_done = 1;
	CHECK(sim_run(&S, step, S.now + 600000000ull, 5000000));
	CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 3);
	CHECK_EQ(SV.body_total, 3 * (uint64_t)len);
	usock_engine_stats(E, &st);
	CHECK(st.core.tails > 0);
	CHECK(st.core.write_blocked > 0);
	printf("tiny sndbuf: 3 x %zu bytes, tails %llu, blocked %llu\n", len,
		(unsigned long long)st.core.tails, (unsigned long long)st.core.write_blocked);
	teardown();
	free(body);
}

static void
test_refused_and_timeout(void)
{
	static struct drv d;
	struct usock_stats st;

	setup(3, 0, 0, 0, NULL);
	drv_init(&d, 4, 2, "x\r\n", 3);
	CHECK_EQ(open_one(&d, 26, SMTP_TLS_OPPORTUNISTIC), 0);	/* nobody listens */
	want_done = 1;
	CHECK(sim_run(&S, step, S.now + 10000000ull, 100000));
	CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 2);
	CHECK_EQ(d.last_stage, SMTP_STAGE_CONNECT);
	CHECK(strstr(d.last_text, "refused") != NULL);
	CHECK(strstr(d.last_text, "10.0.0.2]:26") != NULL);
	teardown();

	setup(4, 0, 0, 1500, NULL);
	drv_init(&d, 4, 4, "x\r\n", 3);
	S.blackhole[1] = 1;		/* the server never answers */
	CHECK_EQ(open_one(&d, 25, SMTP_TLS_OPPORTUNISTIC), 0);
	want_done = 1;
	CHECK(sim_run(&S, step, S.now + 10000000ull, 100000));
	CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 4);
	CHECK_EQ(d.last_stage, SMTP_STAGE_CONNECT);
	CHECK(strstr(d.last_text, "timed out after 1500 ms") != NULL);
	usock_engine_stats(E, &st);
	CHECK_EQ(st.connect_timeouts, 1);
	S.blackhole[1] = 0;
	teardown();

	/* an IPv6 server on the IPv4-only stack: a connect failure, every
	 * recipient deferred (never bounced) with a reason naming it */
	setup(3, 0, 0, 0, NULL);
	drv_init(&d, 4, 2, "x\r\n", 3);
	open_v6 = "2001:db8::25";
	CHECK_EQ(open_one(&d, 25, SMTP_TLS_OPPORTUNISTIC), 0);
	open_v6 = NULL;
	want_done = 1;
	CHECK(sim_run(&S, step, S.now + 10000000ull, 100000));
	CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 2);
	CHECK_EQ(d.out[SMTP_OUT_BOUNCED], 0);
	CHECK_EQ(d.last_stage, SMTP_STAGE_CONNECT);
	CHECK(strstr(d.last_text, "[2001:db8::25]:25 failed: Address family not supported") != NULL);
	teardown();
}

static void
test_reset_stall_abort(void)
{
	static struct drv d;
	struct smtp_config cfg;
	struct usock_stats st;

	setup(5, 0, 0, 0, NULL);
	SV.mode = SRV_RESET_AT_DATA;
	drv_init(&d, 6, 3, "x\r\n", 3);
	CHECK_EQ(open_one(&d, 25, SMTP_TLS_NONE), 0);
	want_done = 1;
	CHECK(sim_run(&S, step, S.now + 10000000ull, 100000));
	CHECK_EQ(d.results, 3);		/* its quota: one in flight, two drained */
	CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 3);
	CHECK(strstr(d.last_text, "reset") != NULL);
	usock_engine_stats(E, &st);
	CHECK_EQ(st.resets, 1);
	teardown();

	/* the server stops answering after the greeting: the SMTP timeout */
	smtp_config_defaults(&cfg);
	cfg.t_cmd = 2000;
	setup(6, 0, 0, 0, &cfg);
	SV.mode = SRV_STALL;
	drv_init(&d, 2, 2, "x\r\n", 3);
	CHECK_EQ(open_one(&d, 25, SMTP_TLS_NONE), 0);
	want_done = 1;
	CHECK(sim_run(&S, step, S.now + 20000000ull, 100000));
	CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 2);
	CHECK(d.last_stage == SMTP_STAGE_HELO);
	teardown();

	/* abort while stalled: deferred "Operation canceled", at once */
	setup(7, 0, 0, 0, NULL);
	SV.mode = SRV_STALL;
	drv_init(&d, 2, 2, "x\r\n", 3);
	CHECK_EQ(open_one(&d, 25, SMTP_TLS_NONE), 0);
	want_done = 1;
	CHECK(!sim_run(&S, step, S.now + 1000000ull, 100000));	/* stalled, not done */
	usock_engine_abort(E);
	CHECK(sim_run(&S, step, S.now + 1000000ull, 1000));
	CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 2);
	CHECK(strstr(d.last_text, "canceled") != NULL);
	teardown();
}

static void
test_pool_full(void)
{
	static struct drv d;

	setup(8, 0, 0, 0, NULL);
	drv_init(&d, 16, 2, "x\r\n", 3);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(open_one(&d, 25, SMTP_TLS_NONE), 0);
	CHECK_EQ(open_one(&d, 25, SMTP_TLS_NONE), -1);	/* -EMFILE */
	want_done = 8;
	CHECK(sim_run(&S, step, S.now + 60000000ull, 1000000));
	CHECK_EQ(d.results, 16);
	teardown();
}

int
main(void)
{
	tls_alloc_init();
	test_many_with_loss();
	test_tiny_sndbuf();
	test_refused_and_timeout();
	test_reset_stall_abort();
	test_pool_full();
	return mp_test_result("usock");
}
