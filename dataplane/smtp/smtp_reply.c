/*
 * Incremental SMTP reply parser. The session feeds whatever bytes the
 * transport delivered; smtp_reply_feed() walks them one byte at a time,
 * stops after each complete line (so EHLO keywords can be read from
 * r->line) and after the final line of a reply. Nothing is buffered beyond
 * the fixed arrays of struct smtp_reply: long lines are counted, truncated
 * in storage and refused past SMTP_REPLY_LINE_MAX.
 */
#include <errno.h>
#include <string.h>

#include "smtp.h"

void
smtp_reply_init(struct smtp_reply *r)
{
	r->code = 0;
	r->nlines = 0;
	r->pos = 0;
	r->line_len = 0;
	r->text_len = 0;
	r->last = 0;
	r->cr = 0;
	r->truncated = 0;
	r->complete = 0;
	r->esc[0] = '\0';
	r->line[0] = '\0';
	r->text[0] = '\0';
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

size_t
smtp_esc_parse(const char *text, size_t len, int code_class, char out[SMTP_ESC_MAX])
{
	size_t i = 0, n;
	int part;

	out[0] = '\0';
	if (len < 5 || text[0] != '0' + code_class || text[1] != '.')
		return 0;
	i = 2;
	/* subject and detail: 1 to 3 digits each, separated by a dot */
	for (part = 0; part < 2; part++) {
		n = 0;
		while (i < len && is_digit((unsigned char)text[i]) && n < 4) {
			i++;
			n++;
		}
		if (n == 0 || n > 3)
			return 0;
		if (part == 0) {
			if (i >= len || text[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && text[i] != ' ')
		return 0;
	memcpy(out, text, i);
	out[i] = '\0';
	return i;
}

static void
text_append(struct smtp_reply *r, const char *p, size_t n)
{
	size_t room = SMTP_REPLY_TEXT_MAX - 1 - r->text_len;

	if (n > room) {
		n = room;
		r->truncated = 1;
	}
	memcpy(r->text + r->text_len, p, n);
	r->text_len += n;
	r->text[r->text_len] = '\0';
}

/* The current line is complete: record it into the reply text. */
static int
line_end(struct smtp_reply *r)
{
	char head[4];

	if (r->pos < 3)
		return -EPROTO;
	if (r->pos == 3)
		r->last = 1;	/* "250" CRLF: code alone ends the reply */
	r->line[r->line_len] = '\0';
	if (r->nlines == 0)
		smtp_esc_parse(r->line, r->line_len, r->code / 100, r->esc);
	head[0] = '0' + r->code / 100;
	head[1] = '0' + r->code / 10 % 10;
	head[2] = '0' + r->code % 10;
	head[3] = r->last ? ' ' : '-';
	if (r->text_len > 0)
		text_append(r, "\n", 1);
	text_append(r, head, r->pos == 3 ? 3 : 4);
	text_append(r, r->line, r->line_len);
	r->nlines++;
	r->pos = 0;
	r->cr = 0;
	if (r->last) {
		r->complete = 1;
		return SMTP_REPLY_DONE;
	}
	if (r->nlines >= SMTP_REPLY_LINES_MAX)
		return -EMSGSIZE;
	return SMTP_REPLY_LINE;
}

int
smtp_reply_feed(struct smtp_reply *r, const void *buf, size_t len, size_t *consumed)
{
	const unsigned char *p = buf;
	size_t i;
	int rc;

	if (r->complete)
		smtp_reply_init(r);
	for (i = 0; i < len; i++) {
		unsigned char c = p[i];

		*consumed = i;
		if (r->cr) {
			if (c != '\n')
				return -EPROTO;
			goto eol;
		}
		if (c == '\r') {
			r->cr = 1;
			continue;
		}
		if (c == '\n')
			goto eol;
		if (c == '\0')
			return -EPROTO;
		if (r->pos >= SMTP_REPLY_LINE_MAX)
			return -EMSGSIZE;
		if (r->pos == 0)
			r->line_len = 0;
		if (r->pos < 3) {
			if (!is_digit(c) || (r->pos == 0 && (c < '2' || c > '5')))
				return -EPROTO;
			if (r->nlines == 0) {
				r->code = r->code * 10 + (c - '0');
			} else {
				int want = r->pos == 0 ? r->code / 100 :
					r->pos == 1 ? r->code / 10 % 10 : r->code % 10;
				if (c - '0' != want)
					return -EPROTO;
			}
		} else if (r->pos == 3) {
			if (c == ' ')
				r->last = 1;
			else if (c == '-')
				r->last = 0;
			else
				return -EPROTO;
		} else if (r->line_len < SMTP_REPLY_KEEP - 1) {
			r->line[r->line_len++] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
		}
		r->pos++;
		continue;
eol:
		rc = line_end(r);
		*consumed = i + 1;
		if (rc != 0)
			return rc;
	}
	*consumed = len;
	return SMTP_REPLY_MORE;
}
