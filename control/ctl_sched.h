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
 * Destinations come from ctl_dns (static routes first), limits from
 * ctl_shape, retry times from ctl_retry; every time decision (shaping,
 * retry due times, maximum age, send windows) uses conf.now_ms, so the
 * scheduler core runs under a test clock with a test backend and static
 * routes, without a network. Redis timing (BLOCK, claims of idle entries)
 * is real time. The Redis contract is section F of the README.
 */
#ifndef CTL_SCHED_H
#define CTL_SCHED_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "ctl_dispatch.h"
#include "ctl_retry.h"

struct ctl_bounce;
struct ctl_dns;
struct ctl_shape;

struct ctl_sched_conf {
	const char *redis_url;		/**< redis://host:port or unix:/path */
	const char *ns;			/**< key prefix, default "mp:" */
	const char *group;		/**< consumer group, default "mailpump" */
	const char *consumer;		/**< consumer name (unique per process) */
	unsigned read_count;		/**< batches per XREADGROUP, default 8 */
	unsigned max_batches;		/**< batches held at once, default 32 */
	unsigned block_ms;		/**< XREADGROUP BLOCK when idle, default 200 */
	unsigned read_every_ms;		/**< non-blocking reads while busy at most this
					     often (scheduler clock), default 10 */
	uint64_t min_idle_ms;		/**< XAUTOCLAIM min-idle, default 60000 */
	uint64_t claim_every_ms;	/**< default min_idle / 2 */
	uint64_t refresh_every_ms;	/**< own entries re-claimed, default min_idle / 3 */
	uint64_t retry_every_ms;	/**< retry mover period (scheduler clock), default 1000 */
	uint64_t state_every_ms;	/**< campaign state re-read, default 1000 */
	uint64_t route_ttl_ms;		/**< route kept per domain, default 60000 */
	unsigned events_maxlen;		/**< events stream MAXLEN ~, default 1000000 */
	uint64_t events_max_age_ms;	/**< events older than this trimmed (XTRIM MINID ~,
					     once a minute), default 7 days; UINT64_MAX = never */
	unsigned dead_maxlen;		/**< jobs:dead stream MAXLEN ~, default 100000 */
	/** Unix-ms clock for retries, shaping, windows (NULL = real). */
	uint64_t (*now_ms)(void *arg);
	void *clock_arg;
	struct ctl_dns *dns;		/**< resolver (routes + MX), required */
	struct ctl_shape *shape;	/**< shaper, required */
	struct ctl_retry_conf retry;	/**< backoff; max_age_ms is per campaign */
	uint64_t seed;			/**< jitter RNG seed (0 = from the clock) */
	unsigned backend_slots;		/**< orders at the backend at once, default 256 */
	/**
	 * Bounce classification rules (ctl_bounce.h), owned by the caller and
	 * kept until ctl_sched_free; NULL = the shipped rules alone.
	 */
	const struct ctl_bounce *bounce;
	/**
	 * Classes whose 5xx is a final bounce, as bits (1u << CTL_BC_x);
	 * 0 = the address's own problems (invalid_recipient, bad_domain).
	 * Any other 5xx refuses the sender, not the address: see
	 * sender_refusal_fails.
	 */
	unsigned bounce_final_mask;
	/** A 5xx of another class: 0 = deferred and retried (default), 1 = failed. */
	int sender_refusal_fails;
	/**
	 * DKIM keys per signing domain and the mode (ctl_dkim.h), owned by
	 * the caller and kept until ctl_sched_free; NULL = nothing is signed.
	 * A campaign signs with the keys of its dkim_domain (default: the
	 * From domain); without keys it goes unsigned (optional) or its
	 * recipients fail (required).
	 */
	const struct ctl_dkim *dkim;
};

/** Counters for logs and tests. */
struct ctl_sched_stats {
	uint64_t batches_read, batches_claimed, batches_acked, batches_bad;
	uint64_t rcpts_in, rcpts_skipped;
	uint64_t orders, msgs_dispatched;
	uint64_t delivered, bounced, failed, deferred, cancelled, expired;
	uint64_t dup_final;		/**< finalise found the recipient final */
	uint64_t final_calls;		/**< finalise script calls (a campaign's records share one) */
	uint64_t mx_fallbacks, plaintext_retries;
	uint64_t fallbacks;		/**< recipients switched to the safe-content fallback */
	uint64_t delivered_fallback;	/**< ... and delivered that way */
	uint64_t redis_errors, reconnects;
	uint64_t retry_moved;
	uint64_t sender_refusals;	/**< 5xx of a class that did not bounce */
	uint64_t suppressed;		/**< cancelled at admission: in the suppression list */
	uint64_t suppress_added;	/**< hard bounces written with a suppression entry */
	uint64_t dead_letters;		/**< poison entries moved to jobs:dead */
	uint64_t leases_lost;		/**< entries another consumer claimed from us */
	uint64_t lease_waits;		/**< dispatch passes that skipped a batch with a stale lease */
	uint64_t batches_parked;	/**< shared-stream entries moved to a paused campaign's stream */
	uint64_t events_trimmed;	/**< events entries dropped for their age */
	uint64_t by_class[12];		/**< records of non-deliveries by ctl_bounce class
					     (CTL_BC_LAST of them; deferrals count each time) */
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

/**
 * The counters as one JSON object ({"consumer":..., "delivered":..., ...,
 * "classes":{"invalid_recipient":N, ...}}), for --stats and the daemon's
 * counters file. @p f is written to, never flushed.
 */
void ctl_sched_stats_json(struct ctl_sched *s, FILE *f);
void ctl_sched_free(struct ctl_sched *s);

#endif
