/*
 * Unit tests for the pieces of the control plane that need no Redis:
 * Redis URL parsing, the streaming CSV / JSON-lines recipient reader
 * (quoting, line numbers across quoted line breaks, CRLF, BOM, blank
 * lines, header errors, resynchronisation after a bad record, records
 * split across read buffers) and per-record validation against a
 * compiled template (ctl_submit_check).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctl_input.h"
#include "ctl_redis.h"
#include "ctl_submit.h"
#include "mp_test.h"

static void
test_url(void)
{
	struct ctl_redis_url u;
	char err[256];

	CHECK_EQ(ctl_redis_url_parse("redis://127.0.0.1", &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.host, "127.0.0.1");
	CHECK_EQ(u.port, 6379);
	CHECK_EQ(u.db, 0);
	CHECK_STREQ(u.password, "");

	CHECK_EQ(ctl_redis_url_parse("redis://app:s%40cret@redis.test:6380/7", &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.user, "app");
	CHECK_STREQ(u.password, "s@cret");
	CHECK_STREQ(u.host, "redis.test");
	CHECK_EQ(u.port, 6380);
	CHECK_EQ(u.db, 7);

	CHECK_EQ(ctl_redis_url_parse("redis://:pw@h/", &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.user, "");
	CHECK_STREQ(u.password, "pw");
	CHECK_EQ(u.db, 0);

	CHECK_EQ(ctl_redis_url_parse("redis://[::1]:7000/2", &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.host, "::1");
	CHECK_EQ(u.port, 7000);
	CHECK_EQ(u.db, 2);

	CHECK_EQ(ctl_redis_url_parse("/run/redis.sock", &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.path, "/run/redis.sock");
	CHECK_EQ(ctl_redis_url_parse("unix:///run/r.sock?db=3", &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.path, "/run/r.sock");
	CHECK_EQ(u.db, 3);
	CHECK_EQ(ctl_redis_url_parse("unix:///r.sock?password=p%26w&db=4&user=app", &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.password, "p&w");
	CHECK_STREQ(u.user, "app");
	CHECK_EQ(u.db, 4);
	CHECK_EQ(ctl_redis_url_parse("unix:///r.sock?pw=x", &u, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_redis_url_parse("unix:/tmp/x", &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.path, "/tmp/x");

	CHECK_EQ(ctl_redis_url_parse(NULL, &u, err, sizeof(err)), 0);
	CHECK_STREQ(u.host, "127.0.0.1");

	CHECK_EQ(ctl_redis_url_parse("http://x", &u, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "expected redis://") != NULL);
	CHECK_EQ(ctl_redis_url_parse("redis://h:99999", &u, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "bad port") != NULL);
	CHECK_EQ(ctl_redis_url_parse("redis://h:0", &u, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_redis_url_parse("redis://h/x", &u, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_redis_url_parse("redis://:6379", &u, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_redis_url_parse("redis://u:%zz@h", &u, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_redis_url_parse("redis://u:%4@h", &u, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_redis_url_parse("redis://[::1", &u, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_redis_url_parse("unix:rel/path", &u, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_redis_url_parse("unix:///x?db=a", &u, err, sizeof(err)), -EINVAL);
}

/* An fd reading the given bytes (memfd, rewound). */
static int
mem_fd(const char *s, size_t n)
{
	int fd = memfd_create("ctl-input", 0);

	if (fd < 0 || write(fd, s, n) != (ssize_t)n)
		abort();
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static const char *
field(const struct ctl_input_rec *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nf; i++)
		if (strcmp(r->f[i].name, name) == 0)
			return r->f[i].value;
	return NULL;
}

