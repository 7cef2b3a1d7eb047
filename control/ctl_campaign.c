/*
 * Campaign cache of the scheduler. A campaign is read from its hash
 * (section F) the first time a batch names it and its template compiled
 * once into an immutable struct ctl_campaign that every message of it
 * references. Only the state is re-read later (at most every
 * state_every_ms), so pause, resume and cancel take effect within that
 * delay. A template that does not compile is kept as the reason why, and
 * its recipients fail with it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_dkim.h"
#include "ctl_sched_int.h"
#include "ctl_suppress.h"
#include "mp_log.h"

#define LOGW(...) MP_LOG(MP_LOG_WARN, "ctl_sched", __VA_ARGS__)

int
ctl_policy_parse(const char *name, enum smtp_tls_policy *out)
{
	static const char *const names[] = { "none", "opportunistic", "required", "verify" };

	for (unsigned i = 0; i < 4; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (enum smtp_tls_policy)i;
			return 0;
		}
	}
	return -EINVAL;
}

static enum scamp_state
state_parse(const char *v)
{
	if (v == NULL)
		return SC_MISSING;
	if (strcmp(v, "running") == 0)
		return SC_RUNNING;
	if (strcmp(v, "paused") == 0)
		return SC_PAUSED;
	if (strcmp(v, "cancelled") == 0)
		return SC_CANCELLED;
	if (strcmp(v, "done") == 0)
		return SC_DONE;
	return SC_SUBMITTING;
}

/* "HH:MM-HH:MM" -> minutes; @return 0 or -EINVAL */
static int
window_parse(const char *v, int *from, int *to)
{
	unsigned h1, m1, h2, m2;
	char tail;

	if (sscanf(v, "%u:%u-%u:%u%c", &h1, &m1, &h2, &m2, &tail) != 4 ||
	    h1 > 23 || h2 > 24 || m1 > 59 || m2 > 59)
		return -EINVAL;
	*from = (int)(h1 * 60 + m1);
	*to = (int)(h2 * 60 + m2);
	return 0;
}

static const char *
hget(const redisReply *r, const char *name)
{
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		if (r->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(r->element[i]->str, name) == 0 &&
		    r->element[i + 1]->type == REDIS_REPLY_STRING)
			return r->element[i + 1]->str;
	}
	return NULL;
}

/* The DKIM keys of the campaign's signing domain: dkim_domain, else the
 * From domain. No key: unsigned, or refused when DKIM is required. */
static void
camp_dkim(struct ctl_sched *s, struct scamp *c, const redisReply *h, const char *from)
{
	const struct msg_dkim_key *k[MSG_DKIM_MAX_SIGS];
	const char *d = hget(h, "dkim_domain"), *at;
	size_t n;

	if (d == NULL || d[0] == '\0')
		d = (at = strrchr(from, '@')) != NULL ? at + 1 : from;
	n = ctl_dkim_keys(s->conf.dkim, d, k);
	if (n == 0) {
		if (ctl_dkim_mode(s->conf.dkim) == CTL_DKIM_REQUIRED) {
			snprintf(c->bad, sizeof(c->bad), "DKIM is required and this daemon has "
				"no key for d=%.200s", d);
			ctl_campaign_unref(c->cc);
			c->cc = NULL;
		} else if (s->conf.dkim != NULL) {
			LOGW("event=dkim_unsigned campaign=%s d=%s reason=\"no key for the signing domain\"",
				c->id, d);
		}
		return;
	}
	memcpy(c->cc->dkim, k, n * sizeof(k[0]));
	c->cc->ndkim = (unsigned)n;
}

/*
 * The safe-content fallback: its own subject and body, none of the custom
 * headers (they may carry the main message's merge fields), the same
 * sender, return path and DKIM keys. One that does not compile (submit
 * checked it) leaves the campaign without a fallback: its recipients are
 * deferred as they would be without one, never sent the main message
 * with less TLS.
 */
