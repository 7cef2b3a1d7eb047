/*
 * Per-destination shaping. Two hash tables keyed by lower-cased name: the
 * override patterns ("example.com", ".example.com", "*") and the domains
 * seen so far with their live state (open connections, token bucket,
 * adaptation level, recent 4xx times). A domain's base limits are resolved
 * from the patterns and cached in its entry until the overrides change
 * (generation counter). Every entry point first brings the entry up to
 * now_ms: recovery steps of the adaptation level, then the bucket refill
 * at the effective rate. Tokens are counted in millionths of a message so
 * the arithmetic is exact for the rates people write.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_shape.h"
#include "mp_log.h"

#define MICRO 1000000ull
#define SHAPE_4XX_RING_MAX 1000

struct shape_ov {
	struct shape_ov *next;
	uint32_t hash;
	struct ctl_shape_override ov;
};

struct shape_dom {
	struct shape_dom *next;
	uint32_t hash;
	char name[CTL_SHAPE_DOMAIN_MAX + 1];
	uint64_t gen;                   /* overrides generation of base */
	struct ctl_shape_limits base;   /* configured limits, before adaptation */
	unsigned conns;
	unsigned level;
	uint64_t level_until_ms;        /* next recovery step (level > 0) */
	uint64_t last_trigger_ms;
	int triggered;                  /* last_trigger_ms is valid */
	uint64_t triggers;
	uint64_t tokens;                /* micro-messages */
	uint64_t refill_ms;
	unsigned n4xx, i4xx;            /* ring of recent 4xx times */
	uint64_t t4xx[];
};

struct shape_tab {
	void **b;                       /* buckets of shape_ov / shape_dom */
	unsigned nb, n;
};

struct ctl_shape {
	struct ctl_shape_conf conf;
	struct shape_tab ovs, doms;
	uint64_t gen;
};

static uint32_t
name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* Lower-case @p in into @p out without a trailing dot; -EINVAL if empty or long. */
static int
name_norm(const char *in, char *out)
{
	size_t n;

	if (in == NULL)
		return -EINVAL;
	n = strlen(in);
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > CTL_SHAPE_DOMAIN_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[n] = '\0';
	return 0;
}

/* Both entry types start with (next, hash); the tables only use those. */
struct shape_link {
	struct shape_link *next;
	uint32_t hash;
};

