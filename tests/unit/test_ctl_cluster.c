/*
 * ctl_cluster's rules without a server: hash slots (the specification's
 * CRC16 vector, {tag} edge cases), where each command's key is, formatted
 * commands split back into arguments (and malformed ones refused),
 * CLUSTER SLOTS replies (primaries, replicas, an empty host, bad shapes),
 * MOVED/ASK parsing (IPv6 too) and namespaces with and without a tag.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "ctl_cluster.h"
#include "mp_test.h"

static uint16_t
slot(const char *k)
{
	return ctl_cluster_slot(k, strlen(k));
}

static void
test_slots(void)
{
	/* the cluster specification's CRC16 check value */
	CHECK_EQ(slot("123456789"), 0x31C3 & 16383);
	/* as redis-server's CLUSTER KEYSLOT says */
	CHECK_EQ(slot("foo"), 12182);
	CHECK_EQ(slot("bar"), 5061);
	CHECK_EQ(slot(""), 0);
	CHECK_EQ(slot("{user1000}.following"), slot("{user1000}.followers"));
	CHECK_EQ(slot("{user1000}.following"), slot("user1000"));
	/* empty tag: the whole key; the first '{' and the next '}' count */
	CHECK(slot("foo{}{bar}") != slot("bar"));
	CHECK_EQ(slot("foo{{bar}}zap"), slot("{bar"));
	CHECK_EQ(slot("foo{bar}{zap}"), slot("bar"));
	CHECK_EQ(slot("{mp}:campaign:c1"), slot("{mp}:jobs"));
	CHECK_EQ(slot("{mp}:campaign:c1"), slot("mp"));
	/* an unclosed '{' hashes the whole key */
	CHECK(slot("{abc") != slot("abc"));
	/* length, not NUL: a key with a NUL inside */
	CHECK(ctl_cluster_slot("a\0b", 3) != ctl_cluster_slot("a", 1));
}

static int
key_of(int argc, const char **argv)
{
	size_t len[32];
	int i;

	for (i = 0; i < argc; i++)
		len[i] = strlen(argv[i]);
	return ctl_cluster_key_arg(argc, argv, len);
}

static void
test_key_arg(void)
{
	const char *get[] = { "GET", "k" };
	const char *hset[] = { "hset", "h", "f", "v" };
	const char *ping[] = { "PING" };
	const char *load[] = { "SCRIPT", "LOAD", "return 1" };
	const char *ev[] = { "EVALSHA", "abc", "2", "k1", "k2", "a" };
	const char *ev0[] = { "EVALSHA", "abc", "0", "a" };
	const char *evbad[] = { "EVAL", "s", "x", "k" };
	const char *xrg[] = { "XREADGROUP", "GROUP", "g", "c", "COUNT", "10", "BLOCK", "100",
		"STREAMS", "s1", "s2", ">", ">" };
	const char *xr[] = { "XREAD", "streams", "s", "0" };
	const char *xg[] = { "XGROUP", "CREATE", "s", "g", "$", "MKSTREAM" };
	const char *xi[] = { "XINFO", "STREAM", "s" };
	const char *mem[] = { "MEMORY", "USAGE", "k" };
	const char *cl[] = { "CLUSTER", "SLOTS" };
	const char *xrg_nostreams[] = { "XREADGROUP", "GROUP", "g", "c" };

	CHECK_EQ(key_of(2, get), 1);
	CHECK_EQ(key_of(4, hset), 1);
	CHECK_EQ(key_of(1, ping), CTL_CLUSTER_KEYLESS);
	CHECK_EQ(key_of(3, load), CTL_CLUSTER_ALL);
	CHECK_EQ(key_of(6, ev), 3);
	CHECK_EQ(key_of(4, ev0), CTL_CLUSTER_KEYLESS);
	CHECK_EQ(key_of(4, evbad), CTL_CLUSTER_KEYLESS);
	CHECK_EQ(key_of(13, xrg), 9);
	CHECK_EQ(key_of(4, xr), 2);
	CHECK_EQ(key_of(6, xg), 2);
	CHECK_EQ(key_of(3, xi), 2);
	CHECK_EQ(key_of(3, mem), 2);
	CHECK_EQ(key_of(2, cl), CTL_CLUSTER_KEYLESS);
	CHECK_EQ(key_of(4, xrg_nostreams), CTL_CLUSTER_KEYLESS);
	CHECK_EQ(key_of(0, get), CTL_CLUSTER_KEYLESS);
}

