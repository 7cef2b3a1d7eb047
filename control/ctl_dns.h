/*
 * Destination resolution (ctl_dns): domain -> ordered list of mail hosts,
 * each with its IPv4 addresses (or, for a host without any, its IPv6 ones
 * when conf.ipv6 is set), asynchronous over c-ares, single thread.
 *
 *   ctl_dns_new()                      once, with servers, timeouts, cache size
 *   ctl_dns_route_add() / _parse()     static routes, before or between lookups
 *   ctl_dns_resolve(domain, cb, user)  queue a lookup; cb runs exactly once
 *   loop: ctl_dns_poll(timeout)        or ctl_dns_fds() + poll() + ctl_dns_process()
 *   ctl_dns_free()                     pending callbacks get CTL_DNS_TEMPFAIL
 *
 * Order of decisions for one domain:
 *   1. static route: exact "domain", then the longest ".parent" suffix, then
 *      "*". The route's host is used as the only host (IPv4 or IPv6
 *      literal, or a name whose A records are looked up -- never its MX).
 *      A route host that does not resolve is CTL_DNS_TEMPFAIL: a broken
 *      relay is an operator problem and must not bounce mail. An IPv6
 *      literal without conf.ipv6 is CTL_DNS_TEMPFAIL too, with the same
 *      "only IPv6 addresses; the transport is IPv4-only" reason as an
 *      AAAA-only MX host.
 *   2. cache (keyed by lower-cased domain, entries live for the smallest TTL
 *      seen in the answers, clamped to [min_ttl_s, max_ttl_s]; negative
 *      answers for the SOA minimum when the server sent one, else neg_ttl_s).
 *      Concurrent requests for one domain share one set of queries.
 *   3. MX query (RFC 5321 5.1):
 *      - MX records: sorted by preference; equal preferences are ordered by
 *        a hash of (seed, host name), so the order is spread across daemons
 *        but reproducible for a given seed. Each MX host gets an A query.
 *        Hosts without addresses are dropped from the list.
 *      - a single MX with an empty exchange "." (RFC 7505 null MX) ->
 *        CTL_DNS_NULL_MX. A "." mixed with real MX records is ignored.
 *      - no MX records (NODATA) -> implicit MX: the domain itself at
 *        preference 0 (result.implicit_mx = 1), via an A query.
 *      - NXDOMAIN -> CTL_DNS_NXDOMAIN.
 *      - SERVFAIL, REFUSED, timeout, connection refused, bad reply ->
 *        CTL_DNS_TEMPFAIL.
 *   4. CTL_DNS_NO_ADDRESS (our reading of RFC 5321 5.1, "MX records present
 *      but none usable, or the implicit MX unusable, MUST be reported as an
 *      error"): returned as a PERMANENT status when every candidate host got
 *      an authoritative negative answer for A (NXDOMAIN or NODATA). If any
 *      host's A lookup failed temporarily and no host is usable, the result
 *      is CTL_DNS_TEMPFAIL instead; if some hosts are usable the result is
 *      CTL_DNS_OK with only those, cached no longer than neg_ttl_s so the
 *      missing ones are asked again soon.
 *      A host with no A record but AAAA ones (asked only after a NODATA
 *      for A, so IPv4 is always preferred) is never one without
 *      addresses. With conf.ipv6 (a transport that speaks IPv6: ksock)
 *      it is usable with its AAAA addresses in addr6[]. Without (the
 *      DPDK transport is IPv4-only) it is one we cannot reach: when no
 *      host is usable and one of them is such, the result is
 *      CTL_DNS_TEMPFAIL "... only IPv6 addresses; the transport is
 *      IPv4-only ...".
 *
 * Fallback across hosts (connect failure -> next host, next address) is the
 * caller's: the result gives the whole ordered list. A host has either
 * IPv4 addresses (addr[]) or, only when it has none, IPv6 ones (addr6[]).
 *
 * Callbacks: always from inside ctl_dns_poll()/ctl_dns_process() (never from
 * ctl_dns_resolve(), even for a route or a cache hit), or from
 * ctl_dns_free(). A callback may call ctl_dns_resolve() (its result comes in
 * a later poll) but not ctl_dns_free(). The result is valid only during the
 * callback; ctl_dns_result_dup() keeps a copy.
 *
 * A struct ctl_dns belongs to one thread.
 */
#ifndef MP_CTL_DNS_H
#define MP_CTL_DNS_H

#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_DNS_NAME_MAX   253  /**< longest domain / host name (no trailing dot) */
#define CTL_DNS_HOST_MAX   16   /**< hosts kept per result (best first) */
#define CTL_DNS_ADDR_MAX   8    /**< addresses kept per host and family */
#define CTL_DNS_ERROR_MAX  160  /**< length of result.error */

