/*
 * DKIM signatures (RFC 6376 3.5 and 3.7, RFC 8463): which header fields
 * are signed, the DKIM-Signature header we write, and the hash of the
 * data to sign, kept apart from the private-key operation.
 *
 * msg_dkim_prepare splits the header block into fields, builds h= (the
 * names present among ours and the caller's, each once per occurrence,
 * From once more), hashes the selected fields in h= order (each name's
 * occurrences from the bottom up, as a verifier picks them), then for
 * every key finishes a copy of that hash with its own DKIM-Signature
 * header, written with an empty b=. msg_dkim_sign_prepared writes the
 * same header again (one function writes it both times, so both are the
 * same bytes), signs the hash and appends b=. msg_dkim_prepare_render
 * feeds msg_dkim_prepare from one pass over a copy of a render state.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "msg_int.h"

#define PREP_MAGIC 0x646b7031u  /* "dkp1": struct msg_dkim_prepared filled */
#define FOLD_AT    78
#define SIG_MAX    512          /* RSA-4096 */

/* Signed when present, in this order; the caller's names follow. */
static const char *const std_names[] = {
	"from", "to", "subject", "date", "message-id", "mime-version",
	"content-type", "content-transfer-encoding", "reply-to",
	"list-unsubscribe", "list-unsubscribe-post",
};
#define NSTD (sizeof(std_names) / sizeof(std_names[0]))

struct field {
	uint32_t off;
	uint32_t len;       /* without the final CRLF */
	uint32_t nlen;      /* name, WSP before the colon excluded */
};

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 5322 field name: printable US-ASCII except ":" */
static bool
field_name_ok(const char *s)
{
	size_t n = s != NULL ? strnlen(s, MSG_MAX_HNAME + 1) : 0;

	if (n == 0 || n > MSG_MAX_HNAME)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
			return false;
	return true;
}

static int
check_opts(const struct msg_dkim_opts *o, char *err, size_t errlen)
{
	if (o == NULL || o->keys == NULL || o->nkeys == 0 ||
	    o->nkeys > MSG_DKIM_MAX_SIGS) {
		msg_errf(err, errlen, "dkim: 1 to %d keys", MSG_DKIM_MAX_SIGS);
		return -EINVAL;
	}
	for (size_t i = 0; i < o->nkeys; i++) {
		if (o->keys[i] == NULL) {
			msg_errf(err, errlen, "dkim: key %zu is NULL", i);
			return -EINVAL;
		}
	}
	if (o->nnames > MSG_DKIM_MAX_NAMES || (o->nnames > 0 && o->names == NULL)) {
		msg_errf(err, errlen, "dkim: at most %d extra header names",
			MSG_DKIM_MAX_NAMES);
		return -EINVAL;
	}
	for (size_t i = 0; i < o->nnames; i++) {
		if (!field_name_ok(o->names[i])) {
			msg_errf(err, errlen, "dkim: header name %zu is not a field name"
				" of 1..%d characters", i, MSG_MAX_HNAME);
			return -EINVAL;
		}
		if (strcasecmp(o->names[i], "dkim-signature") == 0) {
			msg_errf(err, errlen, "dkim: DKIM-Signature is not signed");
			return -EINVAL;
		}
	}
	if (o->t < 0) {
		msg_errf(err, errlen, "dkim: t= before 1970");
		return -EINVAL;
	}
	return 0;
}

/* Split a header block into fields; an empty line ends it. */
static int
parse_fields(const char *hdr, size_t len, struct field *f, size_t *nf,
	char *err, size_t errlen)
{
	size_t i = 0, n = 0, line = 0;

	while (i < len) {
		size_t e = i;
		const char *colon;

		line++;
		while (e < len && hdr[e] != '\r' && hdr[e] != '\n')
			e++;
		if (e + 1 >= len || hdr[e] != '\r' || hdr[e + 1] != '\n') {
			msg_errf(err, errlen, e >= len ?
				"dkim: header block does not end with CRLF" :
				"dkim: header line %zu: bare CR or LF", line);
			return -EINVAL;
		}
		if (e == i)
			break;
		if (is_wsp(hdr[i])) {
			if (n == 0) {
				msg_errf(err, errlen, "dkim: header block starts with a"
					" continuation line");
				return -EINVAL;
			}
			f[n - 1].len = (uint32_t)(e - f[n - 1].off);
		} else {
			colon = memchr(hdr + i, ':', e - i);
			if (colon == NULL || colon == hdr + i) {
				msg_errf(err, errlen, "dkim: header line %zu: no field name", line);
				return -EINVAL;
			}
			if (n == MSG_DKIM_FIELDS_MAX) {
				msg_errf(err, errlen, "dkim: more than %d header fields",
					MSG_DKIM_FIELDS_MAX);
				return -E2BIG;
			}
			f[n].off = (uint32_t)i;
			f[n].len = (uint32_t)(e - i);
			f[n].nlen = (uint32_t)(colon - (hdr + i));
			while (f[n].nlen > 0 && is_wsp(hdr[i + f[n].nlen - 1]))
				f[n].nlen--;
			n++;
		}
		i = e + 2;
	}
	*nf = n;
	return 0;
}

