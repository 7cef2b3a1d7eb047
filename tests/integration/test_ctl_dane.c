/*
 * ctl_dane against the signed-zone rig of dane_lib.sh (run by
 * ctl_dane.sh inside the rig's namespace; the addresses come in the
 * environment). Proves, each with a check that can fail:
 *   - through the validating unbound, with the zone's DS as our anchor:
 *     secure MX in preference order; secure TLSA 3 1 1 equal to the
 *     certificate's SPKI digest (DANE applies), a _465 TLSA 3 0 2; a host
 *     without TLSA is an authenticated denial (DANE does not apply);
 *     records that cannot be used are set aside with a reason while the
 *     one usable record still makes DANE apply; only unusable records is
 *     its own outcome; a CNAME'd TLSA owner and host are followed and
 *     said so; the unsigned zone is insecure (its TLSA ignored); the
 *     bogus child is bogus, with unbound's reason;
 *   - through resolvers that do not validate (an iterator-only unbound,
 *     nsd itself): our own validation still makes dane.test. secure and
 *     finds the bogus child bogus; a REFUSED zone is tempfail (SERVFAIL);
 *   - the AD bit is not trusted: the validating unbound sets AD on
 *     dane.test. (ctl_dane.sh checks that it does), yet with an anchor for another zone the answers are
 *     insecure, and with a wrong DS for dane.test. they are bogus;
 *   - a dead resolver and a silent one are tempfail within our deadline;
 *   - DANE off, bad forwarder, missing anchor file, bad names, and
 *     ctl_dane_free() with lookups pending.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctl_dane.h"
#include "mp_test.h"

#define OPTS "local-zone: test. transparent"

static const char *resolver, *noval, *nsd, *dead, *ta, *spki, *c512;

struct got {
	int done;
	enum ctl_dane_sec sec;
	enum ctl_dane_outcome outcome;
	int rcode, nxdomain, cname;
	char canon[CTL_DANE_NAME_MAX + 1];
	char qname[CTL_DANE_NAME_MAX + 1];
	char error[CTL_DANE_ERROR_MAX];
	unsigned n, n_usable;
	struct {
		unsigned pref;
		char host[CTL_DANE_NAME_MAX + 1];
	} mx[CTL_DANE_MX_MAX];
	struct {
		unsigned u, s, m;
		char hex[2 * 1024 + 1];
		char unusable[128];
	} rr[CTL_DANE_TLSA_MAX];
};

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
on_mx(void *user, const struct ctl_dane_mx_result *r)
{
	struct got *g = user;
	unsigned i;

	g->done++;
	g->sec = r->sec;
	g->rcode = r->rcode;
	g->nxdomain = r->nxdomain;
	g->cname = r->cname;
	snprintf(g->canon, sizeof(g->canon), "%s", r->canon);
	snprintf(g->error, sizeof(g->error), "%s", r->error);
	g->n = r->n_mx;
	for (i = 0; i < r->n_mx; i++) {
		g->mx[i].pref = r->mx[i].pref;
		snprintf(g->mx[i].host, sizeof(g->mx[i].host), "%s", r->mx[i].host);
	}
}

static void
on_tlsa(void *user, const struct ctl_dane_tlsa_result *r)
{
	struct got *g = user;
	unsigned i, j;

	g->done++;
	g->sec = r->sec;
	g->outcome = r->outcome;
	g->rcode = r->rcode;
	g->cname = r->cname;
	snprintf(g->canon, sizeof(g->canon), "%s", r->canon);
	snprintf(g->qname, sizeof(g->qname), "%s", r->qname);
	snprintf(g->error, sizeof(g->error), "%s", r->error);
	g->n = r->n_rr;
	g->n_usable = r->n_usable;
	for (i = 0; i < r->n_rr; i++) {
		g->rr[i].u = r->rr[i].usage;
		g->rr[i].s = r->rr[i].selector;
		g->rr[i].m = r->rr[i].mtype;
		for (j = 0; j < r->rr[i].len && j < 1024; j++)
			sprintf(g->rr[i].hex + 2 * j, "%02x", r->rr[i].data[j]);
		g->rr[i].hex[2 * j] = '\0';
		snprintf(g->rr[i].unusable, sizeof(g->rr[i].unusable), "%s",
			 r->rr[i].unusable ? r->rr[i].unusable : "");
	}
}

static struct ctl_dane *
mk(const char *fwd, const char *ta_file, const char *ta_str, int timeout_ms)
{
	struct ctl_dane_conf c;
	struct ctl_dane *d;
	char err[256] = "";

	memset(&c, 0, sizeof(c));
	c.forwarders = fwd;
	c.ta_file = ta_file;
	c.ta = ta_str;
	c.options = OPTS;
	c.timeout_ms = timeout_ms;
	d = ctl_dane_new(&c, err, sizeof(err));
	if (d == NULL)
		fprintf(stderr, "ctl_dane_new(%s): %s\n", fwd, err);
	CHECK(d != NULL);
	return d;
}

/* Run the loop until the one callback came, at most 30 s. */
static void
wait_done(struct ctl_dane *d, struct got *g)
{
	uint64_t end = mono_ms() + 30000;

	while (!g->done && mono_ms() < end)
		CHECK(ctl_dane_poll(d, 200) >= 0);
	CHECK_EQ(g->done, 1);
}

