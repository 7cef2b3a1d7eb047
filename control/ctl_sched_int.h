/*
 * Internals shared by the scheduler's files: ctl_sched.c (loop, batches,
 * domain queues, dispatch), ctl_campaign.c (campaign cache) and
 * ctl_results.c (Redis connection, Lua scripts, the write queue).
 */
#ifndef CTL_SCHED_INT_H
#define CTL_SCHED_INT_H

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "ctl_bounce.h"
#include "ctl_dns.h"
#include "ctl_keys.h"
#include "ctl_redis.h"
#include "ctl_sched.h"
#include "ctl_shape.h"

#define CTL_REASON_MAX 256
#define CTL_HOPS_MAX 16

/* One server of a domain's route, in the order they are tried. */
struct ctl_hop {
	char host[CTL_DOMAIN_MAX];
	union mp_sockaddr addr;
	uint8_t implicit_tls;
};

enum ctl_route_status { CTL_ROUTE_OK = 0, CTL_ROUTE_TEMP, CTL_ROUTE_PERM };

struct ctl_route {
	enum ctl_route_status status;
	char reason[CTL_REASON_MAX];
	unsigned n;
	struct ctl_hop hop[CTL_HOPS_MAX];
};

enum srcpt_state {
	SR_QUEUED = 0,	/* in its domain queue */
	SR_INFLIGHT,	/* in an order at the backend */
	SR_SETTLING,	/* its write is queued */
	SR_DONE,	/* final or in the retry set, written */
};

struct sbatch;
struct sdom;
struct scamp;

struct srcpt {
	struct sbatch *b;
	char *addr;
	json_t *fields;			/* object or NULL */
	uint32_t attempt;
	uint64_t first_ms;
	uint8_t state;
	uint8_t hop;			/* next hop of the route in this attempt */
	uint8_t plaintext;		/* TLS failed under opportunistic */
	uint8_t fallback;		/* its domain cannot meet the policy: the
					   campaign's fallback goes instead */
	uint8_t prio;			/* its campaign's when queued */
	struct srcpt *qprev, *qnext;	/* domain queue, by priority, FIFO within */
};

/* A jobs stream the scheduler reads (ctl_intake.c): one campaign's
 * NS campaign:<id>:jobs, or the shared NS jobs. */
struct ssrc {
	char key[CTL_KEY_MAX];
	char cid[CTL_CAMP_ID_MAX];	/* "" = the shared NS jobs */
	struct scamp *camp;		/* loaded on first use, ref held */
	uint8_t group_ok;		/* the consumer group exists on it */
	uint8_t listed;			/* in NS active at the last look */
	uint8_t eligible;		/* this round: its campaign may send now */
	unsigned want;			/* this round: entries to ask for */
	uint64_t drained_at;		/* a read found it empty then (scheduler clock); 0 = no */
	unsigned held;			/* batches of it held */
	struct ssrc *next;
};

struct sbatch {
	char id[48];			/* stream entry id */
	struct ssrc *src;		/* the stream it came from */
	char camp_id[CTL_CAMP_ID_MAX];
	struct scamp *camp;
	struct sdom *dom;
	unsigned n, unsettled;
	struct srcpt *r;
	int64_t refreshed_mono;		/* the lease: read, claimed or refreshed by us then */
	uint64_t recheck_at;		/* waiting: next state check (scheduler clock) */
	uint8_t admitted;		/* recipients queued (else waiting) */
	uint8_t acking;			/* ack write queued */
	uint8_t lost;			/* another consumer owns the entry now */
	char *dead;			/* poison: why (NULL = a good entry); its
					   recipients fail with it, the entry goes
					   to jobs:dead instead of being acked */
	struct sbatch *prev, *next;
};

enum scamp_state {
	SC_SUBMITTING = 0, SC_RUNNING, SC_PAUSED, SC_CANCELLED, SC_DONE,
	SC_MISSING,			/* no campaign hash: batch is bad */
};

