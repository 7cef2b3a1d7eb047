/*
 * Redis side of the scheduler: the connection (lazy connect, reconnect
 * with backoff), the Lua scripts of the contract (control/lua/: rcpt_final,
 * job_ack, tls_count, retry_move), and the write queue.
 *
 * Every write that settles something (a recipient final, a recipient
 * handed to the retry set, a batch acknowledged, a session's TLS
 * counters) is one atomic Lua call kept in a FIFO queue until Redis
 * answered it. ctl_ops_flush() runs the queue in order; an I/O error
 * leaves the failed write at the head and drops the connection, so the
 * next flush after the reconnect repeats it. A recipient counts as settled
 * (and its batch may be acknowledged) only once its write succeeded.
 * The finalise script is idempotent: a recipient already final is left
 * alone and dup_deliveries counted. It sets the campaign done (with
 * done_ms) when the last recipient becomes final, only from running or
 * paused: never during submitting, never over cancelled (README).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_lua.h"
#include "ctl_sched_int.h"
#include "ctl_suppress.h"
#include "mp_log.h"

#define LOGW(...) MP_LOG(MP_LOG_WARN, "ctl_sched", __VA_ARGS__)
#define LOGI(...) MP_LOG(MP_LOG_INFO, "ctl_sched", __VA_ARGS__)

enum { SC_FINAL = 0, SC_ACK, SC_TLS, SC_MOVE, SC_DEAD, SC_PARK, SC_LAST };

static struct ctl_redis_script script_tab[SC_LAST] = {
	[SC_FINAL] = { .src = ctl_lua_rcpt_final },
	[SC_ACK] = { .src = ctl_lua_job_ack },
	[SC_TLS] = { .src = ctl_lua_tls_count },
	[SC_MOVE] = { .src = ctl_lua_retry_move },
	[SC_DEAD] = { .src = ctl_lua_job_dead },
	[SC_PARK] = { .src = ctl_lua_job_move },
};

uint64_t
ctl_sched_now(struct ctl_sched *s)
{
	if (s->conf.now_ms != NULL)
		return s->conf.now_ms(s->conf.clock_arg);
	return (uint64_t)ctl_now_ms();
}

/*
 * A Redis command failed. While Redis is away every command fails at once
 * (a reconnect never blocks): one line a second, with the count of the
 * failures not logged since.
 */
void
ctl_rc_failed(struct ctl_sched *s, const char *what)
{
	int64_t mono = ctl_mono_ms();

	s->st.redis_errors++;
	s->group_ok = 0;
	if (s->rc_log_mono != 0 && mono - s->rc_log_mono < 1000) {
		s->rc_log_quiet++;
		return;
	}
	LOGW("event=redis_error what=%s err=\"%s\" connected=%d not_logged=%u", what,
		ctl_redis_error(s->rc), ctl_redis_connected(s->rc), s->rc_log_quiet);
	s->rc_log_mono = mono;
	s->rc_log_quiet = 0;
}

/* Connected with the consumer group in place. @return 1 when usable. */
int
ctl_rc_ready(struct ctl_sched *s)
{
	redisReply *r;

	if (ctl_redis_ensure(s->rc) < 0) {
		s->group_ok = 0;
		return 0;
	}
	if (s->group_ok)
		return 1;
	r = ctl_redis_cmd(s->rc, "XGROUP CREATE %s %s 0 MKSTREAM", s->k_jobs, s->group);
	if (r == NULL) {
		ctl_rc_failed(s, "xgroup");
		return 0;
	}
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
		LOGW("event=xgroup_failed err=\"%s\"", r->str);
		freeReplyObject(r);
		return 0;
	}
	freeReplyObject(r);
	s->group_ok = 1;
	s->st.reconnects++;
	return 1;
}

/* ---- write queue ---- */

static struct sop *
op_new(enum sop_kind kind, int script, int argc)
{
	struct sop *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->kind = kind;
	op->script = script;
	op->argv = calloc((size_t)argc, sizeof(char *));
	op->lens = calloc((size_t)argc, sizeof(size_t));
	if (op->argv == NULL || op->lens == NULL) {
		free(op->argv);
		free(op->lens);
		free(op);
		return NULL;
	}
	return op;
}

