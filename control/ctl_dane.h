/*
 * DNSSEC-validating lookups for DANE (ctl_dane): MX of a domain and TLSA
 * of "_PORT._tcp.HOST", over libunbound, asynchronous, single thread.
 * Validation is libunbound's own, against the configured trust anchor:
 * the AD bit of an upstream answer is never looked at (RFC 7672 §2.1 and
 * RFC 4035 §4.9.3), so a forwarder that is not validating, or lies, can
 * make an answer insecure or bogus but never secure.
 *
 *   ctl_dane_new(conf)                    forwarders, trust anchor, deadline
 *   ctl_dane_mx(domain, cb, user)         queue an MX lookup; cb runs once
 *   ctl_dane_tlsa(host, port, cb, user)   queue a TLSA lookup; cb runs once
 *   loop: ctl_dane_poll(timeout)          or ctl_dane_fd() + ctl_dane_timeout_ms()
 *                                         + poll() + ctl_dane_process()
 *   ctl_dane_free()                       pending callbacks get TEMPFAIL
 *
 * Every answer is classified as RFC 7672 §2.1 says:
 *   SECURE    validated by us (records, or an authenticated denial)
 *   INSECURE  provably unsigned (no trust anchor covers it, or a
 *             validated proof that a DS is absent)
 *   BOGUS     validation failed; error[] holds unbound's why_bogus
 *   TEMPFAIL  indeterminate: SERVFAIL (a validating upstream answers a
 *             bogus name so), timeout (our own deadline), unbound error
 * A TLSA answer is then reduced to what the TLS policy needs (outcome).
 *
 * CNAMEs are followed by unbound; the result says whether one was and
 * names the final owner. The "base domain" question of RFC 7672 §2.2.2
 * (which name the certificate must carry when the MX host is an alias)
 * is the TLS layer's, not answered here yet.
 *
 * DANE off (conf.disabled): ctl_dane_new() still returns a resolver, but
 * ctl_dane_enabled() is 0, lookups return -ENOTSUP and ctl_dane_fd() -1.
 *
 * Callbacks run only from ctl_dane_process()/ctl_dane_poll() (never from
 * the lookup call itself) or from ctl_dane_free(). A callback may queue a
 * lookup but not free the resolver. The result is valid only during the
 * callback. A struct ctl_dane belongs to one thread.
 */
#ifndef MP_CTL_DANE_H
#define MP_CTL_DANE_H

#include <stddef.h>
#include <stdint.h>

#define CTL_DANE_NAME_MAX   253  /**< longest name, no trailing dot */
#define CTL_DANE_MX_MAX     16   /**< MX records kept, lowest preference first */
#define CTL_DANE_TLSA_MAX   16   /**< TLSA records kept */
#define CTL_DANE_ERROR_MAX  512  /**< length of result.error */
#define CTL_DANE_TIMEOUT_MS_DEFAULT 10000
/** Where Debian's dns-root-data keeps the root key (the default anchor). */
#define CTL_DANE_ROOT_KEY_DEFAULT "/usr/share/dns/root.key"

/** DNSSEC status of one answer (RFC 7672 §2.1). */
enum ctl_dane_sec {
	CTL_DANE_SECURE = 0,
	CTL_DANE_INSECURE,
	CTL_DANE_BOGUS,
	CTL_DANE_TEMPFAIL,
	CTL_DANE_SEC_LAST
};

/** What a TLSA answer means for the connection (RFC 7672 §2.2). */
enum ctl_dane_outcome {
	/** secure, at least one usable record: DANE applies, authenticated
	 *  TLS against those records is mandatory for this host */
	CTL_DANE_APPLIES = 0,
	/** secure, records present but none usable: DANE authentication
	 *  is impossible; TLS is still mandatory, unauthenticated (our
	 *  reading of RFC 7672 §2.2, Postfix's "encrypt") */
	CTL_DANE_UNUSABLE,
	/** secure denial (NXDOMAIN or NODATA): no TLSA, DANE does not apply */
	CTL_DANE_NO_TLSA,
	/** insecure answer: DANE does not apply (records, if any, ignored) */
	CTL_DANE_NOT_SECURE,
	/** bogus: defer, never deliver to this host (RFC 7672 §2.2) */
	CTL_DANE_FAIL_BOGUS,
	/** indeterminate: defer and try again later */
	CTL_DANE_FAIL_TEMP,
	CTL_DANE_OUTCOME_LAST
};

/** One MX record. */
struct ctl_dane_mx {
	uint16_t pref;
	char host[CTL_DANE_NAME_MAX + 1]; /**< lower case, no trailing dot; "" = null MX */
};

/** What an MX callback receives. */
struct ctl_dane_mx_result {
	enum ctl_dane_sec sec;
	const char *domain;       /**< as asked, lower case */
	int rcode;                /**< DNS rcode of the answer (0, 3 = NXDOMAIN, 2 = SERVFAIL); 0 when none came */
	int nxdomain;             /**< the domain does not exist */
	int null_mx;              /**< a single MX "." (RFC 7505) */
	int cname;                /**< the answer came through a CNAME */
	char canon[CTL_DANE_NAME_MAX + 1]; /**< final owner after CNAMEs */
	uint32_t ttl_s;
	unsigned n_mx;            /**< 0 with rcode 0: NODATA (implicit MX) */
	const struct ctl_dane_mx *mx; /**< n_mx entries, by preference */
	char error[CTL_DANE_ERROR_MAX]; /**< reason when sec is BOGUS or TEMPFAIL */
};

