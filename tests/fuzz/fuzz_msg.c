/*
 * libFuzzer target for msg_: the input is split on 0xff bytes into a
 * control byte, template strings (subject, text, html, from name, to name,
 * an extra header value, an unsubscribe URL path) and three merge field
 * values (a, b, c). Each message that opens is rendered with a read size
 * taken from the input and checked against a single big read and
 * msg_render_size, then for wire invariants: CRLF only, lines <= 998
 * octets (dot-stuffing removed), ends with CRLF, no whitespace-only header
 * line, ASCII-only headers without SMTPUTF8, exactly the expected
 * header names in the expected order (no injected header), boundaries
 * only on delimiter lines, and every body part, with dot-stuffing and
 * quoted-printable undone, equal to an independent expansion of its
 * template (values HTML-escaped in the HTML part).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

#define NPIECES 11
#define OUT_MAX (1 << 20)

static char *out_a, *out_b;

static void
fail(const char *what, const char *m, size_t n)
{
	fprintf(stderr, "invariant broken: %s\n", what);
	fwrite(m, 1, n < 4096 ? n : 4096, stderr);
	fputc('\n', stderr);
	abort();
}

static size_t
read_all(struct msg_render *r, char *out, size_t step)
{
	size_t tot = 0;
	ssize_t n;

	while ((n = msg_render_read(r, out + tot, step)) > 0) {
		if ((size_t)n > step)
			fail("read returned more than cap", out, tot);
		tot += (size_t)n;
		if (tot + step > OUT_MAX)
			fail("message too large for the fuzz buffer", out, tot);
	}
	if (n < 0)
		fail("read failed after a successful open", out, tot);
	return tot;
}

static void
check_wire(const char *m, size_t n, bool stuffed)
{
	size_t start = 0;

	if (n < 2 || m[n - 2] != '\r' || m[n - 1] != '\n')
		fail("does not end with CRLF", m, n);
	for (size_t i = 0; i < n; i++) {
		if (m[i] == '\n')
			fail("bare LF", m, n);
		if (m[i] != '\r')
			continue;
		if (i + 1 >= n || m[i + 1] != '\n')
			fail("bare CR", m, n);
		size_t len = i - start;

		if (stuffed && len > 0 && m[start] == '.')
			len--;
		if (len > MSG_LINE_MAX)
			fail("line longer than 998", m, n);
		i++;
		start = i + 1;
	}
}

/* Header names in order, compared with the expected list. */
static void
check_headers(const char *m, size_t n, const char *const *want, size_t nwant,
	bool ascii)
{
	size_t i = 0, k = 0;

	while (i < n) {
		const char *e = memmem(m + i, n - i, "\r\n", 2);
		size_t len = (size_t)(e - (m + i));

		if (len == 0)
			break;  /* end of the header block */
		if (m[i] == ' ' || m[i] == '\t') {
			bool blank = true;

			if (k == 0)
				fail("continuation before the first header", m, n);
			for (size_t j = 0; j < len; j++)
				if (m[i + j] != ' ' && m[i + j] != '\t')
					blank = false;
			if (blank)
				fail("whitespace-only folded header line", m, n);
		} else {
			size_t nl = strlen(k < nwant ? want[k] : "");

			if (k >= nwant || len <= nl || memcmp(m + i, want[k], nl) != 0 ||
			    m[i + nl] != ':')
				fail("unexpected header", m, n);
			k++;
		}
		if (ascii)
			for (size_t j = 0; j < len; j++)
				if ((unsigned char)m[i + j] >= 0x80)
					fail("non-ASCII header without SMTPUTF8", m, n);
		i += len + 2;
	}
	if (k != nwant)
		fail("missing header", m, n);
}

/* boundary only on delimiter lines: 2 opening + 1 closing */
static void
check_boundary(const char *m, size_t n)
{
	static const char ct[] = "\r\nContent-Type: multipart/alternative; boundary=\"";
	const char *b = memmem(m, n, ct, sizeof(ct) - 1);
	const char *body = memmem(m, n, "\r\n\r\n", 4);
	int hits = 0;

	if (b == NULL || body == NULL)
		fail("multipart without boundary", m, n);
	b += sizeof(ct) - 1;
	for (const char *p = body; (p = memmem(p, (size_t)(m + n - p), b, 20)) != NULL;
	     p += 20) {
		if (p[-1] != '-' || p[-2] != '-' || p[-3] != '\n')
			fail("boundary inside content", m, n);
		hits++;
	}
	if (hits != 3)
		fail("boundary count", m, n);
}

