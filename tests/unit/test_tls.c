/*
 * tls_ against a real OpenSSL server in the same thread: a throwaway PKI
 * is generated at start (CA, good/expired/not-yet-valid/self-signed/
 * wrong-name leaves, a second untrusted CA), the server SSL runs over a
 * pair of memory BIOs and the test moves bytes between it and a tls_conn.
 * Covers record fields, verify reasons with verify on and off, version
 * floor, resumption (1.3 and 1.2) and the cache bound, fragmented
 * application data, async pause/resume ordering, and idle memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mp_test.h"
#include "mp_test_async.h"
#include "mp_test_pki.h"
#include "tls.h"

/* --- throwaway PKI --- */

static struct cred ca1, ca2, good, expired, notyet, selfsigned, wrongname, unknownca;
static char ca_path[64];

static void
pki_init(void)
{
	FILE *f;
	int fd;

	ca1 = mkcred("Test CA 1", true, NULL, -10, 3650);
	ca2 = mkcred("Test CA 2", true, NULL, -10, 3650);
	good = mkcred("mx.test", false, &ca1, -1, 365);
	expired = mkcred("mx.test", false, &ca1, -30, -1);
	notyet = mkcred("mx.test", false, &ca1, 1, 30);
	selfsigned = mkcred("mx.test", false, NULL, -1, 365);
	wrongname = mkcred("other.test", false, &ca1, -1, 365);
	unknownca = mkcred("mx.test", false, &ca2, -1, 365);
	snprintf(ca_path, sizeof(ca_path), "/tmp/mp_tls_ca_XXXXXX");
	fd = mkstemp(ca_path);
	f = fdopen(fd, "w");
	PEM_write_X509(f, ca1.cert);
	fclose(f);
}

static void
pki_fini(void)
{
	struct cred *all[] = { &ca1, &ca2, &good, &expired, &notyet, &selfsigned,
		&wrongname, &unknownca };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		cred_free(all[i]);
	unlink(ca_path);
}

/* --- in-process server and the byte pump --- */

static SSL_CTX *
srv_ctx(const struct cred *cr, int minv, int maxv, const char *ciphers)
{
	SSL_CTX *s = SSL_CTX_new(TLS_server_method());

	SSL_CTX_use_certificate(s, cr->cert);
	SSL_CTX_use_PrivateKey(s, cr->key);
	SSL_CTX_set_min_proto_version(s, minv);
	SSL_CTX_set_max_proto_version(s, maxv);
	if (ciphers != NULL)
		SSL_CTX_set_cipher_list(s, ciphers);
	SSL_CTX_set_session_id_context(s, (const unsigned char *)"t", 1);
	return s;
}

struct peer {
	SSL *ssl;
	BIO *rb, *wb;
	int done;             /* 1 handshake done, -1 failed */
	unsigned char pend[1 << 16];  /* server output not yet fed to the client */
	size_t plen;
};

static struct peer *
peer_new(SSL_CTX *sctx)
{
	struct peer *p = calloc(1, sizeof(*p));

	p->ssl = SSL_new(sctx);
	p->rb = BIO_new(BIO_s_mem());
	p->wb = BIO_new(BIO_s_mem());
	SSL_set_bio(p->ssl, p->rb, p->wb);
	SSL_set_accept_state(p->ssl);
	return p;
}

static void
peer_free(struct peer *p)
{
	if (p == NULL)
		return;
	SSL_free(p->ssl);
	free(p);
}

/* Move client output to the server and up to @step bytes (0 = all) back. */
static size_t
pump(struct tls_conn *c, struct peer *p, size_t step)
{
	const void *q;
	size_t moved = 0, n;
	int k;

	while ((n = tls_conn_out_peek(c, &q)) != 0) {
		BIO_write(p->rb, q, (int)n);
		tls_conn_out_consume(c, n);
		moved += n;
	}
	if (p->done == 0) {
		int r = SSL_do_handshake(p->ssl);

		if (r == 1)
			p->done = 1;
		else if (SSL_get_error(p->ssl, r) != SSL_ERROR_WANT_READ)
			p->done = -1;
	}
	while (p->plen < sizeof(p->pend) &&
	    (k = BIO_read(p->wb, p->pend + p->plen, (int)(sizeof(p->pend) - p->plen))) > 0)
		p->plen += (size_t)k;
	if (p->plen != 0) {
		ssize_t f = tls_conn_feed(c, p->pend, step != 0 && step < p->plen ? step : p->plen);

		if (f > 0) {
			memmove(p->pend, p->pend + f, p->plen - (size_t)f);
			p->plen -= (size_t)f;
			moved += (size_t)f;
		}
	}
	return moved;
}

