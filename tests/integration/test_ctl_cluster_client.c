/*
 * ctl_redis on a real Redis Cluster (3 primaries with a replica each,
 * started by ctl_cluster_client.sh, which passes MP_CLUSTER_NODES =
 * "port:pid ..."): the cluster found from a replica's address; a
 * namespace without a {tag} and a database other than 0 refused with a
 * clear error; commands routed to the primary of their key's slot (checked
 * on each node directly); pipelines across the three primaries, replies in
 * order, with a sliding window; scripts loaded where they run, and again
 * after a SCRIPT FLUSH; a slot being migrated (ASK, single and pipelined)
 * and then moved (MOVED, the map updated); the namespace's primary killed
 * with SIGKILL: the client follows the promoted replica, and what was
 * acknowledged with WAIT before is still there.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_cluster.h"
#include "ctl_redis.h"
#include "mp_test.h"

#define NODES_MAX 16
#define NS "{t}:"

static int nnodes;
static int ports[NODES_MAX];
static pid_t pids[NODES_MAX];
static int dead_port;

static redisContext *
direct(int port)
{
	struct timeval tv = { 5, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	if (c == NULL || c->err) {
		fprintf(stderr, "cannot reach node %d: %s\n", port, c ? c->errstr : "oom");
		exit(1);
	}
	redisSetTimeout(c, tv);
	return c;
}

/* Any live node, for looking at the cluster from outside the client. */
static int
live_port(void)
{
	int i;

	for (i = 0; i < nnodes; i++)
		if (ports[i] != dead_port)
			return ports[i];
	return -1;
}

/* The port of the primary of slot, from CLUSTER SLOTS of a live node. */
static int
owner_port(unsigned slot)
{
	redisContext *c = direct(live_port());
	redisReply *r = redisCommand(c, "CLUSTER SLOTS");
	int port = -1;
	size_t i;

	for (i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		redisReply *e = r->element[i];

		if ((unsigned)e->element[0]->integer <= slot &&
		    slot <= (unsigned)e->element[1]->integer)
			port = (int)e->element[2]->element[1]->integer;
	}
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return port;
}

static char *
node_id(int port)
{
	redisContext *c = direct(port);
	redisReply *r = redisCommand(c, "CLUSTER MYID");
	char *id = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;

	if (r)
		freeReplyObject(r);
	redisFree(c);
	return id;
}

static int
is_primary(int port)
{
	redisContext *c = direct(port);
	redisReply *r = redisCommand(c, "ROLE");
	int p = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		strcmp(r->element[0]->str, "master") == 0;

	if (r)
		freeReplyObject(r);
	redisFree(c);
	return p;
}

static struct ctl_redis *
open_port(int port, const char *ns, const char *db, char *err, size_t errlen)
{
	struct ctl_redis_conf conf = { 0 };
	char url[128];

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d%s", port, db);
	conf.url = url;
	conf.ns = ns;
	conf.cmd_timeout_ms = 3000;
	conf.backoff_max_ms = 500;
	return ctl_redis_open(&conf, err, errlen);
}

/* Replicas show in CLUSTER SLOTS once their first sync is done. */
static void
wait_replicas(void)
{
	int64_t end = ctl_mono_ms() + 20000;
	size_t i, n = 0;

	while (ctl_mono_ms() < end) {
		redisContext *c = direct(ports[0]);
		redisReply *r = redisCommand(c, "CLUSTER SLOTS");

		for (i = 0, n = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
			n += r->element[i]->elements - 2;
		if (r)
			freeReplyObject(r);
		redisFree(c);
		if (n == 6)
			return;
		usleep(100000);
	}
	fprintf(stderr, "CLUSTER SLOTS lists %zu nodes after 20 s, not 6\n", n);
}

static void
test_open(void)
{
	struct ctl_redis_cluster_stats st;
	struct ctl_redis *r;
	char err[512];
	int i, replica = -1;

	for (i = 0; i < nnodes && replica < 0; i++)
		if (!is_primary(ports[i]))
			replica = ports[i];
	CHECK(replica > 0);
	/* found from a replica's address */
	r = open_port(replica, NS, "", err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL) {
		fprintf(stderr, "open: %s\n", err);
		exit(1);
	}
	CHECK_EQ(ctl_redis_cluster(r, &st), 1);
	CHECK_EQ(st.nodes, 6);
	CHECK_EQ(st.primaries, 3);
	CHECK_EQ(st.slots_served, 16384);
	CHECK(ctl_redis_connected(r));
	ctl_redis_close(r);

	r = open_port(replica, "t:", "", err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "no {hash tag}") != NULL);
	r = open_port(replica, NS, "/2", err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "SELECT") != NULL);	/* the server refuses it */
}