static void
test_cmd_argv(void)
{
	const char *in[] = { "SET", "key with space", "", "v\r\nx" };
	size_t inlen[] = { 3, 14, 0, 4 };
	const char *av[8];
	size_t al[8];
	char *cmd = NULL;
	int len, n, i;

	len = redisFormatCommandArgv(&cmd, 4, in, inlen);
	CHECK(len > 0);
	n = ctl_cluster_cmd_argv(cmd, (size_t)len, 8, av, al);
	CHECK_EQ(n, 4);
	for (i = 0; i < 4 && n == 4; i++) {
		CHECK_EQ(al[i], inlen[i]);
		CHECK(memcmp(av[i], in[i], inlen[i]) == 0);
	}
	/* only the first 2 arguments are read: argc is still 4 */
	n = ctl_cluster_cmd_argv(cmd, (size_t)len, 2, av, al);
	CHECK_EQ(n, 4);
	CHECK_EQ(al[1], 14);
	/* truncated, trailing junk, not an array, a bad length */
	CHECK_EQ(ctl_cluster_cmd_argv(cmd, (size_t)len - 1, 8, av, al), -EPROTO);
	CHECK_EQ(ctl_cluster_cmd_argv("*1\r\n$3\r\nGETX", 13, 8, av, al), -EPROTO);
	CHECK_EQ(ctl_cluster_cmd_argv("$3\r\nGET\r\n", 9, 8, av, al), -EPROTO);
	CHECK_EQ(ctl_cluster_cmd_argv("*1\r\n$9\r\nGET\r\n", 13, 8, av, al), -EPROTO);
	CHECK_EQ(ctl_cluster_cmd_argv("*1\r\n$-1\r\n", 9, 8, av, al), -EPROTO);
	CHECK_EQ(ctl_cluster_cmd_argv("", 0, 8, av, al), -EPROTO);
	redisFreeCommand(cmd);

	len = redisFormatCommand(&cmd, "HGETALL %s", "{mp}:campaign:x");
	n = ctl_cluster_cmd_argv(cmd, (size_t)len, 8, av, al);
	CHECK_EQ(n, 2);
	CHECK_EQ(ctl_cluster_key_arg(n, av, al), 1);
	CHECK_EQ(ctl_cluster_slot(av[1], al[1]), slot("mp"));
	redisFreeCommand(cmd);
}

/* A hand-built CLUSTER SLOTS reply. */
static redisReply *
r_int(long long v)
{
	redisReply *r = calloc(1, sizeof(*r));

	r->type = REDIS_REPLY_INTEGER;
	r->integer = v;
	return r;
}

static redisReply *
r_str(const char *s)
{
	redisReply *r = calloc(1, sizeof(*r));

	r->type = REDIS_REPLY_STRING;
	r->str = strdup(s);
	r->len = strlen(s);
	return r;
}