static int
tab_grow(struct shape_tab *t)
{
	unsigned nb = t->nb ? t->nb * 2 : 64;
	void **b = calloc(nb, sizeof(*b));

	if (b == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < t->nb; i++) {
		struct shape_link *l = t->b[i], *nx;

		for (; l != NULL; l = nx) {
			nx = l->next;
			l->next = b[l->hash & (nb - 1)];
			b[l->hash & (nb - 1)] = l;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

static int
tab_insert(struct shape_tab *t, void *e)
{
	struct shape_link *l = e;

	if (t->n >= t->nb && tab_grow(t) < 0 && t->nb == 0)
		return -ENOMEM;
	l->next = t->b[l->hash & (t->nb - 1)];
	t->b[l->hash & (t->nb - 1)] = l;
	t->n++;
	return 0;
}

static struct shape_ov *
ov_find(struct ctl_shape *sh, const char *pat)
{
	uint32_t h = name_hash(pat);
	struct shape_ov *o;

	if (sh->ovs.nb == 0)
		return NULL;
	for (o = sh->ovs.b[h & (sh->ovs.nb - 1)]; o != NULL; o = o->next)
		if (o->hash == h && strcmp(o->ov.domain, pat) == 0)
			return o;
	return NULL;
}

static struct shape_dom *
dom_find(struct ctl_shape *sh, const char *name, struct shape_dom ***pprev)
{
	uint32_t h = name_hash(name);
	struct shape_dom **pp;

	if (sh->doms.nb == 0)
		return NULL;
	for (pp = (struct shape_dom **)&sh->doms.b[h & (sh->doms.nb - 1)]; *pp != NULL;
	     pp = &(*pp)->next) {
		if ((*pp)->hash == h && strcmp((*pp)->name, name) == 0) {
			if (pprev != NULL)
				*pprev = pp;
			return *pp;
		}
	}
	return NULL;
}

static void
apply_ov(struct ctl_shape_limits *l, const struct ctl_shape_override *ov)
{
	if (ov->set & CTL_SHAPE_K_MAX_CONNS)
		l->max_conns = ov->lim.max_conns;
	if (ov->set & CTL_SHAPE_K_MSGS_PER_CONN)
		l->msgs_per_conn = ov->lim.msgs_per_conn;
	if (ov->set & CTL_SHAPE_K_RCPTS_PER_TXN)
		l->rcpts_per_txn = ov->lim.rcpts_per_txn;
	if (ov->set & CTL_SHAPE_K_RATE)
		l->rate = ov->lim.rate;
	if (ov->set & CTL_SHAPE_K_BURST)
		l->burst = ov->lim.burst;
}

/* Configured limits of a normalised domain: defaults, "*", then the most
 * specific of the exact name and its ".parent" suffixes. burst is filled. */
static void
base_limits(struct ctl_shape *sh, const char *name, struct ctl_shape_limits *l)
{
	struct shape_ov *o;
	char pat[CTL_SHAPE_DOMAIN_MAX + 2];

	*l = sh->conf.defaults;
	if ((o = ov_find(sh, "*")) != NULL)
		apply_ov(l, &o->ov);
	o = ov_find(sh, name);
	for (const char *p = name; o == NULL && (p = strchr(p, '.')) != NULL; p++) {
		snprintf(pat, sizeof(pat), "%s", p);
		o = ov_find(sh, pat);
	}
	if (o != NULL)
		apply_ov(l, &o->ov);
	if (l->burst == 0)
		l->burst = l->rate > 1 ? (unsigned)ceil(l->rate) : 1;
}

static double
scale(const struct ctl_shape *sh, unsigned level)
{
	double f = 1;

	for (unsigned i = 0; i < level; i++)
		f = f * sh->conf.slow_pct / 100;
	return f;
}

static void
effective(const struct ctl_shape *sh, const struct ctl_shape_limits *base,
	  unsigned level, struct ctl_shape_limits *out)
{
	double f;

	*out = *base;
	if (level == 0)
		return;
	f = scale(sh, level);
	out->max_conns = (unsigned)floor(base->max_conns * f);
	if (out->max_conns < 1)
		out->max_conns = 1;
	if (base->rate > 0) {
		out->rate = base->rate * f;
		if (out->rate < sh->conf.min_rate)
			out->rate = sh->conf.min_rate < base->rate ? sh->conf.min_rate : base->rate;
	}
	out->burst = (unsigned)floor(base->burst * f);
	if (out->burst < 1)
		out->burst = 1;
}

/* Micro-messages added per millisecond at @p rate messages per second. */
static uint64_t
per_ms(double rate)
{
	uint64_t v = (uint64_t)llround(rate * 1000.0);

	return v ? v : 1;
}

/* Bring @p d up to @p now: overrides, recovery steps, bucket refill. */
static void
dom_update(struct ctl_shape *sh, struct shape_dom *d, uint64_t now, struct ctl_shape_limits *eff)
{
	struct ctl_shape_limits e;
	uint64_t cap;

	if (d->gen != sh->gen) {
		base_limits(sh, d->name, &d->base);
		d->gen = sh->gen;
	}
	/* Refill at the rate that was in force before any recovery step that
	 * falls inside the interval: split the interval at each step. */
	for (;;) {
		int step = d->level > 0 && d->level_until_ms <= now;
		uint64_t until = step ? d->level_until_ms : now;

		effective(sh, &d->base, d->level, &e);
		cap = (uint64_t)e.burst * MICRO;
		if (e.rate <= 0) {
			d->tokens = cap;
		} else if (until > d->refill_ms) {
			uint64_t dt = until - d->refill_ms, pm = per_ms(e.rate);

			if (dt >= cap / pm + 1 || d->tokens + dt * pm > cap)
				d->tokens = cap;
			else
				d->tokens += dt * pm;
		}
		if (d->tokens > cap)
			d->tokens = cap;
		if (until > d->refill_ms)
			d->refill_ms = until;
		if (!step)
			break;
		d->level--;
		d->level_until_ms += sh->conf.cooldown_ms;
		MP_LOG(MP_LOG_INFO, "shape", "domain=%s event=recover level=%u", d->name, d->level);
	}
	if (eff != NULL)
		*eff = e;
}

static struct shape_dom *
dom_get(struct ctl_shape *sh, const char *domain, uint64_t now, int create, int *err)
{
	char name[CTL_SHAPE_DOMAIN_MAX + 1];
	struct shape_dom *d;
	unsigned ring;

	*err = 0;
	if (name_norm(domain, name) < 0) {
		*err = -EINVAL;
		return NULL;
	}
	d = dom_find(sh, name, NULL);
	if (d != NULL || !create)
		return d;
	if (sh->conf.max_domains > 0 && sh->doms.n >= sh->conf.max_domains &&
	    (ctl_shape_gc(sh, now) == 0 || sh->doms.n >= sh->conf.max_domains)) {
		*err = -ENOMEM;
		return NULL;
	}
	ring = sh->conf.burst_4xx;
	d = calloc(1, sizeof(*d) + ring * sizeof(d->t4xx[0]));
	if (d == NULL) {
		*err = -ENOMEM;
		return NULL;
	}
	memcpy(d->name, name, strlen(name) + 1);
	d->hash = name_hash(name);
	base_limits(sh, name, &d->base);
	d->gen = sh->gen;
	d->tokens = (uint64_t)d->base.burst * MICRO;
	d->refill_ms = now;
	if (tab_insert(&sh->doms, d) < 0) {
		free(d);
		*err = -ENOMEM;
		return NULL;
	}
	return d;
}

struct ctl_shape *
ctl_shape_new(const struct ctl_shape_conf *conf)
{
	struct ctl_shape *sh;
	struct ctl_shape_conf c = { 0 };

	if (conf != NULL)
		c = *conf;
	if (c.defaults.max_conns == 0)
		c.defaults.max_conns = CTL_SHAPE_MAX_CONNS_DEFAULT;
	if (c.defaults.msgs_per_conn == 0)
		c.defaults.msgs_per_conn = CTL_SHAPE_MSGS_PER_CONN_DEFAULT;
	if (c.defaults.rcpts_per_txn == 0)
		c.defaults.rcpts_per_txn = CTL_SHAPE_RCPTS_PER_TXN_DEFAULT;
	if (c.burst_4xx == 0)
		c.burst_4xx = CTL_SHAPE_BURST_4XX_DEFAULT;
	if (c.window_ms == 0)
		c.window_ms = CTL_SHAPE_WINDOW_MS_DEFAULT;
	if (c.cooldown_ms == 0)
		c.cooldown_ms = CTL_SHAPE_COOLDOWN_MS_DEFAULT;
	if (c.slow_pct == 0)
		c.slow_pct = CTL_SHAPE_SLOW_PCT_DEFAULT;
	if (c.min_rate == 0)
		c.min_rate = CTL_SHAPE_MIN_RATE_DEFAULT;
	if (c.slow_pct > 99 || !(c.defaults.rate >= 0) || !(c.min_rate > 0) ||
	    c.burst_4xx > SHAPE_4XX_RING_MAX || c.defaults.rate > 1e9) {
		errno = EINVAL;
		return NULL;
	}
	sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		return NULL;
	sh->conf = c;
	sh->gen = 1;
	return sh;
}

static void
tab_free(struct shape_tab *t)
{
	for (unsigned i = 0; i < t->nb; i++) {
		struct shape_link *l = t->b[i], *nx;

		for (; l != NULL; l = nx) {
			nx = l->next;
			free(l);
		}
	}
	free(t->b);
	t->b = NULL;
	t->nb = t->n = 0;
}

void
ctl_shape_free(struct ctl_shape *sh)
{
	if (sh == NULL)
		return;
	tab_free(&sh->ovs);
	tab_free(&sh->doms);
	free(sh);
}

/* --- override strings --- */

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && isspace((unsigned char)*p))
		p++;
	return p;
}

static const char *
trim_end(const char *p, const char *end)
{
	while (end > p && isspace((unsigned char)end[-1]))
		end--;
	return end;
}

/* Domain pattern syntax: "*", or an optional leading dot and labels of
 * letters, digits, '-' and '_' (1..63 chars, no empty label). */
static int
pattern_ok(const char *s, size_t n, const char **why)
{
	size_t lab = 0;

	if (n == 1 && s[0] == '*')
		return 1;
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0) {
		*why = "empty domain";
		return 0;
	}
	if (n > CTL_SHAPE_DOMAIN_MAX) {
		*why = "domain longer than 253 characters";
		return 0;
	}
	for (size_t i = s[0] == '.' ? 1 : 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (lab == 0) {
				*why = "empty label in domain";
				return 0;
			}
			lab = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_') {
			*why = "bad character in domain";
			return 0;
		}
		if (++lab > 63) {
			*why = "domain label longer than 63 characters";
			return 0;
		}
	}
	if (lab == 0) {
		*why = "empty label in domain";
		return 0;
	}
	return 1;
}