/* Handshake until both ends finish or the client stops (paused, failed). */
static int
run_handshake(struct tls_conn *c, struct peer *p, size_t step)
{
	int rc = TLS_WANT_IO;

	for (int i = 0; i < 20000; i++) {
		size_t moved;

		if (rc == TLS_WANT_IO)
			rc = tls_conn_handshake(c);
		if (rc == TLS_PAUSED)
			return rc;
		moved = pump(c, p, step);
		if (rc != TLS_WANT_IO && (p->done != 0 || moved == 0) &&
		    tls_conn_out_pending(c) == 0 && p->plen == 0)
			return rc;
		if (rc == TLS_WANT_IO && moved == 0 && p->done == -1)
			rc = tls_conn_handshake(c);
	}
	return -ETIMEDOUT;
}

/* Read exactly @len bytes from the client side, pumping as needed. */
static size_t
client_read_all(struct tls_conn *c, struct peer *p, unsigned char *buf, size_t len, size_t step)
{
	size_t got = 0;

	for (int i = 0; i < 200000 && got < len; i++) {
		ssize_t r = tls_conn_read(c, buf + got, len - got);

		if (r > 0)
			got += (size_t)r;
		else if (r != -EAGAIN)
			break;
		else
			pump(c, p, step);
	}
	return got;
}

static struct tls_ctx *
client_ctx(unsigned cache, int minv, const char *ciphers)
{
	struct tls_ctx_conf conf = {
		.ca_file = ca_path,
		.cache_capacity = cache,
		.min_version = minv,
		.ciphers = ciphers,
	};
	char err[256] = "";
	struct tls_ctx *ctx = tls_ctx_new(&conf, err, sizeof(err));

	if (ctx == NULL)
		fprintf(stderr, "tls_ctx_new: %s\n", err);
	return ctx;
}

/* One full connection; returns handshake rc, copies the record. */
static int
connect_once(struct tls_ctx *ctx, SSL_CTX *sctx, const char *host, bool verify,
	const char *key, struct tls_record *rec, bool read_tickets)
{
	struct tls_conn_conf cc = { .host = host, .verify = verify, .cache_key = key };
	struct tls_conn *c = tls_conn_new(ctx, &cc);
	struct peer *p = peer_new(sctx);
	unsigned char b[16];
	int rc;

	rc = run_handshake(c, p, 0);
	if (rc == TLS_OK && read_tickets) {
		/* TLS 1.3 tickets arrive after the handshake; a read consumes them */
		pump(c, p, 0);
		CHECK_EQ(tls_conn_read(c, b, sizeof(b)), -EAGAIN);
	}
	*rec = *tls_conn_record(c);
	tls_conn_free(c);
	peer_free(p);
	return rc;
}

/* --- cases --- */

static void
test_tls13_record_fields(void)
{
	struct tls_ctx *ctx = client_ctx(0, 0, NULL);
	SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
	struct tls_conn_conf cc = { .host = "mx.test", .verify = true };
	struct tls_conn *c = tls_conn_new(ctx, &cc);
	struct peer *p = peer_new(sctx);
	const struct tls_record *r;
	time_t now = time(NULL);

	CHECK(!tls_conn_is_open(c));
	CHECK_EQ(tls_conn_read(c, (char[4]){0}, 4), -ENOTCONN);
	CHECK_EQ(run_handshake(c, p, 0), TLS_OK);
	CHECK_EQ(p->done, 1);
	CHECK(tls_conn_is_open(c));
	r = tls_conn_record(c);
	CHECK_STREQ(r->version, "TLSv1.3");
	CHECK(strcasecmp(r->group, "x25519") == 0);
	CHECK_STREQ(r->cipher, "TLS_AES_256_GCM_SHA384");
	CHECK(!r->resumed);
	CHECK(r->verify_enforced);
	CHECK_EQ(r->verify, TLS_VERIFY_OK);
	CHECK_STREQ(r->reason, "ok");
	CHECK_STREQ(r->subject, "CN=mx.test");
	CHECK_STREQ(r->issuer, "CN=Test CA 1");
	CHECK(r->not_after > now + 364 * 86400 && r->not_after < now + 366 * 86400);
	CHECK_EQ(strlen(r->not_after_iso), 20);
	CHECK(r->handshake_us > 0 && r->handshake_us < 10000000);
	/* the server saw our SNI */
	CHECK_STREQ(SSL_get_servername(p->ssl, TLSEXT_NAMETYPE_host_name), "mx.test");
	printf("tls13: version=%s cipher=%s group=%s us=%llu not_after=%s\n",
		r->version, r->cipher, r->group, (unsigned long long)r->handshake_us,
		r->not_after_iso);
	tls_conn_free(c);
	peer_free(p);
	SSL_CTX_free(sctx);
	tls_ctx_free(ctx);
}

static uint64_t fake_clock;

static uint64_t
fake_now(void *arg)
{
	(void)arg;
	return fake_clock += 250;
}

