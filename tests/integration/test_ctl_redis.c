/*
 * ctl_redis against a real redis-server that this test starts (fork and
 * exec, free loopback port, own directory with a unix socket) and stops
 * by PID: AUTH with a password and with an ACL user, SELECT from the URL
 * and again after a reconnect, unix sockets, the key builder, pipelining,
 * EVALSHA with the NOSCRIPT fallback after SCRIPT FLUSH, the reply
 * timeout, a server killed and restarted (command fails, back-off, then
 * reconnect), a clear error for a refused connection, a reconnect to an
 * address that drops SYNs (never blocks the caller; times out after the
 * connect timeout; connects once the server is back), and the submit
 * engine with tiny batches and caps: early flushes, duplicates inside and
 * across batches, and the server losing its scripts while batches are in
 * flight (each is re-run once, nothing lost or counted twice).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl_campdef.h"
#include "ctl_redis.h"
#include "ctl_submit.h"
#include "mp_test.h"

static char dir[64];
static char sock[128];
static int port;
static pid_t srv = -1;

static int
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), p;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &l) < 0)
		abort();
	p = ntohs(a.sin_port);
	close(s);
	return p;
}

static void
stop_server(void)
{
	int st;

	if (srv <= 0)
		return;
	kill(srv, SIGKILL);
	waitpid(srv, &st, 0);
	srv = -1;
}

static void
start_server(void)
{
	char p[16];
	int64_t end;

	snprintf(p, sizeof(p), "%d", port);
	srv = fork();
	if (srv < 0)
		abort();
	if (srv == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--unixsocket", sock, "--unixsocketperm", "700",
			"--requirepass", "s3cret", (char *)NULL);
		_exit(127);
	}
	/* wait until it answers: 20 s, for a loaded machine under ASan */
	for (end = ctl_mono_ms() + 20000; ctl_mono_ms() < end;) {
		redisContext *c = redisConnect("127.0.0.1", port);

		if (c && !c->err) {
			redisFree(c);
			return;
		}
		if (c)
			redisFree(c);
		if (waitpid(srv, NULL, WNOHANG) == srv) {
			srv = -1;
			break;
		}
		usleep(50000);
	}
	fprintf(stderr, "redis-server did not start\n");
	stop_server();
	exit(1);
}

static void
cleanup(void)
{
	char cmd[128];

	stop_server();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (dir[0] && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static void
on_sig(int sig)
{
	(void)sig;
	cleanup();
	_exit(1);
}

static struct ctl_redis *
open_url(const char *fmt, int timeout_ms, char *err, size_t errlen)
{
	struct ctl_redis_conf conf = { 0 };
	char url[256];

	snprintf(url, sizeof(url), fmt, port);
	conf.url = url;
	conf.ns = "t:";
	conf.cmd_timeout_ms = timeout_ms;
	conf.backoff_max_ms = 400;
	return ctl_redis_open(&conf, err, errlen);
}

static int
reply_is(redisReply *r, const char *s)
{
	int ok = r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
		strcmp(r->str, s) == 0;

	if (r)
		freeReplyObject(r);
	return ok;
}

static void
test_auth_select(void)
{
	struct ctl_redis *r, *r0;
	char err[512];
	redisReply *rep;

	r = open_url("redis://:wrong@127.0.0.1:%d", 0, err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "AUTH refused") != NULL);

	r = open_url("redis://:s3cret@127.0.0.1:%d/3", 0, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL) {
		fprintf(stderr, "open: %s\n", err);
		return;
	}
	CHECK(reply_is(ctl_redis_cmd(r, "SET k in3"), "OK"));
	r0 = open_url("redis://:s3cret@127.0.0.1:%d/0", 0, err, sizeof(err));
	CHECK(r0 != NULL);
	if (r0) {
		rep = ctl_redis_cmd(r0, "GET k");
		CHECK(rep && rep->type == REDIS_REPLY_NIL);
		if (rep)
			freeReplyObject(rep);
		/* an ACL user */
		CHECK(reply_is(ctl_redis_cmd(r0, "ACL SETUSER app on >apppw ~* +@all"), "OK"));
		ctl_redis_close(r0);
	}
	CHECK(reply_is(ctl_redis_cmd(r, "GET k"), "in3"));
	ctl_redis_close(r);

	r = open_url("redis://app:apppw@127.0.0.1:%d", 0, err, sizeof(err));
	CHECK(r != NULL);
	if (r) {
		CHECK(reply_is(ctl_redis_cmd(r, "ACL WHOAMI"), "app"));
		ctl_redis_close(r);
	}
	r = open_url("redis://app:nope@127.0.0.1:%d", 0, err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "AUTH refused") != NULL);

	/* unix socket, db and password as parameters */
	{
		struct ctl_redis_conf conf = { 0 };
		char url[256];

		snprintf(url, sizeof(url), "unix://%s?db=3&password=s3cret", sock);
		conf.url = url;
		r = ctl_redis_open(&conf, err, sizeof(err));
		CHECK(r != NULL);
		if (r) {
			CHECK(reply_is(ctl_redis_cmd(r, "GET k"), "in3"));
			CHECK_STREQ(ctl_redis_where(r), sock);
			CHECK_STREQ(ctl_redis_ns(r), "mp:");
			ctl_redis_close(r);
		} else {
			fprintf(stderr, "unix: %s\n", err);
		}
	}
}

