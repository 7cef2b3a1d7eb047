/*
 * msg_dkim_ unit tests: relaxed canonicalisation against the RFC 6376
 * 3.4.5 example and hand-made vectors; the streaming body hash against a
 * whole-buffer reference that applies the RFC steps one after the other,
 * for every chunk size and for random bodies; key loading and refusals
 * (keys made here with EVP_PKEY_keygen in a temp dir); TXT records; h=
 * selection and the signature over a hand-written header block checked
 * with OpenSSL's verify (the data to sign written out by hand); the
 * prepare/sign split against the one-call path; bounds and errors.
 * Independent verification of whole messages is dkim_verify.py's job.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "msg.h"
#include "msg_dkim.h"
#include "mp_test.h"

static char err[512];
static char dir[] = "/tmp/mp-dkim-XXXXXX";

static void
sha256(const void *p, size_t n, uint8_t out[32])
{
	unsigned int len = 32;

	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1)
		abort();
}

static void
body_hash(const char *s, size_t n, size_t chunk, uint8_t bh[32])
{
	struct msg_dkim_body b;

	CHECK_EQ(msg_dkim_body_init(&b), 0);
	for (size_t i = 0; i < n; i += chunk)
		CHECK_EQ(msg_dkim_body_update(&b, s + i, n - i < chunk ? n - i : chunk), 0);
	CHECK_EQ(msg_dkim_body_final(&b, bh), 0);
}

/* bh of s must be the SHA-256 of canon */
static bool
body_is(const char *s, const char *canon)
{
	uint8_t got[32], want[32];

	body_hash(s, strlen(s), strlen(s) + 1, got);
	sha256(canon, strlen(canon), want);
	if (memcmp(got, want, 32) != 0) {
		fprintf(stderr, "body hash mismatch for \"%s\"\n", s);
		return false;
	}
	return true;
}