static void
camp_fallback(struct scamp *c, const redisReply *h, const struct msg_template_spec *main)
{
	struct msg_template_spec spec = *main;
	const char *pol = hget(h, CTL_F_FB_POLICY);
	char err[CTL_REASON_MAX - 32];

	spec.subject = hget(h, CTL_F_FB_SUBJECT);
	if (spec.subject == NULL || spec.subject[0] == '\0')
		return;
	spec.text = hget(h, CTL_F_FB_TEXT);
	spec.html = hget(h, CTL_F_FB_HTML);
	if (spec.text != NULL && spec.text[0] == '\0')
		spec.text = NULL;
	if (spec.html != NULL && spec.html[0] == '\0')
		spec.html = NULL;
	spec.headers = NULL;
	spec.nheaders = 0;
	c->fb_policy = SMTP_TLS_OPPORTUNISTIC;
	if ((pol != NULL && pol[0] != '\0' && ctl_policy_parse(pol, &c->fb_policy) < 0) ||
	    c->fb_policy > SMTP_TLS_OPPORTUNISTIC) {
		LOGW("event=bad_fallback campaign=%s reason=\"fallback_tls_policy %.32s\"",
			c->id, pol);
		return;
	}
	c->cc_fb = ctl_campaign_new(c->id, c->cc->mail_from, &spec, err, sizeof(err));
	if (c->cc_fb == NULL) {
		LOGW("event=bad_fallback campaign=%s reason=\"%s\"", c->id, err);
		return;
	}
	c->cc_fb->verp = c->cc->verp;
	memcpy(c->cc_fb->dkim, c->cc->dkim, sizeof(c->cc->dkim));
	c->cc_fb->ndkim = c->cc->ndkim;
}

static void
camp_compile(struct ctl_sched *s, struct scamp *c, const redisReply *h)
{
	struct msg_header hdr[MSG_MAX_HEADERS];
	struct msg_template_spec spec = { 0 };
	const char *v;
	json_t *headers = NULL;
	size_t nh = 0;

	spec.campaign_id = c->id;
	spec.from_addr = hget(h, "from");
	spec.from_name = hget(h, "from_name");
	spec.reply_to = hget(h, "reply_to");
	spec.subject = hget(h, "subject");
	spec.text = hget(h, "text");
	spec.html = hget(h, "html");
	spec.unsub_url = hget(h, "unsubscribe");
	if (spec.from_name != NULL && spec.from_name[0] == '\0')
		spec.from_name = NULL;
	if (spec.reply_to != NULL && spec.reply_to[0] == '\0')
		spec.reply_to = NULL;
	if (spec.unsub_url != NULL && spec.unsub_url[0] == '\0')
		spec.unsub_url = NULL;
	if (spec.text != NULL && spec.text[0] == '\0' && spec.html != NULL)
		spec.text = NULL;
	if (spec.html != NULL && spec.html[0] == '\0')
		spec.html = NULL;
	v = hget(h, "headers");
	if (v != NULL && v[0] != '\0') {
		const char *name;
		json_t *val;

		headers = json_loads(v, 0, NULL);
		if (!json_is_object(headers)) {
			snprintf(c->bad, sizeof(c->bad), "campaign %s: headers is not a JSON object", c->id);
			json_decref(headers);
			return;
		}
		json_object_foreach(headers, name, val) {
			if (nh == MSG_MAX_HEADERS || !json_is_string(val)) {
				snprintf(c->bad, sizeof(c->bad), "campaign %s: bad headers", c->id);
				json_decref(headers);
				return;
			}
			hdr[nh].name = name;
			hdr[nh].value = json_string_value(val);
			nh++;
		}
	}
	spec.headers = hdr;
	spec.nheaders = nh;
	if (spec.from_addr == NULL || spec.subject == NULL) {
		snprintf(c->bad, sizeof(c->bad), "campaign %s: from and subject are required", c->id);
	} else {
		char err[CTL_REASON_MAX - 32];

		const char *rp = hget(h, "return_path"), *verp = hget(h, "verp");

		c->cc = ctl_campaign_new(c->id, rp != NULL && rp[0] != '\0' ? rp : spec.from_addr,
			&spec, err, sizeof(err));
		if (c->cc == NULL) {
			snprintf(c->bad, sizeof(c->bad), "template: %s", err);
		} else {
			c->cc->verp = verp != NULL && strcmp(verp, "1") == 0;
			camp_dkim(s, c, h, spec.from_addr);
			if (c->cc != NULL)
				camp_fallback(c, h, &spec);
		}
	}
	json_decref(headers);
}

