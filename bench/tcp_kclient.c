/*
 * mp-tcpkclient: the kernel-socket baseline for bench/tcp_bench.sh. One
 * thread, one epoll set, non-blocking kernel TCP sockets doing exactly the
 * work mp-tcpbench does, so the two can be run against the same
 * mp-tcpserver and compared. Modes:
 *   echo     send --bytes per connection, read them back, verify, close
 *            (with --bytes 100: a short request/response connection)
 *   connect  open and close (connection rate)
 *   bulk     send --bytes, half-close, read the peer's "OK <n> <fnv64>"
 *            summary (mp-tcpserver sink mode) and check it
 * The bytes sent are the same pattern mp-tcpbench sends, hashed the same
 * way in bulk mode.
 *
 * It is meant to be a good epoll client, not a strawman: connections sit
 * in a preallocated slot table (nothing is allocated per connection),
 * connect is non-blocking, TCP_NODELAY is set, each socket is registered
 * once, edge-triggered for input and output, so a short connection costs
 * socket, setsockopt, connect, epoll_ctl, write, read and close plus its
 * share of epoll_wait. Local port reuse is the caller's business
 * (ip_local_port_range, tcp_tw_reuse in the client's namespace), as for
 * any client that does not bind.
 *
 * Prints one JSON line in mp-tcpbench's style, with the CPU time the
 * process used between the first connect and the last completion.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mp_tcppat.h"
#define OPEN_PER_POLL 64
#define RECV_CHUNK 65536
#define MAX_EVENTS 256

enum mode { MODE_ECHO, MODE_CONNECT, MODE_BULK };
static const char *const mode_names[] = { "echo", "connect", "bulk" };

enum fail { F_REFUSED, F_TIMEOUT, F_RESET, F_UNREACH, F_VERIFY, F_LOCAL, F_LAST };

struct conf {
	enum mode mode;
	struct sockaddr_in peer;
	uint64_t conns;
	uint32_t concurrency;
	uint64_t bytes;
	unsigned int timeout_s;
};

struct kconn {
	int fd;
	uint32_t gen;                   /* tells stale epoll events apart */
	uint8_t connected, shut, in_use;
	uint8_t reply_len;
	uint64_t idx, sent, recvd;
	uint64_t hash;                  /* FNV-1a of what was sent (bulk) */
	char reply[64];
};

struct client {
	const struct conf *cf;
	int ep;
	struct kconn *slots;
	uint32_t *free_slots;           /* stack of free slot indexes */
	uint32_t n_free, open_now, peak;
	uint64_t to_open, next_idx;
	uint64_t ok, failed[F_LAST], port_waits;
	uint64_t bytes_sent, bytes_verified;
};

static uint8_t pattern[MP_PAT_SIZE];
static uint8_t rbuf[RECV_CHUNK];
static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double
tv_s(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void
finish_conn(struct client *k, struct kconn *s, int ok)
{
	if (ok)
		k->ok++;
	close(s->fd);   /* also leaves the epoll set */
	s->fd = -1;
	s->in_use = 0;
	s->gen++;
	k->open_now--;
	k->free_slots[k->n_free++] = (uint32_t)(s - k->slots);
}

static void
fail_conn(struct client *k, struct kconn *s, enum fail why)
{
	k->failed[why]++;
	finish_conn(k, s, 0);
}

static enum fail
classify(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return F_REFUSED;
	case ETIMEDOUT:
		return F_TIMEOUT;
	case ECONNRESET:
	case EPIPE:
		return F_RESET;
	case EHOSTUNREACH:
	case ENETUNREACH:
		return F_UNREACH;
	default:
		return F_LOCAL;
	}
}