/* Reference expansion of a body template (independent of the renderer):
 * merge fields replaced, every line break made CRLF. */
static size_t
expand_ref(const char *tpl, const struct msg_field *fv, const char *rcpt,
	bool html, char *out, size_t cap)
{
	size_t o = 0, n = strlen(tpl);
	char tmp[1];

	for (size_t i = 0; i < n;) {
		const char *v = NULL;
		size_t vl = 0;

		if (tpl[i] == '{' && tpl[i + 1] == '{') {
			const char *e = strstr(tpl + i + 2, "}}");
			const char *a = tpl + i + 2, *bar, *ne;

			bar = memchr(a, '|', (size_t)(e - a));
			ne = bar ? bar : e;
			while (a < ne && (*a == ' ' || *a == '\t'))
				a++;
			while (ne > a && (ne[-1] == ' ' || ne[-1] == '\t'))
				ne--;
			if ((size_t)(ne - a) == 5 && memcmp(a, "email", 5) == 0) {
				v = rcpt;
				vl = strlen(rcpt);
			} else {
				for (int k = 0; k < 3 && v == NULL; k++) {
					if (strlen(fv[k].name) == (size_t)(ne - a) &&
					    memcmp(fv[k].name, a, (size_t)(ne - a)) == 0) {
						v = fv[k].value;
						vl = fv[k].len;
					}
				}
			}
			if (v == NULL && bar != NULL) {
				v = bar + 1;
				vl = (size_t)(e - bar - 1);
			}
			i = (size_t)(e - tpl) + 2;
		} else {
			tmp[0] = tpl[i++];
			v = tmp;
			vl = 1;
		}
		/* merged values (not literals, not defaults) are escaped */
		bool esc = html && v != tmp && !(v >= tpl && v < tpl + n);

		for (size_t k = 0; k < vl; k++) {
			const char *rep = NULL;

			if (esc)
				switch (v[k]) {
				case '&': rep = "&amp;"; break;
				case '<': rep = "&lt;"; break;
				case '>': rep = "&gt;"; break;
				case '"': rep = "&quot;"; break;
				case '\'': rep = "&#39;"; break;
				default: break;
				}
			if (o + 8 >= cap)
				return o;
			if (rep != NULL) {
				memcpy(out + o, rep, strlen(rep));
				o += strlen(rep);
			} else {
				out[o++] = v[k];
			}
		}
	}
	/* normalise line breaks in place into a second pass */
	{
		size_t w = 0;
		char *t = malloc(o * 2 + 1);

		for (size_t i = 0; i < o; i++) {
			if (out[i] == '\r' || out[i] == '\n') {
				if (out[i] == '\r' && i + 1 < o && out[i + 1] == '\n')
					i++;
				t[w++] = '\r';
				t[w++] = '\n';
			} else {
				t[w++] = out[i];
			}
		}
		if (w > cap)
			w = cap;
		memcpy(out, t, w);
		free(t);
		return w;
	}
}

