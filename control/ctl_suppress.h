/*
 * Suppression lists (README "Redis contract", NS suppress:<domain>): one
 * hash per sender domain, field = the address lower-cased (ASCII), value =
 * a JSON entry {"reason","source","ts_ms","campaign"?,"text"?}. Submit
 * (submit_batch.lua) skips the addresses in the campaign's list, the
 * scheduler re-checks when it admits a batch, and a hard bounce of an
 * address class adds one (rcpt_final.lua). This module only spells the
 * normalisation and the entry; it never talks to Redis.
 */
#ifndef CTL_SUPPRESS_H
#define CTL_SUPPRESS_H

#include <stddef.h>
#include <stdint.h>

/** Reasons an entry may carry. */
enum ctl_suppress_reason {
	CTL_SUP_BOUNCE = 0,
	CTL_SUP_UNSUBSCRIBE,
	CTL_SUP_COMPLAINT,
	CTL_SUP_MANUAL,
	CTL_SUP_LAST
};

const char *ctl_suppress_reason_name(enum ctl_suppress_reason r);
/** @return 0 and *out, or -EINVAL if name is no reason. */
int ctl_suppress_reason_parse(const char *name, enum ctl_suppress_reason *out);

/**
 * The field of an address: checked with msg_addr_valid (SMTPUTF8
 * allowed), ASCII letters lower-cased, surrounding blanks dropped.
 * @return 0, or -EINVAL (bad syntax or longer than cap).
 */
int ctl_suppress_addr(const char *addr, size_t len, char *out, size_t cap);

/**
 * A sender domain as the list is named: a bare domain, or the domain of
 * a From address (after its last '@'), lower-cased and checked.
 * @return 0, or -EINVAL.
 */
int ctl_suppress_domain(const char *dom_or_from, char *out, size_t cap);

/**
 * The JSON value of an entry (malloc'd, caller frees).
 * @param campaign NULL or "" for none
 * @param text NULL or "" for none
 * @return the text, or NULL (out of memory).
 */
char *ctl_suppress_entry(const char *reason, const char *source, int64_t ts_ms,
	const char *campaign, const char *text);

/**
 * "suppressed: <reason> (source <source>)" from an entry's JSON, for the
 * final text of a recipient the scheduler did not send to.
 */
void ctl_suppress_describe(const char *entry, char *out, size_t cap);

#endif
