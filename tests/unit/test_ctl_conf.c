/*
 * The daemon configuration reader: syntax errors named with file and line,
 * typed getters with ranges and units, command-line overrides, data
 * sections walked in order, and unknown keys reported after the modules
 * have read theirs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_conf.h"
#include "mp_test.h"

static const char good[] =
	"# mailpump test config\n"
	"[redis]\n"
	"url = redis://u:p#w@127.0.0.1:6390/2\n"
	"namespace = \" mp: \"\n"
	"\n"
	"[smtp]\n"
	"   connect_timeout = 30s\r\n"
	"t_data_term=10m\n"
	"max_rcpt_per_txn = 100\n"
	"chunking = yes\n"
	"[tls]\n"
	"policy = verify\n"
	"; other comment style\n"
	"[routes]\n"
	"b.test = 198.19.0.3:25\n"
	"a.test = 198.19.0.2:2525\n"
	"* = relay.test:465,tls=implicit\n";

static int
collect(void *arg, const struct ctl_conf_item *it)
{
	char *buf = arg;

	strcat(buf, it->key);
	strcat(buf, "=");
	strcat(buf, it->value);
	strcat(buf, ";");
	return 0;
}

static int
stop_at_a(void *arg, const struct ctl_conf_item *it)
{
	(void)arg;
	return strcmp(it->key, "a.test") == 0 ? 7 : 0;
}

static void
test_good(void)
{
	char err[512] = "", buf[512] = "";
	struct ctl_conf *cf = ctl_conf_parse(good, "t.conf", err, sizeof(err));
	uint64_t v;
	int b, e;
	static const char *const pols[] = { "none", "opportunistic", "required", "verify", NULL };

	CHECK(cf != NULL);
	if (cf == NULL) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	/* '#' inside a value is data, quotes keep blanks */
	CHECK_STREQ(ctl_conf_get(cf, "redis", "url"), "redis://u:p#w@127.0.0.1:6390/2");
	CHECK_STREQ(ctl_conf_get(cf, "redis", "namespace"), " mp: ");
	CHECK(ctl_conf_get(cf, "redis", "password") == NULL);
	CHECK_STREQ(ctl_conf_get_str(cf, "redis", "password", "dflt"), "dflt");
	CHECK_EQ(ctl_conf_get_ms(cf, "smtp", "connect_timeout", 1, 3600000, 5, &v, err, sizeof(err)), 0);
	CHECK_EQ(v, 30000);
	CHECK_EQ(ctl_conf_get_ms(cf, "smtp", "t_data_term", 1, 3600000, 5, &v, err, sizeof(err)), 0);
	CHECK_EQ(v, 600000);
	CHECK_EQ(ctl_conf_get_ms(cf, "smtp", "t_absent", 1, 10, 5, &v, err, sizeof(err)), 0);
	CHECK_EQ(v, 5);
	/* range error names file, line, section and key */
	CHECK_EQ(ctl_conf_get_uint(cf, "smtp", "max_rcpt_per_txn", 1, 50, 1, &v, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "t.conf:9: [smtp] max_rcpt_per_txn:") == err);
	CHECK(strstr(err, "out of range [1, 50]") != NULL);
	CHECK_EQ(ctl_conf_get_bool(cf, "smtp", "chunking", 0, &b, err, sizeof(err)), 0);
	CHECK_EQ(b, 1);
	CHECK_EQ(ctl_conf_get_enum(cf, "tls", "policy", pols, 1, &e, err, sizeof(err)), 0);
	CHECK_EQ(e, 3);
	/* data section in file order */
	CHECK_EQ(ctl_conf_each(cf, "routes", collect, buf), 0);
	CHECK_STREQ(buf, "b.test=198.19.0.3:25;a.test=198.19.0.2:2525;*=relay.test:465,tls=implicit;");
	CHECK_EQ(ctl_conf_each(cf, "routes", stop_at_a, NULL), 7);
	CHECK_EQ(ctl_conf_check_unused(cf, err, sizeof(err)), 0);

	/* an override replaces the file's value and is no longer "from line N" */
	CHECK_EQ(ctl_conf_set_arg(cf, "tls.policy=sometimes", err, sizeof(err)), 0);
	CHECK_EQ(ctl_conf_get_enum(cf, "tls", "policy", pols, 1, &e, err, sizeof(err)), -EINVAL);
	CHECK_STREQ(err, "[tls] policy: \"sometimes\" is not one of: none, opportunistic, required, verify");
	CHECK_EQ(ctl_conf_set_arg(cf, "nodot=1", err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_conf_set_arg(cf, ".key=1", err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_conf_set_arg(cf, "sec.=1", err, sizeof(err)), -EINVAL);
	/* an override of an unknown key is caught like a file's */
	CHECK_EQ(ctl_conf_set_arg(cf, "tls.min_versoin=1.2", err, sizeof(err)), 0);
	CHECK_EQ(ctl_conf_check_unused(cf, err, sizeof(err)), -ENOENT);
	CHECK_STREQ(err, "[tls] min_versoin: unknown key");
	ctl_conf_free(cf);
}

static void
test_values(void)
{
	char err[512];
	struct ctl_conf *cf = ctl_conf_parse(
		"[x]\nd1 = 250ms\nd2 = 2h\nd3 = 7d\nbad = 5 s\nneg = -1\nhuge = 99999999999999999999\n"
		"unit = 5w\nb = maybe\nn = 12k\n", "v.conf", err, sizeof(err));
	uint64_t v;
	int b;

	CHECK(cf != NULL);
	if (cf == NULL)
		return;
	CHECK_EQ(ctl_conf_get_ms(cf, "x", "d1", 0, UINT64_MAX, 0, &v, err, sizeof(err)), 0);
	CHECK_EQ(v, 250);
	CHECK_EQ(ctl_conf_get_ms(cf, "x", "d2", 0, UINT64_MAX, 0, &v, err, sizeof(err)), 0);
	CHECK_EQ(v, 7200000);
	CHECK_EQ(ctl_conf_get_ms(cf, "x", "d3", 0, UINT64_MAX, 0, &v, err, sizeof(err)), 0);
	CHECK_EQ(v, 604800000);
	CHECK_EQ(ctl_conf_get_ms(cf, "x", "bad", 0, UINT64_MAX, 0, &v, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "v.conf:5: [x] bad: \"5 s\" is not a duration") == err);
	CHECK_EQ(ctl_conf_get_uint(cf, "x", "neg", 0, 10, 0, &v, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_conf_get_uint(cf, "x", "huge", 0, UINT64_MAX, 0, &v, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_conf_get_ms(cf, "x", "unit", 0, UINT64_MAX, 0, &v, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ctl_conf_get_bool(cf, "x", "b", 0, &b, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "v.conf:9: [x] b: \"maybe\" is not yes or no") == err);
	/* units only for durations */
	CHECK_EQ(ctl_conf_get_uint(cf, "x", "n", 0, UINT64_MAX, 0, &v, err, sizeof(err)), -EINVAL);
	ctl_conf_free(cf);
}

static void
expect_syntax(const char *text, const char *msg)
{
	char err[512] = "";
	struct ctl_conf *cf = ctl_conf_parse(text, "s.conf", err, sizeof(err));

	CHECK(cf == NULL);
	if (strcmp(err, msg) != 0)
		fprintf(stderr, "got \"%s\", want \"%s\"\n", err, msg);
	CHECK_STREQ(err, msg);
	ctl_conf_free(cf);
}

static void
test_syntax(void)
{
	static char longline[5000];

	expect_syntax("key = 1\n", "s.conf:1: key outside any [section]");
	expect_syntax("[a]\n\nnovalue\n", "s.conf:3: expected key = value");
	expect_syntax("[a\n", "s.conf:1: bad section header");
	expect_syntax("[a] x\n", "s.conf:1: bad section header");
	expect_syntax("[a b]\n", "s.conf:1: bad section name \"a b\"");
	expect_syntax("[a]\n = 3\n", "s.conf:2: [a] bad key \"\"");
	expect_syntax("[a]\nk = 1\n[b]\n[a]\nk = 2\n", "s.conf:5: [a] k: set twice");
	memset(longline, 'x', sizeof(longline) - 1);
	memcpy(longline, "[a]\nk=", 6);
	expect_syntax(longline, "s.conf:2: line longer than 4096 bytes");
}

static void
test_load(void)
{
	char path[] = "/tmp/mp-conf-XXXXXX", err[512];
	int fd = mkstemp(path);
	struct ctl_conf *cf;

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, good, sizeof(good) - 1) == (ssize_t)(sizeof(good) - 1));
	close(fd);
	cf = ctl_conf_load(path, err, sizeof(err));
	CHECK(cf != NULL);
	if (cf != NULL) {
		/* keys nobody read are reported with their line */
		CHECK_STREQ(ctl_conf_get(cf, "tls", "policy"), "verify");
		CHECK_EQ(ctl_conf_check_unused(cf, err, sizeof(err)), -ENOENT);
		CHECK(strstr(err, ":3: [redis] url: unknown key") != NULL);
	}
	ctl_conf_free(cf);
	unlink(path);
	CHECK(ctl_conf_load(path, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "No such file or directory") != NULL);
}

int
main(void)
{
	test_good();
	test_values();
	test_syntax();
	test_load();
	return mp_test_result("test_ctl_conf");
}
