/*
 * Submitting recipients to a campaign: each record is validated
 * (ctl_submit_check: address syntax through msg_addr_valid, CR/LF/NUL in
 * any field, then msg_render_open against the compiled campaign template
 * so a missing merge field without default, bad UTF-8 or a header that
 * cannot be folded is that line's error), then grouped per recipient
 * domain and written one batch at a time by a Lua script that dedupes
 * through HSETNX on the campaign's rcpt hash and XADDs only the new
 * recipients to NS jobs, counting total, queued and duplicates in the
 * same step (so counters are consistent at every instant). Addresses in
 * the sender domain's suppression list are skipped by the same script
 * and counted apart (suppressed), never in total.
 *
 * Memory is bounded whatever the input size: per-domain partial batches
 * are flushed when full, and when more than conf.buffer_max recipients
 * (or conf.buffer_bytes bytes, or partial batches of more than 8192
 * domains) wait in partial batches the oldest ones
 * are flushed early. At most conf.pipeline batch scripts are in flight
 * (hiredis pipelining) before their replies are read.
 *
 * Call order: ctl_submit_new, ctl_submit_add per record, ctl_submit_end
 * (flushes everything and reads every reply), ctl_submit_free.
 */
#ifndef CTL_SUBMIT_H
#define CTL_SUBMIT_H

#include <stddef.h>

#include "ctl_input.h"
#include "ctl_redis.h"
#include "msg.h"

struct ctl_submit_conf {
	unsigned batch_size;     /**< recipients per jobs entry, default 100 (max 1000) */
	unsigned buffer_max;     /**< recipients waiting in partial batches, default 50000 */
	size_t buffer_bytes;     /**< bytes waiting in partial batches, default 16 MiB */
	unsigned pipeline;       /**< batch scripts in flight, default 32 */
	/** a record was rejected (msg is "line N: why") */
	void (*on_invalid)(void *user, unsigned long line, const char *msg);
	/** a recipient was already in the campaign (skipped and counted) */
	void (*on_duplicate)(void *user, unsigned long line, const char *addr);
	/** a recipient is in the sender domain's suppression list (skipped,
	 * counted in the campaign's "suppressed", not in its total) */
	void (*on_suppressed)(void *user, unsigned long line, const char *addr);
	/** the campaign's From domain, lower-case: names the suppression
	 * list checked (NS suppress:<domain>); NULL = none is checked */
	const char *sender_domain;
	void *user;
};

struct ctl_submit_stats {
	unsigned long records;     /**< records read (valid or not) */
	unsigned long accepted;    /**< queued recipients */
	unsigned long invalid;     /**< rejected records */
	unsigned long duplicates;  /**< skipped as already present */
	unsigned long suppressed;  /**< skipped as in the suppression list */
	unsigned long batches;     /**< jobs entries written */
	unsigned long reruns;      /**< batch scripts re-run after NOSCRIPT */
};

struct ctl_submit;

/**
 * Validate one record. On success addr holds the normalised address
 * (domain part lower-cased) and *entry the jobs JSON
 * {"to":addr,"f":{fields}} (malloc'd, caller frees).
 * @param entry NULL to validate only
 * @return 0, or -EINVAL with err "line N: why".
 */
int ctl_submit_check(const struct msg_template *t, const struct ctl_input_rec *rec,
	char *addr, size_t addrcap, char **entry, char *err, size_t errlen);

/** @return the submitter, or NULL (out of memory). */
struct ctl_submit *ctl_submit_new(struct ctl_redis *r, const char *campaign_id,
	const struct msg_template *t, const struct ctl_submit_conf *conf);
void ctl_submit_free(struct ctl_submit *s);

/**
 * Validate and buffer one record (may write batches).
 * @return 0 (accepted into a batch or reported invalid through
 *         on_invalid), -EIO (Redis failed; ctl_submit_error says how),
 *         -ECANCELED (campaign cancelled meanwhile), -ENOENT (campaign
 *         deleted meanwhile), -ENOMEM.
 */
int ctl_submit_add(struct ctl_submit *s, const struct ctl_input_rec *rec);

/** Count a record the reader rejected (reported by the caller). */
void ctl_submit_count_invalid(struct ctl_submit *s);

/**
 * Write every partial batch and wait for all replies.
 * @return as ctl_submit_add.
 */
int ctl_submit_end(struct ctl_submit *s);

/** Invalid records not yet added to the campaign's "invalid" (give to
 * ctl_campdef_finish); resets the count. */
long long ctl_submit_take_invalid(struct ctl_submit *s);

void ctl_submit_get_stats(const struct ctl_submit *s, struct ctl_submit_stats *st);
const char *ctl_submit_error(const struct ctl_submit *s);

#endif