static int
parse_uint(const char *v, size_t n, unsigned *out)
{
	unsigned long long x = 0;

	if (n == 0 || n > 9)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)v[i]))
			return -1;
		x = x * 10 + (unsigned)(v[i] - '0');
	}
	*out = (unsigned)x;
	return 0;
}

static int
parse_rate(const char *v, size_t n, double *out)
{
	char buf[32], *end;
	double x;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)buf[i]) && buf[i] != '.')
			return -1;
	errno = 0;
	x = strtod(buf, &end);
	if (errno != 0 || *end != '\0' || !(x >= 0) || x > 1e9)
		return -1;
	*out = x;
	return 0;
}

static const struct {
	const char *name;
	unsigned bit;
} shape_keys[] = {
	{ "max_conns", CTL_SHAPE_K_MAX_CONNS },
	{ "msgs_per_conn", CTL_SHAPE_K_MSGS_PER_CONN },
	{ "rcpts_per_txn", CTL_SHAPE_K_RCPTS_PER_TXN },
	{ "rate", CTL_SHAPE_K_RATE },
	{ "burst", CTL_SHAPE_K_BURST },
};

/* Parse [s, end) as one override. */
static int
override_parse_n(const char *s, const char *end, struct ctl_shape_override *out,
		 char *err, size_t errlen)
{
	const char *colon, *p, *why = NULL;
	size_t dn;

	memset(out, 0, sizeof(*out));
	s = skip_ws(s, end);
	end = trim_end(s, end);
	colon = memchr(s, ':', (size_t)(end - s));
	if (colon == NULL) {
		mp_errf(err, errlen, "\"%.*s\": expected DOMAIN:key=value,...",
		       (int)(end - s), s);
		return -EINVAL;
	}
	dn = (size_t)(trim_end(s, colon) - s);
	if (!pattern_ok(s, dn, &why)) {
		mp_errf(err, errlen, "\"%.*s\": %s", (int)dn, s, why);
		return -EINVAL;
	}
	if (s[dn - 1] == '.' && dn > 1)
		dn--;
	for (size_t i = 0; i < dn; i++)
		out->domain[i] = (char)tolower((unsigned char)s[i]);
	out->domain[dn] = '\0';
	p = colon + 1;
	if (skip_ws(p, end) == end) {
		mp_errf(err, errlen, "%s: no key=value after ':'", out->domain);
		return -EINVAL;
	}
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p)), *eq, *k, *v;
		const char *iend = comma ? comma : end, *kend, *vend;
		unsigned bit = 0, u = 0;
		double r = 0;
		size_t kn;

		k = skip_ws(p, iend);
		eq = memchr(k, '=', (size_t)(iend - k));
		if (eq == NULL) {
			mp_errf(err, errlen, "%s: \"%.*s\": expected key=value", out->domain,
			       (int)(trim_end(k, iend) - k), k);
			return -EINVAL;
		}
		kend = trim_end(k, eq);
		kn = (size_t)(kend - k);
		for (size_t i = 0; i < sizeof(shape_keys) / sizeof(shape_keys[0]); i++)
			if (strlen(shape_keys[i].name) == kn &&
			    strncmp(shape_keys[i].name, k, kn) == 0)
				bit = shape_keys[i].bit;
		if (bit == 0) {
			mp_errf(err, errlen, "%s: unknown key \"%.*s\" (max_conns, msgs_per_conn, "
			       "rcpts_per_txn, rate, burst)", out->domain, (int)kn, k);
			return -EINVAL;
		}
		if (out->set & bit) {
			mp_errf(err, errlen, "%s: %.*s given twice", out->domain, (int)kn, k);
			return -EINVAL;
		}
		v = skip_ws(eq + 1, iend);
		vend = trim_end(v, iend);
		if (bit == CTL_SHAPE_K_RATE) {
			if (parse_rate(v, (size_t)(vend - v), &r) < 0) {
				mp_errf(err, errlen, "%s: rate: \"%.*s\" is not a number of "
				       "messages per second (0 = unlimited)", out->domain,
				       (int)(vend - v), v);
				return -EINVAL;
			}
			out->lim.rate = r;
		} else {
			if (parse_uint(v, (size_t)(vend - v), &u) < 0) {
				mp_errf(err, errlen, "%s: %.*s: \"%.*s\" is not a number",
				       out->domain, (int)kn, k, (int)(vend - v), v);
				return -EINVAL;
			}
			if (u == 0) {
				mp_errf(err, errlen, "%s: %.*s must be at least 1", out->domain,
				       (int)kn, k);
				return -EINVAL;
			}
			if (bit == CTL_SHAPE_K_MAX_CONNS)
				out->lim.max_conns = u;
			else if (bit == CTL_SHAPE_K_MSGS_PER_CONN)
				out->lim.msgs_per_conn = u;
			else if (bit == CTL_SHAPE_K_RCPTS_PER_TXN)
				out->lim.rcpts_per_txn = u;
			else
				out->lim.burst = u;
		}
		out->set |= bit;
		p = comma ? comma + 1 : end;
		if (comma != NULL && skip_ws(p, end) == end) {
			mp_errf(err, errlen, "%s: trailing ','", out->domain);
			return -EINVAL;
		}
	}
	return 0;
}

