/*
 * Reply parser and EHLO extension parser: well-formed replies in any
 * fragmentation, enhanced status codes, and every malformed or oversized
 * form a hostile server could send.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mp_test.h"
#include "smtp.h"

/* Feed the whole buffer in pieces of @p step bytes; @return last status. */
static int
feed_all(struct smtp_reply *r, const char *s, size_t len, size_t step, size_t *total)
{
	size_t off = 0, used;
	int rc = SMTP_REPLY_MORE;

	while (off < len) {
		size_t n = len - off < step ? len - off : step;

		rc = smtp_reply_feed(r, s + off, n, &used);
		off += used;
		if (rc < 0 || rc == SMTP_REPLY_DONE)
			break;
	}
	*total = off;
	return rc;
}

static int
parse(struct smtp_reply *r, const char *s)
{
	size_t used;

	smtp_reply_init(r);
	return feed_all(r, s, strlen(s), 1 << 20, &used);
}

static void
test_single_line(void)
{
	struct smtp_reply r;

	CHECK_EQ(parse(&r, "220 mx.example.org ESMTP ready\r\n"), SMTP_REPLY_DONE);
	CHECK_EQ(r.code, 220);
	CHECK_EQ(r.nlines, 1);
	CHECK_STREQ(r.text, "220 mx.example.org ESMTP ready");
	CHECK_STREQ(r.line, "mx.example.org ESMTP ready");
	CHECK_STREQ(r.esc, "");
}

static void
test_multi_line_and_esc(void)
{
	struct smtp_reply r;
	const char *s = "550-5.1.1 The email account does not exist\r\n"
		"550-5.1.1 please check\r\n550 5.1.1 bye\r\n";
	size_t used, off = 0;
	int rc, lines = 0;

	smtp_reply_init(&r);
	/* the parser stops after each line */
	while ((rc = smtp_reply_feed(&r, s + off, strlen(s) - off, &used)) == SMTP_REPLY_LINE) {
		off += used;
		lines++;
	}
	off += used;
	CHECK_EQ(rc, SMTP_REPLY_DONE);
	CHECK_EQ(lines, 2);
	CHECK_EQ(off, strlen(s));
	CHECK_EQ(r.code, 550);
	CHECK_EQ(r.nlines, 3);
	CHECK_STREQ(r.esc, "5.1.1");
	CHECK_STREQ(r.text, "550-5.1.1 The email account does not exist\n"
		"550-5.1.1 please check\n550 5.1.1 bye");
	CHECK_STREQ(r.line, "5.1.1 bye");
}

static void
test_esc_forms(void)
{
	char esc[SMTP_ESC_MAX];

	CHECK_EQ(smtp_esc_parse("4.7.0 try later", 15, 4, esc), 5);
	CHECK_STREQ(esc, "4.7.0");
	CHECK_EQ(smtp_esc_parse("5.123.456", 9, 5, esc), 9);
	CHECK_STREQ(esc, "5.123.456");
	/* class must match the reply code */
	CHECK_EQ(smtp_esc_parse("5.1.1 x", 7, 4, esc), 0);
	CHECK_EQ(smtp_esc_parse("5.1234.1 x", 10, 5, esc), 0);
	CHECK_EQ(smtp_esc_parse("5.1.1x", 6, 5, esc), 0);
	CHECK_EQ(smtp_esc_parse("5..1 x", 6, 5, esc), 0);
	CHECK_EQ(smtp_esc_parse("hello", 5, 5, esc), 0);
	CHECK_STREQ(esc, "");
}

static void
test_code_only_and_bare_lf(void)
{
	struct smtp_reply r;

	CHECK_EQ(parse(&r, "250\r\n"), SMTP_REPLY_DONE);
	CHECK_EQ(r.code, 250);
	CHECK_STREQ(r.text, "250");
	/* bare LF is a line end (documented leniency) */
	CHECK_EQ(parse(&r, "250-a\n250 b\n"), SMTP_REPLY_DONE);
	CHECK_EQ(r.nlines, 2);
	CHECK_STREQ(r.text, "250-a\n250 b");
}

