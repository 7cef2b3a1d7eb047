/*
 * Per-recipient streaming: once msg_render_open (msg_open.c) has decided
 * every encoding, msg_render_read runs a small generator that walks the
 * template segments with a cursor (merge values resolved and escaped on
 * the fly) and writes straight into the caller's buffer. What does not fit
 * (at most one encoding unit) waits in the fixed-size pend[] of the state.
 *
 * Stages, in output order: Date, From, Reply-To, To, Subject, Message-ID,
 * MIME-Version, extra headers, List-Unsubscribe(-Post), Content-Type,
 * Content-Transfer-Encoding, blank line, body part(s), closing boundary.
 * Every byte goes through out_put(), which applies dot-stuffing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg_int.h"

#define FOLD_AT 78              /* RFC 5322 "SHOULD" line length */

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

static const char *const cte_names[MSG_CTE_LAST] = {
	"7bit", "8bit", "quoted-printable",
};

struct out {
	char *dst;
	size_t cap;
	size_t len;
};

/* ---- merge values and the segment cursor ---- */

const char *
msg_field_lookup(const struct msg_render *r, const char *name, size_t nlen,
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

void
msg_cur_init(struct msg_cur *c, const struct msg_tpl *t, int esc)
{
	memset(c, 0, sizeof(*c));
	c->tpl = t;
	c->seg = UINT32_MAX;    /* before the first segment */
	c->esc_mode = (uint8_t)esc;
}

/* Make c->p/left point at the next non-empty chunk; false at the end. */
bool
msg_cur_fill(const struct msg_render *r, struct msg_cur *c)
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
		} else if ((c->p = msg_field_lookup(r, s->s, s->len, &c->left)) != NULL) {
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
int
msg_cur_next(const struct msg_render *r, struct msg_cur *c)
{
	unsigned char b;
	const char *rep = NULL;

	if (c->esc_pos < c->esc_len)
		return (unsigned char)c->esc[c->esc_pos++];
	if (c->left == 0 && !msg_cur_fill(r, c))
		return -1;
	b = (unsigned char)*c->p++;
	c->left--;
	if (!c->isval || c->esc_mode == MSG_ESC_NONE)
		return b;
	if (c->esc_mode == MSG_ESC_HTML) {
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

int
msg_cur_peek(const struct msg_render *r, const struct msg_cur *c)
{
	struct msg_cur tmp = *c;

	return msg_cur_next(r, &tmp);
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

		if (mode == MSG_HM_ENC) {
			unsigned char buf[48];
			char line[80];
			size_t avail, max, nb = 0, l;

			if (msg_cur_peek(r, &r->cur) < 0)
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
			while (nb < max && (c = msg_cur_peek(r, &r->cur)) >= 0) {
				l = utf8_lead_len(c);
				if (nb + l > max)
					break;
				while (l-- > 0)
					buf[nb++] = (unsigned char)msg_cur_next(r, &r->cur);
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
		if (mode == MSG_HM_QUOTED && r->tphase == 0) {
			out_put(r, o, "\"", 1);
			r->col++;
			r->tphase = 1;
		}
		c = msg_cur_peek(r, &r->cur);
		if (c < 0) {
			if (mode == MSG_HM_QUOTED)
				out_put(r, o, "\"", 1);
			return true;
		}
		if (msg_is_wsp(c)) {
			/* fold (or not) once, at the start of a whitespace run */
			if (r->tphase != 2) {
				struct msg_cur m = r->cur;
				size_t w = 0, n = 0;
				int d;

				while ((d = msg_cur_next(r, &m)) >= 0 && msg_is_wsp(d))
					w++;
				while (d >= 0 && !msg_is_wsp(d)) {
					n += (mode == MSG_HM_QUOTED && (d == '"' || d == '\\')) ? 2 : 1;
					d = msg_cur_next(r, &m);
				}
				if (d < 0 && mode == MSG_HM_QUOTED)
					n++;
				if (n == 0) {
					/* trailing whitespace of an unstructured value is
					 * dropped: it could only make an over-long line or
					 * a whitespace-only continuation */
					while (msg_cur_next(r, &r->cur) >= 0)
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
			     msg_is_wsp(c = msg_cur_peek(r, &r->cur)); k++) {
				char ch = (char)msg_cur_next(r, &r->cur);

				out_put(r, o, &ch, 1);
				r->col++;
			}
			continue;
		}
		/* a word, in bounded pieces; folding happens only at whitespace */
		for (int k = 0; k < 64 && out_room(o) > 0 &&
		     (c = msg_cur_peek(r, &r->cur)) >= 0 && !msg_is_wsp(c); k++) {
			char ch[2] = { '\\', (char)c };

			msg_cur_next(r, &r->cur);
			if (mode == MSG_HM_QUOTED && (c == '"' || c == '\\')) {
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

		if (c->esc_pos >= c->esc_len && msg_cur_fill(r, c) &&
		    !(c->isval && c->esc_mode != MSG_ESC_NONE)) {
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
		b = msg_cur_next(r, c);
		if (b < 0) {
			if (!r->last_lf)
				out_put(r, o, "\r\n", 2);
			return true;
		}
		if (b == '\r' || b == '\n') {
			if (b == '\r' && msg_cur_peek(r, c) == '\n')
				msg_cur_next(r, c);
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
		int b = msg_cur_next(r, c);

		if (b < 0) {
			/* a soft break keeps the content exact and ends with CRLF */
			if (r->col > 0)
				out_put(r, o, "=\r\n", 3);
			return true;
		}
		if (b == '\r' || b == '\n') {
			if (b == '\r' && msg_cur_peek(r, c) == '\n')
				msg_cur_next(r, c);
			out_put(r, o, "\r\n", 2);
			r->col = 0;
			continue;
		}
		rep[0] = (char)b;
		if (b == ' ' || b == '\t') {
			int nx = msg_cur_peek(r, c);

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
		if (mode == MSG_HM_NONE) {
			out_put(r, o, addr, alen);
			out_put(r, o, "\r\n", 2);
			next_stage(r, next);
			return;
		}
		msg_cur_init(&r->cur, phrase, MSG_ESC_NONE);
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
		msg_cur_init(&r->cur, t, MSG_ESC_NONE);
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
			msg_cur_init(&r->cur, &t->unsub, MSG_ESC_URL);
			r->phase = 1;
		}
		while (out_room(o) > 0) {
			int b = msg_cur_next(r, &r->cur);
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
			msg_cur_init(&r->cur, part_tpl(r, 0),
				part_slot(r, 0) == 1 ? MSG_ESC_HTML : MSG_ESC_NONE);
		break;
	case ST_PART_HDR:
		snprintf(line, sizeof(line), "--%s\r\nContent-Type: text/%s; charset=UTF-8\r\n"
			"Content-Transfer-Encoding: %s\r\n\r\n", r->boundary,
			part_slot(r, r->idx) == 0 ? "plain" : "html",
			cte_names[r->cte[part_slot(r, r->idx)]]);
		out_str(r, o, line);
		msg_cur_init(&r->cur, part_tpl(r, r->idx),
			part_slot(r, r->idx) == 1 ? MSG_ESC_HTML : MSG_ESC_NONE);
		next_stage(r, ST_PART_BODY);
		r->last_lf = 1;
		break;
	case ST_PART_BODY: {
		bool done = r->cte[part_slot(r, r->idx)] == MSG_CTE_QP ?
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

