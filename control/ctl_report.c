/*
 * Reports: HGETALL of the campaign and counts hashes for status, an HSCAN
 * of the rcpt hash aggregated by reason for the campaign report, SSCAN of
 * the TLS domain set plus pipelined HGETALLs for the TLS report. Values
 * written by other components are parsed defensively: a malformed rcpt
 * value is counted under "unparsable", never fatal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_campdef.h"
#include "ctl_report.h"

#define REASONS_MAX 10000   /* distinct reasons kept per category */
#define REASON_TEXT 160     /* reply text characters compared */

#define ERR(...) do { \
	if (errlen) snprintf(err, errlen, __VA_ARGS__); \
} while (0)

static json_t *
jint_or_null(const redisReply *h, const char *f)
{
	long long v = ctl_redis_hget_int(h, f, -1);

	return v < 0 ? json_null() : json_integer(v);
}

static json_t *
jstr(const redisReply *h, const char *f)
{
	const char *s = ctl_redis_hget(h, f);
	json_t *j = json_string(s ? s : "");

	return j ? j : json_string("");
}

static redisReply *
hgetall(struct ctl_redis *r, const char *key, char *err, size_t errlen)
{
	redisReply *rep = ctl_redis_cmd(r, "HGETALL %s", key);

	if (rep == NULL) {
		ERR("%s", ctl_redis_error(r));
		return NULL;
	}
	if (rep->type != REDIS_REPLY_ARRAY) {
		ERR("redis %s: HGETALL %s: %s", ctl_redis_where(r), key,
			rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		freeReplyObject(rep);
		return NULL;
	}
	return rep;
}

int
ctl_report_status(struct ctl_redis *r, const char *id, int64_t now_ms,
	json_t **out, char *err, size_t errlen)
{
	char kc[CTL_KEY_MAX], kn[CTL_KEY_MAX];
	redisReply *c, *n;
	long long total, fin = 0, created, done_ms, v;
	json_t *o, *counts;
	double pct, rate = 0, el;
	int i;

	*out = NULL;
	if (!ctl_campdef_id_valid(id)) {
		ERR("unknown campaign '%.80s' (not a valid campaign id)", id);
		return -ENOENT;
	}
	ctl_redis_key(r, kc, sizeof(kc), CTL_K_CAMPAIGN, id);
	ctl_redis_key(r, kn, sizeof(kn), CTL_K_COUNTS, id);
	c = hgetall(r, kc, err, errlen);
	if (c == NULL)
		return -EIO;
	if (c->elements == 0) {
		freeReplyObject(c);
		ERR("unknown campaign '%s' (no %s in redis %s)", id, kc, ctl_redis_where(r));
		return -ENOENT;
	}
	n = hgetall(r, kn, err, errlen);
	if (n == NULL) {
		freeReplyObject(c);
		return -EIO;
	}
	o = json_object();
	counts = json_object();
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "state", jstr(c, CTL_F_STATE));
	json_object_set_new(o, "from", jstr(c, CTL_F_FROM));
	json_object_set_new(o, "subject", jstr(c, CTL_F_SUBJECT));
	json_object_set_new(o, "tls_policy", jstr(c, CTL_F_TLS_POLICY));
	json_object_set_new(o, "window", jstr(c, CTL_F_WINDOW));
	json_object_set_new(o, "created_ms", jint_or_null(c, CTL_F_CREATED));
	json_object_set_new(o, "submitted_ms", jint_or_null(c, CTL_F_SUBMITTED));
	json_object_set_new(o, "done_ms", jint_or_null(c, CTL_F_DONE_MS));
	{
		const char *pr = ctl_redis_hget(c, CTL_F_PRIORITY);

		json_object_set_new(o, "priority", json_string(pr && pr[0] ? pr : "normal"));
	}
	json_object_set_new(o, "retention_s",
		json_integer(ctl_redis_hget_int(c, CTL_F_RETENTION, CTL_RETENTION_DEFAULT)));
	json_object_set_new(o, "expires_ms", jint_or_null(c, CTL_F_EXPIRES_MS));
	total = ctl_redis_hget_int(c, CTL_F_TOTAL, 0);
	json_object_set_new(o, "total", json_integer(total));
	json_object_set_new(o, "invalid", json_integer(ctl_redis_hget_int(c, CTL_F_INVALID, 0)));
	json_object_set_new(o, "duplicates_skipped",
		json_integer(ctl_redis_hget_int(c, CTL_F_DUPS, 0)));
	json_object_set_new(o, "suppressed",
		json_integer(ctl_redis_hget_int(c, CTL_F_SUPPRESSED, 0)));
	for (i = 0; i < CTL_RCPT_LAST; i++) {
		const char *name = ctl_rcpt_state_name((enum ctl_rcpt_state)i);

		v = ctl_redis_hget_int(n, name, 0);
		json_object_set_new(counts, name, json_integer(v));
		if (ctl_rcpt_state_final((enum ctl_rcpt_state)i))
			fin += v;
	}
	json_object_set_new(o, "counts", counts);
	json_object_set_new(o, "dup_deliveries",
		json_integer(ctl_redis_hget_int(n, CTL_C_DUP_DELIVERIES, 0)));
	json_object_set_new(o, "attempts", json_integer(ctl_redis_hget_int(n, CTL_C_ATTEMPTS, 0)));
	json_object_set_new(o, "final", json_integer(fin));
	pct = total > 0 ? 100.0 * (double)fin / (double)total : 0.0;
	json_object_set_new(o, "percent_done", json_real(pct));
	created = ctl_redis_hget_int(c, CTL_F_CREATED, 0);
	done_ms = ctl_redis_hget_int(c, CTL_F_DONE_MS, 0);
	el = (double)((done_ms > 0 ? done_ms : now_ms) - created) / 1000.0;
	if (created > 0 && el > 0)
		rate = (double)fin / el;
	json_object_set_new(o, "rate_per_s", json_real(rate));
	{
		const char *st = ctl_redis_hget(c, CTL_F_STATE);
		int ended = st && (strcmp(st, "done") == 0 || strcmp(st, "cancelled") == 0);

		if (ended || fin >= total)
			json_object_set_new(o, "eta_s", json_integer(0));
		else if (rate > 0)
			json_object_set_new(o, "eta_s", json_real((double)(total - fin) / rate));
		else
			json_object_set_new(o, "eta_s", json_null());
	}
	freeReplyObject(c);
	freeReplyObject(n);
	*out = o;
	return 0;
}

