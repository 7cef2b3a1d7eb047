/*
 * Dispatch interface between the scheduler (control/ctl_sched.c) and a
 * delivery backend: the kernel-socket engine in the same thread
 * (control/ctl_ksock.c), a test backend, or DPDK worker lcores behind a
 * pair of single-producer/single-consumer rings.
 *
 * The scheduler hands out session orders. An order names one destination
 * (domain, MX host name for SNI/verify, IPv4 or IPv6 address and port, TLS policy,
 * implicit TLS) with the limits of that one connection (messages per
 * connection, recipients per transaction) and carries the messages the
 * connection is to send, at most msgs_per_conn of them. A message is one
 * recipient with its merge fields and a reference to the compiled campaign;
 * the backend renders it with msg_ from the campaign's template.
 *
 * Ownership moves with the pointer, nothing is shared mutably:
 *
 *   scheduler: ctl_order_new(), ctl_msg_new() x n  ->  ops->submit(order)
 *   backend:   one sink->on_result() per message (any order), then one
 *              sink->on_done() for the order, which gives the order and
 *              its messages back to the scheduler (ctl_order_free()).
 *
 * The only object reachable from both sides is struct ctl_campaign, which
 * is immutable once published and reference counted with atomics, so a
 * worker on another core may render from it while the scheduler drops its
 * own reference. Results and session reports are plain data (fixed size,
 * memcpy-able), so a ring implementation copies them into its slots.
 *
 * Backends call the sink only from inside ops->poll (never from submit),
 * so the scheduler is never re-entered.
 */
#ifndef CTL_DISPATCH_H
#define CTL_DISPATCH_H

#include <netinet/in.h>
#include <stdint.h>

#include "mps.h"
#include "msg.h"
#include "msg_dkim.h"
#include "smtp.h"
#include "tls.h"

#define CTL_DOMAIN_MAX 256	/**< domain or host name plus NUL */
#define CTL_ADDR_MAX 256	/**< recipient address plus NUL */
#define CTL_CAMP_ID_MAX 64	/**< campaign id plus NUL */

/**
 * A compiled campaign: immutable after ctl_campaign_new() returns.
 * Mutable campaign state (paused, cancelled, window) stays on the
 * scheduler side; a backend only renders from this.
 */
struct ctl_campaign {
	int refcnt;			/**< atomic; use ctl_campaign_ref/unref */
	char id[CTL_CAMP_ID_MAX];
	char *mail_from;		/**< envelope sender (the return path) */
	int verp;			/**< per-recipient MAIL FROM (ctl_verp_address) */
	struct msg_template *tpl;	/**< compiled template (shared read-only) */
	unsigned render_flags;		/**< MSG_F_* the campaign allows (8BITMIME) */
	/** DKIM keys to sign with (ctl_dkim_keys of the signing domain; they
	 *  outlive every campaign), one signature each; 0 = unsigned. */
	const struct msg_dkim_key *dkim[MSG_DKIM_MAX_SIGS];
	unsigned ndkim;
};

/**
 * Compile a campaign.
 * @param id campaign id ([A-Za-z0-9._-], < CTL_CAMP_ID_MAX)
 * @param mail_from envelope sender
 * @param spec template spec (copied)
 * @param err receives a reason on failure
 * @param errlen size of @p err
 * @return the campaign with one reference, or NULL (bad id, template
 *         error, out of memory) with @p err filled.
 */
struct ctl_campaign *ctl_campaign_new(const char *id, const char *mail_from,
	const struct msg_template_spec *spec, char *err, size_t errlen);
/** Take a reference. @return @p c. */
struct ctl_campaign *ctl_campaign_ref(struct ctl_campaign *c);
/** Drop a reference; the last one frees the campaign. NULL is ignored. */
void ctl_campaign_unref(struct ctl_campaign *c);

/**
 * One message: one recipient, its merge fields, a campaign reference.
 * Allocated as one block (fields and strings inside it), so it can be
 * handed across threads as a pointer and freed by either side.
 */
