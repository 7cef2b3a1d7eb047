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

#include "ctl_cluster.h"
#include "ctl_redis.h"

#define BACKOFF_MIN_MS 100
#define REFRESH_MIN_MS 100     /* cluster: slot map read at most this often */
#define REDIRECTS_MAX  5       /* MOVED/ASK followed per command */

/* One connection: the only one to a single Redis, or one per cluster node. */
struct conn {
	redisContext *c;
	char host[256];          /* TCP host, "" for a unix socket */
	int port;                /* 0: a cluster node slot not used yet */
	char path[256];          /* unix socket path, "" for TCP */
	char where[300];         /* "host:port" for messages */
	int backoff_ms;          /* next delay after a failed attempt */
	int64_t next_try_ms;     /* monotonic: no attempt before this */
	int connecting;          /* c is a non-blocking connect under way */
	int64_t connect_deadline; /* monotonic: the connect fails after this */
	int last_rc;             /* result of the last connect attempt */
	int tried;               /* a connect was ever started */
	unsigned unread;         /* cluster: pipelined here, reply not read */
};

/* A pipelined command in cluster mode, kept until its reply is handed
 * out so a MOVED or ASK reply can be followed. */
struct pent {
	char *cmd;               /* formatted (RESP), redisFreeCommand */
	size_t len;
	int node;                /* map node it was sent to */
	int collected;           /* its reply was read (reply NULL: lost) */
	redisReply *reply;
};

