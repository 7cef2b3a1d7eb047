/*
 * The control plane's Redis connection (hiredis 0.14, blocking context,
 * RESP2). One struct ctl_redis per thread: it is not thread safe.
 *
 * Call order:
 *   ctl_redis_open()       parse the URL, connect, AUTH, SELECT (fails
 *                          fast with a clear error when Redis is down)
 *   ctl_redis_cmd*()       one command, reply or NULL + ctl_redis_error()
 *   ctl_redis_append*() +  pipelining: queue commands, then read exactly
 *   ctl_redis_reply()      one reply per queued command, in order
 *   ctl_redis_eval()       a Lua script by EVALSHA, loading it on NOSCRIPT
 *   ctl_redis_close()
 *
 * Failures: a protocol or I/O error (connection reset, timeout) marks the
 * connection broken and the command fails; it is never silently re-sent,
 * because the server may have executed it. The next command reconnects
 * first (AUTH and SELECT again), no sooner than the back-off allows:
 * 100 ms doubling to conf.backoff_max_ms, reset by a good connect. While
 * a back-off runs, commands fail at once with -EAGAIN. A Redis error reply
 * ("-ERR ...", "-WRONGTYPE ...") is a reply, not a connection failure:
 * callers check reply->type == REDIS_REPLY_ERROR.
 *
 * Redis Cluster: when the URL's server is a cluster node (CLUSTER SLOTS
 * answers), the connection becomes one per node, found from the slot map;
 * each command goes to the primary of its key's slot (ctl_cluster.h),
 * MOVED and ASK are followed, and a node that breaks makes the map be
 * read again from any node that answers (replicas included), so a
 * failover is followed. Pipelined commands may span nodes: replies still
 * come back in the order the commands were queued. SCRIPT goes to every
 * primary. A cluster needs a namespace with a {hash tag} (every script's
 * keys in one slot) and database 0; ctl_redis_open says so otherwise.
 *
 * URLs: redis://[user[:password]@]host[:port][/db] (host may be [IPv6];
 * user and password may be %XX-escaped; port 6379; db 0), or a unix
 * socket as unix:///path[?db=N&user=U&password=P], unix:/path or a plain
 * absolute path.
 */
#ifndef CTL_REDIS_H
#define CTL_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "ctl_keys.h"

/** A parsed Redis URL. Strings are NUL-terminated, "" when absent. */
struct ctl_redis_url {
	char host[256];       /**< TCP host (no brackets), "" for unix */
	int port;             /**< TCP port */
	char path[256];       /**< unix socket path, "" for TCP */
	char user[128];       /**< ACL user ("" = default user) */
	char password[256];   /**< "" = no AUTH */
	int db;               /**< SELECT index */
};

/** Connection settings. Zeroed fields take the defaults noted. */
struct ctl_redis_conf {
	const char *url;          /**< NULL: redis://127.0.0.1:6379/0 */
	const char *ns;           /**< key namespace, NULL: "mp:" */
	int connect_timeout_ms;   /**< default 2000 */
	int cmd_timeout_ms;       /**< per reply, default 5000; < 0: none */
	int backoff_max_ms;       /**< reconnect back-off cap, default 5000 */
};

struct ctl_redis;

/**
 * Parse url into u.
 * @return 0, or -EINVAL with err naming what is wrong.
 */
int ctl_redis_url_parse(const char *url, struct ctl_redis_url *u,
	char *err, size_t errlen);

/**
 * Connect (one attempt, no back-off) and authenticate.
 * @return the connection, or NULL with err filled, e.g.
 *   "redis 127.0.0.1:6390: Connection refused".
 */
struct ctl_redis *ctl_redis_open(const struct ctl_redis_conf *conf,
	char *err, size_t errlen);
void ctl_redis_close(struct ctl_redis *r);

/** The namespace every key starts with ("mp:" by default). */
const char *ctl_redis_ns(const struct ctl_redis *r);

/** "host:port" or the socket path, for messages. */
const char *ctl_redis_where(const struct ctl_redis *r);

/**
 * Build NS + printf(fmt, ...) into buf, e.g.
 * ctl_redis_key(r, k, sizeof(k), CTL_K_RCPT, id).
 * @return length, or -ENAMETOOLONG (buf holds "" then).
 */
