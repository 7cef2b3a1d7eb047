/*
 * mp-dpsend: mp-smtpsend's job (same options, same JSON lines and summary,
 * the shared front end mp_send.c) with the SMTP sessions on DPDK worker
 * lcores: each worker runs a usock_ engine (session core over its own
 * utcp stack, TLS context and session cache) inside the worker loop,
 * through dp_tcp's application hooks. Plus the dataplane options (--vdev,
 * --ip, --gw, --lcores, --file-prefix, --huge, ...).
 *
 * Threads: the front end's callbacks (next transaction, result, done,
 * opening sessions) run on the worker that owns the session; with more
 * than one worker they share the front end's mutex. A recipient's line is
 * copied into a record from a pool made at start and passed to the main
 * lcore through a per-worker ring; the main lcore prints, watches
 * --timeout (it sets a flag the workers act on: the front end and the
 * engine abort, in-flight recipients get their record) and waits until
 * every worker says the front end has nothing left. The summary adds the
 * workers' busy cycles (dp counters) per message and per TLS handshake.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/async.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mempool.h>
#include <rte_pause.h>
#include <rte_ring.h>

#include "dp_tcp.h"
#include "mp_send.h"
#include "usock.h"

#define LINE_POOL 4095		/* records in flight to the main lcore, per worker */
#define LINE_BURST 64
#define STOP_GRACE_S 5

/*
 * --test-async-pause: an emulated asynchronous crypto provider for tests.
 * Inside each certificate check the job pauses (ASYNC_pause_job), handing
 * OpenSSL either a wait fd (an eventfd) or nothing (then the wait ctx
 * callback signals, which lands in tls_ctx_ready_drain). A helper thread
 * signals the job only after the worker loop went round ASYNC_LOOPS more
 * times, so a loop that blocked on the paused job would never see it
 * resume: the run would time out instead of delivering.
 */
#define ASYNC_SLOTS 256
#define ASYNC_LOOPS 2000

enum { AP_OFF = 0, AP_FD, AP_CALLBACK };

struct apause_req {
	int used;			/* 0 free, 1 waiting, 2 signalled */
	int efd;
	ASYNC_callback_fn cb;
	void *cbarg;
	uint64_t loops_at;
};

struct apause {
	int mode;
	const volatile uint64_t *loops;	/* the worker's loop counter */
	pthread_t th;
	int th_started;
	uint64_t pauses;
	struct apause_req req[ASYNC_SLOTS];
};

struct send_worker {
	struct dp_tcp tcp;
	struct usock_engine *e;
	struct mpsend_backend b;
	struct rte_mempool *lines;
	struct rte_ring *out;
	uint64_t start_us, end_us;
	uint64_t first_poll_us;		/* the gate below started */
	unsigned limit;			/* sessions once the next hop is known */
	uint64_t lines_lost;		/* only if the run is stopped mid-way */
	struct rusage ru;		/* the worker thread's, when it finished */
	struct apause ap;
	int aborted;
	int finished;			/* read by the main lcore */
};

static struct send_worker *sw;
static unsigned n_sw;
static volatile int abort_flag;
static int async_mode;
/* the worker whose loop is running on this thread (for emit_line) */
static __thread struct send_worker *cur;

static void *
apause_thread(void *arg)
{
	struct apause *ap = arg;

	while (!__atomic_load_n(&dp_stop, __ATOMIC_RELAXED)) {
		uint64_t loops = __atomic_load_n(ap->loops, __ATOMIC_RELAXED);

		for (unsigned i = 0; i < ASYNC_SLOTS; i++) {
			struct apause_req *q = &ap->req[i];
			uint64_t one = 1;

			if (__atomic_load_n(&q->used, __ATOMIC_ACQUIRE) != 1 ||
			    loops < q->loops_at + ASYNC_LOOPS)
				continue;
			__atomic_store_n(&q->used, 2, __ATOMIC_RELEASE);
			if (ap->mode == AP_FD) {
				if (write(q->efd, &one, sizeof(one)) != sizeof(one))
					perror("mp-dpsend: eventfd");
			} else if (q->cb != NULL) {
				q->cb(q->cbarg);
			}
		}
		usleep(200);
	}
	return NULL;
}