static void
test_route(struct ctl_redis *r)
{
	int owners[3] = { 0 }, nown = 0, i, j;
	char k[32], v[32];

	for (i = 0; i < 300; i++) {
		redisReply *rep;

		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "v%d", i);
		rep = ctl_redis_cmd(r, "SET %s %s", k, v);
		CHECK(rep != NULL && rep->type == REDIS_REPLY_STATUS);
		if (rep)
			freeReplyObject(rep);
	}
	/* each key sits on the primary of its slot, and no redirect was needed */
	for (i = 0; i < 300; i += 7) {
		int port = owner_port(ctl_cluster_slot(k, (size_t)snprintf(k, sizeof(k), "k%d", i)));
		redisContext *c = direct(port);
		redisReply *rep = redisCommand(c, "GET %s", k);

		snprintf(v, sizeof(v), "v%d", i);
		CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, v) == 0);
		if (rep)
			freeReplyObject(rep);
		redisFree(c);
		for (j = 0; j < nown && owners[j] != port; j++)
			;
		if (j == nown && nown < 3)
			owners[nown++] = port;
	}
	CHECK_EQ(nown, 3);
}

static void
test_pipeline(struct ctl_redis *r)
{
	struct ctl_redis_cluster_stats st0, st1;
	redisReply *rep;
	char v[32];
	int i, got = 0, bad = 0, next = 0;

	ctl_redis_cluster(r, &st0);
	for (i = 0; i < 300; i++)
		CHECK_EQ(ctl_redis_append(r, "GET k%d", i), 0);
	CHECK_EQ(ctl_redis_pending(r), 300);
	/* a plain command is refused while replies are pending */
	CHECK(ctl_redis_cmd(r, "PING") == NULL);
	for (i = 0; i < 300; i++) {
		if (ctl_redis_reply(r, &rep) < 0) {
			bad++;
			break;
		}
		snprintf(v, sizeof(v), "v%d", i);
		if (rep->type == REDIS_REPLY_STRING && strcmp(rep->str, v) == 0)
			got++;
		freeReplyObject(rep);
	}
	CHECK_EQ(got, 300);
	CHECK_EQ(bad, 0);
	CHECK_EQ(ctl_redis_pending(r), 0);
	CHECK(ctl_redis_reply(r, &rep) == -EIO);

	/* a sliding window: queue 10, read 5, queue 10 more, ... */
	got = 0;
	for (i = 0; i < 200; i += 10) {
		int j;

		for (j = 0; j < 10; j++)
			CHECK_EQ(ctl_redis_append(r, "INCRBY ctr%d %d", (i + j) % 17, 1), 0);
		for (j = 0; j < 5; j++, next++)
			if (ctl_redis_reply(r, &rep) == 0) {
				got += rep->type == REDIS_REPLY_INTEGER;
				freeReplyObject(rep);
			}
	}
	while (ctl_redis_pending(r) > 0 && ctl_redis_reply(r, &rep) == 0) {
		got += rep->type == REDIS_REPLY_INTEGER;
		freeReplyObject(rep);
	}
	CHECK_EQ(got, 200);
	{
		long long sum = 0, x;

		for (i = 0; i < 17; i++) {
			rep = ctl_redis_cmd(r, "GET ctr%d", i);
			if (rep && ctl_redis_reply_int(rep, &x) == 0)
				sum += x;
			if (rep)
				freeReplyObject(rep);
		}
		CHECK_EQ(sum, 200);
	}
	ctl_redis_cluster(r, &st1);
	CHECK_EQ(st1.redirects, st0.redirects);
}

