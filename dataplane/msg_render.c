/*
 * Per-recipient rendering: msg_render_open checks the recipient's fields
 * against the compiled template and decides every encoding up front
 * (header text mode, body transfer encoding, boundary); msg_render_read
 * then runs a small generator that walks the template segments with a
 * cursor and writes straight into the caller's buffer. What does not fit
 * (at most one encoding unit) waits in the fixed-size pend[] of the state.
 *
 * Stages, in output order: Date, From, Reply-To, To, Subject, Message-ID,
 * MIME-Version, extra headers, List-Unsubscribe(-Post), Content-Type,
 * Content-Transfer-Encoding, blank line, body part(s), closing boundary.
 * Every byte goes through out_put(), which applies dot-stuffing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg_int.h"

#define MSG_MAGIC 0x6d736731u   /* "msg1" */
#define FOLD_AT 78              /* RFC 5322 "SHOULD" line length */
#define CHUNK_MAX 900           /* longest unfoldable run we print as is */

enum msg_stage {
	ST_DATE = 0,
	ST_FROM,
	ST_REPLYTO,
	ST_TO,
	ST_SUBJECT,
	ST_MSGID,
	ST_MIME,
	ST_EXTRA,
	ST_LUNSUB,
	ST_LUNSUB_POST,
	ST_CTYPE,
	ST_CTE,
	ST_HDR_END,
	ST_PART_HDR,
	ST_PART_BODY,
	ST_CLOSE,
	ST_END,
	ST_LAST
};

static const char *const stage_names[ST_LAST] = {
	"date", "from", "reply-to", "to", "subject", "message-id", "mime-version",
	"extra", "list-unsubscribe", "list-unsubscribe-post", "content-type",
	"cte", "header-end", "part-header", "part-body", "close", "end",
};

/* How header text is written. */
enum msg_hmode {
	HM_PLAIN = 0,   /* as is, folded at whitespace */
	HM_QUOTED,      /* display name as a quoted-string */
	HM_ENC,         /* RFC 2047 encoded words (B, UTF-8) */
	HM_NONE,        /* no display name */
	HM_LAST
};

enum msg_cte {
	CTE_7BIT = 0,
	CTE_8BIT,
	CTE_QP,
	CTE_LAST
};

static const char *const cte_names[CTE_LAST] = {
	"7bit", "8bit", "quoted-printable",
};

enum msg_esc {
	ESC_NONE = 0,
	ESC_HTML,
	ESC_URL,
	ESC_LAST
};

struct out {
	char *dst;
	size_t cap;
	size_t len;
};

static void
rerr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
rerr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- merge values and the segment cursor ---- */

static const char *
field_lookup(const struct msg_render *r, const char *name, size_t nlen,
	size_t *vlen)
{
	if (nlen == 5 && memcmp(name, "email", 5) == 0) {
		*vlen = r->rcpt_len;
		return r->rcpt;
	}
	for (size_t i = 0; i < r->f.n; i++) {
		const struct msg_field *f = &r->f.v[i];

		if (f->name != NULL && strncmp(f->name, name, nlen) == 0 &&
		    f->name[nlen] == '\0') {
			*vlen = f->len;
			return f->value != NULL ? f->value : "";
		}
	}
	return NULL;
}

static void
cur_init(struct msg_cur *c, const struct msg_tpl *t, int esc)
{
	memset(c, 0, sizeof(*c));
	c->tpl = t;
	c->seg = UINT32_MAX;    /* before the first segment */
	c->esc_mode = (uint8_t)esc;
}

/* Make c->p/left point at the next non-empty chunk; false at the end. */
static bool
cur_fill(const struct msg_render *r, struct msg_cur *c)
{
	const struct msg_tpl *t = c->tpl;

	while (c->left == 0) {
		const struct msg_seg *s;

		if (c->seg != UINT32_MAX && c->seg >= t->nseg)
			return false;
		c->seg++;
		if (c->seg >= t->nseg)
			return false;
		s = &t->seg[c->seg];
		c->isval = 0;
		if (s->kind == MSG_SEG_LIT) {
			c->p = s->s;
			c->left = s->len;
		} else if ((c->p = field_lookup(r, s->s, s->len, &c->left)) != NULL) {
			c->isval = 1;
		} else if (s->has_def) {
			c->p = s->def;
			c->left = s->dlen;
		} else {
			c->left = 0;    /* excluded by msg_render_open */
		}
	}
	return true;
}

