/*
 * Read-only reports over the Redis contract, as JSON objects (jansson):
 * campaign status, the per-campaign outcome report (top bounce, deferral
 * and failure reasons from a scan of the rcpt hash) and the per-domain
 * TLS report. They read Redis only, so they work from any host while
 * daemons run elsewhere. mailpumpctl prints them as tables or as JSON;
 * the JSON shapes are documented in README.md ("mailpumpctl").
 */
#ifndef CTL_REPORT_H
#define CTL_REPORT_H

#include <stdint.h>

#include <jansson.h>

#include "ctl_redis.h"

/**
 * Status of one campaign: definition summary, state, counts by state,
 * percent done, average rate since creation and ETA.
 * @param now_ms clock for rate and ETA
 * @return 0 with *out set (caller decrefs), -ENOENT (unknown id; err
 *         filled), -EIO (Redis; err filled).
 */
int ctl_report_status(struct ctl_redis *r, const char *id, int64_t now_ms,
	json_t **out, char *err, size_t errlen);

/**
 * Outcome report: status plus the top reasons of bounced, deferred and
 * failed recipients (code, enhanced status, reply text), scanning the
 * rcpt hash with HSCAN (memory bounded by the number of distinct reasons,
 * capped; the rest count under "(other reasons)").
 * @param top reasons listed per category
 * @return as ctl_report_status.
 */
int ctl_report_campaign(struct ctl_redis *r, const char *id, int top,
	int64_t now_ms, json_t **out, char *err, size_t errlen);

/**
 * Per-domain TLS report from NS tls:domains and NS tls:<domain>, sorted
 * by sessions (most first).
 * @param domain only this domain (NULL: all)
 * @param top at most this many domains (0: all); totals cover all
 * @return 0, -ENOENT (domain given but never seen), -EIO.
 */
int ctl_report_tls(struct ctl_redis *r, const char *domain, int top,
	json_t **out, char *err, size_t errlen);

/**
 * Campaigns, newest first.
 * @param limit at most this many (0: 100)
 * @return 0 with *out = {"campaigns":[{id,state,created_ms,total},...]}, -EIO.
 */
int ctl_report_list(struct ctl_redis *r, int limit, json_t **out,
	char *err, size_t errlen);

#endif
