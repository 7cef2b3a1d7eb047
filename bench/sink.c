/*
 * mp-sink: a fast SMTP server for benchmarks. One thread per core, each
 * with its own SO_REUSEPORT listener and edge-triggered epoll set; the
 * threads share one OpenSSL server context (session cache and tickets on
 * unless --no-resume). It speaks EHLO, STARTTLS, MAIL, RCPT, DATA, BDAT,
 * RSET, NOOP and QUIT, can delay every reply batch (--latency), defer or
 * bounce a share of recipients, and advertise PIPELINING/CHUNKING or not.
 *
 * Every message must carry "X-Bench-Digest: len=N; sha256=HEX" (folded or
 * not) in its
 * header section, N and HEX describing the body (everything after the
 * blank line that ends the header section, CRLF line ends, after
 * dot-unstuffing, including the last line's CRLF). The sink streams the
 * body through SHA-256 and compares: a message that matches is counted
 * "ok" and answered 250; one that does not (or has no digest) is counted
 * "corrupt" and answered 554, so a sender that sends nothing, or the
 * wrong thing, cannot score. Headers the relaying client adds (Received:,
 * Message-ID:) do not matter.
 *
 * Order per connection: accept -> greeting -> command lines (pipelined
 * batches are answered in one write) -> STARTTLS -> handshake -> EHLO ->
 * transactions -> QUIT. With --latency L, the replies that one read's
 * worth of input produced are released L ms after that input arrived,
 * while the connection goes on reading and answering (a server that takes
 * L to answer each command, pipelined or not, however the client cut its
 * writes into segments). The main thread
 * only waits for signals: SIGUSR1 writes the stats file, SIGTERM/SIGINT
 * write it and exit, and with --expect N it is written (complete=true)
 * as soon as N messages (ok + corrupt) were counted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#define IN_CAP		16384		/* command/data read buffer per connection */
#define HDR_CAP		65536		/* header section limit of a message */
#define LINE_MAX_LEN	4096
#define EV_BATCH	256
#define MAX_HELD	64		/* held reply batches per connection */

struct conf {
	struct sockaddr_in addr;
	unsigned threads;
	const char *cert, *key, *stats, *name;
	int tls_min, tls_max, resume, pipelining, chunking, reject_corrupt;
	uint64_t latency_ns;
	double defer_rate, bounce_rate;
	uint64_t expect;
};

/* Written only by the owning thread (relaxed stores), read by main. */
struct stats {
	uint64_t conns, active, max_active;
	uint64_t msgs_ok, msgs_corrupt, msgs_no_digest, bytes_ok;
	uint64_t rcpt_ok, rcpt_deferred, rcpt_bounced;
	uint64_t hs_full, hs_resumed, hs_failed, tls12, tls13, x25519, other_group;
	uint64_t plain_msgs, tls_msgs, bdat_msgs;
	uint64_t first_conn_us, last_msg_us;	/* CLOCK_REALTIME */
} __attribute__((aligned(64)));

#define ST_ADD(t, f, n) __atomic_store_n(&(t)->st.f, (t)->st.f + (n), __ATOMIC_RELAXED)
#define ST_LOAD(t, f) __atomic_load_n(&(t)->st.f, __ATOMIC_RELAXED)

enum cstate { C_CMD, C_DATA, C_BDAT, C_HANDSHAKE, C_CLOSING };

/* DATA dot-unstuffing states */
enum dstate { D_BOL, D_MID, D_CR, D_DOT, D_DOTCR };

struct thr;

struct conn {
	struct thr *t;
	int fd;
	SSL *ssl;
	enum cstate state;
	int can_read, can_write, tls_pending, close_after_flush, dead;
	int tls;
	unsigned nev;			/* its reply batches still held (--latency) */
	size_t rel;			/* out bytes released for sending */
	char in[IN_CAP];
	size_t in_len;
	char *out;
	size_t out_len, out_off, out_cap;
	/* transaction */
	int have_mail, msg_open;
	unsigned nrcpt;
	uint64_t bdat_left;
	int bdat_last;
	enum dstate ds;
	/* message content */
	char *hdr;
	size_t hdr_len;
	int in_body, hdr_overflow;
	uint64_t body_len;
	EVP_MD_CTX *md;
};

struct thr {
	unsigned idx;
	pthread_t tid;
	int ep, lfd;
	uint64_t rng;
	/* held reply batches in due order (the latency is constant) */
	struct due_ev {
		struct conn *c;
		uint64_t due_ns;
		size_t end;		/* release out up to here */
	} *ev;
	size_t ev_cap, ev_head, ev_n;
	struct stats st;
};

static struct conf C = {
	.threads = 1, .tls_min = TLS1_2_VERSION, .tls_max = TLS1_3_VERSION,
	.resume = 1, .pipelining = 1, .chunking = 1, .reject_corrupt = 1,
	.name = "sink.bench.test",
};
static SSL_CTX *g_ctx;
static EVP_MD *g_sha256;
static struct thr *T;
static volatile int g_stop;
static uint64_t g_counted;		/* messages ok + corrupt, all threads */

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t
real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t
rng_next(struct thr *t)
{
	uint64_t x = t->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	t->rng = x;
	return x;
}

