/*
 * SMTP client engine (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
 * ENHANCEDSTATUSCODES, CHUNKING and STARTTLS per RFC 3207).
 *
 * The engine does no I/O. Its owner (the glue over TLS/TCP) embeds a
 * struct smtp_sess, feeds it server bytes and transport events, and the
 * session calls out through struct smtp_io_ops. Call order:
 *
 *   smtp_sess_init() -> smtp_sess_start()
 *   then any of smtp_sess_input(), smtp_sess_on_writable(),
 *   smtp_sess_on_tls(), smtp_sess_on_closed(), smtp_sess_tick()
 *   until ops->close() has been called (the session's last act).
 *
 * Every input takes the caller's clock (now_ms, any monotonic origin) so
 * tests drive timeouts with a virtual clock. Outcomes are data: every
 * recipient handed over through ops->next_txn gets exactly one
 * ops->result(), whatever happens to the connection.
 *
 * The ops must not call back into the session (no smtp_sess_* from inside
 * an op). ops->close is always the last thing the session does in the
 * current call, so the owner may free or reuse the session inside it.
 *
 * Protocol choices: with PIPELINING, MAIL, all RCPT and DATA go out
 * without waiting (RFC 2920) and replies are matched in order; BDAT
 * (CHUNKING, enabled by config) is used only when the body size is known,
 * chunks of cfg->bdat_chunk bytes, each chunk waits for its reply.
 * Recipients beyond max_rcpt_per_txn go in following transactions of the
 * same message (body reopened). RSET follows a transaction that failed
 * before the end of data. A 421 at any point ends the session (deferred).
 * On any fatal error (421, timeout, closed, TLS policy, protocol error) the
 * session also drains ops->next_txn and reports every recipient the owner
 * still had for it, so results reach the owner in one place. When 8BITMIME
 * is needed but not offered the message is sent without BODY= (as Postfix
 * does); non-ASCII addresses without SMTPUTF8 fail the message.
 *
 * Also here: the incremental reply parser (smtp_reply_*) and the EHLO
 * extension parser (smtp_ext_*), used by the session and by tests.
 */
#ifndef SMTP_H
#define SMTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------------------ */
/* Reply parser (smtp_reply.c)                                         */
/* ------------------------------------------------------------------ */

/** Longest reply line accepted, code and text, without CRLF (RFC: 512). */
#define SMTP_REPLY_LINE_MAX 1100
/** Most lines in one multi-line reply. */
#define SMTP_REPLY_LINES_MAX 100
/** Bytes of one line kept for inspection (longer lines are truncated). */
#define SMTP_REPLY_KEEP 512
/** Bytes of the whole reply kept as text (lines joined with '\n'). */
#define SMTP_REPLY_TEXT_MAX 512
/** Room for an enhanced status code "c.sss.ddd" plus NUL. */
#define SMTP_ESC_MAX 12

/** Return values of smtp_reply_feed() besides negative errors. */
enum smtp_reply_status {
	SMTP_REPLY_MORE = 0,	/**< all bytes consumed, reply incomplete */
	SMTP_REPLY_LINE = 1,	/**< a non-final line is complete */
	SMTP_REPLY_DONE = 2,	/**< the final line is complete */
};

/**
 * Incremental parser of one SMTP reply at a time, over any fragmentation.
 *
 * Grammar (RFC 5321 4.2): each line is three digits, then '-' (more lines
 * follow), ' ' or end of line (last line). First digit 2..5, the others any
 * digit; all lines of a reply carry the same code. Lines end with CRLF; a
 * bare LF is accepted as a line end (lenient, as most MTAs are); a CR not
 * followed by LF, a NUL byte, a line longer than SMTP_REPLY_LINE_MAX or more
 * than SMTP_REPLY_LINES_MAX lines is a protocol error. Control bytes in
 * the text are kept as '?' so the text is safe to log.
 * Memory is fixed: a hostile server cannot make it buffer more.
 */