static bool
field_is(const char *hdr, const struct field *f, const char *name)
{
	return strlen(name) == f->nlen && strncasecmp(hdr + f->off, name, f->nlen) == 0;
}

/*
 * h= and the fields to hash, in hash order. Our names, then o's, then the
 * template's (tn), each once: a name occurring k times is listed k times
 * and its fields go bottom up, which is how a verifier selects them.
 */
static int
select_fields(struct msg_dkim_prepared *p, const char *hdr,
	const struct field *f, size_t nf, const struct msg_dkim_opts *o,
	const char *const *tn, size_t ntn, uint32_t *sel, size_t *nsel,
	char *err, size_t errlen)
{
	const char *cand[NSTD + 2 * MSG_DKIM_MAX_NAMES];
	size_t nc = 0, ns = 0, hl = 0;

	for (size_t i = 0; i < NSTD; i++)
		cand[nc++] = std_names[i];
	for (size_t i = 0; i < o->nnames; i++)
		cand[nc++] = o->names[i];
	for (size_t i = 0; i < ntn && i < MSG_DKIM_MAX_NAMES; i++)
		cand[nc++] = tn[i];
	for (size_t c = 0; c < nc; c++) {
		size_t k = 0, reps, nl = strlen(cand[c]);
		bool dup = false;

		for (size_t d = 0; d < c && !dup; d++)
			dup = strcasecmp(cand[d], cand[c]) == 0;
		if (dup)
			continue;
		for (size_t j = nf; j-- > 0;) {
			if (field_is(hdr, &f[j], cand[c])) {
				sel[ns++] = (uint32_t)j;
				k++;
			}
		}
		if (c == 0 && k == 0) {
			msg_errf(err, errlen, "dkim: no From header field");
			return -EINVAL;
		}
		/* From once more than it occurs: a From added later breaks it */
		reps = c == 0 ? k + 1 : k;
		for (size_t r = 0; r < reps; r++) {
			if (hl + nl + 1 >= sizeof(p->h)) {
				msg_errf(err, errlen, "dkim: h= over %d characters",
					MSG_DKIM_HLIST_MAX);
				return -E2BIG;
			}
			for (size_t i = 0; i < nl; i++) {
				char ch = cand[c][i];

				p->h[hl++] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
			}
			p->h[hl++] = ':';
		}
	}
	p->h[--hl] = '\0';      /* the last ':' */
	p->hlen = (uint16_t)hl;
	*nsel = ns;
	return 0;
}

/* ---- the DKIM-Signature header, folded ---- */

struct fold {
	char *p;
	size_t cap;
	size_t len;         /* may pass cap: then nothing more is written */
	size_t col;
};

static void
fold_raw(struct fold *w, const char *s, size_t n)
{
	if (w->len + n <= w->cap)
		memcpy(w->p + w->len, s, n);
	w->len += n;
	w->col += n;
}

static void
fold_break(struct fold *w)
{
	fold_raw(w, "\r\n ", 3);
	w->col = 1;
}

/* A token after a space, or at the start of the next line if it would
 * pass FOLD_AT there. */
static void
fold_tok(struct fold *w, const char *s, size_t n, bool space)
{
	if (w->col + (space ? 1 : 0) + n > FOLD_AT && w->col > 1)
		fold_break(w);
	else if (space)
		fold_raw(w, " ", 1);
	fold_raw(w, s, n);
}

static void __attribute__((format(printf, 2, 3)))
fold_tagf(struct fold *w, const char *fmt, ...)
{
	char tok[300];  /* the longest is d= or s= (253) */
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tok, sizeof(tok), fmt, ap);
	va_end(ap);
	fold_tok(w, tok, (size_t)n < sizeof(tok) ? (size_t)n : sizeof(tok) - 1, true);
}

