/*
 * The kernel-socket engine: one epoll set (edge-triggered for sockets,
 * level for async TLS wait fds), a run list of sessions with work, and
 * timers. ksock_engine_poll() waits for events, marks the sessions they
 * name (and those whose paused TLS job the tls_ctx reports ready), runs
 * each marked session once through ksock_sess_process(), fires due
 * connect / SMTP / linger timeouts, and frees the sessions that died in
 * this call, so an event left in the same epoll batch never meets freed
 * memory.
 *
 * Timers are a scan of all sessions, made only when the earliest deadline
 * anyone noted (ksock_note_deadline, updated after every session turn) is
 * due; the scan recomputes it. Sessions are opened by ksock_sess_open()
 * with a non-blocking connect; a failure seen at once is reported from
 * the next poll, so no callback ever runs inside ksock_sess_open().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ksock_int.h"
#include "mp_log.h"

#define EV_BATCH 256
#define READY_BATCH 64

uint64_t
ksock_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
set_err(char *err, size_t errlen, const char *fmt, const char *what)
{
	if (err != NULL && errlen != 0)
		snprintf(err, errlen, fmt, what);
}

/* A source address that is not this host's would fail every session's
 * bind() one by one, each a deferral with the same reason: refuse it at
 * start instead, where the operator sees it once. @return 0 or -errno */
static int
source_check(int family, const void *addr, char *err, size_t errlen)
{
	union mp_sockaddr u = family == AF_INET ?
		mp_sockaddr_v4(*(const struct in_addr *)addr, 0) :
		mp_sockaddr_v6((const struct in6_addr *)addr, 0);
	char ip[MP_SOCKADDR_STR];
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;

	if (fd < 0 || bind(fd, &u.sa, mp_sockaddr_len(&u)) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc < 0 && err != NULL && errlen != 0)
		snprintf(err, errlen, "source address %s: %s", mp_sockaddr_ntop(&u, ip,
			sizeof(ip)), strerror(-rc));
	return rc;
}

struct ksock_engine *
ksock_engine_new(const struct ksock_conf *conf, char *err, size_t errlen)
{
	static const struct ksock_conf defaults;
	struct ksock_engine *e;
	char terr[256] = "";

	if (conf == NULL)
		conf = &defaults;
	if ((conf->source.s_addr != 0 && source_check(AF_INET, &conf->source, err, errlen) < 0) ||
	    (!IN6_IS_ADDR_UNSPECIFIED(&conf->source6) &&
	     source_check(AF_INET6, &conf->source6, err, errlen) < 0))
		return NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		set_err(err, errlen, "%s", "out of memory");
		return NULL;
	}
	e->ep = epoll_create1(EPOLL_CLOEXEC);
	if (e->ep < 0) {
		set_err(err, errlen, "epoll_create1: %s", strerror(errno));
		free(e);
		return NULL;
	}
	if (conf->smtp != NULL)
		e->smtp = *conf->smtp;
	else
		smtp_config_defaults(&e->smtp);
	e->connect_timeout_ms = conf->connect_timeout_ms != 0 ?
		conf->connect_timeout_ms : KSOCK_CONNECT_TIMEOUT_DEFAULT;
	e->max_sessions = conf->max_sessions != 0 ? conf->max_sessions :
		KSOCK_MAX_SESSIONS_DEFAULT;
	e->source = conf->source;
	e->source6 = conf->source6;
	e->sndbuf = conf->sndbuf;
	e->next_timer = UINT64_MAX;
	if (conf->tls != NULL) {
		e->tls = conf->tls;
	} else {
		e->tls = tls_ctx_new(conf->tls_conf, terr, sizeof(terr));
		if (e->tls == NULL) {
			set_err(err, errlen, "TLS context: %s", terr);
			close(e->ep);
			free(e);
			return NULL;
		}
		e->own_tls = 1;
	}
	e->st.sess_bytes = sizeof(struct ksock_sess);
	return e;
}

static void
sess_free(struct ksock_sess *s)
{
	struct ksock_engine *e = s->e;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		e->all = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	e->nsess--;
	mps_sess_fini(&s->core);
	free(s);
}