struct ctl_msg {
	uint64_t id;			/**< scheduler's cookie, unique per scheduler */
	struct ctl_campaign *camp;	/**< one reference owned by the message */
	const char *rcpt;		/**< recipient address */
	uint32_t attempt;		/**< 0 for the first attempt */
	uint64_t index;			/**< Message-ID index: stable per recipient */
	struct msg_field *fields;	/**< merge fields (inside the block) */
	size_t nfields;
};

/**
 * Build a message. Strings are copied into the block.
 * @param camp campaign (a reference is taken)
 * @param rcpt recipient address
 * @param names field names, @p values field values (UTF-8, @p lens bytes)
 * @param nfields number of fields
 * @return the message, or NULL on out of memory.
 */
struct ctl_msg *ctl_msg_new(struct ctl_campaign *camp, const char *rcpt,
	const char *const *names, const char *const *values,
	const size_t *lens, size_t nfields);
/** Free a message and drop its campaign reference. NULL is ignored. */
void ctl_msg_free(struct ctl_msg *m);

/** Stable 64-bit hash (FNV-1a) used for Message-ID indexes. */
uint64_t ctl_hash64(const char *s);

/** One session order: one connection to one server. */
struct ctl_order {
	uint64_t id;				/**< scheduler's order id */
	char domain[CTL_DOMAIN_MAX];		/**< destination domain (lower case) */
	char mx[CTL_DOMAIN_MAX];		/**< server name: SNI and verify */
	union mp_sockaddr addr;			/**< IPv4 or IPv6 address and port */
	enum smtp_tls_policy policy;
	uint8_t implicit_tls;			/**< TLS before the greeting (465) */
	uint16_t msgs_per_conn;			/**< most transactions on this connection */
	uint16_t rcpt_per_txn;			/**< most recipients per transaction */
	unsigned n_msgs;			/**< messages in msgs[] (<= msgs_per_conn) */
	struct ctl_msg **msgs;			/**< owned by the order's holder */
	void *sched_data;			/**< scheduler's, backend never touches */
};

/**
 * Allocate an order with room for @p cap messages (n_msgs = 0).
 * @return the order or NULL on out of memory.
 */
struct ctl_order *ctl_order_new(unsigned cap);
/** Free an order and every message still in it. NULL is ignored. */
void ctl_order_free(struct ctl_order *o);

/** Outcome of one message (its single recipient). Plain data. */
struct ctl_result {
	uint64_t order_id;
	unsigned msg_index;			/**< index into order->msgs */
	enum smtp_outcome outcome;
	enum smtp_stage stage;
	int code;				/**< server reply code, 0 when local */
	char esc[SMTP_ESC_MAX];
	char text[SMTP_REPLY_TEXT_MAX];
	uint8_t tls_on;				/**< the message went over TLS */
	uint8_t has_tls;			/**< tls holds the session's record
						     (also a failed handshake's) */
	struct tls_record tls;
};

/** What the connection of an order did, sent once after every result. */
struct ctl_sess_report {
	uint64_t order_id;
	uint8_t connected;			/**< TCP connect succeeded */
	uint8_t has_tls;			/**< tls holds a handshake record */
	struct smtp_sess_info info;
	struct tls_record tls;
};

/** Where a backend delivers its events (implemented by the scheduler). */
struct ctl_sink {
	/** One per message of an order, exactly once. */
	void (*on_result)(void *arg, struct ctl_order *o,
		const struct ctl_result *r);
	/** After the last result of @p o; ownership of @p o returns. */
	void (*on_done)(void *arg, struct ctl_order *o,
		const struct ctl_sess_report *rep);
	void *arg;
};

/** A delivery backend. */
struct ctl_backend_ops {
	/**
	 * Take an order (ownership moves to the backend on success).
	 * @return 0; -EAGAIN full (the caller keeps the order); -EINVAL.
	 */
	int (*submit)(void *be, struct ctl_order *o);
	/**
	 * Make progress for up to @p timeout_ms (0 = do not wait) and deliver
	 * events through the sink. @return events delivered or -errno.
	 */
	int (*poll)(void *be, int timeout_ms);
	/** @return orders taken and not yet done. */
	unsigned (*active)(void *be);
};

/** A backend instance as the scheduler sees it. */
struct ctl_backend {
	const struct ctl_backend_ops *ops;
	void *be;
};