struct smtp_reply {
	uint16_t code;			/**< 3-digit code of the reply */
	uint16_t nlines;		/**< lines so far */
	uint16_t pos;			/**< bytes into the current line */
	uint16_t line_len;		/**< stored bytes of current line text */
	uint16_t text_len;		/**< stored bytes of text[] */
	uint8_t  last;			/**< current line is the final one */
	uint8_t  cr;			/**< a CR was seen, LF must follow */
	uint8_t  truncated;		/**< text[] was cut at SMTP_REPLY_TEXT_MAX */
	uint8_t  complete;		/**< previous feed ended a reply */
	char esc[SMTP_ESC_MAX];		/**< enhanced status code or "" */
	char line[SMTP_REPLY_KEEP];	/**< text of the current/last line, NUL-terminated */
	char text[SMTP_REPLY_TEXT_MAX];	/**< full lines joined by '\n', NUL-terminated */
};

/** Prepare @p r for a new reply (also called implicitly after DONE). */
void smtp_reply_init(struct smtp_reply *r);

/**
 * Feed server bytes. Stops after each complete line so the caller can look
 * at r->line (EHLO keywords) and after the final line (r holds the reply
 * until the next feed starts a new one).
 * @param r parser
 * @param buf bytes from the server
 * @param len number of bytes
 * @param consumed set to the bytes used (<= len); on error, to the offset
 *        of the offending byte
 * @return SMTP_REPLY_MORE, SMTP_REPLY_LINE or SMTP_REPLY_DONE;
 *         -EPROTO malformed input (bad code, code mismatch, missing
 *         separator, NUL, stray CR); -EMSGSIZE line too long or too many
 *         lines. After an error the parser must be re-initialised.
 */
int smtp_reply_feed(struct smtp_reply *r, const void *buf, size_t len,
	size_t *consumed);

/**
 * Parse an enhanced status code (RFC 3463, "class.subject.detail") at the
 * start of @p text. The class must equal @p code_class (first digit of the
 * reply code) and be followed by a space or end of text.
 * @return length written to @p out (without NUL), or 0 when absent.
 */
size_t smtp_esc_parse(const char *text, size_t len, int code_class,
	char out[SMTP_ESC_MAX]);

/* ------------------------------------------------------------------ */
/* EHLO extensions (smtp_ext.c)                                        */
/* ------------------------------------------------------------------ */

enum smtp_ext_bit {
	SMTP_EXT_STARTTLS            = 1u << 0,
	SMTP_EXT_PIPELINING          = 1u << 1,
	SMTP_EXT_SIZE                = 1u << 2,
	SMTP_EXT_8BITMIME            = 1u << 3,
	SMTP_EXT_SMTPUTF8            = 1u << 4,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1u << 5,
	SMTP_EXT_CHUNKING            = 1u << 6,
};

struct smtp_ext {
	uint32_t bits;		/**< enum smtp_ext_bit */
	uint64_t size_max;	/**< SIZE parameter; 0 = no limit given */
};

/**
 * Record the extension named by one EHLO reply line (without code and
 * separator), e.g. "SIZE 10240000". Unknown keywords are ignored; case
 * does not matter; a SIZE with a bad number keeps SIZE without a limit.
 */
void smtp_ext_parse_line(struct smtp_ext *ext, const char *line, size_t len);

/* ------------------------------------------------------------------ */
/* Session                                                             */
/* ------------------------------------------------------------------ */

enum smtp_tls_policy {
	SMTP_TLS_NONE = 0,		/**< never STARTTLS */
	SMTP_TLS_OPPORTUNISTIC,		/**< STARTTLS when offered (default) */
	SMTP_TLS_REQUIRED,		/**< no TLS, no MAIL */
	SMTP_TLS_VERIFY,		/**< required; the TLS layer verifies */
	SMTP_TLS_POLICY_LAST
};

