/*
 * The front end of mp-smtpsend and mp-dpsend (mp_send.h): send one
 * message (a raw RFC 5322 file, or a template rendered per recipient by
 * msg_) to a list of recipients through one SMTP server over N concurrent
 * sessions of whatever engine the program runs, and print one JSON line
 * per recipient plus a summary line.
 *
 * Order: parse options, load recipients and the message (a raw file is
 * read and normalised to CRLF once and every transaction streams from
 * that one copy, the session dot-stuffing on the fly: msg_ renders only
 * from templates, it has no pass-through for a finished message; a
 * template is rendered per transaction straight into the session's
 * buffer by msg_render_read), make the session slots; then the program's
 * loop runs the engine(s) while mpsend_fill() keeps up to --sessions
 * sessions open while messages remain; each session pulls at most
 * --msgs-per-conn messages of --rcpt-per-txn recipients from a shared
 * cursor, so a failing connection takes no more than that with it.
 * Message k covers work items [k*R, k*R+R) of --count items, item i being
 * recipient i modulo the list length.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mp_send.h"
#include "msg.h"
#include "mp_log.h"
#include "smtp.h"
#include "tls.h"

struct rcpt {
	char *addr;
	struct msg_field *f;
	size_t nf;
};

/* One open session's state: its current transaction lives here. */
struct slot {
	struct slot *next_free;
	struct mpsend_backend *b;	/* the engine it runs on */
	uint32_t id;
	unsigned msgs;			/* transactions pulled on this connection */
	unsigned quota;			/* transactions this connection may take */
	int txn_ok;			/* current transaction delivered to someone */
	int fallback;			/* plaintext retry of TLS failures */
	uint64_t *items;		/* work items of the current txn */
	const char **rcpts;		/* their addresses */
	size_t raw_off;
	uint64_t msg_index;
	char err[256];			/* why the template could not render */
	struct msg_render r;
};

struct run {
	/* options */
	const char *server_host;
	struct sockaddr_in addr;
	const char *from;
	unsigned sessions, msgs_per_conn, rcpt_per_txn;
	enum smtp_tls_policy policy;
	int implicit_tls, quiet;
	double timeout_s;
	char helo_buf[256];		/* the host's own name when no --helo */
	uint64_t count;
	/* recipients and message */
	struct rcpt *rc;
	size_t nrc;
	char **csv_names;
	size_t ncsv;
	char *raw;
	size_t raw_len;
	int raw_8bit;
	struct msg_template *tpl;
	char campaign[64];
	/* engine side */
	const struct mpsend_cli *cli;
	struct smtp_config smtp;
	struct tls_ctx_conf tconf;
	struct slot *slots, *free_slots;
	int threads;
	pthread_mutex_t mu;
	uint64_t cursor;		/* next work item */
	unsigned active;
	uint64_t capacity;		/* messages open sessions may still take */
	/* opportunistic TLS: recipients whose handshake failed, for plaintext */
	uint64_t *retry;
	size_t nretry, retry_off, retry_cap;
	uint64_t fb_capacity, fb_sessions;
	uint32_t next_id;
	/* counts */
	uint64_t results, out[SMTP_OUT_LAST], msgs_ok, sessions_opened, tls_sessions, resumed;
	uint64_t open_errors;
	int aborting;			/* --timeout reached */
	uint64_t unfinished;		/* deferred because of --timeout */
	time_t date;
	char *text, *html, *host;	/* owned, freed by mpsend_free */
};

static struct run R;

/* ---------------------------------------------------------------- */
/* JSON output                                                        */
/* ---------------------------------------------------------------- */

/* Length of a valid UTF-8 sequence at p (max n bytes), 0 if invalid. */
static size_t
utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Print s as a JSON string; invalid UTF-8 bytes become U+FFFD. */
static void
json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	size_t n = strlen((const char *)p);

	fputc('"', f);
	while (n > 0) {
		size_t l;

		if (*p == '"' || *p == '\\') {
			fputc('\\', f);
			fputc(*p, f);
			p++;
			n--;
			continue;
		}
		if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p);
			p++;
			n--;
			continue;
		}
		l = utf8_len(p, n);
		if (l == 0) {
			fputs("\\ufffd", f);
			l = 1;
		} else {
			fwrite(p, 1, l, f);
		}
		p += l;
		n -= l;
	}
	fputc('"', f);
}

static void
json_tls(FILE *f, const struct tls_record *t)
{
	if (t == NULL) {
		fputs("null", f);
		return;
	}
	fputs("{\"version\":", f);
	json_str(f, t->version);
	fputs(",\"cipher\":", f);
	json_str(f, t->cipher);
	fputs(",\"group\":", f);
	json_str(f, t->group);
	fprintf(f, ",\"resumed\":%s,\"verify\":", t->resumed ? "true" : "false");
	json_str(f, tls_verify_reason_name(t->verify));
	fputs(",\"reason\":", f);
	json_str(f, t->reason);
	fputs(",\"subject\":", f);
	json_str(f, t->subject);
	fputs(",\"issuer\":", f);
	json_str(f, t->issuer);
	fputs(",\"not_after\":", f);
	json_str(f, t->not_after_iso);
	fprintf(f, ",\"handshake_us\":%llu}", (unsigned long long)t->handshake_us);
}

/* ---------------------------------------------------------------- */
/* engine callbacks                                                   */
/* ---------------------------------------------------------------- */

