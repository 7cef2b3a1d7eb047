/*
 * mp-tcpserver: the kernel-side peer for TCP tests and benchmarks. epoll
 * over non-blocking kernel sockets, one listener per thread (SO_REUSEPORT).
 * Modes:
 *   echo      write back everything read; close after the peer's FIN
 *   sink      read to EOF, then answer "OK <bytes> <fnv64 hex>\n" and close
 *   rst:N     read N bytes, then reset the connection (SO_LINGER 0)
 *
 * usage: mp-tcpserver ADDR PORT MODE [THREADS]
 * Stops on SIGTERM/SIGINT. Prints "listening" once every thread listens.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mp_hash.h"

#define BUF 65536

enum mode { ECHO, SINK, RST };

struct conn {
	int fd;
	uint64_t bytes;
	uint64_t hash;
	size_t pend_off, pend_len;      /* echo bytes not yet written */
	uint8_t *pend;
	int eof;
};

static enum mode mode;
static uint64_t rst_after;
static struct sockaddr_in addr;
static volatile sig_atomic_t stop;
static pthread_barrier_t ready;	/* the threads and main: all listening */

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
conn_free(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->pend);
	free(c);
}

static void
hard_reset(int ep, struct conn *c)
{
	struct linger l = { 1, 0 };

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	conn_free(ep, c);
}

/* Write pending echo bytes; @return 0 all written, 1 would block, -1 error. */
static int
flush_pending(int ep, struct conn *c)
{
	while (c->pend_len > 0) {
		ssize_t n = write(c->fd, c->pend + c->pend_off, c->pend_len);

		if (n < 0) {
			if (errno == EAGAIN) {
				struct epoll_event ev = { EPOLLIN | EPOLLOUT, { .ptr = c } };

				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				return 1;
			}
			return -1;
		}
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	return 0;
}

static void
handle(int ep, struct conn *c, uint32_t events)
{
	static __thread uint8_t buf[BUF];

	if (c->pend_len > 0) {
		int r = flush_pending(ep, c);

		if (r < 0) {
			conn_free(ep, c);
			return;
		}
		if (r > 0)
			return;
		{
			struct epoll_event ev = { EPOLLIN, { .ptr = c } };

			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		}
	}
	(void)events;
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));

		if (n < 0) {
			if (errno == EAGAIN)
				return;
			conn_free(ep, c);
			return;
		}
		if (n == 0) {
			if (mode == SINK) {
				char reply[64];
				int len = snprintf(reply, sizeof(reply), "OK %llu %llx\n",
					(unsigned long long)c->bytes,
					(unsigned long long)c->hash);

				if (write(c->fd, reply, (size_t)len) != len)
					perror("sink reply");
			}
			conn_free(ep, c);
			return;
		}
		c->bytes += (uint64_t)n;
		switch (mode) {
		case ECHO: {
			ssize_t w = write(c->fd, buf, (size_t)n);

			if (w < 0 && errno != EAGAIN) {
				conn_free(ep, c);
				return;
			}
			if (w < 0)
				w = 0;
			if (w < n) {
				c->pend = realloc(c->pend, (size_t)(n - w));
				memcpy(c->pend, buf + w, (size_t)(n - w));
				c->pend_off = 0;
				c->pend_len = (size_t)(n - w);
				if (flush_pending(ep, c) != 0)
					return;
			}
			break;
		}
		case SINK:
			c->hash = mp_fnv1a(c->hash, buf, (size_t)n);
			break;
		case RST:
			if (c->bytes >= rst_after) {
				hard_reset(ep, c);
				return;
			}
			break;
		}
	}
}

static void *
serve(void *arg)
{
	int one = 1, lfd, ep;
	struct epoll_event ev, evs[256];

	(void)arg;
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(lfd, 65535) != 0) {
		perror("bind/listen");
		exit(1);
	}
	ep = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	pthread_barrier_wait(&ready);
	while (!stop) {
		int n = epoll_wait(ep, evs, 256, 200);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					struct conn *c = calloc(1, sizeof(*c));

					c->fd = fd;
					c->hash = MP_FNV1A_INIT;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			handle(ep, evs[i].data.ptr, evs[i].events);
		}
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	int threads = argc > 4 ? atoi(argv[4]) : 1;
	pthread_t tid[16];

	if (argc < 4 || threads < 1 || threads > 16) {
		fprintf(stderr, "usage: %s ADDR PORT echo|sink|rst:N [THREADS]\n", argv[0]);
		return 2;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1)
		return 2;
	if (strcmp(argv[3], "echo") == 0) {
		mode = ECHO;
	} else if (strcmp(argv[3], "sink") == 0) {
		mode = SINK;
	} else if (strncmp(argv[3], "rst:", 4) == 0) {
		mode = RST;
		rst_after = strtoull(argv[3] + 4, NULL, 10);
	} else {
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	pthread_barrier_init(&ready, NULL, (unsigned)threads + 1);
	for (int i = 0; i < threads; i++)
		pthread_create(&tid[i], NULL, serve, NULL);
	/* a thread that cannot listen exits the process instead */
	pthread_barrier_wait(&ready);
	printf("listening\n");
	fflush(stdout);
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	return 0;
}