static void
test_script(struct ctl_redis *r)
{
	static struct ctl_redis_script get = {
		.src = "return redis.call('GET', KEYS[1]) .. ARGV[1]"
	};
	const char *argv[2];
	redisReply *rep;
	char k[32];
	int i, ok = 0;

	for (i = 0; i < 30; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		argv[0] = k;
		argv[1] = "!";
		rep = ctl_redis_eval(r, &get, 1, 2, argv, NULL);
		if (rep && rep->type == REDIS_REPLY_STRING && rep->str[0] == 'v' &&
		    rep->str[rep->len - 1] == '!')
			ok++;
		if (rep)
			freeReplyObject(rep);
	}
	CHECK_EQ(ok, 30);
	/* a node loses its scripts: NOSCRIPT, loaded again, run */
	for (i = 0; i < nnodes; i++) {
		redisContext *c = direct(ports[i]);
		redisReply *x = redisCommand(c, "SCRIPT FLUSH");

		if (x)
			freeReplyObject(x);
		redisFree(c);
	}
	argv[0] = "k3";
	argv[1] = "?";
	rep = ctl_redis_eval(r, &get, 1, 2, argv, NULL);
	CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "v3?") == 0);
	if (rep)
		freeReplyObject(rep);
	/* pipelined: loaded first, then one EVALSHA per key across the nodes */
	CHECK_EQ(ctl_redis_script_load(r, &get), 0);
	for (i = 0; i < 30; i++) {
		snprintf(k, sizeof(k), "k%d", i);
		argv[0] = k;
		argv[1] = "";
		CHECK_EQ(ctl_redis_eval_append(r, &get, 1, 2, argv, NULL), 0);
	}
	for (i = 0, ok = 0; i < 30; i++)
		if (ctl_redis_reply(r, &rep) == 0) {
			char v[32];

			snprintf(v, sizeof(v), "v%d", i);
			ok += rep->type == REDIS_REPLY_STRING && strcmp(rep->str, v) == 0;
			freeReplyObject(rep);
		}
	CHECK_EQ(ok, 30);
}

static redisReply *
dcmd(int port, const char *fmt, ...)
{
	redisContext *c = direct(port);
	redisReply *r;
	va_list ap;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	return r;
}

static int
dok(int port, const char *what, redisReply *r)
{
	int ok = r && r->type != REDIS_REPLY_ERROR;

	if (!ok)
		fprintf(stderr, "%d: %s: %s\n", port, what, r ? r->str : "no reply");
	if (r)
		freeReplyObject(r);
	return ok;
}

static void
test_migrate(struct ctl_redis *r)
{
	struct ctl_redis_cluster_stats st0, st1, st2;
	unsigned slot = ctl_cluster_slot("mv", 2);
	int src = owner_port(slot), dst = -1, i;
	char *sid = node_id(src), *did;
	redisReply *rep;

	for (i = 0; i < nnodes && dst < 0; i++)
		if (ports[i] != src && is_primary(ports[i]))
			dst = ports[i];
	did = node_id(dst);
	rep = ctl_redis_cmd(r, "SET mv here");
	CHECK(rep && rep->type == REDIS_REPLY_STATUS);
	if (rep)
		freeReplyObject(rep);
	rep = ctl_redis_cmd(r, "SET mv2 there");  /* another slot, stays put */
	if (rep)
		freeReplyObject(rep);

	/* the slot half way: importing on dst, migrating on src, key on dst */
	CHECK(dok(dst, "importing", dcmd(dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, sid)));
	CHECK(dok(src, "migrating", dcmd(src, "CLUSTER SETSLOT %u MIGRATING %s", slot, did)));
	CHECK(dok(src, "migrate", dcmd(src, "MIGRATE 127.0.0.1 %d mv 0 5000", dst)));
	ctl_redis_cluster(r, &st0);
	rep = ctl_redis_cmd(r, "GET mv");
	CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "here") == 0);
	if (rep)
		freeReplyObject(rep);
	ctl_redis_cluster(r, &st1);
	CHECK_EQ(st1.redirects, st0.redirects + 1);	/* ASK */
	/* pipelined: the ASK reply is followed, the order kept */
	CHECK_EQ(ctl_redis_append(r, "GET mv2"), 0);
	CHECK_EQ(ctl_redis_append(r, "GET mv"), 0);
	CHECK_EQ(ctl_redis_append(r, "GET mv2"), 0);
	for (i = 0; i < 3; i++) {
		const char *want = i == 1 ? "here" : "there";

		CHECK_EQ(ctl_redis_reply(r, &rep), 0);
		CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, want) == 0);
		if (rep)
			freeReplyObject(rep);
	}

	/* the slot moved for good: MOVED once, then straight to dst */
	for (i = 0; i < nnodes; i++)
		if (is_primary(ports[i]))
			CHECK(dok(ports[i], "node", dcmd(ports[i], "CLUSTER SETSLOT %u NODE %s",
				slot, did)));
	ctl_redis_cluster(r, &st0);
	rep = ctl_redis_cmd(r, "GET mv");
	CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "here") == 0);
	if (rep)
		freeReplyObject(rep);
	ctl_redis_cluster(r, &st1);
	CHECK_EQ(st1.redirects, st0.redirects + 1);	/* MOVED */
	rep = ctl_redis_cmd(r, "SET mv again");
	if (rep)
		freeReplyObject(rep);
	rep = ctl_redis_cmd(r, "GET mv");
	CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "again") == 0);
	if (rep)
		freeReplyObject(rep);
	ctl_redis_cluster(r, &st2);
	CHECK_EQ(st2.redirects, st1.redirects);
	free(sid);
	free(did);
}

