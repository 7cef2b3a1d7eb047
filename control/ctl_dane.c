/*
 * ctl_dane: MX and TLSA lookups validated by libunbound (see ctl_dane.h).
 *
 * ctl_dane_new() builds one ub_ctx (forwarders, trust anchor, options)
 * in threaded async mode, so queries run in libunbound's own thread and
 * answers arrive on ub_fd(). A lookup is a struct dane_q on the pending
 * list, with our own deadline: libunbound retries a dead server for far
 * longer than a scheduler can wait, so ctl_dane_process() cancels what is
 * overdue and reports it TEMPFAIL. ub_process() runs the completion
 * callbacks; each classifies the answer (secure/insecure/bogus/tempfail
 * from libunbound's own validator, never the upstream's AD bit), parses
 * the records and calls the user's callback before the ub_result is freed.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#include "ctl_dane.h"
#include "mp_log.h"

#define COMP "ctl_dane"
#define RR_TYPE_MX   15
#define RR_TYPE_TLSA 52
#define RR_CLASS_IN  1
#define RCODE_SERVFAIL 2
#define RCODE_NXDOMAIN 3

enum dane_kind { Q_MX, Q_TLSA };

struct dane_q {
	struct ctl_dane *dane;
	struct dane_q *prev, *next;
	enum dane_kind kind;
	int async_id;
	uint64_t deadline_ms;
	uint64_t start_ms;
	char name[CTL_DANE_NAME_MAX + 1];   /* domain or host, lower case */
	char qname[CTL_DANE_NAME_MAX + 1];  /* what is asked */
	uint16_t port;
	ctl_dane_mx_cb *mx_cb;
	ctl_dane_tlsa_cb *tlsa_cb;
	void *user;
};

struct ctl_dane {
	struct ub_ctx *ctx;       /* NULL when DANE is off */
	struct dane_q *pending;
	int timeout_ms;
	uint64_t (*now_ms)(void *arg);
	void *now_arg;
	int ran;                  /* callbacks run in the current process() */
	struct ctl_dane_stats st;
};

static const char *const sec_names[CTL_DANE_SEC_LAST] = {
	"secure", "insecure", "bogus", "tempfail",
};

static const char *const outcome_names[CTL_DANE_OUTCOME_LAST] = {
	"dane", "tlsa-unusable", "no-tlsa", "insecure", "bogus", "tempfail",
};

const char *
ctl_dane_sec_name(enum ctl_dane_sec sec)
{
	return (unsigned)sec < CTL_DANE_SEC_LAST ? sec_names[sec] : "?";
}

const char *
ctl_dane_outcome_name(enum ctl_dane_outcome o)
{
	return (unsigned)o < CTL_DANE_OUTCOME_LAST ? outcome_names[o] : "?";
}

static uint64_t
mono_ms(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
now(const struct ctl_dane *dane)
{
	return dane->now_ms(dane->now_arg);
}

/* Lower-cased copy without a trailing dot; -EINVAL for a name DNS cannot
 * carry (empty, too long, an empty or over-long label, a space). */
static int
name_norm(const char *in, char *out, size_t outlen)
{
	size_t n = in ? strlen(in) : 0, i, lab = 0;

	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > CTL_DANE_NAME_MAX || n >= outlen)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '.') {
			if (lab == 0)
				return -EINVAL;
			lab = 0;
		} else {
			if (c <= ' ' || c == 0x7f || ++lab > 63)
				return -EINVAL;
		}
		out[i] = (char)tolower(c);
	}
	if (lab == 0)
		return -EINVAL;
	out[n] = '\0';
	return 0;
}

/* A wire-format name (uncompressed, as libunbound gives rdata) to text,
 * lower case, no trailing dot ("" for the root). -EINVAL if malformed. */
