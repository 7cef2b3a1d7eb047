/*
 * DKIM for campaigns (ctl_dkim): the signing keys of a daemon, per
 * signing domain, and the signer threads that do the private-key work,
 * so a worker loop never spends a millisecond on an RSA signature.
 *
 * The keys ([dkim] key = DOMAIN SELECTOR FILE, up to MSG_DKIM_MAX_SIGS per
 * domain, e.g. one RSA and one Ed25519) are loaded and checked once, at
 * start; they are read-only afterwards and outlive every campaign.
 *
 * Signing a message is split (see msg_dkim.h):
 *
 *   worker:  msg_dkim_prepare_render()     body and header hashes, a
 *                                          pass over the rendered message
 *            ctl_signq_submit()            the prepared data to the pool
 *   signer:  msg_dkim_sign_prepared()      the private-key operation(s)
 *   worker:  ctl_signq_poll()              done callbacks for the jobs
 *                                          that finished, on the worker's
 *                                          own thread
 *
 * A struct ctl_signq belongs to one thread (a DPDK worker lcore, the
 * kernel-socket backend): it submits jobs and polls for their results;
 * done callbacks run from ctl_signq_poll() only, on that thread. An
 * eventfd (ctl_signq_fd) is readable while results wait, for an owner
 * that sleeps in epoll. Nothing of a job is shared once it is submitted
 * except the job itself, handed over under the queue's lock.
 *
 * A job the owner no longer wants (the session ended while it was
 * signed) is released with ctl_sign_job_release(): the signer finishes
 * or skips it, and ctl_signq_poll() frees it without a callback.
 */
#ifndef MP_CTL_DKIM_H
#define MP_CTL_DKIM_H

#include <stddef.h>
#include <sys/types.h>

#include "msg_dkim.h"

/** What to do with a campaign whose signing domain has no key. */
enum ctl_dkim_mode {
	CTL_DKIM_OPTIONAL = 0,	/**< send it unsigned, with a warning */
	CTL_DKIM_REQUIRED,	/**< refuse it at submit, fail it at dispatch */
	CTL_DKIM_MODE_LAST
};

struct ctl_dkim;
struct ctl_signq;
struct ctl_sign_job;

/** An empty key set with no signer threads. @return NULL on ENOMEM. */
struct ctl_dkim *ctl_dkim_new(void);

/**
 * Free the keys and stop the threads. Every ctl_signq must be freed
 * first (their jobs point at the keys).
 */
void ctl_dkim_free(struct ctl_dkim *d);

/**
 * Load one key (msg_dkim_key_load: every check it makes) for @p domain
 * (case-insensitive) under @p selector. A domain takes at most
 * MSG_DKIM_MAX_SIGS keys, signed in the order they were added, and one
 * selector once.
 * @return 0, or -EINVAL / -ENOMEM with @p err filled.
 */
int ctl_dkim_add_key(struct ctl_dkim *d, const char *domain,
	const char *selector, const char *path, char *err, size_t errlen);

/**
 * ctl_dkim_add_key for each "SELECTOR FILE" of @p spec, comma-separated
 * ("rsa2026 /etc/mailpump/dkim/a.pem, ed2026 /etc/mailpump/dkim/b.pem").
 * @return 0, or -EINVAL / -ENOMEM with @p err filled.
 */
int ctl_dkim_add_keys(struct ctl_dkim *d, const char *domain, const char *spec,
	char *err, size_t errlen);

/**
 * The keys of @p domain, at most MSG_DKIM_MAX_SIGS, into @p out.
 * @return how many (0: the domain has none).
 */
size_t ctl_dkim_keys(const struct ctl_dkim *d, const char *domain,
	const struct msg_dkim_key *out[MSG_DKIM_MAX_SIGS]);

/** Number of domains with keys, and the i-th of them (lower case). */
size_t ctl_dkim_ndomains(const struct ctl_dkim *d);
const char *ctl_dkim_domain(const struct ctl_dkim *d, size_t i);

void ctl_dkim_set_mode(struct ctl_dkim *d, enum ctl_dkim_mode m);
enum ctl_dkim_mode ctl_dkim_mode(const struct ctl_dkim *d);
const char *ctl_dkim_mode_name(enum ctl_dkim_mode m);
/** @return 0 with *out set, or -EINVAL. */
int ctl_dkim_mode_parse(const char *s, enum ctl_dkim_mode *out);

/**
 * Start @p n signer threads (1..64), each pinned to the CPUs listed in
 * @p cpus ("0", "0,2-3"; NULL or "" = no pinning, the scheduler's
 * choice). Call once, after the keys are loaded.
 * @return 0, or -EINVAL (bad list, a CPU this process may not use),
 *         -EALREADY, or -errno of pthread_create, with @p err filled.
 */