void
ksock_engine_free(struct ksock_engine *e)
{
	if (e == NULL)
		return;
	while (e->all != NULL) {
		struct ksock_sess *s = e->all;

		if (s->state != KS_DEAD)
			ksock_sess_destroy(s);
		/* a paused job's conn is not freed under OpenSSL (counted) */
		sess_free(s);
	}
	if (e->own_tls) {
		if (e->cst.leaked_tls == 0)
			tls_ctx_free(e->tls);
		else
			MP_LOG(MP_LOG_WARN, KSOCK_LOG, "event=tls_ctx_kept leaked_conns=%llu",
				(unsigned long long)e->cst.leaked_tls);
	}
	close(e->ep);
	free(e);
}

void
ksock_run_add(struct ksock_sess *s)
{
	struct ksock_engine *e = s->e;

	if (s->on_run || s->state == KS_DEAD)
		return;
	s->on_run = 1;
	s->run_next = NULL;
	if (e->run_tail != NULL)
		e->run_tail->run_next = s;
	else
		e->run_head = s;
	e->run_tail = s;
}

void
ksock_note_deadline(struct ksock_engine *e, uint64_t when)
{
	if (when < e->next_timer)
		e->next_timer = when;
}

/* Release the socket now; the memory goes at the end of the poll. */
void
ksock_sess_destroy(struct ksock_sess *s)
{
	if (s->state == KS_DEAD)
		return;
	ksock_afd_clear(s);
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	s->state = KS_DEAD;
}

int
ksock_sess_open(struct ksock_engine *e, const struct ksock_sess_req *req)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
	struct ksock_sess *s;
	char ip[MP_SOCKADDR_STR];
	int one = 1, rc;

	if (e == NULL || req == NULL || req->next_txn == NULL || req->result == NULL ||
	    mp_sockaddr_len(&req->addr) == 0 || (unsigned)req->policy >= SMTP_TLS_POLICY_LAST)
		return -EINVAL;
	if (e->cst.active >= e->max_sessions)
		return -EMFILE;
	s = malloc(sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	memset(s, 0, offsetof(struct ksock_sess, core));
	s->e = e;
	s->fd = -1;
	mp_sockaddr_str(&req->addr, ip, sizeof(ip));
	s->id = req->id != 0 ? req->id : ++e->next_id;
	rc = mps_sess_init(&s->core, req, &e->smtp, e->tls, &e->cst, &ksock_mps_ops, s, s->id);
	if (rc < 0) {
		free(s);
		return rc;
	}
	s->fd = socket(req->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0 && errno == EAFNOSUPPORT) {
		/* a host without IPv6: a connect failure of this session (its
		 * recipients deferred), not an engine error the caller would
		 * retry forever; an unconnected socket stands in for the fd */
		s->err = -EAFNOSUPPORT;
		s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (s->fd < 0) {
		rc = -errno;
		mps_sess_fini(&s->core);
		free(s);
		return rc;
	}
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (e->sndbuf > 0)
		setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &e->sndbuf, sizeof(e->sndbuf));
	/* each family binds to its own source, if one is set; the port is
	 * left to connect() (IP_BIND_ADDRESS_NO_PORT, IPv6 sockets too), so
	 * a bound source does not cap the sessions at one port each */
	if (s->err == 0 && ((req->addr.sa.sa_family == AF_INET && e->source.s_addr != 0) ||
	    (req->addr.sa.sa_family == AF_INET6 && !IN6_IS_ADDR_UNSPECIFIED(&e->source6)))) {
		union mp_sockaddr src = req->addr.sa.sa_family == AF_INET ?
			mp_sockaddr_v4(e->source, 0) : mp_sockaddr_v6(&e->source6, 0);

		setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(s->fd, &src.sa, mp_sockaddr_len(&src)) < 0)
			s->err = -errno;
	}
	/* connect first: a socket not yet connecting polls as hung up */
	if (s->err == 0 && connect(s->fd, &req->addr.sa, mp_sockaddr_len(&req->addr)) < 0 &&
	    errno != EINPROGRESS)
		s->err = -errno;
	ev.data.ptr = s;
	if (epoll_ctl(e->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
		rc = -errno;
		close(s->fd);
		mps_sess_fini(&s->core);
		free(s);
		return rc;
	}
	/* linked in: from here on the session is reported through callbacks */
	s->next = e->all;
	if (e->all != NULL)
		e->all->prev = s;
	e->all = s;
	e->nsess++;
	e->st.sessions++;
	s->state = KS_CONNECTING;
	s->conn_deadline = ksock_now_ms() + e->connect_timeout_ms;
	ksock_note_deadline(e, s->conn_deadline);
	if (s->err != 0)
		ksock_run_add(s);
	MP_LOG(MP_LOG_DEBUG, KSOCK_LOG, "sess=%u event=open host=%s addr=%s policy=%d err=%d",
		s->id, s->core.host, ip, req->policy, s->err);
	return 0;
}

