/*
 * The userspace-TCP session engine (include/usock.h): the utcp transport
 * of the session core. A session is a pool slot holding a struct
 * mps_sess and its utcp connection. usock_on_event() maps stack events
 * onto the core (connected, readable or peer FIN -> mps_on_readable and
 * a turn whose mps_read takes the bytes through ops->recv = utcp_recv,
 * writable -> mps_pump, error -> connect failure or mps_on_error);
 * usock_poll() runs, in order: the slots of sessions that
 * ended go back to the pool, paused TLS jobs whose wait fd (private
 * epoll, checked with a zero timeout) or ctx ready list says ready, the
 * run list (sessions with a deferred turn: a connect that failed at
 * open, an abort, a read budget used up), and the timers (connect, SMTP,
 * linger) when the earliest deadline noted is due.
 *
 * A slot is reused only from usock_poll(), after the stack's event batch
 * was dispatched, so an event left in that batch for a session that
 * ended meets a dead slot (ignored), never a new session.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "mp_log.h"
#include "usock.h"

#define USOCK_LOG "usock"
#define LOGD(s, fmt, ...) MP_LOG(MP_LOG_DEBUG, USOCK_LOG, "sess=%u " fmt, (s)->id, ##__VA_ARGS__)
#define LOGW(s, fmt, ...) MP_LOG(MP_LOG_WARN, USOCK_LOG, "sess=%u " fmt, (s)->id, ##__VA_ARGS__)

#define AFD_MAX 4
#define EV_BATCH 64
#define READY_BATCH 64

enum usock_sess_state {
	US_FREE = 0,
	US_CONNECTING,
	US_RUNNING,	/* connected: the core runs it (also while it lingers) */
	US_DEAD,	/* slot back to the pool at the next usock_poll */
};

struct usock_sess {
	struct usock_engine *e;
	struct utcp_conn *c;
	struct usock_sess *run_next;
	struct usock_sess *dead_next;
	uint32_t id;
	uint8_t state;		/* enum usock_sess_state */
	uint8_t on_run;
	uint8_t async_ready;
	uint8_t abort;
	uint8_t n_afd;
	int afd[AFD_MAX];
	int err;		/* connect failure to report from usock_poll */
	uint64_t conn_deadline;	/* ms */
	struct mps_sess core;
};

struct usock_engine {
	struct utcp_stack *stack;
	struct tls_ctx *tls;
	int own_tls;
	struct smtp_config smtp;
	uint32_t connect_timeout_ms;
	uint32_t source;
	unsigned max;
	struct usock_sess *pool;
	struct usock_sess **free;
	unsigned nfree;
	struct usock_sess *run_head, *run_tail;
	struct usock_sess *dead;
	int ep;			/* async wait fds */
	unsigned afd_sess;	/* sessions with fds in ep */
	uint64_t next_timer;	/* ms */
	uint64_t now_ms;
	uint32_t next_id;
	struct usock_stats st;
	unsigned char rbuf[MPS_FEED_CHUNK];
};

static void
set_err(char *err, size_t errlen, const char *what)
{
	if (err != NULL && errlen != 0)
		snprintf(err, errlen, "%s", what);
}

static void
note_deadline(struct usock_engine *e, uint64_t when)
{
	if (when < e->next_timer)
		e->next_timer = when;
}

static void
run_add(struct usock_sess *s)
{
	struct usock_engine *e = s->e;

	if (s->on_run || s->state == US_DEAD || s->state == US_FREE)
		return;
	s->on_run = 1;
	s->run_next = NULL;
	if (e->run_tail != NULL)
		e->run_tail->run_next = s;
	else
		e->run_head = s;
	e->run_tail = s;
}

/* ---------------------------------------------------------------- */
/* mps_ops                                                            */
/* ---------------------------------------------------------------- */

static ssize_t
op_send(void *t, const void *buf, size_t len)
{
	struct usock_sess *s = t;
	ssize_t n = utcp_send(s->c, buf, len);

	if (n == -ENOBUFS)
		return 0;	/* send-buffer pool empty for now: a later turn */
	return n;
}

static ssize_t
op_recv(void *t, void *buf, size_t len)
{
	struct usock_sess *s = t;
	ssize_t n = utcp_recv(s->c, buf, len);

	if (n > 0)
		s->e->st.bytes_in += (uint64_t)n;
	else if (n < 0 && n != -EAGAIN)
		return -ECONNRESET;	/* -ENOTCONN: the connection died under us */
	return n;
}