/* ---------------------------------------------------------------- */
/* output                                                             */
/* ---------------------------------------------------------------- */

static int
out_put(struct conn *c, const char *s, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 512;
		char *p;

		while (cap < c->out_len + n)
			cap *= 2;
		p = realloc(c->out, cap);
		if (p == NULL)
			return -ENOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
	return 0;
}

static void
reply(struct conn *c, const char *s)
{
	if (out_put(c, s, strlen(s)) < 0 || out_put(c, "\r\n", 2) < 0)
		c->dead = 1;
}

static void conn_start_tls(struct conn *c);

/* Write what is buffered and released; 0 when that is out, 1 when
 * blocked, -1 dead. Starts TLS / closes once everything is out. */
static int
conn_flush(struct conn *c)
{
	size_t lim = C.latency_ns > 0 ? c->rel : c->out_len;

	while (c->out_off < lim) {
		size_t n = lim - c->out_off;
		ssize_t w;

		if (c->ssl != NULL && c->state != C_HANDSHAKE) {
			int r = SSL_write(c->ssl, c->out + c->out_off, (int)n);

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE) {
					c->can_write = 0;
					return 1;
				}
				if (e == SSL_ERROR_WANT_READ)
					return 1;
				return -1;
			}
			w = r;
		} else {
			w = send(c->fd, c->out + c->out_off, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					c->can_write = 0;
					return 1;
				}
				if (errno == EINTR)
					continue;
				return -1;
			}
		}
		c->out_off += (size_t)w;
	}
	if (c->out_off < c->out_len || c->nev > 0)
		return 0;
	c->out_off = c->out_len = c->rel = 0;
	if (c->close_after_flush) {
		c->dead = 1;
		return -1;
	}
	if (c->tls_pending) {
		c->tls_pending = 0;
		conn_start_tls(c);
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* message content: header section, digest, body hash                 */
/* ---------------------------------------------------------------- */

static void
msg_reset(struct conn *c)
{
	c->msg_open = 0;
	c->hdr_len = 0;
	c->in_body = 0;
	c->hdr_overflow = 0;
	c->body_len = 0;
}

static int
msg_begin(struct conn *c)
{
	msg_reset(c);
	c->msg_open = 1;
	if (c->hdr == NULL && (c->hdr = malloc(HDR_CAP)) == NULL)
		return -ENOMEM;
	if (c->md == NULL && (c->md = EVP_MD_CTX_new()) == NULL)
		return -ENOMEM;
	if (!EVP_DigestInit_ex(c->md, g_sha256, NULL))
		return -EIO;
	return 0;
}

static void
msg_feed(struct conn *c, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (!c->in_body) {
		size_t old = c->hdr_len, room = HDR_CAP - old, take = n < room ? n : room;
		size_t i = old >= 3 ? old - 3 : 0;

		memcpy(c->hdr + old, p, take);
		c->hdr_len += take;
		for (; i + 4 <= c->hdr_len; i++) {
			if (memcmp(c->hdr + i, "\r\n\r\n", 4) == 0)
				break;
		}
		if (i + 4 > c->hdr_len) {
			if (c->hdr_len == HDR_CAP) {
				c->hdr_overflow = 1;	/* counted corrupt at the end */
				c->in_body = 1;
			}
			return;
		}
		/* the header section ends at i+4; the rest of p is body */
		c->in_body = 1;
		c->hdr_len = i + 4;
		p += c->hdr_len - old;
		n -= c->hdr_len - old;
		if (n == 0)
			return;
	}
	if (c->hdr_overflow)
		return;
	EVP_DigestUpdate(c->md, p, n);
	c->body_len += n;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch |= 0x20;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Find X-Bench-Digest in the header section: 0 found, -1 none. */
static int
msg_digest_hdr(const struct conn *c, uint64_t *len, unsigned char sha[32])
{
	static const char name[] = "x-bench-digest:";
	const size_t nl = sizeof(name) - 1;
	size_t i = 0;

	while (i + nl <= c->hdr_len) {
		if (strncasecmp(c->hdr + i, name, nl) == 0) {
			const char *v = c->hdr + i + nl, *e = c->hdr + c->hdr_len;
			const char *q;
			int got_len = 0, got_sha = 0;

			for (q = v; q < e; q++) {
				/* the value may be folded (a long one is) */
				if (*q == '\r') {
					if (e - q > 2 && q[1] == '\n' && (q[2] == ' ' || q[2] == '\t')) {
						q += 2;
						continue;
					}
					break;
				}
				if (e - q > 4 && strncasecmp(q, "len=", 4) == 0) {
					char *end;

					*len = strtoull(q + 4, &end, 10);
					got_len = end > q + 4;
				} else if (e - q > 7 + 64 && strncasecmp(q, "sha256=", 7) == 0) {
					int k;

					for (k = 0; k < 32; k++) {
						int hi = hexval(q[7 + 2 * k]), lo = hexval(q[8 + 2 * k]);

						if (hi < 0 || lo < 0)
							break;
						sha[k] = (unsigned char)(hi << 4 | lo);
					}
					got_sha = k == 32;
				}
			}
			return got_len && got_sha ? 0 : -1;
		}
		/* next line */
		{
			const char *nlp = memchr(c->hdr + i, '\n', c->hdr_len - i);

			if (nlp == NULL)
				break;
			i = (size_t)(nlp - c->hdr) + 1;
		}
	}
	return -1;
}

/* End of a message's content: count it and answer. */
static void
msg_end(struct conn *c)
{
	struct thr *t = c->t;
	unsigned char got[32], want[32];
	uint64_t want_len = 0;
	unsigned int gl = 0;
	int ok = 0, have = 0;

	EVP_DigestFinal_ex(c->md, got, &gl);
	if (c->in_body && !c->hdr_overflow) {
		have = msg_digest_hdr(c, &want_len, want) == 0;
		ok = have && want_len == c->body_len && memcmp(got, want, 32) == 0;
	}
	if (ok) {
		ST_ADD(t, msgs_ok, 1);
		ST_ADD(t, bytes_ok, c->hdr_len + c->body_len);
		if (c->tls)
			ST_ADD(t, tls_msgs, 1);
		else
			ST_ADD(t, plain_msgs, 1);
		reply(c, "250 2.0.0 Ok: queued as bench");
	} else {
		ST_ADD(t, msgs_corrupt, 1);
		if (!have)
			ST_ADD(t, msgs_no_digest, 1);
		if (C.reject_corrupt)
			reply(c, have ? "554 5.6.0 X-Bench-Digest mismatch: message damaged"
				  : "554 5.6.0 no valid X-Bench-Digest header");
		else
			reply(c, "250 2.0.0 Ok: queued as bench (corrupt)");
	}
	__atomic_store_n(&t->st.last_msg_us, real_us(), __ATOMIC_RELAXED);
	__atomic_fetch_add(&g_counted, 1, __ATOMIC_RELAXED);
	c->have_mail = 0;
	c->nrcpt = 0;
	c->msg_open = 0;
}

/* A BDAT chunk was read completely. */
static void
bdat_done(struct conn *c)
{
	c->state = C_CMD;
	if (!c->have_mail || c->nrcpt == 0) {
		reply(c, "554 5.5.1 no valid recipients");
	} else if (c->bdat_last) {
		ST_ADD(c->t, bdat_msgs, 1);
		msg_end(c);
	} else {
		reply(c, "250 2.0.0 chunk Ok");
	}
}

/* ---------------------------------------------------------------- */
/* SMTP commands                                                      */
/* ---------------------------------------------------------------- */

static void
cmd_ehlo(struct conn *c, int ehlo)
{
	char buf[300];

	c->have_mail = 0;
	c->nrcpt = 0;
	if (!ehlo) {
		snprintf(buf, sizeof(buf), "250 %s", C.name);
		reply(c, buf);
		return;
	}
	snprintf(buf, sizeof(buf), "250-%s", C.name);
	reply(c, buf);
	if (C.pipelining)
		reply(c, "250-PIPELINING");
	reply(c, "250-SIZE 0");
	reply(c, "250-8BITMIME");
	if (C.chunking)
		reply(c, "250-CHUNKING");
	if (g_ctx != NULL && !c->tls)
		reply(c, "250-STARTTLS");
	reply(c, "250 ENHANCEDSTATUSCODES");
}

static void
cmd_rcpt(struct conn *c)
{
	struct thr *t = c->t;
	double u = (double)(rng_next(t) >> 11) / 9007199254740992.0;

	if (!c->have_mail) {
		reply(c, "503 5.5.1 MAIL first");
		return;
	}
	if (u < C.bounce_rate) {
		ST_ADD(t, rcpt_bounced, 1);
		reply(c, "550 5.1.1 bench: bounced on purpose");
	} else if (u < C.bounce_rate + C.defer_rate) {
		ST_ADD(t, rcpt_deferred, 1);
		reply(c, "451 4.3.0 bench: deferred on purpose");
	} else {
		ST_ADD(t, rcpt_ok, 1);
		c->nrcpt++;
		reply(c, "250 2.1.5 Ok");
	}
}

/* One command line (without its line end). */
static void
cmd_line(struct conn *c, char *l, size_t n)
{
	char verb[5] = { 0 };
	size_t i;

	for (i = 0; i < 4 && i < n; i++)
		verb[i] = (char)(l[i] & ~0x20);
	if (n >= 4 && (n == 4 || l[4] == ' ') && strcmp(verb, "EHLO") == 0) {
		cmd_ehlo(c, 1);
	} else if (n >= 4 && strcmp(verb, "HELO") == 0) {
		cmd_ehlo(c, 0);
	} else if (n >= 10 && strncasecmp(l, "MAIL FROM:", 10) == 0) {
		if (c->have_mail) {
			reply(c, "503 5.5.1 nested MAIL");
			return;
		}
		c->have_mail = 1;
		c->nrcpt = 0;
		reply(c, "250 2.1.0 Ok");
	} else if (n >= 8 && strncasecmp(l, "RCPT TO:", 8) == 0) {
		cmd_rcpt(c);
	} else if (n == 4 && strcmp(verb, "DATA") == 0) {
		if (!c->have_mail || c->nrcpt == 0) {
			c->have_mail = 0;
			reply(c, "554 5.5.1 no valid recipients");
			return;
		}
		if (msg_begin(c) < 0) {
			c->dead = 1;
			return;
		}
		c->state = C_DATA;
		c->ds = D_BOL;
		reply(c, "354 End data with <CR><LF>.<CR><LF>");
	} else if (n > 5 && strcmp(verb, "BDAT") == 0 && C.chunking) {
		char *end;
		uint64_t sz = strtoull(l + 5, &end, 10);

		if (end == l + 5) {
			reply(c, "501 5.5.4 BDAT size");
			return;
		}
		while (*end == ' ')
			end++;
		c->bdat_last = strncasecmp(end, "LAST", 4) == 0;
		if (c->have_mail && c->nrcpt > 0 && !c->msg_open && msg_begin(c) < 0) {
			c->dead = 1;
			return;
		}
		c->bdat_left = sz;
		c->state = C_BDAT;
		if (sz == 0)
			bdat_done(c);
	} else if (n == 8 && strncasecmp(l, "STARTTLS", 8) == 0) {
		if (g_ctx == NULL || c->tls) {
			reply(c, "502 5.5.1 STARTTLS not available");
			return;
		}
		reply(c, "220 2.0.0 Ready to start TLS");
		c->tls_pending = 1;
	} else if (n == 4 && strcmp(verb, "RSET") == 0) {
		c->have_mail = 0;
		c->nrcpt = 0;
		msg_reset(c);
		reply(c, "250 2.0.0 Ok");
	} else if (n >= 4 && strcmp(verb, "NOOP") == 0) {
		reply(c, "250 2.0.0 Ok");
	} else if (n == 4 && strcmp(verb, "QUIT") == 0) {
		reply(c, "221 2.0.0 Bye");
		c->close_after_flush = 1;
	} else {
		reply(c, "502 5.5.2 command not recognized");
	}
}

/* DATA bytes: dot-unstuff and feed; returns bytes consumed (stops after
 * the terminating line). */
static size_t
data_feed(struct conn *c, const char *p, size_t n)
{
	size_t i = 0, span;

	while (i < n) {
		switch (c->ds) {
		case D_MID: {
			const char *cr = memchr(p + i, '\r', n - i);

			span = cr ? (size_t)(cr - (p + i)) + 1 : n - i;
			msg_feed(c, p + i, span);
			i += span;
			if (cr)
				c->ds = D_CR;
			break;
		}
		case D_CR:
			msg_feed(c, p + i, 1);
			c->ds = p[i] == '\n' ? D_BOL : p[i] == '\r' ? D_CR : D_MID;
			i++;
			break;
		case D_BOL:
			if (p[i] == '.') {
				c->ds = D_DOT;
				i++;
			} else {
				c->ds = D_MID;
			}
			break;
		case D_DOT:
			if (p[i] == '\r') {
				c->ds = D_DOTCR;
				i++;
			} else {
				c->ds = D_MID;	/* stuffed dot dropped */
			}
			break;
		case D_DOTCR:
			if (p[i] == '\n') {
				i++;
				c->state = C_CMD;
				msg_end(c);
				return i;
			}
			/* ".\r" then something else: keep the CR as content */
			msg_feed(c, "\r", 1);
			c->ds = D_CR;
			break;
		}
	}
	return i;
}

/* Work through the input buffer; replies accumulate in out. */
static void
conn_process(struct conn *c)
{
	size_t off = 0;

	while (off < c->in_len && !c->dead && !c->tls_pending && !c->close_after_flush) {
		if (c->state == C_DATA) {
			off += data_feed(c, c->in + off, c->in_len - off);
		} else if (c->state == C_BDAT) {
			size_t n = c->in_len - off;

			if (n > c->bdat_left)
				n = (size_t)c->bdat_left;
			if (c->have_mail && c->nrcpt > 0)
				msg_feed(c, c->in + off, n);
			off += n;
			c->bdat_left -= n;
			if (c->bdat_left == 0)
				bdat_done(c);
		} else {
			char *l = c->in + off, *nl = memchr(l, '\n', c->in_len - off);
			size_t len;

			if (nl == NULL) {
				if (c->in_len - off > LINE_MAX_LEN) {
					reply(c, "500 5.5.2 line too long");
					c->close_after_flush = 1;
					off = c->in_len;
				}
				break;
			}
			len = (size_t)(nl - l);
			off += len + 1;
			if (len > 0 && l[len - 1] == '\r')
				len--;
			l[len] = 0;
			cmd_line(c, l, len);
		}
	}
	if (c->tls_pending)
		off = c->in_len;	/* plaintext after STARTTLS is discarded */
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
}

/* ---------------------------------------------------------------- */
/* connection I/O                                                     */
/* ---------------------------------------------------------------- */

/* A dead connection: closed now, freed once no held batch names it. */
static void
conn_free(struct conn *c)
{
	struct thr *t = c->t;

	if (c->fd >= 0) {
		if (c->ssl != NULL)
			SSL_free(c->ssl);
		c->ssl = NULL;
		close(c->fd);
		c->fd = -1;
		ST_ADD(t, active, -1);
	}
	if (c->nev > 0)
		return;
	free(c->out);
	free(c->hdr);
	EVP_MD_CTX_free(c->md);
	free(c);
}

static void
conn_start_tls(struct conn *c)
{
	c->ssl = SSL_new(g_ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) {
		c->dead = 1;
		return;
	}
	SSL_set_accept_state(c->ssl);
	c->state = C_HANDSHAKE;
	c->in_len = 0;
	c->have_mail = 0;
	c->nrcpt = 0;
}

static void
conn_handshake(struct conn *c)
{
	struct thr *t = c->t;
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		int v = SSL_version(c->ssl), g = SSL_get_negotiated_group(c->ssl);

		c->state = C_CMD;
		c->tls = 1;
		if (SSL_session_reused(c->ssl))
			ST_ADD(t, hs_resumed, 1);
		else
			ST_ADD(t, hs_full, 1);
		if (v == TLS1_3_VERSION)
			ST_ADD(t, tls13, 1);
		else if (v == TLS1_2_VERSION)
			ST_ADD(t, tls12, 1);
		if (g == NID_X25519)
			ST_ADD(t, x25519, 1);
		else
			ST_ADD(t, other_group, 1);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->can_read = 0;
		break;
	case SSL_ERROR_WANT_WRITE:
		c->can_write = 0;
		break;
	default:
		ST_ADD(t, hs_failed, 1);
		c->dead = 1;
		ERR_clear_error();
	}
}

/* Read what the socket has (until EAGAIN or the buffer is full). */
static int
conn_read(struct conn *c)
{
	size_t room = IN_CAP - 1 - c->in_len;
	ssize_t n;

	if (room == 0)
		return 0;
	if (c->ssl != NULL) {
		int r = SSL_read(c->ssl, c->in + c->in_len, (int)room);

		if (r <= 0) {
			int e = SSL_get_error(c->ssl, r);

			if (e == SSL_ERROR_WANT_READ) {
				c->can_read = 0;
				return 0;
			}
			if (e == SSL_ERROR_WANT_WRITE) {
				c->can_write = 0;
				return 0;
			}
			ERR_clear_error();
			return -1;
		}
		n = r;
	} else {
		n = recv(c->fd, c->in + c->in_len, room, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->can_read = 0;
				return 0;
			}
			return errno == EINTR ? 0 : -1;
		}
		if (n == 0)
			return -1;
	}
	c->in_len += (size_t)n;
	return 1;
}

