/*
 * Kernel-socket transport (ksock_): runs SMTP sessions (struct smtp_sess,
 * include/smtp.h) over TLS (include/tls.h, memory BIOs) over non-blocking
 * Linux TCP sockets, with one epoll set, in one thread. The session itself
 * is the session core (include/mps.h), shared with the DPDK workers'
 * engine (include/usock.h); this engine is its kernel-socket transport. It is the
 * transport of mp-smtpsend and the baseline the benchmark compares the
 * DPDK dataplane against; the control plane can drive it as a worker.
 *
 * Call order:
 *
 *   tls_alloc_init()                once per process (before OpenSSL is used)
 *   ksock_engine_new()
 *   ksock_sess_open() ...           any time, also from inside a callback
 *   while (ksock_engine_active(e))  ksock_engine_poll(e, timeout_ms)
 *   ksock_engine_free()
 *
 * Every callback (next_txn, result, done) is made from inside
 * ksock_engine_poll(), never from ksock_sess_open() and never re-entering
 * ksock_engine_poll(); callbacks may call ksock_sess_open().
 *
 * Per session: a connect with a timeout; then the SMTP machine; a
 * tls_conn is created only when STARTTLS (or implicit TLS) starts; the
 * session's transactions are pulled through req->next_txn (return -ENOENT
 * when there is no more for this connection: the session then QUITs; on a
 * fatal error the session drains next_txn and fails what it gets, so a
 * caller hands out only what it means for this one connection), every
 * recipient gets exactly one req->result, and req->done is the session's
 * last callback. A connect failure (refused, unreachable, timeout) is a
 * session whose recipients are all SMTP_OUT_DEFERRED at
 * SMTP_STAGE_CONNECT, reason text naming the address and the error.
 *
 * TLS: SNI and the verify name are req->host; verification is enforced
 * only under SMTP_TLS_VERIFY (otherwise the record still says what was
 * wrong). A failed handshake defers the session's recipients at
 * SMTP_STAGE_TLS with the reason ("expired: certificate has expired") and
 * smtp_sess_info.tls_failed set; retrying them in plaintext under
 * opportunistic TLS is the caller's choice (mp-smtpsend does). Sessions
 * are resumed per destination through the tls_ctx cache with the key
 * "host@ip:port". OpenSSL async jobs (TLS_PAUSED / -EINPROGRESS) never
 * block: the paused call is remembered and nothing else touches that
 * tls_conn; its wait fds (tls_conn_async_fds) join the epoll set, and
 * tls_ctx_ready_drain() is checked on every poll (while a job that has
 * no wait fd is paused, poll waits at most 2 ms, since a callback from a
 * provider thread wakes no fd). A session that ends while a job is paused
 * is freed once the job finishes (at most 2 s later; otherwise the
 * tls_conn is leaked on purpose, never freed under OpenSSL).
 *
 * Memory: one struct ksock_sess (the session core, include/mps.h: the SMTP
 * session with its 2 KiB command buffer, a 2 KiB tail for a write the
 * socket took part of, the host name; ksock_engine_stats().sess_bytes,
 * 6280 bytes on x86_64) plus the tls_conn when TLS is up. Measured by
 * tests/integration/test_ksock.c (sessions idle, waiting on a MAIL
 * reply): about 7.2 KiB per plaintext session and 27 KiB per session
 * after STARTTLS, heap only (the kernel's socket buffers come on top).
 * Socket reads go through one engine-wide buffer; a session allocates a
 * ciphertext tail only while the TLS layer took part of a feed, and frees
 * it once drained.
 *
 * Robustness: a peer that resets, closes (also mid-DATA), stalls (SMTP
 * timeouts through smtp_sess_deadline) or sends garbage ends only its
 * own session, recipients deferred with the reason. Not thread-safe: one
 * engine per thread; ksock_engine_free() must not be called from a
 * callback.
 */
#ifndef MP_KSOCK_H
#define MP_KSOCK_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "mps.h"
#include "smtp.h"
#include "tls.h"

struct ksock_engine;

/** Defaults of struct ksock_conf. */
#define KSOCK_CONNECT_TIMEOUT_DEFAULT 30000	/* ms */
#define KSOCK_MAX_SESSIONS_DEFAULT    4096
#define KSOCK_RX_BUF                  65536	/* engine-wide read buffer */

/**
 * Engine configuration. Zero-initialise and set what differs; pointers
 * must stay valid for the engine's life unless said otherwise.
 */