static const char hexd[] = "0123456789ABCDEF";

/* Next content byte (after value escaping) or -1 at the end. */
static int
cur_next(const struct msg_render *r, struct msg_cur *c)
{
	unsigned char b;
	const char *rep = NULL;

	if (c->esc_pos < c->esc_len)
		return (unsigned char)c->esc[c->esc_pos++];
	if (c->left == 0 && !cur_fill(r, c))
		return -1;
	b = (unsigned char)*c->p++;
	c->left--;
	if (!c->isval || c->esc_mode == ESC_NONE)
		return b;
	if (c->esc_mode == ESC_HTML) {
		switch (b) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: return b;
		}
		c->esc_len = (uint8_t)strlen(rep);
		memcpy(c->esc, rep, c->esc_len);
	} else {
		if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
		    (b >= '0' && b <= '9') || b == '-' || b == '.' || b == '_' || b == '~')
			return b;
		c->esc[0] = '%';
		c->esc[1] = hexd[b >> 4];
		c->esc[2] = hexd[b & 15];
		c->esc_len = 3;
	}
	c->esc_pos = 1;
	return (unsigned char)c->esc[0];
}

static int
cur_peek(const struct msg_render *r, const struct msg_cur *c)
{
	struct msg_cur tmp = *c;

	return cur_next(r, &tmp);
}

/* ---- output: caller's buffer first, overflow into pend, dot-stuffing ---- */

static void
put_raw(struct msg_render *r, struct out *o, const char *s, size_t n)
{
	size_t k = o->cap - o->len;

	if (k > n)
		k = n;
	if (o->dst != NULL)
		memcpy(o->dst + o->len, s, k);
	o->len += k;
	n -= k;
	if (n == 0)
		return;
	/* at most one encoding unit spills; pend is sized for the largest */
	if ((size_t)r->pend_len + n > sizeof(r->pend))
		abort();
	memcpy(r->pend + r->pend_len, s + k, n);
	r->pend_len += (uint16_t)n;
}

static void
out_put(struct msg_render *r, struct out *o, const char *s, size_t n)
{
	while (n > 0) {
		const char *lf;
		size_t run;

		if (r->bol && s[0] == '.' && (r->flags & MSG_F_DOTSTUFF))
			put_raw(r, o, ".", 1);
		lf = memchr(s, '\n', n);
		run = lf ? (size_t)(lf - s) + 1 : n;
		put_raw(r, o, s, run);
		r->bol = s[run - 1] == '\n';
		s += run;
		n -= run;
	}
}

static void
out_str(struct msg_render *r, struct out *o, const char *s)
{
	out_put(r, o, s, strlen(s));
}

static size_t
out_room(const struct out *o)
{
	return o->cap - o->len;
}

/* ---- header text: plain / quoted / RFC 2047 ---- */

static bool
is_wsp(int c)
{
	return c == ' ' || c == '\t';
}

static size_t
utf8_lead_len(int c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xf0)
		return 4;
	if (c >= 0xe0)
		return 3;
	return 2;
}

static size_t
b64_encode(const unsigned char *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tab[v & 63] : '=';
	}
	return o;
}