static void
op_arg(struct sop *op, const char *v)
{
	size_t n = strlen(v);
	char *p = malloc(n + 1);

	if (p == NULL)
		abort();	/* the write queue must not lose a write */
	memcpy(p, v, n + 1);
	op->argv[op->argc] = p;
	op->lens[op->argc] = n;
	op->argc++;
}

static void
op_argf(struct sop *op, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	op_arg(op, buf);
}

static void
op_free(struct sop *op)
{
	for (int i = 0; i < op->argc; i++)
		free(op->argv[i]);
	free(op->argv);
	free(op->lens);
	free(op);
}

static void
op_push(struct ctl_sched *s, struct sop *op)
{
	if (op == NULL)
		abort();	/* out of memory for a settling write */
	if (s->ops_tail != NULL)
		s->ops_tail->next = op;
	else
		s->ops = op;
	s->ops_tail = op;
	s->nops++;
}

static json_t *
tls_json(const struct tls_record *t)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:I}",
		"version", t->version, "cipher", t->cipher, "group", t->group,
		"resumed", t->resumed, "verify", tls_verify_reason_name(t->verify),
		"subject", t->subject, "issuer", t->issuer,
		"not_after", t->not_after_iso,
		"handshake_ms", (json_int_t)(t->handshake_us / 1000));
}

enum ctl_bounce_class
ctl_sched_classify(const struct ctl_sched *s, const struct ctl_result *res)
{
	return ctl_bounce_classify(s->conf.bounce, res->code, res->esc, res->text);
}

/* "" for a delivery, else the class name; counted once per record. */
static const char *
record_class(struct ctl_sched *s, const char *state, const struct ctl_result *res)
{
	enum ctl_bounce_class c;

	if (strcmp(state, "delivered") == 0 || strcmp(state, "cancelled") == 0 ||
	    strcmp(state, "delivered_fallback") == 0)
		return "";
	c = ctl_sched_classify(s, res);
	s->st.by_class[c]++;
	return ctl_bounce_class_name(c);
}

static char *
rcpt_json(const char *state, uint32_t attempts, const struct ctl_result *res,
	const char *mx, const char *ip, uint64_t now, const char *cls)
{
	json_t *o = json_pack("{s:s, s:i, s:i, s:s, s:s, s:I, s:s, s:s}",
		"state", state, "attempts", (int)attempts,
		"code", res->code, "esc", res->esc, "text", res->text,
		"updated_ms", (json_int_t)now, "mx", mx ? mx : "", "ip", ip ? ip : "");
	char *txt;

	if (o == NULL)
		abort();
	json_object_set_new(o, "tls", res->tls_on && res->has_tls ? tls_json(&res->tls) : json_null());
	if (cls[0] != '\0')
		json_object_set_new(o, "class", json_string(cls));
	txt = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (txt == NULL)
		abort();
	return txt;
}

static struct sop *
op_record(struct ctl_sched *s, enum sop_kind kind, struct srcpt *r,
	const char *state, const struct ctl_result *res, const char *mx, const char *ip,
	int attempts_delta, uint32_t attempts, const char **cls)
{
	const char *cid = r->b->camp->id;
	uint64_t now = ctl_sched_now(s);
	struct sop *op = op_new(kind, SC_FINAL, 2 + 7 + 17);
	char *js;

	if (op == NULL)
		abort();
	op->r = r;
	snprintf(op->state, sizeof(op->state), "%s", state);
	op->nkeys = 7;
	op_argf(op, "%scampaign:%s:rcpt", s->ns, cid);
	op_argf(op, "%scampaign:%s:counts", s->ns, cid);
	op_argf(op, "%scampaign:%s", s->ns, cid);
	op_arg(op, s->k_events);
	op_arg(op, s->k_retry);
	op_arg(op, r->b->camp->k_sup);
	op_argf(op, "%s" CTL_K_CJOBS, s->ns, cid);
	*cls = record_class(s, state, res);
	js = rcpt_json(state, attempts, res, mx, ip, now, *cls);
	op_arg(op, r->addr);
	op_arg(op, js);
	free(js);
	op_arg(op, state);
	op_arg(op, cid);
	op_argf(op, "%d", res->code);
	op_arg(op, res->esc);
	op_arg(op, res->text);
	op_arg(op, res->tls_on && res->has_tls ? res->tls.version : "");
	op_arg(op, res->tls_on && res->has_tls ? res->tls.cipher : "");
	op_argf(op, "%" PRIu64, now);
	op_argf(op, "%u", s->conf.events_maxlen);
	op_argf(op, "%d", attempts_delta);
	return op;
}

