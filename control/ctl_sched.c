/*
 * Scheduler loop. One ctl_sched_step() does, in order: on the first call
 * re-read this consumer's own pending entries (a restart under the same
 * name); when due, XAUTOCLAIM entries of dead consumers, re-claim our own
 * long-held entries so nobody steals them, move due retries into their
 * campaigns' streams; re-check batches waiting on a paused campaign;
 * dispatch; flush the write queue; read new batches (ctl_intake.c: the
 * campaigns' streams by priority and in turn, blocking only when there
 * is nothing else to do); poll DNS and the backend; dispatch and flush
 * again.
 *
 * A batch is held in memory from the moment it is read until its ack was
 * written. On admission its recipients' current states are read: those
 * already final, or already handed to a later attempt, are skipped; the
 * others join their domain's queue, except those in the campaign's
 * sender-domain suppression list (read in the same admission, one HMGET),
 * finalised cancelled with the entry's reason. Dispatch takes, per domain with a
 * route, as many connections as ctl_shape allows, each with as many
 * messages as the domain's messages-per-connection limit and the token
 * bucket allow, all for the same server and TLS policy. Outcomes: 2xx
 * delivered, 5xx bounced, local failures failed; a 4xx, a timeout or a
 * failed connect goes to the next server of the route within the same
 * attempt when the host failed the session (no connection, greeting or
 * EHLO/HELO refused even with 5xx, 421, no TLS under required/verify:
 * session_failed), to a plaintext connection when STARTTLS failed under
 * opportunistic TLS, otherwise to the
 * retry set (ctl_retry), or failed once past the campaign's maximum age.
 * Each outcome is one queued write (ctl_results.c); once every recipient
 * of a batch is written the batch is acknowledged and deleted.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ctl_bounce.h"
#include "ctl_idn.h"
#include "ctl_lua.h"
#include "ctl_retry.h"
#include "ctl_sched_int.h"
#include "ctl_suppress.h"
#include "mp_log.h"

#define LOGW(...) MP_LOG(MP_LOG_WARN, "ctl_sched", __VA_ARGS__)
#define LOGI(...) MP_LOG(MP_LOG_INFO, "ctl_sched", __VA_ARGS__)
#define LOGD(...) MP_LOG(MP_LOG_DEBUG, "ctl_sched", __VA_ARGS__)

#define SCAN_MAX 4096		/* queue entries looked at per order */
#define RECHECK_MS 1000		/* waiting batch: next campaign state check */
#define IDLE_CHECK_MS 200

static void on_result(void *arg, struct ctl_order *o, const struct ctl_result *res);
static int consumer_lock(struct ctl_sched *s, const char *mode, char *err, size_t errlen);
static void on_done(void *arg, struct ctl_order *o, const struct ctl_sess_report *rep);

/* ------------------------------------------------------------------ */
/* setup                                                               */
/* ------------------------------------------------------------------ */