struct ksock_conf {
	/** Default SMTP parameters of sessions whose req->smtp is NULL;
	 *  NULL = smtp_config_defaults(). Copied. */
	const struct smtp_config *smtp;
	/** Use this TLS context (not freed by the engine); NULL = the engine
	 *  creates its own from tls_conf. */
	struct tls_ctx *tls;
	/** Options of the engine's own TLS context (NULL = defaults: TLS 1.2
	 *  minimum, system CA store). Read by ksock_engine_new() only. */
	const struct tls_ctx_conf *tls_conf;
	uint32_t connect_timeout_ms;	/**< 0 = KSOCK_CONNECT_TIMEOUT_DEFAULT */
	unsigned max_sessions;		/**< open sessions at once; 0 = default */
	struct in_addr source;		/**< bind source address of IPv4 sessions; 0 = any */
	struct in6_addr source6;	/**< bind source address of IPv6 sessions; :: = any
					     (the kernel picks by its routes) */
	int sndbuf;			/**< SO_SNDBUF of each socket; 0 = kernel default */
};

/**
 * One SMTP session to one server address: the session core's request
 * (struct mps_req in include/mps.h), so the same request opens a session
 * on this engine or on a DPDK worker's (usock_sess_open). Copied by
 * ksock_sess_open() (host too); smtp, if given, must outlive the session.
 */
#define ksock_sess_req mps_req

/** Engine counters (monotonic since ksock_engine_new). */
struct ksock_stats {
	uint64_t sessions;		/**< opened */
	uint64_t connected;		/**< TCP connect succeeded */
	uint64_t connect_failed;	/**< refused, unreachable, error */
	uint64_t connect_timeouts;
	uint64_t tls_started;		/**< handshakes begun */
	uint64_t tls_ok;
	uint64_t tls_failed;
	uint64_t tls_resumed;
	uint64_t async_pauses;		/**< TLS_PAUSED / -EINPROGRESS seen */
	uint64_t bytes_in;		/**< from the kernel, ciphertext included */
	uint64_t bytes_out;
	uint64_t tails;			/**< partial writes/feeds that needed a tail buffer */
	uint64_t write_blocked;		/**< SMTP writes refused for now (socket or TLS full) */
	unsigned active;		/**< sessions whose done has not been called */
	size_t sess_bytes;		/**< sizeof the per-session structure */
};

/**
 * Create an engine (epoll set, read buffer, TLS context unless given).
 * @param conf configuration; NULL = all defaults
 * @param err receives a message on failure (may be NULL)
 * @param errlen size of @p err
 * @return the engine, or NULL (bad TLS options, unreadable CA file, no
 *         memory, no epoll, a source address this host cannot bind) with
 *         @p err filled.
 */
struct ksock_engine *ksock_engine_new(const struct ksock_conf *conf,
	char *err, size_t errlen);

/**
 * Free the engine. Sessions still open are closed without callbacks (a
 * caller that wants every result polls until ksock_engine_active() is 0).
 */
void ksock_engine_free(struct ksock_engine *e);

/**
 * Start one session: creates the socket and begins a non-blocking
 * connect. Results arrive through @p req's callbacks from later
 * ksock_engine_poll() calls, also when the connect fails at once.
 * @return 0; -EINVAL (NULL or missing callback, not AF_INET, bad smtp
 *         config); -EMFILE (max_sessions reached or no file descriptor);
 *         -ENOMEM. On error no callback is made.
 */
int ksock_sess_open(struct ksock_engine *e, const struct ksock_sess_req *req);

/**
 * Also wake ksock_engine_poll() when @p fd is readable (level-triggered;
 * the caller drains it after the poll: an eventfd of results made on
 * other threads). @return 0 or -errno of epoll_ctl.
 */
int ksock_engine_watch(struct ksock_engine *e, int fd);

/**
 * Wait up to @p timeout_ms (-1 = until something happens, 0 = do not
 * wait) for I/O, then run socket events, ready async TLS jobs, timers
 * (connect and SMTP timeouts) and the callbacks they cause.
 * @return number of sessions that had work (>= 0), or -errno if epoll
 *         failed (EINTR is 0).
 */
int ksock_engine_poll(struct ksock_engine *e, int timeout_ms);

/**
 * Abort every open session: the next ksock_engine_poll() reports their
 * recipients (SMTP_OUT_DEFERRED, reason "Operation canceled", stage where
 * the session was) and done callbacks, as a transport failure would.
 * Sessions opened afterwards are not affected. For a caller's own
 * deadline (mp-smtpsend --timeout) or a shutdown that keeps every result.
 */
void ksock_engine_abort(struct ksock_engine *e);

/** @return sessions opened whose done callback has not run yet. */
unsigned ksock_engine_active(const struct ksock_engine *e);

/** Copy the engine counters into @p st. */
void ksock_engine_stats(const struct ksock_engine *e, struct ksock_stats *st);

/** @return the engine's TLS context (for tls_ctx_cache_stats). */
struct tls_ctx *ksock_engine_tls(const struct ksock_engine *e);

#endif
