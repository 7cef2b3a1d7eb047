/*
 * Template compilation: msg_template_compile copies the spec, validates
 * addresses, header names and literal text, and cuts every template
 * string into literal and merge-field segments once per campaign so each
 * recipient's render only walks the segment lists (msg_render.c).
 * Syntax errors carry the part name and line:column of the problem.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mp_log.h"
#include "msg_int.h"

void
msg_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mp_verrf(err, errlen, fmt, ap);
	va_end(ap);
}

/* "part: line:col: what" for the byte at off of src */
static void
tpl_err_at(char *err, size_t errlen, const char *part, const char *src,
	size_t off, const char *what)
{
	size_t line = 1, col = 1;

	for (size_t i = 0; i < off; i++) {
		if (src[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	msg_errf(err, errlen, "%s: %zu:%zu: %s", part, line, col, what);
}

static bool
tpl_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/*
 * Check literal text: valid UTF-8 and, for text that lands in a header,
 * no CR/LF/NUL or other control character (TAB allowed).
 * Returns the offset of the first bad byte or n.
 */
static size_t
tpl_check_text(const char *s, size_t n, bool header, const char **why)
{
	size_t bad = msg_utf8_check(s, n);

	*why = "invalid UTF-8";
	if (header) {
		for (size_t i = 0; i < bad; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '\r' || c == '\n') {
				*why = "CR or LF not allowed in a header";
				return i;
			}
			if ((c < 32 && c != '\t') || c == 127) {
				*why = "control character not allowed in a header";
				return i;
			}
		}
	}
	return bad;
}

static int
tpl_add_seg(struct msg_tpl *t, uint32_t *cap, const struct msg_seg *s)
{
	if (t->nseg == *cap) {
		uint32_t ncap = *cap ? *cap * 2 : 8;
		struct msg_seg *n = realloc(t->seg, ncap * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		t->seg = n;
		*cap = ncap;
	}
	t->seg[t->nseg++] = *s;
	return 0;
}

/* Parse src into t; header: the text ends up in a header line. */
static int
tpl_parse(struct msg_tpl *t, const char *part, const char *src, bool header,
	char *err, size_t errlen)
{
	uint32_t cap = 0;
	size_t n, i = 0, bad;
	const char *why, *s;
	struct msg_seg seg;

	t->part = part;
	if (src == NULL)
		return 0;
	t->present = true;
	t->src = strdup(src);
	if (t->src == NULL)
		goto nomem;
	s = t->src;
	n = strlen(s);
	while (i < n) {
		const char *open = strstr(s + i, "{{");
		size_t lit_end = open ? (size_t)(open - s) : n;

		if (lit_end > i) {
			bad = tpl_check_text(s + i, lit_end - i, header, &why);
			if (bad < lit_end - i) {
				tpl_err_at(err, errlen, part, s, i + bad, why);
				return -EINVAL;
			}
			seg = (struct msg_seg){ .kind = MSG_SEG_LIT, .s = s + i,
				.len = lit_end - i };
			if (tpl_add_seg(t, &cap, &seg) < 0)
				goto nomem;
		}
		if (open == NULL)
			break;
		/* merge field: {{ name [| default] }} */
		size_t fo = lit_end, a = fo + 2, b, close;
		const char *end = strstr(s + a, "}}");
		const char *nested = strstr(s + a, "{{");

		if (end == NULL) {
			tpl_err_at(err, errlen, part, s, fo, "unterminated merge field '{{'");
			return -EINVAL;
		}
		close = (size_t)(end - s);
		if (nested != NULL && nested < end) {
			tpl_err_at(err, errlen, part, s, (size_t)(nested - s),
				"'{{' inside a merge field");
			return -EINVAL;
		}
		const char *bar = memchr(s + a, '|', close - a);
		size_t name_end = bar ? (size_t)(bar - s) : close;

		while (a < name_end && (s[a] == ' ' || s[a] == '\t'))
			a++;
		b = name_end;
		while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
			b--;
		if (a == b) {
			tpl_err_at(err, errlen, part, s, fo, "empty merge field name");
			return -EINVAL;
		}
		for (size_t k = a; k < b; k++) {
			if (!tpl_name_char(s[k])) {
				tpl_err_at(err, errlen, part, s, k,
					"invalid character in merge field name");
				return -EINVAL;
			}
		}
		seg = (struct msg_seg){ .kind = MSG_SEG_FIELD, .s = s + a, .len = b - a };
		if (bar != NULL) {
			size_t d = name_end + 1;

			bad = tpl_check_text(s + d, close - d, header, &why);
			if (bad < close - d) {
				tpl_err_at(err, errlen, part, s, d + bad, why);
				return -EINVAL;
			}
			seg.has_def = true;
			seg.def = s + d;
			seg.dlen = close - d;
		}
		if (tpl_add_seg(t, &cap, &seg) < 0)
			goto nomem;
		i = close + 2;
	}
	return 0;
nomem:
	msg_errf(err, errlen, "out of memory");
	return -ENOMEM;
}

static void
tpl_fini(struct msg_tpl *t)
{
	free(t->seg);
	free(t->src);
}

/* Headers the renderer writes itself; a template may not add them. */
static const char *const reserved_hdrs[] = {
	"date", "from", "sender", "reply-to", "to", "cc", "bcc", "subject",
	"message-id", "mime-version", "list-unsubscribe",
	"list-unsubscribe-post", "return-path", "received",
};

static int
tpl_check_hname(const char *name, char *err, size_t errlen)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > MSG_MAX_HNAME) {
		msg_errf(err, errlen, "header name empty or longer than %d", MSG_MAX_HNAME);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		/* RFC 5322 ftext: printable US-ASCII except ":" */
		if (c < 33 || c > 126 || c == ':') {
			msg_errf(err, errlen, "header name '%.64s': invalid character at %zu",
				name, i + 1);
			return -EINVAL;
		}
	}
	if (strncasecmp(name, "content-", 8) == 0)
		goto reserved;
	for (size_t i = 0; i < sizeof(reserved_hdrs) / sizeof(reserved_hdrs[0]); i++)
		if (strcasecmp(name, reserved_hdrs[i]) == 0)
			goto reserved;
	return 0;
reserved:
	msg_errf(err, errlen, "header name '%s' is reserved (set by the renderer)", name);
	return -EINVAL;
}

static bool
tpl_token_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MSG_MAX_TOKEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!tpl_name_char(s[i]))
			return false;
	return true;
}

