/*
 * ksock_ engine against real peers on loopback: Postfix's smtp-sink for
 * volume (50 concurrent sessions, 1000 messages, every one in the dump
 * directory) and a threaded SMTP server in this process with OpenSSL
 * STARTTLS / implicit TLS and a throwaway PKI for everything smtp-sink
 * cannot do: certificate failures by reason, TLS required without
 * STARTTLS (no MAIL may reach the server), resumption on a second
 * connection, a server that closes mid-DATA, resets, stalls, talks
 * garbage, async TLS jobs paused and resumed through a wait fd and
 * through the ready callback, and the memory an idle session holds.
 * Every test checks that each recipient got exactly one result.
 * smtp-sink parts are skipped (not failed) when it is not installed.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ksock.h"
#include "mp_test.h"
#include "mp_test_async.h"
#include "mp_test_pki.h"

/* ---------------------------------------------------------------- */
/* throwaway PKI                                                      */
/* ---------------------------------------------------------------- */

static struct cred ca, good, expired, selfsigned, wrongname;
static char ca_path[64];

static void
pki_init(void)
{
	FILE *f;
	int fd;

	ca = mkcred("KS Test CA", 1, NULL, -10, 3650);
	good = mkcred("mx.test", 0, &ca, -1, 365);
	expired = mkcred("mx.test", 0, &ca, -30, -1);
	selfsigned = mkcred("mx.test", 0, NULL, -1, 365);
	wrongname = mkcred("other.test", 0, &ca, -1, 365);
	snprintf(ca_path, sizeof(ca_path), "/tmp/mp_ksock_ca_XXXXXX");
	fd = mkstemp(ca_path);
	f = fdopen(fd, "w");
	PEM_write_X509(f, ca.cert);
	fclose(f);
}

static void
pki_fini(void)
{
	struct cred *all[] = { &ca, &good, &expired, &selfsigned, &wrongname };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		cred_free(all[i]);
	unlink(ca_path);
}

/* ---------------------------------------------------------------- */
/* the in-process SMTP server                                         */
/* ---------------------------------------------------------------- */

enum srv_mode {
	SRV_PLAIN = 0,		/* no STARTTLS offered */
	SRV_STARTTLS,
	SRV_IMPLICIT,		/* TLS before the greeting */
	SRV_STALL,		/* accept, never say anything */
	SRV_GARBAGE,		/* a greeting that is not SMTP */
	SRV_RESET,		/* greet, reset the connection after EHLO */
	SRV_CLOSE_DATA,		/* close after the first body line */
	SRV_STALL_MAIL,		/* never answer MAIL (idle sessions) */
	SRV_FLOOD,		/* an EHLO reply that never ends */
	SRV_TLS_GARBAGE,	/* 220 to STARTTLS, then bytes that are no TLS */
	SRV_INJECT,		/* plaintext after the 220 to STARTTLS, then TLS */
};

#define SRV_CONNS_MAX 128

struct srv {
	int lfd;
	int port;
	enum srv_mode mode;
	SSL_CTX *sctx;
	pthread_t th;
	atomic_int stop;
	atomic_int conns;
	atomic_int mails;	/* MAIL FROM commands seen */
	atomic_int msgs;	/* messages accepted with 250 */
	atomic_int tls_ok;
	atomic_int tls_fail;
	atomic_int reused;	/* server side saw a resumed session */
	atomic_long body_bytes;	/* DATA bytes of accepted messages, CRLF counted */
	pthread_t cth[SRV_CONNS_MAX];
	int ncth;
	int notify_fd;		/* gets one byte per MAIL when >= 0 */
};

struct cx {
	struct srv *s;
	int fd;
	SSL *ssl;
	size_t len;
	char buf[16384];
};

static int
cx_recv(struct cx *c, void *p, size_t n)
{
	if (c->ssl != NULL) {
		int r = SSL_read(c->ssl, p, (int)n);

		return r > 0 ? r : -1;
	}
	for (;;) {
		ssize_t r = recv(c->fd, p, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		return r > 0 ? (int)r : -1;
	}
}

static void
cx_send(struct cx *c, const char *str)
{
	size_t n = strlen(str);

	if (c->ssl != NULL)
		SSL_write(c->ssl, str, (int)n);
	else
		send(c->fd, str, n, MSG_NOSIGNAL);
}

/* One line without CRLF into @p line. @return its length, -1 at EOF. */
static int
cx_line(struct cx *c, char *line, size_t cap)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);

		if (nl != NULL) {
			size_t l = (size_t)(nl - c->buf) + 1, k = l - 1;

			if (k > 0 && c->buf[k - 1] == '\r')
				k--;
			if (k >= cap)
				k = cap - 1;
			memcpy(line, c->buf, k);
			line[k] = '\0';
			memmove(c->buf, c->buf + l, c->len - l);
			c->len -= l;
			return (int)k;
		}
		if (c->len == sizeof(c->buf))
			return -1;
		int r = cx_recv(c, c->buf + c->len, sizeof(c->buf) - c->len);

		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

/* Hold the connection open, reading and ignoring, until EOF or stop. */
static void
cx_stall(struct cx *c)
{
	char b[4096];

	while (!atomic_load(&c->s->stop)) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };

		if (poll(&p, 1, 50) <= 0)
			continue;
		if (recv(c->fd, b, sizeof(b), 0) <= 0)
			return;
	}
}

