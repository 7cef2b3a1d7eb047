/*
 * Per-worker TLS context: the client SSL_CTX (versions, ciphers, groups,
 * CA store, async and buffer-release modes, session cache hookup), the BIO
 * method our connections use, and the list of connections whose paused
 * async job may resume. Also the process-wide allocator hookup, which must
 * run first: tls_alloc_init(), then tls_ctx_new() on each worker thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jemalloc/jemalloc.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mp_log.h"
#include "tls_int.h"

/*
 * OpenSSL -> jemalloc. Debian's jemalloc exports the standard names too,
 * but in a sanitizer build the runtime's malloc wins over them; the
 * non-standard *allocx entry points always reach jemalloc. Flags 0: the
 * calling thread's tcache and its automatically assigned arena, which suit
 * one thread per worker (no cross-thread frees on the hot path). jemalloc
 * leaves size 0 and NULL pointers undefined for these calls; the C
 * semantics OpenSSL expects are restored here.
 */
static void *
tls_je_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return mallocx(n != 0 ? n : 1, 0);
}

static void *
tls_je_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	if (p == NULL)
		return mallocx(n != 0 ? n : 1, 0);
	if (n == 0) {
		dallocx(p, 0);
		return NULL;
	}
	return rallocx(p, n, 0);
}

static void
tls_je_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (p != NULL)
		dallocx(p, 0);
}

int
tls_alloc_init(void)
{
	if (!CRYPTO_set_mem_functions(tls_je_malloc, tls_je_realloc, tls_je_free))
		return -EBUSY;
	return 0;
}

static const char *const verify_reason_names[TLS_VERIFY_LAST] = {
	[TLS_VERIFY_NONE] = "none",
	[TLS_VERIFY_OK] = "ok",
	[TLS_VERIFY_EXPIRED] = "expired",
	[TLS_VERIFY_NOT_YET_VALID] = "not-yet-valid",
	[TLS_VERIFY_SELF_SIGNED] = "self-signed",
	[TLS_VERIFY_UNKNOWN_CA] = "unknown-ca",
	[TLS_VERIFY_NAME_MISMATCH] = "name-mismatch",
	[TLS_VERIFY_HANDSHAKE_ALERT] = "handshake-alert",
	[TLS_VERIFY_PROTOCOL_VERSION] = "protocol-version",
	[TLS_VERIFY_OTHER] = "other",
};

const char *
tls_verify_reason_name(enum tls_verify_reason r)
{
	if ((unsigned)r >= TLS_VERIFY_LAST)
		return "?";
	return verify_reason_names[r];
}

static void
ctx_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[160] = "";

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
	ERR_clear_error();
}

int
tls_version_parse(const char *s)
{
	static const struct { const char *name; int v; } tab[] = {
		{ "1.0", TLS_VERSION_1_0 }, { "1.1", TLS_VERSION_1_1 },
		{ "1.2", TLS_VERSION_1_2 }, { "1.3", TLS_VERSION_1_3 },
	};

	for (size_t i = 0; s != NULL && i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcmp(s, tab[i].name) == 0)
			return tab[i].v;
	return -EINVAL;
}

