/*
 * One client TLS connection over two byte queues. The owner feeds
 * ciphertext (tls_conn_feed), drives tls_conn_handshake() until TLS_OK,
 * then tls_conn_read()/tls_conn_write(), and sends what tls_conn_out_peek()
 * shows. OpenSSL sees a single custom BIO: its reads drain the input queue,
 * its writes append to the output queue, and a queue's storage is freed as
 * soon as it is empty so an idle connection holds no buffers.
 *
 * Certificate checks run with SSL_VERIFY_PEER always; the verify callback
 * records the first problem and, when the connection does not enforce
 * verification, lets the handshake go on, so the record says what was
 * wrong either way.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mp_log.h"
#include "tls_int.h"

static const char *const conn_state_names[TLS_CONN_STATE_LAST] = {
	[TLS_CONN_INIT] = "init",
	[TLS_CONN_HANDSHAKE] = "handshake",
	[TLS_CONN_OPEN] = "open",
	[TLS_CONN_CLOSED] = "closed",
	[TLS_CONN_FAILED] = "failed",
};

static void
conn_set_state(struct tls_conn *c, enum tls_conn_state st)
{
	MP_LOG(MP_LOG_DEBUG, TLS_LOG, "id=%llu state=%s->%s",
		(unsigned long long)c->id, conn_state_names[c->state],
		conn_state_names[st]);
	c->state = st;
}

uint64_t
tls_now_us(const struct tls_ctx *ctx)
{
	struct timespec ts;

	if (ctx->now_us != NULL)
		return ctx->now_us(ctx->now_arg);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- byte queues --- */

static int
buf_append(struct tls_buf *b, const void *p, size_t n)
{
	if (b->off + b->len + n > b->cap) {
		if (b->len + n > b->cap) {
			size_t ncap = b->cap != 0 ? b->cap * 2 : 512;
			unsigned char *nd;

			while (ncap < b->len + n)
				ncap *= 2;
			if (b->off != 0) {
				memmove(b->data, b->data + b->off, b->len);
				b->off = 0;
			}
			nd = OPENSSL_realloc(b->data, ncap);
			if (nd == NULL)
				return -ENOMEM;
			b->data = nd;
			b->cap = ncap;
		} else {
			memmove(b->data, b->data + b->off, b->len);
			b->off = 0;
		}
	}
	memcpy(b->data + b->off + b->len, p, n);
	b->len += n;
	return 0;
}

static void
buf_consume(struct tls_buf *b, size_t n)
{
	b->off += n;
	b->len -= n;
	if (b->len == 0) {
		OPENSSL_free(b->data);
		b->data = NULL;
		b->off = b->cap = 0;
	}
}

static void
buf_fini(struct tls_buf *b)
{
	OPENSSL_free(b->data);
	memset(b, 0, sizeof(*b));
}

/* --- the BIO OpenSSL reads from and writes to --- */

static int
bio_write(BIO *bio, const char *data, int n)
{
	struct tls_conn *c = BIO_get_data(bio);

	BIO_clear_retry_flags(bio);
	if (n <= 0)
		return 0;
	if (buf_append(&c->out, data, (size_t)n) < 0)
		return -1;
	return n;
}

static int
bio_read(BIO *bio, char *data, int n)
{
	struct tls_conn *c = BIO_get_data(bio);
	size_t k;

	BIO_clear_retry_flags(bio);
	if (n <= 0)
		return 0;
	if (c->in.len == 0) {
		if (c->in.eof)
			return 0;
		BIO_set_retry_read(bio);
		return -1;
	}
	k = c->in.len < (size_t)n ? c->in.len : (size_t)n;
	memcpy(data, c->in.data + c->in.off, k);
	buf_consume(&c->in, k);
	return (int)k;
}