/* Write header text from r->cur in the given mode; true when finished. */
static bool
text_step(struct msg_render *r, struct out *o, int mode)
{
	while (out_room(o) > 0) {
		int c;

		if (mode == HM_ENC) {
			unsigned char buf[48];
			char line[80];
			size_t avail, max, nb = 0, l;

			if (cur_peek(r, &r->cur) < 0)
				return true;
			if (r->tphase) {
				out_str(r, o, "\r\n ");
				r->col = 1;
			}
			avail = 76 > r->col + 12 ? 76 - r->col - 12 : 0;
			max = avail / 4 * 3;
			if (max < 4) {
				out_str(r, o, "\r\n ");
				r->col = 1;
				max = 45;
			}
			if (max > 45)
				max = 45;
			while (nb < max && (c = cur_peek(r, &r->cur)) >= 0) {
				l = utf8_lead_len(c);
				if (nb + l > max)
					break;
				while (l-- > 0)
					buf[nb++] = (unsigned char)cur_next(r, &r->cur);
			}
			memcpy(line, "=?UTF-8?B?", 10);
			l = 10 + b64_encode(buf, nb, line + 10);
			line[l++] = '?';
			line[l++] = '=';
			out_put(r, o, line, l);
			r->col += (uint16_t)l;
			r->tphase = 1;
			continue;
		}
		if (mode == HM_QUOTED && r->tphase == 0) {
			out_put(r, o, "\"", 1);
			r->col++;
			r->tphase = 1;
		}
		c = cur_peek(r, &r->cur);
		if (c < 0) {
			if (mode == HM_QUOTED)
				out_put(r, o, "\"", 1);
			return true;
		}
		if (is_wsp(c)) {
			/* fold (or not) once, at the start of a whitespace run */
			if (r->tphase != 2) {
				struct msg_cur m = r->cur;
				size_t w = 0, n = 0;
				int d;

				while ((d = cur_next(r, &m)) >= 0 && is_wsp(d))
					w++;
				while (d >= 0 && !is_wsp(d)) {
					n += (mode == HM_QUOTED && (d == '"' || d == '\\')) ? 2 : 1;
					d = cur_next(r, &m);
				}
				if (d < 0 && mode == HM_QUOTED)
					n++;
				if (n == 0) {
					/* trailing whitespace of an unstructured value is
					 * dropped: it could only make an over-long line or
					 * a whitespace-only continuation */
					while (cur_next(r, &r->cur) >= 0)
						;
					return true;
				}
				if (n > 0 && r->tphase == 1 && r->col + w + n > FOLD_AT) {
					out_put(r, o, "\r\n", 2);
					r->col = 0;
				}
				r->tphase = 2;
			}
			for (int k = 0; k < 64 && out_room(o) > 0 &&
			     is_wsp(c = cur_peek(r, &r->cur)); k++) {
				char ch = (char)cur_next(r, &r->cur);

				out_put(r, o, &ch, 1);
				r->col++;
			}
			continue;
		}
		/* a word, in bounded pieces; folding happens only at whitespace */
		for (int k = 0; k < 64 && out_room(o) > 0 &&
		     (c = cur_peek(r, &r->cur)) >= 0 && !is_wsp(c); k++) {
			char ch[2] = { '\\', (char)c };

			cur_next(r, &r->cur);
			if (mode == HM_QUOTED && (c == '"' || c == '\\')) {
				out_put(r, o, ch, 2);
				r->col += 2;
			} else {
				out_put(r, o, ch + 1, 1);
				r->col++;
			}
		}
		r->tphase = 1;
	}
	return false;
}

/* ---- body parts ---- */

static const struct msg_tpl *
part_tpl(const struct msg_render *r, unsigned idx)
{
	if (idx == 0 && r->t->text.present)
		return &r->t->text;
	return &r->t->html;
}

static unsigned
part_count(const struct msg_render *r)
{
	return (r->t->text.present ? 1u : 0u) + (r->t->html.present ? 1u : 0u);
}

/* cte slot of part idx: 0 text, 1 html */
static unsigned
part_slot(const struct msg_render *r, unsigned idx)
{
	return part_tpl(r, idx) == &r->t->text ? 0 : 1;
}

static bool
body_step_plain(struct msg_render *r, struct out *o)
{
	struct msg_cur *c = &r->cur;

	while (out_room(o) > 0) {
		int b;

		if (c->esc_pos >= c->esc_len && cur_fill(r, c) &&
		    !(c->isval && c->esc_mode != ESC_NONE)) {
			/* fast path: copy a run up to the next CR/LF */
			size_t n = c->left, room = out_room(o), k;

			if (n > room)
				n = room;
			for (k = 0; k < n && c->p[k] != '\r' && c->p[k] != '\n'; k++)
				;
			if (k > 0) {
				out_put(r, o, c->p, k);
				c->p += k;
				c->left -= k;
				r->last_lf = 0;
				continue;
			}
		}
		b = cur_next(r, c);
		if (b < 0) {
			if (!r->last_lf)
				out_put(r, o, "\r\n", 2);
			return true;
		}
		if (b == '\r' || b == '\n') {
			if (b == '\r' && cur_peek(r, c) == '\n')
				cur_next(r, c);
			out_put(r, o, "\r\n", 2);
			r->last_lf = 1;
		} else {
			char ch = (char)b;

			out_put(r, o, &ch, 1);
			r->last_lf = 0;
		}
	}
	return false;
}

