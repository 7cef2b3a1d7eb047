/*
 * Per-destination shaping (ctl_shape): how hard mailpump may push one
 * destination domain. For each domain it knows the limits (defaults, or a
 * per-domain override), counts open connections, runs a token bucket for
 * the message rate, and adapts: a 421 reply, or a burst of 4xx replies
 * within a window, slows the domain down for a cool-down period, after
 * which it recovers one step per quiet cool-down period.
 *
 *   ctl_shape_new(conf)                      defaults + adaptation parameters
 *   ctl_shape_override_add("d:k=v,...")      per-domain overrides
 *   scheduler, per domain:
 *     ctl_shape_limits(d, now)               effective limits right now
 *     ctl_shape_conn_acquire(d, now) ... ctl_shape_conn_release(d, now)
 *     ctl_shape_msg_take(d, n, now)          before each transaction (-EAGAIN:
 *                                            wait ctl_shape_wait_ms())
 *     ctl_shape_on_reply(d, code, now)       every SMTP reply code that
 *                                            decided a recipient or session
 *   ctl_shape_gc(now)                        now and then: forget idle domains
 *
 * A "message" for the rate is one SMTP transaction (one DATA), whatever
 * its number of recipients. Messages per connection and recipients per
 * transaction are limits the caller applies when it fills a session.
 *
 * Override lookup: exact domain, then the longest ".parent" suffix
 * (".example.com" matches every subdomain, not example.com itself), then
 * "*" (which changes the defaults). An override sets only the keys it
 * names; the rest come from the defaults.
 *
 * Adaptation (level L = 0 normally, at most CTL_SHAPE_LEVEL_MAX): each
 * trigger (a 421, or burst_4xx 4xx replies within window_ms) raises L by
 * one and restarts the cool-down; each cooldown_ms without a trigger
 * lowers it by one. Triggers less than window_ms after the previous one
 * only restart the cool-down (twenty sessions all getting 421 at once is
 * one event, not twenty). The 4xx count starts afresh after a trigger. While L > 0 the effective max_conns and rate are the
 * configured ones times (slow_pct / 100)^L, never below 1 connection and
 * min_rate messages per second; messages per connection and recipients
 * per transaction are unchanged; the burst shrinks like the rate (>= 1);
 * an unlimited rate stays unlimited (only connections shrink). Open connections above a lowered limit
 * are not cut: new acquires fail until the count drops below it.
 *
 * Time is whatever monotonic millisecond clock the caller passes as
 * now_ms; it must not go backwards. Not thread-safe: one owner thread.
 */
#ifndef MP_CTL_SHAPE_H
#define MP_CTL_SHAPE_H

#include <stddef.h>
#include <stdint.h>

/** Defaults used when the matching conf field is 0. */
#define CTL_SHAPE_MAX_CONNS_DEFAULT     20
#define CTL_SHAPE_MSGS_PER_CONN_DEFAULT 100
#define CTL_SHAPE_RCPTS_PER_TXN_DEFAULT 50
#define CTL_SHAPE_BURST_4XX_DEFAULT     10
#define CTL_SHAPE_WINDOW_MS_DEFAULT     60000
#define CTL_SHAPE_COOLDOWN_MS_DEFAULT   300000
#define CTL_SHAPE_SLOW_PCT_DEFAULT      50
#define CTL_SHAPE_MIN_RATE_DEFAULT      0.1   /**< msgs/s floor while slowed */
#define CTL_SHAPE_LEVEL_MAX             8
#define CTL_SHAPE_DOMAIN_MAX            253

/**
 * Limits for one destination. In ctl_shape_conf.defaults a 0 means the
 * compiled-in default (unlimited for rate); as returned by
 * ctl_shape_limits() every field is the value in force (rate 0 = unlimited).
 */
struct ctl_shape_limits {
	unsigned max_conns;      /**< concurrent connections */
	unsigned msgs_per_conn;  /**< transactions on one connection */
	unsigned rcpts_per_txn;  /**< RCPT TO per transaction */
	double rate;             /**< messages per second, 0 = unlimited */
	unsigned burst;          /**< token bucket depth in messages, 0 = max(1, ceil(rate)) */
};

/** Shaper configuration. Zero-initialise, then set what differs. */
struct ctl_shape_conf {
	struct ctl_shape_limits defaults;
	unsigned burst_4xx;      /**< this many 4xx within window_ms is a trigger */
	uint32_t window_ms;
	uint32_t cooldown_ms;    /**< quiet time per recovery step */
	unsigned slow_pct;       /**< 1..99: limits scale per level */
	double min_rate;         /**< floor of the slowed rate (if a rate is set) */
	unsigned max_domains;    /**< tracked domains, 0 = unbounded; above it the
				      idle ones are forgotten first, then acquire fails */
};

/** Key bits of struct ctl_shape_override.set. */
enum ctl_shape_key {
	CTL_SHAPE_K_MAX_CONNS     = 1u << 0,
	CTL_SHAPE_K_MSGS_PER_CONN = 1u << 1,
	CTL_SHAPE_K_RCPTS_PER_TXN = 1u << 2,
	CTL_SHAPE_K_RATE          = 1u << 3,
	CTL_SHAPE_K_BURST         = 1u << 4,
};