static void
test_canon_header(void)
{
	char out[256];

	static const struct { const char *in, *want; } v[] = {
		/* RFC 6376 3.4.5 */
		{ "A: X", "a:X" },
		{ "B : Y\t\r\n\tZ  ", "b:Y Z" },
		/* 3.4.2's own example, tabs, leading and trailing WSP, folds */
		{ "SUBJect: AbC", "subject:AbC" },
		{ "To:\t  a  \t b\r\n  c \t", "to:a b c" },
		{ "X-Empty:", "x-empty:" },
		{ "X-E: \r\n ", "x-e:" },
		{ "K: a:b: c", "k:a:b: c" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		CHECK_EQ(msg_dkim_canon_header(v[i].in, strlen(v[i].in), out, sizeof(out)),
			strlen(v[i].want));
		CHECK_STREQ(out, v[i].want);
	}
	CHECK_EQ(msg_dkim_canon_header("no colon", 8, out, sizeof(out)), -EINVAL);
	CHECK_EQ(msg_dkim_canon_header("Subject: long", 13, out, 8), -ENOSPC);
}

static void
test_canon_body(void)
{
	/* RFC 6376 3.4.5 */
	CHECK(body_is(" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"));
	/* an empty body, or one of empty lines, is empty (3.4.4) */
	CHECK(body_is("", ""));
	CHECK(body_is("\r\n", ""));
	CHECK(body_is("\r\n\r\n\r\n", ""));
	CHECK(body_is("  \r\n\t\r\n \t \r\n", ""));
	/* no CRLF at the end: one is added; trailing empty lines go */
	CHECK(body_is("abc", "abc\r\n"));
	CHECK(body_is("abc  ", "abc\r\n"));
	CHECK(body_is("a\r\n\r\nb\r\n\r\n", "a\r\n\r\nb\r\n"));
	CHECK(body_is("a\r\n \r\nb", "a\r\n\r\nb\r\n"));
	/* WSP: one SP inside and at the start of a line, none at its end */
	CHECK(body_is("\t\tx\t y  \r\n", " x y\r\n"));
	/* a CR not followed by LF is content, and so is a lone LF */
	CHECK(body_is("a\rb\r\n", "a\rb\r\n"));
	CHECK(body_is("a \r b\r\n", "a \r b\r\n"));
	CHECK(body_is("abc\r", "abc\r\r\n"));
	CHECK(body_is("a\nb\r\n", "a\nb\r\n"));
	CHECK(body_is("\r\r\n", "\r\r\n"));
}

/*
 * The RFC's steps in order over a whole buffer, for comparison: (a) on
 * every line (CRLF-separated; the last one may lack CRLF) drop the WSP
 * at its end and reduce WSP runs to one SP, (b) drop the empty lines at
 * the end, (c) add CRLF to a non-empty body not ending in one.
 */
static size_t
ref_canon(const char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;

	while (i < n) {
		size_t e = i, start = o;

		while (e < n && !(in[e] == '\r' && e + 1 < n && in[e + 1] == '\n'))
			e++;
		for (size_t k = i; k < e; k++) {
			bool w = in[k] == ' ' || in[k] == '\t';

			if (w && o > start && out[o - 1] == ' ')
				continue;
			out[o++] = w ? ' ' : in[k];
		}
		while (o > start && out[o - 1] == ' ')
			o--;
		if (e < n) {
			out[o++] = '\r';
			out[o++] = '\n';
			i = e + 2;
		} else {
			i = e;
		}
	}
	while (o >= 2 && out[o - 2] == '\r' && out[o - 1] == '\n' &&
	       (o == 2 || (o >= 4 && out[o - 4] == '\r' && out[o - 3] == '\n')))
		o -= 2;
	if (o > 0 && !(o >= 2 && out[o - 2] == '\r' && out[o - 1] == '\n')) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	return o;
}

static void
test_body_stream(void)
{
	static const char body[] =
		"Dear  Ann,\t\r\n"
		"\r\n"
		"  indented line with   runs of\t\tspace \t \r\n"
		"a bare\rCR and a line\r\n"
		"=E2=82=AC quoted-printable-ish =\r\n"
		"\r\n   \r\n"
		"last line\r\n"
		"\r\n\r\n \r\n\r\n";
	size_t n = sizeof(body) - 1;
	char ref[2 * sizeof(body)];
	uint8_t want[32], got[32];
	bool all = true;

	sha256(ref, ref_canon(body, n, ref), want);
	for (size_t c = 1; c <= n; c++) {
		body_hash(body, n, c, got);
		all &= memcmp(got, want, 32) == 0;
	}
	CHECK(all);

	/* random bodies from a hostile alphabet, random chunking */
	srand(6376);
	all = true;
	for (int iter = 0; iter < 3000; iter++) {
		static const char alpha[] = "ab \t\r\n\r\n";
		char in[200], out[400];
		struct msg_dkim_body b;
		size_t len = (size_t)rand() % sizeof(in), i = 0;

		for (size_t k = 0; k < len; k++)
			in[k] = alpha[rand() % (int)(sizeof(alpha) - 1)];
		sha256(out, ref_canon(in, len, out), want);
		msg_dkim_body_init(&b);
		while (i < len) {
			size_t c = 1 + (size_t)rand() % 7;

			if (c > len - i)
				c = len - i;
			msg_dkim_body_update(&b, in + i, c);
			i += c;
		}
		msg_dkim_body_final(&b, got);
		if (memcmp(got, want, 32) != 0) {
			all = false;
			fprintf(stderr, "random body %d (%zu bytes) differs\n", iter, len);
			break;
		}
	}
	CHECK(all);

	/* misuse */
	{
		struct msg_dkim_body b;

		memset(&b, 0, sizeof(b));
		CHECK_EQ(msg_dkim_body_update(&b, "x", 1), -EINVAL);
		CHECK_EQ(msg_dkim_body_final(&b, got), -EINVAL);
		msg_dkim_body_fini(&b);
		CHECK_EQ(msg_dkim_body_init(&b), 0);
		msg_dkim_body_fini(&b);
		msg_dkim_body_fini(&b);
		CHECK_EQ(msg_dkim_body_update(&b, "x", 1), -EINVAL);
	}
}

/* ---- keys ---- */

static char *
path_of(const char *name)
{
	static char buf[8][256];
	static int i;
	char *p = buf[i++ % 8];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static void
write_key(const char *name, const char *alg, int bits, int primes, bool encrypt,
	bool public)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
	EVP_PKEY *k = NULL;
	FILE *f;

	if (c == NULL || EVP_PKEY_keygen_init(c) != 1)
		abort();
	if (bits > 0 && EVP_PKEY_CTX_set_rsa_keygen_bits(c, bits) != 1)
		abort();
	if (primes > 0 && EVP_PKEY_CTX_set_rsa_keygen_primes(c, primes) != 1)
		abort();
	if (strcmp(alg, "EC") == 0 && EVP_PKEY_CTX_set_group_name(c, "P-256") != 1)
		abort();
	if (EVP_PKEY_keygen(c, &k) != 1 || (f = fopen(path_of(name), "w")) == NULL)
		abort();
	if (public)
		PEM_write_PUBKEY(f, k);
	else
		PEM_write_PrivateKey(f, k, encrypt ? EVP_aes_128_cbc() : NULL,
			encrypt ? (unsigned char *)"secret" : NULL, encrypt ? 6 : 0,
			NULL, NULL);
	fclose(f);
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(c);
}

static bool
refused(const char *file, const char *domain, const char *sel, const char *why)
{
	struct msg_dkim_key *k = msg_dkim_key_load(path_of(file), domain, sel, err,
		sizeof(err));

	if (k != NULL) {
		msg_dkim_key_free(k);
		fprintf(stderr, "%s: accepted\n", file);
		return false;
	}
	if (strstr(err, why) == NULL) {
		fprintf(stderr, "%s: \"%s\" lacks \"%s\"\n", file, err, why);
		return false;
	}
	return true;
}

static struct msg_dkim_key *rsa2k, *ed;

static void
test_keys(void)
{
	struct msg_dkim_key *k;
	FILE *f;

	write_key("rsa1024.pem", "RSA", 1024, 0, false, false);
	write_key("rsa2048.pem", "RSA", 2048, 0, false, false);
	write_key("ed25519.pem", "ED25519", 0, 0, false, false);
	write_key("rsa512.pem", "RSA", 512, 0, false, false);
	/* five primes: an 8192-bit key in seconds, still 8192 bits */
	write_key("rsa8192.pem", "RSA", 8192, 5, false, false);
	write_key("ec.pem", "EC", 0, 0, false, false);
	write_key("ed448.pem", "ED448", 0, 0, false, false);
	write_key("enc.pem", "ED25519", 0, 0, true, false);
	write_key("pub.pem", "ED25519", 0, 0, false, true);
	if ((f = fopen(path_of("junk.pem"), "w")) == NULL)
		abort();
	fputs("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", f);
	fclose(f);

	k = msg_dkim_key_load(path_of("rsa1024.pem"), "example.com", "s1", err, sizeof(err));
	CHECK(k != NULL);
	if (k != NULL) {
		CHECK_EQ(msg_dkim_key_alg(k), MSG_DKIM_RSA_SHA256);
		CHECK_EQ(msg_dkim_key_bits(k), 1024);
	}
	msg_dkim_key_free(k);
	rsa2k = msg_dkim_key_load(path_of("rsa2048.pem"), "example.com", "rsa.2026",
		err, sizeof(err));
	CHECK(rsa2k != NULL);
	ed = msg_dkim_key_load(path_of("ed25519.pem"), "example.com", "ed-1", err,
		sizeof(err));
	CHECK(ed != NULL);
	if (rsa2k == NULL || ed == NULL)
		exit(mp_test_result("msg_dkim"));
	CHECK_EQ(msg_dkim_key_bits(rsa2k), 2048);
	CHECK_EQ(msg_dkim_key_alg(ed), MSG_DKIM_ED25519_SHA256);
	CHECK_EQ(msg_dkim_key_bits(ed), 256);
	CHECK_STREQ(msg_dkim_alg_name(MSG_DKIM_ED25519_SHA256), "ed25519-sha256");

	static const struct { const char *file, *domain, *sel, *why; } no[] = {
		{ "missing.pem", "example.com", "s", "No such file" },
		{ "ec.pem", "example.com", "s", "EC key" },
		{ "ed448.pem", "example.com", "s", "ED448 key" },
		{ "rsa512.pem", "example.com", "s", "512 bits" },
		{ "rsa8192.pem", "example.com", "s", "8192 bits" },
		{ "enc.pem", "example.com", "s", "encrypted" },
		{ "pub.pem", "example.com", "s", "not a PEM private key" },
		{ "junk.pem", "example.com", "s", "not a PEM private key" },
		{ "ed25519.pem", "exa mple.com", "s", "not a domain name" },
		{ "ed25519.pem", "-x.example", "s", "not a domain name" },
		{ "ed25519.pem", "", "s", "not a domain name" },
		{ "ed25519.pem", "example.com", "s_1", "selector" },
		{ "ed25519.pem", "example.com", "", "selector" },
	};

	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		CHECK(refused(no[i].file, no[i].domain, no[i].sel, no[i].why));
	{
		char sel[240];

		memset(sel, 'a', sizeof(sel));
		for (size_t i = 60; i < sizeof(sel); i += 61)
			sel[i] = '.';
		sel[sizeof(sel) - 1] = '\0';
		CHECK(refused("ed25519.pem", "example.com", sel, "longer than 253"));
	}
}

/* The strings of a zone-file TXT rdata joined; false if one is over 255. */
static bool
txt_join(const char *z, char *out, size_t cap, int *nstr)
{
	size_t o = 0;

	*nstr = 0;
	while (*z != '\0') {
		const char *q = strchr(z + 1, '"');

		if (z[0] != '"' || q == NULL || q - z - 1 > 255 || o + (size_t)(q - z) >= cap)
			return false;
		memcpy(out + o, z + 1, (size_t)(q - z - 1));
		o += (size_t)(q - z - 1);
		(*nstr)++;
		z = q + 1;
		if (*z == ' ')
			z++;
		else if (*z != '\0')
			return false;
	}
	out[o] = '\0';
	return true;
}

static EVP_PKEY *
pub_of_txt(const struct msg_dkim_key *k, int *nstr)
{
	char z[1024], rec[1024];
	unsigned char der[800];
	const unsigned char *dp = der;
	const char *p;
	int n;

	if (msg_dkim_key_txt(k, z, sizeof(z)) < 0 || !txt_join(z, rec, sizeof(rec), nstr))
		return NULL;
	if (strncmp(rec, "v=DKIM1; k=", 11) != 0 || (p = strstr(rec, "; p=")) == NULL)
		return NULL;
	n = EVP_DecodeBlock(der, (const unsigned char *)p + 4, (int)strlen(p + 4));
	if (n < 0)
		return NULL;
	n -= (int)(strlen(p + 4) - strcspn(p + 4, "=")) ; /* padding */
	if (strncmp(rec + 11, "rsa;", 4) == 0)
		return d2i_PUBKEY(NULL, &dp, n);
	if (strncmp(rec + 11, "ed25519;", 8) == 0 && n == 32)
		return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, 32);
	return NULL;
}