static int
cx_tls(struct cx *c)
{
	c->ssl = SSL_new(c->s->sctx);
	SSL_set_fd(c->ssl, c->fd);
	if (SSL_accept(c->ssl) != 1) {
		atomic_fetch_add(&c->s->tls_fail, 1);
		return -1;
	}
	atomic_fetch_add(&c->s->tls_ok, 1);
	if (SSL_session_reused(c->ssl))
		atomic_fetch_add(&c->s->reused, 1);
	return 0;
}

static void *
srv_conn(void *arg)
{
	struct cx *c = arg;
	struct srv *s = c->s;
	char line[1100];
	int tls_offer = s->mode == SRV_STARTTLS || s->mode == SRV_TLS_GARBAGE ||
		s->mode == SRV_INJECT ||
		(s->mode == SRV_STALL_MAIL && s->sctx != NULL);

	struct timeval tv = { .tv_sec = 10 };

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (s->mode == SRV_STALL) {
		cx_stall(c);
		goto out;
	}
	if (s->mode == SRV_GARBAGE) {
		cx_send(c, "hello there, this is no SMTP server\r\n");
		cx_line(c, line, sizeof(line));
		goto out;
	}
	if (s->mode == SRV_IMPLICIT && cx_tls(c) < 0)
		goto out;
	cx_send(c, "220 mx.test ESMTP test\r\n");
	if (s->mode == SRV_RESET) {
		struct linger lg = { 1, 0 };

		/* Once its EHLO is here the client waits in HELO, so the reset
		 * lands in that stage however slowly either side runs (the read
		 * is bounded by SO_RCVTIMEO). */
		cx_line(c, line, sizeof(line));
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		goto out;
	}
	while (cx_line(c, line, sizeof(line)) >= 0) {
		if (strncasecmp(line, "EHLO", 4) == 0 && s->mode == SRV_FLOOD) {
			for (int i = 0; i < 20000 && !atomic_load(&s->stop); i++)
				cx_send(c, "250-FLOOD flood flood flood flood flood flood flood\r\n");
			goto out;
		} else if (strncasecmp(line, "EHLO", 4) == 0) {
			cx_send(c, "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n");
			if (tls_offer && c->ssl == NULL)
				cx_send(c, "250-STARTTLS\r\n");
			cx_send(c, "250 ENHANCEDSTATUSCODES\r\n");
		} else if (strncasecmp(line, "STARTTLS", 8) == 0 && tls_offer && c->ssl == NULL) {
			if (s->mode == SRV_INJECT)	/* one segment: CVE-2011-0411 */
				cx_send(c, "220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n");
			else
				cx_send(c, "220 2.0.0 go ahead\r\n");
			c->len = 0;	/* nothing from before the handshake */
			if (s->mode == SRV_TLS_GARBAGE) {
				for (int i = 0; i < 64; i++)
					cx_send(c, "250 this is not a TLS record at all\r\n");
				cx_stall(c);
				goto out;
			}
			if (cx_tls(c) < 0)
				goto out;
		} else if (strncasecmp(line, "MAIL", 4) == 0) {
			atomic_fetch_add(&s->mails, 1);
			if (s->notify_fd >= 0 && write(s->notify_fd, "m", 1) != 1)
				perror("notify");
			if (s->mode == SRV_STALL_MAIL) {
				cx_stall(c);
				goto out;
			}
			cx_send(c, "250 2.1.0 ok\r\n");
		} else if (strncasecmp(line, "RCPT", 4) == 0) {
			cx_send(c, "250 2.1.5 ok\r\n");
		} else if (strncasecmp(line, "DATA", 4) == 0) {
			int n = 0, k;
			long bytes = 0;

			cx_send(c, "354 go\r\n");
			while ((k = cx_line(c, line, sizeof(line))) >= 0) {
				if (s->mode == SRV_CLOSE_DATA)
					goto out;
				if (strcmp(line, ".") == 0) {
					n = 1;
					break;
				}
				bytes += k + 2;
			}
			if (!n)
				goto out;
			atomic_fetch_add(&s->body_bytes, bytes);
			atomic_fetch_add(&s->msgs, 1);
			cx_send(c, "250 2.0.0 queued\r\n");
		} else if (strncasecmp(line, "RSET", 4) == 0) {
			cx_send(c, "250 2.0.0 ok\r\n");
		} else if (strncasecmp(line, "QUIT", 4) == 0) {
			cx_send(c, "221 2.0.0 bye\r\n");
			break;
		} else {
			cx_send(c, "502 5.5.2 what\r\n");
		}
	}
out:
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	close(c->fd);
	free(c);
	return NULL;
}

static void *
srv_accept(void *arg)
{
	struct srv *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		struct cx *c;
		int fd;

		if (poll(&p, 1, 20) <= 0)
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (s->ncth == SRV_CONNS_MAX) {
			close(fd);
			continue;
		}
		atomic_fetch_add(&s->conns, 1);
		c = calloc(1, sizeof(*c));
		c->s = s;
		c->fd = fd;
		pthread_create(&s->cth[s->ncth++], NULL, srv_conn, c);
	}
	return NULL;
}

static int
listen_any(int backlog, int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, backlog) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &l) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static struct srv *
srv_start(enum srv_mode mode, const struct cred *cr)
{
	struct srv *s = calloc(1, sizeof(*s));

	s->mode = mode;
	s->notify_fd = -1;
	s->lfd = listen_any(128, &s->port);
	if (cr != NULL) {
		s->sctx = SSL_CTX_new(TLS_server_method());
		SSL_CTX_use_certificate(s->sctx, cr->cert);
		SSL_CTX_use_PrivateKey(s->sctx, cr->key);
		SSL_CTX_set_min_proto_version(s->sctx, TLS1_2_VERSION);
		SSL_CTX_set_session_id_context(s->sctx, (const unsigned char *)"ks", 2);
	}
	pthread_create(&s->th, NULL, srv_accept, s);
	return s;
}

