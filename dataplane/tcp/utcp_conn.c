/*
 * Connection table, pools, lifetime and the user-facing API.
 * utcp_stack_new() allocates every object the stack will ever use: the
 * connection objects, the send and receive buffers (fixed-size, attached to
 * a connection on first use and returned to the pool as soon as they are
 * empty, so an idle connection holds none), the TIME_WAIT records, the
 * 4-tuple hash tables and the event queue. The user calls utcp_connect,
 * utcp_send/recv/shutdown/close/abort and drains utcp_events(); protocol
 * work is in utcp_in.c (input), utcp_out.c (output) and utcp_timer.c.
 * A connection object is freed only once the user has released it
 * (utcp_close/utcp_abort) and the protocol is done with it; a connection
 * entering TIME_WAIT hands its 4-tuple to a small TIME_WAIT record.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mp_log.h"
#include "utcp_impl.h"

static const char *const state_names[UTCP_STATE_LAST] = {
	"CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED",
	"FIN_WAIT_1", "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT",
	"LAST_ACK",
};

static const char *const ev_names[UTCP_EV_LAST] = {
	"CONNECTED", "ACCEPTED", "READABLE", "WRITABLE", "PEER_CLOSED",
	"CLOSED", "ERROR",
};

static const char *const err_names[UTCP_ERR_LAST] = {
	"NONE", "REFUSED", "TIMEOUT", "RESET", "UNREACHABLE",
};

const char *
utcp_state_name(enum utcp_state s)
{
	return (unsigned)s < UTCP_STATE_LAST ? state_names[s] : "?";
}

const char *
utcp_ev_name(enum utcp_ev_type t)
{
	return (unsigned)t < UTCP_EV_LAST ? ev_names[t] : "?";
}

const char *
utcp_err_name(enum utcp_err_reason r)
{
	return (unsigned)r < UTCP_ERR_LAST ? err_names[r] : "?";
}

size_t
utcp_conn_size(void)
{
	return sizeof(struct utcp_conn);
}

size_t
utcp_stack_state_bytes(const struct utcp_stack *st)
{
	const struct utcp_conf *cf = &st->conf;

	/* Everything utcp_stack_new() allocates except sndmem and rcvmem. */
	return sizeof(*st) +
		(size_t)cf->max_conns * sizeof(*st->conns) +
		((size_t)st->hmask + 1) * sizeof(*st->htab) +
		(size_t)cf->max_tw * sizeof(*st->tws) +
		((size_t)st->twmask + 1) * sizeof(*st->twtab) +
		(size_t)cf->nsndbuf * sizeof(*st->snd_free) +
		(size_t)cf->nrcvbuf * sizeof(*st->rcv_free) +
		(size_t)st->ctl_cap * sizeof(*st->ctlq);
}

uint32_t
utcp_stack_max_conns(const struct utcp_stack *st)
{
	return st->conf.max_conns;
}

/* ---- hash tables ---- */

static uint32_t
tuple_slot(const struct utcp_stack *st, uint32_t laddr, uint16_t lport,
	uint32_t raddr, uint16_t rport)
{
	uint64_t h;
	uint32_t k;

	memcpy(&k, st->key, sizeof(k));
	h = (uint64_t)(laddr ^ k) * 0x9E3779B97F4A7C15ULL;
	h ^= (uint64_t)raddr * 0xC2B2AE3D27D4EB4FULL;
	h ^= ((uint64_t)lport << 16 | rport) * 0x165667B19E3779F9ULL;
	return (uint32_t)(h >> 32);
}

struct utcp_conn *
utcp_conn_lookup(struct utcp_stack *st, uint32_t laddr, uint16_t lport,
	uint32_t raddr, uint16_t rport)
{
	struct utcp_conn *c = st->htab[tuple_slot(st, laddr, lport, raddr, rport) & st->hmask];

	for (; c != NULL; c = c->hnext)
		if (c->lport == lport && c->rport == rport &&
		    c->laddr == laddr && c->raddr == raddr)
			return c;
	return NULL;
}

void
utcp_conn_hash(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;
	uint32_t i = tuple_slot(st, c->laddr, c->lport, c->raddr, c->rport) & st->hmask;

	c->hnext = st->htab[i];
	st->htab[i] = c;
	c->flags |= UTCP_F_HASHED;
}