static void
run_timers(struct ksock_engine *e, uint64_t now)
{
	struct ksock_sess *s;

	e->next_timer = UINT64_MAX;
	for (s = e->all; s != NULL; s = s->next)
		if (s->state != KS_DEAD)
			ksock_sess_timers(s, now);
}

static void
reap(struct ksock_engine *e)
{
	struct ksock_sess *s = e->all, *next;

	for (; s != NULL; s = next) {
		next = s->next;
		if (s->state == KS_DEAD && !s->on_run)
			sess_free(s);
	}
}

int
ksock_engine_watch(struct ksock_engine *e, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	return epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int
ksock_engine_poll(struct ksock_engine *e, int timeout_ms)
{
	struct epoll_event evs[EV_BATCH];
	struct tls_conn *ready[READY_BATCH];
	uint64_t now = ksock_now_ms();
	int n, worked = 0;
	unsigned k;

	if (e->run_head != NULL) {
		timeout_ms = 0;
	} else if (e->paused_nofd != 0 &&
	    (timeout_ms < 0 || timeout_ms > KSOCK_CB_POLL_MS)) {
		timeout_ms = KSOCK_CB_POLL_MS;
	}
	if (e->run_head == NULL && e->next_timer != UINT64_MAX) {
		uint64_t wait = e->next_timer > now ? e->next_timer - now : 0;

		if (timeout_ms < 0 || wait < (uint64_t)timeout_ms)
			timeout_ms = wait > 60000 ? 60000 : (int)wait;
	}
	n = epoll_wait(e->ep, evs, EV_BATCH, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return -errno;
	}
	for (int i = 0; i < n; i++) {
		uintptr_t p = (uintptr_t)evs[i].data.ptr;
		struct ksock_sess *s = (struct ksock_sess *)(p & ~(uintptr_t)1);

		if (p == 0)
			continue;	/* a ksock_engine_watch() fd: it only wakes us */
		if (p & 1)
			s->async_ready = 1;
		else
			s->ev |= evs[i].events;
		ksock_run_add(s);
	}
	while ((k = tls_ctx_ready_drain(e->tls, ready, READY_BATCH)) != 0) {
		for (unsigned i = 0; i < k; i++) {
			/* the owner of a session's tls_conn is its core */
			struct mps_sess *c = tls_conn_owner(ready[i]);
			struct ksock_sess *s = c != NULL ? c->t : NULL;

			if (s != NULL) {
				s->async_ready = 1;
				ksock_run_add(s);
			}
		}
		if (k < READY_BATCH)
			break;
	}
	now = ksock_now_ms();
	/* one turn for each session queued now; re-queued ones wait for the next poll */
	{
		struct ksock_sess *s = e->run_head, *next;

		e->run_head = e->run_tail = NULL;
		for (; s != NULL; s = next) {
			next = s->run_next;
			s->on_run = 0;
			ksock_sess_process(s, now);
			worked++;
		}
	}
	now = ksock_now_ms();
	if (now >= e->next_timer)
		run_timers(e, now);
	reap(e);
	return worked;
}

void
ksock_engine_abort(struct ksock_engine *e)
{
	for (struct ksock_sess *s = e->all; s != NULL; s = s->next) {
		if (s->state == KS_CONNECTING || s->state == KS_RUNNING) {
			s->abort = 1;
			ksock_run_add(s);
		}
	}
}

unsigned
ksock_engine_active(const struct ksock_engine *e)
{
	return e->cst.active;
}

void
ksock_engine_stats(const struct ksock_engine *e, struct ksock_stats *st)
{
	*st = e->st;
	st->tls_started = e->cst.tls_started;
	st->tls_ok = e->cst.tls_ok;
	st->tls_failed = e->cst.tls_failed;
	st->tls_resumed = e->cst.tls_resumed;
	st->async_pauses = e->cst.async_pauses;
	st->tails = e->cst.tails;
	st->write_blocked = e->cst.write_blocked;
	st->bytes_out = e->cst.bytes_out;
	st->connect_failed = e->cst.connect_failed;
	st->connect_timeouts = e->cst.connect_timeouts;
	st->active = e->cst.active;
}

struct tls_ctx *
ksock_engine_tls(const struct ksock_engine *e)
{
	return e->tls;
}