/* host handling: chain-only verify, address literals, limits, own clock */
static void
test_hosts_and_clock(void)
{
	struct tls_ctx_conf conf = { .ca_file = ca_path, .now_us = fake_now };
	char err[128], longhost[300];
	struct tls_ctx *ctx = tls_ctx_new(&conf, err, sizeof(err));
	SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
	struct tls_conn_conf cc = { .host = "127.0.0.1" };
	struct tls_conn *c;
	struct peer *p;
	struct tls_record rec;

	/* verify on, no host: the chain alone decides */
	CHECK_EQ(connect_once(ctx, sctx, NULL, true, NULL, &rec, false), TLS_OK);
	CHECK_EQ(rec.verify, TLS_VERIFY_OK);
	/* one clock read at the start, one at the end */
	CHECK_EQ(rec.handshake_us, 250);
	/* an address literal: no SNI, checked against IP SANs (none here) */
	c = tls_conn_new(ctx, &cc);
	p = peer_new(sctx);
	CHECK_EQ(run_handshake(c, p, 0), TLS_OK);
	CHECK(SSL_get_servername(p->ssl, TLSEXT_NAMETYPE_host_name) == NULL);
	CHECK_EQ(tls_conn_record(c)->verify, TLS_VERIFY_NAME_MISMATCH);
	tls_conn_free(c);
	peer_free(p);
	/* too long a host name is refused */
	memset(longhost, 'a', sizeof(longhost) - 1);
	longhost[sizeof(longhost) - 1] = '\0';
	cc.host = longhost;
	CHECK(tls_conn_new(ctx, &cc) == NULL);
	SSL_CTX_free(sctx);
	tls_ctx_free(ctx);
}

static void
test_verify_reasons(void)
{
	static const struct {
		const struct cred *cr;
		enum tls_verify_reason want;
	} cases[] = {
		{ &expired, TLS_VERIFY_EXPIRED },
		{ &notyet, TLS_VERIFY_NOT_YET_VALID },
		{ &selfsigned, TLS_VERIFY_SELF_SIGNED },
		{ &unknownca, TLS_VERIFY_UNKNOWN_CA },
		{ &wrongname, TLS_VERIFY_NAME_MISMATCH },
	};
	struct tls_ctx *ctx = client_ctx(0, 0, NULL);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		SSL_CTX *sctx = srv_ctx(cases[i].cr, TLS1_2_VERSION, 0, NULL);
		struct tls_record rec;
		int rc;

		/* verify on: the handshake fails with the reason */
		rc = connect_once(ctx, sctx, "mx.test", true, NULL, &rec, false);
		CHECK_EQ(rc, -EPROTO);
		CHECK_EQ(rec.verify, cases[i].want);
		CHECK(rec.verify_code != 0);
		CHECK(rec.subject[0] != '\0');
		printf("verify on  %-14s rc=%d reason=\"%s\"\n",
			tls_verify_reason_name(rec.verify), rc, rec.reason);
		/* verify off: it completes and still says what was wrong */
		rc = connect_once(ctx, sctx, "mx.test", false, NULL, &rec, false);
		CHECK_EQ(rc, TLS_OK);
		CHECK_EQ(rec.verify, cases[i].want);
		CHECK(!rec.verify_enforced);
		CHECK_STREQ(rec.version, "TLSv1.3");
		SSL_CTX_free(sctx);
	}
	/* the good certificate against the wrong CA store: unknown CA */
	{
		struct tls_ctx_conf conf = { .ca_file = ca_path };
		char path[64], err[128];
		struct tls_ctx *ctx2;
		SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
		struct tls_record rec;
		FILE *f;
		int fd;

		snprintf(path, sizeof(path), "/tmp/mp_tls_ca2_XXXXXX");
		fd = mkstemp(path);
		f = fdopen(fd, "w");
		PEM_write_X509(f, ca2.cert);
		fclose(f);
		conf.ca_file = path;
		ctx2 = tls_ctx_new(&conf, err, sizeof(err));
		CHECK(ctx2 != NULL);
		CHECK_EQ(connect_once(ctx2, sctx, "mx.test", true, NULL, &rec, false), -EPROTO);
		CHECK_EQ(rec.verify, TLS_VERIFY_UNKNOWN_CA);
		/* right CA, right name */
		CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, NULL, &rec, false), TLS_OK);
		CHECK_EQ(rec.verify, TLS_VERIFY_OK);
		tls_ctx_free(ctx2);
		SSL_CTX_free(sctx);
		unlink(path);
	}
	for (int r = 0; r < TLS_VERIFY_LAST; r++)
		CHECK(strcmp(tls_verify_reason_name(r), "?") != 0);
	CHECK_STREQ(tls_verify_reason_name(TLS_VERIFY_LAST), "?");
	CHECK_STREQ(tls_verify_reason_name(TLS_VERIFY_NAME_MISMATCH), "name-mismatch");
	tls_ctx_free(ctx);
}