/* ------------------------------------------------------------------ */
/* Backend helper: one order run as one SMTP session                    */
/* ------------------------------------------------------------------ */

/**
 * The backend half of one order, the same for every backend (kernel
 * sockets, DPDK workers): hands the order's messages to one SMTP session
 * a transaction at a time, rendering each from its campaign, and turns the
 * session's callbacks into ctl_result / ctl_sess_report records. Embed it
 * in the backend's per-order state; the backend keeps its own lists,
 * counters and delivery to the sink (directly or through a ring).
 *
 *   ctl_order_run_init()       fills the session request (callbacks: the
 *                              backend's, which call the three below)
 *   ctl_order_run_next_txn()   from req.next_txn
 *   ctl_order_run_result()     from req.result
 *   ctl_order_run_report()     from req.done
 */
struct ctl_signq;
struct ctl_sign_job;

struct ctl_order_run {
	struct ctl_order *o;
	/* DKIM: the signature of message dkim_msg, made by a signer thread
	 * (signq) or here (signq NULL); core is woken when it is ready */
	struct ctl_signq *signq;
	struct mps_sess *core;
	struct ctl_sign_job *job;
	unsigned dkim_msg;
	time_t msg_time;		/**< Date of dkim_msg: a re-open renders the same bytes */
	size_t sig_off;			/**< signature bytes already read */
	uint8_t sig_wait;		/**< job at a thread */
	unsigned nxt;			/**< next message to hand out */
	unsigned cur;			/**< message being rendered */
	unsigned connect_fail;		/**< results at the connect stage */
	unsigned results;		/**< results the session made */
	unsigned render_failed;		/**< messages whose body could not be rendered */
	const char *rcpt[1];
	char mail_from[CTL_ADDR_MAX];	/**< the VERP return path of the message */
	struct smtp_config cfg;		/**< this order's SMTP parameters */
	struct msg_render render;
	char render_err[200];
};

/**
 * Prepare @p run for order @p o and fill @p req with the destination and
 * run->cfg (@p base with the order's TLS policy, implicit TLS, messages per
 * connection and recipients per transaction). The caller sets req's
 * callbacks and user pointer.
 */
void ctl_order_run_init(struct ctl_order_run *run, struct ctl_order *o,
	const struct smtp_config *base, struct mps_req *req);

/**
 * Sign through @p q (the calling thread's queue; the backend polls it)
 * rather than on the session's own thread. Call after ctl_order_run_init,
 * before the session opens.
 */
void ctl_order_run_set_signq(struct ctl_order_run *run, struct ctl_signq *q);

/**
 * The order is over (after its report, or when the backend drops it
 * without one): release a signature still being made.
 */
void ctl_order_run_fini(struct ctl_order_run *run);

/**
 * VERP: the return path of one recipient, so an asynchronous bounce names
 * the recipient in its own envelope. "bounces@example.com" and
 * "Ann.Lee@example.org" give "bounces+Ann.Lee=example.org@example.com"
 * (the qmail/Postfix delimiters '+' and '='; the recipient's local part
 * and domain kept as they are).
 * @return 0, -E2BIG when the local part would pass RFC 5321's 64 octets or
 *         @p cap (the campaign's plain return path is then used), -EINVAL
 *         for an address without '@'
 */
int ctl_verp_address(const char *return_path, const char *rcpt, char *out, size_t cap);

/** Next message as a transaction. @return 0 or -ENOENT (none left). */
int ctl_order_run_next_txn(struct ctl_order_run *run, struct smtp_txn *txn);

/** Turn one recipient result of the session into @p res. */
void ctl_order_run_result(struct ctl_order_run *run,
	const struct smtp_rcpt_result *r, const struct tls_record *tls,
	struct ctl_result *res);

/** A local result for message @p idx (never handed to the session). */
void ctl_order_run_local(struct ctl_order_run *run, unsigned idx,
	enum smtp_outcome out, const char *text, struct ctl_result *res);

/**
 * The session's report into @p rep (@p info NULL: no session was made).
 * @return whether the connection got anywhere (TCP up or a greeting).
 */
int ctl_order_run_report(struct ctl_order_run *run,
	const struct smtp_sess_info *info, const struct tls_record *tls,
	struct ctl_sess_report *rep);

#endif
