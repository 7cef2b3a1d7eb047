/*
 * DKIM keys per signing domain and the signer thread pool (ctl_dkim.h).
 *
 * One pool queue (mutex + condition variable) feeds the threads; each
 * owner's ctl_signq takes results back under its own mutex, with an
 * atomic count of waiting results so an idle poll costs one load. A job
 * crosses threads twice, each time under a lock: owner -> pool at submit,
 * thread -> owner's queue when signed. Its reference count and release
 * flag are touched by the owner's thread only (the thread reads the flag
 * to skip work nobody waits for).
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "ctl_dkim.h"
#include "ctl_keys.h"
#include "ctl_redis.h"
#include "mp_log.h"

#define LOGW(...) MP_LOG(MP_LOG_WARN, "ctl_dkim", __VA_ARGS__)

#define DKIM_THREADS_MAX 64

struct dkey {
	char domain[256];
	char selector[64];
	struct msg_dkim_key *key;
};

struct ctl_sign_job {
	struct ctl_sign_job *next;
	struct ctl_signq *q;		/* NULL: ctl_sign_now */
	void (*done)(void *arg, struct ctl_sign_job *j);
	void *arg;
	struct msg_dkim_prepared *p;	/* freed by the thread once signed */
	char *sig;			/* the header line(s), exact size */
	ssize_t len;			/* >= 0, or -EIO with why */
	char why[160];
	int released;			/* atomic: the owner let go */
	uint8_t refs;			/* owner's thread only */
	uint8_t finished;		/* owner's thread only: result taken */
};

struct ctl_signq {
	struct ctl_dkim *d;
	pthread_mutex_t mu;
	struct ctl_sign_job *head, *tail; /* signed, not yet polled */
	unsigned ndone;			/* atomic: jobs in head..tail */
	unsigned inflight;		/* owner's thread only */
	int efd;
};

struct ctl_dkim {
	struct dkey *keys;
	size_t nkeys;
	char **domains;			/* distinct, lower case */
	size_t ndomains;
	enum ctl_dkim_mode mode;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ctl_sign_job *head, *tail; /* waiting for a thread */
	unsigned queued;
	int stop;
	pthread_t th[DKIM_THREADS_MAX];
	unsigned nth;
	unsigned long long signed_ok, sign_failed, skipped;
	unsigned long long cpu_ns;	/* the threads' CPU time signing */
};

static const char *const mode_names[] = { "optional", "required" };

const char *
ctl_dkim_mode_name(enum ctl_dkim_mode m)
{
	return (unsigned)m < CTL_DKIM_MODE_LAST ? mode_names[m] : "?";
}

int
ctl_dkim_mode_parse(const char *s, enum ctl_dkim_mode *out)
{
	for (int i = 0; i < CTL_DKIM_MODE_LAST; i++)
		if (strcasecmp(s, mode_names[i]) == 0) {
			*out = (enum ctl_dkim_mode)i;
			return 0;
		}
	return -EINVAL;
}

struct ctl_dkim *
ctl_dkim_new(void)
{
	struct ctl_dkim *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	return d;
}

static void
job_free(struct ctl_sign_job *j)
{
	free(j->p);
	free(j->sig);
	free(j);
}

