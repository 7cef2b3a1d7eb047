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
#include <arpa/inet.h>
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
	struct ctl_signq *signq;	/* DKIM signatures made by the pool */
};

/* One order in flight. */
struct kord {
	struct ctl_ksock *k;
	struct kord *lprev, *lnext;
	struct ctl_order_run run;
};

static int
k_next_txn(void *user, struct smtp_txn *txn)
{
	return ctl_order_run_next_txn(&((struct kord *)user)->run, txn);
}

static void
k_result(void *user, const struct smtp_rcpt_result *r, const struct tls_record *tls)
{
	struct kord *ko = user;
	struct ctl_result res;

	ctl_order_run_result(&ko->run, r, tls, &res);
	ko->k->sink.on_result(ko->k->sink.arg, ko->run.o, &res);
}

static void
k_done(void *user, const struct smtp_sess_info *info, const struct tls_record *tls)
{
	struct kord *ko = user;
	struct ctl_ksock *k = ko->k;
	struct ctl_sess_report rep;

	ctl_order_run_report(&ko->run, info, tls, &rep);
	k->active--;
	if (ko->lprev != NULL)
		ko->lprev->lnext = ko->lnext;
	else
		k->live = ko->lnext;
	if (ko->lnext != NULL)
		ko->lnext->lprev = ko->lprev;
	k->sink.on_done(k->sink.arg, ko->run.o, &rep);
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
	ctl_order_run_init(&ko->run, o, &k->smtp, &req);
	ctl_order_run_set_signq(&ko->run, k->signq);
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
	int n;

	/* signatures made meanwhile wake their sessions (the eventfd is in
	 * the engine's epoll set, so a wait ends when one is made) */
	ctl_signq_poll(k->signq);
	n = ksock_engine_poll(k->e, timeout_ms);
	ctl_signq_poll(k->signq);
	return n;
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
	if (conf != NULL) {
		kc.source = conf->source;
		kc.source6 = conf->source6;
	}
	k->e = ksock_engine_new(&kc, err, errlen);
	if (k->e == NULL) {
		free(k);
		return NULL;
	}
	if (conf != NULL && conf->dkim != NULL) {
		int rc = -ENOMEM;

		k->signq = ctl_signq_new(conf->dkim, 1);
		if (k->signq == NULL ||
		    (rc = ksock_engine_watch(k->e, ctl_signq_fd(k->signq))) < 0) {
			snprintf(err, errlen, "DKIM result queue: %s", strerror(-rc));
			ctl_ksock_free(k);
			return NULL;
		}
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
		ctl_order_run_fini(&ko->run);
		ctl_order_free(ko->run.o);
		free(ko);
	}
	ctl_signq_free(k->signq, 2000);
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

int
ctl_ksock_source_parse(const char *text, int family, void *out, char *err, size_t errlen)
{
	const char *fam = family == AF_INET6 ? "IPv6" : "IPv4";

	if (text == NULL || inet_pton(family, text, out) != 1) {
		/* the usual mistakes, named: the other family, brackets, a prefix */
		struct in6_addr any;
		int other = family == AF_INET6 ? AF_INET : AF_INET6;

		snprintf(err, errlen, "\"%s\" is not an %s address%s", text ? text : "", fam,
			text != NULL && inet_pton(other, text, &any) == 1 ?
			(family == AF_INET6 ? " (that is an IPv4 one)" : " (that is an IPv6 one)") :
			text != NULL && (text[0] == '[' || strchr(text, '/') != NULL) ?
			" (no brackets, no prefix length)" : "");
		return -EINVAL;
	}
	if (family == AF_INET6) {
		const struct in6_addr *a = out;

		if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_MULTICAST(a) ||
		    IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_LINKLOCAL(a)) {
			snprintf(err, errlen, "\"%s\" is not a usable source: want a global "
				"or unique-local unicast IPv6 address", text);
			return -EINVAL;
		}
	} else {
		uint32_t a = ntohl(((const struct in_addr *)out)->s_addr);

		if (a == 0 || a == 0xffffffffu || (a >> 28) == 0xe) {
			snprintf(err, errlen, "\"%s\" is not a usable source: want a unicast "
				"IPv4 address", text);
			return -EINVAL;
		}
	}
	return 0;
}