/** Defaults used when the matching ctl_dns_conf field is 0. */
#define CTL_DNS_TIMEOUT_MS_DEFAULT  2000
#define CTL_DNS_TRIES_DEFAULT       2
#define CTL_DNS_CACHE_MAX_DEFAULT   10000
#define CTL_DNS_MIN_TTL_DEFAULT     5       /**< seconds */
#define CTL_DNS_MAX_TTL_DEFAULT     86400   /**< seconds */
#define CTL_DNS_NEG_TTL_DEFAULT     300     /**< seconds, negative answers without SOA */
#define CTL_DNS_TEMPFAIL_TTL_DEFAULT 0      /**< TEMPFAIL results are not cached by default */
#define CTL_DNS_PORT_DEFAULT        25

/** Outcome of one resolution. */
enum ctl_dns_status {
	CTL_DNS_OK = 0,     /**< hosts[] holds at least one host with an address */
	CTL_DNS_NULL_MX,    /**< permanent: domain accepts no mail (RFC 7505) -> bounce */
	CTL_DNS_NXDOMAIN,   /**< permanent: domain does not exist -> bounce */
	CTL_DNS_NO_ADDRESS, /**< permanent: no candidate host has an address (see top) */
	CTL_DNS_TEMPFAIL,   /**< temporary: SERVFAIL, REFUSED, timeout, ... -> defer */
	CTL_DNS_STATUS_LAST
};

/** One mail host, in the order the caller should try them. */
struct ctl_dns_host {
	char name[CTL_DNS_NAME_MAX + 1]; /**< MX exchange, domain (implicit MX) or route host */
	uint16_t pref;                   /**< MX preference (0 for implicit MX and routes) */
	uint16_t port;                   /**< TCP port: 25, or the route's */
	unsigned n_addr;                 /**< IPv4 addresses; n_addr + n_addr6 >= 1 when OK */
	struct in_addr addr[CTL_DNS_ADDR_MAX]; /**< as the server returned them */
	unsigned n_addr6;                /**< IPv6 ones: only when n_addr == 0 and conf.ipv6 */
	struct in6_addr addr6[CTL_DNS_ADDR_MAX];
};

/** What a callback receives. */
struct ctl_dns_result {
	enum ctl_dns_status status;
	const char *domain;        /**< lower-cased, as looked up */
	int implicit_mx;           /**< no MX records: hosts[0] is the domain itself */
	int from_route;            /**< a static route decided (hosts[0] is its host) */
	int implicit_tls;          /**< the route asks for TLS from the first byte (465) */
	int from_cache;            /**< answered from the cache, no query sent */
	uint32_t ttl_s;            /**< seconds this answer stays cached (0 = not cached) */
	unsigned n_hosts;
	const struct ctl_dns_host *hosts; /**< n_hosts entries, best first */
	char error[CTL_DNS_ERROR_MAX];    /**< human-readable reason when status != OK */
};

/** Resolver configuration. Zero-initialise, then set what differs. */
struct ctl_dns_conf {
	/** c-ares server list "ip[:port],ip[:port]" (IPv6 as "[ip]:port");
	 *  NULL or "" = the system's /etc/resolv.conf. */
	const char *servers;
	int timeout_ms;            /**< per try, 0 = CTL_DNS_TIMEOUT_MS_DEFAULT */
	int tries;                 /**< tries per server, 0 = CTL_DNS_TRIES_DEFAULT */
	unsigned cache_max;        /**< cached domains, least recently used out first */
	int no_cache;              /**< 1 = never cache (each request queries) */
	uint32_t min_ttl_s;        /**< lower clamp of positive TTLs */
	uint32_t max_ttl_s;        /**< upper clamp of every TTL */
	uint32_t neg_ttl_s;        /**< negative answers without an SOA */
	uint32_t tempfail_ttl_s;   /**< cache TEMPFAIL this long (0 = never) */
	uint64_t seed;             /**< tie order among equal preferences; 0 = random */
	/** 1 = the caller's transport speaks IPv6: a host with only AAAA
	 *  records is usable (addr6[]); 0 = such a host defers (see top). */
	int ipv6;
	/** Monotonic clock in ms for cache expiry; NULL = CLOCK_MONOTONIC. */
	uint64_t (*now_ms)(void *arg);
	void *now_arg;
};

/** Counters, monotonic since ctl_dns_new() (cache_entries is a level). */
struct ctl_dns_stats {
	uint64_t requests;         /**< ctl_dns_resolve() calls accepted */
	uint64_t route_hits;       /**< decided by a static route */
	uint64_t cache_hits;
	uint64_t cache_misses;
	uint64_t coalesced;        /**< joined a lookup already in flight */
	uint64_t queries;          /**< DNS queries sent (MX + A) */
	uint64_t query_failures;   /**< queries that ended with a temporary error */
	uint64_t evictions;        /**< cache entries dropped for space */
	uint64_t callbacks;
	unsigned cache_entries;
};

struct ctl_dns;

/**
 * Create a resolver (initialises c-ares for the process on first use).
 * @param conf   configuration, copied; NULL = all defaults
 * @param err    receives a reason on failure (may be NULL)
 * @param errlen size of @p err
 * @return the resolver, or NULL (bad server list, c-ares init failure, ENOMEM)
 */