void
ctl_dkim_free(struct ctl_dkim *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = 1;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	for (unsigned i = 0; i < d->nth; i++)
		pthread_join(d->th[i], NULL);
	while (d->head != NULL) {
		struct ctl_sign_job *j = d->head;

		d->head = j->next;
		job_free(j);
	}
	for (size_t i = 0; i < d->nkeys; i++)
		msg_dkim_key_free(d->keys[i].key);
	for (size_t i = 0; i < d->ndomains; i++)
		free(d->domains[i]);
	free(d->domains);
	free(d->keys);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

int
ctl_dkim_add_key(struct ctl_dkim *d, const char *domain, const char *selector,
	const char *path, char *err, size_t errlen)
{
	char dom[256];
	size_t same = 0, i, n;
	struct dkey *k;

	n = strlen(domain);
	if (n == 0 || n >= sizeof(dom) || strlen(selector) >= sizeof(k->selector)) {
		mp_errf(err, errlen, "dkim key %s: domain or selector too long or empty", path);
		return -EINVAL;
	}
	for (i = 0; i <= n; i++)
		dom[i] = (char)tolower((unsigned char)domain[i]);
	for (i = 0; i < d->nkeys; i++) {
		if (strcmp(d->keys[i].domain, dom) != 0)
			continue;
		if (strcasecmp(d->keys[i].selector, selector) == 0) {
			mp_errf(err, errlen, "dkim key %s: selector %s of %s is given twice",
				path, selector, dom);
			return -EINVAL;
		}
		same++;
	}
	if (same >= MSG_DKIM_MAX_SIGS) {
		mp_errf(err, errlen, "dkim key %s: %s has more than %d keys", path, dom,
			MSG_DKIM_MAX_SIGS);
		return -EINVAL;
	}
	k = realloc(d->keys, (d->nkeys + 1) * sizeof(*k));
	if (k == NULL)
		goto nomem;
	d->keys = k;
	k = &d->keys[d->nkeys];
	memset(k, 0, sizeof(*k));
	k->key = msg_dkim_key_load(path, dom, selector, err, errlen);
	if (k->key == NULL)
		return -EINVAL;
	snprintf(k->domain, sizeof(k->domain), "%s", dom);
	snprintf(k->selector, sizeof(k->selector), "%s", selector);
	d->nkeys++;
	if (same == 0) {
		char **v = realloc(d->domains, (d->ndomains + 1) * sizeof(*v));

		if (v == NULL)
			goto nomem;
		d->domains = v;
		if ((v[d->ndomains] = strdup(dom)) == NULL)
			goto nomem;
		d->ndomains++;
	}
	return 0;
nomem:
	mp_errf(err, errlen, "dkim key %s: out of memory", path);
	return -ENOMEM;
}

int
ctl_dkim_add_keys(struct ctl_dkim *d, const char *domain, const char *spec,
	char *err, size_t errlen)
{
	char buf[4096], *save = NULL, *item;
	int n = 0, rc;

	if (strlen(spec) >= sizeof(buf)) {
		mp_errf(err, errlen, "key list too long");
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	for (item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		char sel[64], path[2048], tail;

		if (sscanf(item, " %63s %2047s %c", sel, path, &tail) != 2) {
			mp_errf(err, errlen, "\"%.100s\": expected SELECTOR FILE", item);
			return -EINVAL;
		}
		if ((rc = ctl_dkim_add_key(d, domain, sel, path, err, errlen)) < 0)
			return rc;
		n++;
	}
	if (n == 0) {
		mp_errf(err, errlen, "no key given (SELECTOR FILE[, SELECTOR FILE])");
		return -EINVAL;
	}
	return 0;
}

size_t
ctl_dkim_keys(const struct ctl_dkim *d, const char *domain,
	const struct msg_dkim_key *out[MSG_DKIM_MAX_SIGS])
{
	size_t n = 0;

	if (d == NULL || domain == NULL)
		return 0;
	for (size_t i = 0; i < d->nkeys && n < MSG_DKIM_MAX_SIGS; i++)
		if (strcasecmp(d->keys[i].domain, domain) == 0)
			out[n++] = d->keys[i].key;
	return n;
}

size_t
ctl_dkim_ndomains(const struct ctl_dkim *d)
{
	return d != NULL ? d->ndomains : 0;
}

const char *
ctl_dkim_domain(const struct ctl_dkim *d, size_t i)
{
	return i < d->ndomains ? d->domains[i] : NULL;
}

void
ctl_dkim_set_mode(struct ctl_dkim *d, enum ctl_dkim_mode m)
{
	d->mode = m;
}

enum ctl_dkim_mode
ctl_dkim_mode(const struct ctl_dkim *d)
{
	return d != NULL ? d->mode : CTL_DKIM_OPTIONAL;
}

/* --- signing --- */

static void
job_sign(struct ctl_sign_job *j)
{
	char out[MSG_DKIM_OUT_MAX];
	ssize_t n;

	n = msg_dkim_sign_prepared(j->p, out, sizeof(out), j->why, sizeof(j->why));
	if (n >= 0 && (j->sig = malloc((size_t)n + 1)) == NULL) {
		n = -EIO;
		snprintf(j->why, sizeof(j->why), "out of memory");
	}
	if (n >= 0)
		memcpy(j->sig, out, (size_t)n + 1);
	else if (j->why[0] == '\0')
		snprintf(j->why, sizeof(j->why), "signing failed (%zd)", n);
	j->len = n >= 0 ? n : -EIO;
	free(j->p);
	j->p = NULL;
}

static void *
signer_main(void *arg)
{
	struct ctl_dkim *d = arg;
	unsigned long long cpu = 0;

	for (;;) {
		struct ctl_sign_job *j;
		struct ctl_signq *q;
		unsigned was;
		int skip;

		pthread_mutex_lock(&d->mu);
		while (d->head == NULL && !d->stop)
			pthread_cond_wait(&d->cv, &d->mu);
		if (d->head == NULL) {
			pthread_mutex_unlock(&d->mu);
			return NULL;
		}
		j = d->head;
		d->head = j->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->queued--;
		pthread_mutex_unlock(&d->mu);

		skip = __atomic_load_n(&j->released, __ATOMIC_ACQUIRE);
		if (!skip) {
			struct timespec a, b;

			clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
			job_sign(j);
			clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
			cpu += (unsigned long long)(b.tv_sec - a.tv_sec) * 1000000000ull +
				(unsigned long long)b.tv_nsec - (unsigned long long)a.tv_nsec;
		}
		pthread_mutex_lock(&d->mu);
		d->cpu_ns += cpu;
		cpu = 0;
		if (skip)
			d->skipped++;
		else if (j->len >= 0)
			d->signed_ok++;
		else
			d->sign_failed++;
		pthread_mutex_unlock(&d->mu);

		q = j->q;
		j->next = NULL;
		pthread_mutex_lock(&q->mu);
		if (q->tail != NULL)
			q->tail->next = j;
		else
			q->head = j;
		q->tail = j;
		was = __atomic_fetch_add(&q->ndone, 1, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&q->mu);
		/* one wake-up per batch: the owner takes every result at once
		 * (it reads the eventfd before it takes the list) */
		if (was == 0 && q->efd >= 0) {
			uint64_t one = 1;

			if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
				LOGW("event=eventfd_write_failed errno=%d", errno);
		}
	}
}

/* "0,2-3" into @p set. @return 0 or -EINVAL. */
static int
cpus_parse(const char *s, cpu_set_t *set)
{
	CPU_ZERO(set);
	while (*s != '\0') {
		char *end;
		unsigned long a = strtoul(s, &end, 10), b = a;

		if (end == s)
			return -EINVAL;
		s = end;
		if (*s == '-') {
			b = strtoul(s + 1, &end, 10);
			if (end == s + 1 || b < a)
				return -EINVAL;
			s = end;
		}
		if (b >= CPU_SETSIZE)
			return -EINVAL;
		for (unsigned long c = a; c <= b; c++)
			CPU_SET(c, set);
		if (*s == ',')
			s++;
		else if (*s != '\0')
			return -EINVAL;
	}
	return 0;
}

int
ctl_dkim_start(struct ctl_dkim *d, unsigned n, const char *cpus, char *err, size_t errlen)
{
	cpu_set_t set;
	int pin = cpus != NULL && cpus[0] != '\0';

	if (d->nth != 0) {
		mp_errf(err, errlen, "DKIM signer threads already started");
		return -EALREADY;
	}
	if (n == 0 || n > DKIM_THREADS_MAX) {
		mp_errf(err, errlen, "DKIM signer threads: %u is not in 1..%d", n, DKIM_THREADS_MAX);
		return -EINVAL;
	}
	if (pin) {
		if (cpus_parse(cpus, &set) < 0) {
			mp_errf(err, errlen, "DKIM signer CPUs \"%s\": not a CPU list like 0,2-3", cpus);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		int rc = pthread_create(&d->th[i], NULL, signer_main, d);

		if (rc != 0) {
			mp_errf(err, errlen, "DKIM signer thread: %s", strerror(rc));
			return -rc;
		}
		d->nth++;
		/* (the CPUs of this thread's caller do not matter: a DPDK main
		 * lcore is pinned to one, the signers go elsewhere) */
		if (pin && (rc = pthread_setaffinity_np(d->th[i], sizeof(set), &set)) != 0) {
			mp_errf(err, errlen, "DKIM signer CPUs \"%s\": %s", cpus,
				rc == EINVAL ? "none of them is usable here" : strerror(rc));
			return -EINVAL;
		}
		pthread_setname_np(d->th[i], "mp-dkim");
	}
	return 0;
}

void
ctl_dkim_stats(struct ctl_dkim *d, struct ctl_dkim_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mu);
	st->signed_ok = d->signed_ok;
	st->sign_failed = d->sign_failed;
	st->skipped = d->skipped;
	st->cpu_ns = d->cpu_ns;
	st->queued = d->queued;
	st->threads = d->nth;
	pthread_mutex_unlock(&d->mu);
}

/* --- per-owner queues --- */

struct ctl_signq *
ctl_signq_new(struct ctl_dkim *d, int want_fd)
{
	struct ctl_signq *q;

	if (d == NULL || d->nth == 0)
		return NULL;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return NULL;
	q->d = d;
	q->efd = -1;
	if (want_fd && (q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		free(q);
		return NULL;
	}
	pthread_mutex_init(&q->mu, NULL);
	return q;
}

int
ctl_signq_fd(const struct ctl_signq *q)
{
	return q != NULL ? q->efd : -1;
}

unsigned
ctl_signq_inflight(const struct ctl_signq *q)
{
	return q != NULL ? q->inflight : 0;
}

struct ctl_sign_job *
ctl_signq_submit(struct ctl_signq *q, const struct msg_dkim_prepared *p,
	void (*done)(void *arg, struct ctl_sign_job *j), void *arg)
{
	struct ctl_dkim *d = q->d;
	struct ctl_sign_job *j = calloc(1, sizeof(*j));

	if (j == NULL || (j->p = malloc(sizeof(*p))) == NULL) {
		free(j);
		return NULL;
	}
	*j->p = *p;
	j->q = q;
	j->done = done;
	j->arg = arg;
	j->refs = 2;	/* the owner's, and the one that comes back through q */
	q->inflight++;
	pthread_mutex_lock(&d->mu);
	if (d->tail != NULL)
		d->tail->next = j;
	else
		d->head = j;
	d->tail = j;
	d->queued++;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	return j;
}

static void
job_unref(struct ctl_sign_job *j)
{
	if (--j->refs == 0)
		job_free(j);
}

/* Take every result from q; run callbacks unless @p quiet. */
static unsigned
signq_take(struct ctl_signq *q, int quiet)
{
	struct ctl_sign_job *j, *next;
	unsigned calls = 0;

	if (__atomic_load_n(&q->ndone, __ATOMIC_ACQUIRE) == 0)
		return 0;
	if (q->efd >= 0) {
		uint64_t v;

		if (read(q->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			LOGW("event=eventfd_read_failed errno=%d", errno);
	}
	pthread_mutex_lock(&q->mu);
	j = q->head;
	q->head = q->tail = NULL;
	__atomic_store_n(&q->ndone, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&q->mu);
	for (; j != NULL; j = next) {
		next = j->next;
		q->inflight--;
		j->finished = 1;
		if (!quiet && !j->released && j->done != NULL) {
			j->done(j->arg, j);
			calls++;
		}
		job_unref(j);
	}
	return calls;
}

unsigned
ctl_signq_poll(struct ctl_signq *q)
{
	return q != NULL ? signq_take(q, 0) : 0;
}

unsigned
ctl_signq_free(struct ctl_signq *q, unsigned wait_ms)
{
	struct timespec ms = { 0, 1000000 };

	if (q == NULL)
		return 0;
	signq_take(q, 1);
	for (unsigned t = 0; q->inflight != 0 && t < wait_ms; t++) {
		nanosleep(&ms, NULL);
		signq_take(q, 1);
	}
	if (q->inflight != 0) {
		/* a thread still holds some: the queue must outlive them */
		LOGW("event=signq_leaked jobs=%u", q->inflight);
		return q->inflight;
	}
	if (q->efd >= 0)
		close(q->efd);
	pthread_mutex_destroy(&q->mu);
	free(q);
	return 0;
}

struct ctl_sign_job *
ctl_sign_now(const struct msg_dkim_prepared *p)
{
	struct ctl_sign_job *j = calloc(1, sizeof(*j));

	if (j == NULL || (j->p = malloc(sizeof(*p))) == NULL) {
		free(j);
		return NULL;
	}
	*j->p = *p;
	j->refs = 1;
	job_sign(j);
	j->finished = 1;
	return j;
}

ssize_t
ctl_sign_job_result(const struct ctl_sign_job *j, const char **sig, const char **why)
{
	if (!j->finished)
		return -EINPROGRESS;
	*sig = j->sig;
	*why = j->why;
	return j->len;
}

void
ctl_sign_job_release(struct ctl_sign_job *j)
{
	if (j == NULL)
		return;
	__atomic_store_n(&j->released, 1, __ATOMIC_RELEASE);
	job_unref(j);
}

/* --- NS dkim --- */

int
ctl_dkim_domain_ok(const char *s)
{
	size_t n = strlen(s), label = 0, labels = 1;

	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			labels++;
			continue;
		}
		if (!isalnum(c) && !(c == '-' && label != 0))
			return 0;
		if (++label > 63)
			return 0;
	}
	return labels >= 2 && s[n - 1] != '-';
}

int
ctl_dkim_publish(const struct ctl_dkim *d, struct ctl_redis *r, const char *by,
	int64_t now_ms, char *err, size_t errlen)
{
	char key[256], ts[24], *list;
	size_t len = 1;
	redisReply *rep;
	int rc = 0;

	for (size_t i = 0; i < d->ndomains; i++)
		len += strlen(d->domains[i]) + 1;
	list = calloc(1, len);
	if (list == NULL) {
		mp_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < d->ndomains; i++) {
		if (i != 0)
			strcat(list, " ");
		strcat(list, d->domains[i]);
	}
	snprintf(ts, sizeof(ts), "%lld", (long long)now_ms);
	ctl_redis_key(r, key, sizeof(key), CTL_K_DKIM);
	rep = ctl_redis_cmd(r, "HSET %s mode %s domains %s updated_ms %s by %s", key,
		ctl_dkim_mode_name(d->mode), list, ts, by);
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		mp_errf(err, errlen, "publishing [dkim] to %s: %s", key,
			rep != NULL ? rep->str : ctl_redis_error(r));
		rc = -EIO;
	}
	if (rep != NULL)
		freeReplyObject(rep);
	free(list);
	return rc;
}

void
ctl_dkim_publish_to(const struct ctl_dkim *d, const char *url, const char *ns, const char *by)
{
	struct ctl_redis_conf rc = { .url = url, .ns = ns };
	struct ctl_redis *r;
	char err[512];

	r = ctl_redis_open(&rc, err, sizeof(err));
	if (r == NULL || ctl_dkim_publish(d, r, by, ctl_now_ms(), err, sizeof(err)) < 0)
		LOGW("event=dkim_publish_failed reason=\"%s\"", err);
	ctl_redis_close(r);
}

int
ctl_dkim_submit_check(struct ctl_redis *r, const char *domain, char *msg, size_t msglen)
{
	const char *mode, *list;
	char key[256];
	redisReply *h;
	int rc = 1;

	ctl_redis_key(r, key, sizeof(key), CTL_K_DKIM);
	h = ctl_redis_cmd(r, "HGETALL %s", key);
	if (h == NULL || h->type != REDIS_REPLY_ARRAY) {
		mp_errf(msg, msglen, "reading %s: %s", key, h == NULL ? ctl_redis_error(r) :
			h->type == REDIS_REPLY_ERROR ? h->str : "unexpected reply");
		if (h != NULL)
			freeReplyObject(h);
		return -EIO;
	}
	mode = ctl_redis_hget(h, "mode");
	list = ctl_redis_hget(h, "domains");
	if (mode == NULL) {
		mp_errf(msg, msglen, "no daemon has published its DKIM keys (%s): whether "
			"d=%s is signed is decided when it is sent", key, domain);
		rc = 2;
	} else {
		size_t n = strlen(domain);
		const char *p = list != NULL ? list : "";

		for (; *p != '\0'; p += strcspn(p, " "), p += strspn(p, " ")) {
			if (strncasecmp(p, domain, n) == 0 && (p[n] == ' ' || p[n] == '\0')) {
				rc = 0;
				break;
			}
		}
		if (rc != 0 && strcmp(mode, "required") == 0) {
			mp_errf(msg, msglen, "DKIM is required ([dkim] mode) and no daemon has "
				"a key for d=%s (keys for: %s)", domain, list != NULL && list[0] ?
				list : "none");
			rc = -EPERM;
		} else if (rc != 0) {
			mp_errf(msg, msglen, "no daemon has a DKIM key for d=%s: the campaign "
				"goes out unsigned (Gmail and Yahoo refuse unsigned bulk mail)",
				domain);
		}
	}
	freeReplyObject(h);
	return rc;
}
