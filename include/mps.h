/*
 * Session core (mps_, "mailpump session"): one SMTP session (struct
 * smtp_sess) over an optional TLS connection (struct tls_conn) over a byte
 * transport, and everything between them that does not depend on what the
 * transport is: the smtp_io_ops of the machine, plaintext / ciphertext
 * moving, the tail of a write the transport did not take, STARTTLS and
 * the handshake result, async TLS pauses, SMTP timeouts, the orderly
 * close (close_notify) and the exactly-one-result / done-last
 * bookkeeping. DPDK-free and socket-free: the kernel-socket engine
 * (ksock_) and the userspace-TCP engine (usock_) both embed a struct
 * mps_sess and plug their transport in through struct mps_ops.
 *
 * Call order, from the transport:
 *
 *   mps_sess_init()                   when the session is opened
 *   mps_on_connected() or mps_on_connect_failed()
 *   any of mps_on_readable() (the transport has something to read),
 *   mps_read() (on a turn: reads through ops->recv), mps_pump() (the
 *   transport has room, or just a turn), mps_on_error(),
 *   mps_on_async_ready(), mps_abort(), mps_tick() (at mps_deadline());
 *   a transport that is handed bytes instead of reading them calls
 *   mps_on_input() (while mps_input_ready()) and mps_on_eof() itself
 *   ... until the core calls ops->close: the transport then releases the
 *   connection; the memory of the session may go once the current mps_
 *   call has returned (every mps_ call after that is a no-op).
 *   mps_sess_fini()                   frees what the core holds
 *
 * The core never calls back into the transport's event loop: ops->send
 * only queues bytes (taking what fits), ops->recv only takes bytes already
 * received, ops->pause / unpause only (un)register the async wait fds of
 * the tls_conn, ops->close only releases.
 * The request callbacks (next_txn, result, done) are made from inside the
 * mps_ calls; done is the last one, before ops->close.
 *
 * Memory: a session is one fixed-size struct (the SMTP machine with its
 * command buffer, a tail buffer of SMTP_OUT_MAX bytes for a write the
 * transport took only part of, the host name) plus the tls_conn while TLS
 * is up. The only other allocation is a ciphertext tail when TLS refuses
 * part of a feed; a transport that feeds at most MPS_FEED_CHUNK bytes at a
 * time (mps_read() with a buffer of that size) and stops while
 * !mps_input_ready() (mps_read() does) never causes one.
 */
#ifndef MP_MPS_H
#define MP_MPS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mp_sockaddr.h"
#include "smtp.h"
#include "tls.h"

/** Longest host name kept (SNI, verify, cache key). */
#define MPS_HOST_MAX 256
/** How long a closed session waits for a paused TLS job (ms). */
#define MPS_LINGER_MS 2000
/** Feed size that never overflows the TLS feed bound (see above). */
#define MPS_FEED_CHUNK 16384
/** Plaintext buffer for tls_conn_read (one TLS record). */
#define MPS_PLAIN_BUF (16384 + 256)
/** Bytes one mps_read() call takes before the other sessions get theirs. */
#define MPS_READ_BUDGET (256 * 1024)

/**
 * One SMTP session to one server address, as an engine's caller asks for
 * it (ksock_sess_open, usock_sess_open). Copied at open (host too); smtp,
 * if given, must outlive the session.
 */
struct mps_req {
	const char *host;		/**< server host name: SNI, verify, cache key; NULL = the IP */
	union mp_sockaddr addr;		/**< address (IPv4 or IPv6) + port to connect to */
	enum smtp_tls_policy policy;	/**< overrides smtp->tls_policy */
	int implicit_tls;		/**< TLS before the greeting (port 465); ORed with smtp's */
	const struct smtp_config *smtp;	/**< NULL = engine default */
	/** Next message for this connection (see smtp_io_ops.next_txn).
	 *  @return 0, or -ENOENT when there is none for this connection. */
	int  (*next_txn)(void *user, struct smtp_txn *txn);
	/** One per recipient, exactly once. @p tls is the session's TLS
	 *  record once a handshake was attempted (also when it failed: it
	 *  carries the verify reason), NULL if no TLS was tried. */
	void (*result)(void *user, const struct smtp_rcpt_result *r,
		const struct tls_record *tls);
	/** The session's last callback (may be NULL). */
	void (*done)(void *user, const struct smtp_sess_info *info,
		const struct tls_record *tls);
	void *user;
	uint32_t id;			/**< session id for logs; 0 = engine assigns */
	/** If set, receives the session core at open, for mps_wake(); valid
	 *  until the done callback (NULL it when the open fails). */
	struct mps_sess **core;
};