static int
wire_name(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;

	for (;;) {
		size_t l, j;

		if (i >= len)
			return -EINVAL;
		l = p[i++];
		if (l == 0)
			break;
		if (l > 63 || i + l > len)
			return -EINVAL;
		if (o > 0) {
			if (o + 1 >= outlen)
				return -EINVAL;
			out[o++] = '.';
		}
		for (j = 0; j < l; j++) {
			unsigned char c = p[i + j];

			if (c > ' ' && c < 0x7f && c != '.' && c != '\\') {
				if (o + 1 >= outlen)
					return -EINVAL;
				out[o++] = (char)tolower(c);
			} else {
				/* RFC 1035 §5.1 escape keeps odd labels readable */
				if (o + 4 >= outlen)
					return -EINVAL;
				o += (size_t)snprintf(out + o, outlen - o, "\\%03u", c);
			}
		}
		i += l;
	}
	out[o] = '\0';
	return 0;
}

static void
canon_of(const struct ub_result *r, const char *qname, int *cname, char *canon, size_t len)
{
	char c[CTL_DANE_NAME_MAX + 1];

	*cname = 0;
	snprintf(canon, len, "%s", qname);
	if (r == NULL || r->canonname == NULL || name_norm(r->canonname, c, sizeof(c)) != 0)
		return;
	if (strcmp(c, qname) != 0) {
		*cname = 1;
		snprintf(canon, len, "%s", c);
	}
}

/* RFC 7672 §2.1 from libunbound's own verdict. An upstream's AD bit plays
 * no part: r->secure is set only by the validator inside this process. */
static enum ctl_dane_sec
classify(struct ctl_dane *dane, const struct dane_q *q, int err, const struct ub_result *r,
	 char *why, size_t whylen)
{
	if (err != 0) {
		snprintf(why, whylen, "DNS lookup of %s failed: %s (temporary)", q->qname,
			 ub_strerror(err));
		dane->st.tempfail++;
		return CTL_DANE_TEMPFAIL;
	}
	if (r->bogus) {
		snprintf(why, whylen, "DNSSEC validation of %s failed (bogus): %s", q->qname,
			 r->why_bogus ? r->why_bogus : "no reason given");
		dane->st.bogus++;
		return CTL_DANE_BOGUS;
	}
	if (r->rcode != 0 && r->rcode != RCODE_NXDOMAIN) {
		/* a validating upstream turns bogus data into SERVFAIL: we
		 * cannot tell which, so it is indeterminate, never insecure */
		snprintf(why, whylen, "DNS lookup of %s failed: %s (rcode %d, temporary)",
			 q->qname, r->rcode == RCODE_SERVFAIL ? "SERVFAIL" : "server error",
			 r->rcode);
		dane->st.tempfail++;
		return CTL_DANE_TEMPFAIL;
	}
	if (r->secure) {
		dane->st.secure++;
		return CTL_DANE_SECURE;
	}
	dane->st.insecure++;
	return CTL_DANE_INSECURE;
}

static void
q_unlink(struct dane_q *q)
{
	struct ctl_dane *dane = q->dane;

	if (q->prev)
		q->prev->next = q->next;
	else
		dane->pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
	dane->st.pending--;
}

