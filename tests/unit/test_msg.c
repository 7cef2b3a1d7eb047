/*
 * msg_ unit tests: exact rendering vectors, dot-stuffing, quoted-printable
 * (decoded back and compared), RFC 2047 headers (decoded back), header
 * injection and missing-field errors, multipart boundaries, streaming with
 * small read sizes against one big read, msg_render_size, and the address
 * validator. Every rendered message also goes through check_wire().
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "mp_test.h"

#define BIG (1 << 20)

static char err[256];

/* CRLF only, lines <= 998 octets (after undoing dot-stuffing), ends CRLF */
static bool
check_wire(const char *m, size_t n, bool stuffed)
{
	size_t line = 0, start = 0;

	if (n < 2 || m[n - 2] != '\r' || m[n - 1] != '\n')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (m[i] == '\r') {
			if (i + 1 >= n || m[i + 1] != '\n')
				return false;
			line = i - start;
			if (stuffed && line > 0 && m[start] == '.')
				line--;
			if (line > MSG_LINE_MAX)
				return false;
			i++;
			start = i + 1;
		} else if (m[i] == '\n') {
			return false;
		}
	}
	return true;
}

static ssize_t
render(const struct msg_template *t, const char *rcpt,
	const struct msg_fields *f, unsigned flags, time_t date, char *out,
	size_t cap)
{
	struct msg_render r;
	ssize_t n, tot = 0;
	int rc = msg_render_open(&r, t, rcpt, f, flags, date, err, sizeof(err));

	if (rc < 0)
		return rc;
	while ((n = msg_render_read(&r, out + tot, cap - tot - 1)) > 0)
		tot += n;
	if (n < 0)
		return n;
	out[tot] = '\0';
	return tot;
}

/* Unfolded value of header name (first one) into v; -1 if absent. */
static int
get_header(const char *m, const char *name, char *v, size_t vcap)
{
	size_t nl = strlen(name), o = 0;
	const char *p = m, *end = strstr(m, "\r\n\r\n");

	while (p != NULL && p < end) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			if (*p == ' ')
				p++;
			for (;;) {
				if (p[0] == '\r' && p[1] == '\n') {
					if (p[2] == ' ' || p[2] == '\t') {
						p += 2;
						continue;
					}
					break;
				}
				if (o + 1 < vcap)
					v[o++] = *p;
				p++;
			}
			v[o] = '\0';
			return 0;
		}
		p = strstr(p, "\r\n");
		if (p != NULL)
			p += 2;
	}
	return -1;
}

static int
b64val(char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Decode a header value made of =?UTF-8?B?...?= words separated by
 * whitespace; checks each word is <= 75 chars. -1 on a malformed word. */
static int
decode_2047(const char *v, char *out, size_t cap)
{
	size_t o = 0;

	while (*v) {
		const char *e;
		uint32_t acc = 0;
		int bits = 0;

		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == '\0')
			break;
		if (strncmp(v, "=?UTF-8?B?", 10) != 0)
			return -1;
		e = strstr(v + 10, "?=");
		if (e == NULL || e + 2 - v > 75)
			return -1;
		for (const char *p = v + 10; p < e; p++) {
			if (*p == '=')
				break;
			if (b64val(*p) < 0)
				return -1;
			acc = (acc << 6) | (uint32_t)b64val(*p);
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				if (o + 1 >= cap)
					return -1;
				out[o++] = (char)((acc >> bits) & 0xff);
			}
		}
		v = e + 2;
	}
	out[o] = '\0';
	return (int)o;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Quoted-printable decoder (uppercase hex only, as we emit); also checks
 * every encoded line is <= 76 chars. -1 on a malformed input. */
static ssize_t
qp_decode(const char *in, size_t n, char *out)
{
	size_t o = 0, col = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			i++;
			col = 0;
			continue;
		}
		if (++col > 76)
			return -1;
		if (in[i] == '=') {
			if (i + 2 < n && in[i + 1] == '\r' && in[i + 2] == '\n') {
				i += 2;
				col = 0;
				continue;
			}
			if (i + 2 >= n || hexval(in[i + 1]) < 0 || hexval(in[i + 2]) < 0)
				return -1;
			out[o++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
			i += 2;
			col += 2;
			continue;
		}
		out[o++] = in[i];
	}
	return (ssize_t)o;
}

/* Body of a single-part message (after the blank line). */
static const char *
body_of(const char *m)
{
	const char *p = strstr(m, "\r\n\r\n");

	return p ? p + 4 : NULL;
}

/* Remove dot-stuffing: ".." at line start -> "." */
static size_t
unstuff(const char *in, size_t n, char *out)
{
	size_t o = 0;
	bool bol = true;

	for (size_t i = 0; i < n; i++) {
		if (bol && in[i] == '.' && i + 1 < n && in[i + 1] == '.')
			i++;
		out[o++] = in[i];
		bol = in[i] == '\n';
	}
	return o;
}