static void
srv_stop(struct srv *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->th, NULL);
	for (int i = 0; i < s->ncth; i++)
		pthread_join(s->cth[i], NULL);
	close(s->lfd);
	SSL_CTX_free(s->sctx);
	free(s);
}

/* ---------------------------------------------------------------- */
/* the engine's owner                                                 */
/* ---------------------------------------------------------------- */

#define MSGS_MAX 2000

/* A run: `total` messages of one recipient each, at most per_conn per session. */
struct drv {
	unsigned total, per_conn, next, rpt;
	unsigned nres, sessions_done, dup;
	unsigned out[SMTP_OUT_LAST];
	unsigned stage[SMTP_STAGE_LAST];
	uint8_t seen[MSGS_MAX];
	char rcpt[MSGS_MAX][32];
	const char *rcptp[MSGS_MAX];
	char text[SMTP_REPLY_TEXT_MAX];	/* last result's text */
	struct tls_record tls;		/* last result's TLS record */
	int have_tls;
	unsigned tls_active, resumed_sessions;
	struct smtp_sess_info info;	/* last session's */
};

struct sdrv {
	struct drv *d;
	unsigned taken;
	size_t off;
};

static const char small_body[] = "Subject: ksock\r\n\r\nline one\r\n.a dot line\r\nend\r\n";
static const char *body = small_body;
static size_t body_len = sizeof(small_body) - 1;

static int
b_open(void *src, unsigned flags)
{
	(void)flags;
	((struct sdrv *)src)->off = 0;
	return 0;
}

static ssize_t
b_read(void *src, void *buf, size_t cap)
{
	struct sdrv *sd = src;
	size_t n = body_len - sd->off;

	if (n > cap)
		n = cap;
	memcpy(buf, body + sd->off, n);
	sd->off += n;
	return (ssize_t)n;
}

static int
d_next(void *user, struct smtp_txn *t)
{
	struct sdrv *sd = user;
	struct drv *d = sd->d;

	if (sd->taken >= d->per_conn || d->next >= d->total)
		return -ENOENT;
	sd->taken++;
	memset(t, 0, sizeof(*t));
	t->mail_from = "sender@client.test";
	t->rcpt = &d->rcptp[d->next];
	t->n_rcpt = d->total - d->next < d->rpt ? d->total - d->next : d->rpt;
	t->user = (void *)(uintptr_t)d->next;
	t->body.open = b_open;
	t->body.read = b_read;
	t->body.src = sd;
	t->body.size = (int64_t)body_len;
	d->next += t->n_rcpt;
	return 0;
}

static void
d_result(void *user, const struct smtp_rcpt_result *r, const struct tls_record *tls)
{
	struct drv *d = ((struct sdrv *)user)->d;
	unsigned i = (unsigned)(uintptr_t)r->txn->user + r->rcpt_index;

	if (i < MSGS_MAX) {
		if (d->seen[i])
			d->dup++;
		d->seen[i] = 1;
	}
	d->nres++;
	d->out[r->outcome]++;
	d->stage[r->stage]++;
	snprintf(d->text, sizeof(d->text), "%s", r->text);
	d->have_tls = tls != NULL;
	if (tls != NULL)
		d->tls = *tls;
}

static void
d_done(void *user, const struct smtp_sess_info *info, const struct tls_record *tls)
{
	struct sdrv *sd = user;
	struct drv *d = sd->d;

	d->sessions_done++;
	d->info = *info;
	if (info->tls_active) {
		d->tls_active++;
		if (tls != NULL && tls->resumed)
			d->resumed_sessions++;
	}
	free(sd);
}

static void
drv_init(struct drv *d, unsigned total, unsigned per_conn)
{
	memset(d, 0, sizeof(*d));
	d->total = total;
	d->per_conn = per_conn;
	d->rpt = 1;
	for (unsigned i = 0; i < total && i < MSGS_MAX; i++) {
		snprintf(d->rcpt[i], sizeof(d->rcpt[i]), "u%u@dest.test", i);
		d->rcptp[i] = d->rcpt[i];
	}
}

static int
open_sess(struct ksock_engine *e, struct drv *d, int port, enum smtp_tls_policy pol,
	int implicit, const struct smtp_config *cfg)
{
	struct ksock_sess_req req = { 0 };
	struct sdrv *sd = calloc(1, sizeof(*sd));
	int rc;

	sd->d = d;
	req.host = "mx.test";
	req.addr.sin.sin_family = AF_INET;
	req.addr.sin.sin_port = htons((uint16_t)port);
	req.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	req.policy = pol;
	req.implicit_tls = implicit;
	req.smtp = cfg;
	req.next_txn = d_next;
	req.result = d_result;
	req.done = d_done;
	req.user = sd;
	rc = ksock_sess_open(e, &req);
	if (rc < 0)
		free(sd);
	return rc;
}

static uint64_t
mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Poll until no session is left (bounded by @p ms). @return 0 if all done. */
static int
run_until_idle(struct ksock_engine *e, unsigned ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ksock_engine_active(e) != 0) {
		ksock_engine_poll(e, 50);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > ms)
			return -1;
	}
	return 0;
}

/* Every recipient of the run exactly once. */
static void
check_exactly_once(const struct drv *d)
{
	unsigned seen = 0;

	for (unsigned i = 0; i < d->total; i++)
		seen += d->seen[i];
	CHECK_EQ(d->nres, d->total);
	CHECK_EQ(seen, d->total);
	CHECK_EQ(d->dup, 0);
}