void
msg_template_free(struct msg_template *t)
{
	if (t == NULL)
		return;
	free(t->campaign_id);
	free(t->from_addr);
	free(t->reply_to);
	free(t->msgid_domain);
	tpl_fini(&t->from_name);
	tpl_fini(&t->to_name);
	tpl_fini(&t->subject);
	tpl_fini(&t->text);
	tpl_fini(&t->html);
	tpl_fini(&t->unsub);
	for (size_t i = 0; i < t->nhdr; i++) {
		free(t->hname[i]);
		tpl_fini(&t->hval[i]);
	}
	free(t);
}

static int
tpl_check_url(const struct msg_tpl *u, char *err, size_t errlen)
{
	if (u->nseg == 0 || u->seg[0].kind != MSG_SEG_LIT || u->seg[0].len < 9 ||
	    strncasecmp(u->seg[0].s, "https://", 8) != 0) {
		msg_errf(err, errlen, "unsub_url: must start with https:// (RFC 8058 one-click)");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < u->nseg; i++) {
		const struct msg_seg *s = &u->seg[i];
		const char *p = s->kind == MSG_SEG_LIT ? s->s : s->def;
		size_t n = s->kind == MSG_SEG_LIT ? s->len : (s->has_def ? s->dlen : 0);

		for (size_t k = 0; k < n; k++) {
			unsigned char c = (unsigned char)p[k];

			if (c <= 32 || c >= 127 || c == '<' || c == '>' || c == '"') {
				msg_errf(err, errlen, "unsub_url: character 0x%02x not allowed "
					"in a URL (percent-encode it)", c);
				return -EINVAL;
			}
		}
	}
	return 0;
}