static EVP_PKEY *rsa_pub, *ed_pub;

static void
test_txt(void)
{
	char small[16];
	int nstr = 0;
	EVP_PKEY *priv;
	FILE *f;

	rsa_pub = pub_of_txt(rsa2k, &nstr);
	CHECK(rsa_pub != NULL);
	CHECK_EQ(nstr, 2);      /* 410 characters: 255 + 155 */
	ed_pub = pub_of_txt(ed, &nstr);
	CHECK(ed_pub != NULL);
	CHECK_EQ(nstr, 1);
	/* the published key is the private key's */
	f = fopen(path_of("rsa2048.pem"), "r");
	priv = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	CHECK(priv != NULL && rsa_pub != NULL && EVP_PKEY_eq(priv, rsa_pub) == 1);
	EVP_PKEY_free(priv);
	f = fopen(path_of("ed25519.pem"), "r");
	priv = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	CHECK(priv != NULL && ed_pub != NULL && EVP_PKEY_eq(priv, ed_pub) == 1);
	EVP_PKEY_free(priv);
	CHECK_EQ(msg_dkim_key_txt(rsa2k, small, sizeof(small)), -ENOSPC);
	{
		char z[128];

		CHECK(msg_dkim_key_txt(ed, z, sizeof(z)) > 0);
		CHECK(strncmp(z, "\"v=DKIM1; k=ed25519; p=", 23) == 0);
		CHECK_EQ(strlen(z), 23 + 44 + 1);
	}
	if (rsa_pub == NULL || ed_pub == NULL)
		exit(mp_test_result("msg_dkim"));
}