static int sndbuf;	/* SO_SNDBUF of the next engines, 0 = default */

static struct ksock_engine *
engine(const struct tls_ctx_conf *tc, uint32_t connect_ms)
{
	struct tls_ctx_conf def = { .ca_file = ca_path };
	struct ksock_conf kc = { .tls_conf = tc != NULL ? tc : &def,
		.connect_timeout_ms = connect_ms, .sndbuf = sndbuf };
	char err[256] = "";
	struct ksock_engine *e = ksock_engine_new(&kc, err, sizeof(err));

	if (e == NULL)
		fprintf(stderr, "ksock_engine_new: %s\n", err);
	return e;
}

/* ---------------------------------------------------------------- */
/* smtp-sink                                                          */
/* ---------------------------------------------------------------- */

static pid_t
sink_start(int port, const char *dumpdir)
{
	char addr[64], tmpl[256];
	pid_t pid;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(tmpl, sizeof(tmpl), "%s/%%M%%S.", dumpdir);
	pid = fork();
	if (pid == 0) {
		if (geteuid() == 0)
			execlp("smtp-sink", "smtp-sink", "-u", "nobody", "-d", tmpl, addr, "256",
				(char *)NULL);
		else
			execlp("smtp-sink", "smtp-sink", "-d", tmpl, addr, "256", (char *)NULL);
		_exit(127);
	}
	/* wait until it listens: 20 s, for a loaded machine under ASan */
	for (uint64_t end = mono_ms() + 20000; mono_ms() < end;) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(fd);
			return pid;
		}
		close(fd);
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		usleep(20000);
	}
	fprintf(stderr, "smtp-sink did not start listening on port %d\n", port);
	return pid;
}

static int
free_port(void)
{
	int port, fd = listen_any(1, &port);

	close(fd);
	return port;
}

static int
count_dumps(const char *dir, int unlink_them)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (dp == NULL)
		return -1;
	while ((de = readdir(dp)) != NULL) {
		char p[512];

		if (de->d_name[0] == '.')
			continue;
		n++;
		if (unlink_them) {
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			unlink(p);
		}
	}
	closedir(dp);
	return n;
}

/*
 * smtp-sink writes each dump before it answers the final dot, so they
 * should all be there already; still poll (bounded, 20 s) rather than
 * count once. @return the count when it reached @p want or at the bound.
 */
static int
wait_dumps(const char *dir, int want)
{
	uint64_t end = mono_ms() + 20000;
	int n;

	while ((n = count_dumps(dir, 0)) < want && mono_ms() < end)
		usleep(20000);
	return n;
}

/* 50 concurrent sessions, 1000 messages, 20 per connection: all delivered. */
static void
test_sink_concurrency(void)
{
	char dir[] = "/tmp/mp_ksock_sink_XXXXXX";
	static struct drv d;
	struct ksock_engine *e;
	struct ksock_stats st;
	int port, files = 0;
	pid_t pid;

	if (system("command -v smtp-sink >/dev/null 2>&1") != 0) {
		printf("smtp-sink not installed: concurrency test skipped\n");
		return;
	}
	if (mkdtemp(dir) == NULL)
		return;
	chmod(dir, 0777);
	port = free_port();
	pid = sink_start(port, dir);
	e = engine(NULL, 5000);
	drv_init(&d, 1000, 20);
	for (int i = 0; i < 50; i++)
		CHECK_EQ(open_sess(e, &d, port, SMTP_TLS_OPPORTUNISTIC, 0, NULL), 0);
	CHECK_EQ(ksock_engine_active(e), 50);
	CHECK_EQ(run_until_idle(e, 30000), 0);
	check_exactly_once(&d);
	CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 1000);
	CHECK_EQ(d.sessions_done, 50);
	ksock_engine_stats(e, &st);
	CHECK_EQ(st.sessions, 50);
	CHECK_EQ(st.connected, 50);
	CHECK_EQ(st.active, 0);
	/* smtp-sink wrote one file per message */
	files = wait_dumps(dir, 1000);
	CHECK_EQ(files, 1000);
	printf("sink: 50 sessions, %u delivered, %d dump files, bytes out %llu, per-session struct %zu bytes\n",
		d.out[SMTP_OUT_DELIVERED], files, (unsigned long long)st.bytes_out, st.sess_bytes);
	ksock_engine_free(e);
	count_dumps(dir, 1);

	/* 30 sessions, 1000 recipients in messages of 4: 250 messages */
	e = engine(NULL, 5000);
	drv_init(&d, 1000, 10);
	d.rpt = 4;
	for (int i = 0; i < 30; i++)
		CHECK_EQ(open_sess(e, &d, port, SMTP_TLS_OPPORTUNISTIC, 0, NULL), 0);
	CHECK_EQ(run_until_idle(e, 30000), 0);
	check_exactly_once(&d);
	CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 1000);
	files = wait_dumps(dir, 250);
	CHECK_EQ(files, 250);
	ksock_engine_free(e);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	count_dumps(dir, 1);
	rmdir(dir);
}

/* ---------------------------------------------------------------- */
/* transport failures                                                 */
/* ---------------------------------------------------------------- */

