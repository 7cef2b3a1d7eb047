/*
 * SMTP client state machine. The owner feeds events (smtp_sess_input,
 * on_writable, on_tls, on_closed, tick); each public entry runs the
 * machine and then sess_leave() flushes what can be written and, once the
 * session reached DONE, calls ops->close as its very last act.
 *
 * sess_enter() performs the entry action of a state and may name the next
 * state (trampolined by sess_goto, no recursion); sess_reply() reads a
 * complete server reply and picks the next state; sess_produce() fills the
 * output buffer with the next command or body chunk the current state
 * allows and sess_pump() writes it, honouring -EAGAIN.
 *
 * Pipelined transactions are a sequence MAIL, RCPT..., [DATA]: snd_pos
 * counts commands written, replies are matched in order against the same
 * sequence. Recipients of the current batch carry two bits: accepted by
 * RCPT and result emitted, so every recipient gets exactly one result
 * whatever breaks.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mp_log.h"
#include "smtp.h"

#define SMTP_PATH_MAX 256
#define NO_DEADLINE UINT64_MAX
/* bound on consecutive state changes in one call (each one consumes a
 * transaction or a reply, so this is never reached by a sane owner) */
#define GOTO_MAX 100000
#define DRAIN_TXN_MAX 1000000

#define LOGD(s, fmt, ...) MP_LOG(MP_LOG_DEBUG, "smtp", "sess=%u " fmt, (s)->id, ##__VA_ARGS__)
#define LOGW(s, fmt, ...) MP_LOG(MP_LOG_WARN, "smtp", "sess=%u " fmt, (s)->id, ##__VA_ARGS__)

static const char *const state_names[SMTP_ST_LAST] = {
	[SMTP_ST_INIT] = "init",
	[SMTP_ST_TLS_IMPLICIT] = "tls_implicit",
	[SMTP_ST_GREETING] = "greeting",
	[SMTP_ST_EHLO] = "ehlo",
	[SMTP_ST_HELO] = "helo",
	[SMTP_ST_STARTTLS] = "starttls",
	[SMTP_ST_TLS_HANDSHAKE] = "tls_handshake",
	[SMTP_ST_TXN] = "txn",
	[SMTP_ST_RSET] = "rset",
	[SMTP_ST_MAIL] = "mail",
	[SMTP_ST_RCPT] = "rcpt",
	[SMTP_ST_DATA] = "data",
	[SMTP_ST_BODY] = "body",
	[SMTP_ST_DATA_END] = "data_end",
	[SMTP_ST_BDAT] = "bdat",
	[SMTP_ST_DRAIN] = "drain",
	[SMTP_ST_QUIT] = "quit",
	[SMTP_ST_DONE] = "done",
};

static const char *const outcome_names[SMTP_OUT_LAST] = {
	"delivered", "deferred", "bounced", "failed",
};

static const char *const stage_names[SMTP_STAGE_LAST] = {
	"connect", "greeting", "helo", "tls", "mail", "rcpt", "data", "body",
	"rset", "local",
};

const char *
smtp_state_name(enum smtp_state st)
{
	return (unsigned)st < SMTP_ST_LAST ? state_names[st] : "?";
}

const char *
smtp_outcome_name(enum smtp_outcome o)
{
	return (unsigned)o < SMTP_OUT_LAST ? outcome_names[o] : "?";
}

const char *
smtp_stage_name(enum smtp_stage st)
{
	return (unsigned)st < SMTP_STAGE_LAST ? stage_names[st] : "?";
}

/* What the pending out[] holds decides what happens once it is written. */
enum out_kind {
	OUT_CMD = 0,	/* a single command, one reply due */
	OUT_SEQ_MAIL,
	OUT_SEQ_RCPT,
	OUT_SEQ_DATA,
	OUT_BODY,
	OUT_TERM,	/* "." ending DATA */
	OUT_BDAT_HDR,
	OUT_BDAT_DATA,
};

void
smtp_config_defaults(struct smtp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->helo_name = "localhost";
	cfg->tls_policy = SMTP_TLS_OPPORTUNISTIC;
	cfg->max_rcpt_per_txn = 100;
	cfg->bdat_chunk = 1u << 20;
	cfg->t_greeting = 5 * 60 * 1000;
	cfg->t_cmd = 5 * 60 * 1000;
	cfg->t_tls = 5 * 60 * 1000;
	cfg->t_mail = 5 * 60 * 1000;
	cfg->t_rcpt = 5 * 60 * 1000;
	cfg->t_data_init = 2 * 60 * 1000;
	cfg->t_data_block = 3 * 60 * 1000;
	cfg->t_data_term = 10 * 60 * 1000;
}

static int
helo_refuse(char *why, size_t whylen, const char *fmt, const char *name)
{
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, fmt, name);
	return -EINVAL;
}

int
smtp_helo_name_check(const char *name, char *why, size_t whylen)
{
	const char *label, *p;
	size_t n;
	unsigned labels = 0;
	int digits_only = 1;

	if (name == NULL || name[0] == '\0')
		return helo_refuse(why, whylen, "the EHLO name is empty%s", "");
	n = strlen(name);
	if (name[0] == '[')
		return helo_refuse(why, whylen, "'%.100s' is an address literal, not a host name", name);
	if (n > 253)
		return helo_refuse(why, whylen, "'%.60s...' is longer than 253 characters", name);
	for (label = name; ; label = p + 1) {
		size_t len;

		p = strchr(label, '.');
		len = p != NULL ? (size_t)(p - label) : strlen(label);
		if (len == 0 || len > 63)
			return helo_refuse(why, whylen, "'%.100s' has an empty or over-long label", name);
		if (label[0] == '-' || label[len - 1] == '-')
			return helo_refuse(why, whylen, "'%.100s' has a label starting or ending with '-'", name);
		digits_only = 1;
		for (size_t i = 0; i < len; i++) {
			char c = label[i];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-'))
				return helo_refuse(why, whylen,
					"'%.100s' holds a character other than letters, digits, '-' and '.'", name);
			if (c < '0' || c > '9')
				digits_only = 0;
		}
		labels++;
		if (p == NULL)
			break;
	}
	if (labels < 2)
		return helo_refuse(why, whylen, "'%.100s' is not fully qualified (no domain)", name);
	if (digits_only)
		return helo_refuse(why, whylen, "'%.100s' ends in a numeric label (an address?)", name);
	if (strcasecmp(label, "localhost") == 0 || strcasecmp(name, "localhost.localdomain") == 0)
		return helo_refuse(why, whylen, "'%.100s' names the local host, not this one", name);
	return 0;
}