/* ---- signatures ---- */

/* Relaxed form of our own header with the b= value cut, no CRLF: the
 * last part of the data to sign (written here independently). */
static size_t
own_header_canon(const char *h, size_t n, char *out)
{
	const char *b = strstr(h, " b=");
	size_t o = 0;
	bool sp = false;

	if (b == NULL || (size_t)(b - h) > n)
		return 0;
	n = (size_t)(b - h) + 3;
	memcpy(out, "dkim-signature:", 15);
	o = 15;
	for (size_t i = 15; i < n; i++) {
		char c = h[i];

		if (c == '\r' || c == '\n')
			continue;
		if (c == ' ' || c == '\t') {
			sp = true;
			continue;
		}
		if (sp && o > 15)
			out[o++] = ' ';
		sp = false;
		out[o++] = c;
	}
	return o;
}

/* The signature in header h is valid over data (+ h's own header). */
static bool
sig_valid(const char *h, size_t hn, const char *data, EVP_PKEY *pub, bool ed25519)
{
	char all[8192], b64[1024];
	unsigned char sig[600];
	const char *b = strstr(h, " b=");
	size_t dl = strlen(data), o = 0;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int n, ok;

	memcpy(all, data, dl);
	dl += own_header_canon(h, hn, all + dl);
	for (b += 3; b < h + hn; b++)
		if (*b != '\r' && *b != '\n' && *b != ' ')
			b64[o++] = *b;
	b64[o] = '\0';
	n = EVP_DecodeBlock(sig, (unsigned char *)b64, (int)o);
	n -= (int)(o - strcspn(b64, "="));
	if (ed25519) {
		/* RFC 8463: Ed25519 over SHA-256(data) */
		uint8_t hash[32];

		sha256(all, dl, hash);
		ok = EVP_DigestVerifyInit(m, NULL, NULL, NULL, pub) == 1 &&
			EVP_DigestVerify(m, sig, (size_t)n, hash, 32) == 1;
	} else {
		ok = EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, pub) == 1 &&
			EVP_DigestVerify(m, sig, (size_t)n, (unsigned char *)all, dl) == 1;
	}
	EVP_MD_CTX_free(m);
	return ok;
}