static redisReply *
r_arr(size_t n, ...)
{
	redisReply *r = calloc(1, sizeof(*r));
	va_list ap;
	size_t i;

	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	r->element = calloc(n ? n : 1, sizeof(*r->element));
	va_start(ap, n);
	for (i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

static redisReply *
node(const char *host, int port)
{
	return r_arr(3, r_str(host), r_int(port), r_str("0123456789abcdef"));
}

static void
test_map(void)
{
	struct ctl_cluster_map *m = malloc(sizeof(*m));
	redisReply *r;
	char err[256];

	r = r_arr(3,
		r_arr(4, r_int(0), r_int(5460), node("10.0.0.1", 7000), node("10.0.0.4", 7003)),
		r_arr(4, r_int(5461), r_int(10922), node("", 7001), node("10.0.0.5", 7004)),
		r_arr(4, r_int(10923), r_int(16383), node("10.0.0.3", 7002), node("10.0.0.6", 7005)));
	CHECK_EQ(ctl_cluster_map_parse(r, "10.0.0.2", m, err, sizeof(err)), 0);
	CHECK_EQ(m->nnodes, 6);
	CHECK_EQ(m->slots_served, 16384);
	CHECK_STREQ(m->nodes[m->owner[0]].host, "10.0.0.1");
	CHECK_EQ(m->nodes[m->owner[5460]].port, 7000);
	/* the empty host is the node that was asked */
	CHECK_STREQ(m->nodes[m->owner[5461]].host, "10.0.0.2");
	CHECK_EQ(m->nodes[m->owner[16383]].port, 7002);
	CHECK_EQ(m->primary[m->owner[0]], 1);
	CHECK_EQ(m->primary[ctl_cluster_node_find(m, "10.0.0.4", 7003, 0)], 0);
	CHECK_EQ(ctl_cluster_node_find(m, "10.0.0.9", 7000, 0), -1);
	CHECK_EQ(ctl_cluster_node_find(m, "10.0.0.9", 7000, 1), 6);
	freeReplyObject(r);

	/* a partly served cluster: slots without an owner stay NO_NODE */
	r = r_arr(1, r_arr(3, r_int(100), r_int(199), node("h", 1)));
	CHECK_EQ(ctl_cluster_map_parse(r, "h", m, err, sizeof(err)), 0);
	CHECK_EQ(m->slots_served, 100);
	CHECK_EQ(m->owner[99], CTL_CLUSTER_NO_NODE);
	CHECK_EQ(m->owner[150], 0);
	freeReplyObject(r);

	/* bad shapes */
	r = r_arr(1, r_arr(3, r_int(10), r_int(5), node("h", 1)));
	CHECK_EQ(ctl_cluster_map_parse(r, "h", m, err, sizeof(err)), -EPROTO);
	CHECK(strstr(err, "bad range") != NULL);
	freeReplyObject(r);
	r = r_arr(1, r_arr(3, r_int(0), r_int(16384), node("h", 1)));
	CHECK_EQ(ctl_cluster_map_parse(r, "h", m, err, sizeof(err)), -EPROTO);
	freeReplyObject(r);
	r = r_arr(1, r_arr(2, r_int(0), r_int(1)));
	CHECK_EQ(ctl_cluster_map_parse(r, "h", m, err, sizeof(err)), -EPROTO);
	freeReplyObject(r);
	r = r_arr(1, r_arr(3, r_int(0), r_int(1), r_arr(2, r_str("h"), r_int(70000))));
	CHECK_EQ(ctl_cluster_map_parse(r, "h", m, err, sizeof(err)), -EPROTO);
	freeReplyObject(r);
	r = r_str("ERR This instance has cluster support disabled");
	r->type = REDIS_REPLY_ERROR;
	CHECK_EQ(ctl_cluster_map_parse(r, "h", m, err, sizeof(err)), -EPROTO);
	CHECK(strstr(err, "cluster support disabled") != NULL);
	freeReplyObject(r);
	free(m);
}

static void
test_redirect(void)
{
	char host[64];
	unsigned s = 0;
	int port = 0;

	CHECK_EQ(ctl_cluster_redirect("MOVED 3999 127.0.0.1:6381", &s, host, sizeof(host), &port), 1);
	CHECK_EQ(s, 3999);
	CHECK_STREQ(host, "127.0.0.1");
	CHECK_EQ(port, 6381);
	CHECK_EQ(ctl_cluster_redirect("ASK 16383 ::1:7000", &s, host, sizeof(host), &port), 2);
	CHECK_STREQ(host, "::1");
	CHECK_EQ(port, 7000);
	CHECK_EQ(s, 16383);
	/* an unknown endpoint: empty host, the caller uses the node it asked */
	CHECK_EQ(ctl_cluster_redirect("MOVED 1 :7001", &s, host, sizeof(host), &port), 1);
	CHECK_STREQ(host, "");
	CHECK_EQ(ctl_cluster_redirect("MOVED 16384 h:1", &s, host, sizeof(host), &port), 0);
	CHECK_EQ(ctl_cluster_redirect("MOVED x h:1", &s, host, sizeof(host), &port), 0);
	CHECK_EQ(ctl_cluster_redirect("MOVED 1 h", &s, host, sizeof(host), &port), 0);
	CHECK_EQ(ctl_cluster_redirect("MOVED 1 h:0", &s, host, sizeof(host), &port), 0);
	CHECK_EQ(ctl_cluster_redirect("MOVED 1 h:99x", &s, host, sizeof(host), &port), 0);
	CHECK_EQ(ctl_cluster_redirect("ERR wrong", &s, host, sizeof(host), &port), 0);
	CHECK_EQ(ctl_cluster_redirect("CLUSTERDOWN The cluster is down", &s, host,
		sizeof(host), &port), 0);
	CHECK_EQ(ctl_cluster_redirect(NULL, &s, host, sizeof(host), &port), 0);
	CHECK_EQ(ctl_cluster_redirect("MOVED 1 averyveryverylonghostname:1", &s, host, 8, &port), 0);
}

static void
test_ns(void)
{
	CHECK_EQ(ctl_cluster_ns_tagged("{mp}:"), 1);
	CHECK_EQ(ctl_cluster_ns_tagged("app:{mp}:"), 1);
	CHECK_EQ(ctl_cluster_ns_tagged("mp:"), 0);
	CHECK_EQ(ctl_cluster_ns_tagged("{}mp:"), 0);
	CHECK_EQ(ctl_cluster_ns_tagged("{mp:"), 0);
}

int
main(void)
{
	test_slots();
	test_key_arg();
	test_cmd_argv();
	test_map();
	test_redirect();
	test_ns();
	return mp_test_result("ctl_cluster");
}