static void
mx(struct ctl_dane *d, const char *domain, struct got *g)
{
	memset(g, 0, sizeof(*g));
	CHECK_EQ(ctl_dane_mx(d, domain, on_mx, g), 0);
	wait_done(d, g);
	printf("mx %s: %s rcode=%d n=%u cname=%d %s\n", domain, ctl_dane_sec_name(g->sec),
	       g->rcode, g->n, g->cname, g->error);
}

static void
tlsa(struct ctl_dane *d, const char *host, uint16_t port, struct got *g)
{
	memset(g, 0, sizeof(*g));
	CHECK_EQ(ctl_dane_tlsa(d, host, port, on_tlsa, g), 0);
	wait_done(d, g);
	printf("tlsa %s:%u: %s %s n=%u usable=%u cname=%d %s\n", host, port,
	       ctl_dane_sec_name(g->sec), ctl_dane_outcome_name(g->outcome), g->n, g->n_usable,
	       g->cname, g->error);
}

/* the index of record (u s m hex), or -1 */
static int
find_rr(const struct got *g, unsigned u, unsigned s, unsigned m, const char *hex)
{
	unsigned i;

	for (i = 0; i < g->n; i++)
		if (g->rr[i].u == u && g->rr[i].s == s && g->rr[i].m == m &&
		    strcmp(g->rr[i].hex, hex) == 0)
			return (int)i;
	return -1;
}

