/*
 * mailpump: the daemon. The control plane (ctl_sched: Redis jobs stream,
 * MX lookups, shaping, retries, results) runs on the main lcore; each
 * worker lcore runs the userspace TCP stack, TLS and SMTP sessions for
 * the orders the control plane hands it, meeting it only through one
 * pair of SP/SC rings (control/daemon/ctl_ring.c). With [daemon] transport =
 * ksock the same control plane drives kernel sockets in one thread
 * instead, and EAL is never started. With no Redis URL at all (no
 * --config, no --redis) it runs the dataplane alone: ARP and ping.
 *
 * Start-up: command line -> configuration (file, then overrides) ->
 * every key validated (one message naming file:line [section] key, exit
 * 2) -> EAL -> port -> workers -> loop. SIGTERM/SIGINT: stop taking
 * batches, let sessions finish for [daemon] grace, then abort the rest
 * (their recipients go back as deferred: retried, not lost; batches not
 * finished stay pending in the group for another consumer), write the
 * last results, stop the workers, close the port, exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_log.h>

#include "ctl_dconf.h"
#include "ctl_dns.h"
#include "ctl_ksock.h"
#include "ctl_redis.h"
#include "ctl_ring.h"
#include "ctl_sched.h"
#include "dp.h"
#include "dp_tcp.h"
#include "mp_log.h"

#define PROG "mailpump"

static volatile sig_atomic_t got_term;
static struct ctl_dconf dc;		/* large: not on the stack */
static int dkim_on;			/* signer threads started */

/* per worker, made on the main lcore before the workers launch */
struct wslot {
	struct dp_tcp tcp;
	struct ctl_rworker *rw;
};

static struct wslot *ws;
static unsigned n_ws;
static struct ctl_ring *ring;
static struct dp_steer steer;
static struct smtp_config smtp_defaults;

static void
on_signal(int sig)
{
	(void)sig;
	got_term = 1;
	/* dataplane-only mode stops at once */
	if (ring == NULL && dc.redis_url == NULL)
		__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: " PROG " [--config FILE] [options] [-- EAL options]\n"
"\n"
"Runs the control plane (Redis, DNS, scheduling) and DPDK worker lcores that\n"
"send the mail. Every option overrides a key of the configuration file (see\n"
"mailpump.conf.example); --set SECTION.KEY=VALUE overrides any key.\n"
"\n"
"  --config FILE          configuration file\n"
"  --set SECTION.KEY=V    override one key (repeatable)\n"
"  --check-config         validate the configuration and exit\n"
"  --redis URL            [redis] url (redis://host:port or unix:/path)\n"
"  --ns PREFIX            [redis] namespace\n"
"  --consumer NAME        [redis] consumer\n"
"  --transport dpdk|ksock [daemon] transport\n"
"  --grace DURATION       [daemon] grace (SIGTERM)\n"
"  --until-idle           [daemon] until_idle: exit when nothing is left\n"
"  --timeout DURATION     [daemon] timeout: exit 2 after this long\n"
"  --daemon-stats FILE    [daemon] stats_file (JSON counters)\n"
"  --log-level LEVEL      [daemon] log_level err|warn|info|debug\n"
"  --max-sessions N       [workers] max_sessions per worker\n"
"  --route DOMAIN=HOST[:PORT][:tls]  one [routes] entry (repeatable; an IPv6\n"
"                         HOST in brackets: [2001:db8::25]:25)\n"
"\n"
"Dataplane ([dataplane] keys):\n");
	dp_options_usage(f);
	fprintf(f, "  --help\n");
}

enum {
	O_CONFIG = DP_OPT_LAST, O_SET, O_CHECK, O_REDIS, O_NS, O_CONSUMER, O_TRANSPORT,
	O_GRACE, O_UNTIL, O_TIMEOUT, O_DSTATS, O_LOG, O_MAXS, O_ROUTE, O_HELP, O_END
};

