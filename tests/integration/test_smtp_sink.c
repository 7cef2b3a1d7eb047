/*
 * SMTP session against a real server: Postfix's smtp-sink on loopback,
 * driven over a plain kernel socket with poll(). Checks the engine's bytes
 * are understood by a real SMTP implementation: pipelined transactions,
 * recipient split, dot-stuffing (the dump files hold the unstuffed body),
 * hard RCPT rejects without pipelining, and a 421 after DATA.
 * Skips (77) when smtp-sink is not installed.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mp_test.h"
#include "smtp.h"

struct drv {
	int fd;
	int closed;
	int nres;
	struct smtp_rcpt_result res[16];
	struct smtp_txn txns[4];
	int ntxn, next;
};

struct mbody {
	const char *data;
	size_t len, off;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
d_write(void *ctx, const void *buf, size_t len)
{
	struct drv *d = ctx;
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(d->fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
d_starttls(void *ctx)
{
	(void)ctx;
	return -ENOTSUP;
}

static void
d_close(void *ctx)
{
	((struct drv *)ctx)->closed++;
}

static void
d_result(void *ctx, const struct smtp_rcpt_result *r)
{
	struct drv *d = ctx;

	if (d->nres < 16)
		d->res[d->nres++] = *r;
}

static int
d_next(void *ctx, struct smtp_txn *t)
{
	struct drv *d = ctx;

	if (d->next >= d->ntxn)
		return -ENOENT;
	*t = d->txns[d->next++];
	return 0;
}

static const struct smtp_io_ops d_ops = { d_write, d_starttls, d_close, d_result, d_next };

static int
mb_open(void *src, unsigned flags)
{
	(void)flags;
	((struct mbody *)src)->off = 0;
	return 0;
}

static ssize_t
mb_read(void *src, void *buf, size_t cap)
{
	struct mbody *b = src;
	size_t n = b->len - b->off;

	if (n > cap)
		n = cap;
	memcpy(buf, b->data + b->off, n);
	b->off += n;
	return (ssize_t)n;
}

static int
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		return -1;
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static pid_t
sink_start(int port, const char *dumpdir, const char *extra)
{
	char addr[64], tmpl[256];
	const char *argv[16];
	int n = 0;
	pid_t pid;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(tmpl, sizeof(tmpl), "%s/%%M%%S.", dumpdir);
	argv[n++] = "smtp-sink";
	if (geteuid() == 0) {
		argv[n++] = "-u";
		argv[n++] = "nobody";
	}
	argv[n++] = "-d";
	argv[n++] = tmpl;
	if (extra != NULL) {
		argv[n++] = extra;
		argv[n++] = extra + strlen(extra) + 1;
	}
	argv[n++] = addr;
	argv[n++] = "10";
	argv[n] = NULL;
	pid = fork();
	if (pid == 0) {
		execvp("smtp-sink", (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Connect once smtp-sink listens: 20 s, for a loaded machine under ASan. */
static int
connect_retry(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	uint64_t end = now_ms() + 20000;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	while (now_ms() < end) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		close(fd);
		usleep(20000);
	}
	return -1;
}

/* Run one session to its end (bounded to 10 s). */
static void
run(struct drv *d, const struct smtp_config *cfg, int port)
{
	static struct smtp_sess s;
	uint64_t end = now_ms() + 10000;
	char buf[4096];

	d->fd = connect_retry(port);
	CHECK(d->fd >= 0);
	if (d->fd < 0)
		return;
	CHECK_EQ(smtp_sess_init(&s, cfg, &d_ops, d, 1), 0);
	smtp_sess_start(&s, now_ms());
	while (!smtp_sess_done(&s) && now_ms() < end) {
		struct pollfd p = { .fd = d->fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) > 0) {
			n = recv(d->fd, buf, sizeof(buf), 0);
			if (n > 0)
				smtp_sess_input(&s, buf, (size_t)n, now_ms());
			else
				smtp_sess_on_closed(&s, n < 0 ? -errno : 0, now_ms());
		}
		smtp_sess_tick(&s, now_ms());
	}
	CHECK(smtp_sess_done(&s));
	close(d->fd);
}

static void
add_txn(struct drv *d, const char *from, const char *const *rcpt, unsigned n,
	struct mbody *b)
{
	struct smtp_txn *t = &d->txns[d->ntxn++];

	memset(t, 0, sizeof(*t));
	t->mail_from = from;
	t->rcpt = rcpt;
	t->n_rcpt = n;
	t->body.open = mb_open;
	t->body.read = mb_read;
	t->body.src = b;
	t->body.size = (int64_t)b->len;
}

