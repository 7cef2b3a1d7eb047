/*
 * Ring backend (ctl_ring.h): the control side's submit/poll and the
 * worker side's session engine, joined only by two SP/SC rings per worker.
 *
 * A pointer on the in ring is tagged in its low bits: an order wrapper
 * (struct rorder, tag 0), one of the worker's event records coming back
 * (tag 1), or the abort command (tag 2, no object). The out ring carries
 * event records only. The order wrapper is allocated by the control side
 * at submit and carries what the worker needs for that one connection
 * (its SMTP configuration and the renderer of the message being sent), so
 * the worker loop never allocates; the worker's event records are made at
 * start. Worker loop step "control ring": take orders and returned
 * records, open sessions while the engine has slots; step "session
 * work": usock_poll. Session callbacks render messages from the order's
 * campaign and turn outcomes into records on the out ring.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_errno.h>
#include <rte_pause.h>
#include <rte_ring.h>

#include "ctl_ring.h"
#include "mp_log.h"

#define LOGW(...) MP_LOG(MP_LOG_WARN, "ctl_ring", __VA_ARGS__)
#define LOGD(...) MP_LOG(MP_LOG_DEBUG, "ctl_ring", __VA_ARGS__)

#define TAG_ORDER 0u
#define TAG_EV 1u
#define TAG_ABORT 2u
#define TAG_MASK 3u
#define BURST 64
#define MAX_DOMAINS 4096

enum ev_kind { EV_RESULT = 1, EV_DONE };

struct rorder;

/* One event record: a result or a session report, plain data. */
struct ring_ev {
	uint32_t kind;			/* enum ev_kind */
	uint32_t worker;
	struct rorder *ro;
	union {
		struct ctl_result r;
		struct ctl_sess_report rep;
	} u;
};

/* One order on its way to a worker and back. */
struct rorder {
	struct ctl_order *o;
	struct rorder *next;		/* worker's queue of orders without a slot */
	struct rorder *lprev, *lnext;	/* worker's open sessions */
	struct ctl_rworker *w;
	unsigned worker;
	struct ctl_order_run run;	/* worker side: the order's session */
};

struct ring_port {
	struct rte_ring *in, *out;
	unsigned active;		/* orders at this worker */
};

struct ctl_ring {
	struct ctl_sink sink;
	struct ctl_ring_conf conf;
	struct ring_port *port;
	unsigned active;
	unsigned rr;
	unsigned n_events;
	/* per-domain counters (open addressing, bounded) */
	struct ctl_ring_domain *dom;
	unsigned ndom;
	unsigned *dom_idx;		/* hash slot -> index + 1 */
	unsigned dom_cap;
};

struct ctl_rworker {
	struct ctl_ring *r;
	unsigned id;
	struct rte_ring *in, *out;
	struct usock_engine *e;
	struct smtp_config smtp;
	char helo[256];
	struct ring_ev *evmem;
	struct ring_ev **free;
	unsigned nfree, nev;
	struct rorder *qhead, *qtail;
	struct rorder *live;		/* orders with an open session */
	int aborting;
	const volatile int *stop;
	struct ctl_signq *signq;	/* DKIM signatures made by the pool */
	struct ctl_rworker_stats st;
};

static inline void *
tag(void *p, unsigned t)
{
	return (void *)((uintptr_t)p | t);
}

static inline unsigned
tag_of(void *p)
{
	return (unsigned)((uintptr_t)p & TAG_MASK);
}

static inline void *
untag(void *p)
{
	return (void *)((uintptr_t)p & ~(uintptr_t)TAG_MASK);
}

/* ------------------------------------------------------------------ */
/* control side                                                         */
/* ------------------------------------------------------------------ */

static struct ctl_ring_domain *
dom_get(struct ctl_ring *r, const char *name)
{
	uint64_t h = ctl_hash64(name);

	for (unsigned i = 0; i < r->dom_cap; i++) {
		unsigned slot = (unsigned)((h + i) & (r->dom_cap - 1));
		struct ctl_ring_domain *d;

		if (r->dom_idx[slot] == 0) {
			if (r->ndom == MAX_DOMAINS)
				return NULL;
			d = &r->dom[r->ndom++];
			snprintf(d->name, sizeof(d->name), "%s", name);
			r->dom_idx[slot] = r->ndom;
			return d;
		}
		d = &r->dom[r->dom_idx[slot] - 1];
		if (strcmp(d->name, name) == 0)
			return d;
	}
	return NULL;
}

