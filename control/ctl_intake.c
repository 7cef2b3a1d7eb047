/*
 * Intake: which jobs streams a scheduler reads, how much of each, and in
 * what order.
 *
 * Every campaign has its own stream, NS campaign:<id>:jobs, named in the
 * set NS active while it may hold entries; the shared NS jobs is read as
 * well, for writers that use it (it counts as one normal-priority
 * campaign). A campaign's stream is read only while the campaign may
 * send: a paused campaign, or one outside its window, is simply not
 * read, so it holds nothing and stalls nobody. Its retries go back into
 * its own stream and wait there too. Batches read before a pause wait
 * in memory without counting against the intake (ctl_intake_room).
 *
 * The room for new batches is shared out one slot at a time: first a
 * priority, by smooth weighted round-robin over the priorities that have
 * a stream with entries (transactional 8, normal 4, bulk 1), then one of
 * that priority's streams in turn (round-robin, so equal campaigns get
 * equal shares). A priority with work therefore gets at least its weight's
 * share of new batches, never nothing: bulk keeps 1 slot in 13 while the
 * others are busy, all of them when they are not. The domain queues keep
 * the same order (q_push in ctl_sched.c), so a transactional recipient
 * goes out ahead of bulk ones queued for the same domain.
 *
 * A stream found empty is skipped for DRAIN_MS; when the scheduler has
 * nothing else to do it blocks on all readable streams at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_lua.h"
#include "ctl_sched_int.h"
#include "mp_log.h"

#define LOGW(...) MP_LOG(MP_LOG_WARN, "ctl_intake", __VA_ARGS__)
#define LOGI(...) MP_LOG(MP_LOG_INFO, "ctl_intake", __VA_ARGS__)
#define LOGD(...) MP_LOG(MP_LOG_DEBUG, "ctl_intake", __VA_ARGS__)

#define SRCS_EVERY_MS 250	/* NS active re-read: how soon a new campaign is seen */
#define DRAIN_MS 250		/* an empty stream's rest from non-blocking reads */
#define BLOCK_STREAMS 256	/* streams one blocking read waits on */
#define HELD_CAP 4		/* held batches at most this × max_batches */

static const int prio_weight[CTL_PRIO_LAST] = { 8, 4, 1 };

static struct ctl_redis_script gc_lua = { .src = ctl_lua_source_gc };

static struct ssrc *
src_find(struct ctl_sched *s, const char *cid)
{
	for (struct ssrc *q = s->srcs; q != NULL; q = q->next) {
		if (strcmp(q->cid, cid) == 0)
			return q;
	}
	return NULL;
}

static struct ssrc *
src_add(struct ctl_sched *s, const char *cid)
{
	struct ssrc *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	snprintf(q->cid, sizeof(q->cid), "%s", cid);
	if (cid[0] == '\0')
		snprintf(q->key, sizeof(q->key), "%s" CTL_K_JOBS, s->ns);
	else
		snprintf(q->key, sizeof(q->key), "%s" CTL_K_CJOBS, s->ns, cid);
	q->listed = 1;
	q->next = s->srcs;
	s->srcs = q;
	s->nsrcs++;
	return q;
}

static void
src_free(struct ctl_sched *s, struct ssrc *q)
{
	for (struct ssrc **pp = &s->srcs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	}
	for (int p = 0; p < CTL_PRIO_LAST; p++) {
		if (s->prio_rr[p] == q)
			s->prio_rr[p] = NULL;
	}
	if (q->camp != NULL) {
		q->camp->refs--;
		q->camp->used_mono = ctl_mono_ms();
	}
	s->nsrcs--;
	free(q);
}

/* The consumer group on the stream (created at ID 0 when missing). A
 * stream that is not there is not made: it expired with its campaign
 * (lib_retain.lua) or has had no entry yet; either way there is nothing
 * to read, and source_gc.lua retires a gone campaign's id. */
