/*
 * DKIM signing (msg_dkim_, RFC 6376 with RFC 8463 for Ed25519): relaxed/
 * relaxed canonicalisation, no l=, a=rsa-sha256 or a=ed25519-sha256, up
 * to MSG_DKIM_MAX_SIGS signatures per message (e.g. RSA + Ed25519), each a
 * DKIM-Signature header over the same header fields.
 *
 * Keys are loaded once (configuration time) and are then read-only: any
 * number of threads may prepare and sign with the same key at once.
 *
 * The work is split in two so the expensive part can run elsewhere:
 *
 *   worker (cheap, no private-key operation):
 *     msg_dkim_prepare_render()    one counting-style pass over a copy of
 *                                  an opened struct msg_render: body hash,
 *                                  header selection, and the SHA-256 of
 *                                  the data to sign for every key
 *       or, for a message from elsewhere:
 *     msg_dkim_body_init/update/final()  body hash from a byte stream in
 *                                  chunks of any size (no copy is kept)
 *     msg_dkim_prepare()           the same from a header block + body hash
 *
 *   signer (a thread of its own, ~1 ms per RSA-2048 signature):
 *     msg_dkim_sign_prepared()     the private-key operation(s); writes the
 *                                  DKIM-Signature header line(s), folded,
 *                                  CRLF-terminated, to put in front of the
 *                                  message exactly as it was prepared
 *
 *   msg_dkim_sign_render() does both in one call.
 *
 * struct msg_dkim_prepared is plain data with no pointer into the message
 * or the caller's options (only to the keys, which must outlive it): it
 * may be copied into a ring slot and signed on any thread, any time later.
 * The signed output depends only on it (RSA PKCS#1 v1.5 and Ed25519 are
 * deterministic), so signing it twice gives the same bytes.
 *
 * h= lists the header fields present among From, To, Subject, Date,
 * Message-ID, MIME-Version, Content-Type, Content-Transfer-Encoding,
 * Reply-To, List-Unsubscribe, List-Unsubscribe-Post and the extra names
 * the caller gives (msg_dkim_prepare_render adds the template's own extra
 * headers), each as many times as it occurs. From is listed once more
 * than it occurs, so a From added later breaks the signature. A name that
 * is absent is never listed: a header a relay adds later (Message-ID,
 * Reply-To...) must not break the signature.
 *
 * Body canonicalisation follows RFC 6376 3.4.4 to the letter: an empty
 * body (or one of empty lines only) hashes as the empty string; only the
 * "simple" algorithm, which we do not use, turns it into CRLF.
 */
#ifndef MSG_DKIM_H
#define MSG_DKIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "msg.h"

#define MSG_DKIM_MAX_SIGS   2     /**< DKIM-Signature headers per message */
#define MSG_DKIM_MAX_NAMES  MSG_MAX_HEADERS /**< extra header names to sign */
#define MSG_DKIM_HASH_LEN   32    /**< SHA-256 */
#define MSG_DKIM_HDR_MAX    32768 /**< header block msg_dkim_prepare_render accepts */
#define MSG_DKIM_FIELDS_MAX 128   /**< header fields in a block */
/** h= value: every standard name (From twice) plus MSG_DKIM_MAX_NAMES
 * names, a few of them repeated. */
#define MSG_DKIM_HLIST_MAX  2560
/** One DKIM-Signature header as written, CRLF included (RSA-4096, longest
 * domain and selector, full h=). */
#define MSG_DKIM_SIG_MAX    4096
/** Output buffer that always fits msg_dkim_sign_prepared (NUL included). */
#define MSG_DKIM_OUT_MAX    (MSG_DKIM_MAX_SIGS * MSG_DKIM_SIG_MAX + 1)

enum msg_dkim_alg {
	MSG_DKIM_RSA_SHA256 = 0,
	MSG_DKIM_ED25519_SHA256,
	MSG_DKIM_ALG_LAST
};