static void
test_protocol_version_floor(void)
{
	SSL_CTX *sctx = srv_ctx(&good, TLS1_VERSION, TLS1_VERSION, "DEFAULT:@SECLEVEL=0");
	struct tls_ctx *ctx = client_ctx(0, 0, NULL);
	struct tls_ctx *old = client_ctx(0, TLS_VERSION_1_0, "DEFAULT:@SECLEVEL=0");
	struct tls_record rec;

	CHECK_EQ(connect_once(ctx, sctx, "mx.test", false, NULL, &rec, false), -EPROTO);
	CHECK_EQ(rec.verify, TLS_VERIFY_PROTOCOL_VERSION);
	printf("tls1.0 server: reason=\"%s\"\n", rec.reason);
	/* control: the same server works for a client that allows TLS 1.0 */
	CHECK(old != NULL);
	if (old != NULL) {
		CHECK_EQ(connect_once(old, sctx, "mx.test", true, NULL, &rec, false), TLS_OK);
		CHECK_STREQ(rec.version, "TLSv1");
	}
	tls_ctx_free(old);
	tls_ctx_free(ctx);
	SSL_CTX_free(sctx);
}

/* One handshake with tls_conn_conf.opportunistic set as given. */
static int
connect_opp(struct tls_ctx *ctx, SSL_CTX *sctx, bool opportunistic, struct tls_record *rec)
{
	struct tls_conn_conf cc = { .host = "mx.test", .opportunistic = opportunistic };
	struct tls_conn *c = tls_conn_new(ctx, &cc);
	struct peer *p = peer_new(sctx);
	int rc;

	CHECK(c != NULL);
	if (c == NULL) {
		peer_free(p);
		return -ENOMEM;
	}
	rc = run_handshake(c, p, 0);
	*rec = *tls_conn_record(c);
	tls_conn_free(c);
	peer_free(p);
	return rc;
}

/*
 * The opportunistic floor: a TLS 1.0-only server gets TLS 1.0 from an
 * opportunistic connection when the floor allows it, never from a
 * required/verify one, whose floor stays min_version; a modern server is
 * unaffected.
 */
static void
test_opportunistic_floor(void)
{
	SSL_CTX *old_srv = srv_ctx(&good, TLS1_VERSION, TLS1_VERSION, "DEFAULT:@SECLEVEL=0");
	SSL_CTX *new_srv = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
	struct tls_ctx_conf conf = { .ca_file = ca_path, .opportunistic_min_version = TLS_VERSION_1_0 };
	struct tls_ctx_conf bad = { .ca_file = ca_path, .opportunistic_min_version = 0x0300 };
	char err[256] = "";
	struct tls_ctx *low = tls_ctx_new(&conf, err, sizeof(err));
	struct tls_ctx *dflt = client_ctx(0, 0, NULL);
	struct tls_record rec;

	CHECK(low != NULL);
	CHECK(tls_ctx_new(&bad, err, sizeof(err)) == NULL);	/* SSL 3.0: refused */
	CHECK(strstr(err, "opportunistic") != NULL);
	/* default floor (= min_version 1.2): no TLS with the old server */
	CHECK_EQ(connect_opp(dflt, old_srv, true, &rec), -EPROTO);
	CHECK_EQ(rec.verify, TLS_VERIFY_PROTOCOL_VERSION);
	if (low != NULL) {
		CHECK_EQ(connect_opp(low, old_srv, true, &rec), TLS_OK);
		CHECK_STREQ(rec.version, "TLSv1");
		/* required/verify keep min_version */
		CHECK_EQ(connect_opp(low, old_srv, false, &rec), -EPROTO);
		CHECK_EQ(rec.verify, TLS_VERIFY_PROTOCOL_VERSION);
		/* a modern server still gets the best */
		CHECK_EQ(connect_opp(low, new_srv, true, &rec), TLS_OK);
		CHECK_STREQ(rec.version, "TLSv1.3");
	}
	CHECK_EQ(tls_version_parse("1.0"), TLS_VERSION_1_0);
	CHECK_EQ(tls_version_parse("1.3"), TLS_VERSION_1_3);
	CHECK_EQ(tls_version_parse("1.4"), -EINVAL);
	CHECK_EQ(tls_version_parse(NULL), -EINVAL);
	tls_ctx_free(low);
	tls_ctx_free(dflt);
	SSL_CTX_free(old_srv);
	SSL_CTX_free(new_srv);
}

