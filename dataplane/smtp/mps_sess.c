/*
 * The session core (include/mps.h): the smtp_io_ops the SMTP machine
 * calls, and the byte moving between the transport (ops->send; the read
 * loop mps_read over ops->recv, or mps_on_input), the TLS connection and
 * the machine. Every entry point ends in settle(): a transport error not
 * yet reported goes to the machine, and once the machine called its close
 * op the session finishes (close_notify queued and sent, done reported,
 * ops->close) -- or lingers in CLOSING while a TLS job is paused under it.
 *
 * The machine's ops must not call back into it, so an op only records
 * what happened (blocked, closed, handshake to drive) and the calls into
 * the machine (smtp_sess_on_tls, on_writable, on_closed) are made from the
 * entry points, outside any smtp_sess_* call. A TLS call that pauses is
 * remembered in s->paused and nothing else touches the tls_conn until the
 * transport reports the job ready and the same call is repeated.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mps.h"
#include "mp_log.h"

#define MPS_LOG "mps"
#define LOGD(s, fmt, ...) MP_LOG(MP_LOG_DEBUG, MPS_LOG, "sess=%u " fmt, (s)->id, ##__VA_ARGS__)
#define LOGW(s, fmt, ...) MP_LOG(MP_LOG_WARN, MPS_LOG, "sess=%u " fmt, (s)->id, ##__VA_ARGS__)

/* Ciphertext a TLS feed did not take; allocated only while non-empty. */
struct mps_tail {
	size_t off;
	size_t len;
	unsigned char data[];
};

static void settle(struct mps_sess *s, uint64_t now);

const struct tls_record *
mps_tls_record(const struct mps_sess *s)
{
	return s->tls != NULL ? tls_conn_record(s->tls) : NULL;
}

/* ---------------------------------------------------------------- */
/* async TLS                                                          */
/* ---------------------------------------------------------------- */

static void
sess_pause(struct mps_sess *s, enum mps_paused what)
{
	s->paused = (uint8_t)what;
	s->st->async_pauses++;
	if (s->ops->pause != NULL)
		s->ops->pause(s->t, s->tls);
	LOGD(s, "event=tls_paused op=%d", what);
}

static void
sess_unpause(struct mps_sess *s)
{
	if (s->ops->unpause != NULL)
		s->ops->unpause(s->t);
	s->paused = MPS_P_NONE;
}

/* ---------------------------------------------------------------- */
/* output                                                             */
/* ---------------------------------------------------------------- */

/* Send pending ciphertext. @return 0, or -errno (also stored in s->err). */
static int
tls_out_flush(struct mps_sess *s)
{
	const void *p;
	size_t n;

	while (s->tls != NULL && (n = tls_conn_out_peek(s->tls, &p)) != 0) {
		ssize_t k = s->ops->send(s->t, p, n);

		if (k < 0) {
			if (s->err == 0)
				s->err = (int)k;
			return (int)k;
		}
		if (k == 0)
			return 0;
		s->st->bytes_out += (uint64_t)k;
		tls_conn_out_consume(s->tls, (size_t)k);
	}
	return 0;
}

/*
 * Give @p len plaintext bytes to the transport or the TLS connection.
 * @return 0 or -EAGAIN (nothing taken: full or paused) with the count in
 * *taken, or a fatal -errno.
 */
static int
put_bytes(struct mps_sess *s, const unsigned char *p, size_t len, size_t *taken)
{
	size_t off = 0;

	*taken = 0;
	if (s->tls == NULL) {
		while (off < len) {
			ssize_t k = s->ops->send(s->t, p + off, len - off);

			if (k < 0)
				return (int)k;
			if (k == 0)
				break;
			s->st->bytes_out += (uint64_t)k;
			off += (size_t)k;
		}
		*taken = off;
		return off == 0 && len != 0 ? -EAGAIN : 0;
	}
	while (off < len) {
		ssize_t w = tls_conn_write(s->tls, p + off, len - off);

		if (w > 0) {
			off += (size_t)w;
			if (tls_out_flush(s) < 0)
				return s->err;
			continue;
		}
		if (w == -EINPROGRESS) {
			sess_pause(s, MPS_P_WRITE);
			break;
		}
		if (w == -EAGAIN || w == -ENOMEM)
			break;
		return w == 0 ? -EPIPE : (int)w;
	}
	if (tls_out_flush(s) < 0)
		return s->err;
	*taken = off;
	return off == 0 && len != 0 ? -EAGAIN : 0;
}

