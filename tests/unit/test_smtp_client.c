/*
 * SMTP client session against a scripted in-process server: each test
 * feeds canned server replies through smtp_sess_input() and asserts the
 * exact bytes the session wrote through ops->write, the results it
 * reported (exactly one per recipient) and when it closed. Time is a
 * virtual clock passed to every call.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mp_test.h"
#include "smtp.h"

#define MAXRES 64

struct rec {
	char rcpt[64];
	unsigned idx;
	int outcome, stage, code;
	char esc[SMTP_ESC_MAX];
	char text[SMTP_REPLY_TEXT_MAX];
	void *user;
};

struct membody {
	const char *data;
	size_t len, off;
	size_t maxread;		/* per read call; 0 = cap */
	int open_rc;		/* what open returns: 1 stuffed by source, 0 raw */
	unsigned flags;		/* flags of the last open */
	int opens;
	int fail_read;
};

struct h {
	struct smtp_sess s;
	struct smtp_config cfg;
	char w[1 << 16];
	size_t wlen;
	char all[1 << 17];
	size_t alllen;
	int block;		/* write says -EAGAIN */
	int block_after;	/* >0: start blocking after this many writes */
	int writes;
	int write_err;
	int starttls_calls;
	int starttls_rc;
	int closed;
	int calls_after_close;
	struct rec res[MAXRES];
	int nres;
	struct smtp_txn txns[8];
	int ntxn, next;
	uint64_t now;
};

static struct h H;
static char took[1 << 16];

static int
op_write(void *ctx, const void *buf, size_t len)
{
	struct h *h = ctx;

	if (h->closed)
		h->calls_after_close++;
	if (h->write_err)
		return h->write_err;
	if (h->block_after > 0 && h->writes >= h->block_after)
		h->block = 1;
	if (h->block)
		return -EAGAIN;
	h->writes++;
	if (h->wlen + len >= sizeof(h->w) || h->alllen + len >= sizeof(h->all))
		abort();
	memcpy(h->w + h->wlen, buf, len);
	h->wlen += len;
	memcpy(h->all + h->alllen, buf, len);
	h->alllen += len;
	h->all[h->alllen] = '\0';
	return 0;
}

static int
op_starttls(void *ctx)
{
	struct h *h = ctx;

	h->starttls_calls++;
	return h->starttls_rc;
}

static void
op_close(void *ctx)
{
	struct h *h = ctx;

	h->closed++;
}

static void
op_result(void *ctx, const struct smtp_rcpt_result *r)
{
	struct h *h = ctx;
	struct rec *x;

	if (h->closed)
		h->calls_after_close++;
	if (h->nres >= MAXRES)
		abort();
	x = &h->res[h->nres++];
	snprintf(x->rcpt, sizeof(x->rcpt), "%s", r->rcpt ? r->rcpt : "");
	x->idx = r->rcpt_index;
	x->outcome = r->outcome;
	x->stage = r->stage;
	x->code = r->code;
	memcpy(x->esc, r->esc, sizeof(x->esc));
	memcpy(x->text, r->text, sizeof(x->text));
	x->user = r->txn->user;
}

static int
op_next_txn(void *ctx, struct smtp_txn *txn)
{
	struct h *h = ctx;

	if (h->next >= h->ntxn)
		return -ENOENT;
	*txn = h->txns[h->next++];
	return 0;
}

static const struct smtp_io_ops ops = {
	.write = op_write,
	.starttls = op_starttls,
	.close = op_close,
	.result = op_result,
	.next_txn = op_next_txn,
};

static int
mb_open(void *src, unsigned flags)
{
	struct membody *b = src;

	b->off = 0;
	b->flags = flags;
	b->opens++;
	return b->open_rc;
}

static ssize_t
mb_read(void *src, void *buf, size_t cap)
{
	struct membody *b = src;
	size_t n = b->len - b->off;

	if (b->fail_read)
		return -EIO;
	if (n > cap)
		n = cap;
	if (b->maxread && n > b->maxread)
		n = b->maxread;
	memcpy(buf, b->data + b->off, n);
	b->off += n;
	return (ssize_t)n;
}

static void
h_init(enum smtp_tls_policy pol)
{
	memset(&H, 0, sizeof(H));
	smtp_config_defaults(&H.cfg);
	H.cfg.helo_name = "client.example";
	H.cfg.tls_policy = pol;
	H.now = 1000;
}

static void
h_start(void)
{
	CHECK_EQ(smtp_sess_init(&H.s, &H.cfg, &ops, &H, 7), 0);
	smtp_sess_start(&H.s, H.now);
}

static void
add_txn(const char *from, const char *const *rcpt, unsigned n, struct membody *b,
	int64_t size, void *user)
{
	struct smtp_txn *t = &H.txns[H.ntxn++];

	memset(t, 0, sizeof(*t));
	t->mail_from = from;
	t->rcpt = rcpt;
	t->n_rcpt = n;
	t->body.open = mb_open;
	t->body.read = mb_read;
	t->body.src = b;
	t->body.size = size;
	t->user = user;
}

static void
srv(const char *s)
{
	smtp_sess_input(&H.s, s, strlen(s), H.now);
}

/* Feed a server script one byte per call. */
static void
srv_bytewise(const char *s)
{
	for (size_t i = 0; s[i]; i++)
		smtp_sess_input(&H.s, s + i, 1, H.now);
}

static const char *
take(void)
{
	memcpy(took, H.w, H.wlen);
	took[H.wlen] = '\0';
	H.wlen = 0;
	return took;
}

#define EXPECT_W(str) CHECK_STREQ(take(), (str))