/* --- campaign outcome report --- */

struct reasons {
	json_t *map;       /* key -> [count, code, esc, text] */
	long long other;   /* beyond REASONS_MAX */
};

/*
 * Copies a reply text into dst (at most cap - 1 bytes), with every
 * "<local@domain>" blanked to "<...>": servers echo the recipient in their
 * replies ("550 5.1.1 <a@b>: Recipient address rejected"), and a reason
 * is the same for every recipient it hits.
 */
static void
reason_text(char *dst, size_t cap, const char *text)
{
	size_t o = 0;
	const char *p = text;

	while (*p && o + 1 < cap) {
		if (*p == '<') {
			const char *q = p + 1;
			int at = 0;

			while (*q && *q != '>' && *q != '<' && *q != ' ')
				at |= *q++ == '@';
			if (*q == '>' && at) {
				if (o + 6 >= cap)
					break;
				memcpy(dst + o, "<...>", 5);
				o += 5;
				p = q + 1;
				continue;
			}
		}
		dst[o++] = *p++;
	}
	dst[o] = '\0';
}

static void
reason_add(struct reasons *rs, json_t *v)
{
	json_t *jc = json_object_get(v, "code");
	json_t *je = json_object_get(v, "esc");
	json_t *jt = json_object_get(v, "text");
	long long code = json_is_integer(jc) ? json_integer_value(jc) : 0;
	const char *esc = json_is_string(je) ? json_string_value(je) : "";
	const char *text = json_is_string(jt) ? json_string_value(jt) : "";
	char key[REASON_TEXT + 64], t[REASON_TEXT + 1];
	json_t *e;

	reason_text(t, sizeof(t), text);
	snprintf(key, sizeof(key), "%lld\x1f%.15s\x1f%s", code, esc, t);
	e = json_object_get(rs->map, key);
	if (e) {
		json_array_set_new(e, 0, json_integer(json_integer_value(json_array_get(e, 0)) + 1));
		return;
	}
	if (json_object_size(rs->map) >= REASONS_MAX) {
		rs->other++;
		return;
	}
	e = json_pack("[I I s s]", (json_int_t)1, (json_int_t)code, esc, t);
	if (e == NULL)  /* text not UTF-8 after the cut */
		e = json_pack("[I I s s]", (json_int_t)1, (json_int_t)code, esc, "");
	if (e)
		json_object_set_new(rs->map, key, e);
}