static int
src_group(struct ctl_sched *s, struct ssrc *q)
{
	redisReply *r;

	if (q == s->src_shared)
		return s->group_ok;	/* ctl_rc_ready() keeps that one */
	if (q->group_ok)
		return 1;
	r = CTL_RC_CMD(s, "XGROUP CREATE %s %s 0", q->key, s->group);
	if (r == NULL) {
		ctl_rc_failed(s, "xgroup");
		return 0;
	}
	if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "requires the key to exist") != NULL)
		LOGD("event=stream_absent stream=%s", q->key);
	else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
		LOGW("event=xgroup_failed stream=%s err=\"%s\"", q->key, r->str);
	else
		q->group_ok = 1;
	freeReplyObject(r);
	return q->group_ok;
}

/* Learn the campaigns of NS active (at most every SRCS_EVERY_MS unless
 * @p force). Streams no longer listed go once nothing of them is held. */
static void
srcs_refresh(struct ctl_sched *s, int force)
{
	uint64_t now = ctl_sched_now(s);
	struct ssrc *q, *next;
	redisReply *r;

	if (s->src_shared == NULL && (s->src_shared = src_add(s, "")) == NULL)
		return;
	if (!force && s->srcs_at != 0 && now >= s->srcs_at && now - s->srcs_at < SRCS_EVERY_MS)
		return;
	r = CTL_RC_CMD(s, "SMEMBERS %s", s->k_active);
	if (r == NULL) {
		ctl_rc_failed(s, "smembers");
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		return;
	}
	s->srcs_at = now ? now : 1;
	for (q = s->srcs; q != NULL; q = q->next)
		q->listed = q == s->src_shared;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *m = r->element[i];

		if (m->type != REDIS_REPLY_STRING || m->len == 0 || m->len >= CTL_CAMP_ID_MAX ||
		    memchr(m->str, '\0', m->len) != NULL)
			continue;
		q = src_find(s, m->str);
		if (q == NULL)
			q = src_add(s, m->str);
		if (q != NULL)
			q->listed = 1;
	}
	freeReplyObject(r);
	for (q = s->srcs; q != NULL; q = next) {
		next = q->next;
		if (!q->listed && q->held == 0)
			src_free(s, q);
	}
}

/* May the scheduler read this stream now? Not while its campaign is
 * paused or outside its window; a campaign that is gone or cancelled is
 * read (its entries are dead-lettered or cancelled). */
static int
src_eligible(struct ctl_sched *s, struct ssrc *q, uint64_t now)
{
	int err;

	if (q == s->src_shared)
		return 1;
	if (!q->listed)
		return 0;
	if (q->camp == NULL) {
		q->camp = ctl_camp_get(s, q->cid, &err);
		if (q->camp == NULL)
			return err == -ENOENT;
		q->camp->refs++;
	}
	if (ctl_camp_refresh(s, q->camp) < 0)
		return 0;
	switch (q->camp->state) {
	case SC_PAUSED:
		return 0;
	case SC_CANCELLED:
	case SC_MISSING:
	case SC_DONE:
		return 1;
	default:
		return ctl_camp_sendable(s, q->camp, now);
	}
}

static enum ctl_prio
src_prio(const struct ctl_sched *s, const struct ssrc *q)
{
	if (q == s->src_shared || q->camp == NULL || q->camp->prio >= CTL_PRIO_LAST)
		return CTL_PRIO_NORMAL;
	return (enum ctl_prio)q->camp->prio;
}

/* A held batch that can go on: not one waiting on a paused or
 * out-of-window campaign (those wait without taking the intake's room). */
static int
batch_counts(struct ctl_sched *s, const struct sbatch *b, uint64_t now)
{
	const struct scamp *c = b->camp;

	if (b->admitted || b->acking || c == NULL || c->cc == NULL)
		return 1;
	return c->state == SC_CANCELLED || ctl_camp_sendable(s, (struct scamp *)c, now);
}