static void
afd_clear(struct usock_sess *s)
{
	for (unsigned i = 0; i < s->n_afd; i++)
		epoll_ctl(s->e->ep, EPOLL_CTL_DEL, s->afd[i], NULL);
	if (s->n_afd != 0)
		s->e->afd_sess--;
	s->n_afd = 0;
}

static void
op_pause(void *t, struct tls_conn *c)
{
	struct usock_sess *s = t;
	int fds[AFD_MAX], n;

	afd_clear(s);
	n = tls_conn_async_fds(c, fds, AFD_MAX);
	for (int i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };

		if (epoll_ctl(s->e->ep, EPOLL_CTL_ADD, fds[i], &ev) == 0)
			s->afd[s->n_afd++] = fds[i];
	}
	if (s->n_afd != 0)
		s->e->afd_sess++;
	/* no fd: the ctx ready list, drained on every poll, signals it */
}

static void
op_unpause(void *t)
{
	afd_clear(t);
}

static void
op_close(void *t, int abort)
{
	struct usock_sess *s = t;

	afd_clear(s);
	if (s->c != NULL) {
		utcp_conn_set_user(s->c, NULL);
		if (abort)
			utcp_abort(s->c);
		else
			utcp_close(s->c);
		s->c = NULL;
	}
	s->state = US_DEAD;
	s->dead_next = s->e->dead;
	s->e->dead = s;
}

static void
op_wake(void *t)
{
	run_add(t);
}

static const struct mps_ops usock_mps_ops = {
	.send = op_send,
	.recv = op_recv,
	.pause = op_pause,
	.unpause = op_unpause,
	.close = op_close,
	.wake = op_wake,
};

/* ---------------------------------------------------------------- */
/* engine                                                             */
/* ---------------------------------------------------------------- */