/* Signature i of p up to and including "b=" (the value is not written). */
static void
write_unsigned(const struct msg_dkim_prepared *p, uint32_t i, struct fold *w)
{
	const struct msg_dkim_key *k = p->key[i];
	char bh[2 * MSG_DKIM_HASH_LEN];
	const char *h = p->h, *end = p->h + p->hlen;
	bool first = true;

	EVP_EncodeBlock((unsigned char *)bh, p->bh, MSG_DKIM_HASH_LEN);
	fold_raw(w, "DKIM-Signature:", 15);
	fold_tagf(w, "v=1;");
	fold_tagf(w, "a=%s;", msg_dkim_alg_name(k->alg));
	fold_tagf(w, "c=relaxed/relaxed;");
	fold_tagf(w, "d=%s;", k->domain);
	fold_tagf(w, "s=%s;", k->selector);
	fold_tagf(w, "t=%" PRId64 ";", p->t);
	fold_tagf(w, "bh=%s;", bh);
	/* h= one name at a time: a fold after a ':' is FWS there */
	while (h < end) {
		const char *c = memchr(h, ':', (size_t)(end - h));
		size_t n = c != NULL ? (size_t)(c - h) + 1 : (size_t)(end - h);
		char tok[MSG_MAX_HNAME + 4];

		snprintf(tok, sizeof(tok), "%s%.*s%s", first ? "h=" : "", (int)n, h,
			c != NULL ? "" : ";");
		fold_tok(w, tok, strlen(tok), first);
		first = false;
		h += n;
	}
	fold_tok(w, "b=", 2, true);
}

static int
hash_final(EVP_MD_CTX *md, uint8_t out[MSG_DKIM_HASH_LEN])
{
	unsigned int len = 0;

	return EVP_DigestFinal_ex(md, out, &len) == 1 && len == MSG_DKIM_HASH_LEN ?
		0 : -EIO;
}

