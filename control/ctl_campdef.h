/*
 * A campaign's definition (sender, templates, headers, TLS policy, send
 * window) and its life cycle in Redis. The definition is assembled from a
 * JSON file and/or command-line settings, validated as a whole (the
 * templates are compiled by msg_template_compile, so a campaign that
 * passes here renders on every worker), then written atomically with
 * state "submitting". Submission ends with ctl_campdef_finish
 * (submitting -> running, or done when nothing is left); operators move
 * it with ctl_campdef_control (pause, resume, cancel). Every state change
 * is one Lua script, so two tools never race a transition.
 */
#ifndef CTL_CAMPDEF_H
#define CTL_CAMPDEF_H

#include <stdint.h>

#include <jansson.h>

#include "ctl_redis.h"
#include "msg.h"

struct ctl_campdef {
	char id[CTL_ID_MAX + 1];   /* "" = generate one */
	char *from;
	char *from_name;
	char *reply_to;
	char *return_path;         /* envelope sender (MAIL FROM); NULL = from */
	int verp;                  /* per-recipient return path (README, VERP) */
	char *dkim_domain;         /* DKIM d= (signing domain); NULL = the From domain */
	char *subject;
	char *text;
	char *html;
	char *unsub;
	json_t *headers;           /* object: name -> value (template) */
	char tls_policy[16];       /* none|opportunistic|required|verify */
	json_t *tls_overrides;     /* object: domain -> policy */
	/* safe-content fallback (README): sent instead, under fb_policy, to
	 * recipients whose domain cannot meet the campaign's TLS policy */
	char *fb_subject;
	char *fb_text;
	char *fb_html;
	char fb_policy[16];        /* none|opportunistic; "" = opportunistic */
	char window[16];           /* "HH:MM-HH:MM" UTC or "" */
	char priority[16];         /* transactional|normal|bulk; "" = normal */
	long long max_age_s;
	long long retention_s;	/**< TTL of its keys after done/cancelled (0 = never) */
};

void ctl_campdef_init(struct ctl_campdef *c);
void ctl_campdef_fini(struct ctl_campdef *c);

/**
 * Merge a campaign JSON file into c (keys: id, from, from_name, reply_to,
 * subject, text, html, text_file, html_file, headers, unsubscribe,
 * tls_policy, tls_overrides, window, priority, max_age_s, retention_s, return_path, verp, dkim_domain,
 * fallback_subject, fallback_text, fallback_text_file, fallback_html,
 * fallback_html_file, fallback_tls_policy; *_file paths are relative
 * to the file's directory). Unknown keys are errors (typos must not pass).
 * @return 0 or -EINVAL/-ENOENT with err naming the file and key.
 */
int ctl_campdef_load_json(struct ctl_campdef *c, const char *path,
	char *err, size_t errlen);

/**
 * Set one setting by its JSON key name (as in the file; text_file and
 * html_file read a file). Replaces an earlier value.
 * @return 0 or -EINVAL with err filled.
 */
int ctl_campdef_set(struct ctl_campdef *c, const char *key,
	const char *value, char *err, size_t errlen);

/** Add "Name: value" to the extra headers. @return 0 or -EINVAL. */
int ctl_campdef_add_header(struct ctl_campdef *c, const char *line,
	char *err, size_t errlen);

/** Add "domain=policy" to the TLS overrides. @return 0 or -EINVAL. */
int ctl_campdef_add_tls_override(struct ctl_campdef *c, const char *spec,
	char *err, size_t errlen);

/** 1 if s is none|opportunistic|required|verify. */
int ctl_tls_policy_valid(const char *s);

/**
 * Check everything and compile the templates. Fills c->id if empty.
 * @param tpl receives the compiled template (caller frees)
 * @return 0, or -EINVAL with err starting "campaign: ".
 */
int ctl_campdef_validate(struct ctl_campdef *c, struct msg_template **tpl,
	char *err, size_t errlen);

/** A fresh id: "c" + base-36 milliseconds + "-" + 8 random hex digits. */
void ctl_campdef_new_id(char *buf, size_t cap);

/**
 * Write the campaign (state submitting, zero counters) and index it in
 * NS campaigns.
 * @return 0, -EEXIST (id taken), -EIO (Redis; err filled).
 */
int ctl_campdef_create(struct ctl_redis *r, const struct ctl_campdef *c,
	int64_t now_ms, char *err, size_t errlen);

/**
 * End a submission: record submitted_ms and the invalid lines not yet
 * counted, submitting -> running (-> done when every recipient is final).
 * @param state receives the state afterwards
 * @return 0, -ENOENT (campaign gone), -EIO.
 */
int ctl_campdef_finish(struct ctl_redis *r, const char *id,
	long long invalid_delta, char *state, size_t cap, char *err, size_t errlen);

/**
 * pause (submitting|running -> paused), resume (paused -> running, or
 * submitting while a submission is still going on), cancel
 * (submitting|running|paused -> cancelled). Repeating an action is a
 * no-op that succeeds.
 * @param action "pause", "resume" or "cancel"
 * @return 0 with old/new states filled, -ENOENT (unknown id), -EPERM
 *         (not allowed from the current state; err says why), -EIO.
 */
int ctl_campdef_control(struct ctl_redis *r, const char *id,
	const char *action, char *old_state, char *new_state, size_t cap,
	char *err, size_t errlen);

/**
 * Change a campaign's priority (transactional, normal, bulk) or send window
 * (HH:MM-HH:MM UTC, or "none") while it is not done or cancelled. Daemons
 * read it with their next campaign refresh (about a second).
 * @return 0 with the old and new values filled, -EINVAL (bad field or
 *         value), -ENOENT, -EPERM (done or cancelled), -EIO.
 */
int ctl_campdef_update(struct ctl_redis *r, const char *id, const char *field,
	const char *value, char *old_value, char *new_value, size_t cap,
	char *err, size_t errlen);

/**
 * Read a stored campaign's definition back from its hash (for resuming an
 * interrupted submission) into c (initialised, empty).
 * @param state receives the campaign state
 * @param submitted set to 1 if submitted_ms is set
 * @return 0, -ENOENT (unknown id), -EIO, -EINVAL (stored JSON unreadable).
 */
int ctl_campdef_load_redis(struct ctl_redis *r, const char *id,
	struct ctl_campdef *c, char *state, size_t cap, int *submitted,
	char *err, size_t errlen);

/** 1 if s is a valid campaign id ([A-Za-z0-9._-], 1..63). */
int ctl_campdef_id_valid(const char *s);

/**
 * Does the campaign exist?
 * @return 1, 0, or -EIO.
 */
int ctl_campdef_exists(struct ctl_redis *r, const char *id);

#endif