static void
conn_unhash(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;
	struct utcp_conn **pp;

	if (!(c->flags & UTCP_F_HASHED))
		return;
	pp = &st->htab[tuple_slot(st, c->laddr, c->lport, c->raddr, c->rport) & st->hmask];
	while (*pp != c)
		pp = &(*pp)->hnext;
	*pp = c->hnext;
	c->hnext = NULL;
	c->flags &= ~UTCP_F_HASHED;
}

struct utcp_tw *
utcp_tw_lookup(struct utcp_stack *st, uint32_t laddr, uint16_t lport,
	uint32_t raddr, uint16_t rport)
{
	struct utcp_tw *tw = st->twtab[tuple_slot(st, laddr, lport, raddr, rport) & st->twmask];

	for (; tw != NULL; tw = tw->hnext)
		if (tw->lport == lport && tw->rport == rport &&
		    tw->laddr == laddr && tw->raddr == raddr)
			return tw;
	return NULL;
}

void
utcp_tw_free(struct utcp_stack *st, struct utcp_tw *tw)
{
	struct utcp_tw **pp = &st->twtab[tuple_slot(st, tw->laddr, tw->lport,
		tw->raddr, tw->rport) & st->twmask];

	while (*pp != tw)
		pp = &(*pp)->hnext;
	*pp = tw->hnext;
	TAILQ_REMOVE(&st->tw_fifo, tw, fifo);
	tw->hnext = st->tw_free;
	st->tw_free = tw;
	st->cnt.tw_free++;
	st->cnt.tw_records--;
}

/* ---- buffers ---- */

uint8_t *
utcp_sndbuf_mem(const struct utcp_conn *c)
{
	return c->st->sndmem + (size_t)c->sndbuf * c->st->conf.sndbuf;
}

uint8_t *
utcp_rcvbuf_mem(const struct utcp_conn *c)
{
	return c->st->rcvmem + (size_t)c->rcvbuf * c->st->conf.rcvbuf;
}

static int
sndbuf_attach(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	if (c->sndbuf != UTCP_NO_BUF)
		return 0;
	if (st->nsnd_free == 0)
		return -ENOBUFS;
	c->sndbuf = st->snd_free[--st->nsnd_free];
	c->snd_head = 0;
	return 0;
}

int
utcp_rcvbuf_attach(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	if (c->rcvbuf != UTCP_NO_BUF)
		return 0;
	if (st->nrcv_free == 0)
		return -ENOBUFS;
	c->rcvbuf = st->rcv_free[--st->nrcv_free];
	c->rcv_head = 0;
	return 0;
}

/* Give back the buffers that hold nothing. */
void
utcp_bufs_release(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	if (c->sndbuf != UTCP_NO_BUF && c->snd_len == 0) {
		st->snd_free[st->nsnd_free++] = c->sndbuf;
		c->sndbuf = UTCP_NO_BUF;
	}
	if (c->rcvbuf != UTCP_NO_BUF && c->rcv_len == 0 && c->ooo_n == 0) {
		st->rcv_free[st->nrcv_free++] = c->rcvbuf;
		c->rcvbuf = UTCP_NO_BUF;
	}
}

uint32_t
utcp_rcv_space(const struct utcp_conn *c)
{
	return c->st->conf.rcvbuf - c->rcv_len;
}

/* ---- lifetime ---- */

void
utcp_conn_set_state(struct utcp_conn *c, enum utcp_state s)
{
	struct utcp_stack *st = c->st;

	if (c->state == s)
		return;
	MP_LOG(MP_LOG_DEBUG, "utcp", "conn=%u lport=%u state=%s->%s",
		(unsigned)(c - st->conns), c->lport,
		state_names[c->state], state_names[s]);
	st->cnt.conns_by_state[c->state]--;
	st->cnt.conns_by_state[s]++;
	c->state = (uint8_t)s;
}