static bool
body_step_qp(struct msg_render *r, struct out *o)
{
	struct msg_cur *c = &r->cur;

	while (out_room(o) > 0) {
		char rep[3];
		size_t n = 1;
		int b = cur_next(r, c);

		if (b < 0) {
			/* a soft break keeps the content exact and ends with CRLF */
			if (r->col > 0)
				out_put(r, o, "=\r\n", 3);
			return true;
		}
		if (b == '\r' || b == '\n') {
			if (b == '\r' && cur_peek(r, c) == '\n')
				cur_next(r, c);
			out_put(r, o, "\r\n", 2);
			r->col = 0;
			continue;
		}
		rep[0] = (char)b;
		if (b == ' ' || b == '\t') {
			int nx = cur_peek(r, c);

			if (nx < 0 || nx == '\r' || nx == '\n')
				n = 3;
		} else if (b < 33 || b > 126 || b == '=') {
			n = 3;
		}
		if (n == 3) {
			rep[0] = '=';
			rep[1] = hexd[b >> 4];
			rep[2] = hexd[b & 15];
		}
		if (r->col + n > 75) {
			out_put(r, o, "=\r\n", 3);
			r->col = 0;
		}
		out_put(r, o, rep, n);
		r->col += (uint16_t)n;
	}
	return false;
}

/* ---- generator ---- */

