/*
 * The objects that cross the dispatch interface (include/ctl_dispatch.h):
 * the immutable compiled campaign with its atomic reference count, the
 * one-block message, the order. Nothing here talks to Redis or the
 * network; a DPDK worker links this file too.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_dispatch.h"
#include "mp_hash.h"

uint64_t
ctl_hash64(const char *s)
{
	return mp_fnv1a(MP_FNV1A_INIT, s, strlen(s));
}

static int
camp_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n >= CTL_CAMP_ID_MAX)
		return 0;
	for (; *id != '\0'; id++) {
		char c = *id;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

int
ctl_verp_address(const char *return_path, const char *rcpt, char *out, size_t cap)
{
	const char *ra = strrchr(return_path, '@'), *ca = strrchr(rcpt, '@');
	int n;

	if (ra == NULL || ca == NULL || ra == return_path || ca == rcpt)
		return -EINVAL;
	/* local+rlocal=rdomain: the recipient's '@' becomes '=' */
	if ((size_t)(ra - return_path) + 1 + (size_t)(ca - rcpt) + 1 + strlen(ca + 1) > 64)
		return -E2BIG;
	n = snprintf(out, cap, "%.*s+%.*s=%s%s", (int)(ra - return_path), return_path,
		(int)(ca - rcpt), rcpt, ca + 1, ra);
	return n < 0 || (size_t)n >= cap ? -E2BIG : 0;
}

struct ctl_campaign *
ctl_campaign_new(const char *id, const char *mail_from,
	const struct msg_template_spec *spec, char *err, size_t errlen)
{
	struct msg_template_spec sp;
	struct ctl_campaign *c;

	if (id == NULL || !camp_id_ok(id)) {
		snprintf(err, errlen, "bad campaign id");
		return NULL;
	}
	if (mail_from == NULL || spec == NULL) {
		snprintf(err, errlen, "campaign %s: no sender", id);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->mail_from = strdup(mail_from)) == NULL) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* Message-IDs are "<id.index@domain>": the campaign id is always there */
	sp = *spec;
	if (sp.campaign_id == NULL)
		sp.campaign_id = id;
	c->tpl = msg_template_compile(&sp, err, errlen);
	if (c->tpl == NULL) {
		free(c->mail_from);
		free(c);
		return NULL;
	}
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->render_flags = MSG_F_8BITMIME;
	__atomic_store_n(&c->refcnt, 1, __ATOMIC_RELEASE);
	return c;
}

struct ctl_campaign *
ctl_campaign_ref(struct ctl_campaign *c)
{
	__atomic_add_fetch(&c->refcnt, 1, __ATOMIC_RELAXED);
	return c;
}