static int
raw_open(void *src, unsigned flags)
{
	(void)flags;
	((struct slot *)src)->raw_off = 0;
	return 0;	/* raw text: the session dot-stuffs for DATA */
}

static ssize_t
raw_read(void *src, void *buf, size_t cap)
{
	struct slot *sl = src;
	size_t n = R.raw_len - sl->raw_off;

	if (n > cap)
		n = cap;
	memcpy(buf, R.raw + sl->raw_off, n);
	sl->raw_off += n;
	return (ssize_t)n;
}

static const struct rcpt *
item_rcpt(uint64_t item)
{
	return &R.rc[item % R.nrc];
}

static int
tpl_open(void *src, unsigned flags)
{
	struct slot *sl = src;
	const struct rcpt *rc = item_rcpt(sl->items[0]);
	struct msg_fields f = { .v = rc->f, .n = rc->nf, .index = sl->msg_index };

	sl->err[0] = '\0';
	if (msg_render_open(&sl->r, R.tpl, rc->addr, &f,
	    (flags & SMTP_BODY_DOTSTUFF) ? MSG_F_DOTSTUFF : 0, R.date,
	    sl->err, sizeof(sl->err)) < 0)
		return -EINVAL;
	return (flags & SMTP_BODY_DOTSTUFF) ? 1 : 0;
}

static ssize_t
tpl_read(void *src, void *buf, size_t cap)
{
	return msg_render_read(&((struct slot *)src)->r, buf, cap);
}

static void
tally_txn(struct slot *sl)
{
	if (sl->txn_ok)
		R.msgs_ok++;
	sl->txn_ok = 0;
}

static void
lock(void)
{
	if (R.threads > 1)
		pthread_mutex_lock(&R.mu);
}

static void
unlock(void)
{
	if (R.threads > 1)
		pthread_mutex_unlock(&R.mu);
}

static int
next_txn_locked(struct slot *sl, struct smtp_txn *txn)
{
	uint64_t n;

	tally_txn(sl);
	if (sl->msgs >= sl->quota)
		return -ENOENT;
	if (sl->fallback) {
		if (R.retry_off >= R.nretry)
			return -ENOENT;
		n = R.nretry - R.retry_off;
		if (n > R.rcpt_per_txn)
			n = R.rcpt_per_txn;
		for (uint64_t i = 0; i < n; i++)
			sl->items[i] = R.retry[R.retry_off++];
		R.fb_capacity--;
	} else {
		if (R.cursor >= R.count)
			return -ENOENT;
		n = R.count - R.cursor;
		if (n > R.rcpt_per_txn)
			n = R.rcpt_per_txn;
		for (uint64_t i = 0; i < n; i++)
			sl->items[i] = R.cursor++;
		R.capacity--;
	}
	sl->msg_index = sl->items[0] / R.rcpt_per_txn;
	sl->msgs++;
	for (uint64_t i = 0; i < n; i++)
		sl->rcpts[i] = item_rcpt(sl->items[i])->addr;
	memset(txn, 0, sizeof(*txn));
	txn->mail_from = R.from;
	txn->rcpt = sl->rcpts;
	txn->n_rcpt = (unsigned)n;
	txn->user = sl;
	txn->body.src = sl;
	if (R.tpl != NULL) {
		txn->body.open = tpl_open;
		txn->body.read = tpl_read;
		txn->body.size = -1;
	} else {
		txn->body.open = raw_open;
		txn->body.read = raw_read;
		txn->body.size = (int64_t)R.raw_len;
		txn->flags = R.raw_8bit ? SMTP_TXN_8BIT : 0;
	}
	return 0;
}

static int
cb_next_txn(void *user, struct smtp_txn *txn)
{
	int rc;

	lock();
	rc = next_txn_locked(user, txn);
	unlock();
	return rc;
}

/* @return 1 when the recipient was queued for a plaintext retry. */
static int
retry_plain(struct slot *sl, const struct smtp_rcpt_result *r, const struct tls_record *tls)
{
	if (sl->fallback || R.aborting || R.policy != SMTP_TLS_OPPORTUNISTIC ||
	    r->outcome != SMTP_OUT_DEFERRED || r->stage != SMTP_STAGE_TLS || tls == NULL ||
	    r->rcpt_index >= R.rcpt_per_txn)
		return 0;
	/* opportunistic: a failed handshake is retried in plaintext (as Postfix does) */
	if (R.nretry == R.retry_cap) {
		size_t nc = R.retry_cap ? R.retry_cap * 2 : 256;
		uint64_t *n = realloc(R.retry, nc * sizeof(*n));

		if (n != NULL) {
			R.retry = n;
			R.retry_cap = nc;
		}
	}
	if (R.nretry >= R.retry_cap)
		return 0;
	R.retry[R.nretry++] = sl->items[r->rcpt_index];
	return 1;
}