static const struct option daemon_opts[] = {
	{ "config", required_argument, NULL, O_CONFIG },
	{ "set", required_argument, NULL, O_SET },
	{ "check-config", no_argument, NULL, O_CHECK },
	{ "redis", required_argument, NULL, O_REDIS },
	{ "ns", required_argument, NULL, O_NS },
	{ "consumer", required_argument, NULL, O_CONSUMER },
	{ "transport", required_argument, NULL, O_TRANSPORT },
	{ "grace", required_argument, NULL, O_GRACE },
	{ "until-idle", no_argument, NULL, O_UNTIL },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "daemon-stats", required_argument, NULL, O_DSTATS },
	{ "log-level", required_argument, NULL, O_LOG },
	{ "max-sessions", required_argument, NULL, O_MAXS },
	{ "route", required_argument, NULL, O_ROUTE },
	{ "help", no_argument, NULL, O_HELP },
};

struct cli {
	const char *config;
	int check;
	int control;			/* a Redis URL came from somewhere */
	struct {			/* overrides, applied after the file */
		const char *sec, *key, *val;	/* sec NULL: val is "section.key=value" */
	} over[512];
	unsigned nover;
	char ips[1024];
	char routes[CTL_DCONF_LIST_MAX][512];
	unsigned nroutes;
};

static struct cli cli;		/* large: not on the stack */

static int
set_over(struct cli *c, const char *sec, const char *key, const char *v)
{
	if (c->nover == sizeof(c->over) / sizeof(c->over[0])) {
		fprintf(stderr, PROG ": too many options\n");
		return -1;
	}
	c->over[c->nover].sec = sec;
	c->over[c->nover].key = key;
	c->over[c->nover].val = v;
	c->nover++;
	return 0;
}

/* @return 0, 1 (--help: exit 0) or -1 (usage error printed). */
static int
parse_args(int argc, char **argv, struct cli *c, int *rest)
{
	struct option opts[DP_OPT_LAST - DP_OPT_VDEV + O_END - O_CONFIG + 1];
	size_t n = 0;
	int opt;

	memcpy(opts, dp_long_options, dp_long_options_n * sizeof(opts[0]));
	n = dp_long_options_n;
	memcpy(opts + n, daemon_opts, sizeof(daemon_opts));
	n += sizeof(daemon_opts) / sizeof(daemon_opts[0]);
	memset(&opts[n], 0, sizeof(opts[0]));
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *key;

		switch (opt) {
		case O_HELP: usage(stdout); return 1;
		case O_CONFIG: c->config = optarg; c->control = 1; break;
		case O_CHECK: c->check = 1; break;
		case O_SET:
			if (strncmp(optarg, "redis.url=", 10) == 0)
				c->control = 1;
			if (set_over(c, NULL, NULL, optarg) < 0) return -1;
			break;
		case O_REDIS:
			c->control = 1;
			if (set_over(c, "redis", "url", optarg) < 0) return -1;
			break;
		case O_NS: if (set_over(c, "redis", "namespace", optarg) < 0) return -1; break;
		case O_CONSUMER: if (set_over(c, "redis", "consumer", optarg) < 0) return -1; break;
		case O_TRANSPORT: if (set_over(c, "daemon", "transport", optarg) < 0) return -1; break;
		case O_GRACE: if (set_over(c, "daemon", "grace", optarg) < 0) return -1; break;
		case O_UNTIL: if (set_over(c, "daemon", "until_idle", "yes") < 0) return -1; break;
		case O_TIMEOUT: if (set_over(c, "daemon", "timeout", optarg) < 0) return -1; break;
		case O_DSTATS: if (set_over(c, "daemon", "stats_file", optarg) < 0) return -1; break;
		case O_LOG: if (set_over(c, "daemon", "log_level", optarg) < 0) return -1; break;
		case O_MAXS: if (set_over(c, "workers", "max_sessions", optarg) < 0) return -1; break;
		case O_ROUTE:
			if (c->nroutes == CTL_DCONF_LIST_MAX ||
			    strlen(optarg) >= sizeof(c->routes[0])) {
				fprintf(stderr, PROG ": --route: too many or too long\n");
				return -1;
			}
			snprintf(c->routes[c->nroutes++], sizeof(c->routes[0]), "%s", optarg);
			break;
		default:
			key = ctl_dconf_dp_key(opt);
			if (key == NULL) {
				usage(stderr);
				return -1;
			}
			if (opt == DP_OPT_IP) {
				size_t l = strlen(c->ips);

				snprintf(c->ips + l, sizeof(c->ips) - l, "%s%s", l ? "," : "", optarg);
				if (set_over(c, "dataplane", "ip", c->ips) < 0) return -1;
			} else if (set_over(c, "dataplane", key, optarg) < 0) {
				return -1;
			}
			break;
		}
	}
	*rest = optind;
	return 0;
}