int
ctl_shape_override_parse(const char *spec, struct ctl_shape_override *out,
			 char *err, size_t errlen)
{
	if (spec == NULL || out == NULL) {
		mp_errf(err, errlen, "no override given");
		return -EINVAL;
	}
	if (strpbrk(spec, ";\n") != NULL) {
		mp_errf(err, errlen, "\"%s\": one override only (';' separates several)", spec);
		return -EINVAL;
	}
	return override_parse_n(spec, spec + strlen(spec), out, err, errlen);
}

int
ctl_shape_override_set(struct ctl_shape *sh, const struct ctl_shape_override *ov)
{
	struct shape_ov *o;
	const char *why = NULL;

	if (ov == NULL || !pattern_ok(ov->domain, strlen(ov->domain), &why) ||
	    ((ov->set & CTL_SHAPE_K_RATE) && !(ov->lim.rate >= 0)))
		return -EINVAL;
	o = ov_find(sh, ov->domain);
	if (o == NULL) {
		o = calloc(1, sizeof(*o));
		if (o == NULL)
			return -ENOMEM;
		o->hash = name_hash(ov->domain);
		if (tab_insert(&sh->ovs, o) < 0) {
			free(o);
			return -ENOMEM;
		}
	}
	o->ov = *ov;
	sh->gen++;
	return 0;
}