static void
cb_result(void *user, const struct smtp_rcpt_result *r, const struct tls_record *tls)
{
	struct slot *sl = user;
	struct mpsend_line l;
	const char *text = r->text;

	lock();
	if (retry_plain(sl, r, tls)) {
		unlock();
		return;
	}
	R.results++;
	if ((unsigned)r->outcome < SMTP_OUT_LAST)
		R.out[r->outcome]++;
	if (r->outcome == SMTP_OUT_DELIVERED)
		sl->txn_ok = 1;
	if (r->outcome == SMTP_OUT_FAILED && r->stage == SMTP_STAGE_LOCAL && sl->err[0] != '\0')
		text = sl->err;
	if (R.aborting && r->outcome == SMTP_OUT_DEFERRED) {
		R.unfinished++;
		text = "aborted: --timeout reached";
	}
	unlock();
	if (R.quiet)
		return;
	l.item = sl->items[r->rcpt_index < R.rcpt_per_txn ? r->rcpt_index : 0];
	l.outcome = r->outcome;
	l.stage = r->stage;
	l.code = r->code;
	l.session = sl->id;
	snprintf(l.esc, sizeof(l.esc), "%s", r->esc);
	snprintf(l.text, sizeof(l.text), "%s", text);
	l.has_tls = tls != NULL;
	if (tls != NULL)
		l.tls = *tls;
	if (R.cli->emit != NULL)
		R.cli->emit(R.cli->arg, &l);
	else
		mpsend_print_line(stdout, &l);
}

static void fill_locked(struct mpsend_backend *b);

static void
cb_done(void *user, const struct smtp_sess_info *info, const struct tls_record *tls)
{
	struct slot *sl = user;
	struct mpsend_backend *b = sl->b;

	lock();
	tally_txn(sl);
	if (sl->fallback)
		R.fb_capacity -= sl->quota - sl->msgs;
	else
		R.capacity -= sl->quota - sl->msgs;
	if (info->tls_active) {
		R.tls_sessions++;
		if (tls != NULL && tls->resumed)
			R.resumed++;
	}
	sl->next_free = R.free_slots;
	R.free_slots = sl;
	R.active--;
	b->active--;
	fill_locked(b);
	unlock();
}

/* Messages not yet handed to a session. */
static uint64_t
msgs_left(void)
{
	return (R.count - R.cursor + R.rcpt_per_txn - 1) / R.rcpt_per_txn;
}

/* Messages waiting for a plaintext retry. */
static uint64_t
retry_left(void)
{
	return (R.nretry - R.retry_off + R.rcpt_per_txn - 1) / R.rcpt_per_txn;
}

/*
 * Open sessions while the open ones will not take all that is left. Each
 * gets a quota of at most --msgs-per-conn, spread so that --sessions
 * connections share the work. Plaintext retries of failed handshakes
 * (opportunistic TLS) go first, on sessions with TLS off.
 */
static void
fill_locked(struct mpsend_backend *b)
{
	while (!R.aborting && R.active < R.sessions && b->active < b->limit &&
	    R.free_slots != NULL) {
		uint64_t unreserved, quota, free_slots = R.sessions - R.active;
		struct mps_req req = { 0 };
		struct slot *sl;
		int rc, fb;

		if (retry_left() > R.fb_capacity) {
			fb = 1;
			unreserved = retry_left() - R.fb_capacity;
		} else if (msgs_left() > R.capacity) {
			fb = 0;
			unreserved = msgs_left() - R.capacity;
		} else {
			return;
		}
		quota = (unreserved + free_slots - 1) / free_slots;
		sl = R.free_slots;
		sl->id = ++R.next_id;
		sl->b = b;
		sl->msgs = 0;
		sl->txn_ok = 0;
		sl->err[0] = '\0';
		sl->fallback = fb;
		sl->quota = quota < R.msgs_per_conn ? (unsigned)quota : R.msgs_per_conn;
		req.host = R.server_host;
		req.addr = mp_sockaddr_v4(R.addr.sin_addr, ntohs(R.addr.sin_port));
		req.policy = fb ? SMTP_TLS_NONE : R.policy;
		req.implicit_tls = R.implicit_tls;
		req.smtp = &R.smtp;
		req.next_txn = cb_next_txn;
		req.result = cb_result;
		req.done = cb_done;
		req.user = sl;
		req.id = sl->id;
		rc = b->open(b->ctx, &req);
		if (rc < 0) {
			if (R.open_errors++ == 0 || rc != b->open_err)
				fprintf(stderr, "%s: cannot open a session: %s\n", R.cli->prog,
					strerror(-rc));
			b->open_err = rc;
			return;
		}
		b->open_err = 0;
		R.free_slots = sl->next_free;
		R.active++;
		b->active++;
		if (fb) {
			R.fb_capacity += sl->quota;
			R.fb_sessions++;
		} else {
			R.capacity += sl->quota;
		}
		R.sessions_opened++;
	}
}

void
mpsend_fill(struct mpsend_backend *b)
{
	lock();
	fill_locked(b);
	unlock();
}

const struct sockaddr_in *
mpsend_server(void)
{
	return &R.addr;
}

int
mpsend_finished(void)
{
	int f;

	lock();
	f = R.active == 0 && (R.aborting || (R.cursor >= R.count && R.retry_off >= R.nretry));
	unlock();
	return f;
}

void
mpsend_abort(void)
{
	lock();
	R.aborting = 1;
	unlock();
}

void
mpsend_set_threads(int n)
{
	if (n > 1 && R.threads <= 1)
		pthread_mutex_init(&R.mu, NULL);
	R.threads = n;
}

const struct smtp_config *mpsend_smtp(void) { return &R.smtp; }
const struct tls_ctx_conf *mpsend_tls_conf(void) { return &R.tconf; }
unsigned mpsend_sessions(void) { return R.sessions; }
double mpsend_timeout(void) { return R.timeout_s; }
uint64_t mpsend_count(void) { return R.count; }
uint64_t mpsend_msgs_ok(void) { return R.msgs_ok; }