static void
test_fragmented_byte_by_byte(void)
{
	const char *s = "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
	struct smtp_reply r;
	size_t used;

	smtp_reply_init(&r);
	CHECK_EQ(feed_all(&r, s, strlen(s), 1, &used), SMTP_REPLY_DONE);
	CHECK_EQ(used, strlen(s));
	CHECK_EQ(r.code, 250);
	CHECK_EQ(r.nlines, 3);
	CHECK_STREQ(r.text, "250-mx.example.org\n250-PIPELINING\n250 SIZE 1000");
}

static void
test_two_replies_one_buffer(void)
{
	const char *s = "250 ok\r\n354 go\r\n";
	struct smtp_reply r;
	size_t used;

	smtp_reply_init(&r);
	CHECK_EQ(smtp_reply_feed(&r, s, strlen(s), &used), SMTP_REPLY_DONE);
	CHECK_EQ(used, 8);
	CHECK_EQ(r.code, 250);
	CHECK_EQ(smtp_reply_feed(&r, s + 8, strlen(s) - 8, &used), SMTP_REPLY_DONE);
	CHECK_EQ(r.code, 354);
	CHECK_STREQ(r.text, "354 go");
}

static void
test_malformed(void)
{
	struct smtp_reply r;
	static const char nul[] = "250 a\0b\r\n";
	size_t used;

	CHECK_EQ(parse(&r, "25x ok\r\n"), -EPROTO);
	CHECK_EQ(parse(&r, "650 ok\r\n"), -EPROTO);
	CHECK_EQ(parse(&r, "150 ok\r\n"), -EPROTO);
	CHECK_EQ(parse(&r, "250x\r\n"), -EPROTO);
	CHECK_EQ(parse(&r, "250-a\r\n251 b\r\n"), -EPROTO);
	CHECK_EQ(parse(&r, "250-a\r\n350 b\r\n"), -EPROTO);
	CHECK_EQ(parse(&r, "25\r\n"), -EPROTO);
	CHECK_EQ(parse(&r, "\r\n"), -EPROTO);
	CHECK_EQ(parse(&r, "250 a\rb\r\n"), -EPROTO);
	smtp_reply_init(&r);
	CHECK_EQ(smtp_reply_feed(&r, nul, sizeof(nul) - 1, &used), -EPROTO);
	CHECK_EQ(used, 5);
}

static void
test_control_bytes_masked(void)
{
	struct smtp_reply r;

	CHECK_EQ(parse(&r, "250 a\x1b[31mb\tc\x7f\r\n"), SMTP_REPLY_DONE);
	CHECK_STREQ(r.text, "250 a?[31mb\tc?");
}

static void
test_line_length_bound(void)
{
	struct smtp_reply r;
	char *s = malloc(SMTP_REPLY_LINE_MAX + 8);

	/* exactly SMTP_REPLY_LINE_MAX bytes before CRLF: accepted */
	memcpy(s, "250 ", 4);
	memset(s + 4, 'x', SMTP_REPLY_LINE_MAX - 4);
	memcpy(s + SMTP_REPLY_LINE_MAX, "\r\n", 3);
	CHECK_EQ(parse(&r, s), SMTP_REPLY_DONE);
	CHECK_EQ(r.line_len, SMTP_REPLY_KEEP - 1);
	CHECK_EQ(r.text_len, SMTP_REPLY_TEXT_MAX - 1);
	CHECK(r.truncated);
	/* one more byte: refused */
	memset(s + 4, 'x', SMTP_REPLY_LINE_MAX - 3);
	memcpy(s + SMTP_REPLY_LINE_MAX + 1, "\r\n", 3);
	CHECK_EQ(parse(&r, s), -EMSGSIZE);
	free(s);
}