static void
test_refused(void)
{
	static struct drv d;
	struct ksock_engine *e = engine(NULL, 5000);
	int port = free_port();

	drv_init(&d, 7, 5);
	CHECK_EQ(open_sess(e, &d, port, SMTP_TLS_OPPORTUNISTIC, 0, NULL), 0);
	CHECK_EQ(open_sess(e, &d, port, SMTP_TLS_OPPORTUNISTIC, 0, NULL), 0);
	/* no callback from inside ksock_sess_open */
	CHECK_EQ(d.nres, 0);
	CHECK_EQ(run_until_idle(e, 5000), 0);
	check_exactly_once(&d);
	CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 7);
	CHECK_EQ(d.stage[SMTP_STAGE_CONNECT], 7);
	CHECK(strstr(d.text, "refused") != NULL);
	CHECK(!d.have_tls);
	CHECK_EQ(d.sessions_done, 2);
	printf("refused: \"%s\"\n", d.text);
	ksock_engine_free(e);
}

/*
 * Is the accept queue of listener @p lfd full, so that Linux drops SYNs to
 * it? For a listener TCP_INFO reports the queue length in tcpi_unacked and
 * its bound in tcpi_sacked.
 */
static int
acceptq_full(int lfd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	if (getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
		return 0;
	return ti.tcpi_unacked > ti.tcpi_sacked;
}

/* A listener whose accept queue is full drops SYNs: the connect times out. */
static void
test_connect_timeout(void)
{
	static struct drv d;
	struct ksock_engine *e = engine(NULL, 300);
	struct ksock_stats st;
	int port, lfd = listen_any(0, &port), fill[4];

	for (int i = 0; i < 4; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fill[i], (struct sockaddr *)&a, sizeof(a));
	}
	/* the fillers' handshakes complete asynchronously: wait (bounded)
	 * until the queue is seen full, not for a fixed time */
	for (uint64_t end = mono_ms() + 10000; !acceptq_full(lfd) && mono_ms() < end;)
		usleep(1000);
	CHECK(acceptq_full(lfd));
	drv_init(&d, 3, 10);
	CHECK_EQ(open_sess(e, &d, port, SMTP_TLS_OPPORTUNISTIC, 0, NULL), 0);
	CHECK_EQ(run_until_idle(e, 5000), 0);
	check_exactly_once(&d);
	CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 3);
	CHECK_EQ(d.stage[SMTP_STAGE_CONNECT], 3);
	CHECK(strstr(d.text, "timed out") != NULL);
	ksock_engine_stats(e, &st);
	CHECK_EQ(st.connect_timeouts, 1);
	printf("connect timeout: \"%s\"\n", d.text);
	ksock_engine_free(e);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);
}

static void
short_timeouts(struct smtp_config *c)
{
	smtp_config_defaults(c);
	c->helo_name = "client.test";
	c->t_greeting = c->t_cmd = c->t_tls = c->t_mail = c->t_rcpt = 1000;
	c->t_data_init = c->t_data_block = c->t_data_term = 1000;
}

/* Each hostile or broken server: every recipient deferred, at the right stage. */
static void
test_broken_servers(void)
{
	static const struct {
		enum srv_mode mode;
		enum smtp_stage stage;
		const char *text;
	} cases[] = {
		{ SRV_STALL, SMTP_STAGE_GREETING, "timeout" },
		{ SRV_GARBAGE, SMTP_STAGE_GREETING, "malformed" },
		{ SRV_RESET, SMTP_STAGE_HELO, "lost" },
		{ SRV_CLOSE_DATA, SMTP_STAGE_BODY, "lost" },
		{ SRV_STALL_MAIL, SMTP_STAGE_MAIL, "timeout" },
		{ SRV_FLOOD, SMTP_STAGE_HELO, "malformed" },
		{ SRV_TLS_GARBAGE, SMTP_STAGE_TLS, "TLS handshake" },
	};
	struct smtp_config cfg;

	short_timeouts(&cfg);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static struct drv d;
		struct srv *s = srv_start(cases[i].mode, &good);
		struct ksock_engine *e = engine(NULL, 2000);

		drv_init(&d, 4, 4);
		CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_OPPORTUNISTIC, 0, &cfg), 0);
		CHECK_EQ(run_until_idle(e, 5000), 0);
		check_exactly_once(&d);
		CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 4);
		if (d.stage[cases[i].stage] != 4)
			fprintf(stderr, "mode %d: stage counts greeting=%u helo=%u mail=%u body=%u data=%u text=\"%s\"\n",
				cases[i].mode, d.stage[SMTP_STAGE_GREETING], d.stage[SMTP_STAGE_HELO],
				d.stage[SMTP_STAGE_MAIL], d.stage[SMTP_STAGE_BODY],
				d.stage[SMTP_STAGE_DATA], d.text);
		CHECK_EQ(d.stage[cases[i].stage], 4);
		CHECK(strstr(d.text, cases[i].text) != NULL);
		CHECK_EQ(atomic_load(&s->msgs), 0);
		printf("mode %d: stage=%s \"%s\"\n", cases[i].mode,
			smtp_stage_name(cases[i].stage), d.text);
		ksock_engine_free(e);
		srv_stop(s);
	}
}

/* ---------------------------------------------------------------- */
/* TLS                                                                */
/* ---------------------------------------------------------------- */