void
mpsend_print_line(FILE *f, const struct mpsend_line *l)
{
	fputs("{\"rcpt\":", f);
	json_str(f, item_rcpt(l->item)->addr);
	fprintf(f, ",\"outcome\":\"%s\",\"stage\":\"%s\",\"code\":%d,\"esc\":",
		smtp_outcome_name((enum smtp_outcome)l->outcome),
		smtp_stage_name((enum smtp_stage)l->stage), l->code);
	json_str(f, l->esc);
	fputs(",\"text\":", f);
	json_str(f, l->text);
	fprintf(f, ",\"session\":%u,\"tls\":", l->session);
	json_tls(f, l->has_tls ? &l->tls : NULL);
	fputs("}\n", f);
}

/* ---------------------------------------------------------------- */
/* input files                                                        */
/* ---------------------------------------------------------------- */

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t k;

		if (n + 65536 + 1 > cap) {
			char *nb;

			cap = cap ? cap * 2 : 65536 * 2;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		k = fread(buf + n, 1, cap - n - 1, f);
		n += k;
		if (k == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* LF / CR / CRLF -> CRLF, ending with CRLF; notes 8-bit content. */
static char *
normalise_crlf(const char *in, size_t len, size_t *out_len, int *eightbit)
{
	char *out = malloc(len * 2 + 3);
	size_t o = 0;

	if (out == NULL)
		return NULL;
	*eightbit = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 0x80)
			*eightbit = 1;
		if (c == '\r') {
			if (i + 1 < len && in[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
		} else if (c == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
		} else {
			out[o++] = (char)c;
		}
	}
	if (o < 2 || out[o - 2] != '\r' || out[o - 1] != '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	*out_len = o;
	return out;
}

static int
add_rcpt(const char *addr, struct msg_field *f, size_t nf)
{
	static size_t cap;

	if (R.nrc == cap) {
		size_t nc = cap ? cap * 2 : 64;
		struct rcpt *n = realloc(R.rc, nc * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		R.rc = n;
		cap = nc;
	}
	R.rc[R.nrc].addr = strdup(addr);
	if (R.rc[R.nrc].addr == NULL)
		return -ENOMEM;
	R.rc[R.nrc].f = f;
	R.rc[R.nrc].nf = nf;
	R.nrc++;
	return 0;
}

/* Trim spaces and tabs at both ends, in place. */
static char *
trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

static int
load_rcpt_file(const char *path)
{
	size_t len;
	char *buf = read_file(path, &len), *line, *save = NULL;
	int rc = 0;

	if (buf == NULL) {
		fprintf(stderr, "%s: %s: %s\n", R.cli->prog, path, strerror(errno));
		return -1;
	}
	for (line = strtok_r(buf, "\n", &save); line != NULL && rc == 0;
	    line = strtok_r(NULL, "\n", &save)) {
		char *a = trim(line);

		if (a[0] == '\0' || a[0] == '#')
			continue;
		rc = add_rcpt(a, NULL, 0);
	}
	free(buf);
	return rc;
}

/*
 * One CSV record (RFC 4180: fields may be quoted, "" inside quotes is a
 * quote; a record is one line). Splits @p line in place into at most
 * @p max fields. @return field count, or -1 on an unterminated quote.
 */
static int
csv_split(char *line, char **out, int max)
{
	char *r = line, *w = line;
	int n = 0;

	for (;;) {
		char *start = w;

		if (n == max)
			return n;
		if (*r == '"') {
			r++;
			for (;;) {
				if (*r == '\0')
					return -1;
				if (*r == '"' && r[1] == '"') {
					*w++ = '"';
					r += 2;
				} else if (*r == '"') {
					r++;
					break;
				} else {
					*w++ = *r++;
				}
			}
			while (*r != ',' && *r != '\0')
				r++;
		} else {
			while (*r != ',' && *r != '\0')
				*w++ = *r++;
		}
		out[n++] = start;
		if (*r == '\0') {
			*w = '\0';
			return n;
		}
		r++;
		*w++ = '\0';
	}
}

#define CSV_MAX_COLS 64

static int
load_rcpt_csv(const char *path)
{
	size_t len;
	char *buf = read_file(path, &len), *line, *save = NULL;
	char *cols[CSV_MAX_COLS];
	int ncol = -1, email_col = -1, lineno = 0, bad = 0;

	if (buf == NULL) {
		fprintf(stderr, "%s: %s: %s\n", R.cli->prog, path, strerror(errno));
		return -1;
	}
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		int n;

		lineno++;
		n = (int)strlen(line);
		if (n > 0 && line[n - 1] == '\r')
			line[n - 1] = '\0';
		if (line[0] == '\0')
			continue;
		n = csv_split(line, cols, CSV_MAX_COLS);
		if (n < 0) {
			fprintf(stderr, "%s: %s:%d: unterminated quote, line skipped\n", R.cli->prog,
				path, lineno);
			bad++;
			continue;
		}
		if (ncol < 0) {
			ncol = n;
			R.csv_names = calloc((size_t)n, sizeof(char *));
			if (R.csv_names == NULL)
				goto nomem;
			for (int i = 0; i < n; i++) {
				R.csv_names[i] = strdup(trim(cols[i]));
				if (R.csv_names[i] == NULL)
					goto nomem;
				if (strcasecmp(R.csv_names[i], "email") == 0 && email_col < 0)
					email_col = i;
			}
			R.ncsv = (size_t)n;
			if (email_col < 0) {
				fprintf(stderr, "%s: %s: header row has no \"email\" column\n", R.cli->prog, path);
				free(buf);
				return -1;
			}
			continue;
		}
		if (email_col >= n || trim(cols[email_col])[0] == '\0') {
			fprintf(stderr, "%s: %s:%d: no email value, line skipped\n", R.cli->prog, path, lineno);
			bad++;
			continue;
		}
		{
			struct msg_field *f = calloc((size_t)ncol, sizeof(*f));
			size_t nf = 0;

			if (f == NULL)
				goto nomem;
			for (int i = 0; i < n && i < ncol; i++) {
				if (i == email_col)
					continue;
				f[nf].name = R.csv_names[i];
				f[nf].value = strdup(cols[i]);
				if (f[nf].value == NULL)
					goto nomem;
				f[nf].len = strlen(f[nf].value);
				nf++;
			}
			if (add_rcpt(trim(cols[email_col]), f, nf) < 0)
				goto nomem;
		}
	}
	free(buf);
	if (bad != 0)
		fprintf(stderr, "%s: %s: %d line(s) skipped\n", R.cli->prog, path, bad);
	return 0;
nomem:
	fprintf(stderr, "%s: out of memory\n", R.cli->prog);
	free(buf);
	return -1;
}

/* ---------------------------------------------------------------- */
/* options                                                            */
/* ---------------------------------------------------------------- */

static void
usage(FILE *f)
{
	fprintf(f, "usage: %s --server HOST[:PORT] --from ADDR RECIPIENTS MESSAGE [options]\n"
		"\n%s\n\n", R.cli->prog, R.cli->what);
	fputs(
"server:\n"
"  --server HOST[:PORT]  SMTP server; HOST is the SNI / certificate name\n"
"                        (port 25 by default)\n"
"  --connect IP          connect to this IPv4 address instead of resolving HOST\n"
"  --helo NAME           EHLO name: this host's FQDN (default: its own name;\n"
"                        refused unless fully qualified)\n"
"recipients (at least one):\n"
"  --rcpt ADDR           a recipient (repeatable)\n"
"  --rcpt-file FILE      one address per line ('#' comments, blank lines skipped)\n"
"  --rcpt-csv FILE       CSV, header row \"email,field1,...\"; the columns are\n"
"                        merge fields {{field1}} of the template\n"
"message (one of):\n"
"  --message FILE        raw RFC 5322 message (LF or CRLF), same for everyone\n"
"  --subject S --text FILE [--html FILE]\n"
"                        template (msg_ syntax: {{field}}, {{field|default}});\n"
"                        From/To/Date/Message-ID/MIME are generated\n"
"  --from ADDR           envelope sender and From: of templates (required)\n"
"sending:\n"
"  --sessions N          concurrent sessions (default 1)\n"
"  --msgs-per-conn N     messages per connection (default 100)\n"
"  --rcpt-per-txn N      recipients per message (default 1: one message per\n"
"                        recipient); a template is rendered for the first\n"
"                        recipient of each message\n"
"  --count N             send N recipient-copies cycling over the list\n"
"                        (default: each recipient once), for benchmarks\n"
"  --timeout SECONDS     limit for the whole run (exit 2 when reached)\n"
"TLS:\n"
"  --tls none|opportunistic|required|verify   (default opportunistic)\n"
"                        required: no STARTTLS, no MAIL; verify: also chain\n"
"                        and host name (HOST) must check out\n"
"  --ca FILE             trusted CAs (PEM) instead of the system store\n"
"  --tls-min 1.2|1.3     lowest TLS version (default 1.2)\n"
"  --tls-min-opportunistic 1.0|1.1|1.2|1.3\n"
"                        lowest TLS version under --tls opportunistic\n"
"                        (default 1.2; lower encrypts with old servers\n"
"                        instead of falling back to plaintext)\n"
"  --implicit-tls        TLS before the greeting (port 465)\n"
"output:\n"
"  --quiet               summary line only\n"
"  -h, --help            this text\n"
"\n"
"Output (stdout, JSON lines), one per recipient:\n"
"  {\"rcpt\":..,\"outcome\":\"delivered|deferred|bounced|failed\",\"stage\":..,\"code\":N,\n"
"   \"esc\":..,\"text\":..,\"session\":N,\"tls\":{\"version\",\"cipher\",\"group\",\"resumed\",\n"
"   \"verify\",\"reason\",\"subject\",\"issuer\",\"not_after\",\"handshake_us\"} or null}\n"
"then {\"summary\":{\"recipients\",\"delivered\",\"deferred\",\"bounced\",\"failed\",\n"
"   \"sessions\",\"tls_sessions\",\"resumed\",\"seconds\",\"msgs_per_s\",\"cpu_user_s\",\n"
"   \"cpu_sys_s\",\"timeout\",\"unfinished\",\"plaintext_fallback_sessions\"}}.\n"
"With --tls opportunistic, recipients of a session whose TLS handshake failed\n"
"are retried once in plaintext on a new connection (as Postfix does); their\n"
"record is the one of that retry.\n"
"A connection that cannot be made defers its recipients at stage \"connect\".\n"
"Exit status: 0 run completed (whatever the outcomes), 1 usage or setup\n"
"error, 2 --timeout reached.\n", f);
	if (R.cli->usage != NULL)
		R.cli->usage(f);
}

static int
parse_uint(const char *opt, const char *s, unsigned long long min, unsigned long long max,
	unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
		fprintf(stderr, "%s: %s: bad value \"%s\" (%llu..%llu)\n", R.cli->prog, opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_server(const char *arg, const char *connect_ip, char **host)
{
	const char *colon = strrchr(arg, ':');
	unsigned long long port = 25;
	size_t hl = colon != NULL ? (size_t)(colon - arg) : strlen(arg);

	if (colon != NULL && parse_uint("--server", colon + 1, 1, 65535, &port) < 0)
		return -1;
	if (hl == 0) {
		fprintf(stderr, "%s: --server: empty host\n", R.cli->prog);
		return -1;
	}
	*host = strndup(arg, hl);
	if (*host == NULL)
		return -1;
	R.addr.sin_family = AF_INET;
	R.addr.sin_port = htons((uint16_t)port);
	if (connect_ip != NULL) {
		if (inet_pton(AF_INET, connect_ip, &R.addr.sin_addr) != 1) {
			fprintf(stderr, "%s: --connect: not an IPv4 address: %s\n", R.cli->prog, connect_ip);
			return -1;
		}
		return 0;
	}
	if (inet_pton(AF_INET, *host, &R.addr.sin_addr) == 1)
		return 0;
	{
		struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
		struct addrinfo *ai = NULL;
		int rc = getaddrinfo(*host, NULL, &hints, &ai);

		if (rc != 0 || ai == NULL) {
			fprintf(stderr, "%s: cannot resolve %s: %s\n", R.cli->prog, *host, gai_strerror(rc));
			return -1;
		}
		R.addr.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
		freeaddrinfo(ai);
	}
	return 0;
}

static double
ts_sec(const struct timeval *t)
{
	return (double)t->tv_sec + (double)t->tv_usec / 1e6;
}

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum {
	O_SERVER = MPSEND_OPT_BASE, O_CONNECT, O_FROM, O_RCPT, O_RCPT_FILE, O_RCPT_CSV, O_MESSAGE,
	O_SUBJECT, O_TEXT, O_HTML, O_SESSIONS, O_MPC, O_RPT, O_TLS, O_CA, O_TLS_MIN, O_TLS_OPP,
	O_IMPLICIT, O_HELO, O_TIMEOUT, O_COUNT, O_QUIET,
};

#define MAX_OPTS 96

int
mpsend_parse(const struct mpsend_cli *cli, int argc, char **argv, int *rest)
{
	static const struct option lopts[] = {
		{ "server", required_argument, NULL, O_SERVER },
		{ "connect", required_argument, NULL, O_CONNECT },
		{ "from", required_argument, NULL, O_FROM },
		{ "rcpt", required_argument, NULL, O_RCPT },
		{ "rcpt-file", required_argument, NULL, O_RCPT_FILE },
		{ "rcpt-csv", required_argument, NULL, O_RCPT_CSV },
		{ "message", required_argument, NULL, O_MESSAGE },
		{ "subject", required_argument, NULL, O_SUBJECT },
		{ "text", required_argument, NULL, O_TEXT },
		{ "html", required_argument, NULL, O_HTML },
		{ "sessions", required_argument, NULL, O_SESSIONS },
		{ "msgs-per-conn", required_argument, NULL, O_MPC },
		{ "rcpt-per-txn", required_argument, NULL, O_RPT },
		{ "tls", required_argument, NULL, O_TLS },
		{ "ca", required_argument, NULL, O_CA },
		{ "tls-min", required_argument, NULL, O_TLS_MIN },
		{ "tls-min-opportunistic", required_argument, NULL, O_TLS_OPP },
		{ "implicit-tls", no_argument, NULL, O_IMPLICIT },
		{ "helo", required_argument, NULL, O_HELO },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "count", required_argument, NULL, O_COUNT },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "help", no_argument, NULL, 'h' },
	};
	size_t nl = sizeof(lopts) / sizeof(lopts[0]);
	struct option all[MAX_OPTS];
	const char *server = NULL, *connect_ip = NULL, *message = NULL, *subject = NULL;
	const char *text_path = NULL, *html_path = NULL, *ca = NULL, *helo = NULL;
	const char *rcpt_file = NULL, *rcpt_csv = NULL;
	struct tls_ctx_conf *tconf = &R.tconf;
	char err[512], *host = NULL, *text = NULL, *html = NULL;
	unsigned long long v;
	int c;

	R.cli = cli;
	if (nl + cli->nopts + 1 > MAX_OPTS)
		return -1;
	memcpy(all, lopts, nl * sizeof(all[0]));
	if (cli->nopts != 0)
		memcpy(all + nl, cli->opts, cli->nopts * sizeof(all[0]));
	memset(&all[nl + cli->nopts], 0, sizeof(all[0]));

	R.sessions = 1;
	R.msgs_per_conn = 100;
	R.rcpt_per_txn = 1;
	R.policy = SMTP_TLS_OPPORTUNISTIC;
	/* before anything touches OpenSSL */
	tls_alloc_init();
	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt_long(argc, argv, "h", all, NULL)) != -1) {
		switch (c) {
		case O_SERVER: server = optarg; break;
		case O_CONNECT: connect_ip = optarg; break;
		case O_FROM: R.from = optarg; break;
		case O_RCPT:
			if (add_rcpt(optarg, NULL, 0) < 0)
				return -1;
			break;
		case O_RCPT_FILE: rcpt_file = optarg; break;
		case O_RCPT_CSV: rcpt_csv = optarg; break;
		case O_MESSAGE: message = optarg; break;
		case O_SUBJECT: subject = optarg; break;
		case O_TEXT: text_path = optarg; break;
		case O_HTML: html_path = optarg; break;
		case O_SESSIONS:
			if (parse_uint("--sessions", optarg, 1, 100000, &v) < 0)
				return -1;
			R.sessions = (unsigned)v;
			break;
		case O_MPC:
			if (parse_uint("--msgs-per-conn", optarg, 1, 1000000, &v) < 0)
				return -1;
			R.msgs_per_conn = (unsigned)v;
			break;
		case O_RPT:
			if (parse_uint("--rcpt-per-txn", optarg, 1, SMTP_RCPT_MAX, &v) < 0)
				return -1;
			R.rcpt_per_txn = (unsigned)v;
			break;
		case O_TLS:
			if (strcmp(optarg, "none") == 0)
				R.policy = SMTP_TLS_NONE;
			else if (strcmp(optarg, "opportunistic") == 0)
				R.policy = SMTP_TLS_OPPORTUNISTIC;
			else if (strcmp(optarg, "required") == 0)
				R.policy = SMTP_TLS_REQUIRED;
			else if (strcmp(optarg, "verify") == 0)
				R.policy = SMTP_TLS_VERIFY;
			else {
				fprintf(stderr, "%s: --tls: none|opportunistic|required|verify\n", R.cli->prog);
				return -1;
			}
			break;
		case O_CA: ca = optarg; break;
		case O_TLS_MIN:
			if (strcmp(optarg, "1.2") == 0)
				tconf->min_version = TLS_VERSION_1_2;
			else if (strcmp(optarg, "1.3") == 0)
				tconf->min_version = TLS_VERSION_1_3;
			else {
				fprintf(stderr, "%s: --tls-min: 1.2|1.3\n", R.cli->prog);
				return -1;
			}
			break;
		case O_TLS_OPP: {
			int v = tls_version_parse(optarg);

			if (v < 0) {
				fprintf(stderr, "%s: --tls-min-opportunistic: 1.0|1.1|1.2|1.3\n",
					R.cli->prog);
				return -1;
			}
			tconf->opportunistic_min_version = v;
			break;
		}
		case O_IMPLICIT: R.implicit_tls = 1; break;
		case O_HELO: helo = optarg; break;
		case O_TIMEOUT: {
			char *end;

			R.timeout_s = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(R.timeout_s > 0)) {
				fprintf(stderr, "%s: --timeout: positive number of seconds\n", R.cli->prog);
				return -1;
			}
			break;
		}
		case O_COUNT:
			if (parse_uint("--count", optarg, 1, 1ULL << 40, &v) < 0)
				return -1;
			R.count = v;
			break;
		case O_QUIET: R.quiet = 1; break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			/* the program's long options: codes 256..MPSEND_OPT_BASE-1 */
			if (c >= 256 && c < MPSEND_OPT_BASE && cli->apply != NULL) {
				if (cli->apply(cli->arg, c, optarg) < 0)
					return -1;
				break;
			}
			usage(stderr);
			return -1;
		}
	}
	*rest = optind;
	if (optind != argc && !cli->allow_rest) {
		fprintf(stderr, "%s: unexpected argument \"%s\"\n", R.cli->prog, argv[optind]);
		return -1;
	}
	if (server == NULL || R.from == NULL) {
		fprintf(stderr, "%s: --server and --from are required (see --help)\n", R.cli->prog);
		return -1;
	}
	if ((message != NULL) == (subject != NULL || text_path != NULL || html_path != NULL)) {
		fprintf(stderr, "%s: give either --message or --subject with --text/--html\n", R.cli->prog);
		return -1;
	}
	if (subject != NULL && text_path == NULL && html_path == NULL) {
		fprintf(stderr, "%s: a template needs --text and/or --html\n", R.cli->prog);
		return -1;
	}
	if (message == NULL && subject == NULL) {
		fprintf(stderr, "%s: --text/--html need --subject\n", R.cli->prog);
		return -1;
	}
	if (R.from[0] != '\0' && msg_addr_valid(R.from, MSG_F_SMTPUTF8) < 0) {
		fprintf(stderr, "%s: --from: invalid address \"%s\"\n", R.cli->prog, R.from);
		return -1;
	}
	if (rcpt_file != NULL && load_rcpt_file(rcpt_file) < 0)
		return -1;
	if (rcpt_csv != NULL && load_rcpt_csv(rcpt_csv) < 0)
		return -1;
	if (R.nrc == 0) {
		fprintf(stderr, "%s: no recipients (--rcpt, --rcpt-file or --rcpt-csv)\n", R.cli->prog);
		return -1;
	}
	if (R.count == 0)
		R.count = R.nrc;
	if (parse_server(server, connect_ip, &host) < 0)
		return -1;
	R.server_host = host;
	R.date = time(NULL);
	snprintf(R.campaign, sizeof(R.campaign), "mpsend.%lld.%d", (long long)R.date, (int)getpid());

	if (message != NULL) {
		size_t len;
		char *raw = read_file(message, &len);

		if (raw == NULL) {
			fprintf(stderr, "%s: %s: %s\n", R.cli->prog, message, strerror(errno));
			return -1;
		}
		R.raw = normalise_crlf(raw, len, &R.raw_len, &R.raw_8bit);
		free(raw);
		if (R.raw == NULL) {
			fprintf(stderr, "%s: out of memory\n", R.cli->prog);
			return -1;
		}
	} else {
		struct msg_template_spec spec = { 0 };
		size_t len;

		if (text_path != NULL && (text = read_file(text_path, &len)) == NULL) {
			fprintf(stderr, "%s: %s: %s\n", R.cli->prog, text_path, strerror(errno));
			return -1;
		}
		if (html_path != NULL && (html = read_file(html_path, &len)) == NULL) {
			fprintf(stderr, "%s: %s: %s\n", R.cli->prog, html_path, strerror(errno));
			return -1;
		}
		spec.campaign_id = R.campaign;
		spec.from_addr = R.from;
		spec.subject = subject;
		spec.text = text;
		spec.html = html;
		R.tpl = msg_template_compile(&spec, err, sizeof(err));
		if (R.tpl == NULL) {
			fprintf(stderr, "%s: template: %s\n", R.cli->prog, err);
			return -1;
		}
	}

	smtp_config_defaults(&R.smtp);
	if (helo == NULL && smtp_helo_name_default(R.helo_buf, sizeof(R.helo_buf)) == 0)
		helo = R.helo_buf;
	if (smtp_helo_name_check(helo, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: --helo: %s; give this host's fully qualified name, "
			"the PTR name of its sending address\n", R.cli->prog, err);
		return -1;
	}
	R.smtp.helo_name = helo;
	R.smtp.max_rcpt_per_txn = R.rcpt_per_txn;
	R.smtp.tls_policy = R.policy;
	tconf->ca_file = ca;
	/* session slots for --sessions, made once */
	R.slots = calloc(R.sessions, sizeof(*R.slots));
	if (R.slots == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli->prog);
		return -1;
	}
	for (unsigned i = R.sessions; i-- > 0;) {
		struct slot *sl = &R.slots[i];

		sl->rcpts = calloc(R.rcpt_per_txn, sizeof(char *));
		sl->items = calloc(R.rcpt_per_txn, sizeof(uint64_t));
		if (sl->rcpts == NULL || sl->items == NULL) {
			fprintf(stderr, "%s: out of memory\n", cli->prog);
			return -1;
		}
		sl->next_free = R.free_slots;
		R.free_slots = sl;
	}
	R.text = text;
	R.html = html;
	R.host = host;
	return 0;
}