static long
bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct tls_conn *c = BIO_get_data(bio);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)c->in.len;
	case BIO_CTRL_WPENDING:
		return (long)c->out.len;
	case BIO_CTRL_EOF:
		return c->in.eof && c->in.len == 0;
	case BIO_CTRL_FLUSH:
	case BIO_CTRL_DUP:
		return 1;
	default:
		return 0;
	}
}

static int
bio_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static int
bio_destroy(BIO *bio)
{
	BIO_set_data(bio, NULL);
	return 1;
}

BIO_METHOD *
tls_bio_method_new(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
		"mailpump tls queue");

	if (m == NULL)
		return NULL;
	if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
	    !BIO_meth_set_destroy(m, bio_destroy)) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

/* --- verification and the record --- */

static enum tls_verify_reason
x509_reason(int err)
{
	switch (err) {
	case X509_V_OK:
		return TLS_VERIFY_OK;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return TLS_VERIFY_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return TLS_VERIFY_NOT_YET_VALID;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return TLS_VERIFY_SELF_SIGNED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return TLS_VERIFY_UNKNOWN_CA;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return TLS_VERIFY_NAME_MISMATCH;
	default:
		return TLS_VERIFY_OTHER;
	}
}

/* Runs inside the async job for each certificate of the chain. */
static int
tls_on_verify(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = SSL_get_app_data(ssl);

	if (!ok && c->x509_err == X509_V_OK) {
		c->x509_err = X509_STORE_CTX_get_error(xs);
		c->x509_depth = X509_STORE_CTX_get_error_depth(xs);
	}
	return c->verify ? ok : 1;
}

/* SSL_CTX cert verify callback: the whole chain check, inside the job. */
int
tls_conn_on_cert_verify(X509_STORE_CTX *xs, void *arg)
{
	struct tls_ctx *ctx = arg;
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = SSL_get_app_data(ssl);
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);

	if (ctx->test_pause_hook != NULL)
		ctx->test_pause_hook(c, ctx->test_pause_arg);
	if (c->leaf == NULL && leaf != NULL && X509_up_ref(leaf))
		c->leaf = leaf;
	return X509_verify_cert(xs);
}

void
tls_conn_on_info(const SSL *ssl, int where, int ret)
{
	struct tls_conn *c = SSL_get_app_data(ssl);

	if (c == NULL || !(where & SSL_CB_ALERT) || (ret >> 8) != SSL3_AL_FATAL)
		return;
	if (where & SSL_CB_READ) {
		if (c->alert_recv < 0)
			c->alert_recv = ret;
	} else if (c->alert_sent < 0) {
		c->alert_sent = ret;
	}
}

static enum tls_verify_reason
conn_verify_reason(const struct tls_conn *c)
{
	if (c->state == TLS_CONN_OPEN || c->state == TLS_CONN_CLOSED)
		return c->rec.verify;   /* tickets after the handshake */
	if (SSL_session_reused(c->ssl))
		return c->cached_verify;
	if (c->x509_err != X509_V_OK)
		return x509_reason(c->x509_err);
	return c->leaf != NULL ? TLS_VERIFY_OK : TLS_VERIFY_NONE;
}

int
tls_conn_on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_conn *c = SSL_get_app_data(ssl);

	if (c == NULL || c->key[0] == '\0')
		return 0;
	tls_cache_put(c->ctx->cache, c->key, sess, c->host, conn_verify_reason(c));
	return 1;
}

static void
name_str(const X509_NAME *n, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	int k = 0;

	out[0] = '\0';
	if (b == NULL)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0)
		k = BIO_read(b, out, (int)cap - 1);
	out[k > 0 ? k : 0] = '\0';
	BIO_free(b);
}

static void
rec_cert(struct tls_record *r, X509 *x)
{
	struct tm tm;

	if (x == NULL)
		return;
	name_str(X509_get_subject_name(x), r->subject, sizeof(r->subject));
	name_str(X509_get_issuer_name(x), r->issuer, sizeof(r->issuer));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) {
		r->not_after = timegm(&tm);
		strftime(r->not_after_iso, sizeof(r->not_after_iso),
			"%Y-%m-%dT%H:%M:%SZ", &tm);
	}
}