static void
test_csv(void)
{
	static const char csv[] =
		"\xef\xbb\xbf" "Email , first,note\r\n"     /* 1: BOM, CRLF, spaces, case */
		"a@x.test,Ann,\"hello, world\"\r\n"          /* 2 */
		"\r\n"                                       /* 3: blank */
		"b@x.test,\"Bo\"\"b\",\"two\nlines\"\n"      /* 4-5 */
		"c@x.test,Cy\n"                              /* 6: field count */
		"d@x.test,\"Di\"x,n\n"                       /* 7: junk after quote */
		"e@x.test,,\n"                               /* 8: empty cells absent */
		"f@x.test,Fi,last";                          /* 9: no final newline */
	struct ctl_input_rec r;
	struct ctl_input *in;
	char err[256];
	int fd = mem_fd(csv, sizeof(csv) - 1);

	in = ctl_input_open(fd, CTL_INPUT_AUTO, err, sizeof(err));
	CHECK(in != NULL);
	if (in == NULL)
		return;
	CHECK_EQ(ctl_input_format(in), CTL_INPUT_CSV);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 1);
	CHECK_EQ(r.line, 2);
	CHECK(r.email_len == 8 && memcmp(r.email, "a@x.test", 8) == 0);
	CHECK_STREQ(field(&r, "first"), "Ann");
	CHECK_STREQ(field(&r, "note"), "hello, world");
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 1);
	CHECK_EQ(r.line, 4);
	CHECK_STREQ(field(&r, "first"), "Bo\"b");
	CHECK_STREQ(field(&r, "note"), "two\nlines");
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), -EINVAL);
	CHECK_EQ(r.line, 6);
	CHECK(strstr(err, "line 6: 2 fields, the header has 3") != NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 7: text after a closing quote") != NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 1);
	CHECK_EQ(r.line, 8);
	CHECK_EQ(r.nf, 0);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 1);
	CHECK_EQ(r.line, 9);
	CHECK_STREQ(field(&r, "note"), "last");
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 0);
	ctl_input_close(in);
	close(fd);

	/* header errors */
	fd = mem_fd("name,first\n", 11);
	CHECK(ctl_input_open(fd, CTL_INPUT_CSV, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "line 1: CSV header has no 'email' column") != NULL);
	close(fd);
	fd = mem_fd("email,a b\n", 10);
	CHECK(ctl_input_open(fd, CTL_INPUT_CSV, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "column 2 'a b'") != NULL);
	close(fd);
	fd = mem_fd("email,x,x\n", 10);
	CHECK(ctl_input_open(fd, CTL_INPUT_CSV, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "names column 'x' twice") != NULL);
	close(fd);
	fd = mem_fd("", 0);
	CHECK(ctl_input_open(fd, CTL_INPUT_CSV, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "empty input") != NULL);
	close(fd);

	/* an unterminated quote is reported, not swallowed silently */
	fd = mem_fd("email\n\"a@x.test\nb@x.test\n", 25);
	in = ctl_input_open(fd, CTL_INPUT_CSV, err, sizeof(err));
	CHECK(in != NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 2: unterminated quoted field") != NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 0);
	ctl_input_close(in);
	close(fd);
}

static void
test_csv_big(void)
{
	/* many records crossing the 64 KiB read buffer, one oversized record
	 * in the middle: exact line numbers before and after */
	size_t cap = 8u << 20, n = 0;
	char *buf = malloc(cap);
	struct ctl_input_rec r;
	struct ctl_input *in;
	char err[256];
	unsigned long i, good = 0, bad = 0, last = 0;
	int fd, rc;

	n += (size_t)sprintf(buf + n, "email,v\n");
	for (i = 2; i <= 20001; i++) {
		if (i == 10000) {
			n += (size_t)sprintf(buf + n, "big@x.test,");
			memset(buf + n, 'x', CTL_INPUT_REC_MAX + 10);
			n += CTL_INPUT_REC_MAX + 10;
			buf[n++] = '\n';
			continue;
		}
		n += (size_t)sprintf(buf + n, "u%lu@x.test,%lu\n", i, i);
	}
	fd = mem_fd(buf, n);
	in = ctl_input_open(fd, CTL_INPUT_CSV, err, sizeof(err));
	CHECK(in != NULL);
	while ((rc = ctl_input_next(in, &r, err, sizeof(err))) != 0) {
		if (rc == 1) {
			char want[32];

			snprintf(want, sizeof(want), "%lu", r.line);
			if (strcmp(field(&r, "v"), want) != 0)
				break;
			good++;
			last = r.line;
		} else {
			CHECK_EQ(r.line, 10000);
			CHECK(strstr(err, "longer than") != NULL);
			bad++;
		}
	}
	CHECK_EQ(good, 19999);
	CHECK_EQ(bad, 1);
	CHECK_EQ(last, 20001);
	ctl_input_close(in);
	close(fd);
	free(buf);
}