static void
finish_mx(struct dane_q *q, int err, struct ub_result *r)
{
	struct ctl_dane *dane = q->dane;
	struct ctl_dane_mx mx[CTL_DANE_MX_MAX];
	struct ctl_dane_mx_result res;
	int i;

	memset(&res, 0, sizeof(res));
	res.domain = q->name;
	res.mx = mx;
	res.sec = classify(dane, q, err, r, res.error, sizeof(res.error));
	canon_of(err ? NULL : r, q->qname, &res.cname, res.canon, sizeof(res.canon));
	res.rcode = err ? 0 : r->rcode;
	if (res.sec == CTL_DANE_SECURE || res.sec == CTL_DANE_INSECURE) {
		res.nxdomain = r->rcode == RCODE_NXDOMAIN;
		res.ttl_s = r->ttl > 0 ? (uint32_t)r->ttl : 0;
		for (i = 0; r->havedata && r->data[i] != NULL; i++) {
			struct ctl_dane_mx m;
			unsigned j;

			if (r->len[i] < 3 || wire_name((uint8_t *)r->data[i] + 2,
			    (size_t)r->len[i] - 2, m.host, sizeof(m.host)) != 0) {
				MP_LOG(MP_LOG_WARN, COMP, "event=bad_mx domain=%s", q->name);
				continue;
			}
			m.pref = (uint16_t)(((uint8_t)r->data[i][0] << 8) | (uint8_t)r->data[i][1]);
			if (res.n_mx == CTL_DANE_MX_MAX && m.pref >= mx[res.n_mx - 1].pref)
				continue;
			/* insertion keeps the server's order among equals */
			j = res.n_mx < CTL_DANE_MX_MAX ? res.n_mx++ : res.n_mx - 1;
			while (j > 0 && mx[j - 1].pref > m.pref) {
				mx[j] = mx[j - 1];
				j--;
			}
			mx[j] = m;
		}
		res.null_mx = res.n_mx == 1 && mx[0].host[0] == '\0';
		if (res.nxdomain)
			snprintf(res.error, sizeof(res.error), "%s does not exist (%s NXDOMAIN)",
				 q->name, ctl_dane_sec_name(res.sec));
	}
	MP_LOG(MP_LOG_DEBUG, COMP, "event=mx domain=%s sec=%s rcode=%d n_mx=%u cname=%d",
	       q->name, ctl_dane_sec_name(res.sec), res.rcode, res.n_mx, res.cname);
	dane->st.callbacks++;
	dane->ran++;
	q->mx_cb(q->user, &res);
}

/* Why a TLSA record cannot be used, or NULL (RFC 7671 §4.1: unusable
 * records are ignored, not fatal; RFC 7672 §3.1.3 for the PKIX usages). */
static const char *
tlsa_unusable(uint8_t usage, uint8_t selector, uint8_t mtype, size_t len)
{
	if (usage == 0 || usage == 1)
		return "PKIX usage, not used for SMTP (RFC 7672 section 3.1.3)";
	if (usage > 3)
		return "unknown certificate usage";
	if (selector > 1)
		return "unknown selector";
	switch (mtype) {
	case 0:
		return len == 0 ? "empty association data" : NULL;
	case 1:
		return len == 32 ? NULL : "SHA-256 data is not 32 bytes";
	case 2:
		return len == 64 ? NULL : "SHA-512 data is not 64 bytes";
	default:
		return "unknown matching type";
	}
}