/* Hold the replies produced so far until the latency has passed. */
static int
ev_push(struct conn *c)
{
	struct thr *t = c->t;

	if (t->ev_n == t->ev_cap) {
		size_t cap = t->ev_cap ? t->ev_cap * 2 : 1024, i;
		struct due_ev *n = malloc(cap * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		for (i = 0; i < t->ev_n; i++)
			n[i] = t->ev[(t->ev_head + i) % t->ev_cap];
		free(t->ev);
		t->ev = n;
		t->ev_cap = cap;
		t->ev_head = 0;
	}
	t->ev[(t->ev_head + t->ev_n) % t->ev_cap] = (struct due_ev){
		.c = c, .due_ns = mono_ns() + C.latency_ns, .end = c->out_len };
	t->ev_n++;
	c->nev++;
	return 0;
}

/* Run a connection as far as it can go right now; frees it when it died. */
static void
conn_run(struct conn *c)
{
	unsigned guard;

	for (guard = 0; guard < (1u << 24) && !c->dead; guard++) {
		int progressed = 0;
		size_t lim = C.latency_ns > 0 ? c->rel : c->out_len;

		if (c->out_off < lim || (c->out_len == 0 && c->nev == 0 &&
					 (c->tls_pending || c->close_after_flush))) {
			int r = conn_flush(c);

			if (r < 0) {
				c->dead = 1;
				break;
			}
			if (r > 0)
				return;
			progressed = 1;
		}
		if (c->state == C_HANDSHAKE) {
			if (!c->can_read && !c->can_write)
				return;
			conn_handshake(c);
			if (c->state == C_HANDSHAKE) {
				if (c->dead)
					break;
				return;
			}
			continue;
		}
		/* nothing more is read after STARTTLS or QUIT until the reply is out */
		if (!c->tls_pending && !c->close_after_flush && c->nev < MAX_HELD &&
		    (c->can_read || (c->ssl != NULL && SSL_has_pending(c->ssl)))) {
			int r = conn_read(c);

			if (r < 0) {
				c->dead = 1;
				break;
			}
			if (r > 0)
				progressed = 1;
		}
		if (c->in_len > 0 && !c->tls_pending && !c->close_after_flush) {
			size_t before = c->in_len, ob = c->out_len;

			conn_process(c);
			if (c->dead)
				break;
			if (c->in_len != before || c->out_len != ob)
				progressed = 1;
			if (c->out_len > ob && C.latency_ns > 0 && ev_push(c) < 0) {
				c->dead = 1;
				break;
			}
		}
		if (!progressed)
			return;
	}
	if (c->dead)
		conn_free(c);
}

static void
thr_accept(struct thr *t)
{
	for (;;) {
		int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
		struct conn *c;
		uint64_t act;

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->t = t;
		c->fd = fd;
		c->state = C_CMD;
		c->can_write = 1;
		ev.data.ptr = c;
		if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		if (t->st.first_conn_us == 0)
			__atomic_store_n(&t->st.first_conn_us, real_us(), __ATOMIC_RELAXED);
		ST_ADD(t, conns, 1);
		ST_ADD(t, active, 1);
		act = t->st.active;
		if (act > t->st.max_active)
			__atomic_store_n(&t->st.max_active, act, __ATOMIC_RELAXED);
		{
			char buf[320];

			snprintf(buf, sizeof(buf), "220 %s ESMTP mp-sink", C.name);
			reply(c, buf);
		}
		if (C.latency_ns > 0 && ev_push(c) < 0)
			c->dead = 1;
		conn_run(c);
	}
}

static void *
thr_main(void *arg)
{
	struct thr *t = arg;
	struct epoll_event evs[EV_BATCH], lev = { .events = EPOLLIN | EPOLLET };

	lev.data.ptr = NULL;
	epoll_ctl(t->ep, EPOLL_CTL_ADD, t->lfd, &lev);
	while (!g_stop) {
		int timeout = 100, n, i;
		uint64_t now;

		if (t->ev_n > 0) {
			uint64_t d = t->ev[t->ev_head].due_ns, nw = mono_ns();

			timeout = d <= nw ? 0 : (int)((d - nw) / 1000000) + 1;
			if (timeout > 100)
				timeout = 100;
		}
		n = epoll_wait(t->ep, evs, EV_BATCH, timeout);
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c == NULL) {
				thr_accept(t);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->can_read = 1;
			if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				c->can_write = 1;
			if (!c->dead)
				conn_run(c);
		}
		now = mono_ns();
		while (t->ev_n > 0 && t->ev[t->ev_head].due_ns <= now) {
			struct due_ev e = t->ev[t->ev_head];

			t->ev_head = (t->ev_head + 1) % t->ev_cap;
			t->ev_n--;
			e.c->nev--;
			if (e.c->dead) {
				conn_free(e.c);
				continue;
			}
			if (e.end > e.c->rel)
				e.c->rel = e.end;
			conn_run(e.c);
		}
	}
	return NULL;
}

