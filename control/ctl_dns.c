/*
 * Destination resolution over c-ares. ctl_dns_resolve() turns a domain
 * into a job: a route decides at once (IP host) or after one A query (host
 * name); a cache hit is a job born finished; otherwise the job asks MX,
 * then A for every candidate host in parallel, and finishes when the last
 * answer is in. Jobs for the same domain in flight are shared (waiters).
 * A finished job moves to the ready list; ctl_dns_process() runs the
 * callbacks of the ready list and frees the jobs, so user code never runs
 * inside ctl_dns_resolve() or inside a c-ares callback.
 *
 * Answers are parsed here rather than with ares_parse_mx_reply(), which in
 * c-ares 1.18 drops the TTLs and the SOA of negative answers that the
 * cache needs. The cache is a hash table plus an LRU list, bounded by
 * cache_max; route host lookups are cached under "@host" (no domain can
 * start with '@').
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <ares.h>

#include "ctl_dns.h"
#include "mp_log.h"

#define DNS_T_A     1
#define DNS_T_CNAME 5
#define DNS_T_SOA   6
#define DNS_T_MX    15
#define DNS_T_AAAA  28
#define DNS_C_IN    1
#define DNS_KEY_MAX (CTL_DNS_NAME_MAX + 2)
#define DNS_MX_MAX  64     /* MX records looked at per answer */
#define DNS_ROUTES_MAX 4096

/* A_V6ONLY: no A record but AAAA ones: usable (addr6) when the resolver is
 * configured for IPv6, else a host we cannot reach yet */
enum a_state { A_PENDING, A_OK, A_NEG, A_NXDOMAIN, A_TEMP, A_V6ONLY };

struct dns_waiter {
	struct dns_waiter *next;
	int internal;                   /* a route's domain job waiting for its host */
	void (*cb)(void *user, const struct ctl_dns_result *res);
	void *user;
};

/* One resolution of one key (domain, or "@host" for a route host). */
struct dns_job {
	struct dns_job *hnext;          /* in-flight hash chain */
	struct dns_job *rnext;          /* ready list */
	struct ctl_dns *dns;
	char key[DNS_KEY_MAX + 1];
	struct dns_waiter *waiters, **wtail;
	unsigned outstanding;           /* c-ares queries in flight */
	int finished, in_hash;
	/* the result being built */
	enum ctl_dns_status status;
	int implicit_mx, from_route, implicit_tls, from_cache, a_temp_seen;
	uint32_t ttl_s;                 /* smallest TTL seen */
	uint32_t neg_ttl_s;             /* negative TTL from an SOA, 0 = none */
	unsigned n_hosts;
	struct ctl_dns_host hosts[CTL_DNS_HOST_MAX];
	enum a_state a[CTL_DNS_HOST_MAX];
	char error[CTL_DNS_ERROR_MAX];
	uint16_t route_port;            /* route jobs */
};

/* Argument of one c-ares query. */
struct dns_q {
	struct dns_job *job;
	int host;                       /* -1 = the MX query, else hosts[] index */
	int aaaa;                       /* an AAAA query after a NODATA for A */
};

struct dns_cent {
	struct dns_cent *hnext, *prev, *next;
	uint32_t hash;
	uint64_t expires_ms;
	char key[DNS_KEY_MAX + 1];
	enum ctl_dns_status status;
	int implicit_mx;
	unsigned n_hosts;
	struct ctl_dns_host *hosts;
	char error[CTL_DNS_ERROR_MAX];
};

struct dns_route {
	char domain[CTL_DNS_NAME_MAX + 2];
	char host[CTL_DNS_NAME_MAX + 1];
	uint16_t port;
	int implicit_tls;
	int is_ip;                      /* host is an address literal: AF_INET or AF_INET6 */
	struct in_addr ip;
	struct in6_addr ip6;
};

struct ctl_dns {
	struct ctl_dns_conf conf;
	ares_channel ch;
	int closing;
	/* in-flight jobs by key */
	struct dns_job **jobs;
	unsigned njobs_b;
	unsigned pending;               /* requests without callback yet */
	struct dns_job *ready, **ready_tail;
	/* cache */
	struct dns_cent **cb;
	unsigned ncb;
	struct dns_cent *lru_head, *lru_tail;
	unsigned ncache;
	/* routes */
	struct dns_route *routes;
	unsigned nroutes;
	struct ctl_dns_stats st;
};

static pthread_once_t dns_once = PTHREAD_ONCE_INIT;
static int dns_lib_rc;

static void
dns_lib_init(void)
{
	dns_lib_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

static uint64_t
dns_now(const struct ctl_dns *dns)
{
	struct timespec ts;

	if (dns->conf.now_ms != NULL)
		return dns->conf.now_ms(dns->conf.now_arg);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t
str_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static uint64_t
mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * Lower-case a host/domain name into @p out, dropping one trailing dot.
 * Letters, digits, '-' and '_', labels of 1..63. @return 0 or -EINVAL.
 */
static int
name_norm(const char *in, size_t n, char *out)
{
	size_t lab = 0;

	if (in == NULL)
		return -EINVAL;
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > CTL_DNS_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '.') {
			if (lab == 0)
				return -EINVAL;
			lab = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++lab > 63)
				return -EINVAL;
		} else {
			return -EINVAL;
		}
		out[i] = (char)tolower(c);
	}
	if (lab == 0)
		return -EINVAL;
	out[n] = '\0';
	return 0;
}