struct utcp_conn *
utcp_conn_alloc(struct utcp_stack *st)
{
	struct utcp_conn *c = st->conn_free;

	if (c == NULL)
		return NULL;
	st->conn_free = c->hnext;
	st->cnt.conn_free--;
	memset(c, 0, sizeof(*c));
	c->st = st;
	c->sndbuf = UTCP_NO_BUF;
	c->rcvbuf = UTCP_NO_BUF;
	c->state = UTCP_CLOSED;
	st->cnt.conns_by_state[UTCP_CLOSED]++;
	utcp_rtt_init(&c->rtt, st->conf.rto_init_us, st->conf.rto_min_us,
		st->conf.rto_max_us);
	if (!st->conf.no_wscale)
		while (c->rcv_wscale < 14 && (st->conf.rcvbuf >> c->rcv_wscale) > 65535)
			c->rcv_wscale++;
	return c;
}

static void
conn_detach(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	conn_unhash(c);
	c->rto_at = c->delack_at = c->persist_at = c->linger_at = 0;
	utcp_timer_remove(c);
	if (c->flags & UTCP_F_IN_OUTQ) {
		TAILQ_REMOVE(&st->outq, c, outq);
		c->flags &= ~UTCP_F_IN_OUTQ;
	}
}

void
utcp_conn_free(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	conn_detach(c);
	if (c->flags & UTCP_F_IN_EVQ)
		TAILQ_REMOVE(&st->evq, c, evq);
	c->snd_len = 0;
	c->rcv_len = 0;
	c->ooo_n = 0;
	utcp_bufs_release(c);
	st->cnt.conns_by_state[c->state]--;
	c->state = UTCP_CLOSED;
	/*
	 * The object stays inert (released) until the next utcp_events or
	 * utcp_output call, so that events of the current batch that still
	 * name it, and a second utcp_close, are harmless.
	 */
	c->flags = UTCP_F_RELEASED | UTCP_F_DEAD;
	c->user = NULL;
	c->hnext = st->conn_defer;
	st->conn_defer = c;
	st->cnt.conn_free++;
}

void
utcp_conn_reclaim(struct utcp_stack *st)
{
	struct utcp_conn *c;

	while ((c = st->conn_defer) != NULL) {
		st->conn_defer = c->hnext;
		c->flags = 0;
		c->hnext = st->conn_free;
		st->conn_free = c;
	}
}

void
utcp_conn_event(struct utcp_conn *c, enum utcp_ev_type t)
{
	struct utcp_stack *st = c->st;

	if (c->flags & UTCP_F_RELEASED)
		return;
	c->ev_bits |= UTCP_EVB(t);
	if (!(c->flags & UTCP_F_IN_EVQ)) {
		TAILQ_INSERT_TAIL(&st->evq, c, evq);
		c->flags |= UTCP_F_IN_EVQ;
	}
}

/* The connection is dead: report it, or free it if nobody holds it. */
void
utcp_conn_error(struct utcp_conn *c, enum utcp_err_reason why)
{
	conn_detach(c);
	c->flags |= UTCP_F_DEAD;
	c->err = (uint8_t)why;
	c->snd_len = 0;
	utcp_conn_set_state(c, UTCP_CLOSED);
	if ((c->flags & UTCP_F_RELEASED) || !(c->flags & UTCP_F_HANDED)) {
		utcp_conn_free(c);
		return;
	}
	c->ooo_n = 0;
	utcp_bufs_release(c);
	/* readable data is dropped: a reset stream is not to be trusted */
	c->ev_bits &= ~(UTCP_EVB(UTCP_EV_READABLE) | UTCP_EVB(UTCP_EV_WRITABLE));
	utcp_conn_event(c, UTCP_EV_ERROR);
}

/* Orderly end: the connection object waits for utcp_close (unread data stays). */
void
utcp_conn_closed(struct utcp_conn *c)
{
	conn_detach(c);
	c->snd_len = 0;
	c->ooo_n = 0;
	utcp_conn_set_state(c, UTCP_CLOSED);
	if ((c->flags & UTCP_F_RELEASED) || !(c->flags & UTCP_F_HANDED)) {
		utcp_conn_free(c);
		return;
	}
	utcp_bufs_release(c);
	utcp_conn_event(c, UTCP_EV_CLOSED);
}