static int
r_submit(void *be, struct ctl_order *o)
{
	struct ctl_ring *r = be;
	struct rorder *ro;
	unsigned best = r->conf.n_workers;

	if (o->n_msgs == 0)
		return -EINVAL;
	/* the least loaded worker with room, round robin among equals */
	for (unsigned k = 0; k < r->conf.n_workers; k++) {
		unsigned i = (r->rr + k) % r->conf.n_workers;

		if (r->port[i].active >= r->conf.max_sessions)
			continue;
		if (best == r->conf.n_workers || r->port[i].active < r->port[best].active)
			best = i;
	}
	if (best == r->conf.n_workers)
		return -EAGAIN;
	ro = calloc(1, sizeof(*ro));
	if (ro == NULL)
		return -EAGAIN;
	ro->o = o;
	ro->worker = best;
	/* cannot fail: the ring holds max_sessions orders besides every record */
	if (rte_ring_sp_enqueue(r->port[best].in, tag(ro, TAG_ORDER)) != 0) {
		free(ro);
		return -EAGAIN;
	}
	r->rr = best + 1;
	r->port[best].active++;
	r->active++;
	return 0;
}

static void
count_result(struct ctl_ring *r, struct ctl_order *o, const struct ctl_result *res)
{
	struct ctl_ring_domain *d = dom_get(r, o->domain);

	if (d == NULL)
		return;
	switch (res->outcome) {
	case SMTP_OUT_DELIVERED: d->delivered++; break;
	case SMTP_OUT_DEFERRED: d->deferred++; break;
	case SMTP_OUT_BOUNCED: d->bounced++; break;
	default: d->failed++; break;
	}
	if (res->outcome == SMTP_OUT_DELIVERED) {
		if (res->tls_on)
			d->tls_msgs++;
		else
			d->plain_msgs++;
	}
}

static int
r_drain(struct ctl_ring *r)
{
	void *evs[BURST];
	int total = 0;

	for (unsigned i = 0; i < r->conf.n_workers; i++) {
		struct ring_port *p = &r->port[i];
		unsigned k;

		while ((k = rte_ring_sc_dequeue_burst(p->out, evs, BURST, NULL)) != 0) {
			for (unsigned j = 0; j < k; j++) {
				struct ring_ev *ev = evs[j];
				struct rorder *ro = ev->ro;
				struct ctl_order *o = ro->o;

				if (ev->kind == EV_RESULT) {
					count_result(r, o, &ev->u.r);
					r->sink.on_result(r->sink.arg, o, &ev->u.r);
				} else {
					struct ctl_ring_domain *d = dom_get(r, o->domain);

					if (d != NULL)
						d->orders++;
					p->active--;
					r->active--;
					free(ro);
					r->sink.on_done(r->sink.arg, o, &ev->u.rep);
				}
				/* the record goes home; the ring has room for all of them */
				if (rte_ring_sp_enqueue(p->in, tag(ev, TAG_EV)) != 0)
					LOGW("event=record_not_returned worker=%u", i);
			}
			total += (int)k;
		}
	}
	return total;
}

static int
r_poll(void *be, int timeout_ms)
{
	struct ctl_ring *r = be;
	struct timespec t0, now;
	int n = r_drain(r);

	if (n > 0 || timeout_ms <= 0 || r->active == 0)
		return n;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		usleep(200);
		n = r_drain(r);
		if (n > 0)
			return n;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 >=
		    timeout_ms)
			return 0;
	}
}

static unsigned
r_active(void *be)
{
	return ((struct ctl_ring *)be)->active;
}

static const struct ctl_backend_ops ring_ops = {
	.submit = r_submit,
	.poll = r_poll,
	.active = r_active,
};