/** One parsed override: the domain pattern and the keys it sets. */
struct ctl_shape_override {
	char domain[CTL_SHAPE_DOMAIN_MAX + 2]; /**< "example.com", ".example.com" or "*" */
	unsigned set;                          /**< CTL_SHAPE_K_* present */
	struct ctl_shape_limits lim;           /**< values of the keys in set */
};

/** Snapshot of one domain's state, for logs, metrics and tests. */
struct ctl_shape_state {
	struct ctl_shape_limits lim; /**< effective limits now */
	unsigned conns;              /**< open connections */
	unsigned level;              /**< adaptation level, 0 = normal */
	double tokens;               /**< messages available now */
	uint64_t slowed_until_ms;    /**< level drops by one at this time (0 if level 0) */
	uint64_t triggers;           /**< slow-downs so far */
};

struct ctl_shape;

/**
 * @param conf configuration, copied; NULL = defaults
 * @return the shaper, or NULL (ENOMEM, or conf out of range: slow_pct
 *         not in 1..99, rate < 0)
 */
struct ctl_shape *ctl_shape_new(const struct ctl_shape_conf *conf);

void ctl_shape_free(struct ctl_shape *sh);

/**
 * Parse one override "DOMAIN:key=value,key=value". Keys: max_conns,
 * msgs_per_conn, rcpts_per_txn (integers >= 1), rate (messages per second,
 * decimal > 0, or 0 = unlimited), burst (integer >= 1). Spaces around
 * tokens are allowed. Example: "example.com:max_conns=5,msgs_per_conn=50,rate=20".
 * @param err receives e.g. "example.com: max_conns: \"x\" is not a number"
 * @return 0, -EINVAL (bad syntax, unknown key, bad value, duplicate key)
 */
int ctl_shape_override_parse(const char *spec, struct ctl_shape_override *out,
			     char *err, size_t errlen);

/**
 * Parse and install overrides: one or more separated by ';' or newlines.
 * A pattern given again replaces the earlier override. All or nothing: on
 * any bad item nothing is installed and @p err names the item.
 * @return number installed (>= 0), -EINVAL, -ENOMEM
 */
int ctl_shape_override_add(struct ctl_shape *sh, const char *spec, char *err, size_t errlen);

/** Install one already parsed override. @return 0, -EINVAL, -ENOMEM */
int ctl_shape_override_set(struct ctl_shape *sh, const struct ctl_shape_override *ov);

/**
 * Effective limits for @p domain at @p now_ms (override + adaptation).
 * Works for domains never seen (does not create state).
 */
void ctl_shape_limits(struct ctl_shape *sh, const char *domain, uint64_t now_ms,
		      struct ctl_shape_limits *out);

/**
 * Take a connection slot for @p domain.
 * @return 0, -EBUSY (at the effective max_conns), -ENOMEM (max_domains
 *         reached and none idle), -EINVAL (empty domain)
 */
int ctl_shape_conn_acquire(struct ctl_shape *sh, const char *domain, uint64_t now_ms);

/** Give back a slot taken by ctl_shape_conn_acquire(). Extra releases are ignored. */
void ctl_shape_conn_release(struct ctl_shape *sh, const char *domain, uint64_t now_ms);

/**
 * Take @p n message tokens (n transactions) from the domain's bucket.
 * @return 0 (taken), -EAGAIN (not enough tokens; nothing taken),
 *         -E2BIG (n larger than the burst: can never succeed), -ENOMEM, -EINVAL
 */
int ctl_shape_msg_take(struct ctl_shape *sh, const char *domain, unsigned n, uint64_t now_ms);

/**
 * Milliseconds from @p now_ms until @p n tokens are available (0 = now);
 * UINT64_MAX when n exceeds the burst.
 */
uint64_t ctl_shape_wait_ms(struct ctl_shape *sh, const char *domain, unsigned n, uint64_t now_ms);

/**
 * Feed back an SMTP reply code from @p domain: 421 triggers a slow-down at
 * once; other 4xx count towards the burst; 2xx and 5xx are ignored (5xx is
 * about the recipient, not the load). Code 0 (connection failed or timed
 * out) counts as a 4xx.
 * @return 1 when this reply triggered a slow-down, else 0
 */
int ctl_shape_on_reply(struct ctl_shape *sh, const char *domain, int code, uint64_t now_ms);

/**
 * State of @p domain now. @return 0, -ENOENT (never seen or forgotten: the
 * snapshot still holds its effective limits, zero counts)
 */
int ctl_shape_state_get(struct ctl_shape *sh, const char *domain, uint64_t now_ms,
			struct ctl_shape_state *st);

/**
 * Forget domains with no connections, level 0 and a full bucket.
 * @return number forgotten
 */
unsigned ctl_shape_gc(struct ctl_shape *sh, uint64_t now_ms);

/** Domains currently tracked. */
unsigned ctl_shape_domains(const struct ctl_shape *sh);

#endif
