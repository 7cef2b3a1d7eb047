/*
 * Delivery scheduler (ctl_sched): takes recipient batches from the Redis
 * jobs stream through the consumer group, resolves and shapes per
 * destination domain, hands session orders to a delivery backend
 * (include/ctl_dispatch.h) and writes every outcome back to Redis.
 *
 *   ctl_sched_new(conf)             connects lazily, creates the group
 *   ctl_sched_sink(s)               give it to the backend's constructor
 *   ctl_sched_set_backend(s, be)
 *   loop: ctl_sched_step(s, wait_ms) until ctl_sched_finished(s)
 *   ctl_sched_stop(s)               SIGTERM: no new batches, no new orders
 *   ctl_sched_free(s)
 *
 * DNS, shaping and retry timing come through the small interfaces below
 * so the scheduler core runs under a test clock without a network
 * (control/ctl_units.c adapts ctl_dns, ctl_shape and ctl_retry to them).
 * The Redis contract is section F of the control-plane README.
 */
#ifndef CTL_SCHED_H
#define CTL_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "ctl_dispatch.h"

#define CTL_HOPS_MAX 8
#define CTL_REASON_MAX 256

/** One server to try for a domain, in preference order. */
struct ctl_hop {
	char host[CTL_DOMAIN_MAX];	/**< MX name (SNI, verify, reports) */
	struct sockaddr_in addr;	/**< IPv4 + port */
	uint8_t implicit_tls;
};

enum ctl_route_status {
	CTL_ROUTE_OK = 0,
	CTL_ROUTE_TEMP,		/**< SERVFAIL, timeout: defer the recipients */
	CTL_ROUTE_PERM,		/**< null MX, NXDOMAIN: bounce them */
};

/** What a resolver found for a domain. */
struct ctl_route {
	enum ctl_route_status status;
	char reason[CTL_REASON_MAX];
	unsigned n;			/**< hops (>= 1 when OK) */
	struct ctl_hop hop[CTL_HOPS_MAX];
};

typedef void ctl_route_cb(void *arg, const char *domain, const struct ctl_route *r);

/** Domain -> servers (static routes first, then MX). */
struct ctl_resolver {
	/** Start a lookup; @p cb is called exactly once, possibly from
	 *  inside this call. @return 0 or -errno (then no callback). */
	int (*resolve)(void *arg, const char *domain, ctl_route_cb *cb, void *cbarg);
	/** Progress lookups for up to @p timeout_ms. NULL = nothing to poll. */
	int (*poll)(void *arg, int timeout_ms);
	void *arg;
};

/** Limits of one destination at a given time. */
struct ctl_limits {
	unsigned max_conns;
	unsigned msgs_per_conn;
	unsigned rcpt_per_txn;
};

/** Per-destination shaping (connections, messages per connection, rate). */
struct ctl_shaper {
	void (*limits)(void *arg, const char *domain, uint64_t now_ms,
		struct ctl_limits *out);
	/** Take up to @p want message tokens. @return tokens granted. */
	unsigned (*take)(void *arg, const char *domain, unsigned want,
		uint64_t now_ms);
	/** A connection of @p domain ended; @p code is the reply that ended
	 *  it badly (421, 4xx) or 0; adaptive limits react to it. */
	void (*feedback)(void *arg, const char *domain, int code,
		uint64_t now_ms);
	void *arg;
};

/** Retry timing. */
struct ctl_retry_fn {
	/**
	 * Due time of the next attempt after attempt @p attempt (0-based)
	 * failed temporarily at @p now_ms.
	 * @return 0 with *due_ms set, or -ETIME when the recipient is past
	 *         its maximum age (@p first_ms + @p max_age_ms).
	 */
	int (*next)(void *arg, uint32_t attempt, uint64_t first_ms,
		uint64_t now_ms, uint64_t max_age_ms, uint64_t *due_ms);
	void *arg;
};

struct ctl_sched_conf {
	const char *redis_url;		/**< redis://host:port or unix:/path */
	const char *ns;			/**< key prefix, default "mp:" */
	const char *group;		/**< consumer group, default "mailpump" */
	const char *consumer;		/**< consumer name (unique per process) */
	unsigned read_count;		/**< batches per XREADGROUP, default 8 */
	unsigned max_batches;		/**< batches held at once, default 32 */
	unsigned block_ms;		/**< XREADGROUP BLOCK when idle, default 200 */
	uint64_t min_idle_ms;		/**< XAUTOCLAIM min-idle, default 60000 */
	uint64_t claim_every_ms;	/**< default min_idle / 2 */
	uint64_t refresh_every_ms;	/**< own entries re-claimed, default min_idle / 3 */
	uint64_t retry_every_ms;	/**< retry mover period (real time), default 1000 */
	uint64_t state_every_ms;	/**< campaign state re-read, default 1000 */
	uint64_t route_ttl_ms;		/**< route kept per domain, default 60000 */
	unsigned events_maxlen;		/**< events stream MAXLEN ~, default 1000000 */
	/** Unix-ms clock for retries, shaping, windows (NULL = real). */
	uint64_t (*now_ms)(void *arg);
	void *clock_arg;
	struct ctl_resolver resolver;
	struct ctl_shaper shaper;
	struct ctl_retry_fn retry;
};

/** Counters for logs and tests. */
struct ctl_sched_stats {
	uint64_t batches_read, batches_claimed, batches_acked, batches_bad;
	uint64_t rcpts_in, rcpts_skipped;
	uint64_t orders, msgs_dispatched;
	uint64_t delivered, bounced, failed, deferred, cancelled, expired;
	uint64_t dup_final;		/**< finalise found the recipient final */
	uint64_t mx_fallbacks, plaintext_retries;
	uint64_t redis_errors, reconnects;
	uint64_t retry_moved;
};

struct ctl_sched;

/**
 * Create a scheduler. Nothing connects yet.
 * @return the scheduler or NULL (bad configuration, out of memory) with
 *         @p err filled.
 */
struct ctl_sched *ctl_sched_new(const struct ctl_sched_conf *conf,
	char *err, size_t errlen);
/** The sink a backend reports to. */
const struct ctl_sink *ctl_sched_sink(struct ctl_sched *s);
void ctl_sched_set_backend(struct ctl_sched *s, const struct ctl_backend *be);

/**
 * One iteration: Redis reads/claims/retries when due, dispatch, backend
 * and resolver progress, result writes. Waits at most @p wait_ms.
 * @return 0, or a negative errno only on a broken invariant; Redis
 *         trouble is retried inside (see ctl_sched_stats).
 */
int ctl_sched_step(struct ctl_sched *s, int wait_ms);

/** Stop taking batches and starting sessions; in-flight work finishes. */
void ctl_sched_stop(struct ctl_sched *s);

/**
 * @param until_idle also report finished when nothing is left anywhere
 *        (no held batch, no pending entry in the group, empty retry set)
 * @return 1 when the loop may end (stopped and drained, or idle).
 */
int ctl_sched_finished(struct ctl_sched *s, int until_idle);

/** Recipients, orders and writes still held in memory. */
unsigned ctl_sched_held(const struct ctl_sched *s);

const struct ctl_sched_stats *ctl_sched_stats(const struct ctl_sched *s);
void ctl_sched_free(struct ctl_sched *s);

#endif