static int
cmp_reason(const void *a, const void *b)
{
	long long x = json_integer_value(json_array_get(*(json_t *const *)a, 0));
	long long y = json_integer_value(json_array_get(*(json_t *const *)b, 0));

	return x < y ? 1 : x > y ? -1 : 0;
}

static json_t *
reasons_top(struct reasons *rs, int top)
{
	size_t n = json_object_size(rs->map), i = 0;
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	json_t *arr = json_array(), *e;
	const char *k;

	if (v == NULL)
		return arr;
	json_object_foreach(rs->map, k, e)
		v[i++] = e;
	qsort(v, n, sizeof(*v), cmp_reason);
	for (i = 0; i < n && (top <= 0 || i < (size_t)top); i++)
		json_array_append_new(arr, json_pack("{s:O s:O s:O s:O}",
			"count", json_array_get(v[i], 0), "code", json_array_get(v[i], 1),
			"esc", json_array_get(v[i], 2), "text", json_array_get(v[i], 3)));
	if (rs->other)
		json_array_append_new(arr, json_pack("{s:I s:i s:s s:s}", "count",
			(json_int_t)rs->other, "code", 0, "esc", "", "text", "(other reasons)"));
	free(v);
	return arr;
}

int
ctl_report_campaign(struct ctl_redis *r, const char *id, int top, int64_t now_ms,
	json_t **out, char *err, size_t errlen)
{
	struct reasons rs[3];  /* bounced, deferred, failed */
	json_t *classes;	/* {"bounced": {"invalid_recipient": n}, ...} */
	char kr[CTL_KEY_MAX], cursor[32] = "0";
	long long scanned = 0, bad = 0;
	json_t *o;
	int rc, i;

	rc = ctl_report_status(r, id, now_ms, &o, err, errlen);
	if (rc < 0)
		return rc;
	classes = json_object();
	for (i = 0; i < 3; i++) {
		rs[i].map = json_object();
		rs[i].other = 0;
	}
	ctl_redis_key(r, kr, sizeof(kr), CTL_K_RCPT, id);
	do {
		redisReply *rep = ctl_redis_cmd(r, "HSCAN %s %s COUNT 1000", kr, cursor);
		redisReply *arr;
		size_t j;

		if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING) {
			ERR("%s", rep == NULL ? ctl_redis_error(r) :
				rep->type == REDIS_REPLY_ERROR ? rep->str : "HSCAN: unexpected reply");
			if (rep)
				freeReplyObject(rep);
			rc = -EIO;
			break;
		}
		snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
		arr = rep->element[1];
		for (j = 0; j + 1 < arr->elements; j += 2) {
			redisReply *val = arr->element[j + 1];
			json_t *v;
			const char *st;
			int cat;

			scanned++;
			v = json_loadb(val->str, val->len, 0, NULL);
			st = v ? json_string_value(json_object_get(v, "state")) : NULL;
			if (st == NULL) {
				bad++;
				json_decref(v);
				continue;
			}
			cat = strcmp(st, "bounced") == 0 ? 0 : strcmp(st, "deferred") == 0 ? 1 :
			      strcmp(st, "failed") == 0 ? 2 : -1;
			if (cat >= 0) {
				const char *cl = json_string_value(json_object_get(v, "class"));
				json_t *by = json_object_get(classes, st);

				reason_add(&rs[cat], v);
				if (by == NULL) {
					by = json_object();
					json_object_set_new(classes, st, by);
				}
				cl = cl != NULL ? cl : "unclassified";
				json_object_set_new(by, cl, json_integer(
					json_integer_value(json_object_get(by, cl)) + 1));
			}
			json_decref(v);
		}
		freeReplyObject(rep);
	} while (strcmp(cursor, "0") != 0);
	if (rc == 0) {
		json_object_set_new(o, "bounce_reasons", reasons_top(&rs[0], top));
		json_object_set_new(o, "deferral_reasons", reasons_top(&rs[1], top));
		json_object_set_new(o, "failure_reasons", reasons_top(&rs[2], top));
		json_object_set_new(o, "classes", classes);
		classes = NULL;
		json_object_set_new(o, "recipients_scanned", json_integer(scanned));
		json_object_set_new(o, "unparsable", json_integer(bad));
		*out = o;
	} else {
		json_decref(o);
	}
	for (i = 0; i < 3; i++)
		json_decref(rs[i].map);
	json_decref(classes);
	return rc;
}

