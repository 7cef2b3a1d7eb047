/*
 * Redis Cluster's rules, without connections (see ctl_cluster.h): hash
 * slots, where a command's key is, CLUSTER SLOTS and MOVED/ASK replies.
 * The slot function follows the cluster specification: CRC16-CCITT
 * (XMODEM: polynomial 0x1021, initial 0) of the key, or of the part
 * between the first '{' and the next '}' when that part is not empty,
 * modulo 16384.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl_cluster.h"

static uint16_t
crc16(const unsigned char *p, size_t n)
{
	uint16_t crc = 0;
	size_t i;
	int b;

	for (i = 0; i < n; i++) {
		crc ^= (uint16_t)(p[i] << 8);
		for (b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

uint16_t
ctl_cluster_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;

		close = memchr(open + 1, '}', rest);
		if (close != NULL && close > open + 1)
			key = open + 1, len = (size_t)(close - open - 1);
	}
	return crc16((const unsigned char *)key, len) & (CTL_CLUSTER_SLOTS - 1);
}

int
ctl_cluster_ns_tagged(const char *ns)
{
	const char *open = strchr(ns, '{'), *close;

	if (open == NULL)
		return 0;
	close = strchr(open + 1, '}');
	return close != NULL && close > open + 1;
}

static int
arg_is(const char *a, size_t n, const char *word)
{
	return n == strlen(word) && strncasecmp(a, word, n) == 0;
}

static int
arg_uint(const char *a, size_t n, long *v)
{
	char buf[16];
	char *end;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, a, n);
	buf[n] = '\0';
	*v = strtol(buf, &end, 10);
	return *end == '\0' && *v >= 0 ? 0 : -1;
}

int
ctl_cluster_key_arg(int argc, const char **argv, const size_t *argvlen)
{
	const char *c;
	size_t n;
	long nk;
	int i;

	if (argc < 1)
		return CTL_CLUSTER_KEYLESS;
	c = argv[0];
	n = argvlen[0];
	if (arg_is(c, n, "SCRIPT") || arg_is(c, n, "FUNCTION"))
		return CTL_CLUSTER_ALL;
	if (arg_is(c, n, "PING") || arg_is(c, n, "INFO") || arg_is(c, n, "CLUSTER") ||
	    arg_is(c, n, "CLIENT") || arg_is(c, n, "CONFIG") || arg_is(c, n, "TIME") ||
	    arg_is(c, n, "COMMAND") || arg_is(c, n, "DBSIZE") || arg_is(c, n, "ASKING") ||
	    arg_is(c, n, "AUTH") || arg_is(c, n, "SELECT") || arg_is(c, n, "HELLO") ||
	    arg_is(c, n, "ECHO") || arg_is(c, n, "MULTI") || arg_is(c, n, "EXEC") ||
	    arg_is(c, n, "SLOWLOG") || arg_is(c, n, "LATENCY") || arg_is(c, n, "ROLE"))
		return CTL_CLUSTER_KEYLESS;
	if (arg_is(c, n, "EVAL") || arg_is(c, n, "EVALSHA") ||
	    arg_is(c, n, "EVAL_RO") || arg_is(c, n, "EVALSHA_RO") ||
	    arg_is(c, n, "FCALL") || arg_is(c, n, "FCALL_RO")) {
		if (argc < 4 || arg_uint(argv[2], argvlen[2], &nk) < 0 || nk == 0)
			return CTL_CLUSTER_KEYLESS;
		return 3;
	}
	if (arg_is(c, n, "XREADGROUP") || arg_is(c, n, "XREAD")) {
		for (i = 1; i + 1 < argc; i++)
			if (arg_is(argv[i], argvlen[i], "STREAMS"))
				return i + 1;
		return CTL_CLUSTER_KEYLESS;
	}
	if (arg_is(c, n, "XGROUP") || arg_is(c, n, "XINFO") ||
	    arg_is(c, n, "OBJECT") || arg_is(c, n, "MEMORY"))
		return argc > 2 ? 2 : CTL_CLUSTER_KEYLESS;
	return argc > 1 ? 1 : CTL_CLUSTER_KEYLESS;
}

/* Read "<digits>\r\n" at *p (below end). @return the number or -1. */
static long
resp_num(const char **p, const char *end)
{
	long v = 0;
	const char *s = *p;

	if (s >= end || *s < '0' || *s > '9')
		return -1;
	while (s < end && *s >= '0' && *s <= '9') {
		v = v * 10 + (*s - '0');
		if (v > (1L << 40))
			return -1;
		s++;
	}
	if (end - s < 2 || s[0] != '\r' || s[1] != '\n')
		return -1;
	*p = s + 2;
	return v;
}