struct ctl_sched *
ctl_sched_new(const struct ctl_sched_conf *conf, char *err, size_t errlen)
{
	struct ctl_redis_conf rconf = { 0 };
	struct ctl_sched *s;

	if (conf->dns == NULL || conf->shape == NULL || conf->consumer == NULL ||
	    conf->consumer[0] == '\0') {
		snprintf(err, errlen, "scheduler needs a resolver, a shaper and a consumer name");
		return NULL;
	}
	if (ctl_retry_conf_check(&conf->retry) < 0) {
		snprintf(err, errlen, "bad retry configuration");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->conf = *conf;
	snprintf(s->ns, sizeof(s->ns), "%s", conf->ns ? conf->ns : CTL_NS_DEFAULT);
	snprintf(s->group, sizeof(s->group), "%s", conf->group ? conf->group : CTL_GROUP);
	snprintf(s->consumer, sizeof(s->consumer), "%s", conf->consumer);
	s->conf.ns = s->ns;
	s->conf.group = s->group;
	s->conf.consumer = s->consumer;
	if (s->conf.read_count == 0)
		s->conf.read_count = 8;
	if (s->conf.max_batches == 0)
		s->conf.max_batches = 32;
	if (s->conf.block_ms == 0)
		s->conf.block_ms = 200;
	if (s->conf.read_every_ms == 0)
		s->conf.read_every_ms = 10;
	if (s->conf.min_idle_ms == 0)
		s->conf.min_idle_ms = CTL_CLAIM_IDLE_MS;
	if (s->conf.claim_every_ms == 0)
		s->conf.claim_every_ms = s->conf.min_idle_ms / 2;
	if (s->conf.refresh_every_ms == 0)
		s->conf.refresh_every_ms = s->conf.min_idle_ms / 3;
	if (s->conf.retry_every_ms == 0)
		s->conf.retry_every_ms = 1000;
	if (s->conf.state_every_ms == 0)
		s->conf.state_every_ms = 1000;
	if (s->conf.route_ttl_ms == 0)
		s->conf.route_ttl_ms = 60000;
	if (s->conf.events_maxlen == 0)
		s->conf.events_maxlen = 1000000;
	if (s->conf.events_max_age_ms == 0)
		s->conf.events_max_age_ms = 7 * 86400000ull;
	if (s->conf.dead_maxlen == 0)
		s->conf.dead_maxlen = CTL_DEAD_MAXLEN;
	if (s->conf.backend_slots == 0)
		s->conf.backend_slots = 256;
	snprintf(s->k_jobs, sizeof(s->k_jobs), "%s" CTL_K_JOBS, s->ns);
	snprintf(s->k_retry, sizeof(s->k_retry), "%s" CTL_K_RETRY, s->ns);
	snprintf(s->k_events, sizeof(s->k_events), "%s" CTL_K_EVENTS, s->ns);
	snprintf(s->k_tls_domains, sizeof(s->k_tls_domains), "%s" CTL_K_TLS_DOMAINS, s->ns);
	snprintf(s->k_dead, sizeof(s->k_dead), "%s" CTL_K_JOBS_DEAD, s->ns);
	snprintf(s->k_dead_n, sizeof(s->k_dead_n), "%s" CTL_K_JOBS_DEAD_N, s->ns);
	snprintf(s->k_active, sizeof(s->k_active), "%s" CTL_K_ACTIVE, s->ns);
	rconf.url = conf->redis_url;
	rconf.ns = s->ns;
	rconf.cmd_timeout_ms = (int)s->conf.block_ms + 5000;
	s->rc = ctl_redis_open(&rconf, err, errlen);
	if (s->rc == NULL) {
		free(s);
		return NULL;
	}
	/* one daemon per consumer name: two would read each other's entries */
	{
		char host[64] = "host";

		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = '\0';
		snprintf(s->k_lock, sizeof(s->k_lock), "%s" CTL_K_CONSUMER, s->ns, s->consumer);
		snprintf(s->lock_token, sizeof(s->lock_token), "%s pid %d at %lld", host,
			(int)getpid(), (long long)ctl_now_ms());
		if (consumer_lock(s, "take", err, errlen) < 0) {
			ctl_redis_close(s->rc);
			free(s);
			return NULL;
		}
		s->lock_mono = ctl_mono_ms();
	}
	if (s->conf.bounce == NULL) {
		s->own_bounce = ctl_bounce_new();
		if (s->own_bounce == NULL || ctl_bounce_load_text(s->own_bounce, ctl_bounce_builtin,
		    "rules.conf", err, errlen) < 0) {
			ctl_bounce_free(s->own_bounce);
			ctl_redis_close(s->rc);
			free(s);
			return NULL;
		}
		s->conf.bounce = s->own_bounce;
	}
	if (s->conf.bounce_final_mask == 0)
		s->conf.bounce_final_mask = 1u << CTL_BC_INVALID_RECIPIENT | 1u << CTL_BC_BAD_DOMAIN;
	s->rng = conf->seed ? conf->seed : (uint64_t)ctl_now_ms() ^ (uint64_t)getpid() << 32;
	s->sink.on_result = on_result;
	s->sink.on_done = on_done;
	s->sink.arg = s;
	return s;
}

const struct ctl_sink *
ctl_sched_sink(struct ctl_sched *s)
{
	return &s->sink;
}

void
ctl_sched_set_backend(struct ctl_sched *s, const struct ctl_backend *be)
{
	s->be = *be;
}

const struct ctl_sched_stats *
ctl_sched_stats(const struct ctl_sched *s)
{
	return &s->st;
}

unsigned
ctl_sched_held(const struct ctl_sched *s)
{
	return s->nbatches + s->nops + s->orders_out;
}

void
ctl_sched_stop(struct ctl_sched *s)
{
	s->stopping = 1;
}

/* ------------------------------------------------------------------ */
/* batches and domains                                                 */
/* ------------------------------------------------------------------ */

static struct sdom *
dom_get(struct ctl_sched *s, const char *name)
{
	struct sdom *d;

	for (d = s->doms; d != NULL; d = d->next) {
		if (strcmp(d->name, name) == 0)
			return d;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->next = s->doms;
	s->doms = d;
	return d;
}

/*
 * Queue @p r behind the recipients of its priority and ahead of lower
 * ones: the queue runs transactional, normal, bulk, each in arrival
 * order (r->prio is fixed while it is queued, so the order holds).
 */
static void
q_push(struct ctl_sched *s, struct sdom *d, struct srcpt *r)
{
	struct srcpt *after = NULL;

	r->state = SR_QUEUED;
	r->prio = r->b->camp != NULL && r->b->camp->prio < CTL_PRIO_LAST ?
		r->b->camp->prio : CTL_PRIO_NORMAL;
	for (int p = r->prio; p >= 0 && after == NULL; p--)
		after = d->ptail[p];
	r->qprev = after;
	r->qnext = after != NULL ? after->qnext : d->qhead;
	if (r->qprev != NULL)
		r->qprev->qnext = r;
	else
		d->qhead = r;
	if (r->qnext != NULL)
		r->qnext->qprev = r;
	else
		d->qtail = r;
	d->ptail[r->prio] = r;
	d->qlen++;
	if (!d->active) {
		d->active = 1;
		d->anext = s->active;
		s->active = d;
	}
}

static void
q_remove(struct sdom *d, struct srcpt *r)
{
	if (d->ptail[r->prio] == r)
		d->ptail[r->prio] = r->qprev != NULL && r->qprev->prio == r->prio ? r->qprev : NULL;
	if (r->qprev != NULL)
		r->qprev->qnext = r->qnext;
	else
		d->qhead = r->qnext;
	if (r->qnext != NULL)
		r->qnext->qprev = r->qprev;
	else
		d->qtail = r->qprev;
	r->qprev = r->qnext = NULL;
	d->qlen--;
}

/* Entry ids are unique within a stream only. */
static struct sbatch *
batch_find(struct ctl_sched *s, const struct ssrc *src, const char *id)
{
	for (struct sbatch *b = s->batches; b != NULL; b = b->next) {
		if (b->src == src && strcmp(b->id, id) == 0)
			return b;
	}
	return NULL;
}

static void
batch_free(struct ctl_sched *s, struct sbatch *b)
{
	if (b->prev != NULL)
		b->prev->next = b->next;
	else
		s->batches = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	s->nbatches--;
	if (b->src != NULL)
		b->src->held--;
	if (b->dom != NULL)
		b->dom->refs--;
	if (b->camp != NULL) {
		b->camp->refs--;
		b->camp->used_mono = ctl_mono_ms();
	}
	for (unsigned i = 0; i < b->n; i++) {
		free(b->r[i].addr);
		json_decref(b->r[i].fields);
	}
	free(b->r);
	free(b->dead);
	free(b);
}

/* A recipient needs nothing more from us (skipped or written). */
static void
rcpt_done(struct ctl_sched *s, struct srcpt *r)
{
	struct sbatch *b = r->b;

	r->state = SR_DONE;
	if (b->unsettled > 0)
		b->unsettled--;
	if (b->unsettled == 0 && b->admitted && !b->acking)
		ctl_op_ack(s, b);
}

void
ctl_sched_settled(struct ctl_sched *s, struct srcpt *r)
{
	rcpt_done(s, r);
}

void
ctl_sched_batch_acked(struct ctl_sched *s, struct sbatch *b)
{
	s->st.batches_acked++;
	LOGD("event=batch_acked id=%s", b->id);
	batch_free(s, b);
}

static const char *
fstr(const redisReply *fields, const char *name)
{
	if (fields == NULL || fields->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < fields->elements; i += 2) {
		const redisReply *k = fields->element[i], *v = fields->element[i + 1];

		if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
		    strcmp(k->str, name) == 0)
			return v->str;
	}
	return NULL;
}

static void
lower(char *p)
{
	for (; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
}

/* A batch we cannot use at all and whose recipients cannot be failed (no
 * campaign): dead-letter it so it is not re-read. */
static void
batch_bad(struct ctl_sched *s, struct sbatch *b, const char *why)
{
	LOGW("event=bad_batch id=%s campaign=%s reason=\"%s\"", b->id, b->camp_id, why);
	s->st.batches_bad++;
	ctl_poison_mark(b, why);
	for (unsigned i = 0; i < b->n; i++)
		b->r[i].state = SR_DONE;
	b->unsettled = 0;
	b->admitted = 1;
	ctl_op_ack(s, b);
}

static const char *
poison_json_why(char *buf, size_t len, const json_error_t *e)
{
	snprintf(buf, len, "rcpts is not valid JSON: %.160s at offset %d", e->text, e->position);
	return buf;
}

/*
 * A poison entry: marked with @p why, its recipients those it still names
 * (when it names a campaign), failed at admission (batch_dead_admit).
 */
static void
batch_poison(struct ctl_sched *s, struct sbatch *b, const char *why, const char *rcpts)
{
	LOGW("event=poison_entry id=%s campaign=%s reason=\"%s\"", b->id, b->camp_id, why);
	s->st.batches_bad++;
	ctl_poison_mark(b, why);
	if (b->camp_id[0] != '\0')
		ctl_poison_salvage(b, rcpts);
	b->unsettled = b->n;
}

/* Parse a stream entry into a held batch (not admitted yet). */
static struct sbatch *
batch_new(struct ctl_sched *s, struct ssrc *src, const char *id, const redisReply *fields)
{
	const char *camp = fstr(fields, CTL_J_CAMPAIGN);
	const char *dom = fstr(fields, CTL_J_DOMAIN);
	const char *att = fstr(fields, CTL_J_ATTEMPT);
	const char *rcpts = fstr(fields, CTL_J_RCPTS);
	const char *first = fstr(fields, "first");
	struct sbatch *b = calloc(1, sizeof(*b));
	char dname[CTL_DOMAIN_MAX], jwhy[CTL_REASON_MAX];
	json_error_t jerr;
	json_t *arr = NULL;
	const char *why = NULL;

	if (b == NULL)
		return NULL;
	snprintf(b->id, sizeof(b->id), "%s", id);
	b->src = src;
	src->held++;
	snprintf(b->camp_id, sizeof(b->camp_id), "%s", camp ? camp : "");
	b->next = s->batches;
	if (s->batches != NULL)
		s->batches->prev = b;
	s->batches = b;
	s->nbatches++;
	b->refreshed_mono = ctl_mono_ms();
	if (camp == NULL || camp[0] == '\0' || strlen(camp) >= CTL_CAMP_ID_MAX)
		why = "no or bad campaign field";
	else if (dom == NULL || dom[0] == '\0' || strlen(dom) >= sizeof(dname))
		why = "no or bad domain field";
	else if (rcpts == NULL)
		why = "no rcpts field";
	else if ((arr = json_loads(rcpts, 0, &jerr)) == NULL)
		why = poison_json_why(jwhy, sizeof(jwhy), &jerr);
	else if (!json_is_array(arr))	/* the macro evaluates its argument twice */
		why = "rcpts is not a JSON array";
	if (why == NULL) {
		size_t n = json_array_size(arr), k = 0;
		uint32_t attempt = att ? (uint32_t)strtoul(att, NULL, 10) : 0;
		uint64_t first_ms = first ? strtoull(first, NULL, 10) : 0;

		snprintf(dname, sizeof(dname), "%s", dom);
		lower(dname);
		if (ctl_idn_domain(dname, dname, sizeof(dname), NULL, 0) < 0)
			why = "domain is not a valid internationalised domain name";
		b->dom = why == NULL ? dom_get(s, dname) : NULL;
		if (b->dom != NULL)
			b->dom->refs++;
		b->r = calloc(n ? n : 1, sizeof(*b->r));
		if (why == NULL && (b->dom == NULL || b->r == NULL))
			why = "out of memory";
		for (size_t i = 0; why == NULL && i < n; i++) {
			json_t *e = json_array_get(arr, i);
			json_t *to = json_object_get(e, "to");
			json_t *f = json_object_get(e, "f");
			json_t *a = json_object_get(e, "a");
			json_t *fm = json_object_get(e, "first");
			struct srcpt *r = &b->r[k];

			if (!json_is_string(to) || json_string_length(to) == 0 ||
			    json_string_length(to) >= CTL_ADDR_MAX) {
				LOGW("event=bad_rcpt batch=%s index=%zu reason=\"no address\"", id, i);
				continue;
			}
			r->b = b;
			r->addr = strdup(json_string_value(to));
			if (r->addr == NULL) {
				why = "out of memory";
				break;
			}
			if (json_is_object(f))
				r->fields = json_incref(f);
			r->attempt = json_is_integer(a) ? (uint32_t)json_integer_value(a) : attempt;
			r->first_ms = json_is_number(fm) ? (uint64_t)json_number_value(fm) : first_ms;
			r->state = SR_SETTLING;		/* not queued until admitted */
			k++;
		}
		b->n = (unsigned)k;
		b->unsettled = b->n;
		if (why == NULL && k == 0)
			why = n == 0 ? "rcpts holds no recipient" : "no recipient has a \"to\" address";
	}
	json_decref(arr);
	if (why != NULL)
		batch_poison(s, b, why, rcpts);
	s->st.rcpts_in += b->n;
	return b;
}

static int
state_final(const char *st)
{
	return ctl_rcpt_state_final(ctl_rcpt_state_parse(st));
}

/* Finalise without a delivery attempt (cancelled, bad template, DNS). */
static void
finalise_local(struct ctl_sched *s, struct srcpt *r, const char *state,
	int code, const char *text, int real_attempt)
{
	struct ctl_result res;

	memset(&res, 0, sizeof(res));
	res.outcome = SMTP_OUT_FAILED;
	res.stage = SMTP_STAGE_LOCAL;
	res.code = code;
	snprintf(res.text, sizeof(res.text), "%s", text);
	ctl_op_final(s, r, state, &res, "", "", real_attempt);
}

/*
 * The suppression entries of the batch's recipients in the campaign's
 * sender-domain list (one HMGET of their lower-cased addresses).
 * @return the reply (an array of b->n, nil = not suppressed) or NULL.
 */
static redisReply *
batch_suppressed(struct ctl_sched *s, struct sbatch *b)
{
	const char **argv = calloc(b->n + 2, sizeof(char *));
	char **low = calloc(b->n ? b->n : 1, sizeof(char *));
	redisReply *rep = NULL;
	unsigned i;

	if (argv == NULL || low == NULL)
		goto out;
	argv[0] = "HMGET";
	argv[1] = b->camp->k_sup;
	for (i = 0; i < b->n; i++) {
		if ((low[i] = strdup(b->r[i].addr)) == NULL)
			goto out;
		lower(low[i]);
		argv[2 + i] = low[i];
	}
	rep = ctl_redis_cmdv(s->rc, (int)b->n + 2, argv, NULL);
	if (rep == NULL)
		ctl_rc_failed(s, "hmget_suppress");
	else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != b->n) {
		freeReplyObject(rep);
		rep = NULL;
	}
out:
	for (i = 0; low != NULL && i < b->n; i++)
		free(low[i]);
	free(low);
	free(argv);
	return rep;
}

/*
 * Read the current states of the batch's recipients and queue those that
 * still need this attempt; those in the sender domain's suppression list
 * (written after submit: an unsubscribe mid-campaign) are finalised
 * cancelled without a session. @return 0, or -EIO (try again later).
 */
static int
batch_queue(struct ctl_sched *s, struct sbatch *b, int cancel)
{
	const char **argv = calloc(b->n + 2, sizeof(char *));
	char key[CTL_KEY_MAX], why[CTL_REASON_MAX];
	redisReply *rep, *sup = NULL;
	uint64_t now = ctl_sched_now(s);

	if (argv == NULL)
		return -ENOMEM;
	if (b->n == 0) {	/* HMGET needs a field: nothing to read, nothing to do */
		free(argv);
		ctl_poison_mark(b, "no recipients");
		b->admitted = 1;
		if (!b->acking)
			ctl_op_ack(s, b);
		return 0;
	}
	if (b->camp->cc == NULL && !cancel)
		ctl_poison_mark(b, b->camp->bad);
	snprintf(key, sizeof(key), "%s" CTL_K_RCPT, s->ns, b->camp_id);
	argv[0] = "HMGET";
	argv[1] = key;
	for (unsigned i = 0; i < b->n; i++)
		argv[2 + i] = b->r[i].addr;
	rep = ctl_rc_ready(s) ? ctl_redis_cmdv(s->rc, (int)b->n + 2, argv, NULL) : NULL;
	free(argv);
	if (rep == NULL) {
		ctl_rc_failed(s, "hmget");
		return -EIO;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != b->n) {
		freeReplyObject(rep);
		return -EIO;
	}
	if (!cancel && (sup = batch_suppressed(s, b)) == NULL) {
		freeReplyObject(rep);
		return -EIO;
	}
	b->admitted = 1;
	for (unsigned i = 0; i < b->n; i++) {
		struct srcpt *r = &b->r[i];
		const redisReply *v = rep->element[i];
		json_t *j = NULL, *st = NULL, *at = NULL;

		if (v->type != REDIS_REPLY_STRING) {
			LOGW("event=unknown_rcpt batch=%s campaign=%s rcpt=%s",
				b->id, b->camp_id, r->addr);
			s->st.rcpts_skipped++;
			rcpt_done(s, r);
			continue;
		}
		j = json_loads(v->str, 0, NULL);
		st = json_object_get(j, "state");
		at = json_object_get(j, "attempts");
		if (json_is_string(st) && state_final(json_string_value(st))) {
			s->st.rcpts_skipped++;
			rcpt_done(s, r);
		} else if (json_is_string(st) &&
		    strcmp(json_string_value(st), "deferred") == 0 &&
		    json_is_integer(at) && json_integer_value(at) > (json_int_t)r->attempt) {
			/* already handed to a later attempt (crash before the ack) */
			s->st.rcpts_skipped++;
			rcpt_done(s, r);
		} else if (cancel) {
			s->st.cancelled++;
			finalise_local(s, r, "cancelled", 0, "campaign cancelled", 0);
		} else if (sup->element[i]->type == REDIS_REPLY_STRING) {
			ctl_suppress_describe(sup->element[i]->str, why, sizeof(why));
			s->st.cancelled++;
			s->st.suppressed++;
			finalise_local(s, r, "cancelled", 0, why, 0);
		} else if (b->camp->cc == NULL) {
			s->st.failed++;
			finalise_local(s, r, "failed", 0, b->camp->bad, 0);
		} else {
			if (r->first_ms == 0)
				r->first_ms = b->camp->submitted_ms ? b->camp->submitted_ms : now;
			q_push(s, b->dom, r);
		}
		json_decref(j);
	}
	freeReplyObject(rep);
	if (sup != NULL)
		freeReplyObject(sup);
	if (b->unsettled == 0 && !b->acking)
		ctl_op_ack(s, b);
	return 0;
}

/*
 * A poison entry: each recipient it names fails with its reason (the
 * finalise script skips those already final or unknown), then the entry
 * goes to jobs:dead. Without a campaign there is nothing to fail.
 */
static void
batch_dead_admit(struct ctl_sched *s, struct sbatch *b)
{
	int err = -ENOENT;

	b->recheck_at = ctl_sched_now(s) + RECHECK_MS;
	if (b->camp == NULL && b->camp_id[0] != '\0') {
		b->camp = ctl_camp_get(s, b->camp_id, &err);
		if (b->camp == NULL && err == -EIO)
			return;		/* Redis away: again later */
		if (b->camp != NULL)
			b->camp->refs++;
	}
	if (b->camp == NULL) {
		for (unsigned i = 0; i < b->n; i++)
			b->r[i].state = SR_DONE;
		b->unsettled = 0;
	}
	b->admitted = 1;
	for (unsigned i = 0; b->camp != NULL && i < b->n; i++) {
		s->st.failed++;
		finalise_local(s, &b->r[i], "failed", 0, b->dead, 0);
	}
	if (b->unsettled == 0 && !b->acking)
		ctl_op_ack(s, b);
}

/* Try to start work on a held batch. */
static void
batch_admit(struct ctl_sched *s, struct sbatch *b)
{
	int err;

	if (b->admitted)
		return;
	if (b->dead != NULL && b->camp == NULL) {
		batch_dead_admit(s, b);
		return;
	}
	b->recheck_at = ctl_sched_now(s) + RECHECK_MS;
	if (b->camp == NULL) {
		b->camp = ctl_camp_get(s, b->camp_id, &err);
		if (b->camp != NULL)
			b->camp->refs++;
		if (b->camp == NULL) {
			if (err == -ENOENT)
				batch_bad(s, b, "campaign does not exist");
			else if (err == -EINVAL || err == -ENOMEM)
				batch_bad(s, b, "bad campaign id");
			return;
		}
	}
	if (ctl_camp_refresh(s, b->camp) < 0)
		return;
	if (b->camp->state == SC_MISSING) {
		batch_bad(s, b, "campaign does not exist");
		return;
	}
	if (b->camp->state == SC_CANCELLED) {
		batch_queue(s, b, 1);
		return;
	}
	if (b->camp->cc != NULL && !ctl_camp_sendable(s, b->camp, ctl_sched_now(s))) {
		/* paused or outside its window: it waits here, its own stream
		 * not read meanwhile (ctl_intake.c); from the shared stream it
		 * moves to its own, where it waits without being held */
		if (b->src == s->src_shared && !b->acking) {
			s->st.batches_parked++;
			ctl_op_park(s, b);
		}
		return;
	}
	batch_queue(s, b, 0);
}

void
ctl_take_entries(struct ctl_sched *s, struct ssrc *src, const redisReply *entries, int claimed)
{
	if (entries == NULL || entries->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i];
		struct sbatch *b;

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		if (batch_find(s, src, e->element[0]->str) != NULL)
			continue;	/* ours already (a refresh came late) */
		/* a pending entry deleted from the stream comes with nil
		 * fields: batch_new() finds it bad and acknowledges it */
		b = batch_new(s, src, e->element[0]->str,
			e->element[1]->type == REDIS_REPLY_ARRAY ? e->element[1] : NULL);
		if (b == NULL)
			continue;
		if (claimed)
			s->st.batches_claimed++;
		else
			s->st.batches_read++;
		LOGD("event=batch id=%s campaign=%s domain=%s n=%u claimed=%d",
			b->id, b->camp_id, b->dom ? b->dom->name : "-", b->n, claimed);
		if (!b->acking)
			batch_admit(s, b);
	}
}

