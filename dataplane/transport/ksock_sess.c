/*
 * The kernel-socket transport of one session. The session itself (SMTP
 * machine, TLS, tails, async pauses, results) is the session core
 * (include/mps.h, mps_sess.c); this file gives it a non-blocking socket
 * through ksock_mps_ops and drives it from the engine's run list.
 * ksock_sess_process() is the only entry; per call, in order: connect
 * completion (or its failure), a paused TLS job that became ready, an
 * abort, pending output (mps_pump), socket reads (mps_read, which calls
 * ops->recv with the engine-wide buffer; a used-up read budget puts the
 * session back on the run list). The core's ops->close destroys the
 * socket; the memory goes at the end of the engine's poll.
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

/* ---------------------------------------------------------------- */
/* mps_ops                                                            */
/* ---------------------------------------------------------------- */

static ssize_t
op_send(void *t, const void *buf, size_t len)
{
	struct ksock_sess *s = t;

	for (;;) {
		ssize_t k = send(s->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k >= 0)
			return k;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return 0;
		return -errno;
	}
}

static ssize_t
op_recv(void *t, void *buf, size_t len)
{
	struct ksock_sess *s = t;

	for (;;) {
		ssize_t n = recv(s->fd, buf, len, 0);

		if (n >= 0) {
			s->e->st.bytes_in += (uint64_t)n;
			return n;
		}
		if (errno != EINTR)
			return -errno;
	}
}

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

/* A tls_ call paused: watch the job's wait fds. */
static void
op_pause(void *t, struct tls_conn *c)
{
	struct ksock_sess *s = t;
	int fds[KSOCK_AFD_MAX], n;

	ksock_afd_clear(s);
	n = tls_conn_async_fds(c, fds, KSOCK_AFD_MAX);
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
}

static void
op_unpause(void *t)
{
	ksock_afd_clear(t);
}

static void
op_close(void *t, int abort)
{
	/* close(2) resets by itself when unread bytes remain */
	(void)abort;
	ksock_sess_destroy(t);
}

static void
op_wake(void *t)
{
	ksock_run_add(t);
}

const struct mps_ops ksock_mps_ops = {
	.send = op_send,
	.recv = op_recv,
	.pause = op_pause,
	.unpause = op_unpause,
	.close = op_close,
	.wake = op_wake,
};

/* ---------------------------------------------------------------- */
/* processing                                                         */
/* ---------------------------------------------------------------- */

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
			mps_on_connect_failed(&s->core, s->err != 0 ? s->err : -ECANCELED, 0);
			return;
		}
		if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0)
			return;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
			soerr = errno;
		if (soerr != 0) {
			mps_on_connect_failed(&s->core, -soerr, 0);
			return;
		}
		if ((ev & EPOLLOUT) == 0)
			return;
		s->state = KS_RUNNING;
		s->e->st.connected++;
		mps_on_connected(&s->core, now);
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		mps_on_readable(&s->core);
	if (s->async_ready) {
		s->async_ready = 0;
		mps_on_async_ready(&s->core, now);
	}
	if (s->abort) {
		s->abort = 0;
		mps_abort(&s->core, now);
	}
	mps_pump(&s->core, now);
	if (mps_read(&s->core, s->e->rxbuf, sizeof(s->e->rxbuf), now))
		ksock_run_add(s);
	if (s->state != KS_DEAD)
		ksock_note_deadline(s->e, mps_deadline(&s->core));
}

void
ksock_sess_timers(struct ksock_sess *s, uint64_t now)
{
	switch (s->state) {
	case KS_CONNECTING:
		if (now >= s->conn_deadline)
			mps_on_connect_failed(&s->core, -ETIMEDOUT, s->e->connect_timeout_ms);
		else
			ksock_note_deadline(s->e, s->conn_deadline);
		return;
	case KS_RUNNING:
		mps_tick(&s->core, now);
		if (s->state != KS_DEAD)
			ksock_note_deadline(s->e, mps_deadline(&s->core));
		return;
	default:
		return;
	}
}
