/*
 * A simulated link between two utcp stacks for the unit tests: segments
 * emitted by one side are copied (as the dp_ glue would copy them into an
 * mbuf), dropped with a seeded probability, delayed by a base delay plus a
 * random jitter (which reorders them) and handed to the other side's
 * utcp_input in delivery-time order. The virtual clock jumps to the next
 * delivery or timer, so seconds of protocol time cost milliseconds.
 */
#ifndef UTCP_SIM_H
#define UTCP_SIM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utcp.h"

struct sim_pkt {
	uint64_t at, order;
	int to;
	struct utcp_seg_in seg;
	uint8_t opts[UTCP_MAX_OPTLEN];
	uint8_t *data;
};

struct sim;
typedef void (*sim_app_fn)(struct sim *sim, int side, const struct utcp_event *ev);

struct sim_side {
	struct sim *sim;
	int idx;
};

struct sim {
	struct utcp_stack *st[2];
	struct sim_side side[2];
	struct sim_pkt *heap;
	size_t n, cap;
	uint64_t order, now, rng;
	uint32_t loss_ppm;		/* drop probability, parts per million */
	uint64_t delay_us, jitter_us;
	uint64_t sent[2], dropped[2];
	int (*filter)(struct sim *sim, int from, const struct utcp_seg_out *seg);
	sim_app_fn app;
	void *app_ctx;
	int blackhole[2];		/* drop everything sent by side i */
	void (*step)(struct sim *sim);	/* after each step's output */
};

static inline uint64_t
sim_rand(struct sim *s)
{
	/* xorshift64* */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 2685821657736338717ULL;
}

static inline int
sim_less(const struct sim_pkt *a, const struct sim_pkt *b)
{
	return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static inline void
sim_push(struct sim *s, struct sim_pkt *p)
{
	size_t i;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->heap = realloc(s->heap, s->cap * sizeof(*s->heap));
		if (s->heap == NULL)
			abort();
	}
	i = s->n++;
	while (i > 0 && sim_less(p, &s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = *p;
}

static inline void
sim_pop(struct sim *s, struct sim_pkt *out)
{
	struct sim_pkt last;
	size_t i = 0;

	*out = s->heap[0];
	last = s->heap[--s->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct sim_pkt *best = &last;

		if (l < s->n && sim_less(&s->heap[l], best)) {
			m = l;
			best = &s->heap[l];
		}
		if (r < s->n && sim_less(&s->heap[r], best))
			m = r;
		if (m == i)
			break;
		s->heap[i] = s->heap[m];
		i = m;
	}
	if (s->n > 0)
		s->heap[i] = last;
}

static inline int
sim_emit(void *ctx, const struct utcp_seg_out *o)
{
	struct sim_side *sd = ctx;
	struct sim *s = sd->sim;
	struct sim_pkt p;

	s->sent[sd->idx]++;
	if (s->filter != NULL && !s->filter(s, sd->idx, o)) {
		s->dropped[sd->idx]++;
		return 0;
	}
	if (s->blackhole[sd->idx] ||
	    (s->loss_ppm && sim_rand(s) % 1000000 < s->loss_ppm)) {
		s->dropped[sd->idx]++;
		return 0;
	}
	memset(&p, 0, sizeof(p));
	p.at = s->now + s->delay_us + (s->jitter_us ? sim_rand(s) % s->jitter_us : 0);
	p.order = s->order++;
	p.to = 1 - sd->idx;
	p.seg.saddr = o->saddr;
	p.seg.daddr = o->daddr;
	p.seg.sport = o->sport;
	p.seg.dport = o->dport;
	p.seg.seq = o->seq;
	p.seg.ack = o->ack;
	p.seg.flags = o->flags;
	p.seg.wnd = o->wnd;
	p.seg.optlen = o->optlen;
	memcpy(p.opts, o->opts, o->optlen);
	p.seg.len = o->len;
	if (o->len > 0) {
		p.data = malloc(o->len);
		if (p.data == NULL)
			abort();
		memcpy(p.data, o->iov[0].ptr, o->iov[0].len);
		if (o->iov[1].len)
			memcpy(p.data + o->iov[0].len, o->iov[1].ptr, o->iov[1].len);
	}
	sim_push(s, &p);
	return 0;
}

static inline void
sim_init(struct sim *s, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->rng = seed * 0x9E3779B97F4A7C15ULL + 1;
	s->delay_us = 1000;
	s->now = 1000000;
	for (int i = 0; i < 2; i++) {
		s->side[i].sim = s;
		s->side[i].idx = i;
	}
}

/* Fill the emit hooks of a configuration for side idx. */
static inline void
sim_conf(struct sim *s, int idx, struct utcp_conf *c)
{
	c->emit = sim_emit;
	c->ctx = &s->side[idx];
}

static inline void
sim_drain_events(struct sim *s)
{
	struct utcp_event ev[64];

	for (int i = 0; i < 2; i++) {
		int n;

		if (s->st[i] == NULL)
			continue;
		while ((n = utcp_events(s->st[i], ev, 64)) > 0)
			for (int k = 0; k < n; k++)
				if (s->app)
					s->app(s, i, &ev[k]);
	}
}

static inline void
sim_output(struct sim *s)
{
	for (int i = 0; i < 2; i++)
		if (s->st[i] != NULL)
			while (utcp_output(s->st[i], s->now, 4096) == 4096)
				;
}

/*
 * Run until done(s) is true, the virtual clock passes until_us, or
 * max_steps steps. @return 1 if done() became true.
 */
static inline int
sim_run(struct sim *s, int (*done)(struct sim *), uint64_t until_us, long max_steps)
{
	for (long step = 0; step < max_steps; step++) {
		uint64_t next = UINT64_MAX;

		sim_output(s);
		while (s->n > 0 && s->heap[0].at <= s->now) {
			struct sim_pkt p;

			sim_pop(s, &p);
			p.seg.opts = p.opts;
			p.seg.payload = p.data;
			if (s->st[p.to] != NULL)
				utcp_input(s->st[p.to], &p.seg, s->now);
			free(p.data);
		}
		for (int i = 0; i < 2; i++)
			if (s->st[i] != NULL)
				utcp_timers(s->st[i], s->now);
		sim_drain_events(s);
		sim_output(s);
		if (s->step != NULL)
			s->step(s);
		if (done != NULL && done(s))
			return 1;
		if (s->n > 0)
			next = s->heap[0].at;
		else
			for (int i = 0; i < 2; i++)
				if (s->st[i] != NULL) {
					uint64_t t = utcp_next_timer(s->st[i]);

					if (t < next)
						next = t;
				}
		if (next == UINT64_MAX || next > until_us)
			next = until_us;
		if (next <= s->now)
			next = s->now + 1;
		/* let timers due before the next delivery fire on time */
		if (next > s->now + 1000 && s->n > 0) {
			uint64_t t = UINT64_MAX;

			for (int i = 0; i < 2; i++)
				if (s->st[i] != NULL) {
					uint64_t x = utcp_next_timer(s->st[i]);

					if (x < t)
						t = x;
				}
			if (t > s->now && t < next)
				next = t;
		}
		if (s->now >= until_us)
			return done != NULL ? done(s) : 0;
		s->now = next;
	}
	return done != NULL ? done(s) : 0;
}

static inline void
sim_fini(struct sim *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->heap[i].data);
	free(s->heap);
	s->heap = NULL;
	s->n = 0;
}

#endif