static void
fmt_date(time_t t, char *buf, size_t len)
{
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d +0000",
		wd[tm.tm_wday % 7], tm.tm_mday, mo[tm.tm_mon % 12], tm.tm_year + 1900,
		tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void
next_stage(struct msg_render *r, int st)
{
	r->stage = (uint16_t)st;
	r->phase = 0;
	r->tphase = 0;
	r->col = 0;
}

/* "Name: [phrase] addr" for From / To / Reply-To */
static void
step_addr_hdr(struct msg_render *r, struct out *o, const char *name,
	const struct msg_tpl *phrase, int mode, const char *addr, size_t alen,
	int next)
{
	char line[300];

	switch (r->phase) {
	case 0:
		snprintf(line, sizeof(line), "%s: ", name);
		out_str(r, o, line);
		r->col = (uint16_t)strlen(line);
		if (mode == HM_NONE) {
			out_put(r, o, addr, alen);
			out_put(r, o, "\r\n", 2);
			next_stage(r, next);
			return;
		}
		cur_init(&r->cur, phrase, ESC_NONE);
		r->phase = 1;
		/* fall through */
	case 1:
		if (!text_step(r, o, mode))
			return;
		if (r->col + 3 + alen > FOLD_AT)
			out_put(r, o, "\r\n", 2);
		snprintf(line, sizeof(line), " <%.*s>\r\n", (int)alen, addr);
		out_str(r, o, line);
		next_stage(r, next);
		return;
	default:
		abort();
	}
}

static void
step_text_hdr(struct msg_render *r, struct out *o, const char *name,
	const struct msg_tpl *t, int mode)
{
	if (r->phase == 0) {
		out_str(r, o, name);
		out_put(r, o, ": ", 2);
		r->col = (uint16_t)(strlen(name) + 2);
		cur_init(&r->cur, t, ESC_NONE);
		r->phase = 1;
	}
	if (text_step(r, o, mode)) {
		out_put(r, o, "\r\n", 2);
		r->phase = 2;
	}
}

static void
step(struct msg_render *r, struct out *o)
{
	const struct msg_template *t = r->t;
	char line[400];

	switch (r->stage) {
	case ST_DATE:
		memcpy(line, "Date: ", 6);
		fmt_date(r->date, line + 6, 64);
		strcat(line, "\r\n");
		out_str(r, o, line);
		next_stage(r, ST_FROM);
		break;
	case ST_FROM:
		step_addr_hdr(r, o, "From", &t->from_name, r->mode_from, t->from_addr,
			strlen(t->from_addr), ST_REPLYTO);
		break;
	case ST_REPLYTO:
		if (t->reply_to != NULL) {
			snprintf(line, sizeof(line), "Reply-To: %s\r\n", t->reply_to);
			out_str(r, o, line);
		}
		next_stage(r, ST_TO);
		break;
	case ST_TO:
		step_addr_hdr(r, o, "To", &t->to_name, r->mode_to, r->rcpt, r->rcpt_len,
			ST_SUBJECT);
		break;
	case ST_SUBJECT:
		step_text_hdr(r, o, "Subject", &t->subject, r->mode_subject);
		if (r->phase == 2)
			next_stage(r, ST_MSGID);
		break;
	case ST_MSGID:
		if (r->f.msgid_token != NULL)
			snprintf(line, sizeof(line), "Message-ID: <%s@%s>\r\n",
				r->f.msgid_token, t->msgid_domain);
		else
			snprintf(line, sizeof(line), "Message-ID: <%s.%llu@%s>\r\n",
				t->campaign_id, (unsigned long long)r->f.index,
				t->msgid_domain);
		out_str(r, o, line);
		next_stage(r, ST_MIME);
		break;
	case ST_MIME:
		out_str(r, o, "MIME-Version: 1.0\r\n");
		next_stage(r, ST_EXTRA);
		r->idx = 0;
		break;
	case ST_EXTRA:
		if (r->idx >= t->nhdr) {
			next_stage(r, ST_LUNSUB);
			break;
		}
		step_text_hdr(r, o, t->hname[r->idx], &t->hval[r->idx],
			r->mode_hdr[r->idx]);
		if (r->phase == 2) {
			r->idx++;
			r->phase = 0;
			r->tphase = 0;
		}
		break;
	case ST_LUNSUB:
		if (!t->unsub.present) {
			next_stage(r, ST_CTYPE);
			break;
		}
		if (r->phase == 0) {
			out_str(r, o, "List-Unsubscribe: <");
			cur_init(&r->cur, &t->unsub, ESC_URL);
			r->phase = 1;
		}
		while (out_room(o) > 0) {
			int b = cur_next(r, &r->cur);
			char ch = (char)b;

			if (b < 0) {
				out_str(r, o, ">\r\n");
				next_stage(r, ST_LUNSUB_POST);
				break;
			}
			out_put(r, o, &ch, 1);
		}
		break;
	case ST_LUNSUB_POST:
		out_str(r, o, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
		next_stage(r, ST_CTYPE);
		break;
	case ST_CTYPE:
		if (part_count(r) == 2)
			snprintf(line, sizeof(line), "Content-Type: multipart/alternative;"
				" boundary=\"%s\"\r\n", r->boundary);
		else
			snprintf(line, sizeof(line), "Content-Type: text/%s; charset=UTF-8\r\n",
				t->text.present ? "plain" : "html");
		out_str(r, o, line);
		next_stage(r, ST_CTE);
		break;
	case ST_CTE:
		if (part_count(r) == 1) {
			snprintf(line, sizeof(line), "Content-Transfer-Encoding: %s\r\n",
				cte_names[r->cte[part_slot(r, 0)]]);
			out_str(r, o, line);
		}
		next_stage(r, ST_HDR_END);
		break;
	case ST_HDR_END:
		out_put(r, o, "\r\n", 2);
		next_stage(r, part_count(r) == 2 ? ST_PART_HDR : ST_PART_BODY);
		r->idx = 0;
		r->last_lf = 1;
		if (part_count(r) == 1)
			cur_init(&r->cur, part_tpl(r, 0),
				part_slot(r, 0) == 1 ? ESC_HTML : ESC_NONE);
		break;
	case ST_PART_HDR:
		snprintf(line, sizeof(line), "--%s\r\nContent-Type: text/%s; charset=UTF-8\r\n"
			"Content-Transfer-Encoding: %s\r\n\r\n", r->boundary,
			part_slot(r, r->idx) == 0 ? "plain" : "html",
			cte_names[r->cte[part_slot(r, r->idx)]]);
		out_str(r, o, line);
		cur_init(&r->cur, part_tpl(r, r->idx),
			part_slot(r, r->idx) == 1 ? ESC_HTML : ESC_NONE);
		next_stage(r, ST_PART_BODY);
		r->last_lf = 1;
		break;
	case ST_PART_BODY: {
		bool done = r->cte[part_slot(r, r->idx)] == CTE_QP ?
			body_step_qp(r, o) : body_step_plain(r, o);

		if (!done)
			break;
		if (part_count(r) == 1) {
			next_stage(r, ST_END);
		} else if (++r->idx < 2) {
			next_stage(r, ST_PART_HDR);
		} else {
			next_stage(r, ST_CLOSE);
		}
		break;
	}
	case ST_CLOSE:
		snprintf(line, sizeof(line), "--%s--\r\n", r->boundary);
		out_str(r, o, line);
		next_stage(r, ST_END);
		break;
	default:
		abort();
	}
}

/* buf NULL: count only (msg_render_size) */
static ssize_t
render_pull(struct msg_render *r, void *buf, size_t cap)
{
	struct out o = { .dst = buf, .cap = cap, .len = 0 };

	if (r->pend_off < r->pend_len) {
		size_t k = r->pend_len - r->pend_off;

		if (k > cap)
			k = cap;
		if (buf != NULL)
			memcpy(buf, r->pend + r->pend_off, k);
		r->pend_off += (uint16_t)k;
		o.len = k;
		if (r->pend_off < r->pend_len)
			return (ssize_t)k;
	}
	r->pend_off = r->pend_len = 0;
	while (o.len < o.cap && r->stage != ST_END)
		step(r, &o);
	return (ssize_t)o.len;
}

ssize_t
msg_render_read(void *src, void *buf, size_t cap)
{
	struct msg_render *r = src;

	if (r == NULL || r->magic != MSG_MAGIC || buf == NULL || cap == 0)
		return -EINVAL;
	return render_pull(r, buf, cap);
}

const char *
msg_render_stage_name(const struct msg_render *r)
{
	if (r == NULL || r->magic != MSG_MAGIC || r->stage >= ST_LAST)
		return "closed";
	return stage_names[r->stage];
}

void
msg_render_rewind(struct msg_render *r)
{
	next_stage(r, ST_DATE);
	r->idx = 0;
	r->bol = 1;
	r->last_lf = 1;
	r->pend_off = r->pend_len = 0;
}

ssize_t
msg_render_size(const struct msg_render *r)
{
	struct msg_render c;
	ssize_t total = 0, n;

	if (r == NULL || r->magic != MSG_MAGIC)
		return -EINVAL;
	c = *r;
	msg_render_rewind(&c);
	/* NULL buffer: count only; a large cap lets runs go in one step */
	while ((n = render_pull(&c, NULL, (size_t)1 << 20)) > 0)
		total += n;
	return n < 0 ? n : total;
}

ssize_t
msg_render_smtp_size(const struct msg_render *r)
{
	struct msg_render c;

	if (r == NULL || r->magic != MSG_MAGIC)
		return -EINVAL;
	/* encodings were fixed at open; only the stuffed dots go away */
	c = *r;
	c.flags &= ~MSG_F_DOTSTUFF;
	return msg_render_size(&c);
}

/* ---- open: validation and encoding decisions ---- */

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
		v = field_lookup(r, s->s, s->len, &n);
		if (v == NULL) {
			if (s->has_def)
				continue;
			rerr(err, errlen, "missing field '%.*s' (used in %s, no default)",
				(int)s->len, s->s, t->part);
			return -EINVAL;
		}
		if (msg_utf8_check(v, n) != n) {
			rerr(err, errlen, "field '%.*s' (used in %s): invalid UTF-8",
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
				rerr(err, errlen, "field '%.*s' (used in header %s): contains %s",
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
	cur_init(&c, t, ESC_NONE);
	for (;;) {
		b = cur_next(r, &c);
		if (b < 0 || (is_wsp(b) && word > 0)) {
			if (w + word > h->chunk)
				h->chunk = w + word;
			if (w + word_q > h->chunk_q)
				h->chunk_q = w + word_q;
			w = word = word_q = 0;
		}
		if (b < 0)
			break;
		h->total++;
		if (is_wsp(b)) {
			w++;
		} else {
			h->nonwsp++;
			word++;
			word_q += (b == '"' || b == '\\') ? 2 : 1;
		}
		if (b >= 0x80)
			h->nonascii = true;
		else if (!is_wsp(b) && !msg_is_atext((unsigned char)b))
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
		return phrase ? HM_NONE : HM_PLAIN;
	scan_hdr(r, t, &h);
	if (phrase && h.nonwsp == 0)
		return HM_NONE;     /* e.g. "{{first|}} {{last|}}" with neither */
	if ((h.nonascii && !(r->flags & MSG_F_SMTPUTF8)) || h.encword)
		return HM_ENC;
	if (!phrase)
		return h.chunk > CHUNK_MAX ? HM_ENC : HM_PLAIN;
	if (h.special)
		return h.chunk_q + 2 > CHUNK_MAX ? HM_ENC : HM_QUOTED;
	return h.chunk > CHUNK_MAX ? HM_ENC : HM_PLAIN;
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

	cur_init(&c, t, esc);
	for (;;) {
		if (c.esc_pos >= c.esc_len && cur_fill(r, &c) &&
		    !(c.isval && c.esc_mode != ESC_NONE)) {
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
		b = cur_next(r, &c);
		if (b < 0 || b == '\r' || b == '\n') {
			size_t eff = s.len + (s.dot && (r->flags & MSG_F_DOTSTUFF) ? 1 : 0);

			if (eff > s.maxline)
				s.maxline = eff;
			if (b < 0)
				break;
			if (b == '\r' && cur_peek(r, &c) == '\n')
				cur_next(r, &c);
			s.len = 0;
			s.dot = false;
			s.m = 0;
			continue;
		}
		bscan_byte(&s, (unsigned)b);
	}
	if (s.nul || s.maxline > MSG_LINE_MAX || (multipart && s.hit))
		return CTE_QP;
	if (s.nonascii)
		return (r->flags & MSG_F_8BITMIME) ? CTE_8BIT : CTE_QP;
	return CTE_7BIT;
}

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *u = p;

	for (size_t i = 0; i < n; i++) {
		h ^= u[i];
		h *= 0x100000001b3ull;
	}
	return h;
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
		rerr(err, errlen, "no render state or template");
		return -EINVAL;
	}
	memset(r, 0, sizeof(*r));
	r->t = t;
	r->flags = flags;
	r->date = date;
	if (fields != NULL)
		r->f = *fields;
	if (r->f.n > 0 && r->f.v == NULL) {
		rerr(err, errlen, "fields: n > 0 with no array");
		return -EINVAL;
	}
	if (rcpt_addr == NULL || msg_addr_valid(rcpt_addr, flags & MSG_F_SMTPUTF8) < 0) {
		rerr(err, errlen, "recipient address invalid%s: '%.254s'",
			(rcpt_addr && msg_has_nonascii(rcpt_addr, strnlen(rcpt_addr, 256)) &&
			 !(flags & MSG_F_SMTPUTF8)) ? " (non-ASCII needs SMTPUTF8)" : "",
			rcpt_addr ? rcpt_addr : "(null)");
		return -EINVAL;
	}
	r->rcpt = rcpt_addr;
	r->rcpt_len = strlen(rcpt_addr);
	if (!(flags & MSG_F_SMTPUTF8) && (t->from_utf8 || t->reply_utf8)) {
		rerr(err, errlen, "from/reply-to address is non-ASCII and the session "
			"has no SMTPUTF8");
		return -EINVAL;
	}
	if (r->f.msgid_token != NULL) {
		if (!token_ok(r->f.msgid_token)) {
			rerr(err, errlen, "msgid_token: must be 1-%d of [A-Za-z0-9._-]",
				MSG_MAX_TOKEN);
			return -EINVAL;
		}
	} else if (t->campaign_id == NULL) {
		rerr(err, errlen, "no msgid_token and no campaign_id for Message-ID");
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

		cur_init(&c, &t->unsub, ESC_URL);
		while (cur_next(r, &c) >= 0)
			n++;
		if (n + 21 > MSG_LINE_MAX) {
			rerr(err, errlen, "unsub_url: %zu octets, too long for one header line", n);
			return -EINVAL;
		}
	}
	{
		bool multi = t->text.present && t->html.present;

		if (t->text.present)
			r->cte[0] = (uint8_t)body_cte(r, &t->text, ESC_NONE, multi);
		if (t->html.present)
			r->cte[1] = (uint8_t)body_cte(r, &t->html, ESC_HTML, multi);
	}

	/* "=_" never occurs in quoted-printable, and 7bit/8bit parts holding
	 * "=_mp" were switched to quoted-printable above */
	h = fnv(0xcbf29ce484222325ull, r->rcpt, r->rcpt_len);
	if (r->f.msgid_token != NULL)
		h = fnv(h, r->f.msgid_token, strlen(r->f.msgid_token));
	if (t->campaign_id != NULL)
		h = fnv(h, t->campaign_id, strlen(t->campaign_id));
	h = fnv(h, &r->f.index, sizeof(r->f.index));
	h = fnv(h, &date, sizeof(date));
	snprintf(r->boundary, sizeof(r->boundary), "=_mp%016llx", (unsigned long long)h);

	msg_render_rewind(r);
	r->magic = MSG_MAGIC;
	return 0;
}
