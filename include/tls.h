/*
 * TLS layer (tls_): client-side OpenSSL 3 over in-memory buffers, never a
 * socket. The owner of a connection moves ciphertext between its transport
 * (userspace TCP, a kernel socket, a test peer) and a tls_conn:
 *
 *   tls_alloc_init()                 once per process, before any OpenSSL use
 *   tls_ctx_new()                    once per worker thread
 *   tls_conn_new()                   per connection, after STARTTLS / connect
 *   loop: tls_conn_feed(bytes from transport)
 *         tls_conn_handshake() / tls_conn_read() / tls_conn_write()
 *         tls_conn_out_peek() + tls_conn_out_consume() -> transport
 *         tls_ctx_ready_drain() -> resume paused connections
 *   tls_conn_shutdown(), flush output, tls_conn_free()
 *
 * A tls_ctx and its connections belong to one thread. Nothing here blocks:
 * a call that cannot progress returns TLS_WANT_IO / -EAGAIN (needs bytes
 * moved) or TLS_PAUSED / -EINPROGRESS (an OpenSSL async job is paused and
 * the same call must be repeated once the connection is ready again).
 *
 * Async (SSL_MODE_ASYNC): a provider that pauses a job later signals it
 * either through the callback set with SSL_set_async_callback -- the conn
 * then shows up in tls_ctx_ready_drain(), which the worker calls once per
 * loop iteration -- or through a wait fd, listed by tls_conn_async_fds().
 * Both are wired; which one fires depends on the provider. Resuming means
 * repeating the call that returned TLS_PAUSED / -EINPROGRESS.
 *
 * Memory: an idle connection (handshake done, nothing buffered) holds no
 * record or queue buffers; about 20 KiB remain (SSL object, session with
 * the peer chain, cipher state), measured by tests/unit/test_tls.c.
 */
#ifndef MP_TLS_H
#define MP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* Protocol versions, same values as OpenSSL's TLS1_x_VERSION. */
#define TLS_VERSION_1_0 0x0301
#define TLS_VERSION_1_1 0x0302
#define TLS_VERSION_1_2 0x0303
#define TLS_VERSION_1_3 0x0304

/* Return values of tls_conn_handshake() and tls_conn_shutdown() (>= 0). */
enum tls_rc {
	TLS_OK = 0,       /**< done */
	TLS_WANT_IO = 1,  /**< feed more ciphertext and/or send pending output */
	TLS_PAUSED = 2,   /**< async job paused; call again when ready */
};

/** Default bounds (see struct tls_ctx_conf). */
#define TLS_FEED_MAX_DEFAULT (2 * (16384 + 2048))
#define TLS_OUT_MAX_DEFAULT  (64 * 1024)
#define TLS_CACHE_DEFAULT    1024
#define TLS_CACHE_KEY_MAX    272

struct tls_ctx;
struct tls_conn;

/**
 * Per-worker configuration. Zero-initialise, then set what differs; every
 * string is copied or consumed by tls_ctx_new() and may be freed after.
 */
struct tls_ctx_conf {
	int min_version;          /**< TLS_VERSION_x, 0 = TLS 1.2 */
	/**
	 * Floor for connections made with tls_conn_conf.opportunistic: TLS
	 * that is not required may go lower (RFC 7435: any encryption beats a
	 * plaintext fallback). TLS_VERSION_x, 0 = min_version. At 1.0 or 1.1
	 * those connections also run at OpenSSL security level 0 (SHA-1
	 * signatures), as such servers need; required/verify never do.
	 */
	int opportunistic_min_version;
	int max_version;          /**< TLS_VERSION_x, 0 = highest supported */
	const char *ciphers;      /**< TLS <= 1.2 cipher list, NULL = OpenSSL default */
	const char *ciphersuites; /**< TLS 1.3 suites, NULL = OpenSSL default */
	const char *groups;       /**< key exchange groups, NULL = default (x25519 first) */
	const char *ca_file;      /**< PEM bundle of trusted CAs */
	const char *ca_dir;       /**< hashed CA directory; both NULL = system store */
	unsigned cache_capacity;  /**< session cache entries, 0 = TLS_CACHE_DEFAULT */
	size_t feed_max;          /**< unprocessed ciphertext bound per conn, 0 = default */
	size_t out_max;           /**< tls_conn_write() refuses above this much pending output */
	/** Monotonic clock in microseconds for handshake timing; NULL = CLOCK_MONOTONIC. */
	uint64_t (*now_us)(void *arg);
	void *now_arg;
	/**
	 * Test only: called inside the OpenSSL async job while the server
	 * certificate is being verified, so a test can ASYNC_pause_job() as an
	 * asynchronous crypto provider would. NULL in production.
	 */
	void (*test_pause_hook)(struct tls_conn *c, void *arg);
	void *test_pause_arg;
};

