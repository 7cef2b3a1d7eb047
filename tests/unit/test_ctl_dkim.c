/*
 * ctl_dkim: keys per signing domain (limits, lookups), the signer thread
 * pool (results equal to signing in place, released jobs skipped and
 * freed without a callback, a queue freed with jobs at a thread) and an
 * order run that signs: the session's body read says -EAGAIN until the
 * pool's result is polled, then gives the DKIM-Signature headers in front
 * of exactly the message that was prepared. Keys are made here.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl_dispatch.h"
#include "ctl_dkim.h"
#include "mp_test.h"

static char dir[] = "/tmp/mp-test-ctl-dkim.XXXXXX";
static char err[512];

static const char *
path_of(const char *name)
{
	static char buf[4][256];
	static int i;
	char *p = buf[i++ % 4];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static void
write_key(const char *name, const char *alg, int bits)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
	EVP_PKEY *k = NULL;
	FILE *f;

	if (c == NULL || EVP_PKEY_keygen_init(c) != 1 ||
	    (bits > 0 && EVP_PKEY_CTX_set_rsa_keygen_bits(c, bits) != 1) ||
	    EVP_PKEY_keygen(c, &k) != 1 || (f = fopen(path_of(name), "w")) == NULL)
		abort();
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(c);
}

static void
test_keys(struct ctl_dkim *d)
{
	const struct msg_dkim_key *k[MSG_DKIM_MAX_SIGS];
	char spec[600];

	snprintf(spec, sizeof(spec), "rsa1 %s, ed1 %s", path_of("rsa.pem"), path_of("ed.pem"));
	CHECK_EQ(ctl_dkim_add_keys(d, "Sender.Test", spec, err, sizeof(err)), 0);
	CHECK_EQ(ctl_dkim_keys(d, "sender.test", k), 2);
	CHECK_EQ(msg_dkim_key_alg(k[0]), MSG_DKIM_RSA_SHA256);
	CHECK_EQ(msg_dkim_key_alg(k[1]), MSG_DKIM_ED25519_SHA256);
	CHECK_EQ(ctl_dkim_keys(d, "SENDER.test", k), 2);
	CHECK_EQ(ctl_dkim_keys(d, "other.test", k), 0);
	CHECK_EQ(ctl_dkim_keys(d, "test", k), 0);
	/* a third key, the same selector twice, a missing file */
	CHECK_EQ(ctl_dkim_add_key(d, "sender.test", "x", path_of("rsa.pem"), err, sizeof(err)),
		-EINVAL);
	CHECK(strstr(err, "more than 2 keys") != NULL);
	CHECK_EQ(ctl_dkim_add_key(d, "two.test", "s", path_of("rsa.pem"), err, sizeof(err)), 0);
	CHECK_EQ(ctl_dkim_add_key(d, "two.test", "S", path_of("ed.pem"), err, sizeof(err)),
		-EINVAL);
	CHECK(strstr(err, "given twice") != NULL);
	CHECK_EQ(ctl_dkim_add_key(d, "two.test", "t", path_of("none.pem"), err, sizeof(err)),
		-EINVAL);
	CHECK(strstr(err, "none.pem") != NULL);
	CHECK_EQ(ctl_dkim_add_keys(d, "two.test", "t", err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_dkim_add_keys(d, "two.test", " , ", err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_dkim_ndomains(d), 2);
	CHECK_STREQ(ctl_dkim_domain(d, 0), "sender.test");
	CHECK_STREQ(ctl_dkim_domain(d, 1), "two.test");

	CHECK(ctl_dkim_domain_ok("example.com"));
	CHECK(ctl_dkim_domain_ok("a-b.c9.example"));
	CHECK(!ctl_dkim_domain_ok("localhost"));
	CHECK(!ctl_dkim_domain_ok("-a.example"));
	CHECK(!ctl_dkim_domain_ok("a-.example"));
	CHECK(!ctl_dkim_domain_ok("a..example"));
	CHECK(!ctl_dkim_domain_ok("a_b.example"));
	CHECK(!ctl_dkim_domain_ok("example.com."));

	CHECK_EQ(ctl_dkim_start(d, 0, NULL, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_dkim_start(d, 2, "0-x", err, sizeof(err)), -EINVAL);
	CHECK(ctl_signq_new(d, 0) == NULL);	/* no threads yet */
}

/* Prepared data for message i: its own body and To. */
static void
prepare(const struct msg_dkim_key *const *k, unsigned i, struct msg_dkim_prepared *p)
{
	struct msg_dkim_opts o = { .keys = k, .nkeys = 2, .t = 1700000000 };
	struct msg_dkim_body b;
	uint8_t bh[MSG_DKIM_HASH_LEN];
	char hdr[256], body[64];

	snprintf(hdr, sizeof(hdr), "From: a@sender.test\r\nTo: u%u@x.test\r\n"
		"Subject: n %u\r\n\r\n", i, i);
	snprintf(body, sizeof(body), "body %u\r\n", i);
	if (msg_dkim_body_init(&b) != 0 || msg_dkim_body_update(&b, body, strlen(body)) != 0 ||
	    msg_dkim_body_final(&b, bh) != 0 ||
	    msg_dkim_prepare(p, hdr, strlen(hdr), bh, &o, err, sizeof(err)) != 0)
		abort();
}

#define NJOBS 200

struct slot {
	struct ctl_sign_job *j;
	int calls;
	int released;
};

static void
on_done(void *arg, struct ctl_sign_job *j)
{
	struct slot *s = arg;

	CHECK(s->j == j);
	s->calls++;
}

static void
test_pool(struct ctl_dkim *d)
{
	const struct msg_dkim_key *k[MSG_DKIM_MAX_SIGS];
	static struct slot slot[NJOBS];
	struct ctl_dkim_stats st;
	struct ctl_signq *q;
	struct msg_dkim_prepared p;
	unsigned want = 0, got = 0;
	time_t end;

	CHECK_EQ(ctl_dkim_keys(d, "sender.test", k), 2);
	CHECK_EQ(ctl_dkim_start(d, 2, NULL, err, sizeof(err)), 0);
	CHECK_EQ(ctl_dkim_start(d, 1, NULL, err, sizeof(err)), -EALREADY);
	q = ctl_signq_new(d, 1);
	CHECK(q != NULL && ctl_signq_fd(q) >= 0);
	for (unsigned i = 0; i < NJOBS; i++) {
		prepare(k, i, &p);
		slot[i].j = ctl_signq_submit(q, &p, on_done, &slot[i]);
		CHECK(slot[i].j != NULL);
		if (i % 5 == 0) {
			ctl_sign_job_release(slot[i].j);	/* the session ended */
			slot[i].released = 1;
		} else {
			want++;
		}
	}
	CHECK_EQ(ctl_signq_inflight(q), NJOBS);
	end = time(NULL) + 30;
	while (ctl_signq_inflight(q) != 0 && time(NULL) < end) {
		got += ctl_signq_poll(q);
		usleep(1000);
	}
	CHECK_EQ(ctl_signq_inflight(q), 0);
	CHECK_EQ(got, want);
	for (unsigned i = 0; i < NJOBS; i++) {
		const char *sig, *why, *sig2, *why2;
		struct ctl_sign_job *now;
		ssize_t n;

		if (slot[i].released) {
			CHECK_EQ(slot[i].calls, 0);
			continue;
		}
		CHECK_EQ(slot[i].calls, 1);
		n = ctl_sign_job_result(slot[i].j, &sig, &why);
		prepare(k, i, &p);
		now = ctl_sign_now(&p);
		CHECK(now != NULL);
		CHECK_EQ(ctl_sign_job_result(now, &sig2, &why2), n);
		CHECK(n > 0 && memcmp(sig, sig2, (size_t)n) == 0);
		CHECK(strncmp(sig, "DKIM-Signature: v=1; a=rsa-sha256;", 34) == 0);
		CHECK(strstr(sig, "\r\nDKIM-Signature: v=1; a=ed25519-sha256;") != NULL);
		ctl_sign_job_release(now);
		ctl_sign_job_release(slot[i].j);
	}
	ctl_dkim_stats(d, &st);
	CHECK_EQ(st.signed_ok + st.skipped, NJOBS);
	CHECK_EQ(st.sign_failed, 0);
	CHECK_EQ(st.threads, 2);

	/* freed with jobs still at the threads (released, as a backend does
	 * with its orders' jobs before it frees the queue): it waits for them */
	for (unsigned i = 0; i < 50; i++) {
		struct ctl_sign_job *j;

		prepare(k, i, &p);
		j = ctl_signq_submit(q, &p, on_done, &slot[i]);
		CHECK(j != NULL);
		ctl_sign_job_release(j);
	}
	CHECK_EQ(ctl_signq_free(q, 30000), 0);
}

/* An order whose campaign signs: -EAGAIN until the pool's result is in. */
static void
test_order_run(struct ctl_dkim *d)
{
	struct msg_template_spec spec = {
		.from_addr = "news@sender.test", .subject = "Hi {{first}}",
		.text = "Hello {{first}}\n.\n",
	};
	const char *names[] = { "first" }, *values[] = { "Ann" };
	size_t lens[] = { 3 };
	struct ctl_campaign *c;
	struct ctl_order *o;
	struct ctl_order_run run;
	struct smtp_config base;
	struct smtp_txn txn;
	struct mps_req req;
	struct ctl_signq *q;
	char out[16384];
	size_t len = 0;
	ssize_t n;
	int rounds = 0;

	c = ctl_campaign_new("c-1", "news@sender.test", &spec, err, sizeof(err));
	CHECK(c != NULL);
	c->ndkim = (unsigned)ctl_dkim_keys(d, "sender.test", c->dkim);
	CHECK_EQ(c->ndkim, 2);
	o = ctl_order_new(1);
	o->msgs[o->n_msgs++] = ctl_msg_new(c, "ann@x.test", names, values, lens, 1);
	q = ctl_signq_new(d, 0);
	CHECK(q != NULL);
	smtp_config_defaults(&base);
	ctl_order_run_init(&run, o, &base, &req);
	CHECK(req.core == &run.core);
	ctl_order_run_set_signq(&run, q);
	CHECK_EQ(ctl_order_run_next_txn(&run, &txn), 0);
	CHECK_EQ(txn.body.open(txn.body.src, 0), 0);
	CHECK_EQ(txn.body.read(txn.body.src, out, sizeof(out)), -EAGAIN);
	while (ctl_signq_poll(q) == 0 && rounds++ < 30000)
		usleep(1000);
	CHECK(run.sig_wait == 0);
	while ((n = txn.body.read(txn.body.src, out + len, 100)) > 0)
		len += (size_t)n;
	CHECK_EQ(n, 0);
	out[len] = '\0';
	CHECK(strncmp(out, "DKIM-Signature: v=1; a=rsa-sha256;", 34) == 0);
	CHECK(strstr(out, "\r\nDKIM-Signature: v=1; a=ed25519-sha256;") != NULL);
	CHECK(strstr(out, "\r\nSubject: Hi Ann\r\n") != NULL);
	/* opened again (recipients split): same Date, same signature, no new job */
	{
		char again[16384];
		size_t l2 = 0;

		CHECK_EQ(txn.body.open(txn.body.src, 0), 0);
		while ((n = txn.body.read(txn.body.src, again + l2, 1000)) > 0)
			l2 += (size_t)n;
		CHECK(l2 == len && memcmp(again, out, len) == 0);
		CHECK_EQ(ctl_signq_inflight(q), 0);
	}
	/* a session that ends while its signature is made releases it */
	CHECK_EQ(ctl_order_run_next_txn(&run, &txn), -ENOENT);
	run.cur = 0;
	run.dkim_msg = 1;	/* as if another message: a fresh job */
	CHECK_EQ(txn.body.open(&run, 0), 0);
	CHECK_EQ(ctl_signq_inflight(q), 1);
	ctl_order_run_fini(&run);
	CHECK_EQ(ctl_signq_free(q, 30000), 0);
	ctl_order_free(o);
	ctl_campaign_unref(c);
}

int
main(void)
{
	struct ctl_dkim *d;

	if (mkdtemp(dir) == NULL)
		return 1;
	write_key("rsa.pem", "RSA", 2048);
	write_key("ed.pem", "ED25519", 0);
	d = ctl_dkim_new();
	CHECK(d != NULL);
	test_keys(d);
	test_pool(d);
	test_order_run(d);
	ctl_dkim_free(d);
	unlink(path_of("rsa.pem"));
	unlink(path_of("ed.pem"));
	rmdir(dir);
	return mp_test_result("ctl_dkim");
}