static void
rec_verify_text(struct tls_record *r, int x509_err, int depth)
{
	if (x509_err == X509_V_OK)
		snprintf(r->reason, sizeof(r->reason), "ok");
	else
		snprintf(r->reason, sizeof(r->reason), "%s (depth %d)",
			X509_verify_cert_error_string(x509_err), depth);
}

static void
rec_success(struct tls_conn *c)
{
	struct tls_record *r = &c->rec;
	const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
	int nid = SSL_get_negotiated_group(c->ssl);
	const char *g = NULL;

	r->handshake_us = tls_now_us(c->ctx) - c->hs_start_us;
	snprintf(r->version, sizeof(r->version), "%s", SSL_get_version(c->ssl));
	snprintf(r->cipher, sizeof(r->cipher), "%s", ci != NULL ? SSL_CIPHER_get_name(ci) : "");
	if (nid != NID_undef) {
		g = SSL_group_to_name(c->ssl, nid);
		if (g == NULL)
			g = OBJ_nid2sn(nid);
	}
	snprintf(r->group, sizeof(r->group), "%s", g != NULL ? g : "");
	r->resumed = SSL_session_reused(c->ssl);
	r->verify = conn_verify_reason(c);
	r->verify_code = r->resumed ? 0 : c->x509_err;
	if (r->resumed)
		snprintf(r->reason, sizeof(r->reason), "resumed session (%s at first)",
			tls_verify_reason_name(r->verify));
	else
		rec_verify_text(r, c->x509_err, c->x509_depth);
	rec_cert(r, SSL_get0_peer_certificate(c->ssl));
}

static void
rec_failure(struct tls_conn *c)
{
	struct tls_record *r = &c->rec;
	unsigned long e = ERR_peek_error();
	int lr = ERR_GET_REASON(e);
	char buf[128] = "";

	r->handshake_us = tls_now_us(c->ctx) - c->hs_start_us;
	r->resumed = false;
	if (c->verify && c->x509_err != X509_V_OK) {
		r->verify = x509_reason(c->x509_err);
		r->verify_code = c->x509_err;
		rec_verify_text(r, c->x509_err, c->x509_depth);
	} else if (c->alert_recv >= 0) {
		int desc = c->alert_recv & 0xff;

		r->verify = desc == SSL_AD_PROTOCOL_VERSION ?
			TLS_VERIFY_PROTOCOL_VERSION : TLS_VERIFY_HANDSHAKE_ALERT;
		r->verify_code = desc;
		snprintf(r->reason, sizeof(r->reason), "peer alert: %s",
			SSL_alert_desc_string_long(c->alert_recv));
	} else if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    (lr == SSL_R_UNSUPPORTED_PROTOCOL || lr == SSL_R_VERSION_TOO_LOW ||
	     lr == SSL_R_WRONG_SSL_VERSION || lr == SSL_R_NO_PROTOCOLS_AVAILABLE ||
	     lr == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)) {
		r->verify = TLS_VERIFY_PROTOCOL_VERSION;
		r->verify_code = lr;
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(r->reason, sizeof(r->reason), "%s", buf);
	} else {
		r->verify = TLS_VERIFY_OTHER;
		r->verify_code = c->x509_err;
		if (e != 0)
			ERR_error_string_n(e, buf, sizeof(buf));
		else if (c->in.eof)
			snprintf(buf, sizeof(buf), "connection closed during handshake");
		else
			snprintf(buf, sizeof(buf), "handshake failed");
		snprintf(r->reason, sizeof(r->reason), "%s", buf);
	}
	rec_cert(r, SSL_get0_peer_certificate(c->ssl) != NULL ?
		SSL_get0_peer_certificate(c->ssl) : c->leaf);
	ERR_clear_error();
}

/* --- life cycle --- */