static int
prepare(struct msg_dkim_prepared *p, const char *hdr, size_t len,
	const uint8_t bh[MSG_DKIM_HASH_LEN], const struct msg_dkim_opts *o,
	const char *const *tn, size_t ntn, char *err, size_t errlen)
{
	struct field f[MSG_DKIM_FIELDS_MAX];
	uint32_t sel[MSG_DKIM_FIELDS_MAX];
	struct msg_dkim_sink s = { 0 };
	char text[MSG_DKIM_SIG_MAX];
	EVP_MD_CTX *hc = NULL, *kc = NULL;
	size_t nf, ns;
	int rc;

	if (p == NULL || (hdr == NULL && len > 0) || bh == NULL)
		return -EINVAL;
	memset(p, 0, offsetof(struct msg_dkim_prepared, h));
	if ((rc = check_opts(o, err, errlen)) < 0 ||
	    (rc = parse_fields(hdr, len, f, &nf, err, errlen)) < 0 ||
	    (rc = select_fields(p, hdr, f, nf, o, tn, ntn, sel, &ns, err, errlen)) < 0)
		return rc;
	p->nsig = (uint32_t)o->nkeys;
	p->t = (int64_t)o->t;
	memcpy(p->bh, bh, MSG_DKIM_HASH_LEN);
	for (size_t i = 0; i < o->nkeys; i++)
		p->key[i] = o->keys[i];

	rc = -ENOMEM;
	if ((hc = EVP_MD_CTX_new()) == NULL || (kc = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(hc, msg_dkim_sha256(), NULL) != 1)
		goto out;
	s.md = hc;
	for (size_t i = 0; i < ns; i++) {
		msg_dkim_canon_field(&s, hdr + f[sel[i]].off, f[sel[i]].len);
		msg_dkim_sink_put(&s, "\r\n", 2);
	}
	rc = -EIO;
	if (!msg_dkim_sink_flush(&s))
		goto out;
	for (uint32_t i = 0; i < p->nsig; i++) {
		struct fold w = { .p = text, .cap = sizeof(text) };

		write_unsigned(p, i, &w);
		if (w.len > w.cap)
			abort();        /* MSG_DKIM_SIG_MAX is a bound by construction */
		if (EVP_MD_CTX_copy_ex(kc, hc) != 1)
			goto out;
		s.md = kc;
		/* the signature's own header last, without its CRLF */
		msg_dkim_canon_field(&s, text, w.len);
		if (!msg_dkim_sink_flush(&s) || hash_final(kc, p->hash[i]) < 0)
			goto out;
	}
	p->magic = PREP_MAGIC;
	rc = 0;
out:
	if (rc == -ENOMEM)
		msg_errf(err, errlen, "out of memory");
	else if (rc < 0)
		msg_errf(err, errlen, "dkim: SHA-256 failed");
	EVP_MD_CTX_free(hc);
	EVP_MD_CTX_free(kc);
	return rc;
}

int
msg_dkim_prepare(struct msg_dkim_prepared *p, const char *hdr, size_t len,
	const uint8_t bh[MSG_DKIM_HASH_LEN], const struct msg_dkim_opts *o,
	char *err, size_t errlen)
{
	return prepare(p, hdr, len, bh, o, NULL, 0, err, errlen);
}

/* Offset of "\r\n\r\n" in s[0..n) looking from from, or n. */
static size_t
find_hdr_end(const char *s, size_t from, size_t n)
{
	for (size_t i = from; i + 4 <= n; i++)
		if (s[i] == '\r' && memcmp(s + i, "\r\n\r\n", 4) == 0)
			return i;
	return n;
}

int
msg_dkim_prepare_render(struct msg_dkim_prepared *p,
	const struct msg_render *r, const struct msg_dkim_opts *o,
	char *err, size_t errlen)
{
	struct msg_render c;
	struct msg_dkim_body b;
	uint8_t bh[MSG_DKIM_HASH_LEN];
	char hdr[MSG_DKIM_HDR_MAX], buf[4096];
	size_t hl = 0, end = SIZE_MAX;
	ssize_t n = 0;
	int rc;

	if (r == NULL || r->magic != MSG_MAGIC || p == NULL)
		return -EINVAL;
	/* DKIM signs the message, not its DATA encoding */
	c = *r;
	c.flags &= ~MSG_F_DOTSTUFF;
	msg_render_rewind(&c);
	while (end == SIZE_MAX && hl < sizeof(hdr) &&
	       (n = msg_render_read(&c, hdr + hl, sizeof(hdr) - hl)) > 0) {
		size_t e = find_hdr_end(hdr, hl >= 3 ? hl - 3 : 0, hl + (size_t)n);

		hl += (size_t)n;
		if (e < hl)
			end = e;
	}
	if (n < 0)
		return (int)n;
	if (end == SIZE_MAX && hl >= sizeof(hdr)) {
		msg_errf(err, errlen, "dkim: header block over %d octets",
			MSG_DKIM_HDR_MAX);
		return -E2BIG;
	}
	if (end == SIZE_MAX) {
		msg_errf(err, errlen, "dkim: message without an empty line after"
			" its header");
		return -EINVAL;
	}
	if ((rc = msg_dkim_body_init(&b)) < 0) {
		msg_errf(err, errlen, "out of memory");
		return rc;
	}
	rc = msg_dkim_body_update(&b, hdr + end + 4, hl - end - 4);
	while (rc == 0 && (n = msg_render_read(&c, buf, sizeof(buf))) > 0)
		rc = msg_dkim_body_update(&b, buf, (size_t)n);
	if (rc == 0 && n < 0)
		rc = (int)n;
	if (rc < 0) {
		msg_dkim_body_fini(&b);
		msg_errf(err, errlen, "dkim: body hash failed");
		return rc;
	}
	if ((rc = msg_dkim_body_final(&b, bh)) < 0) {
		msg_errf(err, errlen, "dkim: body hash failed");
		return rc;
	}
	return prepare(p, hdr, end + 2, bh, o,
		(const char *const *)r->t->hname, r->t->nhdr, err, errlen);
}

ssize_t
msg_dkim_sign_prepared(const struct msg_dkim_prepared *p, char *out,
	size_t cap, char *err, size_t errlen)
{
	struct fold w = { .p = out, .cap = cap };

	if (p == NULL || p->magic != PREP_MAGIC || p->nsig == 0 ||
	    p->nsig > MSG_DKIM_MAX_SIGS || out == NULL)
		return -EINVAL;
	for (uint32_t i = 0; i < p->nsig; i++) {
		uint8_t sig[SIG_MAX];
		char b64[SIG_MAX / 3 * 4 + 8];
		ssize_t sl;
		size_t bl, off = 0;

		sl = msg_dkim_key_sign(p->key[i], p->hash[i], sig, sizeof(sig), err, errlen);
		if (sl < 0)
			return sl;
		bl = (size_t)EVP_EncodeBlock((unsigned char *)b64, sig, (int)sl);
		w.col = 0;
		write_unsigned(p, i, &w);
		/* b= runs on to FOLD_AT, then whole lines: FWS in b= is ignored */
		while (off < bl) {
			size_t room = FOLD_AT > w.col ? FOLD_AT - w.col : 0, k;

			if (room < 8) {
				fold_break(&w);
				continue;
			}
			k = bl - off < room ? bl - off : room;
			fold_raw(&w, b64 + off, k);
			off += k;
		}
		fold_raw(&w, "\r\n", 2);
	}
	if (w.len >= cap) {
		msg_errf(err, errlen, "dkim: %zu octets of headers, room for %zu",
			w.len + 1, cap);
		return -ENOSPC;
	}
	out[w.len] = '\0';
	return (ssize_t)w.len;
}

ssize_t
msg_dkim_sign_render(const struct msg_render *r, const struct msg_dkim_opts *o,
	char *out, size_t cap, char *err, size_t errlen)
{
	struct msg_dkim_prepared p;
	int rc = msg_dkim_prepare_render(&p, r, o, err, errlen);

	if (rc < 0)
		return rc;
	return msg_dkim_sign_prepared(&p, out, cap, err, errlen);
}