struct ctl_ring *
ctl_ring_new(const struct ctl_ring_conf *conf, const struct ctl_sink *sink,
	char *err, size_t errlen)
{
	struct ctl_ring *r;
	char name[RTE_RING_NAMESIZE];

	if (conf->n_workers == 0 || conf->max_sessions == 0) {
		snprintf(err, errlen, "ring backend: no workers or no sessions");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto nomem;
	r->sink = *sink;
	r->conf = *conf;
	r->n_events = conf->n_events ? conf->n_events : 2 * conf->max_sessions;
	if (r->n_events < 1024)
		r->n_events = 1024;
	r->dom_cap = 2 * MAX_DOMAINS;
	r->dom = calloc(MAX_DOMAINS, sizeof(*r->dom));
	r->dom_idx = calloc(r->dom_cap, sizeof(*r->dom_idx));
	r->port = calloc(conf->n_workers, sizeof(*r->port));
	if (r->dom == NULL || r->dom_idx == NULL || r->port == NULL)
		goto nomem;
	for (unsigned i = 0; i < conf->n_workers; i++) {
		snprintf(name, sizeof(name), "ctl_in_%u", i);
		r->port[i].in = rte_ring_create(name, conf->max_sessions + r->n_events + 8,
			conf->socket_id, RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
		snprintf(name, sizeof(name), "ctl_out_%u", i);
		r->port[i].out = rte_ring_create(name, r->n_events + 8, conf->socket_id,
			RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
		if (r->port[i].in == NULL || r->port[i].out == NULL) {
			snprintf(err, errlen, "ring backend: rings for worker %u: %s", i,
				rte_strerror(rte_errno));
			ctl_ring_free(r);
			return NULL;
		}
	}
	return r;
nomem:
	snprintf(err, errlen, "ring backend: out of memory");
	ctl_ring_free(r);
	return NULL;
}

void
ctl_ring_free(struct ctl_ring *r)
{
	void *p;

	if (r == NULL)
		return;
	for (unsigned i = 0; r->port != NULL && i < r->conf.n_workers; i++) {
		/* orders the workers never took: back to nobody, freed here */
		while (r->port[i].in != NULL && rte_ring_sc_dequeue(r->port[i].in, &p) == 0) {
			if (tag_of(p) == TAG_ORDER) {
				struct rorder *ro = untag(p);

				ctl_order_free(ro->o);
				free(ro);
			}
		}
		/* done records never read: their orders are ours again */
		while (r->port[i].out != NULL && rte_ring_sc_dequeue(r->port[i].out, &p) == 0) {
			struct ring_ev *ev = p;

			if (ev->kind == EV_DONE) {
				ctl_order_free(ev->ro->o);
				free(ev->ro);
			}
		}
		rte_ring_free(r->port[i].in);
		rte_ring_free(r->port[i].out);
	}
	free(r->port);
	free(r->dom);
	free(r->dom_idx);
	free(r);
}

struct ctl_backend
ctl_ring_backend(struct ctl_ring *r)
{
	struct ctl_backend b = { .ops = &ring_ops, .be = r };

	return b;
}

void
ctl_ring_abort(struct ctl_ring *r)
{
	for (unsigned i = 0; i < r->conf.n_workers; i++)
		if (rte_ring_sp_enqueue(r->port[i].in, tag(NULL, TAG_ABORT)) != 0)
			LOGW("event=abort_not_sent worker=%u", i);
}

unsigned
ctl_ring_active(const struct ctl_ring *r)
{
	return r->active;
}

const struct ctl_ring_domain *
ctl_ring_domains(const struct ctl_ring *r, unsigned *n)
{
	*n = r->ndom;
	return r->dom;
}

/* ------------------------------------------------------------------ */
/* worker side                                                          */
/* ------------------------------------------------------------------ */

static void
w_take(struct ctl_rworker *w, void *p)
{
	switch (tag_of(p)) {
	case TAG_EV:
		w->free[w->nfree++] = untag(p);
		break;
	case TAG_ABORT:
		w->aborting = 1;
		usock_engine_abort(w->e);
		break;
	default: {
		struct rorder *ro = untag(p);

		ro->w = w;
		ro->next = NULL;
		if (w->qtail != NULL)
			w->qtail->next = ro;
		else
			w->qhead = ro;
		w->qtail = ro;
		w->st.orders++;
		w->st.msgs += ro->o->n_msgs;
		w->st.active++;
		w->st.queued++;
		if (w->st.active > w->st.peak_active)
			w->st.peak_active = w->st.active;
		break;
	}
	}
}

/* An event record; when all are out, wait for the control side to return
 * some (it returns each one right after reading it). NULL only when the
 * loop is ending and the control side no longer reads. */
static struct ring_ev *
w_ev(struct ctl_rworker *w)
{
	void *p;

	if (w->nfree == 0)
		w->st.ev_waits++;
	while (w->nfree == 0) {
		if (rte_ring_sc_dequeue(w->in, &p) == 0) {
			w_take(w, p);
		} else if (w->stop != NULL && __atomic_load_n(w->stop, __ATOMIC_RELAXED)) {
			w->st.ev_lost++;
			return NULL;
		} else {
			rte_pause();
		}
	}
	return w->free[--w->nfree];
}

/* Keep an order the worker can no longer report on the live list, so
 * ctl_rworker_free() frees it. */
static void
w_keep(struct ctl_rworker *w, struct rorder *ro)
{
	if (ro->lprev != NULL || w->live == ro)
		return;
	ro->lnext = w->live;
	if (w->live != NULL)
		w->live->lprev = ro;
	w->live = ro;
}

static void
w_emit(struct ctl_rworker *w, struct ring_ev *ev)
{
	/* cannot fail: the out ring holds every record */
	while (rte_ring_sp_enqueue(w->out, ev) != 0)
		rte_pause();
}

static int
w_next_txn(void *user, struct smtp_txn *txn)
{
	struct rorder *ro = user;

	if (ro->w->aborting)
		return -ENOENT;
	return ctl_order_run_next_txn(&ro->run, txn);
}

static void
w_count(struct ctl_rworker *w, enum smtp_outcome out)
{
	switch (out) {
	case SMTP_OUT_DELIVERED: w->st.delivered++; break;
	case SMTP_OUT_DEFERRED: w->st.deferred++; break;
	case SMTP_OUT_BOUNCED: w->st.bounced++; break;
	default: w->st.failed++; break;
	}
}

/* A result the worker makes itself (order never opened, or cut short). */
static void
w_local_result(struct rorder *ro, unsigned idx, enum smtp_outcome out,
	const char *text)
{
	struct ctl_rworker *w = ro->w;
	struct ring_ev *ev = w_ev(w);

	if (ev == NULL)
		return;
	ev->kind = EV_RESULT;
	ev->worker = w->id;
	ev->ro = ro;
	ctl_order_run_local(&ro->run, idx, out, text, &ev->u.r);
	w->st.results++;
	w_count(w, out);
	w_emit(w, ev);
}

static void
w_result(void *user, const struct smtp_rcpt_result *r, const struct tls_record *tls)
{
	struct rorder *ro = user;
	struct ctl_rworker *w = ro->w;
	struct ring_ev *ev = w_ev(w);

	if (ev == NULL)
		return;
	ev->kind = EV_RESULT;
	ev->worker = w->id;
	ev->ro = ro;
	ctl_order_run_result(&ro->run, r, tls, &ev->u.r);
	w->st.results++;
	w_count(w, r->outcome);
	w_emit(w, ev);
}

/* The order's last record: its session report (info NULL: no session). */
static void
w_done_common(struct rorder *ro, const struct smtp_sess_info *info,
	const struct tls_record *tls)
{
	struct ctl_rworker *w = ro->w;
	struct ring_ev *ev = w_ev(w);

	if (ev == NULL) {
		w_keep(w, ro);
		return;
	}
	ev->kind = EV_DONE;
	ev->worker = w->id;
	ev->ro = ro;
	if (!ctl_order_run_report(&ro->run, info, tls, &ev->u.rep))
		w->st.connect_failed++;
	w->st.render_failed += ro->run.render_failed;
	if (ro->lprev != NULL)
		ro->lprev->lnext = ro->lnext;
	else if (w->live == ro)
		w->live = ro->lnext;
	if (ro->lnext != NULL)
		ro->lnext->lprev = ro->lprev;
	w->st.dones++;
	w->st.active--;
	/* after this the order is the control side's again */
	w_emit(w, ev);
}

static void
w_done(void *user, const struct smtp_sess_info *info, const struct tls_record *tls)
{
	struct rorder *ro = user;

	/* messages the session never asked for (abort, early close) still
	 * get their one result each */
	for (unsigned i = ro->run.nxt; i < ro->o->n_msgs; i++)
		w_local_result(ro, i, SMTP_OUT_DEFERRED, "session ended before this message");
	ro->run.nxt = ro->o->n_msgs;
	w_done_common(ro, info, tls);
}

/* End an order that never got a session. */
static void
w_drop(struct rorder *ro, const char *why)
{
	ro->run.o = ro->o;
	for (unsigned i = 0; i < ro->o->n_msgs; i++)
		w_local_result(ro, i, SMTP_OUT_DEFERRED, why);
	ro->w->st.aborted++;
	w_done_common(ro, NULL, NULL);
}

static int
w_open(struct ctl_rworker *w, struct rorder *ro)
{
	struct mps_req req;

	ctl_order_run_init(&ro->run, ro->o, &w->smtp, &req);
	ctl_order_run_set_signq(&ro->run, w->signq);
	req.next_txn = w_next_txn;
	req.result = w_result;
	req.done = w_done;
	req.user = ro;
	return usock_sess_open(w->e, &req);
}

int
ctl_rworker_poll(struct ctl_rworker *w, uint64_t now_us)
{
	void *ps[BURST];
	unsigned k;
	int work;

	/* signatures made since the last turn wake their sessions; while
	 * some are being made the loop does not back off */
	work = (int)ctl_signq_poll(w->signq) + (ctl_signq_inflight(w->signq) != 0);
	/* session work first: it sets the engine clock new sessions use */
	work += usock_poll(w->e, now_us);
	while ((k = rte_ring_sc_dequeue_burst(w->in, ps, BURST, NULL)) != 0) {
		for (unsigned i = 0; i < k; i++)
			w_take(w, ps[i]);
		work += (int)k;
	}
	while (w->qhead != NULL) {
		struct rorder *ro = w->qhead;
		int rc;

		if (w->aborting) {
			rc = -ECANCELED;
		} else {
			rc = w_open(w, ro);
			if (rc == -EMFILE)
				break;		/* no slot: after the next done */
		}
		w->qhead = ro->next;
		if (w->qhead == NULL)
			w->qtail = NULL;
		w->st.queued--;
		if (rc == 0) {
			ro->lprev = NULL;
			ro->lnext = w->live;
			if (w->live != NULL)
				w->live->lprev = ro;
			w->live = ro;
		}
		if (rc < 0)
			w_drop(ro, rc == -ECANCELED ? "daemon stopping: not attempted" :
				"session could not be opened");
		work++;
	}
	w->st.open = usock_engine_active(w->e);
	if (w->st.open > w->st.peak_open)
		w->st.peak_open = w->st.open;
	return work;
}

void
ctl_rworker_on_event(struct ctl_rworker *w, const struct utcp_event *ev,
	uint64_t now_us)
{
	usock_on_event(w->e, ev, now_us);
}

struct ctl_rworker *
ctl_rworker_new(struct ctl_ring *r, unsigned id, const struct ctl_rworker_conf *conf,
	char *err, size_t errlen)
{
	struct ctl_rworker *w;
	struct usock_conf uc = { 0 };

	if (id >= r->conf.n_workers) {
		snprintf(err, errlen, "worker %u: no rings", id);
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		goto nomem;
	w->r = r;
	w->id = id;
	w->stop = conf->stop;
	w->in = r->port[id].in;
	w->out = r->port[id].out;
	if (conf->smtp != NULL)
		w->smtp = *conf->smtp;
	else
		smtp_config_defaults(&w->smtp);
	snprintf(w->helo, sizeof(w->helo), "%s",
		w->smtp.helo_name ? w->smtp.helo_name : "localhost");
	w->smtp.helo_name = w->helo;
	w->nev = r->n_events;
	w->evmem = calloc(w->nev, sizeof(*w->evmem));
	w->free = calloc(w->nev, sizeof(*w->free));
	if (w->evmem == NULL || w->free == NULL)
		goto nomem;
	for (unsigned i = 0; i < w->nev; i++)
		w->free[w->nfree++] = &w->evmem[i];
	uc.stack = conf->stack;
	uc.smtp = &w->smtp;
	uc.tls_conf = conf->tls;
	/* a slot returns at the engine's next poll while the done that
	 * freed it may already be followed by the next order */
	uc.max_sessions = r->conf.max_sessions + 64;
	uc.connect_timeout_ms = conf->connect_timeout_ms;
	uc.source = conf->source;
	w->e = usock_engine_new(&uc, err, errlen);
	if (w->e == NULL) {
		ctl_rworker_free(w);
		return NULL;
	}
	if (conf->dkim != NULL && (w->signq = ctl_signq_new(conf->dkim, 0)) == NULL)
		goto nomem;
	return w;
nomem:
	snprintf(err, errlen, "worker %u: out of memory", id);
	ctl_rworker_free(w);
	return NULL;
}

void
ctl_rworker_free(struct ctl_rworker *w)
{
	if (w == NULL)
		return;
	usock_engine_free(w->e);
	/* orders this worker holds (queued or with a session) die here;
	 * what is still on the rings is ctl_ring_free()'s */
	while (w->qhead != NULL) {
		struct rorder *ro = w->qhead;

		w->qhead = ro->next;
		ctl_order_free(ro->o);
		free(ro);
	}
	while (w->live != NULL) {
		struct rorder *ro = w->live;

		w->live = ro->lnext;
		ctl_order_run_fini(&ro->run);
		ctl_order_free(ro->o);
		free(ro);
	}
	ctl_signq_free(w->signq, 2000);
	free(w->evmem);
	free(w->free);
	free(w);
}

const struct ctl_rworker_stats *
ctl_rworker_stats(const struct ctl_rworker *w)
{
	return &w->st;
}

struct usock_engine *
ctl_rworker_engine(const struct ctl_rworker *w)
{
	return w->e;
}