static int
hexv(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One part's encoded content (ending with CRLF, or empty), decoded, must
 * equal the reference expansion of its template. */
static void
check_part(const char *m, size_t n, const char *body, size_t bl, bool qp,
	bool stuffed, const char *tpl, bool html, const struct msg_field *fv,
	const char *rcpt)
{
	static char ref[OUT_MAX / 2], dec[OUT_MAX / 2];
	size_t rn, dn = 0;
	bool bol = true;

	rn = expand_ref(tpl, fv, rcpt, html, ref, sizeof(ref));
	for (size_t i = 0; i < bl && dn + 1 < sizeof(dec); i++) {
		if (bol && stuffed && body[i] == '.') {
			if (i + 1 >= bl || body[i + 1] != '.')
				fail("line starting with a single dot", m, n);
			i++;
		}
		bol = false;
		if (qp && body[i] == '=') {
			if (i + 2 < bl && body[i + 1] == '\r' && body[i + 2] == '\n') {
				i += 2;
				bol = true;
				continue;
			}
			if (i + 2 >= bl || hexv(body[i + 1]) < 0 || hexv(body[i + 2]) < 0)
				fail("bad quoted-printable escape", m, n);
			dec[dn++] = (char)(hexv(body[i + 1]) * 16 + hexv(body[i + 2]));
			i += 2;
			continue;
		}
		dec[dn++] = body[i];
		if (body[i] == '\n')
			bol = true;
	}
	/* 7bit/8bit add CRLF to a last line without one */
	if (!qp && rn > 0 && (rn < 2 || ref[rn - 2] != '\r' || ref[rn - 1] != '\n')) {
		ref[rn++] = '\r';
		ref[rn++] = '\n';
	}
	if (dn != rn || memcmp(dec, ref, rn) != 0)
		fail("decoded body differs from the template expansion", m, n);
}

static void
check_single(const char *m, size_t n, bool stuffed, const char *tpl, bool html,
	const struct msg_field *fv, const char *rcpt)
{
	static const char qph[] = "\nContent-Transfer-Encoding: quoted-printable";
	const char *body = memmem(m, n, "\r\n\r\n", 4);
	bool qp;

	if (body == NULL)
		fail("no header/body separator", m, n);
	/* the transfer encoding is the last header of a single-part message */
	qp = (size_t)(body - m) >= sizeof(qph) - 1 &&
		memcmp(body - (sizeof(qph) - 1), qph, sizeof(qph) - 1) == 0;
	body += 4;
	check_part(m, n, body, (size_t)(m + n - body), qp, stuffed, tpl, html, fv, rcpt);
}

/* multipart: --B, part headers, content up to the next --B line */
static void
check_multi(const char *m, size_t n, bool stuffed, const char *text,
	const char *html, const struct msg_field *fv, const char *rcpt)
{
	static const char ct[] = "\r\nContent-Type: multipart/alternative; boundary=\"";
	const char *b = memmem(m, n, ct, sizeof(ct) - 1), *p;
	char delim[32];

	if (b == NULL)
		fail("multipart without boundary", m, n);
	b += sizeof(ct) - 1;
	delim[0] = delim[1] = '-';
	memcpy(delim + 2, b, 20);
	p = memmem(b, (size_t)(m + n - b), "\r\n\r\n", 4);
	for (int part = 0; part < 2; part++) {
		const char *hdr, *start, *end;
		bool qp;

		p = memmem(p, (size_t)(m + n - p), delim, 22);
		if (p == NULL)
			fail("missing part delimiter", m, n);
		hdr = p + 24;
		start = memmem(hdr, (size_t)(m + n - hdr), "\r\n\r\n", 4);
		if (start == NULL)
			fail("part without header end", m, n);
		qp = memmem(hdr, (size_t)(start - hdr), "quoted-printable", 16) != NULL;
		start += 4;
		end = memmem(start, (size_t)(m + n - start), delim, 22);
		if (end == NULL)
			fail("part not closed", m, n);
		check_part(m, n, start, (size_t)(end - start), qp, stuffed,
			part == 0 ? text : html, part == 1, fv, rcpt);
		p = end;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *piece[NPIECES] = { 0 };
	size_t plen[NPIECES] = { 0 }, np = 0, start = 0;
	char err[256], url[4200], rep[1100];
	struct msg_header hd[1];
	struct msg_template_spec sp = { 0 };
	struct msg_template *t;
	struct msg_field fv[3];
	struct msg_fields f = { fv, 3, NULL, 42 };
	struct msg_render r;
	unsigned ctl, flags;
	size_t na, nb, step;
	ssize_t sz;
	const char *want[16];
	size_t nwant = 0;

	if (size > 64 * 1024)
		return 0;
	if (out_a == NULL) {
		out_a = malloc(OUT_MAX);
		out_b = malloc(OUT_MAX);
	}
	for (size_t i = 0; i <= size && np < NPIECES; i++) {
		if (i == size || data[i] == 0xff) {
			/* NUL-terminated copies; field values keep their length */
			piece[np] = malloc(i - start + 1);
			memcpy(piece[np], data + start, i - start);
			piece[np][i - start] = '\0';
			plen[np++] = i - start;
			start = i + 1;
		}
	}
	if (np < 2)
		goto out;
	{
		/* bound the output: every {{ may expand to the longest value,
		 * escaped (x6 for &quot;) */
		size_t refs = 0, maxv = 0;

		for (size_t i = 1; i < np; i++) {
			for (size_t k = 0; k + 1 < plen[i]; k++)
				refs += piece[i][k] == '{' && piece[i][k + 1] == '{';
			if (plen[i] > maxv)
				maxv = plen[i];
		}
		if (plen[0] && ((uint8_t)piece[0][0] & 0x80) && maxv < 1000)
			maxv = 1000;
		if (size + refs * (maxv * 6 + 8) > OUT_MAX / 8)
			goto out;
	}
	ctl = plen[0] ? (uint8_t)piece[0][0] : 0;
	flags = ctl & 7;
	step = plen[0] > 1 ? (uint8_t)piece[0][1] + 1 : 4096;

	hd[0].name = "X-Fuzz";
	hd[0].value = np > 6 ? piece[6] : "x";
	sp.campaign_id = "fz";
	sp.from_addr = "sender@example.com";
	sp.subject = piece[1];
	sp.text = np > 2 && !(ctl & 0x10) ? piece[2] : NULL;
	sp.html = np > 3 && (ctl & 0x18) ? piece[3] : NULL;
	if (sp.text == NULL && sp.html == NULL)
		sp.text = np > 2 ? piece[2] : "";
	sp.from_name = np > 4 ? piece[4] : NULL;
	sp.to_name = np > 5 ? piece[5] : NULL;
	sp.headers = hd;
	sp.nheaders = 1;
	if (np > 7 && (ctl & 0x20)) {
		snprintf(url, sizeof(url), "https://u.example.com/%.4096s", piece[7]);
		sp.unsub_url = url;
	}
	sp.reply_to = (ctl & 0x40) ? "reply@example.com" : NULL;
	t = msg_template_compile(&sp, err, sizeof(err));
	if (t == NULL) {
		if (err[0] == '\0')
			abort();
		goto out;
	}
	for (int i = 0; i < 3; i++) {
		size_t k = 8 + (size_t)i;

		fv[i].name = i == 0 ? "a" : i == 1 ? "b" : "c";
		fv[i].value = k < np ? piece[k] : "";
		fv[i].len = k < np ? plen[k] : 0;
	}
	if ((ctl & 0x80) && fv[2].len > 0 && fv[2].len < 64) {
		/* long values (runs near the 998 limit) are hard to grow by
		 * mutation: repeat c up to about 1000 octets */
		size_t o = 0;

		while (o + fv[2].len <= 1000) {
			memcpy(rep + o, fv[2].value, fv[2].len);
			o += fv[2].len;
		}
		fv[2].value = rep;
		fv[2].len = o;
	}
	if (msg_render_open(&r, t, "rcpt@example.org", &f, flags, 1700000000, err,
	    sizeof(err)) < 0) {
		if (err[0] == '\0')
			abort();
		goto free_t;
	}
	sz = msg_render_size(&r);
	na = read_all(&r, out_a, 65536);
	if (sz < 0 || (size_t)sz != na)
		fail("msg_render_size differs from bytes read", out_a, na);
	if (msg_render_open(&r, t, "rcpt@example.org", &f, flags, 1700000000, err,
	    sizeof(err)) < 0)
		fail("second open failed", out_a, na);
	nb = read_all(&r, out_b, step);
	if (na != nb || memcmp(out_a, out_b, na) != 0)
		fail("small reads differ from one big read", out_b, nb);
	check_wire(out_a, na, (flags & MSG_F_DOTSTUFF) != 0);
	{
		/* with DOTSTUFF every line starting with '.' carries one added dot */
		size_t dots = 0;

		for (size_t i = 0; i < na; i++)
			if ((flags & MSG_F_DOTSTUFF) && out_a[i] == '.' &&
			    (i == 0 || out_a[i - 1] == '\n'))
				dots++;
		if ((size_t)msg_render_smtp_size(&r) != na - dots)
			fail("smtp size is not the unstuffed size", out_a, na);
	}

	want[nwant++] = "Date";
	want[nwant++] = "From";
	if (sp.reply_to)
		want[nwant++] = "Reply-To";
	want[nwant++] = "To";
	want[nwant++] = "Subject";
	want[nwant++] = "Message-ID";
	want[nwant++] = "MIME-Version";
	want[nwant++] = "X-Fuzz";
	if (sp.unsub_url) {
		want[nwant++] = "List-Unsubscribe";
		want[nwant++] = "List-Unsubscribe-Post";
	}
	want[nwant++] = "Content-Type";
	if (!(sp.text && sp.html))
		want[nwant++] = "Content-Transfer-Encoding";
	check_headers(out_a, na, want, nwant, !(flags & MSG_F_SMTPUTF8));
	if (sp.text && sp.html)
		check_boundary(out_a, na);
	if (sp.text && sp.html)
		check_multi(out_a, na, (flags & MSG_F_DOTSTUFF) != 0, sp.text, sp.html,
			fv, "rcpt@example.org");
	else
		check_single(out_a, na, (flags & MSG_F_DOTSTUFF) != 0,
			sp.text ? sp.text : sp.html, sp.text == NULL, fv, "rcpt@example.org");
free_t:
	msg_template_free(t);
out:
	for (size_t i = 0; i < np; i++)
		free(piece[i]);
	return 0;
}
