/*
 * Destination resolution (ctl_dns) against a real DNS server: dnsmasq on
 * 127.0.0.1 at a random free port, serving a test zone made of --mx-host
 * and --host-record options (--local=/test/ makes every other name under
 * .test NXDOMAIN; names outside .test are REFUSED since dnsmasq has no
 * upstream). Proves: MX preference order with hosts lacking addresses
 * dropped, several MX with addresses as a fallback list and a seeded tie
 * order, implicit MX, null MX, NXDOMAIN, no address (permanent), REFUSED
 * and a silent server (timeout) and a closed port as TEMPFAIL, TTL-bound
 * caching (second lookup answered without a query, checked both with our
 * counters and in dnsmasq's query log; expiry on a controlled clock),
 * negative caching, coalescing of concurrent requests, the cache size
 * bound, static routes overriding DNS (exact, ".parent", "*", IP and
 * host-name targets), callbacks exactly once (also at ctl_dns_free()), and
 * the caller-owned poll loop (ctl_dns_fds + ctl_dns_process). A scripted
 * responder adds what dnsmasq does not send: SERVFAIL and SOA-carrying
 * negative answers (negative TTL from the SOA minimum).
 * dnsmasq is stopped by PID on every exit. Skips (77) without dnsmasq.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl_dns.h"
#include "mp_test.h"

#define TTL 60

static pid_t guard_pid = -1;        /* our guardian process, parent of dnsmasq */
static int guard_fd = -1;           /* its pipe: closing it stops dnsmasq */
static char tmpdir[64] = "";
static char logpath[128];
static int port;
static char servers[64];
static uint64_t fake_ms = 1000000;

static uint64_t
fake_clock(void *arg)
{
	(void)arg;
	return fake_ms;
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Stop dnsmasq: the guardian sees the pipe close, kills it by PID, removes
 * the log and the directory, and exits. */
static void
cleanup(void)
{
	if (guard_fd >= 0) {
		close(guard_fd);
		guard_fd = -1;
	}
	if (guard_pid > 0) {
		waitpid(guard_pid, NULL, 0);
		guard_pid = -1;
	}
	if (tmpdir[0] != '\0') {
		unlink(logpath);
		rmdir(tmpdir);
		tmpdir[0] = '\0';
	}
}

static void
on_signal(int sig)
{
	if (guard_fd >= 0)
		close(guard_fd);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both). */
static int
free_port(void)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		socklen_t l = sizeof(a);
		int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
		int p = -1;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (u >= 0 && bind(u, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		    getsockname(u, (struct sockaddr *)&a, &l) == 0 && t >= 0 &&
		    bind(t, (struct sockaddr *)&a, sizeof(a)) == 0)
			p = ntohs(a.sin_port);
		close(u);
		close(t);
		if (p > 0)
			return p;
	}
	return -1;
}

/*
 * Run dnsmasq under a guardian: a forked copy of this test (no exec) that
 * starts dnsmasq, then waits on a pipe from the test. However the test
 * ends (exit, crash, sanitizer abort, SIGKILL), the pipe closes and the
 * guardian stops dnsmasq by its PID and removes the temporary files. The
 * guardian also exits when dnsmasq dies, which the test notices.
 * @return the guardian's PID, or -1
 */