unsigned
ctl_intake_room(struct ctl_sched *s)
{
	uint64_t now = ctl_sched_now(s);
	unsigned going = 0;

	if (s->nbatches >= HELD_CAP * s->conf.max_batches)
		return 0;
	for (const struct sbatch *b = s->batches; b != NULL; b = b->next)
		going += batch_counts(s, b, now);
	return going < s->conf.max_batches ? s->conf.max_batches - going : 0;
}

int
ctl_intake_ready(struct ctl_sched *s)
{
	return ctl_intake_room(s) > 0;
}

/* XREADGROUP on one stream from @p from (">" or an id, then advanced).
 * @return entries read, or -EIO */
static int
src_read(struct ctl_sched *s, struct ssrc *q, unsigned count, char *from, size_t fromlen)
{
	redisReply *r;
	int n = 0;

	if (count == 0 || !ctl_rc_ready(s) || !src_group(s, q))
		return 0;
	r = ctl_redis_cmd(s->rc, "XREADGROUP GROUP %s %s COUNT %u STREAMS %s %s",
		s->group, s->consumer, count, q->key, from);
	if (r == NULL) {
		ctl_rc_failed(s, "xreadgroup");
		return -EIO;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		LOGW("event=xreadgroup_error stream=%s err=\"%s\"", q->key, r->str);
		if (strncmp(r->str, "NOGROUP", 7) == 0) {
			q->group_ok = 0;
			if (q == s->src_shared)
				s->group_ok = 0;
		}
		freeReplyObject(r);
		return -EIO;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
		const redisReply *entries = r->element[0]->element[1];

		n = (int)entries->elements;
		ctl_take_entries(s, q, entries, 0);
		if (n > 0 && strcmp(from, ">") != 0) {
			const redisReply *last = entries->element[n - 1];

			if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
			    last->element[0]->type == REDIS_REPLY_STRING)
				snprintf(from, fromlen, "%s", last->element[0]->str);
		}
	}
	freeReplyObject(r);
	return n;
}

/* Not read empty lately (scheduler clock; one stepping back ends the rest). */
static int
drain_over(const struct ssrc *q, uint64_t now)
{
	return q->drained_at == 0 || now < q->drained_at || now - q->drained_at >= DRAIN_MS;
}

/* Share @p room slots among the eligible streams that are not drained. */
static void
share_out(struct ctl_sched *s, unsigned room, uint64_t now)
{
	for (unsigned k = 0; k < room; k++) {
		int avail[CTL_PRIO_LAST] = { 0 }, total = 0, best = -1;
		struct ssrc *q, *pick = NULL;

		for (q = s->srcs; q != NULL; q = q->next) {
			if (q->eligible && drain_over(q, now))
				avail[src_prio(s, q)] = 1;
		}
		for (int p = 0; p < CTL_PRIO_LAST; p++) {
			if (!avail[p])
				continue;
			s->prio_cw[p] += prio_weight[p];
			total += prio_weight[p];
			if (best < 0 || s->prio_cw[p] > s->prio_cw[best])
				best = p;
		}
		if (best < 0)
			return;
		s->prio_cw[best] -= total;
		/* the next stream of that priority after the last one served */
		q = s->prio_rr[best] != NULL ? s->prio_rr[best]->next : NULL;
		for (int lap = 0; lap < 2 && pick == NULL; lap++, q = s->srcs) {
			for (; q != NULL; q = q->next) {
				if (q->eligible && src_prio(s, q) == (enum ctl_prio)best &&
				    drain_over(q, now)) {
					pick = q;
					break;
				}
			}
		}
		if (pick == NULL)
			return;
		pick->want++;
		s->prio_rr[best] = pick;
	}
}

/* Nothing else to do: wait up to @p block ms on every readable stream
 * at once, one entry from each at most. @return entries read, or -EIO */
