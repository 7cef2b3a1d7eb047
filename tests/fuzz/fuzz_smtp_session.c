/*
 * libFuzzer target driving a whole SMTP client session with fuzzed server
 * input and transport events. Input: the first byte picks the config;
 * then text chunks separated by "\x01<event>" where event is 'T' (TLS
 * ok), 't' (TLS failed), 'W' (toggle write blocking, then on_writable),
 * 'K' (clock +61 s, tick), 'C' (transport closed). Checked: every
 * recipient gets exactly one result, close is called exactly once, no
 * callback after close, no MAIL in plaintext under a required TLS policy,
 * no write while a TLS handshake is pending.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const rc_a[] = { "a@y.org", "b@y.org", "c@y.org" };
static const char *const rc_b[] = { "d@z.org", "e@z.org" };
static const char body[] = "Subject: x\r\n\r\n.hello\r\nworld\r\n";

struct fz {
	const struct smtp_sess *s;
	int required;
	int res[5];
	int closed, after_close, block, ntxn;
	size_t off;
};

static int
f_write(void *ctx, const void *buf, size_t len)
{
	struct fz *f = ctx;

	if (f->closed)
		f->after_close++;
	/* TLS policy: no MAIL in plaintext; nothing written mid-handshake */
	if (f->required && !smtp_sess_info(f->s)->tls_active && len >= 4 &&
	    memcmp(buf, "MAIL", 4) == 0)
		abort();
	if (f->s->state == SMTP_ST_TLS_HANDSHAKE || f->s->state == SMTP_ST_TLS_IMPLICIT)
		abort();
	return f->block ? -EAGAIN : 0;
}

static int
f_starttls(void *ctx)
{
	(void)ctx;
	return 0;
}

static void
f_close(void *ctx)
{
	((struct fz *)ctx)->closed++;
}

static void
f_result(void *ctx, const struct smtp_rcpt_result *r)
{
	struct fz *f = ctx;
	int base = r->txn->user == (void *)1 ? 0 : 3;

	if (f->closed || r->rcpt_index >= r->txn->n_rcpt)
		abort();
	f->res[base + r->rcpt_index]++;
}

static int
f_open(void *src, unsigned flags)
{
	struct fz *f = src;

	f->off = 0;
	(void)flags;
	return 0;
}

static ssize_t
f_read(void *src, void *buf, size_t cap)
{
	struct fz *f = src;
	size_t n = sizeof(body) - 1 - f->off;

	if (n > cap)
		n = cap;
	memcpy(buf, body + f->off, n);
	f->off += n;
	return (ssize_t)n;
}

static int
f_next(void *ctx, struct smtp_txn *t)
{
	struct fz *f = ctx;

	if (f->ntxn >= 2)
		return -ENOENT;
	memset(t, 0, sizeof(*t));
	t->mail_from = "s@x.org";
	t->rcpt = f->ntxn == 0 ? rc_a : rc_b;
	t->n_rcpt = f->ntxn == 0 ? 3 : 2;
	t->user = (void *)(uintptr_t)(f->ntxn + 1);
	t->body.open = f_open;
	t->body.read = f_read;
	t->body.src = f;
	t->body.size = f->ntxn == 0 ? (int64_t)sizeof(body) - 1 : -1;
	f->ntxn++;
	return 0;
}

static const struct smtp_io_ops f_ops = {
	f_write, f_starttls, f_close, f_result, f_next,
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct smtp_sess s;
	struct smtp_config cfg;
	struct fz f;
	uint64_t now = 0;
	size_t i = 1, start;

	if (size < 1)
		return 0;
	memset(&f, 0, sizeof(f));
	smtp_config_defaults(&cfg);
	cfg.tls_policy = (enum smtp_tls_policy)(data[0] & 3);
	cfg.implicit_tls = !!(data[0] & 4);
	cfg.use_chunking = !!(data[0] & 8);
	cfg.max_rcpt_per_txn = 1 + (data[0] >> 4) % 3;
	cfg.bdat_chunk = 7;
	f.s = &s;
	f.required = cfg.tls_policy >= SMTP_TLS_REQUIRED;
	if (smtp_sess_init(&s, &cfg, &f_ops, &f, 1) != 0)
		abort();
	smtp_sess_start(&s, now);
	while (i < size) {
		if (data[i] == 1 && i + 1 < size) {
			switch (data[i + 1]) {
			case 'T':
				smtp_sess_on_tls(&s, 1, NULL, now);
				break;
			case 't':
				smtp_sess_on_tls(&s, 0, "fuzz", now);
				break;
			case 'W':
				f.block = !f.block;
				smtp_sess_on_writable(&s, now);
				break;
			case 'K':
				now += 61000;
				smtp_sess_tick(&s, now);
				break;
			case 'C':
				smtp_sess_on_closed(&s, -ECONNRESET, now);
				break;
			}
			i += 2;
			continue;
		}
		start = i++;	/* a lone trailing \x01 is text */
		while (i < size && data[i] != 1)
			i++;
		smtp_sess_input(&s, data + start, i - start, now);
	}
	if (!smtp_sess_done(&s)) {
		f.block = 0;
		smtp_sess_on_closed(&s, 0, now);
	}
	if (f.closed != 1 || f.after_close != 0)
		abort();
	for (int k = 0; k < 5; k++) {
		/* recipients of transactions never fetched have no result */
		int fetched = k < 3 ? f.ntxn >= 1 : f.ntxn >= 2;

		if (f.res[k] != (fetched ? 1 : 0))
			abort();
	}
	return 0;
}