static void
test_keys_pipeline_scripts(void)
{
	struct ctl_redis_script s = { .src = "return {KEYS[1], ARGV[1]}" };
	const char *argv[2];
	struct ctl_redis *r;
	char err[512], k[CTL_KEY_MAX], small[12];
	redisReply *rep;
	int i, ok = 1;

	r = open_url("redis://:s3cret@127.0.0.1:%d/1", 0, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL)
		return;
	CHECK_EQ(ctl_redis_key(r, k, sizeof(k), CTL_K_RCPT, "c1"), 18);
	CHECK_STREQ(k, "t:campaign:c1:rcpt");
	CHECK_EQ(ctl_redis_key(r, small, sizeof(small), CTL_K_RCPT, "c1"), -ENAMETOOLONG);
	CHECK_STREQ(small, "");

	for (i = 0; i < 200; i++)
		CHECK_EQ(ctl_redis_append(r, "INCR %s", "t:n"), 0);
	CHECK_EQ(ctl_redis_pending(r), 200);
	/* a plain command is refused while replies are pending */
	CHECK(ctl_redis_cmd(r, "PING") == NULL);
	for (i = 0; i < 200; i++) {
		if (ctl_redis_reply(r, &rep) < 0 || rep->type != REDIS_REPLY_INTEGER ||
		    rep->integer != i + 1)
			ok = 0;
		if (rep)
			freeReplyObject(rep);
	}
	CHECK(ok);
	CHECK_EQ(ctl_redis_pending(r), 0);
	CHECK(reply_is(ctl_redis_cmd(r, "PING"), "PONG"));

	argv[0] = "t:key";
	argv[1] = "v1";
	rep = ctl_redis_eval(r, &s, 1, 2, argv, NULL);
	CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
		strcmp(rep->element[1]->str, "v1") == 0);
	if (rep)
		freeReplyObject(rep);
	CHECK_EQ(strlen(s.sha), 40);
	/* the server forgets the script: EVALSHA reloads it */
	CHECK(reply_is(ctl_redis_cmd(r, "SCRIPT FLUSH"), "OK"));
	rep = ctl_redis_eval(r, &s, 1, 2, argv, NULL);
	CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2);
	if (rep)
		freeReplyObject(rep);
	/* pipelined: a NOSCRIPT reply is visible to the caller */
	CHECK(reply_is(ctl_redis_cmd(r, "SCRIPT FLUSH"), "OK"));
	CHECK_EQ(ctl_redis_eval_append(r, &s, 1, 2, argv, NULL), 0);
	CHECK_EQ(ctl_redis_reply(r, &rep), 0);
	CHECK(ctl_redis_is_noscript(rep));
	if (rep)
		freeReplyObject(rep);
	CHECK_EQ(ctl_redis_script_load(r, &s), 0);
	CHECK_EQ(ctl_redis_eval_append(r, &s, 1, 2, argv, NULL), 0);
	CHECK_EQ(ctl_redis_reply(r, &rep), 0);
	CHECK(rep && rep->type == REDIS_REPLY_ARRAY);
	if (rep)
		freeReplyObject(rep);
	/* an error raised by a script is a reply, the connection stays */
	{
		struct ctl_redis_script bad = { .src = "return redis.error_reply('BAD thing')" };

		rep = ctl_redis_eval(r, &bad, 0, 0, NULL, NULL);
		CHECK(rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "BAD thing"));
		if (rep)
			freeReplyObject(rep);
		CHECK(ctl_redis_connected(r));
	}
	{
		long long v = 0;

		rep = ctl_redis_cmd(r, "GET t:n");
		CHECK_EQ(ctl_redis_reply_int(rep, &v), 0);
		CHECK_EQ(v, 200);
		freeReplyObject(rep);
		rep = ctl_redis_cmd(r, "HSET t:h a 5 b x");
		CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 2);
		if (rep)
			freeReplyObject(rep);
		rep = ctl_redis_cmd(r, "HGETALL t:h");
		CHECK_EQ(ctl_redis_hget_int(rep, "a", -1), 5);
		CHECK_EQ(ctl_redis_hget_int(rep, "b", -1), -1);
		CHECK_EQ(ctl_redis_hget_int(rep, "c", -2), -2);
		CHECK_STREQ(ctl_redis_hget(rep, "b"), "x");
		freeReplyObject(rep);
	}
	ctl_redis_close(r);
}

