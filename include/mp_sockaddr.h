/*
 * A server address of either family, carried by value from the resolver's
 * hop through the dispatch order to the session request: 28 bytes (a
 * sockaddr_in6), not a 128-byte sockaddr_storage. sa.sa_family tells which
 * member is valid; a zeroed one is AF_UNSPEC. Header-only: the control
 * plane and both engines use it without linking anything for it.
 *
 * Which transport speaks which family is the transport's business: ksock
 * connects to both, the DPDK stack (usock/utcp) is IPv4 only and refuses
 * AF_INET6 with -EAFNOSUPPORT.
 */
#ifndef MP_SOCKADDR_H
#define MP_SOCKADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/** Longest text mp_sockaddr_ntop() writes, NUL included ("[v6]:port" fits). */
#define MP_SOCKADDR_STR (INET6_ADDRSTRLEN + 8)

union mp_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
};

/** An IPv4 address and port (host order) as a union mp_sockaddr. */
static inline union mp_sockaddr
mp_sockaddr_v4(struct in_addr a, uint16_t port)
{
	union mp_sockaddr u;

	memset(&u, 0, sizeof(u));
	u.sin.sin_family = AF_INET;
	u.sin.sin_port = htons(port);
	u.sin.sin_addr = a;
	return u;
}

/** An IPv6 address and port (host order) as a union mp_sockaddr. */
static inline union mp_sockaddr
mp_sockaddr_v6(const struct in6_addr *a, uint16_t port)
{
	union mp_sockaddr u;

	memset(&u, 0, sizeof(u));
	u.sin6.sin6_family = AF_INET6;
	u.sin6.sin6_port = htons(port);
	u.sin6.sin6_addr = *a;
	return u;
}

/** Length to pass to connect()/bind(); 0 for a family that is neither. */
static inline socklen_t
mp_sockaddr_len(const union mp_sockaddr *u)
{
	return u->sa.sa_family == AF_INET ? (socklen_t)sizeof(u->sin) :
	       u->sa.sa_family == AF_INET6 ? (socklen_t)sizeof(u->sin6) : 0;
}

/** Port in host order (0 for a family that is neither). */
static inline uint16_t
mp_sockaddr_port(const union mp_sockaddr *u)
{
	return u->sa.sa_family == AF_INET ? ntohs(u->sin.sin_port) :
	       u->sa.sa_family == AF_INET6 ? ntohs(u->sin6.sin6_port) : 0;
}

/**
 * The address alone in text form ("192.0.2.1", "2001:db8::25"), "?" for
 * a family that is neither. @return @p buf
 */
static inline char *
mp_sockaddr_ntop(const union mp_sockaddr *u, char *buf, size_t cap)
{
	const void *a = u->sa.sa_family == AF_INET ? (const void *)&u->sin.sin_addr :
			u->sa.sa_family == AF_INET6 ? (const void *)&u->sin6.sin6_addr : NULL;

	if (a == NULL || inet_ntop(u->sa.sa_family, a, buf, (socklen_t)cap) == NULL)
		snprintf(buf, cap, "?");
	return buf;
}

/**
 * Address and port the way people write them: "192.0.2.1:25",
 * "[2001:db8::25]:25". @return @p buf
 */
static inline char *
mp_sockaddr_str(const union mp_sockaddr *u, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	mp_sockaddr_ntop(u, ip, sizeof(ip));
	snprintf(buf, cap, u->sa.sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
		 mp_sockaddr_port(u));
	return buf;
}

#endif