static struct msg_template *
compile_simple(const char *subject, const char *text, const char *html)
{
	struct msg_template_spec sp = {
		.campaign_id = "cmp1",
		.from_addr = "news@example.com",
		.from_name = "Example",
		.subject = subject,
		.text = text,
		.html = html,
	};
	struct msg_template *t = msg_template_compile(&sp, err, sizeof(err));

	if (t == NULL)
		fprintf(stderr, "compile failed: %s\n", err);
	return t;
}

#define F(n, v) { (n), (v), sizeof(v) - 1 }

static void
test_vector_text_only(void)
{
	static const char want[] =
		"Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"
		"From: Example <news@example.com>\r\n"
		"To: ann@example.org\r\n"
		"Subject: Hi Ann\r\n"
		"Message-ID: <tok123@example.com>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=UTF-8\r\n"
		"Content-Transfer-Encoding: 7bit\r\n"
		"\r\n"
		"Hello Ann!\r\n"
		"Bye.\r\n";
	struct msg_template *t = compile_simple("Hi {{first}}",
		"Hello {{first|there}}!\nBye.", NULL);
	struct msg_field fv[] = { F("first", "Ann") };
	struct msg_fields f = { fv, 1, "tok123", 0 };
	char *out = malloc(BIG);
	ssize_t n;

	CHECK(t != NULL);
	n = render(t, "ann@example.org", &f, 0, 0, out, BIG);
	CHECK_EQ(n, (ssize_t)sizeof(want) - 1);
	CHECK_STREQ(out, want);
	CHECK(check_wire(out, (size_t)n, false));
	msg_template_free(t);
	free(out);
}

static void
test_vector_multipart(void)
{
	/* boundary is derived from the recipient; substituted below */
	static const char want_fmt[] =
		"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
		"From: \"Example News, Inc.\" <news@example.com>\r\n"
		"Reply-To: help@example.com\r\n"
		"To: Ann Lee <ann@example.org>\r\n"
		"Subject: Your order 42\r\n"
		"Message-ID: <spring.7@mid.example.com>\r\n"
		"MIME-Version: 1.0\r\n"
		"X-Campaign: spring\r\n"
		"List-Unsubscribe: <https://u.example.com/u?t=a%%2Bb%%40c>\r\n"
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
		"Content-Type: multipart/alternative; boundary=\"%s\"\r\n"
		"\r\n"
		"--%s\r\n"
		"Content-Type: text/plain; charset=UTF-8\r\n"
		"Content-Transfer-Encoding: 7bit\r\n"
		"\r\n"
		"Order 42 for <Ann>\r\n"
		"--%s\r\n"
		"Content-Type: text/html; charset=UTF-8\r\n"
		"Content-Transfer-Encoding: 7bit\r\n"
		"\r\n"
		"<p>Order 42 for &lt;Ann&gt;</p>\r\n"
		"--%s--\r\n";
	struct msg_header hd[] = { { "X-Campaign", "spring" } };
	struct msg_template_spec sp = {
		.campaign_id = "spring",
		.from_addr = "news@example.com",
		.from_name = "Example News, Inc.",
		.reply_to = "help@example.com",
		.to_name = "{{first}} {{last}}",
		.subject = "Your order {{order}}",
		.text = "Order {{order}} for {{nick}}\r\n",
		.html = "<p>Order {{order}} for {{nick}}</p>",
		.headers = hd,
		.nheaders = 1,
		.unsub_url = "https://u.example.com/u?t={{tok}}",
		.msgid_domain = "mid.example.com",
	};
	struct msg_template *t = msg_template_compile(&sp, err, sizeof(err));
	struct msg_field fv[] = { F("first", "Ann"), F("last", "Lee"),
		F("order", "42"), F("nick", "<Ann>"), F("tok", "a+b@c") };
	struct msg_fields f = { fv, 5, NULL, 7 };
	char *out = malloc(BIG), want[4096], bnd[64];
	const char *b;
	ssize_t n;

	CHECK(t != NULL);
	n = render(t, "ann@example.org", &f, 0, 1700000000, out, BIG);
	CHECK(n > 0);
	b = strstr(out, "boundary=\"");
	CHECK(b != NULL);
	if (b == NULL)
		goto out;
	b += 10;
	/* "=_mp" + 16 hex digits */
	CHECK(strncmp(b, "=_mp", 4) == 0);
	CHECK(strspn(b + 4, "0123456789abcdef") == 16);
	memcpy(bnd, b, 20);
	bnd[20] = '\0';
	snprintf(want, sizeof(want), want_fmt, bnd, bnd, bnd, bnd);
	CHECK_STREQ(out, want);
	CHECK(check_wire(out, (size_t)n, false));
out:
	msg_template_free(t);
	free(out);
}