static void
test_unterminated_line_bounded(void)
{
	struct smtp_reply r;
	char buf[4096];
	size_t used, total = 0;
	int rc = 0;

	/* a server that never sends CRLF is cut off, not buffered */
	smtp_reply_init(&r);
	memset(buf, 'y', sizeof(buf));
	memcpy(buf, "250 ", 4);
	for (int i = 0; i < 100 && rc == 0; i++) {
		rc = smtp_reply_feed(&r, buf + (i ? 4 : 0), sizeof(buf) - (i ? 4 : 0), &used);
		total += used;
	}
	CHECK_EQ(rc, -EMSGSIZE);
	CHECK(total <= SMTP_REPLY_LINE_MAX + 1);
}

static void
test_line_count_bound(void)
{
	struct smtp_reply r;
	char *s = malloc(12 * (SMTP_REPLY_LINES_MAX + 2));
	size_t n = 0;

	for (int i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
		n += (size_t)sprintf(s + n, "250-l%03d\r\n", i);
	n += (size_t)sprintf(s + n, "250 end\r\n");
	CHECK_EQ(parse(&r, s), SMTP_REPLY_DONE);
	CHECK_EQ(r.nlines, SMTP_REPLY_LINES_MAX);

	n = 0;
	for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		n += (size_t)sprintf(s + n, "250-l%03d\r\n", i);
	n += (size_t)sprintf(s + n, "250 end\r\n");
	CHECK_EQ(parse(&r, s), -EMSGSIZE);
	free(s);
}

static void
test_reinit_after_done(void)
{
	struct smtp_reply r;
	size_t used;

	CHECK_EQ(parse(&r, "550 5.1.1 no\r\n"), SMTP_REPLY_DONE);
	CHECK_EQ(smtp_reply_feed(&r, "250 ok\r\n", 8, &used), SMTP_REPLY_DONE);
	CHECK_EQ(r.code, 250);
	CHECK_STREQ(r.esc, "");
	CHECK_STREQ(r.text, "250 ok");
}

static void
test_ext(void)
{
	struct smtp_ext e = { 0, 0 };

	smtp_ext_parse_line(&e, "PIPELINING", 10);
	smtp_ext_parse_line(&e, "size 35882577", 13);
	smtp_ext_parse_line(&e, "8BITMIME", 8);
	smtp_ext_parse_line(&e, "STARTTLSX", 9);
	smtp_ext_parse_line(&e, "AUTH PLAIN LOGIN", 16);
	smtp_ext_parse_line(&e, "ENHANCEDSTATUSCODES", 19);
	CHECK_EQ(e.bits, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME |
		SMTP_EXT_ENHANCEDSTATUSCODES);
	CHECK_EQ(e.size_max, 35882577);
	smtp_ext_parse_line(&e, "SIZE", 4);
	CHECK_EQ(e.size_max, 0);
	smtp_ext_parse_line(&e, "SIZE 12x", 8);
	CHECK_EQ(e.size_max, 0);
	smtp_ext_parse_line(&e, "SIZE 99999999999999999999999", 28);
	CHECK_EQ(e.size_max, 0);
	smtp_ext_parse_line(&e, "STARTTLS", 8);
	smtp_ext_parse_line(&e, "CHUNKING", 8);
	smtp_ext_parse_line(&e, "SMTPUTF8", 8);
	CHECK(e.bits & SMTP_EXT_STARTTLS);
	CHECK(e.bits & SMTP_EXT_CHUNKING);
	CHECK(e.bits & SMTP_EXT_SMTPUTF8);
}

int
main(void)
{
	test_single_line();
	test_multi_line_and_esc();
	test_esc_forms();
	test_code_only_and_bare_lf();
	test_fragmented_byte_by_byte();
	test_two_replies_one_buffer();
	test_malformed();
	test_control_bytes_masked();
	test_line_length_bound();
	test_unterminated_line_bounded();
	test_line_count_bound();
	test_reinit_after_done();
	test_ext();
	return mp_test_result("smtp_reply");
}