static pid_t
dnsmasq_guarded(char *const *argv)
{
	int p[2];
	pid_t g;

	if (pipe(p) < 0)
		return -1;
	g = fork();
	if (g < 0)
		return -1;
	if (g == 0) {
		pid_t d;
		int st = 0;

		close(p[1]);
		signal(SIGTERM, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		d = fork();
		if (d == 0) {
			int fd = open("/dev/null", O_RDWR);

			close(p[0]);
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			if (fd >= 0) {
				dup2(fd, 0);
				dup2(fd, 1);
				close(fd);
			}
			execvp(argv[0], argv);
			_exit(127);
		}
		for (;;) {
			struct pollfd pf = { .fd = p[0], .events = POLLIN };

			if (d < 0 || waitpid(d, &st, WNOHANG) == d) {
				d = -1;
				break;
			}
			if (poll(&pf, 1, 200) > 0)
				break;      /* EOF: the test is done (it never writes) */
		}
		if (d > 0) {
			kill(d, SIGTERM);
			waitpid(d, &st, 0);
		}
		unlink(logpath);
		rmdir(tmpdir);
		_exit(0);
	}
	close(p[0]);
	guard_fd = p[1];
	return g;
}

static pid_t
dnsmasq_start(void)
{
	static char a_port[32], a_log[160];
	const char *argv[] = {
		"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--pid-file=",
		"--listen-address=127.0.0.1", "--bind-interfaces", a_port,
		"--local=/test/", "--local-ttl=60", "--log-queries", a_log,
		/* preference order: given out of order; mx3 has no address */
		"--mx-host=pref.test,mx3.pref.test,30",
		"--mx-host=pref.test,mx1.pref.test,10",
		"--mx-host=pref.test,mx2.pref.test,20",
		"--host-record=mx1.pref.test,127.0.0.11",
		"--host-record=mx2.pref.test,127.0.0.12",
		/* several MX, three of equal preference, one with two addresses */
		"--mx-host=multi.test,d.multi.test,20",
		"--mx-host=multi.test,a.multi.test,10",
		"--mx-host=multi.test,b.multi.test,10",
		"--mx-host=multi.test,c.multi.test,10",
		"--host-record=a.multi.test,127.0.0.31",
		"--host-record=a.multi.test,127.0.0.32",
		"--host-record=b.multi.test,127.0.0.33",
		"--host-record=c.multi.test,127.0.0.34",
		"--host-record=d.multi.test,127.0.0.35",
		/* implicit MX */
		"--host-record=implicit.test,127.0.0.21",
		/* null MX (RFC 7505) */
		"--mx-host=null.test,.,0",
		/* MX whose only host does not exist; a domain with only AAAA */
		"--mx-host=noaddr.test,ghost.noaddr.test,10",
		"--host-record=v6only.test,::1",
		/* an MX whose only host has only AAAA; one with a v4 host beside it */
		"--mx-host=v6mx.test,mx.v6mx.test,10",
		"--host-record=mx.v6mx.test,::2",
		"--mx-host=v6mixed.test,mx6.v6mixed.test,10",
		"--mx-host=v6mixed.test,mx4.v6mixed.test,20",
		"--host-record=mx6.v6mixed.test,::3",
		"--host-record=mx4.v6mixed.test,127.0.0.42",
		/* a host with both A and AAAA: IPv4 only, AAAA never asked;
		 * an IPv6-only host with two addresses */
		"--mx-host=dual.test,mx.dual.test,10",
		"--host-record=mx.dual.test,127.0.0.43,2001:db8::43",
		"--mx-host=v6two.test,mx.v6two.test,10",
		"--host-record=mx.v6two.test,2001:db8::1",
		"--host-record=mx.v6two.test,2001:db8::2",
		/* MX hosts whose A lookups are REFUSED (temporary) */
		"--mx-host=alltemp.test,mx.other.example,10",
		"--mx-host=mixed.test,mx.other.example,5",
		"--mx-host=mixed.test,mx.mixed.test,50",
		"--host-record=mx.mixed.test,127.0.0.41",
		/* route target by name */
		"--host-record=relay.test,127.0.0.51",
		/* for the cache bound */
		"--host-record=c1.test,127.0.0.61",
		"--host-record=c2.test,127.0.0.62",
		"--host-record=c3.test,127.0.0.63",
		NULL,
	};
	/* big.test: 30 MX (too many for a 512-byte UDP answer: TC, then TCP),
	 * given in reverse order; the first 20 have an address */
	static char big[60][64];
	const char *all[sizeof(argv) / sizeof(argv[0]) + 60];
	size_t n = 0;

	for (; argv[n] != NULL; n++)
		all[n] = argv[n];
	for (int i = 30; i >= 1; i--) {
		snprintf(big[i - 1], sizeof(big[0]), "--mx-host=big.test,mx%02d.big.test,%d", i, i);
		all[n++] = big[i - 1];
		if (i <= 20) {
			snprintf(big[29 + i], sizeof(big[0]),
				 "--host-record=mx%02d.big.test,127.0.1.%d", i, i);
			all[n++] = big[29 + i];
		}
	}
	all[n] = NULL;
	snprintf(a_port, sizeof(a_port), "--port=%d", port);
	snprintf(a_log, sizeof(a_log), "--log-facility=%s", logpath);
	return dnsmasq_guarded((char *const *)all);
}

/* --- lookups --- */

struct got {
	int calls;
	struct ctl_dns_result *res;
};

static void
on_res(void *user, const struct ctl_dns_result *r)
{
	struct got *g = user;

	g->calls++;
	if (g->res == NULL)
		g->res = ctl_dns_result_dup(r);
}

/* Poll until every @p g has its callback (bounded); abort on a hang, since
 * a late callback would write into a dead stack frame. */
static void
wait_all(struct ctl_dns *dns, struct got *g, int n, int max_ms)
{
	uint64_t end = mono_ms() + (uint64_t)max_ms;

	for (;;) {
		int done = 0;

		for (int i = 0; i < n; i++)
			done += g[i].calls > 0;
		if (done == n)
			break;
		if (mono_ms() > end) {
			fprintf(stderr, "lookup did not complete in %d ms\n", max_ms);
			cleanup();
			exit(1);
		}
		ctl_dns_poll(dns, 50);
	}
	/* one more round: no second callback */
	ctl_dns_poll(dns, 0);
	for (int i = 0; i < n; i++)
		CHECK_EQ(g[i].calls, 1);
}

static struct ctl_dns_result *
lookup(struct ctl_dns *dns, const char *domain)
{
	struct got g = { 0 };

	CHECK_EQ(ctl_dns_resolve(dns, domain, on_res, &g), 0);
	wait_all(dns, &g, 1, 10000);
	CHECK(g.res != NULL);
	if (g.res == NULL) {
		cleanup();
		exit(1);
	}
	return g.res;
}

static int
addr_is(const struct ctl_dns_host *h, unsigned i, const char *ip)
{
	char buf[INET_ADDRSTRLEN];

	if (i >= h->n_addr)
		return 0;
	inet_ntop(AF_INET, &h->addr[i], buf, sizeof(buf));
	return strcmp(buf, ip) == 0;
}

/* Lines of dnsmasq's log containing @p needle. */
static int
log_count(const char *needle)
{
	FILE *f = fopen(logpath, "r");
	char line[512];
	int n = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(f);
	return n;
}

/* Wait (bounded: 20 s, for a loaded machine under ASan) until the log has
 * at least @p want lines with @p needle. @return the count then. */
static int
log_wait(const char *needle, int want)
{
	uint64_t end = mono_ms() + 20000;
	int n;

	while ((n = log_count(needle)) < want && mono_ms() < end)
		usleep(20000);
	return n;
}

static struct ctl_dns *
new_resolver(const char *srv, int timeout_ms, int tries, unsigned cache_max)
{
	struct ctl_dns_conf c = {
		.servers = srv, .timeout_ms = timeout_ms, .tries = tries,
		.cache_max = cache_max, .seed = 12345, .neg_ttl_s = 30,
		.now_ms = fake_clock,
	};
	char err[256] = "";
	struct ctl_dns *dns = ctl_dns_new(&c, err, sizeof(err));

	if (dns == NULL)
		fprintf(stderr, "ctl_dns_new: %s\n", err);
	CHECK(dns != NULL);
	return dns;
}

/*
 * Wait until dnsmasq has logged every query sent so far: it logs queries in
 * the order they arrive, so once a fresh name asked now shows up, no
 * earlier query's line is still to come. A count taken after this is
 * final, which no fixed wait can promise.
 */
static void
log_barrier(void)
{
	static int seq;
	struct ctl_dns *m = new_resolver(servers, 2000, 2, 0);
	char name[64], needle[96];

	if (m == NULL)
		return;
	snprintf(name, sizeof(name), "barrier%d.test", ++seq);
	snprintf(needle, sizeof(needle), "query[MX] %s ", name);
	ctl_dns_result_free(lookup(m, name));
	ctl_dns_free(m);
	CHECK_EQ(log_wait(needle, 1), 1);
}

/* --- cases --- */

static void
test_preference_order(struct ctl_dns *dns)
{
	struct ctl_dns_result *r = lookup(dns, "pref.test");

	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK(!r->implicit_mx && !r->from_route && !r->from_cache);
	/* mx3 (30) has no address: dropped; 10 before 20 */
	CHECK_EQ(r->n_hosts, 2);
	CHECK_STREQ(r->hosts[0].name, "mx1.pref.test");
	CHECK_EQ(r->hosts[0].pref, 10);
	CHECK_EQ(r->hosts[0].port, 25);
	CHECK(addr_is(&r->hosts[0], 0, "127.0.0.11"));
	CHECK_STREQ(r->hosts[1].name, "mx2.pref.test");
	CHECK_EQ(r->hosts[1].pref, 20);
	CHECK(addr_is(&r->hosts[1], 0, "127.0.0.12"));
	/* a host was missing: cached no longer than the negative TTL */
	CHECK_EQ(r->ttl_s, 30);
	ctl_dns_result_free(r);
}

static void
test_multi_fallback_list(struct ctl_dns *dns)
{
	struct ctl_dns_result *r = lookup(dns, "MULTI.test.");
	int seen[3] = { 0 };

	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_STREQ(r->domain, "multi.test");
	CHECK_EQ(r->n_hosts, 4);
	CHECK_EQ(r->ttl_s, TTL);
	for (unsigned i = 0; i < 3 && i < r->n_hosts; i++) {
		CHECK_EQ(r->hosts[i].pref, 10);
		if (r->hosts[i].name[0] >= 'a' && r->hosts[i].name[0] <= 'c')
			seen[r->hosts[i].name[0] - 'a']++;
		if (r->hosts[i].name[0] == 'a') {
			CHECK_EQ(r->hosts[i].n_addr, 2);
			CHECK(addr_is(&r->hosts[i], 0, "127.0.0.31") ||
			      addr_is(&r->hosts[i], 1, "127.0.0.31"));
			CHECK(addr_is(&r->hosts[i], 0, "127.0.0.32") ||
			      addr_is(&r->hosts[i], 1, "127.0.0.32"));
		} else {
			CHECK_EQ(r->hosts[i].n_addr, 1);
		}
	}
	CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
	if (r->n_hosts == 4) {
		CHECK_STREQ(r->hosts[3].name, "d.multi.test");
		CHECK_EQ(r->hosts[3].pref, 20);
		CHECK(addr_is(&r->hosts[3], 0, "127.0.0.35"));
	}
	ctl_dns_result_free(r);
}

/* Equal preferences: the same seed gives the same order, other seeds
 * give other orders. */
static void
test_tie_order_seeded(void)
{
	char first[3][CTL_DNS_NAME_MAX + 1] = { "" };
	int orders_seen = 0;
	char orders[16][4];

	for (uint64_t seed = 1; seed <= 16; seed++) {
		for (int rep = 0; rep < 2; rep++) {
			struct ctl_dns_conf c = { .servers = servers, .seed = seed, .no_cache = 1 };
			struct ctl_dns *dns = ctl_dns_new(&c, NULL, 0);
			struct ctl_dns_result *r;
			char ord[4];

			CHECK(dns != NULL);
			if (dns == NULL)
				return;
			r = lookup(dns, "multi.test");
			CHECK_EQ(r->n_hosts, 4);
			for (int i = 0; i < 3; i++)
				ord[i] = r->hosts[i].name[0];
			ord[3] = '\0';
			if (rep == 0) {
				for (int i = 0; i < 3; i++)
					snprintf(first[i], sizeof(first[i]), "%s", r->hosts[i].name);
				int known = 0;

				for (int k = 0; k < orders_seen; k++)
					known |= strcmp(orders[k], ord) == 0;
				if (!known)
					memcpy(orders[orders_seen++], ord, 4);
			} else {
				for (int i = 0; i < 3; i++)
					CHECK_STREQ(r->hosts[i].name, first[i]);
			}
			ctl_dns_result_free(r);
			ctl_dns_free(dns);
		}
	}
	/* 16 seeds over 6 possible orders: more than one must show up */
	CHECK(orders_seen >= 3);
}

/* More MX than fit in UDP: c-ares retries over TCP; the best
 * CTL_DNS_HOST_MAX are kept, in preference order. */
static void
test_many_mx_over_tcp(struct ctl_dns *dns)
{
	struct ctl_dns_result *r = lookup(dns, "big.test");

	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->n_hosts, CTL_DNS_HOST_MAX);
	for (unsigned i = 0; i < r->n_hosts; i++) {
		char name[32], ip[32];

		snprintf(name, sizeof(name), "mx%02u.big.test", i + 1);
		snprintf(ip, sizeof(ip), "127.0.1.%u", i + 1);
		CHECK_STREQ(r->hosts[i].name, name);
		CHECK_EQ(r->hosts[i].pref, i + 1);
		CHECK(addr_is(&r->hosts[i], 0, ip));
	}
	CHECK_EQ(r->ttl_s, TTL);
	ctl_dns_result_free(r);
	/* asked twice: over UDP (truncated) and again over TCP */
	CHECK_EQ(log_wait("query[MX] big.test ", 2), 2);
}