static void
test_resume_tls13(void)
{
	struct tls_ctx *ctx = client_ctx(0, 0, NULL);
	SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
	struct tls_cache_stats st;
	struct tls_record rec;

	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "mx.test:25", &rec, true), TLS_OK);
	CHECK(!rec.resumed);
	tls_ctx_cache_stats(ctx, &st);
	/* OpenSSL servers send two tickets after a full handshake: both kept */
	CHECK_EQ(st.stores, 2);
	CHECK_EQ(st.entries, 2);
	CHECK_EQ(st.misses, 1);
	/* the next two connections resume, each on its own single-use ticket
	 * (their new tickets are not read) */
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "mx.test:25", &rec, false), TLS_OK);
		CHECK(rec.resumed);
		CHECK_STREQ(rec.version, "TLSv1.3");
		CHECK_EQ(rec.verify, TLS_VERIFY_OK);
		CHECK_STREQ(rec.subject, "CN=mx.test");
		tls_ctx_cache_stats(ctx, &st);
		CHECK_EQ(st.hits, (uint64_t)i + 1);
		CHECK_EQ(st.entries, 1u - (unsigned)i);   /* tickets are single use */
	}
	/* then: miss, full handshake; other key: miss */
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "mx.test:25", &rec, true), TLS_OK);
	CHECK(!rec.resumed);
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "mx.test:587", &rec, false), TLS_OK);
	CHECK(!rec.resumed);
	/* a session made with verify off on a bad cert is not used by a verifying conn */
	{
		SSL_CTX *bad = srv_ctx(&wrongname, TLS1_2_VERSION, 0, NULL);

		CHECK_EQ(connect_once(ctx, bad, "mx.test", false, "bad:25", &rec, true), TLS_OK);
		CHECK_EQ(rec.verify, TLS_VERIFY_NAME_MISMATCH);
		CHECK_EQ(connect_once(ctx, bad, "mx.test", true, "bad:25", &rec, false), -EPROTO);
		CHECK(!rec.resumed);
		CHECK_EQ(rec.verify, TLS_VERIFY_NAME_MISMATCH);
		tls_ctx_cache_stats(ctx, &st);
		CHECK_EQ(st.rejected, 2);   /* both unverified tickets passed over */
		/* but an opportunistic conn may resume it, and still reports the reason */
		CHECK_EQ(connect_once(ctx, bad, "mx.test", false, "bad:25", &rec, false), TLS_OK);
		CHECK(rec.resumed);
		CHECK_EQ(rec.verify, TLS_VERIFY_NAME_MISMATCH);
		SSL_CTX_free(bad);
	}
	tls_ctx_free(ctx);
	SSL_CTX_free(sctx);
}

static void
test_resume_tls12(void)
{
	struct tls_ctx *ctx = client_ctx(0, 0, NULL);
	SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, TLS1_2_VERSION, NULL);
	struct tls_cache_stats st;
	struct tls_record rec;

	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "mx.test:25", &rec, false), TLS_OK);
	CHECK(!rec.resumed);
	CHECK_STREQ(rec.version, "TLSv1.2");
	CHECK_STREQ(rec.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");
	CHECK(strcasecmp(rec.group, "x25519") == 0);
	tls_ctx_cache_stats(ctx, &st);
	CHECK_EQ(st.entries, 1);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "mx.test:25", &rec, false), TLS_OK);
		CHECK(rec.resumed);
		CHECK_STREQ(rec.version, "TLSv1.2");
		CHECK_EQ(rec.verify, TLS_VERIFY_OK);
	}
	tls_ctx_cache_stats(ctx, &st);
	CHECK_EQ(st.hits, 2);   /* TLS 1.2 sessions are reusable */
	CHECK_EQ(st.entries, 1);
	tls_ctx_free(ctx);
	SSL_CTX_free(sctx);
}

static void
test_cache_bound_and_expiry(void)
{
	struct tls_ctx *ctx = client_ctx(2, 0, NULL);
	SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, TLS1_2_VERSION, NULL);
	struct tls_cache_stats st;
	struct tls_record rec;

	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "a", &rec, false), TLS_OK);
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "b", &rec, false), TLS_OK);
	/* touch a: b becomes least recently used */
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "a", &rec, false), TLS_OK);
	CHECK(rec.resumed);
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "c", &rec, false), TLS_OK);
	tls_ctx_cache_stats(ctx, &st);
	CHECK_EQ(st.capacity, 2);
	CHECK_EQ(st.entries, 2);
	CHECK_EQ(st.evictions, 1);
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "a", &rec, false), TLS_OK);
	CHECK(rec.resumed);
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "c", &rec, false), TLS_OK);
	CHECK(rec.resumed);
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "b", &rec, false), TLS_OK);
	CHECK(!rec.resumed);   /* evicted */
	tls_ctx_free(ctx);
	SSL_CTX_free(sctx);

	/* expiry: the client's session lifetime follows its ctx timeout */
	ctx = client_ctx(4, 0, NULL);
	sctx = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
	SSL_CTX_set_timeout(sctx, 1);   /* TLS 1.3 ticket lifetime hint: 1 s */
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "x", &rec, true), TLS_OK);
	tls_ctx_cache_stats(ctx, &st);
	CHECK_EQ(st.entries, 2);   /* both tickets of the full handshake */
	/* Lets time pass, waits for nothing: the 1 s lifetime (whole seconds)
	 * is over after 2 s, and a loaded machine only sleeps longer. */
	sleep(2);
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, "x", &rec, false), TLS_OK);
	CHECK(!rec.resumed);
	tls_ctx_cache_stats(ctx, &st);
	CHECK_EQ(st.expired, 2);   /* every stale ticket of the key went */
	CHECK_EQ(st.entries, 0);
	tls_ctx_free(ctx);
	SSL_CTX_free(sctx);
}

