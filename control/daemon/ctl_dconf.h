/*
 * The mailpump daemon's configuration: one INI file (ctl_conf syntax,
 * mailpump.conf.example documents every key) plus command-line overrides,
 * read into one struct before anything touches the NIC. A bad value or
 * an unknown key is one message naming file, line, section and key.
 *
 *   ctl_dconf_defaults(d)
 *   ctl_dconf_load(d, cf)   cf = ctl_conf_load(path) or ctl_conf_new(),
 *                           with the command line's ctl_conf_set() applied
 *   ... the daemon runs on d ...
 *
 * Sections: [redis] [daemon] [dataplane] [workers] [tls] [smtp] [shaping]
 * [shaping.domains] [routes] [dns] [retry].
 */
#ifndef CTL_DCONF_H
#define CTL_DCONF_H

#include <netinet/in.h>
#include <stdint.h>

#include "ctl_conf.h"
#include "ctl_retry.h"
#include "ctl_shape.h"
#include "dp.h"
#include "tls.h"

#define CTL_DCONF_LIST_MAX 256

enum ctl_dconf_transport { CTL_TRANSPORT_DPDK = 0, CTL_TRANSPORT_KSOCK, CTL_TRANSPORT_LAST };

struct ctl_dconf {
	/* [redis] */
	const char *redis_url;		/* NULL: dataplane only (no control plane) */
	const char *ns;
	const char *consumer;		/* NULL = host-pid */
	uint64_t min_idle_ms;
	unsigned batches;
	unsigned dead_maxlen;		/* jobs:dead stream MAXLEN ~ */
	unsigned events_maxlen;		/* events stream MAXLEN ~ */
	uint64_t events_max_age_ms;	/* events stream trimmed by age */
	/* [daemon] */
	int transport;			/* enum ctl_dconf_transport */
	uint64_t grace_ms;
	uint64_t abort_wait_ms;		/* after the grace: results of cut sessions */
	int log_level;			/* -1 = leave as is */
	const char *stats_file;		/* daemon counters (JSON), NULL = none */
	uint64_t stats_interval_ms;
	int until_idle;
	uint64_t timeout_ms;		/* whole run, 0 = none */
	/* [dataplane] */
	struct dp_conf dp;
	/* [workers] */
	unsigned max_sessions;		/* per worker */
	uint32_t tcp_sndbuf, tcp_rcvbuf;
	/* [tls] */
	struct tls_ctx_conf tls;
	/* [smtp] */
	const char *helo;		/* checked FQDN (smtp_helo_name_check) */
	char helo_buf[256];		/* the host's own name when none is set */
	uint64_t connect_timeout_ms;
	uint64_t command_timeout_ms;	/* 0 = RFC 5321 defaults */
	struct in_addr source;		/* transport = ksock: IPv4 sessions bind here; 0 = any */
	struct in6_addr source6;	/* transport = ksock: IPv6 sessions bind here; :: = any */
	/* [shaping], [shaping.domains] */
	struct ctl_shape_conf shape;
	char shape_over[CTL_DCONF_LIST_MAX][512];	/* "domain:key=v,..." */
	unsigned n_shape_over;
	/* [routes] */
	char routes[CTL_DCONF_LIST_MAX][512];	/* "domain=host[:port][:tls]", host "[v6]" too */
	unsigned n_routes;
	/* [dns] */
	const char *dns_servers;
	/* [retry] */
	struct ctl_retry_conf retry;
	/* [bounce] */
	struct ctl_bounce *bounce;	/* own rules, then the shipped ones; ctl_dconf_fini */
	unsigned bounce_final_mask;	/* 1u << CTL_BC_x that bounce */
	int sender_refusal_fails;	/* other 5xx: 0 deferred, 1 failed */
	/* [dkim] */
	struct ctl_dkim *dkim;		/* keys loaded and checked; NULL: none; ctl_dconf_fini */
	unsigned dkim_threads;		/* signer threads */
	const char *dkim_cpus;		/* their CPU list, NULL = unpinned */
};

/** Defaults for everything. */
void ctl_dconf_defaults(struct ctl_dconf *d);
/* (the struct is large: keep it static, not on a thread's stack) */

/**
 * Read every key of @p cf into @p d (strings point into @p cf, which must
 * outlive @p d) and refuse unknown keys.
 * @return 0, or -EINVAL with @p err "file:line: [section] key: reason".
 */
int ctl_dconf_load(struct ctl_dconf *d, struct ctl_conf *cf, char *err, size_t errlen);

/** Free what ctl_dconf_load allocated (the bounce rules, the DKIM keys). */
void ctl_dconf_fini(struct ctl_dconf *d);

/**
 * The [dataplane] key a dataplane command-line option overrides.
 * @return the key or NULL (not a dataplane option).
 */
const char *ctl_dconf_dp_key(int dp_opt);

#endif