/** Counters a set of sessions shares (one per engine), monotonic. */
struct mps_stats {
	uint64_t tls_started;		/**< handshakes begun */
	uint64_t tls_ok;
	uint64_t tls_failed;
	uint64_t tls_resumed;
	uint64_t async_pauses;		/**< TLS_PAUSED / -EINPROGRESS seen */
	uint64_t tails;			/**< partial writes/feeds that needed a tail */
	uint64_t write_blocked;		/**< SMTP writes refused for now */
	uint64_t bytes_out;		/**< taken by ops->send, ciphertext included */
	uint64_t connect_failed;	/**< mps_on_connect_failed(), not timed out */
	uint64_t connect_timeouts;	/**< mps_on_connect_failed(), timed out */
	uint64_t leaked_tls;		/**< conns whose paused job never finished */
	unsigned active;		/**< sessions whose done has not run */
};

/** What a transport provides. */
struct mps_ops {
	/** Queue bytes for the peer, taking what fits.
	 *  @return bytes taken (0..len; short or 0 = full, the transport
	 *  calls mps_pump() when it has room), or a fatal negative errno. */
	ssize_t (*send)(void *t, const void *buf, size_t len);
	/** Take up to @p len bytes the peer sent into @p buf, without
	 *  waiting (called from mps_read() only).
	 *  @return bytes taken (1..len); 0 at the end of the stream, all
	 *  bytes taken; -EAGAIN when there is nothing more for now (the
	 *  transport calls mps_on_readable() when there is); or another
	 *  negative errno: the connection failed (given to mps_on_error()). */
	ssize_t (*recv)(void *t, void *buf, size_t len);
	/** A TLS call of @p c paused: watch tls_conn_async_fds(c) and call
	 *  mps_on_async_ready() when one is readable (may be NULL: the
	 *  transport polls, or relies on tls_ctx_ready_drain). */
	void (*pause)(void *t, struct tls_conn *c);
	/** The pause is over: stop watching (may be NULL). */
	void (*unpause)(void *t);
	/** The core is done with the transport (called once, last): close
	 *  it; @p abort: the session ended on an error or mps_abort() (reset
	 *  the connection rather than close it in order, if the transport can). */
	void (*close)(void *t, int abort);
	/** Give the session a turn soon (mps_pump from the transport's
	 *  loop); only queues it, never calls back (may be NULL: the
	 *  transport turns every session often enough anyway). */
	void (*wake)(void *t);
};

enum mps_state {
	MPS_CONNECTING = 0,
	MPS_RUNNING,	/**< connected, SMTP session live */
	MPS_CLOSING,	/**< SMTP done, waiting for a paused TLS job */
	MPS_CLOSED,	/**< ops->close called */
	MPS_STATE_LAST
};

/** Which tls_ call paused and must be repeated. */
enum mps_paused {
	MPS_P_NONE = 0,
	MPS_P_HS,
	MPS_P_READ,
	MPS_P_WRITE,
	MPS_P_SHUTDOWN,
	MPS_P_LAST
};

struct mps_tail;

/** One session. Embed it in the transport's structure; fields private. */
struct mps_sess {
	const struct mps_ops *ops;
	void *t;			/* the transport's session */
	struct tls_ctx *tctx;
	struct mps_stats *st;
	uint32_t id;
	uint8_t state;			/* enum mps_state */
	uint8_t paused;			/* enum mps_paused */
	uint8_t hs;			/* handshake in progress */
	uint8_t rd_more;		/* ops->recv may have bytes: no -EAGAIN since mps_on_readable */
	uint8_t rd_eof;			/* transport end of stream seen */
	uint8_t eof_fed;		/* tls_conn_feed_eof done */
	uint8_t smtp_blocked;		/* ops->write said -EAGAIN */
	uint8_t smtp_closed;		/* smtp ops->close was called */
	uint8_t done_called;
	uint8_t aborted;		/* mps_abort() ended it */
	uint8_t src_wake;		/* mps_wake(): the body source has bytes */
	int err;			/* transport error not yet reported */
	uint64_t linger_deadline;
	uint16_t tx_off, tx_len;	/* plaintext the transport / TLS did not take */
	struct mps_tail *rx;		/* ciphertext TLS did not take */
	struct tls_conn *tls;
	struct mps_req req;
	struct smtp_config cfg;
	char host[MPS_HOST_MAX];
	unsigned char tx[SMTP_OUT_MAX];
	struct smtp_sess smtp;
};

/**
 * Prepare a session (no I/O, no callback).
 * @param s      storage (the transport's)
 * @param req    the request (copied; host is copied into the session)
 * @param defcfg SMTP defaults when req->smtp is NULL
 * @param tctx   TLS context for STARTTLS / implicit TLS
 * @param st     counters to add to (shared by the engine)
 * @param ops    the transport
 * @param t      the transport's context for @p ops
 * @param id     session id for logs
 * @return 0, or -EINVAL (missing callback or op, bad policy, not AF_INET,
 *         bad SMTP config, host longer than MPS_HOST_MAX - 1).
 */