/* Push the plaintext tail further. @return 0 or fatal -errno. */
static int
tx_flush(struct mps_sess *s)
{
	while (s->tx_len != 0 && s->paused == MPS_P_NONE) {
		size_t taken;
		int rc = put_bytes(s, s->tx + s->tx_off, s->tx_len, &taken);

		if (rc < 0 && rc != -EAGAIN)
			return rc;
		if (taken == 0)
			break;
		s->tx_off = (uint16_t)(s->tx_off + taken);
		s->tx_len = (uint16_t)(s->tx_len - taken);
	}
	if (s->tx_len == 0)
		s->tx_off = 0;
	return 0;
}

/* ---------------------------------------------------------------- */
/* smtp_io_ops                                                        */
/* ---------------------------------------------------------------- */

static int
op_write(void *ctx, const void *buf, size_t len)
{
	struct mps_sess *s = ctx;
	size_t taken;
	int rc;

	if (s->err != 0)
		return s->err;
	if (s->tx_len != 0 || s->paused != MPS_P_NONE) {
		s->smtp_blocked = 1;
		s->st->write_blocked++;
		return -EAGAIN;
	}
	rc = put_bytes(s, buf, len, &taken);
	if (rc == -EAGAIN) {
		s->smtp_blocked = 1;
		s->st->write_blocked++;
		return -EAGAIN;
	}
	if (rc < 0)
		return rc;
	if (taken < len) {
		/* the machine writes from its own SMTP_OUT_MAX buffer */
		if (len - taken > sizeof(s->tx))
			return -EMSGSIZE;
		memcpy(s->tx, (const unsigned char *)buf + taken, len - taken);
		s->tx_off = 0;
		s->tx_len = (uint16_t)(len - taken);
		s->st->tails++;
	}
	return 0;
}

static int
op_starttls(void *ctx)
{
	struct mps_sess *s = ctx;
	char key[TLS_CACHE_KEY_MAX], ip[INET6_ADDRSTRLEN];
	struct tls_conn_conf cc = { 0 };
	int rc;

	if (s->tls != NULL)
		return -EALREADY;
	mp_sockaddr_ntop(&s->req.addr, ip, sizeof(ip));
	snprintf(key, sizeof(key), "%.200s@%s:%u", s->host, ip, mp_sockaddr_port(&s->req.addr));
	cc.host = s->host;
	cc.verify = s->cfg.tls_policy == SMTP_TLS_VERIFY;
	cc.opportunistic = s->cfg.tls_policy == SMTP_TLS_OPPORTUNISTIC;
	cc.cache_key = key;
	cc.owner = s;	/* tls_conn_owner() of a session conn is its mps_sess */
	cc.id = s->id;
	s->tls = tls_conn_new(s->tctx, &cc);
	if (s->tls == NULL)
		return -ENOMEM;
	s->st->tls_started++;
	s->hs = 1;
	/* the first flight cannot complete the handshake: no on_tls needed here */
	rc = tls_conn_handshake(s->tls);
	if (tls_out_flush(s) < 0)
		return s->err;
	if (rc == TLS_PAUSED)
		sess_pause(s, MPS_P_HS);
	else if (rc < 0 && rc != -ENOMEM)
		return rc;
	LOGD(s, "event=tls_start key=%s verify=%d", key, cc.verify);
	return 0;
}

static void
op_close(void *ctx)
{
	((struct mps_sess *)ctx)->smtp_closed = 1;
}

static void
op_result(void *ctx, const struct smtp_rcpt_result *r)
{
	struct mps_sess *s = ctx;

	s->req.result(s->req.user, r, mps_tls_record(s));
}

static int
op_next_txn(void *ctx, struct smtp_txn *txn)
{
	struct mps_sess *s = ctx;

	return s->req.next_txn(s->req.user, txn);
}

static const struct smtp_io_ops mps_smtp_ops = {
	.write = op_write,
	.starttls = op_starttls,
	.close = op_close,
	.result = op_result,
	.next_txn = op_next_txn,
};

/* ---------------------------------------------------------------- */
/* life cycle                                                         */
/* ---------------------------------------------------------------- */

int
mps_sess_init(struct mps_sess *s, const struct mps_req *req,
	const struct smtp_config *defcfg, struct tls_ctx *tctx,
	struct mps_stats *st, const struct mps_ops *ops, void *t, uint32_t id)
{
	char ip[INET6_ADDRSTRLEN];
	const char *host;
	int rc;