static void
open_conns(struct client *k)
{
	const struct conf *cf = k->cf;
	int one = 1;

	for (int i = 0; i < OPEN_PER_POLL && k->to_open > 0 && k->n_free > 0; i++) {
		struct kconn *s = &k->slots[k->free_slots[k->n_free - 1]];
		uint32_t slot = (uint32_t)(s - k->slots);
		struct epoll_event ev;
		int fd, r;

		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			k->port_waits++;        /* fd limit: try again later */
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		r = connect(fd, (const struct sockaddr *)&cf->peer, sizeof(cf->peer));
		if (r != 0 && errno != EINPROGRESS) {
			int err = errno;

			close(fd);
			if (err == EADDRNOTAVAIL || err == EAGAIN) {
				k->port_waits++;        /* no local port free yet */
				return;
			}
			k->failed[classify(err)]++;
			k->to_open--;
			k->next_idx++;
			continue;
		}
		ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
		ev.data.u64 = (uint64_t)s->gen << 32 | slot;
		if (epoll_ctl(k->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			k->failed[F_LOCAL]++;
			k->to_open--;
			k->next_idx++;
			continue;
		}
		s->fd = fd;
		s->in_use = 1;
		s->connected = s->shut = 0;
		s->reply_len = 0;
		s->idx = k->next_idx++;
		s->sent = s->recvd = 0;
		s->hash = MP_FNV1A_INIT;
		k->n_free--;
		k->to_open--;
		k->open_now++;
		if (k->open_now > k->peak)
			k->peak = k->open_now;
	}
}

/* Write until done or the socket is full; @return 0, or -1 if s is gone. */
static int
send_more(struct client *k, struct kconn *s)
{
	const struct conf *cf = k->cf;

	while (s->sent < cf->bytes) {
		uint32_t contig;
		const uint8_t *p = mp_pat_at(pattern, s->idx, s->sent, &contig);
		uint64_t want = cf->bytes - s->sent;
		ssize_t n;

		if (want > contig)
			want = contig;
		n = send(s->fd, p, (size_t)want, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			fail_conn(k, s, classify(errno));
			return -1;
		}
		if (cf->mode == MODE_BULK)
			s->hash = mp_fnv1a(s->hash, p, (size_t)n);
		s->sent += (uint64_t)n;
		k->bytes_sent += (uint64_t)n;
	}
	if (cf->mode == MODE_BULK && !s->shut) {
		shutdown(s->fd, SHUT_WR);
		s->shut = 1;
	}
	return 0;
}

static void
check_bulk_reply(struct client *k, struct kconn *s)
{
	unsigned long long n = 0, h = 0;

	s->reply[s->reply_len] = '\0';
	if (sscanf(s->reply, "OK %llu %llx", &n, &h) == 2 && n == s->sent &&
	    h == s->hash && s->sent == k->cf->bytes) {
		k->bytes_verified += n;
		finish_conn(k, s, 1);
	} else {
		fail_conn(k, s, F_VERIFY);
	}
}

/* Read until EAGAIN, end of stream or completion. */
static void
recv_more(struct client *k, struct kconn *s)
{
	const struct conf *cf = k->cf;

	for (;;) {
		ssize_t n = recv(s->fd, rbuf, sizeof(rbuf), 0);

		if (n < 0) {
			if (errno != EAGAIN)
				fail_conn(k, s, classify(errno));
			return;
		}
		if (n == 0) {
			if (cf->mode == MODE_BULK)
				check_bulk_reply(k, s);
			else
				fail_conn(k, s, F_VERIFY);
			return;
		}
		if (cf->mode == MODE_BULK) {
			size_t room = sizeof(s->reply) - 1 - s->reply_len;

			if ((size_t)n > room) {
				fail_conn(k, s, F_VERIFY);
				return;
			}
			memcpy(s->reply + s->reply_len, rbuf, (size_t)n);
			s->reply_len = (uint8_t)(s->reply_len + n);
			continue;
		}
		for (ssize_t off = 0; off < n;) {
			uint32_t contig;
			const uint8_t *p = mp_pat_at(pattern, s->idx, s->recvd, &contig);
			size_t c = (size_t)(n - off) < contig ? (size_t)(n - off) : contig;

			if (s->recvd + c > s->sent || memcmp(p, rbuf + off, c) != 0) {
				fail_conn(k, s, F_VERIFY);
				return;
			}
			s->recvd += c;
			off += (ssize_t)c;
		}
		k->bytes_verified += (uint64_t)n;
		if (s->recvd == cf->bytes) {
			finish_conn(k, s, 1);
			return;
		}
	}
}

static void
on_event(struct client *k, const struct epoll_event *ev)
{
	uint32_t slot = (uint32_t)ev->data.u64;
	struct kconn *s = &k->slots[slot];

	if (!s->in_use || s->gen != (uint32_t)(ev->data.u64 >> 32))
		return;         /* closed earlier in this batch */
	if (!s->connected) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (ev->events & (EPOLLERR | EPOLLHUP)) {
			getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
			fail_conn(k, s, classify(err ? err : ECONNRESET));
			return;
		}
		if (!(ev->events & EPOLLOUT))
			return;
		s->connected = 1;
		if (k->cf->mode == MODE_CONNECT) {
			finish_conn(k, s, 1);
			return;
		}
	}
	if ((ev->events & EPOLLOUT) && send_more(k, s) < 0)
		return;
	if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
		recv_more(k, s);
}