/* ---------------------------------------------------------------- */
/* stats and set-up                                                   */
/* ---------------------------------------------------------------- */

static int
stats_write(int complete)
{
	struct stats s = { 0 };
	struct rusage ru;
	char tmp[4096];
	FILE *f;
	unsigned i;

	for (i = 0; i < C.threads; i++) {
		struct thr *t = &T[i];
		uint64_t fc = ST_LOAD(t, first_conn_us), lm = ST_LOAD(t, last_msg_us);

#define SUM(f) s.f += ST_LOAD(t, f)
		SUM(conns); SUM(active); SUM(max_active); SUM(msgs_ok); SUM(msgs_corrupt);
		SUM(msgs_no_digest); SUM(bytes_ok); SUM(rcpt_ok); SUM(rcpt_deferred);
		SUM(rcpt_bounced); SUM(hs_full); SUM(hs_resumed); SUM(hs_failed);
		SUM(tls12); SUM(tls13); SUM(x25519); SUM(other_group); SUM(plain_msgs);
		SUM(tls_msgs); SUM(bdat_msgs);
#undef SUM
		if (fc > 0 && (s.first_conn_us == 0 || fc < s.first_conn_us))
			s.first_conn_us = fc;
		if (lm > s.last_msg_us)
			s.last_msg_us = lm;
	}
	getrusage(RUSAGE_SELF, &ru);
	if (C.stats == NULL) {
		f = stdout;
	} else {
		snprintf(tmp, sizeof(tmp), "%s.tmp", C.stats);
		f = fopen(tmp, "w");
		if (f == NULL)
			return -errno;
	}
	fprintf(f, "{\"complete\":%s,\"threads\":%u,\"latency_ms\":%.1f,"
		"\"connections\":%lu,\"active\":%lu,\"max_active_per_thread_sum\":%lu,"
		"\"messages_ok\":%lu,\"messages_corrupt\":%lu,\"messages_no_digest\":%lu,"
		"\"bytes_ok\":%lu,\"rcpt_ok\":%lu,\"rcpt_deferred\":%lu,\"rcpt_bounced\":%lu,"
		"\"handshakes_full\":%lu,\"handshakes_resumed\":%lu,\"handshakes_failed\":%lu,"
		"\"tls_versions\":{\"TLSv1.2\":%lu,\"TLSv1.3\":%lu},"
		"\"groups\":{\"X25519\":%lu,\"other\":%lu},"
		"\"tls_messages\":%lu,\"plaintext_messages\":%lu,\"bdat_messages\":%lu,"
		"\"first_conn_ts\":%.6f,\"last_msg_ts\":%.6f,\"now_ts\":%.6f,"
		"\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f}\n",
		complete ? "true" : "false", C.threads, (double)C.latency_ns / 1e6,
		s.conns, s.active, s.max_active, s.msgs_ok, s.msgs_corrupt, s.msgs_no_digest,
		s.bytes_ok, s.rcpt_ok, s.rcpt_deferred, s.rcpt_bounced, s.hs_full, s.hs_resumed,
		s.hs_failed, s.tls12, s.tls13, s.x25519, s.other_group, s.tls_msgs, s.plain_msgs,
		s.bdat_msgs, (double)s.first_conn_us / 1e6, (double)s.last_msg_us / 1e6,
		(double)real_us() / 1e6,
		(double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
		(double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	if (f == stdout) {
		fflush(f);
		return 0;
	}
	if (fclose(f) != 0 || rename(tmp, C.stats) != 0)
		return -errno;
	return 0;
}

static int
tls_setup(void)
{
	g_ctx = SSL_CTX_new(TLS_server_method());
	if (g_ctx == NULL)
		return -1;
	SSL_CTX_set_min_proto_version(g_ctx, C.tls_min);
	SSL_CTX_set_max_proto_version(g_ctx, C.tls_max);
	if (SSL_CTX_use_certificate_chain_file(g_ctx, C.cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(g_ctx, C.key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(g_ctx) != 1) {
		ERR_print_errors_fp(stderr);
		return -1;
	}
	SSL_CTX_set_mode(g_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* read what the socket has, not one record header at a time: half the
	 * read syscalls (SSL_has_pending then covers the buffered rest) */
	SSL_CTX_set_read_ahead(g_ctx, 1);
	SSL_CTX_set_session_id_context(g_ctx, (const unsigned char *)"mp-sink", 7);
	if (C.resume) {
		SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_SERVER);
		SSL_CTX_sess_set_cache_size(g_ctx, 1 << 20);
		SSL_CTX_set_timeout(g_ctx, 3600);
		SSL_CTX_set_num_tickets(g_ctx, 2);
	} else {
		SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(g_ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(g_ctx, 0);
	}
	return 0;
}

static int
parse_tls_version(const char *s)
{
	if (strcmp(s, "1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(s, "1.3") == 0)
		return TLS1_3_VERSION;
	return -1;
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: mp-sink --listen IP:PORT [options]\n\n"
		"A fast SMTP sink for benchmarks: counts messages whose body matches their\n"
		"X-Bench-Digest header (\"len=N; sha256=HEX\"), rejects the others with 554.\n\n"
		"  --listen IP:PORT      address to listen on (one SO_REUSEPORT socket per thread)\n"
		"  --threads N           worker threads (default 1)\n"
		"  --cert FILE --key FILE  offer STARTTLS with this certificate chain and key\n"
		"  --tls-min 1.2|1.3 --tls-max 1.2|1.3   protocol range (default 1.2..1.3)\n"
		"  --no-resume           no session cache, no tickets: every handshake is full\n"
		"  --latency MS          hold each batch of replies this long (default 0)\n"
		"  --defer-rate P        share of recipients answered 451 (0..1)\n"
		"  --bounce-rate P       share of recipients answered 550 (0..1)\n"
		"  --no-pipelining       do not advertise PIPELINING\n"
		"  --no-chunking         do not advertise (or accept) BDAT\n"
		"  --accept-corrupt      answer 250 to corrupt messages (still counted corrupt)\n"
		"  --name NAME           host name in greeting and EHLO (default sink.bench.test)\n"
		"  --stats FILE          write stats JSON here (at start, on SIGUSR1, at exit,\n"
		"                        and when --expect is reached); default stdout at exit\n"
		"  --expect N            write stats with complete=true once N messages counted\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 't' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "tls-min", required_argument, NULL, 'm' },
		{ "tls-max", required_argument, NULL, 'M' },
		{ "no-resume", no_argument, NULL, 'R' },
		{ "latency", required_argument, NULL, 'L' },
		{ "defer-rate", required_argument, NULL, 'd' },
		{ "bounce-rate", required_argument, NULL, 'b' },
		{ "no-pipelining", no_argument, NULL, 'P' },
		{ "no-chunking", no_argument, NULL, 'C' },
		{ "accept-corrupt", no_argument, NULL, 'A' },
		{ "name", required_argument, NULL, 'n' },
		{ "stats", required_argument, NULL, 's' },
		{ "expect", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *listen_s = NULL;
	sigset_t set;
	struct rlimit rl;
	unsigned i;
	int o, expect_done = 0;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'l': listen_s = optarg; break;
		case 't': C.threads = (unsigned)atoi(optarg); break;
		case 'c': C.cert = optarg; break;
		case 'k': C.key = optarg; break;
		case 'm': C.tls_min = parse_tls_version(optarg); break;
		case 'M': C.tls_max = parse_tls_version(optarg); break;
		case 'R': C.resume = 0; break;
		case 'L': C.latency_ns = (uint64_t)(atof(optarg) * 1e6); break;
		case 'd': C.defer_rate = atof(optarg); break;
		case 'b': C.bounce_rate = atof(optarg); break;
		case 'P': C.pipelining = 0; break;
		case 'C': C.chunking = 0; break;
		case 'A': C.reject_corrupt = 0; break;
		case 'n': C.name = optarg; break;
		case 's': C.stats = optarg; break;
		case 'e': C.expect = strtoull(optarg, NULL, 10); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (listen_s == NULL || C.threads < 1 || C.threads > 256 || C.tls_min < 0 ||
	    C.tls_max < 0 || C.defer_rate < 0 || C.bounce_rate < 0 ||
	    C.defer_rate + C.bounce_rate > 1 || (C.cert == NULL) != (C.key == NULL)) {
		usage(stderr);
		return 1;
	}
	{
		char host[64];
		const char *colon = strrchr(listen_s, ':');

		if (colon == NULL || (size_t)(colon - listen_s) >= sizeof(host)) {
			fprintf(stderr, "mp-sink: --listen wants IP:PORT\n");
			return 1;
		}
		memcpy(host, listen_s, (size_t)(colon - listen_s));
		host[colon - listen_s] = 0;
		C.addr.sin_family = AF_INET;
		C.addr.sin_port = htons((uint16_t)atoi(colon + 1));
		if (inet_pton(AF_INET, host, &C.addr.sin_addr) != 1) {
			fprintf(stderr, "mp-sink: bad address %s\n", host);
			return 1;
		}
	}
	/* thousands of sessions: as many descriptors as allowed */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (g_sha256 == NULL || (C.cert != NULL && tls_setup() < 0)) {
		fprintf(stderr, "mp-sink: TLS set-up failed\n");
		return 1;
	}
	/* signals go to the main thread only */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	T = calloc(C.threads, sizeof(*T));
	if (T == NULL)
		return 1;
	for (i = 0; i < C.threads; i++) {
		struct thr *t = &T[i];
		int one = 1;

		t->idx = i;
		t->rng = 0x9e3779b97f4a7c15ull * (i + 1);
		t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		t->ep = epoll_create1(EPOLL_CLOEXEC);
		if (t->lfd < 0 || t->ep < 0 ||
		    setsockopt(t->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    setsockopt(t->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		    bind(t->lfd, (struct sockaddr *)&C.addr, sizeof(C.addr)) < 0 ||
		    listen(t->lfd, 4096) < 0) {
			fprintf(stderr, "mp-sink: listen %s: %s\n", listen_s, strerror(errno));
			return 1;
		}
	}
	for (i = 0; i < C.threads; i++) {
		if (pthread_create(&T[i].tid, NULL, thr_main, &T[i]) != 0) {
			fprintf(stderr, "mp-sink: pthread_create failed\n");
			return 1;
		}
	}
	if (C.stats != NULL && stats_write(0) < 0) {
		fprintf(stderr, "mp-sink: cannot write %s: %s\n", C.stats, strerror(errno));
		g_stop = 1;
	}
	while (!g_stop) {
		struct timespec ts = { 0, 20 * 1000000 };
		int sig = sigtimedwait(&set, NULL, &ts);

		if (sig == SIGUSR1) {
			stats_write(0);
		} else if (sig == SIGTERM || sig == SIGINT) {
			break;
		}
		if (C.expect > 0 && !expect_done &&
		    __atomic_load_n(&g_counted, __ATOMIC_RELAXED) >= C.expect) {
			expect_done = 1;
			stats_write(1);
		}
	}
	g_stop = 1;
	for (i = 0; i < C.threads; i++)
		pthread_join(T[i].tid, NULL);
	stats_write(C.expect > 0 ? __atomic_load_n(&g_counted, __ATOMIC_RELAXED) >= C.expect : 1);
	return 0;
}
