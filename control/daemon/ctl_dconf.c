/*
 * Daemon configuration (ctl_dconf.h): maps the sections and keys of the
 * configuration file onto the structures the modules take (dp_conf,
 * ctl_shape_conf, ctl_retry_conf, tls_ctx_conf, ...). Each key is read
 * through a ctl_conf getter, which validates it and names it on error;
 * [dataplane] values go through the dataplane's own option parser so the
 * file and the command line accept exactly the same things. Last, every
 * key nobody read is refused as unknown.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl_bounce.h"
#include "ctl_dconf.h"
#include "ctl_dkim.h"
#include "ctl_ksock.h"
#include "mp_log.h"
#include "smtp.h"

/* [dataplane] keys and the dataplane option each one is */
static const struct {
	const char *key;
	int opt;
} dp_keys[] = {
	{ "device", DP_OPT_VDEV },
	{ "ip", DP_OPT_IP },
	{ "gateway", DP_OPT_GW },
	{ "lcores", DP_OPT_LCORES },
	{ "file_prefix", DP_OPT_PREFIX },
	{ "hugepages", DP_OPT_HUGE },
	{ "mem_mb", DP_OPT_MEM },
	{ "mbufs", DP_OPT_MBUFS },
	{ "mtu", DP_OPT_MTU },
	{ "stats_file", DP_OPT_STATS_FILE },
	{ "stats_interval_ms", DP_OPT_STATS_IVL },
	{ "ping_gateway", DP_OPT_PING_GW },
	{ "garp", DP_OPT_GARP },
	{ "idle_sleep_max_us", DP_OPT_IDLE },
	{ "duration_s", DP_OPT_DURATION },
};

const char *
ctl_dconf_dp_key(int opt)
{
	if (opt == DP_OPT_PCI)
		return "device";
	for (size_t i = 0; i < sizeof(dp_keys) / sizeof(dp_keys[0]); i++)
		if (dp_keys[i].opt == opt)
			return dp_keys[i].key;
	return NULL;
}

void
ctl_dconf_defaults(struct ctl_dconf *d)
{
	memset(d, 0, sizeof(*d));
	d->ns = "mp:";
	d->min_idle_ms = 60000;
	d->batches = 64;
	d->dead_maxlen = 100000;
	d->events_maxlen = 1000000;
	d->events_max_age_ms = 7 * 86400000ull;
	d->transport = CTL_TRANSPORT_DPDK;
	d->grace_ms = 30000;
	d->abort_wait_ms = 5000;
	d->log_level = -1;
	d->stats_interval_ms = 1000;
	dp_conf_defaults(&d->dp);
	d->max_sessions = 1024;
	d->tcp_sndbuf = 32768;
	d->tcp_rcvbuf = 16384;
	d->helo = NULL;
	d->connect_timeout_ms = 30000;
	ctl_retry_conf_init(&d->retry);
}

/* A PCI address ("0000:03:00.0" or "03:00.0") rather than a vdev string. */
static int
is_pci(const char *s)
{
	unsigned a, b, c, e;
	char tail;

	return sscanf(s, "%x:%x:%x.%x%c", &a, &b, &c, &e, &tail) == 4 ||
		sscanf(s, "%x:%x.%x%c", &b, &c, &e, &tail) == 3;
}

static int
load_dataplane(struct ctl_dconf *d, struct ctl_conf *cf, char *err, size_t errlen)
{
	char where[256];

	for (size_t i = 0; i < sizeof(dp_keys) / sizeof(dp_keys[0]); i++) {
		const char *v = ctl_conf_get(cf, "dataplane", dp_keys[i].key);
		int opt = dp_keys[i].opt;

		if (v == NULL)
			continue;
		if (opt == DP_OPT_VDEV && is_pci(v))
			opt = DP_OPT_PCI;
		if (opt == DP_OPT_IP) {
			/* several source addresses, comma separated */
			char buf[1024], *save = NULL, *tok;

			snprintf(buf, sizeof(buf), "%s", v);
			d->dp.ifa.n_ip = 0;
			for (tok = strtok_r(buf, ", ", &save); tok != NULL;
			    tok = strtok_r(NULL, ", ", &save)) {
				if (dp_conf_add_ip(&d->dp, tok) != 0) {
					snprintf(err, errlen, "%sbad address \"%s\" (want A.B.C.D/len, "
						"at most %d)", ctl_conf_where(cf, "dataplane", "ip",
						where, sizeof(where)), tok, DP_MAX_IPS);
					return -EINVAL;
				}
			}
			continue;
		}
		if (dp_conf_apply_option(&d->dp, opt, v) != 0) {
			snprintf(err, errlen, "%sinvalid value \"%s\"",
				ctl_conf_where(cf, "dataplane", dp_keys[i].key, where, sizeof(where)), v);
			return -EINVAL;
		}
	}
	return 0;
}