/* Runs inside the handshake's async job, on the worker. */
static void
apause_hook(struct tls_conn *c, void *arg)
{
	struct apause *ap = arg;
	ASYNC_JOB *job = ASYNC_get_current_job();
	struct apause_req *q = NULL;
	ASYNC_WAIT_CTX *w;
	static const int key;

	(void)c;
	if (job == NULL)
		return;
	for (unsigned i = 0; i < ASYNC_SLOTS && q == NULL; i++)
		if (__atomic_load_n(&ap->req[i].used, __ATOMIC_ACQUIRE) == 0)
			q = &ap->req[i];
	if (q == NULL)
		return;
	w = ASYNC_get_wait_ctx(job);
	q->efd = -1;
	q->cb = NULL;
	if (ap->mode == AP_FD) {
		q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->efd < 0)
			return;
		ASYNC_WAIT_CTX_set_wait_fd(w, &key, q->efd, NULL, NULL);
	} else {
		ASYNC_WAIT_CTX_get_callback(w, &q->cb, &q->cbarg);
	}
	q->loops_at = __atomic_load_n(ap->loops, __ATOMIC_RELAXED);
	ap->pauses++;
	__atomic_store_n(&q->used, 1, __ATOMIC_RELEASE);
	ASYNC_pause_job();
	if (ap->mode == AP_FD) {
		w = ASYNC_get_wait_ctx(ASYNC_get_current_job());
		ASYNC_WAIT_CTX_clear_fd(w, &key);
		close(q->efd);
	}
	__atomic_store_n(&q->used, 0, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------- */
/* on the worker                                                      */
/* ---------------------------------------------------------------- */

static int
open_usock(void *ctx, const struct mps_req *req)
{
	return usock_sess_open(ctx, req);
}

static void
emit_line(void *arg, const struct mpsend_line *l)
{
	struct send_worker *x = cur;
	void *rec = NULL;

	(void)arg;
	/* the main lcore returns records as it prints; waiting here is the
	 * exception (it fell 4095 lines behind), never a lost line */
	while (rte_mempool_get(x->lines, &rec) != 0) {
		if (__atomic_load_n(&dp_stop, __ATOMIC_RELAXED)) {
			x->lines_lost++;
			return;
		}
		rte_pause();
	}
	memcpy(rec, l, sizeof(*l));
	while (rte_ring_sp_enqueue(x->out, rec) != 0)
		rte_pause();	/* ring holds the whole pool: cannot stay full */
}

static void
on_event(void *app, struct dp_worker *w, const struct utcp_event *ev)
{
	struct send_worker *x = app;

	cur = x;
	usock_on_event(x->e, ev, w->now_us);
}

/* @return non-zero once the next hop towards the server has a usable MAC. */
static int
next_hop_known(const struct dp_worker *w)
{
	uint32_t hop = dp_ifaddr_next_hop(&w->port->ifa,
		mpsend_server()->sin_addr.s_addr);
	const struct dp_arp_entry *e = dp_arp_lookup(&w->arp, hop);

	return e != NULL && (e->state == DP_ARP_REACHABLE || e->state == DP_ARP_STALE);
}

static int
worker_poll(void *app, struct dp_worker *w, uint64_t now_us)
{
	struct send_worker *x = app;
	int work;

	cur = x;
	if (x->start_us == 0) {
		/*
		 * One session until the next hop's MAC is known: a fresh process
		 * would otherwise send its first burst of SYNs into the ARP
		 * queue of a neighbour that may not answer yet, and every one of
		 * them would wait out the 1 s initial RTO. A daemon has the
		 * gateway in its cache; this only shapes a tool's start. Bounded:
		 * after 3 s the gate opens whatever ARP says.
		 */
		if (x->first_poll_us == 0) {
			x->first_poll_us = now_us;
			x->limit = x->b.limit;
		}
		if (!next_hop_known(w) && now_us - x->first_poll_us < 3000000) {
			x->b.limit = 1;
		} else {
			x->b.limit = x->limit;
			x->start_us = now_us;
		}
	}
	if (!x->aborted && __atomic_load_n(&abort_flag, __ATOMIC_RELAXED)) {
		x->aborted = 1;
		mpsend_abort();
		usock_engine_abort(x->e);
	}
	/* poll first: it sets the engine clock that new sessions' timers use */
	work = usock_poll(x->e, now_us);
	if (!x->finished)
		mpsend_fill(&x->b);
	if (!x->finished && x->b.active == 0 && mpsend_finished()) {
		x->end_us = now_us;
		/* once: how much CPU the worker really had, and how often the
		 * kernel took its core away (busy cycles are TSC deltas, so a
		 * preempted iteration counts its wait too) */
		getrusage(RUSAGE_THREAD, &x->ru);
		__atomic_store_n(&x->finished, 1, __ATOMIC_RELEASE);
	}
	return work;
}

/* ---------------------------------------------------------------- */
/* setup                                                              */
/* ---------------------------------------------------------------- */

struct setup_arg {
	const struct dp_steer *steer;
	unsigned n;
};

static int
setup_worker(struct dp_worker *w, void *arg)
{
	const struct setup_arg *a = arg;
	struct send_worker *x = &sw[w->id];
	struct dp_tcp_app app = { on_event, worker_poll, x };
	struct usock_conf uc = { 0 };
	struct utcp_conf tc = { 0 };
	struct tls_ctx_conf tcc;
	char name[RTE_MEMPOOL_NAMESIZE], err[256];
	unsigned total = mpsend_sessions();
	int ret;

	x->b.open = open_usock;
	x->b.limit = total / a->n + (w->id < total % a->n);
	if (x->b.limit == 0)
		x->b.limit = 1;
	tc.max_conns = 2 * x->b.limit + 64;
	ret = dp_tcp_attach(w, &x->tcp, &tc, a->steer, &app);
	if (ret < 0)
		return ret;
	uc.stack = x->tcp.stack;
	uc.smtp = mpsend_smtp();
	uc.tls_conf = mpsend_tls_conf();
	/* twice the sessions: a slot returns to the pool at the engine's next
	 * poll, while the done callback that freed it already opens the next */
	uc.max_sessions = 2 * x->b.limit;
	if (async_mode != AP_OFF) {
		x->ap.mode = async_mode;
		x->ap.loops = &w->cnt.loops;
		tcc = *mpsend_tls_conf();	/* copied by tls_ctx_new() */
		tcc.test_pause_hook = apause_hook;
		tcc.test_pause_arg = &x->ap;
		uc.tls_conf = &tcc;
		if (pthread_create(&x->ap.th, NULL, apause_thread, &x->ap) != 0)
			return -EAGAIN;
		x->ap.th_started = 1;
	}
	x->e = usock_engine_new(&uc, err, sizeof(err));
	if (x->e == NULL) {
		fprintf(stderr, "mp-dpsend: worker %u: %s\n", w->id, err);
		return -EINVAL;
	}
	x->b.ctx = x->e;
	snprintf(name, sizeof(name), "dps_lines_%u", w->id);
	x->lines = rte_mempool_create(name, LINE_POOL, sizeof(struct mpsend_line), 0, 0,
		NULL, NULL, NULL, NULL, (int)rte_lcore_to_socket_id(w->lcore), 0);
	snprintf(name, sizeof(name), "dps_out_%u", w->id);
	x->out = rte_ring_create(name, LINE_POOL + 1, (int)rte_lcore_to_socket_id(w->lcore),
		RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (x->lines == NULL || x->out == NULL) {
		fprintf(stderr, "mp-dpsend: worker %u: line pool: %s\n", w->id,
			rte_strerror(rte_errno));
		return -ENOMEM;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* main lcore                                                         */
/* ---------------------------------------------------------------- */

/* Print what the workers passed on. @return lines printed. */
static unsigned
drain_lines(void)
{
	void *recs[LINE_BURST];
	unsigned total = 0;

	for (unsigned i = 0; i < n_sw; i++) {
		unsigned k;

		if (sw[i].out == NULL)
			continue;
		while ((k = rte_ring_sc_dequeue_burst(sw[i].out, recs, LINE_BURST, NULL)) != 0) {
			for (unsigned j = 0; j < k; j++)
				mpsend_print_line(stdout, recs[j]);
			rte_mempool_put_bulk(sw[i].lines, recs, k);
			total += k;
		}
	}
	return total;
}

struct extra_arg {
	const struct dp_worker *w;
	unsigned n;
};

/* The dataplane's share of the summary: worker cycles per message and per handshake. */
static void
summary_extra(FILE *f, void *arg)
{
	const struct extra_arg *a = arg;
	struct dp_counters dc;
	struct usock_stats us, tot = { 0 };
	uint64_t retrans = 0, drops = 0, lost = 0, hs, msgs = mpsend_msgs_ok();
	uint64_t nivcsw = 0, tpauses = 0;
	double wcpu = 0;

	dp_stats_sum(a->w, a->n, &dc, NULL);
	for (unsigned i = 0; i < DP_DROP_LAST; i++)
		drops += dc.drops[i];
	for (unsigned i = 0; i < a->n; i++) {
		struct utcp_counters c;

		usock_engine_stats(sw[i].e, &us);
		tot.core.tls_ok += us.core.tls_ok;
		tot.core.tls_failed += us.core.tls_failed;
		tot.core.tls_resumed += us.core.tls_resumed;
		tot.core.async_pauses += us.core.async_pauses;
		tot.core.tails += us.core.tails;
		tot.connected += us.connected;
		tot.connect_failed += us.connect_failed;
		tot.connect_timeouts += us.connect_timeouts;
		tot.resets += us.resets;
		tot.sess_bytes = us.sess_bytes;
		utcp_stack_counters(sw[i].tcp.stack, &c);
		retrans += c.retransmits;
		lost += sw[i].lines_lost;
		wcpu += (double)sw[i].ru.ru_utime.tv_sec + (double)sw[i].ru.ru_utime.tv_usec / 1e6 +
			(double)sw[i].ru.ru_stime.tv_sec + (double)sw[i].ru.ru_stime.tv_usec / 1e6;
		nivcsw += (uint64_t)sw[i].ru.ru_nivcsw;
		tpauses += sw[i].ap.pauses;
	}
	hs = tot.core.tls_ok + tot.core.tls_failed;
	fprintf(f, ",\"dataplane\":{\"workers\":%u,\"tsc_hz\":%llu,\"busy_cycles\":%llu,"
		"\"busy_cycles_per_msg\":%.0f,\"busy_cycles_per_handshake\":%.0f,"
		"\"handshakes\":%llu,\"tls_failed\":%llu,\"tls_resumed\":%llu,"
		"\"async_pauses\":%llu,\"tails\":%llu,\"connected\":%llu,\"connect_failed\":%llu,"
		"\"connect_timeouts\":%llu,\"resets\":%llu,\"retransmits\":%llu,"
		"\"loops\":%llu,\"busy_loops\":%llu,\"idle_sleeps\":%llu,\"rx_pkts\":%llu,"
		"\"tx_pkts\":%llu,\"drops_total\":%llu,\"sess_bytes\":%zu,\"lines_lost\":%llu,"
		"\"worker_cpu_s\":%.3f,\"worker_preempted\":%llu,\"test_pauses\":%llu}",
		a->n, (unsigned long long)rte_get_tsc_hz(), (unsigned long long)dc.busy_cycles,
		msgs ? (double)dc.busy_cycles / (double)msgs : 0.0,
		hs ? (double)dc.busy_cycles / (double)hs : 0.0,
		(unsigned long long)hs, (unsigned long long)tot.core.tls_failed,
		(unsigned long long)tot.core.tls_resumed,
		(unsigned long long)tot.core.async_pauses, (unsigned long long)tot.core.tails,
		(unsigned long long)tot.connected, (unsigned long long)tot.connect_failed,
		(unsigned long long)tot.connect_timeouts, (unsigned long long)tot.resets,
		(unsigned long long)retrans, (unsigned long long)dc.loops,
		(unsigned long long)dc.busy_loops, (unsigned long long)dc.idle_sleeps,
		(unsigned long long)dc.rx_pkts, (unsigned long long)dc.tx_pkts,
		(unsigned long long)drops, tot.sess_bytes, (unsigned long long)lost, wcpu,
		(unsigned long long)nivcsw, (unsigned long long)tpauses);
}

enum { OPT_ASYNC = DP_OPT_LAST };

static void
usage_dp(FILE *f)
{
	dp_options_usage(f);
	fputs("Test:\n"
"  --test-async-pause fd|callback\n"
"                      emulate an asynchronous crypto provider: every certificate\n"
"                      check pauses its OpenSSL job until the worker loop went\n"
"                      round 2000 more times (signalled by a wait fd or the wait\n"
"                      ctx callback); proves the loop never blocks on a pause\n", f);
}

static int
apply_dp(void *arg, int opt, const char *optarg)
{
	if (opt == OPT_ASYNC) {
		if (strcmp(optarg, "fd") == 0)
			async_mode = AP_FD;
		else if (strcmp(optarg, "callback") == 0)
			async_mode = AP_CALLBACK;
		else {
			fprintf(stderr, "mp-dpsend: --test-async-pause: fd|callback\n");
			return -1;
		}
		return 0;
	}
	if (opt < DP_OPT_VDEV || opt >= DP_OPT_LAST ||
	    dp_conf_apply_option(arg, opt, optarg) != 0) {
		fprintf(stderr, "mp-dpsend: --%s: invalid value \"%s\"\n", dp_option_name(opt),
			optarg != NULL ? optarg : "");
		return -1;
	}
	return 0;
}

static void
on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&abort_flag, 1, __ATOMIC_RELAXED);
}

int
main(int argc, char **argv)
{
	struct dp_conf conf;
	struct option opts[DP_OPT_LAST - DP_OPT_VDEV + 2];
	struct mpsend_cli cli = {
		.prog = "mp-dpsend",
		.what = "Send a message to each recipient through one SMTP server over concurrent\n"
			"sessions on DPDK worker lcores (userspace TCP); print one JSON line per\n"
			"recipient and a summary (with the workers' busy cycles per message).",
		.opts = opts,
		.nopts = dp_long_options_n + 1,
		.apply = apply_dp,
		.usage = usage_dp,
		.arg = &conf,
		.emit = emit_line,
		.allow_rest = 1,
	};
	struct dp_worker *workers = NULL;
	struct dp_steer steer;
	struct dp_port port;
	struct setup_arg sa;
	struct extra_arg xa;
	double t0, deadline, elapsed;
	char msg[256];
	int n = 0, rc, rest, timed_out = 0, ret = 1;

	if (dp_long_options_n + 1 > sizeof(opts) / sizeof(opts[0]))
		return 1;
	memcpy(opts, dp_long_options, dp_long_options_n * sizeof(opts[0]));
	opts[dp_long_options_n] = (struct option){ "test-async-pause", required_argument,
		NULL, OPT_ASYNC };
	dp_conf_defaults(&conf);
	conf.garp_count = 1;
	rc = mpsend_parse(&cli, argc, argv, &rest);
	if (rc != 0)
		return rc > 0 ? 0 : 1;
	conf.eal_argc = argc - rest;
	conf.eal_argv = argv + rest;
	if (dp_conf_check(&conf, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "mp-dpsend: bad configuration: %s\n", msg);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (dp_eal_init(&conf, argv[0]) < 0) {
		fprintf(stderr, "mp-dpsend: EAL start failed: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	if (rte_lcore_count() < 2) {
		fprintf(stderr, "mp-dpsend: --lcores needs a main lcore and at least one worker\n");
		goto out_eal;
	}
	sa.n = rte_lcore_count() - 1;
	if (dp_port_init(&port, &conf, sa.n) != 0) {
		fprintf(stderr, "mp-dpsend: port start failed\n");
		goto out_eal;
	}
	sa.steer = &steer;
	if (dp_steer_init(&steer, &port, sa.n) != 0)
		goto out_port;
	sw = rte_zmalloc("dpsend", sizeof(*sw) * sa.n, RTE_CACHE_LINE_SIZE);
	if (sw == NULL)
		goto out_port;
	n_sw = sa.n;
	mpsend_set_threads((int)sa.n);
	setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	n = dp_workers_start(&port, &conf, &workers, setup_worker, &sa);
	t0 = mpsend_now();	/* engines made: the clock runs from the launch */
	if (n < 0) {
		fprintf(stderr, "mp-dpsend: starting workers: %s\n", strerror(-n));
		__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
		rte_eal_mp_wait_lcore();
		goto out_free;
	}
	deadline = mpsend_timeout() > 0 ? t0 + mpsend_timeout() : 0;
	for (;;) {
		int all = 1;

		for (int i = 0; i < n; i++)
			all &= __atomic_load_n(&sw[i].finished, __ATOMIC_ACQUIRE);
		if (all)
			break;
		if (drain_lines() == 0)
			usleep(1000);
		if (!timed_out && (__atomic_load_n(&abort_flag, __ATOMIC_RELAXED) ||
		    (deadline > 0 && mpsend_now() >= deadline))) {
			/* in-flight recipients get their record; nothing new starts */
			timed_out = 1;
			__atomic_store_n(&abort_flag, 1, __ATOMIC_RELAXED);
			deadline = mpsend_now() + STOP_GRACE_S;
		} else if (timed_out && mpsend_now() >= deadline) {
			break;
		}
	}
	elapsed = mpsend_now() - t0;
	__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
	rte_eal_mp_wait_lcore();
	drain_lines();
	for (int i = 0; i < n; i++)
		if (sw[i].ap.th_started) {
			pthread_join(sw[i].ap.th, NULL);
			sw[i].ap.th_started = 0;
		}
	xa.w = workers;
	xa.n = (unsigned)n;
	mpsend_summary(stdout, elapsed, timed_out, summary_extra, &xa);
	ret = timed_out ? 2 : 0;
out_free:
	for (unsigned i = 0; i < sa.n; i++) {
		if (sw[i].ap.th_started)
			pthread_join(sw[i].ap.th, NULL);
		usock_engine_free(sw[i].e);
		dp_tcp_detach(&sw[i].tcp);
		rte_ring_free(sw[i].out);
		rte_mempool_free(sw[i].lines);
	}
	if (n > 0)
		dp_workers_stop(workers, (unsigned)n);
	rte_free(sw);
	mpsend_free();
out_port:
	dp_port_fini(&port);
out_eal:
	rte_eal_cleanup();
	return ret;
}