/* Value of tag t in header h, whitespace removed. */
static void
tag(const char *h, const char *t, char *out, size_t cap)
{
	char key[8];
	const char *p;
	size_t o = 0;

	snprintf(key, sizeof(key), " %s=", t);
	p = strstr(h, key);
	if (p == NULL) {
		out[0] = '\0';
		return;
	}
	for (p += strlen(key); *p != ';' && *p != '\0' && o + 1 < cap; p++)
		if (*p != ' ' && *p != '\r' && *p != '\n')
			out[o++] = *p;
	out[o] = '\0';
}

static const char hdr_block[] =
	"Received: from somewhere\r\n"
	"From: \"Ann\" <ann@example.com>\r\n"
	"To:  bob@example.net \r\n"
	"Subject: Hello\r\n"
	"  world\t \r\n"
	"X-Tag: one\r\n"
	"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
	"x-tag:two\r\n"
	"X-Not-Signed: nope\r\n"
	"MIME-Version: 1.0\r\n"
	"\r\n"
	"this is not a header\r\n";

/* what a verifier hashes for h=from:from:to:subject:date:mime-version:x-tag:x-tag */
static const char hdr_canon[] =
	"from:\"Ann\" <ann@example.com>\r\n"
	"to:bob@example.net\r\n"
	"subject:Hello world\r\n"
	"date:Tue, 01 Dec 2026 10:00:00 +0000\r\n"
	"mime-version:1.0\r\n"
	"x-tag:two\r\n"
	"x-tag:one\r\n";

static void
test_sign_block(void)
{
	const struct msg_dkim_key *keys[2] = { rsa2k, ed };
	const char *names[] = { "X-Tag", "x-tag", "Subject", "X-Absent" };
	struct msg_dkim_opts o = { .keys = keys, .nkeys = 2, .names = names,
		.nnames = 4, .t = 1796000000 };
	struct msg_dkim_prepared p, q;
	char out[MSG_DKIM_OUT_MAX], v[4096], bh64[64];
	uint8_t bh[32];
	ssize_t n;
	char *second;

	sha256("body\r\n", 6, bh);
	EVP_EncodeBlock((unsigned char *)bh64, bh, 32);
	CHECK_EQ(msg_dkim_prepare(&p, hdr_block, sizeof(hdr_block) - 1, bh, &o,
		err, sizeof(err)), 0);
	n = msg_dkim_sign_prepared(&p, out, sizeof(out), err, sizeof(err));
	CHECK(n > 0);
	if (n <= 0)
		return;
	CHECK_EQ(strlen(out), n);
	second = strstr(out + 1, "\r\nDKIM-Signature:");
	CHECK(strncmp(out, "DKIM-Signature:", 15) == 0 && second != NULL);
	if (second == NULL)
		return;
	second += 2;
	/* folded: every line <= 78, continuation lines start with SP */
	{
		bool ok = true;
		const char *l = out;

		while (*l != '\0') {
			const char *e = strstr(l, "\r\n");

			ok &= e != NULL && e - l <= 78;
			ok &= l == out || l == second || l[0] == ' ';
			l = e ? e + 2 : l + strlen(l);
		}
		CHECK(ok);
	}
	{
		static const char hl[] = "from:from:to:subject:date:mime-version:x-tag:x-tag";
		const struct { bool ed; const char *t, *want; } tags[] = {
			{ false, "h", hl }, { true, "h", hl },
			{ false, "a", "rsa-sha256" }, { true, "a", "ed25519-sha256" },
			{ false, "c", "relaxed/relaxed" }, { true, "c", "relaxed/relaxed" },
			{ false, "d", "example.com" }, { true, "d", "example.com" },
			{ false, "s", "rsa.2026" }, { true, "s", "ed-1" },
			{ false, "t", "1796000000" }, { true, "t", "1796000000" },
			{ false, "bh", bh64 }, { true, "bh", bh64 },
			{ false, "l", "" }, { true, "l", "" },
		};

		for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
			tag(tags[i].ed ? second : out, tags[i].t, v, sizeof(v));
			CHECK_STREQ(v, tags[i].want);
		}
	}
	CHECK(sig_valid(out, (size_t)(second - out), hdr_canon, rsa_pub, false));
	CHECK(sig_valid(second, strlen(second), hdr_canon, ed_pub, true));
	/* the wrong data does not verify: the check above can fail */
	CHECK(!sig_valid(out, (size_t)(second - out), hdr_canon + 1, rsa_pub, false));
	CHECK(!sig_valid(second, strlen(second), hdr_canon + 1, ed_pub, true));

	/* plain data: a copy signs to the same bytes (both are deterministic) */
	memcpy(&q, &p, sizeof(q));
	memset(&p, 0xa5, sizeof(p));
	{
		char again[MSG_DKIM_OUT_MAX];

		CHECK_EQ(msg_dkim_sign_prepared(&q, again, sizeof(again), err, sizeof(err)), n);
		CHECK_STREQ(again, out);
		CHECK_EQ(msg_dkim_sign_prepared(&p, again, sizeof(again), err, sizeof(err)),
			-EINVAL);
		CHECK_EQ(msg_dkim_sign_prepared(&q, again, (size_t)n, err, sizeof(err)),
			-ENOSPC);
	}

	/* two From fields: From listed three times */
	{
		static const char two[] = "From: a@example.com\r\nFrom: b@example.com\r\n";
		const struct msg_dkim_key *k1[1] = { ed };
		struct msg_dkim_opts o1 = { .keys = k1, .nkeys = 1 };

		CHECK_EQ(msg_dkim_prepare(&p, two, sizeof(two) - 1, bh, &o1, err,
			sizeof(err)), 0);
		n = msg_dkim_sign_prepared(&p, out, sizeof(out), err, sizeof(err));
		tag(out, "h", v, sizeof(v));
		CHECK_STREQ(v, "from:from:from");
		CHECK(sig_valid(out, (size_t)n,
			"from:b@example.com\r\nfrom:a@example.com\r\n", ed_pub, true));
	}
}

