/*
 * DKIM relaxed canonicalisation (RFC 6376 3.4.2 headers, 3.4.4 body)
 * written straight into a SHA-256 through a small staging buffer, so no
 * canonical copy of a message is ever made.
 *
 * The body hash is a byte-at-a-time machine that holds back only what
 * the next bytes may still cancel: a WSP run (dropped at the end of a
 * line, one SP otherwise), a CR (a line end if LF follows), and a count
 * of empty lines (dropped at the end of the body). Call order:
 * msg_dkim_body_init, msg_dkim_body_update any number of times with
 * chunks of any size, msg_dkim_body_final (or msg_dkim_body_fini).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "msg_int.h"

#define BODY_MAGIC 0x646b6231u /* "dkb1": struct msg_dkim_body started */

static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;

static void
sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *
msg_dkim_sha256(void)
{
	pthread_once(&sha256_once, sha256_fetch);
	return sha256_md;
}

/* Append to a staging buffer that is hashed whenever it fills up. */
static bool
stage(EVP_MD_CTX *md, unsigned char *buf, size_t size, uint16_t *used,
	const unsigned char *p, size_t n)
{
	bool ok = true;

	while (n > 0) {
		size_t k = size - *used;

		if (k > n)
			k = n;
		memcpy(buf + *used, p, k);
		*used += (uint16_t)k;
		p += k;
		n -= k;
		if (*used == size) {
			ok &= EVP_DigestUpdate(md, buf, size) == 1;
			*used = 0;
		}
	}
	return ok;
}

/* ---- the sink: to a hash or to a buffer ---- */

void
msg_dkim_sink_put(struct msg_dkim_sink *s, const void *p, size_t n)
{
	if (s->md != NULL) {
		if (!stage(s->md, s->buf, sizeof(s->buf), &s->n, p, n))
			s->md = NULL;   /* flush reports it */
	} else if (s->out != NULL && s->len + n <= s->cap) {
		memcpy(s->out + s->len, p, n);
	}
	s->len += n;
}

bool
msg_dkim_sink_flush(struct msg_dkim_sink *s)
{
	bool ok = s->md != NULL || s->out != NULL;

	if (s->md != NULL && s->n > 0)
		ok = EVP_DigestUpdate(s->md, s->buf, s->n) == 1;
	s->n = 0;
	return ok;
}

static bool
is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