int
ctl_shape_override_add(struct ctl_shape *sh, const char *spec, char *err, size_t errlen)
{
	struct ctl_shape_override *list = NULL;
	unsigned n = 0, cap = 0;
	const char *p = spec, *end;
	int rc = 0;

	if (spec == NULL) {
		mp_errf(err, errlen, "no override given");
		return -EINVAL;
	}
	end = spec + strlen(spec);
	while (p < end) {
		const char *sep = p;

		while (sep < end && *sep != ';' && *sep != '\n')
			sep++;
		if (skip_ws(p, sep) < sep) {
			if (n == cap) {
				void *nl = realloc(list, (cap = cap ? cap * 2 : 8) * sizeof(*list));

				if (nl == NULL) {
					free(list);
					return -ENOMEM;
				}
				list = nl;
			}
			rc = override_parse_n(p, sep, &list[n], err, errlen);
			if (rc < 0) {
				free(list);
				return rc;
			}
			n++;
		}
		p = sep < end ? sep + 1 : end;
	}
	for (unsigned i = 0; i < n && rc == 0; i++)
		rc = ctl_shape_override_set(sh, &list[i]);
	free(list);
	if (rc < 0) {
		mp_errf(err, errlen, "out of memory installing overrides");
		return rc;
	}
	return (int)n;
}

