/*
 * Private to the ksock_ files: the engine and session structures and the
 * calls between ksock_engine.c (epoll loop, connect, timers, run list,
 * session lifetime) and ksock_sess.c (the kernel-socket transport of one
 * session under the session core, include/mps.h: mps_ops, connect
 * completion, async wait fds in epoll).
 */
#ifndef MP_KSOCK_INT_H
#define MP_KSOCK_INT_H

#include <stdint.h>

#include "ksock.h"
#include "mps.h"

#define KSOCK_LOG "ksock"
/* poll interval while a job that signals only by callback is paused */
#define KSOCK_CB_POLL_MS 2
#define KSOCK_AFD_MAX 4

enum ksock_sess_state {
	KS_CONNECTING = 0,
	KS_RUNNING,	/* connected: the core runs it (also while it lingers) */
	KS_DEAD,	/* freed at the end of the current poll */
};

struct ksock_sess {
	struct ksock_engine *e;
	struct ksock_sess *prev, *next;	/* all sessions */
	struct ksock_sess *run_next;	/* run list */
	int fd;
	uint32_t id;
	uint32_t ev;			/* epoll events not yet handled */
	uint8_t state;			/* enum ksock_sess_state */
	uint8_t on_run;
	uint8_t async_ready;
	uint8_t abort;			/* ksock_engine_abort: fail at the next turn */
	uint8_t n_afd;
	uint8_t nofd_pause;		/* paused with no wait fd: counted in e->paused_nofd */
	int afd[KSOCK_AFD_MAX];		/* async wait fds in the epoll set */
	int err;			/* connect-time error not yet reported */
	uint64_t conn_deadline;
	struct mps_sess core;
};

struct ksock_engine {
	int ep;
	struct tls_ctx *tls;
	int own_tls;
	struct smtp_config smtp;
	uint32_t connect_timeout_ms;
	unsigned max_sessions;
	struct in_addr source;
	struct in6_addr source6;
	int sndbuf;
	uint32_t next_id;
	unsigned nsess;			/* allocated, including closing */
	unsigned paused_nofd;		/* sessions waiting for a callback-signalled job */
	struct ksock_sess *all;
	struct ksock_sess *run_head, *run_tail;
	uint64_t next_timer;		/* earliest deadline known */
	struct ksock_stats st;		/* transport counters (the core's are in cst) */
	struct mps_stats cst;
	unsigned char rxbuf[KSOCK_RX_BUF];
};

uint64_t ksock_now_ms(void);

/* ksock_engine.c */
void ksock_run_add(struct ksock_sess *s);
void ksock_sess_destroy(struct ksock_sess *s);
void ksock_note_deadline(struct ksock_engine *e, uint64_t when);

/* ksock_sess.c */
extern const struct mps_ops ksock_mps_ops;
/* Handle pending events, async resumptions, reads, writes, closes. */
void ksock_sess_process(struct ksock_sess *s, uint64_t now);
/* Fire due timeouts of a session. */
void ksock_sess_timers(struct ksock_sess *s, uint64_t now);
/* Remove the async fds of @s from the epoll set. */
void ksock_afd_clear(struct ksock_sess *s);

#endif