/** One TLSA record (RFC 6698 §2.1). */
struct ctl_dane_tlsa_rr {
	uint8_t usage;            /**< 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE */
	uint8_t selector;         /**< 0 full certificate, 1 SubjectPublicKeyInfo */
	uint8_t mtype;            /**< 0 exact, 1 SHA-256, 2 SHA-512 */
	uint16_t len;             /**< bytes in data */
	const uint8_t *data;
	/** NULL = usable; else why it is set aside (RFC 7671 §4.1) */
	const char *unusable;
};

/** What a TLSA callback receives. */
struct ctl_dane_tlsa_result {
	enum ctl_dane_sec sec;
	enum ctl_dane_outcome outcome;
	const char *host;         /**< as asked, lower case */
	uint16_t port;
	char qname[CTL_DANE_NAME_MAX + 1]; /**< "_25._tcp.host" */
	int rcode;
	int cname;                /**< the owner was an alias */
	char canon[CTL_DANE_NAME_MAX + 1]; /**< final owner after CNAMEs */
	uint32_t ttl_s;
	unsigned n_rr;            /**< records kept (usable or not) */
	unsigned n_usable;
	const struct ctl_dane_tlsa_rr *rr;
	char error[CTL_DANE_ERROR_MAX]; /**< why, for every outcome but APPLIES */
};

/** Resolver configuration. Zero-initialise, then set what differs. */
struct ctl_dane_conf {
	int disabled;             /**< 1 = DANE off (see top) */
	/** "ip[@port]" separated by commas or white space (unbound's
	 *  syntax: '@' before the port, IPv6 bare); "resolv.conf" = the
	 *  system's servers; NULL or "" = full recursion from the root. */
	const char *forwarders;
	/** trust anchor: a file of DS or DNSKEY records in zone-file
	 *  format, and/or one such record as a string. With neither, the
	 *  root key from root_key_file. */
	const char *ta_file;
	const char *ta;
	const char *root_key_file; /**< NULL = CTL_DANE_ROOT_KEY_DEFAULT */
	/** extra unbound options, "name: value" separated by ';', e.g.
	 *  "local-zone: test. transparent" (libunbound answers RFC 6761's
	 *  test. itself, NXDOMAIN; "nodefault" does not undo that through
	 *  ub_ctx_set_option in unbound 1.17, "transparent" does) */
	const char *options;
	int timeout_ms;           /**< per lookup, ours; 0 = default */
	/** Monotonic clock in ms for deadlines; NULL = CLOCK_MONOTONIC. */
	uint64_t (*now_ms)(void *arg);
	void *now_arg;
};

struct ctl_dane_stats {
	uint64_t lookups;         /**< accepted */
	uint64_t secure, insecure, bogus, tempfail;
	uint64_t timeouts;        /**< among tempfail: our deadline */
	uint64_t callbacks;
	unsigned pending;         /**< a level */
};

typedef void ctl_dane_mx_cb(void *user, const struct ctl_dane_mx_result *res);
typedef void ctl_dane_tlsa_cb(void *user, const struct ctl_dane_tlsa_result *res);

struct ctl_dane;

/**
 * Create a resolver.
 * @param conf   configuration, copied; NULL = all defaults
 * @param err    receives a reason on failure (may be NULL)
 * @return the resolver, or NULL (bad forwarder, unreadable or bad trust
 *         anchor, bad option, libunbound failure, ENOMEM)
 */
struct ctl_dane *ctl_dane_new(const struct ctl_dane_conf *conf, char *err, size_t errlen);

/** Destroy; every pending lookup gets TEMPFAIL "resolver shut down". */
void ctl_dane_free(struct ctl_dane *dane);

/** @return 1 when lookups are possible, 0 when DANE is off. */
int ctl_dane_enabled(const struct ctl_dane *dane);

/**
 * Queue an MX lookup of @p domain.
 * @return 0, -EINVAL (bad name), -ENOTSUP (DANE off), -ENOMEM, -EIO
 *         (libunbound refused the query)
 */
int ctl_dane_mx(struct ctl_dane *dane, const char *domain, ctl_dane_mx_cb *cb, void *user);

/**
 * Queue a TLSA lookup of "_PORT._tcp.HOST" (port 0 = 25).
 * @return as ctl_dane_mx()
 */
int ctl_dane_tlsa(struct ctl_dane *dane, const char *host, uint16_t port,
		  ctl_dane_tlsa_cb *cb, void *user);

/** @return the descriptor to poll for reading, or -1 (DANE off). */
int ctl_dane_fd(const struct ctl_dane *dane);

/** @return ms until the nearest lookup deadline, -1 = none pending. */
int ctl_dane_timeout_ms(const struct ctl_dane *dane);

/**
 * Read what libunbound has, run callbacks, expire lookups past their
 * deadline. Never blocks.
 * @return callbacks run (>= 0), or -EIO
 */
int ctl_dane_process(struct ctl_dane *dane);

/** poll() the descriptor up to @p timeout_ms (-1 = until the nearest
 *  deadline; never past it), then ctl_dane_process(). Returns 0 at once
 *  when nothing is pending. @return as ctl_dane_process(), or -errno
 *  from poll() */
int ctl_dane_poll(struct ctl_dane *dane, int timeout_ms);

void ctl_dane_stats_get(const struct ctl_dane *dane, struct ctl_dane_stats *st);

const char *ctl_dane_sec_name(enum ctl_dane_sec sec);
const char *ctl_dane_outcome_name(enum ctl_dane_outcome o);

#endif
