/*
 * Front end shared by mp-smtpsend (kernel sockets) and mp-dpsend (DPDK
 * workers), prefix mpsend_: the mail part of the command line (contract
 * B), recipients and message loading, the work cursor that hands
 * transactions to sessions, the opportunistic-TLS plaintext retry, the
 * JSON lines and the summary. The program supplies the engine side: a
 * struct mpsend_backend that opens a session (ksock_sess_open or
 * usock_sess_open) and a line sink (print now, or pass to another thread).
 *
 * Call order:
 *   mpsend_parse()      options (the program's own through a hook), files
 *   mpsend_fill(b)      open sessions while work is left (again from done)
 *   ... engine runs; the request callbacks call back into the front end
 *   mpsend_finished()   no session open, nothing left to start
 *   mpsend_summary()    "not attempted" lines after a timeout, summary
 *   mpsend_free()
 *
 * Threads: the callbacks and mpsend_fill() run on the engine's thread.
 * With more than one engine thread (mp-dpsend with several workers)
 * mpsend_set_threads() makes them take one mutex; the program reads
 * nothing else until the engines stopped. No allocation after
 * mpsend_parse(): session slots are made for --sessions up front (the
 * plaintext retry list grows only when TLS handshakes fail).
 */
#ifndef MP_SEND_H
#define MP_SEND_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "mps.h"
#include "smtp.h"
#include "tls.h"

/** Options of the front end are numbered from here; a program's own
 *  options (dp_ options: 256..) stay below. */
#define MPSEND_OPT_BASE 512

/** One recipient's JSON line, self-contained (may cross threads). */
struct mpsend_line {
	uint64_t item;			/* work item: the recipient is item % list length */
	int outcome, stage, code;
	uint32_t session;
	int has_tls;
	char esc[SMTP_ESC_MAX];
	char text[SMTP_REPLY_TEXT_MAX];
	struct tls_record tls;
};

/** Where a program opens sessions; one per engine (thread). */
struct mpsend_backend {
	/** Open a session on this engine. @return 0 or -errno (no callback). */
	int (*open)(void *ctx, const struct mps_req *req);
	void *ctx;
	unsigned limit;			/**< sessions this engine may have open */
	unsigned active;		/**< open now (front end's count) */
	int open_err;			/**< last open error (0 = none) */
};

/** What a program adds to the command line. */
struct mpsend_cli {
	const char *prog;		/**< "mp-smtpsend" */
	const char *what;		/**< one line under the usage line */
	const struct option *opts;	/**< extra long options (may be NULL) */
	size_t nopts;
	/** Apply one extra option. @return 0 or -1 (message printed). */
	int (*apply)(void *arg, int opt, const char *optarg);
	void (*usage)(FILE *f);		/**< extra usage lines (may be NULL) */
	void *arg;
	/** Receives each recipient line; NULL = print to stdout now. */
	void (*emit)(void *arg, const struct mpsend_line *l);
	/** Leftover arguments are the program's (after "--"), else an error. */
	int allow_rest;
};

/**
 * Parse the command line and load recipients and the message.
 * @return 0 go on (*rest = index of the first leftover argument), 1 help
 *         was printed (exit 0), -1 usage or setup error (printed: exit 1).
 */
int mpsend_parse(const struct mpsend_cli *cli, int argc, char **argv, int *rest);

/** @return the SMTP defaults built from the options (helo, rcpt per txn, policy). */
const struct smtp_config *mpsend_smtp(void);
/** @return the TLS context options (CA file, minimum version). */
const struct tls_ctx_conf *mpsend_tls_conf(void);
/** @return --sessions. */
unsigned mpsend_sessions(void);
/** @return --timeout in seconds, 0 = none. */
double mpsend_timeout(void);
/** @return total recipient items of the run (--count). */
uint64_t mpsend_count(void);

/** Callbacks take a mutex from now on (several engine threads). */
void mpsend_set_threads(int n);

/** Open sessions on @p b while it and the run have room and work is left. */
void mpsend_fill(struct mpsend_backend *b);

/** @return the server address every session connects to (after parse). */
const struct sockaddr_in *mpsend_server(void);

/** @return non-zero when no session is open and nothing is left to start
 *  (or the run was aborted and no session is open). */
int mpsend_finished(void);

/** Start nothing new; recipients in flight report "aborted: --timeout". */
void mpsend_abort(void);

/** Print one line as contract B's JSON. */
void mpsend_print_line(FILE *f, const struct mpsend_line *l);

/**
 * Print the "not attempted" lines of a timed-out run and the summary
 * line; @p extra may append ",\"key\":value" members to the summary.
 */
void mpsend_summary(FILE *f, double seconds, int timed_out,
	void (*extra)(FILE *f, void *arg), void *arg);

/** @return messages delivered to at least one recipient. */
uint64_t mpsend_msgs_ok(void);

/** Monotonic seconds. */
double mpsend_now(void);

void mpsend_free(void);

#endif