static void
test_timeout_and_restart(void)
{
	struct ctl_redis *r;
	char err[512];
	redisReply *rep;
	int rc;

	r = open_url("redis://:s3cret@127.0.0.1:%d/5", 300, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL)
		return;
	/* a reply slower than the timeout: the command fails, the next one
	 * reconnects (AUTH and SELECT again) */
	rep = ctl_redis_cmd(r, "BLPOP t:none 2");
	CHECK(rep == NULL);
	CHECK(strstr(ctl_redis_error(r), "redis 127.0.0.1:") != NULL);
	CHECK(!ctl_redis_connected(r));
	rep = ctl_redis_cmd(r, "CLIENT INFO");
	CHECK(rep && rep->type == REDIS_REPLY_STRING && strstr(rep->str, " db=5 ") != NULL);
	if (rep)
		freeReplyObject(rep);
	/* longer timeout for blocking reads */
	CHECK_EQ(ctl_redis_set_timeout(r, 3000), 0);
	rep = ctl_redis_cmd(r, "BLPOP t:none 1");
	CHECK(rep && rep->type == REDIS_REPLY_NIL);
	if (rep)
		freeReplyObject(rep);

	/* the server dies */
	stop_server();
	rep = ctl_redis_cmd(r, "PING");
	CHECK(rep == NULL);
	rc = ctl_redis_ensure(r);
	CHECK_EQ(rc, -ECONNREFUSED);
	CHECK(strstr(ctl_redis_error(r), "Connection refused") != NULL);
	/* inside the back-off: no attempt, fails at once (assumes these two
	 * calls run less than the 100 ms minimum back-off apart) */
	CHECK_EQ(ctl_redis_ensure(r), -EAGAIN);
	CHECK(ctl_redis_cmd(r, "PING") == NULL);
	CHECK_EQ(ctl_redis_wait(r, 300), -ECONNREFUSED);
	/* it comes back: wait reconnects within the back-off cap */
	start_server();
	CHECK_EQ(ctl_redis_wait(r, 3000), 0);
	rep = ctl_redis_cmd(r, "CLIENT INFO");
	CHECK(rep && rep->type == REDIS_REPLY_STRING && strstr(rep->str, " db=5 ") != NULL &&
		strstr(rep->str, " user=default ") != NULL);
	if (rep)
		freeReplyObject(rep);
	ctl_redis_close(r);

	/* refused at open: clear error, fast */
	{
		int dead = free_port();
		struct ctl_redis_conf conf = { 0 };
		char url[64];

		snprintf(url, sizeof(url), "redis://127.0.0.1:%d", dead);
		conf.url = url;
		CHECK(ctl_redis_open(&conf, err, sizeof(err)) == NULL);
		snprintf(url, sizeof(url), "redis 127.0.0.1:%d: Connection refused", dead);
		CHECK_STREQ(err, url);
	}
}

/*
 * A listener on the server's port whose accept queue is full (backlog 0,
 * two connections never accepted): Linux drops further SYNs, as a host
 * cut off by a firewall does.
 */
static int
syn_sink(int *cl, int ncl)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 0) < 0)
		abort();
	for (int i = 0; i < ncl; i++) {
		cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (cl[i] < 0)
			abort();
		(void)connect(cl[i], (struct sockaddr *)&a, sizeof(a));
	}
	usleep(50000);
	return l;
}

