/*
 * Client session cache: one resumable SSL_SESSION per destination key
 * ("mx.example.com:25"), bounded, least recently used out first. Entries
 * are preallocated at tls_cache_new(); a put or get never allocates.
 *
 * Sessions come in from the SSL_CTX new-session callback (TLS 1.2: at the
 * end of the handshake; TLS 1.3: each NewSessionTicket, after it) through
 * tls_cache_put(), and go out to tls_conn_new() through tls_cache_get().
 * A TLS 1.3 ticket is handed out once (RFC 8446 C.4). Servers send several
 * tickets after a full handshake (OpenSSL and Postfix: two) and often none
 * after a resumed one, so up to TLS_CACHE_TICKETS_PER_KEY tickets are kept
 * per key, newest first: otherwise only every second connection to a
 * destination would resume, and concurrent connections would all miss.
 * Entries die with the session's timeout (for TLS 1.3, the ticket
 * lifetime).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "mp_log.h"
#include "tls_int.h"

#define TLS_CACHE_TICKETS_PER_KEY 8

struct tls_cache_entry {
	struct tls_cache_entry *hnext;          /* bucket chain */
	struct tls_cache_entry *prev, *next;    /* LRU list, head = newest */
	SSL_SESSION *sess;                      /* NULL = entry free */
	enum tls_verify_reason verify;
	uint32_t hash;
	char key[TLS_CACHE_KEY_MAX];
	char host[254];
};

struct tls_cache {
	struct tls_cache_entry *entries;
	struct tls_cache_entry *free_list;      /* via hnext */
	struct tls_cache_entry **buckets;
	uint32_t nbuckets;                      /* power of two */
	struct tls_cache_entry *lru_head, *lru_tail;
	struct tls_cache_stats st;
};