static const struct rec *
res_for(const char *rcpt)
{
	for (int i = 0; i < H.nres; i++)
		if (strcmp(H.res[i].rcpt, rcpt) == 0)
			return &H.res[i];
	return NULL;
}

/* Exactly one result per recipient name in @p names. */
static void
check_once(const char *const *names, unsigned n)
{
	CHECK_EQ(H.nres, n);
	for (unsigned i = 0; i < n; i++) {
		int c = 0;

		for (int j = 0; j < H.nres; j++)
			c += strcmp(H.res[j].rcpt, names[i]) == 0;
		CHECK_EQ(c, 1);
	}
}

static const char body_raw[] = "Subject: hi\r\n\r\n.dot line\r\nend\r\n";
static const char body_stuffed[] = "Subject: hi\r\n\r\n..dot line\r\nend\r\n";

#define GREET "220 mx.example.org ESMTP ready\r\n"
#define EHLO_C "EHLO client.example\r\n"

/* ---------------------------------------------------------------- */

static void
test_greeting_421_defers_all(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	static const char *const r2[] = { "c@z.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_OPPORTUNISTIC);
	add_txn("s@x.org", r1, 2, &b, -1, NULL);
	add_txn("s@x.org", r2, 1, &b, -1, NULL);
	h_start();
	EXPECT_W("");
	srv("421 4.3.2 mx.example.org shutting down\r\n");
	EXPECT_W("");
	CHECK_EQ(H.closed, 1);
	static const char *const all[] = { "a@y.org", "b@y.org", "c@z.org" };
	check_once(all, 3);
	for (int i = 0; i < H.nres; i++) {
		CHECK_EQ(H.res[i].outcome, SMTP_OUT_DEFERRED);
		CHECK_EQ(H.res[i].stage, SMTP_STAGE_GREETING);
		CHECK_EQ(H.res[i].code, 421);
		CHECK_STREQ(H.res[i].esc, "4.3.2");
	}
	CHECK_EQ(H.calls_after_close, 0);
	CHECK(smtp_sess_done(&H.s));
	CHECK_EQ(smtp_sess_deadline(&H.s), UINT64_MAX);
}

/*
 * A 5xx greeting refuses the session, not the recipients: they are
 * deferred at stage greeting with the reply, so the scheduler tries the
 * next MX (smtp_skip_5xx_greeting in Postfix) and never bounces them.
 */
static void
test_greeting_554_defers_and_quits(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_OPPORTUNISTIC);
	add_txn("s@x.org", r1, 2, &b, -1, NULL);
	h_start();
	srv("554 5.7.1 no service for you\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.nres, 2);
	for (int i = 0; i < H.nres; i++) {
		CHECK_EQ(H.res[i].outcome, SMTP_OUT_DEFERRED);
		CHECK_EQ(H.res[i].stage, SMTP_STAGE_GREETING);
		CHECK_EQ(H.res[i].code, 554);
		CHECK_STREQ(H.res[i].text, "554 5.7.1 no service for you");
	}
	CHECK_EQ(H.closed, 0);
	srv("221 bye\r\n");
	CHECK_EQ(H.closed, 1);
}

/* Only a fully qualified host name goes out as the EHLO name. */
static void
test_helo_name_check(void)
{
	static const char *const good[] = { "mta1.example.com", "client.pf.test", "a.b",
		"x-1.example.org", "MAIL.Example.COM", "1mail.example.com" };
	static const char *const bad[] = { "", "localhost", "vm", "mail.localhost",
		"localhost.localdomain", "[192.0.2.1]", "192.0.2.1", "-mx.example.com",
		"mx-.example.com", "mx..example.com", "mx.example.com.", ".example.com",
		"mx_1.example.com", "mx.example.com\r\nRSET", "m\xc3\xa4il.example.com" };
	char why[256], big[300];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_EQ(smtp_helo_name_check(good[i], why, sizeof(why)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		CHECK_EQ(smtp_helo_name_check(bad[i], why, sizeof(why)), -EINVAL);
		CHECK(why[0] != '\0');
	}
	CHECK_EQ(smtp_helo_name_check(NULL, NULL, 0), -EINVAL);
	CHECK(smtp_helo_name_check("vm", why, sizeof(why)) < 0 && strstr(why, "not fully qualified"));
	memset(big, 'a', sizeof(big));
	for (size_t i = 60; i < sizeof(big) - 1; i += 61)
		big[i] = '.';
	big[sizeof(big) - 1] = '\0';
	CHECK_EQ(smtp_helo_name_check(big, why, sizeof(why)), -EINVAL);	/* > 253 */
	CHECK(strstr(why, "253") != NULL);
	/* the host's own name: whatever it is, it comes back NUL-terminated */
	if (smtp_helo_name_default(big, sizeof(big)) == 0)
		CHECK(strlen(big) > 0 && strlen(big) < sizeof(big));
	CHECK_EQ(smtp_helo_name_default(big, 1), -ENAMETOOLONG);
}

/* EHLO refused with any 5xx -> HELO; HELO refused too -> deferred, not bounced. */
static void
test_ehlo_and_helo_refused_defer(void)
{
	static const char *const r1[] = { "a@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_OPPORTUNISTIC);
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("554 5.7.1 not you\r\n");
	EXPECT_W("HELO client.example\r\n");
	CHECK(smtp_sess_info(&H.s)->helo_fallback);
	srv("550 5.7.1 still not you\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(H.res[0].stage, SMTP_STAGE_HELO);
	CHECK_EQ(H.res[0].code, 550);
	srv("221 bye\r\n");
	CHECK_EQ(H.closed, 1);

	/* a 4xx to EHLO: deferred at once, no HELO */
	h_init(SMTP_TLS_OPPORTUNISTIC);
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("451 4.3.0 try later\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(H.res[0].stage, SMTP_STAGE_HELO);
}

/* EHLO refused -> HELO, then a whole non-pipelined transaction. */
static void
test_ehlo_refused_helo_full_flow(void)
{
	static const char *const r1[] = { "b@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_OPPORTUNISTIC);
	add_txn("a@x.org", r1, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("502 5.5.2 command not recognized\r\n");
	EXPECT_W("HELO client.example\r\n");
	srv("250 mx.example.org\r\n");
	EXPECT_W("MAIL FROM:<a@x.org>\r\n");
	srv("250 ok\r\n");
	EXPECT_W("RCPT TO:<b@y.org>\r\n");
	srv("250 ok\r\n");
	EXPECT_W("DATA\r\n");
	srv("354 go ahead\r\n");
	/* the source delivered raw text: the session dot-stuffed it */
	CHECK_STREQ(take(), "Subject: hi\r\n\r\n..dot line\r\nend\r\n.\r\n");
	CHECK_EQ(b.flags & SMTP_BODY_DOTSTUFF, SMTP_BODY_DOTSTUFF);
	CHECK_EQ(H.nres, 0);
	srv("250 2.0.0 Ok: queued as 1234\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DELIVERED);
	CHECK_EQ(H.res[0].stage, SMTP_STAGE_BODY);
	CHECK_STREQ(H.res[0].esc, "2.0.0");
	CHECK(smtp_sess_info(&H.s)->helo_fallback);
	CHECK(smtp_sess_info(&H.s)->plaintext_fallback);
	CHECK_STREQ(smtp_sess_info(&H.s)->greeting_host, "mx.example.org");
	srv("221 bye\r\n");
	CHECK_EQ(H.closed, 1);
}

static void
test_required_no_starttls_never_mails(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_REQUIRED);
	add_txn("s@x.org", r1, 2, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.nres, 2);
	for (int i = 0; i < H.nres; i++) {
		CHECK_EQ(H.res[i].outcome, SMTP_OUT_DEFERRED);
		CHECK_EQ(H.res[i].stage, SMTP_STAGE_TLS);
		CHECK_STREQ(H.res[i].text,
			"TLS required but STARTTLS not offered by mx.example.org");
	}
	srv("221 bye\r\n");
	CHECK_EQ(H.closed, 1);
	CHECK(strstr(H.all, "MAIL FROM") == NULL);
	CHECK_EQ(b.opens, 0);
}

static void
test_starttls_454(enum smtp_tls_policy pol)
{
	static const char *const r1[] = { "a@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(pol);
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250 STARTTLS\r\n");
	EXPECT_W("STARTTLS\r\n");
	srv("454 4.7.0 TLS not available due to temporary reason\r\n");
	CHECK_EQ(H.starttls_calls, 0);
	if (pol == SMTP_TLS_REQUIRED) {
		EXPECT_W("QUIT\r\n");
		CHECK_EQ(H.nres, 1);
		CHECK_EQ(H.res[0].outcome, SMTP_OUT_DEFERRED);
		CHECK_EQ(H.res[0].stage, SMTP_STAGE_TLS);
		CHECK_EQ(H.res[0].code, 454);
		CHECK(strstr(H.res[0].text, "TLS required but STARTTLS refused by mx.example.org") != NULL);
		CHECK(strstr(H.all, "MAIL FROM") == NULL);
	} else {
		/* plaintext on the same connection */
		EXPECT_W("MAIL FROM:<s@x.org>\r\n");
		CHECK(smtp_sess_info(&H.s)->plaintext_fallback);
		CHECK_EQ(H.nres, 0);
	}
}

/*
 * Bytes right after "220 ready to start TLS" in the same chunk, and bytes
 * arriving before the handshake ends, are dropped, never interpreted; the
 * second EHLO replaces the extension list.
 */
static void
test_starttls_injection_discarded_and_reehlo(void)
{
	static const char *const r1[] = { "a@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };
	const char *inj = "220 2.0.0 ready to start TLS\r\n250-PIPELINING\r\n250 ok\r\n";
	const struct smtp_sess_info *inf;

	h_init(SMTP_TLS_VERIFY);
	add_txn("s@x.org", r1, 1, &b, 5000, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250-SIZE 1000\r\n250 STARTTLS\r\n");
	EXPECT_W("STARTTLS\r\n");
	inf = smtp_sess_info(&H.s);
	CHECK_EQ(inf->ext.size_max, 1000);
	srv(inj);
	CHECK_EQ(H.starttls_calls, 1);
	EXPECT_W("");
	CHECK_EQ(inf->discarded, strlen(inj) - strlen("220 2.0.0 ready to start TLS\r\n"));
	srv("250 more injected\r\n");
	EXPECT_W("");
	CHECK_EQ(H.nres, 0);
	CHECK_EQ(smtp_sess_deadline(&H.s), H.now + H.cfg.t_tls);
	smtp_sess_on_tls(&H.s, 1, NULL, H.now);
	EXPECT_W(EHLO_C);
	CHECK(inf->tls_active);
	srv("250-mx.example.org\r\n250 PIPELINING\r\n");
	CHECK_EQ(inf->ext.bits, SMTP_EXT_PIPELINING);
	/* SIZE 1000 vanished with the new list: 5000 bytes go, no SIZE=;
	 * PIPELINING (only after TLS) puts MAIL, RCPT and DATA in one go */
	EXPECT_W("MAIL FROM:<s@x.org>\r\nRCPT TO:<a@y.org>\r\nDATA\r\n");
	srv("250 ok\r\n250 ok\r\n354 go\r\n");
	CHECK_STREQ(take(), "Subject: hi\r\n\r\n..dot line\r\nend\r\n.\r\n");
	srv("250 ok\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DELIVERED);
}

static void
test_tls_handshake_failure(enum smtp_tls_policy pol)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(pol);
	add_txn("s@x.org", r1, 2, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250 STARTTLS\r\n");
	srv("220 go\r\n");
	take();
	smtp_sess_on_tls(&H.s, 0, "certificate has expired", H.now);
	EXPECT_W("");
	CHECK_EQ(H.closed, 1);
	CHECK_EQ(H.nres, 2);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(H.res[0].stage, SMTP_STAGE_TLS);
	CHECK_STREQ(H.res[0].text,
		"TLS handshake with mx.example.org failed: certificate has expired");
	CHECK(smtp_sess_info(&H.s)->tls_failed);
	CHECK(strstr(H.all, "MAIL FROM") == NULL);
}

static void
partial_rcpt(int bytewise)
{
	static const char *const r1[] = { "r0@y.org", "r1@y.org", "r2@y.org", "r3@y.org" };
	struct membody b = { body_stuffed, sizeof(body_stuffed) - 1, 0, 0, 1 };
	const char *script = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n"
		"450 4.2.0 greylisted\r\n250 2.1.5 ok\r\n354 go\r\n";

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 4, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n");
	EXPECT_W("MAIL FROM:<s@x.org>\r\nRCPT TO:<r0@y.org>\r\nRCPT TO:<r1@y.org>\r\n"
		"RCPT TO:<r2@y.org>\r\nRCPT TO:<r3@y.org>\r\nDATA\r\n");
	if (bytewise)
		srv_bytewise(script);
	else
		srv(script);
	/* the source stuffed (open returned 1): passed through unchanged */
	CHECK_STREQ(take(), "Subject: hi\r\n\r\n..dot line\r\nend\r\n.\r\n");
	CHECK_EQ(H.nres, 2);
	srv("250 2.0.0 queued\r\n");
	static const char *const all[] = { "r0@y.org", "r1@y.org", "r2@y.org", "r3@y.org" };
	check_once(all, 4);
	CHECK_EQ(res_for("r0@y.org")->outcome, SMTP_OUT_DELIVERED);
	CHECK_EQ(res_for("r1@y.org")->outcome, SMTP_OUT_BOUNCED);
	CHECK_EQ(res_for("r1@y.org")->stage, SMTP_STAGE_RCPT);
	CHECK_STREQ(res_for("r1@y.org")->esc, "5.1.1");
	CHECK_EQ(res_for("r2@y.org")->outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(res_for("r2@y.org")->code, 450);
	CHECK_EQ(res_for("r3@y.org")->outcome, SMTP_OUT_DELIVERED);
	CHECK_EQ(res_for("r3@y.org")->idx, 3);
	EXPECT_W("QUIT\r\n");
}

static void
test_partial_rcpt_failures(void)
{
	partial_rcpt(0);
	partial_rcpt(1);
}

static void
test_data_552_after_end_of_data(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 2, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250 PIPELINING\r\n");
	take();
	srv("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	take();
	srv("552 5.3.4 message too big\r\n");
	CHECK_EQ(H.nres, 2);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(H.res[i].outcome, SMTP_OUT_BOUNCED);
		CHECK_EQ(H.res[i].stage, SMTP_STAGE_BODY);
		CHECK_EQ(H.res[i].code, 552);
	}
	EXPECT_W("QUIT\r\n");
}

static void
test_bdat_chunks(void)
{
	static const char *const r1[] = { "a@y.org" };
	static const char data[] = "0123456789abcdefghij.KLMN";	/* 25 bytes */
	struct membody b = { data, 25, 0, 7, 0 };

	h_init(SMTP_TLS_NONE);
	H.cfg.use_chunking = 1;
	H.cfg.bdat_chunk = 10;
	add_txn("s@x.org", r1, 1, &b, 25, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250-CHUNKING\r\n250 SIZE 100\r\n");
	EXPECT_W("MAIL FROM:<s@x.org> SIZE=25\r\n");
	srv("250 ok\r\n");
	EXPECT_W("RCPT TO:<a@y.org>\r\n");
	srv("250 ok\r\n");
	CHECK_EQ(b.flags & SMTP_BODY_DOTSTUFF, 0);
	EXPECT_W("BDAT 10\r\n0123456789");
	srv("250 2.0.0 10 octets\r\n");
	EXPECT_W("BDAT 10\r\nabcdefghij");
	CHECK_EQ(smtp_sess_deadline(&H.s), H.now + H.cfg.t_data_block);
	srv("250 2.0.0 10 octets\r\n");
	EXPECT_W("BDAT 5 LAST\r\n.KLMN");
	CHECK_EQ(smtp_sess_deadline(&H.s), H.now + H.cfg.t_data_term);
	CHECK_EQ(H.nres, 0);
	srv("250 2.0.0 message accepted\r\n");
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DELIVERED);
	EXPECT_W("QUIT\r\n");
}

/* MAIL rejected inside a pipeline: recipients carry MAIL's reply, the
 * 503s that follow are swallowed, RSET precedes the next transaction. */
static void
test_pipelined_mail_rejected(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	static const char *const r2[] = { "c@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	add_txn("bad@x.org", r1, 2, &b, -1, (void *)1);
	add_txn("good@x.org", r2, 1, &b, -1, (void *)2);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250 PIPELINING\r\n");
	EXPECT_W("MAIL FROM:<bad@x.org>\r\nRCPT TO:<a@y.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
	srv("553 5.7.1 sender rejected\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
		"503 5.5.1 need MAIL\r\n");
	CHECK_EQ(H.nres, 2);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(H.res[i].outcome, SMTP_OUT_BOUNCED);
		CHECK_EQ(H.res[i].stage, SMTP_STAGE_MAIL);
		CHECK_EQ(H.res[i].code, 553);
		CHECK(H.res[i].user == (void *)1);
	}
	EXPECT_W("RSET\r\n");
	srv("250 ok\r\n");
	EXPECT_W("MAIL FROM:<good@x.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n");
	srv("250 ok\r\n250 ok\r\n354 go\r\n");
	take();
	srv("250 ok\r\n");
	CHECK_EQ(H.nres, 3);
	CHECK_EQ(H.res[2].outcome, SMTP_OUT_DELIVERED);
	CHECK(H.res[2].user == (void *)2);
}

/* All RCPT refused with pipelined DATA: no body is sent, RSET follows. */
static void
test_all_rcpt_refused_then_next_txn(void)
{
	static const char *const r1[] = { "a@y.org" };
	static const char *const r2[] = { "c@y.org" };
	static const char *const r3[] = { "d@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	H.cfg.max_msgs_per_conn = 2;
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	add_txn("s@x.org", r2, 1, &b, -1, NULL);
	add_txn("s@x.org", r3, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250 mx.example.org\r\n");
	EXPECT_W("MAIL FROM:<s@x.org>\r\n");
	srv("250 ok\r\n");
	EXPECT_W("RCPT TO:<a@y.org>\r\n");
	srv("550 5.1.1 unknown\r\n");
	/* without pipelining DATA is never sent when nobody was accepted */
	EXPECT_W("RSET\r\n");
	srv("250 ok\r\n");
	EXPECT_W("MAIL FROM:<s@x.org>\r\n");
	srv("250 ok\r\n");
	EXPECT_W("RCPT TO:<c@y.org>\r\n");
	srv("250 ok\r\n");
	EXPECT_W("DATA\r\n");
	srv("354 go\r\n");
	take();
	srv("250 ok\r\n");
	/* max_msgs_per_conn = 2: the third transaction stays with the owner */
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.next, 2);
	CHECK_EQ(H.nres, 2);
	CHECK_EQ(smtp_sess_info(&H.s)->msgs_ok, 1);
	srv("221 bye\r\n");
	CHECK_EQ(H.closed, 1);
	CHECK_EQ(b.opens, 2);	/* once per transaction, before MAIL */
}

static void
test_close_mid_data(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org", "c@y.org" };
	static const char *const r2[] = { "d@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1, 0, 4 };

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 3, &b, -1, NULL);
	add_txn("s@x.org", r2, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250 PIPELINING\r\n");
	take();
	H.block_after = H.writes + 2;	/* the transport fills up mid-body */
	srv("250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n");
	CHECK_STREQ(take(), "Subject:");
	CHECK_EQ(H.nres, 1);
	smtp_sess_on_closed(&H.s, -ECONNRESET, H.now);
	static const char *const all[] = { "a@y.org", "b@y.org", "c@y.org", "d@y.org" };
	check_once(all, 4);
	CHECK_EQ(res_for("a@y.org")->outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(res_for("a@y.org")->stage, SMTP_STAGE_BODY);
	CHECK_EQ(res_for("b@y.org")->outcome, SMTP_OUT_BOUNCED);
	CHECK_EQ(res_for("c@y.org")->outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(res_for("d@y.org")->outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(H.closed, 1);
	/* later events are ignored: no second result, no second close */
	smtp_sess_on_closed(&H.s, 0, H.now);
	smtp_sess_tick(&H.s, H.now + 100000000);
	srv("250 ok\r\n");
	CHECK_EQ(H.nres, 4);
	CHECK_EQ(H.closed, 1);
}

/* Drive a session to state @p stage and check its timeout fires exactly
 * at the configured deadline. */
enum tstage { T_GREET, T_EHLO, T_MAIL, T_RCPT, T_DATA, T_BLOCK, T_TERM, T_LAST };

static void
timeout_case(enum tstage t)
{
	static const char *const r1[] = { "a@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };
	uint32_t want = 0;
	int stage = 0;

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	h_start();
	switch (t) {
	case T_GREET:
		want = 5 * 60000, stage = SMTP_STAGE_GREETING;
		break;
	case T_EHLO:
		srv(GREET);
		want = 5 * 60000, stage = SMTP_STAGE_HELO;
		break;
	case T_MAIL:
		srv(GREET), srv("250 mx\r\n");
		want = 5 * 60000, stage = SMTP_STAGE_MAIL;
		break;
	case T_RCPT:
		srv(GREET), srv("250 mx\r\n"), srv("250 ok\r\n");
		want = 5 * 60000, stage = SMTP_STAGE_RCPT;
		break;
	case T_DATA:
		srv(GREET), srv("250 mx\r\n"), srv("250 ok\r\n"), srv("250 ok\r\n");
		want = 2 * 60000, stage = SMTP_STAGE_DATA;
		break;
	case T_BLOCK:
		srv(GREET), srv("250 mx\r\n"), srv("250 ok\r\n"), srv("250 ok\r\n");
		H.block = 1;
		srv("354 go\r\n");
		want = 3 * 60000, stage = SMTP_STAGE_BODY;
		break;
	case T_TERM:
		srv(GREET), srv("250 mx\r\n"), srv("250 ok\r\n"), srv("250 ok\r\n");
		srv("354 go\r\n");
		want = 10 * 60000, stage = SMTP_STAGE_BODY;
		break;
	default:
		abort();
	}
	CHECK_EQ(smtp_sess_deadline(&H.s), H.now + want);
	smtp_sess_tick(&H.s, H.now + want - 1);
	CHECK_EQ(H.nres, 0);
	CHECK_EQ(H.closed, 0);
	smtp_sess_tick(&H.s, H.now + want);
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(H.res[0].stage, stage);
	CHECK(strstr(H.res[0].text, "timeout") != NULL);
	CHECK_EQ(H.closed, 1);
	CHECK(smtp_sess_info(&H.s)->timed_out);
}

static void
test_timeouts(void)
{
	for (int t = 0; t < T_LAST; t++)
		timeout_case((enum tstage)t);
}

static void
test_size_limit_local_failure(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 2, &b, 200, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250 SIZE 100\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.nres, 2);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(H.res[i].outcome, SMTP_OUT_FAILED);
		CHECK_EQ(H.res[i].stage, SMTP_STAGE_LOCAL);
		CHECK_STREQ(H.res[i].text,
			"message size 200 exceeds the limit 100 of mx.example.org");
	}
	CHECK(strstr(H.all, "MAIL FROM") == NULL);
}

static void
test_implicit_tls_order(void)
{
	static const char *const r1[] = { "a@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_REQUIRED);
	H.cfg.implicit_tls = 1;
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	h_start();
	CHECK_EQ(H.starttls_calls, 1);
	EXPECT_W("");
	srv(GREET);	/* before the handshake: not trusted */
	EXPECT_W("");
	CHECK_EQ(smtp_sess_info(&H.s)->discarded, strlen(GREET));
	smtp_sess_on_tls(&H.s, 1, NULL, H.now);
	EXPECT_W("");
	CHECK_EQ(smtp_sess_deadline(&H.s), H.now + H.cfg.t_greeting);
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx.example.org\r\n250 STARTTLS\r\n");
	/* already under TLS: no STARTTLS, straight to MAIL */
	EXPECT_W("MAIL FROM:<s@x.org>\r\n");
	CHECK_EQ(H.starttls_calls, 1);
}

/* -EAGAIN during body streaming: on_writable resumes where it stopped
 * and the server sees exactly the stuffed body once. */
static void
test_backpressure_body(void)
{
	static const char *const r1[] = { "a@y.org" };
	static char big[20000], want[40000];
	struct membody b = { big, 0, 0, 777, 0 };
	size_t n = 0, w = 0;
	int rounds = 0;

	for (int i = 0; n + 40 < sizeof(big); i++) {
		int k = snprintf(big + n, sizeof(big) - n, i % 3 == 0 ? ".line %d\r\n" : "line %d\r\n", i);
		n += (size_t)k;
	}
	b.len = n;
	for (size_t i = 0; i < n; i++) {
		if (big[i] == '.' && (i == 0 || big[i - 1] == '\n'))
			want[w++] = '.';
		want[w++] = big[i];
	}
	memcpy(want + w, ".\r\n", 4);

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 1, &b, (int64_t)n, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250 mx\r\n");
	srv("250 ok\r\n");
	srv("250 ok\r\n");
	take();
	H.block_after = H.writes + 3;
	srv("354 go\r\n");
	CHECK(H.block);
	while (H.block && rounds < 1000) {
		uint64_t dl = smtp_sess_deadline(&H.s);

		CHECK_EQ(dl, H.now + H.cfg.t_data_block);
		H.now += 1000;
		H.block = 0;
		H.block_after = H.writes + 3;
		smtp_sess_on_writable(&H.s, H.now);
		rounds++;
	}
	CHECK(rounds > 3);
	CHECK_EQ(H.wlen, w + 3);
	CHECK_STREQ(take(), want);
	srv("250 ok\r\n");
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DELIVERED);
}

/* More recipients than max_rcpt_per_txn: several transactions of the
 * same message, body reopened for each. */
static void
test_rcpt_cap_splits(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org", "c@y.org", "d@y.org", "e@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	H.cfg.max_rcpt_per_txn = 2;
	add_txn("s@x.org", r1, 5, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx\r\n250 PIPELINING\r\n");
	EXPECT_W("MAIL FROM:<s@x.org>\r\nRCPT TO:<a@y.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
	srv("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	take();
	srv("250 ok\r\n");
	EXPECT_W("MAIL FROM:<s@x.org>\r\nRCPT TO:<c@y.org>\r\nRCPT TO:<d@y.org>\r\nDATA\r\n");
	srv("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	take();
	srv("451 4.3.0 try again\r\n");
	EXPECT_W("MAIL FROM:<s@x.org>\r\nRCPT TO:<e@y.org>\r\nDATA\r\n");
	srv("250 ok\r\n250 ok\r\n354 go\r\n");
	take();
	srv("250 ok\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(b.opens, 3);
	static const char *const all[] = { "a@y.org", "b@y.org", "c@y.org", "d@y.org", "e@y.org" };
	check_once(all, 5);
	CHECK_EQ(res_for("c@y.org")->outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(res_for("e@y.org")->outcome, SMTP_OUT_DELIVERED);
	CHECK_EQ(H.next, 1);
}

static void
test_421_mid_rcpt_and_unexpected_reply(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 2, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx\r\n250 PIPELINING\r\n");
	take();
	srv("250 ok\r\n250 ok\r\n421 4.4.2 closing\r\n");
	CHECK_EQ(H.closed, 1);
	CHECK_EQ(H.nres, 2);
	CHECK_EQ(res_for("a@y.org")->outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(res_for("b@y.org")->code, 421);

	/* a reply nobody asked for is a protocol error, not a crash */
	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 2, &b, -1, NULL);
	h_start();
	srv(GREET "250 surprise\r\n");
	CHECK_EQ(H.closed, 1);
	CHECK_EQ(H.nres, 2);
	CHECK(smtp_sess_info(&H.s)->protocol_error);

	/* garbage from the server */
	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 2, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("25O mx\r\n");
	CHECK_EQ(H.closed, 1);
	CHECK_EQ(H.nres, 2);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(H.res[0].stage, SMTP_STAGE_HELO);
}

static void
test_bad_addresses_and_utf8(void)
{
	static const char *const r1[] = { "ok@y.org", "bad\r\nRSET@y.org", "j\xc3\xb6rg@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 3, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	/* non-ASCII address, server without SMTPUTF8: whole message fails */
	srv("250-mx\r\n250 8BITMIME\r\n");
	EXPECT_W("QUIT\r\n");
	CHECK_EQ(H.nres, 3);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_FAILED);
	CHECK(strstr(H.res[0].text, "SMTPUTF8") != NULL);

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 3, &b, -1, NULL);
	H.txns[0].flags = SMTP_TXN_8BIT;
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n");
	/* the CRLF-injecting address never reaches the wire */
	EXPECT_W("MAIL FROM:<s@x.org> BODY=8BITMIME SMTPUTF8\r\n");
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_FAILED);
	CHECK_EQ(H.res[0].idx, 1);
	srv("250 ok\r\n");
	EXPECT_W("RCPT TO:<ok@y.org>\r\n");
	srv("250 ok\r\n");
	EXPECT_W("RCPT TO:<j\xc3\xb6rg@y.org>\r\n");
	srv("250 ok\r\n");
	EXPECT_W("DATA\r\n");
	srv("354 go\r\n");
	CHECK_EQ(b.flags, SMTP_BODY_DOTSTUFF | SMTP_BODY_8BITMIME | SMTP_BODY_SMTPUTF8);
	CHECK(strstr(H.all, "RSET@") == NULL);
}

static void
test_body_source_error(void)
{
	static const char *const r1[] = { "a@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	b.fail_read = 1;
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250 mx\r\n");
	srv("250 ok\r\n");
	srv("250 ok\r\n");
	take();
	srv("354 go\r\n");
	/* no terminating dot: a truncated message must not be delivered */
	EXPECT_W("");
	CHECK_EQ(H.closed, 1);
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_FAILED);
	CHECK_EQ(H.res[0].stage, SMTP_STAGE_BODY);
}

/* A BDAT chunk refused: accepted recipients get that reply, no further
 * chunk is sent, RSET before the next transaction. */
static void
test_bdat_chunk_refused(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org" };
	static const char data[] = "0123456789abcdefghij";
	struct membody b = { data, 20 };

	h_init(SMTP_TLS_NONE);
	H.cfg.use_chunking = 1;
	H.cfg.bdat_chunk = 10;
	add_txn("s@x.org", r1, 2, &b, 20, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
	/* BDAT is not pipelined behind the RCPTs */
	EXPECT_W("MAIL FROM:<s@x.org>\r\nRCPT TO:<a@y.org>\r\nRCPT TO:<b@y.org>\r\n");
	srv("250 ok\r\n250 ok\r\n250 ok\r\n");
	EXPECT_W("BDAT 10\r\n0123456789");
	srv("554 5.6.0 content rejected\r\n");
	EXPECT_W("RSET\r\n");
	CHECK_EQ(H.nres, 2);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(H.res[i].outcome, SMTP_OUT_BOUNCED);
		CHECK_EQ(H.res[i].stage, SMTP_STAGE_BODY);
	}
	srv("250 ok\r\n");
	EXPECT_W("QUIT\r\n");
}

static void
test_tls_handshake_timeout(void)
{
	static const char *const r1[] = { "a@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_OPPORTUNISTIC);
	H.cfg.t_tls = 30000;
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	srv("250-mx.example.org\r\n250 STARTTLS\r\n");
	srv("220 go\r\n");
	take();
	CHECK_EQ(smtp_sess_deadline(&H.s), H.now + 30000);
	smtp_sess_tick(&H.s, H.now + 30000);
	CHECK_EQ(H.closed, 1);
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].stage, SMTP_STAGE_TLS);
	CHECK(smtp_sess_info(&H.s)->tls_failed);
	EXPECT_W("");
}

/* Body without a final CRLF: the terminator supplies it. */
static void
test_body_without_final_crlf(void)
{
	static const char *const r1[] = { "a@y.org" };
	static const char data[] = "line\r\nno end";
	struct membody b = { data, sizeof(data) - 1 };

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 1, &b, -1, NULL);
	h_start();
	srv(GREET);
	srv("250-mx\r\n250 PIPELINING\r\n");
	take();
	srv("250 ok\r\n250 ok\r\n354 go\r\n");
	EXPECT_W("line\r\nno end\r\n.\r\n");
}

/* With PIPELINING, MAIL, every RCPT and DATA leave in one write (one TLS
 * record, one segment); a write refused with -EAGAIN is produced again,
 * whole, when the transport has room. */
static void
test_pipeline_one_write(void)
{
	static const char *const r1[] = { "a@y.org", "b@y.org", "c@y.org" };
	struct membody b = { body_raw, sizeof(body_raw) - 1 };
	int w;

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 3, &b, -1, NULL);
	h_start();
	srv(GREET);
	take();
	H.block = 1;
	srv("250-mx\r\n250 PIPELINING\r\n");
	EXPECT_W("");
	w = H.writes;
	H.block = 0;
	smtp_sess_on_writable(&H.s, H.now);
	CHECK_EQ(H.writes, w + 1);
	EXPECT_W("MAIL FROM:<s@x.org>\r\nRCPT TO:<a@y.org>\r\nRCPT TO:<b@y.org>\r\n"
		"RCPT TO:<c@y.org>\r\nDATA\r\n");
	srv("250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n");
	srv("250 queued\r\n");
	CHECK_EQ(H.nres, 3);
	CHECK_EQ(res_for("b@y.org")->code, 550);
	CHECK_EQ(res_for("a@y.org")->outcome, SMTP_OUT_DELIVERED);
	CHECK_EQ(res_for("c@y.org")->outcome, SMTP_OUT_DELIVERED);
}

/* A pipeline longer than one write: the transport refuses the second
 * write (-EAGAIN) and MAIL's 5xx comes back meanwhile: the unsent RCPTs
 * are dropped, never written later, and only the replies of what was
 * written are drained. */
static void
test_eagain_mid_pipeline_mail_rejected(void)
{
	enum { N = 12 };
	static char addr[N][256];
	static const char *rc[N];
	struct membody b = { body_raw, sizeof(body_raw) - 1 };
	char replies[4096] = "550 5.7.1 go away\r\n";
	const char *first;
	int sent = 0;

	for (int i = 0; i < N; i++) {
		/* 64-octet local part, long domain: about 210 bytes a RCPT */
		snprintf(addr[i], sizeof(addr[i]), "%02d%s@%s.example", i,
			"llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll",
			"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd."
			"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
		rc[i] = addr[i];
	}
	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", rc, N, &b, -1, NULL);
	h_start();
	srv(GREET);
	take();
	H.block_after = H.writes + 1;
	srv("250-mx\r\n250 PIPELINING\r\n");
	first = take();
	CHECK(strncmp(first, "MAIL FROM:<s@x.org>\r\n", 21) == 0);
	for (const char *p = first; (p = strstr(p, "RCPT TO:")) != NULL; p++)
		sent++;
	CHECK(sent > 0 && sent < N);	/* out[] holds only part of the pipeline */
	CHECK(strstr(first, "DATA") == NULL);
	for (int i = 0; i < sent; i++)
		strcat(replies, "503 5.5.1 no\r\n");
	srv(replies);
	H.block = 0;
	H.block_after = 0;
	smtp_sess_on_writable(&H.s, H.now);
	EXPECT_W("RSET\r\n");
	CHECK_EQ(H.nres, N);
	CHECK_EQ(H.res[N - 1].code, 550);
	CHECK_EQ(H.res[N - 1].stage, SMTP_STAGE_MAIL);
	CHECK(strstr(H.all, addr[N - 1]) == NULL);
	CHECK(strstr(H.all, "DATA") == NULL);
}

/* A body that cannot be opened fails its own message before MAIL; the
 * next message goes on the same connection. */
static void
test_body_open_failure_is_local(void)
{
	static const char *const r1[] = { "a@y.org" };
	static const char *const r2[] = { "b@y.org" };
	struct membody bad = { body_raw, sizeof(body_raw) - 1, 0, 0, -EINVAL };
	struct membody good = { body_raw, sizeof(body_raw) - 1 };

	h_init(SMTP_TLS_NONE);
	add_txn("s@x.org", r1, 1, &bad, -1, NULL);
	add_txn("t@x.org", r2, 1, &good, -1, NULL);
	h_start();
	srv(GREET);
	EXPECT_W(EHLO_C);
	srv("250 mx\r\n");
	EXPECT_W("MAIL FROM:<t@x.org>\r\n");
	CHECK_EQ(H.nres, 1);
	CHECK_EQ(H.res[0].outcome, SMTP_OUT_FAILED);
	CHECK_EQ(H.res[0].stage, SMTP_STAGE_LOCAL);
	CHECK_STREQ(H.res[0].rcpt, "a@y.org");
}

static void
test_init_rejects_bad_config(void)
{
	struct smtp_io_ops bad = ops;

	h_init(SMTP_TLS_NONE);
	H.cfg.max_rcpt_per_txn = SMTP_RCPT_MAX + 1;
	CHECK_EQ(smtp_sess_init(&H.s, &H.cfg, &ops, &H, 1), -EINVAL);
	h_init(SMTP_TLS_NONE);
	H.cfg.helo_name = "a\r\nb";
	CHECK_EQ(smtp_sess_init(&H.s, &H.cfg, &ops, &H, 1), -EINVAL);
	h_init(SMTP_TLS_NONE);
	bad.result = NULL;
	CHECK_EQ(smtp_sess_init(&H.s, &H.cfg, &bad, &H, 1), -EINVAL);
}

int
main(void)
{
	test_greeting_421_defers_all();
	test_greeting_554_defers_and_quits();
	test_ehlo_and_helo_refused_defer();
	test_helo_name_check();
	test_ehlo_refused_helo_full_flow();
	test_required_no_starttls_never_mails();
	test_starttls_454(SMTP_TLS_REQUIRED);
	test_starttls_454(SMTP_TLS_OPPORTUNISTIC);
	test_starttls_injection_discarded_and_reehlo();
	test_tls_handshake_failure(SMTP_TLS_OPPORTUNISTIC);
	test_tls_handshake_failure(SMTP_TLS_VERIFY);
	test_partial_rcpt_failures();
	test_data_552_after_end_of_data();
	test_bdat_chunks();
	test_pipelined_mail_rejected();
	test_all_rcpt_refused_then_next_txn();
	test_close_mid_data();
	test_timeouts();
	test_size_limit_local_failure();
	test_implicit_tls_order();
	test_backpressure_body();
	test_rcpt_cap_splits();
	test_421_mid_rcpt_and_unexpected_reply();
	test_bad_addresses_and_utf8();
	test_body_source_error();
	test_bdat_chunk_refused();
	test_tls_handshake_timeout();
	test_body_without_final_crlf();
	test_pipeline_one_write();
	test_eagain_mid_pipeline_mail_rejected();
	test_body_open_failure_is_local();
	test_init_rejects_bad_config();
	printf("sizeof(struct smtp_sess) = %zu\n", sizeof(struct smtp_sess));
	return mp_test_result("smtp_client");
}