static void
test_prepare_errors(void)
{
	const struct msg_dkim_key *keys[3] = { rsa2k, ed, ed };
	const char *bad[] = { "Bad Name" }, *colon[] = { "a:b" }, *empty[] = { "" };
	const char *dk[] = { "DKIM-Signature" };
	struct msg_dkim_opts o = { .keys = keys, .nkeys = 1, .t = 1 };
	struct msg_dkim_prepared p;
	static const char ok[] = "From: a@example.com\r\n";
	uint8_t bh[32] = { 0 };
	char many[MSG_DKIM_FIELDS_MAX * 8 + 64];
	size_t ml = 0;

#define PREP(h, opts) msg_dkim_prepare(&p, (h), strlen(h), bh, (opts), err, sizeof(err))
	CHECK_EQ(PREP(ok, &o), 0);
	CHECK_EQ(PREP("To: b@example.com\r\n", &o), -EINVAL);
	CHECK(strstr(err, "no From") != NULL);
	CHECK_EQ(PREP("From: a@example.com\n", &o), -EINVAL);
	CHECK_EQ(PREP("From: a@example.com\r\nTo: x\ry\r\n", &o), -EINVAL);
	CHECK(strstr(err, "bare CR") != NULL);
	CHECK_EQ(PREP("From: a@example.com", &o), -EINVAL);
	CHECK(strstr(err, "end with CRLF") != NULL);
	CHECK_EQ(PREP(" x\r\nFrom: a@example.com\r\n", &o), -EINVAL);
	CHECK_EQ(PREP("From: a@example.com\r\nno colon here\r\n", &o), -EINVAL);
	CHECK_EQ(PREP("From: a@example.com\r\n: empty name\r\n", &o), -EINVAL);
	for (int i = 0; i <= MSG_DKIM_FIELDS_MAX; i++)
		ml += (size_t)sprintf(many + ml, "%s\r\n", i == 0 ? "From: a@b.c" : "X: y");
	CHECK_EQ(PREP(many, &o), -E2BIG);
	o.nkeys = 0;
	CHECK_EQ(PREP(ok, &o), -EINVAL);
	o.nkeys = 3;
	CHECK_EQ(PREP(ok, &o), -EINVAL);
	o.nkeys = 2;
	CHECK_EQ(PREP(ok, &o), 0);
	o.t = -1;
	CHECK_EQ(PREP(ok, &o), -EINVAL);
	o.t = 0;
	o.names = bad;
	o.nnames = 1;
	CHECK_EQ(PREP(ok, &o), -EINVAL);
	o.names = colon;
	CHECK_EQ(PREP(ok, &o), -EINVAL);
	o.names = empty;
	CHECK_EQ(PREP(ok, &o), -EINVAL);
	o.names = dk;
	CHECK_EQ(PREP(ok, &o), -EINVAL);
	o.nnames = MSG_DKIM_MAX_NAMES + 1;
	CHECK_EQ(PREP(ok, &o), -EINVAL);
	CHECK_EQ(msg_dkim_prepare(&p, ok, strlen(ok), bh, NULL, err, sizeof(err)), -EINVAL);
#undef PREP
}