	if (req == NULL || req->next_txn == NULL || req->result == NULL ||
	    mp_sockaddr_len(&req->addr) == 0 || (unsigned)req->policy >= SMTP_TLS_POLICY_LAST ||
	    ops == NULL || ops->send == NULL || ops->recv == NULL || ops->close == NULL ||
	    st == NULL)
		return -EINVAL;
	memset(s, 0, offsetof(struct mps_sess, tx));
	s->ops = ops;
	s->t = t;
	s->tctx = tctx;
	s->st = st;
	s->id = id;
	s->req = *req;
	s->cfg = req->smtp != NULL ? *req->smtp : *defcfg;
	s->cfg.tls_policy = req->policy;
	s->cfg.implicit_tls = s->cfg.implicit_tls || req->implicit_tls;
	mp_sockaddr_ntop(&req->addr, ip, sizeof(ip));
	host = req->host != NULL && req->host[0] != '\0' ? req->host : ip;
	if (strlen(host) >= sizeof(s->host))
		return -EINVAL;
	strcpy(s->host, host);
	s->req.host = s->host;
	rc = smtp_sess_init(&s->smtp, &s->cfg, &mps_smtp_ops, s, id);
	if (rc < 0)
		return rc;
	s->state = MPS_CONNECTING;
	st->active++;
	if (req->core != NULL)
		*req->core = s;
	return 0;
}

int
mps_sess_fini(struct mps_sess *s)
{
	int leaked = 0;

	if (s->tls != NULL) {
		if (s->paused != MPS_P_NONE) {
			/* a paused job must not be freed under OpenSSL */
			s->st->leaked_tls++;
			leaked = 1;
		} else {
			tls_conn_free(s->tls);
		}
		s->tls = NULL;
	}
	free(s->rx);
	s->rx = NULL;
	if (!s->done_called && s->st != NULL) {
		/* freed without its callbacks (engine teardown) */
		s->done_called = 1;
		s->st->active--;
	}
	s->state = MPS_CLOSED;
	return leaked;
}

static void
sess_done(struct mps_sess *s)
{
	if (s->done_called)
		return;
	s->done_called = 1;
	s->st->active--;
	if (s->req.done != NULL)
		s->req.done(s->req.user, smtp_sess_info(&s->smtp), mps_tls_record(s));
}

/* Hand the transport back: the session's last act. */
static void
sess_close(struct mps_sess *s)
{
	if (s->tls != NULL && s->paused == MPS_P_NONE) {
		tls_conn_free(s->tls);
		s->tls = NULL;
	}
	s->state = MPS_CLOSED;
	s->ops->close(s->t, s->err != 0 || s->aborted);
}

void
mps_on_connect_failed(struct mps_sess *s, int err, uint32_t timed_out_ms)
{
	struct smtp_rcpt_result r;
	struct smtp_txn txn;
	char ip[INET6_ADDRSTRLEN];

	if (s->state != MPS_CONNECTING)
		return;
	if (timed_out_ms != 0)
		s->st->connect_timeouts++;
	else
		s->st->connect_failed++;
	memset(&r, 0, sizeof(r));
	r.outcome = SMTP_OUT_DEFERRED;
	r.stage = SMTP_STAGE_CONNECT;
	mp_sockaddr_ntop(&s->req.addr, ip, sizeof(ip));
	if (timed_out_ms != 0)
		snprintf(r.text, sizeof(r.text), "connect to %.200s[%s]:%u timed out after %u ms",
			s->host, ip, mp_sockaddr_port(&s->req.addr), timed_out_ms);
	else
		snprintf(r.text, sizeof(r.text), "connect to %.200s[%s]:%u failed: %s",
			s->host, ip, mp_sockaddr_port(&s->req.addr), strerror(-err));
	LOGD(s, "event=connect_failed err=%d timeout_ms=%u", err, timed_out_ms);
	for (unsigned n = 0; n < 1000000; n++) {
		memset(&txn, 0, sizeof(txn));
		if (s->req.next_txn(s->req.user, &txn) != 0)
			break;
		r.txn = &txn;
		for (unsigned i = 0; i < txn.n_rcpt; i++) {
			r.rcpt_index = i;
			r.rcpt = txn.rcpt[i];
			s->req.result(s->req.user, &r, NULL);
		}
	}
	sess_done(s);
	/* no TLS yet; a connect that timed out is still under way: reset it */
	s->state = MPS_CLOSED;
	s->ops->close(s->t, timed_out_ms != 0);
}

