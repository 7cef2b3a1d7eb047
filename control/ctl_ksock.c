/*
 * Kernel-socket backend of the dispatch interface. submit() opens one
 * ksock session per order with an SMTP configuration of its own (the
 * order's TLS policy, messages per connection and recipients per
 * transaction); the session pulls the order's messages one transaction
 * at a time through next_txn, each rendered by a msg_render state that
 * lives in the order's context (the session is done with one transaction
 * before it asks for the next). Results and the session report are
 * translated into plain ctl_result / ctl_sess_report records and handed
 * to the scheduler's sink from inside ksock_engine_poll, i.e. from
 * inside our poll(), as the interface requires.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_ksock.h"
#include "mp_log.h"

#define LOGW(...) MP_LOG(MP_LOG_WARN, "ctl_ksock", __VA_ARGS__)

struct ctl_ksock {
	struct ksock_engine *e;
	struct ctl_sink sink;
	struct smtp_config smtp;
	char helo[256];
	unsigned active;
	struct kord *live;		/* orders at the engine */
};

/* One order in flight. */
struct kord {
	struct ctl_ksock *k;
	struct ctl_order *o;
	struct kord *lprev, *lnext;
	struct smtp_config cfg;
	unsigned next;			/* next message to hand out */
	unsigned cur;			/* message being rendered */
	unsigned connect_fail;		/* results at the connect stage */
	unsigned results;
	const char *rcpt[1];
	struct msg_render render;
	char render_err[200];
};

static int
body_open(void *src, unsigned flags)
{
	struct kord *ko = src;
	struct ctl_msg *m = ko->o->msgs[ko->cur];
	struct msg_fields f = { .v = m->fields, .n = m->nfields, .index = m->index };
	unsigned mf = 0;

	if (flags & SMTP_BODY_DOTSTUFF)
		mf |= MSG_F_DOTSTUFF;
	if (flags & SMTP_BODY_8BITMIME)
		mf |= MSG_F_8BITMIME;
	if (flags & SMTP_BODY_SMTPUTF8)
		mf |= MSG_F_SMTPUTF8;
	ko->render_err[0] = '\0';
	if (msg_render_open(&ko->render, m->camp->tpl, m->rcpt, &f, mf, time(NULL),
	    ko->render_err, sizeof(ko->render_err)) < 0)
		return -EINVAL;
	return (flags & SMTP_BODY_DOTSTUFF) ? 1 : 0;
}

static ssize_t
body_read(void *src, void *buf, size_t cap)
{
	struct kord *ko = src;

	return msg_render_read(&ko->render, buf, cap);
}

static int
k_next_txn(void *user, struct smtp_txn *txn)
{
	struct kord *ko = user;
	struct ctl_msg *m;

	if (ko->next >= ko->o->n_msgs)
		return -ENOENT;
	ko->cur = ko->next++;
	m = ko->o->msgs[ko->cur];
	ko->rcpt[0] = m->rcpt;
	memset(txn, 0, sizeof(*txn));
	txn->mail_from = m->camp->mail_from;
	txn->rcpt = ko->rcpt;
	txn->n_rcpt = 1;
	txn->body.open = body_open;
	txn->body.read = body_read;
	txn->body.src = ko;
	txn->body.size = -1;
	txn->user = (void *)(uintptr_t)ko->cur;
	return 0;
}

static void
k_result(void *user, const struct smtp_rcpt_result *r, const struct tls_record *tls)
{
	struct kord *ko = user;
	struct ctl_result res;

	memset(&res, 0, sizeof(res));
	res.order_id = ko->o->id;
	res.msg_index = (unsigned)(uintptr_t)r->txn->user;
	res.outcome = r->outcome;
	res.stage = r->stage;
	res.code = r->code;
	memcpy(res.esc, r->esc, sizeof(res.esc));
	if (r->outcome == SMTP_OUT_FAILED && r->stage == SMTP_STAGE_LOCAL &&
	    ko->render_err[0] != '\0' && res.msg_index == ko->cur)
		snprintf(res.text, sizeof(res.text), "message: %s", ko->render_err);
	else
		memcpy(res.text, r->text, sizeof(res.text));
	res.tls_on = (uint8_t)(r->tls != 0);
	if (tls != NULL) {
		res.has_tls = 1;
		res.tls = *tls;
	}
	if (r->stage == SMTP_STAGE_CONNECT)
		ko->connect_fail++;
	ko->results++;
	ko->k->sink.on_result(ko->k->sink.arg, ko->o, &res);
}