static void
test_failover(struct ctl_redis *r)
{
	struct ctl_redis_cluster_stats st0, st1;
	unsigned slot = ctl_cluster_slot(NS, strlen(NS));
	int p = owner_port(slot), i, tries = 0, newp;
	int64_t t0, end;
	redisReply *rep;
	long long v = 0;

	rep = ctl_redis_cmd(r, "SET " NS "fo 41");
	CHECK(rep && rep->type == REDIS_REPLY_STATUS);
	if (rep)
		freeReplyObject(rep);
	/* acknowledged by the replica before the primary dies */
	rep = dcmd(p, "WAIT 1 5000");
	CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1);
	if (rep)
		freeReplyObject(rep);
	for (i = 0; i < nnodes; i++)
		if (ports[i] == p) {
			kill(pids[i], SIGKILL);
			dead_port = p;
		}
	CHECK(dead_port == p);
	ctl_redis_cluster(r, &st0);
	t0 = ctl_mono_ms();
	for (end = t0 + 60000; ctl_mono_ms() < end; tries++) {
		rep = ctl_redis_cmd(r, "INCR " NS "fo");
		if (rep && rep->type == REDIS_REPLY_INTEGER) {
			v = rep->integer;
			freeReplyObject(rep);
			break;
		}
		if (rep)
			freeReplyObject(rep);	/* CLUSTERDOWN while it fails over */
		usleep(50000);
	}
	printf("failover followed after %lld ms, %d tries\n",
		(long long)(ctl_mono_ms() - t0), tries);
	CHECK_EQ(v, 42);
	newp = owner_port(slot);
	CHECK(newp > 0 && newp != p);
	ctl_redis_cluster(r, &st1);
	CHECK(st1.map_refreshes > st0.map_refreshes);
	CHECK(ctl_redis_connected(r));
	/* and pipelines go to the promoted node too */
	CHECK_EQ(ctl_redis_append(r, "GET " NS "fo"), 0);
	CHECK_EQ(ctl_redis_append(r, "GET k1"), 0);
	CHECK_EQ(ctl_redis_reply(r, &rep), 0);
	CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "42") == 0);
	if (rep)
		freeReplyObject(rep);
	CHECK_EQ(ctl_redis_reply(r, &rep), 0);
	if (rep)
		freeReplyObject(rep);
	/* a new client from a surviving node sees it too */
	{
		char err[512];
		struct ctl_redis *r2 = open_port(live_port(), NS, "", err, sizeof(err));

		CHECK(r2 != NULL);
		rep = r2 ? ctl_redis_cmd(r2, "GET " NS "fo") : NULL;
		CHECK(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "42") == 0);
		if (rep)
			freeReplyObject(rep);
		ctl_redis_close(r2);
	}
}

int
main(void)
{
	const char *env = getenv("MP_CLUSTER_NODES");
	struct ctl_redis *r;
	char err[512];
	const char *p;

	if (env == NULL) {
		fprintf(stderr, "MP_CLUSTER_NODES (port:pid ...) not set: run ctl_cluster_client.sh\n");
		return 1;
	}
	for (p = env; *p && nnodes < NODES_MAX;) {
		int port, pid, n;

		if (sscanf(p, "%d:%d%n", &port, &pid, &n) != 2)
			break;
		ports[nnodes] = port;
		pids[nnodes++] = pid;
		p += n;
		while (*p == ' ')
			p++;
	}
	if (nnodes != 6) {
		fprintf(stderr, "MP_CLUSTER_NODES: want 6 nodes, got %d\n", nnodes);
		return 1;
	}
	wait_replicas();
	test_open();
	r = open_port(ports[0], NS, "", err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	test_route(r);
	test_pipeline(r);
	test_script(r);
	test_migrate(r);
	test_failover(r);
	ctl_redis_close(r);
	return mp_test_result("ctl_cluster_client");
}
