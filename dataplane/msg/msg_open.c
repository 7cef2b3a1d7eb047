/*
 * msg_render_open: everything that can be wrong with one recipient is
 * found here, before the first byte is produced, so msg_render_read never
 * fails midway. In order: recipient and sender addresses, Message-ID
 * token, every merge value a template uses (present or defaulted, UTF-8,
 * nothing that could break a header line), then the encoding decisions
 * the generator follows (header text modes, body transfer encodings) and
 * the multipart boundary.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mp_hash.h"
#include "msg_int.h"

static int
check_fields(const struct msg_render *r, const struct msg_tpl *t, bool header,
	char *err, size_t errlen)
{
	for (uint32_t i = 0; i < t->nseg; i++) {
		const struct msg_seg *s = &t->seg[i];
		const char *v;
		size_t n;

		if (s->kind != MSG_SEG_FIELD)
			continue;
		v = msg_field_lookup(r, s->s, s->len, &n);
		if (v == NULL) {
			if (s->has_def)
				continue;
			msg_errf(err, errlen, "missing field '%.*s' (used in %s, no default)",
				(int)s->len, s->s, t->part);
			return -EINVAL;
		}
		if (msg_utf8_check(v, n) != n) {
			msg_errf(err, errlen, "field '%.*s' (used in %s): invalid UTF-8",
				(int)s->len, s->s, t->part);
			return -EINVAL;
		}
		if (!header)
			continue;
		for (size_t k = 0; k < n; k++) {
			unsigned char c = (unsigned char)v[k];
			const char *why = NULL;

			if (c == '\r' || c == '\n')
				why = "CR or LF";
			else if (c == 0)
				why = "NUL";
			else if ((c < 32 && c != '\t') || c == 127)
				why = "a control character";
			if (why != NULL) {
				msg_errf(err, errlen, "field '%.*s' (used in header %s): contains %s",
					(int)s->len, s->s, t->part, why);
				return -EINVAL;
			}
		}
	}
	return 0;
}

struct hstat {
	bool nonascii;
	bool special;   /* ASCII that is not atext or whitespace */
	bool encword;   /* "=?" would look like an encoded word */
	size_t chunk;   /* longest whitespace run + following word */
	size_t chunk_q; /* the same with quoted-string escapes */
	size_t total;
	size_t nonwsp;
};

static void
scan_hdr(const struct msg_render *r, const struct msg_tpl *t, struct hstat *h)
{
	struct msg_cur c;
	size_t w = 0, word = 0, word_q = 0;
	int b, prev = -1;

	memset(h, 0, sizeof(*h));
	msg_cur_init(&c, t, MSG_ESC_NONE);
	for (;;) {
		b = msg_cur_next(r, &c);
		if (b < 0 || (msg_is_wsp(b) && word > 0)) {
			if (w + word > h->chunk)
				h->chunk = w + word;
			if (w + word_q > h->chunk_q)
				h->chunk_q = w + word_q;
			w = word = word_q = 0;
		}
		if (b < 0)
			break;
		h->total++;
		if (msg_is_wsp(b)) {
			w++;
		} else {
			h->nonwsp++;
			word++;
			word_q += (b == '"' || b == '\\') ? 2 : 1;
		}
		if (b >= 0x80)
			h->nonascii = true;
		else if (!msg_is_wsp(b) && !msg_is_atext((unsigned char)b))
			h->special = true;
		if (prev == '=' && b == '?')
			h->encword = true;
		prev = b;
	}
}

static int
hdr_mode(const struct msg_render *r, const struct msg_tpl *t, bool phrase)
{
	struct hstat h;

	if (!t->present)
		return phrase ? MSG_HM_NONE : MSG_HM_PLAIN;
	scan_hdr(r, t, &h);
	if (phrase && h.nonwsp == 0)
		return MSG_HM_NONE;     /* e.g. "{{first|}} {{last|}}" with neither */
	if ((h.nonascii && !(r->flags & MSG_F_SMTPUTF8)) || h.encword)
		return MSG_HM_ENC;
	if (!phrase)
		return h.chunk > MSG_CHUNK_MAX ? MSG_HM_ENC : MSG_HM_PLAIN;
	if (h.special)
		return h.chunk_q + 2 > MSG_CHUNK_MAX ? MSG_HM_ENC : MSG_HM_QUOTED;
	return h.chunk > MSG_CHUNK_MAX ? MSG_HM_ENC : MSG_HM_PLAIN;
}