struct tls_conn *
tls_conn_new(struct tls_ctx *ctx, const struct tls_conn_conf *cc)
{
	struct tls_conn *c;
	unsigned char ip[16];
	BIO *bio;

	if ((cc->host != NULL && strlen(cc->host) >= sizeof(c->host)) ||
	    (cc->cache_key != NULL && strlen(cc->cache_key) >= TLS_CACHE_KEY_MAX))
		return NULL;
	c = OPENSSL_zalloc(sizeof(*c));
	if (c == NULL)
		return NULL;
	c->ctx = ctx;
	c->verify = cc->verify;
	c->owner = cc->owner;
	c->id = cc->id;
	c->alert_recv = c->alert_sent = -1;
	c->rec.verify_enforced = cc->verify;
	atomic_init(&c->queued, false);
	if (cc->host != NULL)
		snprintf(c->host, sizeof(c->host), "%s", cc->host);
	if (cc->cache_key != NULL)
		snprintf(c->key, sizeof(c->key), "%s", cc->cache_key);

	ERR_clear_error();
	c->ssl = SSL_new(ctx->ssl_ctx);
	bio = c->ssl != NULL ? BIO_new(ctx->bio_meth) : NULL;
	if (bio == NULL)
		goto fail;
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_app_data(c->ssl, c);
	SSL_set_connect_state(c->ssl);
	SSL_set_verify(c->ssl, SSL_VERIFY_PEER, tls_on_verify);
	if (cc->opportunistic && ctx->opp_min_version != ctx->min_version) {
		if (!SSL_set_min_proto_version(c->ssl, ctx->opp_min_version))
			goto fail;
		/* TLS 1.0/1.1 servers sign with SHA-1, which level 1+ refuses */
		if (ctx->opp_min_version < TLS_VERSION_1_2)
			SSL_set_security_level(c->ssl, 0);
	}
	if (!SSL_set_async_callback(c->ssl, tls_conn_on_async_ready) ||
	    !SSL_set_async_callback_arg(c->ssl, c))
		goto fail;
	if (c->host[0] != '\0') {
		if (inet_pton(AF_INET, c->host, ip) == 1 ||
		    inet_pton(AF_INET6, c->host, ip) == 1) {
			/* no SNI for address literals (RFC 6066 3) */
			if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host))
				goto fail;
		} else {
			if (!SSL_set_tlsext_host_name(c->ssl, c->host) ||
			    !SSL_set1_host(c->ssl, c->host))
				goto fail;
			SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		}
	}
	if (c->key[0] != '\0') {
		enum tls_verify_reason vr = TLS_VERIFY_NONE;
		SSL_SESSION *s = tls_cache_get(ctx->cache, c->key, c->host, c->verify, &vr);

		if (s != NULL) {
			if (SSL_set_session(c->ssl, s))
				c->cached_verify = vr;
			SSL_SESSION_free(s);
		}
	}
	ctx->nconns++;
	return c;
fail:
	ERR_clear_error();
	SSL_free(c->ssl);
	OPENSSL_free(c);
	return NULL;
}

void
tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	if (SSL_waiting_for_async(c->ssl))
		MP_LOG(MP_LOG_WARN, TLS_LOG, "id=%llu event=free_while_paused",
			(unsigned long long)c->id);
	tls_ctx_ready_remove(c->ctx, c);
	/*
	 * OpenSSL marks the session of a connection freed without
	 * close_notify as not resumable. Since TLS 1.1 an unclean close no
	 * longer has to void the session, and SMTP peers often just drop the
	 * connection after QUIT; fatal alerts still void it (OpenSSL does that
	 * when the alert is sent or received).
	 */
	if (c->state == TLS_CONN_OPEN)
		SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_SENT_SHUTDOWN);
	SSL_free(c->ssl);
	X509_free(c->leaf);
	buf_fini(&c->in);
	buf_fini(&c->out);
	c->ctx->nconns--;
	OPENSSL_free(c);
}