/* Copy a name known to fit (validated on the way in). */
static void
name_copy(char *dst, const char *src)
{
	size_t n = strnlen(src, CTL_DNS_NAME_MAX);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static uint32_t
clamp_ttl(const struct ctl_dns *dns, uint32_t ttl)
{
	if (ttl < dns->conf.min_ttl_s)
		ttl = dns->conf.min_ttl_s;
	if (ttl > dns->conf.max_ttl_s)
		ttl = dns->conf.max_ttl_s;
	return ttl;
}

/* ------------------------------------------------------------------ */
/* answer parsing                                                      */

struct dns_msg {
	const unsigned char *buf;
	int len;
	unsigned rcode, qd, an, ns;
	int off;                        /* start of the answer section */
};

static int
skip_name(const unsigned char *b, int len, int off)
{
	for (int hops = 0; off < len && hops < 128; hops++) {
		unsigned l = b[off];

		if (l == 0)
			return off + 1;
		if ((l & 0xc0) == 0xc0)
			return off + 2 <= len ? off + 2 : -1;
		if (l & 0xc0)
			return -1;
		off += 1 + (int)l;
	}
	return -1;
}

static int
msg_open(struct dns_msg *m, const unsigned char *buf, int len)
{
	int off = 12;

	if (buf == NULL || len < 12)
		return -1;
	m->buf = buf;
	m->len = len;
	m->rcode = buf[3] & 0x0f;
	m->qd = (unsigned)buf[4] << 8 | buf[5];
	m->an = (unsigned)buf[6] << 8 | buf[7];
	m->ns = (unsigned)buf[8] << 8 | buf[9];
	for (unsigned i = 0; i < m->qd; i++) {
		off = skip_name(buf, len, off);
		if (off < 0 || off + 4 > len)
			return -1;
		off += 4;
	}
	m->off = off;
	return 0;
}

struct dns_rr {
	unsigned type, cls;
	uint32_t ttl;
	int rdata, rdlen;
};

/* Read the RR at *off; advance *off. @return 0 or -1 (truncated). */
static int
rr_next(const struct dns_msg *m, int *off, struct dns_rr *rr)
{
	const unsigned char *b = m->buf;
	int o = skip_name(b, m->len, *off);

	if (o < 0 || o + 10 > m->len)
		return -1;
	rr->type = (unsigned)b[o] << 8 | b[o + 1];
	rr->cls = (unsigned)b[o + 2] << 8 | b[o + 3];
	rr->ttl = (uint32_t)b[o + 4] << 24 | (uint32_t)b[o + 5] << 16 |
		  (uint32_t)b[o + 6] << 8 | b[o + 7];
	if (rr->ttl > 0x7fffffff)       /* RFC 2181 8: treat as zero */
		rr->ttl = 0;
	rr->rdlen = b[o + 8] << 8 | b[o + 9];
	rr->rdata = o + 10;
	if (rr->rdata + rr->rdlen > m->len)
		return -1;
	*off = rr->rdata + rr->rdlen;
	return 0;
}

/* Negative TTL from the SOA in the authority section (RFC 2308 5), 0 if none. */
static uint32_t
msg_neg_ttl(const struct dns_msg *m)
{
	struct dns_rr rr;
	int off = m->off;

	for (unsigned i = 0; i < m->an; i++)
		if (rr_next(m, &off, &rr) < 0)
			return 0;
	for (unsigned i = 0; i < m->ns; i++) {
		int o;

		if (rr_next(m, &off, &rr) < 0)
			return 0;
		if (rr.type != DNS_T_SOA)
			continue;
		o = skip_name(m->buf, m->len, rr.rdata);
		o = o < 0 ? -1 : skip_name(m->buf, m->len, o);
		if (o < 0 || o + 20 > rr.rdata + rr.rdlen) {
			return 0;
		} else {
			const unsigned char *p = m->buf + o + 16;
			uint32_t min = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
				       (uint32_t)p[2] << 8 | p[3];

			min = min < rr.ttl ? min : rr.ttl;
			return min ? min : 1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* cache                                                               */

static void
lru_unlink(struct ctl_dns *dns, struct dns_cent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		dns->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		dns->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_push(struct ctl_dns *dns, struct dns_cent *e)
{
	e->prev = NULL;
	e->next = dns->lru_head;
	if (dns->lru_head)
		dns->lru_head->prev = e;
	dns->lru_head = e;
	if (dns->lru_tail == NULL)
		dns->lru_tail = e;
}

static void
cache_remove(struct ctl_dns *dns, struct dns_cent *e)
{
	struct dns_cent **pp = &dns->cb[e->hash & (dns->ncb - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(dns, e);
	free(e->hosts);
	free(e);
	dns->ncache--;
}

static struct dns_cent *
cache_find(struct ctl_dns *dns, const char *key, uint64_t now)
{
	uint32_t h = str_hash(key);
	struct dns_cent *e;

	for (e = dns->cb[h & (dns->ncb - 1)]; e != NULL; e = e->hnext) {
		if (e->hash != h || strcmp(e->key, key) != 0)
			continue;
		if (now >= e->expires_ms) {
			cache_remove(dns, e);
			return NULL;
		}
		lru_unlink(dns, e);
		lru_push(dns, e);
		return e;
	}
	return NULL;
}

static void
cache_put(struct ctl_dns *dns, const struct dns_job *j, uint64_t now)
{
	struct dns_cent *e;
	uint32_t h;

	if (dns->conf.no_cache || j->ttl_s == 0)
		return;
	h = str_hash(j->key);
	for (e = dns->cb[h & (dns->ncb - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && strcmp(e->key, j->key) == 0)
			break;
	if (e != NULL)
		cache_remove(dns, e);
	while (dns->ncache >= dns->conf.cache_max && dns->lru_tail != NULL) {
		cache_remove(dns, dns->lru_tail);
		dns->st.evictions++;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return;
	if (j->n_hosts > 0) {
		e->hosts = malloc(j->n_hosts * sizeof(*e->hosts));
		if (e->hosts == NULL) {
			free(e);
			return;
		}
		memcpy(e->hosts, j->hosts, j->n_hosts * sizeof(*e->hosts));
	}
	e->n_hosts = j->n_hosts;
	e->hash = h;
	memcpy(e->key, j->key, sizeof(e->key));
	e->expires_ms = now + (uint64_t)j->ttl_s * 1000;
	e->status = j->status;
	e->implicit_mx = j->implicit_mx;
	memcpy(e->error, j->error, sizeof(e->error));
	e->hnext = dns->cb[h & (dns->ncb - 1)];
	dns->cb[h & (dns->ncb - 1)] = e;
	lru_push(dns, e);
	dns->ncache++;
}

void
ctl_dns_cache_flush(struct ctl_dns *dns)
{
	while (dns->lru_head != NULL)
		cache_remove(dns, dns->lru_head);
}

/* ------------------------------------------------------------------ */
/* jobs                                                                */

static struct dns_job *
job_find(struct ctl_dns *dns, const char *key)
{
	struct dns_job *j;

	for (j = dns->jobs[str_hash(key) & (dns->njobs_b - 1)]; j != NULL; j = j->hnext)
		if (strcmp(j->key, key) == 0)
			return j;
	return NULL;
}

static void
job_unhash(struct ctl_dns *dns, struct dns_job *j)
{
	struct dns_job **pp;

	if (!j->in_hash)
		return;
	pp = &dns->jobs[str_hash(j->key) & (dns->njobs_b - 1)];
	while (*pp != j)
		pp = &(*pp)->hnext;
	*pp = j->hnext;
	j->in_hash = 0;
}

static struct dns_job *
job_new(struct ctl_dns *dns, const char *key, int hashed)
{
	struct dns_job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return NULL;
	j->dns = dns;
	snprintf(j->key, sizeof(j->key), "%s", key);
	j->wtail = &j->waiters;
	j->ttl_s = UINT32_MAX;
	if (hashed) {
		unsigned b = str_hash(key) & (dns->njobs_b - 1);

		j->hnext = dns->jobs[b];
		dns->jobs[b] = j;
		j->in_hash = 1;
	}
	return j;
}

static void
job_ready(struct dns_job *j)
{
	struct ctl_dns *dns = j->dns;

	j->finished = 1;
	j->rnext = NULL;
	*dns->ready_tail = j;
	dns->ready_tail = &j->rnext;
}

static void
job_ttl(struct dns_job *j, uint32_t ttl)
{
	if (ttl < j->ttl_s)
		j->ttl_s = ttl;
}

static void
job_fail(struct dns_job *j, enum ctl_dns_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
job_fail(struct dns_job *j, enum ctl_dns_status st, const char *fmt, ...)
{
	va_list ap;

	j->status = st;
	j->n_hosts = 0;
	va_start(ap, fmt);
	vsnprintf(j->error, sizeof(j->error), fmt, ap);
	va_end(ap);
}

static int job_query(struct dns_job *j, const char *name, int type, int host);

/* All answers are in: pick the status, compact the host list, cache. */
static void
job_finish(struct dns_job *j)
{
	struct ctl_dns *dns = j->dns;
	unsigned n = 0, neg = 0, nx = 0, tmp = 0, v6 = 0;
	uint32_t neg_ttl = j->neg_ttl_s ? j->neg_ttl_s : dns->conf.neg_ttl_s;

	if (j->status == CTL_DNS_OK) {
		for (unsigned i = 0; i < j->n_hosts; i++) {
			if ((j->a[i] == A_OK && j->hosts[i].n_addr > 0) ||
			    (j->a[i] == A_V6ONLY && dns->conf.ipv6 && j->hosts[i].n_addr6 > 0)) {
				if (n != i)
					j->hosts[n] = j->hosts[i];
				n++;
			} else if (j->a[i] == A_TEMP) {
				tmp++;
			} else if (j->a[i] == A_NXDOMAIN) {
				nx++;
			} else if (j->a[i] == A_V6ONLY) {
				v6++;
			} else {
				neg++;
			}
		}
		if (n > 0) {
			j->n_hosts = n;
			if (neg + nx + tmp + v6 > 0 && j->ttl_s > neg_ttl)
				j->ttl_s = neg_ttl;
		} else if (j->from_route) {
			job_fail(j, CTL_DNS_TEMPFAIL, "route host %s: %s", j->hosts[0].name,
				 tmp ? "lookup failed" : v6 ? "has only IPv6 addresses; "
				 "the transport is IPv4-only" : "has no IPv4 address");
		} else if (tmp > 0) {
			job_fail(j, CTL_DNS_TEMPFAIL, "%s: address lookup of %s failed "
				 "temporarily", j->key, j->implicit_mx ? "the domain" : "the MX hosts");
		} else if (v6 > 0) {
			/* not the domain's fault: defer, never bounce (RFC 5321
			 * 5.1 allows IPv6-only MX hosts; the resolver was not
			 * configured for IPv6 because the transport, DPDK/utcp,
			 * is IPv4-only) */
			job_fail(j, CTL_DNS_TEMPFAIL, j->implicit_mx ?
				 "%s: the domain has only IPv6 addresses; the transport is IPv4-only "
				 "(IPv6 needs transport=ksock)" :
				 "%s: MX host has only IPv6 addresses; the transport is IPv4-only "
				 "(IPv6 needs transport=ksock)", j->key);
		} else if (j->implicit_mx && nx > 0) {
			job_fail(j, CTL_DNS_NXDOMAIN, "%s: domain not found", j->key);
		} else {
			job_fail(j, CTL_DNS_NO_ADDRESS, j->implicit_mx ?
				 "%s: no MX and no IPv4 %saddress" :
				 "%s: no MX host has an IPv4 %saddress", j->key,
				 dns->conf.ipv6 ? "or IPv6 " : "");
		}
	}
	/* An implicit MX holds only as long as the NODATA answer for MX. */
	if (j->status == CTL_DNS_OK && j->implicit_mx && j->neg_ttl_s && j->ttl_s > j->neg_ttl_s)
		j->ttl_s = j->neg_ttl_s;
	switch (j->status) {
	case CTL_DNS_OK:
		j->ttl_s = clamp_ttl(dns, j->ttl_s == UINT32_MAX ? 0 : j->ttl_s);
		break;
	case CTL_DNS_TEMPFAIL:
		j->ttl_s = dns->conf.tempfail_ttl_s;
		break;
	default:
		j->ttl_s = clamp_ttl(dns, neg_ttl);
		break;
	}
	/* Routes are not cached (they are configuration); their host lookups are. */
	if (j->from_route) {
		if (j->key[0] == '@')
			cache_put(dns, j, dns_now(dns));
	} else {
		cache_put(dns, j, dns_now(dns));
	}
	if (j->key[0] != '@')
		MP_LOG(MP_LOG_DEBUG, "dns", "domain=%s status=%s hosts=%u first=%s ttl=%u "
		       "implicit_mx=%d route=%d error=\"%s\"", j->key,
		       ctl_dns_status_name(j->status), j->n_hosts,
		       j->n_hosts ? j->hosts[0].name : "-", j->ttl_s, j->implicit_mx,
		       j->from_route, j->error);
	job_unhash(dns, j);
	job_ready(j);
}

static int
host_cmp(const void *a, const void *b, void *seedp)
{
	const struct ctl_dns_host *x = a, *y = b;
	uint64_t seed = *(const uint64_t *)seedp, hx, hy;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	hx = mix64(seed ^ str_hash(x->name));
	hy = mix64(seed ^ str_hash(y->name));
	if (hx != hy)
		return hx < hy ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void
on_mx(struct dns_job *j, int status, const unsigned char *abuf, int alen)
{
	struct ctl_dns *dns = j->dns;
	struct ctl_dns_host mx[DNS_MX_MAX];
	unsigned nmx = 0, nnull = 0, nrr = 0;
	struct dns_msg m;
	struct dns_rr rr;
	int off;

	if (status == ARES_ENOTFOUND) {
		if (msg_open(&m, abuf, alen) == 0)
			j->neg_ttl_s = msg_neg_ttl(&m);
		job_fail(j, CTL_DNS_NXDOMAIN, "%s: domain not found (NXDOMAIN)", j->key);
		return;
	}
	if (status != ARES_SUCCESS && status != ARES_ENODATA) {
		dns->st.query_failures++;
		job_fail(j, CTL_DNS_TEMPFAIL, "%s: MX lookup failed: %s", j->key,
			 ares_strerror(status));
		return;
	}
	if (msg_open(&m, abuf, alen) < 0) {
		dns->st.query_failures++;
		job_fail(j, CTL_DNS_TEMPFAIL, "%s: MX lookup: malformed reply", j->key);
		return;
	}
	off = m.off;
	for (unsigned i = 0; i < m.an; i++) {
		char *name = NULL;
		long enclen;

		if (rr_next(&m, &off, &rr) < 0) {
			dns->st.query_failures++;
			job_fail(j, CTL_DNS_TEMPFAIL, "%s: MX lookup: truncated reply", j->key);
			return;
		}
		if (rr.cls != DNS_C_IN || (rr.type != DNS_T_MX && rr.type != DNS_T_CNAME))
			continue;
		job_ttl(j, rr.ttl);
		if (rr.type != DNS_T_MX || rr.rdlen < 3)
			continue;
		nrr++;
		if (ares_expand_name(m.buf + rr.rdata + 2, m.buf, m.len, &name, &enclen) !=
		    ARES_SUCCESS) {
			dns->st.query_failures++;
			job_fail(j, CTL_DNS_TEMPFAIL, "%s: MX lookup: bad exchange name", j->key);
			return;
		}
		if (name[0] == '\0' || strcmp(name, ".") == 0) {
			nnull++;
		} else if (nmx < DNS_MX_MAX) {
			int dup = 0;
			char norm[CTL_DNS_NAME_MAX + 1];

			if (name_norm(name, strlen(name), norm) == 0) {
				uint16_t pref = (uint16_t)(m.buf[rr.rdata] << 8 | m.buf[rr.rdata + 1]);

				for (unsigned k = 0; k < nmx; k++) {
					if (strcmp(mx[k].name, norm) == 0) {
						dup = 1;
						if (pref < mx[k].pref)
							mx[k].pref = pref;
					}
				}
				if (!dup) {
					memset(&mx[nmx], 0, sizeof(mx[nmx]));
					memcpy(mx[nmx].name, norm, strlen(norm) + 1);
					mx[nmx].pref = pref;
					mx[nmx].port = CTL_DNS_PORT_DEFAULT;
					nmx++;
				}
			}
		}
		ares_free_string(name);
	}
	if (nnull > 0 && nmx == 0) {
		job_fail(j, CTL_DNS_NULL_MX, "%s: domain accepts no mail (null MX, RFC 7505)",
			 j->key);
		return;
	}
	if (nrr == 0) {
		/* NODATA: implicit MX, the domain itself (RFC 5321 5.1). */
		if (status == ARES_ENODATA)
			j->neg_ttl_s = msg_neg_ttl(&m);
		j->implicit_mx = 1;
		j->n_hosts = 1;
		memset(&j->hosts[0], 0, sizeof(j->hosts[0]));
		name_copy(j->hosts[0].name, j->key);
		j->hosts[0].port = CTL_DNS_PORT_DEFAULT;
	} else if (nmx == 0) {
		job_fail(j, CTL_DNS_NO_ADDRESS, "%s: no usable MX host name", j->key);
		return;
	} else {
		qsort_r(mx, nmx, sizeof(mx[0]), host_cmp, &dns->conf.seed);
		j->n_hosts = nmx < CTL_DNS_HOST_MAX ? nmx : CTL_DNS_HOST_MAX;
		memcpy(j->hosts, mx, j->n_hosts * sizeof(mx[0]));
	}
	for (unsigned i = 0; i < j->n_hosts; i++) {
		struct in_addr ip;

		/* An IPv4 literal as MX exchange breaks RFC 5321 5.1, but its
		 * meaning is plain: use it instead of asking DNS about it. */
		if (inet_pton(AF_INET, j->hosts[i].name, &ip) == 1) {
			j->hosts[i].addr[0] = ip;
			j->hosts[i].n_addr = 1;
			j->hosts[i].n_addr6 = 0;
			j->a[i] = A_OK;
			continue;
		}
		j->hosts[i].n_addr6 = 0;
		j->a[i] = A_PENDING;
	}
	for (unsigned i = 0; i < j->n_hosts; i++)
		if (j->a[i] == A_PENDING && job_query(j, j->hosts[i].name, DNS_T_A, (int)i) < 0)
			j->a[i] = A_TEMP;
}

/* After a NODATA for A: AAAA records make the host an IPv6-only one, never
 * one without addresses (a bounce). Its addresses are kept (addr6) only
 * when the resolver is configured for IPv6; else it is a deferral. */
static void
on_aaaa(struct dns_job *j, int host, int status, const unsigned char *abuf, int alen)
{
	struct ctl_dns_host *h = &j->hosts[host];
	struct dns_msg m;
	struct dns_rr rr;
	int off;

	j->a[host] = A_NEG;
	h->n_addr6 = 0;
	if (status != ARES_SUCCESS || msg_open(&m, abuf, alen) < 0)
		return;
	off = m.off;
	for (unsigned i = 0; i < m.an && rr_next(&m, &off, &rr) == 0; i++) {
		if (rr.cls != DNS_C_IN || rr.type != DNS_T_AAAA || rr.rdlen != 16)
			continue;
		j->a[host] = A_V6ONLY;
		if (!j->dns->conf.ipv6)
			return;
		job_ttl(j, rr.ttl);
		if (h->n_addr6 < CTL_DNS_ADDR_MAX)
			memcpy(&h->addr6[h->n_addr6++], m.buf + rr.rdata, 16);
	}
}

static void
on_a(struct dns_job *j, int host, int status, const unsigned char *abuf, int alen)
{
	struct ctl_dns_host *h = &j->hosts[host];
	struct dns_msg m;
	struct dns_rr rr;
	int off;

	if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
		j->a[host] = status == ARES_ENOTFOUND ? A_NXDOMAIN : A_NEG;
		/* runs inside on_answer(), which holds the job: it cannot finish */
		if (status == ARES_ENODATA && (!j->from_route || j->dns->conf.ipv6) &&
		    job_query(j, h->name, DNS_T_AAAA, host) == 0)
			j->a[host] = A_PENDING;
		if (msg_open(&m, abuf, alen) == 0) {
			uint32_t t = msg_neg_ttl(&m);

			if (t && (j->neg_ttl_s == 0 || t < j->neg_ttl_s))
				j->neg_ttl_s = t;
		}
		return;
	}
	if (status != ARES_SUCCESS || msg_open(&m, abuf, alen) < 0) {
		j->dns->st.query_failures++;
		j->a[host] = A_TEMP;
		return;
	}
	off = m.off;
	h->n_addr = 0;
	for (unsigned i = 0; i < m.an; i++) {
		if (rr_next(&m, &off, &rr) < 0) {
			j->dns->st.query_failures++;
			j->a[host] = h->n_addr ? A_OK : A_TEMP;
			return;
		}
		if (rr.cls != DNS_C_IN)
			continue;
		if (rr.type == DNS_T_CNAME)
			job_ttl(j, rr.ttl);
		if (rr.type != DNS_T_A || rr.rdlen != 4)
			continue;
		job_ttl(j, rr.ttl);
		if (h->n_addr < CTL_DNS_ADDR_MAX)
			memcpy(&h->addr[h->n_addr++], m.buf + rr.rdata, 4);
	}
	j->a[host] = h->n_addr ? A_OK : A_NEG;
}

static void
on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_q *q = arg;
	struct dns_job *j = q->job;
	int host = q->host, aaaa = q->aaaa;

	(void)timeouts;
	free(q);
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		if (j->status == CTL_DNS_OK)
			job_fail(j, CTL_DNS_TEMPFAIL, "%s: resolver shut down", j->key);
	} else if (host < 0) {
		on_mx(j, status, abuf, alen);
	} else if (j->status == CTL_DNS_OK && aaaa) {
		on_aaaa(j, host, status, abuf, alen);
	} else if (j->status == CTL_DNS_OK) {
		on_a(j, host, status, abuf, alen);
	}
	if (--j->outstanding == 0)
		job_finish(j);
}

/* Send one query for @p j. @return 0, or -1 when it could not be sent. */
static int
job_query(struct dns_job *j, const char *name, int type, int host)
{
	struct dns_q *q = malloc(sizeof(*q));

	if (q == NULL)
		return -1;
	q->job = j;
	q->host = host;
	q->aaaa = type == DNS_T_AAAA;
	j->outstanding++;
	j->dns->st.queries++;
	/* May call on_answer() at once (e.g. ENOMEM); outstanding is already
	 * counted so the job cannot finish under our feet: the caller holds
	 * one reference of its own while it sends (see job_start). */
	ares_query(j->dns->ch, name, DNS_C_IN, type, on_answer, q);
	return 0;
}

/* An extra reference while a caller sends queries, so that a query
 * failing synchronously cannot finish the job half-built. */
static void
job_hold(struct dns_job *j)
{
	j->outstanding++;
}

static void
job_release(struct dns_job *j)
{
	if (--j->outstanding == 0)
		job_finish(j);
}

/* on_mx() sends A queries from inside a c-ares callback; it runs with the
 * MX query's own reference still held by on_answer(), so the job cannot
 * finish before every A query is counted. */

/* ------------------------------------------------------------------ */
/* routes                                                              */

static const struct dns_route *
route_match(const struct ctl_dns *dns, const char *domain)
{
	const struct dns_route *star = NULL, *best = NULL;
	size_t best_len = 0, dl = strlen(domain);

	for (unsigned i = 0; i < dns->nroutes; i++) {
		const struct dns_route *r = &dns->routes[i];
		size_t rl = strlen(r->domain);

		if (strcmp(r->domain, "*") == 0) {
			star = r;
		} else if (r->domain[0] != '.') {
			if (strcmp(r->domain, domain) == 0)
				return r;
		} else if (dl > rl && strcmp(domain + dl - rl, r->domain) == 0 && rl > best_len) {
			best = r;
			best_len = rl;
		}
	}
	return best != NULL ? best : star;
}

static int
route_make(struct dns_route *r, const char *domain, size_t dn, const char *host,
	   size_t hn, uint16_t port, int implicit_tls)
{
	memset(r, 0, sizeof(*r));
	if (dn == 1 && domain[0] == '*') {
		strcpy(r->domain, "*");
	} else if (dn > 1 && domain[0] == '.') {
		r->domain[0] = '.';
		if (name_norm(domain + 1, dn - 1, r->domain + 1) < 0)
			return -EINVAL;
	} else if (name_norm(domain, dn, r->domain) < 0) {
		return -EINVAL;
	}
	if (hn == 0 || hn > CTL_DNS_NAME_MAX)
		return -EINVAL;
	/* "[v6]" from the API as well as the bare form: the port is a
	 * separate argument there, so nothing is ambiguous */
	if (hn > 2 && host[0] == '[' && host[hn - 1] == ']') {
		host++;
		hn -= 2;
		if (memchr(host, ':', hn) == NULL)
			return -EINVAL;
	}
	memcpy(r->host, host, hn);
	r->host[hn] = '\0';
	if (inet_pton(AF_INET, r->host, &r->ip) == 1)
		r->is_ip = AF_INET;
	else if (inet_pton(AF_INET6, r->host, &r->ip6) == 1)
		r->is_ip = AF_INET6;
	else if (name_norm(host, hn, r->host) < 0)
		return -EINVAL;
	r->port = port ? port : CTL_DNS_PORT_DEFAULT;
	r->implicit_tls = implicit_tls ? 1 : 0;
	return 0;
}

static int
route_install(struct ctl_dns *dns, const struct dns_route *r)
{
	void *n;

	for (unsigned i = 0; i < dns->nroutes; i++) {
		if (strcmp(dns->routes[i].domain, r->domain) == 0) {
			dns->routes[i] = *r;
			return 0;
		}
	}
	if (dns->nroutes >= DNS_ROUTES_MAX)
		return -ENOSPC;
	n = realloc(dns->routes, (dns->nroutes + 1) * sizeof(*r));
	if (n == NULL)
		return -ENOMEM;
	dns->routes = n;
	dns->routes[dns->nroutes++] = *r;
	return 0;
}

int
ctl_dns_route_add(struct ctl_dns *dns, const char *domain, const char *host,
		  uint16_t port, int implicit_tls)
{
	struct dns_route r;

	if (domain == NULL || host == NULL ||
	    route_make(&r, domain, strlen(domain), host, strlen(host), port, implicit_tls) < 0)
		return -EINVAL;
	return route_install(dns, &r);
}

/* One "DOMAIN=HOST[:PORT][:tls]" item of [s, e); HOST "[IPV6]" too. */
static int
route_parse_one(const char *s, const char *e, struct dns_route *r, char *err, size_t errlen)
{
	const char *eq = memchr(s, '=', (size_t)(e - s)), *h, *hend, *c1, *c2 = NULL;
	unsigned long port = 0;
	int tls = 0;

	if (eq == NULL || eq == s || eq + 1 == e) {
		mp_errf(err, errlen, "route \"%.*s\": expected DOMAIN=HOST[:PORT][:tls]",
		       (int)(e - s), s);
		return -EINVAL;
	}
	h = eq + 1;
	if (*h == '[') {
		/* an IPv6 literal in brackets, as in URLs: its colons are not
		 * the port's */
		const char *rb = memchr(h, ']', (size_t)(e - h));
		char a[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		size_t al = rb ? (size_t)(rb - h - 1) : 0;

		if (rb == NULL || (rb + 1 != e && rb[1] != ':')) {
			mp_errf(err, errlen, "route \"%.*s\": expected DOMAIN=[IPV6][:PORT][:tls]",
			       (int)(e - s), s);
			return -EINVAL;
		}
		if (al == 0 || al >= sizeof(a) || (memcpy(a, h + 1, al), a[al] = '\0',
		    inet_pton(AF_INET6, a, &a6) != 1)) {
			mp_errf(err, errlen, "route \"%.*s\": bad IPv6 address \"%.*s\"",
			       (int)(e - s), s, (int)al, h + 1);
			return -EINVAL;
		}
		hend = rb + 1;
	} else {
		/* no host name has a colon, "HOST:PORT:tls" has two at most
		 * and no "::": anything else is an address that lost its
		 * brackets */
		unsigned ncolon = 0;

		for (const char *q = h; q < e; q++)
			ncolon += *q == ':';
		if (ncolon > 2 || (e - h >= 2 && memmem(h, (size_t)(e - h), "::", 2) != NULL)) {
			mp_errf(err, errlen, "route \"%.*s\": an IPv6 address needs brackets: "
			       "DOMAIN=[IPV6][:PORT][:tls]", (int)(e - s), s);
			return -EINVAL;
		}
		hend = memchr(h, ':', (size_t)(e - h));
		if (hend == NULL)
			hend = e;
	}
	c1 = hend < e ? hend : NULL;
	if (c1 != NULL)
		c2 = memchr(c1 + 1, ':', (size_t)(e - c1 - 1));
	if (c1 != NULL) {
		const char *pe = c2 ? c2 : e;
		size_t pl = (size_t)(pe - c1 - 1);

		if (pl == 3 && c2 == NULL && strncasecmp(c1 + 1, "tls", 3) == 0) {
			tls = 1;
		} else {
			char *end;
			char buf[8];

			if (pl == 0 || pl >= sizeof(buf)) {
				mp_errf(err, errlen, "route \"%.*s\": bad port", (int)(e - s), s);
				return -EINVAL;
			}
			memcpy(buf, c1 + 1, pl);
			buf[pl] = '\0';
			port = strtoul(buf, &end, 10);
			if (*end != '\0' || !isdigit((unsigned char)buf[0]) || port == 0 ||
			    port > 65535) {
				mp_errf(err, errlen, "route \"%.*s\": bad port \"%s\"",
				       (int)(e - s), s, buf);
				return -EINVAL;
			}
		}
		if (c2 != NULL) {
			if ((size_t)(e - c2 - 1) != 3 || strncasecmp(c2 + 1, "tls", 3) != 0) {
				mp_errf(err, errlen, "route \"%.*s\": expected \":tls\" after the "
				       "port", (int)(e - s), s);
				return -EINVAL;
			}
			tls = 1;
		}
	}
	if (route_make(r, s, (size_t)(eq - s), h, (size_t)(hend - h),
		       (uint16_t)port, tls) < 0) {
		mp_errf(err, errlen, "route \"%.*s\": bad domain or host", (int)(e - s), s);
		return -EINVAL;
	}
	return 0;
}

int
ctl_dns_route_parse(struct ctl_dns *dns, const char *spec, char *err, size_t errlen)
{
	struct dns_route *list = NULL;
	unsigned n = 0;
	const char *p = spec;
	int rc = 0;

	if (spec == NULL) {
		mp_errf(err, errlen, "no routes given");
		return -EINVAL;
	}
	while (*p != '\0') {
		const char *e;

		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		e = p;
		while (*e != '\0' && *e != ',' && !isspace((unsigned char)*e))
			e++;
		if (n % 8 == 0) {
			void *nl = realloc(list, (n + 8) * sizeof(*list));

			if (nl == NULL) {
				free(list);
				return -ENOMEM;
			}
			list = nl;
		}
		rc = route_parse_one(p, e, &list[n], err, errlen);
		if (rc < 0) {
			free(list);
			return rc;
		}
		n++;
		p = e;
	}
	for (unsigned i = 0; i < n && rc == 0; i++)
		rc = route_install(dns, &list[i]);
	free(list);
	if (rc < 0) {
		mp_errf(err, errlen, "cannot install routes: %s", strerror(-rc));
		return rc;
	}
	return (int)n;
}

void
ctl_dns_route_clear(struct ctl_dns *dns)
{
	free(dns->routes);
	dns->routes = NULL;
	dns->nroutes = 0;
}

/* ------------------------------------------------------------------ */
/* public                                                              */

struct ctl_dns *
ctl_dns_new(const struct ctl_dns_conf *conf, char *err, size_t errlen)
{
	struct ares_options o;
	struct ctl_dns *dns;
	int rc, mask;

	pthread_once(&dns_once, dns_lib_init);
	if (dns_lib_rc != ARES_SUCCESS) {
		mp_errf(err, errlen, "c-ares init: %s", ares_strerror(dns_lib_rc));
		return NULL;
	}
	dns = calloc(1, sizeof(*dns));
	if (dns == NULL) {
		mp_errf(err, errlen, "out of memory");
		return NULL;
	}
	if (conf != NULL)
		dns->conf = *conf;
	if (dns->conf.timeout_ms <= 0)
		dns->conf.timeout_ms = CTL_DNS_TIMEOUT_MS_DEFAULT;
	if (dns->conf.tries <= 0)
		dns->conf.tries = CTL_DNS_TRIES_DEFAULT;
	if (dns->conf.cache_max == 0)
		dns->conf.cache_max = CTL_DNS_CACHE_MAX_DEFAULT;
	if (dns->conf.min_ttl_s == 0)
		dns->conf.min_ttl_s = CTL_DNS_MIN_TTL_DEFAULT;
	if (dns->conf.max_ttl_s == 0)
		dns->conf.max_ttl_s = CTL_DNS_MAX_TTL_DEFAULT;
	if (dns->conf.min_ttl_s > dns->conf.max_ttl_s)
		dns->conf.min_ttl_s = dns->conf.max_ttl_s;
	if (dns->conf.neg_ttl_s == 0)
		dns->conf.neg_ttl_s = CTL_DNS_NEG_TTL_DEFAULT;
	if (dns->conf.seed == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		dns->conf.seed = mix64((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^
				       (uint64_t)getpid() << 40);
	}
	dns->conf.servers = NULL;       /* not kept: the caller's string */
	dns->ready_tail = &dns->ready;
	dns->njobs_b = 1024;
	dns->jobs = calloc(dns->njobs_b, sizeof(*dns->jobs));
	for (dns->ncb = 64; dns->ncb < dns->conf.cache_max && dns->ncb < (1u << 20);)
		dns->ncb *= 2;
	dns->cb = calloc(dns->ncb, sizeof(*dns->cb));
	if (dns->jobs == NULL || dns->cb == NULL) {
		mp_errf(err, errlen, "out of memory");
		goto fail;
	}
	memset(&o, 0, sizeof(o));
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	o.timeout = dns->conf.timeout_ms;
	o.tries = dns->conf.tries;
	o.lookups = (char *)"b";
	mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
	rc = ares_init_options(&dns->ch, &o, mask);
	if (rc != ARES_SUCCESS) {
		mp_errf(err, errlen, "c-ares channel: %s", ares_strerror(rc));
		dns->ch = NULL;
		goto fail;
	}
	if (conf != NULL && conf->servers != NULL && conf->servers[0] != '\0') {
		rc = ares_set_servers_ports_csv(dns->ch, conf->servers);
		if (rc != ARES_SUCCESS) {
			mp_errf(err, errlen, "DNS servers \"%s\": %s", conf->servers,
			       ares_strerror(rc));
			goto fail;
		}
	}
	return dns;
fail:
	if (dns->ch != NULL)
		ares_destroy(dns->ch);
	free(dns->jobs);
	free(dns->cb);
	free(dns);
	return NULL;
}

static void
fill_result(const struct dns_job *j, struct ctl_dns_result *r)
{
	memset(r, 0, sizeof(*r));
	r->status = j->status;
	r->domain = j->key;
	r->implicit_mx = j->implicit_mx;
	r->from_route = j->from_route;
	r->implicit_tls = j->implicit_tls;
	r->from_cache = j->from_cache;
	r->ttl_s = j->ttl_s == UINT32_MAX ? 0 : j->ttl_s;
	r->n_hosts = j->status == CTL_DNS_OK ? j->n_hosts : 0;
	r->hosts = j->hosts;
	memcpy(r->error, j->error, sizeof(r->error));
}

/* Run the callbacks of the jobs ready now (not of those a callback adds). */
static int
deliver(struct ctl_dns *dns)
{
	struct dns_job *list = dns->ready, *j;
	int n = 0;

	dns->ready = NULL;
	dns->ready_tail = &dns->ready;
	while ((j = list) != NULL) {
		struct ctl_dns_result r;
		struct dns_waiter *w;

		list = j->rnext;
		fill_result(j, &r);
		while ((w = j->waiters) != NULL) {
			j->waiters = w->next;
			if (!w->internal) {
				dns->pending--;
				dns->st.callbacks++;
				n++;
			}
			w->cb(w->user, &r);
			free(w);
		}
		free(j);
	}
	return n;
}

void
ctl_dns_free(struct ctl_dns *dns)
{
	if (dns == NULL)
		return;
	dns->closing = 1;
	/* Fires every outstanding query with ARES_EDESTRUCTION: each job ends
	 * as TEMPFAIL and lands on the ready list. */
	ares_destroy(dns->ch);
	dns->ch = NULL;
	while (dns->ready != NULL)
		deliver(dns);
	ctl_dns_cache_flush(dns);
	ctl_dns_route_clear(dns);
	free(dns->jobs);
	free(dns->cb);
	free(dns);
}

/* Route for a domain whose host is a name: the shared "@host" job (an A
 * lookup, cached) reports here, and the domain's job takes its address. */

static void
on_route_host(void *user, const struct ctl_dns_result *res)
{
	struct dns_job *j = user;

	if (res->status == CTL_DNS_OK) {
		j->n_hosts = 1;
		j->hosts[0] = res->hosts[0];
		j->hosts[0].port = j->route_port;
		name_copy(j->hosts[0].name, res->domain + 1);
		j->from_cache = res->from_cache;
	} else {
		job_fail(j, CTL_DNS_TEMPFAIL, "%s: route host %s: %s", j->key, res->domain + 1,
			 res->error);
		MP_LOG(MP_LOG_WARN, "dns", "domain=%s route_host=%s status=tempfail error=\"%s\"",
		       j->key, res->domain + 1, res->error);
	}
	j->ttl_s = 0;
	job_unhash(j->dns, j);
	job_ready(j);
}

static int
waiter_add(struct ctl_dns *dns, struct dns_job *j,
	   void (*cb)(void *user, const struct ctl_dns_result *res), void *user)
{
	struct dns_waiter *w = malloc(sizeof(*w));

	if (w == NULL)
		return -ENOMEM;
	w->internal = cb == on_route_host;
	w->next = NULL;
	w->cb = cb;
	w->user = user;
	*j->wtail = w;
	j->wtail = &w->next;
	if (!w->internal)
		dns->pending++;
	return 0;
}

static void
job_from_cache(struct dns_job *j, const struct dns_cent *e, uint64_t now)
{
	uint64_t left = e->expires_ms > now ? (e->expires_ms - now + 999) / 1000 : 0;

	j->status = e->status;
	j->implicit_mx = e->implicit_mx;
	j->n_hosts = e->n_hosts;
	if (e->n_hosts > 0)
		memcpy(j->hosts, e->hosts, e->n_hosts * sizeof(j->hosts[0]));
	memcpy(j->error, e->error, sizeof(j->error));
	j->from_cache = 1;
	j->ttl_s = left > UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)left;
}

/* Start (or join) the job for route host @p host; its waiter is @p dj. */
static int
route_host_job(struct ctl_dns *dns, const char *host, struct dns_job *dj)
{
	char key[DNS_KEY_MAX + 1];
	struct dns_job *hj;
	struct dns_cent *e;
	uint64_t now = dns_now(dns);

	snprintf(key, sizeof(key), "@%s", host);
	hj = job_find(dns, key);
	if (hj != NULL)
		return waiter_add(dns, hj, on_route_host, dj);
	e = cache_find(dns, key, now);
	if (e != NULL)
		dns->st.cache_hits++;
	hj = job_new(dns, key, e == NULL);
	if (hj == NULL)
		return -ENOMEM;
	hj->from_route = 1;
	if (waiter_add(dns, hj, on_route_host, dj) < 0) {
		job_unhash(dns, hj);
		free(hj);
		return -ENOMEM;
	}
	if (e != NULL) {
		job_from_cache(hj, e, now);
		job_ready(hj);
		return 0;
	}
	dns->st.cache_misses++;
	hj->n_hosts = 1;
	name_copy(hj->hosts[0].name, host);
	hj->a[0] = A_PENDING;
	job_hold(hj);
	if (job_query(hj, host, DNS_T_A, 0) < 0)
		hj->a[0] = A_TEMP;
	job_release(hj);
	return 0;
}

int
ctl_dns_resolve(struct ctl_dns *dns, const char *domain,
		void (*cb)(void *user, const struct ctl_dns_result *res), void *user)
{
	char name[CTL_DNS_NAME_MAX + 1];
	const struct dns_route *rt;
	struct dns_cent *e;
	struct dns_job *j;
	uint64_t now;

	if (dns == NULL || cb == NULL || domain == NULL ||
	    name_norm(domain, strlen(domain), name) < 0)
		return -EINVAL;
	if (dns->closing)
		return -ESHUTDOWN;
	j = job_find(dns, name);
	if (j != NULL) {
		if (waiter_add(dns, j, cb, user) < 0)
			return -ENOMEM;
		dns->st.requests++;
		dns->st.coalesced++;
		return 0;
	}
	rt = route_match(dns, name);
	now = dns_now(dns);
	e = rt == NULL ? cache_find(dns, name, now) : NULL;
	/* A job born finished is never hashed: a later request for the same
	 * domain does its own cache lookup. */
	j = job_new(dns, name, rt != NULL ? !rt->is_ip : e == NULL);
	if (j == NULL)
		return -ENOMEM;
	if (waiter_add(dns, j, cb, user) < 0) {
		job_unhash(dns, j);
		free(j);
		return -ENOMEM;
	}
	dns->st.requests++;
	if (rt != NULL) {
		dns->st.route_hits++;
		j->from_route = 1;
		j->implicit_tls = rt->implicit_tls;
		j->route_port = rt->port;
		j->ttl_s = 0;
		if (rt->is_ip == AF_INET6 && !dns->conf.ipv6) {
			/* as for an AAAA-only MX: the transport's limit, not
			 * the domain's fault, so defer and never bounce */
			job_fail(j, CTL_DNS_TEMPFAIL, "%s: route host [%s] has only IPv6 "
				 "addresses; the transport is IPv4-only (IPv6 needs "
				 "transport=ksock)", name, rt->host);
			job_ready(j);
			return 0;
		}
		if (rt->is_ip) {
			j->n_hosts = 1;
			name_copy(j->hosts[0].name, rt->host);
			j->hosts[0].port = rt->port;
			if (rt->is_ip == AF_INET6) {
				j->hosts[0].n_addr6 = 1;
				j->hosts[0].addr6[0] = rt->ip6;
			} else {
				j->hosts[0].n_addr = 1;
				j->hosts[0].addr[0] = rt->ip;
			}
			job_ready(j);
			return 0;
		}
		if (route_host_job(dns, rt->host, j) < 0) {
			job_fail(j, CTL_DNS_TEMPFAIL, "%s: out of memory", name);
			job_unhash(dns, j);
			job_ready(j);
		}
		return 0;
	}
	if (e != NULL) {
		dns->st.cache_hits++;
		job_from_cache(j, e, now);
		job_ready(j);
		return 0;
	}
	dns->st.cache_misses++;
	job_hold(j);
	if (job_query(j, name, DNS_T_MX, -1) < 0)
		job_fail(j, CTL_DNS_TEMPFAIL, "%s: out of memory", name);
	job_release(j);
	return 0;
}

unsigned
ctl_dns_fds(struct ctl_dns *dns, struct pollfd *fds, unsigned max)
{
	ares_socket_t s[ARES_GETSOCK_MAXNUM];
	int bits = ares_getsock(dns->ch, s, ARES_GETSOCK_MAXNUM);
	unsigned n = 0;

	for (int i = 0; i < ARES_GETSOCK_MAXNUM && n < max; i++) {
		short ev = 0;

		/* ARES_GETSOCK_WRITABLE() shifts a signed 1 by up to 31: test
		 * the bits unsigned instead. */
		if ((unsigned)bits & (1u << i))
			ev |= POLLIN;
		if ((unsigned)bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
			ev |= POLLOUT;
		if (ev == 0)
			continue;
		fds[n].fd = s[i];
		fds[n].events = ev;
		fds[n].revents = 0;
		n++;
	}
	return n;
}

int
ctl_dns_timeout_ms(struct ctl_dns *dns, int max_ms)
{
	struct timeval maxtv, tv, *t;
	long ms;

	if (dns->ready != NULL)
		return 0;
	if (max_ms >= 0) {
		maxtv.tv_sec = max_ms / 1000;
		maxtv.tv_usec = (max_ms % 1000) * 1000;
	}
	t = ares_timeout(dns->ch, max_ms >= 0 ? &maxtv : NULL, &tv);
	if (t == NULL)
		return max_ms;
	ms = t->tv_sec * 1000 + (t->tv_usec + 999) / 1000;
	if (max_ms >= 0 && ms > max_ms)
		ms = max_ms;
	return (int)ms;
}

int
ctl_dns_process(struct ctl_dns *dns, const struct pollfd *fds, unsigned n)
{
	int any = 0;

	for (unsigned i = 0; fds != NULL && i < n; i++) {
		short re = fds[i].revents;

		if (re == 0)
			continue;
		any = 1;
		ares_process_fd(dns->ch,
				re & (POLLIN | POLLERR | POLLHUP) ? fds[i].fd : ARES_SOCKET_BAD,
				re & (POLLOUT | POLLERR) ? fds[i].fd : ARES_SOCKET_BAD);
	}
	if (!any)
		ares_process_fd(dns->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	return deliver(dns);
}

int
ctl_dns_poll(struct ctl_dns *dns, int timeout_ms)
{
	struct pollfd fds[ARES_GETSOCK_MAXNUM];
	unsigned n;
	int t, rc;

	if (dns->ready != NULL)
		return deliver(dns);
	n = ctl_dns_fds(dns, fds, ARES_GETSOCK_MAXNUM);
	t = ctl_dns_timeout_ms(dns, timeout_ms);
	rc = poll(fds, n, t);
	if (rc < 0) {
		if (errno == EINTR)
			return deliver(dns);
		return -errno;
	}
	return ctl_dns_process(dns, fds, rc > 0 ? n : 0);
}

unsigned
ctl_dns_pending(const struct ctl_dns *dns)
{
	return dns->pending;
}

void
ctl_dns_stats_get(const struct ctl_dns *dns, struct ctl_dns_stats *st)
{
	*st = dns->st;
	st->cache_entries = dns->ncache;
}

struct ctl_dns_result *
ctl_dns_result_dup(const struct ctl_dns_result *res)
{
	size_t dl = strlen(res->domain) + 1;
	struct ctl_dns_result *c;
	char *p;

	c = malloc(sizeof(*c) + res->n_hosts * sizeof(struct ctl_dns_host) + dl);
	if (c == NULL)
		return NULL;
	*c = *res;
	p = (char *)(c + 1);
	if (res->n_hosts > 0)
		memcpy(p, res->hosts, res->n_hosts * sizeof(struct ctl_dns_host));
	c->hosts = (const struct ctl_dns_host *)p;
	p += res->n_hosts * sizeof(struct ctl_dns_host);
	memcpy(p, res->domain, dl);
	c->domain = p;
	return c;
}

void
ctl_dns_result_free(struct ctl_dns_result *res)
{
	free(res);
}

const char *
ctl_dns_status_name(enum ctl_dns_status st)
{
	static const char *const names[CTL_DNS_STATUS_LAST] = {
		[CTL_DNS_OK] = "ok",
		[CTL_DNS_NULL_MX] = "null_mx",
		[CTL_DNS_NXDOMAIN] = "nxdomain",
		[CTL_DNS_NO_ADDRESS] = "no_address",
		[CTL_DNS_TEMPFAIL] = "tempfail",
	};

	return (unsigned)st < CTL_DNS_STATUS_LAST ? names[st] : "unknown";
}

int
ctl_dns_status_permanent(enum ctl_dns_status st)
{
	return st == CTL_DNS_NULL_MX || st == CTL_DNS_NXDOMAIN || st == CTL_DNS_NO_ADDRESS;
}