static void
test_implicit_mx(struct ctl_dns *dns)
{
	struct ctl_dns_result *r = lookup(dns, "implicit.test");

	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK(r->implicit_mx);
	CHECK_EQ(r->n_hosts, 1);
	CHECK_STREQ(r->hosts[0].name, "implicit.test");
	CHECK_EQ(r->hosts[0].pref, 0);
	CHECK(addr_is(&r->hosts[0], 0, "127.0.0.21"));
	ctl_dns_result_free(r);
}

static void
test_null_mx(struct ctl_dns *dns)
{
	struct ctl_dns_result *r = lookup(dns, "null.test");

	CHECK_EQ(r->status, CTL_DNS_NULL_MX);
	CHECK(ctl_dns_status_permanent(r->status));
	CHECK_EQ(r->n_hosts, 0);
	CHECK(strstr(r->error, "null MX") != NULL);
	CHECK_STREQ(ctl_dns_status_name(r->status), "null_mx");
	ctl_dns_result_free(r);
}

static void
test_nxdomain_and_negative_cache(struct ctl_dns *dns)
{
	struct ctl_dns_stats s0, s1;
	struct ctl_dns_result *r = lookup(dns, "nosuch.test");

	CHECK_EQ(r->status, CTL_DNS_NXDOMAIN);
	CHECK(ctl_dns_status_permanent(r->status));
	CHECK(strstr(r->error, "NXDOMAIN") != NULL);
	CHECK_EQ(r->ttl_s, 30);              /* no SOA from dnsmasq: neg_ttl_s */
	ctl_dns_result_free(r);
	ctl_dns_stats_get(dns, &s0);
	r = lookup(dns, "nosuch.test");
	ctl_dns_stats_get(dns, &s1);
	CHECK_EQ(r->status, CTL_DNS_NXDOMAIN);
	CHECK(r->from_cache);
	CHECK_EQ(s1.queries, s0.queries);
	ctl_dns_result_free(r);
	/* one query in dnsmasq's log, and no second one still on its way */
	log_barrier();
	CHECK_EQ(log_count("query[MX] nosuch.test "), 1);
}