/* --- live state --- */

void
ctl_shape_limits(struct ctl_shape *sh, const char *domain, uint64_t now_ms,
		 struct ctl_shape_limits *out)
{
	char name[CTL_SHAPE_DOMAIN_MAX + 1];
	struct shape_dom *d;
	int e;

	d = dom_get(sh, domain, now_ms, 0, &e);
	if (d != NULL) {
		dom_update(sh, d, now_ms, out);
		return;
	}
	if (name_norm(domain, name) < 0)
		snprintf(name, sizeof(name), "*");
	base_limits(sh, name, out);
}

int
ctl_shape_conn_acquire(struct ctl_shape *sh, const char *domain, uint64_t now_ms)
{
	struct ctl_shape_limits e;
	struct shape_dom *d;
	int err;

	d = dom_get(sh, domain, now_ms, 1, &err);
	if (d == NULL)
		return err;
	dom_update(sh, d, now_ms, &e);
	if (d->conns >= e.max_conns)
		return -EBUSY;
	d->conns++;
	return 0;
}

void
ctl_shape_conn_release(struct ctl_shape *sh, const char *domain, uint64_t now_ms)
{
	struct shape_dom *d;
	int err;

	d = dom_get(sh, domain, now_ms, 0, &err);
	if (d == NULL)
		return;
	dom_update(sh, d, now_ms, NULL);
	if (d->conns > 0)
		d->conns--;
}

int
ctl_shape_msg_take(struct ctl_shape *sh, const char *domain, unsigned n, uint64_t now_ms)
{
	struct ctl_shape_limits e;
	struct shape_dom *d;
	int err;

	d = dom_get(sh, domain, now_ms, 1, &err);
	if (d == NULL)
		return err;
	dom_update(sh, d, now_ms, &e);
	if (e.rate <= 0)
		return 0;
	if (n > e.burst)
		return -E2BIG;
	if (d->tokens < (uint64_t)n * MICRO)
		return -EAGAIN;
	d->tokens -= (uint64_t)n * MICRO;
	return 0;
}

uint64_t
ctl_shape_wait_ms(struct ctl_shape *sh, const char *domain, unsigned n, uint64_t now_ms)
{
	struct ctl_shape_limits e;
	struct shape_dom *d;
	uint64_t need, pm;
	int err;

	d = dom_get(sh, domain, now_ms, 0, &err);
	if (d == NULL) {
		ctl_shape_limits(sh, domain, now_ms, &e);
		return e.rate > 0 && n > e.burst ? UINT64_MAX : 0;
	}
	dom_update(sh, d, now_ms, &e);
	if (e.rate <= 0)
		return 0;
	if (n > e.burst)
		return UINT64_MAX;
	need = (uint64_t)n * MICRO;
	if (d->tokens >= need)
		return 0;
	pm = per_ms(e.rate);
	/* A recovery step on the way may raise the rate: this is an upper
	 * bound, the caller asks again when it wakes. */
	return (need - d->tokens + pm - 1) / pm;
}