static void
finish_tlsa(struct dane_q *q, int err, struct ub_result *r)
{
	struct ctl_dane *dane = q->dane;
	struct ctl_dane_tlsa_rr rr[CTL_DANE_TLSA_MAX];
	struct ctl_dane_tlsa_result res;
	unsigned dropped = 0;
	int i;

	memset(&res, 0, sizeof(res));
	res.host = q->name;
	res.port = q->port;
	res.rr = rr;
	snprintf(res.qname, sizeof(res.qname), "%s", q->qname);
	res.sec = classify(dane, q, err, r, res.error, sizeof(res.error));
	canon_of(err ? NULL : r, q->qname, &res.cname, res.canon, sizeof(res.canon));
	res.rcode = err ? 0 : r->rcode;
	if (res.sec == CTL_DANE_SECURE || res.sec == CTL_DANE_INSECURE) {
		res.ttl_s = r->ttl > 0 ? (uint32_t)r->ttl : 0;
		for (i = 0; r->havedata && r->data[i] != NULL; i++) {
			const uint8_t *d = (const uint8_t *)r->data[i];
			struct ctl_dane_tlsa_rr *t;

			if (r->len[i] < 3) {
				dropped++;
				continue;
			}
			if (res.n_rr == CTL_DANE_TLSA_MAX) {
				dropped++;
				continue;
			}
			t = &rr[res.n_rr++];
			t->usage = d[0];
			t->selector = d[1];
			t->mtype = d[2];
			t->len = (uint16_t)(r->len[i] - 3);
			t->data = d + 3;
			t->unusable = tlsa_unusable(t->usage, t->selector, t->mtype, t->len);
			if (t->unusable == NULL)
				res.n_usable++;
		}
	}
	switch (res.sec) {
	case CTL_DANE_SECURE:
		if (res.n_usable > 0) {
			res.outcome = CTL_DANE_APPLIES;
		} else if (res.n_rr > 0 || dropped > 0) {
			res.outcome = CTL_DANE_UNUSABLE;
			snprintf(res.error, sizeof(res.error),
				 "%s: %u TLSA record(s), none usable (first: %s)", q->qname,
				 res.n_rr + dropped,
				 res.n_rr > 0 ? rr[0].unusable : "malformed record");
		} else {
			res.outcome = CTL_DANE_NO_TLSA;
			snprintf(res.error, sizeof(res.error),
				 "%s: no TLSA records (authenticated denial); DANE does not apply",
				 q->qname);
		}
		break;
	case CTL_DANE_INSECURE:
		res.outcome = CTL_DANE_NOT_SECURE;
		snprintf(res.error, sizeof(res.error),
			 "%s: answer not DNSSEC-signed (insecure); DANE does not apply", q->qname);
		break;
	case CTL_DANE_BOGUS:
		res.outcome = CTL_DANE_FAIL_BOGUS;
		break;
	default:
		res.outcome = CTL_DANE_FAIL_TEMP;
		break;
	}
	MP_LOG(MP_LOG_DEBUG, COMP,
	       "event=tlsa qname=%s sec=%s outcome=%s n_rr=%u usable=%u cname=%d",
	       q->qname, ctl_dane_sec_name(res.sec), ctl_dane_outcome_name(res.outcome),
	       res.n_rr, res.n_usable, res.cname);
	dane->st.callbacks++;
	dane->ran++;
	q->tlsa_cb(q->user, &res);
}

static void
q_finish(struct dane_q *q, int err, struct ub_result *r)
{
	q_unlink(q);
	if (q->kind == Q_MX)
		finish_mx(q, err, r);
	else
		finish_tlsa(q, err, r);
	free(q);
}

static void
on_ub_result(void *arg, int err, struct ub_result *r)
{
	struct dane_q *q = arg;

	q_finish(q, err, r);
	if (r != NULL)
		ub_resolve_free(r);
}

/* Deadline or shutdown: cancel in libunbound (its callback then never
 * runs) and report the lookup ourselves. */
static void
q_abort(struct dane_q *q, const char *why)
{
	struct ctl_dane *dane = q->dane;

	ub_cancel(dane->ctx, q->async_id);
	q_unlink(q);
	dane->st.tempfail++;
	if (q->kind == Q_MX) {
		struct ctl_dane_mx_result res;

		memset(&res, 0, sizeof(res));
		res.sec = CTL_DANE_TEMPFAIL;
		res.domain = q->name;
		snprintf(res.canon, sizeof(res.canon), "%s", q->qname);
		snprintf(res.error, sizeof(res.error), "DNS lookup of %s failed: %s (temporary)",
			 q->qname, why);
		dane->st.callbacks++;
		dane->ran++;
		q->mx_cb(q->user, &res);
	} else {
		struct ctl_dane_tlsa_result res;

		memset(&res, 0, sizeof(res));
		res.sec = CTL_DANE_TEMPFAIL;
		res.outcome = CTL_DANE_FAIL_TEMP;
		res.host = q->name;
		res.port = q->port;
		snprintf(res.qname, sizeof(res.qname), "%s", q->qname);
		snprintf(res.canon, sizeof(res.canon), "%s", q->qname);
		snprintf(res.error, sizeof(res.error), "DNS lookup of %s failed: %s (temporary)",
			 q->qname, why);
		dane->st.callbacks++;
		dane->ran++;
		q->tlsa_cb(q->user, &res);
	}
	free(q);
}