struct tls_ctx *
tls_ctx_new(const struct tls_ctx_conf *conf, char *err, size_t errlen)
{
	static const struct tls_ctx_conf defaults;
	struct tls_ctx *ctx;
	SSL_CTX *s;
	int minv, maxv;

	if (conf == NULL)
		conf = &defaults;
	ERR_clear_error();
	ctx = OPENSSL_zalloc(sizeof(*ctx));
	if (ctx == NULL) {
		ctx_err(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&ctx->ready_stack, NULL);
	ctx->feed_max = conf->feed_max != 0 ? conf->feed_max : TLS_FEED_MAX_DEFAULT;
	ctx->out_max = conf->out_max != 0 ? conf->out_max : TLS_OUT_MAX_DEFAULT;
	ctx->now_us = conf->now_us;
	ctx->now_arg = conf->now_arg;
	ctx->test_pause_hook = conf->test_pause_hook;
	ctx->test_pause_arg = conf->test_pause_arg;

	s = ctx->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (s == NULL) {
		ctx_err(err, errlen, "SSL_CTX_new");
		goto fail;
	}
	minv = conf->min_version != 0 ? conf->min_version : TLS_VERSION_1_2;
	maxv = conf->max_version;
	ctx->min_version = minv;
	ctx->opp_min_version = conf->opportunistic_min_version != 0 ?
		conf->opportunistic_min_version : minv;
	if (ctx->opp_min_version < TLS_VERSION_1_0 || ctx->opp_min_version > TLS_VERSION_1_3) {
		ctx_err(err, errlen, "bad opportunistic minimum version");
		goto fail;
	}
	if (!SSL_CTX_set_min_proto_version(s, minv) ||
	    !SSL_CTX_set_max_proto_version(s, maxv)) {
		ctx_err(err, errlen, "bad protocol version");
		goto fail;
	}
	if (conf->ciphers != NULL && !SSL_CTX_set_cipher_list(s, conf->ciphers)) {
		ctx_err(err, errlen, "bad cipher list");
		goto fail;
	}
	if (conf->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(s, conf->ciphersuites)) {
		ctx_err(err, errlen, "bad TLS 1.3 ciphersuites");
		goto fail;
	}
	if (conf->groups != NULL && !SSL_CTX_set1_groups_list(s, conf->groups)) {
		ctx_err(err, errlen, "bad groups list");
		goto fail;
	}
	if (conf->ca_file != NULL || conf->ca_dir != NULL) {
		if (!SSL_CTX_load_verify_locations(s, conf->ca_file, conf->ca_dir)) {
			ctx_err(err, errlen, "cannot load CA file/dir");
			goto fail;
		}
	} else if (!SSL_CTX_set_default_verify_paths(s)) {
		ctx_err(err, errlen, "cannot load system CA store");
		goto fail;
	}
	/*
	 * ASYNC: every handshake/read/write runs as an async job that a
	 * provider may pause. RELEASE_BUFFERS: idle connections give their
	 * record buffers back. Partial and moving writes: tls_conn_write()
	 * returns per record and callers may retry from a new address.
	 */
	SSL_CTX_set_mode(s, SSL_MODE_ASYNC | SSL_MODE_RELEASE_BUFFERS |
		SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* never renegotiate; no compression (CRIME) */
	SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* chain + name are checked per connection; see tls_conn_new() */
	SSL_CTX_set_cert_verify_callback(s, tls_conn_on_cert_verify, ctx);
	SSL_CTX_set_info_callback(s, tls_conn_on_info);
	SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT |
		SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(s, tls_conn_on_new_session);

	ctx->cache = tls_cache_new(conf->cache_capacity);
	ctx->bio_meth = tls_bio_method_new();
	if (ctx->cache == NULL || ctx->bio_meth == NULL) {
		ctx_err(err, errlen, "out of memory");
		goto fail;
	}
	return ctx;
fail:
	tls_ctx_free(ctx);
	return NULL;
}

void
tls_ctx_free(struct tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->nconns != 0)
		MP_LOG(MP_LOG_ERR, TLS_LOG, "event=ctx_free_busy conns=%u", ctx->nconns);
	SSL_CTX_free(ctx->ssl_ctx);
	tls_cache_free(ctx->cache);
	BIO_meth_free(ctx->bio_meth);
	OPENSSL_free(ctx);
}

void
tls_ctx_cache_stats(const struct tls_ctx *ctx, struct tls_cache_stats *st)
{
	tls_cache_get_stats(ctx->cache, st);
}

/*
 * SSL_set_async_callback target: the provider says the paused job of
 * @ssl can continue. May run on a provider thread, hence the lock-free
 * push; the owner moves entries into its FIFO in tls_ctx_ready_drain().
 */
int
tls_conn_on_async_ready(SSL *ssl, void *arg)
{
	struct tls_conn *c = arg;
	struct tls_ctx *ctx = c->ctx;
	struct tls_conn *head;

	(void)ssl;
	if (atomic_exchange(&c->queued, true))
		return 1;
	head = atomic_load_explicit(&ctx->ready_stack, memory_order_relaxed);
	do {
		c->ready_link = head;
	} while (!atomic_compare_exchange_weak_explicit(&ctx->ready_stack, &head, c,
		memory_order_release, memory_order_relaxed));
	return 1;
}

/* Move what other threads pushed (newest first) to the FIFO tail in order. */
static void
ready_collect(struct tls_ctx *ctx)
{
	struct tls_conn *s = atomic_exchange_explicit(&ctx->ready_stack, NULL,
		memory_order_acquire);
	struct tls_conn *rev = NULL, *n;

	for (; s != NULL; s = n) {
		n = s->ready_link;
		s->fifo_next = rev;
		rev = s;
	}
	for (; rev != NULL; rev = n) {
		n = rev->fifo_next;
		rev->fifo_next = NULL;
		if (ctx->ready_tail != NULL)
			ctx->ready_tail->fifo_next = rev;
		else
			ctx->ready_head = rev;
		ctx->ready_tail = rev;
	}
}

unsigned
tls_ctx_ready_drain(struct tls_ctx *ctx, struct tls_conn **out, unsigned max)
{
	unsigned n = 0;
	struct tls_conn *c;

	ready_collect(ctx);
	while (n < max && (c = ctx->ready_head) != NULL) {
		ctx->ready_head = c->fifo_next;
		if (ctx->ready_head == NULL)
			ctx->ready_tail = NULL;
		c->fifo_next = NULL;
		atomic_store(&c->queued, false);
		out[n++] = c;
	}
	return n;
}

/* Called by tls_conn_free(): a queued conn must not be handed out later. */
void
tls_ctx_ready_remove(struct tls_ctx *ctx, struct tls_conn *c)
{
	struct tls_conn **pp;

	if (!atomic_load(&c->queued))
		return;
	ready_collect(ctx);
	ctx->ready_tail = NULL;
	for (pp = &ctx->ready_head; *pp != NULL; ) {
		if (*pp == c)
			*pp = c->fifo_next;
		else {
			ctx->ready_tail = *pp;
			pp = &(*pp)->fifo_next;
		}
	}
	atomic_store(&c->queued, false);
}