void
mps_on_connected(struct mps_sess *s, uint64_t now)
{
	if (s->state != MPS_CONNECTING)
		return;
	s->state = MPS_RUNNING;
	s->rd_more = 1;	/* the greeting may be there already */
	LOGD(s, "event=connected");
	smtp_sess_start(&s->smtp, now);
	settle(s, now);
}

/*
 * The machine closed: queue close_notify, send what is pending, report
 * done and close. A paused TLS job keeps the session (CLOSING) until the
 * job finishes, at most MPS_LINGER_MS.
 */
static void
sess_finish(struct mps_sess *s, uint64_t now)
{
	if (s->tls != NULL && s->paused == MPS_P_NONE && tls_conn_is_open(s->tls) &&
	    s->err == 0 && !s->rd_eof) {
		int rc = tls_conn_shutdown(s->tls);

		if (rc == TLS_PAUSED)
			sess_pause(s, MPS_P_SHUTDOWN);
	}
	if (s->err == 0)
		tls_out_flush(s);
	sess_done(s);
	if (s->paused != MPS_P_NONE) {
		if (s->state != MPS_CLOSING) {
			s->state = MPS_CLOSING;
			s->linger_deadline = now + MPS_LINGER_MS;
		}
		return;
	}
	sess_close(s);
}

static void
settle(struct mps_sess *s, uint64_t now)
{
	if (s->state != MPS_RUNNING)
		return;
	if (!s->smtp_closed && s->err != 0) {
		LOGD(s, "event=transport_error err=%d", s->err);
		smtp_sess_on_closed(&s->smtp, s->err, now);
	}
	if (s->smtp_closed)
		sess_finish(s, now);
}

/* ---------------------------------------------------------------- */
/* TLS input                                                          */
/* ---------------------------------------------------------------- */

static void
hs_step(struct mps_sess *s, uint64_t now)
{
	const struct tls_record *rec;
	char why[TLS_STR_REASON + 32];
	int rc;

	rc = tls_conn_handshake(s->tls);
	tls_out_flush(s);
	if (rc == TLS_WANT_IO || rc == -ENOMEM)
		return;
	if (rc == TLS_PAUSED) {
		sess_pause(s, MPS_P_HS);
		return;
	}
	s->hs = 0;
	rec = tls_conn_record(s->tls);
	if (rc == TLS_OK) {
		s->st->tls_ok++;
		if (rec->resumed)
			s->st->tls_resumed++;
		smtp_sess_on_tls(&s->smtp, 1, NULL, now);
		return;
	}
	s->st->tls_failed++;
	if (rec->verify != TLS_VERIFY_NONE && rec->verify != TLS_VERIFY_OK)
		snprintf(why, sizeof(why), "%s: %s", tls_verify_reason_name(rec->verify), rec->reason);
	else if (rec->reason[0] != '\0')
		snprintf(why, sizeof(why), "%s", rec->reason);
	else
		snprintf(why, sizeof(why), "%s", strerror(-rc));
	smtp_sess_on_tls(&s->smtp, 0, why, now);
}

static void
rx_take(struct mps_sess *s, size_t n)
{
	s->rx->off += n;
	s->rx->len -= n;
	if (s->rx->len == 0) {
		free(s->rx);
		s->rx = NULL;
	}
}

/* Feed what is left of the ciphertext tail. @return bytes fed (0: none). */
static size_t
rx_feed(struct mps_sess *s)
{
	size_t fed = 0;

	while (s->rx != NULL) {
		ssize_t f = tls_conn_feed(s->tls, s->rx->data + s->rx->off, s->rx->len);

		if (f <= 0)
			break;
		fed += (size_t)f;
		rx_take(s, (size_t)f);
	}
	if (s->rx == NULL && s->rd_eof && !s->eof_fed) {
		/* the end of stream goes in behind the last byte */
		tls_conn_feed_eof(s->tls);
		s->eof_fed = 1;
		fed++;
	}
	return fed;
}