int
smtp_helo_name_default(char *buf, size_t len)
{
	struct addrinfo hints, *ai = NULL;
	char host[256];

	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		return -ENOENT;
	host[sizeof(host) - 1] = '\0';
	if (strchr(host, '.') == NULL) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_flags = AI_CANONNAME;
		hints.ai_family = AF_UNSPEC;
		if (getaddrinfo(host, NULL, &hints, &ai) == 0 && ai != NULL &&
		    ai->ai_canonname != NULL && strlen(ai->ai_canonname) < sizeof(host))
			snprintf(host, sizeof(host), "%s", ai->ai_canonname);
		if (ai != NULL)
			freeaddrinfo(ai);
	}
	if (strlen(host) >= len)
		return -ENAMETOOLONG;
	snprintf(buf, len, "%s", host);
	return 0;
}

static unsigned
rcpt_cap(const struct smtp_sess *s)
{
	return s->cfg->max_rcpt_per_txn ? s->cfg->max_rcpt_per_txn : 100;
}

int
smtp_sess_init(struct smtp_sess *s, const struct smtp_config *cfg,
	const struct smtp_io_ops *ops, void *ctx, uint32_t id)
{
	if (s == NULL || cfg == NULL || ops == NULL || ops->write == NULL ||
	    ops->starttls == NULL || ops->close == NULL || ops->result == NULL ||
	    ops->next_txn == NULL)
		return -EINVAL;
	if (cfg->helo_name == NULL || strlen(cfg->helo_name) > 255 ||
	    strpbrk(cfg->helo_name, "\r\n") != NULL ||
	    cfg->max_rcpt_per_txn > SMTP_RCPT_MAX ||
	    (unsigned)cfg->tls_policy >= SMTP_TLS_POLICY_LAST)
		return -EINVAL;
	memset(s, 0, offsetof(struct smtp_sess, reply));
	s->cfg = cfg;
	s->ops = ops;
	s->ctx = ctx;
	s->id = id;
	s->state = SMTP_ST_INIT;
	s->deadline = NO_DEADLINE;
	smtp_reply_init(&s->reply);
	s->out_len = 0;
	return 0;
}

/* ---------------------------------------------------------------- */
/* results                                                            */
/* ---------------------------------------------------------------- */

static int
bit_get(const uint64_t *b, unsigned i)
{
	return (b[i / 64] >> (i % 64)) & 1;
}

static void
bit_set(uint64_t *b, unsigned i)
{
	b[i / 64] |= 1ull << (i % 64);
}

static const char *
host(const struct smtp_sess *s)
{
	return s->info.greeting_host[0] ? s->info.greeting_host : "server";
}

static enum smtp_outcome
outcome_of(int code)
{
	switch (code / 100) {
	case 2:
		return SMTP_OUT_DELIVERED;
	case 5:
		return SMTP_OUT_BOUNCED;
	default:
		return SMTP_OUT_DEFERRED;
	}
}

static enum smtp_stage
stage_of(enum smtp_state st)
{
	switch (st) {
	case SMTP_ST_INIT:
		return SMTP_STAGE_CONNECT;
	case SMTP_ST_TLS_IMPLICIT:
	case SMTP_ST_STARTTLS:
	case SMTP_ST_TLS_HANDSHAKE:
		return SMTP_STAGE_TLS;
	case SMTP_ST_GREETING:
		return SMTP_STAGE_GREETING;
	case SMTP_ST_EHLO:
	case SMTP_ST_HELO:
		return SMTP_STAGE_HELO;
	case SMTP_ST_TXN:
		return SMTP_STAGE_LOCAL;
	case SMTP_ST_RSET:
		return SMTP_STAGE_RSET;
	case SMTP_ST_MAIL:
	case SMTP_ST_DRAIN:
		return SMTP_STAGE_MAIL;
	case SMTP_ST_RCPT:
		return SMTP_STAGE_RCPT;
	case SMTP_ST_DATA:
		return SMTP_STAGE_DATA;
	case SMTP_ST_BODY:
	case SMTP_ST_DATA_END:
	case SMTP_ST_BDAT:
		return SMTP_STAGE_BODY;
	case SMTP_ST_QUIT:
	case SMTP_ST_DONE:
		return SMTP_STAGE_CONNECT;
	default:
		abort();
	}
}

/* A result template: outcome, stage and text shared by several recipients. */
static void
res_from_reply(struct smtp_sess *s, struct smtp_rcpt_result *r,
	enum smtp_outcome o, enum smtp_stage st)
{
	r->outcome = o;
	r->stage = st;
	r->code = s->reply.code;
	memcpy(r->esc, s->reply.esc, sizeof(r->esc));
	memcpy(r->text, s->reply.text, s->reply.text_len + 1);
}