/** A loaded private key with its d= domain and s= selector. Opaque. */
struct msg_dkim_key;

/**
 * Load a PEM private key (PKCS#8 or traditional) from path.
 * Accepted: RSA of 1024..4096 bits (2048 recommended) and Ed25519.
 * Refused, each with one line naming the file and the reason: a missing
 * or unreadable file, a file that is not a PEM private key, an encrypted
 * key (never prompts for a passphrase), any other key type (EC, Ed448,
 * DSA, RSA-PSS...), an RSA size out of range; a domain that is not an LDH
 * domain name, a selector that is not dot-separated LDH labels, or a
 * "selector._domainkey.domain" over 253 octets.
 * @return the key, or NULL with err filled.
 */
struct msg_dkim_key *msg_dkim_key_load(const char *path, const char *domain,
	const char *selector, char *err, size_t errlen);
void msg_dkim_key_free(struct msg_dkim_key *k);

enum msg_dkim_alg msg_dkim_key_alg(const struct msg_dkim_key *k);
/** Key size in bits (256 for Ed25519). */
unsigned msg_dkim_key_bits(const struct msg_dkim_key *k);
/** "rsa-sha256" / "ed25519-sha256": the a= value. */
const char *msg_dkim_alg_name(enum msg_dkim_alg alg);

/**
 * The TXT record to publish at "selector._domainkey.domain", as zone-file
 * rdata: quoted strings of at most 255 characters separated by a space,
 * e.g. "v=DKIM1; k=rsa; p=MIIBIjAN..." "...IDAQAB". p= is the base64 of the
 * SubjectPublicKeyInfo DER (RSA) or of the raw 32-byte public key
 * (Ed25519, RFC 8463 section 4).
 * @return length written (NUL-terminated), -ENOSPC if cap is too small
 *         (1024 always fits an RSA-4096 key), -EIO on an OpenSSL failure.
 */
ssize_t msg_dkim_key_txt(const struct msg_dkim_key *k, char *buf, size_t cap);

/** What to sign with and what else to sign. */
struct msg_dkim_opts {
	const struct msg_dkim_key *const *keys; /**< 1..MSG_DKIM_MAX_SIGS, one signature each, in this order */
	size_t nkeys;
	const char *const *names; /**< extra header names signed when present (may be NULL) */
	size_t nnames;            /**< at most MSG_DKIM_MAX_NAMES, each <= MSG_MAX_HNAME */
	time_t t;                 /**< t= signature timestamp (>= 0), e.g. time(NULL) */
};

/** The data to sign, ready for msg_dkim_sign_prepared. Plain data, may be
 * copied; fields are private. */
struct msg_dkim_prepared {
	uint32_t magic;
	uint32_t nsig;
	int64_t t;
	const struct msg_dkim_key *key[MSG_DKIM_MAX_SIGS];
	uint8_t hash[MSG_DKIM_MAX_SIGS][MSG_DKIM_HASH_LEN]; /* SHA-256 of the data to sign */
	uint8_t bh[MSG_DKIM_HASH_LEN];
	uint16_t hlen;
	char h[MSG_DKIM_HLIST_MAX];   /* h= value */
};

/** Streaming relaxed body hash; fields are private. */
struct msg_dkim_body {
	uint32_t magic;
	void *md;               /* EVP_MD_CTX */
	uint64_t blank;         /* empty lines held back: dropped at the end */
	uint8_t wsp;            /* a WSP run held back */
	uint8_t cr;             /* a CR held back */
	uint8_t text;           /* the current line has content */
	uint8_t any;            /* something was hashed */
	uint8_t failed;         /* an OpenSSL call failed */
	uint16_t n;
	unsigned char buf[512]; /* canonical bytes not yet hashed */
};

/**
 * Start a body hash.
 * @return 0, or -ENOMEM.
 */
int msg_dkim_body_init(struct msg_dkim_body *b);