/* required / verify against a server without STARTTLS: no MAIL is sent. */
static void
test_tls_required_no_starttls(void)
{
	static const enum smtp_tls_policy pols[] = { SMTP_TLS_REQUIRED, SMTP_TLS_VERIFY };

	for (int i = 0; i < 2; i++) {
		static struct drv d;
		struct srv *s = srv_start(SRV_PLAIN, NULL);
		struct ksock_engine *e = engine(NULL, 2000);

		drv_init(&d, 3, 3);
		CHECK_EQ(open_sess(e, &d, s->port, pols[i], 0, NULL), 0);
		CHECK_EQ(run_until_idle(e, 5000), 0);
		check_exactly_once(&d);
		CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 3);
		CHECK_EQ(d.stage[SMTP_STAGE_TLS], 3);
		CHECK(strstr(d.text, "STARTTLS not offered") != NULL);
		CHECK_EQ(atomic_load(&s->mails), 0);
		CHECK(!d.have_tls);
		printf("tls %s, no STARTTLS: \"%s\" (MAIL seen by server: %d)\n",
			i == 0 ? "required" : "verify", d.text, atomic_load(&s->mails));
		ksock_engine_free(e);
		srv_stop(s);
	}
	/* control: opportunistic delivers in plaintext to the same kind of server */
	{
		static struct drv d;
		struct srv *s = srv_start(SRV_PLAIN, NULL);
		struct ksock_engine *e = engine(NULL, 2000);

		drv_init(&d, 3, 3);
		CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_OPPORTUNISTIC, 0, NULL), 0);
		CHECK_EQ(run_until_idle(e, 5000), 0);
		check_exactly_once(&d);
		CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 3);
		CHECK_EQ(atomic_load(&s->msgs), 3);
		CHECK(d.info.plaintext_fallback);
		ksock_engine_free(e);
		srv_stop(s);
	}
}

/* verify: each bad certificate fails the session with its reason, no MAIL. */
static void
test_tls_verify_reasons(void)
{
	static const struct {
		const struct cred *cr;
		enum tls_verify_reason why;
	} cases[] = {
		{ &expired, TLS_VERIFY_EXPIRED },
		{ &selfsigned, TLS_VERIFY_SELF_SIGNED },
		{ &wrongname, TLS_VERIFY_NAME_MISMATCH },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static struct drv d;
		struct srv *s = srv_start(SRV_STARTTLS, cases[i].cr);
		struct ksock_engine *e = engine(NULL, 2000);

		drv_init(&d, 2, 2);
		CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_VERIFY, 0, NULL), 0);
		CHECK_EQ(run_until_idle(e, 5000), 0);
		check_exactly_once(&d);
		CHECK_EQ(d.out[SMTP_OUT_DEFERRED], 2);
		CHECK_EQ(d.stage[SMTP_STAGE_TLS], 2);
		CHECK(d.have_tls);
		CHECK_EQ(d.tls.verify, cases[i].why);
		CHECK(strstr(d.text, tls_verify_reason_name(cases[i].why)) != NULL);
		CHECK_EQ(atomic_load(&s->mails), 0);
		CHECK(d.info.tls_failed);
		printf("verify %s: \"%s\"\n", tls_verify_reason_name(cases[i].why), d.text);
		ksock_engine_free(e);
		srv_stop(s);

		/* opportunistic against the same certificate: delivered, reason kept */
		s = srv_start(SRV_STARTTLS, cases[i].cr);
		e = engine(NULL, 2000);
		drv_init(&d, 2, 2);
		CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_OPPORTUNISTIC, 0, NULL), 0);
		CHECK_EQ(run_until_idle(e, 5000), 0);
		check_exactly_once(&d);
		CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 2);
		CHECK(d.have_tls);
		CHECK_EQ(d.tls.verify, cases[i].why);
		CHECK_STREQ(d.tls.version, "TLSv1.3");
		ksock_engine_free(e);
		srv_stop(s);
	}
}

/* Plaintext behind the 220 to STARTTLS is dropped, never taken as a reply. */
static void
test_starttls_injection(void)
{
	static struct drv d;
	struct srv *s = srv_start(SRV_INJECT, &good);
	struct ksock_engine *e = engine(NULL, 2000);

	drv_init(&d, 2, 2);
	CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_VERIFY, 0, NULL), 0);
	CHECK_EQ(run_until_idle(e, 5000), 0);
	check_exactly_once(&d);
	CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 2);
	CHECK(d.info.tls_active);
	CHECK(d.info.discarded >= strlen("250 2.0.0 injected\r\n"));
	CHECK_EQ(atomic_load(&s->msgs), 2);
	printf("starttls injection: %u plaintext bytes discarded, delivered under %s\n",
		d.info.discarded, d.tls.version);
	ksock_engine_free(e);
	srv_stop(s);
}

/* Good certificate: delivered under TLS; the second connection resumes. */
static void
test_tls_ok_and_resume(void)
{
	static struct drv d;
	struct srv *s = srv_start(SRV_STARTTLS, &good);
	struct ksock_engine *e = engine(NULL, 2000);
	struct tls_cache_stats cs;
	struct ksock_stats st;

	drv_init(&d, 6, 3);
	CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_VERIFY, 0, NULL), 0);
	CHECK_EQ(run_until_idle(e, 5000), 0);
	CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 3);
	CHECK(d.have_tls);
	CHECK_STREQ(d.tls.version, "TLSv1.3");
	CHECK_EQ(d.tls.verify, TLS_VERIFY_OK);
	CHECK(!d.tls.resumed);
	CHECK_STREQ(d.tls.subject, "CN=mx.test");
	CHECK(d.info.tls_active);
	/* second connection to the same destination */
	CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_VERIFY, 0, NULL), 0);
	CHECK_EQ(run_until_idle(e, 5000), 0);
	check_exactly_once(&d);
	CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 6);
	CHECK(d.tls.resumed);
	CHECK_EQ(d.tls.verify, TLS_VERIFY_OK);
	CHECK_EQ(d.resumed_sessions, 1);
	CHECK_EQ(atomic_load(&s->reused), 1);
	CHECK_EQ(atomic_load(&s->msgs), 6);
	ksock_engine_stats(e, &st);
	CHECK_EQ(st.tls_ok, 2);
	CHECK_EQ(st.tls_resumed, 1);
	tls_ctx_cache_stats(ksock_engine_tls(e), &cs);
	CHECK(cs.hits >= 1);
	printf("tls: %s %s group=%s, second connection resumed=%d (cache hits %llu)\n",
		d.tls.version, d.tls.cipher, d.tls.group, d.tls.resumed,
		(unsigned long long)cs.hits);
	ksock_engine_free(e);
	srv_stop(s);

	/* implicit TLS (port 465 style) */
	s = srv_start(SRV_IMPLICIT, &good);
	e = engine(NULL, 2000);
	drv_init(&d, 2, 2);
	CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_REQUIRED, 1, NULL), 0);
	CHECK_EQ(run_until_idle(e, 5000), 0);
	check_exactly_once(&d);
	CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 2);
	CHECK(d.have_tls);
	CHECK_STREQ(d.tls.version, "TLSv1.3");
	CHECK_EQ(atomic_load(&s->tls_ok), 1);
	ksock_engine_free(e);
	srv_stop(s);
}