static void
report(const struct client *k, double seconds, const struct rusage *ru0,
	const struct rusage *ru1, int timed_out)
{
	const struct conf *cf = k->cf;
	double us = tv_s(&ru1->ru_utime) - tv_s(&ru0->ru_utime);
	double sy = tv_s(&ru1->ru_stime) - tv_s(&ru0->ru_stime);
	uint64_t moved = cf->mode == MODE_BULK ? k->bytes_verified :
		k->bytes_sent + k->bytes_verified;

	printf("{\"client\":\"kernel\",\"mode\":\"%s\",\"conns\":%llu,\"concurrency\":%u,"
		"\"bytes_per_conn\":%llu,\"ok\":%llu,\"failed\":{\"refused\":%llu,"
		"\"timeout\":%llu,\"reset\":%llu,\"unreachable\":%llu,\"verify\":%llu,"
		"\"local\":%llu,\"incomplete\":%llu},\"bytes_sent\":%llu,"
		"\"bytes_verified\":%llu,\"seconds\":%.3f,\"conns_per_s\":%.1f,"
		"\"gbit_per_s\":%.3f,\"peak_concurrency\":%u,\"timed_out\":%s,"
		"\"port_waits\":%llu,\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,"
		"\"vol_ctx_switches\":%ld,\"invol_ctx_switches\":%ld}\n",
		mode_names[cf->mode], (unsigned long long)cf->conns, cf->concurrency,
		(unsigned long long)cf->bytes, (unsigned long long)k->ok,
		(unsigned long long)k->failed[F_REFUSED],
		(unsigned long long)k->failed[F_TIMEOUT],
		(unsigned long long)k->failed[F_RESET],
		(unsigned long long)k->failed[F_UNREACH],
		(unsigned long long)k->failed[F_VERIFY],
		(unsigned long long)k->failed[F_LOCAL],
		(unsigned long long)(k->to_open + k->open_now),
		(unsigned long long)k->bytes_sent, (unsigned long long)k->bytes_verified,
		seconds, seconds > 0 ? (double)k->ok / seconds : 0.0,
		seconds > 0 ? (double)moved * 8 / seconds / 1e9 : 0.0,
		k->peak, timed_out ? "true" : "false",
		(unsigned long long)k->port_waits, us, sy,
		ru1->ru_nvcsw - ru0->ru_nvcsw, ru1->ru_nivcsw - ru0->ru_nivcsw);
	fflush(stdout);
}

static void
usage(FILE *f, const char *prog)
{
	fprintf(f,
"usage: %s --peer IP:PORT [options]\n"
"\n"
"  --mode MODE         echo (default), connect or bulk\n"
"  --peer IP:PORT      the server (mp-tcpserver echo or sink mode)\n"
"  --conns N           connections in all (default 1)\n"
"  --concurrency N     connections open at once (default 1)\n"
"  --bytes N           bytes per connection, echo and bulk (default 65536)\n"
"  --timeout S         give up after S seconds (default 60)\n"
"  --help\n"
"\n"
"Prints one JSON line with the results. Exit 0 when the run completed\n"
"(whatever the outcomes), 1 on a setup error, 2 on a usage error,\n"
"3 on --timeout.\n", prog);
}

static int
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || end == s || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int
parse_peer(const char *s, struct sockaddr_in *sa)
{
	char buf[64], *colon;
	uint64_t port;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	colon = strrchr(buf, ':');
	if (colon == NULL)
		return -EINVAL;
	*colon = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, buf, &sa->sin_addr) != 1 ||
	    parse_u64(colon + 1, 65535, &port) != 0 || port == 0)
		return -EINVAL;
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

