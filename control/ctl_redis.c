/*
 * Redis connection for the control plane: URL parsing, connect with
 * timeouts, AUTH/SELECT, lazy reconnect with exponential back-off,
 * pipelining and Lua scripts by EVALSHA with a NOSCRIPT fallback.
 * hiredis 0.14 has no redisConnectWithOptions and no RESP3. A reconnect
 * never blocks its caller: it starts with the *NonBlock connectors, and
 * each later call polls the socket without waiting (ctl_redis_ensure
 * says -EAGAIN meanwhile), so a daemon whose Redis is unreachable goes on
 * serving its sessions instead of sitting in connect() for the connect
 * timeout over and over. Once connected the context is made blocking,
 * with redisSetTimeout for replies. A context whose err is set is dead in
 * hiredis; we free it and connect anew on the next command instead of
 * redisReconnect so AUTH and SELECT are redone.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "ctl_redis.h"

#define BACKOFF_MIN_MS 100

struct ctl_redis {
	redisContext *c;
	struct ctl_redis_url url;
	char ns[64];
	char where[300];
	char err[512];
	int connect_timeout_ms;
	int cmd_timeout_ms;
	int backoff_max_ms;
	int backoff_ms;          /* next delay after a failed attempt */
	int64_t next_try_ms;     /* monotonic: no attempt before this */
	int connecting;          /* c is a non-blocking connect under way */
	int64_t connect_deadline; /* monotonic: the connect fails after this */
	unsigned pending;        /* appended, reply not read */
	int last_rc;             /* result of the last connect attempt */
};

