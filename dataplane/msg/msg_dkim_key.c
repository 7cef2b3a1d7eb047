/*
 * DKIM keys: msg_dkim_key_load reads a PEM private key once, at
 * configuration time, and refuses what DKIM verifiers do not accept (RFC
 * 8301: RSA of at least 1024 bits; RFC 8463: Ed25519); msg_dkim_key_txt
 * prints the DNS record to publish for it; msg_dkim_key_sign is the one
 * private-key operation, called by msg_dkim_sign_prepared.
 *
 * A loaded key is never modified, so threads may sign with it at once:
 * every signature gets its own OpenSSL context.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "msg_int.h"

#define RSA_MIN_BITS 1024
#define RSA_MAX_BITS 4096
#define TXT_CHUNK    255        /* a DNS character-string */

static const char *const alg_names[MSG_DKIM_ALG_LAST] = {
	"rsa-sha256", "ed25519-sha256",
};

const char *
msg_dkim_alg_name(enum msg_dkim_alg alg)
{
	return (unsigned)alg < MSG_DKIM_ALG_LAST ? alg_names[alg] : "unknown";
}

/* "what: <OpenSSL's reason>" and the error queue emptied */
static void
ssl_errf(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[160];

	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		msg_errf(err, errlen, "%s: %s", what, buf);
	} else {
		msg_errf(err, errlen, "%s", what);
	}
	ERR_clear_error();
}

