/*
 * Internals shared by the msg_ files: the compiled template (a list of
 * literal and merge-field segments per part) and small UTF-8 / character
 * class helpers. Not part of the public API (include/msg.h is).
 */
#ifndef MSG_INT_H
#define MSG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "msg_dkim.h"

enum msg_seg_kind {
	MSG_SEG_LIT = 0,
	MSG_SEG_FIELD,
	MSG_SEG_LAST
};

struct msg_seg {
	uint8_t kind;
	bool has_def;
	const char *s;      /* literal text, or field name */
	size_t len;
	const char *def;    /* default text when has_def */
	size_t dlen;
};

/* A compiled template string; present == false when the spec had NULL. */
struct msg_tpl {
	bool present;
	const char *part;   /* "subject", "text", ... for error messages */
	struct msg_seg *seg;
	uint32_t nseg;
	char *src;          /* owned copy segments point into */
};

struct msg_template {
	char *campaign_id;
	char *from_addr;
	bool from_utf8;
	char *reply_to;
	bool reply_utf8;
	char *msgid_domain;
	struct msg_tpl from_name, to_name, subject, text, html, unsub;
	size_t nhdr;
	char *hname[MSG_MAX_HEADERS];
	struct msg_tpl hval[MSG_MAX_HEADERS];
};

#define MSG_MAGIC 0x6d736731u   /* "msg1": struct msg_render is open */
#define MSG_CHUNK_MAX 900           /* longest unfoldable header run printed as is */

/* How header text is written. */
enum msg_hmode {
	MSG_HM_PLAIN = 0,   /* as is, folded at whitespace */
	MSG_HM_QUOTED,      /* display name as a quoted-string */
	MSG_HM_ENC,         /* RFC 2047 encoded words (B, UTF-8) */
	MSG_HM_NONE,        /* no display name */
	MSG_HM_LAST
};

enum msg_cte {
	MSG_CTE_7BIT = 0,
	MSG_CTE_8BIT,
	MSG_CTE_QP,
	MSG_CTE_LAST
};

enum msg_esc {
	MSG_ESC_NONE = 0,
	MSG_ESC_HTML,
	MSG_ESC_URL,
	MSG_ESC_LAST
};

/* Merge value of name for r (field `email` is the recipient), or NULL. */
const char *msg_field_lookup(const struct msg_render *r, const char *name,
	size_t nlen, size_t *vlen);
/* Template cursor: yields the bytes of a template with r's values merged
 * (escaped per esc, literals and defaults never are). */
void msg_cur_init(struct msg_cur *c, const struct msg_tpl *t, int esc);
bool msg_cur_fill(const struct msg_render *r, struct msg_cur *c);
int msg_cur_next(const struct msg_render *r, struct msg_cur *c);
int msg_cur_peek(const struct msg_render *r, const struct msg_cur *c);

static inline bool
msg_is_wsp(int c)
{
	return c == ' ' || c == '\t';
}

void msg_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
size_t msg_utf8_seq(const unsigned char *s, size_t n);
/* Offset of the first invalid UTF-8 byte, or n if all valid. */
size_t msg_utf8_check(const char *s, size_t n);
bool msg_is_atext(unsigned char c);
bool msg_has_nonascii(const char *s, size_t n);
/* Dot-separated labels of 1..63 LDH characters (UTF-8 too when utf8),
 * none starting or ending with '-': an address's domain, a DKIM d=
 * domain or s= selector. */
bool msg_domain_labels(const char *s, size_t n, bool utf8);

/* ---- DKIM (msg_dkim_key.c, msg_dkim_canon.c, msg_dkim.c) ---- */

struct evp_pkey_st;
struct evp_md_st;

struct msg_dkim_key {
	struct evp_pkey_st *pkey;
	enum msg_dkim_alg alg;
	unsigned bits;
	char domain[254];
	char selector[254];
};

/* The one private-key operation: sign the SHA-256 hash of the data to
 * sign (RSASSA-PKCS1-v1_5 over a SHA-256 DigestInfo; Ed25519 over the 32
 * hash bytes, RFC 8463 section 3). Returns the signature length or -EIO. */
ssize_t msg_dkim_key_sign(const struct msg_dkim_key *k,
	const uint8_t hash[MSG_DKIM_HASH_LEN], uint8_t *sig, size_t cap,
	char *err, size_t errlen);
/* SHA-256, fetched once per process. */
const struct evp_md_st *msg_dkim_sha256(void);

/* Canonical bytes go to a hash (md != NULL) or a buffer (out, cap). */
struct msg_dkim_sink {
	void *md;           /* EVP_MD_CTX */
	char *out;
	size_t cap;
	size_t len;         /* bytes written so far (also beyond cap) */
	uint16_t n;
	unsigned char buf[512];
};

void msg_dkim_sink_put(struct msg_dkim_sink *s, const void *p, size_t n);
/* Hash what is staged; false when OpenSSL failed. */
bool msg_dkim_sink_flush(struct msg_dkim_sink *s);
/* Relaxed header canonicalisation of one field (no final CRLF given);
 * false when it has no colon. */
bool msg_dkim_canon_field(struct msg_dkim_sink *s, const char *f, size_t n);

#endif