/* ------------------------------------------------------------------ */
/* TLS policy floor: a campaign asking for less is raised to [tls]    */
/* min_policy, whatever the backend                                    */
/* ------------------------------------------------------------------ */

struct floor_be {
	struct ctl_backend inner;
	enum smtp_tls_policy floor;
};

static int
floor_submit(void *be, struct ctl_order *o)
{
	struct floor_be *f = be;

	if (o->policy < f->floor)
		o->policy = f->floor;
	return f->inner.ops->submit(f->inner.be, o);
}

static int
floor_poll(void *be, int timeout_ms)
{
	struct floor_be *f = be;

	return f->inner.ops->poll(f->inner.be, timeout_ms);
}

static unsigned
floor_active(void *be)
{
	struct floor_be *f = be;

	return f->inner.ops->active(f->inner.be);
}

static const struct ctl_backend_ops floor_ops = { floor_submit, floor_poll, floor_active };

static struct ctl_sched *sched;

static int
make_sched(const struct ctl_sched_conf *sc)
{
	char err[512];

	sched = ctl_sched_new(sc, err, sizeof(err));
	if (sched == NULL) {
		fprintf(stderr, PROG ": bad configuration: %s\n", err);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* workers                                                              */
/* ------------------------------------------------------------------ */

static void
w_on_event(void *app, struct dp_worker *w, const struct utcp_event *ev)
{
	ctl_rworker_on_event(((struct wslot *)app)->rw, ev, w->now_us);
}

static int
w_poll(void *app, struct dp_worker *w, uint64_t now_us)
{
	(void)w;
	return ctl_rworker_poll(((struct wslot *)app)->rw, now_us);
}

/* The DKIM signer threads, and what submit reads of our keys. Keys were
 * loaded and checked with the configuration. */
static int
start_dkim(void)
{
	char err[512];

	if (ctl_dkim_ndomains(dc.dkim) == 0)
		return 0;
	if (ctl_dkim_start(dc.dkim, dc.dkim_threads, dc.dkim_cpus, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": bad configuration: [dkim] %s\n", err);
		return -1;
	}
	dkim_on = 1;
	ctl_dkim_publish_to(dc.dkim, dc.redis_url, dc.ns, dc.consumer);
	MP_LOG(MP_LOG_INFO, "mailpump", "event=dkim domains=%zu mode=%s threads=%u",
		ctl_dkim_ndomains(dc.dkim), ctl_dkim_mode_name(ctl_dkim_mode(dc.dkim)),
		dc.dkim_threads);
	return 0;
}

static int
setup_worker(struct dp_worker *w, void *arg)
{
	struct wslot *x = &ws[w->id];
	struct dp_tcp_app app = { w_on_event, w_poll, x };
	struct utcp_conf tc = { 0 };
	struct ctl_rworker_conf rc = { 0 };
	char err[512];
	int ret;

	(void)arg;
	tc.max_conns = dc.max_sessions + 128;
	tc.max_tw = tc.max_conns;
	tc.sndbuf = dc.tcp_sndbuf;
	tc.rcvbuf = dc.tcp_rcvbuf;
	ret = dp_tcp_attach(w, &x->tcp, &tc, &steer, &app);
	if (ret < 0) {
		fprintf(stderr, PROG ": worker %u: TCP stack: %s\n", w->id, strerror(-ret));
		return ret;
	}
	rc.stack = x->tcp.stack;
	rc.smtp = &smtp_defaults;
	rc.tls = &dc.tls;
	rc.connect_timeout_ms = (uint32_t)dc.connect_timeout_ms;
	rc.stop = &dp_stop;
	rc.dkim = dkim_on ? dc.dkim : NULL;
	x->rw = ctl_rworker_new(ring, w->id, &rc, err, sizeof(err));
	if (x->rw == NULL) {
		fprintf(stderr, PROG ": worker %u: %s\n", w->id, err);
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* counters                                                             */
/* ------------------------------------------------------------------ */

static long
rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

#define RD(x) ((unsigned long long)__atomic_load_n(&(x), __ATOMIC_RELAXED))

static void
stats_json(FILE *f, struct ctl_sched *s, const struct dp_worker *workers, unsigned n,
	double elapsed_s)
{
	const struct ctl_ring_domain *dom = NULL;
	unsigned ndom = 0;

	fprintf(f, "{\"elapsed_s\":%.3f,\"rss_kb\":%ld,\"transport\":\"%s\",", elapsed_s,
		rss_kb(), dc.transport == CTL_TRANSPORT_KSOCK ? "ksock" : "dpdk");
	fprintf(f, "\"sched\":");
	ctl_sched_stats_json(s, f);
	fprintf(f, ",\"workers\":[");
	for (unsigned i = 0; i < n; i++) {
		const struct ctl_rworker_stats *w = ctl_rworker_stats(ws[i].rw);
		const struct dp_counters *dc_ = &workers[i].cnt;
		struct usock_stats us;

		/* the engine's counters are the worker's: read, never written here */
		usock_engine_stats(ctl_rworker_engine(ws[i].rw), &us);
		fprintf(f, "%s{\"id\":%u,\"lcore\":%u,\"orders\":%llu,\"msgs\":%llu,"
			"\"delivered\":%llu,\"deferred\":%llu,\"bounced\":%llu,\"failed\":%llu,"
			"\"connect_failed\":%llu,\"render_failed\":%llu,\"ev_waits\":%llu,"
			"\"aborted\":%llu,\"ev_lost\":%llu,\"active\":%llu,\"peak_active\":%llu,\"queued\":%llu,"
			"\"open\":%llu,\"peak_open\":%llu,"
			"\"sessions\":%llu,\"connected\":%llu,\"connect_timeouts\":%llu,"
			"\"tls_ok\":%llu,\"tls_failed\":%llu,\"tls_resumed\":%llu,"
			"\"sess_bytes\":%zu,\"busy_cycles\":%llu,\"loops\":%llu,"
			"\"busy_loops\":%llu,\"idle_sleeps\":%llu,\"rx_pkts\":%llu,\"tx_pkts\":%llu}",
			i ? "," : "", i, workers[i].lcore, RD(w->orders), RD(w->msgs),
			RD(w->delivered), RD(w->deferred), RD(w->bounced), RD(w->failed),
			RD(w->connect_failed), RD(w->render_failed), RD(w->ev_waits),
			RD(w->aborted), RD(w->ev_lost), RD(w->active), RD(w->peak_active), RD(w->queued),
			RD(w->open), RD(w->peak_open),
			(unsigned long long)us.sessions, (unsigned long long)us.connected,
			(unsigned long long)us.connect_timeouts,
			(unsigned long long)us.core.tls_ok, (unsigned long long)us.core.tls_failed,
			(unsigned long long)us.core.tls_resumed, us.sess_bytes,
			RD(dc_->busy_cycles), RD(dc_->loops), RD(dc_->busy_loops),
			RD(dc_->idle_sleeps), RD(dc_->rx_pkts), RD(dc_->tx_pkts));
	}
	fprintf(f, "],\"tsc_hz\":%llu,\"domains\":{", (unsigned long long)
		(n ? rte_get_tsc_hz() : 0));
	if (ring != NULL)
		dom = ctl_ring_domains(ring, &ndom);
	for (unsigned i = 0; i < ndom; i++)
		fprintf(f, "%s\"%s\":{\"orders\":%" PRIu64 ",\"delivered\":%" PRIu64
			",\"deferred\":%" PRIu64 ",\"bounced\":%" PRIu64 ",\"failed\":%" PRIu64
			",\"tls_msgs\":%" PRIu64 ",\"plain_msgs\":%" PRIu64 "}", i ? "," : "",
			dom[i].name, dom[i].orders, dom[i].delivered, dom[i].deferred,
			dom[i].bounced, dom[i].failed, dom[i].tls_msgs, dom[i].plain_msgs);
	fprintf(f, "}}\n");
}

static void
stats_write(struct ctl_sched *s, const struct dp_worker *workers, unsigned n,
	double elapsed_s)
{
	char tmp[1024];
	FILE *f;

	if (dc.stats_file == NULL)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", dc.stats_file);
	f = fopen(tmp, "w");
	if (f == NULL)
		return;
	stats_json(f, s, workers, n, elapsed_s);
	if (fclose(f) == 0)
		rename(tmp, dc.stats_file);
}

/* ------------------------------------------------------------------ */
/* dataplane only (no Redis): ARP and ping, as before the control plane */
/* ------------------------------------------------------------------ */

static int
run_dataplane_only(const char *prog)
{
	struct dp_port port;
	struct dp_worker *workers = NULL;
	uint64_t hz, start, next_stats;
	int n, ret = 1;

	if (dp_eal_init(&dc.dp, prog) < 0) {
		fprintf(stderr, PROG ": EAL start failed: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	if (rte_lcore_count() < 2) {
		fprintf(stderr, PROG ": --lcores needs a main lcore and at least one worker\n");
		goto out_eal;
	}
	if (dp_port_init(&port, &dc.dp, rte_lcore_count() - 1) != 0)
		goto out_eal;
	n = dp_workers_start(&port, &dc.dp, &workers, NULL, NULL);
	if (n < 0) {
		fprintf(stderr, PROG ": starting workers: %s\n", strerror(-n));
		__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
		rte_eal_mp_wait_lcore();
		goto out_port;
	}
	dp_stats_telemetry_register(&port, workers, (unsigned int)n);
	DP_LOG(NOTICE, "running: port=%s workers=%d (dataplane only: no Redis URL)",
		port.name, n);
	hz = rte_get_tsc_hz();
	start = rte_rdtsc();
	next_stats = start;
	while (!__atomic_load_n(&dp_stop, __ATOMIC_RELAXED)) {
		uint64_t now = rte_rdtsc();

		if (dc.dp.stats_file[0] != '\0' && now >= next_stats) {
			if (dp_stats_write_file(dc.dp.stats_file, &port, workers,
			    (unsigned int)n) != 0)
				DP_LOG(WARNING, "stats file %s: cannot write", dc.dp.stats_file);
			next_stats = now + hz / 1000 * dc.dp.stats_interval_ms;
		}
		if (dc.dp.duration_s != 0 && now - start >= hz * dc.dp.duration_s)
			break;
		usleep(20000);
	}
	DP_LOG(NOTICE, "stopping");
	__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
	rte_eal_mp_wait_lcore();
	dp_stats_print(stdout, workers, (unsigned int)n);
	if (dc.dp.stats_file[0] != '\0')
		dp_stats_write_file(dc.dp.stats_file, &port, workers, (unsigned int)n);
	dp_workers_stop(workers, (unsigned int)n);
	ret = 0;
out_port:
	dp_port_fini(&port);
out_eal:
	rte_eal_cleanup();
	return ret;
}

/* ------------------------------------------------------------------ */
/* the control loop, shared by both transports                         */
/* ------------------------------------------------------------------ */

/* @return 0 (finished or stopped), 2 (timeout). */
static int
control_loop(struct ctl_sched *s, const struct dp_worker *workers, unsigned n,
	struct dp_port *port)
{
	int64_t start = ctl_mono_ms(), term_at = 0, abort_at = 0, next_stats = 0;
	int rc = 0;

	for (;;) {
		int64_t now = ctl_mono_ms();

		if (got_term && term_at == 0) {
			term_at = now;
			ctl_sched_stop(s);
			MP_LOG(MP_LOG_INFO, "mailpump", "event=stopping grace_ms=%" PRIu64
				" held=%u", dc.grace_ms, ctl_sched_held(s));
		}
		if (ctl_sched_finished(s, dc.until_idle))
			break;
		if (term_at != 0 && abort_at == 0 && now - term_at >= (int64_t)dc.grace_ms) {
			MP_LOG(MP_LOG_WARN, "mailpump", "event=grace_expired held=%u",
				ctl_sched_held(s));
			if (ring == NULL)
				break;	/* ksock: batches stay pending for another consumer */
			ctl_ring_abort(ring);
			abort_at = now;
		}
		if (abort_at != 0 && now - abort_at >= (int64_t)dc.abort_wait_ms) {
			MP_LOG(MP_LOG_WARN, "mailpump", "event=abort_wait_expired held=%u",
				ctl_sched_held(s));
			break;
		}
		if (dc.timeout_ms > 0 && term_at == 0 && now - start > (int64_t)dc.timeout_ms) {
			fprintf(stderr, PROG ": timeout after %" PRIu64 " ms\n", dc.timeout_ms);
			rc = 2;
			got_term = 1;	/* stop the normal way, then exit 2 */
		}
		ctl_sched_step(s, 50);
		if (now >= next_stats) {
			stats_write(s, workers, n, (double)(now - start) / 1000.0);
			if (port != NULL && dc.dp.stats_file[0] != '\0')
				dp_stats_write_file(dc.dp.stats_file, port, workers, n);
			next_stats = now + (int64_t)dc.stats_interval_ms;
		}
	}
	stats_write(s, workers, n, (double)(ctl_mono_ms() - start) / 1000.0);
	return rc;
}

int
main(int argc, char **argv)
{
	struct ctl_conf *cf = NULL;
	struct ctl_sched_conf sc = { 0 };
	struct ctl_dns_conf dnc = { 0 };
	struct ctl_dns *dns = NULL;
	struct ctl_shape *shape = NULL;
	struct ctl_sched *s = NULL;
	struct ctl_ksock *k = NULL;
	struct floor_be fb;
	struct ctl_backend be;
	struct dp_port port;
	struct dp_worker *workers = NULL;
	char err[1024], consumer[160], host[64];
	int rest, rc, ret = 1, n = 0, port_up = 0, eal_up = 0, floor_pol = 0;
	static const char *const pols[] = { "none", "opportunistic", "required", "verify", NULL };

	/* before anything of OpenSSL allocates: the DKIM keys load with
	 * the configuration */
	if (tls_alloc_init() < 0)
		fprintf(stderr, PROG ": warning: OpenSSL allocator not set\n");
	ctl_dconf_defaults(&dc);
	rc = parse_args(argc, argv, &cli, &rest);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	cf = cli.config ? ctl_conf_load(cli.config, err, sizeof(err)) : ctl_conf_new();
	if (cf == NULL) {
		fprintf(stderr, PROG ": bad configuration: %s\n", err);
		return 2;
	}
	/* the command line wins over the file */
	for (unsigned i = 0; i < cli.nover; i++) {
		int r = cli.over[i].sec == NULL ?
			ctl_conf_set_arg(cf, cli.over[i].val, err, sizeof(err)) :
			ctl_conf_set(cf, cli.over[i].sec, cli.over[i].key, cli.over[i].val);

		if (r < 0) {
			if (r == -ENOMEM)
				snprintf(err, sizeof(err), "out of memory");
			fprintf(stderr, PROG ": bad configuration: --set %s: %s\n",
				cli.over[i].val, err);
			ret = 2;
			goto out_conf;
		}
	}
	for (unsigned i = 0; i < cli.nroutes; i++) {
		char *eq = strchr(cli.routes[i], '=');

		if (eq == NULL) {
			fprintf(stderr, PROG ": --route %s: want DOMAIN=HOST[:PORT][:tls]\n",
				cli.routes[i]);
			goto out_conf;
		}
		*eq = '\0';
		if (ctl_conf_set(cf, "routes", cli.routes[i], eq + 1) < 0)
			goto out_conf;
	}
	if (ctl_conf_get_enum(cf, "tls", "min_policy", pols, 0, &floor_pol, err,
	    sizeof(err)) < 0 || ctl_dconf_load(&dc, cf, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": bad configuration: %s\n", err);
		ret = 2;
		goto out_conf;
	}
	dc.dp.eal_argc = argc - rest;
	dc.dp.eal_argv = argv + rest;
	if (dc.log_level >= 0) {
		mp_log_set_level(dc.log_level);
		rte_log_set_global_level(dc.log_level >= MP_LOG_DEBUG ? RTE_LOG_DEBUG :
			dc.log_level >= MP_LOG_INFO ? RTE_LOG_INFO : RTE_LOG_NOTICE);
	}
	if (dc.redis_url == NULL && cli.control) {
		fprintf(stderr, PROG ": bad configuration: [redis] url: required\n");
		ret = 2;
		goto out_conf;
	}
	if (dc.transport == CTL_TRANSPORT_DPDK || dc.redis_url == NULL) {
		if (dp_conf_check(&dc.dp, err, sizeof(err)) != 0) {
			fprintf(stderr, PROG ": bad configuration: [dataplane] %s\n", err);
			ret = 2;
			goto out_conf;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (dc.redis_url == NULL) {
		if (cli.check) {
			printf("configuration ok (dataplane only)\n");
			ret = 0;
			goto out_conf;
		}
		ret = run_dataplane_only(argv[0]);
		goto out_conf;
	}

	/* control plane objects (no connection yet) */
	smtp_config_defaults(&smtp_defaults);
	smtp_defaults.helo_name = dc.helo;
	if (dc.command_timeout_ms > 0) {
		uint32_t t = (uint32_t)dc.command_timeout_ms;

		smtp_defaults.t_greeting = smtp_defaults.t_cmd = smtp_defaults.t_tls = t;
		smtp_defaults.t_mail = smtp_defaults.t_rcpt = smtp_defaults.t_data_init = t;
		smtp_defaults.t_data_block = smtp_defaults.t_data_term = t;
	}
	dnc.servers = dc.dns_servers;
	/* kernel sockets speak IPv6; the DPDK stack (utcp) is IPv4-only, so
	 * there an IPv6-only MX host defers with its reason */
	dnc.ipv6 = dc.transport == CTL_TRANSPORT_KSOCK;
	dns = ctl_dns_new(&dnc, err, sizeof(err));
	if (dns == NULL) {
		fprintf(stderr, PROG ": bad configuration: [dns] servers: %s\n", err);
		ret = 2;
		goto out;
	}
	for (unsigned i = 0; i < dc.n_routes; i++)
		if (ctl_dns_route_parse(dns, dc.routes[i], err, sizeof(err)) < 0) {
			fprintf(stderr, PROG ": bad configuration: [routes] %s: %s\n",
				dc.routes[i], err);
			ret = 2;
			goto out;
		}
	shape = ctl_shape_new(&dc.shape);
	if (shape == NULL) {
		fprintf(stderr, PROG ": bad configuration: [shaping]: inconsistent limits\n");
		ret = 2;
		goto out;
	}
	for (unsigned i = 0; i < dc.n_shape_over; i++)
		if (ctl_shape_override_add(shape, dc.shape_over[i], err, sizeof(err)) < 0) {
			fprintf(stderr, PROG ": bad configuration: [shaping.domains] %s: %s\n",
				dc.shape_over[i], err);
			ret = 2;
			goto out;
		}
	if (cli.check) {
		printf("configuration ok\n");
		ret = 0;
		goto out;
	}
	if (dc.consumer == NULL) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "host");
		host[sizeof(host) - 1] = '\0';
		snprintf(consumer, sizeof(consumer), "%s-%d", host, (int)getpid());
		dc.consumer = consumer;
	}
	sc.redis_url = dc.redis_url;
	sc.ns = dc.ns;
	sc.consumer = dc.consumer;
	sc.min_idle_ms = dc.min_idle_ms;
	sc.max_batches = dc.batches;
	sc.dead_maxlen = dc.dead_maxlen;
	sc.events_maxlen = dc.events_maxlen;
	sc.events_max_age_ms = dc.events_max_age_ms;
	sc.dns = dns;
	sc.shape = shape;
	sc.retry = dc.retry;
	sc.bounce = dc.bounce;
	sc.bounce_final_mask = dc.bounce_final_mask;
	sc.sender_refusal_fails = dc.sender_refusal_fails;
	sc.dkim = dc.dkim;
	/* a scheduler that would not start fails here, before the NIC; the
	 * real one is made once the number of workers is known */
	if (make_sched(&sc) < 0) {
		ret = 2;
		goto out;
	}
	ctl_sched_free(sched);
	sched = NULL;
	if (dc.transport == CTL_TRANSPORT_KSOCK) {
		struct ctl_ksock_conf kc = { 0 };

		sc.backend_slots = dc.max_sessions;
		if (make_sched(&sc) < 0)
			goto out;
		s = sched;
		kc.helo_name = dc.helo;
		kc.tls = &dc.tls;
		kc.connect_timeout_ms = (uint32_t)dc.connect_timeout_ms;
		kc.cmd_timeout_ms = (uint32_t)dc.command_timeout_ms;
		kc.max_sessions = dc.max_sessions;
		kc.source = dc.source;
		kc.source6 = dc.source6;
		if (start_dkim() < 0)
			goto out;
		kc.dkim = dkim_on ? dc.dkim : NULL;
		k = ctl_ksock_new(&kc, ctl_sched_sink(s), err, sizeof(err));
		if (k == NULL) {
			fprintf(stderr, PROG ": ksock: %s\n", err);
			goto out;
		}
		fb.inner = ctl_ksock_backend(k);
	} else {
		struct ctl_ring_conf rcf = { 0 };

		/* utcp binds to [dataplane] ip and speaks no IPv6 */
		if (dc.source.s_addr != 0 || !IN6_IS_ADDR_UNSPECIFIED(&dc.source6))
			MP_LOG(MP_LOG_WARN, "mailpump", "event=config_unused keys=[smtp]source,"
				"source6 reason=\"transport=dpdk sends from [dataplane] ip, "
				"IPv4 only\"");

		if (dp_eal_init(&dc.dp, argv[0]) < 0) {
			fprintf(stderr, PROG ": EAL start failed: %s\n", rte_strerror(rte_errno));
			goto out;
		}
		eal_up = 1;
		/* threads made now share the main lcore's CPU, not a worker's */
		if (start_dkim() < 0)
			goto out;
		if (rte_lcore_count() < 2) {
			fprintf(stderr, PROG ": [dataplane] lcores: needs a main lcore and at "
				"least one worker\n");
			goto out;
		}
		n_ws = rte_lcore_count() - 1;
		if (dp_port_init(&port, &dc.dp, n_ws) != 0) {
			fprintf(stderr, PROG ": port start failed\n");
			goto out;
		}
		port_up = 1;
		if (dp_steer_init(&steer, &port, n_ws) != 0)
			goto out;
		/* every worker's sessions can be busy at once */
		sc.backend_slots = dc.max_sessions * n_ws;
		if (make_sched(&sc) < 0)
			goto out;
		s = sched;
		rcf.n_workers = n_ws;
		rcf.max_sessions = dc.max_sessions;
		rcf.socket_id = (int)rte_socket_id();
		ring = ctl_ring_new(&rcf, ctl_sched_sink(s), err, sizeof(err));
		ws = calloc(n_ws, sizeof(*ws));
		if (ring == NULL || ws == NULL) {
			fprintf(stderr, PROG ": %s\n", ring == NULL ? err : "out of memory");
			goto out;
		}
		fb.inner = ctl_ring_backend(ring);
	}
	fb.floor = (enum smtp_tls_policy)floor_pol;
	be.ops = &floor_ops;
	be.be = &fb;
	ctl_sched_set_backend(s, &be);
	if (ring != NULL) {
		n = dp_workers_start(&port, &dc.dp, &workers, setup_worker, NULL);
		if (n < 0) {
			fprintf(stderr, PROG ": starting workers: %s\n", strerror(-n));
			__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
			rte_eal_mp_wait_lcore();
			n = (int)n_ws;
			goto out_workers;
		}
		dp_stats_telemetry_register(&port, workers, (unsigned)n);
		DP_LOG(NOTICE, "running: port=%s workers=%d max_sessions=%u consumer=%s",
			port.name, n, dc.max_sessions, dc.consumer);
	} else {
		MP_LOG(MP_LOG_INFO, "mailpump", "event=running transport=ksock consumer=%s",
			dc.consumer);
	}
	ret = control_loop(s, workers, (unsigned)(n > 0 ? n : 0), port_up ? &port : NULL);
	if (ring != NULL) {
		DP_LOG(NOTICE, "stopping");
		__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
		rte_eal_mp_wait_lcore();
		dp_stats_print(stdout, workers, (unsigned)n);
	}
out_workers:
	/* rings first (they read the workers' records), then the workers */
	ctl_ring_free(ring);
	ring = NULL;
	for (unsigned i = 0; ws != NULL && i < n_ws; i++) {
		ctl_rworker_free(ws[i].rw);
		if (ws[i].tcp.stack != NULL)
			dp_tcp_detach(&ws[i].tcp);
	}
	if (workers != NULL)
		dp_workers_stop(workers, (unsigned)n);
out:
	ctl_ksock_free(k);
	ctl_dns_free(dns);
	ctl_sched_free(s);
	ctl_shape_free(shape);
	free(ws);
	if (port_up)
		dp_port_fini(&port);
	if (eal_up)
		rte_eal_cleanup();
out_conf:
	ctl_dconf_fini(&dc);
	ctl_conf_free(cf);
	fflush(stdout);
	return ret;
}