/**
 * Feed the next n bytes of the body (what follows the empty line after
 * the header block, exactly as transmitted without dot-stuffing). Chunk
 * boundaries do not matter: CRLF may be split across calls.
 * @return 0, -EINVAL if b is not started, -EIO on an OpenSSL failure.
 */
int msg_dkim_body_update(struct msg_dkim_body *b, const void *data, size_t n);

/**
 * End the body: drop the empty lines at the end, add CRLF to a last line
 * without one, write bh (the raw SHA-256) and release b.
 * @return 0, -EINVAL if b is not started, -EIO on an OpenSSL failure.
 */
int msg_dkim_body_final(struct msg_dkim_body *b, uint8_t bh[MSG_DKIM_HASH_LEN]);

/** Release b without a result; a no-op on a released or zeroed b. */
void msg_dkim_body_fini(struct msg_dkim_body *b);

/**
 * Prepare the signatures of a message from its header block and body hash.
 * @param hdr  header fields, each line CRLF-terminated; an empty line
 *             (CRLF) ends the block early (so a whole message works too)
 * @param bh   from msg_dkim_body_final over the message's body
 * @return 0; -EINVAL with err filled: bad options (no key, too many keys
 *         or names, a name that is not a field name, t < 0), a malformed
 *         header block (bare CR or LF, a line without a colon, a block
 *         not ending in CRLF), no From field; -E2BIG with err filled: more
 *         than MSG_DKIM_FIELDS_MAX fields or an h= over MSG_DKIM_HLIST_MAX;
 *         -ENOMEM / -EIO: OpenSSL.
 */
int msg_dkim_prepare(struct msg_dkim_prepared *p, const char *hdr, size_t len,
	const uint8_t bh[MSG_DKIM_HASH_LEN], const struct msg_dkim_opts *o,
	char *err, size_t errlen);

/**
 * Prepare the signatures of r's message by one pass over a copy of r (r
 * is not modified; dot-stuffing is not signed: DKIM signs the message,
 * not its DATA encoding). The template's extra header names are signed
 * along with o->names.
 * @return 0, or what msg_dkim_prepare returns; -E2BIG with err filled when
 *         the header block is over MSG_DKIM_HDR_MAX; -EINVAL if r is not
 *         opened.
 */
int msg_dkim_prepare_render(struct msg_dkim_prepared *p,
	const struct msg_render *r, const struct msg_dkim_opts *o,
	char *err, size_t errlen);

/**
 * Sign prepared data: one DKIM-Signature header per key, in key order,
 * folded at 78 columns, each ending in CRLF, NUL-terminated. Put them in
 * front of the message's first header line.
 * @return length written (without the NUL); -EINVAL if p is not prepared;
 *         -ENOSPC if cap is too small (MSG_DKIM_OUT_MAX always fits);
 *         -EIO with err filled if OpenSSL fails to sign.
 */
ssize_t msg_dkim_sign_prepared(const struct msg_dkim_prepared *p, char *out,
	size_t cap, char *err, size_t errlen);

/**
 * msg_dkim_prepare_render then msg_dkim_sign_prepared, in one call.
 * @return as msg_dkim_sign_prepared, or msg_dkim_prepare_render's error.
 */
ssize_t msg_dkim_sign_render(const struct msg_render *r,
	const struct msg_dkim_opts *o, char *out, size_t cap, char *err,
	size_t errlen);

/**
 * Relaxed header canonicalisation (RFC 6376 3.4.2) of one field, given
 * without its final CRLF: lower-case name, no WSP around the colon,
 * unfolded, WSP runs as one SP, no WSP at the ends of the value. Writes
 * "name:value" (no CRLF), NUL-terminated.
 * @return length, -EINVAL if the field has no colon, -ENOSPC if cap is
 *         too small (len + 1 always fits).
 */
ssize_t msg_dkim_canon_header(const char *field, size_t len, char *out,
	size_t cap);

#endif