static void
test_unreachable(void)
{
	struct ctl_redis_conf conf = { 0 };
	struct ctl_redis *r;
	char url[64], err[512];
	int cl[3], l, rc, calls = 0;
	int64_t t0, t, worst = 0;

	snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d", port);
	conf.url = url;
	conf.connect_timeout_ms = 600;
	conf.cmd_timeout_ms = 300;
	conf.backoff_max_ms = 100;
	r = ctl_redis_open(&conf, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL)
		return;
	stop_server();
	l = syn_sink(cl, 3);
	CHECK(ctl_redis_cmd(r, "PING") == NULL);
	/* a reconnect under way: every call returns at once */
	t0 = ctl_mono_ms();
	do {
		t = ctl_mono_ms();
		rc = ctl_redis_ensure(r);
		t = ctl_mono_ms() - t;
		worst = t > worst ? t : worst;
		calls++;
		CHECK(!ctl_redis_connected(r));
		CHECK(ctl_redis_cmd(r, "PING") == NULL);
		usleep(5000);
	} while (rc == -EAGAIN && ctl_mono_ms() - t0 < 3000);
	t = ctl_mono_ms() - t0;
	printf("# unreachable: %d calls, the longest %lld ms; failed after %lld ms: %s\n",
		calls, (long long)worst, (long long)t, ctl_redis_error(r));
	CHECK(worst < 100);
	CHECK(calls > 20);
	CHECK_EQ(rc, -EIO);
	CHECK(t >= 550 && t < 2500);
	CHECK(strstr(ctl_redis_error(r), "connect timed out after 600 ms") != NULL);
	/* the wait helper waits through a connect that hangs, then fails */
	t0 = ctl_mono_ms();
	CHECK(ctl_redis_wait(r, 1500) < 0);
	t = ctl_mono_ms() - t0;
	CHECK(t >= 1400 && t < 2500);
	for (int i = 0; i < 3; i++)
		close(cl[i]);
	close(l);
	start_server();
	CHECK_EQ(ctl_redis_wait(r, 3000), 0);
	CHECK(reply_is(ctl_redis_cmd(r, "PING"), "PONG"));
	ctl_redis_close(r);
}

struct seen {
	int dups, invalid;
	unsigned long dup_lines[16];
};

static void
on_dup(void *user, unsigned long line, const char *addr)
{
	struct seen *x = user;

	(void)addr;
	if (x->dups < 16)
		x->dup_lines[x->dups] = line;
	x->dups++;
}

static void
on_inv(void *user, unsigned long line, const char *msg)
{
	struct seen *x = user;

	(void)line;
	(void)msg;
	x->invalid++;
}

static long long
hget_ll(struct ctl_redis *r, const char *key, const char *field)
{
	redisReply *rep = ctl_redis_cmd(r, "HGET %s %s", key, field);
	long long v = -1;

	if (rep)
		(void)ctl_redis_reply_int(rep, &v), freeReplyObject(rep);
	return v;
}