static uint32_t
cache_hash(const char *key)
{
	uint32_t h = 2166136261u;

	for (; *key != '\0'; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h;
}

struct tls_cache *
tls_cache_new(unsigned capacity)
{
	struct tls_cache *cache;

	if (capacity == 0)
		capacity = TLS_CACHE_DEFAULT;
	cache = OPENSSL_zalloc(sizeof(*cache));
	if (cache == NULL)
		return NULL;
	cache->nbuckets = 16;
	while (cache->nbuckets < capacity)
		cache->nbuckets <<= 1;
	cache->entries = OPENSSL_zalloc(sizeof(*cache->entries) * capacity);
	cache->buckets = OPENSSL_zalloc(sizeof(*cache->buckets) * cache->nbuckets);
	if (cache->entries == NULL || cache->buckets == NULL) {
		tls_cache_free(cache);
		return NULL;
	}
	for (unsigned i = 0; i < capacity; i++) {
		cache->entries[i].hnext = cache->free_list;
		cache->free_list = &cache->entries[i];
	}
	cache->st.capacity = capacity;
	return cache;
}

static void
lru_unlink(struct tls_cache *cache, struct tls_cache_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		cache->lru_head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		cache->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_push_head(struct tls_cache *cache, struct tls_cache_entry *e)
{
	e->prev = NULL;
	e->next = cache->lru_head;
	if (cache->lru_head != NULL)
		cache->lru_head->prev = e;
	cache->lru_head = e;
	if (cache->lru_tail == NULL)
		cache->lru_tail = e;
}

static struct tls_cache_entry *
cache_find(struct tls_cache *cache, const char *key, uint32_t h)
{
	struct tls_cache_entry *e = cache->buckets[h & (cache->nbuckets - 1)];

	for (; e != NULL; e = e->hnext)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

/* Unlink @e from its bucket and the LRU, drop its session, free the slot. */
static void
cache_remove(struct tls_cache *cache, struct tls_cache_entry *e)
{
	struct tls_cache_entry **pp = &cache->buckets[e->hash & (cache->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(cache, e);
	SSL_SESSION_free(e->sess);
	e->sess = NULL;
	e->hnext = cache->free_list;
	cache->free_list = e;
	cache->st.entries--;
}

/*
 * OpenSSL's client timeout is its own (ctx) default; the server's ticket
 * lifetime hint, when shorter, is the real bound (RFC 8446 4.6.1, RFC
 * 5077 3.3; 0 = unspecified).
 */
static bool
session_expired(SSL_SESSION *s, time_t now)
{
	long t = SSL_SESSION_get_time(s);
	long life = SSL_SESSION_get_timeout(s);
	unsigned long hint = SSL_SESSION_get_ticket_lifetime_hint(s);

	if (hint != 0 && hint < (unsigned long)life)
		life = (long)hint;
	return now >= (time_t)t + (time_t)life;
}

void
tls_cache_free(struct tls_cache *cache)
{
	if (cache == NULL)
		return;
	if (cache->entries != NULL)
		for (unsigned i = 0; i < cache->st.capacity; i++)
			SSL_SESSION_free(cache->entries[i].sess);
	OPENSSL_free(cache->entries);
	OPENSSL_free(cache->buckets);
	OPENSSL_free(cache);
}

/* The entry after @e in its chain with the same key, or NULL. */
static struct tls_cache_entry *
cache_next_same(struct tls_cache_entry *e)
{
	struct tls_cache_entry *n = e->hnext;

	for (; n != NULL; n = n->hnext)
		if (n->hash == e->hash && strcmp(n->key, e->key) == 0)
			return n;
	return NULL;
}

SSL_SESSION *
tls_cache_get(struct tls_cache *cache, const char *key, const char *host,
	bool need_verified, enum tls_verify_reason *vr)
{
	uint32_t h = cache_hash(key);
	struct tls_cache_entry *e = cache_find(cache, key, h), *next;
	time_t now = time(NULL);
	SSL_SESSION *s;

	/* newest first; stale tickets of the key are dropped on the way */
	for (; e != NULL; e = next) {
		next = cache_next_same(e);
		if (session_expired(e->sess, now) || !SSL_SESSION_is_resumable(e->sess)) {
			cache->st.expired++;
			cache_remove(cache, e);
			continue;
		}
		/*
		 * A session made without (successful) verification must not
		 * let a verifying connection skip the certificate check.
		 */
		if (need_verified && (e->verify != TLS_VERIFY_OK ||
		    strcasecmp(e->host, host != NULL ? host : "") != 0)) {
			cache->st.rejected++;
			continue;
		}
		break;
	}
	if (e == NULL) {
		cache->st.misses++;
		return NULL;
	}
	cache->st.hits++;
	*vr = e->verify;
	if (SSL_SESSION_get_protocol_version(e->sess) >= TLS1_3_VERSION) {
		/* single use: the reference moves to the caller */
		s = e->sess;
		SSL_SESSION_up_ref(s);
		cache_remove(cache, e);
		return s;
	}
	lru_unlink(cache, e);
	lru_push_head(cache, e);
	SSL_SESSION_up_ref(e->sess);
	return e->sess;
}

/*
 * Entries of one key sit newest first in their bucket chain (new ones go
 * to the head), so cache_find() returns the newest. @return how many
 * entries @key has and, in @oldest, the last of them.
 */
static unsigned
cache_count_key(struct tls_cache *cache, const char *key, uint32_t h,
	struct tls_cache_entry **oldest)
{
	struct tls_cache_entry *e = cache->buckets[h & (cache->nbuckets - 1)];
	unsigned n = 0;

	*oldest = NULL;
	for (; e != NULL; e = e->hnext)
		if (e->hash == h && strcmp(e->key, key) == 0) {
			n++;
			*oldest = e;
		}
	return n;
}

void
tls_cache_put(struct tls_cache *cache, const char *key, SSL_SESSION *sess,
	const char *host, enum tls_verify_reason vr)
{
	uint32_t h = cache_hash(key);
	struct tls_cache_entry *e, *oldest;
	unsigned n = cache_count_key(cache, key, h, &oldest);
	bool tickets = SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION;

	/* TLS 1.2: one session per key, replaced; TLS 1.3: a bounded stash. */
	if (n > 0 && (!tickets || n >= TLS_CACHE_TICKETS_PER_KEY)) {
		cache_remove(cache, tickets ? oldest : cache_find(cache, key, h));
		cache->st.replaced++;
	}
	if (cache->free_list == NULL) {
		cache_remove(cache, cache->lru_tail);
		cache->st.evictions++;
	}
	e = cache->free_list;
	cache->free_list = e->hnext;
	e->hash = h;
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->hnext = cache->buckets[h & (cache->nbuckets - 1)];
	cache->buckets[h & (cache->nbuckets - 1)] = e;
	cache->st.entries++;
	e->sess = sess;
	e->verify = vr;
	snprintf(e->host, sizeof(e->host), "%s", host != NULL ? host : "");
	lru_push_head(cache, e);
	cache->st.stores++;
}

void
tls_cache_get_stats(const struct tls_cache *cache, struct tls_cache_stats *st)
{
	*st = cache->st;
}