/* "name: value; name: value" through ub_ctx_set_option (which wants the
 * colon in the name). */
static int
apply_options(struct ub_ctx *ctx, const char *opts, char *err, size_t errlen)
{
	char *copy, *item, *save = NULL;
	int rc = 0;

	if ((copy = strdup(opts)) == NULL)
		return -ENOMEM;
	for (item = strtok_r(copy, ";\n", &save); item != NULL && rc == 0;
	     item = strtok_r(NULL, ";\n", &save)) {
		char *colon, name[128], *val;
		int e;

		while (isspace((unsigned char)*item))
			item++;
		if (*item == '\0')
			continue;
		colon = strchr(item, ':');
		if (colon == NULL || (size_t)(colon - item + 2) > sizeof(name)) {
			mp_errf(err, errlen, "unbound option \"%s\": want \"name: value\"", item);
			rc = -EINVAL;
			break;
		}
		memcpy(name, item, (size_t)(colon - item + 1));
		name[colon - item + 1] = '\0';
		for (val = colon + 1; isspace((unsigned char)*val); val++)
			;
		if ((e = ub_ctx_set_option(ctx, name, val)) != 0) {
			mp_errf(err, errlen, "unbound option \"%s %s\": %s", name, val,
				ub_strerror(e));
			rc = -EINVAL;
		}
	}
	free(copy);
	return rc;
}

static int
apply_forwarders(struct ub_ctx *ctx, const char *fwd, char *err, size_t errlen)
{
	char *copy, *item, *save = NULL;
	int rc = 0, e;

	if (strcmp(fwd, "resolv.conf") == 0) {
		if ((e = ub_ctx_resolvconf(ctx, NULL)) != 0) {
			mp_errf(err, errlen, "forwarders from resolv.conf: %s",
				e > 0 ? strerror(e) : ub_strerror(e));
			return -EINVAL;
		}
		return 0;
	}
	if ((copy = strdup(fwd)) == NULL)
		return -ENOMEM;
	for (item = strtok_r(copy, ", \t", &save); item != NULL;
	     item = strtok_r(NULL, ", \t", &save)) {
		if ((e = ub_ctx_set_fwd(ctx, item)) != 0) {
			mp_errf(err, errlen, "forwarder \"%s\": %s", item,
				e == UB_SYNTAX ? "not an address[@port]" : ub_strerror(e));
			rc = -EINVAL;
			break;
		}
	}
	free(copy);
	return rc;
}