/*
 * The suppression entry a final state adds, or NULL: only a bounce of an
 * address class (the address does not exist, its domain cannot receive).
 * A refusal of the sender (policy, reputation, authentication) never
 * suppresses the address, even where [bounce] final_classes makes it
 * bounce: the next campaign may well be accepted.
 */
static char *
suppress_entry(const struct srcpt *r, const char *state, const char *cls,
	const struct ctl_result *res, uint64_t now)
{
	enum ctl_bounce_class c;

	if (strcmp(state, "bounced") != 0 || ctl_bounce_class_parse(cls, &c) < 0 ||
	    !ctl_bounce_class_is_address(c))
		return NULL;
	return ctl_suppress_entry(ctl_suppress_reason_name(CTL_SUP_BOUNCE), "mailpump",
		(int64_t)now, r->b->camp->id, res->text);
}

void
ctl_op_final(struct ctl_sched *s, struct srcpt *r, const char *state,
	const struct ctl_result *res, const char *mx, const char *ip, int real_attempt)
{
	const char *cls;
	struct sop *op = op_record(s, OP_FINAL, r, state, res, mx, ip,
		real_attempt ? 1 : 0, r->attempt + (real_attempt ? 1 : 0), &cls);
	char *sup = suppress_entry(r, state, cls, res, ctl_sched_now(s));
	char *field = strdup(r->addr);

	if (field == NULL)
		abort();	/* the write queue must not lose a write */
	for (char *p = field; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	op_arg(op, "0");
	op_arg(op, "");
	op_arg(op, cls);
	op_arg(op, field);
	op_arg(op, sup != NULL ? sup : "");
	if (sup != NULL)
		s->st.suppress_added++;
	free(field);
	free(sup);
	r->state = SR_SETTLING;
	op_push(s, op);
}

void
ctl_op_defer(struct ctl_sched *s, struct srcpt *r,
	const struct ctl_result *res, const char *mx, const char *ip, uint64_t due_ms)
{
	const char *cls;
	struct sop *op = op_record(s, OP_DEFER, r, "deferred", res, mx, ip, 1,
		r->attempt + 1, &cls);
	json_t *m = json_pack("{s:s, s:s, s:s, s:i, s:I}",
		"c", r->b->camp->id, "d", r->b->dom->name, "to", r->addr,
		"a", (int)(r->attempt + 1), "first", (json_int_t)r->first_ms);
	char *txt;

	if (m == NULL)
		abort();
	json_object_set(m, "f", r->fields != NULL ? r->fields : json_object());
	if (r->fields == NULL)
		json_decref(json_object_get(m, "f"));
	txt = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(m);
	if (txt == NULL)
		abort();
	op_argf(op, "%" PRIu64, due_ms);
	op_arg(op, txt);
	free(txt);
	op_arg(op, cls);
	op_arg(op, "");
	op_arg(op, "");
	r->state = SR_SETTLING;
	op_push(s, op);
}

void
ctl_op_tls(struct ctl_sched *s, const struct ctl_order *o,
	const struct ctl_sess_report *rep, unsigned plain_delivered)
{
	const struct smtp_sess_info *in = &rep->info;
	const struct tls_record *t = &rep->tls;
	struct sop *op = op_new(OP_TLS, SC_TLS, 64);

	op->nkeys = 2;
	op_argf(op, "%stls:%s", s->ns, o->domain);
	op_arg(op, s->k_tls_domains);
	op_arg(op, o->domain);
	if (!rep->connected) {
		op_arg(op, "connect_failed");
		op_arg(op, "1");
		op_push(s, op);
		return;
	}
	op_arg(op, "sessions");
	op_arg(op, "1");
	if (in->starttls_offered) {
		op_arg(op, "starttls_offered");
		op_arg(op, "1");
	} else if (!o->implicit_tls && in->greeting_host[0] != '\0') {
		op_arg(op, "no_starttls");
		op_arg(op, "1");
	}
	if (in->tls_active) {
		op_arg(op, "tls_ok");
		op_arg(op, "1");
	}
	if (in->tls_failed) {
		op_arg(op, "tls_failed");
		op_arg(op, "1");
	}
	if (rep->has_tls) {
		if (in->tls_active) {
			op_argf(op, "version:%s", t->version);
			op_arg(op, "1");
			op_argf(op, "cipher:%s", t->cipher);
			op_arg(op, "1");
			if (t->group[0] != '\0') {
				op_argf(op, "group:%s", t->group);
				op_arg(op, "1");
			}
			if (t->resumed) {
				op_arg(op, "resumed");
				op_arg(op, "1");
			}
			op_arg(op, "hs_ms_sum");
			op_argf(op, "%" PRIu64, t->handshake_us / 1000);
			op_arg(op, "hs_count");
			op_arg(op, "1");
		}
		if (t->verify != TLS_VERIFY_OK && t->verify != TLS_VERIFY_NONE) {
			op_argf(op, "verify_fail:%s", tls_verify_reason_name(t->verify));
			op_arg(op, "1");
		}
	}
	if (plain_delivered > 0) {
		op_arg(op, "plaintext_deliveries");
		op_argf(op, "%u", plain_delivered);
	}
	op_push(s, op);
}

/* A poison entry: to jobs:dead with its reason, then acked and deleted. */
static void
op_dead(struct ctl_sched *s, struct sbatch *b)
{
	struct sop *op = op_new(OP_ACK, SC_DEAD, 9);

	op->b = b;
	b->acking = 1;
	op->nkeys = 3;
	op_arg(op, b->src->key);
	op_arg(op, s->k_dead);
	op_arg(op, s->k_dead_n);
	op_arg(op, s->group);
	op_arg(op, b->id);
	op_argf(op, "%u", s->conf.dead_maxlen);
	op_arg(op, b->dead);
	op_arg(op, s->consumer);
	op_argf(op, "%" PRIu64, ctl_sched_now(s));
	op_push(s, op);
}

void
ctl_op_ack(struct ctl_sched *s, struct sbatch *b)
{
	struct sop *op;

	if (b->dead != NULL) {
		op_dead(s, b);
		return;
	}
	op = op_new(OP_ACK, SC_ACK, 4);

	op->b = b;
	b->acking = 1;
	op->nkeys = 1;
	op_arg(op, b->src->key);
	op_arg(op, s->group);
	op_arg(op, b->id);
	op_arg(op, s->consumer);
	op_push(s, op);
}

/* A shared-stream entry of a campaign that may not send now: to the
 * campaign's own stream (job_move.lua), then let go like an ack. */
void
ctl_op_park(struct ctl_sched *s, struct sbatch *b)
{
	struct sop *op = op_new(OP_ACK, SC_PARK, 7);

	op->b = b;
	b->acking = 1;
	op->nkeys = 3;
	op_arg(op, b->src->key);
	op_argf(op, "%s" CTL_K_CJOBS, s->ns, b->camp_id);
	op_arg(op, s->k_active);
	op_arg(op, s->group);
	op_arg(op, b->id);
	op_arg(op, s->consumer);
	op_arg(op, b->camp_id);
	op_push(s, op);
}

/* What a write's reply means for its recipient. */
static void
op_reply(struct ctl_sched *s, struct sop *op, const redisReply *r)
{
	long long v;

	if (op->script == SC_ACK && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
		/* another consumer claimed it while we were cut off: it acks */
		s->st.leases_lost++;
		LOGW("event=ack_not_ours id=%s campaign=%s", op->b->id, op->b->camp_id);
	}
	if (op->script == SC_DEAD && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
		s->st.dead_letters++;
		LOGW("event=dead_letter id=%s campaign=%s reason=\"%s\"",
			op->b->id, op->b->camp_id, op->b->dead);
	}
	if (op->kind != OP_FINAL && op->kind != OP_DEFER)
		return;
	v = r->type == REDIS_REPLY_INTEGER ? r->integer : 1;
	if (v == 0 && op->kind == OP_FINAL)
		s->st.dup_final++;
	if (v < 0)
		LOGW("event=unknown_rcpt campaign=%s rcpt=%s",
			op->r->b->camp->id, op->r->addr);
}

/* Unlink the writes Redis confirmed, in queue order, and act on them. */
static unsigned
ops_reap(struct ctl_sched *s)
{
	struct sop **pp = &s->ops, *prev = NULL;
	unsigned n = 0;

	while (*pp != NULL) {
		struct sop *op = *pp;

		if (!op->ok) {
			prev = op;
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		if (s->ops_tail == op)
			s->ops_tail = prev;
		s->nops--;
		n++;
		/* may queue an ack at the tail: after prev, so the walk sees it */
		if (op->kind == OP_FINAL || op->kind == OP_DEFER)
			ctl_sched_settled(s, op->r);
		else if (op->kind == OP_ACK)
			ctl_sched_batch_acked(s, op->b);
		op_free(op);
	}
	return n;
}

/*
 * Send queued writes pipelined, FLUSH_PIPE calls at a time, and keep each
 * one until its own reply came back. Finalisations and deferrals of one
 * campaign (the same KEYS) share a call, up to FINAL_GROUP records: the
 * script settles each as if alone and moves the counters once, so a
 * session's recipients cost one script call, not one each. They may be
 * grouped out of queue order: nothing depends on an earlier write except
 * an ack, which is only queued once its recipients' writes are confirmed.
 * A call whose reply is an error stays queued (after a pause) while the
 * others complete. On a connection failure the writes without a reply
 * stay queued and are sent again after the reconnect (they may have run:
 * the finalise script then counts a dup_delivery, never a second state
 * change).
 */
#define FLUSH_PIPE 64
#define FINAL_GROUP 64
#define FINAL_KEYS 7
#define FINAL_ARGS 17

struct call {
	struct sop *ops[FINAL_GROUP];
	unsigned n;
};

static int
same_campaign(const struct sop *a, const struct sop *b)
{
	/* the rcpt hash names the campaign; the suppression key its sender */
	return a->lens[0] == b->lens[0] && memcmp(a->argv[0], b->argv[0], a->lens[0]) == 0 &&
	       a->lens[5] == b->lens[5] && memcmp(a->argv[5], b->argv[5], a->lens[5]) == 0;
}

/* Fill calls[] from the queue. @return the number of calls. */
static unsigned
calls_plan(struct ctl_sched *s, struct call *calls)
{
	unsigned nc = 0, i;
	struct sop *op;

	for (op = s->ops; op != NULL; op = op->next) {
		op->ok = 0;
		if (op->script == SC_FINAL) {
			for (i = 0; i < nc; i++)
				if (calls[i].ops[0]->script == SC_FINAL &&
				    calls[i].n < FINAL_GROUP && same_campaign(calls[i].ops[0], op))
					break;
			if (i < nc) {
				calls[i].ops[calls[i].n++] = op;
				continue;
			}
		}
		if (nc == FLUSH_PIPE)
			break;
		calls[nc].ops[0] = op;
		calls[nc].n = 1;
		nc++;
	}
	return nc;
}

static int
call_append(struct ctl_sched *s, const struct call *c)
{
	const struct sop *op0 = c->ops[0];
	const char **argv;
	size_t *lens;
	unsigned i, k = 0;
	int rc;

	if (op0->script != SC_FINAL)
		return ctl_redis_eval_append(s->rc, &script_tab[op0->script], op0->nkeys,
			op0->argc, (const char **)op0->argv, op0->lens);
	argv = malloc(sizeof(*argv) * (FINAL_KEYS + FINAL_ARGS * c->n));
	lens = malloc(sizeof(*lens) * (FINAL_KEYS + FINAL_ARGS * c->n));
	if (argv == NULL || lens == NULL) {
		free(argv);
		free(lens);
		return -ENOMEM;
	}
	for (; k < FINAL_KEYS; k++) {
		argv[k] = op0->argv[k];
		lens[k] = op0->lens[k];
	}
	for (i = 0; i < c->n; i++) {
		const struct sop *op = c->ops[i];

		if (op->argc != FINAL_KEYS + FINAL_ARGS)
			abort();	/* op_record and its callers disagree */
		memcpy(argv + k, op->argv + FINAL_KEYS, sizeof(*argv) * FINAL_ARGS);
		memcpy(lens + k, op->lens + FINAL_KEYS, sizeof(*lens) * FINAL_ARGS);
		k += FINAL_ARGS;
	}
	rc = ctl_redis_eval_append(s->rc, &script_tab[SC_FINAL], FINAL_KEYS, (int)k, argv, lens);
	free(argv);
	free(lens);
	if (rc == 0)
		s->st.final_calls++;
	return rc;
}

/* A call's reply: one per op, or for a group an array of one per record. */
static int
call_reply(struct ctl_sched *s, const struct call *c, const redisReply *r)
{
	unsigned i;

	if (c->ops[0]->script != SC_FINAL) {
		op_reply(s, c->ops[0], r);
		c->ops[0]->ok = 1;
		return 0;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != c->n) {
		LOGW("event=write_error kind=final err=\"%zu replies for %u records\"",
			r->type == REDIS_REPLY_ARRAY ? r->elements : 0, c->n);
		return -EPROTO;
	}
	for (i = 0; i < c->n; i++) {
		op_reply(s, c->ops[i], r->element[i]);
		c->ops[i]->ok = 1;
	}
	return 0;
}

int
ctl_ops_flush(struct ctl_sched *s)
{
	unsigned done = 0, noscript_rounds = 0;
	struct call *calls;

	if (s->ops == NULL || ctl_mono_ms() < s->ops_pause_mono)
		return 0;
	calls = malloc(sizeof(*calls) * FLUSH_PIPE);
	if (calls == NULL)
		return 0;	/* the queue stays: the next flush tries again */
	while (s->ops != NULL) {
		unsigned nc, n = 0, i;
		int io_fail = 0, err_seen = 0, noscript = 0;

		if (!ctl_rc_ready(s))
			break;
		for (i = 0; i < SC_LAST; i++) {
			if (script_tab[i].sha[0] == '\0' &&
			    ctl_redis_script_load(s->rc, &script_tab[i]) < 0) {
				ctl_rc_failed(s, "script_load");
				free(calls);
				return (int)done;
			}
		}
		nc = calls_plan(s, calls);
		for (n = 0; n < nc; n++)
			if (call_append(s, &calls[n]) < 0)
				break;
		for (i = 0; i < n; i++) {
			redisReply *r;

			if (ctl_redis_reply(s->rc, &r) < 0) {
				io_fail = 1;
				break;
			}
			if (r->type == REDIS_REPLY_ERROR) {
				/* NOSCRIPT: the server lost its scripts; reload next round */
				if (ctl_redis_is_noscript(r)) {
					script_tab[calls[i].ops[0]->script].sha[0] = '\0';
					noscript = 1;
				} else {
					LOGW("event=write_error kind=%d err=\"%s\"",
						calls[i].ops[0]->kind, r->str);
					err_seen = 1;
				}
				s->st.redis_errors++;
			} else if (call_reply(s, &calls[i], r) < 0) {
				err_seen = 1;
				s->st.redis_errors++;
			}
			freeReplyObject(r);
		}
		done += ops_reap(s);
		if (io_fail || n == 0) {
			ctl_rc_failed(s, "eval");
			break;
		}
		if (err_seen || (noscript && ++noscript_rounds > 3)) {
			s->ops_pause_mono = ctl_mono_ms() + 1000;
			break;
		}
	}
	free(calls);
	return (int)done;
}

void
ctl_ops_free(struct ctl_sched *s)
{
	while (s->ops != NULL) {
		struct sop *op = s->ops;

		s->ops = op->next;
		op_free(op);
	}
	s->ops_tail = NULL;
	s->nops = 0;
}

int
ctl_retry_move(struct ctl_sched *s, unsigned limit)
{
	char now[32], lim[16];
	const char *argv[6];
	redisReply *r;
	int moved = 0;

	if (!ctl_rc_ready(s))
		return -EIO;
	snprintf(now, sizeof(now), "%" PRIu64, ctl_sched_now(s));
	snprintf(lim, sizeof(lim), "%u", limit);
	argv[0] = s->k_retry;
	argv[1] = s->k_active;
	argv[2] = now;
	argv[3] = lim;
	argv[4] = "100";
	argv[5] = s->ns;
	r = ctl_redis_eval(s->rc, &script_tab[SC_MOVE], 2, 6, argv, NULL);
	if (r == NULL) {
		ctl_rc_failed(s, "retry_move");
		return -EIO;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		moved = (int)r->element[0]->integer;
		if (r->element[1]->integer > 0)
			LOGW("event=retry_bad_members n=%lld", r->element[1]->integer);
	} else if (r->type == REDIS_REPLY_ERROR) {
		LOGW("event=retry_move_error err=\"%s\"", r->str);
	}
	freeReplyObject(r);
	s->st.retry_moved += (uint64_t)moved;
	if (moved > 0)
		s->srcs_stale = 1;	/* perhaps into a stream not known yet */
	return moved;
}