/* Move ciphertext through the handshake or into plaintext for the machine. */
static void
tls_in(struct mps_sess *s, uint64_t now)
{
	unsigned char plain[MPS_PLAIN_BUF];

	for (int guard = 0; guard < 10000 && !s->smtp_closed; guard++) {
		ssize_t r;

		if (s->paused != MPS_P_NONE)
			return;
		if (s->hs) {
			hs_step(s, now);
			/* still in the handshake: go on only with more ciphertext fed */
			if (s->hs && (s->paused != MPS_P_NONE || rx_feed(s) == 0))
				return;
			continue;
		}
		r = tls_conn_read(s->tls, plain, sizeof(plain));
		if (r > 0) {
			smtp_sess_input(&s->smtp, plain, (size_t)r, now);
			continue;
		}
		if (r == -EAGAIN) {
			tls_out_flush(s);
			if (rx_feed(s) != 0)
				continue;
			return;
		}
		if (r == -EINPROGRESS) {
			sess_pause(s, MPS_P_READ);
			return;
		}
		if (r == -ENOMEM)
			return;
		tls_out_flush(s);
		LOGD(s, "event=tls_read_end rc=%zd", r);
		smtp_sess_on_closed(&s->smtp, r == 0 ? 0 : (int)r, now);
		return;
	}
}

/* ---------------------------------------------------------------- */
/* transport events                                                   */
/* ---------------------------------------------------------------- */

int
mps_input_ready(struct mps_sess *s)
{
	if (s->state != MPS_RUNNING || s->smtp_closed || s->rd_eof || s->err != 0 ||
	    s->paused != MPS_P_NONE)
		return 0;
	if (s->rx != NULL)
		rx_feed(s);
	return s->rx == NULL;
}

void
mps_on_input(struct mps_sess *s, const void *buf, size_t len, uint64_t now)
{
	ssize_t f;

	if (s->state != MPS_RUNNING || s->smtp_closed || len == 0)
		return;
	if (s->tls == NULL) {
		smtp_sess_input(&s->smtp, buf, len, now);
		settle(s, now);
		return;
	}
	if (s->rx != NULL || s->paused != MPS_P_NONE)
		f = 0;
	else
		f = tls_conn_feed(s->tls, buf, len);
	if (f < 0) {
		s->err = (int)f;
		settle(s, now);
		return;
	}
	if ((size_t)f < len) {
		struct mps_tail *t = realloc(s->rx, sizeof(*t) +
			(s->rx != NULL ? s->rx->off + s->rx->len : 0) + len - (size_t)f);

		if (t == NULL) {
			s->err = -ENOMEM;
			settle(s, now);
			return;
		}
		if (s->rx == NULL)
			t->off = t->len = 0;
		memcpy(t->data + t->off + t->len, (const unsigned char *)buf + f, len - (size_t)f);
		t->len += len - (size_t)f;
		s->rx = t;
		s->st->tails++;
	}
	tls_in(s, now);
	settle(s, now);
}

void
mps_on_eof(struct mps_sess *s, uint64_t now)
{
	if (s->state != MPS_RUNNING || s->smtp_closed || s->rd_eof)
		return;
	s->rd_eof = 1;
	LOGD(s, "event=eof");
	if (s->tls == NULL) {
		smtp_sess_on_closed(&s->smtp, 0, now);
	} else if (s->paused == MPS_P_NONE) {
		rx_feed(s);	/* feeds the end of stream once the tail is in */
		tls_in(s, now);
	}
	settle(s, now);
}

void
mps_on_readable(struct mps_sess *s)
{
	s->rd_more = 1;
}

int
mps_read(struct mps_sess *s, void *buf, size_t len, uint64_t now)
{
	size_t budget = 0;

	while (s->rd_more && mps_input_ready(s)) {
		ssize_t n;

		if (budget >= MPS_READ_BUDGET)
			return 1;
		n = s->ops->recv(s->t, buf, len);
		if (n > 0) {
			budget += (size_t)n;
			mps_on_input(s, buf, (size_t)n, now);
			continue;
		}
		s->rd_more = 0;
		if (n == 0)
			mps_on_eof(s, now);
		else if (n != -EAGAIN)
			mps_on_error(s, (int)n, now);
	}
	return 0;
}

void
mps_on_error(struct mps_sess *s, int err, uint64_t now)
{
	if (s->state != MPS_RUNNING)
		return;
	if (s->err == 0)
		s->err = err != 0 ? err : -EPIPE;
	settle(s, now);
}