void
ctl_campaign_unref(struct ctl_campaign *c)
{
	if (c == NULL)
		return;
	if (__atomic_sub_fetch(&c->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	msg_template_free(c->tpl);
	free(c->mail_from);
	free(c);
}

struct ctl_msg *
ctl_msg_new(struct ctl_campaign *camp, const char *rcpt,
	const char *const *names, const char *const *values,
	const size_t *lens, size_t nfields)
{
	size_t need = sizeof(struct ctl_msg) + nfields * sizeof(struct msg_field);
	size_t rlen = strlen(rcpt) + 1;
	struct ctl_msg *m;
	char *p;

	need += rlen;
	for (size_t i = 0; i < nfields; i++)
		need += strlen(names[i]) + 1 + lens[i] + 1;
	m = malloc(need);
	if (m == NULL)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->fields = (struct msg_field *)(m + 1);
	m->nfields = nfields;
	p = (char *)(m->fields + nfields);
	memcpy(p, rcpt, rlen);
	m->rcpt = p;
	p += rlen;
	for (size_t i = 0; i < nfields; i++) {
		size_t nl = strlen(names[i]) + 1;

		memcpy(p, names[i], nl);
		m->fields[i].name = p;
		p += nl;
		memcpy(p, values[i], lens[i]);
		p[lens[i]] = '\0';
		m->fields[i].value = p;
		m->fields[i].len = lens[i];
		p += lens[i] + 1;
	}
	m->camp = ctl_campaign_ref(camp);
	m->index = ctl_hash64(rcpt);
	return m;
}

void
ctl_msg_free(struct ctl_msg *m)
{
	if (m == NULL)
		return;
	ctl_campaign_unref(m->camp);
	free(m);
}

struct ctl_order *
ctl_order_new(unsigned cap)
{
	struct ctl_order *o = calloc(1, sizeof(*o));

	if (o == NULL)
		return NULL;
	o->msgs = calloc(cap ? cap : 1, sizeof(*o->msgs));
	if (o->msgs == NULL) {
		free(o);
		return NULL;
	}
	return o;
}

void
ctl_order_free(struct ctl_order *o)
{
	if (o == NULL)
		return;
	for (unsigned i = 0; i < o->n_msgs; i++)
		ctl_msg_free(o->msgs[i]);
	free(o->msgs);
	free(o);
}

/* --- one order run as one SMTP session (backends) --- */

void
ctl_order_run_init(struct ctl_order_run *run, struct ctl_order *o,
	const struct smtp_config *base, struct mps_req *req)
{
	memset(run, 0, sizeof(*run));
	run->o = o;
	run->cfg = *base;
	run->cfg.tls_policy = o->policy;
	run->cfg.implicit_tls = o->implicit_tls;
	run->cfg.max_rcpt_per_txn = o->rcpt_per_txn ? o->rcpt_per_txn : 1;
	if (run->cfg.max_rcpt_per_txn > SMTP_RCPT_MAX)
		run->cfg.max_rcpt_per_txn = SMTP_RCPT_MAX;
	run->cfg.max_msgs_per_conn = o->msgs_per_conn;
	memset(req, 0, sizeof(*req));
	req->host = o->mx[0] ? o->mx : NULL;
	req->addr = o->addr;
	req->policy = o->policy;
	req->implicit_tls = o->implicit_tls;
	req->smtp = &run->cfg;
}

static int
run_body_open(void *src, unsigned flags)
{
	struct ctl_order_run *run = src;
	struct ctl_msg *m = run->o->msgs[run->cur];
	struct msg_fields f = { .v = m->fields, .n = m->nfields, .index = m->index };
	unsigned mf = 0;

	if (flags & SMTP_BODY_DOTSTUFF)
		mf |= MSG_F_DOTSTUFF;
	if (flags & SMTP_BODY_8BITMIME)
		mf |= MSG_F_8BITMIME;
	if (flags & SMTP_BODY_SMTPUTF8)
		mf |= MSG_F_SMTPUTF8;
	run->render_err[0] = '\0';
	if (msg_render_open(&run->render, m->camp->tpl, m->rcpt, &f, mf, time(NULL),
	    run->render_err, sizeof(run->render_err)) < 0) {
		run->render_failed++;
		return -EINVAL;
	}
	return (flags & SMTP_BODY_DOTSTUFF) ? 1 : 0;
}

static ssize_t
run_body_read(void *src, void *buf, size_t cap)
{
	struct ctl_order_run *run = src;

	return msg_render_read(&run->render, buf, cap);
}

int
ctl_order_run_next_txn(struct ctl_order_run *run, struct smtp_txn *txn)
{
	struct ctl_msg *m;

	if (run->nxt >= run->o->n_msgs)
		return -ENOENT;
	run->cur = run->nxt++;
	m = run->o->msgs[run->cur];
	run->rcpt[0] = m->rcpt;
	memset(txn, 0, sizeof(*txn));
	txn->mail_from = m->camp->mail_from;
	if (m->camp->verp && ctl_verp_address(m->camp->mail_from, m->rcpt, run->mail_from,
	    sizeof(run->mail_from)) == 0)
		txn->mail_from = run->mail_from;
	txn->rcpt = run->rcpt;
	txn->n_rcpt = 1;
	txn->body.open = run_body_open;
	txn->body.read = run_body_read;
	txn->body.src = run;
	txn->body.size = -1;
	txn->user = (void *)(uintptr_t)run->cur;
	return 0;
}

void
ctl_order_run_result(struct ctl_order_run *run, const struct smtp_rcpt_result *r,
	const struct tls_record *tls, struct ctl_result *res)
{
	memset(res, 0, offsetof(struct ctl_result, tls));
	res->order_id = run->o->id;
	res->msg_index = (unsigned)(uintptr_t)r->txn->user;
	res->outcome = r->outcome;
	res->stage = r->stage;
	res->code = r->code;
	memcpy(res->esc, r->esc, sizeof(res->esc));
	/* a body the renderer refused: say why in the renderer's words */
	if (r->outcome == SMTP_OUT_FAILED && r->stage == SMTP_STAGE_LOCAL &&
	    run->render_err[0] != '\0' && res->msg_index == run->cur)
		snprintf(res->text, sizeof(res->text), "message: %s", run->render_err);
	else
		memcpy(res->text, r->text, sizeof(res->text));
	res->tls_on = (uint8_t)(r->tls != 0);
	if (tls != NULL) {
		res->has_tls = 1;
		res->tls = *tls;
	}
	if (r->stage == SMTP_STAGE_CONNECT)
		run->connect_fail++;
	run->results++;
}

void
ctl_order_run_local(struct ctl_order_run *run, unsigned idx,
	enum smtp_outcome out, const char *text, struct ctl_result *res)
{
	memset(res, 0, offsetof(struct ctl_result, tls));
	res->order_id = run->o->id;
	res->msg_index = idx;
	res->outcome = out;
	res->stage = SMTP_STAGE_LOCAL;
	snprintf(res->text, sizeof(res->text), "%s", text);
}

int
ctl_order_run_report(struct ctl_order_run *run, const struct smtp_sess_info *info,
	const struct tls_record *tls, struct ctl_sess_report *rep)
{
	int connected = info != NULL &&
		(run->connect_fail < run->results || info->greeting_host[0] != '\0');

	memset(rep, 0, offsetof(struct ctl_sess_report, tls));
	rep->order_id = run->o->id;
	rep->connected = (uint8_t)connected;
	if (info != NULL)
		rep->info = *info;
	if (tls != NULL) {
		rep->has_tls = 1;
		rep->tls = *tls;
	}
	return connected;
}