/* ---------------------------------------------------------------- */
/* async TLS jobs                                                     */
/* ---------------------------------------------------------------- */

/* The emulated provider (mp_test_async.h) pauses the certificate check. */
static void
pause_hook(struct tls_conn *c, void *arg)
{
	(void)c;
	mp_async_prov_pause(arg);
}

static void
test_async(void)
{
	for (int use_fd = 1; use_fd >= 0; use_fd--) {
		static struct drv d;
		/* the crypto answers 100 ms after the pause; it only has to come
		 * within run_until_idle's 5 s bound */
		struct mp_async_prov ap = { .use_fd = use_fd, .later_ms = 100 };
		struct tls_ctx_conf tc = { .ca_file = ca_path, .test_pause_hook = pause_hook,
			.test_pause_arg = &ap };
		struct srv *s = srv_start(SRV_STARTTLS, &good);
		struct srv *s2 = srv_start(SRV_PLAIN, NULL);
		struct ksock_engine *e = engine(&tc, 2000);
		struct ksock_stats st;

		drv_init(&d, 30, 15);
		CHECK_EQ(open_sess(e, &d, s->port, SMTP_TLS_VERIFY, 0, NULL), 0);
		/* a plaintext session runs meanwhile: nothing blocks on the paused job */
		CHECK_EQ(open_sess(e, &d, s2->port, SMTP_TLS_NONE, 0, NULL), 0);
		CHECK_EQ(run_until_idle(e, 5000), 0);
		check_exactly_once(&d);
		CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 30);
		CHECK(atomic_load(&ap.paused));
		CHECK(atomic_load(&ap.resumed));
		CHECK_EQ(atomic_load(&s->msgs), 15);
		CHECK_EQ(atomic_load(&s2->msgs), 15);
		ksock_engine_stats(e, &st);
		CHECK(st.async_pauses >= 1);
		CHECK_EQ(st.tls_ok, 1);
		printf("async (%s): pauses=%llu, delivered %u\n", use_fd ? "wait fd" : "callback",
			(unsigned long long)st.async_pauses, d.out[SMTP_OUT_DELIVERED]);
		mp_async_prov_join(&ap);
		ksock_engine_free(e);
		srv_stop(s);
		srv_stop(s2);
	}
}

/* ---------------------------------------------------------------- */
/* memory of idle sessions                                            */
/* ---------------------------------------------------------------- */

static size_t
je_allocated(void)
{
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch), allocated = 0;

	mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	mallctl("epoch", &epoch, &sz, &epoch, sz);
	sz = sizeof(allocated);
	if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
		return 0;
	return allocated;
}

/* Is plain malloc jemalloc here (not under ASan, which brings its own)? */
static int
malloc_is_je(void)
{
	size_t before = je_allocated(), after;
	void *volatile p = malloc(4 << 20);

	memset((void *)p, 1, 64);
	after = je_allocated();
	free((void *)p);
	return after >= before + (4 << 20);
}

/*
 * The server in a child process, so this process's heap holds only the
 * client side. @return pid; *port, *notify (one byte per MAIL seen).
 */
static pid_t
srv_fork(enum srv_mode mode, const struct cred *cr, int *port, int *notify)
{
	int pp[2], np[2];
	pid_t pid;

	if (pipe(pp) < 0 || pipe(np) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		struct srv *s;

		close(pp[0]);
		close(np[0]);
		s = srv_start(mode, cr);
		s->notify_fd = np[1];
		if (write(pp[1], &s->port, sizeof(s->port)) != sizeof(s->port))
			_exit(1);
		for (;;)
			pause();
	}
	close(pp[1]);
	close(np[1]);
	if (read(pp[0], port, sizeof(*port)) != sizeof(*port))
		*port = 0;
	close(pp[0]);
	*notify = np[0];
	return pid;
}

static int
drain_notify(int fd, int *count)
{
	char b[256];
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (poll(&p, 1, 0) > 0) {
		ssize_t n = read(fd, b, sizeof(b));

		if (n <= 0)
			break;
		*count += (int)n;
	}
	return *count;
}

/*
 * N sessions that got as far as MAIL (after STARTTLS in the TLS case)
 * and wait for a server that does not answer: heap held per session
 * (malloc is jemalloc here, OpenSSL's allocations too).
 */