/* ------------------------------------------------------------------ */
/* the lease on held entries, and the consumer name's lock             */
/* ------------------------------------------------------------------ */

#define LEASE_CHUNK 256		/* entries per lease_refresh.lua call */

static struct ctl_redis_script lease_lua = { .src = ctl_lua_lease_refresh };
static struct ctl_redis_script lock_lua = { .src = ctl_lua_consumer_lock };

/* The lock outlives a crash by half the claim idle time at most, so a
 * daemon restarted under the same name waits less than its entries
 * would. */
static uint64_t
lock_ttl_ms(const struct ctl_sched *s)
{
	return s->conf.min_idle_ms / 2 >= 1000 ? s->conf.min_idle_ms / 2 : 1000;
}

/*
 * No new session for a batch whose lease is older than half the claim
 * idle time: by then another consumer may be about to claim it. A batch
 * another consumer took is never sent from again.
 */
static int
lease_stale(const struct ctl_sched *s, const struct sbatch *b, int64_t mono)
{
	return b->lost || mono - b->refreshed_mono > (int64_t)(s->conf.min_idle_ms / 2);
}

/* Another consumer owns the entry now: it sends what is left. Ours to do
 * is what is in flight; the queued recipients are dropped here (not
 * finalised: they are its), and the ack script leaves its entry alone. */
