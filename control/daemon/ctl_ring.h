/*
 * Ring backend of the dispatch interface (include/ctl_dispatch.h): the
 * scheduler on the main lcore, the sessions on DPDK worker lcores, and
 * between each worker and the control plane exactly one pair of
 * single-producer/single-consumer rte_rings. Nothing else is shared but
 * the immutable, reference-counted campaigns the orders point to.
 *
 *   in  ring (control -> worker): session orders, the worker's event
 *                                 records coming back, the abort command
 *   out ring (worker -> control): event records (one result per message,
 *                                 then one done per order)
 *
 * Ownership moves with the pointer: an order belongs to the worker from
 * the moment it is enqueued until its done record is dequeued by the
 * control side, which then hands it back to the scheduler; an event
 * record belongs to the worker (it made them all at start, so its loop
 * never allocates) except between its enqueue on the out ring and its
 * return on the in ring. Both rings are sized so that neither can be
 * full: in >= order cap + records + 1, out >= records.
 *
 * Control side (main lcore):
 *   ctl_ring_new(conf, sink)        rings for n workers
 *   ctl_ring_backend(r)             give it to ctl_sched_set_backend
 *   ctl_ring_abort(r)               SIGTERM grace over: end open sessions
 *   ctl_ring_free(r)                after the workers stopped
 * Worker side (worker lcore i, from its dp_tcp application hooks):
 *   ctl_rworker_new(r, i, conf)     before the loop runs
 *   ctl_rworker_on_event()          each utcp event
 *   ctl_rworker_poll()              control ring, then session work
 *   ctl_rworker_free()              after the loop stopped
 */
#ifndef CTL_RING_H
#define CTL_RING_H

#include <stdint.h>

#include "ctl_dispatch.h"
#include "ctl_dkim.h"
#include "usock.h"

struct rte_ring;
struct ctl_ring;
struct ctl_rworker;

/** Ring backend configuration. */
struct ctl_ring_conf {
	unsigned n_workers;		/**< 1..DP_MAX_WORKERS */
	unsigned max_sessions;		/**< orders open at once per worker */
	unsigned n_events;		/**< event records per worker, 0 = 2 x sessions (>= 1024) */
	int socket_id;			/**< NUMA socket of the rings */
};

/** Per-worker counters, written by the worker only (relaxed reads). */
struct ctl_rworker_stats {
	uint64_t orders, msgs, results, dones;
	uint64_t delivered, deferred, bounced, failed;
	uint64_t connect_failed;	/**< orders that never connected */
	uint64_t render_failed;		/**< messages refused by msg_render_open */
	uint64_t ev_waits;		/**< record pool empty: waited for returns */
	uint64_t aborted;		/**< orders ended by ctl_ring_abort */
	uint64_t ev_lost;		/**< events dropped because the loop was ending */
	unsigned active, peak_active;	/**< orders at the worker (queued + open) */
	unsigned open, peak_open;	/**< sessions open in the engine */
	unsigned queued;		/**< waiting for a session slot */
};

/** Per-domain counters kept by the control side. */
struct ctl_ring_domain {
	char name[CTL_DOMAIN_MAX];
	uint64_t orders, delivered, deferred, bounced, failed;
	uint64_t tls_msgs, plain_msgs;
};

/**
 * Create the rings for conf->n_workers workers.
 * @return the backend, or NULL (bad conf, ring allocation failed) with
 *         @p err filled.
 */
struct ctl_ring *ctl_ring_new(const struct ctl_ring_conf *conf,
	const struct ctl_sink *sink, char *err, size_t errlen);
/** Free the rings and every order still on them (no callbacks). */
void ctl_ring_free(struct ctl_ring *r);
/** The dispatch-interface view of @p r. */
struct ctl_backend ctl_ring_backend(struct ctl_ring *r);
/** Tell every worker to end its sessions now (results follow). */
void ctl_ring_abort(struct ctl_ring *r);
/** @return orders at the workers. */
unsigned ctl_ring_active(const struct ctl_ring *r);
/** @return the per-domain counters (n in *n); valid until the next poll. */
const struct ctl_ring_domain *ctl_ring_domains(const struct ctl_ring *r,
	unsigned *n);

/** Worker configuration. */
struct ctl_rworker_conf {
	struct utcp_stack *stack;	/**< the worker's TCP stack */
	const struct smtp_config *smtp;	/**< defaults (helo, timeouts), copied */
	const struct tls_ctx_conf *tls;	/**< TLS options (CA, minimum version) */
	uint32_t connect_timeout_ms;
	uint32_t source;		/**< local IPv4 (host order), 0 = stack picks */
	const volatile int *stop;	/**< set when the loop is ending: stop waiting for records */
	struct ctl_dkim *dkim;		/**< DKIM signer threads (started), NULL = sign in the worker */
};

/**
 * Create worker @p id's side: its session engine and event records.
 * @return the worker or NULL with @p err filled.
 */
struct ctl_rworker *ctl_rworker_new(struct ctl_ring *r, unsigned id,
	const struct ctl_rworker_conf *conf, char *err, size_t errlen);
void ctl_rworker_free(struct ctl_rworker *w);
/** One utcp event of the worker's stack. */
void ctl_rworker_on_event(struct ctl_rworker *w, const struct utcp_event *ev,
	uint64_t now_us);
/** Control ring then session work. @return units of work done. */
int ctl_rworker_poll(struct ctl_rworker *w, uint64_t now_us);
/** @return the worker's counters (read with relaxed loads from elsewhere). */
const struct ctl_rworker_stats *ctl_rworker_stats(const struct ctl_rworker *w);
/** @return the worker's session engine (stats). */
struct usock_engine *ctl_rworker_engine(const struct ctl_rworker *w);

#endif