static void
test_dotstuff(void)
{
	/* first body line, middle lines, a lone ".", and "." after a QP soft
	 * break (75 chars then "." in a non-ASCII line forces QP) */
	char text[512];
	struct msg_template *t;
	struct msg_fields f = { NULL, 0, "d1", 0 };
	char *a = malloc(BIG), *b = malloc(BIG), *u = malloc(BIG);
	ssize_t na, nb;
	size_t nu;

	snprintf(text, sizeof(text), ".first\n..two\nmid.dle\n.\n%.*s.after soft é\n",
		75, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	t = compile_simple("dots", text, NULL);
	CHECK(t != NULL);
	na = render(t, "x@example.org", &f, 0, 0, a, BIG);
	nb = render(t, "x@example.org", &f, MSG_F_DOTSTUFF, 0, b, BIG);
	CHECK(na > 0 && nb > 0);
	CHECK(strstr(b, "\r\n\r\n..first\r\n...two\r\nmid.dle\r\n..\r\n") != NULL);
	CHECK(strstr(a, "\r\n\r\n.first\r\n..two\r\nmid.dle\r\n.\r\n") != NULL);
	/* the soft break came right before the '.' */
	CHECK(strstr(b, "=\r\n..after soft =C3=A9\r\n") != NULL);
	CHECK(strstr(a, "=\r\n.after soft =C3=A9\r\n") != NULL);
	/* stuffing is the only difference */
	nu = unstuff(b, (size_t)nb, u);
	CHECK_EQ(nu, (size_t)na);
	CHECK(nu == (size_t)na && memcmp(u, a, nu) == 0);
	CHECK(check_wire(b, (size_t)nb, true));
	/* size counts the stuffed dots */
	{
		struct msg_render r;

		CHECK_EQ(msg_render_open(&r, t, "x@example.org", &f, MSG_F_DOTSTUFF, 0,
			err, sizeof(err)), 0);
		CHECK_EQ(msg_render_size(&r), nb);
		/* RFC 1870 SIZE leaves the stuffed dots out */
		CHECK_EQ(msg_render_smtp_size(&r), na);
		CHECK(nb > na);
	}
	msg_template_free(t);
	free(a);
	free(b);
	free(u);
}

static void
test_long_lines_qp(void)
{
	/* 3000-char line with '=' and trailing space, then short lines */
	size_t L = 3000;
	char *text = malloc(L + 64), *out = malloc(BIG), *dec = malloc(BIG);
	char want[4096 + 64];
	struct msg_template *t;
	struct msg_fields f = { NULL, 0, "q1", 0 };
	const char *body;
	ssize_t n, d;

	for (size_t i = 0; i < L; i++)
		text[i] = (char)('a' + i % 26);
	text[100] = '=';
	text[500] = '.';
	text[L - 1] = ' ';
	strcpy(text + L, "\nshort\nend \t");
	t = compile_simple("long", text, NULL);
	CHECK(t != NULL);
	n = render(t, "x@example.org", &f, MSG_F_8BITMIME, 0, out, BIG);
	CHECK(n > 0);
	CHECK(check_wire(out, (size_t)n, false));
	CHECK(strstr(out, "Content-Transfer-Encoding: quoted-printable\r\n") != NULL);
	body = body_of(out);
	CHECK(body != NULL);
	d = qp_decode(body, (size_t)(out + n - body), dec);
	CHECK(d >= 0);
	/* expected: input with LF -> CRLF; no newline added at the end */
	memcpy(want, text, L);
	strcpy(want + L, "\r\nshort\r\nend \t");
	CHECK_EQ(d, (ssize_t)strlen(want));
	CHECK(d >= 0 && (size_t)d == strlen(want) && memcmp(dec, want, (size_t)d) == 0);
	/* '=' encoded, trailing whitespace encoded */
	CHECK(strstr(body, "=3D") != NULL);
	CHECK(strstr(body, "=20\r\n") != NULL);
	CHECK(strstr(body, "end =09=\r\n") != NULL);
	msg_template_free(t);
	free(text);
	free(out);
	free(dec);
}

static void
test_8bit_and_qp_choice(void)
{
	struct msg_template *t = compile_simple("x", "Grüße\n", NULL);
	struct msg_fields f = { NULL, 0, "e1", 0 };
	char *out = malloc(BIG);

	CHECK(render(t, "x@example.org", &f, MSG_F_8BITMIME, 0, out, BIG) > 0);
	CHECK(strstr(out, "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n") != NULL);
	CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
	CHECK(strstr(out, "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
		"Gr=C3=BC=C3=9Fe\r\n") != NULL);
	msg_template_free(t);
	/* lone CR and lone LF become CRLF; a line of exactly 998 stays 7bit */
	{
		char text[1100];

		memset(text, 'z', 998);
		strcpy(text + 998, "\ra\nb\r\n");
		t = compile_simple("x", text, NULL);
		CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
		CHECK(strstr(out, "Content-Transfer-Encoding: 7bit\r\n") != NULL);
		CHECK(strstr(out, "zz\r\na\r\nb\r\n") != NULL);
		CHECK(check_wire(out, strlen(out), false));
		/* with DATA, a 998-octet line starting with '.' would grow to 999 */
		msg_template_free(t);
		text[0] = '.';
		t = compile_simple("x", text, NULL);
		CHECK(render(t, "x@example.org", &f, MSG_F_DOTSTUFF, 0, out, BIG) > 0);
		CHECK(strstr(out, "Content-Transfer-Encoding: quoted-printable\r\n") != NULL);
		CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
		CHECK(strstr(out, "Content-Transfer-Encoding: 7bit\r\n") != NULL);
		msg_template_free(t);
	}
	free(out);
}

static void
test_subject_2047(void)
{
	const char *subj = "Grüße {{name}} — ünïcödé test with a rather long subject "
		"line that needs several encoded words 日本語テキスト";
	struct msg_template *t = compile_simple(subj, "b\n", NULL);
	struct msg_field fv[] = { F("name", "Zoë") };
	struct msg_fields f = { fv, 1, "s1", 0 };
	char *out = malloc(BIG), v[2048], dec[2048], want[1024];
	const char *p;

	snprintf(want, sizeof(want), "Grüße Zoë — ünïcödé test with a rather long subject "
		"line that needs several encoded words 日本語テキスト");
	CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
	CHECK(check_wire(out, strlen(out), false));
	CHECK(get_header(out, "Subject", v, sizeof(v)) == 0);
	CHECK(decode_2047(v, dec, sizeof(dec)) > 0);
	CHECK_STREQ(dec, want);
	/* header lines with encoded words stay <= 76 and are pure ASCII */
	p = strstr(out, "Subject:");
	for (const char *q = p; q && q < body_of(out) - 2; ) {
		const char *e = strstr(q, "\r\n");

		CHECK(e - q <= 76);
		for (const char *c = q; c < e; c++)
			CHECK((unsigned char)*c < 0x80);
		q = e + 2;
		if (*q != ' ')
			break;
	}
	/* SMTPUTF8: raw UTF-8 */
	CHECK(render(t, "x@example.org", &f, MSG_F_SMTPUTF8, 0, out, BIG) > 0);
	CHECK(get_header(out, "Subject", v, sizeof(v)) == 0);
	CHECK_STREQ(v, want);
	CHECK(strstr(out, "=?UTF-8?") == NULL);
	msg_template_free(t);

	/* non-ASCII display name: encoded in From/To without SMTPUTF8 */
	{
		struct msg_template_spec sp = {
			.campaign_id = "c", .from_addr = "n@example.com",
			.from_name = "Café", .to_name = "{{name}}", .subject = "s",
			.text = "b",
		};

		t = msg_template_compile(&sp, err, sizeof(err));
		CHECK(t != NULL);
		CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
		CHECK(strstr(out, "From: =?UTF-8?B?Q2Fmw6k=?= <n@example.com>\r\n") != NULL);
		CHECK(strstr(out, "To: =?UTF-8?B?Wm/Dqw==?= <x@example.org>\r\n") != NULL);
		CHECK(render(t, "x@example.org", &f, MSG_F_SMTPUTF8, 0, out, BIG) > 0);
		CHECK(strstr(out, "From: Café <n@example.com>\r\n") != NULL);
		msg_template_free(t);
	}
	free(out);
}

static void
test_header_folding(void)
{
	char subj[600], v[1024];
	struct msg_template *t;
	struct msg_fields f = { NULL, 0, "h1", 0 };
	char *out = malloc(BIG);
	const char *p, *e;
	int lines = 0;

	subj[0] = '\0';
	for (int i = 0; i < 40; i++)
		strcat(subj, i ? " word" : "start");
	t = compile_simple(subj, "b", NULL);
	CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
	CHECK(get_header(out, "Subject", v, sizeof(v)) == 0);
	CHECK_STREQ(v, subj);
	for (p = strstr(out, "Subject:"); ; p = e + 2) {
		e = strstr(p, "\r\n");
		CHECK(e - p <= 78);
		lines++;
		if (e[2] != ' ')
			break;
	}
	CHECK(lines >= 3);
	msg_template_free(t);

	/* an unbreakable 2000-char word: encoded words instead of a long line */
	{
		char *w = malloc(2100), *dec = malloc(4096), *vv = malloc(8192);

		memset(w, 'x', 2000);
		w[2000] = '\0';
		t = compile_simple(w, "b", NULL);
		CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
		CHECK(check_wire(out, strlen(out), false));
		CHECK(get_header(out, "Subject", vv, 8192) == 0);
		CHECK(decode_2047(vv, dec, 4096) == 2000);
		CHECK(strcmp(dec, w) == 0);
		msg_template_free(t);
		free(w);
		free(dec);
		free(vv);
	}
	free(out);
}

static void
test_injection(void)
{
	struct msg_header hd[] = { { "X-Ref", "ref {{ref}}" } };
	struct msg_template_spec sp = {
		.campaign_id = "c", .from_addr = "n@example.com",
		.to_name = "{{name}}", .subject = "Hi {{subj}}", .text = "b {{name}}",
		.headers = hd, .nheaders = 1,
	};
	struct msg_template *t = msg_template_compile(&sp, err, sizeof(err));
	static const char *const bad[] = { "a\rBcc: x@evil", "a\nBcc: x@evil",
		"a\r\nBcc: x@evil", "a\0b", "a\x1b" };
	static const size_t badlen[] = { 13, 13, 14, 3, 2 };
	static const char *const names[] = { "name", "subj", "ref" };
	char *out = malloc(BIG);

	CHECK(t != NULL);
	for (size_t fi = 0; fi < 3; fi++) {
		for (size_t bi = 0; bi < 5; bi++) {
			struct msg_field fv[3] = { F("name", "N"), F("subj", "S"), F("ref", "R") };
			struct msg_fields f = { fv, 3, "i1", 0 };
			struct msg_render r;
			char want[64];

			fv[fi].value = bad[bi];
			fv[fi].len = badlen[bi];
			CHECK_EQ(msg_render_open(&r, t, "x@example.org", &f, 0, 0, err,
				sizeof(err)), -EINVAL);
			snprintf(want, sizeof(want), "field '%s'", names[fi]);
			CHECK(strstr(err, want) != NULL);
			CHECK(bi >= 3 || strstr(err, "CR or LF") != NULL);
		}
	}
	/* the same bytes in the body are fine (LF converted, NUL -> QP) */
	{
		struct msg_field fv[3] = { F("name", "a\nb\0c"), F("subj", "S"), F("ref", "R") };
		struct msg_template_spec sp2 = sp;
		struct msg_template *t2;
		struct msg_fields f = { fv, 3, "i2", 0 };

		sp2.to_name = NULL;
		t2 = msg_template_compile(&sp2, err, sizeof(err));
		CHECK(render(t2, "x@example.org", &f, 0, 0, out, BIG) > 0);
		CHECK(strstr(out, "b a\r\nb=00c=\r\n") != NULL);
		msg_template_free(t2);
	}
	/* literal CR/LF in header templates and bad header names: compile errors */
	{
		struct msg_header h1[] = { { "X-A", "v\r\nBcc: e@evil" } };
		struct msg_header h2[] = { { "X A", "v" } };
		struct msg_header h3[] = { { "Bcc", "v" } };
		struct msg_header h4[] = { { "X-A", "ok {{f|d\nx}}" } };
		struct msg_header h5[] = { { "Content-Type", "text/evil" } };
		struct msg_template_spec s = sp;

		s.headers = h1;
		CHECK(msg_template_compile(&s, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "X-A: 1:2: CR or LF") != NULL);
		s.headers = h2;
		CHECK(msg_template_compile(&s, err, sizeof(err)) == NULL);
		s.headers = h3;
		CHECK(msg_template_compile(&s, err, sizeof(err)) == NULL);
		s.headers = h4;
		CHECK(msg_template_compile(&s, err, sizeof(err)) == NULL);
		s.headers = h5;
		CHECK(msg_template_compile(&s, err, sizeof(err)) == NULL);
		s.headers = hd;
		s.subject = "Hi\nBcc: e@evil";
		CHECK(msg_template_compile(&s, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "subject: 1:3:") != NULL);
	}
	/* invalid UTF-8 in a field, anywhere */
	{
		struct msg_field fv[3] = { F("name", "N"), F("subj", "S"), F("ref", "R") };
		struct msg_fields f = { fv, 3, "i3", 0 };
		struct msg_render r;

		fv[0].value = "\xc3\x28";
		fv[0].len = 2;
		CHECK_EQ(msg_render_open(&r, t, "x@example.org", &f, 0, 0, err,
			sizeof(err)), -EINVAL);
		CHECK(strstr(err, "field 'name'") != NULL && strstr(err, "UTF-8") != NULL);
	}
	msg_template_free(t);
	free(out);
}

static void
test_missing_field(void)
{
	struct msg_template *t = compile_simple("Hi {{first|friend}}",
		"Dear {{ first | you }}, code {{code}}", NULL);
	struct msg_field fv[] = { F("code", "C1") };
	struct msg_fields f = { fv, 1, "m1", 0 }, none = { NULL, 0, "m1", 0 };
	struct msg_render r;
	char *out = malloc(BIG);

	CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
	CHECK(strstr(out, "Subject: Hi friend\r\n") != NULL);
	CHECK(strstr(out, "\r\n\r\nDear  you , code C1\r\n") != NULL);
	CHECK_EQ(msg_render_open(&r, t, "x@example.org", &none, 0, 0, err,
		sizeof(err)), -EINVAL);
	CHECK_STREQ(err, "missing field 'code' (used in text, no default)");
	/* a display name that renders empty or blank is left out */
	{
		struct msg_template_spec sp = {
			.campaign_id = "c", .from_addr = "n@example.com",
			.to_name = "{{first|}} {{last|}}", .subject = "s", .text = "b",
		};
		struct msg_template *t2 = msg_template_compile(&sp, err, sizeof(err));
		struct msg_field lv[] = { F("last", "Lee") };
		struct msg_fields lf = { lv, 1, "m2", 0 };

		CHECK(render(t2, "x@example.org", &none, 0, 0, out, BIG) > 0);
		CHECK(strstr(out, "\r\nTo: x@example.org\r\n") != NULL);
		CHECK(render(t2, "x@example.org", &lf, 0, 0, out, BIG) > 0);
		CHECK(strstr(out, "\r\nTo:  Lee <x@example.org>\r\n") != NULL);
		msg_template_free(t2);
	}
	/* email is always the recipient */
	msg_template_free(t);
	t = compile_simple("For {{email}}", "x", NULL);
	CHECK(render(t, "x@example.org", &none, 0, 0, out, BIG) > 0);
	CHECK(strstr(out, "Subject: For x@example.org\r\n") != NULL);
	msg_template_free(t);
	free(out);
}

static void
test_template_syntax(void)
{
	struct msg_template_spec sp = {
		.campaign_id = "c", .from_addr = "n@example.com", .subject = "s",
	};

	sp.text = "line1\nab {{name";
	CHECK(msg_template_compile(&sp, err, sizeof(err)) == NULL);
	CHECK_STREQ(err, "text: 2:4: unterminated merge field '{{'");
	sp.text = "x {{ }}";
	CHECK(msg_template_compile(&sp, err, sizeof(err)) == NULL);
	CHECK_STREQ(err, "text: 1:3: empty merge field name");
	sp.text = "{{na me}}";
	CHECK(msg_template_compile(&sp, err, sizeof(err)) == NULL);
	CHECK_STREQ(err, "text: 1:5: invalid character in merge field name");
	sp.text = "{{a {{b}}";
	CHECK(msg_template_compile(&sp, err, sizeof(err)) == NULL);
	CHECK_STREQ(err, "text: 1:5: '{{' inside a merge field");
	sp.text = "bad \xff utf8";
	CHECK(msg_template_compile(&sp, err, sizeof(err)) == NULL);
	CHECK_STREQ(err, "text: 1:5: invalid UTF-8");
	sp.text = NULL;
	CHECK(msg_template_compile(&sp, err, sizeof(err)) == NULL);
	sp.text = "ok }} {{a|}}";
	sp.unsub_url = "http://insecure.example.com/u";
	CHECK(msg_template_compile(&sp, err, sizeof(err)) == NULL);
	sp.unsub_url = NULL;
	sp.from_addr = "not an address";
	CHECK(msg_template_compile(&sp, err, sizeof(err)) == NULL);
	sp.from_addr = "n@example.com";
	{
		struct msg_template *t = msg_template_compile(&sp, err, sizeof(err));

		CHECK(t != NULL);
		msg_template_free(t);
	}
}

/* Find boundary, then check it appears only as delimiter lines. */
static void
test_boundary(void)
{
	/* content that tries to contain the boundary prefix and delimiters */
	struct msg_template *t = compile_simple("b",
		"--=_mp{{x}}\n--=_mp0000000000000000--\n=_mp", "<b>{{y}}</b>");
	struct msg_field fv[] = { F("x", "=_mp"), F("y", "plain =_") };
	struct msg_fields f = { fv, 2, "b1", 0 };
	char *out = malloc(BIG), bnd[64];
	const char *b, *p;
	int hits = 0;

	CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
	CHECK(check_wire(out, strlen(out), false));
	b = strstr(out, "boundary=\"");
	CHECK(b != NULL);
	if (b == NULL)
		goto out;
	b += 10;
	memcpy(bnd, b, 20);
	bnd[20] = '\0';
	/* the text part switched to QP; html stays 7bit */
	CHECK(strstr(out, "Content-Type: text/plain; charset=UTF-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n") != NULL);
	CHECK(strstr(out, "Content-Type: text/html; charset=UTF-8\r\n"
		"Content-Transfer-Encoding: 7bit\r\n") != NULL);
	/* every occurrence is the header parameter or a whole delimiter line */
	for (p = body_of(out); (p = strstr(p, bnd)) != NULL; p += 20) {
		hits++;
		CHECK(p[-2] == '-' && p[-1] == '-' && p[-3] == '\n');
		CHECK(strncmp(p + 20, "\r\n", 2) == 0 || strncmp(p + 20, "--\r\n", 4) == 0);
	}
	CHECK_EQ(hits, 3);
	/* no "=_mp" at all inside the QP part */
	{
		const char *s = strstr(out, "quoted-printable\r\n\r\n");
		const char *e = s ? strstr(s, "\r\n--=_mp") : NULL;

		CHECK(s != NULL && e != NULL);
		for (const char *q = s; q && e && q < e; q++)
			CHECK(strncmp(q, "=_", 2) != 0);
	}
out:
	msg_template_free(t);
	free(out);
}

static void
test_streaming_caps(void)
{
	struct msg_header hd[] = { { "X-Long", "{{long}}" },
		{ "X-Spaces", "a{{sp}}b {{sp}}c{{sp}}" } };
	struct msg_template_spec sp = {
		.campaign_id = "c", .from_addr = "n@example.com",
		.from_name = "Nöm \"Q\"", .to_name = "{{first}}",
		.subject = "Grüße {{first}} .{{long}}", .text = ".t {{long}}\n.x é",
		.html = "<i>{{first}}</i> {{long}}", .headers = hd, .nheaders = 2,
		.unsub_url = "https://e.example.com/{{first}}",
	};
	struct msg_template *t = msg_template_compile(&sp, err, sizeof(err));
	char lng[1500], sp700[701];
	struct msg_field fv[] = { F("first", "Ann <&>"), { "long", lng, 0 },
		{ "sp", sp700, 700 } };
	struct msg_fields f = { fv, 3, "s1", 0 };
	char *ref = malloc(BIG), *got = malloc(BIG);
	static const unsigned flagsets[] = { 0, MSG_F_DOTSTUFF,
		MSG_F_SMTPUTF8 | MSG_F_8BITMIME | MSG_F_DOTSTUFF };

	for (size_t i = 0; i < sizeof(lng) - 1; i++)
		lng[i] = (i % 37 == 36) ? ' ' : (i % 5 == 0 ? '.' : 'a' + (char)(i % 26));
	lng[sizeof(lng) - 1] = '\0';
	fv[1].len = strlen(lng);
	memset(sp700, ' ', 700);
	sp700[700] = '\0';
	CHECK(t != NULL);
	for (size_t fs = 0; fs < 3; fs++) {
		struct msg_render r;
		ssize_t nref = render(t, "x@example.org", &f, flagsets[fs], 99, ref, BIG);
		size_t caps[70], nc = 0;

		CHECK(nref > 0);
		CHECK(check_wire(ref, (size_t)nref, (flagsets[fs] & MSG_F_DOTSTUFF) != 0));
		for (size_t c = 1; c <= 64; c++)
			caps[nc++] = c;
		caps[nc++] = 4096;
		caps[nc++] = (size_t)nref - 1;
		for (size_t ci = 0; ci < nc; ci++) {
			size_t tot = 0;
			ssize_t n;
			int rounds = 0;

			CHECK_EQ(msg_render_open(&r, t, "x@example.org", &f, flagsets[fs], 99,
				err, sizeof(err)), 0);
			if (ci == 0)
				CHECK_EQ(msg_render_size(&r), nref);
			while ((n = msg_render_read(&r, got + tot, caps[ci])) > 0) {
				if ((size_t)n > caps[ci])
					break;
				tot += (size_t)n;
				if (++rounds > 10000000)
					break;
			}
			CHECK_EQ(n, 0);
			CHECK_EQ(tot, (size_t)nref);
			CHECK(tot == (size_t)nref && memcmp(got, ref, tot) == 0);
			/* size mid-stream is still the whole message; read goes on */
			CHECK_EQ(msg_render_size(&r), nref);
			CHECK_EQ(msg_render_read(&r, got, 10), 0);
		}
	}
	/* rewind replays the same bytes; read has the byte-source type the
	 * SMTP layer pulls through */
	{
		struct msg_render r;
		ssize_t (*src_read)(void *src, void *buf, size_t cap) = msg_render_read;
		ssize_t n1, n2;

		msg_render_open(&r, t, "x@example.org", &f, 0, 99, err, sizeof(err));
		n1 = src_read(&r, ref, BIG);
		msg_render_rewind(&r);
		n2 = src_read(&r, got, BIG);
		CHECK(n1 > 0 && n1 == n2 && memcmp(ref, got, (size_t)n1) == 0);
		CHECK_EQ(msg_render_read(&r, NULL, 10), -EINVAL);
		CHECK_EQ(msg_render_read(&r, got, 0), -EINVAL);
	}
	msg_template_free(t);
	free(ref);
	free(got);
}

static void
test_addr_valid(void)
{
	static const struct { const char *a; unsigned fl; int ok; } tab[] = {
		{ "user@example.com", 0, 1 },
		{ "first.last+tag@sub.example.co.uk", 0, 1 },
		{ "!#$%&'*+-/=?^_`{|}~@example.com", 0, 1 },
		{ "\"john doe\"@example.com", 0, 1 },
		{ "\"a\\\"b@c\"@example.com", 0, 1 },
		{ "user@[192.0.2.1]", 0, 1 },
		{ "user@[IPv6:2001:db8::1]", 0, 1 },
		{ "user@localhost", 0, 1 },
		{ "x@a-b.c", 0, 1 },
		{ "δοκιμή@παράδειγμα.δοκιμή", MSG_F_SMTPUTF8, 1 },
		{ "jörg@example.com", MSG_F_SMTPUTF8, 1 },
		{ "jörg@example.com", 0, 0 },
		{ "", 0, 0 },
		{ "plainaddress", 0, 0 },
		{ "@example.com", 0, 0 },
		{ "user@", 0, 0 },
		{ ".user@example.com", 0, 0 },
		{ "user.@example.com", 0, 0 },
		{ "us..er@example.com", 0, 0 },
		{ "us er@example.com", 0, 0 },
		{ "user@exa mple.com", 0, 0 },
		{ "user@-example.com", 0, 0 },
		{ "user@example-.com", 0, 0 },
		{ "user@example..com", 0, 0 },
		{ "user@example.com.", 0, 0 },
		{ "user@[300.0.0.1]", 0, 0 },
		{ "user@[IPv6:zz::1]", 0, 0 },
		{ "user@[1.2.3.4", 0, 0 },
		{ "a\r\nb@example.com", 0, 0 },
		{ "user@exam\nple.com", 0, 0 },
		{ "\"unterminated@example.com", 0, 0 },
		{ "\"a\"b\"@example.com", 0, 0 },
		{ "user@ex_ample.com", 0, 0 },
		{ "j\xc3\x28@example.com", MSG_F_SMTPUTF8, 0 },
	};
	char lp[80], buf[400];

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		int rc = msg_addr_valid(tab[i].a, tab[i].fl);

		if ((rc == 0) != tab[i].ok)
			fprintf(stderr, "addr case %zu '%s' got %d\n", i, tab[i].a, rc);
		CHECK_EQ(rc == 0, tab[i].ok);
	}
	CHECK_EQ(msg_addr_valid(NULL, 0), -EINVAL);
	/* local part 64 ok, 65 not */
	memset(lp, 'a', 65);
	snprintf(buf, sizeof(buf), "%.64s@example.com", lp);
	CHECK_EQ(msg_addr_valid(buf, 0), 0);
	snprintf(buf, sizeof(buf), "%.65s@example.com", lp);
	CHECK_EQ(msg_addr_valid(buf, 0), -EINVAL);
	/* label 63 ok, 64 not */
	memset(lp, 'b', 64);
	snprintf(buf, sizeof(buf), "u@%.63s.com", lp);
	CHECK_EQ(msg_addr_valid(buf, 0), 0);
	snprintf(buf, sizeof(buf), "u@%.64s.com", lp);
	CHECK_EQ(msg_addr_valid(buf, 0), -EINVAL);
	/* whole address 254 ok, 255 not */
	snprintf(buf, sizeof(buf), "u@%.60s.%.60s.%.60s.%.60s.%.8s", lp, lp, lp, lp, lp);
	CHECK_EQ(strlen(buf), 254);
	CHECK_EQ(msg_addr_valid(buf, 0), 0);
	snprintf(buf, sizeof(buf), "uu@%.60s.%.60s.%.60s.%.60s.%.8s", lp, lp, lp, lp, lp);
	CHECK_EQ(msg_addr_valid(buf, 0), -EINVAL);
	/* a non-ASCII recipient needs SMTPUTF8 at render time too */
	{
		struct msg_template *t = compile_simple("s", "b", NULL);
		struct msg_fields f = { NULL, 0, "a1", 0 };
		struct msg_render r;

		CHECK_EQ(msg_render_open(&r, t, "jörg@example.com", &f, 0, 0, err,
			sizeof(err)), -EINVAL);
		CHECK(strstr(err, "SMTPUTF8") != NULL);
		CHECK_EQ(msg_render_open(&r, t, "jörg@example.com", &f, MSG_F_SMTPUTF8, 0,
			err, sizeof(err)), 0);
		msg_template_free(t);
	}
}

static void
test_msgid(void)
{
	struct msg_template *t = compile_simple("s", "b", NULL);
	struct msg_fields f = { NULL, 0, NULL, 123456789012ull };
	struct msg_render r;
	char *out = malloc(BIG);

	CHECK(render(t, "x@example.org", &f, 0, 0, out, BIG) > 0);
	CHECK(strstr(out, "Message-ID: <cmp1.123456789012@example.com>\r\n") != NULL);
	f.msgid_token = "bad token";
	CHECK_EQ(msg_render_open(&r, t, "x@example.org", &f, 0, 0, err, sizeof(err)),
		-EINVAL);
	msg_template_free(t);
	free(out);
}

int
main(void)
{
	test_vector_text_only();
	test_vector_multipart();
	test_dotstuff();
	test_long_lines_qp();
	test_8bit_and_qp_choice();
	test_subject_2047();
	test_header_folding();
	test_injection();
	test_missing_field();
	test_template_syntax();
	test_boundary();
	test_streaming_caps();
	test_addr_valid();
	test_msgid();
	return mp_test_result("test_msg");
}