static void __attribute__((format(printf, 4, 5)))
res_local(struct smtp_rcpt_result *r, enum smtp_outcome o, enum smtp_stage st,
	const char *fmt, ...)
{
	va_list ap;

	r->outcome = o;
	r->stage = st;
	r->code = 0;
	r->esc[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

/* Report recipient @p i of the current transaction once. */
static void
emit(struct smtp_sess *s, struct smtp_rcpt_result *r, unsigned i)
{
	if (i >= s->b_first && i < s->b_end) {
		if (bit_get(s->done, i - s->b_first))
			return;
		bit_set(s->done, i - s->b_first);
	}
	r->txn = &s->txn;
	r->rcpt_index = i;
	r->rcpt = s->txn.rcpt != NULL ? s->txn.rcpt[i] : NULL;
	r->tls = s->info.tls_active;
	LOGD(s, "result rcpt=%s outcome=%s stage=%s code=%d",
		r->rcpt ? r->rcpt : "?", smtp_outcome_name(r->outcome),
		smtp_stage_name(r->stage), r->code);
	s->ops->result(s->ctx, r);
}

/* Recipients of the batch accepted by RCPT and still without a result. */
static void
emit_accepted(struct smtp_sess *s, struct smtp_rcpt_result *r)
{
	for (unsigned i = s->b_first; i < s->b_end; i++)
		if (bit_get(s->acc, i - s->b_first))
			emit(s, r, i);
}

/* Every recipient of the current transaction from index @p from on that
 * has no result yet (the batch's done bits are honoured by emit). */
static void
emit_txn_rest(struct smtp_sess *s, struct smtp_rcpt_result *r, unsigned from)
{
	if (!s->have_txn)
		return;
	for (unsigned i = from; i < s->txn.n_rcpt; i++)
		emit(s, r, i);
	s->txn_next = s->txn.n_rcpt;
}

/*
 * The session cannot go on: every recipient still pending, in this
 * transaction and in all the owner still has for this session, gets @p r.
 */
static void
sess_fail_all(struct smtp_sess *s, struct smtp_rcpt_result *r)
{
	unsigned n;

	LOGD(s, "fail_all outcome=%s stage=%s code=%d",
		smtp_outcome_name(r->outcome), smtp_stage_name(r->stage), r->code);
	emit_txn_rest(s, r, s->b_first);
	s->have_txn = 0;
	s->b_first = s->b_end = 0;
	for (n = 0; n < DRAIN_TXN_MAX; n++) {
		if (s->ops->next_txn(s->ctx, &s->txn) != 0)
			break;
		s->have_txn = 1;
		emit_txn_rest(s, r, 0);
		s->have_txn = 0;
	}
	s->out_len = 0;
}

/* ---------------------------------------------------------------- */
/* output                                                             */
/* ---------------------------------------------------------------- */

static void
set_deadline(struct smtp_sess *s, uint32_t ms, enum smtp_stage st)
{
	s->deadline = s->now + ms;
	s->dl_stage = st;
}

static void __attribute__((format(printf, 3, 4)))
out_fmt(struct smtp_sess *s, enum out_kind kind, const char *fmt, ...)
{
	size_t off = s->gathering ? s->out_len : 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(s->out + off, sizeof(s->out) - off, fmt, ap);
	va_end(ap);
	if (n < 0 || off + (size_t)n >= sizeof(s->out)) {
		/* gathering: no room left, the command waits for the next write */
		if (s->gathering) {
			s->out[off] = '\0';
			return;
		}
		/* inputs are length-checked before, so this cannot be cut */
		abort();
	}
	s->out_len = (uint16_t)(off + (size_t)n);
	s->out_cmd = (uint8_t)kind;
	LOGD(s, "send cmd=\"%.*s\"", n > 2 ? n - 2 : n, s->out + off);
}

static int
addr_ok(const char *a, int *utf8)
{
	size_t n = 0;

	if (a == NULL)
		return 0;
	for (; a[n] != '\0'; n++) {
		unsigned char c = (unsigned char)a[n];

		if (n >= SMTP_PATH_MAX || c < 0x21 || c == 0x7f || c == '<' || c == '>')
			return 0;
		if (c >= 0x80)
			*utf8 = 1;
	}
	return 1;
}

static unsigned
next_pending(const struct smtp_sess *s, unsigned i)
{
	while (i < s->b_end && bit_get(s->done, i - s->b_first))
		i++;
	return i;
}

static void sess_goto(struct smtp_sess *s, enum smtp_state st);

/* The body source failed: the transaction cannot be completed on this
 * connection (the server would take a truncated message). */
static void
sess_body_error(struct smtp_sess *s, const char *why)
{
	struct smtp_rcpt_result r;

	res_local(&r, SMTP_OUT_FAILED, SMTP_STAGE_BODY, "message body: %s", why);
	emit_accepted(s, &r);
	res_local(&r, SMTP_OUT_DEFERRED, SMTP_STAGE_BODY,
		"session aborted after a body source error");
	sess_fail_all(s, &r);
	sess_goto(s, SMTP_ST_DONE);
}

static int
open_body(struct smtp_sess *s, unsigned flags)
{
	if (s->txn.body.open == NULL)
		return 0;
	return s->txn.body.open(s->txn.body.src, flags);
}

static unsigned
body_flags(const struct smtp_sess *s)
{
	unsigned f = 0;

	if ((s->txn.flags & SMTP_TXN_8BIT) && (s->info.ext.bits & SMTP_EXT_8BITMIME))
		f |= SMTP_BODY_8BITMIME;
	if (s->utf8)
		f |= SMTP_BODY_SMTPUTF8;
	return f;
}

/* Read one chunk of the DATA body into out[], dot-stuffing it when the
 * source does not. @return bytes ready, 0 at end, negative on error. */
static ssize_t
body_read_data(struct smtp_sess *s)
{
	/* Stuffing in place: read at off, expand towards 0. A '.' is added
	 * only at line starts (at most 1 + n/3 of them), so with off =
	 * cap/4 + 2 the write index never passes the read index. */
	size_t off = s->stuff_self ? SMTP_OUT_MAX / 4 + 2 : 0;
	size_t cap = SMTP_OUT_MAX - off, j = 0;
	ssize_t n;

	n = s->txn.body.read(s->txn.body.src, s->out + off, cap);
	if (n <= 0 || (size_t)n > cap)
		return n > 0 ? -EOVERFLOW : n;
	if (!s->stuff_self)
		return n;
	for (size_t k = 0; k < (size_t)n; k++) {
		char c = s->out[off + k];

		if (s->bol && c == '.')
			s->out[j++] = '.';
		s->out[j++] = c;
		s->bol = c == '\n';
	}
	return (ssize_t)j;
}

/* Fill out[] with what the current state may send now. @return 1 if so. */
static int
sess_produce(struct smtp_sess *s)
{
	ssize_t n;

	switch (s->state) {
	case SMTP_ST_MAIL:
	case SMTP_ST_RCPT:
	case SMTP_ST_DATA:
		if (s->snd_pos == 0) {
			if (s->state != SMTP_ST_MAIL)
				return 0;
			char size[32] = "";
			if ((s->info.ext.bits & SMTP_EXT_SIZE) && s->txn.body.size >= 0)
				snprintf(size, sizeof(size), " SIZE=%" PRId64, s->txn.body.size);
			out_fmt(s, OUT_SEQ_MAIL, "MAIL FROM:<%s>%s%s%s\r\n", s->txn.mail_from,
				size, body_flags(s) & SMTP_BODY_8BITMIME ? " BODY=8BITMIME" : "",
				s->utf8 ? " SMTPUTF8" : "");
			return 1;
		}
		if (s->snd_rcpt < s->b_end) {
			if (!s->pipelining && (s->state != SMTP_ST_RCPT || s->outstanding))
				return 0;
			out_fmt(s, OUT_SEQ_RCPT, "RCPT TO:<%s>\r\n", s->txn.rcpt[s->snd_rcpt]);
			return 1;
		}
		if (!s->use_bdat && s->snd_pos == s->n_valid + 1 &&
		    (s->pipelining || (s->state == SMTP_ST_DATA && s->outstanding == 0))) {
			out_fmt(s, OUT_SEQ_DATA, "DATA\r\n");
			return 1;
		}
		return 0;
	case SMTP_ST_BODY:
		if (!s->body_eof) {
			n = body_read_data(s);
			if (n == -EAGAIN)
				return 0;	/* the source wakes us (smtp_sess_on_writable) */
			if (n < 0) {
				sess_body_error(s, "source read failed");
				return 0;
			}
			if (n > 0) {
				s->out_len = (uint16_t)n;
				s->out_cmd = OUT_BODY;
				return 1;
			}
			s->body_eof = 1;
		}
		if (s->tail[0] == '\r' && s->tail[1] == '\n')
			out_fmt(s, OUT_TERM, ".\r\n");
		else
			out_fmt(s, OUT_TERM, "\r\n.\r\n");
		return 1;
	case SMTP_ST_BDAT:
		if (!s->bdat_hdr) {
			uint64_t c = s->cfg->bdat_chunk ? s->cfg->bdat_chunk : 1u << 20;

			if (c > s->body_left)
				c = s->body_left;
			s->chunk_left = c;
			s->bdat_last = c == s->body_left;
			out_fmt(s, OUT_BDAT_HDR, "BDAT %" PRIu64 "%s\r\n", c,
				s->bdat_last ? " LAST" : "");
			return 1;
		}
		if (s->chunk_left == 0)
			return 0;
		n = s->txn.body.read(s->txn.body.src, s->out,
			s->chunk_left < SMTP_OUT_MAX ? s->chunk_left : SMTP_OUT_MAX);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0 || (uint64_t)n > s->chunk_left || n > SMTP_OUT_MAX) {
			sess_body_error(s, n == 0 ? "shorter than its declared size" :
				"source read failed");
			return 0;
		}
		s->out_len = (uint16_t)n;
		s->out_cmd = OUT_BDAT_DATA;
		return 1;
	default:
		return 0;
	}
}

/* out[] was written: account for it. */
static void
sess_written(struct smtp_sess *s)
{
	size_t n = s->out_len;

	s->out_len = 0;
	switch ((enum out_kind)s->out_cmd) {
	case OUT_CMD:
		s->outstanding++;
		break;
	case OUT_SEQ_RCPT:
		s->snd_rcpt = next_pending(s, s->snd_rcpt + 1);
		/* fall through */
	case OUT_SEQ_MAIL:
	case OUT_SEQ_DATA:
		s->outstanding++;
		s->snd_pos++;
		break;
	case OUT_BODY:
		if (n >= 2) {
			s->tail[0] = s->out[n - 2];
			s->tail[1] = s->out[n - 1];
		} else {
			s->tail[0] = s->tail[1];
			s->tail[1] = s->out[0];
		}
		set_deadline(s, s->cfg->t_data_block, SMTP_STAGE_BODY);
		break;
	case OUT_TERM:
		s->outstanding++;
		sess_goto(s, SMTP_ST_DATA_END);
		break;
	case OUT_BDAT_HDR:
		s->outstanding++;
		s->bdat_hdr = 1;
		goto chunk;
	case OUT_BDAT_DATA:
		s->chunk_left -= n;
		s->body_left -= n;
chunk:
		if (s->chunk_left == 0 && s->bdat_last)
			set_deadline(s, s->cfg->t_data_term, SMTP_STAGE_BODY);
		else
			set_deadline(s, s->cfg->t_data_block, SMTP_STAGE_BODY);
		break;
	default:
		abort();
	}
}

static int
out_is_seq(uint8_t kind)
{
	return kind == OUT_SEQ_MAIL || kind == OUT_SEQ_RCPT || kind == OUT_SEQ_DATA;
}

/*
 * With PIPELINING, MAIL, the RCPTs and DATA go out in as few writes as
 * out[] allows (RFC 2920 3.1), so that a TLS transport makes one record
 * and one segment of them, not one per command. Each command is accounted
 * as it is appended (what sess_produce() picks next depends on it); the
 * caller undoes that if the write does not happen.
 */
static void
pipeline_gather(struct smtp_sess *s)
{
	uint16_t len;

	s->gathering = 1;
	for (;;) {
		len = s->out_len;
		sess_written(s);	/* accounts the last command, clears out_len */
		s->out_len = len;
		if (!sess_produce(s) || s->out_len == len)
			break;
		/* these states produce nothing but pipeline commands */
		if (!out_is_seq(s->out_cmd))
			abort();
	}
	s->gathering = 0;
}

/* Write as much as the state allows until the transport says -EAGAIN. */
static void
sess_pump(struct smtp_sess *s)
{
	struct smtp_rcpt_result r;
	uint32_t snd_pos = 0, snd_rcpt = 0, outstanding = 0;
	int rc, gathered;

	while (s->state != SMTP_ST_DONE) {
		if (s->out_len == 0 && !sess_produce(s))
			return;
		if (s->out_len == 0)
			return;
		gathered = s->pipelining && out_is_seq(s->out_cmd);
		if (gathered) {
			snd_pos = s->snd_pos;
			snd_rcpt = s->snd_rcpt;
			outstanding = s->outstanding;
			pipeline_gather(s);
		}
		rc = s->ops->write(s->ctx, s->out, s->out_len);
		if (rc == -EAGAIN) {
			if (gathered) {
				/* nothing went: produce the same commands again later */
				s->snd_pos = snd_pos;
				s->snd_rcpt = snd_rcpt;
				s->outstanding = outstanding;
				s->out_len = 0;
			}
			return;
		}
		if (rc < 0) {
			res_local(&r, SMTP_OUT_DEFERRED, stage_of(s->state),
				"write to %s failed: %s", host(s), strerror(-rc));
			emit_accepted(s, &r);
			sess_fail_all(s, &r);
			sess_goto(s, SMTP_ST_DONE);
			return;
		}
		if (gathered)
			s->out_len = 0;	/* accounted while gathering */
		else
			sess_written(s);
	}
}

/* ---------------------------------------------------------------- */
/* states                                                             */
/* ---------------------------------------------------------------- */

/* Fail every recipient of the transaction (local reason) and move on. */
static void __attribute__((format(printf, 3, 4)))
fail_txn(struct smtp_sess *s, enum smtp_stage st, const char *fmt, ...)
{
	struct smtp_rcpt_result r;
	va_list ap;

	r.outcome = SMTP_OUT_FAILED;
	r.stage = st;
	r.code = 0;
	r.esc[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(r.text, sizeof(r.text), fmt, ap);
	va_end(ap);
	emit_txn_rest(s, &r, s->txn_next);
	s->have_txn = 0;
}

/* TXN entry: pick the next batch or transaction. @return next state. */
static enum smtp_state
enter_txn(struct smtp_sess *s)
{
	struct smtp_rcpt_result r;
	unsigned i, cap = rcpt_cap(s);
	int utf8 = 0;

	if (s->need_rset)
		return SMTP_ST_RSET;
	if (!s->have_txn || s->txn_next >= s->txn.n_rcpt) {
		s->have_txn = 0;
		s->b_first = s->b_end = 0;
		if (s->cfg->max_msgs_per_conn && s->msgs >= s->cfg->max_msgs_per_conn)
			return SMTP_ST_QUIT;
		memset(&s->txn, 0, sizeof(s->txn));
		if (s->ops->next_txn(s->ctx, &s->txn) != 0)
			return SMTP_ST_QUIT;
		s->have_txn = 1;
		s->msgs++;
		s->txn_next = 0;
		if (s->txn.n_rcpt == 0)
			return SMTP_ST_TXN;
		if (s->txn.rcpt == NULL || s->txn.body.read == NULL) {
			fail_txn(s, SMTP_STAGE_LOCAL, "invalid transaction");
			return SMTP_ST_TXN;
		}
		if (!addr_ok(s->txn.mail_from, &utf8)) {
			fail_txn(s, SMTP_STAGE_LOCAL, "invalid sender address");
			return SMTP_ST_TXN;
		}
		for (i = 0; i < s->txn.n_rcpt; i++)
			if (s->txn.rcpt[i] != NULL)
				addr_ok(s->txn.rcpt[i], &utf8);
		s->utf8 = utf8 || (s->txn.flags & SMTP_TXN_SMTPUTF8);
		if (s->utf8 && !(s->info.ext.bits & SMTP_EXT_SMTPUTF8)) {
			fail_txn(s, SMTP_STAGE_LOCAL,
				"SMTPUTF8 required but not offered by %s", host(s));
			return SMTP_ST_TXN;
		}
		if ((s->info.ext.bits & SMTP_EXT_SIZE) && s->info.ext.size_max &&
		    s->txn.body.size >= 0 && (uint64_t)s->txn.body.size > s->info.ext.size_max) {
			fail_txn(s, SMTP_STAGE_LOCAL,
				"message size %" PRId64 " exceeds the limit %" PRIu64 " of %s",
				s->txn.body.size, s->info.ext.size_max, host(s));
			return SMTP_ST_TXN;
		}
	}
	/* next batch of at most cap recipients */
	s->b_first = s->txn_next;
	s->b_end = s->txn.n_rcpt - s->b_first > cap ? s->b_first + cap : s->txn.n_rcpt;
	s->txn_next = s->b_end;
	memset(s->acc, 0, sizeof(s->acc));
	memset(s->done, 0, sizeof(s->done));
	s->n_acc = s->n_valid = 0;
	res_local(&r, SMTP_OUT_FAILED, SMTP_STAGE_LOCAL, "invalid recipient address");
	for (i = s->b_first; i < s->b_end; i++) {
		if (addr_ok(s->txn.rcpt[i], &utf8))
			s->n_valid++;
		else
			emit(s, &r, i);
	}
	if (s->n_valid == 0)
		return SMTP_ST_TXN;
	s->pipelining = !!(s->info.ext.bits & SMTP_EXT_PIPELINING);
	s->use_bdat = s->cfg->use_chunking && (s->info.ext.bits & SMTP_EXT_CHUNKING) &&
		s->txn.body.size >= 0;
	/* open (rewind) the body before anything goes on the wire, so a
	 * source that cannot render fails this message only */
	{
		unsigned f = body_flags(s) | (s->use_bdat ? 0 : SMTP_BODY_DOTSTUFF);
		int rc = open_body(s, f);

		if (rc < 0) {
			s->txn_next = s->b_first;
			fail_txn(s, SMTP_STAGE_LOCAL, "message body could not be opened: %s",
				strerror(-rc));
			return SMTP_ST_TXN;
		}
		s->stuff_self = (f & SMTP_BODY_DOTSTUFF) && rc == 0;
	}
	s->snd_pos = s->rep_pos = 0;
	s->snd_rcpt = s->rep_rcpt = next_pending(s, s->b_first);
	s->discard_data = 0;
	s->info.txns++;
	return SMTP_ST_MAIL;
}

/* A STARTTLS handshake or implicit TLS could not be set up. */
static enum smtp_state
tls_failed(struct smtp_sess *s, const char *why)
{
	struct smtp_rcpt_result r;

	s->info.tls_failed = 1;
	res_local(&r, SMTP_OUT_DEFERRED, SMTP_STAGE_TLS, "TLS handshake with %s failed: %s",
		host(s), why && why[0] ? why : "unknown reason");
	sess_fail_all(s, &r);
	return SMTP_ST_DONE;
}

static enum smtp_state
enter_body(struct smtp_sess *s)
{
	s->bol = 1;
	s->body_eof = 0;
	s->tail[0] = '\r';
	s->tail[1] = '\n';
	return SMTP_ST_LAST;
}

/* Entry action of s->state. @return the next state, SMTP_ST_LAST to stay. */
static enum smtp_state
sess_enter(struct smtp_sess *s)
{
	const struct smtp_config *c = s->cfg;

	switch (s->state) {
	case SMTP_ST_INIT:
		return SMTP_ST_LAST;
	case SMTP_ST_TLS_IMPLICIT:
	case SMTP_ST_TLS_HANDSHAKE:
		smtp_reply_init(&s->reply);
		s->outstanding = 0;
		set_deadline(s, c->t_tls, SMTP_STAGE_TLS);
		if (s->ops->starttls(s->ctx) < 0)
			return tls_failed(s, "could not start the handshake");
		return SMTP_ST_LAST;
	case SMTP_ST_GREETING:
		s->outstanding = 1;
		set_deadline(s, c->t_greeting, SMTP_STAGE_GREETING);
		return SMTP_ST_LAST;
	case SMTP_ST_EHLO:
		memset(&s->info.ext, 0, sizeof(s->info.ext));
		out_fmt(s, OUT_CMD, "EHLO %s\r\n", c->helo_name);
		set_deadline(s, c->t_cmd, SMTP_STAGE_HELO);
		return SMTP_ST_LAST;
	case SMTP_ST_HELO:
		memset(&s->info.ext, 0, sizeof(s->info.ext));
		out_fmt(s, OUT_CMD, "HELO %s\r\n", c->helo_name);
		set_deadline(s, c->t_cmd, SMTP_STAGE_HELO);
		return SMTP_ST_LAST;
	case SMTP_ST_STARTTLS:
		out_fmt(s, OUT_CMD, "STARTTLS\r\n");
		set_deadline(s, c->t_cmd, SMTP_STAGE_TLS);
		return SMTP_ST_LAST;
	case SMTP_ST_TXN:
		s->deadline = NO_DEADLINE;
		return enter_txn(s);
	case SMTP_ST_RSET:
		out_fmt(s, OUT_CMD, "RSET\r\n");
		set_deadline(s, c->t_cmd, SMTP_STAGE_RSET);
		return SMTP_ST_LAST;
	case SMTP_ST_MAIL:
		set_deadline(s, c->t_mail, SMTP_STAGE_MAIL);
		return SMTP_ST_LAST;
	case SMTP_ST_RCPT:
		set_deadline(s, c->t_rcpt, SMTP_STAGE_RCPT);
		return SMTP_ST_LAST;
	case SMTP_ST_DATA:
		set_deadline(s, c->t_data_init, SMTP_STAGE_DATA);
		return SMTP_ST_LAST;
	case SMTP_ST_BODY:
		set_deadline(s, c->t_data_block, SMTP_STAGE_BODY);
		return enter_body(s);
	case SMTP_ST_DATA_END:
		set_deadline(s, c->t_data_term, SMTP_STAGE_BODY);
		return SMTP_ST_LAST;
	case SMTP_ST_BDAT:
		set_deadline(s, c->t_data_block, SMTP_STAGE_BODY);
		s->body_left = (uint64_t)s->txn.body.size;
		s->chunk_left = 0;
		s->bdat_hdr = 0;
		s->bdat_last = 0;
		return enter_body(s);
	case SMTP_ST_DRAIN:
		set_deadline(s, c->t_cmd, SMTP_STAGE_MAIL);
		if (s->drain == 0) {
			s->need_rset = 1;
			return SMTP_ST_TXN;
		}
		return SMTP_ST_LAST;
	case SMTP_ST_QUIT:
		out_fmt(s, OUT_CMD, "QUIT\r\n");
		set_deadline(s, c->t_cmd, SMTP_STAGE_CONNECT);
		return SMTP_ST_LAST;
	case SMTP_ST_DONE:
		s->deadline = NO_DEADLINE;
		s->out_len = 0;
		return SMTP_ST_LAST;
	default:
		abort();
	}
}

static void
sess_goto(struct smtp_sess *s, enum smtp_state st)
{
	for (int n = 0; st != SMTP_ST_LAST; n++) {
		if (n >= GOTO_MAX)
			st = SMTP_ST_DONE;
		if (s->state == SMTP_ST_DONE)
			return;	/* nothing leaves DONE */
		LOGD(s, "transition from=%s to=%s", smtp_state_name(s->state), smtp_state_name(st));
		s->state = st;
		st = sess_enter(s);
	}
}

/* After a 2xx to EHLO or HELO: STARTTLS or transactions per TLS policy. */
static enum smtp_state
after_helo(struct smtp_sess *s)
{
	struct smtp_rcpt_result r;

	if (s->info.tls_active || s->cfg->tls_policy == SMTP_TLS_NONE)
		return SMTP_ST_TXN;
	if (s->info.ext.bits & SMTP_EXT_STARTTLS) {
		s->info.starttls_offered = 1;
		return SMTP_ST_STARTTLS;
	}
	if (s->cfg->tls_policy >= SMTP_TLS_REQUIRED) {
		res_local(&r, SMTP_OUT_DEFERRED, SMTP_STAGE_TLS,
			"TLS required but STARTTLS not offered by %s", host(s));
		sess_fail_all(s, &r);
		return SMTP_ST_QUIT;
	}
	s->info.plaintext_fallback = 1;
	return SMTP_ST_TXN;
}

/* A reply from the server in a state that expects none, or a fatal one. */
static enum smtp_state
reply_fatal(struct smtp_sess *s, enum smtp_outcome o, enum smtp_state next)
{
	struct smtp_rcpt_result r;

	res_from_reply(s, &r, o, stage_of(s->state));
	emit_accepted(s, &r);
	sess_fail_all(s, &r);
	return next;
}

/* Pipelined sequence: MAIL, RCPT..., DATA replies in order. */
static enum smtp_state
reply_seq(struct smtp_sess *s, int cls)
{
	struct smtp_rcpt_result r;
	unsigned i;

	switch (s->state) {
	case SMTP_ST_MAIL:
		s->rep_pos = 1;
		if (cls == 2)
			return SMTP_ST_RCPT;
		res_from_reply(s, &r, outcome_of(s->reply.code), SMTP_STAGE_MAIL);
		for (i = s->b_first; i < s->b_end; i++)
			emit(s, &r, i);
		s->drain = s->outstanding;
		s->out_len = 0;	/* an unsent pipelined command is dropped */
		return SMTP_ST_DRAIN;
	case SMTP_ST_RCPT:
		i = s->rep_rcpt;
		s->rep_pos++;
		if (cls == 2) {
			bit_set(s->acc, i - s->b_first);
			s->n_acc++;
		} else {
			res_from_reply(s, &r, outcome_of(s->reply.code), SMTP_STAGE_RCPT);
			emit(s, &r, i);
		}
		s->rep_rcpt = next_pending(s, i + 1);
		if (s->rep_rcpt < s->b_end)
			return SMTP_ST_RCPT;
		if (s->use_bdat) {
			if (s->n_acc > 0)
				return SMTP_ST_BDAT;
			s->need_rset = 1;
			return SMTP_ST_TXN;
		}
		if (s->snd_pos > s->n_valid + 1)
			return SMTP_ST_DATA;	/* DATA went in the pipeline */
		s->out_len = 0;
		if (s->n_acc > 0)
			return SMTP_ST_DATA;
		s->need_rset = 1;
		return SMTP_ST_TXN;
	case SMTP_ST_DATA:
		if (s->reply.code == 354) {
			if (s->n_acc > 0)
				return SMTP_ST_BODY;
			/* pipelined DATA accepted although no RCPT was: send an
			 * empty message, its reply is ignored */
			s->discard_data = 1;
			out_fmt(s, OUT_CMD, ".\r\n");
			return SMTP_ST_DATA_END;
		}
		res_from_reply(s, &r, cls == 2 ? SMTP_OUT_DEFERRED : outcome_of(s->reply.code),
			SMTP_STAGE_DATA);
		emit_accepted(s, &r);
		s->need_rset = 1;
		return SMTP_ST_TXN;
	default:
		abort();
	}
}

/* A complete reply is in s->reply. @return the next state, SMTP_ST_LAST to stay. */
static enum smtp_state
sess_reply(struct smtp_sess *s)
{
	struct smtp_rcpt_result r;
	int code = s->reply.code, cls = code / 100;

	LOGD(s, "reply state=%s code=%d lines=%u", smtp_state_name(s->state), code,
		s->reply.nlines);
	if (s->outstanding == 0) {
		s->info.protocol_error = 1;
		LOGW(s, "event=unexpected_reply state=%s code=%d", smtp_state_name(s->state), code);
		return reply_fatal(s, SMTP_OUT_DEFERRED, SMTP_ST_DONE);
	}
	s->outstanding--;
	if (code == 421 && s->state != SMTP_ST_QUIT)
		return reply_fatal(s, SMTP_OUT_DEFERRED, SMTP_ST_DONE);

	switch (s->state) {
	/*
	 * A server that refuses the session (greeting, EHLO and then HELO)
	 * has judged no recipient: like Postfix's smtp_skip_5xx_greeting, even
	 * a 5xx there defers them, so the scheduler tries the next MX (or
	 * retries later) instead of bouncing a whole queue on one broken host.
	 */
	case SMTP_ST_GREETING:
		if (cls == 2)
			return SMTP_ST_EHLO;
		return reply_fatal(s, SMTP_OUT_DEFERRED, cls == 5 ? SMTP_ST_QUIT : SMTP_ST_DONE);
	case SMTP_ST_EHLO:
		if (cls == 2)
			return after_helo(s);
		if (cls == 5) {
			s->info.helo_fallback = 1;
			return SMTP_ST_HELO;
		}
		return reply_fatal(s, SMTP_OUT_DEFERRED, SMTP_ST_QUIT);
	case SMTP_ST_HELO:
		if (cls == 2)
			return after_helo(s);
		return reply_fatal(s, SMTP_OUT_DEFERRED, SMTP_ST_QUIT);
	case SMTP_ST_STARTTLS:
		if (code == 220)
			return SMTP_ST_TLS_HANDSHAKE;
		if (s->cfg->tls_policy >= SMTP_TLS_REQUIRED) {
			res_from_reply(s, &r, SMTP_OUT_DEFERRED, SMTP_STAGE_TLS);
			snprintf(r.text, sizeof(r.text), "TLS required but STARTTLS refused by %.63s: %.400s",
				host(s), s->reply.text);
			sess_fail_all(s, &r);
			return SMTP_ST_QUIT;
		}
		s->info.plaintext_fallback = 1;
		return SMTP_ST_TXN;
	case SMTP_ST_RSET:
		if (cls == 2) {
			s->need_rset = 0;
			return SMTP_ST_TXN;
		}
		return reply_fatal(s, SMTP_OUT_DEFERRED, SMTP_ST_QUIT);
	case SMTP_ST_MAIL:
	case SMTP_ST_RCPT:
	case SMTP_ST_DATA:
		return reply_seq(s, cls);
	case SMTP_ST_DATA_END:
		if (s->discard_data) {
			s->need_rset = 1;
			return SMTP_ST_TXN;
		}
		res_from_reply(s, &r, outcome_of(code), SMTP_STAGE_BODY);
		emit_accepted(s, &r);
		if (cls == 2)
			s->info.msgs_ok++;
		return SMTP_ST_TXN;
	case SMTP_ST_BDAT:
		if (s->chunk_left > 0 || !s->bdat_hdr) {
			/* the server answered in the middle of a chunk */
			s->info.protocol_error = 1;
			return reply_fatal(s, SMTP_OUT_DEFERRED, SMTP_ST_DONE);
		}
		if (cls == 2 && !s->bdat_last) {
			s->bdat_hdr = 0;
			set_deadline(s, s->cfg->t_data_block, SMTP_STAGE_BODY);
			return SMTP_ST_LAST;
		}
		res_from_reply(s, &r, outcome_of(code), SMTP_STAGE_BODY);
		emit_accepted(s, &r);
		if (cls == 2)
			s->info.msgs_ok++;
		else
			s->need_rset = 1;
		return SMTP_ST_TXN;
	case SMTP_ST_DRAIN:
		if (s->drain > 0)
			s->drain--;
		if (code == 354) {
			if (s->out_len) {
				s->info.protocol_error = 1;
				return reply_fatal(s, SMTP_OUT_DEFERRED, SMTP_ST_DONE);
			}
			out_fmt(s, OUT_CMD, ".\r\n");
			s->drain++;
		}
		if (s->drain == 0) {
			s->need_rset = 1;
			return SMTP_ST_TXN;
		}
		return SMTP_ST_LAST;
	case SMTP_ST_QUIT:
		return SMTP_ST_DONE;
	case SMTP_ST_BODY:
		/* outstanding is 0 while streaming; not reached */
	default:
		abort();
	}
}

/* ---------------------------------------------------------------- */
/* public entries                                                     */
/* ---------------------------------------------------------------- */

static int
sess_enter_call(struct smtp_sess *s, uint64_t now)
{
	if (s->in_call || s->closed) {
		if (s->in_call)
			LOGW(s, "reentrant_call=ignored");
		return -1;
	}
	s->in_call = 1;
	if (now > s->now)
		s->now = now;
	return 0;
}

/* Flush, then close once DONE. Nothing touches s after ops->close. */
static void
sess_leave(struct smtp_sess *s)
{
	if (s->state != SMTP_ST_DONE)
		sess_pump(s);
	s->in_call = 0;
	if (s->state == SMTP_ST_DONE && !s->closed) {
		s->closed = 1;
		LOGD(s, "closed=1");
		s->ops->close(s->ctx);
	}
}

void
smtp_sess_start(struct smtp_sess *s, uint64_t now_ms)
{
	if (sess_enter_call(s, now_ms) < 0)
		return;
	if (s->state == SMTP_ST_INIT)
		sess_goto(s, s->cfg->implicit_tls ? SMTP_ST_TLS_IMPLICIT : SMTP_ST_GREETING);
	sess_leave(s);
}

/* Remember the greeting host (first word of the first line). */
static void
note_greeting_host(struct smtp_sess *s)
{
	size_t n = 0;

	while (n < s->reply.line_len && n < SMTP_HOST_MAX - 1 && s->reply.line[n] != ' ')
		n++;
	memcpy(s->info.greeting_host, s->reply.line, n);
	s->info.greeting_host[n] = '\0';
}

void
smtp_sess_input(struct smtp_sess *s, const void *buf, size_t len, uint64_t now_ms)
{
	const char *p = buf;
	size_t off = 0, used;
	int rc;

	if (sess_enter_call(s, now_ms) < 0)
		return;
	while (off < len) {
		if (s->state == SMTP_ST_DONE)
			break;
		if (s->state == SMTP_ST_INIT || s->state == SMTP_ST_TLS_IMPLICIT ||
		    s->state == SMTP_ST_TLS_HANDSHAKE) {
			/* RFC 3207: nothing from before the handshake is trusted */
			s->info.discarded += len - off;
			LOGW(s, "discard bytes=%zu state=%s reason=before_tls_handshake", len - off,
				smtp_state_name(s->state));
			break;
		}
		rc = smtp_reply_feed(&s->reply, p + off, len - off, &used);
		off += used;
		if (rc < 0) {
			struct smtp_rcpt_result r;

			s->info.protocol_error = 1;
			res_local(&r, SMTP_OUT_DEFERRED, stage_of(s->state),
				"malformed reply from %s (%s)", host(s),
				rc == -EMSGSIZE ? "too long" : "bad syntax");
			emit_accepted(s, &r);
			sess_fail_all(s, &r);
			sess_goto(s, SMTP_ST_DONE);
			break;
		}
		if (rc == SMTP_REPLY_MORE)
			continue;
		if (s->reply.nlines == 1 && s->state == SMTP_ST_GREETING)
			note_greeting_host(s);
		if (s->reply.nlines >= 2 && s->state == SMTP_ST_EHLO && s->reply.code / 100 == 2)
			smtp_ext_parse_line(&s->info.ext, s->reply.line, s->reply.line_len);
		if (rc == SMTP_REPLY_DONE) {
			sess_goto(s, sess_reply(s));
		}
	}
	sess_leave(s);
}

void
smtp_sess_on_writable(struct smtp_sess *s, uint64_t now_ms)
{
	if (sess_enter_call(s, now_ms) < 0)
		return;
	sess_leave(s);
}

void
smtp_sess_on_tls(struct smtp_sess *s, int ok, const char *why, uint64_t now_ms)
{
	if (sess_enter_call(s, now_ms) < 0)
		return;
	if (s->state == SMTP_ST_TLS_HANDSHAKE || s->state == SMTP_ST_TLS_IMPLICIT) {
		if (!ok) {
			sess_goto(s, tls_failed(s, why));
		} else {
			s->info.tls_active = 1;
			smtp_reply_init(&s->reply);
			sess_goto(s, s->state == SMTP_ST_TLS_IMPLICIT ?
				SMTP_ST_GREETING : SMTP_ST_EHLO);
		}
	} else {
		LOGW(s, "event=on_tls_ignored state=%s", smtp_state_name(s->state));
	}
	sess_leave(s);
}

void
smtp_sess_on_closed(struct smtp_sess *s, int err, uint64_t now_ms)
{
	struct smtp_rcpt_result r;

	if (sess_enter_call(s, now_ms) < 0)
		return;
	if (s->state == SMTP_ST_TLS_HANDSHAKE || s->state == SMTP_ST_TLS_IMPLICIT)
		s->info.tls_failed = 1;
	if (s->state != SMTP_ST_QUIT && s->state != SMTP_ST_DONE) {
		res_local(&r, SMTP_OUT_DEFERRED, stage_of(s->state),
			"connection to %s lost in state %s: %s", host(s),
			smtp_state_name(s->state), err ? strerror(-err) : "closed by peer");
		emit_accepted(s, &r);
		sess_fail_all(s, &r);
	}
	sess_goto(s, SMTP_ST_DONE);
	sess_leave(s);
}

void
smtp_sess_tick(struct smtp_sess *s, uint64_t now_ms)
{
	struct smtp_rcpt_result r;

	if (sess_enter_call(s, now_ms) < 0)
		return;
	if (s->deadline != NO_DEADLINE && s->now >= s->deadline) {
		s->info.timed_out = 1;
		if (s->state == SMTP_ST_TLS_HANDSHAKE || s->state == SMTP_ST_TLS_IMPLICIT)
			s->info.tls_failed = 1;
		LOGD(s, "event=timeout state=%s", smtp_state_name(s->state));
		if (s->state != SMTP_ST_QUIT) {
			res_local(&r, SMTP_OUT_DEFERRED, s->dl_stage,
				"timeout in state %s with %s", smtp_state_name(s->state), host(s));
			emit_accepted(s, &r);
			sess_fail_all(s, &r);
		}
		sess_goto(s, SMTP_ST_DONE);
	}
	sess_leave(s);
}

uint64_t
smtp_sess_deadline(const struct smtp_sess *s)
{
	return s->closed ? NO_DEADLINE : s->deadline;
}

int
smtp_sess_done(const struct smtp_sess *s)
{
	return s->closed;
}

const struct smtp_sess_info *
smtp_sess_info(const struct smtp_sess *s)
{
	return &s->info;
}