int64_t
ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
ctl_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Copy [s, s+n) to dst percent-decoded. @return 0 or -EINVAL. */
static int
pct_copy(char *dst, size_t cap, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			int h, l;

			if (i + 2 >= n)
				return -EINVAL;
			h = hexval(s[i + 1]);
			l = hexval(s[i + 2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = h * 16 + l;
			i += 2;
		}
		if (c == 0 || o + 1 >= cap)
			return -EINVAL;
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return 0;
}

static int
parse_uint(const char *s, size_t n, int max, int *out)
{
	long v = 0;
	size_t i;

	if (n == 0 || n > 9)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

#define URL_ERR(...) do { \
	if (errlen) snprintf(err, errlen, __VA_ARGS__); \
	return -EINVAL; \
} while (0)

int
ctl_redis_url_parse(const char *url, struct ctl_redis_url *u, char *err,
	size_t errlen)
{
	const char *p, *end, *at, *slash, *hp, *he, *colon;

	memset(u, 0, sizeof(*u));
	u->port = 6379;
	if (url == NULL || *url == '\0')
		url = "redis://127.0.0.1:6379/0";

	if (url[0] == '/' || strncmp(url, "unix:", 5) == 0) {
		const char *q;

		p = url;
		if (strncmp(p, "unix://", 7) == 0)
			p += 7;
		else if (strncmp(p, "unix:", 5) == 0)
			p += 5;
		if (*p != '/')
			URL_ERR("redis url '%s': unix socket path must be absolute", url);
		q = strchr(p, '?');
		end = q ? q : p + strlen(p);
		if ((size_t)(end - p) >= sizeof(u->path))
			URL_ERR("redis url '%s': socket path too long", url);
		memcpy(u->path, p, (size_t)(end - p));
		u->path[end - p] = '\0';
		/* ?db=N&user=U&password=P (any order, %XX-escaped values) */
		while (q && *q) {
			const char *k = q + 1, *amp = strchr(k, '&'), *eq;
			const char *vend = amp ? amp : k + strlen(k);

			eq = memchr(k, '=', (size_t)(vend - k));
			if (eq == NULL)
				URL_ERR("redis url '%s': expected ?db=N&user=U&password=P after the path", url);
			if ((size_t)(eq - k) == 2 && strncmp(k, "db", 2) == 0) {
				if (parse_uint(eq + 1, (size_t)(vend - eq - 1), 1 << 20, &u->db) < 0)
					URL_ERR("redis url '%s': bad db", url);
			} else if ((size_t)(eq - k) == 4 && strncmp(k, "user", 4) == 0) {
				if (pct_copy(u->user, sizeof(u->user), eq + 1, (size_t)(vend - eq - 1)) < 0)
					URL_ERR("redis url: bad user (too long or bad %%-escape)");
			} else if ((size_t)(eq - k) == 8 && strncmp(k, "password", 8) == 0) {
				if (pct_copy(u->password, sizeof(u->password), eq + 1,
				    (size_t)(vend - eq - 1)) < 0)
					URL_ERR("redis url: bad password (too long or bad %%-escape)");
			} else {
				URL_ERR("redis url '%s': unknown parameter (db, user, password)", url);
			}
			q = amp;
		}
		return 0;
	}

	if (strncmp(url, "redis://", 8) != 0)
		URL_ERR("redis url '%s': expected redis://host[:port][/db] or a unix socket path", url);
	p = url + 8;
	end = p + strlen(p);
	slash = strchr(p, '/');
	if (slash == NULL)
		slash = end;
	at = NULL;
	for (const char *x = p; x < slash; x++)
		if (*x == '@')
			at = x;     /* the last '@' before the path ends userinfo */
	hp = p;
	if (at) {
		const char *c2 = memchr(p, ':', (size_t)(at - p));

		if (c2) {
			if (pct_copy(u->user, sizeof(u->user), p, (size_t)(c2 - p)) < 0 ||
			    pct_copy(u->password, sizeof(u->password), c2 + 1,
				(size_t)(at - c2 - 1)) < 0)
				URL_ERR("redis url: bad user or password (too long or bad %%-escape)");
		} else if (pct_copy(u->user, sizeof(u->user), p, (size_t)(at - p)) < 0) {
			URL_ERR("redis url: bad user (too long or bad %%-escape)");
		}
		/* redis://:password@host: password only, default user */
		hp = at + 1;
	}
	he = slash;
	if (hp < he && *hp == '[') {
		const char *rb = memchr(hp, ']', (size_t)(he - hp));

		if (rb == NULL)
			URL_ERR("redis url '%s': unterminated [IPv6] host", url);
		if ((size_t)(rb - hp - 1) >= sizeof(u->host) || rb == hp + 1)
			URL_ERR("redis url '%s': bad host", url);
		memcpy(u->host, hp + 1, (size_t)(rb - hp - 1));
		u->host[rb - hp - 1] = '\0';
		colon = rb + 1 < he && rb[1] == ':' ? rb + 1 : NULL;
		if (!colon && rb + 1 != he)
			URL_ERR("redis url '%s': junk after ]", url);
	} else {
		colon = memchr(hp, ':', (size_t)(he - hp));
		{
			const char *hend = colon ? colon : he;

			if (hend == hp)
				URL_ERR("redis url '%s': missing host", url);
			if ((size_t)(hend - hp) >= sizeof(u->host))
				URL_ERR("redis url '%s': host too long", url);
			memcpy(u->host, hp, (size_t)(hend - hp));
			u->host[hend - hp] = '\0';
		}
	}
	if (colon && (parse_uint(colon + 1, (size_t)(he - colon - 1), 65535, &u->port) < 0 ||
	    u->port == 0))
		URL_ERR("redis url '%s': bad port", url);
	if (slash < end && slash + 1 < end) {
		if (parse_uint(slash + 1, (size_t)(end - slash - 1), 1 << 20, &u->db) < 0)
			URL_ERR("redis url '%s': bad database number after /", url);
	}
	return 0;
}

static struct timeval
ms_tv(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

static void
set_err(struct ctl_redis *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
set_err(struct ctl_redis *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(r->err, sizeof(r->err), "redis %s: ", r->where);
	if (n < 0 || (size_t)n >= sizeof(r->err))
		return;
	va_start(ap, fmt);
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
	va_end(ap);
}

static void
drop_ctx(struct ctl_redis *r)
{
	if (r->c)
		redisFree(r->c);
	r->c = NULL;
	r->pending = 0;
	r->connecting = 0;
}

/* A command on a live context failed at the connection level. */
static void
broken(struct ctl_redis *r)
{
	if (r->c && r->c->err)
		set_err(r, "%s", r->c->errstr[0] ? r->c->errstr : "connection lost");
	else
		set_err(r, "connection lost");
	drop_ctx(r);
	/* reconnect at once on the next command; back off only if that fails */
	r->next_try_ms = 0;
}

/* Starts a non-blocking connect; connect_finish completes it. */
static int
connect_start(struct ctl_redis *r)
{
	int rc;

	if (r->url.path[0])
		r->c = redisConnectUnixNonBlock(r->url.path);
	else
		r->c = redisConnectNonBlock(r->url.host, r->url.port);
	if (r->c == NULL) {
		set_err(r, "out of memory");
		return -ENOMEM;
	}
	if (r->c->err) {
		set_err(r, "%s", r->c->errstr);
		rc = r->c->err == REDIS_ERR_IO && errno == ECONNREFUSED ?
			-ECONNREFUSED : -EIO;
		drop_ctx(r);
		return rc;
	}
	r->connecting = 1;
	r->connect_deadline = ctl_mono_ms() + r->connect_timeout_ms;
	return 0;
}

/*
 * Waits up to wait_ms (0: not at all) for the connect connect_start began.
 * -EAGAIN while it is still under way and its deadline has not passed.
 * Connected, the context becomes blocking with the reply timeout, and
 * AUTH and SELECT are done.
 */
static int
connect_finish(struct ctl_redis *r, int wait_ms)
{
	struct pollfd p = { .fd = r->c->fd, .events = POLLOUT };
	int64_t left = r->connect_deadline - ctl_mono_ms();
	socklen_t len = sizeof(int);
	redisReply *rep;
	int n, soerr = 0, fl;

	if (wait_ms > left)
		wait_ms = left > 0 ? (int)left : 0;
	n = poll(&p, 1, wait_ms);
	if (n < 0 && errno != EINTR) {
		set_err(r, "poll: %s", strerror(errno));
		drop_ctx(r);
		return -EIO;
	}
	if (n <= 0) {
		if (ctl_mono_ms() < r->connect_deadline)
			return -EAGAIN;
		set_err(r, "connect timed out after %d ms", r->connect_timeout_ms);
		drop_ctx(r);
		return -EIO;
	}
	if (getsockopt(r->c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr != 0) {
		set_err(r, "%s", strerror(soerr));
		drop_ctx(r);
		return soerr == ECONNREFUSED ? -ECONNREFUSED : -EIO;
	}
	fl = fcntl(r->c->fd, F_GETFL);
	if (fl < 0 || fcntl(r->c->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		set_err(r, "fcntl: %s", strerror(errno));
		drop_ctx(r);
		return -EIO;
	}
	r->c->flags |= REDIS_BLOCK;
	r->connecting = 0;
	if (!r->url.path[0])
		(void)redisEnableKeepAlive(r->c);
	if (r->cmd_timeout_ms >= 0 &&
	    redisSetTimeout(r->c, ms_tv(r->cmd_timeout_ms)) != REDIS_OK) {
		set_err(r, "cannot set timeout");
		drop_ctx(r);
		return -EIO;
	}
	if (r->url.password[0]) {
		if (r->url.user[0])
			rep = redisCommand(r->c, "AUTH %s %s", r->url.user, r->url.password);
		else
			rep = redisCommand(r->c, "AUTH %s", r->url.password);
		if (rep == NULL) {
			broken(r);
			return -EIO;
		}
		if (rep->type == REDIS_REPLY_ERROR) {
			set_err(r, "AUTH refused: %s", rep->str);
			freeReplyObject(rep);
			drop_ctx(r);
			return -EACCES;
		}
		freeReplyObject(rep);
	}
	if (r->url.db) {
		rep = redisCommand(r->c, "SELECT %d", r->url.db);
		if (rep == NULL) {
			broken(r);
			return -EIO;
		}
		if (rep->type == REDIS_REPLY_ERROR) {
			set_err(r, "SELECT %d refused: %s", r->url.db, rep->str);
			freeReplyObject(rep);
			drop_ctx(r);
			return -EINVAL;
		}
		freeReplyObject(rep);
	}
	r->err[0] = '\0';
	r->backoff_ms = BACKOFF_MIN_MS;
	r->next_try_ms = 0;
	return 0;
}

/*
 * One step of a (re)connect: start one once the back-off has passed, or
 * look at the one under way, waiting up to wait_ms. A failure arms the
 * back-off.
 */
static int
attempt(struct ctl_redis *r, int wait_ms)
{
	int rc;

	if (r->c == NULL) {
		if (ctl_mono_ms() < r->next_try_ms)
			return -EAGAIN;
		rc = connect_start(r);
		if (rc == 0)
			rc = connect_finish(r, wait_ms);
	} else {
		rc = connect_finish(r, wait_ms);
	}
	if (rc == -EAGAIN) {
		if (r->err[0] == '\0')
			set_err(r, "connecting");
		return rc;	/* the error that broke the last connection stays */
	}
	r->last_rc = rc;
	if (rc < 0) {
		r->next_try_ms = ctl_mono_ms() + r->backoff_ms;
		r->backoff_ms *= 2;
		if (r->backoff_ms > r->backoff_max_ms)
			r->backoff_ms = r->backoff_max_ms;
	}
	return rc;
}

int
ctl_redis_ensure(struct ctl_redis *r)
{
	if (r->c != NULL && !r->connecting)
		return 0;
	return attempt(r, 0);
}

int
ctl_redis_wait(struct ctl_redis *r, int wait_ms)
{
	int64_t deadline = ctl_mono_ms() + wait_ms;
	int64_t now, until;
	struct timespec ts;
	int rc;

	for (;;) {
		now = ctl_mono_ms();
		if (r->c != NULL && !r->connecting)
			return 0;
		rc = attempt(r, (int)(deadline > now ? deadline - now : 0));
		if (rc == 0)
			return 0;
		if (rc == -EACCES || rc == -EINVAL)
			return rc;  /* configuration, not transient */
		now = ctl_mono_ms();
		if (now >= deadline)
			return rc == -EAGAIN ? (r->last_rc < 0 ? r->last_rc : -EIO) : rc;
		until = r->next_try_ms < deadline ? r->next_try_ms : deadline;
		if (r->c == NULL && until > now) {
			ts.tv_sec = (until - now) / 1000;
			ts.tv_nsec = ((until - now) % 1000) * 1000000;
			nanosleep(&ts, NULL);
		}
	}
}

struct ctl_redis *
ctl_redis_open(const struct ctl_redis_conf *conf, char *err, size_t errlen)
{
	struct ctl_redis *r;
	const char *ns;
	int rc;

	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (ctl_redis_url_parse(conf ? conf->url : NULL, &r->url, err, errlen) < 0) {
		free(r);
		return NULL;
	}
	ns = conf && conf->ns ? conf->ns : CTL_NS_DEFAULT;
	if (strlen(ns) >= sizeof(r->ns)) {
		snprintf(err, errlen, "redis namespace '%s' too long", ns);
		free(r);
		return NULL;
	}
	strcpy(r->ns, ns);
	if (r->url.path[0])
		snprintf(r->where, sizeof(r->where), "%s", r->url.path);
	else if (strchr(r->url.host, ':'))
		snprintf(r->where, sizeof(r->where), "[%s]:%d", r->url.host, r->url.port);
	else
		snprintf(r->where, sizeof(r->where), "%s:%d", r->url.host, r->url.port);
	r->connect_timeout_ms = conf && conf->connect_timeout_ms > 0 ?
		conf->connect_timeout_ms : 2000;
	r->cmd_timeout_ms = conf && conf->cmd_timeout_ms ? conf->cmd_timeout_ms : 5000;
	r->backoff_max_ms = conf && conf->backoff_max_ms > 0 ? conf->backoff_max_ms : 5000;
	r->backoff_ms = BACKOFF_MIN_MS;
	rc = connect_start(r);
	while (rc == 0 && r->connecting)
		rc = connect_finish(r, r->connect_timeout_ms);
	if (rc < 0) {
		snprintf(err, errlen, "%s", r->err);
		free(r);
		return NULL;
	}
	return r;
}

void
ctl_redis_close(struct ctl_redis *r)
{
	if (r == NULL)
		return;
	drop_ctx(r);
	free(r);
}

const char *
ctl_redis_ns(const struct ctl_redis *r)
{
	return r->ns;
}

const char *
ctl_redis_where(const struct ctl_redis *r)
{
	return r->where;
}

const char *
ctl_redis_error(const struct ctl_redis *r)
{
	return r->err[0] ? r->err : "no error";
}

int
ctl_redis_connected(const struct ctl_redis *r)
{
	return r->c != NULL && !r->connecting;
}

int
ctl_redis_key(const struct ctl_redis *r, char *buf, size_t cap,
	const char *fmt, ...)
{
	va_list ap;
	size_t n = strlen(r->ns);
	int m;

	if (cap == 0)
		return -ENAMETOOLONG;
	if (n >= cap) {
		buf[0] = '\0';
		return -ENAMETOOLONG;
	}
	memcpy(buf, r->ns, n);
	va_start(ap, fmt);
	m = vsnprintf(buf + n, cap - n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= cap - n) {
		buf[0] = '\0';
		return -ENAMETOOLONG;
	}
	return (int)n + m;
}

int
ctl_redis_set_timeout(struct ctl_redis *r, int ms)
{
	r->cmd_timeout_ms = ms;
	if (r->c == NULL || r->connecting)
		return 0;	/* connect_finish sets it */
	/* hiredis 0.14 cannot clear a timeout: a huge one stands for none */
	if (redisSetTimeout(r->c, ms_tv(ms < 0 ? 86400 * 1000 : ms)) != REDIS_OK) {
		broken(r);
		return -EIO;
	}
	return 0;
}

static int
ready(struct ctl_redis *r)
{
	int rc = ctl_redis_ensure(r);

	if (rc == -EAGAIN && r->err[0] == '\0')
		set_err(r, "not connected (reconnect back-off)");
	return rc;
}

/* A plain command would read a pipelined reply as its own. */
static int
busy(struct ctl_redis *r)
{
	if (r->pending == 0)
		return 0;
	set_err(r, "%u pipelined replies not read yet", r->pending);
	return 1;
}

redisReply *
ctl_redis_cmdv(struct ctl_redis *r, int argc, const char **argv,
	const size_t *argvlen)
{
	redisReply *rep;

	if (busy(r) || ready(r) < 0)
		return NULL;
	rep = redisCommandArgv(r->c, argc, argv, argvlen);
	if (rep == NULL)
		broken(r);
	return rep;
}

redisReply *
ctl_redis_cmd(struct ctl_redis *r, const char *fmt, ...)
{
	redisReply *rep;
	va_list ap;

	if (busy(r) || ready(r) < 0)
		return NULL;
	va_start(ap, fmt);
	rep = redisvCommand(r->c, fmt, ap);
	va_end(ap);
	if (rep == NULL)
		broken(r);
	return rep;
}

int
ctl_redis_append(struct ctl_redis *r, const char *fmt, ...)
{
	va_list ap;
	int rc;

	rc = ready(r);
	if (rc < 0)
		return rc;
	va_start(ap, fmt);
	rc = redisvAppendCommand(r->c, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK) {
		set_err(r, "cannot queue command (out of memory or bad format)");
		return -ENOMEM;
	}
	r->pending++;
	return 0;
}

int
ctl_redis_appendv(struct ctl_redis *r, int argc, const char **argv,
	const size_t *argvlen)
{
	int rc = ready(r);

	if (rc < 0)
		return rc;
	if (redisAppendCommandArgv(r->c, argc, argv, argvlen) != REDIS_OK) {
		set_err(r, "cannot queue command (out of memory)");
		return -ENOMEM;
	}
	r->pending++;
	return 0;
}

int
ctl_redis_reply(struct ctl_redis *r, redisReply **reply)
{
	void *rep = NULL;

	*reply = NULL;
	if (r->c == NULL || r->pending == 0) {
		if (r->c != NULL)
			set_err(r, "no pipelined command to read a reply for");
		return -EIO;
	}
	if (redisGetReply(r->c, &rep) != REDIS_OK || rep == NULL) {
		broken(r);
		return -EIO;
	}
	r->pending--;
	*reply = rep;
	return 0;
}

unsigned
ctl_redis_pending(const struct ctl_redis *r)
{
	return r->pending;
}

int
ctl_redis_is_noscript(const redisReply *reply)
{
	return reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
	       strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

int
ctl_redis_script_load(struct ctl_redis *r, struct ctl_redis_script *s)
{
	redisReply *rep = ctl_redis_cmd(r, "SCRIPT LOAD %s", s->src);

	if (rep == NULL)
		return -EIO;
	if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
		set_err(r, "SCRIPT LOAD failed: %s",
			rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		freeReplyObject(rep);
		return -EINVAL;
	}
	memcpy(s->sha, rep->str, 40);
	s->sha[40] = '\0';
	freeReplyObject(rep);
	return 0;
}

/* argv with "EVALSHA sha nkeys" in front; small scripts only need a few
 * arguments, large ones (batches) pass hundreds: allocate. */
static int
eval_argv(struct ctl_redis_script *s, int nkeys, int argc, const char **argv,
	const size_t *argvlen, const char ***av, size_t **al, char *nk, size_t nkcap)
{
	int i;

	*av = malloc(sizeof(**av) * (size_t)(argc + 3));
	*al = malloc(sizeof(**al) * (size_t)(argc + 3));
	if (*av == NULL || *al == NULL) {
		free(*av);
		free(*al);
		return -ENOMEM;
	}
	snprintf(nk, nkcap, "%d", nkeys);
	(*av)[0] = "EVALSHA";
	(*al)[0] = 7;
	(*av)[1] = s->sha;
	(*al)[1] = 40;
	(*av)[2] = nk;
	(*al)[2] = strlen(nk);
	for (i = 0; i < argc; i++) {
		(*av)[i + 3] = argv[i];
		(*al)[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
	}
	return 0;
}

redisReply *
ctl_redis_eval(struct ctl_redis *r, struct ctl_redis_script *s, int nkeys,
	int argc, const char **argv, const size_t *argvlen)
{
	const char **av;
	size_t *al;
	char nk[16];
	redisReply *rep;
	int tries;

	if (s->sha[0] == '\0' && ctl_redis_script_load(r, s) < 0)
		return NULL;
	if (eval_argv(s, nkeys, argc, argv, argvlen, &av, &al, nk, sizeof(nk)) < 0) {
		set_err(r, "out of memory");
		return NULL;
	}
	for (tries = 0;; tries++) {
		rep = ctl_redis_cmdv(r, argc + 3, av, al);
		if (rep == NULL || !ctl_redis_is_noscript(rep) || tries == 1)
			break;
		freeReplyObject(rep);
		if (ctl_redis_script_load(r, s) < 0) {
			rep = NULL;
			break;
		}
	}
	free(av);
	free(al);
	return rep;
}

int
ctl_redis_eval_append(struct ctl_redis *r, struct ctl_redis_script *s,
	int nkeys, int argc, const char **argv, const size_t *argvlen)
{
	const char **av;
	size_t *al;
	char nk[16];
	int rc;

	if (s->sha[0] == '\0') {
		if (r->pending) {
			set_err(r, "script not loaded before pipelining");
			return -EINVAL;
		}
		rc = ctl_redis_script_load(r, s);
		if (rc < 0)
			return rc;
	}
	if (eval_argv(s, nkeys, argc, argv, argvlen, &av, &al, nk, sizeof(nk)) < 0)
		return -ENOMEM;
	rc = ctl_redis_appendv(r, argc + 3, av, al);
	free(av);
	free(al);
	return rc;
}

int
ctl_redis_reply_int(const redisReply *reply, long long *v)
{
	char *end;

	if (reply == NULL)
		return -EPROTO;
	if (reply->type == REDIS_REPLY_INTEGER) {
		*v = reply->integer;
		return 0;
	}
	if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
		errno = 0;
		*v = strtoll(reply->str, &end, 10);
		if (errno == 0 && end != reply->str && *end == '\0')
			return 0;
	}
	return -EPROTO;
}

const char *
ctl_redis_hget(const redisReply *h, const char *f)
{
	size_t i;

	if (h == NULL || h->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (i = 0; i + 1 < h->elements; i += 2)
		if (h->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(h->element[i]->str, f) == 0 &&
		    h->element[i + 1]->type == REDIS_REPLY_STRING)
			return h->element[i + 1]->str;
	return NULL;
}

long long
ctl_redis_hget_int(const redisReply *h, const char *f, long long dflt)
{
	const char *s = ctl_redis_hget(h, f);
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return dflt;
	errno = 0;
	v = strtoll(s, &end, 10);
	return errno || *end ? dflt : v;
}