/** Session parameters; may be shared by many sessions, must outlive them. */
struct smtp_config {
	const char *helo_name;		/**< EHLO/HELO argument */
	enum smtp_tls_policy tls_policy;
	int implicit_tls;		/**< port 465: TLS before the greeting */
	int use_chunking;		/**< BDAT when CHUNKING is offered */
	unsigned max_rcpt_per_txn;	/**< default 100, at most SMTP_RCPT_MAX */
	unsigned max_msgs_per_conn;	/**< transactions fetched per connection; 0 = no limit */
	uint32_t bdat_chunk;		/**< BDAT chunk size in bytes (default 1 MiB) */
	/* Timeouts in ms; RFC 5321 4.5.3.2 defaults. */
	uint32_t t_greeting;		/**< 5 min */
	uint32_t t_cmd;			/**< EHLO/HELO/STARTTLS/RSET/QUIT, 5 min */
	uint32_t t_tls;			/**< TLS handshake, 5 min */
	uint32_t t_mail;		/**< 5 min */
	uint32_t t_rcpt;		/**< 5 min */
	uint32_t t_data_init;		/**< DATA -> 354, 2 min */
	uint32_t t_data_block;		/**< each body write / BDAT chunk reply, 3 min */
	uint32_t t_data_term;		/**< "." or BDAT LAST -> reply, 10 min */
};

/** Fill @p cfg with the defaults above (helo_name "localhost"). */
void smtp_config_defaults(struct smtp_config *cfg);

/**
 * Whether @p name may be sent as the EHLO name: a fully qualified domain
 * name (receivers with reject_non_fqdn_helo_hostname refuse anything else),
 * which should also be the PTR name of the sending address. At least two
 * dot-separated labels of 1-63 letters, digits and hyphens (no hyphen at
 * either end), at most 253 characters, a top label that is not all digits,
 * and nothing under "localhost". Address literals are refused as well.
 * @param why receives the reason when the name is refused (may be NULL)
 * @return 0, or -EINVAL
 */
int smtp_helo_name_check(const char *name, char *why, size_t whylen);

/**
 * This host's fully qualified name, for an EHLO name nobody configured:
 * gethostname(), and its canonical name (getaddrinfo AI_CANONNAME) when
 * that is not qualified. The result still has to pass smtp_helo_name_check.
 * @return 0, or -ENOENT when the host has no name, -ENAMETOOLONG
 */
int smtp_helo_name_default(char *buf, size_t len);

/** Flags the session passes to smtp_body.open(). */
enum smtp_body_flag {
	SMTP_BODY_DOTSTUFF = 1u << 0,	/**< DATA: source should dot-stuff */
	SMTP_BODY_8BITMIME = 1u << 1,	/**< BODY=8BITMIME was declared */
	SMTP_BODY_SMTPUTF8 = 1u << 2,	/**< SMTPUTF8 was declared */
};

/**
 * Message body source. The text must already be CRLF-terminated lines
 * (the renderer does that); the session never holds the whole body.
 */
struct smtp_body {
	/**
	 * (Re)start the stream from its first byte; called once per SMTP
	 * transaction before MAIL FROM is sent (again when recipients are
	 * split over transactions), so a failure here fails that message
	 * only (recipients SMTP_OUT_FAILED, stage LOCAL).
	 * May be NULL (then the stream must be at its start and raw).
	 * @return 1 when the source dot-stuffs as asked by SMTP_BODY_DOTSTUFF,
	 *         0 when it delivers raw text (the session then dot-stuffs
	 *         itself for DATA), negative errno to fail the transaction.
	 */
	int (*open)(void *src, unsigned flags);
	/** @return bytes read (> 0), 0 at end, -EAGAIN when the source
	 *  has nothing yet (e.g. a signature being made elsewhere: the
	 *  owner calls smtp_sess_on_writable() when it has), another
	 *  negative errno on failure. */
	ssize_t (*read)(void *src, void *buf, size_t cap);
	void *src;
	/** Exact size of the raw (unstuffed) body, or -1 when unknown.
	 *  BDAT is used only when known; SIZE= is sent when known. */
	int64_t size;
};