int ctl_redis_key(const struct ctl_redis *r, char *buf, size_t cap,
	const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/** The last error: "redis HOST:PORT: reason". Never NULL. */
const char *ctl_redis_error(const struct ctl_redis *r);

/** 1 when connected and not known broken. */
int ctl_redis_connected(const struct ctl_redis *r);

/** What a cluster connection has seen (all 0 on a single Redis). */
struct ctl_redis_cluster_stats {
	unsigned nodes;           /**< primaries and replicas known */
	unsigned primaries;       /**< nodes serving slots */
	unsigned slots_served;    /**< of 16384 */
	uint64_t redirects;       /**< MOVED and ASK replies followed */
	uint64_t map_refreshes;   /**< CLUSTER SLOTS read after the first */
};

/**
 * @return 1 if r talks to a Redis Cluster, 0 for a single Redis; fills
 *         st (if not NULL).
 */
int ctl_redis_cluster(const struct ctl_redis *r, struct ctl_redis_cluster_stats *st);

/**
 * Make sure the connection is up: start a reconnect if it is broken and
 * the back-off has elapsed, or look at the one under way. Never waits.
 * @return 0, -EAGAIN inside the back-off or while connecting, or -ECONNREFUSED/-EIO/-EACCES
 *         (AUTH refused)/-EINVAL (SELECT refused) after a failed attempt.
 */
int ctl_redis_ensure(struct ctl_redis *r);

/**
 * Like ctl_redis_ensure but waits through back-offs and connects for up
 * to wait_ms.
 * @return 0 or the last error.
 */
int ctl_redis_wait(struct ctl_redis *r, int wait_ms);

/**
 * Change the reply timeout (e.g. above the BLOCK of an XREADGROUP).
 * @param ms milliseconds, < 0 for none
 * @return 0 or -EIO.
 */
int ctl_redis_set_timeout(struct ctl_redis *r, int ms);

/**
 * Run one command (redisCommand format). Pending pipelined replies must
 * have been read first.
 * @return the reply (free with freeReplyObject; may be an error reply),
 *         or NULL on connection failure (see ctl_redis_error).
 */
redisReply *ctl_redis_cmd(struct ctl_redis *r, const char *fmt, ...);
redisReply *ctl_redis_cmdv(struct ctl_redis *r, int argc, const char **argv,
	const size_t *argvlen);

/**
 * Queue a command without waiting (pipelining). Every successful append
 * must be matched by one ctl_redis_reply.
 * @return 0, -EAGAIN/-EIO when not connected, -ENOMEM.
 */
int ctl_redis_append(struct ctl_redis *r, const char *fmt, ...);
int ctl_redis_appendv(struct ctl_redis *r, int argc, const char **argv,
	const size_t *argvlen);

/**
 * Read the next pipelined reply (flushes queued commands first).
 * @return 0 with *reply set, or -EIO (connection now broken; replies of
 *         the other queued commands are lost as well).
 */
int ctl_redis_reply(struct ctl_redis *r, redisReply **reply);

/** Number of appended commands whose reply is not read yet. */
unsigned ctl_redis_pending(const struct ctl_redis *r);

/** A Lua script: source and its SHA1 (filled on first use). */
struct ctl_redis_script {
	const char *src;
	char sha[41];
};

/**
 * EVALSHA script with nkeys keys then args (argv[0..argc-1], keys
 * first); on NOSCRIPT loads it (SCRIPT LOAD) and retries once.
 * @return the reply (may be an error reply raised by the script), or NULL
 *         on connection failure.
 */
redisReply *ctl_redis_eval(struct ctl_redis *r, struct ctl_redis_script *s,
	int nkeys, int argc, const char **argv, const size_t *argvlen);

/**
 * Pipelined EVALSHA: appends EVALSHA; make sure the script is loaded first
 * with ctl_redis_script_load (a server restart between the load and the
 * reply gives a NOSCRIPT error reply: reload and re-run that one).
 * @return as ctl_redis_appendv.
 */
int ctl_redis_eval_append(struct ctl_redis *r, struct ctl_redis_script *s,
	int nkeys, int argc, const char **argv, const size_t *argvlen);

/** SCRIPT LOAD s (fills s->sha). @return 0, -EIO, or -EINVAL (script error). */
int ctl_redis_script_load(struct ctl_redis *r, struct ctl_redis_script *s);

/** 1 if reply is a NOSCRIPT error reply. */
int ctl_redis_is_noscript(const redisReply *reply);

/* Small reply helpers. */

/** Integer reply (or a decimal string reply) into *v. @return 0 or -EPROTO. */
int ctl_redis_reply_int(const redisReply *reply, long long *v);

/**
 * Field f of a flat HGETALL array reply, NULL if absent.
 */
const char *ctl_redis_hget(const redisReply *hgetall, const char *f);

/** Integer value of field f of an HGETALL reply, dflt if absent/bad. */
long long ctl_redis_hget_int(const redisReply *hgetall, const char *f,
	long long dflt);

/** Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t ctl_now_ms(void);

/** Milliseconds from CLOCK_MONOTONIC. */
int64_t ctl_mono_ms(void);

#endif