/* The longest header we can be asked to write fits MSG_DKIM_SIG_MAX. */
static void
test_sig_bound(void)
{
	static char names[MSG_DKIM_MAX_NAMES][MSG_MAX_HNAME + 1];
	const char *np[MSG_DKIM_MAX_NAMES];
	char hdr[16384], dom[254], sel[254], out[MSG_DKIM_OUT_MAX];
	const struct msg_dkim_key *keys[2];
	struct msg_dkim_key *big;
	struct msg_dkim_prepared p;
	struct msg_dkim_opts o;
	uint8_t bh[32] = { 0 };
	size_t hl = 0;
	ssize_t n;
	const char *std = "From:x\r\nTo:x\r\nSubject:x\r\nDate:x\r\nMessage-ID:x\r\n"
		"MIME-Version:x\r\nContent-Type:x\r\nContent-Transfer-Encoding:x\r\n"
		"Reply-To:x\r\nList-Unsubscribe:x\r\nList-Unsubscribe-Post:x\r\n";

	/* selector + "._domainkey." + domain = 253 */
	memset(dom, 'd', sizeof(dom));
	for (size_t i = 63; i < 200; i += 64)
		dom[i] = '.';
	dom[200] = '\0';
	memset(sel, 's', sizeof(sel));
	sel[253 - 12 - 200] = '\0';
	write_key("rsa4096.pem", "RSA", 4096, 3, false, false);
	big = msg_dkim_key_load(path_of("rsa4096.pem"), dom, sel, err, sizeof(err));
	CHECK(big != NULL);
	if (big == NULL)
		return;
	hl += (size_t)sprintf(hdr, "%s", std);
	for (int i = 0; i < MSG_DKIM_MAX_NAMES; i++) {
		memset(names[i], 'a' + i % 26, MSG_MAX_HNAME);
		names[i][0] = (char)('A' + i / 26);
		names[i][1] = (char)('a' + i % 26);
		np[i] = names[i];
		/* three of each: listed three times */
		for (int k = 0; k < 3; k++)
			hl += (size_t)sprintf(hdr + hl, "%s: v\r\n", names[i]);
	}
	keys[0] = big;
	keys[1] = big;
	o = (struct msg_dkim_opts){ .keys = keys, .nkeys = 2, .names = np,
		.nnames = MSG_DKIM_MAX_NAMES, .t = INT64_C(9999999999) };
	/* 11 standard names + 32 x 3 x 65 characters is past h='s room */
	CHECK_EQ(msg_dkim_prepare(&p, hdr, hl, bh, &o, err, sizeof(err)), -E2BIG);
	/* once each and the From twice over: within bounds */
	hl = (size_t)sprintf(hdr, "%s", std);
	for (int i = 0; i < MSG_DKIM_MAX_NAMES; i++)
		hl += (size_t)sprintf(hdr + hl, "%s: v\r\n", names[i]);
	CHECK_EQ(msg_dkim_prepare(&p, hdr, hl, bh, &o, err, sizeof(err)), 0);
	n = msg_dkim_sign_prepared(&p, out, sizeof(out), err, sizeof(err));
	CHECK(n > 0);
	CHECK(n > 0 && (size_t)n < 2 * MSG_DKIM_SIG_MAX);
	{
		char *second = strstr(out + 1, "\r\nDKIM-Signature:");

		CHECK(second != NULL && second + 2 - out < MSG_DKIM_SIG_MAX);
	}
	msg_dkim_key_free(big);
}

/* ---- the render path ---- */

static struct msg_template *
campaign(void)
{
	static const struct msg_header extra[] = {
		{ "X-Campaign", "c-{{code}}" },
		{ "Feedback-ID", "{{code}}:news:mailpump" },
	};
	struct msg_template_spec spec = {
		.campaign_id = "c42",
		.from_addr = "news@example.com",
		.from_name = "News",
		.subject = "Hello {{first}}",
		.text = "Hi {{first}},\n.dot line\n  spaced   out  \n\n\n",
		.html = "<p>Hi {{first}}</p>\n",
		.headers = extra,
		.nheaders = 2,
		.unsub_url = "https://example.com/u/{{code}}",
	};

	return msg_template_compile(&spec, err, sizeof(err));
}

