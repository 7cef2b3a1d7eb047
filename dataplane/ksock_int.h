/*
 * Private to the ksock_ files: the engine and session structures and the
 * calls between ksock_engine.c (epoll loop, connect, timers, run list,
 * session lifetime) and ksock_sess.c (one connected session: SMTP ops,
 * socket and TLS byte moving, async TLS pauses, close).
 */
#ifndef MP_KSOCK_INT_H
#define MP_KSOCK_INT_H

#include <stdint.h>

#include "ksock.h"

#define KSOCK_LOG "ksock"
/* bytes read from one session per turn before other sessions get theirs */
#define KSOCK_READ_BUDGET (256 * 1024)
/* poll interval while a job that signals only by callback is paused */
#define KSOCK_CB_POLL_MS 2
/* how long a closed session may wait for a paused TLS job to finish */
#define KSOCK_LINGER_MS 2000
#define KSOCK_AFD_MAX 4
/* plaintext buffer for tls_conn_read (one TLS record) */
#define KSOCK_PLAIN_BUF (16384 + 256)

enum ksock_sess_state {
	KS_CONNECTING = 0,
	KS_RUNNING,	/* connected, SMTP session live */
	KS_CLOSING,	/* SMTP done, waiting for a paused TLS job before free */
	KS_DEAD,	/* freed at the end of the current poll */
};

/* Which tls_ call returned TLS_PAUSED / -EINPROGRESS and must be repeated. */
enum ksock_paused {
	KS_P_NONE = 0,
	KS_P_HS,
	KS_P_READ,
	KS_P_WRITE,
	KS_P_SHUTDOWN,
};

/* Bytes a lower layer did not take yet; allocated only while non-empty. */
struct ksock_tail {
	size_t off;
	size_t len;
	unsigned char data[];
};

struct ksock_sess {
	struct ksock_engine *e;
	struct ksock_sess *prev, *next;	/* all sessions */
	struct ksock_sess *run_next;	/* run list */
	int fd;
	uint32_t id;
	uint32_t ev;			/* epoll events not yet handled */
	uint8_t state;			/* enum ksock_sess_state */
	uint8_t paused;			/* enum ksock_paused */
	uint8_t on_run;
	uint8_t hs;			/* TLS handshake in progress */
	uint8_t readable;		/* read side not drained to EAGAIN */
	uint8_t rd_eof;
	uint8_t eof_fed;		/* tls_conn_feed_eof done */
	uint8_t smtp_blocked;		/* ops->write said -EAGAIN */
	uint8_t smtp_closed;		/* ops->close was called */
	uint8_t async_ready;
	uint8_t done_called;
	uint8_t abort;			/* ksock_engine_abort: fail at the next turn */
	uint8_t n_afd;
	uint8_t nofd_pause;		/* paused with no wait fd: counted in e->paused_nofd */
	int afd[KSOCK_AFD_MAX];		/* async wait fds in the epoll set */
	int err;			/* transport error not yet reported */
	uint64_t conn_deadline;
	uint64_t linger_deadline;
	struct ksock_tail *tx;		/* plaintext not taken by socket / TLS */
	struct ksock_tail *rx;		/* ciphertext not taken by TLS */
	struct tls_conn *tls;
	char *host;			/* copy of req.host (or the IP) */
	struct ksock_sess_req req;
	struct smtp_config cfg;
	struct smtp_sess smtp;
};

struct ksock_engine {
	int ep;
	struct tls_ctx *tls;
	int own_tls;
	struct smtp_config smtp;
	uint32_t connect_timeout_ms;
	unsigned max_sessions;
	struct in_addr source;
	int sndbuf;
	uint32_t next_id;
	unsigned nsess;			/* allocated, including closing */
	unsigned leaked_tls;
	unsigned paused_nofd;		/* sessions waiting for a callback-signalled job */		/* conns with a job that never finished */
	struct ksock_sess *all;
	struct ksock_sess *run_head, *run_tail;
	uint64_t next_timer;		/* earliest deadline known */
	struct ksock_stats st;
	unsigned char rxbuf[KSOCK_RX_BUF];
	unsigned char plain[KSOCK_PLAIN_BUF];
};

uint64_t ksock_now_ms(void);

/* ksock_engine.c */
void ksock_run_add(struct ksock_sess *s);
void ksock_sess_destroy(struct ksock_sess *s);
void ksock_note_deadline(struct ksock_engine *e, uint64_t when);

/* ksock_sess.c */
extern const struct smtp_io_ops ksock_smtp_ops;
/* Handle pending events, async resumptions, reads, writes, closes. */
void ksock_sess_process(struct ksock_sess *s, uint64_t now);
/* Fire due timeouts of a connected or closing session. */
void ksock_sess_timers(struct ksock_sess *s, uint64_t now);
/* Remove the async fds of @s from the epoll set. */
void ksock_afd_clear(struct ksock_sess *s);

#endif