struct bscan {
	size_t len, maxline;
	unsigned m;             /* chars of "=_mp" matched */
	bool nonascii, nul, hit, dot;
};

static inline void
bscan_byte(struct bscan *s, unsigned b)
{
	static const char pat[] = "=_mp";

	if (s->len == 0)
		s->dot = b == '.';
	s->len++;
	s->nonascii |= b >= 0x80;
	s->nul |= b == 0;
	/* '=' occurs once in the pattern, so restarting on it is exact */
	s->m = b == (unsigned char)pat[s->m] ? s->m + 1 : (b == '=' ? 1 : 0);
	if (s->m == sizeof(pat) - 1) {
		s->hit = true;
		s->m = 0;
	}
}

/* Transfer encoding of a body part; the rules are listed in msg.h. */
static int
body_cte(const struct msg_render *r, const struct msg_tpl *t, int esc,
	bool multipart)
{
	struct msg_cur c;
	struct bscan s = { 0 };
	int b;

	msg_cur_init(&c, t, esc);
	for (;;) {
		if (c.esc_pos >= c.esc_len && msg_cur_fill(r, &c) &&
		    !(c.isval && c.esc_mode != MSG_ESC_NONE)) {
			/* fast path over a chunk, up to a line break */
			const unsigned char *p = (const unsigned char *)c.p;
			const unsigned char *e = p + c.left;

			while (p < e && *p != '\r' && *p != '\n')
				bscan_byte(&s, *p++);
			c.left -= (size_t)(p - (const unsigned char *)c.p);
			c.p = (const char *)p;
			if (c.left == 0)
				continue;
		}
		b = msg_cur_next(r, &c);
		if (b < 0 || b == '\r' || b == '\n') {
			size_t eff = s.len + (s.dot && (r->flags & MSG_F_DOTSTUFF) ? 1 : 0);

			if (eff > s.maxline)
				s.maxline = eff;
			if (b < 0)
				break;
			if (b == '\r' && msg_cur_peek(r, &c) == '\n')
				msg_cur_next(r, &c);
			s.len = 0;
			s.dot = false;
			s.m = 0;
			continue;
		}
		bscan_byte(&s, (unsigned)b);
	}
	if (s.nul || s.maxline > MSG_LINE_MAX || (multipart && s.hit))
		return MSG_CTE_QP;
	if (s.nonascii)
		return (r->flags & MSG_F_8BITMIME) ? MSG_CTE_8BIT : MSG_CTE_QP;
	return MSG_CTE_7BIT;
}