/* Concatenate every dump file of @p dir into @p out. */
static size_t
read_dumps(const char *dir, char *out, size_t cap, int *files)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	*files = 0;
	out[0] = '\0';
	if (dp == NULL)
		return 0;
	while ((e = readdir(dp)) != NULL) {
		char path[512];
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		n += fread(out + n, 1, cap - 1 - n, f);
		fclose(f);
		unlink(path);
		(*files)++;
	}
	closedir(dp);
	out[n] = '\0';
	return n;
}

/*
 * Dump files of @p dir that are complete: smtp-sink creates one at MAIL
 * and ends it with an empty line when the final dot arrives, so a file
 * ending in "\n\n" is written out. Leaves the files in place.
 */
static int
count_dumps(const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (dp == NULL)
		return 0;
	while ((e = readdir(dp)) != NULL) {
		char path[512], tail[2];
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fseek(f, -2, SEEK_END) == 0 && fread(tail, 1, 2, f) == 2 &&
		    tail[0] == '\n' && tail[1] == '\n')
			n++;
		fclose(f);
	}
	closedir(dp);
	return n;
}

/* Poll (bounded, 20 s) until @p want dumps are complete. */
static void
wait_dumps(const char *dir, int want)
{
	uint64_t end = now_ms() + 20000;

	while (count_dumps(dir) < want && now_ms() < end)
		usleep(20000);
}

static void
sink_stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}

static const char body[] = "Subject: sink test\r\n\r\n.leading dot\r\n..two dots\r\nend\r\n";

int
main(void)
{
	static const char *const r1[] = { "a@y.test", "b@y.test", "c@y.test" };
	static const char *const r2[] = { "d@z.test" };
	static char dump[65536];
	char dir[] = "/tmp/mp_smtp_sink_XXXXXX";
	struct smtp_config cfg;
	struct mbody b = { body, sizeof(body) - 1, 0 };
	struct drv d;
	pid_t pid;
	int port, files;

	if (system("command -v smtp-sink >/dev/null 2>&1") != 0) {
		printf("smtp-sink not installed: skipped\n");
		return 77;
	}
	if (mkdtemp(dir) == NULL)
		return 1;
	chmod(dir, 0777);
	smtp_config_defaults(&cfg);
	cfg.helo_name = "client.test";
	cfg.max_rcpt_per_txn = 2;

	/* 1: pipelined, 3 recipients split 2 + 1, then a second message */
	memset(&d, 0, sizeof(d));
	add_txn(&d, "s@x.test", r1, 3, &b);
	add_txn(&d, "s@x.test", r2, 1, &b);
	port = free_port();
	pid = sink_start(port, dir, NULL);
	run(&d, &cfg, port);
	CHECK_EQ(d.closed, 1);
	CHECK_EQ(d.nres, 4);
	for (int i = 0; i < d.nres; i++) {
		CHECK_EQ(d.res[i].outcome, SMTP_OUT_DELIVERED);
		CHECK_EQ(d.res[i].code, 250);
	}
	/* stop smtp-sink only once it has written all three messages */
	wait_dumps(dir, 3);
	sink_stop(pid);
	read_dumps(dir, dump, sizeof(dump), &files);
	CHECK_EQ(files, 3);
	CHECK(strstr(dump, "X-Rcpt-Args: <c@y.test>") != NULL);
	CHECK(strstr(dump, "\n.leading dot\n..two dots\nend\n") != NULL);
	CHECK(strstr(dump, "\n..leading dot") == NULL);

	/* 2: RCPT refused hard (-f implies no PIPELINING) */
	memset(&d, 0, sizeof(d));
	add_txn(&d, "s@x.test", r2, 1, &b);
	port = free_port();
	pid = sink_start(port, dir, "-f\0RCPT");
	run(&d, &cfg, port);
	CHECK_EQ(d.nres, 1);
	CHECK_EQ(d.res[0].outcome, SMTP_OUT_BOUNCED);
	CHECK_EQ(d.res[0].stage, SMTP_STAGE_RCPT);
	CHECK_EQ(d.res[0].code / 100, 5);
	sink_stop(pid);

	/* 3: 421 and disconnect after DATA */
	memset(&d, 0, sizeof(d));
	add_txn(&d, "s@x.test", r1, 2, &b);
	port = free_port();
	pid = sink_start(port, dir, "-Q\0DATA");
	run(&d, &cfg, port);
	CHECK_EQ(d.nres, 2);
	CHECK_EQ(d.res[0].outcome, SMTP_OUT_DEFERRED);
	CHECK_EQ(d.res[0].code, 421);
	CHECK_EQ(d.closed, 1);
	sink_stop(pid);

	read_dumps(dir, dump, sizeof(dump), &files);
	rmdir(dir);
	return mp_test_result("smtp_sink");
}