static void
test_render(void)
{
	const struct msg_dkim_key *keys[2] = { rsa2k, ed };
	const char *names[] = { "X-Not-There" };
	struct msg_dkim_opts o = { .keys = keys, .nkeys = 2, .names = names,
		.nnames = 1, .t = 1796000000 };
	struct msg_field fv[] = { { "first", "Zoë", 4 }, { "code", "Q7", 2 } };
	struct msg_fields f = { .v = fv, .n = 2, .index = 7 };
	struct msg_template *t = campaign();
	struct msg_render r, r2;
	struct msg_dkim_prepared p;
	char one[MSG_DKIM_OUT_MAX], two[MSG_DKIM_OUT_MAX], v[1024];
	ssize_t n1, n2;

	CHECK(t != NULL);
	if (t == NULL)
		return;
	CHECK_EQ(msg_render_open(&r, t, "zoe@example.net", &f, MSG_F_8BITMIME,
		1796000000, err, sizeof(err)), 0);
	/* one call and the split give the same bytes */
	n1 = msg_dkim_sign_render(&r, &o, one, sizeof(one), err, sizeof(err));
	CHECK(n1 > 0);
	CHECK_EQ(msg_dkim_prepare_render(&p, &r, &o, err, sizeof(err)), 0);
	n2 = msg_dkim_sign_prepared(&p, two, sizeof(two), err, sizeof(err));
	CHECK_EQ(n1, n2);
	CHECK(n1 > 0 && strcmp(one, two) == 0);
	/* r was not consumed */
	CHECK_STREQ(msg_render_stage_name(&r), "date");
	/* present standard headers, the template's extras; absent ones not */
	tag(one, "h", v, sizeof(v));
	CHECK_STREQ(v, "from:from:to:subject:date:message-id:mime-version:"
		"content-type:list-unsubscribe:list-unsubscribe-post:x-campaign:"
		"feedback-id");
	/* dot-stuffing is transport: same signature with it */
	CHECK_EQ(msg_render_open(&r2, t, "zoe@example.net", &f,
		MSG_F_8BITMIME | MSG_F_DOTSTUFF, 1796000000, err, sizeof(err)), 0);
	n2 = msg_dkim_sign_render(&r2, &o, two, sizeof(two), err, sizeof(err));
	CHECK(n2 == n1 && strcmp(one, two) == 0);
	/* bh is the body's as rendered */
	{
		char msg[8192], *body;
		ssize_t n, tot = 0;
		uint8_t bh[32];
		char b64[64];

		msg_render_rewind(&r);
		while ((n = msg_render_read(&r, msg + tot, sizeof(msg) - 1 - (size_t)tot)) > 0)
			tot += n;
		msg[tot] = '\0';
		body = strstr(msg, "\r\n\r\n") + 4;
		body_hash(body, strlen(body), 1 << 20, bh);
		EVP_EncodeBlock((unsigned char *)b64, bh, 32);
		tag(one, "bh", v, sizeof(v));
		CHECK_STREQ(v, b64);
	}
	/* not opened */
	memset(&r2, 0, sizeof(r2));
	CHECK_EQ(msg_dkim_prepare_render(&p, &r2, &o, err, sizeof(err)), -EINVAL);

	/* a header block over MSG_DKIM_HDR_MAX is refused, not truncated */
	{
		size_t vl = MSG_DKIM_HDR_MAX + 100;
		char *huge = malloc(vl);
		struct msg_field hf[] = { { "first", huge, vl }, { "code", "x", 1 } };
		struct msg_fields hfs = { .v = hf, .n = 2 };

		for (size_t i = 0; i < vl; i++)
			huge[i] = i % 8 == 7 ? ' ' : 'w';
		CHECK_EQ(msg_render_open(&r2, t, "zoe@example.net", &hfs, 0, 1796000000,
			err, sizeof(err)), 0);
		CHECK_EQ(msg_dkim_prepare_render(&p, &r2, &o, err, sizeof(err)), -E2BIG);
		CHECK(strstr(err, "header block") != NULL);
		free(huge);
	}
	msg_template_free(t);
}

static void
rm_dir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	atexit(rm_dir);
	test_canon_header();
	test_canon_body();
	test_body_stream();
	test_keys();
	test_txt();
	test_sign_block();
	test_prepare_errors();
	test_sig_bound();
	test_render();
	msg_dkim_key_free(rsa2k);
	msg_dkim_key_free(ed);
	EVP_PKEY_free(rsa_pub);
	EVP_PKEY_free(ed_pub);
	return mp_test_result("msg_dkim");
}