struct ctl_dns *ctl_dns_new(const struct ctl_dns_conf *conf, char *err, size_t errlen);

/**
 * Destroy a resolver. Every request still pending gets its callback with
 * CTL_DNS_TEMPFAIL ("resolver shut down") before this returns.
 */
void ctl_dns_free(struct ctl_dns *dns);

/**
 * Add or replace a static route. Routes are checked before the cache and DNS.
 * @param domain       "example.com" (that domain only), ".example.com" (any
 *                     subdomain, not the domain itself) or "*" (everything)
 * @param host         IPv4 literal, IPv6 literal (bare or in brackets:
 *                     "2001:db8::1", "[2001:db8::1]") or host name (its A
 *                     records are used; its AAAA ones when it has no A and
 *                     conf.ipv6 is set)
 * @param port         TCP port, 0 = 25
 * @param implicit_tls 1 = TLS from the first byte (SMTPS, port 465 style)
 * @return 0, -EINVAL (bad domain or host), -ENOMEM
 */
int ctl_dns_route_add(struct ctl_dns *dns, const char *domain, const char *host,
		      uint16_t port, int implicit_tls);

/**
 * Parse and add routes from a string: one or more "DOMAIN=HOST[:PORT][:tls]"
 * separated by commas or white space, e.g.
 * "example.com=127.0.0.1:2525, *=relay.test:465:tls, v6.test=[fd00::25]:2525".
 * An IPv6 HOST needs brackets, as in URLs ("[2001:db8::1]", with or without
 * ":PORT" and ":tls"); a bare one is refused. All or nothing: on any bad
 * item no route is added and @p err names the item and the problem.
 * @return number of routes added (>= 0), -EINVAL, -ENOMEM
 */
int ctl_dns_route_parse(struct ctl_dns *dns, const char *spec, char *err, size_t errlen);

/** Remove every static route. */
void ctl_dns_route_clear(struct ctl_dns *dns);

/**
 * Start resolving @p domain (case-insensitive, an optional trailing dot is
 * dropped). @p cb is called exactly once, from a later ctl_dns_poll() /
 * ctl_dns_process() or from ctl_dns_free().
 * @return 0; on error no callback is made: -EINVAL (empty or over-long
 *         domain, bad characters, NULL cb), -ENOMEM, -ESHUTDOWN (called from
 *         a callback run by ctl_dns_free())
 */
int ctl_dns_resolve(struct ctl_dns *dns, const char *domain,
		    void (*cb)(void *user, const struct ctl_dns_result *res),
		    void *user);

/**
 * Wait up to @p timeout_ms for DNS traffic, process it and run the
 * callbacks that are due. Returns at once when callbacks are ready.
 * @return callbacks made (>= 0), or -errno from poll()
 */
int ctl_dns_poll(struct ctl_dns *dns, int timeout_ms);

/**
 * For callers with their own poll loop: the sockets to watch.
 * @param fds   filled with fd + events (POLLIN / POLLOUT)
 * @param max   capacity of @p fds (16 is always enough)
 * @return number of entries filled
 */
unsigned ctl_dns_fds(struct ctl_dns *dns, struct pollfd *fds, unsigned max);

/**
 * Longest the caller may sleep before calling ctl_dns_process(): the next
 * c-ares timeout, 0 when callbacks are ready, or @p max_ms (-1 = no limit)
 * when nothing is pending.
 */
int ctl_dns_timeout_ms(struct ctl_dns *dns, int max_ms);

/**
 * Process the sockets reported by the caller's poll() (revents), handle
 * timeouts and run ready callbacks. @p fds may be the array from
 * ctl_dns_fds() after poll(), or NULL / 0 for timeouts only.
 * @return callbacks made (>= 0)
 */
int ctl_dns_process(struct ctl_dns *dns, const struct pollfd *fds, unsigned n);

/** Requests whose callback has not run yet. */
unsigned ctl_dns_pending(const struct ctl_dns *dns);

/** Drop every cached answer (lookups in flight are unaffected). */
void ctl_dns_cache_flush(struct ctl_dns *dns);

/** Copy the counters. */
void ctl_dns_stats_get(const struct ctl_dns *dns, struct ctl_dns_stats *st);

/**
 * Deep copy of a result (domain and hosts included) for use after the
 * callback, e.g. to walk the host list on connect failures.
 * @return the copy (free with ctl_dns_result_free()), or NULL on ENOMEM
 */
struct ctl_dns_result *ctl_dns_result_dup(const struct ctl_dns_result *res);

/** Free a copy made by ctl_dns_result_dup(); NULL is a no-op. */
void ctl_dns_result_free(struct ctl_dns_result *res);

/** "ok", "null_mx", "nxdomain", "no_address", "tempfail". */
const char *ctl_dns_status_name(enum ctl_dns_status st);

/** 1 when @p st means the recipient bounces (NULL_MX, NXDOMAIN, NO_ADDRESS). */
int ctl_dns_status_permanent(enum ctl_dns_status st);

#endif