struct ctl_dane *
ctl_dane_new(const struct ctl_dane_conf *conf, char *err, size_t errlen)
{
	static const struct ctl_dane_conf defaults;
	struct ctl_dane *dane;
	struct ub_ctx *ctx;
	int e;

	if (conf == NULL)
		conf = &defaults;
	if ((dane = calloc(1, sizeof(*dane))) == NULL) {
		mp_errf(err, errlen, "out of memory");
		return NULL;
	}
	dane->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : CTL_DANE_TIMEOUT_MS_DEFAULT;
	dane->now_ms = conf->now_ms ? conf->now_ms : mono_ms;
	dane->now_arg = conf->now_arg;
	if (conf->disabled)
		return dane;

	if ((ctx = ub_ctx_create()) == NULL) {
		mp_errf(err, errlen, "libunbound: cannot create a context");
		free(dane);
		return NULL;
	}
	dane->ctx = ctx;
	/* a thread, not the default forked process: a daemon's fork would
	 * copy its whole address space (and its DPDK state) */
	if ((e = ub_ctx_async(ctx, 1)) != 0) {
		mp_errf(err, errlen, "libunbound async: %s", ub_strerror(e));
		goto fail;
	}
	/* unbound's default is to refuse forwarders and stubs on loopback;
	 * a local validating resolver (or the test rig) lives there */
	if ((e = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no")) != 0) {
		mp_errf(err, errlen, "libunbound option: %s", ub_strerror(e));
		goto fail;
	}
	if (conf->options != NULL && conf->options[0] != '\0' &&
	    apply_options(ctx, conf->options, err, errlen) != 0)
		goto fail;
	if (conf->forwarders != NULL && conf->forwarders[0] != '\0' &&
	    apply_forwarders(ctx, conf->forwarders, err, errlen) != 0)
		goto fail;
	if (conf->ta_file != NULL && conf->ta_file[0] != '\0') {
		if (access(conf->ta_file, R_OK) != 0) {
			mp_errf(err, errlen, "trust anchor file %s: %s", conf->ta_file,
				strerror(errno));
			goto fail;
		}
		if ((e = ub_ctx_add_ta_file(ctx, conf->ta_file)) != 0) {
			mp_errf(err, errlen, "trust anchor file %s: %s", conf->ta_file,
				ub_strerror(e));
			goto fail;
		}
	}
	if (conf->ta != NULL && conf->ta[0] != '\0' && (e = ub_ctx_add_ta(ctx, conf->ta)) != 0) {
		mp_errf(err, errlen, "trust anchor \"%s\": %s", conf->ta, ub_strerror(e));
		goto fail;
	}
	if ((conf->ta_file == NULL || conf->ta_file[0] == '\0') &&
	    (conf->ta == NULL || conf->ta[0] == '\0')) {
		/* without an anchor every answer would be "insecure" and DANE
		 * silently off: refuse to start instead */
		const char *rk = conf->root_key_file ? conf->root_key_file
						     : CTL_DANE_ROOT_KEY_DEFAULT;

		if (access(rk, R_OK) != 0) {
			mp_errf(err, errlen, "no trust anchor given and root key %s: %s", rk,
				strerror(errno));
			goto fail;
		}
		if ((e = ub_ctx_add_ta_file(ctx, rk)) != 0) {
			mp_errf(err, errlen, "root key %s: %s", rk, ub_strerror(e));
			goto fail;
		}
	}
	/* ub_ctx_add_ta* only store the anchor: a malformed one shows at
	 * the first lookup, which then fails (-EIO) rather than goes
	 * unvalidated */
	return dane;
fail:
	ub_ctx_delete(ctx);
	free(dane);
	return NULL;
}

void
ctl_dane_free(struct ctl_dane *dane)
{
	if (dane == NULL)
		return;
	while (dane->pending != NULL)
		q_abort(dane->pending, "resolver shut down");
	if (dane->ctx != NULL)
		ub_ctx_delete(dane->ctx);
	free(dane);
}

int
ctl_dane_enabled(const struct ctl_dane *dane)
{
	return dane != NULL && dane->ctx != NULL;
}

static int
q_start(struct ctl_dane *dane, struct dane_q *q, int rrtype)
{
	int e;

	q->dane = dane;
	q->start_ms = now(dane);
	q->deadline_ms = q->start_ms + (uint64_t)dane->timeout_ms;
	e = ub_resolve_async(dane->ctx, q->qname, rrtype, RR_CLASS_IN, q, on_ub_result,
			     &q->async_id);
	if (e != 0) {
		MP_LOG(MP_LOG_WARN, COMP, "event=resolve_failed qname=%s err=\"%s\"", q->qname,
		       ub_strerror(e));
		free(q);
		return e == UB_NOMEM ? -ENOMEM : -EIO;
	}
	q->next = dane->pending;
	if (q->next)
		q->next->prev = q;
	dane->pending = q;
	dane->st.pending++;
	dane->st.lookups++;
	return 0;
}

int
ctl_dane_mx(struct ctl_dane *dane, const char *domain, ctl_dane_mx_cb *cb, void *user)
{
	struct dane_q *q;

	if (!ctl_dane_enabled(dane))
		return -ENOTSUP;
	if (cb == NULL)
		return -EINVAL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return -ENOMEM;
	if (name_norm(domain, q->name, sizeof(q->name)) != 0) {
		free(q);
		return -EINVAL;
	}
	snprintf(q->qname, sizeof(q->qname), "%s", q->name);
	q->kind = Q_MX;
	q->mx_cb = cb;
	q->user = user;
	return q_start(dane, q, RR_TYPE_MX);
}

int
ctl_dane_tlsa(struct ctl_dane *dane, const char *host, uint16_t port, ctl_dane_tlsa_cb *cb,
	      void *user)
{
	struct dane_q *q;
	int n;

	if (!ctl_dane_enabled(dane))
		return -ENOTSUP;
	if (cb == NULL)
		return -EINVAL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return -ENOMEM;
	q->port = port ? port : 25;
	if (name_norm(host, q->name, sizeof(q->name)) != 0) {
		free(q);
		return -EINVAL;
	}
	n = snprintf(q->qname, sizeof(q->qname), "_%u._tcp.%s", q->port, q->name);
	if (n < 0 || (size_t)n >= sizeof(q->qname) || n > CTL_DANE_NAME_MAX) {
		free(q);
		return -EINVAL;
	}
	q->kind = Q_TLSA;
	q->tlsa_cb = cb;
	q->user = user;
	return q_start(dane, q, RR_TYPE_TLSA);
}

int
ctl_dane_fd(const struct ctl_dane *dane)
{
	return ctl_dane_enabled(dane) ? ub_fd(dane->ctx) : -1;
}

int
ctl_dane_timeout_ms(const struct ctl_dane *dane)
{
	const struct dane_q *q;
	uint64_t t, first = UINT64_MAX;

	if (dane == NULL || dane->pending == NULL)
		return -1;
	for (q = dane->pending; q != NULL; q = q->next)
		if (q->deadline_ms < first)
			first = q->deadline_ms;
	t = now(dane);
	if (first <= t)
		return 0;
	return first - t > (uint64_t)INT32_MAX ? INT32_MAX : (int)(first - t);
}

int
ctl_dane_process(struct ctl_dane *dane)
{
	struct dane_q *q, *next;
	uint64_t t;
	char why[64];
	int e;

	if (!ctl_dane_enabled(dane))
		return 0;
	dane->ran = 0;
	/* even with nothing pending: the answer to a lookup we cancelled
	 * may sit on the fd, which would stay readable until read */
	if (ub_poll(dane->ctx) && (e = ub_process(dane->ctx)) != 0) {
		MP_LOG(MP_LOG_ERR, COMP, "event=process_failed err=\"%s\"", ub_strerror(e));
		return -EIO;
	}
	t = now(dane);
	for (q = dane->pending; q != NULL; q = next) {
		next = q->next;
		if (q->deadline_ms > t)
			continue;
		snprintf(why, sizeof(why), "no answer within %llu ms",
			 (unsigned long long)(t - q->start_ms));
		dane->st.timeouts++;
		q_abort(q, why);
		/* a callback may have queued or (through process) finished
		 * lookups: restart from the head, every finished one is gone */
		next = dane->pending;
		t = now(dane);
	}
	return dane->ran;
}

int
ctl_dane_poll(struct ctl_dane *dane, int timeout_ms)
{
	struct pollfd pfd;
	int t;

	if (!ctl_dane_enabled(dane) || dane->pending == NULL)
		return 0;
	t = ctl_dane_timeout_ms(dane);
	if (timeout_ms < 0 || (t >= 0 && t < timeout_ms))
		timeout_ms = t;
	pfd.fd = ub_fd(dane->ctx);
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
		return -errno;
	return ctl_dane_process(dane);
}

void
ctl_dane_stats_get(const struct ctl_dane *dane, struct ctl_dane_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (dane != NULL)
		*st = dane->st;
}