static int
read_blocking(struct ctl_sched *s, unsigned block)
{
	const char *argv[8 + 2 * BLOCK_STREAMS];
	struct ssrc *qs[BLOCK_STREAMS];
	char blk[16];
	unsigned k = 0;
	redisReply *r;
	int n = 0;

	for (struct ssrc *q = s->srcs; q != NULL && k < BLOCK_STREAMS; q = q->next) {
		if (q->eligible && src_group(s, q))
			qs[k++] = q;
	}
	if (k == 0)
		return 0;
	snprintf(blk, sizeof(blk), "%u", block);
	argv[0] = "XREADGROUP";
	argv[1] = "GROUP";
	argv[2] = s->group;
	argv[3] = s->consumer;
	argv[4] = "COUNT";
	argv[5] = "1";
	argv[6] = "BLOCK";
	argv[7] = blk;
	argv[8] = "STREAMS";
	for (unsigned i = 0; i < k; i++) {
		argv[9 + i] = qs[i]->key;
		argv[9 + k + i] = ">";
	}
	r = ctl_redis_cmdv(s->rc, 9 + 2 * (int)k, argv, NULL);
	if (r == NULL) {
		ctl_rc_failed(s, "xreadgroup");
		return -EIO;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		LOGW("event=xreadgroup_error err=\"%s\"", r->str);
		if (strncmp(r->str, "NOGROUP", 7) == 0) {
			for (unsigned i = 0; i < k; i++)
				qs[i]->group_ok = 0;
			s->group_ok = 0;
		}
		freeReplyObject(r);
		return -EIO;
	}
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *e = r->element[i];

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		for (unsigned j = 0; j < k; j++) {
			if (strcmp(qs[j]->key, e->element[0]->str) == 0) {
				qs[j]->drained_at = 0;
				n += (int)e->element[1]->elements;
				ctl_take_entries(s, qs[j], e->element[1], 0);
				break;
			}
		}
	}
	freeReplyObject(r);
	return n;
}

int
ctl_intake_read(struct ctl_sched *s, unsigned block)
{
	unsigned room = ctl_intake_room(s);
	uint64_t now = ctl_sched_now(s);
	int n = 0, rc;

	if (room == 0 || !ctl_rc_ready(s))
		return 0;
	srcs_refresh(s, s->srcs_stale);
	s->srcs_stale = 0;
	for (struct ssrc *q = s->srcs; q != NULL; q = q->next) {
		q->want = 0;
		q->eligible = (uint8_t)src_eligible(s, q, now);
	}
	share_out(s, room, now);
	for (struct ssrc *q = s->srcs; q != NULL; q = q->next) {
		char gt[2] = ">";

		if (q->want == 0)
			continue;
		rc = src_read(s, q, q->want, gt, sizeof(gt));
		if (rc < 0)
			return n > 0 ? n : rc;
		if ((unsigned)rc < q->want)
			q->drained_at = now ? now : 1;
		else
			q->drained_at = 0;
		n += rc;
	}
	if (n == 0 && block > 0)
		return read_blocking(s, block);
	return n;
}

/* Our own pending entries from an earlier life of this consumer name, in
 * every stream (what does not fit now is claimed back later). */
void
ctl_intake_own_pending(struct ctl_sched *s)
{
	srcs_refresh(s, 1);
	for (struct ssrc *q = s->srcs; q != NULL; q = q->next) {
		char from[48] = "0";

		for (int i = 0; i < 1000 && s->nbatches < s->conf.max_batches; i++) {
			if (src_read(s, q, s->conf.read_count, from, sizeof(from)) <= 0)
				break;
		}
	}
}

/*
 * Entries idle longer than min-idle in another consumer's hands (a dead or
 * cut-off daemon's), from the streams we may read now.
 * @return 1 when it stopped for want of room: the caller claims again as
 * soon as room opens, before reading new entries, so a daemon that is
 * always full still takes over stale entries (they are the oldest work).
 */