/** Per-connection options. Strings are copied by tls_conn_new(). */
struct tls_conn_conf {
	const char *host;      /**< SNI and, when verifying, the expected name; NULL = none */
	bool verify;           /**< fail the handshake unless chain and name check out */
	const char *cache_key; /**< resumption key, e.g. "mx.example.com:25"; NULL = none */
	bool opportunistic;    /**< TLS is not required: use the opportunistic floor */
	void *owner;           /**< opaque, returned by tls_conn_owner() */
	uint64_t id;           /**< session id for log lines */
};

/** Why a certificate or a handshake was not good, first problem found. */
enum tls_verify_reason {
	TLS_VERIFY_NONE = 0,          /**< no handshake yet / no certificate seen */
	TLS_VERIFY_OK,                /**< chain and (if a host was given) name verified */
	TLS_VERIFY_EXPIRED,
	TLS_VERIFY_NOT_YET_VALID,
	TLS_VERIFY_SELF_SIGNED,
	TLS_VERIFY_UNKNOWN_CA,        /**< unable to get issuer / untrusted root */
	TLS_VERIFY_NAME_MISMATCH,
	TLS_VERIFY_HANDSHAKE_ALERT,   /**< peer sent a fatal alert; text in reason */
	TLS_VERIFY_PROTOCOL_VERSION,  /**< no common version (peer too old) */
	TLS_VERIFY_OTHER,             /**< anything else; OpenSSL's text in reason */
	TLS_VERIFY_LAST
};

#define TLS_STR_SHORT 64
#define TLS_STR_DN    256
#define TLS_STR_REASON 160

/**
 * What a handshake produced; fixed size, plain data, safe to memcpy into a
 * per-recipient result. Filled when the handshake ends, either way.
 */
struct tls_record {
	char version[16];                 /**< "TLSv1.3" */
	char cipher[TLS_STR_SHORT];       /**< OpenSSL name, "TLS_AES_256_GCM_SHA384" */
	char group[32];                   /**< TLS registry name, "x25519"; "" if none */
	bool resumed;
	bool verify_enforced;             /**< verify was on for this connection */
	enum tls_verify_reason verify;    /**< result of chain + name checks or failure cause */
	int verify_code;                  /**< X509_V_ERR_*, TLS alert number, or 0 */
	char reason[TLS_STR_REASON];      /**< human text for verify / failure */
	uint64_t handshake_us;            /**< first handshake call to its end */
	char subject[TLS_STR_DN];         /**< peer certificate, RFC 2253 */
	char issuer[TLS_STR_DN];
	time_t not_after;                 /**< 0 if no certificate */
	char not_after_iso[24];           /**< "2027-01-31T12:00:00Z" */
};

/** Session cache counters (per ctx). */
struct tls_cache_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t stores;
	uint64_t evictions;   /**< LRU entries dropped to make room */
	uint64_t expired;     /**< entries dropped because the session timed out */
	uint64_t rejected;    /**< entries not used: not verified for a verifying conn */
	uint64_t replaced;    /**< entries superseded by a newer session of their key */
	unsigned entries;
	unsigned capacity;
};

/** @return static name of @p r ("expired", "name-mismatch", ...); "?" if out of range. */
const char *tls_verify_reason_name(enum tls_verify_reason r);

/**
 * Route OpenSSL's allocations to jemalloc (mallocx/rallocx/dallocx, thread
 * tcache and automatic arena). Must run before anything else touches
 * OpenSSL in the process (a repeated call is harmless).
 * @return 0, or -EBUSY if OpenSSL already allocated (functions not set).
 */
int tls_alloc_init(void);

/**
 * Create the per-worker context.
 * @param conf   options; NULL = all defaults
 * @param err    receives a message on failure (may be NULL)
 * @param errlen size of @p err
 * @return context, or NULL (bad cipher/group/version string, unreadable CA,
 *         out of memory) with @p err filled.
 */
struct tls_ctx *tls_ctx_new(const struct tls_ctx_conf *conf, char *err, size_t errlen);

/**
 * A version as operators write it: "1.0", "1.1", "1.2" or "1.3".
 * @return TLS_VERSION_x, or -EINVAL
 */
int tls_version_parse(const char *s);

/** Free a context. Every connection made from it must be freed first. */
void tls_ctx_free(struct tls_ctx *ctx);