struct msg_template *
msg_template_compile(const struct msg_template_spec *spec, char *err,
	size_t errlen)
{
	struct msg_template *t;
	const char *dom;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (spec == NULL) {
		msg_errf(err, errlen, "no template spec");
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		msg_errf(err, errlen, "out of memory");
		return NULL;
	}
	if (spec->from_addr == NULL || msg_addr_valid(spec->from_addr, MSG_F_SMTPUTF8) < 0) {
		msg_errf(err, errlen, "from_addr: invalid address '%.254s'",
			spec->from_addr ? spec->from_addr : "(null)");
		goto fail;
	}
	if (spec->reply_to != NULL && msg_addr_valid(spec->reply_to, MSG_F_SMTPUTF8) < 0) {
		msg_errf(err, errlen, "reply_to: invalid address '%.254s'", spec->reply_to);
		goto fail;
	}
	if (spec->campaign_id != NULL && !tpl_token_ok(spec->campaign_id)) {
		msg_errf(err, errlen, "campaign_id: must be 1-%d of [A-Za-z0-9._-]",
			MSG_MAX_TOKEN);
		goto fail;
	}
	dom = spec->msgid_domain;
	if (dom == NULL)
		dom = strrchr(spec->from_addr, '@') + 1;
	if (dom[0] == '[' || msg_has_nonascii(dom, strlen(dom))) {
		msg_errf(err, errlen, "msgid_domain: '%.255s' is not an ASCII domain name", dom);
		goto fail;
	}
	{
		/* reuse the mailbox checker for the domain syntax */
		char probe[300];

		snprintf(probe, sizeof(probe), "x@%s", dom);
		if (strlen(dom) > 253 || msg_addr_valid(probe, 0) < 0) {
			msg_errf(err, errlen, "msgid_domain: invalid domain '%.255s'", dom);
			goto fail;
		}
	}
	if (spec->subject == NULL) {
		msg_errf(err, errlen, "subject: required");
		goto fail;
	}
	if (spec->text == NULL && spec->html == NULL) {
		msg_errf(err, errlen, "body: a text or an HTML body is required");
		goto fail;
	}
	if (spec->nheaders > MSG_MAX_HEADERS || (spec->nheaders > 0 && spec->headers == NULL)) {
		msg_errf(err, errlen, "headers: at most %d extra headers", MSG_MAX_HEADERS);
		goto fail;
	}
	t->from_utf8 = msg_has_nonascii(spec->from_addr, strlen(spec->from_addr));
	t->reply_utf8 = spec->reply_to != NULL &&
		msg_has_nonascii(spec->reply_to, strlen(spec->reply_to));
	t->from_addr = strdup(spec->from_addr);
	t->reply_to = spec->reply_to ? strdup(spec->reply_to) : NULL;
	t->campaign_id = spec->campaign_id ? strdup(spec->campaign_id) : NULL;
	t->msgid_domain = strdup(dom);
	if (t->from_addr == NULL || t->msgid_domain == NULL ||
	    (spec->reply_to && t->reply_to == NULL) ||
	    (spec->campaign_id && t->campaign_id == NULL)) {
		msg_errf(err, errlen, "out of memory");
		goto fail;
	}
	if (tpl_parse(&t->from_name, "from_name", spec->from_name, true, err, errlen) < 0 ||
	    tpl_parse(&t->to_name, "to_name", spec->to_name, true, err, errlen) < 0 ||
	    tpl_parse(&t->subject, "subject", spec->subject, true, err, errlen) < 0 ||
	    tpl_parse(&t->text, "text", spec->text, false, err, errlen) < 0 ||
	    tpl_parse(&t->html, "html", spec->html, false, err, errlen) < 0 ||
	    tpl_parse(&t->unsub, "unsub_url", spec->unsub_url, true, err, errlen) < 0)
		goto fail;
	if (t->unsub.present && tpl_check_url(&t->unsub, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < spec->nheaders; i++) {
		const struct msg_header *h = &spec->headers[i];

		if (tpl_check_hname(h->name, err, errlen) < 0)
			goto fail;
		for (size_t k = 0; k < i; k++) {
			if (strcasecmp(h->name, t->hname[k]) == 0) {
				msg_errf(err, errlen, "header name '%s' given twice", h->name);
				goto fail;
			}
		}
		t->hname[i] = strdup(h->name);
		t->nhdr = i + 1;
		if (t->hname[i] == NULL) {
			msg_errf(err, errlen, "out of memory");
			goto fail;
		}
		if (tpl_parse(&t->hval[i], t->hname[i], h->value ? h->value : "",
		    true, err, errlen) < 0)
			goto fail;
	}
	return t;
fail:
	msg_template_free(t);
	return NULL;
}