void
utcp_conn_enter_time_wait(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;
	struct utcp_tw *tw = st->tw_free;
	uint32_t i;

	utcp_conn_set_state(c, UTCP_TIME_WAIT);
	if (tw == NULL) {
		/* pool full: recycle the oldest record (it has waited longest) */
		utcp_tw_free(st, TAILQ_FIRST(&st->tw_fifo));
		st->cnt.tw_recycled++;
		tw = st->tw_free;
	}
	st->tw_free = tw->hnext;
	st->cnt.tw_free--;
	st->cnt.tw_records++;
	memset(tw, 0, sizeof(*tw));
	tw->laddr = c->laddr;
	tw->raddr = c->raddr;
	tw->lport = c->lport;
	tw->rport = c->rport;
	tw->snd_nxt = c->snd_max;
	tw->rcv_nxt = c->rcv_nxt;
	tw->ts_ok = (c->flags & UTCP_F_TS) != 0;
	tw->ts_recent = c->ts_recent;
	tw->ts_last = utcp_tsval(c);
	tw->rcv_wnd = utcp_wnd_field(c, false);
	tw->expire = st->now + st->conf.time_wait_us;
	TAILQ_INSERT_TAIL(&st->tw_fifo, tw, fifo);
	i = tuple_slot(st, tw->laddr, tw->lport, tw->raddr, tw->rport) & st->twmask;
	tw->hnext = st->twtab[i];
	st->twtab[i] = tw;
	/* the last ACK (of the peer's FIN) is still owed */
	if (c->flags & UTCP_F_ACK_NOW) {
		struct utcp_ctl ctl = {
			.saddr = c->laddr, .daddr = c->raddr,
			.sport = c->lport, .dport = c->rport,
			.seq = c->snd_max, .ack = c->rcv_nxt, .flags = UTCP_ACK,
			.wnd = tw->rcv_wnd, .has_ts = tw->ts_ok,
			.tsval = tw->ts_last, .tsecr = c->ts_recent,
		};

		utcp_ctl_queue(st, &ctl);
	}
	utcp_conn_closed(c);
}

void
utcp_conn_init_cc(struct utcp_conn *c)
{
	utcp_cc_init(c);
}

/* ---- stack ---- */

static uint32_t
pow2_at_least(uint32_t n)
{
	uint32_t p = 16;

	while (p < n)
		p <<= 1;
	return p;
}

