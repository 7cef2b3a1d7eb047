/*
 * Submit engine: validation of one record, per-domain batch buffers
 * (hash by domain, oldest-first list for early flushes), and the batch
 * script pipelined with EVALSHA. A batch leaves memory only after its
 * reply was read, so duplicates can be reported with their line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl_idn.h"
#include "ctl_lua.h"
#include "ctl_submit.h"

#define NBUCKETS   16384
#define BATCH_BYTES_MAX (4u << 20)
#define OPEN_MAX   8192     /* partial batches (distinct domains) kept */
#define BATCH_FIXED_ARGS 9  /* 5 keys + id, domain, rcpt value, invalid delta */

struct item {
	size_t aoff, alen;   /* address in buf */
	size_t eoff, elen;   /* jobs JSON entry in buf */
	unsigned long line;
};

struct batch {
	struct batch *hnext;
	struct batch *prev, *next;   /* oldest-first list, or in-flight FIFO */
	uint32_t hash;
	unsigned n;
	long long inv;               /* invalid records reported with it */
	char domain[256];
	char *buf;
	size_t blen, bcap;
	struct item *it;
	unsigned itcap;
};

struct ctl_submit {
	struct ctl_redis *r;
	const struct msg_template *t;
	struct ctl_submit_conf conf;
	char id[CTL_ID_MAX + 1];
	char k_camp[CTL_KEY_MAX], k_rcpt[CTL_KEY_MAX], k_counts[CTL_KEY_MAX],
	     k_jobs[CTL_KEY_MAX], k_sup[CTL_KEY_MAX];
	struct batch *bucket[NBUCKETS];
	struct batch *old_head, *old_tail;   /* partial batches, oldest first */
	struct batch *fly_head, *fly_tail;   /* sent, reply not read */
	unsigned nfly;
	struct batch *pool;                  /* free batches (singly linked) */
	unsigned npool;
	unsigned long buffered;
	size_t buffered_bytes;
	unsigned nopen;                      /* partial batches */
	long long invalid_pending;           /* for the next script call */
	long long invalid_untold;            /* not yet in Redis */
	struct ctl_submit_stats st;
	const char **argv;
	size_t *argvlen;
	char err[512];
};

#define ERR(...) do { \
	if (errlen) snprintf(err, errlen, __VA_ARGS__); \
} while (0)