/* --- TLS report --- */

static json_t *
tls_domain(const char *domain, const redisReply *h)
{
	json_t *d = json_object(), *ver = json_object(), *ciph = json_object(),
	       *grp = json_object(), *fail = json_object();
	long long sessions = ctl_redis_hget_int(h, "sessions", 0);
	long long ok = ctl_redis_hget_int(h, "tls_ok", 0);
	long long hs_sum = ctl_redis_hget_int(h, "hs_ms_sum", 0);
	long long hs_n = ctl_redis_hget_int(h, "hs_count", 0);
	const char *top = NULL;
	long long topn = -1;
	size_t i;

	static const char *const plain[] = {
		"sessions", "starttls_offered", "no_starttls", "tls_ok", "tls_failed",
		"plaintext_deliveries", "resumed",
	};

	json_object_set_new(d, "domain", json_string(domain));
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		json_object_set_new(d, plain[i], json_integer(ctl_redis_hget_int(h, plain[i], 0)));
	json_object_set_new(d, "tls_percent",
		json_real(sessions > 0 ? 100.0 * (double)ok / (double)sessions : 0.0));
	json_object_set_new(d, "handshake_ms_avg",
		hs_n > 0 ? json_real((double)hs_sum / (double)hs_n) : json_null());
	for (i = 0; i + 1 < h->elements; i += 2) {
		const char *f = h->element[i]->str;
		const char *vs = h->element[i + 1]->str;
		long long v = strtoll(vs ? vs : "0", NULL, 10);
		json_t *target = NULL;
		const char *name = NULL;

		if (strncmp(f, "version:", 8) == 0) {
			target = ver;
			name = f + 8;
		} else if (strncmp(f, "cipher:", 7) == 0) {
			target = ciph;
			name = f + 7;
			if (v > topn) {
				topn = v;
				top = name;
			}
		} else if (strncmp(f, "group:", 6) == 0) {
			target = grp;
			name = f + 6;
		} else if (strncmp(f, "verify_fail:", 12) == 0) {
			target = fail;
			name = f + 12;
		}
		if (target && name[0])
			json_object_set_new(target, name, json_integer(v));
	}
	json_object_set_new(d, "versions", ver);
	json_object_set_new(d, "ciphers", ciph);
	json_object_set_new(d, "groups", grp);
	json_object_set_new(d, "top_cipher", top ? json_string(top) : json_null());
	json_object_set_new(d, "failures", fail);
	return d;
}