struct utcp_stack *
utcp_stack_new(const struct utcp_conf *conf)
{
	struct utcp_stack *st;
	struct utcp_conf *cf;
	uint32_t hsize, twsize;
	static const uint8_t zero[16];

	if (conf == NULL || conf->emit == NULL || conf->nladdr > UTCP_MAX_LADDR) {
		errno = EINVAL;
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	cf = &st->conf;
	*cf = *conf;
	if (!cf->max_conns) cf->max_conns = 1024;
	if (!cf->max_tw) cf->max_tw = cf->max_conns;
	if (!cf->sndbuf) cf->sndbuf = 65536;
	if (!cf->rcvbuf) cf->rcvbuf = 65536;
	if (!cf->nsndbuf) cf->nsndbuf = cf->max_conns;
	if (!cf->nrcvbuf) cf->nrcvbuf = cf->max_conns;
	if (!cf->mss) cf->mss = 1460;
	if (!cf->port_min) cf->port_min = 32768;
	if (!cf->port_max) cf->port_max = 60999;
	if (!cf->rto_init_us) cf->rto_init_us = 1000000;
	if (!cf->rto_min_us) cf->rto_min_us = 200000;
	if (!cf->rto_max_us) cf->rto_max_us = 60000000;
	if (!cf->syn_retries) cf->syn_retries = 6;
	if (!cf->data_retries) cf->data_retries = 15;
	if (!cf->delack_us) cf->delack_us = 40000;
	if (!cf->time_wait_us) cf->time_wait_us = 60000000;
	if (!cf->challenge_ack_limit) cf->challenge_ack_limit = 1000;
	if (!cf->challenge_ack_conn_limit) cf->challenge_ack_conn_limit = 10;
	if (!cf->orphan_retries) cf->orphan_retries = 8;
	if (!cf->orphan_timeout_us) cf->orphan_timeout_us = 60000000;
	if (!cf->oow_ack_interval_us) cf->oow_ack_interval_us = 500000;
	if (!cf->rst_limit) cf->rst_limit = 1000;
	if (!cf->blackhole_rtos) cf->blackhole_rtos = 3;
	if (!cf->pmtu_expire_us) cf->pmtu_expire_us = 600000000;
	if (cf->port_min > cf->port_max || cf->mss < 88 || cf->cc >= UTCP_CC_LAST ||
	    cf->rcvbuf > (1u << 30) || cf->sndbuf > (1u << 30) ||
	    cf->rto_min_us > cf->rto_max_us || cf->max_conns > (1u << 24) ||
	    cf->syn_retries > UTCP_RETRIES_MAX || cf->data_retries > UTCP_RETRIES_MAX ||
	    cf->orphan_retries > UTCP_RETRIES_MAX || cf->blackhole_rtos > UTCP_RETRIES_MAX) {
		free(st);
		errno = EINVAL;
		return NULL;
	}
	if (memcmp(cf->secret, zero, 16) == 0) {
		if (getrandom(st->key, sizeof(st->key), 0) != (ssize_t)sizeof(st->key)) {
			free(st);
			errno = EIO;
			return NULL;
		}
	} else {
		memcpy(st->key, cf->secret, 16);
	}
	hsize = pow2_at_least(cf->max_conns * 2);
	twsize = pow2_at_least(cf->max_tw * 2);
	st->hmask = hsize - 1;
	st->twmask = twsize - 1;
	st->conns = calloc(cf->max_conns, sizeof(*st->conns));
	st->htab = calloc(hsize, sizeof(*st->htab));
	st->tws = calloc(cf->max_tw, sizeof(*st->tws));
	st->twtab = calloc(twsize, sizeof(*st->twtab));
	st->sndmem = malloc((size_t)cf->nsndbuf * cf->sndbuf);
	st->rcvmem = malloc((size_t)cf->nrcvbuf * cf->rcvbuf);
	st->snd_free = calloc(cf->nsndbuf, sizeof(uint32_t));
	st->rcv_free = calloc(cf->nrcvbuf, sizeof(uint32_t));
	/* a burst of closes queues one final ACK per connection */
	st->ctl_cap = cf->max_conns > UTCP_CTLQ_MIN ? cf->max_conns : UTCP_CTLQ_MIN;
	st->ctlq = calloc(st->ctl_cap, sizeof(*st->ctlq));
	if (!st->conns || !st->htab || !st->tws || !st->twtab || !st->sndmem ||
	    !st->rcvmem || !st->snd_free || !st->rcv_free || !st->ctlq) {
		utcp_stack_free(st);
		errno = ENOMEM;
		return NULL;
	}
	for (uint32_t i = cf->max_conns; i-- > 0;) {
		st->conns[i].hnext = st->conn_free;
		st->conn_free = &st->conns[i];
	}
	for (uint32_t i = cf->max_tw; i-- > 0;) {
		st->tws[i].hnext = st->tw_free;
		st->tw_free = &st->tws[i];
	}
	for (uint32_t i = 0; i < cf->nsndbuf; i++)
		st->snd_free[i] = cf->nsndbuf - 1 - i;
	for (uint32_t i = 0; i < cf->nrcvbuf; i++)
		st->rcv_free[i] = cf->nrcvbuf - 1 - i;
	st->nsnd_free = cf->nsndbuf;
	st->nrcv_free = cf->nrcvbuf;
	st->cnt.conn_free = cf->max_conns;
	st->cnt.tw_free = cf->max_tw;
	for (unsigned i = 0; i < UTCP_WHEEL_SLOTS; i++)
		TAILQ_INIT(&st->wheel[i]);
	TAILQ_INIT(&st->outq);
	TAILQ_INIT(&st->evq);
	TAILQ_INIT(&st->tw_fifo);
	return st;
}

void
utcp_stack_free(struct utcp_stack *st)
{
	if (st == NULL)
		return;
	free(st->conns);
	free(st->htab);
	free(st->tws);
	free(st->twtab);
	free(st->sndmem);
	free(st->rcvmem);
	free(st->snd_free);
	free(st->rcv_free);
	free(st->ctlq);
	free(st);
}

void
utcp_stack_counters(const struct utcp_stack *st, struct utcp_counters *out)
{
	*out = st->cnt;
	out->sndbuf_free = st->nsnd_free;
	out->rcvbuf_free = st->nrcv_free;
}

void
utcp_clock(struct utcp_stack *st, uint64_t now_us)
{
	if (now_us > st->now)
		st->now = now_us;
}

/* ---- API ---- */

struct utcp_conn *
utcp_connect(struct utcp_stack *st, uint32_t saddr, uint32_t daddr,
	uint16_t dport, void *user)
{
	struct utcp_conf *cf = &st->conf;
	struct utcp_conn *c;
	uint16_t port = 0;
	int rc = -EADDRNOTAVAIL;

	if (daddr == 0 || dport == 0) {
		errno = EINVAL;
		return NULL;
	}
	if (st->conn_free == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	if (saddr != 0) {
		bool known = false;

		for (unsigned i = 0; i < cf->nladdr; i++)
			known |= cf->laddr[i] == saddr;
		if (known)
			rc = utcp_port_pick(st, saddr, daddr, dport, &port);
	} else {
		for (unsigned i = 0; i < cf->nladdr && rc < 0; i++) {
			saddr = cf->laddr[(st->laddr_rr + i) % cf->nladdr];
			rc = utcp_port_pick(st, saddr, daddr, dport, &port);
		}
		st->laddr_rr++;
	}
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	c = utcp_conn_alloc(st);
	c->user = user;
	c->laddr = saddr;
	c->raddr = daddr;
	c->lport = port;
	c->rport = dport;
	c->iss = utcp_isn(st, saddr, port, daddr, dport, st->now);
	c->ts_offset = utcp_ts_offset(st, saddr, port, daddr, dport);
	c->snd_una = c->snd_nxt = c->snd_max = c->iss;
	c->buf_seq = c->iss + 1;
	c->mss = cf->mss < 536 ? cf->mss : 536;
	c->flags |= UTCP_F_HANDED;
	utcp_conn_set_state(c, UTCP_SYN_SENT);
	utcp_conn_hash(c);
	utcp_out_schedule(c);
	return c;
}

int
utcp_listen(struct utcp_stack *st, uint32_t addr, uint16_t port, void *user)
{
	struct utcp_listener *free_slot = NULL;

	if (port == 0)
		return -EINVAL;
	for (unsigned i = 0; i < UTCP_MAX_LISTEN; i++) {
		struct utcp_listener *l = &st->lst[i];

		if (l->used && l->port == port && l->addr == addr)
			return -EADDRINUSE;
		if (!l->used && free_slot == NULL)
			free_slot = l;
	}
	if (free_slot == NULL)
		return -ENOSPC;
	free_slot->used = true;
	free_slot->addr = addr;
	free_slot->port = port;
	free_slot->user = user;
	return 0;
}

static bool
can_queue_data(const struct utcp_conn *c)
{
	if (c->flags & (UTCP_F_FIN_QUEUED | UTCP_F_DEAD | UTCP_F_RELEASED))
		return false;
	return c->state == UTCP_SYN_SENT || c->state == UTCP_SYN_RCVD ||
		c->state == UTCP_ESTABLISHED || c->state == UTCP_CLOSE_WAIT;
}

ssize_t
utcp_sendv(struct utcp_conn *c, const struct iovec *iov, int n)
{
	uint32_t cap = c->st->conf.sndbuf, done = 0;
	uint8_t *mem;
	int rc;

	if (!can_queue_data(c))
		return (c->flags & UTCP_F_FIN_QUEUED) ? -EPIPE : -ENOTCONN;
	rc = sndbuf_attach(c);
	if (rc < 0)
		return rc;
	mem = utcp_sndbuf_mem(c);
	for (int i = 0; i < n && c->snd_len < cap; i++) {
		const uint8_t *src = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left > 0 && c->snd_len < cap) {
			uint32_t pos = (c->snd_head + c->snd_len) % cap;
			uint32_t chunk = cap - pos;

			if (chunk > cap - c->snd_len)
				chunk = cap - c->snd_len;
			if (chunk > left)
				chunk = (uint32_t)left;
			memcpy(mem + pos, src, chunk);
			src += chunk;
			left -= chunk;
			c->snd_len += chunk;
			done += chunk;
		}
		if (left > 0)
			break;
	}
	{
		size_t total = 0;

		for (int i = 0; i < n; i++)
			total += iov[i].iov_len;
		if (done < total)
			c->flags |= UTCP_F_WANT_WRITE;
	}
	if (done > 0 && c->state != UTCP_SYN_SENT && c->state != UTCP_SYN_RCVD)
		utcp_out_schedule(c);
	utcp_bufs_release(c);
	return done;
}

ssize_t
utcp_send(struct utcp_conn *c, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len };

	return utcp_sendv(c, &iov, 1);
}