static void
trigger(struct ctl_shape *sh, struct shape_dom *d, uint64_t now, const char *why)
{
	/* Inside the window of the previous trigger only the cool-down
	 * restarts -- unless the domain has already recovered meanwhile. */
	int fresh = d->level == 0 || !d->triggered ||
		    now - d->last_trigger_ms >= sh->conf.window_ms;

	if (fresh && d->level < CTL_SHAPE_LEVEL_MAX) {
		struct ctl_shape_limits e;
		uint64_t cap;

		d->level++;
		effective(sh, &d->base, d->level, &e);
		cap = (uint64_t)e.burst * MICRO;
		if (d->tokens > cap)
			d->tokens = cap;
	}
	if (fresh) {
		struct ctl_shape_limits e;

		d->triggers++;
		effective(sh, &d->base, d->level, &e);
		MP_LOG(MP_LOG_INFO, "shape", "domain=%s event=slowdown reason=%s level=%u "
		       "max_conns=%u rate=%.3f cooldown_ms=%u", d->name, why, d->level,
		       e.max_conns, e.rate, sh->conf.cooldown_ms);
	}
	d->level_until_ms = now + sh->conf.cooldown_ms;
	d->last_trigger_ms = now;
	d->triggered = 1;
	d->n4xx = d->i4xx = 0;
}

int
ctl_shape_on_reply(struct ctl_shape *sh, const char *domain, int code, uint64_t now_ms)
{
	struct shape_dom *d;
	uint64_t before;
	unsigned cap = sh->conf.burst_4xx;
	int err;

	if (code != 0 && (code < 400 || code > 499))
		return 0;
	d = dom_get(sh, domain, now_ms, 1, &err);
	if (d == NULL)
		return 0;
	dom_update(sh, d, now_ms, NULL);
	before = d->triggers;
	if (code == 421) {
		trigger(sh, d, now_ms, "421");
		return d->triggers != before;
	}
	d->t4xx[d->i4xx] = now_ms;
	d->i4xx = (d->i4xx + 1) % cap;
	if (d->n4xx < cap)
		d->n4xx++;
	/* Full ring: the oldest of the last cap 4xx is at i4xx. */
	if (d->n4xx == cap && now_ms - d->t4xx[d->i4xx] < sh->conf.window_ms) {
		trigger(sh, d, now_ms, "4xx_burst");
		return d->triggers != before;
	}
	return 0;
}

int
ctl_shape_state_get(struct ctl_shape *sh, const char *domain, uint64_t now_ms,
		    struct ctl_shape_state *st)
{
	struct shape_dom *d;
	int err;

	memset(st, 0, sizeof(*st));
	d = dom_get(sh, domain, now_ms, 0, &err);
	if (d == NULL) {
		ctl_shape_limits(sh, domain, now_ms, &st->lim);
		st->tokens = st->lim.burst;
		return -ENOENT;
	}
	dom_update(sh, d, now_ms, &st->lim);
	st->conns = d->conns;
	st->level = d->level;
	st->tokens = (double)d->tokens / MICRO;
	st->slowed_until_ms = d->level > 0 ? d->level_until_ms : 0;
	st->triggers = d->triggers;
	return 0;
}

unsigned
ctl_shape_gc(struct ctl_shape *sh, uint64_t now_ms)
{
	unsigned n = 0;

	for (unsigned i = 0; i < sh->doms.nb; i++) {
		struct shape_dom **pp = (struct shape_dom **)&sh->doms.b[i];

		while (*pp != NULL) {
			struct shape_dom *d = *pp;
			struct ctl_shape_limits e;

			dom_update(sh, d, now_ms, &e);
			if (d->conns == 0 && d->level == 0 &&
			    d->tokens >= (uint64_t)e.burst * MICRO &&
			    (d->n4xx == 0 || now_ms - d->t4xx[(d->i4xx + sh->conf.burst_4xx - 1) %
				sh->conf.burst_4xx] >= sh->conf.window_ms)) {
				*pp = d->next;
				free(d);
				sh->doms.n--;
				n++;
			} else {
				pp = &d->next;
			}
		}
	}
	return n;
}

unsigned
ctl_shape_domains(const struct ctl_shape *sh)
{
	return sh->doms.n;
}