struct list_arg {
	struct ctl_dconf *d;
	struct ctl_conf *cf;
	int shape;
	char *err;
	size_t errlen;
};

static int
list_item(void *arg, const struct ctl_conf_item *it)
{
	struct list_arg *a = arg;
	struct ctl_dconf *d = a->d;
	unsigned *n = a->shape ? &d->n_shape_over : &d->n_routes;
	char *slot;
	int len;

	if (*n == CTL_DCONF_LIST_MAX) {
		snprintf(a->err, a->errlen, "line %u: [%s] %s: more than %d entries",
			it->line, it->section, it->key, CTL_DCONF_LIST_MAX);
		return -EINVAL;
	}
	slot = a->shape ? d->shape_over[*n] : d->routes[*n];
	len = snprintf(slot, 512, a->shape ? "%s:%s" : "%s=%s", it->key, it->value);
	if (len < 0 || len >= 512) {
		snprintf(a->err, a->errlen, "line %u: [%s] %s: entry too long",
			it->line, it->section, it->key);
		return -EINVAL;
	}
	(*n)++;
	return 0;
}

#define U(sec, key, min, max, def, out) do { \
	uint64_t v_; \
	if (ctl_conf_get_uint(cf, sec, key, min, max, def, &v_, err, errlen) < 0) \
		return -EINVAL; \
	(out) = v_; \
} while (0)

#define MS(sec, key, min, max, def, out) do { \
	uint64_t v_; \
	if (ctl_conf_get_ms(cf, sec, key, min, max, def, &v_, err, errlen) < 0) \
		return -EINVAL; \
	(out) = v_; \
} while (0)

static int
get_double(struct ctl_conf *cf, const char *sec, const char *key, double def,
	double *out, char *err, size_t errlen)
{
	const char *v = ctl_conf_get(cf, sec, key);
	char where[256], *end;

	*out = def;
	if (v == NULL)
		return 0;
	*out = strtod(v, &end);
	if (end == v || *end != '\0' || *out < 0) {
		snprintf(err, errlen, "%snot a non-negative number: \"%s\"",
			ctl_conf_where(cf, sec, key, where, sizeof(where)), v);
		return -EINVAL;
	}
	return 0;
}

/* [bounce]: the operator's rules first, then the shipped ones; which
 * classes bounce; what other 5xx replies become. */