int
ctl_intake_claim(struct ctl_sched *s)
{
	uint64_t now = ctl_sched_now(s);

	if (ctl_intake_room(s) == 0)
		return 1;
	srcs_refresh(s, 0);
	for (struct ssrc *q = s->srcs; q != NULL; q = q->next) {
		char cursor[48] = "0-0";

		if (!src_eligible(s, q, now) || !src_group(s, q))
			continue;
		for (int i = 0; i < 100; i++) {
			unsigned room = ctl_intake_room(s);
			redisReply *r;

			if (room == 0)
				return 1;
			r = CTL_RC_CMD(s, "XAUTOCLAIM %s %s %s %" PRIu64 " %s COUNT %u",
				q->key, s->group, s->consumer, s->conf.min_idle_ms, cursor,
				room < s->conf.read_count ? room : s->conf.read_count);
			if (r == NULL) {
				ctl_rc_failed(s, "xautoclaim");
				return 0;
			}
			if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
			    r->element[0]->type != REDIS_REPLY_STRING) {
				if (r->type == REDIS_REPLY_ERROR)
					LOGW("event=xautoclaim_error stream=%s err=\"%s\"", q->key, r->str);
				freeReplyObject(r);
				break;
			}
			snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
			if (r->element[1]->elements > 0)
				LOGI("event=claimed n=%zu stream=%s consumer=%s",
					r->element[1]->elements, q->key, s->consumer);
			ctl_take_entries(s, q, r->element[1], 1);
			freeReplyObject(r);
			if (strcmp(cursor, "0-0") == 0)
				break;
		}
	}
	return 0;
}

/* @return 1 when some stream has entries read and not acknowledged (by
 * anyone), 0 when none has, -EIO */
int
ctl_intake_pending(struct ctl_sched *s)
{
	srcs_refresh(s, 0);
	for (struct ssrc *q = s->srcs; q != NULL; q = q->next) {
		redisReply *p;
		int busy;

		if (!src_group(s, q))
			continue;
		p = CTL_RC_CMD(s, "XPENDING %s %s", q->key, s->group);
		if (p == NULL) {
			ctl_rc_failed(s, "xpending");
			return -EIO;
		}
		busy = !(p->type == REDIS_REPLY_ARRAY && p->elements >= 1 &&
			p->element[0]->type == REDIS_REPLY_INTEGER && p->element[0]->integer == 0);
		freeReplyObject(p);
		if (busy)
			return 1;
	}
	return 0;
}

/* A done (or vanished) campaign whose stream is empty leaves NS active
 * (source_gc.lua decides, so an append racing with it is not lost). */
void
ctl_intake_gc(struct ctl_sched *s)
{
	struct ssrc *q, *next;

	for (q = s->srcs; q != NULL; q = next) {
		char kc[CTL_KEY_MAX];
		const char *argv[4];
		redisReply *r;

		next = q->next;
		if (q == s->src_shared || !q->listed || q->held != 0 || q->drained_at == 0 ||
		    (q->camp != NULL && q->camp->state != SC_DONE && q->camp->state != SC_MISSING) ||
		    !ctl_rc_ready(s))
			continue;
		snprintf(kc, sizeof(kc), "%s" CTL_K_CAMPAIGN, s->ns, q->cid);
		argv[0] = s->k_active;
		argv[1] = q->key;
		argv[2] = kc;
		argv[3] = q->cid;
		r = ctl_redis_eval(s->rc, &gc_lua, 3, 4, argv, NULL);
		if (r == NULL) {
			ctl_rc_failed(s, "source_gc");
			return;
		}
		if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
			LOGI("event=stream_retired campaign=%s", q->cid);
			src_free(s, q);
		}
		freeReplyObject(r);
	}
}

void
ctl_intake_free(struct ctl_sched *s)
{
	while (s->srcs != NULL)
		src_free(s, s->srcs);
	s->src_shared = NULL;
}