ssize_t
utcp_recv(struct utcp_conn *c, void *buf, size_t cap)
{
	uint32_t bcap = c->st->conf.rcvbuf, n, first;
	const uint8_t *mem;
	uint32_t before, after, thresh;

	if (c->flags & UTCP_F_RELEASED)
		return -ENOTCONN;
	if (c->rcv_len == 0) {
		if (c->flags & UTCP_F_FIN_RCVD)
			return 0;
		if (c->flags & UTCP_F_DEAD)
			return -ENOTCONN;
		if (c->state == UTCP_CLOSED)
			return 0;
		return -EAGAIN;
	}
	n = c->rcv_len < cap ? c->rcv_len : (uint32_t)cap;
	mem = utcp_rcvbuf_mem(c);
	first = bcap - c->rcv_head < n ? bcap - c->rcv_head : n;
	memcpy(buf, mem + c->rcv_head, first);
	memcpy((uint8_t *)buf + first, mem, n - first);
	before = utcp_rcv_space(c) >> c->rcv_wscale;
	c->rcv_head = (c->rcv_head + n) % bcap;
	c->rcv_len -= n;
	utcp_bufs_release(c);
	after = utcp_rcv_space(c) >> c->rcv_wscale;
	/* window update when the window grew by enough (RFC 9293 3.8.6.2.2) */
	thresh = (bcap / 2 < 2 * c->mss ? bcap / 2 : 2 * c->mss) >> c->rcv_wscale;
	if (c->state >= UTCP_ESTABLISHED && c->state != UTCP_CLOSE_WAIT &&
	    c->state != UTCP_LAST_ACK && !(c->flags & UTCP_F_FIN_RCVD) &&
	    (uint32_t)((c->rcv_nxt + (after << c->rcv_wscale)) - c->rcv_adv) >=
	    (thresh << c->rcv_wscale) && after > before)
		utcp_out_ack_now(c);
	return n;
}