static void
test_idle_memory(void)
{
	enum { N = 40 };

	for (int with_tls = 0; with_tls < 2; with_tls++) {
		static struct drv d;
		struct ksock_engine *e = engine(NULL, 5000);
		struct smtp_config cfg;
		struct ksock_stats st;
		size_t je0, je1;
		int port = 0, nfd = -1, mails = 0;
		pid_t pid = srv_fork(SRV_STALL_MAIL, with_tls ? &good : NULL, &port, &nfd);
		long per;

		CHECK(pid > 0 && port > 0);
		smtp_config_defaults(&cfg);
		cfg.t_mail = 20000;
		drv_init(&d, N, 1);
		/* warm up so one-time allocations are not counted */
		CHECK_EQ(open_sess(e, &d, port, SMTP_TLS_OPPORTUNISTIC, 0, &cfg), 0);
		/* bounded by time, not by polls: a poll returns at each event */
		for (uint64_t end = mono_ms() + 20000;
		     drain_notify(nfd, &mails) < 1 && mono_ms() < end;)
			ksock_engine_poll(e, 10);
		for (int i = 0; i < 5; i++)
			ksock_engine_poll(e, 10);
		je0 = je_allocated();
		for (int i = 1; i < N; i++)
			CHECK_EQ(open_sess(e, &d, port, SMTP_TLS_OPPORTUNISTIC, 0, &cfg), 0);
		for (uint64_t end = mono_ms() + 20000;
		     drain_notify(nfd, &mails) < N && mono_ms() < end;)
			ksock_engine_poll(e, 10);
		/* let the last bytes (TLS tickets) settle */
		for (int i = 0; i < 10; i++)
			ksock_engine_poll(e, 10);
		CHECK_EQ(mails, N);
		je1 = je_allocated();
		ksock_engine_stats(e, &st);
		per = je1 > je0 ? (long)(je1 - je0) / (N - 1) : 0;
		if (!malloc_is_je())	/* sanitizer build: only OpenSSL's share is seen */
			per += (long)st.sess_bytes;
		printf("idle memory (%s): %ld bytes per session waiting on MAIL "
			"(session struct %zu, tls_started %llu)\n",
			with_tls ? "after STARTTLS" : "plaintext", per, st.sess_bytes,
			(unsigned long long)st.tls_started);
		CHECK(per >= (long)st.sess_bytes);
		CHECK(per < (with_tls ? 48 * 1024 : 8 * 1024));
		CHECK_EQ(st.tls_ok, with_tls ? N : 0);
		CHECK_EQ(d.nres, 0);
		/* the server goes away: every waiting session ends deferred */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(nfd);
		CHECK_EQ(run_until_idle(e, 15000), 0);
		check_exactly_once(&d);
		CHECK_EQ(d.out[SMTP_OUT_DEFERRED], N);
		CHECK_EQ(d.stage[SMTP_STAGE_MAIL], N);
		ksock_engine_free(e);
	}
}

/*
 * A 4 MiB message in plaintext and under TLS: the kernel and the TLS layer
 * take it in parts (tail buffers, -EAGAIN, EPOLLOUT), every byte arrives.
 */
static void
test_big_message(void)
{
	enum { SIZE = 4 << 20 };
	char *big = malloc(SIZE);
	size_t o = 0;

	o += (size_t)snprintf(big, SIZE, "Subject: big\r\n\r\n");
	while (o + 80 < SIZE) {
		memset(big + o, 'a' + (int)(o % 26), 76);
		o += 76;
		big[o++] = '\r';
		big[o++] = '\n';
	}
	body = big;
	body_len = o;
	for (int run = 0; run < 4; run++) {
		int with_tls = run & 1;
		static struct drv d;
		struct srv *s = srv_start(with_tls ? SRV_STARTTLS : SRV_PLAIN, with_tls ? &good : NULL);
		struct ksock_engine *e;
		struct ksock_stats st;

		/* runs 2, 3: a tiny send buffer, so the kernel takes writes in parts */
		sndbuf = run >= 2 ? 4096 : 0;
		e = engine(NULL, 2000);
		sndbuf = 0;
		drv_init(&d, 3, 3);
		CHECK_EQ(open_sess(e, &d, s->port, with_tls ? SMTP_TLS_VERIFY : SMTP_TLS_NONE, 0, NULL), 0);
		CHECK_EQ(run_until_idle(e, 30000), 0);
		check_exactly_once(&d);
		CHECK_EQ(d.out[SMTP_OUT_DELIVERED], 3);
		CHECK_EQ(atomic_load(&s->msgs), 3);
		CHECK_EQ(atomic_load(&s->body_bytes), 3 * (long)o);
		ksock_engine_stats(e, &st);
		CHECK(st.bytes_out > 3 * o);
		if (run >= 2)
			CHECK(st.write_blocked > 0);
		printf("big message (%s%s): 3 x %zu bytes delivered, bytes out %llu, blocked %llu, tails %llu\n",
			with_tls ? "TLS" : "plaintext", run >= 2 ? ", 4 KiB sndbuf" : "", o, (unsigned long long)st.bytes_out,
			(unsigned long long)st.write_blocked, (unsigned long long)st.tails);
		ksock_engine_free(e);
		srv_stop(s);
	}
	body = small_body;
	body_len = sizeof(small_body) - 1;
	free(big);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	CHECK_EQ(tls_alloc_init(), 0);
	pki_init();
	test_refused();
	test_connect_timeout();
	test_broken_servers();
	test_tls_required_no_starttls();
	test_tls_verify_reasons();
	test_tls_ok_and_resume();
	test_starttls_injection();
	test_async();
	test_big_message();
	test_idle_memory();
	test_sink_concurrency();
	pki_fini();
	return mp_test_result("ksock");
}