/*
 * TLS policy and per-domain overrides. Fail closed: a policy we cannot
 * read is never taken for opportunistic (or none); it makes the campaign
 * bad, so its recipients fail with the reason instead of going out with
 * less TLS than asked. @return 0, or -EINVAL with c->bad set.
 */
static int
camp_policy_fill(struct scamp *c, const redisReply *h)
{
	const char *v = hget(h, "tls_policy"), *dom;
	json_t *p;

	c->policy = SMTP_TLS_OPPORTUNISTIC;
	if (v != NULL && v[0] != '\0' && ctl_policy_parse(v, &c->policy) < 0) {
		snprintf(c->bad, sizeof(c->bad), "campaign %s: unknown tls_policy \"%.64s\" "
			"(none, opportunistic, required, verify)", c->id, v);
		return -EINVAL;
	}
	v = hget(h, "tls_overrides");
	if (v == NULL || v[0] == '\0')
		return 0;
	c->overrides = json_loads(v, 0, NULL);
	if (!json_is_object(c->overrides)) {
		snprintf(c->bad, sizeof(c->bad), "campaign %s: tls_overrides is not a JSON object",
			c->id);
		return -EINVAL;
	}
	json_object_foreach(c->overrides, dom, p) {
		enum smtp_tls_policy tp;

		if (!json_is_string(p) || ctl_policy_parse(json_string_value(p), &tp) < 0) {
			snprintf(c->bad, sizeof(c->bad), "campaign %s: tls_overrides %.64s: unknown "
				"tls_policy (none, opportunistic, required, verify)", c->id, dom);
			return -EINVAL;
		}
	}
	return 0;
}

static void
camp_window(struct scamp *c, const char *v)
{
	c->win_from = c->win_to = -1;
	if (v != NULL && v[0] != '\0' && window_parse(v, &c->win_from, &c->win_to) < 0) {
		LOGW("event=bad_window campaign=%s value=\"%s\"", c->id, v);
		c->win_from = c->win_to = -1;
	}
}

/* An unknown priority is served as normal (submit refuses one). */
static void
camp_prio(struct scamp *c, const char *v)
{
	enum ctl_prio p = ctl_prio_parse(v);

	if (p == CTL_PRIO_LAST) {
		LOGW("event=bad_priority campaign=%s value=\"%s\"", c->id, v);
		p = CTL_PRIO_NORMAL;
	}
	c->prio = (uint8_t)p;
}

static void
camp_fill(struct ctl_sched *s, struct scamp *c, const redisReply *h)
{
	const char *v;
	int policy_ok;

	c->state = state_parse(hget(h, "state"));
	policy_ok = camp_policy_fill(c, h) == 0;
	if (!policy_ok)
		LOGW("event=bad_tls_policy campaign=%s reason=\"%s\"", c->id, c->bad);
	camp_window(c, hget(h, CTL_F_WINDOW));
	camp_prio(c, hget(h, CTL_F_PRIORITY));
	v = hget(h, "max_age_s");
	c->max_age_ms = (v != NULL && v[0] != '\0') ? strtoull(v, NULL, 10) * 1000 : 432000000ull;
	v = hget(h, "submitted_ms");
	if (v == NULL || v[0] == '\0')
		v = hget(h, "created_ms");
	c->submitted_ms = v != NULL ? strtoull(v, NULL, 10) : 0;
	{
		char dom[CTL_DOMAIN_MAX] = "";

		/* a From without a domain names "NS suppress:", which nobody
		 * writes; the template check fails such a campaign anyway */
		v = hget(h, "from");
		if (v == NULL || ctl_suppress_domain(v, dom, sizeof(dom)) < 0)
			dom[0] = '\0';
		snprintf(c->k_sup, sizeof(c->k_sup), "%s" CTL_K_SUPPRESS, s->ns, dom);
	}
	if (policy_ok)
		camp_compile(s, c, h);
	c->state_mono = ctl_mono_ms();
}