static void
test_validating(void)
{
	struct ctl_dane *d = mk(resolver, ta, NULL, 5000);
	struct got g;
	char shortspki[41];
	int i;

	if (d == NULL)
		return;
	mx(d, "dane.test", &g);
	CHECK_EQ(g.sec, CTL_DANE_SECURE);
	CHECK_EQ(g.n, 2);
	CHECK_EQ(g.mx[0].pref, 10);
	CHECK_STREQ(g.mx[0].host, "mx.dane.test");
	CHECK_EQ(g.mx[1].pref, 20);
	CHECK_STREQ(g.mx[1].host, "mx2.dane.test");
	CHECK_EQ(g.cname, 0);

	tlsa(d, "mx.dane.test", 25, &g);
	CHECK_EQ(g.sec, CTL_DANE_SECURE);
	CHECK_EQ(g.outcome, CTL_DANE_APPLIES);
	CHECK_STREQ(g.qname, "_25._tcp.mx.dane.test");
	CHECK_EQ(g.n, 1);
	CHECK_EQ(g.n_usable, 1);
	CHECK(find_rr(&g, 3, 1, 1, spki) == 0);
	CHECK_STREQ(g.rr[0].unusable, "");

	/* trailing dot and upper case are the same name; another port */
	tlsa(d, "MX.Dane.Test.", 465, &g);
	CHECK_EQ(g.outcome, CTL_DANE_APPLIES);
	CHECK_STREQ(g.qname, "_465._tcp.mx.dane.test");
	CHECK(find_rr(&g, 3, 0, 2, c512) == 0);

	/* RFC 7672 §2.2: a secure denial means DANE does not apply */
	tlsa(d, "mx2.dane.test", 25, &g);
	CHECK_EQ(g.sec, CTL_DANE_SECURE);
	CHECK_EQ(g.outcome, CTL_DANE_NO_TLSA);
	CHECK_EQ(g.n, 0);
	CHECK(strstr(g.error, "no TLSA") != NULL);

	/* RFC 7671 §4.1: five records set aside, the sixth used */
	tlsa(d, "mixed.dane.test", 25, &g);
	CHECK_EQ(g.outcome, CTL_DANE_APPLIES);
	CHECK_EQ(g.n, 6);
	CHECK_EQ(g.n_usable, 1);
	i = find_rr(&g, 3, 1, 1, spki);
	CHECK(i >= 0 && g.rr[i].unusable[0] == '\0');
	i = find_rr(&g, 4, 1, 1, spki);
	CHECK(i >= 0 && strstr(g.rr[i].unusable, "unknown certificate usage") != NULL);
	i = find_rr(&g, 3, 2, 1, spki);
	CHECK(i >= 0 && strstr(g.rr[i].unusable, "unknown selector") != NULL);
	i = find_rr(&g, 3, 1, 9, spki);
	CHECK(i >= 0 && strstr(g.rr[i].unusable, "unknown matching type") != NULL);
	snprintf(shortspki, sizeof(shortspki), "%.40s", spki);
	i = find_rr(&g, 3, 1, 1, shortspki);
	CHECK(i >= 0 && strstr(g.rr[i].unusable, "not 32 bytes") != NULL);
	i = find_rr(&g, 1, 1, 1, spki);
	CHECK(i >= 0 && strstr(g.rr[i].unusable, "PKIX") != NULL);

	/* nothing usable: neither DANE nor "no TLSA" */
	tlsa(d, "unusable.dane.test", 25, &g);
	CHECK_EQ(g.sec, CTL_DANE_SECURE);
	CHECK_EQ(g.outcome, CTL_DANE_UNUSABLE);
	CHECK_EQ(g.n, 2);
	CHECK_EQ(g.n_usable, 0);
	CHECK(strstr(g.error, "none usable") != NULL);

	/* CNAMEs followed, and said */
	tlsa(d, "alias.dane.test", 25, &g);
	CHECK_EQ(g.outcome, CTL_DANE_APPLIES);
	CHECK_EQ(g.cname, 1);
	CHECK_STREQ(g.canon, "_25._tcp.mx.dane.test");
	CHECK(find_rr(&g, 3, 1, 1, spki) == 0);
	mx(d, "alias.dane.test", &g);
	CHECK_EQ(g.sec, CTL_DANE_SECURE);
	CHECK_EQ(g.cname, 1);
	CHECK_STREQ(g.canon, "mx.dane.test");
	tlsa(d, "mx.dane.test", 25, &g);
	CHECK_EQ(g.cname, 0);

	mx(d, "nonexistent.dane.test", &g);
	CHECK_EQ(g.sec, CTL_DANE_SECURE);
	CHECK_EQ(g.nxdomain, 1);
	CHECK_EQ(g.n, 0);

	/* unsigned zone: insecure, its TLSA record does not count */
	mx(d, "plain.test", &g);
	CHECK_EQ(g.sec, CTL_DANE_INSECURE);
	CHECK_EQ(g.n, 1);
	CHECK_STREQ(g.mx[0].host, "mx.plain.test");
	tlsa(d, "mx.plain.test", 25, &g);
	CHECK_EQ(g.sec, CTL_DANE_INSECURE);
	CHECK_EQ(g.outcome, CTL_DANE_NOT_SECURE);
	CHECK_EQ(g.n, 1);
	CHECK(strstr(g.error, "insecure") != NULL);

	/* libunbound asks its forwarder with CD set, so the validating
	 * upstream hands over the bogus child's data and we find it bogus
	 * ourselves (not a bare SERVFAIL), with unbound's reason */
	mx(d, "bogus.dane.test", &g);
	CHECK_EQ(g.sec, CTL_DANE_BOGUS);
	CHECK(strstr(g.error, "bogus.dane.test") != NULL);
	CHECK(strstr(g.error, "DS") != NULL);
	tlsa(d, "mx.bogus.dane.test", 25, &g);
	CHECK_EQ(g.outcome, CTL_DANE_FAIL_BOGUS);
	CHECK_EQ(g.n, 0);
	ctl_dane_free(d);
}