bool
msg_dkim_canon_field(struct msg_dkim_sink *s, const char *f, size_t n)
{
	const char *colon = memchr(f, ':', n);
	size_t nlen, i;
	bool sp = false, started = false;

	if (colon == NULL)
		return false;
	nlen = (size_t)(colon - f);
	while (nlen > 0 && is_wsp((unsigned char)f[nlen - 1]))
		nlen--;
	for (i = 0; i < nlen; i++) {
		char c = f[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		msg_dkim_sink_put(s, &c, 1);
	}
	msg_dkim_sink_put(s, ":", 1);
	/* unfold, one SP per WSP run, none at either end of the value */
	for (i = (size_t)(colon - f) + 1; i < n; i++) {
		unsigned char c = (unsigned char)f[i];
		size_t run;

		if (c == '\r' || c == '\n')
			continue;
		if (is_wsp(c)) {
			sp = true;
			continue;
		}
		if (sp && started)
			msg_dkim_sink_put(s, " ", 1);
		sp = false;
		started = true;
		for (run = 1; i + run < n && !is_wsp((unsigned char)f[i + run]) &&
		     f[i + run] != '\r' && f[i + run] != '\n'; run++)
			;
		msg_dkim_sink_put(s, f + i, run);
		i += run - 1;
	}
	return true;
}

ssize_t
msg_dkim_canon_header(const char *field, size_t len, char *out, size_t cap)
{
	struct msg_dkim_sink s = { .out = out, .cap = cap };

	if (field == NULL || out == NULL || cap == 0)
		return -EINVAL;
	if (!msg_dkim_canon_field(&s, field, len))
		return -EINVAL;
	if (s.len >= cap)
		return -ENOSPC;
	out[s.len] = '\0';
	return (ssize_t)s.len;
}

/* ---- body ---- */

static void
body_put(struct msg_dkim_body *b, const void *p, size_t n)
{
	if (!stage(b->md, b->buf, sizeof(b->buf), &b->n, p, n))
		b->failed = 1;
}

/* Content bytes (no WSP, no line end): what was held back goes first. */
static void
body_text(struct msg_dkim_body *b, const unsigned char *p, size_t n)
{
	for (; b->blank > 0; b->blank--)
		body_put(b, "\r\n", 2);
	if (b->wsp)
		body_put(b, " ", 1);
	b->wsp = 0;
	body_put(b, p, n);
	b->text = 1;
	b->any = 1;
}

static void
body_eol(struct msg_dkim_body *b)
{
	b->wsp = 0;             /* WSP at the end of a line is ignored */
	if (b->text)
		body_put(b, "\r\n", 2);
	else
		b->blank++;     /* empty, or WSP only: maybe the body's end */
	b->text = 0;
}

int
msg_dkim_body_init(struct msg_dkim_body *b)
{
	const EVP_MD *sha = msg_dkim_sha256();

	memset(b, 0, sizeof(*b));
	if (sha == NULL || (b->md = EVP_MD_CTX_new()) == NULL)
		return -ENOMEM;
	if (EVP_DigestInit_ex(b->md, sha, NULL) != 1) {
		EVP_MD_CTX_free(b->md);
		b->md = NULL;
		return -ENOMEM;
	}
	b->magic = BODY_MAGIC;
	return 0;
}

int
msg_dkim_body_update(struct msg_dkim_body *b, const void *data, size_t n)
{
	const unsigned char *s = data;
	size_t i = 0;

	if (b == NULL || b->magic != BODY_MAGIC || (n > 0 && data == NULL))
		return -EINVAL;
	while (i < n) {
		unsigned char c = s[i];
		size_t j;

		if (b->cr) {
			b->cr = 0;
			if (c == '\n') {
				body_eol(b);
				i++;
				continue;
			}
			/* a CR not followed by LF is content; c comes next */
			body_text(b, (const unsigned char *)"\r", 1);
			continue;
		}
		if (c == '\r') {
			b->cr = 1;
			i++;
			continue;
		}
		if (is_wsp(c)) {
			b->wsp = 1;
			i++;
			continue;
		}
		for (j = i + 1; j < n && s[j] != '\r' && !is_wsp(s[j]); j++)
			;
		body_text(b, s + i, j - i);
		i = j;
	}
	return b->failed ? -EIO : 0;
}

int
msg_dkim_body_final(struct msg_dkim_body *b, uint8_t bh[MSG_DKIM_HASH_LEN])
{
	unsigned int len = 0;
	int rc = 0;

	if (b == NULL || b->magic != BODY_MAGIC || bh == NULL)
		return -EINVAL;
	if (b->cr)
		body_text(b, (const unsigned char *)"\r", 1);
	/* a last line without CRLF gets one (its trailing WSP is dropped,
	 * as at any line end); the empty lines held back are dropped; an
	 * empty body stays empty */
	if (b->text)
		body_eol(b);
	if (b->n > 0 && EVP_DigestUpdate(b->md, b->buf, b->n) != 1)
		b->failed = 1;
	if (EVP_DigestFinal_ex(b->md, bh, &len) != 1 || len != MSG_DKIM_HASH_LEN)
		b->failed = 1;
	if (b->failed)
		rc = -EIO;
	msg_dkim_body_fini(b);
	return rc;
}

void
msg_dkim_body_fini(struct msg_dkim_body *b)
{
	if (b == NULL)
		return;
	if (b->magic == BODY_MAGIC)
		EVP_MD_CTX_free(b->md);
	b->md = NULL;
	b->magic = 0;
}
