/*
 * One kernel-socket SMTP session: the smtp_io_ops the SMTP machine calls,
 * and the byte moving between the socket, the TLS connection and the
 * machine. ksock_sess_process() is the only entry from the engine's run
 * list; per call, in order: connect completion (or its failure), a paused
 * TLS job that became ready, pending output (tail buffer, TLS ciphertext,
 * then smtp_sess_on_writable if the machine was blocked), socket reads
 * (plaintext to smtp_sess_input, or ciphertext through tls_conn_feed /
 * handshake / read), a transport error, and finally the close once the
 * machine called ops->close.
 *
 * The machine's ops must not call back into it, so an op only records
 * what happened (blocked, closed, handshake to drive) and the calls into
 * the machine (smtp_sess_on_tls, on_writable, on_closed) are made here,
 * outside any smtp_sess_* call. A TLS call that pauses (async job) is
 * remembered in s->paused and nothing else touches the tls_conn until the
 * job is ready (its wait fds in epoll, or tls_ctx_ready_drain) and the
 * same call is repeated.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ksock_int.h"
#include "mp_log.h"

#define LOGD(s, fmt, ...) MP_LOG(MP_LOG_DEBUG, KSOCK_LOG, "sess=%u " fmt, (s)->id, ##__VA_ARGS__)
#define LOGW(s, fmt, ...) MP_LOG(MP_LOG_WARN, KSOCK_LOG, "sess=%u " fmt, (s)->id, ##__VA_ARGS__)

static void sess_finish(struct ksock_sess *s, uint64_t now);

static const struct tls_record *
sess_record(const struct ksock_sess *s)
{
	return s->tls != NULL ? tls_conn_record(s->tls) : NULL;
}

/* ---------------------------------------------------------------- */
/* tail buffers                                                       */
/* ---------------------------------------------------------------- */

static struct ksock_tail *
tail_new(struct ksock_sess *s, const void *p, size_t len)
{
	struct ksock_tail *t = malloc(sizeof(*t) + len);

	if (t == NULL)
		return NULL;
	t->off = 0;
	t->len = len;
	memcpy(t->data, p, len);
	s->e->st.tails++;
	return t;
}

static void
tail_take(struct ksock_tail **tp, size_t n)
{
	struct ksock_tail *t = *tp;

	t->off += n;
	t->len -= n;
	if (t->len == 0) {
		free(t);
		*tp = NULL;
	}
}

/* ---------------------------------------------------------------- */
/* async TLS                                                          */
/* ---------------------------------------------------------------- */

void
ksock_afd_clear(struct ksock_sess *s)
{
	for (unsigned i = 0; i < s->n_afd; i++)
		epoll_ctl(s->e->ep, EPOLL_CTL_DEL, s->afd[i], NULL);
	s->n_afd = 0;
	if (s->nofd_pause) {
		s->nofd_pause = 0;
		s->e->paused_nofd--;
	}
}

/* A tls_ call paused: remember which and watch the job's wait fds. */
static void
sess_pause(struct ksock_sess *s, enum ksock_paused what)
{
	int fds[KSOCK_AFD_MAX], n;

	s->paused = (uint8_t)what;
	s->e->st.async_pauses++;
	ksock_afd_clear(s);
	n = tls_conn_async_fds(s->tls, fds, KSOCK_AFD_MAX);
	if (n < 0) {
		LOGW(s, "event=async_fds err=%d", n);
		n = 0;
	}
	for (int i = 0; i < n; i++) {
		struct epoll_event ev = {
			.events = EPOLLIN,
			.data.ptr = (void *)((uintptr_t)s | 1u),
		};

		if (epoll_ctl(s->e->ep, EPOLL_CTL_ADD, fds[i], &ev) == 0)
			s->afd[s->n_afd++] = fds[i];
		else
			LOGW(s, "event=async_fd_add fd=%d err=%d", fds[i], errno);
	}
	if (s->n_afd == 0) {
		/* signalled through the ctx ready list only, which no fd wakes */
		s->nofd_pause = 1;
		s->e->paused_nofd++;
	}
	LOGD(s, "event=tls_paused op=%d fds=%d", what, n);
}

/* ---------------------------------------------------------------- */
/* output                                                             */
/* ---------------------------------------------------------------- */