/* Upstreams that pass signed data through without validating it. */
static void
test_own_validation(const char *fwd)
{
	struct ctl_dane *d = mk(fwd, ta, NULL, 5000);
	struct got g;

	if (d == NULL)
		return;
	printf("-- own validation through %s\n", fwd);
	mx(d, "dane.test", &g);
	CHECK_EQ(g.sec, CTL_DANE_SECURE);
	CHECK_EQ(g.n, 2);
	tlsa(d, "mx.dane.test", 25, &g);
	CHECK_EQ(g.outcome, CTL_DANE_APPLIES);
	CHECK(find_rr(&g, 3, 1, 1, spki) == 0);

	mx(d, "bogus.dane.test", &g);
	CHECK_EQ(g.sec, CTL_DANE_BOGUS);
	CHECK(strstr(g.error, "bogus") != NULL);
	CHECK(strstr(g.error, "bogus.dane.test") != NULL);
	CHECK_EQ(g.n, 0);
	tlsa(d, "mx.bogus.dane.test", 25, &g);
	CHECK_EQ(g.sec, CTL_DANE_BOGUS);
	CHECK_EQ(g.outcome, CTL_DANE_FAIL_BOGUS);
	CHECK_EQ(g.n, 0);

	mx(d, "plain.test", &g);
	CHECK_EQ(g.sec, CTL_DANE_INSECURE);

	/* nsd refuses a zone it does not serve: libunbound makes that a
	 * SERVFAIL, which is indeterminate, never insecure */
	if (fwd == nsd) {
		uint64_t t0 = mono_ms();

		mx(d, "unserved.example", &g);
		CHECK_EQ(g.sec, CTL_DANE_TEMPFAIL);
		CHECK(strstr(g.error, "SERVFAIL") != NULL);
		CHECK(strstr(g.error, "unserved.example") != NULL);
		CHECK(mono_ms() - t0 < 5000 + 1000);
		tlsa(d, "mx.unserved.example", 25, &g);
		CHECK_EQ(g.outcome, CTL_DANE_FAIL_TEMP);
	}
	ctl_dane_free(d);
}

/* The validating unbound sets AD on dane.test.: that must not count. */
static void
test_ad_not_trusted(void)
{
	struct ctl_dane *d;
	struct got g;

	/* an anchor for a zone that has nothing to do with dane.test. */
	d = mk(resolver, NULL,
	       "unrelated.example. IN DS 12345 13 2 "
	       "0000000000000000000000000000000000000000000000000000000000000000", 5000);
	if (d != NULL) {
		printf("-- AD from a validating upstream, no anchor for dane.test.\n");
		mx(d, "dane.test", &g);
		CHECK_EQ(g.sec, CTL_DANE_INSECURE);
		CHECK_EQ(g.n, 2);
		tlsa(d, "mx.dane.test", 25, &g);
		CHECK_EQ(g.sec, CTL_DANE_INSECURE);
		CHECK_EQ(g.outcome, CTL_DANE_NOT_SECURE);
		ctl_dane_free(d);
	}
	/* a DS for dane.test. that matches none of its keys */
	d = mk(resolver, NULL,
	       "dane.test. IN DS 12345 13 2 "
	       "1111111111111111111111111111111111111111111111111111111111111111", 5000);
	if (d != NULL) {
		printf("-- AD from a validating upstream, wrong anchor for dane.test.\n");
		tlsa(d, "mx.dane.test", 25, &g);
		CHECK_EQ(g.sec, CTL_DANE_BOGUS);
		CHECK_EQ(g.outcome, CTL_DANE_FAIL_BOGUS);
		CHECK(g.error[0] != '\0');
		ctl_dane_free(d);
	}
}