static void
test_submit(void)
{
	struct ctl_submit_conf sc = { 0 };
	struct ctl_submit_stats st;
	struct ctl_campdef cd;
	struct msg_template *tpl = NULL;
	struct ctl_redis *r, *r2;
	struct ctl_submit *s;
	struct seen x = { 0 };
	char err[512], addr[64], k[CTL_KEY_MAX], state[32];
	struct ctl_input_rec rec;
	struct ctl_input_field f;
	redisReply *rep;
	int i, rc = 0;

	r = open_url("redis://:s3cret@127.0.0.1:%d/2", 0, err, sizeof(err));
	r2 = open_url("redis://:s3cret@127.0.0.1:%d/2", 0, err, sizeof(err));
	CHECK(r != NULL && r2 != NULL);
	if (r == NULL || r2 == NULL)
		return;
	ctl_campdef_init(&cd);
	CHECK_EQ(ctl_campdef_set(&cd, "id", "sub-1", err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_set(&cd, "from", "news@example.com", err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_set(&cd, "subject", "Hi {{n}}", err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_set(&cd, "text", "x\n", err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_validate(&cd, &tpl, err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_create(r, &cd, ctl_now_ms(), err, sizeof(err)), 0);
	CHECK_EQ(ctl_campdef_create(r, &cd, ctl_now_ms(), err, sizeof(err)), -EEXIST);
	if (tpl == NULL)
		return;
	sc.batch_size = 3;
	sc.buffer_max = 4;      /* forces early flushes of the oldest domains */
	sc.pipeline = 4;
	sc.on_duplicate = on_dup;
	sc.on_invalid = on_inv;
	sc.user = &x;
	s = ctl_submit_new(r, "sub-1", tpl, &sc);
	CHECK(s != NULL);
	memset(&rec, 0, sizeof(rec));
	rec.f = &f;
	rec.nf = 1;
	f.name = "n";
	f.value = "1";
	f.len = 1;
	/* 60 lines over 5 domains; every 10th repeats line i-5; line 33 is bad */
	for (i = 1; i <= 60 && rc == 0; i++) {
		int who = (i % 10 == 0) ? i - 5 : i;

		snprintf(addr, sizeof(addr), i == 33 ? "bad@@d%d.test" : "u%d@D%d.test", who, who % 5);
		rec.line = (unsigned long)i;
		rec.email = addr;
		rec.email_len = strlen(addr);
		if (i == 30) {
			/* the server forgets every script while batches wait in
			 * the pipeline: they come back NOSCRIPT and are re-run */
			rep = ctl_redis_cmd(r2, "SCRIPT FLUSH");
			CHECK(rep != NULL);
			if (rep)
				freeReplyObject(rep);
		}
		rc = ctl_submit_add(s, &rec);
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(ctl_submit_end(s), 0);
	ctl_submit_get_stats(s, &st);
	CHECK_EQ(st.records, 60);
	CHECK_EQ(st.invalid, 1);
	CHECK_EQ(st.duplicates, 6);
	CHECK_EQ(st.accepted, 53);
	CHECK(st.reruns >= 1);
	CHECK_EQ(x.dups, 6);
	CHECK_EQ(x.invalid, 1);
	CHECK_EQ(x.dups >= 1 ? (long long)(x.dup_lines[0] % 10) : -1, 0);
	CHECK_EQ(ctl_campdef_finish(r, "sub-1", ctl_submit_take_invalid(s), state, sizeof(state),
		err, sizeof(err)), 0);
	CHECK_STREQ(state, "running");
	ctl_submit_free(s);

	ctl_redis_key(r, k, sizeof(k), CTL_K_CAMPAIGN, "sub-1");
	CHECK_EQ(hget_ll(r, k, "total"), 53);
	CHECK_EQ(hget_ll(r, k, "invalid"), 1);
	CHECK_EQ(hget_ll(r, k, "duplicates_skipped"), 6);
	ctl_redis_key(r, k, sizeof(k), CTL_K_COUNTS, "sub-1");
	CHECK_EQ(hget_ll(r, k, "queued"), 53);
	ctl_redis_key(r, k, sizeof(k), CTL_K_RCPT, "sub-1");
	rep = ctl_redis_cmd(r, "HLEN %s", k);
	CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 53);
	if (rep)
		freeReplyObject(rep);
	/* every entry of the campaign's jobs stream: one domain, at most 3 recipients, 53 in all */
	ctl_redis_key(r, k, sizeof(k), CTL_K_CJOBS, "sub-1");
	rep = ctl_redis_cmd(r, "XRANGE %s - +", k);
	CHECK(rep && rep->type == REDIS_REPLY_ARRAY);
	if (rep && rep->type == REDIS_REPLY_ARRAY) {
		size_t e, total = 0, bad = 0;

		for (e = 0; e < rep->elements; e++) {
			redisReply *kv = rep->element[e]->element[1];
			const char *dom = NULL, *rc_json = NULL;
			json_t *arr;
			size_t j;

			for (j = 0; j + 1 < kv->elements; j += 2) {
				if (strcmp(kv->element[j]->str, "domain") == 0)
					dom = kv->element[j + 1]->str;
				if (strcmp(kv->element[j]->str, "rcpts") == 0)
					rc_json = kv->element[j + 1]->str;
			}
			arr = rc_json ? json_loads(rc_json, 0, NULL) : NULL;
			if (dom == NULL || !json_is_array(arr) || json_array_size(arr) > 3 ||
			    json_array_size(arr) == 0) {
				bad++;
			} else {
				for (j = 0; j < json_array_size(arr); j++) {
					const char *to = json_string_value(json_object_get(json_array_get(arr, j), "to"));

					if (to == NULL || strcmp(strchr(to, '@') + 1, dom) != 0)
						bad++;
				}
				total += json_array_size(arr);
			}
			json_decref(arr);
		}
		CHECK_EQ(bad, 0);
		CHECK_EQ(total, 53);
	}
	if (rep)
		freeReplyObject(rep);
	msg_template_free(tpl);
	ctl_campdef_fini(&cd);
	ctl_redis_close(r);
	ctl_redis_close(r2);
}

int
main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mp-ctlredis.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	signal(SIGPIPE, SIG_IGN);
	port = free_port();
	start_server();
	test_auth_select();
	test_keys_pipeline_scripts();
	test_submit();
	test_timeout_and_restart();
	test_unreachable();
	cleanup();
	return mp_test_result("ctl_redis");
}