void *
tls_conn_owner(const struct tls_conn *c)
{
	return c->owner;
}

bool
tls_conn_is_open(const struct tls_conn *c)
{
	return c->state == TLS_CONN_OPEN;
}

const struct tls_record *
tls_conn_record(const struct tls_conn *c)
{
	return &c->rec;
}

/* --- ciphertext pumps --- */

ssize_t
tls_conn_feed(struct tls_conn *c, const void *cipher, size_t len)
{
	size_t room;

	if (c->in.eof)
		return -EPIPE;
	room = c->in.len < c->ctx->feed_max ? c->ctx->feed_max - c->in.len : 0;
	if (len > room)
		len = room;
	if (len == 0)
		return 0;
	if (buf_append(&c->in, cipher, len) < 0)
		return -ENOMEM;
	return (ssize_t)len;
}

void
tls_conn_feed_eof(struct tls_conn *c)
{
	c->in.eof = true;
}

size_t
tls_conn_out_pending(const struct tls_conn *c)
{
	return c->out.len;
}

size_t
tls_conn_out_peek(const struct tls_conn *c, const void **p)
{
	*p = c->out.len != 0 ? c->out.data + c->out.off : NULL;
	return c->out.len;
}

void
tls_conn_out_consume(struct tls_conn *c, size_t n)
{
	if (n > c->out.len)
		n = c->out.len;
	if (n != 0)
		buf_consume(&c->out, n);
}

ssize_t
tls_conn_out_read(struct tls_conn *c, void *buf, size_t cap)
{
	size_t n = c->out.len < cap ? c->out.len : cap;

	if (n == 0)
		return 0;
	memcpy(buf, c->out.data + c->out.off, n);
	buf_consume(&c->out, n);
	return (ssize_t)n;
}

/* --- handshake and application data --- */

static bool
transport_ended(const struct tls_conn *c)
{
	return c->in.eof && c->in.len == 0;
}

int
tls_conn_handshake(struct tls_conn *c)
{
	int r, e;

	switch (c->state) {
	case TLS_CONN_OPEN:
		return TLS_OK;
	case TLS_CONN_FAILED:
		return c->fail_rc;
	case TLS_CONN_CLOSED:
		return -EPIPE;
	case TLS_CONN_INIT:
		c->hs_started = true;
		c->hs_start_us = tls_now_us(c->ctx);
		conn_set_state(c, TLS_CONN_HANDSHAKE);
		break;
	case TLS_CONN_HANDSHAKE:
		break;
	default:
		abort();
	}
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		rec_success(c);
		/* the session keeps its own reference to the peer certificate */
		X509_free(c->leaf);
		c->leaf = NULL;
		conn_set_state(c, TLS_CONN_OPEN);
		MP_LOG(MP_LOG_DEBUG, TLS_LOG,
			"id=%llu event=handshake_done version=%s cipher=%s resumed=%d verify=%s us=%llu",
			(unsigned long long)c->id, c->rec.version, c->rec.cipher,
			c->rec.resumed, tls_verify_reason_name(c->rec.verify),
			(unsigned long long)c->rec.handshake_us);
		return TLS_OK;
	}
	e = SSL_get_error(c->ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_IO;
	case SSL_ERROR_WANT_ASYNC:
		return TLS_PAUSED;
	case SSL_ERROR_WANT_ASYNC_JOB:
		/* the job pool is unbounded: no job means no memory; retryable */
		return -ENOMEM;
	default:
		break;
	}
	c->fail_rc = transport_ended(c) && c->alert_recv < 0 &&
		!(c->verify && c->x509_err != X509_V_OK) ? -ECONNRESET : -EPROTO;
	rec_failure(c);
	conn_set_state(c, TLS_CONN_FAILED);
	MP_LOG(MP_LOG_DEBUG, TLS_LOG, "id=%llu event=handshake_failed verify=%s reason=\"%s\"",
		(unsigned long long)c->id, tls_verify_reason_name(c->rec.verify),
		c->rec.reason);
	return c->fail_rc;
}