struct scamp {
	char id[CTL_CAMP_ID_MAX];
	struct ctl_campaign *cc;	/* NULL when the template is bad */
	struct ctl_campaign *cc_fb;	/* the safe-content fallback, or NULL */
	enum smtp_tls_policy fb_policy;	/* what the fallback is sent under */
	char bad[CTL_REASON_MAX];	/* why cc is NULL */
	enum scamp_state state;
	int win_from, win_to;		/* minutes of the UTC day, -1 = none */
	uint8_t prio;			/* enum ctl_prio */
	uint64_t max_age_ms;
	uint64_t submitted_ms;
	enum smtp_tls_policy policy;
	json_t *overrides;		/* domain -> policy name */
	char k_sup[CTL_KEY_MAX];	/* NS suppress:<From domain> */
	int64_t state_mono;		/* when state was read */
	int64_t used_mono;		/* last time a batch let go of it */
	unsigned refs;			/* held batches of this campaign */
	struct scamp *next;
};

enum sdom_route { SD_NONE = 0, SD_RESOLVING, SD_READY };

struct sdom {
	char name[CTL_DOMAIN_MAX];
	enum sdom_route rstate;
	struct ctl_route route;
	int64_t route_mono;
	uint8_t active;			/* on the scheduler's active list */
	struct sdom *anext;
	struct srcpt *qhead, *qtail;
	struct srcpt *ptail[CTL_PRIO_LAST];	/* last queued of each priority */
	unsigned qlen;
	unsigned conns;
	unsigned refs;			/* held batches of this domain */
	struct sdom *next;
};

/* The scheduler's side of an order at the backend. */
struct somap {
	struct sdom *dom;
	unsigned n;
	unsigned plain_delivered;
	struct somap *prev, *next;
	struct srcpt *r[];
};

enum sop_kind { OP_FINAL, OP_DEFER, OP_TLS, OP_ACK };

/* One queued Redis write: a Lua call plus what to do once it succeeded. */
struct sop {
	enum sop_kind kind;
	int script;			/* index into the script table */
	int nkeys;
	int argc;
	char **argv;
	size_t *lens;
	struct srcpt *r;		/* FINAL, DEFER */
	struct sbatch *b;		/* ACK */
	char state[16];			/* FINAL: new state, for stats */
	uint8_t ok;			/* Redis confirmed it (flush in progress) */
	struct sop *next;
};

struct ctl_sched {
	struct ctl_sched_conf conf;
	struct ctl_bounce *own_bounce;	/* the shipped rules when conf.bounce is NULL */
	char ns[64], group[64], consumer[128];
	char k_jobs[96], k_retry[96], k_events[96], k_tls_domains[96];
	char k_lock[224], lock_token[192];	/* NS consumer:<name> and our token */
	int64_t lock_mono;		/* last successful lock renewal */
	char k_dead[96], k_dead_n[96];
	/* Redis */
	struct ctl_redis *rc;
	int group_ok;
	int64_t rc_log_mono;		/* last redis_error logged */
	unsigned rc_log_quiet;		/* failures not logged since */
	/* delivery */
	struct ctl_backend be;
	struct ctl_sink sink;
	uint64_t next_order;
	/* intake (ctl_intake.c) */
	struct ssrc *srcs, *src_shared;
	unsigned nsrcs;
	uint64_t srcs_at;		/* NS active last read (scheduler clock) */
	int srcs_stale;			/* re-read it now: retries moved */
	int prio_cw[CTL_PRIO_LAST];	/* smooth weighted round-robin state */
	struct ssrc *prio_rr[CTL_PRIO_LAST];	/* last served source per priority */
	char k_active[96];
	/* state */
	struct sbatch *batches;
	unsigned nbatches;
	struct scamp *camps;
	struct sdom *doms;
	struct sop *ops, *ops_tail;
	unsigned nops;
	int64_t ops_pause_mono;
	unsigned inflight_rcpts;
	int stopping;
	int started;
	struct sdom *active;		/* domains with queued recipients */
	struct somap *omaps;		/* orders at the backend */
	unsigned orders_out;		/* orders at the backend */
	uint64_t rng;
	int64_t claim_mono, refresh_mono, idle_mono, gc_mono, trim_mono;
	uint64_t retry_at, read_at;	/* scheduler clock */
	int last_read_empty;
	int redis_idle;			/* last check: no pending, no retries */
	struct ctl_sched_stats st;
};

