/*
 * Throwaway PKI for tests that run real OpenSSL servers in-process: EC
 * P-256 keys and X.509v3 certificates made on the fly (a CA, or a leaf
 * with a DNS subjectAltName for its CN), valid from/to a number of days
 * relative to now, so expired and not-yet-valid certificates need no
 * clock tricks. Header-only, like mp_test.h.
 */
#ifndef MP_TEST_PKI_H
#define MP_TEST_PKI_H

#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct cred {
	X509 *cert;
	EVP_PKEY *key;
};

/* A certificate for @key: self-signed when @issuer is NULL. */
static inline X509 *
mkcert(EVP_PKEY *key, const char *cn, int is_ca, const struct cred *issuer,
	long from_days, long to_days)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	char san[128];

	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_time_adj_ex(X509_getm_notBefore(x), (int)from_days, 0, NULL);
	X509_time_adj_ex(X509_getm_notAfter(x), (int)to_days, 0, NULL);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer->cert) : name);
	X509_NAME_free(name);
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&v3, issuer != NULL ? issuer->cert : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
		is_ca ? "critical,CA:TRUE" : "CA:FALSE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (is_ca) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		snprintf(san, sizeof(san), "DNS:%s", cn);
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	}
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	X509_sign(x, issuer != NULL ? issuer->key : key, EVP_sha256());
	return x;
}

/* A fresh P-256 key and its certificate. */
static inline struct cred
mkcred(const char *cn, int is_ca, const struct cred *issuer, long from, long to)
{
	struct cred c;

	c.key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	c.cert = mkcert(c.key, cn, is_ca, issuer, from, to);
	return c;
}

static inline void
cred_free(struct cred *c)
{
	X509_free(c->cert);
	EVP_PKEY_free(c->key);
}

#endif