static void
test_data_fragmented(void)
{
	enum { N = 40000 };
	struct tls_ctx *ctx = client_ctx(0, 0, NULL);
	SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
	struct tls_conn_conf cc = { .host = "mx.test", .verify = true };
	struct tls_conn *c = tls_conn_new(ctx, &cc);
	struct peer *p = peer_new(sctx);
	static unsigned char up[N], down[N], got[N];
	size_t sent = 0, srv_got = 0;
	unsigned char big[100000];
	int guard;

	for (size_t i = 0; i < N; i++) {
		up[i] = (unsigned char)(i * 7 + 1);
		down[i] = (unsigned char)(i * 13 + 5);
	}
	/* handshake with the server's bytes fed one at a time */
	CHECK_EQ(run_handshake(c, p, 1), TLS_OK);
	CHECK_EQ(p->done, 1);
	/* client -> server */
	for (guard = 0; guard < 1000 && (sent < N || srv_got < N); guard++) {
		if (sent < N) {
			ssize_t w = tls_conn_write(c, up + sent, N - sent);

			CHECK(w > 0 || w == -EAGAIN);
			if (w > 0)
				sent += (size_t)w;
		}
		pump(c, p, 1);
		for (;;) {
			int r = SSL_read(p->ssl, got + srv_got, (int)(N - srv_got));

			if (r <= 0)
				break;
			srv_got += (size_t)r;
		}
	}
	CHECK_EQ(srv_got, N);
	CHECK_MEMEQ(got, up, N);
	/* server -> client, one byte per feed */
	CHECK_EQ(SSL_write(p->ssl, down, N), N);
	memset(got, 0, sizeof(got));
	CHECK_EQ(client_read_all(c, p, got, N, 1), N);
	CHECK_MEMEQ(got, down, N);
	/* the feed bound holds */
	CHECK_EQ(tls_conn_feed(c, big, sizeof(big)), TLS_FEED_MAX_DEFAULT);
	CHECK_EQ(tls_conn_feed(c, big, 1), 0);
	tls_conn_free(c);
	peer_free(p);

	/* close_notify both ways */
	c = tls_conn_new(ctx, &cc);
	p = peer_new(sctx);
	CHECK_EQ(run_handshake(c, p, 0), TLS_OK);
	CHECK_EQ(tls_conn_shutdown(c), TLS_OK);
	CHECK_EQ(tls_conn_write(c, "x", 1), -EPIPE);
	pump(c, p, 0);
	CHECK_EQ(SSL_read(p->ssl, got, 10), 0);
	CHECK_EQ(SSL_get_error(p->ssl, 0), SSL_ERROR_ZERO_RETURN);
	SSL_shutdown(p->ssl);
	pump(c, p, 0);
	CHECK_EQ(client_read_all(c, p, got, 1, 0), 0);
	CHECK_EQ(tls_conn_read(c, got, 1), 0);
	tls_conn_free(c);
	peer_free(p);

	/* output bound: writes stop at out_max until the transport drains */
	{
		static unsigned char blob[200000], rx[200000];
		size_t taken = 0, rxn = 0;
		ssize_t w = 0;
		unsigned char chunk[3000];

		for (size_t i = 0; i < sizeof(blob); i++)
			blob[i] = (unsigned char)(i * 31 + 7);
		c = tls_conn_new(ctx, &cc);
		p = peer_new(sctx);
		CHECK_EQ(run_handshake(c, p, 0), TLS_OK);
		for (int i = 0; i < 100 && (w = tls_conn_write(c, blob + taken,
		    sizeof(blob) - taken)) > 0; i++)
			taken += (size_t)w;
		CHECK_EQ(w, -EAGAIN);
		CHECK(taken < sizeof(blob));
		CHECK(tls_conn_out_pending(c) >= TLS_OUT_MAX_DEFAULT);
		CHECK(tls_conn_out_pending(c) < TLS_OUT_MAX_DEFAULT + 17000);
		/* drain with the copying reader, in small chunks */
		for (int i = 0; i < 1000 && tls_conn_out_pending(c) != 0; i++) {
			ssize_t k = tls_conn_out_read(c, chunk, sizeof(chunk));

			CHECK(k > 0);
			BIO_write(p->rb, chunk, (int)k);
		}
		for (int i = 0; i < 100; i++) {
			int r = SSL_read(p->ssl, rx + rxn, (int)(sizeof(rx) - rxn));

			if (r <= 0)
				break;
			rxn += (size_t)r;
		}
		CHECK_EQ(rxn, taken);
		CHECK_MEMEQ(rx, blob, taken);
		CHECK(tls_conn_write(c, blob, 10) == 10);
		tls_conn_free(c);
		peer_free(p);
	}

	/* a corrupted record kills the connection for good */
	{
		unsigned char junk[64];

		c = tls_conn_new(ctx, &cc);
		p = peer_new(sctx);
		CHECK_EQ(run_handshake(c, p, 0), TLS_OK);
		pump(c, p, 0);
		CHECK_EQ(SSL_write(p->ssl, "hello", 5), 5);
		p->plen = (size_t)BIO_read(p->wb, p->pend, sizeof(p->pend));
		CHECK(p->plen > 20);
		p->pend[p->plen - 3] ^= 0x55;   /* flip bits in the GCM tag */
		CHECK_EQ(client_read_all(c, p, junk, 5, 0), 0);
		CHECK_EQ(tls_conn_read(c, junk, 5), -EPROTO);
		CHECK_EQ(tls_conn_write(c, "x", 1), -EPROTO);
		CHECK(tls_conn_out_pending(c) > 0);   /* the bad_record_mac alert */
		tls_conn_free(c);
		peer_free(p);
	}

	/* transport ends mid-handshake */
	c = tls_conn_new(ctx, &cc);
	CHECK_EQ(tls_conn_handshake(c), TLS_WANT_IO);
	CHECK(tls_conn_out_pending(c) > 0);
	tls_conn_feed_eof(c);
	CHECK_EQ(tls_conn_handshake(c), -ECONNRESET);
	CHECK_EQ(tls_conn_feed(c, "x", 1), -EPIPE);
	tls_conn_free(c);

	SSL_CTX_free(sctx);
	tls_ctx_free(ctx);
}