/* Map a failed SSL_read/SSL_write/SSL_shutdown to our return codes. */
static int
io_error(struct tls_conn *c, int ret, const char *op)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long le;
	char buf[128];

	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_WANT_ASYNC:
		return -EINPROGRESS;
	case SSL_ERROR_WANT_ASYNC_JOB:
		return -ENOMEM;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		break;
	}
	le = ERR_peek_error();
	if (le != 0) {
		ERR_error_string_n(le, buf, sizeof(buf));
		MP_LOG(MP_LOG_DEBUG, TLS_LOG, "id=%llu event=%s_error err=\"%s\"",
			(unsigned long long)c->id, op, buf);
	}
	ERR_clear_error();
	if (SSL_get_shutdown(c->ssl) & SSL_RECEIVED_SHUTDOWN)
		return -EPIPE;
	/* fatal: OpenSSL will not use this connection again */
	c->fail_rc = transport_ended(c) ? -ECONNRESET : -EPROTO;
	conn_set_state(c, TLS_CONN_FAILED);
	return c->fail_rc;
}

ssize_t
tls_conn_read(struct tls_conn *c, void *buf, size_t cap)
{
	size_t n = 0;
	int r;

	if (c->state == TLS_CONN_FAILED)
		return c->fail_rc;
	if (c->state != TLS_CONN_OPEN && c->state != TLS_CONN_CLOSED)
		return -ENOTCONN;
	ERR_clear_error();
	r = SSL_read_ex(c->ssl, buf, cap, &n);
	if (r == 1)
		return (ssize_t)n;
	r = io_error(c, r, "read");
	/*
	 * RELEASE_BUFFERS only gives the read buffer back after application
	 * data; a read that consumed just post-handshake messages (TLS 1.3
	 * tickets) would keep ~20 KiB per idle connection. Frees nothing if
	 * a partial record is buffered.
	 */
	if (r == -EAGAIN)
		SSL_free_buffers(c->ssl);
	return r;
}

ssize_t
tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	size_t n = 0;
	int r;

	if (c->state == TLS_CONN_CLOSED)
		return -EPIPE;
	if (c->state == TLS_CONN_FAILED)
		return c->fail_rc;
	if (c->state != TLS_CONN_OPEN)
		return -ENOTCONN;
	if (len == 0)
		return 0;
	if (c->out.len >= c->ctx->out_max)
		return -EAGAIN;
	ERR_clear_error();
	r = SSL_write_ex(c->ssl, buf, len, &n);
	if (r == 1)
		return (ssize_t)n;
	r = io_error(c, r, "write");
	return r == 0 ? -EPIPE : r;
}

int
tls_conn_shutdown(struct tls_conn *c)
{
	int r;

	if (c->state == TLS_CONN_CLOSED)
		return TLS_OK;
	if (c->state != TLS_CONN_OPEN)
		return -ENOTCONN;
	ERR_clear_error();
	r = SSL_shutdown(c->ssl);
	if (r >= 0) {
		conn_set_state(c, TLS_CONN_CLOSED);
		return TLS_OK;
	}
	r = io_error(c, r, "shutdown");
	if (r == -ENOMEM)
		return r;
	if (r == -EINPROGRESS)
		return TLS_PAUSED;
	if (r == -EAGAIN)
		return TLS_WANT_IO;
	return r == 0 ? TLS_OK : r;
}

int
tls_conn_async_fds(struct tls_conn *c, int *fds, size_t max)
{
	size_t n = 0;

	if (!SSL_get_all_async_fds(c->ssl, NULL, &n))
		return -EINVAL;
	if (n > max)
		return -ENOSPC;
	if (n != 0 && !SSL_get_all_async_fds(c->ssl, (OSSL_ASYNC_FD *)fds, &n))
		return -EINVAL;
	return (int)n;
}