int
utcp_shutdown(struct utcp_conn *c)
{
	if (c->flags & UTCP_F_FIN_QUEUED)
		return -EALREADY;
	if (c->flags & (UTCP_F_DEAD | UTCP_F_RELEASED))
		return -ENOTCONN;
	switch (c->state) {
	case UTCP_SYN_RCVD:
	case UTCP_ESTABLISHED:
		c->flags |= UTCP_F_FIN_QUEUED;
		if (c->state == UTCP_ESTABLISHED)
			utcp_conn_set_state(c, UTCP_FIN_WAIT_1);
		break;
	case UTCP_CLOSE_WAIT:
		c->flags |= UTCP_F_FIN_QUEUED;
		utcp_conn_set_state(c, UTCP_LAST_ACK);
		break;
	default:
		return -ENOTCONN;
	}
	utcp_out_schedule(c);
	return 0;
}

static void
conn_release(struct utcp_conn *c)
{
	struct utcp_stack *st = c->st;

	if (c->flags & UTCP_F_IN_EVQ) {
		TAILQ_REMOVE(&st->evq, c, evq);
		c->flags &= ~UTCP_F_IN_EVQ;
	}
	c->ev_bits = 0;
	c->flags |= UTCP_F_RELEASED;
	c->user = NULL;
}

/* Send RST (when the peer knows the connection) and free it. */
void
utcp_conn_reset(struct utcp_conn *c)
{
	conn_release(c);
	if (c->state != UTCP_CLOSED && c->state != UTCP_SYN_SENT &&
	    !(c->flags & UTCP_F_DEAD)) {
		struct utcp_ctl ctl = {
			.saddr = c->laddr, .daddr = c->raddr,
			.sport = c->lport, .dport = c->rport,
			.seq = c->snd_max, .ack = c->rcv_nxt,
			.flags = UTCP_RST | UTCP_ACK,
		};

		utcp_ctl_queue(c->st, &ctl);
	}
	utcp_conn_free(c);
}