int
ctl_cluster_cmd_argv(const char *cmd, size_t len, int max, const char **argv,
	size_t *argvlen)
{
	const char *p = cmd, *end = cmd + len;
	long argc, i, n;

	if (len < 1 || *p++ != '*')
		return -EPROTO;
	argc = resp_num(&p, end);
	if (argc < 0 || argc > (1L << 30))
		return -EPROTO;
	for (i = 0; i < argc && i < max; i++) {
		if (p >= end || *p++ != '$')
			return -EPROTO;
		n = resp_num(&p, end);
		if (n < 0 || end - p < n + 2 || p[n] != '\r' || p[n + 1] != '\n')
			return -EPROTO;
		argv[i] = p;
		argvlen[i] = (size_t)n;
		p += n + 2;
	}
	return i < argc || p == end ? (int)argc : -EPROTO;
}

int
ctl_cluster_node_find(struct ctl_cluster_map *m, const char *host, int port,
	int add)
{
	int i;

	for (i = 0; i < m->nnodes; i++)
		if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0)
			return i;
	if (!add || m->nnodes == CTL_CLUSTER_NODES_MAX ||
	    strlen(host) >= sizeof(m->nodes[0].host))
		return -1;
	snprintf(m->nodes[m->nnodes].host, sizeof(m->nodes[0].host), "%s", host);
	m->nodes[m->nnodes].port = port;
	m->primary[m->nnodes] = 0;
	return m->nnodes++;
}

#define MAP_ERR(...) do { \
	if (errlen) snprintf(err, errlen, __VA_ARGS__); \
	return -EPROTO; \
} while (0)

/* The node of a CLUSTER SLOTS entry's [host, port, id, ...] element. */
static int
map_node(struct ctl_cluster_map *m, const redisReply *e, const char *asked,
	char *err, size_t errlen)
{
	const char *host;
	int i;

	if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING ||
	    e->element[1]->type != REDIS_REPLY_INTEGER ||
	    e->element[1]->integer <= 0 || e->element[1]->integer > 65535)
		MAP_ERR("CLUSTER SLOTS: a node is not [host, port, ...]");
	host = e->element[0]->str;
	if (host[0] == '\0' || strcmp(host, "?") == 0)
		host = asked;
	i = ctl_cluster_node_find(m, host, (int)e->element[1]->integer, 1);
	if (i < 0)
		MAP_ERR("CLUSTER SLOTS: more than %d nodes, or a host name too long",
			CTL_CLUSTER_NODES_MAX);
	return i;
}

int
ctl_cluster_map_parse(const redisReply *r, const char *asked,
	struct ctl_cluster_map *m, char *err, size_t errlen)
{
	size_t i, j;
	int s, node;

	memset(m, 0, sizeof(*m));
	for (s = 0; s < CTL_CLUSTER_SLOTS; s++)
		m->owner[s] = CTL_CLUSTER_NO_NODE;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		MAP_ERR("CLUSTER SLOTS: %s", r && r->type == REDIS_REPLY_ERROR ?
			r->str : "not an array");
	for (i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		long long lo, hi;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER)
			MAP_ERR("CLUSTER SLOTS: entry %zu is not [first, last, primary, ...]", i);
		lo = e->element[0]->integer;
		hi = e->element[1]->integer;
		if (lo < 0 || hi < lo || hi >= CTL_CLUSTER_SLOTS)
			MAP_ERR("CLUSTER SLOTS: bad range %lld-%lld", lo, hi);
		node = map_node(m, e->element[2], asked, err, errlen);
		if (node < 0)
			return -EPROTO;
		m->primary[node] = 1;
		for (s = (int)lo; s <= (int)hi; s++) {
			if (m->owner[s] == CTL_CLUSTER_NO_NODE)
				m->slots_served++;
			m->owner[s] = (uint16_t)node;
		}
		for (j = 3; j < e->elements; j++)
			if (map_node(m, e->element[j], asked, err, errlen) < 0)
				return -EPROTO;
	}
	return 0;
}

int
ctl_cluster_redirect(const char *str, unsigned *slot, char *host,
	size_t hostcap, int *port)
{
	const char *p, *colon;
	int kind;
	long s, pt;
	char *end;

	if (str == NULL)
		return 0;
	if (strncmp(str, "MOVED ", 6) == 0)
		kind = 1, p = str + 6;
	else if (strncmp(str, "ASK ", 4) == 0)
		kind = 2, p = str + 4;
	else
		return 0;
	s = strtol(p, &end, 10);
	if (end == p || *end != ' ' || s < 0 || s >= CTL_CLUSTER_SLOTS)
		return 0;
	p = end + 1;
	colon = strrchr(p, ':');
	if (colon == NULL || (size_t)(colon - p) >= hostcap)
		return 0;
	pt = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || pt <= 0 || pt > 65535)
		return 0;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	*slot = (unsigned)s;
	*port = (int)pt;
	return kind;
}