static void
k_done(void *user, const struct smtp_sess_info *info, const struct tls_record *tls)
{
	struct kord *ko = user;
	struct ctl_ksock *k = ko->k;
	struct ctl_sess_report rep;

	memset(&rep, 0, sizeof(rep));
	rep.order_id = ko->o->id;
	rep.connected = ko->connect_fail < ko->results || info->greeting_host[0] != '\0';
	rep.info = *info;
	if (tls != NULL) {
		rep.has_tls = 1;
		rep.tls = *tls;
	}
	k->active--;
	if (ko->lprev != NULL)
		ko->lprev->lnext = ko->lnext;
	else
		k->live = ko->lnext;
	if (ko->lnext != NULL)
		ko->lnext->lprev = ko->lprev;
	k->sink.on_done(k->sink.arg, ko->o, &rep);
	free(ko);
}

static int
k_submit(void *be, struct ctl_order *o)
{
	struct ctl_ksock *k = be;
	struct ksock_sess_req req;
	struct kord *ko;
	int rc;

	if (o->n_msgs == 0)
		return -EINVAL;
	ko = calloc(1, sizeof(*ko));
	if (ko == NULL)
		return -EAGAIN;
	ko->k = k;
	ko->o = o;
	ko->cfg = k->smtp;
	ko->cfg.tls_policy = o->policy;
	ko->cfg.implicit_tls = o->implicit_tls;
	ko->cfg.max_rcpt_per_txn = o->rcpt_per_txn ? o->rcpt_per_txn : 1;
	if (ko->cfg.max_rcpt_per_txn > SMTP_RCPT_MAX)
		ko->cfg.max_rcpt_per_txn = SMTP_RCPT_MAX;
	ko->cfg.max_msgs_per_conn = o->msgs_per_conn;
	memset(&req, 0, sizeof(req));
	req.host = o->mx[0] ? o->mx : NULL;
	req.addr = o->addr;
	req.policy = o->policy;
	req.implicit_tls = o->implicit_tls;
	req.smtp = &ko->cfg;
	req.next_txn = k_next_txn;
	req.result = k_result;
	req.done = k_done;
	req.user = ko;
	rc = ksock_sess_open(k->e, &req);
	if (rc < 0) {
		free(ko);
		if (rc != -EINVAL)
			LOGW("event=sess_open_failed domain=%s err=%d", o->domain, rc);
		return rc == -EINVAL ? -EINVAL : -EAGAIN;
	}
	k->active++;
	ko->lnext = k->live;
	if (k->live != NULL)
		k->live->lprev = ko;
	k->live = ko;
	return 0;
}

static int
k_poll(void *be, int timeout_ms)
{
	struct ctl_ksock *k = be;

	return ksock_engine_poll(k->e, timeout_ms);
}

static unsigned
k_active(void *be)
{
	return ((struct ctl_ksock *)be)->active;
}

static const struct ctl_backend_ops ksock_ops = {
	.submit = k_submit,
	.poll = k_poll,
	.active = k_active,
};

struct ctl_ksock *
ctl_ksock_new(const struct ctl_ksock_conf *conf, const struct ctl_sink *sink,
	char *err, size_t errlen)
{
	struct ksock_conf kc = { 0 };
	struct ctl_ksock *k = calloc(1, sizeof(*k));

	if (k == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	k->sink = *sink;
	smtp_config_defaults(&k->smtp);
	snprintf(k->helo, sizeof(k->helo), "%s",
		conf && conf->helo_name ? conf->helo_name : "localhost");
	k->smtp.helo_name = k->helo;
	if (conf != NULL && conf->cmd_timeout_ms > 0) {
		uint32_t t = conf->cmd_timeout_ms;

		k->smtp.t_greeting = k->smtp.t_cmd = k->smtp.t_tls = t;
		k->smtp.t_mail = k->smtp.t_rcpt = k->smtp.t_data_init = t;
		k->smtp.t_data_block = k->smtp.t_data_term = t;
	}
	kc.smtp = &k->smtp;
	kc.tls_conf = conf ? conf->tls : NULL;
	kc.connect_timeout_ms = conf ? conf->connect_timeout_ms : 0;
	kc.max_sessions = conf ? conf->max_sessions : 0;
	k->e = ksock_engine_new(&kc, err, errlen);
	if (k->e == NULL) {
		free(k);
		return NULL;
	}
	return k;
}

void
ctl_ksock_free(struct ctl_ksock *k)
{
	if (k == NULL)
		return;
	ksock_engine_free(k->e);
	while (k->live != NULL) {
		struct kord *ko = k->live;

		k->live = ko->lnext;
		ctl_order_free(ko->o);
		free(ko);
	}
	free(k);
}

struct ctl_backend
ctl_ksock_backend(struct ctl_ksock *k)
{
	struct ctl_backend b = { .ops = &ksock_ops, .be = k };

	return b;
}

void
ctl_ksock_stats(const struct ctl_ksock *k, struct ksock_stats *st)
{
	ksock_engine_stats(k->e, st);
}