static int
load_bounce(struct ctl_dconf *d, struct ctl_conf *cf, char *err, size_t errlen)
{
	static const char *const refusal[] = { "defer", "fail", NULL };
	const char *rules = ctl_conf_get(cf, "bounce", "rules");
	const char *fin = ctl_conf_get(cf, "bounce", "final_classes");
	char where[256], why[384];
	int iv;

	ctl_bounce_free(d->bounce);
	d->bounce = ctl_bounce_new();
	if (d->bounce == NULL) {
		mp_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (rules != NULL && ctl_bounce_load_file(d->bounce, rules, why, sizeof(why)) < 0) {
		mp_errf(err, errlen, "%s%s", ctl_conf_where(cf, "bounce", "rules", where,
			sizeof(where)), why);
		return -EINVAL;
	}
	if (ctl_bounce_load_text(d->bounce, ctl_bounce_builtin, "rules.conf", why, sizeof(why)) < 0) {
		mp_errf(err, errlen, "shipped bounce rules: %s", why);
		return -EINVAL;
	}
	d->bounce_final_mask = 1u << CTL_BC_INVALID_RECIPIENT | 1u << CTL_BC_BAD_DOMAIN;
	if (fin != NULL) {
		char buf[512], *save = NULL, *t;

		snprintf(buf, sizeof(buf), "%s", fin);
		d->bounce_final_mask = 0;
		for (t = strtok_r(buf, ", \t", &save); t != NULL; t = strtok_r(NULL, ", \t", &save)) {
			enum ctl_bounce_class c;

			if (ctl_bounce_class_parse(t, &c) < 0) {
				mp_errf(err, errlen, "%sunknown class '%.60s'", ctl_conf_where(cf,
					"bounce", "final_classes", where, sizeof(where)), t);
				return -EINVAL;
			}
			d->bounce_final_mask |= 1u << c;
		}
		if (d->bounce_final_mask == 0) {
			mp_errf(err, errlen, "%sno class given", ctl_conf_where(cf, "bounce",
				"final_classes", where, sizeof(where)));
			return -EINVAL;
		}
	}
	if (ctl_conf_get_enum(cf, "bounce", "sender_refusal", refusal, 0, &iv, err, errlen) < 0)
		return -EINVAL;
	d->sender_refusal_fails = iv == 1;
	return 0;
}

struct dkim_arg {
	struct ctl_dconf *d;
	struct ctl_conf *cf;
	char *err;
	size_t errlen;
};

/* [dkim] DOMAIN = SELECTOR FILE[, SELECTOR FILE] */
static int
dkim_item(void *arg, const struct ctl_conf_item *it)
{
	static const char *const own[] = { "mode", "threads", "cpus", NULL };
	struct dkim_arg *a = arg;
	char where[256], why[384];

	for (size_t i = 0; own[i] != NULL; i++)
		if (strcmp(it->key, own[i]) == 0)
			return 0;
	if (strchr(it->key, '.') == NULL) {
		mp_errf(a->err, a->errlen, "%sunknown key (a signing domain is a "
			"fully qualified name)", ctl_conf_where(a->cf, "dkim", it->key, where,
			sizeof(where)));
		return -EINVAL;
	}
	if (ctl_dkim_add_keys(a->d->dkim, it->key, it->value, why, sizeof(why)) < 0) {
		mp_errf(a->err, a->errlen, "%s%s", ctl_conf_where(a->cf, "dkim", it->key,
			where, sizeof(where)), why);
		return -EINVAL;
	}
	return 0;
}

/* [dkim]: every key file loaded and checked now, before any NIC or
 * connection is touched. */
static int
load_dkim(struct ctl_dconf *d, struct ctl_conf *cf, char *err, size_t errlen)
{
	static const char *const modes[] = { "optional", "required", NULL };
	struct dkim_arg a = { d, cf, err, errlen };
	uint64_t n;
	int iv;

	ctl_dkim_free(d->dkim);
	d->dkim = ctl_dkim_new();
	if (d->dkim == NULL) {
		mp_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (ctl_conf_get_enum(cf, "dkim", "mode", modes, 0, &iv, err, errlen) < 0)
		return -EINVAL;
	ctl_dkim_set_mode(d->dkim, (enum ctl_dkim_mode)iv);
	if (ctl_conf_get_uint(cf, "dkim", "threads", 1, 64, 1, &n, err, errlen) < 0)
		return -EINVAL;
	d->dkim_threads = (unsigned)n;
	d->dkim_cpus = ctl_conf_get(cf, "dkim", "cpus");
	if (ctl_conf_each(cf, "dkim", dkim_item, &a) != 0)
		return -EINVAL;
	if (ctl_dkim_ndomains(d->dkim) == 0 && iv == CTL_DKIM_REQUIRED) {
		char where[256];

		mp_errf(err, errlen, "%srequired, but no signing domain has a key",
			ctl_conf_where(cf, "dkim", "mode", where, sizeof(where)));
		return -EINVAL;
	}
	return 0;
}

int
ctl_dconf_load(struct ctl_dconf *d, struct ctl_conf *cf, char *err, size_t errlen)
{
	static const char *const transports[] = { "dpdk", "ksock", NULL };
	static const char *const levels[] = { "err", "warn", "info", "debug", NULL };
	static const char *const versions[] = { "1.2", "1.3", NULL };
	static const char *const all_versions[] = { "1.0", "1.1", "1.2", "1.3", NULL };
	struct list_arg la = { d, cf, 0, err, errlen };
	const char *v;
	int iv;

	/* [redis] */
	d->redis_url = ctl_conf_get(cf, "redis", "url");
	d->ns = ctl_conf_get_str(cf, "redis", "namespace", d->ns);
	d->consumer = ctl_conf_get(cf, "redis", "consumer");
	MS("redis", "claim_min_idle", 1000, 86400000ull, d->min_idle_ms, d->min_idle_ms);
	U("redis", "batches", 1, 100000, d->batches, d->batches);
	U("redis", "dead_maxlen", 100, 100000000, d->dead_maxlen, d->dead_maxlen);
	U("redis", "events_maxlen", 1000, 1000000000, d->events_maxlen, d->events_maxlen);
	MS("redis", "events_max_age", 60000, 10 * 365 * 86400000ull, d->events_max_age_ms,
		d->events_max_age_ms);

	/* [daemon] */
	if (ctl_conf_get_enum(cf, "daemon", "transport", transports, d->transport,
	    &d->transport, err, errlen) < 0)
		return -EINVAL;
	MS("daemon", "grace", 0, 3600000ull, d->grace_ms, d->grace_ms);
	MS("daemon", "abort_wait", 0, 600000ull, d->abort_wait_ms, d->abort_wait_ms);
	v = ctl_conf_get(cf, "daemon", "log_level");
	if (v != NULL) {
		if (ctl_conf_get_enum(cf, "daemon", "log_level", levels, 0, &iv, err, errlen) < 0)
			return -EINVAL;
		d->log_level = mp_log_level_parse(levels[iv]);
	}
	d->stats_file = ctl_conf_get(cf, "daemon", "stats_file");
	MS("daemon", "stats_interval", 100, 3600000ull, d->stats_interval_ms,
		d->stats_interval_ms);
	if (ctl_conf_get_bool(cf, "daemon", "until_idle", d->until_idle, &d->until_idle,
	    err, errlen) < 0)
		return -EINVAL;
	MS("daemon", "timeout", 0, 30ull * 86400000, 0, d->timeout_ms);

	/* [dataplane] */
	if (load_dataplane(d, cf, err, errlen) < 0)
		return -EINVAL;

	/* [workers] */
	U("workers", "max_sessions", 1, 1000000, d->max_sessions, d->max_sessions);
	U("workers", "tcp_sndbuf", 4096, 16u << 20, d->tcp_sndbuf, d->tcp_sndbuf);
	U("workers", "tcp_rcvbuf", 4096, 16u << 20, d->tcp_rcvbuf, d->tcp_rcvbuf);

	/* [tls] */
	d->tls.ca_file = ctl_conf_get(cf, "tls", "ca_file");
	d->tls.ca_dir = ctl_conf_get(cf, "tls", "ca_dir");
	if (ctl_conf_get_enum(cf, "tls", "min_version", versions, 0, &iv, err, errlen) < 0)
		return -EINVAL;
	d->tls.min_version = iv == 1 ? TLS_VERSION_1_3 : TLS_VERSION_1_2;
	if (ctl_conf_get_enum(cf, "tls", "opportunistic_min_version", all_versions, 2, &iv,
	    err, errlen) < 0)
		return -EINVAL;
	d->tls.opportunistic_min_version = tls_version_parse(all_versions[iv]);
	d->tls.ciphers = ctl_conf_get(cf, "tls", "ciphers");
	d->tls.ciphersuites = ctl_conf_get(cf, "tls", "ciphersuites");
	U("tls", "session_cache", 0, 1000000, 0, d->tls.cache_capacity);

	/* [smtp] */
	d->helo = ctl_conf_get_str(cf, "smtp", "helo", d->helo);
	if (d->helo == NULL && smtp_helo_name_default(d->helo_buf, sizeof(d->helo_buf)) == 0)
		d->helo = d->helo_buf;
	{
		char where[256], why[256];

		/* only a daemon that sends needs one: the dataplane alone
		 * (no Redis URL) answers ARP and ping */
		if (d->redis_url != NULL && smtp_helo_name_check(d->helo, why, sizeof(why)) < 0) {
			mp_errf(err, errlen, "%s%s%s; set it to this host's fully qualified "
				"name, the PTR name of its sending address",
				ctl_conf_where(cf, "smtp", "helo", where, sizeof(where)),
				ctl_conf_get(cf, "smtp", "helo") == NULL ?
				"unset, and this host's own name is no use: " : "", why);
			return -EINVAL;
		}
	}
	MS("smtp", "connect_timeout", 100, 600000, d->connect_timeout_ms, d->connect_timeout_ms);
	MS("smtp", "command_timeout", 0, 3600000, 0, d->command_timeout_ms);
	/* the kernel transport's source addresses, one per family; the DPDK
	 * transport's are [dataplane] ip (mailpump.c warns if these are set
	 * there, where nothing reads them) */
	{
		static const struct { const char *key; int family; } src[] = {
			{ "source", AF_INET }, { "source6", AF_INET6 },
		};

		for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++) {
			char where[256], why[256];

			v = ctl_conf_get(cf, "smtp", src[i].key);
			if (v != NULL && ctl_ksock_source_parse(v, src[i].family,
			    src[i].family == AF_INET ? (void *)&d->source : (void *)&d->source6,
			    why, sizeof(why)) < 0) {
				mp_errf(err, errlen, "%s%s", ctl_conf_where(cf, "smtp", src[i].key,
					where, sizeof(where)), why);
				return -EINVAL;
			}
		}
	}

	/* [shaping] */
	U("shaping", "max_conns", 1, 100000, 0, d->shape.defaults.max_conns);
	U("shaping", "msgs_per_conn", 1, 100000, 0, d->shape.defaults.msgs_per_conn);
	U("shaping", "rcpt_per_txn", 1, 1000, 0, d->shape.defaults.rcpts_per_txn);
	if (get_double(cf, "shaping", "rate", 0, &d->shape.defaults.rate, err, errlen) < 0)
		return -EINVAL;
	U("shaping", "burst", 0, 1000000, 0, d->shape.defaults.burst);
	la.shape = 1;
	if (ctl_conf_each(cf, "shaping.domains", list_item, &la) != 0)
		return -EINVAL;

	/* [routes] */
	la.shape = 0;
	if (ctl_conf_each(cf, "routes", list_item, &la) != 0)
		return -EINVAL;

	/* [dns] */
	d->dns_servers = ctl_conf_get(cf, "dns", "servers");

	/* [retry] */
	MS("retry", "base", 1000, 30ull * 86400000, d->retry.base_ms, d->retry.base_ms);
	U("retry", "factor_pct", 100, 10000, d->retry.factor_pct, d->retry.factor_pct);
	MS("retry", "cap", 1000, 30ull * 86400000, d->retry.cap_ms, d->retry.cap_ms);
	U("retry", "jitter_pct", 0, 100, d->retry.jitter_pct, d->retry.jitter_pct);
	if (d->retry.cap_ms < d->retry.base_ms) {
		char where[256];

		snprintf(err, errlen, "%sshorter than [retry] base",
			ctl_conf_where(cf, "retry", "cap", where, sizeof(where)));
		return -EINVAL;
	}

	if (load_bounce(d, cf, err, errlen) < 0)
		return -EINVAL;
	if (load_dkim(d, cf, err, errlen) < 0)
		return -EINVAL;

	if (ctl_conf_check_unused(cf, err, errlen) < 0)
		return -EINVAL;
	return 0;
}

void
ctl_dconf_fini(struct ctl_dconf *d)
{
	ctl_bounce_free(d->bounce);
	d->bounce = NULL;
	ctl_dkim_free(d->dkim);
	d->dkim = NULL;
}