void
utcp_abort(struct utcp_conn *c)
{
	if (c->flags & UTCP_F_RELEASED)
		return;
	utcp_conn_reset(c);
}

void
utcp_close(struct utcp_conn *c)
{
	if (c->flags & UTCP_F_RELEASED)
		return;
	if (c->rcv_len > 0 && c->state != UTCP_CLOSED) {
		/* unread data: tell the peer it was not consumed (RFC 9293 3.6) */
		utcp_abort(c);
		return;
	}
	conn_release(c);
	/* an orphan has a bounded life whatever the peer does (tarpits) */
	c->probes = 0;
	c->linger_at = c->st->now + c->st->conf.orphan_timeout_us;
	utcp_timer_update(c);
	switch (c->state) {
	case UTCP_CLOSED:
	case UTCP_SYN_SENT:
		utcp_conn_free(c);
		return;
	case UTCP_SYN_RCVD:
	case UTCP_ESTABLISHED:
	case UTCP_CLOSE_WAIT:
		if (!(c->flags & UTCP_F_FIN_QUEUED)) {
			c->flags |= UTCP_F_FIN_QUEUED;
			utcp_conn_set_state(c, c->state == UTCP_CLOSE_WAIT ?
				UTCP_LAST_ACK : c->state == UTCP_SYN_RCVD ?
				UTCP_SYN_RCVD : UTCP_FIN_WAIT_1);
			utcp_out_schedule(c);
		}
		return;
	case UTCP_FIN_WAIT_2:
		if (c->st->conf.time_wait_us < c->st->conf.orphan_timeout_us)
			c->linger_at = c->st->now + c->st->conf.time_wait_us;
		utcp_timer_update(c);
		return;
	default:
		return;
	}
}

int
utcp_events(struct utcp_stack *st, struct utcp_event *ev, int max)
{
	int n = 0;
	struct utcp_conn *c;

	utcp_conn_reclaim(st);
	while (n < max && (c = TAILQ_FIRST(&st->evq)) != NULL) {
		while (n < max && c->ev_bits != 0) {
			int t = __builtin_ctz(c->ev_bits);

			c->ev_bits &= ~(1u << t);
			ev[n].type = (enum utcp_ev_type)t;
			ev[n].reason = t == UTCP_EV_ERROR ? (enum utcp_err_reason)c->err :
				UTCP_ERR_NONE;
			ev[n].conn = c;
			ev[n].user = c->user;
			n++;
		}
		if (c->ev_bits == 0) {
			TAILQ_REMOVE(&st->evq, c, evq);
			c->flags &= ~UTCP_F_IN_EVQ;
		}
	}
	return n;
}

void *
utcp_conn_user(const struct utcp_conn *c)
{
	return c->user;
}

void
utcp_conn_set_user(struct utcp_conn *c, void *user)
{
	c->user = user;
}

enum utcp_state
utcp_conn_state(const struct utcp_conn *c)
{
	return (enum utcp_state)c->state;
}

void
utcp_conn_get_info(const struct utcp_conn *c, struct utcp_conn_info *o)
{
	memset(o, 0, sizeof(*o));
	o->state = (enum utcp_state)c->state;
	o->laddr = c->laddr;
	o->raddr = c->raddr;
	o->lport = c->lport;
	o->rport = c->rport;
	o->mss = c->mss;
	o->cwnd = c->cwnd;
	o->ssthresh = c->ssthresh;
	o->snd_wnd = c->snd_wnd;
	o->rcv_wnd = utcp_rcv_space(c);
	o->srtt_us = c->rtt.srtt;
	o->rttvar_us = c->rtt.rttvar;
	o->rto_us = c->rtt.rto;
	o->snd_queued = c->snd_len;
	o->rcv_queued = c->rcv_len;
	o->snd_wscale = c->snd_wscale;
	o->rcv_wscale = c->rcv_wscale;
	o->ts_ok = (c->flags & UTCP_F_TS) != 0;
	o->sack_ok = (c->flags & UTCP_F_SACK) != 0;
}