/* ctl_results.c */
uint64_t ctl_sched_now(struct ctl_sched *s);
int ctl_rc_ready(struct ctl_sched *s);
void ctl_rc_failed(struct ctl_sched *s, const char *what);
/* One command when connected (group in place), else NULL. */
#define CTL_RC_CMD(s, ...) (ctl_rc_ready(s) ? ctl_redis_cmd((s)->rc, __VA_ARGS__) : NULL)
/* The bounce class of a non-delivery (ctl_bounce rules over code, esc, text). */
enum ctl_bounce_class ctl_sched_classify(const struct ctl_sched *s, const struct ctl_result *res);
/* mx, ip: the server's name and address (text) for the record, "" when
 * no connection was tried */
void ctl_op_final(struct ctl_sched *s, struct srcpt *r, const char *state,
	const struct ctl_result *res, const char *mx, const char *ip, int real_attempt);
void ctl_op_defer(struct ctl_sched *s, struct srcpt *r,
	const struct ctl_result *res, const char *mx, const char *ip, uint64_t due_ms);
void ctl_op_tls(struct ctl_sched *s, const struct ctl_order *o,
	const struct ctl_sess_report *rep, unsigned plain_delivered);
void ctl_op_ack(struct ctl_sched *s, struct sbatch *b);
void ctl_op_park(struct ctl_sched *s, struct sbatch *b);
int ctl_ops_flush(struct ctl_sched *s);
int ctl_retry_move(struct ctl_sched *s, unsigned limit);
void ctl_ops_free(struct ctl_sched *s);

/* ctl_sched.c, called when a write of r succeeded */
void ctl_sched_settled(struct ctl_sched *s, struct srcpt *r);
void ctl_sched_batch_acked(struct ctl_sched *s, struct sbatch *b);

/* ctl_sched.c: entries of an XREADGROUP or XAUTOCLAIM reply, from @p src */
void ctl_take_entries(struct ctl_sched *s, struct ssrc *src, const redisReply *entries,
	int claimed);

/* ctl_intake.c: which jobs streams are read, how much of each, in what
 * order */
int ctl_intake_read(struct ctl_sched *s, unsigned block);
void ctl_intake_own_pending(struct ctl_sched *s);
int ctl_intake_claim(struct ctl_sched *s);
int ctl_intake_pending(struct ctl_sched *s);
unsigned ctl_intake_room(struct ctl_sched *s);
int ctl_intake_ready(struct ctl_sched *s);
void ctl_intake_gc(struct ctl_sched *s);
void ctl_intake_free(struct ctl_sched *s);

/* ctl_poison.c: recipients of an entry that does not parse, found by
 * their "to" values alone, so they can be failed rather than forgotten */
unsigned ctl_poison_salvage(struct sbatch *b, const char *rcpts);
void ctl_poison_mark(struct sbatch *b, const char *why);

/* ctl_campaign.c */
struct scamp *ctl_camp_get(struct ctl_sched *s, const char *id, int *err);
int ctl_camp_refresh(struct ctl_sched *s, struct scamp *c);
int ctl_camp_sendable(struct ctl_sched *s, struct scamp *c, uint64_t now_ms);
enum smtp_tls_policy ctl_camp_policy(const struct scamp *c, const char *domain);
int ctl_policy_parse(const char *name, enum smtp_tls_policy *out);
void ctl_camps_free(struct ctl_sched *s);
void ctl_camps_gc(struct ctl_sched *s, int64_t idle_ms);

#endif