struct usock_engine *
usock_engine_new(const struct usock_conf *conf, char *err, size_t errlen)
{
	struct usock_engine *e;
	char terr[256] = "";

	if (conf == NULL || conf->stack == NULL) {
		set_err(err, errlen, "no utcp stack");
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	e->ep = -1;
	e->stack = conf->stack;
	if (conf->smtp != NULL)
		e->smtp = *conf->smtp;
	else
		smtp_config_defaults(&e->smtp);
	e->connect_timeout_ms = conf->connect_timeout_ms != 0 ? conf->connect_timeout_ms :
		USOCK_CONNECT_TIMEOUT_DEFAULT;
	e->source = conf->source;
	e->max = conf->max_sessions != 0 ? conf->max_sessions : USOCK_MAX_SESSIONS_DEFAULT;
	e->next_timer = UINT64_MAX;
	e->pool = calloc(e->max, sizeof(*e->pool));
	e->free = calloc(e->max, sizeof(*e->free));
	e->ep = epoll_create1(EPOLL_CLOEXEC);
	if (e->pool == NULL || e->free == NULL || e->ep < 0) {
		set_err(err, errlen, e->ep < 0 ? "epoll_create1 failed" : "out of memory");
		usock_engine_free(e);
		return NULL;
	}
	for (unsigned i = 0; i < e->max; i++) {
		e->pool[i].e = e;
		e->free[e->nfree++] = &e->pool[e->max - 1 - i];
	}
	if (conf->tls != NULL) {
		e->tls = conf->tls;
	} else {
		e->tls = tls_ctx_new(conf->tls_conf, terr, sizeof(terr));
		if (e->tls == NULL) {
			if (err != NULL && errlen != 0)
				snprintf(err, errlen, "TLS context: %s", terr);
			usock_engine_free(e);
			return NULL;
		}
		e->own_tls = 1;
	}
	e->st.sess_bytes = sizeof(struct usock_sess);
	return e;
}

void
usock_engine_free(struct usock_engine *e)
{
	if (e == NULL)
		return;
	for (unsigned i = 0; e->pool != NULL && i < e->max; i++) {
		struct usock_sess *s = &e->pool[i];

		if (s->state == US_FREE)
			continue;
		afd_clear(s);
		if (s->c != NULL) {
			utcp_conn_set_user(s->c, NULL);
			utcp_abort(s->c);
			s->c = NULL;
		}
		mps_sess_fini(&s->core);
		s->state = US_FREE;
	}
	if (e->own_tls && e->tls != NULL) {
		if (e->st.core.leaked_tls == 0)
			tls_ctx_free(e->tls);
		else
			MP_LOG(MP_LOG_WARN, USOCK_LOG, "event=tls_ctx_kept leaked_conns=%llu",
				(unsigned long long)e->st.core.leaked_tls);
	}
	if (e->ep >= 0)
		close(e->ep);
	free(e->pool);
	free(e->free);
	free(e);
}

int
usock_sess_open(struct usock_engine *e, const struct mps_req *req)
{
	struct usock_sess *s;
	uint32_t id;
	int rc;

	if (e == NULL || req == NULL)
		return -EINVAL;
	if (e->nfree == 0)
		return -EMFILE;
	s = e->free[e->nfree - 1];
	id = req->id != 0 ? req->id : ++e->next_id;
	memset(s, 0, offsetof(struct usock_sess, core));
	s->e = e;
	s->id = id;
	rc = mps_sess_init(&s->core, req, &e->smtp, e->tls, &e->st.core, &usock_mps_ops, s, id);
	if (rc < 0)
		return rc;
	e->nfree--;
	s->state = US_CONNECTING;
	e->st.sessions++;
	s->conn_deadline = e->now_ms + e->connect_timeout_ms;
	note_deadline(e, s->conn_deadline);
	/* utcp is IPv4 only: an IPv6 server is a connect failure (recipients
	 * deferred, "... failed: Address family not supported"), never a bounce */
	if (req->addr.sa.sa_family != AF_INET) {
		s->c = NULL;
		errno = EAFNOSUPPORT;
	} else {
		s->c = utcp_connect(e->stack, e->source, ntohl(req->addr.sin.sin_addr.s_addr),
			ntohs(req->addr.sin.sin_port), s);
	}
	if (s->c == NULL) {
		/* no port or connection object: reported from the next poll */
		s->err = errno != 0 ? -errno : -ENOMEM;
		run_add(s);
	}
	LOGD(s, "event=open host=%s port=%u err=%d", s->core.host,
		mp_sockaddr_port(&req->addr), s->err);
	return 0;
}

/* ---------------------------------------------------------------- */
/* sessions                                                           */
/* ---------------------------------------------------------------- */

static int
reason_errno(enum utcp_err_reason r)
{
	switch (r) {
	case UTCP_ERR_REFUSED:
		return -ECONNREFUSED;
	case UTCP_ERR_TIMEOUT:
		return -ETIMEDOUT;
	case UTCP_ERR_RESET:
		return -ECONNRESET;
	case UTCP_ERR_UNREACHABLE:
		return -EHOSTUNREACH;
	default:
		return -EPIPE;
	}
}

/* Read what utcp has for the session (mps_read); a used-up budget: a later turn. */
static void
sess_read(struct usock_sess *s, uint64_t now)
{
	if (mps_read(&s->core, s->e->rbuf, sizeof(s->e->rbuf), now))
		run_add(s);
}

/* One turn: async resumption, abort, output, input. */
static void
sess_turn(struct usock_sess *s, uint64_t now)
{
	if (s->state == US_CONNECTING) {
		if (s->err != 0 || s->abort)
			mps_on_connect_failed(&s->core, s->err != 0 ? s->err : -ECANCELED, 0);
		return;
	}
	if (s->state != US_RUNNING)
		return;
	if (s->async_ready) {
		s->async_ready = 0;
		mps_on_async_ready(&s->core, now);
	}
	if (s->abort) {
		s->abort = 0;
		mps_abort(&s->core, now);
	}
	mps_pump(&s->core, now);
	sess_read(s, now);
	if (s->state == US_RUNNING)
		note_deadline(s->e, mps_deadline(&s->core));
}

void
usock_on_event(struct usock_engine *e, const struct utcp_event *ev, uint64_t now_us)
{
	struct usock_sess *s = ev->user;
	uint64_t now = now_us / 1000;

	e->now_ms = now;
	if (s == NULL || s < e->pool || s >= e->pool + e->max || s->c != ev->conn ||
	    (s->state != US_CONNECTING && s->state != US_RUNNING))
		return;
	switch (ev->type) {
	case UTCP_EV_CONNECTED:
		if (s->state != US_CONNECTING)
			return;
		s->state = US_RUNNING;
		e->st.connected++;
		mps_on_connected(&s->core, now);
		break;
	case UTCP_EV_READABLE:
	case UTCP_EV_PEER_CLOSED:
		mps_on_readable(&s->core);
		break;
	case UTCP_EV_WRITABLE:
		break;
	case UTCP_EV_CLOSED:
		/* both directions closed under us: read what is left, then end */
		mps_on_readable(&s->core);
		sess_turn(s, now);
		if (s->state == US_RUNNING)
			mps_on_error(&s->core, -EPIPE, now);
		return;
	case UTCP_EV_ERROR:
		if (s->state == US_CONNECTING) {
			mps_on_connect_failed(&s->core, reason_errno(ev->reason), 0);
			return;
		}
		e->st.resets++;
		/* bytes that arrived before the reset still count */
		mps_on_readable(&s->core);
		sess_read(s, now);
		mps_on_error(&s->core, reason_errno(ev->reason), now);
		return;
	default:
		return;
	}
	sess_turn(s, now);
}

static void
reap(struct usock_engine *e)
{
	struct usock_sess *s = e->dead, *next, *keep = NULL;

	for (; s != NULL; s = next) {
		next = s->dead_next;
		if (s->on_run) {
			s->dead_next = keep;
			keep = s;
			continue;
		}
		mps_sess_fini(&s->core);
		s->state = US_FREE;
		e->free[e->nfree++] = s;
	}
	e->dead = keep;
}

static void
run_timers(struct usock_engine *e, uint64_t now)
{
	e->next_timer = UINT64_MAX;
	for (unsigned i = 0; i < e->max; i++) {
		struct usock_sess *s = &e->pool[i];

		if (s->state == US_CONNECTING) {
			if (now >= s->conn_deadline && s->err == 0)
				mps_on_connect_failed(&s->core, -ETIMEDOUT, e->connect_timeout_ms);
			else
				note_deadline(e, s->conn_deadline);
		} else if (s->state == US_RUNNING) {
			mps_tick(&s->core, now);
			if (s->state == US_RUNNING)
				note_deadline(e, mps_deadline(&s->core));
		}
	}
}

int
usock_poll(struct usock_engine *e, uint64_t now_us)
{
	struct tls_conn *ready[READY_BATCH];
	uint64_t now = now_us / 1000;
	struct usock_sess *s, *next;
	int work = 0;
	unsigned k;

	e->now_ms = now;
	if (e->dead != NULL) {
		reap(e);
		work++;
	}
	if (e->afd_sess != 0) {
		struct epoll_event evs[EV_BATCH];
		int n = epoll_wait(e->ep, evs, EV_BATCH, 0);

		for (int i = 0; i < n; i++) {
			s = evs[i].data.ptr;
			s->async_ready = 1;
			run_add(s);
		}
	}
	while ((k = tls_ctx_ready_drain(e->tls, ready, READY_BATCH)) != 0) {
		for (unsigned i = 0; i < k; i++) {
			/* the owner of a session's tls_conn is its core */
			struct mps_sess *c = tls_conn_owner(ready[i]);

			s = c != NULL ? c->t : NULL;
			if (s != NULL) {
				s->async_ready = 1;
				run_add(s);
			}
		}
		if (k < READY_BATCH)
			break;
	}
	/* one turn for each session queued now; re-queued ones wait */
	s = e->run_head;
	e->run_head = e->run_tail = NULL;
	for (; s != NULL; s = next) {
		next = s->run_next;
		s->on_run = 0;
		sess_turn(s, now);
		work++;
	}
	if (now >= e->next_timer)
		run_timers(e, now);
	return work;
}

void
usock_engine_abort(struct usock_engine *e)
{
	for (unsigned i = 0; i < e->max; i++) {
		struct usock_sess *s = &e->pool[i];

		if (s->state == US_CONNECTING || s->state == US_RUNNING) {
			s->abort = 1;
			run_add(s);
		}
	}
}

unsigned
usock_engine_active(const struct usock_engine *e)
{
	return e->st.core.active;
}

void
usock_engine_stats(const struct usock_engine *e, struct usock_stats *st)
{
	*st = e->st;
	st->connect_failed = e->st.core.connect_failed;
	st->connect_timeouts = e->st.core.connect_timeouts;
	st->pool_free = e->nfree;
}

struct tls_ctx *
usock_engine_tls(const struct usock_engine *e)
{
	return e->tls;
}