/* --- async pause --- */

/* The emulated provider (mp_test_async.h) in callback mode, signalled by
 * the test itself, pauses only the target conn's handshake. */
struct pause_state {
	struct tls_conn *target;
	struct mp_async_prov prov;
};

static void
pause_hook(struct tls_conn *c, void *arg)
{
	struct pause_state *ps = arg;

	if (c == ps->target)
		mp_async_prov_pause(&ps->prov);
}

static void
test_async_pause(void)
{
	struct pause_state ps = { 0 };
	struct tls_ctx_conf conf = {
		.ca_file = ca_path,
		.test_pause_hook = pause_hook,
		.test_pause_arg = &ps,
	};
	char err[128], ev[8][16], buf[8];
	int nev = 0;
	struct tls_ctx *ctx = tls_ctx_new(&conf, err, sizeof(err));
	SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
	struct tls_conn_conf cca = { .host = "mx.test", .verify = true, .owner = &ps, .id = 1 };
	struct tls_conn_conf ccb = { .host = "mx.test", .verify = true, .id = 2 };
	struct tls_conn *a = tls_conn_new(ctx, &cca);
	struct tls_conn *b = tls_conn_new(ctx, &ccb);
	struct peer *pa = peer_new(sctx), *pb = peer_new(sctx);
	struct tls_conn *ready[4];

	ps.target = a;
	CHECK_EQ(run_handshake(a, pa, 0), TLS_PAUSED);
	if (atomic_load(&ps.prov.paused))
		snprintf(ev[nev++], sizeof(ev[0]), "A:paused");
	CHECK(ps.prov.cb != NULL);
	CHECK_EQ(tls_ctx_ready_drain(ctx, ready, 4), 0);
	{
		int fds[4];

		CHECK_EQ(tls_conn_async_fds(a, fds, 4), 0);
	}

	/* B does its whole handshake and a data exchange meanwhile */
	if (run_handshake(b, pb, 0) == TLS_OK)
		snprintf(ev[nev++], sizeof(ev[0]), "B:done");
	CHECK_EQ(tls_conn_write(b, "ping", 4), 4);
	pump(b, pb, 0);
	CHECK_EQ(SSL_read(pb->ssl, buf, sizeof(buf)), 4);
	CHECK_EQ(SSL_write(pb->ssl, "pong", 4), 4);
	memset(buf, 0, sizeof(buf));
	if (client_read_all(b, pb, (unsigned char *)buf, 4, 0) == 4 && memcmp(buf, "pong", 4) == 0)
		snprintf(ev[nev++], sizeof(ev[0]), "B:data");
	CHECK(!tls_conn_is_open(a));

	/* the provider signals completion; the worker drains the ready list */
	mp_async_prov_signal(&ps.prov);
	mp_async_prov_signal(&ps.prov);   /* a duplicate signal queues it once */
	CHECK_EQ(tls_ctx_ready_drain(ctx, ready, 4), 1);
	if (ready[0] == a) {
		snprintf(ev[nev++], sizeof(ev[0]), "A:ready");
		CHECK(tls_conn_owner(ready[0]) == &ps);
	}
	CHECK_EQ(tls_ctx_ready_drain(ctx, ready, 4), 0);
	if (run_handshake(a, pa, 0) == TLS_OK)
		snprintf(ev[nev++], sizeof(ev[0]), "A:done");
	CHECK_EQ(tls_conn_record(a)->verify, TLS_VERIFY_OK);
	CHECK_EQ(tls_conn_write(a, "hi", 2), 2);
	pump(a, pa, 0);
	CHECK_EQ(SSL_read(pa->ssl, buf, sizeof(buf)), 2);

	CHECK_EQ(nev, 5);
	if (nev == 5) {
		CHECK_STREQ(ev[0], "A:paused");
		CHECK_STREQ(ev[1], "B:done");
		CHECK_STREQ(ev[2], "B:data");
		CHECK_STREQ(ev[3], "A:ready");
		CHECK_STREQ(ev[4], "A:done");
	}
	tls_conn_free(a);
	tls_conn_free(b);
	peer_free(pa);
	peer_free(pb);

	/* a conn freed while queued is not handed out */
	ps = (struct pause_state){ 0 };
	a = tls_conn_new(ctx, &cca);
	pa = peer_new(sctx);
	ps.target = a;
	CHECK_EQ(run_handshake(a, pa, 0), TLS_PAUSED);
	mp_async_prov_signal(&ps.prov);
	CHECK_EQ(run_handshake(a, pa, 0), TLS_OK);   /* resumed without draining */
	tls_conn_free(a);
	peer_free(pa);
	CHECK_EQ(tls_ctx_ready_drain(ctx, ready, 4), 0);

	SSL_CTX_free(sctx);
	tls_ctx_free(ctx);
}