struct ctl_redis {
	struct conn seed;        /* the URL's server; the only one unless a cluster */
	struct ctl_redis_url url;
	char ns[64];
	char err[512];
	int connect_timeout_ms;
	int cmd_timeout_ms;
	int backoff_max_ms;
	unsigned pending;        /* appended, reply not read */
	/* cluster mode (ctl_cluster.h) */
	int cluster;
	struct ctl_cluster_map *map;
	struct conn *nodes;      /* CTL_CLUSTER_NODES_MAX, indexed as map->nodes */
	unsigned ns_slot;        /* the namespace's slot: where keyless commands go */
	int map_stale;           /* a node broke or a slot moved: read the map */
	int64_t next_refresh_ms;
	struct pent *pq;         /* ring of pipelined commands */
	unsigned pq_head, pq_len, pq_cap;
	uint64_t redirects, map_refreshes;
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
vset_err(struct ctl_redis *r, const char *where, const char *fmt, va_list ap)
{
	int n;

	n = snprintf(r->err, sizeof(r->err), "redis %s: ", where);
	if (n < 0 || (size_t)n >= sizeof(r->err))
		return;
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
}

static void
set_err(struct ctl_redis *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
set_err(struct ctl_redis *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_err(r, r->seed.where, fmt, ap);
	va_end(ap);
}

/* An error of one connection, named by its own address. */
static void
conn_err(struct ctl_redis *r, const struct conn *cn, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
conn_err(struct ctl_redis *r, const struct conn *cn, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_err(r, cn->where, fmt, ap);
	va_end(ap);
}

static void
conn_where(struct conn *cn)
{
	if (cn->path[0])
		snprintf(cn->where, sizeof(cn->where), "%s", cn->path);
	else if (strchr(cn->host, ':'))
		snprintf(cn->where, sizeof(cn->where), "[%s]:%d", cn->host, cn->port);
	else
		snprintf(cn->where, sizeof(cn->where), "%s:%d", cn->host, cn->port);
}

static void
drop_ctx(struct ctl_redis *r, struct conn *cn)
{
	if (cn->c)
		redisFree(cn->c);
	cn->c = NULL;
	cn->connecting = 0;
	cn->unread = 0;
	if (cn == &r->seed)
		r->pending = 0;
}

/* A command on a live context failed at the connection level. */
static void
broken(struct ctl_redis *r, struct conn *cn)
{
	if (cn->c && cn->c->err)
		conn_err(r, cn, "%s", cn->c->errstr[0] ? cn->c->errstr : "connection lost");
	else
		conn_err(r, cn, "connection lost");
	drop_ctx(r, cn);
	/* reconnect at once on the next command; back off only if that fails */
	cn->next_try_ms = 0;
	/* the node may be gone for good (failover): read the map again */
	r->map_stale = 1;
}

/* Starts a non-blocking connect; connect_finish completes it. */
static int
connect_start(struct ctl_redis *r, struct conn *cn)
{
	int rc;

	cn->tried = 1;
	if (cn->path[0])
		cn->c = redisConnectUnixNonBlock(cn->path);
	else
		cn->c = redisConnectNonBlock(cn->host, cn->port);
	if (cn->c == NULL) {
		conn_err(r, cn, "out of memory");
		return -ENOMEM;
	}
	if (cn->c->err) {
		conn_err(r, cn, "%s", cn->c->errstr);
		rc = cn->c->err == REDIS_ERR_IO && errno == ECONNREFUSED ?
			-ECONNREFUSED : -EIO;
		drop_ctx(r, cn);
		return rc;
	}
	cn->connecting = 1;
	cn->connect_deadline = ctl_mono_ms() + r->connect_timeout_ms;
	return 0;
}

/*
 * Waits up to wait_ms (0: not at all) for the connect connect_start began.
 * -EAGAIN while it is still under way and its deadline has not passed.
 * Connected, the context becomes blocking with the reply timeout, and
 * AUTH and SELECT are done.
 */
static int
connect_finish(struct ctl_redis *r, struct conn *cn, int wait_ms)
{
	struct pollfd p = { .fd = cn->c->fd, .events = POLLOUT };
	int64_t left = cn->connect_deadline - ctl_mono_ms();
	socklen_t len = sizeof(int);
	redisReply *rep;
	int n, soerr = 0, fl;

	if (wait_ms > left)
		wait_ms = left > 0 ? (int)left : 0;
	n = poll(&p, 1, wait_ms);
	if (n < 0 && errno != EINTR) {
		conn_err(r, cn, "poll: %s", strerror(errno));
		drop_ctx(r, cn);
		return -EIO;
	}
	if (n <= 0) {
		if (ctl_mono_ms() < cn->connect_deadline)
			return -EAGAIN;
		conn_err(r, cn, "connect timed out after %d ms", r->connect_timeout_ms);
		drop_ctx(r, cn);
		return -EIO;
	}
	if (getsockopt(cn->c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr != 0) {
		conn_err(r, cn, "%s", strerror(soerr));
		drop_ctx(r, cn);
		return soerr == ECONNREFUSED ? -ECONNREFUSED : -EIO;
	}
	fl = fcntl(cn->c->fd, F_GETFL);
	if (fl < 0 || fcntl(cn->c->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		conn_err(r, cn, "fcntl: %s", strerror(errno));
		drop_ctx(r, cn);
		return -EIO;
	}
	cn->c->flags |= REDIS_BLOCK;
	cn->connecting = 0;
	if (!cn->path[0])
		(void)redisEnableKeepAlive(cn->c);
	if (redisSetTimeout(cn->c, ms_tv(r->cmd_timeout_ms < 0 ? 86400 * 1000 :
	    r->cmd_timeout_ms)) != REDIS_OK) {
		conn_err(r, cn, "cannot set timeout");
		drop_ctx(r, cn);
		return -EIO;
	}
	if (r->url.password[0]) {
		if (r->url.user[0])
			rep = redisCommand(cn->c, "AUTH %s %s", r->url.user, r->url.password);
		else
			rep = redisCommand(cn->c, "AUTH %s", r->url.password);
		if (rep == NULL) {
			broken(r, cn);
			return -EIO;
		}
		if (rep->type == REDIS_REPLY_ERROR) {
			conn_err(r, cn, "AUTH refused: %s", rep->str);
			freeReplyObject(rep);
			drop_ctx(r, cn);
			return -EACCES;
		}
		freeReplyObject(rep);
	}
	if (r->url.db) {
		rep = redisCommand(cn->c, "SELECT %d", r->url.db);
		if (rep == NULL) {
			broken(r, cn);
			return -EIO;
		}
		if (rep->type == REDIS_REPLY_ERROR) {
			conn_err(r, cn, "SELECT %d refused: %s", r->url.db, rep->str);
			freeReplyObject(rep);
			drop_ctx(r, cn);
			return -EINVAL;
		}
		freeReplyObject(rep);
	}
	r->err[0] = '\0';
	cn->backoff_ms = BACKOFF_MIN_MS;
	cn->next_try_ms = 0;
	return 0;
}

/*
 * One step of a (re)connect: start one once the back-off has passed, or
 * look at the one under way, waiting up to wait_ms. A failure arms the
 * back-off.
 */
static int
attempt(struct ctl_redis *r, struct conn *cn, int wait_ms)
{
	int rc;

	if (cn->c == NULL) {
		if (ctl_mono_ms() < cn->next_try_ms)
			return -EAGAIN;
		rc = connect_start(r, cn);
		if (rc == 0)
			rc = connect_finish(r, cn, wait_ms);
	} else {
		rc = connect_finish(r, cn, wait_ms);
	}
	if (rc == -EAGAIN) {
		if (r->err[0] == '\0')
			conn_err(r, cn, "connecting");
		return rc;	/* the error that broke the last connection stays */
	}
	cn->last_rc = rc;
	if (rc < 0) {
		cn->next_try_ms = ctl_mono_ms() + cn->backoff_ms;
		cn->backoff_ms *= 2;
		if (cn->backoff_ms > r->backoff_max_ms)
			cn->backoff_ms = r->backoff_max_ms;
	}
	return rc;
}

static int
conn_up(const struct conn *cn)
{
	return cn->c != NULL && !cn->connecting;
}

/*
 * A cluster node's connection, made usable without blocking the caller
 * for long: the first connect to a node waits for it (a tool's first
 * command to a node must not fail for want of a connect on loopback);
 * reconnects never wait, as for a single Redis.
 */
static int
node_ready(struct ctl_redis *r, struct conn *cn)
{
	int rc;

	if (conn_up(cn))
		return 0;
	rc = attempt(r, cn, cn->tried ? 0 : r->connect_timeout_ms);
	if (rc == -EAGAIN && !cn->tried)
		rc = attempt(r, cn, r->connect_timeout_ms);
	return rc;
}

/* ---- cluster: the slot map ---- */

/* The connection of map node i (its address copied in when first used). */
static struct conn *
node_conn(struct ctl_redis *r, int i)
{
	struct conn *cn = &r->nodes[i];

	if (cn->port == 0) {
		snprintf(cn->host, sizeof(cn->host), "%s", r->map->nodes[i].host);
		cn->port = r->map->nodes[i].port;
		cn->backoff_ms = BACKOFF_MIN_MS;
		conn_where(cn);
	}
	return cn;
}

/*
 * Read CLUSTER SLOTS from one node and merge it into r->map (node
 * indices never change: the connections hang off them).
 * @return 0, -EIO (the node is unreachable) or -EPROTO (no usable map).
 */
static int
map_read(struct ctl_redis *r, struct conn *cn)
{
	struct ctl_cluster_map *m;
	uint16_t idx[CTL_CLUSTER_NODES_MAX];
	redisReply *rep;
	char err[256];
	int i, s;

	if (cn->unread > 0 || node_ready(r, cn) < 0)
		return -EIO;
	rep = redisCommand(cn->c, "CLUSTER SLOTS");
	if (rep == NULL) {
		broken(r, cn);
		return -EIO;
	}
	m = malloc(sizeof(*m));
	if (m == NULL) {
		freeReplyObject(rep);
		return -ENOMEM;
	}
	if (ctl_cluster_map_parse(rep, cn->host, m, err, sizeof(err)) < 0) {
		conn_err(r, cn, "%s", err);
		freeReplyObject(rep);
		free(m);
		return -EPROTO;
	}
	freeReplyObject(rep);
	if (m->slots_served == 0) {
		conn_err(r, cn, "CLUSTER SLOTS: no slot is served");
		free(m);
		return -EPROTO;
	}
	for (i = 0; i < m->nnodes; i++) {
		int k = ctl_cluster_node_find(r->map, m->nodes[i].host, m->nodes[i].port, 1);

		if (k < 0) {
			conn_err(r, cn, "more than %d cluster nodes", CTL_CLUSTER_NODES_MAX);
			free(m);
			return -EPROTO;
		}
		idx[i] = (uint16_t)k;
	}
	memset(r->map->primary, 0, sizeof(r->map->primary));
	r->map->slots_served = m->slots_served;
	for (s = 0; s < CTL_CLUSTER_SLOTS; s++) {
		uint16_t o = m->owner[s];

		r->map->owner[s] = o == CTL_CLUSTER_NO_NODE ? o : idx[o];
		if (o != CTL_CLUSTER_NO_NODE)
			r->map->primary[idx[o]] = 1;
	}
	free(m);
	return 0;
}

/*
 * Read the slot map again from the first node that answers: those
 * connected first, then the others (replicas too: after a failover the
 * promoted one knows). At most every REFRESH_MIN_MS unless forced.
 */
static int
map_refresh(struct ctl_redis *r, int force)
{
	int64_t now = ctl_mono_ms();
	int i, pass, rc = -EIO;

	if (!force && now < r->next_refresh_ms)
		return -EAGAIN;
	r->next_refresh_ms = now + REFRESH_MIN_MS;
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < r->map->nnodes; i++) {
			struct conn *cn = node_conn(r, i);

			if (conn_up(cn) != (pass == 0))
				continue;
			rc = map_read(r, cn);
			if (rc == 0) {
				r->map_refreshes++;
				r->map_stale = r->map->slots_served < CTL_CLUSTER_SLOTS;
				return 0;
			}
		}
	return rc;
}

/* Node serving slot, reading the map first when it may be out of date. */
static int
slot_node(struct ctl_redis *r, unsigned slot)
{
	if (r->map_stale)
		(void)map_refresh(r, 0);
	if (r->map->owner[slot] == CTL_CLUSTER_NO_NODE) {
		(void)map_refresh(r, 1);
		if (r->map->owner[slot] == CTL_CLUSTER_NO_NODE) {
			set_err(r, "cluster: slot %u is served by no node", slot);
			return -1;
		}
	}
	return r->map->owner[slot];
}

/* The slot of a formatted command, the namespace's for keyless ones. */
static unsigned
cmd_slot(struct ctl_redis *r, const char *cmd, size_t len, int *all)
{
	const char *argv[16];
	size_t argvlen[16];
	int argc, k;

	*all = 0;
	argc = ctl_cluster_cmd_argv(cmd, len, 16, argv, argvlen);
	if (argc <= 0)
		return r->ns_slot;
	k = ctl_cluster_key_arg(argc < 16 ? argc : 16, argv, argvlen);
	if (k == CTL_CLUSTER_ALL)
		*all = 1;
	if (k <= 0 || k >= 16)
		return r->ns_slot;
	return ctl_cluster_slot(argv[k], argvlen[k]);
}

/* A node named by a redirect, added to the map if new. */
static int
redirect_node(struct ctl_redis *r, const struct conn *from, const char *host, int port)
{
	int i = ctl_cluster_node_find(r->map, host[0] ? host : from->host, port, 1);

	if (i < 0)
		set_err(r, "cluster: redirect to %s:%d: too many nodes", host, port);
	return i;
}

/*
 * Send one formatted command to node i, following MOVED and ASK up to
 * REDIRECTS_MAX times. Never re-sends after an I/O error: the node may
 * have executed it.
 * @return the reply, or NULL (r->err says why).
 */
static redisReply *
cluster_exec(struct ctl_redis *r, int node, const char *cmd, size_t len, int asking)
{
	char host[CTL_CLUSTER_HOST_MAX];
	redisReply *rep = NULL;
	unsigned slot;
	int hop, kind, port;

	for (hop = 0; hop <= REDIRECTS_MAX; hop++) {
		struct conn *cn = node_conn(r, node);
		void *x = NULL;

		if (node_ready(r, cn) < 0) {
			r->map_stale = 1;	/* gone for good? another may serve it */
			return NULL;
		}
		if (asking && redisAppendCommand(cn->c, "ASKING") != REDIS_OK) {
			set_err(r, "out of memory");
			return NULL;
		}
		if (redisAppendFormattedCommand(cn->c, cmd, len) != REDIS_OK) {
			set_err(r, "out of memory");
			return NULL;
		}
		if (asking) {
			if (redisGetReply(cn->c, &x) != REDIS_OK || x == NULL) {
				broken(r, cn);
				return NULL;
			}
			freeReplyObject(x);
			x = NULL;
		}
		if (redisGetReply(cn->c, &x) != REDIS_OK || x == NULL) {
			broken(r, cn);
			return NULL;
		}
		rep = x;
		if (rep->type != REDIS_REPLY_ERROR)
			return rep;
		kind = ctl_cluster_redirect(rep->str, &slot, host, sizeof(host), &port);
		if (kind == 0 || hop == REDIRECTS_MAX)
			return rep;
		node = redirect_node(r, cn, host, port);
		if (node < 0)
			return rep;
		freeReplyObject(rep);
		rep = NULL;
		r->redirects++;
		asking = kind == 2;
		if (kind == 1) {
			/* the slot moved for good: note it, and read the map soon */
			r->map->owner[slot] = (uint16_t)node;
			r->map->primary[node] = 1;
			r->map_stale = 1;
		}
	}
	return rep;
}

/* A command for every primary (SCRIPT LOAD): the reply of the namespace's
 * node; the others are best effort (a NOSCRIPT later loads again). */
static redisReply *
cluster_all(struct ctl_redis *r, const char *cmd, size_t len)
{
	redisReply *mine = NULL;
	int ns_node = slot_node(r, r->ns_slot), i;

	if (ns_node < 0)
		return NULL;
	for (i = 0; i < r->map->nnodes; i++) {
		redisReply *rep;

		if (!r->map->primary[i] || i == ns_node)
			continue;
		rep = cluster_exec(r, i, cmd, len, 0);
		if (rep)
			freeReplyObject(rep);
	}
	mine = cluster_exec(r, ns_node, cmd, len, 0);
	return mine;
}

static redisReply *
cluster_cmd(struct ctl_redis *r, char *cmd, int len)
{
	redisReply *rep;
	unsigned slot;
	int all, node;

	if (len < 0) {
		set_err(r, "cannot format command (out of memory or bad format)");
		return NULL;
	}
	slot = cmd_slot(r, cmd, (size_t)len, &all);
	if (all) {
		rep = cluster_all(r, cmd, (size_t)len);
	} else {
		node = slot_node(r, slot);
		rep = node < 0 ? NULL : cluster_exec(r, node, cmd, (size_t)len, 0);
	}
	redisFreeCommand(cmd);
	return rep;
}

/* Queue a formatted command on its node: one pq entry, reply read later. */
static int
cluster_append(struct ctl_redis *r, char *cmd, int len)
{
	struct conn *cn;
	struct pent *e;
	unsigned slot;
	int all, node, rc;

	if (len < 0) {
		set_err(r, "cannot queue command (out of memory or bad format)");
		return -ENOMEM;
	}
	slot = cmd_slot(r, cmd, (size_t)len, &all);
	node = slot_node(r, slot);
	if (node < 0) {
		redisFreeCommand(cmd);
		return -EAGAIN;
	}
	cn = node_conn(r, node);
	rc = node_ready(r, cn);
	if (rc < 0) {
		r->map_stale = 1;
		redisFreeCommand(cmd);
		return rc;
	}
	if (r->pq_len == r->pq_cap) {
		unsigned cap = r->pq_cap ? r->pq_cap * 2 : 64, i;
		struct pent *q = malloc(sizeof(*q) * cap);

		if (q == NULL) {
			redisFreeCommand(cmd);
			set_err(r, "out of memory");
			return -ENOMEM;
		}
		for (i = 0; i < r->pq_len; i++)
			q[i] = r->pq[(r->pq_head + i) % r->pq_cap];
		free(r->pq);
		r->pq = q;
		r->pq_cap = cap;
		r->pq_head = 0;
	}
	if (redisAppendFormattedCommand(cn->c, cmd, (size_t)len) != REDIS_OK) {
		redisFreeCommand(cmd);
		set_err(r, "cannot queue command (out of memory)");
		return -ENOMEM;
	}
	e = &r->pq[(r->pq_head + r->pq_len) % r->pq_cap];
	memset(e, 0, sizeof(*e));
	e->cmd = cmd;
	e->len = (size_t)len;
	e->node = node;
	r->pq_len++;
	cn->unread++;
	r->pending++;
	return 0;
}

static void
pq_drop(struct ctl_redis *r)
{
	unsigned i;

	for (i = 0; i < r->pq_len; i++) {
		struct pent *e = &r->pq[(r->pq_head + i) % r->pq_cap];

		redisFreeCommand(e->cmd);
		if (e->reply)
			freeReplyObject(e->reply);
	}
	r->pq_len = 0;
	r->pq_head = 0;
	r->pending = 0;
	if (r->nodes)
		for (i = 0; i < (unsigned)r->map->nnodes; i++)
			r->nodes[i].unread = 0;
}

/*
 * Read the replies of every queued command not read yet, node by node in
 * the order they were queued (each node answers in order), then follow
 * redirects: no node has an unread reply by then, so a redirected
 * command can be sent and read on its own.
 */
static void
pq_collect(struct ctl_redis *r)
{
	unsigned i;

	for (i = 0; i < r->pq_len; i++) {
		struct pent *e = &r->pq[(r->pq_head + i) % r->pq_cap];
		struct conn *cn = &r->nodes[e->node];
		void *x = NULL;

		if (e->collected)
			continue;
		e->collected = 1;
		if (cn->c == NULL)
			continue;	/* broke earlier in this loop: reply lost */
		if (redisGetReply(cn->c, &x) != REDIS_OK || x == NULL) {
			broken(r, cn);
			continue;
		}
		cn->unread--;
		e->reply = x;
	}
	for (i = 0; i < r->pq_len; i++) {
		struct pent *e = &r->pq[(r->pq_head + i) % r->pq_cap];
		char host[CTL_CLUSTER_HOST_MAX];
		unsigned slot;
		int kind, port, node;

		if (e->reply == NULL || e->reply->type != REDIS_REPLY_ERROR)
			continue;
		kind = ctl_cluster_redirect(e->reply->str, &slot, host, sizeof(host), &port);
		if (kind == 0)
			continue;
		node = redirect_node(r, &r->nodes[e->node], host, port);
		if (node < 0)
			continue;
		freeReplyObject(e->reply);
		r->redirects++;
		if (kind == 1) {
			r->map->owner[slot] = (uint16_t)node;
			r->map->primary[node] = 1;
			r->map_stale = 1;
		}
		e->reply = cluster_exec(r, node, e->cmd, e->len, kind == 2);
	}
}

static int
cluster_reply(struct ctl_redis *r, redisReply **reply)
{
	struct pent *e;

	if (r->pq_len == 0) {
		set_err(r, "no pipelined command to read a reply for");
		return -EIO;
	}
	e = &r->pq[r->pq_head];
	if (!e->collected)
		pq_collect(r);
	if (e->reply == NULL) {
		/* as on one connection: a lost reply loses the others queued */
		if (r->err[0] == '\0')
			set_err(r, "connection lost");
		pq_drop(r);
		return -EIO;
	}
	*reply = e->reply;
	redisFreeCommand(e->cmd);
	r->pq_head = (r->pq_head + 1) % r->pq_cap;
	r->pq_len--;
	r->pending--;
	return 0;
}

/*
 * Connect to a seed, and find out whether it is a cluster node: CLUSTER
 * SLOTS answers with the map, or with an error on a plain Redis.
 * @return 0 (r->cluster says which), or a negative errno with err set.
 */
static int
cluster_detect(struct ctl_redis *r, char *err, size_t errlen)
{
	redisReply *rep;
	int i, rc;

	rep = redisCommand(r->seed.c, "CLUSTER SLOTS");
	if (rep == NULL) {
		broken(r, &r->seed);
		snprintf(err, errlen, "%s", r->err);
		return -EIO;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		freeReplyObject(rep);	/* cluster support disabled: one Redis */
		return 0;
	}
	freeReplyObject(rep);
	if (r->url.path[0]) {
		snprintf(err, errlen, "redis %s: a cluster node must be given as redis://host:port",
			r->seed.where);
		return -EINVAL;
	}
	if (!ctl_cluster_ns_tagged(r->ns)) {
		snprintf(err, errlen, "redis %s is a cluster node, and the namespace '%s' has no "
			"{hash tag}: every key of a campaign's scripts must be in one slot "
			"(use e.g. '{mp}:', README \"Redis Cluster\")", r->seed.where, r->ns);
		return -EINVAL;
	}
	r->map = calloc(1, sizeof(*r->map));
	r->nodes = calloc(CTL_CLUSTER_NODES_MAX, sizeof(*r->nodes));
	if (r->map == NULL || r->nodes == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (i = 0; i < CTL_CLUSTER_SLOTS; i++)
		r->map->owner[i] = CTL_CLUSTER_NO_NODE;
	r->cluster = 1;
	r->ns_slot = ctl_cluster_slot(r->ns, strlen(r->ns));
	/* the seed becomes the map's node of its address: its connection too */
	i = ctl_cluster_node_find(r->map, r->url.host, r->url.port, 1);
	node_conn(r, i);
	r->nodes[i].c = r->seed.c;
	r->nodes[i].tried = 1;
	r->seed.c = NULL;
	rc = map_read(r, &r->nodes[i]);
	if (rc < 0) {
		snprintf(err, errlen, "%s", r->err);
		return rc;
	}
	r->map_stale = r->map->slots_served < CTL_CLUSTER_SLOTS;
	/* every key of a tagged namespace is there: connect now, as to one Redis */
	i = r->map->owner[r->ns_slot];
	if (i != CTL_CLUSTER_NO_NODE && node_ready(r, node_conn(r, i)) < 0) {
		snprintf(err, errlen, "%s", r->err);
		return -EIO;
	}
	return 0;
}

/* The connection commands without a key, ensure and wait are about. */
static struct conn *
main_conn(struct ctl_redis *r)
{
	int node;

	if (!r->cluster)
		return &r->seed;
	node = slot_node(r, r->ns_slot);
	return node < 0 ? NULL : node_conn(r, node);
}

int
ctl_redis_ensure(struct ctl_redis *r)
{
	struct conn *cn = main_conn(r);
	int rc;

	if (cn == NULL)
		return -EAGAIN;
	if (conn_up(cn))
		return 0;
	rc = attempt(r, cn, 0);
	if (rc < 0 && r->cluster)
		r->map_stale = 1;
	return rc;
}

int
ctl_redis_wait(struct ctl_redis *r, int wait_ms)
{
	int64_t deadline = ctl_mono_ms() + wait_ms;
	int64_t now, until;
	struct timespec ts;
	struct conn *cn;
	int rc;

	for (;;) {
		now = ctl_mono_ms();
		cn = main_conn(r);
		if (cn != NULL && conn_up(cn))
			return 0;
		rc = cn == NULL ? -EAGAIN :
			attempt(r, cn, (int)(deadline > now ? deadline - now : 0));
		if (rc == 0)
			return 0;
		if (rc == -EACCES || rc == -EINVAL)
			return rc;  /* configuration, not transient */
		now = ctl_mono_ms();
		if (now >= deadline)
			return rc == -EAGAIN ? (cn && cn->last_rc < 0 ? cn->last_rc : -EIO) : rc;
		until = cn != NULL ? cn->next_try_ms : now + REFRESH_MIN_MS;
		if (until > deadline)
			until = deadline;
		if ((cn == NULL || cn->c == NULL) && until > now) {
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
	snprintf(r->seed.host, sizeof(r->seed.host), "%s", r->url.host);
	snprintf(r->seed.path, sizeof(r->seed.path), "%s", r->url.path);
	r->seed.port = r->url.port;
	conn_where(&r->seed);
	r->connect_timeout_ms = conf && conf->connect_timeout_ms > 0 ?
		conf->connect_timeout_ms : 2000;
	r->cmd_timeout_ms = conf && conf->cmd_timeout_ms ? conf->cmd_timeout_ms : 5000;
	r->backoff_max_ms = conf && conf->backoff_max_ms > 0 ? conf->backoff_max_ms : 5000;
	r->seed.backoff_ms = BACKOFF_MIN_MS;
	rc = connect_start(r, &r->seed);
	while (rc == 0 && r->seed.connecting)
		rc = connect_finish(r, &r->seed, r->connect_timeout_ms);
	if (rc == 0)
		rc = cluster_detect(r, err, errlen);
	else
		snprintf(err, errlen, "%s", r->err);
	if (rc < 0) {
		ctl_redis_close(r);
		return NULL;
	}
	return r;
}

void
ctl_redis_close(struct ctl_redis *r)
{
	int i;

	if (r == NULL)
		return;
	if (r->cluster)
		pq_drop(r);
	free(r->pq);
	drop_ctx(r, &r->seed);
	if (r->nodes) {
		for (i = 0; i < CTL_CLUSTER_NODES_MAX; i++)
			drop_ctx(r, &r->nodes[i]);
		free(r->nodes);
	}
	free(r->map);
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
	return r->seed.where;
}

const char *
ctl_redis_error(const struct ctl_redis *r)
{
	return r->err[0] ? r->err : "no error";
}

int
ctl_redis_connected(const struct ctl_redis *r)
{
	int node;

	if (!r->cluster)
		return conn_up(&r->seed);
	node = r->map->owner[r->ns_slot];
	return node != CTL_CLUSTER_NO_NODE && conn_up(&r->nodes[node]) && !r->map_stale;
}

int
ctl_redis_cluster(const struct ctl_redis *r, struct ctl_redis_cluster_stats *st)
{
	int i;

	if (st) {
		memset(st, 0, sizeof(*st));
		if (r->cluster) {
			st->redirects = r->redirects;
			st->map_refreshes = r->map_refreshes;
			for (i = 0; i < r->map->nnodes; i++)
				st->primaries += r->map->primary[i];
			st->nodes = (unsigned)r->map->nnodes;
			st->slots_served = (unsigned)r->map->slots_served;
		}
	}
	return r->cluster;
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

static int
conn_timeout(struct ctl_redis *r, struct conn *cn, int ms)
{
	if (!conn_up(cn))
		return 0;	/* connect_finish sets it */
	/* hiredis 0.14 cannot clear a timeout: a huge one stands for none */
	if (redisSetTimeout(cn->c, ms_tv(ms < 0 ? 86400 * 1000 : ms)) != REDIS_OK) {
		broken(r, cn);
		return -EIO;
	}
	return 0;
}

int
ctl_redis_set_timeout(struct ctl_redis *r, int ms)
{
	int i, rc = 0;

	r->cmd_timeout_ms = ms;
	if (!r->cluster)
		return conn_timeout(r, &r->seed, ms);
	for (i = 0; i < r->map->nnodes; i++)
		if (conn_timeout(r, &r->nodes[i], ms) < 0)
			rc = -EIO;
	return rc;
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
	char *cmd;

	if (busy(r))
		return NULL;
	if (r->cluster) {
		int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);

		return cluster_cmd(r, cmd, len);
	}
	if (ready(r) < 0)
		return NULL;
	rep = redisCommandArgv(r->seed.c, argc, argv, argvlen);
	if (rep == NULL)
		broken(r, &r->seed);
	return rep;
}

redisReply *
ctl_redis_cmd(struct ctl_redis *r, const char *fmt, ...)
{
	redisReply *rep;
	va_list ap;

	if (busy(r))
		return NULL;
	if (r->cluster) {
		char *cmd = NULL;
		int len;

		va_start(ap, fmt);
		len = redisvFormatCommand(&cmd, fmt, ap);
		va_end(ap);
		return cluster_cmd(r, cmd, len);
	}
	if (ready(r) < 0)
		return NULL;
	va_start(ap, fmt);
	rep = redisvCommand(r->seed.c, fmt, ap);
	va_end(ap);
	if (rep == NULL)
		broken(r, &r->seed);
	return rep;
}

int
ctl_redis_append(struct ctl_redis *r, const char *fmt, ...)
{
	va_list ap;
	int rc;

	if (r->cluster) {
		char *cmd = NULL;
		int len;

		va_start(ap, fmt);
		len = redisvFormatCommand(&cmd, fmt, ap);
		va_end(ap);
		return cluster_append(r, cmd, len);
	}
	rc = ready(r);
	if (rc < 0)
		return rc;
	va_start(ap, fmt);
	rc = redisvAppendCommand(r->seed.c, fmt, ap);
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
	int rc;

	if (r->cluster) {
		char *cmd = NULL;
		int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);

		return cluster_append(r, cmd, len);
	}
	rc = ready(r);
	if (rc < 0)
		return rc;
	if (redisAppendCommandArgv(r->seed.c, argc, argv, argvlen) != REDIS_OK) {
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
	if (r->cluster)
		return cluster_reply(r, reply);
	if (r->seed.c == NULL || r->pending == 0) {
		if (r->seed.c != NULL)
			set_err(r, "no pipelined command to read a reply for");
		return -EIO;
	}
	if (redisGetReply(r->seed.c, &rep) != REDIS_OK || rep == NULL) {
		broken(r, &r->seed);
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