static bool
token_ok(const char *s)
{
	size_t n = strnlen(s, MSG_MAX_TOKEN + 1);

	if (n == 0 || n > MSG_MAX_TOKEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

int
msg_render_open(struct msg_render *r, const struct msg_template *t,
	const char *rcpt_addr, const struct msg_fields *fields, unsigned flags,
	time_t date, char *err, size_t errlen)
{
	const struct msg_tpl *hdr_tpls[4];
	uint64_t h;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (r == NULL || t == NULL) {
		msg_errf(err, errlen, "no render state or template");
		return -EINVAL;
	}
	memset(r, 0, sizeof(*r));
	r->t = t;
	r->flags = flags;
	r->date = date;
	if (fields != NULL)
		r->f = *fields;
	if (r->f.n > 0 && r->f.v == NULL) {
		msg_errf(err, errlen, "fields: n > 0 with no array");
		return -EINVAL;
	}
	if (rcpt_addr == NULL || msg_addr_valid(rcpt_addr, flags & MSG_F_SMTPUTF8) < 0) {
		msg_errf(err, errlen, "recipient address invalid%s: '%.254s'",
			(rcpt_addr && msg_has_nonascii(rcpt_addr, strnlen(rcpt_addr, 256)) &&
			 !(flags & MSG_F_SMTPUTF8)) ? " (non-ASCII needs SMTPUTF8)" : "",
			rcpt_addr ? rcpt_addr : "(null)");
		return -EINVAL;
	}
	r->rcpt = rcpt_addr;
	r->rcpt_len = strlen(rcpt_addr);
	if (!(flags & MSG_F_SMTPUTF8) && (t->from_utf8 || t->reply_utf8)) {
		msg_errf(err, errlen, "from/reply-to address is non-ASCII and the session "
			"has no SMTPUTF8");
		return -EINVAL;
	}
	if (r->f.msgid_token != NULL) {
		if (!token_ok(r->f.msgid_token)) {
			msg_errf(err, errlen, "msgid_token: must be 1-%d of [A-Za-z0-9._-]",
				MSG_MAX_TOKEN);
			return -EINVAL;
		}
	} else if (t->campaign_id == NULL) {
		msg_errf(err, errlen, "no msgid_token and no campaign_id for Message-ID");
		return -EINVAL;
	}

	/* merge values: presence, UTF-8, nothing that could break a header */
	hdr_tpls[0] = &t->from_name;
	hdr_tpls[1] = &t->to_name;
	hdr_tpls[2] = &t->subject;
	hdr_tpls[3] = &t->unsub;
	for (int i = 0; i < 4; i++)
		if ((rc = check_fields(r, hdr_tpls[i], true, err, errlen)) < 0)
			return rc;
	for (size_t i = 0; i < t->nhdr; i++)
		if ((rc = check_fields(r, &t->hval[i], true, err, errlen)) < 0)
			return rc;
	if ((rc = check_fields(r, &t->text, false, err, errlen)) < 0 ||
	    (rc = check_fields(r, &t->html, false, err, errlen)) < 0)
		return rc;

	r->mode_from = (uint8_t)hdr_mode(r, &t->from_name, true);
	r->mode_to = (uint8_t)hdr_mode(r, &t->to_name, true);
	r->mode_subject = (uint8_t)hdr_mode(r, &t->subject, false);
	for (size_t i = 0; i < t->nhdr; i++)
		r->mode_hdr[i] = (uint8_t)hdr_mode(r, &t->hval[i], false);
	if (t->unsub.present) {
		struct msg_cur c;
		size_t n = 0;

		msg_cur_init(&c, &t->unsub, MSG_ESC_URL);
		while (msg_cur_next(r, &c) >= 0)
			n++;
		if (n + 21 > MSG_LINE_MAX) {
			msg_errf(err, errlen, "unsub_url: %zu octets, too long for one header line", n);
			return -EINVAL;
		}
	}
	{
		bool multi = t->text.present && t->html.present;

		if (t->text.present)
			r->cte[0] = (uint8_t)body_cte(r, &t->text, MSG_ESC_NONE, multi);
		if (t->html.present)
			r->cte[1] = (uint8_t)body_cte(r, &t->html, MSG_ESC_HTML, multi);
	}

	/* "=_" never occurs in quoted-printable, and 7bit/8bit parts holding
	 * "=_mp" were switched to quoted-printable above */
	h = mp_fnv1a(MP_FNV1A_INIT, r->rcpt, r->rcpt_len);
	if (r->f.msgid_token != NULL)
		h = mp_fnv1a(h, r->f.msgid_token, strlen(r->f.msgid_token));
	if (t->campaign_id != NULL)
		h = mp_fnv1a(h, t->campaign_id, strlen(t->campaign_id));
	h = mp_fnv1a(h, &r->f.index, sizeof(r->f.index));
	h = mp_fnv1a(h, &date, sizeof(date));
	snprintf(r->boundary, sizeof(r->boundary), "=_mp%016llx", (unsigned long long)h);

	msg_render_rewind(r);
	r->magic = MSG_MAGIC;
	return 0;
}