/* --- idle memory --- */

static size_t
je_allocated(void)
{
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch), allocated = 0;

	mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	mallctl("epoch", &epoch, &sz, &epoch, sz);
	sz = sizeof(allocated);
	if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
		return 0;
	return allocated;
}

static void
test_idle_memory(void)
{
	enum { N = 1000 };
	struct tls_ctx *ctx = client_ctx(0, 0, NULL);
	SSL_CTX *sctx = srv_ctx(&good, TLS1_2_VERSION, 0, NULL);
	struct tls_conn_conf cc = { .host = "mx.test", .verify = true };
	struct tls_conn **conns = calloc(N, sizeof(*conns));
	struct tls_record rec;
	size_t before, after, per;
	int ok = 0, idle_bufs = 0;
	struct timespec t0, t1;

	/* warm up process-wide state (async job pool, error strings, caches) */
	CHECK_EQ(connect_once(ctx, sctx, "mx.test", true, NULL, &rec, true), TLS_OK);
	before = je_allocated();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < N; i++) {
		struct peer *p = peer_new(sctx);
		unsigned char b[8];

		conns[i] = tls_conn_new(ctx, &cc);
		if (run_handshake(conns[i], p, 0) == TLS_OK)
			ok++;
		pump(conns[i], p, 0);
		if (tls_conn_read(conns[i], b, sizeof(b)) != -EAGAIN)
			ok--;
		if (tls_conn_out_pending(conns[i]) != 0)
			idle_bufs++;
		peer_free(p);   /* the server side is not measured */
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	after = je_allocated();
	CHECK_EQ(ok, N);
	CHECK_EQ(idle_bufs, 0);
	CHECK(after > before);
	per = after > before ? (after - before) / N : 0;
	printf("idle memory: %zu bytes per idle client session (%d sessions, jemalloc stats.allocated %zu -> %zu, %.0f handshakes/s)\n",
		per, N, before, after,
		N / ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9));
	CHECK(per > 1024);          /* the measurement sees the sessions at all */
	CHECK(per < 64 * 1024);
	for (int i = 0; i < N; i++)
		tls_conn_free(conns[i]);
	free(conns);
	CHECK(je_allocated() < before + N * 256);   /* and gives it back */
	SSL_CTX_free(sctx);
	tls_ctx_free(ctx);
}

/* OpenSSL's allocations land in jemalloc (also in the ASan build). */
static void
test_alloc_hookup(void)
{
	size_t before = je_allocated(), after;
	void *p = OPENSSL_malloc(8 << 20);

	CHECK(p != NULL);
	after = je_allocated();
	CHECK(after >= before + (8 << 20));
	CHECK(sallocx(p, 0) >= (size_t)8 << 20);
	p = OPENSSL_realloc(p, 16 << 20);
	CHECK(je_allocated() >= before + (16 << 20));
	OPENSSL_free(p);
	CHECK(je_allocated() < before + (1 << 20));
}

int
main(void)
{
	struct tls_ctx_conf bad = { .ciphers = "NO-SUCH-CIPHER" };
	char err[256] = "";

	/* before anything else touches OpenSSL */
	CHECK_EQ(tls_alloc_init(), 0);
	test_alloc_hookup();
	pki_init();
	CHECK(tls_ctx_new(&bad, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "cipher") != NULL);

	test_tls13_record_fields();
	test_hosts_and_clock();
	test_verify_reasons();
	test_protocol_version_floor();
	test_opportunistic_floor();
	test_resume_tls13();
	test_resume_tls12();
	test_cache_bound_and_expiry();
	test_data_fragmented();
	test_async_pause();
	test_idle_memory();

	pki_fini();
	return mp_test_result("test_tls");
}
