/*
 * Private to the tls_ files: the context and connection structures and the
 * calls between tls_ctx.c (SSL_CTX, allocator, ready list), tls_conn.c
 * (one connection, its buffers and OpenSSL callbacks) and tls_cache.c
 * (resumption sessions per destination).
 */
#ifndef MP_TLS_INT_H
#define MP_TLS_INT_H

#include <stdatomic.h>

#include <openssl/ssl.h>

#include "tls.h"

#define TLS_LOG "tls"

/* Growable byte queue behind one of our BIOs; storage is freed when empty. */
struct tls_buf {
	unsigned char *data;
	size_t off;   /* first unread byte */
	size_t len;   /* unread bytes */
	size_t cap;
	bool eof;     /* reads past the data return end of stream */
};

enum tls_conn_state {
	TLS_CONN_INIT = 0,
	TLS_CONN_HANDSHAKE,
	TLS_CONN_OPEN,
	TLS_CONN_CLOSED,   /* close_notify queued by us */
	TLS_CONN_FAILED,
	TLS_CONN_STATE_LAST
};

struct tls_cache;

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	BIO_METHOD *bio_meth;
	struct tls_cache *cache;
	size_t feed_max;
	size_t out_max;
	int min_version, opp_min_version;
	uint64_t (*now_us)(void *arg);
	void *now_arg;
	void (*test_pause_hook)(struct tls_conn *c, void *arg);
	void *test_pause_arg;
	unsigned nconns;
	/* conns signalled ready: pushed by any thread, taken by the owner */
	_Atomic(struct tls_conn *) ready_stack;
	/* owner-only FIFO the stack is moved into, oldest first */
	struct tls_conn *ready_head;
	struct tls_conn *ready_tail;
};

struct tls_conn {
	struct tls_ctx *ctx;
	SSL *ssl;
	struct tls_buf in;      /* ciphertext from the transport */
	struct tls_buf out;     /* ciphertext for the transport */
	enum tls_conn_state state;
	int fail_rc;
	bool verify;
	bool hs_started;
	uint64_t hs_start_us;
	uint64_t id;
	void *owner;
	/* first certificate problem seen by the verify callback */
	int x509_err;
	int x509_depth;
	X509 *leaf;
	int alert_recv;         /* (level << 8) | desc, or -1 */
	int alert_sent;
	enum tls_verify_reason cached_verify;  /* of the session offered */
	struct tls_record rec;
	_Atomic bool queued;
	struct tls_conn *ready_link;   /* ready_stack link */
	struct tls_conn *fifo_next;    /* ready_head list link */
	char host[254];
	char key[TLS_CACHE_KEY_MAX];
};

/* tls_conn.c */
BIO_METHOD *tls_bio_method_new(void);
int tls_conn_on_new_session(SSL *ssl, SSL_SESSION *sess);
void tls_conn_on_info(const SSL *ssl, int where, int ret);
int tls_conn_on_cert_verify(X509_STORE_CTX *xs, void *arg);
uint64_t tls_now_us(const struct tls_ctx *ctx);

/* tls_ctx.c */
void tls_ctx_ready_remove(struct tls_ctx *ctx, struct tls_conn *c);
int tls_conn_on_async_ready(SSL *ssl, void *arg);

/* tls_cache.c */
struct tls_cache *tls_cache_new(unsigned capacity);
void tls_cache_free(struct tls_cache *cache);
/*
 * A referenced session for @key, or NULL. TLS 1.3 tickets leave the cache
 * (single use); TLS 1.2 sessions stay. With @need_verified only a session
 * whose certificate verified for the same @host is returned.
 */
SSL_SESSION *tls_cache_get(struct tls_cache *cache, const char *key,
	const char *host, bool need_verified, enum tls_verify_reason *vr);
/* Store @sess (the reference is taken) for @key, replacing any older one. */
void tls_cache_put(struct tls_cache *cache, const char *key, SSL_SESSION *sess,
	const char *host, enum tls_verify_reason vr);
void tls_cache_get_stats(const struct tls_cache *cache, struct tls_cache_stats *st);

#endif