/* Never prompt: an encrypted key is refused, and we say so. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(int *)u = 1;
	return -1;
}

static bool
name_ok(const char *s, size_t max)
{
	size_t n = s != NULL ? strnlen(s, max + 1) : 0;

	return n > 0 && n <= max && msg_domain_labels(s, n, false);
}

struct msg_dkim_key *
msg_dkim_key_load(const char *path, const char *domain, const char *selector,
	char *err, size_t errlen)
{
	struct msg_dkim_key *k;
	EVP_PKEY *pk;
	FILE *fp;
	int asked = 0;

	if (path == NULL) {
		msg_errf(err, errlen, "dkim key: no file given");
		return NULL;
	}
	if (!name_ok(domain, 253)) {
		msg_errf(err, errlen, "dkim key %s: domain '%.253s' is not a domain name",
			path, domain ? domain : "");
		return NULL;
	}
	if (!name_ok(selector, 253)) {
		msg_errf(err, errlen, "dkim key %s: selector '%.253s' is not dot-separated"
			" letters, digits and '-'", path, selector ? selector : "");
		return NULL;
	}
	if (strlen(selector) + strlen("._domainkey.") + strlen(domain) > 253) {
		msg_errf(err, errlen, "dkim key %s: %s._domainkey.%s is longer than 253"
			" octets", path, selector, domain);
		return NULL;
	}
	if ((fp = fopen(path, "r")) == NULL) {
		msg_errf(err, errlen, "dkim key %s: %s", path, strerror(errno));
		return NULL;
	}
	pk = PEM_read_PrivateKey(fp, NULL, no_passphrase, &asked);
	fclose(fp);
	if (pk == NULL) {
		ERR_clear_error();
		msg_errf(err, errlen, asked ?
			"dkim key %s: encrypted private key; store it unencrypted,"
			" readable by mailpump only" :
			"dkim key %s: not a PEM private key", path);
		return NULL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		EVP_PKEY_free(pk);
		msg_errf(err, errlen, "out of memory");
		return NULL;
	}
	k->pkey = pk;
	if (EVP_PKEY_is_a(pk, "RSA")) {
		k->alg = MSG_DKIM_RSA_SHA256;
		k->bits = (unsigned)EVP_PKEY_get_bits(pk);
		if (k->bits < RSA_MIN_BITS || k->bits > RSA_MAX_BITS) {
			msg_errf(err, errlen, "dkim key %s: RSA key of %u bits; DKIM needs"
				" %d..%d bits (2048 recommended)", path, k->bits,
				RSA_MIN_BITS, RSA_MAX_BITS);
			goto fail;
		}
	} else if (EVP_PKEY_is_a(pk, "ED25519")) {
		k->alg = MSG_DKIM_ED25519_SHA256;
		k->bits = 256;
	} else {
		msg_errf(err, errlen, "dkim key %s: %s key; DKIM signs with RSA"
			" (%d..%d bits) or Ed25519 only", path,
			EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "unknown",
			RSA_MIN_BITS, RSA_MAX_BITS);
		goto fail;
	}
	snprintf(k->domain, sizeof(k->domain), "%s", domain);
	snprintf(k->selector, sizeof(k->selector), "%s", selector);
	return k;
fail:
	msg_dkim_key_free(k);
	return NULL;
}

void
msg_dkim_key_free(struct msg_dkim_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

enum msg_dkim_alg
msg_dkim_key_alg(const struct msg_dkim_key *k)
{
	return k->alg;
}

unsigned
msg_dkim_key_bits(const struct msg_dkim_key *k)
{
	return k->bits;
}

ssize_t
msg_dkim_key_txt(const struct msg_dkim_key *k, char *buf, size_t cap)
{
	unsigned char raw[32], *der = NULL;
	char rec[1024];
	size_t rl, o = 0, len = sizeof(raw);
	int n;

	if (k == NULL || buf == NULL)
		return -EINVAL;
	rl = (size_t)snprintf(rec, sizeof(rec), "v=DKIM1; k=%s; p=",
		k->alg == MSG_DKIM_RSA_SHA256 ? "rsa" : "ed25519");
	if (k->alg == MSG_DKIM_RSA_SHA256) {
		/* SubjectPublicKeyInfo; 550 octets for RSA-4096 */
		n = i2d_PUBKEY(k->pkey, &der);
		if (n <= 0 || (size_t)(n + 2) / 3 * 4 >= sizeof(rec) - rl) {
			OPENSSL_free(der);
			ERR_clear_error();
			return -EIO;
		}
		rl += (size_t)EVP_EncodeBlock((unsigned char *)rec + rl, der, n);
		OPENSSL_free(der);
	} else {
		if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &len) != 1 || len != 32) {
			ERR_clear_error();
			return -EIO;
		}
		rl += (size_t)EVP_EncodeBlock((unsigned char *)rec + rl, raw, 32);
	}
	/* "..." "..." with at most 255 characters between the quotes */
	for (size_t i = 0; i < rl; i += TXT_CHUNK) {
		size_t c = rl - i < TXT_CHUNK ? rl - i : TXT_CHUNK;

		if (o + c + 4 > cap)
			return -ENOSPC;
		if (i > 0)
			buf[o++] = ' ';
		buf[o++] = '"';
		memcpy(buf + o, rec + i, c);
		o += c;
		buf[o++] = '"';
	}
	buf[o] = '\0';
	return (ssize_t)o;
}

ssize_t
msg_dkim_key_sign(const struct msg_dkim_key *k,
	const uint8_t hash[MSG_DKIM_HASH_LEN], uint8_t *sig, size_t cap,
	char *err, size_t errlen)
{
	size_t len = cap;
	int ok = 0;

	if (k->alg == MSG_DKIM_RSA_SHA256) {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);

		ok = c != NULL && EVP_PKEY_sign_init(c) == 1 &&
			EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
			EVP_PKEY_CTX_set_signature_md(c, msg_dkim_sha256()) == 1 &&
			EVP_PKEY_sign(c, sig, &len, hash, MSG_DKIM_HASH_LEN) == 1;
		EVP_PKEY_CTX_free(c);
	} else {
		/* RFC 8463 3: PureEdDSA over the SHA-256 of the data, not the
		 * data itself, hence no digest here */
		EVP_MD_CTX *m = EVP_MD_CTX_new();

		ok = m != NULL &&
			EVP_DigestSignInit_ex(m, NULL, NULL, NULL, NULL, k->pkey, NULL) == 1 &&
			EVP_DigestSign(m, sig, &len, hash, MSG_DKIM_HASH_LEN) == 1;
		EVP_MD_CTX_free(m);
	}
	if (!ok) {
		ssl_errf(err, errlen, "dkim sign");
		return -EIO;
	}
	return (ssize_t)len;
}
