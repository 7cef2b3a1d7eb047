/*
 * Kernel-socket delivery backend (ctl_ksock): implements the dispatch
 * interface (include/ctl_dispatch.h) with the ksock engine in the
 * scheduler's own thread. One order becomes one ksock session; its
 * messages are rendered with msg_ from the order's campaign when the
 * session asks for its next transaction.
 *
 *   ctl_ksock_new(conf, sink)     after ctl_sched_new (sink = ctl_sched_sink)
 *   ctl_sched_set_backend(s, ctl_ksock_backend(k))
 *   ... ctl_sched_step() calls submit/poll ...
 *   ctl_ksock_free(k)             sessions still open end without results
 */
#ifndef CTL_KSOCK_H
#define CTL_KSOCK_H

#include "ctl_dispatch.h"
#include "ctl_dkim.h"
#include "ksock.h"

struct ctl_ksock_conf {
	const char *helo_name;		/**< EHLO name, default "localhost" */
	const struct tls_ctx_conf *tls;	/**< TLS options (CA for verify), NULL = defaults */
	uint32_t connect_timeout_ms;	/**< 0 = ksock default */
	uint32_t cmd_timeout_ms;	/**< SMTP command timeouts, 0 = RFC defaults */
	unsigned max_sessions;		/**< 0 = ksock default */
	struct ctl_dkim *dkim;		/**< signer threads (started), NULL = sign in place */
	struct in_addr source;		/**< IPv4 sessions bind here; 0 = the kernel picks */
	struct in6_addr source6;	/**< IPv6 sessions bind here; :: = the kernel picks */
};

struct ctl_ksock;

/**
 * @return the backend, or NULL (engine could not start) with @p err filled.
 */
struct ctl_ksock *ctl_ksock_new(const struct ctl_ksock_conf *conf,
	const struct ctl_sink *sink, char *err, size_t errlen);
void ctl_ksock_free(struct ctl_ksock *k);
/** The dispatch-interface view of @p k. */
struct ctl_backend ctl_ksock_backend(struct ctl_ksock *k);
/**
 * Read a source address option (ctl_ksock_conf source / source6): a
 * unicast address of @p family (AF_INET or AF_INET6) in text form, no
 * brackets, no prefix length. Whether this host has it is checked when the
 * engine starts (ctl_ksock_new fails naming it).
 * @param out struct in_addr or struct in6_addr
 * @return 0, or -EINVAL with @p err saying what is wrong with @p text
 */
int ctl_ksock_source_parse(const char *text, int family, void *out, char *err,
	size_t errlen);
/** Engine counters (sessions, TLS, bytes). */
void ctl_ksock_stats(const struct ctl_ksock *k, struct ksock_stats *st);

#endif