void
mpsend_summary(FILE *f, double elapsed, int timed_out,
	void (*extra)(FILE *f, void *arg), void *arg)
{
	struct rusage ru;

	if (timed_out) {
		/* what no session took yet: deferred, so a caller can retry it */
		for (uint64_t j = R.retry_off; j < R.nretry + (R.count - R.cursor); j++) {
			uint64_t i = j < R.nretry ? R.retry[j] : R.cursor + (j - R.nretry);

			R.results++;
			R.out[SMTP_OUT_DEFERRED]++;
			R.unfinished++;
			if (R.quiet)
				continue;
			fputs("{\"rcpt\":", f);
			json_str(f, item_rcpt(i)->addr);
			fputs(",\"outcome\":\"deferred\",\"stage\":\"connect\",\"code\":0,"
				"\"esc\":\"\",\"text\":\"not attempted: --timeout reached\","
				"\"session\":0,\"tls\":null}\n", f);
		}
	}
	getrusage(RUSAGE_SELF, &ru);
	fprintf(f, "{\"summary\":{\"recipients\":%llu,\"delivered\":%llu,\"deferred\":%llu,"
		"\"bounced\":%llu,\"failed\":%llu,\"sessions\":%llu,\"tls_sessions\":%llu,"
		"\"resumed\":%llu,\"seconds\":%.3f,\"msgs_per_s\":%.1f,\"cpu_user_s\":%.3f,"
		"\"cpu_sys_s\":%.3f,\"timeout\":%s,\"unfinished\":%llu,"
		"\"plaintext_fallback_sessions\":%llu",
		(unsigned long long)R.count,
		(unsigned long long)R.out[SMTP_OUT_DELIVERED],
		(unsigned long long)R.out[SMTP_OUT_DEFERRED],
		(unsigned long long)R.out[SMTP_OUT_BOUNCED],
		(unsigned long long)R.out[SMTP_OUT_FAILED],
		(unsigned long long)R.sessions_opened,
		(unsigned long long)R.tls_sessions,
		(unsigned long long)R.resumed,
		elapsed, elapsed > 0 ? (double)R.msgs_ok / elapsed : 0.0,
		ts_sec(&ru.ru_utime), ts_sec(&ru.ru_stime),
		timed_out ? "true" : "false",
		(unsigned long long)(R.unfinished + (R.count - R.results)),
		(unsigned long long)R.fb_sessions);
	if (extra != NULL)
		extra(f, arg);
	fputs("}}\n", f);
	fflush(f);
}

double
mpsend_now(void)
{
	return mono_s();
}

void
mpsend_free(void)
{
	for (unsigned i = 0; R.slots != NULL && i < R.sessions; i++) {
		free(R.slots[i].rcpts);
		free(R.slots[i].items);
	}
	free(R.slots);
	msg_template_free(R.tpl);
	free(R.raw);
	free(R.text);
	free(R.html);
	free(R.host);
	free(R.retry);
	if (R.threads > 1)
		pthread_mutex_destroy(&R.mu);
}