void
mps_pump(struct mps_sess *s, uint64_t now)
{
	if (s->state != MPS_RUNNING || s->smtp_closed)
		return;
	if (tx_flush(s) < 0 && s->err == 0)
		s->err = -EPIPE;
	tls_out_flush(s);
	if ((s->smtp_blocked || s->src_wake) && s->tx_len == 0 && s->paused == MPS_P_NONE &&
	    s->err == 0) {
		s->smtp_blocked = 0;
		s->src_wake = 0;
		smtp_sess_on_writable(&s->smtp, now);
	}
	if (!s->smtp_closed && s->tls != NULL && s->paused == MPS_P_NONE &&
	    (s->hs || s->rx != NULL || (s->rd_eof && !s->eof_fed)))
		tls_in(s, now);
	settle(s, now);
}

void
mps_wake(struct mps_sess *s)
{
	if (s->state != MPS_RUNNING || s->smtp_closed)
		return;
	s->src_wake = 1;
	if (s->ops->wake != NULL)
		s->ops->wake(s->t);
}

/*
 * The machine is gone but a job paused under it: repeat the call once so
 * OpenSSL can finish the job (the job keeps the arguments of the first
 * call; the buffer passed again stays valid, it is the session's own).
 */
static void
resume_closed(struct mps_sess *s, enum mps_paused p)
{
	unsigned char plain[MPS_PLAIN_BUF];
	ssize_t r = 0;

	switch (p) {
	case MPS_P_HS:
		r = tls_conn_handshake(s->tls) == TLS_PAUSED ? -EINPROGRESS : 0;
		break;
	case MPS_P_READ:
		r = tls_conn_read(s->tls, plain, sizeof(plain));
		break;
	case MPS_P_WRITE:
		if (s->tx_len != 0)
			r = tls_conn_write(s->tls, s->tx + s->tx_off, s->tx_len);
		else
			r = tls_conn_write(s->tls, s->smtp.out, sizeof(s->smtp.out));
		break;
	case MPS_P_SHUTDOWN:
		r = tls_conn_shutdown(s->tls) == TLS_PAUSED ? -EINPROGRESS : 0;
		break;
	default:
		return;
	}
	if (r == -EINPROGRESS)
		sess_pause(s, p);
}

void
mps_on_async_ready(struct mps_sess *s, uint64_t now)
{
	enum mps_paused p = (enum mps_paused)s->paused;

	if (p == MPS_P_NONE || s->state == MPS_CLOSED)
		return;
	sess_unpause(s);
	LOGD(s, "event=tls_resume op=%d", p);
	if (s->smtp_closed || s->state == MPS_CLOSING) {
		resume_closed(s, p);
		if (s->state == MPS_CLOSING && s->paused == MPS_P_NONE) {
			if (s->err == 0)
				tls_out_flush(s);
			sess_close(s);
		}
		return;
	}
	switch (p) {
	case MPS_P_HS:
	case MPS_P_READ:
		tls_in(s, now);
		break;
	case MPS_P_WRITE:
		/* the tail's bytes, or the machine's retry, repeat the write */
		if (tx_flush(s) < 0 && s->err == 0)
			s->err = -EPIPE;
		break;
	case MPS_P_SHUTDOWN:
		break;
	default:
		abort();
	}
	settle(s, now);
}

void
mps_abort(struct mps_sess *s, uint64_t now)
{
	if (s->state != MPS_RUNNING || s->smtp_closed)
		return;
	LOGD(s, "event=abort");
	s->aborted = 1;
	smtp_sess_on_closed(&s->smtp, -ECANCELED, now);
	settle(s, now);
}

void
mps_tick(struct mps_sess *s, uint64_t now)
{
	switch (s->state) {
	case MPS_RUNNING:
		if (smtp_sess_deadline(&s->smtp) <= now) {
			smtp_sess_tick(&s->smtp, now);
			settle(s, now);
		}
		return;
	case MPS_CLOSING:
		if (now >= s->linger_deadline) {
			LOGW(s, "event=tls_job_never_finished action=leak_conn");
			s->st->leaked_tls++;
			s->tls = NULL;	/* freeing a conn with a paused job is not allowed */
			sess_unpause(s);
			sess_close(s);
		}
		return;
	default:
		return;
	}
}

uint64_t
mps_deadline(const struct mps_sess *s)
{
	switch (s->state) {
	case MPS_RUNNING:
		return smtp_sess_deadline(&s->smtp);
	case MPS_CLOSING:
		return s->linger_deadline;
	default:
		return UINT64_MAX;
	}
}
