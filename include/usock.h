/*
 * Userspace-TCP session engine (usock_): runs SMTP sessions (the session
 * core, include/mps.h) over TLS over connections of one utcp stack
 * (include/utcp.h), for one DPDK worker lcore, sharing nothing: its own
 * session pool (sized at start), TLS context and session cache, counters.
 * The same request (struct mps_req, also ksock_sess_req) opens a session
 * here or on the kernel-socket engine. DPDK-free: the worker glue
 * (dp_tcp, include/dp_tcp.h) calls it from its application hooks.
 *
 * Call order, all on the worker's thread:
 *
 *   tls_alloc_init()                   once per process
 *   usock_engine_new()                 before the worker loop runs
 *   in the loop (struct dp_tcp_app):
 *     usock_on_event()                 for each utcp event of the stack
 *     usock_poll()                     session work (async TLS, deferred
 *                                      connect failures, timers)
 *   usock_sess_open() any time on that thread, also from a callback
 *   usock_engine_free()                after the loop stopped
 *
 * Callbacks (next_txn, result, done) are made from usock_on_event() and
 * usock_poll(), never from usock_sess_open(). A session connects with
 * utcp_connect(); a connect that fails (refused, unreachable, SYN
 * timeout, or the engine's connect timeout) is a session whose
 * recipients are SMTP_OUT_DEFERRED at SMTP_STAGE_CONNECT. utcp is IPv4
 * only: a request for an IPv6 address is such a failure (EAFNOSUPPORT).
 *
 * Nothing is allocated after usock_engine_new() but what OpenSSL does
 * inside tls_ (see mps.h on tails: reads are MPS_FEED_CHUNK at a time and
 * stop while the core does not take input, so the bytes wait in the utcp
 * receive buffer, whose window then closes). Async TLS pauses never
 * block the loop: a paused job's wait fds go into a private epoll set
 * that usock_poll() checks without waiting (only while a job is paused),
 * and tls_ctx_ready_drain() is checked on every poll. A session closed
 * while a job is paused lingers up to MPS_LINGER_MS.
 */
#ifndef MP_USOCK_H
#define MP_USOCK_H

#include <stddef.h>
#include <stdint.h>

#include "mps.h"
#include "utcp.h"

struct usock_engine;

#define USOCK_CONNECT_TIMEOUT_DEFAULT 30000	/* ms */
#define USOCK_MAX_SESSIONS_DEFAULT    1024

/** Engine configuration; zero = default. */
struct usock_conf {
	struct utcp_stack *stack;	/**< the worker's stack (required, not owned) */
	const struct smtp_config *smtp;	/**< defaults; NULL = smtp_config_defaults(); copied */
	struct tls_ctx *tls;		/**< use this context (not freed); NULL = own from tls_conf */
	const struct tls_ctx_conf *tls_conf;	/**< options of the own context */
	unsigned max_sessions;		/**< pool size: sessions open at once */
	uint32_t connect_timeout_ms;
	uint32_t source;		/**< local IPv4 (host order), 0 = the stack picks */
};

/** Engine counters, monotonic. */
struct usock_stats {
	uint64_t sessions;		/**< opened */
	uint64_t connected;
	uint64_t connect_failed;	/**< refused, unreachable, no port / object */
	uint64_t connect_timeouts;
	uint64_t bytes_in;		/**< read from utcp, ciphertext included */
	uint64_t resets;		/**< connections that ended in a utcp error */
	struct mps_stats core;		/**< TLS, tails, bytes out, active */
	unsigned pool_free;		/**< free session slots */
	size_t sess_bytes;		/**< sizeof the per-session structure */
};

/**
 * Create an engine: the session pool, the async epoll set and (unless
 * given) the TLS context.
 * @return the engine, or NULL with @p err filled (no stack, bad TLS
 *         options, unreadable CA file, no memory).
 */
struct usock_engine *usock_engine_new(const struct usock_conf *conf,
	char *err, size_t errlen);

/** Free the engine; open sessions are aborted without callbacks. */
void usock_engine_free(struct usock_engine *e);

/**
 * Start one session (utcp_connect); its connect timeout counts from the
 * clock of the last usock_poll() / usock_on_event(), so a worker polls
 * once before it opens its first sessions. Results come through @p req's
 * callbacks from later usock_on_event()/usock_poll() calls, also when the
 * connect fails at once.
 * @return 0; -EINVAL (bad request); -EMFILE (pool empty: try again after
 *         a done callback). On error no callback is made.
 */
int usock_sess_open(struct usock_engine *e, const struct mps_req *req);

/** One event of the engine's utcp stack (from utcp_events()). */
void usock_on_event(struct usock_engine *e, const struct utcp_event *ev,
	uint64_t now_us);

/**
 * Session work: ready async TLS jobs, sessions with a deferred turn,
 * timers (connect, SMTP, linger); frees the slots of sessions that ended.
 * @return units of work done (0 = idle, so the worker may back off).
 */
int usock_poll(struct usock_engine *e, uint64_t now_us);

/** Abort every open session at the next usock_poll() (results kept). */
void usock_engine_abort(struct usock_engine *e);

/** @return sessions opened whose done callback has not run yet. */
unsigned usock_engine_active(const struct usock_engine *e);

/** Copy the counters into @p st. */
void usock_engine_stats(const struct usock_engine *e, struct usock_stats *st);

/** @return the engine's TLS context. */
struct tls_ctx *usock_engine_tls(const struct usock_engine *e);

#endif
