/*
 * mp-smtpsend: send one message (a raw RFC 5322 file, or a template
 * rendered per recipient by msg_) to a list of recipients through one SMTP
 * server, over N concurrent kernel-socket sessions (ksock_ engine), and
 * print one JSON line per recipient plus a summary line. Useful on its own
 * and the baseline of the benchmark.
 *
 * The command line, the files, the work cursor and the output are the
 * shared front end (mp_send.c, also mp-dpsend's); this file is the
 * kernel-socket side: one ksock engine polled in this thread until the
 * front end has nothing left, with --timeout aborting what is in flight.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "ksock.h"
#include "mp_send.h"

static int
open_ksock(void *ctx, const struct mps_req *req)
{
	return ksock_sess_open(ctx, req);
}

int
main(int argc, char **argv)
{
	static const struct mpsend_cli cli = {
		.prog = "mp-smtpsend",
		.what = "Send a message to each recipient through one SMTP server over concurrent\n"
			"kernel-socket sessions; print one JSON line per recipient and a summary.",
	};
	struct mpsend_backend b = { .open = open_ksock };
	struct ksock_conf kconf = { 0 };
	struct ksock_engine *e;
	double t0, deadline, elapsed;
	char err[512];
	int rest, rc, timed_out = 0;

	rc = mpsend_parse(&cli, argc, argv, &rest);
	if (rc != 0)
		return rc > 0 ? 0 : 1;
	kconf.smtp = mpsend_smtp();
	kconf.tls_conf = mpsend_tls_conf();
	kconf.max_sessions = mpsend_sessions();
	{
		/* one descriptor per session: raise the soft limit as far as allowed */
		rlim_t want = (rlim_t)mpsend_sessions() + 64;
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
			rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
			if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want - 48)
				fprintf(stderr, "mp-smtpsend: warning: open file limit %llu is low for %u sessions\n",
					(unsigned long long)rl.rlim_cur, mpsend_sessions());
		}
	}
	e = ksock_engine_new(&kconf, err, sizeof(err));
	if (e == NULL) {
		fprintf(stderr, "mp-smtpsend: %s\n", err);
		return 1;
	}
	b.ctx = e;
	b.limit = mpsend_sessions();
	setvbuf(stdout, NULL, _IOFBF, 1 << 20);

	t0 = mpsend_now();
	deadline = mpsend_timeout() > 0 ? t0 + mpsend_timeout() : 0;
	mpsend_fill(&b);
	if (b.active == 0) {
		fprintf(stderr, "mp-smtpsend: no session could be opened\n");
		return 1;
	}
	while (!mpsend_finished()) {
		if (b.active == 0) {
			mpsend_fill(&b);
			if (b.active == 0)
				break;
		}
		rc = ksock_engine_poll(e, 200);
		if (rc < 0) {
			fprintf(stderr, "mp-smtpsend: poll: %s\n", strerror(-rc));
			return 1;
		}
		if (deadline > 0 && !timed_out && mpsend_now() >= deadline) {
			/* in-flight recipients get their record; nothing new starts */
			timed_out = 1;
			mpsend_abort();
			ksock_engine_abort(e);
			deadline = mpsend_now() + 5;
		} else if (timed_out && mpsend_now() >= deadline) {
			break;
		}
	}
	elapsed = mpsend_now() - t0;
	mpsend_summary(stdout, elapsed, timed_out, NULL, NULL);
	ksock_engine_free(e);
	mpsend_free();
	return timed_out ? 2 : 0;
}