enum smtp_txn_flag {
	SMTP_TXN_8BIT     = 1u << 0,	/**< body has 8-bit text (BODY=8BITMIME) */
	SMTP_TXN_SMTPUTF8 = 1u << 1,	/**< needs SMTPUTF8 (also set by the session
					     for non-ASCII addresses) */
};

/**
 * One message for several recipients, handed over by ops->next_txn. The
 * strings and the recipient array must stay valid until every recipient
 * of the transaction has had its result (at the latest: the next
 * next_txn call or ops->close).
 */
struct smtp_txn {
	const char *mail_from;		/**< reverse-path without <>; "" = null sender */
	const char *const *rcpt;	/**< forward-paths without <> */
	unsigned n_rcpt;
	unsigned flags;			/**< enum smtp_txn_flag */
	struct smtp_body body;
	void *user;			/**< owner's cookie */
};

enum smtp_outcome {
	SMTP_OUT_DELIVERED = 0,	/**< 2xx after the end of data */
	SMTP_OUT_DEFERRED,	/**< 4xx, transport error, timeout: retry */
	SMTP_OUT_BOUNCED,	/**< 5xx from the server */
	SMTP_OUT_FAILED,	/**< local reason: size, TLS policy, bad address, body */
	SMTP_OUT_LAST
};

enum smtp_stage {
	SMTP_STAGE_CONNECT = 0,	/**< transport before the greeting */
	SMTP_STAGE_GREETING,
	SMTP_STAGE_HELO,	/**< EHLO or HELO */
	SMTP_STAGE_TLS,		/**< STARTTLS, handshake, TLS policy */
	SMTP_STAGE_MAIL,
	SMTP_STAGE_RCPT,
	SMTP_STAGE_DATA,	/**< DATA command (354 expected) */
	SMTP_STAGE_BODY,	/**< body transfer, end of data, BDAT */
	SMTP_STAGE_RSET,
	SMTP_STAGE_LOCAL,	/**< refused before anything was sent */
	SMTP_STAGE_LAST
};

/** Result of one recipient. Valid only during the ops->result call. */
struct smtp_rcpt_result {
	const struct smtp_txn *txn;	/**< the transaction (its user cookie) */
	unsigned rcpt_index;		/**< index into txn->rcpt */
	const char *rcpt;		/**< txn->rcpt[rcpt_index] */
	enum smtp_outcome outcome;
	enum smtp_stage stage;
	int code;			/**< server reply code, 0 when local */
	char esc[SMTP_ESC_MAX];		/**< enhanced status code or "" */
	char text[SMTP_REPLY_TEXT_MAX];	/**< server reply (full lines) or local reason */
	int tls;			/**< the session was under TLS */
};

struct smtp_io_ops {
	/** Queue plaintext for the server, all of it or nothing.
	 *  @return 0, -EAGAIN (nothing queued: the owner calls
	 *  smtp_sess_on_writable() later) or another negative errno (fatal). */
	int (*write)(void *ctx, const void *buf, size_t len);
	/** Begin the TLS handshake now; the owner later calls
	 *  smtp_sess_on_tls(). @return 0 or negative errno (= handshake failed). */
	int (*starttls)(void *ctx);
	/** The session is finished with the transport (called exactly once). */
	void (*close)(void *ctx);
	/** One per recipient, exactly once. */
	void (*result)(void *ctx, const struct smtp_rcpt_result *r);
	/** Fill @p txn with the next message. @return 0, or -ENOENT when there
	 *  is none (the session QUITs); other negative errno: same as -ENOENT. */
	int (*next_txn)(void *ctx, struct smtp_txn *txn);
};