static void
lease_lost(struct ctl_sched *s, struct sbatch *b)
{
	s->st.leases_lost++;
	b->lost = 1;
	LOGW("event=lease_lost id=%s campaign=%s reason=\"claimed by another consumer\"",
		b->id, b->camp_id);
	if (!b->admitted) {
		if (!b->acking)
			batch_free(s, b);
		return;
	}
	for (unsigned i = 0; i < b->n && !b->acking; i++) {
		struct srcpt *r = &b->r[i];

		if (r->state == SR_QUEUED && b->dom != NULL) {
			q_remove(b->dom, r);
			rcpt_done(s, r);
		}
	}
}

/* Reset the idle time of every entry of @p src we hold that is still
 * ours (all of them, LEASE_CHUNK at a time); the lease of a batch moves
 * on only with a reply that names it. @return 0, or -EIO */
static int
refresh_src(struct ctl_sched *s, struct ssrc *src, int64_t now)
{
	const char *argv[3 + LEASE_CHUNK];
	struct sbatch *chunk[LEASE_CHUNK], *b = s->batches;

	while (b != NULL && ctl_rc_ready(s)) {
		unsigned k = 0;
		redisReply *r;

		argv[0] = src->key;
		argv[1] = s->group;
		argv[2] = s->consumer;
		for (; b != NULL && k < LEASE_CHUNK; b = b->next) {
			if (b->src != src || b->lost ||
			    now - b->refreshed_mono < (int64_t)s->conf.refresh_every_ms / 2)
				continue;
			chunk[k] = b;
			argv[3 + k++] = b->id;
		}
		if (k == 0)
			return 0;
		r = ctl_redis_eval(s->rc, &lease_lua, 1, 3 + (int)k, argv, NULL);
		if (r == NULL) {
			ctl_rc_failed(s, "lease_refresh");
			return -EIO;
		}
		if (r->type != REDIS_REPLY_ARRAY) {
			LOGW("event=lease_refresh_failed stream=%s reason=\"%s\"", src->key,
				r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			freeReplyObject(r);
			return -EIO;
		}
		for (unsigned i = 0; i < k; i++) {
			size_t j;

			for (j = 0; j < r->elements; j++)
				if (r->element[j]->type == REDIS_REPLY_STRING &&
				    strcmp(r->element[j]->str, chunk[i]->id) == 0)
					break;
			if (j < r->elements)
				chunk[i]->refreshed_mono = now;
			else
				lease_lost(s, chunk[i]);	/* may free chunk[i], never b */
		}
		freeReplyObject(r);
	}
	return 0;
}

/* The lease of every held entry, stream by stream. */
static void
refresh(struct ctl_sched *s)
{
	int64_t now = ctl_mono_ms();

	for (struct ssrc *q = s->srcs; q != NULL; q = q->next) {
		if (q->held > 0 && refresh_src(s, q, now) < 0)
			return;
	}
}

/* The holder of the lock is a process of this host that no longer runs
 * (a daemon restarted after a crash): its token is "<host> pid <pid> at
 * <ms>" with our host name. */
static int
holder_gone(const char *holder)
{
	char host[64] = "host";
	size_t n;
	long pid;

	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	n = strlen(host);
	if (strncmp(holder, host, n) != 0 || strncmp(holder + n, " pid ", 5) != 0)
		return 0;
	pid = strtol(holder + n + 5, NULL, 10);
	return pid > 0 && pid != getpid() && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* take, renew or drop the consumer lock (or steal it from @p from).
 * @return 0, -EBUSY (another daemon's; err says whose and for how long,
 * and *holder, if given, gets its token), -EIO */
static int
consumer_lock_from(struct ctl_sched *s, const char *mode, const char *from,
	char *holder, size_t holderlen, char *err, size_t errlen)
{
	char ttl[24];
	const char *argv[5] = { s->k_lock, s->lock_token, ttl, mode, from ? from : "" };
	redisReply *r;
	int rc = -EIO;

	snprintf(ttl, sizeof(ttl), "%" PRIu64, lock_ttl_ms(s));
	r = ctl_redis_eval(s->rc, &lock_lua, 1, 5, argv, NULL);
	if (r == NULL) {
		mp_errf(err, errlen, "redis: %s", ctl_redis_error(s->rc));
		return -EIO;
	}
	if (r->type == REDIS_REPLY_INTEGER) {
		rc = 0;
	} else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
	    r->element[1]->type == REDIS_REPLY_STRING) {
		mp_errf(err, errlen, "consumer name '%s' is in use by another daemon (%s, "
			"lock %s for %lld ms more); give each daemon its own consumer name",
			s->consumer, r->element[1]->str, s->k_lock,
			r->element[2]->type == REDIS_REPLY_INTEGER ? r->element[2]->integer : -1);
		if (holder != NULL)
			snprintf(holder, holderlen, "%s", r->element[1]->str);
		rc = -EBUSY;
	} else {
		mp_errf(err, errlen, "redis: %s", r->type == REDIS_REPLY_ERROR ? r->str :
			"unexpected reply to the consumer lock");
	}
	freeReplyObject(r);
	return rc;
}

static int
consumer_lock(struct ctl_sched *s, const char *mode, char *err, size_t errlen)
{
	char holder[192];
	int rc = consumer_lock_from(s, mode, NULL, holder, sizeof(holder), err, errlen);

	/* a daemon of this host restarted after a crash needs no wait */
	if (rc == -EBUSY && strcmp(mode, "take") == 0 && holder_gone(holder)) {
		LOGW("event=consumer_lock_taken_over holder=\"%s\" reason=\"that process is gone\"",
			holder);
		rc = consumer_lock_from(s, "steal", holder, NULL, 0, err, errlen);
	}
	return rc;
}

/* Renew the lock now and then; another daemon holding it now means ours
 * expired while we were cut off and it took the name: stop. */
static void
lock_renew(struct ctl_sched *s, int64_t mono)
{
	char err[512];

	if (mono - s->lock_mono < (int64_t)lock_ttl_ms(s) / 3 || !ctl_rc_ready(s))
		return;
	switch (consumer_lock(s, "renew", err, sizeof(err))) {
	case 0:
		s->lock_mono = mono;
		break;
	case -EBUSY:
		MP_LOG(MP_LOG_ERR, "ctl_sched", "event=consumer_lock_lost reason=\"%s\"", err);
		s->stopping = 1;
		break;
	default:
		ctl_rc_failed(s, "consumer_lock");
		break;
	}
}

/* ------------------------------------------------------------------ */
/* outcomes                                                            */
/* ------------------------------------------------------------------ */

static void
retry_or_fail(struct ctl_sched *s, struct srcpt *r, const struct ctl_result *res,
	const char *mx, const char *ip)
{
	struct ctl_retry_conf rc = s->conf.retry;
	uint64_t now = ctl_sched_now(s), due = 0;
	int err;

	rc.max_age_ms = r->b->camp->max_age_ms ? r->b->camp->max_age_ms : rc.max_age_ms;
	if (r->first_ms == 0 || r->first_ms > now)
		r->first_ms = now;
	err = ctl_retry_next(&rc, r->attempt + 1, r->first_ms, now,
		ctl_retry_rand(&s->rng), &due);
	if (err == 0) {
		s->st.deferred++;
		ctl_op_defer(s, r, res, mx, ip, due);
		return;
	}
	/* past the maximum age: failed, keeping the last reply */
	{
		struct ctl_result fin = *res;

		snprintf(fin.text, sizeof(fin.text), "expired after %u attempts: %.470s",
			r->attempt + 1, res->text);
		s->st.expired++;
		s->st.failed++;
		ctl_op_final(s, r, "failed", &fin, mx, ip, 1);
	}
}

static void
route_fail_all(struct ctl_sched *s, struct sdom *d, uint64_t now)
{
	struct ctl_result res;
	struct srcpt *r, *next;

	memset(&res, 0, sizeof(res));
	res.stage = SMTP_STAGE_CONNECT;
	snprintf(res.text, sizeof(res.text), "%s", d->route.reason);
	for (r = d->qhead; r != NULL; r = next) {
		next = r->qnext;
		if (!ctl_camp_sendable(s, r->b->camp, now) && r->b->camp->state != SC_CANCELLED)
			continue;
		q_remove(d, r);
		if (r->b->camp->state == SC_CANCELLED) {
			s->st.cancelled++;
			finalise_local(s, r, "cancelled", 0, "campaign cancelled", 0);
		} else if (d->route.status == CTL_ROUTE_PERM) {
			res.outcome = SMTP_OUT_BOUNCED;
			s->st.bounced++;
			ctl_op_final(s, r, "bounced", &res, "", "", 1);
		} else {
			res.outcome = SMTP_OUT_DEFERRED;
			retry_or_fail(s, r, &res, "", "");
		}
	}
}

/*
 * The host, not the recipient, failed: no connection, a greeting or
 * EHLO/HELO refused or timed out (even with 5xx), 421, or a TLS session
 * that "required"/"verify" needs and could not get. The next MX may well
 * serve, so it is tried before the recipient waits for a retry.
 */
static int
session_failed(const struct ctl_order *o, const struct ctl_result *res)
{
	switch (res->stage) {
	case SMTP_STAGE_CONNECT:
	case SMTP_STAGE_GREETING:
	case SMTP_STAGE_HELO:
		return 1;
	case SMTP_STAGE_TLS:
		return o->policy >= SMTP_TLS_REQUIRED || res->code == 421;
	default:
		return res->code == 421;
	}
}

/*
 * The session failed the campaign's "required"/"verify" TLS policy for
 * want of TLS (STARTTLS not offered or refused, a handshake or a
 * certificate that failed), not for a timeout or a 421, and the campaign
 * has a safe-content fallback. (A domain with DANE or MTA-STS in enforce
 * mode must never get here; neither exists in mailpump yet.)
 */
static int
cannot_meet_policy(const struct ctl_order *o, const struct ctl_result *res,
	const struct srcpt *r)
{
	return r->b->camp->cc_fb != NULL && !r->fallback && !r->plaintext &&
	       res->stage == SMTP_STAGE_TLS && o->policy >= SMTP_TLS_REQUIRED &&
	       res->code != 421 && strncmp(res->text, "timeout", 7) != 0;
}

static void
on_result(void *arg, struct ctl_order *o, const struct ctl_result *res)
{
	struct ctl_sched *s = arg;
	struct somap *om = o->sched_data;
	struct srcpt *r;
	uint64_t now = ctl_sched_now(s);
	struct sdom *d = om->dom;
	char ip[INET6_ADDRSTRLEN] = "";

	if (res->msg_index >= om->n || (r = om->r[res->msg_index]) == NULL) {
		LOGW("event=stray_result order=%" PRIu64 " index=%u", o->id, res->msg_index);
		return;
	}
	om->r[res->msg_index] = NULL;
	s->inflight_rcpts--;
	if (res->outcome != SMTP_OUT_FAILED && res->stage != SMTP_STAGE_CONNECT)
		ctl_shape_on_reply(s->conf.shape, d->name, res->code, now);
	if (mp_sockaddr_len(&o->addr) != 0)
		mp_sockaddr_ntop(&o->addr, ip, sizeof(ip));
	LOGD("event=result order=%" PRIu64 " rcpt=%s mx=%s ip=%s outcome=%s stage=%s code=%d",
		o->id, r->addr, o->mx, ip, smtp_outcome_name(res->outcome),
		smtp_stage_name(res->stage), res->code);
	switch (res->outcome) {
	case SMTP_OUT_DELIVERED:
		if (!res->tls_on)
			om->plain_delivered++;
		if (r->fallback) {
			s->st.delivered_fallback++;
			ctl_op_final(s, r, "delivered_fallback", res, o->mx, ip, 1);
			return;
		}
		s->st.delivered++;
		ctl_op_final(s, r, "delivered", res, o->mx, ip, 1);
		return;
	case SMTP_OUT_BOUNCED: {
		enum ctl_bounce_class bc = ctl_sched_classify(s, res);

		if (s->conf.bounce_final_mask & (1u << bc)) {
			s->st.bounced++;
			ctl_op_final(s, r, "bounced", res, o->mx, ip, 1);
			return;
		}
		/* the server refused the sender (policy, reputation,
		 * authentication...), not the address: never a bounce */
		s->st.sender_refusals++;
		if (s->conf.sender_refusal_fails) {
			s->st.failed++;
			ctl_op_final(s, r, "failed", res, o->mx, ip, 1);
			return;
		}
		retry_or_fail(s, r, res, o->mx, ip);
		return;
	}
	case SMTP_OUT_FAILED:
		s->st.failed++;
		ctl_op_final(s, r, "failed", res, o->mx, ip, 1);
		return;
	case SMTP_OUT_DEFERRED:
	default:
		break;
	}
	if (res->stage == SMTP_STAGE_TLS && o->policy == SMTP_TLS_OPPORTUNISTIC &&
	    !r->plaintext && !s->stopping) {
		/* STARTTLS broke: the same server again without it */
		r->plaintext = 1;
		s->st.plaintext_retries++;
		q_push(s, d, r);
		return;
	}
	if (session_failed(o, res) &&
	    d->rstate == SD_READY && d->route.status == CTL_ROUTE_OK &&
	    (unsigned)r->hop + 1 < d->route.n && !s->stopping) {
		r->hop++;
		s->st.mx_fallbacks++;
		q_push(s, d, r);
		return;
	}
	if (cannot_meet_policy(o, res, r) && !s->stopping) {
		/* every MX of this attempt failed the TLS policy: the
		 * safe-content fallback goes instead, from the first MX */
		LOGI("event=fallback campaign=%s rcpt=%s mx=%s reason=\"%s\"",
			r->b->camp_id, r->addr, o->mx, res->text);
		r->fallback = 1;
		r->hop = 0;
		s->st.fallbacks++;
		q_push(s, d, r);
		return;
	}
	retry_or_fail(s, r, res, o->mx, ip);
}

static void
on_done(void *arg, struct ctl_order *o, const struct ctl_sess_report *rep)
{
	struct ctl_sched *s = arg;
	struct somap *om = o->sched_data;
	uint64_t now = ctl_sched_now(s);

	for (unsigned i = 0; i < om->n; i++) {
		if (om->r[i] != NULL) {
			struct ctl_result res;

			/* the backend broke its contract: do not lose the recipient */
			LOGW("event=missing_result order=%" PRIu64 " rcpt=%s", o->id, om->r[i]->addr);
			memset(&res, 0, sizeof(res));
			res.msg_index = i;
			res.outcome = SMTP_OUT_DEFERRED;
			res.stage = SMTP_STAGE_CONNECT;
			snprintf(res.text, sizeof(res.text), "no result from the delivery backend");
			on_result(s, o, &res);
		}
	}
	if (!rep->connected)
		ctl_shape_on_reply(s->conf.shape, om->dom->name, 0, now);
	ctl_shape_conn_release(s->conf.shape, om->dom->name, now);
	om->dom->conns--;
	ctl_op_tls(s, o, rep, om->plain_delivered);
	if (om->prev != NULL)
		om->prev->next = om->next;
	else
		s->omaps = om->next;
	if (om->next != NULL)
		om->next->prev = om->prev;
	free(om);
	s->orders_out--;
	ctl_order_free(o);
}

/* ------------------------------------------------------------------ */
/* dispatch                                                            */
/* ------------------------------------------------------------------ */

static void
dns_cb(void *user, const struct ctl_dns_result *res)
{
	struct sdom *d = user;
	struct ctl_route *rt = &d->route;

	memset(rt, 0, sizeof(*rt));
	d->rstate = SD_READY;
	d->route_mono = ctl_mono_ms();
	if (res->status == CTL_DNS_OK) {
		for (unsigned i = 0; i < res->n_hosts && rt->n < CTL_HOPS_MAX; i++) {
			const struct ctl_dns_host *h = &res->hosts[i];

			uint16_t port = h->port ? h->port : 25;

			/* IPv4 first; IPv6 ones exist only for a host without any */
			for (unsigned k = 0; k < h->n_addr + h->n_addr6 && rt->n < CTL_HOPS_MAX; k++) {
				struct ctl_hop *hop = &rt->hop[rt->n++];

				snprintf(hop->host, sizeof(hop->host), "%s", h->name);
				hop->addr = k < h->n_addr ? mp_sockaddr_v4(h->addr[k], port) :
					mp_sockaddr_v6(&h->addr6[k - h->n_addr], port);
				hop->implicit_tls = (uint8_t)res->implicit_tls;
			}
		}
		rt->status = rt->n > 0 ? CTL_ROUTE_OK : CTL_ROUTE_TEMP;
		if (rt->n == 0)
			snprintf(rt->reason, sizeof(rt->reason), "no usable address");
	} else {
		rt->status = ctl_dns_status_permanent(res->status) ? CTL_ROUTE_PERM : CTL_ROUTE_TEMP;
		snprintf(rt->reason, sizeof(rt->reason), "DNS %s for %.100s: %.120s",
			ctl_dns_status_name(res->status), d->name, res->error);
	}
	LOGD("event=route domain=%s status=%d hops=%u", d->name, rt->status, rt->n);
}

static enum smtp_tls_policy
rcpt_policy(const struct srcpt *r, const char *domain)
{
	if (r->plaintext)
		return SMTP_TLS_NONE;
	if (r->fallback)
		return r->b->camp->fb_policy;
	return ctl_camp_policy(r->b->camp, domain);
}

static int
fields_of(const struct srcpt *r, const char **names, const char **values,
	size_t *lens, char (*num)[32], size_t max)
{
	const char *k;
	json_t *v;
	size_t n = 0;

	if (r->fields == NULL)
		return 0;
	json_object_foreach(r->fields, k, v) {
		if (n == max)
			break;
		if (json_is_string(v)) {
			values[n] = json_string_value(v);
			lens[n] = json_string_length(v);
		} else if (json_is_integer(v)) {
			snprintf(num[n], 32, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			values[n] = num[n];
			lens[n] = strlen(num[n]);
		} else if (json_is_real(v)) {
			snprintf(num[n], 32, "%g", json_real_value(v));
			values[n] = num[n];
			lens[n] = strlen(num[n]);
		} else if (json_is_boolean(v)) {
			values[n] = json_is_true(v) ? "true" : "false";
			lens[n] = strlen(values[n]);
		} else {
			continue;
		}
		names[n++] = k;
	}
	return (int)n;
}

#define FIELDS_MAX CTL_RCPT_FIELDS_MAX

/* Build and submit one order for @p d. @return 1 submitted, 0 nothing to do. */
static int
dispatch_one(struct ctl_sched *s, struct sdom *d, uint64_t now)
{
	struct srcpt *cand[1024];
	struct ctl_shape_limits lim;
	struct ctl_shape_state st;
	enum smtp_tls_policy pol = SMTP_TLS_NONE;
	struct srcpt *r, *next;
	struct ctl_order *o;
	struct somap *om;
	unsigned n = 0, want, scanned = 0;
	int64_t mono = ctl_mono_ms();
	int hop = -1, rc;

	ctl_shape_limits(s->conf.shape, d->name, now, &lim);
	want = lim.msgs_per_conn ? lim.msgs_per_conn : 1;
	if (want > 1024)
		want = 1024;
	for (r = d->qhead; r != NULL && n < want && scanned < SCAN_MAX; r = next) {
		struct scamp *c = r->b->camp;

		next = r->qnext;
		scanned++;
		if (lease_stale(s, r->b, mono)) {
			s->st.lease_waits++;
			continue;
		}
		ctl_camp_refresh(s, c);
		if (c->state == SC_CANCELLED) {
			q_remove(d, r);
			s->st.cancelled++;
			finalise_local(s, r, "cancelled", 0, "campaign cancelled", 0);
			continue;
		}
		if (!ctl_camp_sendable(s, c, now))
			continue;
		if (r->hop >= d->route.n)
			r->hop = 0;
		if (hop < 0) {
			hop = r->hop;
			pol = rcpt_policy(r, d->name);
		} else if (r->hop != hop || rcpt_policy(r, d->name) != pol) {
			continue;
		}
		cand[n++] = r;
	}
	if (n == 0)
		return 0;
	if (ctl_shape_conn_acquire(s->conf.shape, d->name, now) != 0)
		return 0;
	/* tokens: as many messages as the bucket holds now, at least one */
	if (ctl_shape_state_get(s->conf.shape, d->name, now, &st) == 0 && st.lim.rate > 0 &&
	    st.tokens >= 1 && st.tokens < n)
		n = (unsigned)st.tokens;
	while (n > 0 && (rc = ctl_shape_msg_take(s->conf.shape, d->name, n, now)) != 0) {
		if (rc != -EAGAIN && rc != -E2BIG)
			n = 1;
		n--;
	}
	if (n == 0) {
		ctl_shape_conn_release(s->conf.shape, d->name, now);
		return 0;
	}
	o = ctl_order_new(n);
	om = calloc(1, sizeof(*om) + n * sizeof(struct srcpt *));
	if (o == NULL || om == NULL) {
		ctl_order_free(o);
		free(om);
		ctl_shape_conn_release(s->conf.shape, d->name, now);
		return 0;
	}
	o->id = ++s->next_order;
	snprintf(o->domain, sizeof(o->domain), "%s", d->name);
	snprintf(o->mx, sizeof(o->mx), "%s", d->route.hop[hop].host);
	o->addr = d->route.hop[hop].addr;
	o->implicit_tls = d->route.hop[hop].implicit_tls;
	o->policy = pol;
	o->msgs_per_conn = (uint16_t)(lim.msgs_per_conn > 65535 ? 65535 : lim.msgs_per_conn);
	o->rcpt_per_txn = (uint16_t)(lim.rcpts_per_txn > 65535 ? 65535 : lim.rcpts_per_txn);
	o->sched_data = om;
	om->dom = d;
	for (unsigned i = 0; i < n; i++) {
		const char *names[FIELDS_MAX], *values[FIELDS_MAX];
		size_t lens[FIELDS_MAX];
		char num[FIELDS_MAX][32];
		int nf = fields_of(cand[i], names, values, lens, num, FIELDS_MAX);
		char alabel[CTL_ADDR_MAX];
		/* an IDN domain goes out as A-labels: no SMTPUTF8 needed for it */
		struct ctl_msg *m = ctl_msg_new(cand[i]->fallback ? cand[i]->b->camp->cc_fb :
			cand[i]->b->camp->cc,
			ctl_idn_addr(cand[i]->addr, alabel, sizeof(alabel)) == 0 ? alabel : cand[i]->addr,
			names, values, lens, (size_t)nf);

		if (m == NULL)
			break;
		m->id = o->id * 1024 + i;
		m->attempt = cand[i]->attempt;
		o->msgs[o->n_msgs++] = m;
		om->r[om->n++] = cand[i];
	}
	if (o->n_msgs == 0 || (rc = s->be.ops->submit(s->be.be, o)) != 0) {
		ctl_shape_conn_release(s->conf.shape, d->name, now);
		ctl_order_free(o);
		free(om);
		return 0;
	}
	for (unsigned i = 0; i < om->n; i++) {
		q_remove(d, om->r[i]);
		om->r[i]->state = SR_INFLIGHT;
	}
	s->inflight_rcpts += om->n;
	d->conns++;
	om->next = s->omaps;
	if (s->omaps != NULL)
		s->omaps->prev = om;
	s->omaps = om;
	s->orders_out++;
	s->st.orders++;
	s->st.msgs_dispatched += om->n;
	LOGD("event=order id=%" PRIu64 " domain=%s mx=%s msgs=%u policy=%d",
		o->id, o->domain, o->mx, om->n, (int)pol);
	return 1;
}

/* ctl_dns_resolve() refused: only a bad name is the domain's fault (a
 * bounce); out of memory or a resolver shutting down is ours (defer). */
static void
route_local_error(struct sdom *d, int err, int64_t mono)
{
	d->rstate = SD_READY;
	d->route_mono = mono;
	d->route.n = 0;
	d->route.status = err == -EINVAL ? CTL_ROUTE_PERM : CTL_ROUTE_TEMP;
	if (err == -EINVAL)
		snprintf(d->route.reason, sizeof(d->route.reason),
			"bad destination domain %.200s", d->name);
	else
		snprintf(d->route.reason, sizeof(d->route.reason),
			"local resolver error for %.200s: %s", d->name, strerror(-err));
}

static void
dispatch(struct ctl_sched *s)
{
	uint64_t now = ctl_sched_now(s);
	int64_t mono = ctl_mono_ms();
	struct sdom **pp = &s->active;
	int rc;

	if (s->stopping || s->be.ops == NULL)
		return;
	while (*pp != NULL) {
		struct sdom *d = *pp;

		if (d->qlen == 0) {
			*pp = d->anext;
			d->active = 0;
			d->anext = NULL;
			continue;
		}
		pp = &d->anext;
		if (d->rstate == SD_READY && mono - d->route_mono > (int64_t)s->conf.route_ttl_ms &&
		    d->conns == 0)
			d->rstate = SD_NONE;
		if (d->rstate == SD_NONE) {
			d->rstate = SD_RESOLVING;
			if ((rc = ctl_dns_resolve(s->conf.dns, d->name, dns_cb, d)) < 0)
				route_local_error(d, rc, mono);
			continue;
		}
		if (d->rstate == SD_RESOLVING)
			continue;
		if (d->route.status != CTL_ROUTE_OK) {
			route_fail_all(s, d, now);
			/* a temporary failure is asked again next time */
			if (d->route.status == CTL_ROUTE_TEMP)
				d->rstate = SD_NONE;
			continue;
		}
		while (s->orders_out < s->conf.backend_slots) {
			struct ctl_shape_limits lim;

			ctl_shape_limits(s->conf.shape, d->name, now, &lim);
			if (d->conns >= lim.max_conns)
				break;
			if (!dispatch_one(s, d, now))
				break;
		}
	}
}

/* ------------------------------------------------------------------ */
/* loop                                                                */
/* ------------------------------------------------------------------ */

/* Forget domains nothing refers to any more (the resolver keeps its own
 * cache), so the list stays as small as the work in hand. */
static void
dom_gc(struct ctl_sched *s)
{
	struct sdom **pp = &s->doms;

	while (*pp != NULL) {
		struct sdom *d = *pp;

		if (d->refs == 0 && d->conns == 0 && d->qlen == 0 && !d->active &&
		    d->rstate != SD_RESOLVING) {
			*pp = d->next;
			free(d);
			continue;
		}
		pp = &d->next;
	}
}

static int
queued_work(const struct ctl_sched *s)
{
	for (const struct sdom *d = s->active; d != NULL; d = d->anext) {
		if (d->qlen > 0)
			return 1;
	}
	return 0;
}

static void
check_redis_idle(struct ctl_sched *s)
{
	redisReply *z;

	s->redis_idle = 0;
	if (!ctl_rc_ready(s) || ctl_intake_pending(s) != 0)
		return;
	z = ctl_redis_cmd(s->rc, "ZCARD %s", s->k_retry);
	if (z == NULL) {
		ctl_rc_failed(s, "zcard");
		return;
	}
	if (z->type == REDIS_REPLY_INTEGER && z->integer == 0)
		s->redis_idle = 1;
	freeReplyObject(z);
}

int
ctl_sched_finished(struct ctl_sched *s, int until_idle)
{
	int local_idle = s->orders_out == 0 && s->nops == 0;

	if (s->stopping)
		return local_idle;
	if (!until_idle)
		return 0;
	return local_idle && s->nbatches == 0 && s->last_read_empty && s->redis_idle;
}

/* The events stream by age as well as by length (rcpt_final.lua's MAXLEN):
 * XTRIM MINID ~ drops whole macro nodes older than the bound, cheap when
 * there is nothing to drop. Every daemon does it; it is idempotent. */
static void
events_trim(struct ctl_sched *s)
{
	/* entry ids are Redis's wall clock, not the scheduler's */
	uint64_t now = (uint64_t)ctl_now_ms();
	redisReply *r;

	if (s->conf.events_max_age_ms == UINT64_MAX || now <= s->conf.events_max_age_ms ||
	    !ctl_rc_ready(s))
		return;
	r = ctl_redis_cmd(s->rc, "XTRIM %s MINID ~ %" PRIu64 "-0", s->k_events,
		now - s->conf.events_max_age_ms);
	if (r == NULL) {
		ctl_rc_failed(s, "events_trim");
		return;
	}
	if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
		s->st.events_trimmed += (uint64_t)r->integer;
		LOGI("event=events_trimmed entries=%lld max_age_s=%" PRIu64, r->integer,
			s->conf.events_max_age_ms / 1000);
	}
	freeReplyObject(r);
}

/*
 * Claim stale entries every claim_every_ms; a daemon that was full then
 * claims again at every chance until it has had room, so a peer that is
 * never idle still takes over a cut-off daemon's entries (the oldest work)
 * before it reads new ones.
 */
static void
claim_if_due(struct ctl_sched *s, int64_t mono)
{
	if (mono < s->claim_mono)
		return;
	s->claim_mono = ctl_intake_claim(s) ? mono : mono + (int64_t)s->conf.claim_every_ms;
}

int
ctl_sched_step(struct ctl_sched *s, int wait_ms)
{
	uint64_t now = ctl_sched_now(s);
	int64_t mono = ctl_mono_ms();
	int waited = 0, busy, n;

	if (s->be.ops == NULL)
		return -EINVAL;
	if (!s->stopping && ctl_rc_ready(s)) {
		if (!s->started) {
			ctl_intake_own_pending(s);
			s->started = 1;
		}
		claim_if_due(s, mono);
		lock_renew(s, mono);
		if (mono >= s->trim_mono) {
			events_trim(s);
			s->trim_mono = mono + 60000;
		}
		if (mono >= s->refresh_mono) {
			refresh(s);
			s->refresh_mono = mono + (int64_t)s->conf.refresh_every_ms / 2 + 1;
		}
		/* the mover works on due times of the scheduler's clock: pace it
		 * by that clock too (a wall clock stepping back re-arms it) */
		if (now >= s->retry_at || s->retry_at - now > 60000) {
			ctl_retry_move(s, 1000);
			s->retry_at = now + s->conf.retry_every_ms;
		}
		for (struct sbatch *b = s->batches; b != NULL; b = b->next) {
			if (!b->admitted && !b->acking &&
			    (now >= b->recheck_at || b->recheck_at - now > 60000))
				batch_admit(s, b);
		}
	}
	dispatch(s);
	ctl_ops_flush(s);
	if (mono - s->gc_mono >= 5000) {
		dom_gc(s);
		ctl_camps_gc(s, 600000);
		ctl_shape_gc(s->conf.shape, now);
		if (!s->stopping)
			ctl_intake_gc(s);
		s->gc_mono = mono;
	}

	busy = s->orders_out > 0;
	if (!s->stopping && ctl_rc_ready(s) && ctl_intake_ready(s) &&
	    (now >= s->read_at || s->read_at - now > 60000)) {
		unsigned block = 0;

		if (!busy && s->nops == 0 && ctl_dns_pending(s->conf.dns) == 0) {
			block = wait_ms > 0 ? (unsigned)wait_ms : 0;
			if (block > s->conf.block_ms)
				block = s->conf.block_ms;
			if (queued_work(s) && block > 20)
				block = 20;
		}
		/* room a batch left since the top of this step goes to stale
		 * entries first */
		claim_if_due(s, mono);
		n = ctl_intake_read(s, block);
		waited = block > 0;
		s->last_read_empty = n == 0;
		s->read_at = n > 0 ? now : now + s->conf.read_every_ms;
		if (n == 0 && !busy && s->nbatches == 0 && s->nops == 0 &&
		    mono - s->idle_mono >= IDLE_CHECK_MS) {
			check_redis_idle(s);
			s->idle_mono = mono;
		} else if (n != 0 || s->nbatches != 0) {
			s->redis_idle = 0;
		}
	}
	if (ctl_dns_pending(s->conf.dns) > 0)
		ctl_dns_poll(s->conf.dns, busy || waited ? 0 : (wait_ms < 10 ? wait_ms : 10));
	n = s->be.ops->poll(s->be.be, busy && !waited ? (wait_ms < 20 ? wait_ms : 20) : 0);
	if (!busy && !waited && wait_ms > 0 && s->nops > 0 && !ctl_redis_connected(s->rc)) {
		/* Redis is away: do not spin while the back-off runs */
		struct timespec ts = { 0, 20 * 1000000L };

		nanosleep(&ts, NULL);
	}
	dispatch(s);
	ctl_ops_flush(s);
	return 0;
}

void
ctl_sched_stats_json(struct ctl_sched *s, FILE *f)
{
	const struct ctl_sched_stats *st = &s->st;

	fprintf(f, "{\"consumer\":\"%s\",\"batches_read\":%" PRIu64 ",\"batches_claimed\":%" PRIu64
		",\"batches_acked\":%" PRIu64 ",\"batches_bad\":%" PRIu64 ",\"rcpts_in\":%" PRIu64
		",\"rcpts_skipped\":%" PRIu64 ",\"orders\":%" PRIu64 ",\"msgs_dispatched\":%" PRIu64
		",\"delivered\":%" PRIu64 ",\"bounced\":%" PRIu64 ",\"failed\":%" PRIu64
		",\"deferred\":%" PRIu64 ",\"cancelled\":%" PRIu64 ",\"expired\":%" PRIu64
		",\"dup_final\":%" PRIu64 ",\"mx_fallbacks\":%" PRIu64 ",\"plaintext_retries\":%" PRIu64
		",\"retry_moved\":%" PRIu64 ",\"redis_errors\":%" PRIu64 ",\"reconnects\":%" PRIu64
		",\"held\":%u,\"sender_refusals\":%" PRIu64 ",\"suppressed\":%" PRIu64
		",\"suppress_added\":%" PRIu64 ",\"dead_letters\":%" PRIu64 ",\"leases_lost\":%" PRIu64
		",\"lease_waits\":%" PRIu64 ",\"batches_parked\":%" PRIu64
		",\"events_trimmed\":%" PRIu64 ",\"fallbacks\":%" PRIu64
		",\"delivered_fallback\":%" PRIu64 ",\"final_calls\":%" PRIu64 ",\"classes\":{",
		s->consumer, st->batches_read, st->batches_claimed, st->batches_acked,
		st->batches_bad, st->rcpts_in, st->rcpts_skipped, st->orders, st->msgs_dispatched,
		st->delivered, st->bounced, st->failed, st->deferred, st->cancelled, st->expired,
		st->dup_final, st->mx_fallbacks, st->plaintext_retries, st->retry_moved,
		st->redis_errors, st->reconnects, ctl_sched_held(s), st->sender_refusals,
		st->suppressed, st->suppress_added, st->dead_letters, st->leases_lost,
		st->lease_waits, st->batches_parked, st->events_trimmed, st->fallbacks,
		st->delivered_fallback, st->final_calls);
	for (unsigned i = 0; i < CTL_BC_LAST; i++)
		fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "",
			ctl_bounce_class_name((enum ctl_bounce_class)i), st->by_class[i]);
	fprintf(f, "}}");
}

void
ctl_sched_free(struct ctl_sched *s)
{
	if (s == NULL)
		return;
	while (s->omaps != NULL) {
		struct somap *om = s->omaps;

		s->omaps = om->next;
		free(om);
	}
	ctl_ops_free(s);
	while (s->batches != NULL)
		batch_free(s, s->batches);
	ctl_intake_free(s);
	while (s->doms != NULL) {
		struct sdom *d = s->doms;

		s->doms = d->next;
		free(d);
	}
	ctl_camps_free(s);
	if (s->rc != NULL && ctl_redis_connected(s->rc)) {
		char err[256];

		consumer_lock(s, "drop", err, sizeof(err));
	}
	ctl_redis_close(s->rc);
	ctl_bounce_free(s->own_bounce);
	free(s);
}