static void
test_jsonl(void)
{
	static const char js[] =
		"{\"email\":\"a@x.test\",\"n\":5,\"ok\":true,\"r\":1.5,\"z\":null}\n"   /* 1 */
		"\n"                                                             /* 2 */
		"{\"email\":\"b@x.test\",\"o\":{}}\n"                            /* 3 */
		"[1,2]\n"                                                        /* 4 */
		"{\"email\":\"c@x.test\",\"email\":\"d@x.test\"}\n"              /* 5 */
		"{\"email\":7}\n"                                                /* 6 */
		"{\"email\":\"e@x.test\",\"bad name\":\"v\"}\n"                  /* 7 */
		"{\"email\":\"f@x.test\"}\r\n";                                  /* 8 */
	struct ctl_input_rec r;
	struct ctl_input *in;
	char err[256];
	int fd = mem_fd(js, sizeof(js) - 1);

	in = ctl_input_open(fd, CTL_INPUT_AUTO, err, sizeof(err));
	CHECK(in != NULL);
	if (in == NULL)
		return;
	CHECK_EQ(ctl_input_format(in), CTL_INPUT_JSONL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 1);
	CHECK_EQ(r.line, 1);
	CHECK_STREQ(field(&r, "n"), "5");
	CHECK_STREQ(field(&r, "ok"), "true");
	CHECK_STREQ(field(&r, "r"), "1.5");
	CHECK(field(&r, "z") == NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 3: field 'o' must be a string") != NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 4: expected a JSON object") != NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 5: invalid JSON") != NULL);   /* duplicate key */
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 6: 'email' must be a string") != NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 7: field name 'bad name'") != NULL);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 1);
	CHECK_EQ(r.line, 8);
	CHECK(r.email_len == 8 && memcmp(r.email, "f@x.test", 8) == 0);
	CHECK_EQ(ctl_input_next(in, &r, err, sizeof(err)), 0);
	ctl_input_close(in);
	close(fd);
}

static void
test_check(void)
{
	struct msg_template_spec spec = {
		.campaign_id = "t1", .from_addr = "news@example.com",
		.subject = "Hi {{first}}", .text = "Code {{code|none}}\n",
	};
	struct ctl_input_field f[2];
	struct ctl_input_rec r;
	struct msg_template *t;
	char err[256], addr[320], *entry = NULL;

	t = msg_template_compile(&spec, err, sizeof(err));
	CHECK(t != NULL);
	if (t == NULL)
		return;
	memset(&r, 0, sizeof(r));
	r.line = 12;
	r.email = "  Ann@Example.COM ";
	r.email_len = strlen(r.email);
	f[0].name = "first";
	f[0].value = "Ann";
	f[0].len = 3;
	r.f = f;
	r.nf = 1;
	CHECK_EQ(ctl_submit_check(t, &r, addr, sizeof(addr), &entry, err, sizeof(err)), 0);
	CHECK_STREQ(addr, "Ann@example.com");
	CHECK_STREQ(entry, "{\"to\":\"Ann@example.com\",\"f\":{\"first\":\"Ann\"}}");
	free(entry);
	entry = NULL;

	r.nf = 0;   /* first missing, no default */
	CHECK_EQ(ctl_submit_check(t, &r, addr, sizeof(addr), &entry, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 12: missing field 'first'") != NULL);

	r.nf = 2;
	f[1].name = "code";
	f[1].value = "a\rb";
	f[1].len = 3;
	CHECK_EQ(ctl_submit_check(t, &r, addr, sizeof(addr), NULL, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 12: CR/LF in field 'code'") != NULL);
	f[1].value = "\xff";
	f[1].len = 1;
	CHECK_EQ(ctl_submit_check(t, &r, addr, sizeof(addr), &entry, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "invalid UTF-8") != NULL);

	r.nf = 1;
	r.email = "a@b@c";
	r.email_len = 5;
	CHECK_EQ(ctl_submit_check(t, &r, addr, sizeof(addr), NULL, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 12: bad address syntax 'a@b@c'") != NULL);
	r.email = "a@b.test\n";
	r.email_len = 9;
	CHECK_EQ(ctl_submit_check(t, &r, addr, sizeof(addr), NULL, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "CR/LF in the email address") != NULL);
	r.email = "";
	r.email_len = 0;
	CHECK_EQ(ctl_submit_check(t, &r, addr, sizeof(addr), NULL, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "missing email address") != NULL);
	msg_template_free(t);
}

int
main(void)
{
	test_url();
	test_csv();
	test_csv_big();
	test_jsonl();
	test_check();
	return mp_test_result("ctl_input");
}