/* Printable excerpt of untrusted text for an error message. */
static void
excerpt(char *dst, size_t cap, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 4 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (i < n && o + 4 <= cap) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

int
ctl_submit_check(const struct msg_template *t, const struct ctl_input_rec *rec,
	char *addr, size_t addrcap, char **entry, char *err, size_t errlen)
{
	struct msg_field mf[CTL_INPUT_FIELDS];
	struct msg_fields fs;
	struct msg_render rs;
	char e2[300], ex[80];
	const char *e, *at;
	size_t n, i;
	json_t *o, *f;

	e = rec->email;
	n = rec->email_len;
	while (e && n && (*e == ' ' || *e == '\t')) {
		e++;
		n--;
	}
	while (e && n && (e[n - 1] == ' ' || e[n - 1] == '\t'))
		n--;
	if (e == NULL || n == 0) {
		ERR("line %lu: missing email address", rec->line);
		return -EINVAL;
	}
	if (memchr(e, '\r', n) || memchr(e, '\n', n)) {
		ERR("line %lu: CR/LF in the email address", rec->line);
		return -EINVAL;
	}
	excerpt(ex, sizeof(ex), e, n);
	if (n >= addrcap || memchr(e, '\0', n)) {
		ERR("line %lu: bad address syntax '%s'", rec->line, ex);
		return -EINVAL;
	}
	memcpy(addr, e, n);
	addr[n] = '\0';
	if (msg_addr_valid(addr, MSG_F_SMTPUTF8) < 0) {
		ERR("line %lu: bad address syntax '%s'", rec->line, ex);
		return -EINVAL;
	}
	for (i = 0; i < rec->nf; i++) {
		const struct ctl_input_field *x = &rec->f[i];

		if (memchr(x->value, '\r', x->len) || memchr(x->value, '\n', x->len)) {
			ERR("line %lu: CR/LF in field '%s'", rec->line, x->name);
			return -EINVAL;
		}
		if (memchr(x->value, '\0', x->len)) {
			ERR("line %lu: NUL byte in field '%s'", rec->line, x->name);
			return -EINVAL;
		}
		mf[i].name = x->name;
		mf[i].value = x->value;
		mf[i].len = x->len;
	}
	/* the domain is after the last '@' (a quoted local part may hold '@') */
	at = strrchr(addr, '@');
	for (char *p = (char *)at + 1; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + 32);
	{
		char alabel[256], why[128];

		if (ctl_idn_domain(at + 1, alabel, sizeof(alabel), why, sizeof(why)) < 0) {
			ERR("line %lu: domain of '%s' is not a valid internationalised domain "
				"name (IDNA2008): %s", rec->line, ex, why);
			return -EINVAL;
		}
	}
	memset(&fs, 0, sizeof(fs));
	fs.v = mf;
	fs.n = rec->nf;
	fs.index = rec->line;
	if (msg_render_open(&rs, t, addr, &fs, MSG_F_SMTPUTF8 | MSG_F_8BITMIME |
	    MSG_F_DOTSTUFF, time(NULL), e2, sizeof(e2)) < 0) {
		ERR("line %lu: %s", rec->line, e2);
		return -EINVAL;
	}
	if (entry == NULL)
		return 0;
	o = json_object();
	f = json_object();
	if (o == NULL || f == NULL) {
		json_decref(o);
		json_decref(f);
		ERR("out of memory");
		return -ENOMEM;
	}
	json_object_set_new(o, "to", json_string(addr));
	for (i = 0; i < rec->nf; i++) {
		json_t *v = json_stringn(rec->f[i].value, rec->f[i].len);

		if (v == NULL) {
			ERR("line %lu: field '%s': invalid UTF-8", rec->line, rec->f[i].name);
			json_decref(o);
			json_decref(f);
			return -EINVAL;
		}
		if (json_object_get(f, rec->f[i].name) == NULL)
			json_object_set_new(f, rec->f[i].name, v);
		else
			json_decref(v);
	}
	json_object_set_new(o, "f", f);
	*entry = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (*entry == NULL) {
		ERR("line %lu: cannot encode the recipient (invalid UTF-8?)", rec->line);
		return -EINVAL;
	}
	return 0;
}

struct ctl_submit *
ctl_submit_new(struct ctl_redis *r, const char *id, const struct msg_template *t,
	const struct ctl_submit_conf *conf)
{
	struct ctl_submit *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->r = r;
	s->t = t;
	if (conf)
		s->conf = *conf;
	if (s->conf.batch_size == 0)
		s->conf.batch_size = CTL_BATCH_DEFAULT;
	if (s->conf.batch_size > 1000)
		s->conf.batch_size = 1000;
	if (s->conf.buffer_max == 0)
		s->conf.buffer_max = 50000;
	if (s->conf.buffer_bytes == 0)
		s->conf.buffer_bytes = 16u << 20;
	if (s->conf.pipeline == 0)
		s->conf.pipeline = 32;
	snprintf(s->id, sizeof(s->id), "%s", id);
	ctl_redis_key(r, s->k_camp, sizeof(s->k_camp), CTL_K_CAMPAIGN, id);
	ctl_redis_key(r, s->k_rcpt, sizeof(s->k_rcpt), CTL_K_RCPT, id);
	ctl_redis_key(r, s->k_counts, sizeof(s->k_counts), CTL_K_COUNTS, id);
	ctl_redis_key(r, s->k_jobs, sizeof(s->k_jobs), CTL_K_CJOBS, id);
	/* no sender domain: "NS suppress:", a list nobody can write */
	ctl_redis_key(r, s->k_sup, sizeof(s->k_sup), CTL_K_SUPPRESS,
		s->conf.sender_domain ? s->conf.sender_domain : "");
	{
		/* an append to a campaign whose stream was retired (done and
		 * empty, source_gc.lua) puts it back before the first batch */
		char ka[CTL_KEY_MAX];
		redisReply *rep;

		ctl_redis_key(r, ka, sizeof(ka), CTL_K_ACTIVE);
		rep = ctl_redis_cmd(r, "SADD %s %s", ka, id);
		if (rep != NULL)
			freeReplyObject(rep);
	}
	s->argv = calloc(BATCH_FIXED_ARGS + 2 * (size_t)s->conf.batch_size, sizeof(*s->argv));
	s->argvlen = calloc(BATCH_FIXED_ARGS + 2 * (size_t)s->conf.batch_size, sizeof(*s->argvlen));
	if (s->argv == NULL || s->argvlen == NULL) {
		ctl_submit_free(s);
		return NULL;
	}
	return s;
}

static void
batch_destroy(struct batch *b)
{
	free(b->buf);
	free(b->it);
	free(b);
}

static void
list_free(struct batch *b)
{
	while (b) {
		struct batch *n = b->next;

		batch_destroy(b);
		b = n;
	}
}

void
ctl_submit_free(struct ctl_submit *s)
{
	if (s == NULL)
		return;
	list_free(s->old_head);
	list_free(s->fly_head);
	list_free(s->pool);
	free(s->argv);
	free(s->argvlen);
	free(s);
}

static uint32_t
fnv1a(const char *p)
{
	uint32_t h = 2166136261u;

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h;
}

static struct batch *
batch_get(struct ctl_submit *s, const char *domain, uint32_t h)
{
	struct batch *b;

	for (b = s->bucket[h & (NBUCKETS - 1)]; b; b = b->hnext)
		if (b->hash == h && strcmp(b->domain, domain) == 0)
			return b;
	if (s->pool) {
		b = s->pool;
		s->pool = b->next;
		s->npool--;
	} else {
		/* items and bytes grow on demand: an input where most
		 * domains appear once must not cost a full batch each */
		b = calloc(1, sizeof(*b));
		if (b == NULL)
			return NULL;
	}
	b->n = 0;
	b->blen = 0;
	b->hash = h;
	snprintf(b->domain, sizeof(b->domain), "%s", domain);
	b->hnext = s->bucket[h & (NBUCKETS - 1)];
	s->bucket[h & (NBUCKETS - 1)] = b;
	s->nopen++;
	b->next = NULL;
	b->prev = s->old_tail;
	if (s->old_tail)
		s->old_tail->next = b;
	else
		s->old_head = b;
	s->old_tail = b;
	return b;
}

static void
batch_release(struct ctl_submit *s, struct batch *b)
{
	/* keep a few for reuse; large buffers go back to the allocator */
	if (s->npool < 64 && b->bcap <= (64u << 10)) {
		b->next = s->pool;
		s->pool = b;
		s->npool++;
	} else {
		batch_destroy(b);
	}
}

static void
unlink_partial(struct ctl_submit *s, struct batch *b)
{
	struct batch **pp = &s->bucket[b->hash & (NBUCKETS - 1)];

	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	if (b->prev)
		b->prev->next = b->next;
	else
		s->old_head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		s->old_tail = b->prev;
	b->prev = b->next = NULL;
	s->nopen--;
	s->buffered -= b->n;
	s->buffered_bytes -= b->blen;
}

static struct ctl_redis_script batch_lua = { .src = ctl_lua_submit_batch };

static int
batch_args(struct ctl_submit *s, struct batch *b, char *inv, size_t invcap,
	char *rv, size_t rvcap)
{
	unsigned i;
	int n = 0;

	snprintf(inv, invcap, "%lld", b->inv);
	snprintf(rv, rvcap, "{\"state\":\"queued\",\"attempts\":0,\"updated_ms\":%lld}",
		(long long)ctl_now_ms());
#define A(p, l) do { s->argv[n] = (p); s->argvlen[n] = (l); n++; } while (0)
	A(s->k_camp, strlen(s->k_camp));
	A(s->k_rcpt, strlen(s->k_rcpt));
	A(s->k_counts, strlen(s->k_counts));
	A(s->k_jobs, strlen(s->k_jobs));
	A(s->k_sup, strlen(s->k_sup));
	A(s->id, strlen(s->id));
	A(b->domain, strlen(b->domain));
	A(rv, strlen(rv));
	A(inv, strlen(inv));
	for (i = 0; i < b->n; i++) {
		A(b->buf + b->it[i].aoff, b->it[i].alen);
		A(b->buf + b->it[i].eoff, b->it[i].elen);
	}
#undef A
	return n;
}

static int
handle_reply(struct ctl_submit *s, struct batch *b, redisReply *rep)
{
	long long status;
	size_t i;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER) {
		snprintf(s->err, sizeof(s->err), "redis %s: batch script: %s",
			ctl_redis_where(s->r),
			rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		return -EIO;
	}
	status = rep->element[0]->integer;
	if (status < 0)
		s->invalid_untold += b->inv;   /* not applied */
	if (status == -1) {
		snprintf(s->err, sizeof(s->err), "campaign '%s' was cancelled during submission", s->id);
		return -ECANCELED;
	}
	if (status == -2) {
		snprintf(s->err, sizeof(s->err), "campaign '%s' was deleted during submission", s->id);
		return -ENOENT;
	}
	for (i = 1; i < rep->elements; i++) {
		long long k = rep->element[i]->integer;

		if (k < 0) {
			k = -k;
			s->st.suppressed++;
			if (k <= (long long)b->n && s->conf.on_suppressed)
				s->conf.on_suppressed(s->conf.user, b->it[k - 1].line,
					b->buf + b->it[k - 1].aoff);
			continue;
		}
		s->st.duplicates++;
		if (k >= 1 && k <= (long long)b->n && s->conf.on_duplicate)
			s->conf.on_duplicate(s->conf.user, b->it[k - 1].line,
				b->buf + b->it[k - 1].aoff);
	}
	s->st.accepted += b->n - (rep->elements - 1);
	if (b->n > rep->elements - 1)
		s->st.batches++;
	return 0;
}

/* Read the replies of every batch in flight. */
static int
drain(struct ctl_submit *s)
{
	struct batch *redo = NULL;
	int rc = 0;

	while (s->fly_head) {
		struct batch *b = s->fly_head;
		redisReply *rep;

		s->fly_head = b->next;
		if (s->fly_head == NULL)
			s->fly_tail = NULL;
		s->nfly--;
		if (rc < 0) {
			batch_destroy(b);
			continue;
		}
		if (ctl_redis_reply(s->r, &rep) < 0) {
			snprintf(s->err, sizeof(s->err), "%s (during submission)",
				ctl_redis_error(s->r));
			batch_destroy(b);
			rc = -EIO;
			continue;
		}
		if (ctl_redis_is_noscript(rep)) {
			/* the server lost its scripts (restart, SCRIPT FLUSH):
			 * this batch was not applied; re-run it below */
			freeReplyObject(rep);
			b->next = redo;
			redo = b;
			continue;
		}
		rc = handle_reply(s, b, rep);
		freeReplyObject(rep);
		batch_release(s, b);
	}
	while (redo) {
		struct batch *b = redo;
		char inv[24], rv[96];
		redisReply *rep;
		int n;

		redo = b->next;
		if (rc == 0) {
			s->st.reruns++;
			n = batch_args(s, b, inv, sizeof(inv), rv, sizeof(rv));
			rep = ctl_redis_eval(s->r, &batch_lua, 5, n, s->argv, s->argvlen);
			if (rep == NULL) {
				snprintf(s->err, sizeof(s->err), "%s", ctl_redis_error(s->r));
				rc = -EIO;
			} else {
				rc = handle_reply(s, b, rep);
				freeReplyObject(rep);
			}
		}
		batch_destroy(b);
	}
	return rc;
}

static int
flush_batch(struct ctl_submit *s, struct batch *b)
{
	char inv[24], rv[96];
	int n, rc;

	unlink_partial(s, b);
	if (b->n == 0) {
		batch_release(s, b);
		return 0;
	}
	b->inv = s->invalid_pending;
	n = batch_args(s, b, inv, sizeof(inv), rv, sizeof(rv));
	rc = ctl_redis_eval_append(s->r, &batch_lua, 5, n, s->argv, s->argvlen);
	if (rc < 0) {
		snprintf(s->err, sizeof(s->err), "%s", ctl_redis_error(s->r));
		batch_destroy(b);
		return rc == -ENOMEM ? -ENOMEM : -EIO;
	}
	s->invalid_untold -= s->invalid_pending;
	s->invalid_pending = 0;
	b->next = NULL;
	if (s->fly_tail)
		s->fly_tail->next = b;
	else
		s->fly_head = b;
	s->fly_tail = b;
	s->nfly++;
	if (s->nfly >= s->conf.pipeline)
		return drain(s);
	return 0;
}

static int
put(struct batch *b, const char *p, size_t n)
{
	if (b->blen + n + 1 > b->bcap) {
		size_t cap = b->bcap ? b->bcap : 256;
		char *nb;

		while (cap < b->blen + n + 1)
			cap *= 2;
		nb = realloc(b->buf, cap);
		if (nb == NULL)
			return -ENOMEM;
		b->buf = nb;
		b->bcap = cap;
	}
	memcpy(b->buf + b->blen, p, n);
	b->buf[b->blen + n] = '\0';
	b->blen += n + 1;
	return 0;
}

void
ctl_submit_count_invalid(struct ctl_submit *s)
{
	s->st.records++;
	s->st.invalid++;
	s->invalid_pending++;
	s->invalid_untold++;
}

int
ctl_submit_add(struct ctl_submit *s, const struct ctl_input_rec *rec)
{
	char addr[320], msg[600];
	char *entry = NULL;
	struct batch *b;
	struct item *it;
	size_t b0;
	int rc;

	rc = ctl_submit_check(s->t, rec, addr, sizeof(addr), &entry, msg, sizeof(msg));
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0) {
		ctl_submit_count_invalid(s);
		if (s->conf.on_invalid)
			s->conf.on_invalid(s->conf.user, rec->line, msg);
		return 0;
	}
	s->st.records++;
	{
		/* batches by A-label domain: the name the scheduler looks up */
		char alabel[256];
		const char *dom = strrchr(addr, '@') + 1;

		if (ctl_idn_domain(dom, alabel, sizeof(alabel), NULL, 0) == 0)
			dom = alabel;
		b = batch_get(s, dom, fnv1a(dom));
	}
	if (b == NULL) {
		free(entry);
		return -ENOMEM;
	}
	if (b->n == b->itcap) {
		unsigned nc = b->itcap ? b->itcap * 2 : 4;
		struct item *ni;

		if (nc > s->conf.batch_size)
			nc = s->conf.batch_size;
		ni = realloc(b->it, nc * sizeof(*ni));
		if (ni == NULL) {
			free(entry);
			return -ENOMEM;
		}
		b->it = ni;
		b->itcap = nc;
	}
	b0 = b->blen;
	it = &b->it[b->n];
	it->line = rec->line;
	it->aoff = b->blen;
	it->alen = strlen(addr);
	if (put(b, addr, it->alen) < 0) {
		free(entry);
		return -ENOMEM;
	}
	it->eoff = b->blen;
	it->elen = strlen(entry);
	rc = put(b, entry, it->elen);
	free(entry);
	if (rc < 0)
		return rc;
	b->n++;
	s->buffered++;
	s->buffered_bytes += b->blen - b0;
	if (b->n >= s->conf.batch_size || b->blen >= BATCH_BYTES_MAX) {
		rc = flush_batch(s, b);
		if (rc < 0)
			return rc;
	}
	/* too much waiting in partial batches: send the oldest early */
	if (s->buffered > s->conf.buffer_max || s->buffered_bytes > s->conf.buffer_bytes ||
	    s->nopen > OPEN_MAX) {
		while (s->old_head && (s->buffered > s->conf.buffer_max / 2 ||
		       s->buffered_bytes > s->conf.buffer_bytes / 2 || s->nopen > OPEN_MAX / 2)) {
			rc = flush_batch(s, s->old_head);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

int
ctl_submit_end(struct ctl_submit *s)
{
	int rc;

	while (s->old_head) {
		rc = flush_batch(s, s->old_head);
		if (rc < 0)
			return rc;
	}
	return drain(s);
}

long long
ctl_submit_take_invalid(struct ctl_submit *s)
{
	long long n = s->invalid_untold;

	s->invalid_untold = 0;
	s->invalid_pending = 0;
	return n;
}

void
ctl_submit_get_stats(const struct ctl_submit *s, struct ctl_submit_stats *st)
{
	*st = s->st;
}

const char *
ctl_submit_error(const struct ctl_submit *s)
{
	return s->err[0] ? s->err : "no error";
}