/** Hard cap for max_rcpt_per_txn (bitmaps in the session are sized by it). */
#define SMTP_RCPT_MAX 1024
/** Size of the command / body chunk buffer. */
#define SMTP_OUT_MAX 2048
/** Bytes of the greeting host kept for reasons and reports. */
#define SMTP_HOST_MAX 64

/** What happened on the session, for the owner's TLS report and retries. */
struct smtp_sess_info {
	struct smtp_ext ext;		/**< extensions of the last EHLO */
	char greeting_host[SMTP_HOST_MAX]; /**< first word of the 220 greeting */
	uint32_t msgs_ok;		/**< transactions ended with 2xx */
	uint32_t txns;			/**< transactions started */
	uint32_t discarded;		/**< plaintext bytes dropped around STARTTLS */
	uint8_t starttls_offered;	/**< the plaintext EHLO listed STARTTLS */
	uint8_t tls_active;		/**< handshake completed */
	uint8_t tls_failed;		/**< handshake failed: retry in plaintext on
					     a new connection if policy allows */
	uint8_t plaintext_fallback;	/**< opportunistic and sent in plaintext */
	uint8_t helo_fallback;		/**< EHLO refused, HELO used */
	uint8_t protocol_error;		/**< malformed or unexpected server input */
	uint8_t timed_out;
};

/** States of the client machine (see smtp_client.c). */
enum smtp_state {
	SMTP_ST_INIT = 0,
	SMTP_ST_TLS_IMPLICIT,	/**< implicit TLS handshake */
	SMTP_ST_GREETING,
	SMTP_ST_EHLO,
	SMTP_ST_HELO,
	SMTP_ST_STARTTLS,
	SMTP_ST_TLS_HANDSHAKE,
	SMTP_ST_TXN,		/**< transient: pick next transaction */
	SMTP_ST_RSET,
	SMTP_ST_MAIL,
	SMTP_ST_RCPT,
	SMTP_ST_DATA,
	SMTP_ST_BODY,		/**< streaming the DATA body */
	SMTP_ST_DATA_END,
	SMTP_ST_BDAT,
	SMTP_ST_DRAIN,		/**< swallowing replies of a failed pipeline */
	SMTP_ST_QUIT,
	SMTP_ST_DONE,
	SMTP_ST_LAST
};

/** Name of a state for logs. */
const char *smtp_state_name(enum smtp_state st);
const char *smtp_outcome_name(enum smtp_outcome o);
const char *smtp_stage_name(enum smtp_stage st);

/**
 * One client session. Embed it; fields are private to smtp_client.c.
 * Fixed size, no allocation after init.
 */