struct scamp *
ctl_camp_get(struct ctl_sched *s, const char *id, int *err)
{
	struct scamp *c;
	redisReply *r;

	*err = 0;
	for (c = s->camps; c != NULL; c = c->next) {
		if (strcmp(c->id, id) == 0)
			return c;
	}
	if (strlen(id) >= CTL_CAMP_ID_MAX) {
		*err = -EINVAL;
		return NULL;
	}
	r = CTL_RC_CMD(s, "HGETALL %scampaign:%s", s->ns, id);
	if (r == NULL) {
		ctl_rc_failed(s, "hgetall");
		*err = -EIO;
		return NULL;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		*err = -EIO;
		return NULL;
	}
	if (r->elements == 0) {
		freeReplyObject(r);
		*err = -ENOENT;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		freeReplyObject(r);
		*err = -ENOMEM;
		return NULL;
	}
	snprintf(c->id, sizeof(c->id), "%s", id);
	camp_fill(s, c, r);
	freeReplyObject(r);
	if (c->cc == NULL)
		LOGW("event=campaign_bad campaign=%s reason=\"%s\"", c->id, c->bad);
	c->next = s->camps;
	s->camps = c;
	return c;
}

int
ctl_camp_refresh(struct ctl_sched *s, struct scamp *c)
{
	redisReply *r;

	if (ctl_mono_ms() - c->state_mono < (int64_t)s->conf.state_every_ms)
		return 0;
	/* what an operator may change while it runs: pause, resume, cancel,
	 * the send window, the priority */
	r = CTL_RC_CMD(s, "HMGET %scampaign:%s " CTL_F_STATE " " CTL_F_WINDOW " " CTL_F_PRIORITY,
		s->ns, c->id);
	if (r == NULL) {
		/* the state read last stands until the next read in
		 * state_every_ms, not a retry for every recipient picked */
		c->state_mono = ctl_mono_ms();
		ctl_rc_failed(s, "hmget");
		return -EIO;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
		const redisReply *st = r->element[0], *w = r->element[1], *p = r->element[2];

		c->state = state_parse(st->type == REDIS_REPLY_STRING ? st->str : NULL);
		camp_window(c, w->type == REDIS_REPLY_STRING ? w->str : NULL);
		camp_prio(c, p->type == REDIS_REPLY_STRING ? p->str : NULL);
	}
	freeReplyObject(r);
	c->state_mono = ctl_mono_ms();
	return 0;
}

/* @return 1 when recipients of @p c may be dispatched now */
int
ctl_camp_sendable(struct ctl_sched *s, struct scamp *c, uint64_t now_ms)
{
	int minute;

	(void)s;
	if (c->state != SC_RUNNING && c->state != SC_DONE && c->state != SC_SUBMITTING)
		return 0;
	if (c->win_from < 0)
		return 1;
	minute = (int)((now_ms / 60000) % 1440);
	if (c->win_from <= c->win_to)
		return minute >= c->win_from && minute < c->win_to;
	return minute >= c->win_from || minute < c->win_to;
}

enum smtp_tls_policy
ctl_camp_policy(const struct scamp *c, const char *domain)
{
	enum smtp_tls_policy p = c->policy;
	json_t *v;

	if (c->overrides != NULL) {
		v = json_object_get(c->overrides, domain);
		if (json_is_string(v))
			ctl_policy_parse(json_string_value(v), &p);
	}
	return p;
}

static void
camp_free(struct scamp *c)
{
	ctl_campaign_unref(c->cc);	/* messages at a backend keep their own */
	ctl_campaign_unref(c->cc_fb);
	json_decref(c->overrides);
	free(c);
}

/* Drop campaigns no held batch uses and none used for @p idle_ms: a
 * daemon that runs for months sees many campaigns come and go. */
void
ctl_camps_gc(struct ctl_sched *s, int64_t idle_ms)
{
	struct scamp **pp = &s->camps;
	int64_t now = ctl_mono_ms();

	while (*pp != NULL) {
		struct scamp *c = *pp;

		if (c->refs == 0 && now - c->used_mono > idle_ms) {
			*pp = c->next;
			camp_free(c);
			continue;
		}
		pp = &c->next;
	}
}

void
ctl_camps_free(struct ctl_sched *s)
{
	while (s->camps != NULL) {
		struct scamp *c = s->camps;

		s->camps = c->next;
		camp_free(c);
	}
}