int ctl_dkim_start(struct ctl_dkim *d, unsigned n, const char *cpus,
	char *err, size_t errlen);

/** Signatures made and failed by the threads, and jobs waiting for one. */
struct ctl_dkim_stats {
	unsigned long long signed_ok;
	unsigned long long sign_failed;
	unsigned long long skipped;	/**< released before a thread took them */
	unsigned long long cpu_ns;	/**< the threads' CPU time in signing */
	unsigned queued;		/**< waiting for a thread now */
	unsigned threads;
};
void ctl_dkim_stats(struct ctl_dkim *d, struct ctl_dkim_stats *st);

/**
 * A result queue for one thread's jobs.
 * @param want_fd non-zero: create the eventfd of ctl_signq_fd
 * @return the queue, or NULL (no threads started, no memory, no eventfd).
 */
struct ctl_signq *ctl_signq_new(struct ctl_dkim *d, int want_fd);

/**
 * Free the queue: waits up to @p wait_ms for jobs still at a thread, and
 * frees them as they come back (no callbacks). The owner releases every
 * job it holds first. @return jobs still at a thread after the wait (leaked; 0 is
 * normal).
 */
unsigned ctl_signq_free(struct ctl_signq *q, unsigned wait_ms);

/** The eventfd (readable while results wait), or -1. */
int ctl_signq_fd(const struct ctl_signq *q);

/** Jobs submitted on @p q whose result ctl_signq_poll() has not taken. */
unsigned ctl_signq_inflight(const struct ctl_signq *q);

/**
 * Hand prepared data to the pool. @p done(@p arg, job) runs from a later
 * ctl_signq_poll() on this queue unless the job was released first.
 * @return the job (the caller holds it until ctl_sign_job_release), or
 *         NULL on out of memory.
 */
struct ctl_sign_job *ctl_signq_submit(struct ctl_signq *q,
	const struct msg_dkim_prepared *p,
	void (*done)(void *arg, struct ctl_sign_job *job), void *arg);

/**
 * Run the done callbacks of the jobs that finished (cheap when none
 * did: one atomic load). @return how many callbacks were made.
 */
unsigned ctl_signq_poll(struct ctl_signq *q);

/**
 * Sign @p p on the calling thread (no pool; for tools and tests).
 * @return a finished job (ctl_sign_job_result), or NULL on ENOMEM.
 */
struct ctl_sign_job *ctl_sign_now(const struct msg_dkim_prepared *p);

/**
 * The result of a finished job (after its done callback, or of
 * ctl_sign_now): the DKIM-Signature header line(s) in *sig.
 * @return their length, -EINPROGRESS while the job is at a thread, or
 *         -EIO with the reason in *why.
 */
ssize_t ctl_sign_job_result(const struct ctl_sign_job *j, const char **sig,
	const char **why);

/** The owner is done with @p j (also while it is at a thread). NULL: no-op. */
void ctl_sign_job_release(struct ctl_sign_job *j);

/* --- what submit knows of the daemons' keys (NS dkim in Redis) --- */

struct ctl_redis;

/** @return non-zero when @p s is a domain name DKIM can sign for (LDH
 *  labels, at least two of them, <= 253 octets). */
int ctl_dkim_domain_ok(const char *s);

/**
 * Record this daemon's [dkim] in Redis (HASH NS dkim: mode, domains as a
 * space-separated lower-case list, updated_ms, by), so a submit can refuse
 * what no daemon will sign. Daemons of one namespace share one [dkim].
 * @return 0, or -EIO with @p err filled.
 */
int ctl_dkim_publish(const struct ctl_dkim *d, struct ctl_redis *r,
	const char *by, int64_t now_ms, char *err, size_t errlen);

/** ctl_dkim_publish over a connection of its own to @p url / @p ns; a
 *  failure is logged (a warning: the daemon still signs). */
void ctl_dkim_publish_to(const struct ctl_dkim *d, const char *url, const char *ns,
	const char *by);

/**
 * Check a campaign about to be submitted against NS dkim: its signing
 * domain @p domain (the dkim_domain, else the From domain).
 * @return 0 signed; 1 it will go unsigned ([dkim] mode = optional) with
 *         @p msg saying why; 2 no daemon ever published (the daemon
 *         decides when it sends); -EPERM refused under required, with
 *         @p msg; -EIO on a Redis failure.
 */
int ctl_dkim_submit_check(struct ctl_redis *r, const char *domain,
	char *msg, size_t msglen);

#endif