/** Copy the session cache counters into @p st. */
void tls_ctx_cache_stats(const struct tls_ctx *ctx, struct tls_cache_stats *st);

/**
 * Take up to @p max connections whose paused async job became ready (the
 * provider signalled through SSL_set_async_callback), oldest first. The
 * worker calls this once per loop iteration and repeats the paused call on
 * each. May be signalled from another thread; drained by the owner only.
 * @return number stored in @p out.
 */
unsigned tls_ctx_ready_drain(struct tls_ctx *ctx, struct tls_conn **out, unsigned max);

/**
 * Create a client connection (nothing is sent until tls_conn_handshake()).
 * With verify on and no host, only the chain is checked.
 * @return connection, or NULL on out of memory, a host longer than 253
 *         bytes or a cache key longer than TLS_CACHE_KEY_MAX - 1.
 */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const struct tls_conn_conf *cc);

/** Free a connection. Do not free one with a paused job in flight. */
void tls_conn_free(struct tls_conn *c);

/** @return the owner pointer given in tls_conn_conf. */
void *tls_conn_owner(const struct tls_conn *c);

/**
 * Hand ciphertext received from the transport to the connection.
 * @return bytes accepted (may be less than @p len, 0 when the feed bound is
 *         reached: keep the rest and retry after the next handshake/read
 *         call); -ENOMEM; -EPIPE after tls_conn_feed_eof().
 */
ssize_t tls_conn_feed(struct tls_conn *c, const void *cipher, size_t len);

/** The transport reached end of stream: pending reads then see it. */
void tls_conn_feed_eof(struct tls_conn *c);

/** @return bytes of ciphertext waiting to be sent. */
size_t tls_conn_out_pending(const struct tls_conn *c);

/**
 * Zero-copy view of pending ciphertext: @p *p points at
 * tls_conn_out_pending() bytes valid until the next call on @p c.
 * @return that length (0 = nothing, *p = NULL).
 */
size_t tls_conn_out_peek(const struct tls_conn *c, const void **p);

/** Drop @p n bytes (<= pending) from the front of the output after sending them. */
void tls_conn_out_consume(struct tls_conn *c, size_t n);

/**
 * Copying alternative to peek/consume.
 * @return bytes copied into @p buf (0 = nothing pending).
 */
ssize_t tls_conn_out_read(struct tls_conn *c, void *buf, size_t cap);

/**
 * Drive the handshake. Call first after tls_conn_new(), again whenever
 * bytes were fed, and again after TLS_PAUSED once ready. After any call,
 * send tls_conn_out_pending() bytes (also after a failure: they carry the
 * alert).
 * @return TLS_OK (record filled), TLS_WANT_IO, TLS_PAUSED,
 *         -EPROTO handshake failed (verify or protocol; see the record),
 *         -ECONNRESET transport ended mid-handshake, -ENOMEM (no memory
 *         for OpenSSL or its async job; state kept, the call may be retried).
 */
int tls_conn_handshake(struct tls_conn *c);

/**
 * Read application data.
 * @return bytes read (> 0); 0 peer sent close_notify; -EAGAIN needs IO;
 *         -EINPROGRESS async job paused (repeat the call once ready);
 *         -ENOTCONN handshake not done; -ECONNRESET transport ended without
 *         close_notify; -EPROTO protocol error; -ENOMEM (retryable).
 */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t cap);

/**
 * Write application data; may take part of it (one record at a time).
 * After -EAGAIN / -EINPROGRESS repeat with the same bytes.
 * @return bytes taken (> 0); -EAGAIN output above out_max (send first);
 *         -EINPROGRESS paused; -ENOTCONN; -EPIPE after shutdown or peer
 *         close; -EPROTO; -ENOMEM (retryable).
 */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len);

/**
 * Queue close_notify (does not wait for the peer's).
 * @return TLS_OK (send pending output, then close), TLS_PAUSED,
 *         -ENOTCONN (handshake not done), -EPROTO, -ENOMEM.
 */
int tls_conn_shutdown(struct tls_conn *c);

/** @return true once the handshake completed. */
bool tls_conn_is_open(const struct tls_conn *c);

/** @return the connection's record (valid until tls_conn_free()). */
const struct tls_record *tls_conn_record(const struct tls_conn *c);

/**
 * File descriptors an fd-based async engine/provider wants watched for a
 * paused connection (SSL_get_all_async_fds). When readable, repeat the
 * paused call. Providers that signal by callback use tls_ctx_ready_drain().
 * @return number of fds stored (at most @p max), or -ENOSPC if more exist.
 */
int tls_conn_async_fds(struct tls_conn *c, int *fds, size_t max);

#endif
