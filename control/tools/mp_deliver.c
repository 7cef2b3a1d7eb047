/*
 * mp-deliver: the control plane's delivery side in one process, with the
 * kernel-socket engine as its backend. Takes batches from Redis (consumer
 * group), delivers them, writes the results back (section F of the
 * README). Runs until SIGTERM/SIGINT, or with --until-idle until nothing
 * is left anywhere (no pending entry, no retry). On SIGTERM it stops
 * taking batches and starting sessions, lets the sessions in flight finish
 * within --grace seconds, writes their results and exits 0; batches not
 * finished stay pending for another consumer to claim.
 *
 * Usage: mp-deliver --redis URL [options], see usage().
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_bounce.h"
#include "ctl_dkim.h"
#include "ctl_dns.h"
#include "ctl_ksock.h"
#include "ctl_redis.h"
#include "ctl_retry.h"
#include "ctl_sched.h"
#include "ctl_shape.h"
#include "mp_log.h"
#include "smtp.h"
#include "tls.h"

static volatile sig_atomic_t got_term;

static void
on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: mp-deliver --redis URL [options]\n"
"  --ns PREFIX            key namespace (default mp:)\n"
"  --consumer NAME        consumer name in group mailpump (default host-pid)\n"
"  --route SPEC           static routes \"domain=host[:port][:tls],...\" (repeatable;\n"
"                         \"*\" = everything, \".dom\" = subdomains; an IPv6 host\n"
"                         in brackets: \"dom=[2001:db8::25]:2525\")\n"
"  --dns SERVERS          DNS servers \"ip[:port],...\" (default resolv.conf)\n"
"  --max-conns N --msgs-per-conn N --rcpt-per-txn N --rate R --burst N\n"
"                         default shaping per destination\n"
"  --shape SPEC           per-domain override \"dom:max_conns=2,rate=5\" (repeatable)\n"
"  --retry-base S --retry-factor PCT --retry-cap S --retry-jitter PCT\n"
"  --min-idle MS          XAUTOCLAIM min-idle (default 60000)\n"
"  --batches N            batches held at once (default 32)\n"
"  --events-max-age S     events entries older than S seconds trimmed\n"
"                         (default 604800: 7 days)\n"
"  --helo NAME --ca FILE --tls-min 1.2|1.3\n"
"  --tls-min-opportunistic 1.0|1.1|1.2|1.3  floor for opportunistic TLS\n"
"  --bounce-rules FILE    own bounce classification rules, read before the\n"
"                         shipped ones (format: README, Bounce classes)\n"
"  --sender-refusal defer|fail  a 5xx that is not the address's problem\n"
"                         (policy, reputation, auth...): retried (default)\n"
"                         or failed; never bounced\n"
"                         (default 1.2; lower encrypts with old servers)\n"
"                         (--helo: this host's FQDN, default its own name;\n"
"                         refused unless fully qualified)\n"
"  --dkim \"DOMAIN=SELECTOR FILE[, SELECTOR FILE]\"  DKIM keys of a signing\n"
"                         domain (repeatable; README, DKIM)\n"
"  --dkim-mode optional|required  a campaign without a key: unsigned with a\n"
"                         warning (default) or failed\n"
"  --dkim-threads N --dkim-cpus LIST  signer threads (default 1, unpinned)\n"
"  --source ADDR          IPv4 sessions bind to this address (default: the\n"
"                         kernel picks by its routes)\n"
"  --source6 ADDR         IPv6 sessions bind to this address (e.g. 2001:db8::25,\n"
"                         no brackets); both must be this host's\n"
"  --connect-timeout MS --smtp-timeout MS\n"
"  --until-idle           exit 0 when nothing is left to do\n"
"  --grace S              SIGTERM: seconds for sessions in flight (default 30)\n"
"  --timeout S            give up after S seconds (exit 2)\n"
"  --stats                print a JSON line of counters on exit\n"
"  --log-level LEVEL      err|warn|info|debug\n");
}

static int
parse_u(const char *s, unsigned long long *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 10);
	return (errno != 0 || end == s || *end != '\0') ? -EINVAL : 0;
}

int
main(int argc, char **argv)
{
	enum { O_NS = 256, O_CONSUMER, O_ROUTE, O_DNS, O_MAXC, O_MPC, O_RPT, O_RATE,
		O_BURST, O_SHAPE, O_RBASE, O_RFACT, O_RCAP, O_RJIT, O_IDLE, O_BATCHES, O_EVAGE,
		O_HELO, O_CA, O_TLSMIN, O_TLSOPP, O_BRULES, O_REFUSAL, O_CTO, O_STO, O_UNTIL, O_GRACE, O_TIMEOUT,
		O_STATS, O_LOG, O_REDIS, O_HELP, O_DKIM, O_DKIM_MODE, O_DKIM_THR, O_DKIM_CPUS,
		O_SOURCE, O_SOURCE6 };
	static const struct option opts[] = {
		{ "redis", required_argument, 0, O_REDIS },
		{ "ns", required_argument, 0, O_NS },
		{ "consumer", required_argument, 0, O_CONSUMER },
		{ "route", required_argument, 0, O_ROUTE },
		{ "dns", required_argument, 0, O_DNS },
		{ "max-conns", required_argument, 0, O_MAXC },
		{ "msgs-per-conn", required_argument, 0, O_MPC },
		{ "rcpt-per-txn", required_argument, 0, O_RPT },
		{ "rate", required_argument, 0, O_RATE },
		{ "burst", required_argument, 0, O_BURST },
		{ "shape", required_argument, 0, O_SHAPE },
		{ "retry-base", required_argument, 0, O_RBASE },
		{ "retry-factor", required_argument, 0, O_RFACT },
		{ "retry-cap", required_argument, 0, O_RCAP },
		{ "retry-jitter", required_argument, 0, O_RJIT },
		{ "min-idle", required_argument, 0, O_IDLE },
		{ "batches", required_argument, 0, O_BATCHES },
		{ "events-max-age", required_argument, 0, O_EVAGE },
		{ "helo", required_argument, 0, O_HELO },
		{ "ca", required_argument, 0, O_CA },
		{ "tls-min", required_argument, 0, O_TLSMIN },
		{ "tls-min-opportunistic", required_argument, 0, O_TLSOPP },
		{ "bounce-rules", required_argument, 0, O_BRULES },
		{ "sender-refusal", required_argument, 0, O_REFUSAL },
		{ "connect-timeout", required_argument, 0, O_CTO },
		{ "smtp-timeout", required_argument, 0, O_STO },
		{ "until-idle", no_argument, 0, O_UNTIL },
		{ "grace", required_argument, 0, O_GRACE },
		{ "timeout", required_argument, 0, O_TIMEOUT },
		{ "stats", no_argument, 0, O_STATS },
		{ "log-level", required_argument, 0, O_LOG },
		{ "help", no_argument, 0, O_HELP },
		{ "dkim", required_argument, 0, O_DKIM },
		{ "dkim-mode", required_argument, 0, O_DKIM_MODE },
		{ "dkim-threads", required_argument, 0, O_DKIM_THR },
		{ "dkim-cpus", required_argument, 0, O_DKIM_CPUS },
		{ "source", required_argument, 0, O_SOURCE },
		{ "source6", required_argument, 0, O_SOURCE6 },
		{ 0, 0, 0, 0 },
	};
	struct ctl_sched_conf sc = { 0 };
	struct ctl_dns_conf dc = { 0 };
	struct ctl_shape_conf shc = { 0 };
	struct tls_ctx_conf tc = { 0 };
	struct ctl_ksock_conf kc = { 0 };
	const char *routes[64], *shapes[64];
	unsigned nroutes = 0, nshapes = 0;
	unsigned long long v;
	char consumer[128], host[64], helo[256], err[512];
	const char *bounce_rules = NULL;
	struct ctl_bounce *bounce = NULL;
	struct ctl_dkim *dkim = NULL;
	enum ctl_dkim_mode dkim_mode = CTL_DKIM_OPTIONAL;
	const char *dkim_cpus = NULL;
	unsigned long long dkim_threads = 1;
	int until_idle = 0, stats = 0, c, rc = 0;
	unsigned long long grace_s = 30, timeout_s = 0;
	struct ctl_dns *dns = NULL;
	struct ctl_shape *shape = NULL;
	struct ctl_sched *s = NULL;
	struct ctl_ksock *k = NULL;
	struct ctl_backend be;
	int64_t start, term_at = 0;

	/* before anything of OpenSSL allocates (--dkim loads keys) */
	if (tls_alloc_init() < 0)
		fprintf(stderr, "mp-deliver: warning: OpenSSL allocator not set\n");
	ctl_retry_conf_init(&sc.retry);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case O_REDIS: sc.redis_url = optarg; break;
		case O_NS: sc.ns = optarg; break;
		case O_CONSUMER: sc.consumer = optarg; break;
		case O_ROUTE:
			if (nroutes == 64) bad = 1; else routes[nroutes++] = optarg;
			break;
		case O_DNS: dc.servers = optarg; break;
		case O_MAXC: bad = parse_u(optarg, &v) || v == 0; shc.defaults.max_conns = (unsigned)v; break;
		case O_MPC: bad = parse_u(optarg, &v) || v == 0; shc.defaults.msgs_per_conn = (unsigned)v; break;
		case O_RPT: bad = parse_u(optarg, &v) || v == 0; shc.defaults.rcpts_per_txn = (unsigned)v; break;
		case O_RATE: shc.defaults.rate = strtod(optarg, NULL); bad = shc.defaults.rate < 0; break;
		case O_BURST: bad = parse_u(optarg, &v) || v == 0; shc.defaults.burst = (unsigned)v; break;
		case O_SHAPE:
			if (nshapes == 64) bad = 1; else shapes[nshapes++] = optarg;
			break;
		case O_RBASE: bad = parse_u(optarg, &v); sc.retry.base_ms = v * 1000; break;
		case O_RFACT: bad = parse_u(optarg, &v); sc.retry.factor_pct = (unsigned)v; break;
		case O_RCAP: bad = parse_u(optarg, &v); sc.retry.cap_ms = v * 1000; break;
		case O_RJIT: bad = parse_u(optarg, &v) || v > 100; sc.retry.jitter_pct = (unsigned)v; break;
		case O_IDLE: bad = parse_u(optarg, &v) || v == 0; sc.min_idle_ms = v; break;
		case O_BATCHES: bad = parse_u(optarg, &v) || v == 0; sc.max_batches = (unsigned)v; break;
		case O_EVAGE: bad = parse_u(optarg, &v) || v == 0 || v > 10ull * 365 * 86400;
			sc.events_max_age_ms = v * 1000; break;
		case O_HELO: kc.helo_name = optarg; break;
		case O_CA: tc.ca_file = optarg; break;
		case O_TLSMIN:
			if (strcmp(optarg, "1.2") == 0) tc.min_version = TLS_VERSION_1_2;
			else if (strcmp(optarg, "1.3") == 0) tc.min_version = TLS_VERSION_1_3;
			else bad = 1;
			break;
		case O_TLSOPP:
			rc = tls_version_parse(optarg);
			if (rc < 0)
				bad = 1;
			else
				tc.opportunistic_min_version = rc;
			rc = 0;
			break;
		case O_BRULES: bounce_rules = optarg; break;
		case O_DKIM: {
			const char *eq = strchr(optarg, '=');
			char dom[256];

			if (dkim == NULL && (dkim = ctl_dkim_new()) == NULL)
				return 1;
			if (eq == NULL || eq == optarg || (size_t)(eq - optarg) >= sizeof(dom)) {
				fprintf(stderr, "mp-deliver: --dkim %s: expected DOMAIN=SELECTOR FILE\n",
					optarg);
				ctl_dkim_free(dkim);
				return 1;
			}
			snprintf(dom, sizeof(dom), "%.*s", (int)(eq - optarg), optarg);
			if (ctl_dkim_add_keys(dkim, dom, eq + 1, err, sizeof(err)) < 0) {
				fprintf(stderr, "mp-deliver: --dkim %s: %s\n", dom, err);
				ctl_dkim_free(dkim);
				return 1;
			}
			break;
		}
		case O_DKIM_MODE: bad = ctl_dkim_mode_parse(optarg, &dkim_mode); break;
		case O_DKIM_THR: bad = parse_u(optarg, &dkim_threads) || dkim_threads == 0 ||
			dkim_threads > 64; break;
		case O_DKIM_CPUS: dkim_cpus = optarg; break;
		case O_REFUSAL:
			if (strcmp(optarg, "defer") == 0) sc.sender_refusal_fails = 0;
			else if (strcmp(optarg, "fail") == 0) sc.sender_refusal_fails = 1;
			else bad = 1;
			break;
		case O_SOURCE:
		case O_SOURCE6:
			if (ctl_ksock_source_parse(optarg, c == O_SOURCE ? AF_INET : AF_INET6,
			    c == O_SOURCE ? (void *)&kc.source : (void *)&kc.source6, err,
			    sizeof(err)) < 0) {
				fprintf(stderr, "mp-deliver: --%s: %s\n", c == O_SOURCE ?
					"source" : "source6", err);
				return 1;
			}
			break;
		case O_CTO: bad = parse_u(optarg, &v); kc.connect_timeout_ms = (uint32_t)v; break;
		case O_STO: bad = parse_u(optarg, &v); kc.cmd_timeout_ms = (uint32_t)v; break;
		case O_UNTIL: until_idle = 1; break;
		case O_GRACE: bad = parse_u(optarg, &grace_s); break;
		case O_TIMEOUT: bad = parse_u(optarg, &timeout_s); break;
		case O_STATS: stats = 1; break;
		case O_LOG: {
			int l = mp_log_level_parse(optarg);

			if (l < 0) bad = 1; else mp_log_set_level(l);
			break;
		}
		case O_HELP: case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
		if (bad) {
			fprintf(stderr, "mp-deliver: bad option value: %s\n",
				optarg ? optarg : "");
			return 1;
		}
	}
	if (sc.redis_url == NULL || optind != argc) {
		usage(stderr);
		return 1;
	}
	if (sc.consumer == NULL) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "host");
		host[sizeof(host) - 1] = '\0';
		snprintf(consumer, sizeof(consumer), "%s-%d", host, (int)getpid());
		sc.consumer = consumer;
	}
	if (ctl_retry_conf_check(&sc.retry) < 0) {
		fprintf(stderr, "mp-deliver: bad retry settings (base >= 1 s, factor >= 100, cap >= base)\n");
		return 1;
	}
	if (kc.helo_name == NULL && smtp_helo_name_default(helo, sizeof(helo)) == 0)
		kc.helo_name = helo;
	if (smtp_helo_name_check(kc.helo_name, err, sizeof(err)) < 0) {
		fprintf(stderr, "mp-deliver: --helo: %s; give this host's fully qualified name, "
			"the PTR name of its sending address\n", err);
		return 1;
	}
	if (bounce_rules != NULL) {
		bounce = ctl_bounce_new();
		if (bounce == NULL || ctl_bounce_load_file(bounce, bounce_rules, err, sizeof(err)) < 0 ||
		    ctl_bounce_load_text(bounce, ctl_bounce_builtin, "rules.conf", err,
			sizeof(err)) < 0) {
			fprintf(stderr, "mp-deliver: --bounce-rules: %s\n", err);
			ctl_bounce_free(bounce);
			return 1;
		}
		sc.bounce = bounce;
	}
	if (dkim_mode == CTL_DKIM_REQUIRED && dkim == NULL) {
		fprintf(stderr, "mp-deliver: --dkim-mode required: no --dkim key given\n");
		return 1;
	}
	if (dkim != NULL) {
		ctl_dkim_set_mode(dkim, dkim_mode);
		if (ctl_dkim_start(dkim, (unsigned)dkim_threads, dkim_cpus, err, sizeof(err)) < 0) {
			fprintf(stderr, "mp-deliver: --dkim-threads/--dkim-cpus: %s\n", err);
			ctl_dkim_free(dkim);
			return 1;
		}
		sc.dkim = dkim;
		kc.dkim = dkim;
	}
	dc.ipv6 = 1;	/* kernel sockets: an MX host with only AAAA records is reachable */
	dns = ctl_dns_new(&dc, err, sizeof(err));
	if (dns == NULL) {
		fprintf(stderr, "mp-deliver: dns: %s\n", err);
		return 1;
	}
	for (unsigned i = 0; i < nroutes; i++) {
		if (ctl_dns_route_parse(dns, routes[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "mp-deliver: --route: %s\n", err);
			rc = 1;
			goto out;
		}
	}
	shape = ctl_shape_new(&shc);
	if (shape == NULL) {
		fprintf(stderr, "mp-deliver: bad shaping defaults\n");
		rc = 1;
		goto out;
	}
	for (unsigned i = 0; i < nshapes; i++) {
		if (ctl_shape_override_add(shape, shapes[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "mp-deliver: --shape: %s\n", err);
			rc = 1;
			goto out;
		}
	}
	sc.dns = dns;
	sc.shape = shape;
	s = ctl_sched_new(&sc, err, sizeof(err));
	if (s == NULL) {
		fprintf(stderr, "mp-deliver: %s\n", err);
		rc = 1;
		goto out;
	}
	if (dkim != NULL)
		ctl_dkim_publish_to(dkim, sc.redis_url, sc.ns, sc.consumer);
	kc.tls = &tc;
	k = ctl_ksock_new(&kc, ctl_sched_sink(s), err, sizeof(err));
	if (k == NULL) {
		fprintf(stderr, "mp-deliver: ksock: %s\n", err);
		rc = 1;
		goto out;
	}
	be = ctl_ksock_backend(k);
	ctl_sched_set_backend(s, &be);

	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	start = ctl_mono_ms();
	for (;;) {
		int64_t now = ctl_mono_ms();

		if (got_term && term_at == 0) {
			term_at = now;
			ctl_sched_stop(s);
			MP_LOG(MP_LOG_INFO, "mp_deliver", "event=stopping grace_s=%llu", grace_s);
		}
		if (ctl_sched_finished(s, until_idle))
			break;
		if (term_at != 0 && now - term_at > (int64_t)grace_s * 1000) {
			MP_LOG(MP_LOG_WARN, "mp_deliver", "event=grace_expired held=%u",
				ctl_sched_held(s));
			break;
		}
		if (timeout_s > 0 && now - start > (int64_t)timeout_s * 1000) {
			fprintf(stderr, "mp-deliver: timeout after %llu s\n", timeout_s);
			rc = 2;
			break;
		}
		ctl_sched_step(s, 100);
	}
	if (stats) {
		ctl_sched_stats_json(s, stdout);
		printf("\n");
		if (dkim != NULL) {
			struct ctl_dkim_stats ds;

			ctl_dkim_stats(dkim, &ds);
			printf("{\"dkim\":{\"signed\":%llu,\"failed\":%llu,\"skipped\":%llu,"
				"\"threads\":%u,\"signer_cpu_ms\":%.3f}}\n", ds.signed_ok,
				ds.sign_failed, ds.skipped, ds.threads, (double)ds.cpu_ns / 1e6);
		}
		fflush(stdout);
	}
out:
	/* engine first (its orders), then the resolver (its last callbacks
	 * write into the scheduler's domains), then the scheduler */
	ctl_ksock_free(k);
	ctl_dns_free(dns);
	ctl_sched_free(s);
	ctl_bounce_free(bounce);
	ctl_dkim_free(dkim);
	ctl_shape_free(shape);
	return rc;
}