static void
test_tempfail(void)
{
	struct ctl_dane *d;
	struct got g;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char fwd[64];
	uint64_t t0;
	int s;

	/* nothing listens: whatever libunbound makes of it, tempfail and
	 * no later than our deadline */
	d = mk(dead, ta, NULL, 1500);
	if (d != NULL) {
		t0 = mono_ms();
		tlsa(d, "mx.dane.test", 25, &g);
		CHECK_EQ(g.sec, CTL_DANE_TEMPFAIL);
		CHECK_EQ(g.outcome, CTL_DANE_FAIL_TEMP);
		CHECK(g.error[0] != '\0');
		CHECK(mono_ms() - t0 < 1500 + 1000);
		ctl_dane_free(d);
	}

	/* a server that takes queries and never answers: our deadline */
	s = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	snprintf(fwd, sizeof(fwd), "127.0.0.1@%u", ntohs(sa.sin_port));
	d = mk(fwd, ta, NULL, 1200);
	if (d != NULL) {
		t0 = mono_ms();
		mx(d, "dane.test", &g);
		CHECK_EQ(g.sec, CTL_DANE_TEMPFAIL);
		CHECK(strstr(g.error, "no answer within") != NULL);
		CHECK(strstr(g.error, "dane.test") != NULL);
		CHECK(mono_ms() - t0 >= 1200);
		CHECK(mono_ms() - t0 < 1200 + 1000);
		struct ctl_dane_stats st;
		ctl_dane_stats_get(d, &st);
		CHECK_EQ(st.timeouts, 1);
		CHECK_EQ(st.pending, 0);

		/* shutdown with lookups pending: each callback exactly once */
		struct got a, b;
		memset(&a, 0, sizeof(a));
		memset(&b, 0, sizeof(b));
		CHECK_EQ(ctl_dane_mx(d, "dane.test", on_mx, &a), 0);
		CHECK_EQ(ctl_dane_tlsa(d, "mx.dane.test", 25, on_tlsa, &b), 0);
		CHECK_EQ(a.done + b.done, 0);
		ctl_dane_free(d);
		CHECK_EQ(a.done, 1);
		CHECK_EQ(b.done, 1);
		CHECK_EQ(a.sec, CTL_DANE_TEMPFAIL);
		CHECK_EQ(b.outcome, CTL_DANE_FAIL_TEMP);
		CHECK(strstr(a.error, "shut down") != NULL);
	}
	close(s);
}

static void
test_conf(void)
{
	struct ctl_dane_conf c;
	struct ctl_dane *d;
	struct got g;
	char err[256];

	memset(&c, 0, sizeof(c));
	c.disabled = 1;
	d = ctl_dane_new(&c, err, sizeof(err));
	CHECK(d != NULL);
	CHECK_EQ(ctl_dane_enabled(d), 0);
	CHECK_EQ(ctl_dane_fd(d), -1);
	CHECK_EQ(ctl_dane_mx(d, "dane.test", on_mx, &g), -ENOTSUP);
	CHECK_EQ(ctl_dane_tlsa(d, "mx.dane.test", 25, on_tlsa, &g), -ENOTSUP);
	ctl_dane_free(d);

	memset(&c, 0, sizeof(c));
	c.forwarders = "not-an-address";
	c.ta_file = ta;
	err[0] = '\0';
	CHECK(ctl_dane_new(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not-an-address") != NULL);

	memset(&c, 0, sizeof(c));
	c.forwarders = resolver;
	c.ta_file = "/nonexistent/ta.ds";
	err[0] = '\0';
	CHECK(ctl_dane_new(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "/nonexistent/ta.ds") != NULL);

	memset(&c, 0, sizeof(c));
	c.forwarders = resolver;
	c.root_key_file = "/nonexistent/root.key";
	err[0] = '\0';
	CHECK(ctl_dane_new(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "no trust anchor") != NULL);

	memset(&c, 0, sizeof(c));
	c.forwarders = resolver;
	c.ta_file = ta;
	c.options = "no colon here";
	err[0] = '\0';
	CHECK(ctl_dane_new(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "no colon here") != NULL);

	d = mk(resolver, ta, NULL, 0);
	if (d != NULL) {
		CHECK(ctl_dane_fd(d) >= 0);
		CHECK_EQ(ctl_dane_timeout_ms(d), -1);
		CHECK_EQ(ctl_dane_mx(d, "", on_mx, &g), -EINVAL);
		CHECK_EQ(ctl_dane_mx(d, "a..b", on_mx, &g), -EINVAL);
		CHECK_EQ(ctl_dane_tlsa(d, "has space.test", 25, on_tlsa, &g), -EINVAL);
		CHECK_EQ(ctl_dane_mx(d, "dane.test", NULL, NULL), -EINVAL);
		ctl_dane_free(d);
	}
}

int
main(void)
{
	resolver = getenv("DANE_RESOLVER");
	noval = getenv("DANE_NOVAL");
	nsd = getenv("DANE_NSD");
	dead = getenv("DANE_DEAD");
	ta = getenv("DANE_TA");
	spki = getenv("DANE_SPKI_SHA256");
	c512 = getenv("DANE_CERT_SHA512");
	if (!resolver || !noval || !nsd || !dead || !ta || !spki || !c512) {
		fprintf(stderr, "SKIP: run through ctl_dane.sh (DANE_* not set)\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_conf();
	test_validating();
	test_own_validation(noval);
	test_own_validation(nsd);
	test_ad_not_trusted();
	test_tempfail();
	return mp_test_result("ctl_dane");
}