int mps_sess_init(struct mps_sess *s, const struct mps_req *req,
	const struct smtp_config *defcfg, struct tls_ctx *tctx,
	struct mps_stats *st, const struct mps_ops *ops, void *t, uint32_t id);

/**
 * Free what the core holds. A tls_conn with a paused job is not freed
 * (OpenSSL forbids it) but counted in st->leaked_tls.
 * @return 1 if a tls_conn was leaked that way, else 0.
 */
int mps_sess_fini(struct mps_sess *s);

/**
 * The transport connected: start the SMTP machine. Counts as
 * mps_on_readable() too (the greeting may be there already).
 */
void mps_on_connected(struct mps_sess *s, uint64_t now_ms);

/**
 * The connection could not be made: every recipient the owner hands out
 * through next_txn is reported SMTP_OUT_DEFERRED at SMTP_STAGE_CONNECT
 * ("connect to host[ip]:port failed: <strerror(-err)>", or "... timed out
 * after N ms"), then done, then ops->close, with abort set when the
 * connect timed out (it is still under way). Counted in
 * st->connect_timeouts or st->connect_failed.
 * @param err negative errno (refused, unreachable, canceled, ...)
 * @param timed_out_ms non-zero: the connect timed out after that long
 */
void mps_on_connect_failed(struct mps_sess *s, int err, uint32_t timed_out_ms);

/**
 * @return non-zero when the core takes input now (running, SMTP not
 * closed, no paused TLS job, no ciphertext tail left after trying to feed
 * it). A transport reads only then, so unread bytes wait in its buffers.
 */
int mps_input_ready(struct mps_sess *s);

/** Bytes from the peer (plaintext, or ciphertext once TLS started). */
void mps_on_input(struct mps_sess *s, const void *buf, size_t len, uint64_t now_ms);

/** The peer ended its stream (after all its bytes were given). */
void mps_on_eof(struct mps_sess *s, uint64_t now_ms);

/**
 * The transport has something to read (bytes, the end of the stream or
 * an error) that ops->recv will give: mps_read() reads until ops->recv
 * says -EAGAIN. Only records it; no callback.
 */
void mps_on_readable(struct mps_sess *s);

/**
 * Read from the transport since mps_on_readable(): ops->recv into @p buf,
 * @p len bytes at a time, each result given to mps_on_input(),
 * mps_on_eof() or mps_on_error(), while the core takes input
 * (mps_input_ready(); else the bytes wait in the transport for a later
 * call) and until ops->recv says -EAGAIN, 0 or an error. Call on every
 * turn of the session.
 * @param buf scratch, used during the call only (one may serve an engine)
 * @return 1 when MPS_READ_BUDGET bytes were read and the transport is
 *         still readable: give the session another turn after the other
 *         sessions had theirs; else 0.
 */
int mps_read(struct mps_sess *s, void *buf, size_t len, uint64_t now_ms);

/**
 * Move pending output (tail, TLS ciphertext), tell a blocked SMTP machine
 * it may write, and drive TLS on ciphertext already fed. Call when the
 * transport has room and on every turn of the session.
 */
void mps_pump(struct mps_sess *s, uint64_t now_ms);

/**
 * The message source of the session has bytes again after a body read
 * said -EAGAIN (a signature made on another thread): the next mps_pump()
 * resumes the body. Only records it and asks the transport for a turn
 * (ops->wake); call from the transport's thread, between mps_ calls.
 */
void mps_wake(struct mps_sess *s);

/** The transport failed (reset, timeout, ...): @p err negative errno. */
void mps_on_error(struct mps_sess *s, int err, uint64_t now_ms);

/** The paused TLS job may go on (wait fd readable or ctx ready list). */
void mps_on_async_ready(struct mps_sess *s, uint64_t now_ms);

/** End the session now: recipients in flight deferred "Operation canceled". */
void mps_abort(struct mps_sess *s, uint64_t now_ms);

/** Fire a due SMTP timeout, or give up on a paused job after the linger. */
void mps_tick(struct mps_sess *s, uint64_t now_ms);

/** @return when mps_tick() has something to do (ms), UINT64_MAX if never. */
uint64_t mps_deadline(const struct mps_sess *s);

/** @return enum mps_state of the session. */
static inline enum mps_state
mps_state(const struct mps_sess *s)
{
	return (enum mps_state)s->state;
}

/** @return non-zero while a TLS job of the session is paused. */
static inline int
mps_paused(const struct mps_sess *s)
{
	return s->paused != MPS_P_NONE;
}

/** @return the TLS record once a handshake was attempted, else NULL. */
const struct tls_record *mps_tls_record(const struct mps_sess *s);

/** @return the session's tls_conn or NULL (for async fds). */
static inline struct tls_conn *
mps_tls_conn(const struct mps_sess *s)
{
	return s->tls;
}

#endif