static int
parse_args(int argc, char **argv, struct conf *cf)
{
	static const struct option opts[] = {
		{"mode", required_argument, NULL, 'm'},
		{"peer", required_argument, NULL, 'p'},
		{"conns", required_argument, NULL, 'n'},
		{"concurrency", required_argument, NULL, 'c'},
		{"bytes", required_argument, NULL, 'b'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt, have_peer = 0;
	uint64_t v;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int ret = 0;

		switch (opt) {
		case 'h':
			usage(stdout, argv[0]);
			return 1;
		case 'm':
			if (strcmp(optarg, "echo") == 0)
				cf->mode = MODE_ECHO;
			else if (strcmp(optarg, "connect") == 0)
				cf->mode = MODE_CONNECT;
			else if (strcmp(optarg, "bulk") == 0)
				cf->mode = MODE_BULK;
			else
				ret = -EINVAL;
			break;
		case 'p':
			ret = parse_peer(optarg, &cf->peer);
			have_peer = ret == 0;
			break;
		case 'n':
			ret = parse_u64(optarg, 1ULL << 40, &cf->conns);
			break;
		case 'c':
			ret = parse_u64(optarg, 1 << 20, &v);
			cf->concurrency = (uint32_t)v;
			if (v == 0)
				ret = -EINVAL;
			break;
		case 'b':
			ret = parse_u64(optarg, 1ULL << 40, &cf->bytes);
			break;
		case 't':
			ret = parse_u64(optarg, 86400, &v);
			cf->timeout_s = (unsigned int)v;
			break;
		default:
			usage(stderr, argv[0]);
			return -EINVAL;
		}
		if (ret != 0) {
			fprintf(stderr, "%s: invalid value for option: %s\n", argv[0], optarg);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s: unexpected argument: %s\n", argv[0], argv[optind]);
		return -EINVAL;
	}
	if (!have_peer) {
		fprintf(stderr, "%s: --peer IP:PORT is required\n", argv[0]);
		return -EINVAL;
	}
	if (cf->mode == MODE_CONNECT)
		cf->bytes = 0;
	return 0;
}

int
main(int argc, char **argv)
{
	struct conf cf = { .mode = MODE_ECHO, .conns = 1, .concurrency = 1,
		.bytes = 65536, .timeout_s = 60 };
	struct epoll_event evs[MAX_EVENTS];
	struct rusage ru0, ru1;
	struct client k;
	uint64_t t0, t1, deadline;
	int ret, timed_out = 0;

	ret = parse_args(argc, argv, &cf);
	if (ret != 0)
		return ret > 0 ? 0 : 2;
	mp_pat_fill(pattern);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	memset(&k, 0, sizeof(k));
	k.cf = &cf;
	k.to_open = cf.conns;
	if (cf.concurrency > cf.conns && cf.conns > 0)
		cf.concurrency = (uint32_t)cf.conns;
	k.slots = calloc(cf.concurrency, sizeof(*k.slots));
	k.free_slots = calloc(cf.concurrency, sizeof(*k.free_slots));
	k.ep = epoll_create1(EPOLL_CLOEXEC);
	if (k.slots == NULL || k.free_slots == NULL || k.ep < 0) {
		fprintf(stderr, "%s: setup: %s\n", argv[0], strerror(errno));
		return 1;
	}
	for (uint32_t i = 0; i < cf.concurrency; i++) {
		k.slots[i].fd = -1;
		k.free_slots[i] = cf.concurrency - 1 - i;
	}
	k.n_free = cf.concurrency;

	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_ns();
	deadline = t0 + (uint64_t)cf.timeout_s * 1000000000ULL;
	while (!stop && (k.to_open > 0 || k.open_now > 0)) {
		int n;

		open_conns(&k);
		n = epoll_wait(k.ep, evs, MAX_EVENTS, k.open_now ? 100 : 1);
		for (int i = 0; i < n; i++)
			on_event(&k, &evs[i]);
		if (now_ns() >= deadline) {
			timed_out = 1;
			break;
		}
	}
	t1 = now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	report(&k, (double)(t1 - t0) / 1e9, &ru0, &ru1, timed_out);
	for (uint32_t i = 0; i < cf.concurrency; i++)
		if (k.slots[i].in_use)
			close(k.slots[i].fd);
	close(k.ep);
	free(k.slots);
	free(k.free_slots);
	return timed_out ? 3 : 0;
}