static int
cmp_sessions(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	long long sx = json_integer_value(json_object_get(x, "sessions"));
	long long sy = json_integer_value(json_object_get(y, "sessions"));

	if (sx != sy)
		return sx < sy ? 1 : -1;
	return strcmp(json_string_value(json_object_get(x, "domain")),
		json_string_value(json_object_get(y, "domain")));
}

static int
tls_fetch(struct ctl_redis *r, json_t *names, json_t *list, char *err, size_t errlen)
{
	size_t i, n = json_array_size(names);
	char k[CTL_KEY_MAX];

	for (i = 0; i < n; i++) {
		ctl_redis_key(r, k, sizeof(k), CTL_K_TLS, json_string_value(json_array_get(names, i)));
		if (ctl_redis_append(r, "HGETALL %s", k) < 0) {
			ERR("%s", ctl_redis_error(r));
			while (ctl_redis_pending(r)) {
				redisReply *x;

				if (ctl_redis_reply(r, &x) < 0)
					break;
				freeReplyObject(x);
			}
			return -EIO;
		}
	}
	for (i = 0; i < n; i++) {
		redisReply *rep;

		if (ctl_redis_reply(r, &rep) < 0) {
			ERR("%s", ctl_redis_error(r));
			return -EIO;
		}
		if (rep->type == REDIS_REPLY_ARRAY)
			json_array_append_new(list,
				tls_domain(json_string_value(json_array_get(names, i)), rep));
		freeReplyObject(rep);
	}
	return 0;
}

int
ctl_report_tls(struct ctl_redis *r, const char *domain, int top, json_t **out,
	char *err, size_t errlen)
{
	char kd[CTL_KEY_MAX], cursor[32] = "0";
	json_t *names = json_array(), *list = json_array(), *o, *tot, *arr;
	long long s = 0, ok = 0, plain = 0, nost = 0, fail = 0, off = 0;
	json_t **v;
	size_t i, n;
	int rc = 0;

	*out = NULL;
	ctl_redis_key(r, kd, sizeof(kd), CTL_K_TLS_DOMAINS);
	if (domain) {
		redisReply *rep = ctl_redis_cmd(r, "SISMEMBER %s %s", kd, domain);

		if (rep == NULL) {
			ERR("%s", ctl_redis_error(r));
			rc = -EIO;
		} else if (rep->type != REDIS_REPLY_INTEGER || rep->integer != 1) {
			ERR("no TLS statistics for domain '%s' (not in %s)", domain, kd);
			rc = -ENOENT;
		} else {
			json_array_append_new(names, json_string(domain));
		}
		if (rep)
			freeReplyObject(rep);
	} else {
		do {
			redisReply *rep = ctl_redis_cmd(r, "SSCAN %s %s COUNT 1000", kd, cursor);

			if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
				ERR("%s", rep == NULL ? ctl_redis_error(r) :
					rep->type == REDIS_REPLY_ERROR ? rep->str : "SSCAN: unexpected reply");
				if (rep)
					freeReplyObject(rep);
				rc = -EIO;
				break;
			}
			snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
			for (i = 0; i < rep->element[1]->elements; i++) {
				json_t *nm = json_string(rep->element[1]->element[i]->str);

				if (nm)
					json_array_append_new(names, nm);
			}
			freeReplyObject(rep);
			/* fetch in slices so the pipeline stays small */
			if (json_array_size(names) >= 1000 || strcmp(cursor, "0") == 0) {
				rc = tls_fetch(r, names, list, err, errlen);
				json_array_clear(names);
				if (rc < 0)
					break;
			}
		} while (strcmp(cursor, "0") != 0);
	}
	if (rc == 0 && json_array_size(names))
		rc = tls_fetch(r, names, list, err, errlen);
	json_decref(names);
	if (rc < 0) {
		json_decref(list);
		return rc;
	}
	n = json_array_size(list);
	v = calloc(n ? n : 1, sizeof(*v));
	if (v == NULL) {
		json_decref(list);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		json_t *d = json_array_get(list, i);

		v[i] = d;
		s += json_integer_value(json_object_get(d, "sessions"));
		ok += json_integer_value(json_object_get(d, "tls_ok"));
		fail += json_integer_value(json_object_get(d, "tls_failed"));
		plain += json_integer_value(json_object_get(d, "plaintext_deliveries"));
		nost += json_integer_value(json_object_get(d, "no_starttls"));
		off += json_integer_value(json_object_get(d, "starttls_offered"));
	}
	qsort(v, n, sizeof(*v), cmp_sessions);
	arr = json_array();
	for (i = 0; i < n && (top <= 0 || i < (size_t)top); i++)
		json_array_append(arr, v[i]);
	free(v);
	json_decref(list);
	tot = json_pack("{s:I s:I s:I s:I s:I s:I s:I s:f}",
		"domains", (json_int_t)n, "sessions", (json_int_t)s,
		"starttls_offered", (json_int_t)off, "no_starttls", (json_int_t)nost,
		"tls_ok", (json_int_t)ok, "tls_failed", (json_int_t)fail,
		"plaintext_deliveries", (json_int_t)plain,
		"tls_percent", s > 0 ? 100.0 * (double)ok / (double)s : 0.0);
	o = json_object();
	json_object_set_new(o, "domains", arr);
	json_object_set_new(o, "totals", tot);
	*out = o;
	return 0;
}