static void
test_no_address(struct ctl_dns *dns)
{
	struct ctl_dns_result *r = lookup(dns, "noaddr.test");

	CHECK_EQ(r->status, CTL_DNS_NO_ADDRESS);
	CHECK(ctl_dns_status_permanent(r->status));
	ctl_dns_result_free(r);
	/* no MX, no A, only AAAA: not a permanent condition of the domain,
	 * only of an IPv4-only transport (conf.ipv6 = 0, the DPDK one):
	 * deferred with that reason, no address handed out */
	r = lookup(dns, "v6only.test");
	CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
	CHECK(strstr(r->error, "the domain has only IPv6 addresses; the transport is IPv4-only") != NULL);
	ctl_dns_result_free(r);
	r = lookup(dns, "v6mx.test");
	CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
	CHECK(!ctl_dns_status_permanent(r->status));
	CHECK(strstr(r->error, "MX host has only IPv6 addresses; the transport is IPv4-only") != NULL);
	ctl_dns_result_free(r);
	/* an IPv4 host beside it: that one is used */
	r = lookup(dns, "v6mixed.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->n_hosts, 1);
	CHECK_STREQ(r->hosts[0].name, "mx4.v6mixed.test");
	CHECK_EQ(r->hosts[0].n_addr6, 0);
	ctl_dns_result_free(r);
}

static int
addr6_is(const struct ctl_dns_host *h, unsigned i, const char *ip)
{
	char buf[INET6_ADDRSTRLEN];

	if (i >= h->n_addr6)
		return 0;
	inet_ntop(AF_INET6, &h->addr6[i], buf, sizeof(buf));
	return strcmp(buf, ip) == 0;
}

/* conf.ipv6 = 1 (the kernel transport): an AAAA-only host is usable with
 * its IPv6 addresses; a host with A records keeps IPv4 only (AAAA never
 * asked); a host with neither is still no address. */
static void
test_ipv6_capable(void)
{
	struct ctl_dns_conf c = { .servers = servers, .timeout_ms = 2000, .tries = 2,
				  .seed = 12345, .neg_ttl_s = 30, .now_ms = fake_clock,
				  .ipv6 = 1 };
	struct ctl_dns *dns = ctl_dns_new(&c, NULL, 0);
	struct ctl_dns_result *r;

	CHECK(dns != NULL);
	if (dns == NULL)
		return;
	r = lookup(dns, "v6mx.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->n_hosts, 1);
	CHECK_STREQ(r->hosts[0].name, "mx.v6mx.test");
	CHECK_EQ(r->hosts[0].n_addr, 0);
	CHECK_EQ(r->hosts[0].n_addr6, 1);
	CHECK(addr6_is(&r->hosts[0], 0, "::2"));
	CHECK(r->ttl_s > 0);
	ctl_dns_result_free(r);
	/* implicit MX of a domain with only AAAA */
	r = lookup(dns, "v6only.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK(r->implicit_mx);
	CHECK_EQ(r->n_hosts, 1);
	CHECK(addr6_is(&r->hosts[0], 0, "::1"));
	ctl_dns_result_free(r);
	/* both addresses of a host, as returned */
	r = lookup(dns, "v6two.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->n_hosts, 1);
	CHECK_EQ(r->hosts[0].n_addr6, 2);
	CHECK(addr6_is(&r->hosts[0], 0, "2001:db8::1") || addr6_is(&r->hosts[0], 0, "2001:db8::2"));
	CHECK(addr6_is(&r->hosts[0], 1, "2001:db8::1") || addr6_is(&r->hosts[0], 1, "2001:db8::2"));
	ctl_dns_result_free(r);
	/* preference order holds across families: the IPv6-only MX (10)
	 * before the IPv4 one (20), each with its own family only */
	r = lookup(dns, "v6mixed.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->n_hosts, 2);
	CHECK_STREQ(r->hosts[0].name, "mx6.v6mixed.test");
	CHECK_EQ(r->hosts[0].n_addr, 0);
	CHECK(addr6_is(&r->hosts[0], 0, "::3"));
	CHECK_STREQ(r->hosts[1].name, "mx4.v6mixed.test");
	CHECK(addr_is(&r->hosts[1], 0, "127.0.0.42"));
	CHECK_EQ(r->hosts[1].n_addr6, 0);
	ctl_dns_result_free(r);
	/* dual stack: IPv4 preferred, its AAAA record not even asked for */
	r = lookup(dns, "dual.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->n_hosts, 1);
	CHECK_EQ(r->hosts[0].n_addr, 1);
	CHECK(addr_is(&r->hosts[0], 0, "127.0.0.43"));
	CHECK_EQ(r->hosts[0].n_addr6, 0);
	ctl_dns_result_free(r);
	log_barrier();
	CHECK_EQ(log_count("query[AAAA] mx.dual.test "), 0);
	CHECK(log_count("query[AAAA] mx.v6mx.test ") >= 1);
	/* neither A nor AAAA: still permanent */
	r = lookup(dns, "noaddr.test");
	CHECK_EQ(r->status, CTL_DNS_NO_ADDRESS);
	CHECK(strstr(r->error, "IPv4 or IPv6 address") != NULL);
	ctl_dns_result_free(r);
	/* from the cache: the IPv6 addresses come back too */
	r = lookup(dns, "v6mx.test");
	CHECK(r->from_cache);
	CHECK(addr6_is(&r->hosts[0], 0, "::2"));
	ctl_dns_result_free(r);
	/* a route to a host name with only AAAA */
	CHECK_EQ(ctl_dns_route_add(dns, "r6.test", "mx.v6two.test", 2525, 0), 0);
	r = lookup(dns, "r6.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK(r->from_route);
	CHECK_EQ(r->hosts[0].port, 2525);
	CHECK_EQ(r->hosts[0].n_addr6, 2);
	ctl_dns_result_free(r);
	/* routes to IPv6 literals: the address itself, no query */
	{
		struct ctl_dns_stats s0, s1;
		char err[256] = "";

		CHECK_EQ(ctl_dns_route_parse(dns, "l1.test=[2001:db8::1] l2.test=[2001:db8::1]:2525 "
					     ".l3.test=[fd00::25]:465:tls", err, sizeof(err)), 3);
		CHECK_EQ(ctl_dns_route_add(dns, "l4.test", "fd00::26", 2526, 0), 0);
		CHECK_EQ(ctl_dns_route_add(dns, "l5.test", "[fd00::27]", 0, 1), 0);
		CHECK_EQ(ctl_dns_route_add(dns, "l6.test", "[127.0.0.1]", 0, 0), -EINVAL);
		ctl_dns_stats_get(dns, &s0);
		r = lookup(dns, "l1.test");
		CHECK_EQ(r->status, CTL_DNS_OK);
		CHECK(r->from_route && !r->implicit_tls);
		CHECK_EQ(r->n_hosts, 1);
		CHECK_EQ(r->hosts[0].port, 25);
		CHECK_EQ(r->hosts[0].n_addr, 0);
		CHECK_EQ(r->hosts[0].n_addr6, 1);
		CHECK(addr6_is(&r->hosts[0], 0, "2001:db8::1"));
		CHECK_STREQ(r->hosts[0].name, "2001:db8::1");
		ctl_dns_result_free(r);
		r = lookup(dns, "l2.test");
		CHECK_EQ(r->status, CTL_DNS_OK);
		CHECK_EQ(r->hosts[0].port, 2525);
		CHECK(addr6_is(&r->hosts[0], 0, "2001:db8::1"));
		ctl_dns_result_free(r);
		r = lookup(dns, "a.l3.test");
		CHECK_EQ(r->status, CTL_DNS_OK);
		CHECK(r->implicit_tls);
		CHECK_EQ(r->hosts[0].port, 465);
		CHECK(addr6_is(&r->hosts[0], 0, "fd00::25"));
		ctl_dns_result_free(r);
		r = lookup(dns, "l4.test");
		CHECK_EQ(r->status, CTL_DNS_OK);
		CHECK_EQ(r->hosts[0].port, 2526);
		CHECK(addr6_is(&r->hosts[0], 0, "fd00::26"));
		ctl_dns_result_free(r);
		r = lookup(dns, "l5.test");
		CHECK_EQ(r->status, CTL_DNS_OK);
		CHECK(r->implicit_tls);
		CHECK(addr6_is(&r->hosts[0], 0, "fd00::27"));
		ctl_dns_result_free(r);
		ctl_dns_stats_get(dns, &s1);
		CHECK_EQ(s1.queries, s0.queries);
		CHECK_EQ(s1.route_hits, s0.route_hits + 5);
	}
	ctl_dns_free(dns);
}

static void
test_tempfail_cases(struct ctl_dns *dns)
{
	struct ctl_dns_result *r;

	/* REFUSED for the MX query */
	r = lookup(dns, "outside.example");
	CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
	CHECK(!ctl_dns_status_permanent(r->status));
	CHECK_EQ(r->ttl_s, 0);               /* TEMPFAIL not cached by default */
	ctl_dns_result_free(r);
	/* the only MX host's A lookup is REFUSED */
	r = lookup(dns, "alltemp.test");
	CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
	ctl_dns_result_free(r);
	/* best MX temporarily unresolvable, the other one fine: OK with it */
	r = lookup(dns, "mixed.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->n_hosts, 1);
	CHECK_STREQ(r->hosts[0].name, "mx.mixed.test");
	CHECK(r->ttl_s <= 30);
	ctl_dns_result_free(r);
}

/* A UDP socket that never answers: timeout -> TEMPFAIL. */
static void
test_timeout(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	char srv[64];
	struct ctl_dns *dns;
	struct ctl_dns_result *r;
	uint64_t t0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	      getsockname(fd, (struct sockaddr *)&a, &l) == 0);
	snprintf(srv, sizeof(srv), "127.0.0.1:%d", ntohs(a.sin_port));
	dns = new_resolver(srv, 300, 2, 0);
	if (dns == NULL)
		return;
	t0 = mono_ms();
	r = lookup(dns, "pref.test");
	CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
	CHECK(strstr(r->error, "imeout") != NULL);
	/* it did wait for the tries (not an instant error) */
	CHECK(mono_ms() - t0 >= 250);
	ctl_dns_result_free(r);
	ctl_dns_free(dns);
	close(fd);
	/* a port where nothing listens (ICMP port unreachable) */
	snprintf(srv, sizeof(srv), "127.0.0.1:%d", free_port());
	dns = new_resolver(srv, 300, 1, 0);
	if (dns == NULL)
		return;
	r = lookup(dns, "pref.test");
	CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
	ctl_dns_result_free(r);
	ctl_dns_free(dns);
}

static void
test_cache_hit_and_expiry(void)
{
	struct ctl_dns *dns = new_resolver(servers, 2000, 2, 0);
	struct ctl_dns_stats s0, s1;
	struct ctl_dns_result *r;
	int before;

	if (dns == NULL)
		return;
	/* earlier lookups of implicit.test (the start-up probe, a case) may
	 * not be logged yet */
	log_barrier();
	before = log_count("query[MX] implicit.test ");
	r = lookup(dns, "implicit.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK(!r->from_cache);
	CHECK_EQ(r->ttl_s, TTL);
	ctl_dns_result_free(r);
	CHECK_EQ(log_wait("query[MX] implicit.test ", before + 1), before + 1);
	ctl_dns_stats_get(dns, &s0);
	CHECK_EQ(s0.queries, 2);             /* MX (NODATA) + A */
	/* second lookup 59 s later: from the cache, nothing sent */
	fake_ms += (TTL - 1) * 1000;
	r = lookup(dns, "implicit.test");
	ctl_dns_stats_get(dns, &s1);
	CHECK(r->from_cache);
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->n_hosts, 1);
	CHECK(addr_is(&r->hosts[0], 0, "127.0.0.21"));
	CHECK_EQ(r->ttl_s, 1);
	CHECK_EQ(s1.queries, s0.queries);
	CHECK_EQ(s1.cache_hits, s0.cache_hits + 1);
	ctl_dns_result_free(r);
	/* nothing new reached dnsmasq: a query sent would be logged by now */
	log_barrier();
	CHECK_EQ(log_count("query[MX] implicit.test "), before + 1);
	/* past the TTL: asked again */
	fake_ms += 1000;
	r = lookup(dns, "implicit.test");
	ctl_dns_stats_get(dns, &s1);
	CHECK(!r->from_cache);
	CHECK_EQ(s1.queries, s0.queries + 2);
	ctl_dns_result_free(r);
	CHECK_EQ(log_wait("query[MX] implicit.test ", before + 2), before + 2);
	/* flush: asked again */
	ctl_dns_cache_flush(dns);
	r = lookup(dns, "implicit.test");
	CHECK(!r->from_cache);
	ctl_dns_result_free(r);
	ctl_dns_free(dns);
}

static void
test_coalescing(void)
{
	struct ctl_dns *dns = new_resolver(servers, 2000, 2, 0);
	struct got g[5] = { { 0 } };
	struct ctl_dns_stats st;

	if (dns == NULL)
		return;
	for (int i = 0; i < 5; i++)
		CHECK_EQ(ctl_dns_resolve(dns, "multi.test", on_res, &g[i]), 0);
	CHECK_EQ(ctl_dns_pending(dns), 5);
	wait_all(dns, g, 5, 10000);
	CHECK_EQ(ctl_dns_pending(dns), 0);
	ctl_dns_stats_get(dns, &st);
	CHECK_EQ(st.queries, 5);             /* one MX + four A */
	CHECK_EQ(st.coalesced, 4);
	for (int i = 0; i < 5; i++) {
		CHECK(g[i].res != NULL && g[i].res->status == CTL_DNS_OK &&
		      g[i].res->n_hosts == 4);
		ctl_dns_result_free(g[i].res);
	}
	ctl_dns_free(dns);
}

static void
test_cache_bound(void)
{
	struct ctl_dns *dns = new_resolver(servers, 2000, 2, 2);
	struct ctl_dns_stats st;
	const char *d[3] = { "c1.test", "c2.test", "c3.test" };
	struct ctl_dns_result *r;

	if (dns == NULL)
		return;
	for (int i = 0; i < 3; i++)
		ctl_dns_result_free(lookup(dns, d[i]));
	ctl_dns_stats_get(dns, &st);
	CHECK_EQ(st.cache_entries, 2);
	CHECK_EQ(st.evictions, 1);
	/* c1 was least recently used: gone; c3 still there */
	r = lookup(dns, "c3.test");
	CHECK(r->from_cache);
	ctl_dns_result_free(r);
	r = lookup(dns, "c1.test");
	CHECK(!r->from_cache);
	CHECK_EQ(r->status, CTL_DNS_OK);
	ctl_dns_result_free(r);
	ctl_dns_free(dns);
}

/* "[IPV6][:PORT][:tls]" route hosts: brackets required in the string
 * syntax; bad items named, all or nothing. With conf.ipv6 = 0 (the DPDK
 * transport) a route to an IPv6 literal defers like an AAAA-only MX. */
static void
test_route_v6_parse(struct ctl_dns *dns)
{
	static const struct {
		const char *spec, *want;
	} bad[] = {
		{ "b1.test=2001:db8::1", "b1.test=2001:db8::1\": an IPv6 address needs brackets" },
		{ "b2.test=2001:db8::1:2525", "an IPv6 address needs brackets" },
		{ "b3.test=fd00:0:0:0:0:0:0:25", "an IPv6 address needs brackets" },
		{ "b4.test=::1", "an IPv6 address needs brackets" },
		{ "b5.test=[2001:db8::1", "b5.test=[2001:db8::1\": expected DOMAIN=[IPV6]" },
		{ "b6.test=[2001:db8::1]2525", "expected DOMAIN=[IPV6]" },
		{ "b7.test=[2001:db8::g]", "bad IPv6 address \"2001:db8::g\"" },
		{ "b8.test=[127.0.0.1]:25", "bad IPv6 address \"127.0.0.1\"" },
		{ "b9.test=[]:25", "bad IPv6 address" },
		{ "b10.test=[relay.test]", "bad IPv6 address" },
		{ "b11.test=[fd00::25]:99999", "bad port" },
		{ "b12.test=[fd00::25]:25:ssl", "expected \":tls\" after the port" },
		{ "b13.test=[fd00::25]:", "bad port" },
	};
	struct ctl_dns_result *r;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_EQ(ctl_dns_route_parse(dns, bad[i].spec, err, sizeof(err)), -EINVAL);
		if (strstr(err, bad[i].want) == NULL) {
			fprintf(stderr, "route %s: error \"%s\", want \"%s\"\n", bad[i].spec,
				err, bad[i].want);
			CHECK(0);
		}
	}
	/* all or nothing: the good first item is not installed either */
	CHECK_EQ(ctl_dns_route_parse(dns, "g0.test=[fd00::25] b0.test=fd00::26", err,
				     sizeof(err)), -EINVAL);
	CHECK(strstr(err, "b0.test=fd00::26") != NULL);
	r = lookup(dns, "g0.test");          /* the '*' route, not g0's */
	CHECK_EQ(r->hosts[0].port, 465);
	CHECK_EQ(r->hosts[0].n_addr6, 0);
	ctl_dns_result_free(r);
	/* the three good forms, beside an IPv4 one in the same string */
	CHECK_EQ(ctl_dns_route_parse(dns, "g1.test=[2001:db8::1], g2.test=[2001:db8::1]:2525 "
				     "g3.test=[fd00::25]:465:tls,g4.test=127.0.0.98:26", err,
				     sizeof(err)), 4);
	/* IPv4-only resolver: deferred with the AAAA-only MX reason, no query */
	for (int i = 1; i <= 3; i++) {
		char d[16];

		snprintf(d, sizeof(d), "g%d.test", i);
		r = lookup(dns, d);
		CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
		CHECK(!ctl_dns_status_permanent(r->status));
		CHECK_EQ(r->n_hosts, 0);
		CHECK(strstr(r->error, "only IPv6 addresses; the transport is IPv4-only") != NULL);
		CHECK(strstr(r->error, i == 3 ? "[fd00::25]" : "[2001:db8::1]") != NULL);
		ctl_dns_result_free(r);
	}
	r = lookup(dns, "g4.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(r->hosts[0].port, 26);
	CHECK(addr_is(&r->hosts[0], 0, "127.0.0.98"));
	ctl_dns_result_free(r);
}

static void
test_routes(void)
{
	struct ctl_dns *dns = new_resolver(servers, 2000, 2, 0);
	struct ctl_dns_stats s0, s1;
	struct ctl_dns_result *r;
	char err[256] = "";

	if (dns == NULL)
		return;
	CHECK_EQ(ctl_dns_route_parse(dns, "pref.test=127.0.0.99:2525, .sub.test=relay.test "
				     "*=relay.test:465:tls", err, sizeof(err)), 3);
	/* exact route beats DNS; no query sent */
	ctl_dns_stats_get(dns, &s0);
	r = lookup(dns, "pref.test");
	ctl_dns_stats_get(dns, &s1);
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK(r->from_route);
	CHECK(!r->implicit_tls);
	CHECK_EQ(r->n_hosts, 1);
	CHECK_EQ(r->hosts[0].port, 2525);
	CHECK(addr_is(&r->hosts[0], 0, "127.0.0.99"));
	CHECK_EQ(s1.queries, s0.queries);
	CHECK_EQ(s1.route_hits, s0.route_hits + 1);
	ctl_dns_result_free(r);
	/* ".sub.test": subdomains, port 25, host by name */
	r = lookup(dns, "a.b.sub.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK(r->from_route);
	CHECK_STREQ(r->hosts[0].name, "relay.test");
	CHECK_EQ(r->hosts[0].port, 25);
	CHECK(addr_is(&r->hosts[0], 0, "127.0.0.51"));
	ctl_dns_result_free(r);
	/* "*": anything else, even a domain DNS knows nothing about */
	r = lookup(dns, "null.test");
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK(r->from_route);
	CHECK(r->implicit_tls);
	CHECK_EQ(r->hosts[0].port, 465);
	CHECK(addr_is(&r->hosts[0], 0, "127.0.0.51"));
	ctl_dns_result_free(r);
	/* the route host's A answer is cached: a second '*' domain sends nothing */
	ctl_dns_stats_get(dns, &s0);
	r = lookup(dns, "whatever.example");
	ctl_dns_stats_get(dns, &s1);
	CHECK_EQ(r->status, CTL_DNS_OK);
	CHECK_EQ(s1.queries, s0.queries);
	ctl_dns_result_free(r);
	/* two domains on the '*' route at once share one lookup of its host;
	 * the internal wait for the host is not counted as pending */
	ctl_dns_cache_flush(dns);
	{
		struct got g[2] = { { 0 } };

		ctl_dns_stats_get(dns, &s0);
		CHECK_EQ(ctl_dns_resolve(dns, "p1.example", on_res, &g[0]), 0);
		CHECK_EQ(ctl_dns_resolve(dns, "p2.example", on_res, &g[1]), 0);
		CHECK_EQ(ctl_dns_pending(dns), 2);
		wait_all(dns, g, 2, 10000);
		CHECK_EQ(ctl_dns_pending(dns), 0);
		ctl_dns_stats_get(dns, &s1);
		CHECK_EQ(s1.queries, s0.queries + 1);
		CHECK_EQ(s1.callbacks, s0.callbacks + 2);
		for (int i = 0; i < 2; i++) {
			CHECK(g[i].res != NULL && g[i].res->status == CTL_DNS_OK &&
			      g[i].res->from_route && g[i].res->hosts[0].port == 465);
			ctl_dns_result_free(g[i].res);
		}
	}
	/* a route host that does not resolve: TEMPFAIL, never a bounce */
	CHECK_EQ(ctl_dns_route_add(dns, "broken.test", "ghost.test", 2525, 0), 0);
	r = lookup(dns, "broken.test");
	CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
	CHECK(strstr(r->error, "ghost.test") != NULL);
	ctl_dns_result_free(r);
	/* bad route specs: all or nothing, clear errors */
	CHECK_EQ(ctl_dns_route_parse(dns, "x.test=1.2.3.4:99999", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "bad port") != NULL);
	CHECK_EQ(ctl_dns_route_parse(dns, "ok.test=1.2.3.4 nohost.test", err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "nohost.test") != NULL);
	CHECK_EQ(ctl_dns_route_parse(dns, "y.test=1.2.3.4:25:ssl", err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_dns_route_parse(dns, "y.test=bad host!", err, sizeof(err)), -EINVAL);
	r = lookup(dns, "ok.test");          /* not installed: the '*' route */
	CHECK_EQ(r->hosts[0].port, 465);
	ctl_dns_result_free(r);
	test_route_v6_parse(dns);
	/* clearing the routes brings DNS back */
	ctl_dns_route_clear(dns);
	r = lookup(dns, "null.test");
	CHECK_EQ(r->status, CTL_DNS_NULL_MX);
	ctl_dns_result_free(r);
	ctl_dns_free(dns);
}

/* The caller's own poll loop, and ctl_dns_free() with lookups in flight. */
static void
test_own_loop_and_free(void)
{
	struct ctl_dns *dns = new_resolver(servers, 2000, 2, 0);
	struct got g = { 0 }, h[3] = { { 0 } };
	uint64_t end = mono_ms() + 10000;

	if (dns == NULL)
		return;
	CHECK_EQ(ctl_dns_resolve(dns, "pref.test", on_res, &g), 0);
	CHECK_EQ(g.calls, 0);                /* never from inside resolve */
	while (g.calls == 0 && mono_ms() < end) {
		struct pollfd fds[16];
		unsigned n = ctl_dns_fds(dns, fds, 16);
		int t = ctl_dns_timeout_ms(dns, 100);
		int rc = poll(fds, n, t);

		ctl_dns_process(dns, fds, rc > 0 ? n : 0);
	}
	CHECK_EQ(g.calls, 1);
	CHECK(g.res != NULL && g.res->status == CTL_DNS_OK);
	ctl_dns_result_free(g.res);
	/* a cache hit is also delivered from the loop, not from resolve */
	g = (struct got){ 0 };
	CHECK_EQ(ctl_dns_resolve(dns, "pref.test", on_res, &g), 0);
	CHECK_EQ(g.calls, 0);
	CHECK_EQ(ctl_dns_timeout_ms(dns, 1000), 0);
	CHECK_EQ(ctl_dns_process(dns, NULL, 0), 1);
	CHECK_EQ(g.calls, 1);
	ctl_dns_result_free(g.res);
	/* bad input: no callback, clear error */
	CHECK_EQ(ctl_dns_resolve(dns, "", on_res, &g), -EINVAL);
	CHECK_EQ(ctl_dns_resolve(dns, "bad..name", on_res, &g), -EINVAL);
	CHECK_EQ(ctl_dns_resolve(dns, "a b.test", on_res, &g), -EINVAL);
	CHECK_EQ(ctl_dns_resolve(dns, "x.test", NULL, NULL), -EINVAL);
	/* in flight at free: each gets exactly one TEMPFAIL */
	CHECK_EQ(ctl_dns_resolve(dns, "multi.test", on_res, &h[0]), 0);
	CHECK_EQ(ctl_dns_resolve(dns, "multi.test", on_res, &h[1]), 0);
	CHECK_EQ(ctl_dns_resolve(dns, "c2.test", on_res, &h[2]), 0);
	ctl_dns_free(dns);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(h[i].calls, 1);
		CHECK(h[i].res != NULL && h[i].res->status == CTL_DNS_TEMPFAIL);
		ctl_dns_result_free(h[i].res);
	}
}

/*
 * A scripted UDP responder for what dnsmasq will not send: SERVFAIL, and
 * negative answers carrying an SOA (the negative TTL is its minimum field,
 * RFC 2308). The first label of the question picks the answer:
 * "servfail" -> SERVFAIL; "nxsoa" -> NXDOMAIN + SOA; "nodatasoa" -> NOERROR,
 * no answer, SOA. Runs in a thread, bounded by a stop flag and poll timeouts.
 */
struct fake_dns {
	int fd;
	volatile int stop;
	volatile int queries;
	pthread_t th;
};

static void *
fake_run(void *arg)
{
	struct fake_dns *f = arg;

	while (!f->stop) {
		struct pollfd pf = { .fd = f->fd, .events = POLLIN };
		unsigned char q[512], r[600];
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n;
		int off = 12, rl, soa = 0;
		unsigned rcode;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		n = recvfrom(f->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		if (n < 17)
			continue;
		while (off < n && q[off] != 0)
			off += 1 + q[off];
		off += 5;                    /* root label, type, class */
		if (off > n)
			continue;
		f->queries++;
		if (q[12] == 8 && memcmp(q + 13, "servfail", 8) == 0) {
			rcode = 2;
		} else if (q[12] == 5 && memcmp(q + 13, "nxsoa", 5) == 0) {
			rcode = 3;
			soa = 1;
		} else if (q[12] == 9 && memcmp(q + 13, "nodatasoa", 9) == 0) {
			rcode = 0;
			soa = 1;
		} else {
			rcode = 5;
		}
		memcpy(r, q, (size_t)off);
		r[2] = (unsigned char)(0x80 | (q[2] & 0x01));       /* QR, RD copied */
		r[3] = (unsigned char)(0x80 | rcode);               /* RA, rcode */
		r[6] = r[7] = 0;
		r[8] = 0;
		r[9] = (unsigned char)soa;
		r[10] = r[11] = 0;
		rl = off;
		if (soa) {
			static const unsigned char rr[] = {
				0xc0, 0x0c, 0, 6, 0, 1, 0, 0, 0x01, 0x2c,  /* SOA IN ttl 300 */
				0, 27,                                      /* rdlength */
				2, 'n', 's', 0, 1, 'h', 0,                  /* mname, rname */
				0, 0, 0, 1, 0, 0, 0, 60, 0, 0, 0, 60,       /* serial refresh retry */
				0, 0, 0, 60, 0, 0, 0, 42,                   /* expire, minimum 42 */
			};

			memcpy(r + rl, rr, sizeof(rr));
			rl += (int)sizeof(rr);
		}
		sendto(f->fd, r, (size_t)rl, 0, (struct sockaddr *)&from, fl);
	}
	return NULL;
}

static void
test_scripted_answers(void)
{
	struct fake_dns f = { .fd = socket(AF_INET, SOCK_DGRAM, 0) };
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	struct ctl_dns *dns;
	struct ctl_dns_result *r;
	char srv[64];

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(f.fd >= 0 && bind(f.fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	      getsockname(f.fd, (struct sockaddr *)&a, &l) == 0);
	CHECK_EQ(pthread_create(&f.th, NULL, fake_run, &f), 0);
	snprintf(srv, sizeof(srv), "127.0.0.1:%d", ntohs(a.sin_port));
	dns = new_resolver(srv, 1000, 1, 0);
	if (dns != NULL) {
		r = lookup(dns, "servfail.example");
		CHECK_EQ(r->status, CTL_DNS_TEMPFAIL);
		/* c-ares 1.18 skips a server that says SERVFAIL and, with none
		 * left, reports "Could not contact DNS servers" */
		CHECK(strstr(r->error, "MX lookup failed") != NULL);
		ctl_dns_result_free(r);
		CHECK(f.queries >= 1);
		/* NXDOMAIN + SOA: cached for min(SOA TTL, minimum) = 42 s */
		r = lookup(dns, "nxsoa.example");
		CHECK_EQ(r->status, CTL_DNS_NXDOMAIN);
		CHECK_EQ(r->ttl_s, 42);
		ctl_dns_result_free(r);
		/* NODATA + SOA for MX and A: implicit MX with no address, 42 s */
		r = lookup(dns, "nodatasoa.example");
		CHECK_EQ(r->status, CTL_DNS_NO_ADDRESS);
		CHECK_EQ(r->ttl_s, 42);
		ctl_dns_result_free(r);
		ctl_dns_free(dns);
	}
	f.stop = 1;
	pthread_join(f.th, NULL);
	close(f.fd);
}

static void
test_bad_conf(void)
{
	struct ctl_dns_conf c = { .servers = "not-an-address" };
	char err[256] = "";

	CHECK(ctl_dns_new(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not-an-address") != NULL);
}

int
main(void)
{
	struct ctl_dns *dns;
	struct ctl_dns_result *r = NULL;
	uint64_t end;

	if (system("command -v dnsmasq >/dev/null 2>&1") != 0) {
		printf("dnsmasq not installed: skipped\n");
		return 77;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mp-ctldns-XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	chmod(tmpdir, 0777);                 /* dnsmasq writes its log as nobody */
	snprintf(logpath, sizeof(logpath), "%s/queries.log", tmpdir);
	atexit(cleanup);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	port = free_port();
	CHECK(port > 0);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);
	guard_pid = dnsmasq_start();
	CHECK(guard_pid > 0);

	/* Wait (bounded) until dnsmasq answers. */
	end = mono_ms() + 10000;
	while (mono_ms() < end) {
		struct ctl_dns_conf c = { .servers = servers, .timeout_ms = 200, .tries = 1,
					  .no_cache = 1 };
		struct ctl_dns *probe = ctl_dns_new(&c, NULL, 0);
		int st;

		if (waitpid(guard_pid, &st, WNOHANG) == guard_pid) {
			fprintf(stderr, "dnsmasq exited early\n");
			guard_pid = -1;
			return 1;
		}
		r = probe ? lookup(probe, "implicit.test") : NULL;
		ctl_dns_free(probe);
		if (r != NULL && r->status == CTL_DNS_OK)
			break;
		ctl_dns_result_free(r);
		r = NULL;
		usleep(50000);
	}
	CHECK(r != NULL);
	if (r == NULL)
		return mp_test_result("ctl_dns");
	ctl_dns_result_free(r);

	dns = new_resolver(servers, 2000, 2, 0);
	if (dns != NULL) {
		test_preference_order(dns);
		test_multi_fallback_list(dns);
		test_many_mx_over_tcp(dns);
		test_implicit_mx(dns);
		test_null_mx(dns);
		test_nxdomain_and_negative_cache(dns);
		test_no_address(dns);
		test_tempfail_cases(dns);
		ctl_dns_free(dns);
	}
	test_ipv6_capable();
	test_tie_order_seeded();
	test_timeout();
	test_cache_hit_and_expiry();
	test_coalescing();
	test_cache_bound();
	test_routes();
	test_own_loop_and_free();
	test_scripted_answers();
	test_bad_conf();
	cleanup();
	return mp_test_result("ctl_dns");
}