/* Send pending ciphertext. @return 0, or -errno (also stored in s->err). */
static int
tls_out_flush(struct ksock_sess *s)
{
	const void *p;
	size_t n;

	while (s->tls != NULL && (n = tls_conn_out_peek(s->tls, &p)) != 0) {
		ssize_t k = send(s->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			if (s->err == 0)
				s->err = -errno;
			return -errno;
		}
		s->e->st.bytes_out += (uint64_t)k;
		tls_conn_out_consume(s->tls, (size_t)k);
	}
	return 0;
}

/*
 * Give @p len plaintext bytes to the socket or the TLS connection. What
 * is not taken goes into s->tx unless nothing at all was taken.
 * @return bytes taken by value-result in *taken; 0, -EAGAIN (nothing
 * taken, would block or paused), or a fatal -errno.
 */
static int
put_bytes(struct ksock_sess *s, const unsigned char *p, size_t len, size_t *taken)
{
	size_t off = 0;

	*taken = 0;
	if (s->tls == NULL) {
		while (off < len) {
			ssize_t k = send(s->fd, p + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0 && errno == EAGAIN)
				break;
			if (k < 0)
				return -errno;
			s->e->st.bytes_out += (uint64_t)k;
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
			sess_pause(s, KS_P_WRITE);
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

/* Push s->tx further. @return 0 or fatal -errno. */
static int
tx_flush(struct ksock_sess *s)
{
	while (s->tx != NULL && s->paused == KS_P_NONE) {
		size_t taken;
		int rc = put_bytes(s, s->tx->data + s->tx->off, s->tx->len, &taken);

		if (rc < 0 && rc != -EAGAIN)
			return rc;
		if (taken == 0)
			break;
		tail_take(&s->tx, taken);
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* smtp_io_ops                                                        */
/* ---------------------------------------------------------------- */

static int
op_write(void *ctx, const void *buf, size_t len)
{
	struct ksock_sess *s = ctx;
	size_t taken;
	int rc;

	if (s->err != 0)
		return s->err;
	if (s->tx != NULL || s->paused != KS_P_NONE) {
		s->smtp_blocked = 1;
		s->e->st.write_blocked++;
		return -EAGAIN;
	}
	rc = put_bytes(s, buf, len, &taken);
	if (rc == -EAGAIN) {
		s->smtp_blocked = 1;
		s->e->st.write_blocked++;
		return -EAGAIN;
	}
	if (rc < 0)
		return rc;
	if (taken < len) {
		s->tx = tail_new(s, (const unsigned char *)buf + taken, len - taken);
		if (s->tx == NULL)
			return -ENOMEM;
	}
	return 0;
}

static int
op_starttls(void *ctx)
{
	struct ksock_sess *s = ctx;
	char key[TLS_CACHE_KEY_MAX], ip[INET_ADDRSTRLEN];
	struct tls_conn_conf cc = { 0 };
	int rc;

	if (s->tls != NULL)
		return -EALREADY;
	inet_ntop(AF_INET, &s->req.addr.sin_addr, ip, sizeof(ip));
	snprintf(key, sizeof(key), "%.200s@%s:%u", s->host, ip, ntohs(s->req.addr.sin_port));
	cc.host = s->host;
	cc.verify = s->cfg.tls_policy == SMTP_TLS_VERIFY;
	cc.cache_key = key;
	cc.owner = s;
	cc.id = s->id;
	s->tls = tls_conn_new(s->e->tls, &cc);
	if (s->tls == NULL)
		return -ENOMEM;
	s->e->st.tls_started++;
	s->hs = 1;
	/* the first flight cannot complete the handshake: no on_tls needed here */
	rc = tls_conn_handshake(s->tls);
	if (tls_out_flush(s) < 0)
		return s->err;
	if (rc == TLS_PAUSED)
		sess_pause(s, KS_P_HS);
	else if (rc < 0 && rc != -ENOMEM)
		return rc;
	LOGD(s, "event=tls_start key=%s verify=%d", key, cc.verify);
	return 0;
}

static void
op_close(void *ctx)
{
	((struct ksock_sess *)ctx)->smtp_closed = 1;
}

static void
op_result(void *ctx, const struct smtp_rcpt_result *r)
{
	struct ksock_sess *s = ctx;

	s->req.result(s->req.user, r, sess_record(s));
}

static int
op_next_txn(void *ctx, struct smtp_txn *txn)
{
	struct ksock_sess *s = ctx;

	return s->req.next_txn(s->req.user, txn);
}

const struct smtp_io_ops ksock_smtp_ops = {
	.write = op_write,
	.starttls = op_starttls,
	.close = op_close,
	.result = op_result,
	.next_txn = op_next_txn,
};

/* ---------------------------------------------------------------- */
/* connect                                                            */
/* ---------------------------------------------------------------- */

static void
sess_done(struct ksock_sess *s)
{
	if (s->done_called)
		return;
	s->done_called = 1;
	s->e->st.active--;
	if (s->req.done != NULL)
		s->req.done(s->req.user, smtp_sess_info(&s->smtp), sess_record(s));
}

/* Every recipient the owner has for this connection: deferred at CONNECT. */
static void
connect_failed(struct ksock_sess *s, int err, int timed_out)
{
	struct smtp_rcpt_result r;
	struct smtp_txn txn;
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &s->req.addr.sin_addr, ip, sizeof(ip));
	memset(&r, 0, sizeof(r));
	r.outcome = SMTP_OUT_DEFERRED;
	r.stage = SMTP_STAGE_CONNECT;
	if (timed_out)
		snprintf(r.text, sizeof(r.text), "connect to %.200s[%s]:%u timed out after %u ms",
			s->host, ip, ntohs(s->req.addr.sin_port), s->e->connect_timeout_ms);
	else
		snprintf(r.text, sizeof(r.text), "connect to %.200s[%s]:%u failed: %s",
			s->host, ip, ntohs(s->req.addr.sin_port), strerror(-err));
	if (timed_out)
		s->e->st.connect_timeouts++;
	else
		s->e->st.connect_failed++;
	LOGD(s, "event=connect_failed err=%d timeout=%d", err, timed_out);
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
	ksock_sess_destroy(s);
}

static void
sess_connected(struct ksock_sess *s, uint64_t now)
{
	s->state = KS_RUNNING;
	s->e->st.connected++;
	LOGD(s, "event=connected");
	smtp_sess_start(&s->smtp, now);
}

/* ---------------------------------------------------------------- */
/* TLS input                                                          */
/* ---------------------------------------------------------------- */

static void
hs_step(struct ksock_sess *s, uint64_t now)
{
	const struct tls_record *rec;
	char why[TLS_STR_REASON + 32];
	int rc;

	rc = tls_conn_handshake(s->tls);
	tls_out_flush(s);
	if (rc == TLS_WANT_IO || rc == -ENOMEM)
		return;
	if (rc == TLS_PAUSED) {
		sess_pause(s, KS_P_HS);
		return;
	}
	s->hs = 0;
	rec = tls_conn_record(s->tls);
	if (rc == TLS_OK) {
		s->e->st.tls_ok++;
		if (rec->resumed)
			s->e->st.tls_resumed++;
		smtp_sess_on_tls(&s->smtp, 1, NULL, now);
		return;
	}
	s->e->st.tls_failed++;
	if (rec->verify != TLS_VERIFY_NONE && rec->verify != TLS_VERIFY_OK)
		snprintf(why, sizeof(why), "%s: %s", tls_verify_reason_name(rec->verify), rec->reason);
	else if (rec->reason[0] != '\0')
		snprintf(why, sizeof(why), "%s", rec->reason);
	else
		snprintf(why, sizeof(why), "%s", strerror(-rc));
	smtp_sess_on_tls(&s->smtp, 0, why, now);
}

/* Feed what is left of s->rx. @return bytes fed (0: none, or no tail). */
static size_t
rx_feed(struct ksock_sess *s)
{
	size_t fed = 0;

	while (s->rx != NULL) {
		ssize_t f = tls_conn_feed(s->tls, s->rx->data + s->rx->off, s->rx->len);

		if (f <= 0)
			break;
		fed += (size_t)f;
		tail_take(&s->rx, (size_t)f);
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
tls_in(struct ksock_sess *s, uint64_t now)
{
	for (int guard = 0; guard < 10000 && !s->smtp_closed; guard++) {
		ssize_t r;

		if (s->paused != KS_P_NONE)
			return;
		if (s->hs) {
			hs_step(s, now);
			/* still in the handshake: go on only with more ciphertext fed */
			if (s->hs && (s->paused != KS_P_NONE || rx_feed(s) == 0))
				return;
			continue;
		}
		r = tls_conn_read(s->tls, s->e->plain, sizeof(s->e->plain));
		if (r > 0) {
			smtp_sess_input(&s->smtp, s->e->plain, (size_t)r, now);
			continue;
		}
		if (r == -EAGAIN) {
			tls_out_flush(s);
			if (rx_feed(s) != 0)
				continue;
			return;
		}
		if (r == -EINPROGRESS) {
			sess_pause(s, KS_P_READ);
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
/* socket input                                                       */
/* ---------------------------------------------------------------- */

static void
sess_read(struct ksock_sess *s, uint64_t now)
{
	size_t budget = 0;

	while (!s->smtp_closed && s->readable && !s->rd_eof && s->err == 0) {
		ssize_t n;

		if (budget >= KSOCK_READ_BUDGET) {
			ksock_run_add(s);
			return;
		}
		if (s->rx != NULL) {
			/* the TLS feed is full: read again once it took the rest */
			if (s->paused == KS_P_NONE)
				rx_feed(s);
			if (s->rx != NULL)
				return;
		}
		n = recv(s->fd, s->e->rxbuf, sizeof(s->e->rxbuf), 0);
		if (n > 0) {
			s->e->st.bytes_in += (uint64_t)n;
			budget += (size_t)n;
			if (s->tls == NULL) {
				smtp_sess_input(&s->smtp, s->e->rxbuf, (size_t)n, now);
				continue;
			}
			ssize_t f = tls_conn_feed(s->tls, s->e->rxbuf, (size_t)n);

			if (f < 0) {
				s->err = (int)f;
				return;
			}
			if ((size_t)f < (size_t)n) {
				s->rx = tail_new(s, s->e->rxbuf + f, (size_t)n - (size_t)f);
				if (s->rx == NULL) {
					s->err = -ENOMEM;
					return;
				}
			}
			tls_in(s, now);
			continue;
		}
		if (n == 0) {
			s->rd_eof = 1;
			s->readable = 0;
			LOGD(s, "event=eof");
			if (s->tls == NULL) {
				smtp_sess_on_closed(&s->smtp, 0, now);
			} else {
				rx_feed(s);	/* feeds the end of stream once the tail is in */
				tls_in(s, now);
			}
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			s->readable = 0;
			return;
		}
		s->err = -errno;
		s->readable = 0;
		return;
	}
}

/* ---------------------------------------------------------------- */
/* processing                                                         */
/* ---------------------------------------------------------------- */

/*
 * The machine is gone but a job paused under it: repeat the call once so
 * OpenSSL can finish the job (the job keeps the arguments of the first
 * call; the buffer passed again stays valid, it is the session's own).
 */
static void
resume_closed(struct ksock_sess *s, enum ksock_paused p)
{
	ssize_t r = 0;

	switch (p) {
	case KS_P_HS:
		r = tls_conn_handshake(s->tls) == TLS_PAUSED ? -EINPROGRESS : 0;
		break;
	case KS_P_READ:
		r = tls_conn_read(s->tls, s->e->plain, sizeof(s->e->plain));
		break;
	case KS_P_WRITE:
		if (s->tx != NULL)
			r = tls_conn_write(s->tls, s->tx->data + s->tx->off, s->tx->len);
		else
			r = tls_conn_write(s->tls, s->smtp.out, sizeof(s->smtp.out));
		break;
	case KS_P_SHUTDOWN:
		r = tls_conn_shutdown(s->tls) == TLS_PAUSED ? -EINPROGRESS : 0;
		break;
	default:
		return;
	}
	if (r == -EINPROGRESS)
		sess_pause(s, p);
}

/* Repeat the tls_ call that paused. */
static void
sess_resume(struct ksock_sess *s, uint64_t now)
{
	enum ksock_paused p = s->paused;

	ksock_afd_clear(s);
	s->paused = KS_P_NONE;
	LOGD(s, "event=tls_resume op=%d", p);
	if (s->smtp_closed || s->state == KS_CLOSING) {
		resume_closed(s, p);
		return;
	}
	switch (p) {
	case KS_P_NONE:
		return;
	case KS_P_HS:
	case KS_P_READ:
		tls_in(s, now);
		return;
	case KS_P_WRITE:
		/* the tail's bytes, or the machine's retry, repeat the write */
		if (tx_flush(s) < 0 && s->err == 0)
			s->err = -EPIPE;
		return;
	case KS_P_SHUTDOWN:
		return;
	}
	abort();
}

/*
 * The machine closed: queue close_notify, send what is pending, report
 * done and free. A paused TLS job keeps the session (CLOSING) until the
 * job finishes, at most KSOCK_LINGER_MS.
 */
static void
sess_finish(struct ksock_sess *s, uint64_t now)
{
	if (s->tls != NULL && s->paused == KS_P_NONE && tls_conn_is_open(s->tls) &&
	    s->err == 0 && !s->rd_eof) {
		int rc = tls_conn_shutdown(s->tls);

		if (rc == TLS_PAUSED)
			sess_pause(s, KS_P_SHUTDOWN);
	}
	if (s->err == 0)
		tls_out_flush(s);
	sess_done(s);
	if (s->paused != KS_P_NONE) {
		if (s->state != KS_CLOSING) {
			s->state = KS_CLOSING;
			s->linger_deadline = now + KSOCK_LINGER_MS;
			ksock_note_deadline(s->e, s->linger_deadline);
		}
		return;
	}
	ksock_sess_destroy(s);
}

void
ksock_sess_process(struct ksock_sess *s, uint64_t now)
{
	uint32_t ev = s->ev;

	s->ev = 0;
	if (s->state == KS_DEAD)
		return;
	if (s->state == KS_CONNECTING) {
		int soerr = 0;
		socklen_t l = sizeof(soerr);

		if (s->err != 0 || s->abort) {
			connect_failed(s, s->err != 0 ? s->err : -ECANCELED, 0);
			return;
		}
		if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0)
			return;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
			soerr = errno;
		if (soerr != 0) {
			connect_failed(s, -soerr, 0);
			return;
		}
		if ((ev & EPOLLOUT) == 0)
			return;
		sess_connected(s, now);
		ev |= EPOLLIN;	/* the greeting may already be there */
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->readable = 1;
	if (s->async_ready) {
		s->async_ready = 0;
		if (s->paused != KS_P_NONE)
			sess_resume(s, now);
	}
	if (s->state == KS_CLOSING) {
		if (s->paused == KS_P_NONE) {
			if (s->err == 0)
				tls_out_flush(s);
			ksock_sess_destroy(s);
		}
		return;
	}
	if (s->state != KS_RUNNING)
		return;
	if (s->abort && !s->smtp_closed) {
		s->abort = 0;
		LOGD(s, "event=abort");
		smtp_sess_on_closed(&s->smtp, -ECANCELED, now);
		sess_finish(s, now);
		return;
	}
	if (!s->smtp_closed) {
		if (tx_flush(s) < 0 && s->err == 0)
			s->err = -EPIPE;
		tls_out_flush(s);
		if (s->smtp_blocked && s->tx == NULL && s->paused == KS_P_NONE && s->err == 0) {
			s->smtp_blocked = 0;
			smtp_sess_on_writable(&s->smtp, now);
		}
	}
	if (!s->smtp_closed && s->tls != NULL && s->paused == KS_P_NONE &&
	    (s->hs || s->rx != NULL))
		tls_in(s, now);
	if (!s->smtp_closed)
		sess_read(s, now);
	if (!s->smtp_closed && s->err != 0) {
		LOGD(s, "event=transport_error err=%d", s->err);
		smtp_sess_on_closed(&s->smtp, s->err, now);
	}
	if (s->smtp_closed) {
		sess_finish(s, now);
		return;
	}
	ksock_note_deadline(s->e, smtp_sess_deadline(&s->smtp));
}

void
ksock_sess_timers(struct ksock_sess *s, uint64_t now)
{
	switch (s->state) {
	case KS_CONNECTING:
		if (now >= s->conn_deadline)
			connect_failed(s, -ETIMEDOUT, 1);
		else
			ksock_note_deadline(s->e, s->conn_deadline);
		return;
	case KS_RUNNING:
		if (smtp_sess_deadline(&s->smtp) <= now) {
			smtp_sess_tick(&s->smtp, now);
			if (s->smtp_closed)
				sess_finish(s, now);
			else
				ksock_note_deadline(s->e, smtp_sess_deadline(&s->smtp));
		} else {
			ksock_note_deadline(s->e, smtp_sess_deadline(&s->smtp));
		}
		return;
	case KS_CLOSING:
		if (now >= s->linger_deadline) {
			LOGW(s, "event=tls_job_never_finished action=leak_conn");
			s->e->leaked_tls++;
			s->tls = NULL;	/* freeing a conn with a paused job is not allowed */
			s->paused = KS_P_NONE;
			ksock_sess_destroy(s);
		} else {
			ksock_note_deadline(s->e, s->linger_deadline);
		}
		return;
	default:
		return;
	}
}