int
ctl_report_list(struct ctl_redis *r, int limit, json_t **out, char *err, size_t errlen)
{
	char kz[CTL_KEY_MAX], kc[CTL_KEY_MAX];
	redisReply *ids;
	json_t *arr = json_array();
	size_t i;

	*out = NULL;
	if (limit <= 0)
		limit = 100;
	ctl_redis_key(r, kz, sizeof(kz), CTL_K_CAMPAIGNS);
	ids = ctl_redis_cmd(r, "ZREVRANGE %s 0 %d", kz, limit - 1);
	if (ids == NULL || ids->type != REDIS_REPLY_ARRAY) {
		ERR("%s", ids == NULL ? ctl_redis_error(r) :
			ids->type == REDIS_REPLY_ERROR ? ids->str : "ZREVRANGE: unexpected reply");
		if (ids)
			freeReplyObject(ids);
		json_decref(arr);
		return -EIO;
	}
	for (i = 0; i < ids->elements; i++) {
		redisReply *h;

		ctl_redis_key(r, kc, sizeof(kc), CTL_K_CAMPAIGN, ids->element[i]->str);
		h = ctl_redis_cmd(r, "HMGET %s state created_ms total subject expires_ms", kc);
		if (h == NULL) {
			ERR("%s", ctl_redis_error(r));
			freeReplyObject(ids);
			json_decref(arr);
			return -EIO;
		}
		if (h->type == REDIS_REPLY_ARRAY && h->elements == 5 &&
		    h->element[0]->type == REDIS_REPLY_STRING) {
			json_array_append_new(arr, json_pack("{s:s s:s s:I s:I s:s s:I}",
				"id", ids->element[i]->str,
				"state", h->element[0]->str,
				"created_ms", (json_int_t)(h->element[1]->str ? strtoll(h->element[1]->str, NULL, 10) : 0),
				"total", (json_int_t)(h->element[2]->str ? strtoll(h->element[2]->str, NULL, 10) : 0),
				"subject", h->element[3]->str ? h->element[3]->str : "",
				"expires_ms", (json_int_t)(h->element[4]->str ? strtoll(h->element[4]->str, NULL, 10) : 0)));
		} else if (h->type == REDIS_REPLY_ARRAY && h->elements == 5 &&
			   h->element[0]->type == REDIS_REPLY_NIL) {
			/* its retention ended (campaign_create.lua writes the hash
			 * and this entry together): forget the id */
			redisReply *z = ctl_redis_cmd(r, "ZREM %s %s", kz, ids->element[i]->str);

			if (z)
				freeReplyObject(z);
		}
		freeReplyObject(h);
	}
	freeReplyObject(ids);
	*out = json_pack("{s:o}", "campaigns", arr);
	return 0;
}