struct smtp_sess {
	const struct smtp_config *cfg;
	const struct smtp_io_ops *ops;
	void *ctx;
	uint32_t id;
	enum smtp_state state;
	uint64_t now;
	uint64_t deadline;
	enum smtp_stage dl_stage;	/**< stage blamed on timeout */
	uint32_t outstanding;		/**< commands written, replies due */
	uint32_t drain;			/**< replies to swallow in DRAIN */
	uint8_t in_call;		/**< re-entrancy guard */
	uint8_t closed;			/**< ops->close was called */
	uint8_t need_rset;
	uint8_t have_txn;
	uint8_t pipelining;		/**< pipeline this transaction */
	uint8_t use_bdat;
	uint8_t utf8;			/**< SMTPUTF8 for this transaction */
	uint8_t stuff_self;		/**< the session dot-stuffs the body */
	uint8_t bol;			/**< self-stuffing: at beginning of line */
	uint8_t body_eof;
	uint8_t bdat_last;		/**< current chunk is the LAST one */
	uint8_t bdat_hdr;		/**< current chunk header written */
	uint8_t tail[2];		/**< last two body bytes written */
	uint8_t discard_data;		/**< DATA accepted without recipients */
	uint16_t out_len;		/**< pending bytes in out[] */
	uint8_t out_cmd;		/**< out[] holds a command (expects a reply) */
	uint8_t seq_out;		/**< out[] holds a pipeline-sequence command */
	uint8_t gathering;		/**< out_fmt appends: pipeline commands gathered into one write */
	uint32_t txn_next;		/**< first rcpt of the next batch */
	uint32_t b_first, b_end;	/**< current batch [b_first, b_end) */
	uint32_t n_valid;		/**< recipients of the batch sent */
	uint32_t n_acc;			/**< recipients accepted (2xx RCPT) */
	uint32_t snd_pos;		/**< pipeline: commands written (0 MAIL, RCPTs, DATA) */
	uint32_t rep_pos;		/**< pipeline: replies received */
	uint32_t snd_rcpt, rep_rcpt;	/**< next rcpt index to send / to match */
	uint64_t body_left;		/**< BDAT: bytes of the message left */
	uint64_t chunk_left;		/**< BDAT: bytes of the current chunk left */
	uint32_t msgs;			/**< transactions fetched on this connection */
	struct smtp_txn txn;
	uint64_t acc[SMTP_RCPT_MAX / 64];	/**< RCPT accepted */
	uint64_t done[SMTP_RCPT_MAX / 64];	/**< result emitted */
	struct smtp_sess_info info;
	struct smtp_reply reply;
	char out[SMTP_OUT_MAX];
};

/**
 * Prepare a session; no I/O yet.
 * @param s session storage
 * @param cfg configuration (shared, must outlive the session)
 * @param ops callbacks (shared)
 * @param ctx owner's context passed to every op
 * @param id session id for logs
 * @return 0, or -EINVAL (NULL argument, missing op, bad config value)
 */
int smtp_sess_init(struct smtp_sess *s, const struct smtp_config *cfg,
	const struct smtp_io_ops *ops, void *ctx, uint32_t id);

/** The transport is connected: wait for the greeting (or call
 *  ops->starttls first under implicit TLS). */
void smtp_sess_start(struct smtp_sess *s, uint64_t now_ms);

/**
 * Plaintext from the server, any fragmentation. Complete replies are
 * acted on in order; what the session has to write in response is written
 * when the call returns, so bytes of this same chunk can never count as a
 * reply to a command sent because of it (a server answering ahead of time
 * is a protocol error). In the TLS handshake states every byte is dropped
 * and counted in smtp_sess_info()->discarded (RFC 3207, CVE-2011-0411).
 * A malformed or oversized reply ends the session: recipients deferred.
 */
void smtp_sess_input(struct smtp_sess *s, const void *buf, size_t len,
	uint64_t now_ms);

/** The transport has room again after ops->write returned -EAGAIN. */
void smtp_sess_on_writable(struct smtp_sess *s, uint64_t now_ms);

/**
 * The TLS handshake started by ops->starttls ended.
 * @param ok non-zero when the handshake (and verification) succeeded
 * @param why reason text on failure (e.g. "certificate expired"), may be NULL
 */
void smtp_sess_on_tls(struct smtp_sess *s, int ok, const char *why,
	uint64_t now_ms);

/** The transport closed, reset or timed out (@p err negative errno or 0). */
void smtp_sess_on_closed(struct smtp_sess *s, int err, uint64_t now_ms);

/** Advance the clock; fires the pending timeout when due. */
void smtp_sess_tick(struct smtp_sess *s, uint64_t now_ms);

/** @return the absolute time (ms) of the next timeout, UINT64_MAX if none. */
uint64_t smtp_sess_deadline(const struct smtp_sess *s);

/** @return non-zero once ops->close has been called. */
int smtp_sess_done(const struct smtp_sess *s);

/** @return what happened on the session (valid until re-init). */
const struct smtp_sess_info *smtp_sess_info(const struct smtp_sess *s);

#endif
